/**
 * Hostile input for event-store backups (core/backup/): the manifest parser, the events-line parser, and the whole
 * verification and import of a backup chain (a full backup and an increment) on in-memory storage and an in-memory
 * target that records every write. Every refusal must be a `BackupError` (or the request's `InvalidInputError`), and
 * a refused import must have written nothing: no `importEvents` call, storage unchanged. What is accepted after a
 * change must restore exactly the lines of the files.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  BackupChainError,
  BackupError,
  BackupEventGapError,
  BackupEventInvalidError,
  BackupFileChecksumError,
  BackupFileMissingError,
  BackupManifestInvalidError,
  BackupManifestMismatchError,
  BackupManifestTamperedError,
  BackupStreamMissingError,
  BackupTruncatedError,
  BackupUntrustedKeyError,
  InvalidBackupRequestError,
  MANIFEST_FILE,
  MAX_LINE_BYTES,
  MemoryBackupStorage,
  assertBackupId,
  backupPublicKey,
  backupSignerFromPkcs8,
  blobNameSegments,
  canonicalJson,
  eventLine,
  exportBackup,
  generateBackupSigningKey,
  importBackup,
  parseEventLine,
  parseManifest,
  signedBytes,
  verifyBackup,
  type BackupManifest,
  type BackupScope,
  type BackupSource,
  type BackupTarget,
  type ImportRun,
  type StreamHead,
} from "../../core/backup/index.js";
import { inScope } from "../../core/backup/format.js";
import {
  documentStreamId,
  workspaceStreamId,
  type ReadStreamOptions,
  type ReadStreamResult,
  type StoredEvent,
  type StreamId,
} from "../../core/eventstore/index.js";
import {
  applyBytes,
  applyJson,
  assertNoPollution,
  assertTyped,
  byteMutation,
  describeJsonMutation,
  jsonMutation,
  outcomeOf,
  holds,
  holdsAsync,
  probe,
  rejected,
  thrown,
  type Json,
} from "./hostile-harness.js";

// ------------------------------------------------------------------------------------------------ fakes

class MemorySource implements BackupSource {
  readonly tableName = "hostile-table";
  readonly streams = new Map<string, StoredEvent[]>();
  private clock = Date.UTC(2026, 10, 30, 12, 0, 0);

  append(streamId: string, type: string, data: Record<string, unknown>): void {
    const list = this.streams.get(streamId) ?? [];
    const at = new Date((this.clock += 1000)).toISOString();
    list.push({
      streamId: streamId as StreamId,
      version: list.length + 1,
      eventId: randomUUID(),
      type,
      schemaVersion: 1,
      occurredAt: at,
      recordedAt: at,
      data,
    });
    this.streams.set(streamId, list);
  }

  async *listStreamHeads(scope: BackupScope): AsyncIterable<readonly StreamHead[]> {
    yield [...this.streams]
      .filter(([s]) => inScope(scope, s))
      .map(([streamId, list]) => ({ streamId, version: list.length }));
  }

  async readEvents(
    refs: readonly { streamId: string; version: number }[],
  ): Promise<(StoredEvent | undefined)[]> {
    return refs.map((r) => this.streams.get(r.streamId)?.[r.version - 1]);
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<ReadStreamResult> {
    const list = this.streams.get(streamId) ?? [];
    const from = options.fromVersion ?? 1;
    const events = list.slice(from - 1, options.limit === undefined ? undefined : from - 1 + options.limit);
    return { events, currentVersion: list.length || undefined };
  }
}

/** Records every write; checks that each run continues its stream, as the store's conditions would. */
class RecordingTarget implements BackupTarget {
  readonly tableName = "hostile-target";
  readonly streams = new Map<string, StoredEvent[]>();
  calls = 0;

  async isEmpty(): Promise<boolean> {
    return this.calls === 0 && this.streams.size === 0;
  }

  async importEvents(runs: readonly ImportRun[]): Promise<void> {
    this.calls += 1;
    for (const r of runs) {
      const list = this.streams.get(r.streamId) ?? [];
      if (r.events[0]?.version !== list.length + 1) throw new Error(`${r.streamId}: run does not continue`);
      list.push(...r.events);
      this.streams.set(r.streamId, list);
    }
  }
}

// ------------------------------------------------------------------------------------------------ a valid chain

