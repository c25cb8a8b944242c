/**
 * ArquivoMate's key backup, read and verified before anything is written (docs/runbooks/migration.md).
 *
 * Layout: a ZIP with two entries at its root,
 *   - `document-encryption-keys.json`: the wrap records, in one of two shapes (below);
 *   - `document-encryption-keys.sha256`: `sha256sum` output, `<64 hex digits>  document-encryption-keys.json`.
 *
 * Shape "export-v1":
 *   { "formatVersion": "1", "exportedAtUtc", "fromSequence"?, "toSequence"?, "itemCount",
 *     "items": [ { "streamId", "eventId", "sequence", "timestampUtc",
 *                  "event": { "AggregateId", "Artifacts": [ { "Artifact", "WrappedDek", "WrapNonce", "Algorithm",
 *                             "Version" } ], "OccurredOn" } } ] }
 * Shape "bare-array": [ { "StreamId", "EventId", "Sequence", "Timestamp", "Event": { ...as above } } ]
 *
 * Checks, in order, each with its typed error (errors.ts): sizes before unpacking (`BackupTooLargeError`: the ZIP,
 * each entry's declared size, the entry count, the item count), ZIP structure and entries (`MalformedBackupError`),
 * the SHA-256 in constant time (`BackupChecksumError`), UTF-8 and JSON and the shape (zod), `itemCount` and the
 * declared sequence range (`CountMismatchError`), per item: GUID ids (stream id = `AggregateId`), ISO 8601 times,
 * known artifacts once each, strict base64 of exactly 48 (`WrappedDek`, ciphertext || tag) and 12 (`WrapNonce`)
 * bytes; then duplicates (`DuplicateItemError`: an `eventId` twice, or a stream + sequence twice). A document may
 * have several items: the last by sequence is its current wrap record, the others are superseded.
 *
 * Memory is bounded by the limits: an entry is only inflated when its declared size is within them, and it is
 * inflated into a buffer of exactly that size, so a size that lies cannot make it grow (the checksum then fails).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { unzipSync } from "fflate";
import { z } from "zod";
import { ARTIFACTS, isArtifact, type Artifact } from "../datakeys/wrap-format.js";
import { DEK_LENGTH, WRAP_NONCE_LENGTH, WRAP_TAG_LENGTH } from "../keystore/key-store.js";
import {
  BackupChecksumError,
  BackupTooLargeError,
  CountMismatchError,
  DuplicateItemError,
  MalformedBackupError,
} from "./errors.js";

export const BACKUP_JSON_NAME = "document-encryption-keys.json";
export const BACKUP_SHA256_NAME = "document-encryption-keys.sha256";

export interface BackupLimits {
  /** Largest ZIP accepted, in bytes (default 512 MiB). */
  readonly maxZipBytes: number;
  /** Largest declared (uncompressed) size of the JSON entry (default 400 MiB, below V8's longest string). */
  readonly maxJsonBytes: number;
  /** Largest declared size of the checksum entry (default 4 KiB). */
  readonly maxChecksumBytes: number;
  /** Most entries the ZIP's central directory may list (default 64). */
  readonly maxEntries: number;
  /** Most items (default 2,000,000). */
  readonly maxItems: number;
}

export const DEFAULT_BACKUP_LIMITS: BackupLimits = {
  maxZipBytes: 512 * 1024 * 1024,
  maxJsonBytes: 400 * 1024 * 1024,
  maxChecksumBytes: 4096,
  maxEntries: 64,
  maxItems: 2_000_000,
};

/** One artifact's wrapped DEK as ArquivoMate recorded it (base64 checked: 48 and 12 bytes). */
export interface LegacyArtifactKey {
  readonly artifact: Artifact;
  /** base64 of ciphertext || 16-byte tag (48 bytes). */
  readonly wrappedDek: string;
  /** base64 of the 12-byte nonce. */
  readonly wrapNonce: string;
  /** Content encryption of the artifact, e.g. `AES-256-CBC-HMACSHA256`. */
  readonly algorithm: string;
  /** Content format version, e.g. `"2"`. */
  readonly version: string;
}

