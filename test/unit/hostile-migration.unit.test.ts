/**
 * Hostile input for the ArquivoMate import (core/migration/arquivomate-backup.ts `readArquivoMateBackup`, and the
 * migration's verify phase in core/migration/migration-service.ts), property-based. Valid backups come from the
 * independent generator (test/support/arquivomate-backup-generator.ts). Every refusal must be a `MigrationError`
 * (the migration may also refuse its own input with `InvalidInputError`); a backup accepted after a change must
 * say exactly what its JSON says; and a refused migration must not have touched the HSM, the event store, the kits,
 * the rotation engine or the data-key service: fakes record every call and none may happen.
 */
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { describe, it } from "node:test";
import fc from "fast-check";
import { readArquivoMateBackup, type ArquivoMateBackup } from "../../core/migration/arquivomate-backup.js";
import { BackupTooLargeError, MigrationError } from "../../core/migration/errors.js";
import { MigrationService, type MigrationDeps } from "../../core/migration/migration-service.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import {
  backupZip,
  checksumLine,
  generateBackup,
  JSON_NAME,
  SHA256_NAME,
  serialize,
  writeZip,
} from "../support/arquivomate-backup-generator.js";
import {
  applyBytes,
  applyJson,
  assertNoPollution,
  assertTyped,
  byteMutation,
  describeJsonMutation,
  holds,
  holdsAsync,
  jsonMutation,
  outcomeOf,
  probe,
  rejected,
  thrown,
  type Json,
} from "./hostile-harness.js";

const exportShape = generateBackup({ documents: 4, supersededEvery: 2 });
const bareShape = generateBackup({
  documents: 3,
  shape: "bare-array",
  supersededEvery: 2,
  legacyKey: exportShape.legacyKey,
});
const bases = [exportShape, bareShape];
const baseResults = bases.map((b) => readArquivoMateBackup(b.zip));

/** The facts that matter of a read backup: each current record and its wrapped DEKs. */
function factsOf(b: ArquivoMateBackup) {
  return {
    itemCount: b.itemCount,
    documents: b.documents.map((d) => ({
      documentId: d.documentId,
      eventId: d.eventId,
      sequence: d.sequence,
      artifacts: d.artifacts.map((a) => [a.artifact, a.wrappedDek, a.wrapNonce]),
    })),
  };
}

/**
 * What a correct reader must report for an accepted JSON document, computed independently: items of either shape,
 * ids lower-cased, each document's current record the last by sequence, documents in id order.
 */
function expectedFacts(value: Json): ReturnType<typeof factsOf> {
  const items = (Array.isArray(value) ? value : ((value as { items: Json[] }).items ?? [])) as Record<
    string,
    Json
  >[];
  const current = new Map<
    string,
    { documentId: string; eventId: string; sequence: number; artifacts: string[][] }
  >();
  for (const it of items) {
    const bare = Array.isArray(value);
    const doc = String(bare ? it.StreamId : it.streamId).toLowerCase();
    const event = (bare ? it.Event : it.event) as { Artifacts: Record<string, string>[] };
    const record = {
      documentId: doc,
      eventId: String(bare ? it.EventId : it.eventId).toLowerCase(),
      sequence: Number(bare ? it.Sequence : it.sequence),
      artifacts: event.Artifacts.map((a) => [a.Artifact!, a.WrappedDek!, a.WrapNonce!]),
    };
    const prev = current.get(doc);
    if (!prev || record.sequence > prev.sequence) current.set(doc, record);
  }
  return {
    itemCount: items.length,
    documents: [...current.values()].sort((a, b) => (a.documentId < b.documentId ? -1 : 1)),
  };
}

// ---- recording fakes: every dependency of the migration, each call recorded and answered with a stop ----------

class Stop extends Error {
  override readonly name = "Stop(first read)";
}

function recordingDeps(): { deps: MigrationDeps; calls: string[] } {
  const calls: string[] = [];
  const fake = (name: string) =>
    new Proxy(
      {},
      {
        get: (_t, prop) => {
          if (typeof prop === "symbol" || prop === "then") return undefined;
          return (..._args: unknown[]) => {
            calls.push(`${name}.${prop}`);
            throw new Stop(`${name}.${prop} called`);
          };
        },
      },
    );
  return {
    calls,
    deps: {
      keyStore: fake("keyStore"),
      events: fake("events"),
      kits: fake("kits"),
      rotation: fake("rotation"),
      dataKeys: fake("dataKeys"),
    } as unknown as MigrationDeps,
  };
}