const WS = "hostile";
const signer = backupSignerFromPkcs8(generateBackupSigningKey());
const trustedKeys = [backupPublicKey(signer.publicKey)];
const scope: BackupScope = { kind: "workspace", workspaceId: WS };

const source = new MemorySource();
source.append(workspaceStreamId(WS), "MasterKeyCreated", {
  WorkspaceId: WS,
  KeyId: `ws-${WS}/mk/1`,
  Kcv: "ABCDEF",
});
for (let d = 0; d < 3; d++) {
  const doc = { AggregateId: `doc${d}`, WorkspaceId: WS };
  const s = documentStreamId(WS, `doc${d}`);
  source.append(s, "DocumentEncryptionKeysAdded", { ...doc, KeyId: `ws-${WS}/mk/1`, Artifacts: [] });
  if (d !== 1) source.append(s, "DocumentStored", doc);
}
const origin = new MemoryBackupStorage();
const full = await exportBackup({ source, storage: origin, signer, scope, maxEventsPerFile: 3 });
source.append(workspaceStreamId(WS), "DrillCompleted", {
  WorkspaceId: WS,
  Ok: true,
  Nested: { List: [1, "two"] },
});
source.append(documentStreamId(WS, "doc1"), "DocumentStored", { AggregateId: "doc1", WorkspaceId: WS });
source.append(documentStreamId(WS, "doc3"), "DocumentEncryptionKeysAdded", {
  AggregateId: "doc3",
  WorkspaceId: WS,
  KeyId: `ws-${WS}/mk/1`,
  Artifacts: [],
});
const increment = await exportBackup({
  source,
  storage: origin,
  signer,
  scope,
  kind: "incremental",
  baseBackupId: full.backupId,
  maxEventsPerFile: 2,
});
const backups = [full.backupId, increment.backupId];

/** Every blob of the valid chain. */
const blobs = new Map<string, Buffer>((await origin.list("")).map((b) => [b.name, origin.peek(b.name)!]));
const eventFiles = [...blobs.keys()].filter((n) => n.endsWith(".jsonl"));
const manifestNames = backups.map((id) => `${id}/${MANIFEST_FILE}`);
const validLines = eventFiles.flatMap((n) => blobs.get(n)!.toString("utf8").split("\n").slice(0, -1));

/** In-memory storage that counts every write through the port (`create`; `put` goes through it). */
class RecordingStorage extends MemoryBackupStorage {
  writes = 0;
  override async create(name: string) {
    this.writes += 1;
    return super.create(name);
  }
}

function storageWith(changes: ReadonlyMap<string, Buffer | undefined>): RecordingStorage {
  const s = new RecordingStorage();
  for (const [name, bytes] of blobs) if (!changes.has(name)) s.overwrite(name, bytes);
  for (const [name, bytes] of changes) if (bytes !== undefined) s.overwrite(name, bytes);
  return s;
}

const manifestOf = (id: string): BackupManifest => parseManifest(blobs.get(`${id}/${MANIFEST_FILE}`)!, id);

/** The manifest bytes of `value` signed again by the real signer (as a writer with the key would). */
async function resigned(value: Json): Promise<Buffer> {
  let canonical: string;
  try {
    const m = value as unknown as BackupManifest;
    const unsigned = Buffer.from(signedBytes(m));
    const sig = Buffer.from(await signer.sign(unsigned)).toString("base64");
    const withSig =
      value !== null && typeof value === "object" && !Array.isArray(value)
        ? {
            ...(value as Record<string, Json>),
            signature: { algorithm: "Ed25519", keyId: signer.keyId, value: sig },
          }
        : value;
    canonical = canonicalJson(withSig);
  } catch {
    canonical = JSON.stringify(value); // not representable canonically (a fraction, ...): written as it is
  }
  return Buffer.from(`${canonical}\n`, "utf8");
}

/** A file's manifest entry (and totals) fixed for new bytes, then the manifest signed again. */
async function withFile(id: string, file: string, bytes: Buffer): Promise<Buffer> {
  const m = manifestOf(id);
  const events = bytes.toString("utf8").split("\n").length - 1;
  const files = m.files.map((f) =>
    f.name === file
      ? { ...f, bytes: bytes.length, events, sha256: createHash("sha256").update(bytes).digest("hex") }
      : f,
  );
  const totals = {
    ...m.totals,
    events: files.reduce((n, f) => n + f.events, 0),
    bytes: files.reduce((n, f) => n + f.bytes, 0),
  };
  return resigned({ ...m, files, totals } as unknown as Json);
}