/** One backup item: a `DocumentEncryptionKeysAdded` of a document stream. Ids are lower-case GUIDs. */
export interface LegacyWrapItem {
  /** Position in the backup's item list, from 0. */
  readonly index: number;
  /** The document's stream id in ArquivoMate (its aggregate id): also our document id. */
  readonly documentId: string;
  readonly eventId: string;
  readonly sequence: number;
  /** When ArquivoMate stored the event, ISO 8601 UTC. */
  readonly timestamp: string;
  /** The event's `OccurredOn`, ISO 8601 UTC. */
  readonly occurredOn: string;
  readonly artifacts: readonly LegacyArtifactKey[];
}

export interface ArquivoMateBackup {
  readonly shape: "export-v1" | "bare-array";
  /** SHA-256 (hex) of the JSON entry, as verified. */
  readonly sha256: string;
  readonly jsonBytes: number;
  readonly exportedAtUtc?: string;
  readonly fromSequence?: number;
  readonly toSequence?: number;
  /** Items in the backup (all of them, superseded ones included). */
  readonly itemCount: number;
  /** Each document's current wrap record (its last item by sequence), in document-id order. */
  readonly documents: readonly LegacyWrapItem[];
  /** Items that a later item of the same document replaced (verified, not migrated). */
  readonly superseded: number;
  /** Wrapped DEKs in the current records. */
  readonly artifacts: number;
  /** Facts an operator should know (ignored ZIP entries, a partial export range). */
  readonly warnings: readonly string[];
}

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})?$/;
const CHECKSUM_LINE = /^([0-9a-fA-F]{64}) [ *](.+)$/;
const MAX_REPORTED_PROBLEMS = 10;

/** ISO 8601 as .NET writes it (up to 7 fraction digits, `Z`, an offset or none = UTC) -> `...sssZ`, or undefined. */
export function normalizeTimestamp(value: string): string | undefined {
  if (!ISO_TIME.test(value)) return undefined;
  const hasZone = /(?:Z|[+-]\d{2}:\d{2})$/.test(value);
  const ms = Date.parse(hasZone ? value : `${value}Z`);
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}

const guid = z.string().max(36).regex(GUID, "must be a GUID (8-4-4-4-12 hex digits)");
const timestamp = z
  .string()
  .max(40)
  .refine((v) => normalizeTimestamp(v) !== undefined, "must be an ISO 8601 time");
const sequence = z
  .number()
  .int("must be an integer")
  .nonnegative("must not be negative")
  .max(Number.MAX_SAFE_INTEGER);

const artifactSchema = z.object({
  Artifact: z.string().max(40),
  WrappedDek: z.string().max(256),
  WrapNonce: z.string().max(64),
  Algorithm: z.string().min(1).max(64),
  Version: z.union([z.string().min(1).max(16), z.number().int().nonnegative()]),
});
const eventSchema = z.object({
  AggregateId: guid,
  Artifacts: z.array(artifactSchema).min(1, "must list at least one artifact").max(ARTIFACTS.length),
  OccurredOn: timestamp,
});
const exportItemSchema = z.object({
  streamId: guid,
  eventId: guid,
  sequence,
  timestampUtc: timestamp,
  event: eventSchema,
});
const bareItemSchema = z.object({
  StreamId: guid,
  EventId: guid,
  Sequence: sequence,
  Timestamp: timestamp,
  Event: eventSchema,
});
const exportSchema = z.object({
  formatVersion: z.literal("1", { error: 'must be "1"' }),
  exportedAtUtc: timestamp,
  fromSequence: sequence.nullish(),
  toSequence: sequence.nullish(),
  itemCount: z.number().int().nonnegative(),
  items: z.array(z.unknown()),
});

type RawEvent = z.infer<typeof eventSchema>;

