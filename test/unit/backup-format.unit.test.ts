/**
 * The backup format without an engine: canonical JSON and the signed bytes, Ed25519 signatures and pinned keys,
 * backup ids, the secret-field guard, and the export / verify / import logic on in-memory storage with an in-memory
 * source and target (each verification failure with its own error class).
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import {
  BACKUP_FORMAT,
  BackupChainError,
  BackupEventGapError,
  BackupEventInvalidError,
  BackupExistsError,
  BackupFileChecksumError,
  BackupFileMissingError,
  BackupManifestInvalidError,
  BackupManifestMismatchError,
  BackupManifestTamperedError,
  BackupNotFoundError,
  BackupStreamMissingError,
  BackupTargetNotEmptyError,
  BackupTruncatedError,
  BackupUntrustedKeyError,
  InvalidBackupRequestError,
  MANIFEST_FILE,
  MemoryBackupStorage,
  SIGNATURE_CONTEXT,
  backupKeyId,
  backupPublicKey,
  backupSignerFromPkcs8,
  canonicalJson,
  exportBackup,
  generateBackupSigningKey,
  importBackup,
  manifestBytes,
  newBackupId,
  parseBackupPublicKeys,
  parseManifest,
  secretFieldIn,
  signedBytes,
  verifyBackup,
  verifyBackupSignature,
  type BackupManifest,
  type BackupScope,
  type BackupSigner,
  type BackupSource,
  type BackupTarget,
  type ImportRun,
  type StreamHead,
} from "../../core/backup/index.js";
import {
  documentStreamId,
  workspaceStreamId,
  type ReadStreamOptions,
  type ReadStreamResult,
  type StoredEvent,
  type StreamId,
} from "../../core/eventstore/index.js";
import { inScope } from "../../core/backup/format.js";

// ------------------------------------------------------------------------------------------------ fakes

/** An in-memory event history that serves an export (pages of 3 heads). */
class MemorySource implements BackupSource {
  readonly tableName = "memory-table";
  readonly streams = new Map<string, StoredEvent[]>();

  append(streamId: string, type: string, data: Record<string, unknown>): StoredEvent {
    const list = this.streams.get(streamId) ?? [];
    const e: StoredEvent = {
      streamId: streamId as StreamId,
      version: list.length + 1,
      eventId: randomUUID(),
      type,
      schemaVersion: 1,
      occurredAt: "2026-11-30T12:00:00.000Z",
      recordedAt: new Date(Date.UTC(2026, 10, 30, 12, 0, list.length)).toISOString(),
      data,
    };
    list.push(e);
    this.streams.set(streamId, list);
    return e;
  }