/**
 * The changes that put new bytes into a file of the chain as a writer with the key would: the file, its manifest
 * re-signed, and (for a file of the full backup) the increment re-signed to name the new base manifest.
 */
async function chainWithFile(name: string, bytes: Buffer): Promise<Map<string, Buffer | undefined>> {
  const [id, file] = name.split("/") as [string, string];
  const manifest = await withFile(id, file, bytes);
  const changes = new Map<string, Buffer | undefined>([
    [name, bytes],
    [`${id}/${MANIFEST_FILE}`, manifest],
  ]);
  if (id === full.backupId) {
    const inc = manifestOf(increment.backupId);
    const base = { ...inc.base!, manifestSha256: createHash("sha256").update(manifest).digest("hex") };
    changes.set(manifestNames[1]!, await resigned({ ...inc, base } as unknown as Json));
  }
  return changes;
}

/** A JSON text with its keys sorted at every level and no whitespace. */
function normal(text: string): string {
  const sort = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sort)
      : v !== null && typeof v === "object"
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
          )
        : v;
  return JSON.stringify(sort(JSON.parse(text)));
}

/** Everything a backup error may be; `InvalidBackupRequestError` for a request that is itself bad. */
const BACKUP_ERRORS = [BackupError, InvalidBackupRequestError] as const;

/**
 * Runs the import of the increment (its whole chain) into a recording target. A refusal must be typed and must
 * have written nothing; an acceptance must restore exactly the events the files hold.
 */
async function importChecked(
  storage: RecordingStorage,
  p: ReturnType<typeof probe>,
  label: string,
  allowed: readonly (abstract new (...args: never[]) => unknown)[] = BACKUP_ERRORS,
): Promise<unknown> {
  const target = new RecordingTarget();
  const err = await p.timeAsync(() =>
    rejected(() => importBackup({ storage, backupId: increment.backupId, target, trustedKeys })),
  );
  p.count(`${label}: ${outcomeOf(err)}`);
  assert.equal(storage.writes, 0, "the import wrote to the backup storage");
  if (err !== undefined) {
    assertTyped(err, allowed);
    assert.equal(target.calls, 0, `refused (${outcomeOf(err)}) after ${target.calls} writes`);
    assert.equal(target.streams.size, 0);
    return err;
  }
  // Accepted: every event written is a line of the chain's files, in file order, and nothing else.
  const lines: string[] = [];
  for (const id of backups) {
    const m = parseManifest(storage.peek(`${id}/${MANIFEST_FILE}`)!, id);
    for (const f of m.files)
      lines.push(...storage.peek(`${id}/${f.name}`)!.toString("utf8").split("\n").slice(0, -1));
  }
  // JSON whitespace around a line's values is allowed; anything else must come back exactly (keys in any order).
  const written = [...target.streams.values()].flat().map((e) => normal(eventLine(e)));
  assert.deepEqual(
    written.sort(),
    lines.map(normal).sort(),
    "the import restored other events than the files hold",
  );
  return undefined;
}

// ------------------------------------------------------------------------------------------------ tests