/**
 * Reads and verifies a key backup (the ZIP's bytes). Throws the typed errors of errors.ts; nothing it reads is echoed
 * in a message except ids, names, counts and digests.
 */
export function readArquivoMateBackup(
  zip: Uint8Array,
  limits: Partial<BackupLimits> = {},
): ArquivoMateBackup {
  const lim: BackupLimits = { ...DEFAULT_BACKUP_LIMITS, ...limits };
  const { json, checksum, ignored } = unpack(zip, lim);
  const sha256 = verifyChecksum(json, checksum);
  const parsed = parseJson(json);
  const warnings: string[] = [];
  if (ignored.length > 0) {
    warnings.push(
      `the ZIP holds entries the migration does not read: ${ignored.slice(0, 5).join(", ")}${ignored.length > 5 ? ", ..." : ""}`,
    );
  }
  return { ...readDocument(parsed, json.length, sha256, lim, warnings), warnings };
}

// ---- ZIP and checksum ----------------------------------------------------------------------------------------

function unpack(
  zip: Uint8Array,
  lim: BackupLimits,
): { json: Uint8Array; checksum: Uint8Array; ignored: string[] } {
  if (!(zip instanceof Uint8Array) || zip.length === 0) {
    throw new MalformedBackupError("the backup is empty; expected ArquivoMate's key-backup ZIP");
  }
  if (zip.length > lim.maxZipBytes) {
    throw new BackupTooLargeError(
      `the backup is ${zip.length} bytes; at most ${lim.maxZipBytes} are accepted (raise the limit if it is genuine)`,
      { context: { bytes: zip.length, limit: lim.maxZipBytes } },
    );
  }
  const seen = new Set<string>();
  const ignored: string[] = [];
  let entries = 0;
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(zip, {
      filter: (f) => {
        entries += 1;
        if (entries > lim.maxEntries) {
          throw new BackupTooLargeError(
            `the ZIP lists more than ${lim.maxEntries} entries; a key backup has two`,
            { context: { limit: lim.maxEntries } },
          );
        }
        const wanted = f.name === BACKUP_JSON_NAME || f.name === BACKUP_SHA256_NAME;
        if (!wanted) {
          ignored.push(f.name.slice(0, 100));
          return false;
        }
        if (seen.has(f.name)) {
          throw new MalformedBackupError(`the ZIP holds ${f.name} twice; which one is meant is ambiguous`, {
            context: { entry: f.name },
          });
        }
        seen.add(f.name);
        const limit = f.name === BACKUP_JSON_NAME ? lim.maxJsonBytes : lim.maxChecksumBytes;
        if (f.originalSize > limit) {
          throw new BackupTooLargeError(
            `ZIP entry ${f.name} declares ${f.originalSize} bytes uncompressed; at most ${limit} are accepted`,
            { context: { entry: f.name, declaredBytes: f.originalSize, limit } },
          );
        }
        if (f.compression !== 0 && f.compression !== 8) {
          throw new MalformedBackupError(
            `ZIP entry ${f.name} uses compression method ${f.compression}; only stored (0) and deflate (8) are read`,
            { context: { entry: f.name, method: f.compression } },
          );
        }
        return true;
      },
    });
  } catch (err) {
    if (err instanceof BackupTooLargeError || err instanceof MalformedBackupError) throw err;
    throw new MalformedBackupError(`the backup is not a readable ZIP archive (${(err as Error).message})`, {
      cause: err,
    });
  }
  const json = files[BACKUP_JSON_NAME];
  const checksum = files[BACKUP_SHA256_NAME];
  if (!json || !checksum) {
    const missing = [!json ? BACKUP_JSON_NAME : undefined, !checksum ? BACKUP_SHA256_NAME : undefined]
      .filter(Boolean)
      .join(" and ");
    throw new MalformedBackupError(
      `the ZIP has no ${missing} at its root (found: ${[...seen, ...ignored].slice(0, 10).join(", ") || "nothing"}); is this ArquivoMate's key backup?`,
      { context: { missing, entries: [...seen, ...ignored].slice(0, 10) } },
    );
  }
  return { json, checksum, ignored };
}