  async *listStreamHeads(scope: BackupScope): AsyncIterable<readonly StreamHead[]> {
    const heads = [...this.streams]
      .filter(([s]) => inScope(scope, s))
      .map(([streamId, list]) => ({ streamId, version: list.length }));
    for (let i = 0; i < heads.length; i += 3) yield heads.slice(i, i + 3);
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

/**
 * A target that keeps runs in memory and checks what DynamoDB's conditions check: each run continues the stream
 * exactly. Writes take a random moment, so an importer that sent a continuation before its start was written fails.
 */
class MemoryTarget implements BackupTarget {
  readonly tableName = "memory-target";
  readonly streams = new Map<string, StoredEvent[]>();
  calls = 0;
  maxInFlight = 0;
  private inFlight = 0;

  async isEmpty(): Promise<boolean> {
    return this.streams.size === 0 && this.calls === 0;
  }

  async importEvents(runs: readonly ImportRun[]): Promise<void> {
    this.calls += 1;
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      const heads = runs.map((r) => {
        const head = this.streams.get(r.streamId)?.length ?? 0;
        if (r.events[0]?.version !== head + 1)
          throw new Error(`${r.streamId}: run at ${r.events[0]?.version}, head ${head}`);
        return head;
      });
      await new Promise((res) => setTimeout(res, Math.random() * 3));
      runs.forEach((r, i) => {
        const list = this.streams.get(r.streamId) ?? [];
        if (list.length !== heads[i]) throw new Error(`${r.streamId} moved while written`);
        list.push(...r.events);
        this.streams.set(r.streamId, list);
      });
    } finally {
      this.inFlight -= 1;
    }
  }
}

const WS = "unit-ws";

function history(docs = 10): MemorySource {
  const src = new MemorySource();
  const ws = workspaceStreamId(WS);
  src.append(ws, "MasterKeyCreated", { WorkspaceId: WS, KeyId: `ws-${WS}/mk/1`, Kcv: "ABCDEF" });
  for (let d = 0; d < docs; d++) {
    const s = documentStreamId(WS, `doc${String(d).padStart(3, "0")}`);
    const doc = { AggregateId: `doc${String(d).padStart(3, "0")}`, WorkspaceId: WS };
    src.append(s, "DocumentEncryptionKeysAdded", { ...doc, KeyId: `ws-${WS}/mk/1`, Artifacts: [] });
    if (d % 2 === 0) src.append(s, "DocumentStored", doc);
    if (d % 3 === 0) src.append(s, "DocumentDeleted", doc);
  }
  for (let i = 0; i < 30; i++) src.append(ws, "DrillCompleted", { WorkspaceId: WS, Ok: true, N: i });
  src.append(documentStreamId("another", "x"), "DocumentStored", {
    AggregateId: "x",
    WorkspaceId: "another",
  });
  return src;
}

const signer = backupSignerFromPkcs8(generateBackupSigningKey());
const trustedKeys = [backupPublicKey(signer.publicKey)];
const scope: BackupScope = { kind: "workspace", workspaceId: WS };

async function fresh(maxEventsPerFile = 10, docs = 10) {
  const source = history(docs);
  const storage = new MemoryBackupStorage();
  const r = await exportBackup({ source, storage, signer, scope, maxEventsPerFile });
  return { source, storage, r };
}

function manifestOf(storage: MemoryBackupStorage, id: string): BackupManifest {
  return parseManifest(storage.peek(`${id}/${MANIFEST_FILE}`)!, id);
}

async function resign(
  storage: MemoryBackupStorage,
  m: BackupManifest,
  by: BackupSigner = signer,
  at: string = m.backupId,
): Promise<void> {
  const value = Buffer.from(await by.sign(signedBytes(m))).toString("base64");
  storage.overwrite(
    `${at}/${MANIFEST_FILE}`,
    manifestBytes({ ...m, signature: { ...m.signature, keyId: by.keyId, value } }),
  );
}

/** Replaces a file's lines and fixes its manifest entry (not the signature). */
function rewrite(
  storage: MemoryBackupStorage,
  m: BackupManifest,
  index: number,
  edit: (lines: string[]) => string[],
): BackupManifest {
  const f = m.files[index]!;
  const name = `${m.backupId}/${f.name}`;
  const lines = storage.peek(name)!.toString("utf8").split("\n").slice(0, -1);
  const out = edit(lines);
  const bytes = Buffer.from(out.map((l) => `${l}\n`).join(""));
  storage.overwrite(name, bytes);
  const files = m.files.map((x, i) =>
    i === index
      ? {
          ...x,
          bytes: bytes.length,
          events: out.length,
          sha256: createHash("sha256").update(bytes).digest("hex"),
        }
      : x,
  );
  return {
    ...m,
    files,
    totals: {
      ...m.totals,
      events: files.reduce((n, x) => n + x.events, 0),
      bytes: files.reduce((n, x) => n + x.bytes, 0),
    },
  };
}

const verify = (storage: MemoryBackupStorage, backupId: string) =>
  verifyBackup({ storage, backupId, trustedKeys });

// ------------------------------------------------------------------------------------------------ tests

describe("canonical JSON and the signed bytes", () => {
  it("sorts keys by UTF-16 code units at every depth, keeps array order, writes no whitespace", () => {
    assert.equal(
      canonicalJson({ b: 1, a: [{ d: null, c: "x" }, 2], é: true, B: "q" }),
      '{"B":"q","a":[{"c":"x","d":null},2],"b":1,"é":true}',
    );
    assert.equal(
      canonicalJson({ "\u{1F600}": 1, "\uFB01": 2 }),
      '{"\u{1F600}":1,"\uFB01":2}',
      "surrogates sort before U+FB01",
    );
    assert.equal(canonicalJson('line\nquote"\u0001'), JSON.stringify('line\nquote"\u0001'));
    assert.equal(canonicalJson([]), "[]");
    assert.equal(canonicalJson({}), "{}");
  });

  it("refuses what has no single canonical form", () => {
    for (const v of [1.5, Number.NaN, 2 ** 60, undefined, () => 1, new Date(0), { a: undefined }, 10n]) {
      assert.throws(() => canonicalJson(v), TypeError);
    }
  });

  it("signs the context line and the manifest without its signature", async () => {
    const { storage, r } = await fresh();
    const m = manifestOf(storage, r.backupId);
    const bytes = signedBytes(m);
    assert.ok(bytes.toString("utf8").startsWith(`${SIGNATURE_CONTEXT}{"after":{}`));
    assert.ok(!bytes.toString("utf8").includes('"signature"'));
    assert.deepEqual(signedBytes({ ...m, signature: { ...m.signature, value: "x" } }), bytes);
    assert.equal(SIGNATURE_CONTEXT, `${BACKUP_FORMAT}/1 manifest\n`);
    // manifest.json is the canonical form of the whole manifest plus a line end.
    assert.equal(storage.peek(`${r.backupId}/${MANIFEST_FILE}`)!.toString("utf8"), `${canonicalJson(m)}\n`);
  });
});

describe("signatures and pinned keys", () => {
  it("verifies with the signer's public key only, and not after any change", async () => {
    const msg = Buffer.from("manifest bytes");
    const sig = await signer.sign(msg);
    assert.equal(sig.length, 64);
    assert.ok(verifyBackupSignature(signer.publicKey, msg, sig));
    assert.ok(!verifyBackupSignature(signer.publicKey, Buffer.from("manifest byteZ"), sig));
    const other = backupSignerFromPkcs8(generateBackupSigningKey());
    assert.ok(!verifyBackupSignature(other.publicKey, msg, sig));
    assert.ok(!verifyBackupSignature(Buffer.alloc(31), msg, sig));
  });

  it("reads pinned keys as raw bytes, base64 or base64url; names them by SHA-256", () => {
    const raw = Buffer.from(signer.publicKey);
    const id = createHash("sha256").update(raw).digest("hex").slice(0, 32);
    assert.equal(backupKeyId(raw), id);
    assert.equal(signer.keyId, id);
    assert.equal(backupPublicKey(raw.toString("base64")).keyId, id);
    assert.equal(backupPublicKey(raw.toString("base64url")).keyId, id);
    assert.deepEqual(
      parseBackupPublicKeys(` ${raw.toString("base64")}, ${raw.toString("base64")}\n`).map((k) => k.keyId),
      [id, id],
    );
    assert.deepEqual(parseBackupPublicKeys(undefined), []);
    assert.throws(() => backupPublicKey(Buffer.alloc(16)), InvalidBackupRequestError);
    assert.throws(() => backupSignerFromPkcs8(Buffer.from("not a key")), InvalidBackupRequestError);
  });
});

describe("ids and the secret-field guard", () => {
  it("makes UUID v7 backup ids that sort by time", () => {
    const a = newBackupId(new Date(1_800_000_000_000));
    const b = newBackupId(new Date(1_800_000_000_001));
    assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(a < b);
    assert.equal(a.slice(0, 8), (1_800_000_000_000).toString(16).padStart(12, "0").slice(0, 8));
  });

  it("finds fields named like plaintext secrets at any depth, and nothing in the catalogue's fields", () => {
    assert.equal(secretFieldIn({ Artifacts: [{ WrappedDek: "x", WrapNonce: "y" }], Kcv: "ABC" }), undefined);
    assert.equal(
      secretFieldIn({ Checks: [{ Detail: { passphrase: "x" } }] }),
      "data.Checks[0].Detail.passphrase",
    );
    assert.equal(secretFieldIn({ Dek: "x" }), "data.Dek");
    assert.equal(secretFieldIn({ PrivateKey: "x" }), "data.PrivateKey");
    assert.equal(secretFieldIn({ TaskToken: "t", Recipient: "pub", Ciphertext: "c" }), undefined);
  });
});

describe("export and verify (in memory)", () => {
  it("writes a workspace's streams in order, split every N events, and verifies", async () => {
    const { source, storage, r } = await fresh(10);
    const m = manifestOf(storage, r.backupId);
    const expected = [...source.streams].filter(([s]) => inScope(scope, s));
    assert.equal(r.streams, expected.length);
    assert.equal(
      r.events,
      expected.reduce((n, [, l]) => n + l.length, 0),
    );
    assert.equal(m.files.length, Math.ceil(r.events / 10));
    assert.ok(m.files.slice(0, -1).every((f) => f.events === 10));
    assert.deepEqual(m.streams[workspaceStreamId(WS)], { count: 31, first: 1, last: 31 });
    assert.equal(m.streams[documentStreamId("another", "x")], undefined);
    // Lines: the store's envelope order, streams in id order, each stream's lines together.
    const lines = m.files.flatMap((f) =>
      storage.peek(`${r.backupId}/${f.name}`)!.toString().split("\n").slice(0, -1),
    );
    assert.deepEqual(Object.keys(JSON.parse(lines[0]!) as object), [
      "streamId",
      "version",
      "eventId",
      "type",
      "schemaVersion",
      "occurredAt",
      "recordedAt",
      "data",
    ]);
    const order = lines.map((l) => (JSON.parse(l) as { streamId: string }).streamId);
    assert.deepEqual(order, [...order].sort());
    const v = await verify(storage, r.backupId);
    assert.equal(v.events, r.events);
    assert.equal(v.manifestSha256, r.manifestSha256);
  });

  it("writes no empty file when the events fill the last file exactly; refuses to reuse a backup id", async () => {
    const source = history(0); // 31 workspace events
    const storage = new MemoryBackupStorage();
    const r = await exportBackup({ source, storage, signer, scope, maxEventsPerFile: 31 });
    assert.equal(r.files, 1);
    await assert.rejects(
      exportBackup({ source, storage, signer, scope, backupId: r.backupId }),
      BackupExistsError,
    );
    await assert.rejects(
      exportBackup({ source, storage, signer, scope, maxEventsPerFile: 0 }),
      InvalidBackupRequestError,
    );
    await assert.rejects(
      exportBackup({ source, storage, signer, scope, kind: "incremental" }),
      InvalidBackupRequestError,
    );
  });

  it("reads a long stream in slices and short ones in batches", async () => {
    const source = new MemorySource();
    const ws = workspaceStreamId(WS);
    for (let i = 0; i < 2500; i++) source.append(ws, "DrillCompleted", { Ok: true, N: i });
    const calls: string[] = [];
    const spy: BackupSource = {
      tableName: source.tableName,
      listStreamHeads: (s) => source.listStreamHeads(s),
      readEvents: (refs) => {
        calls.push(`events ${refs.length}`);
        return source.readEvents(refs);
      },
      readStream: (id, o) => {
        calls.push(`stream ${o?.fromVersion}+${o?.limit}`);
        return source.readStream(id, o);
      },
    };
    const storage = new MemoryBackupStorage();
    const r = await exportBackup({ source: spy, storage, signer, scope });
    assert.deepEqual(calls, ["stream 1+1000", "stream 1001+1000", "stream 2001+500"]);
    assert.equal((await verify(storage, r.backupId)).events, 2500);
  });

  const failures: [
    string,
    new (...a: never[]) => Error,
    (s: MemoryBackupStorage, m: BackupManifest) => Promise<void> | void,
  ][] = [
    ["no manifest", BackupNotFoundError, (s, m) => void s.remove(`${m.backupId}/${MANIFEST_FILE}`)],
    [
      "a manifest that is not JSON",
      BackupManifestInvalidError,
      (s, m) => s.overwrite(`${m.backupId}/${MANIFEST_FILE}`, Buffer.from("{nope")),
    ],
    [
      "a manifest of format version 2",
      BackupManifestInvalidError,
      (s, m) => s.overwrite(`${m.backupId}/${MANIFEST_FILE}`, manifestBytes({ ...m, formatVersion: 2 as 1 })),
    ],
    [
      "a byte of the manifest changed",
      BackupManifestTamperedError,
      (s, m) =>
        s.overwrite(
          `${m.backupId}/${MANIFEST_FILE}`,
          manifestBytes({ ...m, exportedAt: "2020-01-01T00:00:00.000Z" }),
        ),
    ],
    [
      "signed by another key",
      BackupUntrustedKeyError,
      (s, m) => resign(s, m, backupSignerFromPkcs8(generateBackupSigningKey())),
    ],
    [
      "signed but not self-consistent (totals)",
      BackupManifestInvalidError,
      (s, m) => resign(s, { ...m, totals: { ...m.totals, events: m.totals.events + 1 } }),
    ],
    [
      "a full backup whose stream starts at 2",
      BackupManifestInvalidError,
      (s, m) => {
        const [id, r] = Object.entries(m.streams)[1]!;
        return resign(s, {
          ...m,
          streams: { ...m.streams, [id]: { count: r.count - 1, first: 2, last: r.last } },
        });
      },
    ],
    [
      "another backup's manifest under this id",
      BackupManifestMismatchError,
      (s, m) => resign(s, { ...m, backupId: newBackupId() }, signer, m.backupId),
    ],
    ["a file missing", BackupFileMissingError, (s, m) => void s.remove(`${m.backupId}/${m.files[1]!.name}`)],
    [
      "a file cut short",
      BackupTruncatedError,
      (s, m) =>
        s.overwrite(
          `${m.backupId}/${m.files[0]!.name}`,
          s.peek(`${m.backupId}/${m.files[0]!.name}`)!.subarray(0, 100),
        ),
    ],
    [
      "a file longer than listed",
      BackupFileChecksumError,
      (s, m) =>
        s.overwrite(
          `${m.backupId}/${m.files[0]!.name}`,
          Buffer.concat([s.peek(`${m.backupId}/${m.files[0]!.name}`)!, Buffer.from("\n")]),
        ),
    ],
    [
      "a byte changed",
      BackupFileChecksumError,
      (s, m) => {
        const b = s.peek(`${m.backupId}/${m.files[0]!.name}`)!;
        b[50] = b[50]! ^ 1;
        s.overwrite(`${m.backupId}/${m.files[0]!.name}`, b);
      },
    ],
    [
      "an unlisted events file",
      BackupManifestMismatchError,
      (s, m) => s.overwrite(`${m.backupId}/events-9999.jsonl`, Buffer.from("{}\n")),
    ],
    [
      "a line that is not JSON (re-signed)",
      BackupEventInvalidError,
      (s, m) =>
        resign(
          s,
          rewrite(s, m, 0, (ls) => [ls[0]!.slice(0, -3), ...ls.slice(1)]),
        ),
    ],
    [
      "a line that is not an event (re-signed)",
      BackupEventInvalidError,
      (s, m) =>
        resign(
          s,
          rewrite(s, m, 0, (ls) => [
            JSON.stringify({ ...JSON.parse(ls[0]!), eventId: "nope" }),
            ...ls.slice(1),
          ]),
        ),
    ],
    [
      "a wrap record of another document (re-signed)",
      BackupEventInvalidError,
      (s, m) =>
        resign(
          s,
          rewrite(s, m, 3, (ls) =>
            ls.map((l) => {
              const e = JSON.parse(l) as { type: string; data: object };
              return e.type === "DocumentEncryptionKeysAdded"
                ? JSON.stringify({ ...e, data: { ...e.data, AggregateId: "zzz" } })
                : l;
            }),
          ),
        ),
    ],
    [
      "the last line without its line end (re-signed)",
      BackupTruncatedError,
      (s, m) => {
        const last = m.files.length - 1;
        const f = m.files[last]!;
        const bytes = s.peek(`${m.backupId}/${f.name}`)!.subarray(0, f.bytes - 1);
        s.overwrite(`${m.backupId}/${f.name}`, bytes);
        const files = m.files.map((x, i) =>
          i === last
            ? { ...x, bytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") }
            : x,
        );
        return resign(s, { ...m, files, totals: { ...m.totals, bytes: m.totals.bytes - 1 } });
      },
    ],
    [
      "fewer events in a file than listed (re-signed)",
      BackupManifestMismatchError,
      (s, m) => {
        const edited = rewrite(s, m, 0, (ls) => ls);
        const files = edited.files.map((f, i) => (i === 0 ? { ...f, events: f.events + 1 } : f));
        const last = files.length - 1;
        const moved = files.map((f, i) => (i === last ? { ...f, events: f.events - 1 } : f));
        return resign(s, { ...edited, files: moved });
      },
    ],
    ["a stream with no lines (re-signed)", BackupStreamMissingError, (s, m) => rewriteVictim(s, m)],
    [
      "a stream that ends early (re-signed)",
      BackupEventGapError,
      (s, m) => {
        // The workspace stream's last event removed from the last file.
        const last = m.files.length - 1;
        return resign(
          s,
          rewrite(s, m, last, (ls) => ls.slice(0, -1)),
        );
      },
    ],
    [
      "a repeated event (re-signed)",
      BackupEventGapError,
      (s, m) =>
        resign(
          s,
          rewrite(s, m, 0, (ls) => [ls[0]!, ...ls.slice(0, -1)]),
        ),
    ],
    [
      "a stream whose lines are not together (re-signed)",
      BackupEventGapError,
      (s, m) =>
        resign(
          s,
          rewrite(s, m, 3, (ls) => {
            // File 4 begins: workspace v31, doc000 v1..v3, doc001 v1: doc000's last line moved after doc001's.
            const ids = ls
              .slice(0, 5)
              .map((l) => (JSON.parse(l) as { streamId: string; version: number }).version);
            assert.deepEqual(ids, [31, 1, 2, 3, 1]);
            const [a, b, c, d, e, ...rest] = ls;
            return [a!, b!, c!, e!, d!, ...rest];
          }),
        ),
    ],
    [
      "a stream outside the scope (re-signed)",
      BackupManifestMismatchError,
      (s, m) =>
        resign(
          s,
          rewrite(s, m, 0, (ls) => [
            ...ls,
            JSON.stringify({
              ...JSON.parse(ls[0]!),
              streamId: documentStreamId("another", "y"),
              version: 1,
              data: { AggregateId: "y", WorkspaceId: "another" },
            }),
          ]),
        ),
    ],
  ];

  for (const [what, error, corrupt] of failures) {
    it(`refuses ${what}: ${error.name}`, async () => {
      const { storage, r } = await fresh(10);
      await corrupt(storage, manifestOf(storage, r.backupId));
      await assert.rejects(verify(storage, r.backupId), (err: Error) => {
        assert.ok(err instanceof error, `${err.name}: ${err.message}`);
        return true;
      });
      const target = new MemoryTarget();
      await assert.rejects(importBackup({ storage, backupId: r.backupId, target, trustedKeys }), error);
      assert.equal(target.calls, 0, "nothing written");
    });
  }

  it("needs at least one pinned key", async () => {
    const { storage, r } = await fresh();
    await assert.rejects(
      verifyBackup({ storage, backupId: r.backupId, trustedKeys: [] }),
      InvalidBackupRequestError,
    );
    await assert.rejects(verifyBackup({ storage, backupId: "nope", trustedKeys }), InvalidBackupRequestError);
  });
});

/** Removes every line of one stream that lies wholly inside file 4 (document streams), and re-signs. */
async function rewriteVictim(s: MemoryBackupStorage, m: BackupManifest): Promise<void> {
  const lines = s.peek(`${m.backupId}/${m.files[3]!.name}`)!.toString().split("\n").slice(0, -1);
  const ids = lines.map((l) => (JSON.parse(l) as { streamId: string }).streamId);
  const victim = ids.find((id) => ids.filter((x) => x === id).length === m.streams[id]!.count);
  assert.ok(victim, "a stream wholly inside file 4");
  await resign(
    s,
    rewrite(s, m, 3, (ls) => ls.filter((_, i) => ids[i] !== victim)),
  );
}

describe("increments and import (in memory)", () => {
  it("exports after the chain's positions and restores full + increments in order, waiting at continuations", async () => {
    const source = history(10);
    const storage = new MemoryBackupStorage();
    const full = await exportBackup({ source, storage, signer, scope, maxEventsPerFile: 7 });
    const ws = workspaceStreamId(WS);
    for (let i = 0; i < 60; i++) source.append(ws, "DrillCompleted", { Ok: true, N: 100 + i });
    source.append(documentStreamId(WS, "doc001"), "DocumentDeleted", {
      AggregateId: "doc001",
      WorkspaceId: WS,
    });
    source.append(documentStreamId(WS, "new"), "DocumentStored", { AggregateId: "new", WorkspaceId: WS });
    const inc = await exportBackup({
      source,
      storage,
      signer,
      scope,
      kind: "incremental",
      baseBackupId: full.backupId,
      maxEventsPerFile: 7,
    });
    const m = manifestOf(storage, inc.backupId);
    assert.deepEqual(m.after, {
      [ws]: 31,
      [documentStreamId(WS, "doc001")]: 1,
      [documentStreamId(WS, "new")]: 0,
    });
    assert.deepEqual(m.streams[ws], { count: 60, first: 32, last: 91 });
    assert.equal(inc.events, 62);

    const target = new MemoryTarget();
    const r = await importBackup({
      storage,
      backupId: inc.backupId,
      target,
      trustedKeys,
      batchEvents: 4,
      concurrency: 4,
    });
    assert.equal(r.events, full.events + inc.events);
    assert.ok(target.maxInFlight > 1, "writes overlap where they may");
    for (const [s, list] of source.streams) {
      if (!inScope(scope, s)) continue;
      assert.deepEqual(target.streams.get(s), list, s);
    }
    await assert.rejects(
      importBackup({ storage, backupId: inc.backupId, target, trustedKeys }),
      BackupTargetNotEmptyError,
    );
  });

  it("refuses a chain that does not continue: after positions, base checksum, base of another scope", async () => {
    const source = history(4);
    const storage = new MemoryBackupStorage();
    const full = await exportBackup({ source, storage, signer, scope });
    source.append(workspaceStreamId(WS), "DrillCompleted", { Ok: true });
    const inc = await exportBackup({
      source,
      storage,
      signer,
      scope,
      kind: "incremental",
      baseBackupId: full.backupId,
    });
    const m = manifestOf(storage, inc.backupId);
    const ws = workspaceStreamId(WS);

    // Positions that skip a version (re-signed so that only the chain check can see it).
    await resign(storage, {
      ...m,
      after: { [ws]: 32 },
      streams: { [ws]: { count: 1, first: 33, last: 33 } },
    });
    await assert.rejects(verify(storage, inc.backupId), BackupChainError);
    // The base's manifest hash does not match.
    await resign(storage, { ...m, base: { ...m.base!, manifestSha256: "0".repeat(64) } });
    await assert.rejects(verify(storage, inc.backupId), BackupChainError);
    // A table-wide increment on a workspace base.
    await resign(storage, m);
    await verify(storage, inc.backupId);
    await assert.rejects(
      exportBackup({
        source,
        storage,
        signer,
        scope: { kind: "table" },
        kind: "incremental",
        baseBackupId: full.backupId,
      }),
      BackupChainError,
    );
    // A base of another table.
    const other = new MemorySource();
    Object.assign(other, { tableName: "elsewhere" });
    await assert.rejects(
      exportBackup({
        source: other,
        storage,
        signer,
        scope,
        kind: "incremental",
        baseBackupId: full.backupId,
      }),
      BackupChainError,
    );
  });
});