describe("backup manifest parser", () => {
  it("refuses arbitrary bytes and arbitrary JSON with BackupManifestInvalidError", async (t) => {
    const p = probe(t);
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)),
      fc.jsonValue({ maxDepth: 5 }).map((v) => Buffer.from(JSON.stringify(v) ?? "null")),
      fc
        .record({
          format: fc.constantFrom("amk-event-backup", "x"),
          formatVersion: fc.jsonValue({ maxDepth: 1 }),
        })
        .map((v) => Buffer.from(JSON.stringify(v))),
    );
    holds(
      fc.property(input, (bytes) => {
        const err = p.time(() => thrown(() => parseManifest(bytes, full.backupId)));
        p.count(outcomeOf(err));
        assertTyped(err, [BackupManifestInvalidError]);
        assert.ok((err as Error).message.length < 2_000, "the message stays short");
      }),
      p.params,
    );
    p.report();
  });

  it("refuses a manifest with a field deleted, retyped, huge, deeply nested, or an added key (`__proto__` too)", async (t) => {
    const p = probe(t);
    const value = JSON.parse(blobs.get(manifestNames[1]!)!.toString("utf8")) as Json;
    // Inside `after` and `streams` a deleted entry is still a well-formed manifest (the signature catches it).
    const fixedShape = (path: (string | number)[]) =>
      path[0] !== "after" && !(path[0] === "streams" && path.length === 2);
    const arb = jsonMutation(value, ["delete", "retype", "huge-string", "deep", "add-key"], fixedShape);
    holds(
      fc.property(arb, (m) => {
        const bytes = Buffer.from(JSON.stringify(applyJson(value, m)));
        const err = p.time(() => thrown(() => parseManifest(bytes, increment.backupId)));
        p.count(`${m.kind}: ${outcomeOf(err)}`);
        assertNoPollution();
        if (err === undefined) {
          // Still well-formed: one file entry fewer, no base (an increment's base is nullable), or an own `__proto__` key that z.record drops silently (the
          // canonical form then differs from the bytes, so verification refuses it as tampered).
          assert.ok(
            (m.kind === "delete" && typeof m.path.at(-1) === "number") ||
              (m.kind === "add-key" && m.key === "__proto__") ||
              (m.kind === "retype" && m.path.join(".") === "base" && m.value === null),
            `accepted after ${describeJsonMutation(m)}`,
          );
          return;
        }
        assertTyped(err, [BackupManifestInvalidError]);
      }),
      p.params,
    );
    p.report();
  });
});

describe("backup events-line parser", () => {
  it("refuses arbitrary text and arbitrary JSON with BackupEventInvalidError", async (t) => {
    const p = probe(t);
    const where = { backupId: full.backupId, file: "events-0001.jsonl", line: 1 };
    const line = fc.oneof(
      fc.string({ unit: "binary", maxLength: 2048 }),
      fc.jsonValue({ maxDepth: 5 }).map((v) => JSON.stringify(v) ?? "null"),
      fc
        .dictionary(
          fc.constantFrom(
            "streamId",
            "version",
            "eventId",
            "type",
            "schemaVersion",
            "occurredAt",
            "recordedAt",
            "data",
          ),
          fc.jsonValue({ maxDepth: 2 }),
        )
        .map((v) => JSON.stringify(v)),
    );
    holds(
      fc.property(line, (text) => {
        const err = p.time(() => thrown(() => parseEventLine(text, where)));
        p.count(outcomeOf(err));
        assertTyped(err, [BackupEventInvalidError]);
      }),
      p.params,
    );
    p.report();
  });

  it("refuses mutated lines, and accepts a line only when it still is the event it says (data kept exactly)", async (t) => {
    const p = probe(t);
    const where = { backupId: full.backupId, file: "events-0001.jsonl", line: 1 };
    const parsed = validLines.map((l) => JSON.parse(l) as Json);
    const arb = fc
      .nat({ max: parsed.length - 1 })
      .chain((i) =>
        fc.tuple(
          fc.constant(i),
          jsonMutation(parsed[i]!, ["delete", "retype", "huge-string", "deep", "add-key"]),
        ),
      );
    holds(
      fc.property(arb, ([i, m]) => {
        const mutated = applyJson(parsed[i]!, m);
        const text = JSON.stringify(mutated);
        const err = p.time(() => thrown(() => parseEventLine(text, where)));
        p.count(`${m.kind}: ${outcomeOf(err)}`);
        assertNoPollution();
        if (err !== undefined) {
          assertTyped(err, [BackupEventInvalidError]);
          return;
        }
        // Accepted: only inside `data` (the envelope is strict), and the event keeps exactly the line's data.
        assert.equal(m.path[0], "data", `accepted after ${describeJsonMutation(m)}`);
        const event = parseEventLine(text, where);
        assert.equal(eventLine(event), text, `${describeJsonMutation(m)}: the event differs from its line`);
      }),
      p.params,
    );
    p.report();
  });
});