function verifyChecksum(json: Uint8Array, checksumFile: Uint8Array): string {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(checksumFile);
  } catch (cause) {
    throw new BackupChecksumError(`${BACKUP_SHA256_NAME} is not UTF-8 text`, { cause });
  }
  const lines = text.split(/\r?\n/).filter((l) => l.trim().length > 0);
  let expected: string | undefined;
  for (const [i, line] of lines.entries()) {
    const m = CHECKSUM_LINE.exec(line);
    if (!m) {
      throw new BackupChecksumError(
        `${BACKUP_SHA256_NAME} line ${i + 1} is not "<64 hex digits>  <file name>" (sha256sum format)`,
        { context: { line: i + 1 } },
      );
    }
    const name = m[2]!.replace(/^\.\//, "");
    if (name !== BACKUP_JSON_NAME) continue;
    if (expected !== undefined) {
      throw new BackupChecksumError(`${BACKUP_SHA256_NAME} has two lines for ${BACKUP_JSON_NAME}`);
    }
    expected = m[1]!.toLowerCase();
  }
  if (expected === undefined) {
    throw new BackupChecksumError(`${BACKUP_SHA256_NAME} has no line for ${BACKUP_JSON_NAME}`);
  }
  const actual = createHash("sha256").update(json).digest();
  if (!timingSafeEqual(actual, Buffer.from(expected, "hex"))) {
    throw new BackupChecksumError(
      `the SHA-256 of ${BACKUP_JSON_NAME} is ${actual.toString("hex")} but ${BACKUP_SHA256_NAME} says ${expected}: the backup was altered, truncated or damaged; export it again`,
      { context: { actual: actual.toString("hex"), expected } },
    );
  }
  return actual.toString("hex");
}

function parseJson(json: Uint8Array): unknown {
  let text: string;
  try {
    // A UTF-8 byte order mark (as .NET may write) is dropped by the decoder.
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  } catch (cause) {
    throw new MalformedBackupError(`${BACKUP_JSON_NAME} is not valid UTF-8`, { cause });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    // V8's message names the position and the unexpected token, not the content around it.
    const position = /position (\d+)/.exec((err as Error).message)?.[1];
    throw new MalformedBackupError(
      `${BACKUP_JSON_NAME} is not valid JSON${position ? ` (at byte ${position})` : ""}`,
      { context: position ? { position: Number(position) } : {} },
    );
  }
}

// ---- the document --------------------------------------------------------------------------------------------