/** The first call a migration may make once the backup and the legacy key are verified: a read of the workspace. */
const FIRST_READ = "events.readStream";

async function migrateChecked(zip: Uint8Array, p: ReturnType<typeof probe>, label: string): Promise<unknown> {
  const { deps, calls } = recordingDeps();
  const service = new MigrationService(deps);
  const err = await p.timeAsync(() =>
    rejected(() =>
      service.migrate({
        workspaceId: "migrated",
        backup: zip,
        legacyKey: exportShape.legacyKey,
        administrators: [],
      }),
    ),
  );
  p.count(`${label}: ${outcomeOf(err)}`);
  if (err instanceof Stop) {
    // Verified: the migration went on to read the workspace, and that read was the first call of all.
    assert.deepEqual(calls, [FIRST_READ]);
    return undefined;
  }
  assertTyped(err, [MigrationError, InvalidInputError]);
  assert.deepEqual(calls, [], `refused (${outcomeOf(err)}) after calling ${calls.join(", ")}`);
  return err;
}

const MIGRATION_ERRORS = [MigrationError] as const;

describe("ArquivoMate backup reader: arbitrary input", () => {
  it("refuses arbitrary bytes (plain, behind a ZIP signature) with a MigrationError", async (t) => {
    const p = probe(t);
    const prefix = fc.constantFrom(
      Buffer.alloc(0),
      Buffer.from("PK\x03\x04"),
      Buffer.from("PK\x05\x06"),
      exportShape.zip.subarray(0, 30),
    );
    holds(
      // Under 22 bytes (no room for an end-of-directory record) fflate scans 64 KiB before it gives up: kept, but rarer.
      fc.property(
        prefix,
        fc.oneof(
          { weight: 1, arbitrary: fc.uint8Array({ maxLength: 21 }) },
          { weight: 9, arbitrary: fc.uint8Array({ minLength: 22, maxLength: 1024 }) },
        ),
        (pre, bytes) => {
          const err = p.time(() => thrown(() => readArquivoMateBackup(Buffer.concat([pre, bytes]))));
          p.count(outcomeOf(err));
          assertTyped(err, MIGRATION_ERRORS);
        },
      ),
      p.params,
    );
    p.report();
  });

  it("refuses arbitrary JSON in a well-formed ZIP (checksum right), accepting only an empty backup", async (t) => {
    const p = probe(t);
    const item = fc.dictionary(
      fc.constantFrom(
        "streamId",
        "eventId",
        "sequence",
        "timestampUtc",
        "event",
        "StreamId",
        "Event",
        "__proto__",
      ),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const doc = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }),
      fc.array(item, { maxLength: 4 }),
      fc.record({
        formatVersion: fc.constantFrom("1", 1, "2"),
        exportedAtUtc: fc.constantFrom("2025-03-14T09:26:53Z", "yesterday"),
        itemCount: fc.oneof(fc.nat({ max: 5 }), fc.double()),
        items: fc.array(item, { maxLength: 4 }),
      }),
    );
    holds(
      fc.property(doc, fc.boolean(), (value, deflate) => {
        const json = Buffer.from(JSON.stringify(value) ?? "null");
        const zip = backupZip(json, { method: deflate ? "deflate" : "store" });
        const err = p.time(() => thrown(() => readArquivoMateBackup(zip)));
        p.count(outcomeOf(err));
        assertNoPollution();
        if (err === undefined) {
          const b = readArquivoMateBackup(zip);
          assert.equal(b.itemCount, 0, `accepted ${json.toString().slice(0, 200)}`);
          return;
        }
        assertTyped(err, MIGRATION_ERRORS);
      }),
      p.params,
    );
    p.report();
  });
});

