/**
 * The key-backup reader against backups made by the independent generator: both shapes, every typed error, the
 * zip-bomb limits, and the legacy key file. Messages name items and fields, never key material.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import {
  normalizeTimestamp,
  readArquivoMateBackup,
  type BackupLimits,
} from "../../core/migration/arquivomate-backup.js";
import {
  BackupChecksumError,
  BackupTooLargeError,
  CountMismatchError,
  DuplicateItemError,
  InvalidLegacyKeyError,
  MalformedBackupError,
} from "../../core/migration/errors.js";
import { keyCheckValue, parseLegacyKeyFile, unwrapLegacyDek } from "../../core/migration/legacy-key.js";
import { listArtifactFiles, sampleFiles } from "../../core/migration/artifact-files.js";
import {
  backupZip,
  checksumLine,
  clone,
  generateBackup,
  JSON_NAME,
  serialize,
  SHA256_NAME,
  writeArtifactFiles,
  writeZip,
} from "../support/arquivomate-backup-generator.js";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

type Item = {
  streamId: string;
  eventId: string;
  sequence: number;
  timestampUtc: string;
  event: {
    AggregateId: string;
    OccurredOn: string;
    Artifacts: {
      Artifact: string;
      WrappedDek: string;
      WrapNonce: string;
      Algorithm: string;
      Version: string;
    }[];
  };
};
type Export = { formatVersion: string; itemCount: number; toSequence?: number; items: Item[] };

const base = generateBackup({ documents: 12, supersededEvery: 3 });
const secrets = base.documents.flatMap((d) => d.current.artifacts.map((a) => a.WrappedDek));

/** Reads a mutated copy of the base backup (checksum recomputed: the content is what is wrong). */
function readMutated(mutate: (v: Export) => void, limits?: Partial<BackupLimits>) {
  const v = clone(base.value) as Export;
  mutate(v);
  return readArquivoMateBackup(backupZip(serialize(v)), limits);
}

function rejectsWith(fn: () => unknown, type: new (...a: never[]) => Error, pattern?: RegExp): Error {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof type, `expected ${type.name}, got ${String(caught)}`);
  if (pattern) assert.match(caught.message, pattern);
  for (const s of secrets) assert.ok(!caught.message.includes(s), "no wrapped DEK in the message");
  assert.ok(!JSON.stringify((caught as { context?: unknown }).context ?? {}).includes(secrets[0]!));
  return caught;
}

