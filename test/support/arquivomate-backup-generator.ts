/**
 * Makes ArquivoMate key backups for tests, independently of the importer: only node:crypto and node:zlib, the layout
 * exactly as docs/runbooks/migration.md and the design brief (section 3) describe it, and its own ZIP writer (STORE,
 * or DEFLATE through node:zlib, CRC-32 from zlib.crc32), so that nothing the production reader uses (fflate, zod,
 * core/) takes part in making its input. It also writes what the production code never would: wrong checksums,
 * lying sizes, doubled entries, zip bombs.
 *
 * Legacy wrapping as ArquivoMate does it: AES-256-GCM under the static master key, 96-bit random nonce, associated
 * data `"DEK:" + artifact`, `WrappedDek` = base64(ciphertext || tag). Artifact files in content format 2:
 * `0x02 || IV(16) || AES-256-CBC(encKey, PKCS#7) || HMAC-SHA256(macKey, IV || ct)`, `encKey = HMAC-SHA256(DEK, "enc")`,
 * `macKey = HMAC-SHA256(DEK, "mac")`.
 */
import { createCipheriv, createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { crc32, deflateRawSync } from "node:zlib";

export const JSON_NAME = "document-encryption-keys.json";
export const SHA256_NAME = "document-encryption-keys.sha256";
const ALL_ARTIFACTS = ["file", "metadata", "thumb", "preview", "archive"] as const;

// ---- ZIP ----------------------------------------------------------------------------------------------------

export interface ZipEntry {
  readonly name: string;
  readonly data: Uint8Array;
  /** Default "store". */
  readonly method?: "store" | "deflate";
  /** Overrides the uncompressed size written into both headers (a lying header). */
  readonly declaredSize?: number;
}

/** A minimal ZIP (no ZIP64, no data descriptors): local headers and data, central directory, end record. */
export function writeZip(entries: readonly ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  const time = (12 << 11) | (30 << 5); // 12:30:00
  const date = ((2026 - 1980) << 9) | (11 << 5) | 30; // 2026-11-30
  for (const e of entries) {
    const name = Buffer.from(e.name, "utf8");
    const raw = Buffer.from(e.data);
    const method = e.method === "deflate" ? 8 : 0;
    const body = method === 8 ? deflateRawSync(raw) : raw;
    const crc = crc32(raw) >>> 0;
    const usize = e.declaredSize ?? raw.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(time, 10);
    local.writeUInt16LE(date, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(usize, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt16LE(time, 12);
    central.writeUInt16LE(date, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(usize, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt16LE(0, 30); // extra
    central.writeUInt16LE(0, 32); // comment
    central.writeUInt16LE(0, 34); // disk
    central.writeUInt16LE(0, 36); // internal attributes
    central.writeUInt32LE(0, 38); // external attributes
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += local.length + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(0, 4);
  end.writeUInt16LE(0, 6);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  end.writeUInt16LE(0, 20);
  return Buffer.concat([...locals, cd, end]);
}

/** `sha256sum` output for the JSON: hex digest, two spaces, file name, newline. */
export function checksumLine(json: Uint8Array, name = JSON_NAME): string {
  return `${createHash("sha256").update(json).digest("hex")}  ${name}\n`;
}

/** The backup ZIP around a JSON document (its checksum computed unless given). */
export function backupZip(
  json: Uint8Array,
  options: { checksum?: string; extra?: readonly ZipEntry[]; method?: "store" | "deflate" } = {},
): Buffer {
  return writeZip([
    { name: JSON_NAME, data: json, method: options.method ?? "store" },
    { name: SHA256_NAME, data: Buffer.from(options.checksum ?? checksumLine(json), "utf8") },
    ...(options.extra ?? []),
  ]);
}

// ---- legacy crypto ------------------------------------------------------------------------------------------

export function legacyWrap(
  masterKey: Uint8Array,
  artifact: string,
  dek: Uint8Array,
): { WrappedDek: string; WrapNonce: string } {
  const nonce = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", masterKey, nonce);
  c.setAAD(Buffer.from(`DEK:${artifact}`, "utf8"));
  const ct = Buffer.concat([c.update(dek), c.final(), c.getAuthTag()]);
  return { WrappedDek: ct.toString("base64"), WrapNonce: nonce.toString("base64") };
}

export function encryptArtifactV2(dek: Uint8Array, plaintext: Uint8Array): Buffer {
  const enc = createHmac("sha256", dek).update("enc").digest();
  const mac = createHmac("sha256", dek).update("mac").digest();
  const iv = randomBytes(16);
  const c = createCipheriv("aes-256-cbc", enc, iv);
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  const tag = createHmac("sha256", mac).update(iv).update(ct).digest();
  return Buffer.concat([Buffer.from([0x02]), iv, ct, tag]);
}

// ---- backups ------------------------------------------------------------------------------------------------

export interface GeneratedArtifact {
  readonly artifact: string;
  readonly dek: Buffer;
  readonly WrappedDek: string;
  readonly WrapNonce: string;
}

export interface GeneratedItem {
  readonly streamId: string;
  readonly eventId: string;
  readonly sequence: number;
  readonly timestamp: string;
  readonly artifacts: readonly GeneratedArtifact[];
}

export interface GeneratedDocument {
  /** Lower-case GUID: ArquivoMate's stream id and our document id. */
  readonly documentId: string;
  /** The current item (the last by sequence). */
  readonly current: GeneratedItem;
  /** An older item of the same document, when there is one. */
  readonly superseded?: GeneratedItem;
}

export interface GeneratedBackup {
  readonly legacyKey: Buffer;
  readonly documents: readonly GeneratedDocument[];
  /** The JSON document as built (mutate a copy and use `serialize` + `backupZip` for negative cases). */
  readonly value: unknown;
  readonly json: Buffer;
  readonly zip: Buffer;
  readonly artifactCount: number;
}

export interface GenerateOptions {
  readonly documents: number;
  readonly shape?: "export-v1" | "bare-array";
  readonly legacyKey?: Buffer;
  /** The artifacts of document `i` (default: file and metadata, plus thumb for every other document). */
  readonly artifactsOf?: (i: number) => readonly string[];
  /** Every n-th document also has an older, superseded item (default: none). */
  readonly supersededEvery?: number;
  readonly firstSequence?: number;
  /** Write GUIDs in upper case (the importer lower-cases them). */
  readonly upperCaseIds?: boolean;
  /** Indent the JSON and write a UTF-8 BOM, as .NET may. */
  readonly dotnetStyle?: boolean;
}

/** .NET's round-trip format ("o") of a DateTimeOffset in UTC: 7 fraction digits and "+00:00". */
function dotnetTime(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/\.(\d{3})Z$/, (_m, f: string) => `.${f}${String(ms % 7).padEnd(4, "0")}+00:00`);
}

export function generateBackup(options: GenerateOptions): GeneratedBackup {
  const legacyKey = options.legacyKey ?? randomBytes(32);
  const shape = options.shape ?? "export-v1";
  const id = (s: string) => (options.upperCaseIds ? s.toUpperCase() : s);
  const artifactsOf =
    options.artifactsOf ??
    ((i: number) => (i % 2 === 0 ? ["file", "metadata", "thumb"] : ["file", "metadata"]));
  let sequence = options.firstSequence ?? 1;
  const base = Date.UTC(2025, 2, 14, 9, 26, 53);
  const makeItem = (documentId: string, artifacts: readonly string[]): GeneratedItem => {
    const seq = sequence++;
    return {
      streamId: documentId,
      eventId: randomUUID(),
      sequence: seq,
      timestamp: dotnetTime(base + seq * 1000 + 123),
      artifacts: artifacts.map((artifact) => {
        const dek = randomBytes(32);
        return { artifact, dek, ...legacyWrap(legacyKey, artifact, dek) };
      }),
    };
  };
  const documents: GeneratedDocument[] = [];
  const ordered: GeneratedItem[] = [];
  for (let i = 0; i < options.documents; i++) {
    const documentId = randomUUID();
    const artifacts = artifactsOf(i);
    const hasOld = options.supersededEvery !== undefined && i % options.supersededEvery === 0;
    const old = hasOld ? makeItem(documentId, artifacts) : undefined;
    const current = makeItem(documentId, artifacts);
    documents.push({ documentId, current, ...(old ? { superseded: old } : {}) });
    // The newer item first in the file for some documents: "current" is by sequence, not by position.
    if (old && i % 2 === 0) ordered.push(current, old);
    else if (old) ordered.push(old, current);
    else ordered.push(current);
  }
  const eventOf = (it: GeneratedItem) => ({
    AggregateId: id(it.streamId),
    Artifacts: it.artifacts.map((a) => ({
      Artifact: a.artifact,
      WrappedDek: a.WrappedDek,
      WrapNonce: a.WrapNonce,
      Algorithm: "AES-256-CBC-HMACSHA256",
      Version: "2",
    })),
    OccurredOn: it.timestamp,
  });
  let value: unknown;
  if (shape === "export-v1") {
    value = {
      formatVersion: "1",
      exportedAtUtc: dotnetTime(base + 10_000_000),
      fromSequence: options.firstSequence ?? 1,
      toSequence: sequence - 1,
      itemCount: ordered.length,
      items: ordered.map((it) => ({
        streamId: id(it.streamId),
        eventId: id(it.eventId),
        sequence: it.sequence,
        timestampUtc: it.timestamp,
        event: eventOf(it),
      })),
    };
  } else {
    value = ordered.map((it) => ({
      StreamId: id(it.streamId),
      EventId: id(it.eventId),
      Sequence: it.sequence,
      Timestamp: new Date(Date.parse(it.timestamp)).toISOString(),
      Event: eventOf(it),
    }));
  }
  const json = serialize(value, options.dotnetStyle);
  return {
    legacyKey,
    documents,
    value,
    json,
    zip: backupZip(json),
    artifactCount: documents.reduce((n, d) => n + d.current.artifacts.length, 0),
  };
}

export function serialize(value: unknown, dotnetStyle = false): Buffer {
  const text = dotnetStyle ? JSON.stringify(value, null, 2) : JSON.stringify(value);
  return Buffer.concat([
    dotnetStyle ? Buffer.from([0xef, 0xbb, 0xbf]) : Buffer.alloc(0),
    Buffer.from(text, "utf8"),
  ]);
}

/** A deep copy of a generated JSON value, for negative cases. */
export function clone<T>(value: T): T {
  return structuredClone(value);
}

// ---- artifact files -----------------------------------------------------------------------------------------

export interface WrittenArtifact {
  readonly documentId: string;
  readonly artifact: string;
  readonly path: string;
  readonly contentSha256: string;
}

/**
 * Writes encrypted artifact files (content format 2) for the first `count` documents' current DEKs, half of them
 * flat (`<documentId>.<artifact>.enc`) and half nested (`<documentId>/<artifact>.enc`) unless `layout` says.
 */
export async function writeArtifactFiles(
  dir: string,
  documents: readonly GeneratedDocument[],
  options: { count: number; layout?: "flat" | "nested" | "mixed" },
): Promise<WrittenArtifact[]> {
  await mkdir(dir, { recursive: true });
  const out: WrittenArtifact[] = [];
  for (const [i, d] of documents.slice(0, options.count).entries()) {
    const layout =
      options.layout === "mixed" || !options.layout ? (i % 2 === 0 ? "flat" : "nested") : options.layout;
    for (const a of d.current.artifacts) {
      const content = Buffer.concat([
        Buffer.from(`${a.artifact} of ${d.documentId}\n`),
        randomBytes(200 + (i % 50)),
      ]);
      const blob = encryptArtifactV2(a.dek, content);
      let path: string;
      if (layout === "flat") path = `${d.documentId}.${a.artifact}.enc`;
      else {
        await mkdir(join(dir, d.documentId), { recursive: true });
        path = `${d.documentId}/${a.artifact}.enc`;
      }
      await writeFile(join(dir, path), blob);
      out.push({
        documentId: d.documentId,
        artifact: a.artifact,
        path,
        contentSha256: createHash("sha256").update(content).digest("hex"),
      });
    }
  }
  return out;
}

export { ALL_ARTIFACTS };