describe("ArquivoMate backup reader: mutations of valid backups", () => {
  it("refuses fields deleted, retyped, huge, deeply nested or added (`__proto__` too); what it accepts is what the JSON says", async (t) => {
    const p = probe(t);
    const arb = fc
      .nat({ max: bases.length - 1 })
      .chain((b) =>
        fc.tuple(
          fc.constant(b),
          jsonMutation(bases[b]!.value as Json, ["delete", "retype", "huge-string", "deep", "add-key"]),
        ),
      );
    holds(
      fc.property(arb, ([b, m]) => {
        const value = applyJson(bases[b]!.value as Json, m);
        const zip = backupZip(serialize(value));
        const err = p.time(() => thrown(() => readArquivoMateBackup(zip)));
        p.count(`${m.kind}: ${outcomeOf(err)}`);
        assertNoPollution();
        if (err !== undefined) return assertTyped(err, MIGRATION_ERRORS);
        assert.deepEqual(factsOf(readArquivoMateBackup(zip)), expectedFacts(value), describeJsonMutation(m));
      }),
      p.params,
    );
    p.report();
  });

  it("refuses a changed ZIP (bit flips, cuts, insertions), or reads exactly the same backup", async (t) => {
    const p = probe(t);
    const arb = fc
      .nat({ max: bases.length - 1 })
      .chain((b) => fc.tuple(fc.constant(b), byteMutation(bases[b]!.zip.length)));
    holds(
      fc.property(arb, ([b, m]) => {
        const zip = applyBytes(bases[b]!.zip, m);
        const err = p.time(() => thrown(() => readArquivoMateBackup(zip)));
        p.count(`${m.kind}: ${outcomeOf(err)}`);
        if (err !== undefined) return assertTyped(err, MIGRATION_ERRORS);
        const read = readArquivoMateBackup(zip);
        assert.equal(read.sha256, baseResults[b]!.sha256, `${m.kind}: another JSON accepted`);
        assert.deepEqual(factsOf(read), factsOf(baseResults[b]!));
      }),
      p.params,
    );
    p.report();
  });

  it("refuses ZIP entries with lying sizes, other methods, doubled or missing entries, and bad checksum files", async (t) => {
    const p = probe(t);
    const json = exportShape.json;
    const line = checksumLine(json);
    const size = fc.option(
      fc.oneof(fc.nat({ max: 100_000 }), fc.constant(json.length), fc.constant(0xffff_ffff)),
      {
        nil: undefined,
        freq: 2,
      },
    );
    const method = fc.constantFrom("store" as const, "deflate" as const);
    // Mostly the two right entries, each possibly with a lying size, another name or checksum text, plus extras.
    const jsonEntry = fc.record({
      name: fc.oneof(
        { weight: 4, arbitrary: fc.constant(JSON_NAME) },
        fc.constantFrom(`./${JSON_NAME}`, JSON_NAME.toUpperCase(), ""),
      ),
      data: fc.constant(json),
      method,
      declaredSize: size,
    });
    const checksumEntry = fc.record({
      name: fc.oneof(
        { weight: 4, arbitrary: fc.constant(SHA256_NAME) },
        fc.constantFrom(JSON_NAME, "x.sha256"),
      ),
      data: fc
        .oneof(
          { weight: 3, arbitrary: fc.constant(line) },
          fc.constantFrom(
            line.toUpperCase(),
            line.replace("  ", " *"),
            line.replace("  ", "  ./"),
            `${line}${line}`,
            `\r\n${line}\r\n`,
          ),
          fc.string({ unit: "binary", maxLength: 120 }),
          fc.constant(`${"0".repeat(64)}  ${JSON_NAME}\n`),
        )
        .map((text) => Buffer.from(text)),
      method,
      declaredSize: size,
    });
    const extra = fc.record({
      name: fc.oneof(
        fc.constantFrom(JSON_NAME, SHA256_NAME, "readme.txt", "../x"),
        fc.string({ maxLength: 40 }),
      ),
      data: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
      method,
    });
    const entries = fc
      .tuple(
        fc.option(jsonEntry, { freq: 8 }),
        fc.option(checksumEntry, { freq: 8 }),
        fc.array(extra, { maxLength: 2 }),
        fc.boolean(),
      )
      .map(([j, c, more, reverse]) => {
        const list = [j, c, ...more]
          .filter((e) => e !== null)
          .map((e) => {
            const { declaredSize, ...rest } = e as { declaredSize?: number | undefined } & typeof e;
            return declaredSize === undefined ? rest : { ...rest, declaredSize };
          });
        return reverse ? list.reverse() : list;
      });
    holds(
      fc.property(entries, fc.integer({ min: 16, max: 100_000 }), (list, maxJsonBytes) => {
        const zip = writeZip(list as Parameters<typeof writeZip>[0]);
        const err = p.time(() => thrown(() => readArquivoMateBackup(zip, { maxJsonBytes })));
        p.count(outcomeOf(err));
        if (err !== undefined) return assertTyped(err, MIGRATION_ERRORS);
        assert.deepEqual(factsOf(readArquivoMateBackup(zip, { maxJsonBytes })), factsOf(baseResults[0]!));
      }),
      p.params,
    );
    p.report();
  });
});