describe("backup verification and import (in memory)", () => {
  it("the valid chain verifies and imports", async () => {
    const storage = storageWith(new Map());
    assert.equal(
      (await verifyBackup({ storage, backupId: increment.backupId, trustedKeys })).chain.length,
      2,
    );
    const target = new RecordingTarget();
    await importBackup({ storage, backupId: increment.backupId, target, trustedKeys });
    assert.equal([...target.streams.values()].flat().length, validLines.length);
  });

  it("refuses changed bytes of any file (manifest not re-signed): the right error, nothing written", async (t) => {
    const p = probe(t);
    const names = [...eventFiles, ...manifestNames];
    const arb = fc
      .constantFrom(...names)
      .chain((name) => fc.tuple(fc.constant(name), byteMutation(blobs.get(name)!.length)));
    await holdsAsync(
      fc.asyncProperty(arb, async ([name, m]) => {
        const original = blobs.get(name)!;
        const bytes = applyBytes(original, m);
        const err = await importChecked(
          storageWith(new Map([[name, bytes]])),
          p,
          name.endsWith(".json") ? "manifest" : "events",
        );
        if (bytes.equals(original)) return assert.equal(err, undefined);
        assert.notEqual(err, undefined, `${m.kind} of ${name} accepted`);
        if (name.endsWith(".jsonl")) {
          const expected = bytes.length < original.length ? BackupTruncatedError : BackupFileChecksumError;
          assertTyped(err, [expected]);
        } else {
          assertTyped(err, [
            BackupManifestInvalidError,
            BackupManifestTamperedError,
            BackupUntrustedKeyError,
            BackupChainError,
          ]);
          // The increment's base is the full backup: a change there is reported as a broken chain.
          if (err instanceof BackupChainError) assert.ok(name.startsWith(full.backupId));
        }
      }),
      p.params,
    );
    p.report();
  });

  it("refuses missing, extra and swapped files, and arbitrary manifests: typed, nothing written", async (t) => {
    const p = probe(t);
    type Case =
      | { kind: "remove"; name: string }
      | { kind: "extra"; backup: number; index: number; bytes: Uint8Array }
      | { kind: "swap"; a: string; b: string }
      | { kind: "manifest"; backup: number; bytes: Uint8Array };
    const arb: fc.Arbitrary<Case> = fc.oneof(
      fc.record({ kind: fc.constant("remove" as const), name: fc.constantFrom(...blobs.keys()) }),
      fc.record({
        kind: fc.constant("extra" as const),
        backup: fc.nat({ max: 1 }),
        index: fc.integer({ min: 1, max: 99_999 }),
        bytes: fc.uint8Array({ maxLength: 200 }),
      }),
      fc.record({
        kind: fc.constant("swap" as const),
        a: fc.constantFrom(...eventFiles),
        b: fc.constantFrom(...eventFiles),
      }),
      fc.record({
        kind: fc.constant("manifest" as const),
        backup: fc.nat({ max: 1 }),
        bytes: fc.oneof(
          fc.uint8Array({ maxLength: 500 }),
          fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? "null")),
        ),
      }),
    );
    await holdsAsync(
      fc.asyncProperty(arb, async (c) => {
        const changes = new Map<string, Buffer | undefined>();
        if (c.kind === "remove") changes.set(c.name, undefined);
        if (c.kind === "extra") {
          const name = `${backups[c.backup]}/events-${String(c.index).padStart(4, "0")}.jsonl`;
          if (!blobs.has(name)) changes.set(name, Buffer.from(c.bytes));
        }
        if (c.kind === "swap") {
          changes.set(c.a, blobs.get(c.b)!);
          changes.set(c.b, blobs.get(c.a)!);
        }
        if (c.kind === "manifest") {
          changes.set(manifestNames[c.backup]!, Buffer.from(c.bytes));
        }
        const err = await importChecked(storageWith(changes), p, c.kind);
        const unchanged = [...changes].every(([n, b]) => b !== undefined && blobs.get(n)?.equals(b));
        if (!unchanged) assert.notEqual(err, undefined, `${c.kind} accepted`);
      }),
      p.params,
    );
    p.report();
  });

  it("a writer holding the key: events files changed line by line and the manifest re-signed to match are refused by their content, or restore exactly", async (t) => {
    const p = probe(t);
    type Edit =
      | { kind: "json"; file: string; line: number; mutation: Parameters<typeof applyJson>[1] }
      | { kind: "drop" | "dup"; file: string; line: number }
      | { kind: "swap"; file: string; a: number; b: number }
      | { kind: "bytes"; file: string; mutation: Parameters<typeof applyBytes>[1] }
      | { kind: "long"; file: string; line: number; extra: number };
    const lineCount = (f: string) => blobs.get(f)!.toString("utf8").split("\n").length - 1;
    const arb: fc.Arbitrary<Edit> = fc.constantFrom(...eventFiles).chain((file) => {
      const lines = blobs.get(file)!.toString("utf8").split("\n").slice(0, -1);
      const line = fc.nat({ max: lines.length - 1 });
      return fc.oneof(
        {
          weight: 4,
          arbitrary: line.chain((l) =>
            jsonMutation(JSON.parse(lines[l]!) as Json, [
              "delete",
              "retype",
              "huge-string",
              "deep",
              "add-key",
            ]).map((mutation) => ({ kind: "json" as const, file, line: l, mutation })),
          ),
        },
        {
          weight: 1,
          arbitrary: fc.record({
            kind: fc.constantFrom("drop" as const, "dup" as const),
            file: fc.constant(file),
            line,
          }),
        },
        {
          weight: 1,
          arbitrary: fc.record({
            kind: fc.constant("swap" as const),
            file: fc.constant(file),
            a: line,
            b: line,
          }),
        },
        {
          weight: 2,
          arbitrary: byteMutation(blobs.get(file)!.length).map((mutation) => ({
            kind: "bytes" as const,
            file,
            mutation,
          })),
        },
        {
          weight: 1,
          arbitrary: fc.record({
            kind: fc.constant("long" as const),
            file: fc.constant(file),
            line,
            extra: fc.integer({ min: 0, max: 300_000 }),
          }),
        },
      );
    });
    assert.ok(eventFiles.every((f) => lineCount(f) > 0));
    await holdsAsync(
      fc.asyncProperty(arb, async (e) => {
        const original = blobs.get(e.file)!;
        const lines = original.toString("utf8").split("\n").slice(0, -1);
        let bytes: Buffer;
        if (e.kind === "bytes") bytes = applyBytes(original, e.mutation);
        else {
          if (e.kind === "json")
            lines[e.line] = JSON.stringify(applyJson(JSON.parse(lines[e.line]!) as Json, e.mutation));
          if (e.kind === "drop") lines.splice(e.line, 1);
          if (e.kind === "dup") lines.splice(e.line, 0, lines[e.line]!);
          if (e.kind === "swap") [lines[e.a], lines[e.b]] = [lines[e.b]!, lines[e.a]!];
          if (e.kind === "long")
            lines[e.line] = `${lines[e.line]!.slice(0, -1)},"pad":"${"x".repeat(e.extra)}"}`;
          bytes = Buffer.from(lines.map((l) => `${l}\n`).join(""));
        }
        const err = await importChecked(storageWith(await chainWithFile(e.file, bytes)), p, e.kind, [
          BackupEventInvalidError,
          BackupEventGapError,
          BackupManifestMismatchError,
          BackupManifestInvalidError,
          BackupStreamMissingError,
          BackupTruncatedError,
          BackupChainError,
        ]);
        if (e.kind === "long" && e.extra > MAX_LINE_BYTES)
          assert.notEqual(err, undefined, "an over-long line was accepted");
        assertNoPollution();
      }),
      p.params,
    );
    p.report();
  });

  it("a writer holding the key: manifest fields changed and re-signed are refused as inconsistent, or restore exactly", async (t) => {
    const p = probe(t);
    const values = backups.map(
      (id) => JSON.parse(blobs.get(`${id}/${MANIFEST_FILE}`)!.toString("utf8")) as Json,
    );
    const notSignature = (path: (string | number)[]) => path[0] !== "signature";
    const arb = fc.nat({ max: 1 }).chain((b) =>
      fc.tuple(
        fc.constant(b),
        fc.oneof(
          jsonMutation(values[b]!, ["delete", "retype", "huge-string", "deep", "add-key"], notSignature),
          // Numbers moved by one: counts, versions, sizes (what a buggy writer gets wrong).
          fc
            .constantFrom(
              ...(function* numbers(v: Json, path: (string | number)[] = []): Generator<(string | number)[]> {
                if (typeof v === "number") yield path;
                else if (v !== null && typeof v === "object")
                  for (const [k, x] of Object.entries(v))
                    yield* numbers(x, [...path, Array.isArray(v) ? Number(k) : k]);
              })(values[b]!),
            )
            .chain((path) =>
              fc
                .integer({ min: -2, max: 2 })
                .map((d) => ({ kind: "retype" as const, path, value: d as Json, shift: true })),
            ),
        ),
      ),
    );
    await holdsAsync(
      fc.asyncProperty(arb, async ([b, m]) => {
        let mutated: Json;
        if ("shift" in m) {
          mutated = JSON.parse(JSON.stringify(values[b])) as Json;
          const parent = m.path.slice(0, -1).reduce<Json>((v, k) => (v as Record<string, Json>)[k]!, mutated);
          const k = m.path.at(-1)!;
          (parent as Record<string, number>)[k] =
            ((parent as Record<string, number>)[k] ?? 0) + (m.value as number);
        } else mutated = applyJson(values[b]!, m);
        const bytes = await resigned(mutated);
        const changes = new Map<string, Buffer | undefined>([[manifestNames[b]!, bytes]]);
        await importChecked(storageWith(changes), p, "shift" in m ? "shift" : m.kind);
        assertNoPollution();
      }),
      p.params,
    );
    p.report();
  });

  it("refuses hostile backup ids and blob names with InvalidBackupRequestError", async (t) => {
    const p = probe(t);
    holds(
      fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 300 }), fc.anything()), (v) => {
        const a = p.time(() => thrown(() => assertBackupId(v)));
        const b = thrown(() => blobNameSegments(v));
        p.count(`id ${outcomeOf(a)}, name ${outcomeOf(b)}`);
        if (a !== undefined) assertTyped(a, [InvalidBackupRequestError]);
        else assert.match(v as string, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        if (b !== undefined) assertTyped(b, [InvalidBackupRequestError]);
        else for (const part of (v as string).split("/")) assert.match(part, /^[A-Za-z0-9._-]{1,128}$/);
      }),
      p.params,
    );
    p.report();
  });

  it("refuses a request for a chain that is not there: typed, nothing written", async () => {
    const storage = storageWith(new Map());
    for (const backupId of [randomUUID(), "../../etc", "", "X".repeat(10_000)]) {
      const target = new RecordingTarget();
      const err = await rejected(() => importBackup({ storage, backupId, target, trustedKeys }));
      assertTyped(err, [BackupError, InvalidBackupRequestError]);
      assert.equal(target.calls, 0);
    }
    const err = await rejected(() =>
      verifyBackup({ storage, backupId: increment.backupId, trustedKeys: [] }),
    );
    assertTyped(err, [InvalidBackupRequestError]);
    const missing = await rejected(() =>
      verifyBackup({
        storage: storageWith(new Map([[eventFiles[0]!, undefined]])),
        backupId: full.backupId,
        trustedKeys,
      }),
    );
    assertTyped(missing, [BackupFileMissingError]);
  });
});