function readDocument(
  parsed: unknown,
  jsonBytes: number,
  sha256: string,
  lim: BackupLimits,
  warnings: string[],
): Omit<ArquivoMateBackup, "warnings"> {
  let shape: ArquivoMateBackup["shape"];
  let rawItems: unknown[];
  let header: z.infer<typeof exportSchema> | undefined;
  if (Array.isArray(parsed)) {
    shape = "bare-array";
    rawItems = parsed;
    checkItemLimit(rawItems.length, lim);
  } else if (typeof parsed === "object" && parsed !== null) {
    shape = "export-v1";
    const items = (parsed as { items?: unknown }).items;
    if (Array.isArray(items)) checkItemLimit(items.length, lim);
    const r = exportSchema.safeParse(parsed);
    if (!r.success) throw malformed("the export header", r.error.issues);
    header = r.data;
    rawItems = header.items;
    if (header.itemCount !== rawItems.length) {
      throw new CountMismatchError(
        `the backup declares itemCount ${header.itemCount} but holds ${rawItems.length} items: it is incomplete or was edited; export it again`,
        { context: { declared: header.itemCount, actual: rawItems.length } },
      );
    }
  } else {
    throw new MalformedBackupError(
      `${BACKUP_JSON_NAME} must hold an export object (formatVersion "1") or an array of events`,
    );
  }

  const problems: string[] = [];
  const items: LegacyWrapItem[] = [];
  for (let i = 0; i < rawItems.length && problems.length < MAX_REPORTED_PROBLEMS; i++) {
    const item = readItem(rawItems[i], i, shape, problems);
    if (item) items.push(item);
  }
  if (problems.length > 0) {
    throw new MalformedBackupError(
      `${BACKUP_JSON_NAME} has malformed items: ${problems.join("; ")}${problems.length >= MAX_REPORTED_PROBLEMS ? "; ..." : ""}`,
      { context: { problems } },
    );
  }

  const fromSequence = header?.fromSequence ?? undefined;
  const toSequence = header?.toSequence ?? undefined;
  const outside = items.find(
    (it) =>
      (fromSequence !== undefined && it.sequence < fromSequence) ||
      (toSequence !== undefined && it.sequence > toSequence),
  );
  if (outside) {
    throw new CountMismatchError(
      `item ${outside.index} (stream ${outside.documentId}) has sequence ${outside.sequence}, outside the declared range ${fromSequence ?? "-"}..${toSequence ?? "-"}`,
      {
        context: {
          index: outside.index,
          streamId: outside.documentId,
          sequence: outside.sequence,
          fromSequence,
          toSequence,
        },
      },
    );
  }
  if (fromSequence !== undefined && fromSequence > 1) {
    warnings.push(
      `the export starts at sequence ${fromSequence}: documents keyed before it are not in this backup and will not be migrated`,
    );
  }

  checkDuplicates(items);
  const current = new Map<string, LegacyWrapItem>();
  for (const it of items) {
    const prev = current.get(it.documentId);
    if (!prev || it.sequence > prev.sequence) current.set(it.documentId, it);
  }
  const documents = [...current.values()].sort((a, b) =>
    a.documentId < b.documentId ? -1 : a.documentId > b.documentId ? 1 : 0,
  );
  return {
    shape,
    sha256,
    jsonBytes,
    ...(header ? { exportedAtUtc: normalizeTimestamp(header.exportedAtUtc)! } : {}),
    ...(fromSequence !== undefined ? { fromSequence } : {}),
    ...(toSequence !== undefined ? { toSequence } : {}),
    itemCount: items.length,
    documents,
    superseded: items.length - documents.length,
    artifacts: documents.reduce((n, d) => n + d.artifacts.length, 0),
  };
}

function checkItemLimit(n: number, lim: BackupLimits): void {
  if (n > lim.maxItems) {
    throw new BackupTooLargeError(`the backup holds ${n} items; at most ${lim.maxItems} are accepted`, {
      context: { items: n, limit: lim.maxItems },
    });
  }
}