describe("migration: nothing is written for a refused backup", () => {
  it("a hostile backup stops the migration before its first call to the HSM, event store, kits, rotation or data keys", async (t) => {
    const p = probe(t);
    type Case =
      | { kind: "bytes"; bytes: Uint8Array }
      | { kind: "zip"; b: number; m: Parameters<typeof applyBytes>[1] }
      | { kind: "json"; b: number; m: Parameters<typeof applyJson>[1] };
    const arb: fc.Arbitrary<Case> = fc.oneof(
      fc.record({ kind: fc.constant("bytes" as const), bytes: fc.uint8Array({ maxLength: 512 }) }),
      fc
        .nat({ max: bases.length - 1 })
        .chain((b) => byteMutation(bases[b]!.zip.length).map((m) => ({ kind: "zip" as const, b, m }))),
      fc.nat({ max: bases.length - 1 }).chain((b) =>
        jsonMutation(bases[b]!.value as Json, ["delete", "retype", "huge-string", "deep", "add-key"]).map(
          (m) => ({
            kind: "json" as const,
            b,
            m,
          }),
        ),
      ),
    );
    await holdsAsync(
      fc.asyncProperty(arb, async (c) => {
        const zip =
          c.kind === "bytes"
            ? Buffer.from(c.bytes)
            : c.kind === "zip"
              ? applyBytes(bases[c.b]!.zip, c.m)
              : backupZip(serialize(applyJson(bases[c.b]!.value as Json, c.m)));
        await migrateChecked(zip, p, c.kind);
      }),
      p.params,
    );
    p.report();
  });

  it("a wrapped DEK changed to other valid base64 of the right length: LegacyKeyMismatchError, nothing called", async () => {
    const value = structuredClone(exportShape.value) as {
      items: { event: { Artifacts: { WrappedDek: string }[] } }[];
    };
    const dek = Buffer.from(value.items[0]!.event.Artifacts[0]!.WrappedDek, "base64");
    dek[0] = dek[0]! ^ 1;
    value.items[0]!.event.Artifacts[0]!.WrappedDek = dek.toString("base64");
    const p = { timeAsync: <T>(f: () => Promise<T>) => f(), count: () => undefined } as unknown as ReturnType<
      typeof probe
    >;
    const err = await migrateChecked(backupZip(serialize(value)), p, "dek");
    assert.equal((err as Error).name, "LegacyKeyMismatchError");
  });
});

describe("ArquivoMate backup reader: size limits and time", () => {
  it("refuses oversized backups by their declared sizes before inflating; reports the time of lying sizes", (t) => {
    const json = exportShape.json;
    const bomb = Buffer.alloc(64 * 1024 * 1024, 0x20);
    const cases: [string, Uint8Array, Record<string, number>][] = [
      ["ZIP over maxZipBytes", exportShape.zip, { maxZipBytes: 100 }],
      ["entry declaring 4 GiB", writeZip([{ name: JSON_NAME, data: json, declaredSize: 0xffff_ffff }]), {}],
      [
        "65 entries",
        writeZip(Array.from({ length: 65 }, (_, i) => ({ name: `f${i}`, data: Buffer.from("x") }))),
        {},
      ],
      ["items over maxItems", exportShape.zip, { maxItems: 2 }],
      [
        "64 MiB of deflate declaring its size (limit 1 MiB)",
        writeZip([
          { name: JSON_NAME, data: bomb, method: "deflate" },
          { name: SHA256_NAME, data: Buffer.from(checksumLine(bomb)) },
        ]),
        { maxJsonBytes: 1024 * 1024 },
      ],
      [
        "64 MiB of deflate declaring 10 bytes (inflated anyway: time grows with the real size)",
        writeZip([
          { name: JSON_NAME, data: bomb, method: "deflate", declaredSize: 10 },
          { name: SHA256_NAME, data: Buffer.from(checksumLine(bomb)) },
        ]),
        { maxJsonBytes: 1024 * 1024 },
      ],
    ];
    for (const [name, zip, limits] of cases) {
      const t0 = performance.now();
      const err = thrown(() => readArquivoMateBackup(zip, limits));
      const ms = performance.now() - t0;
      assertTyped(err, MIGRATION_ERRORS);
      if (!name.includes("declaring 10 bytes")) assertTyped(err, [BackupTooLargeError]);
      t.diagnostic(`${name} (${zip.length} bytes): ${outcomeOf(err)} in ${ms.toFixed(1)} ms`);
    }
  });
});