describe("backup: bugs found by the properties (both fixed)", () => {
  it("parseManifest refuses a formatVersion object with its own `toString` as BackupManifestInvalidError", () => {
    // Was a TypeError from String(formatVersion) in the message; fixed in core/backup/format.ts.
    const bytes = Buffer.from('{"format":"amk-event-backup","formatVersion":{"toString":""}}');
    assertTyped(
      thrown(() => parseManifest(bytes, full.backupId)),
      [BackupManifestInvalidError],
    );
  });

  it("an events line whose data has an own `__proto__` key is refused (it used to restore without it)", () => {
    // Was: EventLineSchema's z.record(...) dropped `__proto__` silently. Fixed in core/backup/format.ts (refused
    // before the schema) and core/eventstore/events.ts (no event may carry one, so none is ever backed up).
    const where = { backupId: full.backupId, file: "events-0001.jsonl", line: 1 };
    for (const line of [
      validLines[0]!.replace('"data":{', '"data":{"__proto__":{"x":1},'),
      validLines[0]!.replace('"data":{', '"data":{"nested":[{"__proto__":null}],'),
    ]) {
      const err = thrown(() => parseEventLine(line, where));
      assertTyped(err, [BackupEventInvalidError]);
      assert.match((err as Error).message, /__proto__/);
    }
  });
});