function readItem(
  raw: unknown,
  index: number,
  shape: ArquivoMateBackup["shape"],
  problems: string[],
): LegacyWrapItem | undefined {
  let streamId: string, eventId: string, seq: number, time: string, event: RawEvent;
  const where = (stream?: unknown) =>
    `item ${index}${typeof stream === "string" && GUID.test(stream) ? ` (stream ${stream.toLowerCase()})` : ""}`;
  if (shape === "export-v1") {
    const r = exportItemSchema.safeParse(raw);
    if (!r.success) {
      problems.push(describeIssues(where((raw as { streamId?: unknown } | null)?.streamId), r.error.issues));
      return undefined;
    }
    ({ streamId, eventId, sequence: seq, timestampUtc: time, event } = r.data);
  } else {
    const r = bareItemSchema.safeParse(raw);
    if (!r.success) {
      problems.push(describeIssues(where((raw as { StreamId?: unknown } | null)?.StreamId), r.error.issues));
      return undefined;
    }
    ({ StreamId: streamId, EventId: eventId, Sequence: seq, Timestamp: time, Event: event } = r.data);
  }
  const documentId = streamId.toLowerCase();
  const at = `item ${index} (stream ${documentId})`;
  if (event.AggregateId.toLowerCase() !== documentId) {
    problems.push(`${at}: event.AggregateId ${event.AggregateId.toLowerCase()} differs from the stream id`);
    return undefined;
  }
  const artifacts: LegacyArtifactKey[] = [];
  for (const [j, a] of event.Artifacts.entries()) {
    const field = `Artifacts[${j}]`;
    if (!isArtifact(a.Artifact)) {
      problems.push(`${at}: ${field}.Artifact is not one of ${ARTIFACTS.join(", ")}`);
      return undefined;
    }
    if (artifacts.some((x) => x.artifact === a.Artifact)) {
      problems.push(`${at}: artifact ${a.Artifact} is listed twice`);
      return undefined;
    }
    const dek = checkBase64(a.WrappedDek, DEK_LENGTH + WRAP_TAG_LENGTH);
    if (dek) {
      problems.push(`${at}: ${field}.WrappedDek ${dek}`);
      return undefined;
    }
    const nonce = checkBase64(a.WrapNonce, WRAP_NONCE_LENGTH);
    if (nonce) {
      problems.push(`${at}: ${field}.WrapNonce ${nonce}`);
      return undefined;
    }
    artifacts.push({
      artifact: a.Artifact,
      wrappedDek: a.WrappedDek,
      wrapNonce: a.WrapNonce,
      algorithm: a.Algorithm,
      version: String(a.Version),
    });
  }
  return {
    index,
    documentId,
    eventId: eventId.toLowerCase(),
    sequence: seq,
    timestamp: normalizeTimestamp(time)!,
    occurredOn: normalizeTimestamp(event.OccurredOn)!,
    artifacts,
  };
}

/** Undefined when `value` is strict base64 of exactly `length` bytes; otherwise what is wrong (no value echoed). */
function checkBase64(value: string, length: number): string | undefined {
  if (!BASE64.test(value)) return "is not strict base64";
  const n = Buffer.byteLength(value, "base64");
  return n === length ? undefined : `is ${n} bytes; it must be ${length}`;
}

function checkDuplicates(items: readonly LegacyWrapItem[]): void {
  const byEvent = new Map<string, LegacyWrapItem>();
  const byPosition = new Map<string, LegacyWrapItem>();
  for (const it of items) {
    const e = byEvent.get(it.eventId);
    if (e) {
      throw new DuplicateItemError(
        `event ${it.eventId} appears twice (items ${e.index} and ${it.index}, streams ${e.documentId} and ${it.documentId}); export the backup again`,
        {
          context: {
            eventId: it.eventId,
            items: [e.index, it.index],
            streamIds: [e.documentId, it.documentId],
          },
        },
      );
    }
    byEvent.set(it.eventId, it);
    const key = `${it.documentId}#${it.sequence}`;
    const p = byPosition.get(key);
    if (p) {
      throw new DuplicateItemError(
        `stream ${it.documentId} has two items at sequence ${it.sequence} (items ${p.index} and ${it.index}, events ${p.eventId} and ${it.eventId}); which one is current is ambiguous`,
        {
          context: {
            streamId: it.documentId,
            sequence: it.sequence,
            items: [p.index, it.index],
            eventIds: [p.eventId, it.eventId],
          },
        },
      );
    }
    byPosition.set(key, it);
  }
}

function describeIssues(where: string, issues: readonly z.core.$ZodIssue[]): string {
  return `${where}: ${issues
    .slice(0, 3)
    .map(
      (i) =>
        `${i.path.length > 0 ? i.path.join(".") : "(item)"}${/^must /.test(i.message) ? " " : ": "}${i.message}`,
    )
    .join(", ")}`;
}

function malformed(what: string, issues: readonly z.core.$ZodIssue[]): MalformedBackupError {
  const text = describeIssues(what, issues);
  return new MalformedBackupError(`${BACKUP_JSON_NAME}: ${text}`, {
    context: { fields: issues.slice(0, 5).map((i) => i.path.join(".")) },
  });
}