describe("ArquivoMate key backup: the accepted shapes", () => {
  it("reads export-v1: documents, superseded items, the current item by sequence, counts", () => {
    const b = readArquivoMateBackup(base.zip);
    assert.equal(b.shape, "export-v1");
    assert.equal(b.documents.length, 12);
    assert.equal(b.superseded, 4);
    assert.equal(b.itemCount, 16);
    assert.equal(b.artifacts, base.artifactCount);
    assert.equal(b.fromSequence, 1);
    assert.equal(b.toSequence, 16);
    for (const d of base.documents) {
      const got = b.documents.find((x) => x.documentId === d.documentId)!;
      assert.equal(
        got.eventId,
        d.current.eventId,
        "the last item by sequence is current, wherever it is in the file",
      );
      assert.deepEqual(
        got.artifacts.map((a) => a.wrappedDek),
        d.current.artifacts.map((a) => a.WrappedDek),
      );
      // The generator's DEK comes back through the legacy format.
      const dek = unwrapLegacyDek(base.legacyKey, got.artifacts[0]!.artifact, got.artifacts[0]!);
      assert.deepEqual(dek, d.current.artifacts[0]!.dek);
    }
    assert.deepEqual(b.warnings, []);
  });

  it("reads the bare array of { StreamId, EventId, Sequence, Timestamp, Event }", () => {
    const g = generateBackup({ documents: 7, shape: "bare-array", supersededEvery: 2 });
    const b = readArquivoMateBackup(g.zip);
    assert.equal(b.shape, "bare-array");
    assert.equal(b.documents.length, 7);
    assert.equal(b.superseded, 4);
    assert.equal(b.exportedAtUtc, undefined);
    for (const d of g.documents) {
      assert.equal(b.documents.find((x) => x.documentId === d.documentId)?.eventId, d.current.eventId);
    }
  });

  it("accepts .NET's habits: BOM, indentation, upper-case GUIDs, 7 fraction digits and offsets, DEFLATE", () => {
    const g = generateBackup({ documents: 4, dotnetStyle: true, upperCaseIds: true });
    const b = readArquivoMateBackup(backupZip(g.json, { method: "deflate" }));
    assert.equal(b.documents.length, 4);
    assert.ok(b.documents.every((d) => d.documentId === d.documentId.toLowerCase()));
    assert.match(b.documents[0]!.occurredOn, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(normalizeTimestamp("2025-03-14T09:26:53.5897932+01:00"), "2025-03-14T08:26:53.589Z");
    assert.equal(normalizeTimestamp("2025-03-14T09:26:53"), "2025-03-14T09:26:53.000Z");
    assert.equal(normalizeTimestamp("14/03/2025"), undefined);
  });

  it("ignores other ZIP entries with a warning", () => {
    const zip = backupZip(base.json, { extra: [{ name: "README.txt", data: Buffer.from("hello") }] });
    assert.match(readArquivoMateBackup(zip).warnings[0]!, /README\.txt/);
  });
});

describe("ArquivoMate key backup: checksum", () => {
  it("refuses a JSON that differs from its checksum (one byte changed)", () => {
    const json = Buffer.from(base.json);
    json[200] = json[200]! ^ 0x01;
    rejectsWith(
      () => readArquivoMateBackup(backupZip(json, { checksum: checksumLine(base.json) })),
      BackupChecksumError,
      /SHA-256 of document-encryption-keys\.json is [0-9a-f]{64} but/,
    );
  });

  it("accepts sha256sum's binary marker, CRLF and upper-case hex; refuses other lines", () => {
    const hex = checksumLine(base.json).slice(0, 64);
    for (const line of [
      `${hex} *${JSON_NAME}`,
      `${hex.toUpperCase()}  ${JSON_NAME}\r\n`,
      `${hex}  ./${JSON_NAME}`,
    ]) {
      assert.equal(readArquivoMateBackup(backupZip(base.json, { checksum: line })).documents.length, 12);
    }
    rejectsWith(
      () => readArquivoMateBackup(backupZip(base.json, { checksum: `${hex} ${JSON_NAME}` })),
      BackupChecksumError,
      /line 1/,
    );
    rejectsWith(
      () => readArquivoMateBackup(backupZip(base.json, { checksum: `${hex}  other.json\n` })),
      BackupChecksumError,
      /no line for/,
    );
    rejectsWith(
      () =>
        readArquivoMateBackup(
          backupZip(base.json, { checksum: `${hex}  ${JSON_NAME}\n${hex}  ${JSON_NAME}\n` }),
        ),
      BackupChecksumError,
      /two lines/,
    );
  });
});

describe("ArquivoMate key backup: structure", () => {
  it("refuses what is not a ZIP, a ZIP without the entries, a doubled entry, entries in a folder", () => {
    rejectsWith(
      () => readArquivoMateBackup(Buffer.from("not a zip at all")),
      MalformedBackupError,
      /not a readable ZIP/,
    );
    rejectsWith(() => readArquivoMateBackup(new Uint8Array(0)), MalformedBackupError, /empty/);
    rejectsWith(
      () => readArquivoMateBackup(writeZip([{ name: JSON_NAME, data: base.json }])),
      MalformedBackupError,
      /no document-encryption-keys\.sha256/,
    );
    rejectsWith(
      () =>
        readArquivoMateBackup(
          writeZip([
            { name: JSON_NAME, data: base.json },
            { name: JSON_NAME, data: base.json },
            { name: SHA256_NAME, data: Buffer.from(checksumLine(base.json)) },
          ]),
        ),
      MalformedBackupError,
      /twice/,
    );
    rejectsWith(
      () =>
        readArquivoMateBackup(
          writeZip([
            { name: `backup/${JSON_NAME}`, data: base.json },
            { name: `backup/${SHA256_NAME}`, data: Buffer.from(checksumLine(base.json)) },
          ]),
        ),
      MalformedBackupError,
      /at its root/,
    );
  });

  it("refuses JSON that does not parse, and documents of neither shape", () => {
    const broken = Buffer.from('{"formatVersion":"1","items":[', "utf8");
    rejectsWith(() => readArquivoMateBackup(backupZip(broken)), MalformedBackupError, /not valid JSON/);
    rejectsWith(
      () => readArquivoMateBackup(backupZip(Buffer.from([0xff, 0xfe, 0x00]))),
      MalformedBackupError,
      /UTF-8/,
    );
    rejectsWith(
      () => readArquivoMateBackup(backupZip(Buffer.from('"text"'))),
      MalformedBackupError,
      /export object/,
    );
    rejectsWith(
      () => readMutated((v) => (v.formatVersion = "2")),
      MalformedBackupError,
      /formatVersion must be "1"/,
    );
    rejectsWith(
      () => readMutated((v) => delete (v as Partial<Export>).itemCount),
      MalformedBackupError,
      /itemCount/,
    );
  });
});

describe("ArquivoMate key backup: items", () => {
  const cases: [string, (v: Export) => void, RegExp][] = [
    [
      "a stream id that is not a GUID",
      (v) => (v.items[2]!.streamId = "doc-42"),
      /item 2: streamId must be a GUID/,
    ],
    [
      "an event id that is not a GUID",
      (v) => (v.items[3]!.eventId = "1234"),
      /item 3 \(stream [0-9a-f-]{36}\): eventId must be a GUID/,
    ],
    [
      "WrappedDek not base64",
      (v) => (v.items[1]!.event.Artifacts[0]!.WrappedDek = "not base64!"),
      /item 1 .*Artifacts\[0\]\.WrappedDek is not strict base64/,
    ],
    [
      "WrappedDek of 47 bytes",
      (v) => (v.items[1]!.event.Artifacts[0]!.WrappedDek = randomBytes(47).toString("base64")),
      /WrappedDek is 47 bytes; it must be 48/,
    ],
    [
      "a 16-byte nonce",
      (v) => (v.items[0]!.event.Artifacts[1]!.WrapNonce = randomBytes(16).toString("base64")),
      /Artifacts\[1\]\.WrapNonce is 16 bytes; it must be 12/,
    ],
    [
      "an unknown artifact",
      (v) => (v.items[4]!.event.Artifacts[0]!.Artifact = "photo"),
      /item 4 .*Artifact is not one of file, metadata, thumb, preview, archive/,
    ],
    [
      "an artifact twice",
      (v) => v.items[4]!.event.Artifacts.push({ ...v.items[4]!.event.Artifacts[0]! }),
      /artifact file is listed twice/,
    ],
    [
      "an AggregateId of another stream",
      (v) => (v.items[5]!.event.AggregateId = v.items[6]!.streamId),
      /item 5 .*AggregateId .* differs from the stream id/,
    ],
    [
      "a time that is not ISO 8601",
      (v) => (v.items[0]!.timestampUtc = "14/03/2025 10:00"),
      /item 0 .*timestampUtc must be an ISO 8601 time/,
    ],
    ["a negative sequence", (v) => (v.items[0]!.sequence = -1), /sequence must not be negative/],
    ["no artifacts", (v) => (v.items[0]!.event.Artifacts = []), /must list at least one artifact/],
    ["a missing event", (v) => delete (v.items[0] as Partial<Item>).event, /item 0 .*event/],
  ];
  for (const [name, mutate, pattern] of cases) {
    it(`refuses ${name} (MalformedBackupError naming the item and field)`, () => {
      rejectsWith(() => readMutated(mutate), MalformedBackupError, pattern);
    });
  }

  it("refuses an itemCount that differs from the items, and a sequence outside the declared range", () => {
    rejectsWith(
      () => readMutated((v) => (v.itemCount += 1)),
      CountMismatchError,
      /declares itemCount 17 but holds 16 items/,
    );
    rejectsWith(() => readMutated((v) => v.items.pop()), CountMismatchError, /itemCount 16 but holds 15/);
    rejectsWith(
      () => readMutated((v) => (v.toSequence = 10)),
      CountMismatchError,
      /outside the declared range 1\.\.10/,
    );
  });

  it("refuses the same event twice and two items at one position of a stream (DuplicateItemError naming them)", () => {
    const dupEvent = rejectsWith(
      () =>
        readMutated((v) => {
          v.items.push({ ...clone(v.items[3]!), sequence: 99 });
          v.itemCount += 1;
          (v as { toSequence?: number }).toSequence = 99;
        }),
      DuplicateItemError,
      /event [0-9a-f-]{36} appears twice \(items 3 and 16/,
    );
    assert.deepEqual((dupEvent as DuplicateItemError).context.items, [3, 16]);
    rejectsWith(
      () =>
        readMutated((v) => {
          const copy = clone(v.items[0]!);
          copy.eventId = "11111111-2222-4333-8444-555555555555";
          v.items.push(copy);
          v.itemCount += 1;
        }),
      DuplicateItemError,
      /stream [0-9a-f-]{36} has two items at sequence \d+ \(items 0 and 16/,
    );
  });
});

describe("ArquivoMate key backup: limits (zip bombs)", () => {
  it("refuses a ZIP above the size limit before unpacking it", () => {
    rejectsWith(
      () => readArquivoMateBackup(base.zip, { maxZipBytes: 1000 }),
      BackupTooLargeError,
      /at most 1000/,
    );
  });

  it("refuses an entry whose declared size is above the limit, without inflating it", () => {
    const bomb = writeZip([
      { name: JSON_NAME, data: Buffer.alloc(64 * 1024 * 1024), method: "deflate" },
      { name: SHA256_NAME, data: Buffer.from("x") },
    ]);
    assert.ok(bomb.length < 200 * 1024, "64 MiB of zeros deflate to a small ZIP");
    const t0 = Date.now();
    rejectsWith(
      () => readArquivoMateBackup(bomb, { maxJsonBytes: 1024 * 1024 }),
      BackupTooLargeError,
      /declares 67108864 bytes uncompressed; at most 1048576/,
    );
    assert.ok(Date.now() - t0 < 1000);
  });

  it("a declared size that lies cannot make an entry grow: inflated into that size, the checksum fails", () => {
    const json = Buffer.concat([base.json, Buffer.alloc(4 * 1024 * 1024, 0x20)]);
    const lying = writeZip([
      { name: JSON_NAME, data: json, method: "deflate", declaredSize: 1000 },
      { name: SHA256_NAME, data: Buffer.from(checksumLine(json)) },
    ]);
    rejectsWith(() => readArquivoMateBackup(lying, { maxJsonBytes: 64 * 1024 }), BackupChecksumError);
  });

  it("refuses too many entries and too many items", () => {
    const many = writeZip([
      ...Array.from({ length: 70 }, (_, i) => ({ name: `junk-${i}`, data: Buffer.from("x") })),
      { name: JSON_NAME, data: base.json },
      { name: SHA256_NAME, data: Buffer.from(checksumLine(base.json)) },
    ]);
    rejectsWith(() => readArquivoMateBackup(many), BackupTooLargeError, /more than 64 entries/);
    rejectsWith(
      () => readArquivoMateBackup(base.zip, { maxItems: 10 }),
      BackupTooLargeError,
      /16 items; at most 10/,
    );
  });
});

describe("the legacy key", () => {
  it("reads base64 (as in Encryption:MasterKeyBase64), hex and raw files; refuses anything else", () => {
    const key = randomBytes(32);
    assert.deepEqual(parseLegacyKeyFile(Buffer.from(`${key.toString("base64")}\n`)), key);
    assert.deepEqual(parseLegacyKeyFile(Buffer.from(`\ufeff  ${key.toString("base64")}\r\n`)), key);
    assert.deepEqual(parseLegacyKeyFile(Buffer.from(key.toString("hex").toUpperCase())), key);
    assert.deepEqual(parseLegacyKeyFile(key), key);
    for (const bad of [
      Buffer.from(randomBytes(16).toString("base64")),
      Buffer.from(`${key.toString("base64").slice(0, -1)}!`),
      Buffer.from(""),
      Buffer.from(randomBytes(33).toString("base64")),
    ]) {
      assert.throws(() => parseLegacyKeyFile(bad), InvalidLegacyKeyError);
    }
  });

  it("computes the KCV as the HSM does (AES-256 known answer)", () => {
    // AES-256-ECB(key 0^32, block 0^16) = dc95c078a2408989ad48a21492842087
    assert.equal(keyCheckValue(Buffer.alloc(32)), "DC95C0");
    assert.throws(() => keyCheckValue(Buffer.alloc(16)), InvalidLegacyKeyError);
  });

  it("unwraps only with the right key and artifact", () => {
    const d = base.documents[0]!.current.artifacts[0]!;
    const w = { wrappedDek: d.WrappedDek, wrapNonce: d.WrapNonce };
    assert.deepEqual(unwrapLegacyDek(base.legacyKey, "file", w), d.dek);
    assert.equal(unwrapLegacyDek(randomBytes(32), "file", w), undefined);
    assert.equal(unwrapLegacyDek(base.legacyKey, "thumb", w), undefined);
  });
});

describe("artifact files", () => {
  it("lists both naming conventions, ignores the rest, samples evenly", async () => {
    const dir = await mkdtemp(join(tmpdir(), "amk-artifacts-"));
    try {
      const written = await writeArtifactFiles(dir, base.documents, { count: 6 });
      await writeFile(join(dir, "notes.txt"), "x");
      await writeFile(join(dir, "not-a-guid.file.enc"), "x");
      const { files, ignored } = await listArtifactFiles(dir);
      assert.equal(files.length, written.length);
      assert.equal(ignored, 2);
      assert.ok(files.some((f) => f.path.includes("/")) && files.some((f) => !f.path.includes("/")));
      assert.equal(sampleFiles(files, 4).length, 4);
      assert.equal(new Set(sampleFiles(files, 4)).size, 4);
      assert.equal(sampleFiles(files, 1000).length, files.length);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
