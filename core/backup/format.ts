/**
 * The backup format (docs/backup-format.md, normative): a backup is `manifest.json` plus `events-NNNN.jsonl` files
 * under one name prefix (`<backupId>/`). This module holds the format's constants, the manifest's and an event
 * line's schemas (zod), the canonical JSON the signature covers, and the names of files.
 */
import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";
import { hasOwnProtoKey, validateNewEvent, type StoredEvent } from "../eventstore/events.js";
import { documentFactsOf } from "../eventstore/projection.js";
import { isStreamId, parseStreamId, WORKSPACE_ID_PATTERN } from "../eventstore/stream-id.js";
import { BackupEventInvalidError, BackupManifestInvalidError, InvalidBackupRequestError } from "./errors.js";

export const BACKUP_FORMAT = "amk-event-backup";
export const BACKUP_FORMAT_VERSION = 1;
export const MANIFEST_FILE = "manifest.json";
/** Signature algorithm of format version 1. */
export const SIGNATURE_ALGORITHM = "Ed25519";
/** Prefix of the signed bytes (domain separation): the signature is over this, then the canonical manifest. */
export const SIGNATURE_CONTEXT = `${BACKUP_FORMAT}/${BACKUP_FORMAT_VERSION} manifest\n`;
/** Default events per file. */
export const DEFAULT_EVENTS_PER_FILE = 50_000;
export const MAX_EVENTS_PER_FILE = 1_000_000;
/** Largest line accepted (an event's data is at most 64 KiB of JSON; the envelope adds well under 1 KiB). */
export const MAX_LINE_BYTES = 256 * 1024;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const EVENTS_FILE = /^events-(\d{4,9})\.jsonl$/;
/** Largest stream version the store allows (10 digits). */
const MAX_VERSION = 9_999_999_999;

export type BackupKind = "full" | "incremental";
export type BackupScope =
  { readonly kind: "workspace"; readonly workspaceId: string } | { readonly kind: "table" };

export interface ManifestStream {
  /** Events of the stream in this backup. */
  readonly count: number;
  /** Version of the first and the last of them (a full backup starts every stream at 1). */
  readonly first: number;
  readonly last: number;
}

export interface ManifestFile {
  /** `events-0001.jsonl`, `events-0002.jsonl`, ... in order. */
  readonly name: string;
  readonly bytes: number;
  readonly events: number;
  /** SHA-256 of the file's bytes, lower-case hex. */
  readonly sha256: string;
}

export interface ManifestBase {
  readonly backupId: string;
  readonly kind: BackupKind;
  /** SHA-256 (hex) of the base's `manifest.json` bytes: binds this backup to exactly that base. */
  readonly manifestSha256: string;
}

export interface ManifestSignature {
  readonly algorithm: typeof SIGNATURE_ALGORITHM;
  /** `backupKeyId` of the public key that verifies it. */
  readonly keyId: string;
  /** base64 of the 64-byte signature. */
  readonly value: string;
}

export interface BackupManifest {
  readonly format: typeof BACKUP_FORMAT;
  readonly formatVersion: typeof BACKUP_FORMAT_VERSION;
  readonly backupId: string;
  readonly kind: BackupKind;
  readonly scope: BackupScope;
  readonly source: { readonly table: string };
  /** When the export began (heads read from then on) and when it finished. */
  readonly startedAt: string;
  readonly exportedAt: string;
  /** The backup this one continues; null for a full backup. */
  readonly base: ManifestBase | null;
  /**
   * Incremental only (`{}` in a full backup): for each stream of this backup, the version after which its events
   * are included (0 for a stream that is new since the base). Equals the chain's last version of that stream.
   */
  readonly after: Readonly<Record<string, number>>;
  readonly streams: Readonly<Record<string, ManifestStream>>;
  readonly files: readonly ManifestFile[];
  readonly totals: { readonly streams: number; readonly events: number; readonly bytes: number };
  readonly signature: ManifestSignature;
}

export type UnsignedManifest = Omit<BackupManifest, "signature">;

// ---------------------------------------------------------------------------------------------------------------
// Schemas

const int = (min: number, max: number) => z.number().int().min(min).max(max);
const isoTime = z.string().regex(ISO_UTC, "an ISO 8601 UTC time");

const ScopeSchema = z.union([
  z.strictObject({ kind: z.literal("workspace"), workspaceId: z.string().regex(WORKSPACE_ID_PATTERN) }),
  z.strictObject({ kind: z.literal("table") }),
]);

const StreamKey = z.string().refine((s) => isStreamId(s), "a stream id");

export const ManifestSchema = z.strictObject({
  format: z.literal(BACKUP_FORMAT),
  formatVersion: z.literal(BACKUP_FORMAT_VERSION),
  backupId: z.string().regex(UUID, "a lower-case UUID"),
  kind: z.enum(["full", "incremental"]),
  scope: ScopeSchema,
  source: z.strictObject({ table: z.string().min(1).max(255) }),
  startedAt: isoTime,
  exportedAt: isoTime,
  base: z
    .strictObject({
      backupId: z.string().regex(UUID),
      kind: z.enum(["full", "incremental"]),
      manifestSha256: z.string().regex(SHA256_HEX),
    })
    .nullable(),
  after: z.record(StreamKey, int(0, MAX_VERSION)),
  streams: z.record(
    StreamKey,
    z.strictObject({
      count: int(1, MAX_VERSION),
      first: int(1, MAX_VERSION),
      last: int(1, MAX_VERSION),
    }),
  ),
  files: z.array(
    z.strictObject({
      name: z.string().regex(EVENTS_FILE),
      bytes: int(1, Number.MAX_SAFE_INTEGER),
      events: int(1, MAX_EVENTS_PER_FILE),
      sha256: z.string().regex(SHA256_HEX),
    }),
  ),
  totals: z.strictObject({
    streams: int(0, Number.MAX_SAFE_INTEGER),
    events: int(0, Number.MAX_SAFE_INTEGER),
    bytes: int(0, Number.MAX_SAFE_INTEGER),
  }),
  signature: z.strictObject({
    algorithm: z.literal(SIGNATURE_ALGORITHM),
    keyId: z.string().regex(/^[0-9a-f]{32}$/),
    value: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, "base64 of 64 bytes"),
  }),
});

/** One line of an events file: a stored event exactly as the event store returns it. */
export const EventLineSchema = z.strictObject({
  streamId: StreamKey,
  version: int(1, MAX_VERSION),
  eventId: z.string().regex(UUID),
  type: z.string().regex(/^[A-Z][A-Za-z0-9]{0,127}$/),
  schemaVersion: int(1, Number.MAX_SAFE_INTEGER),
  occurredAt: isoTime,
  recordedAt: isoTime,
  data: z.record(z.string(), z.unknown()),
});

// ---------------------------------------------------------------------------------------------------------------
// Canonical JSON and manifest bytes

/**
 * RFC 8785 (JCS) for the values a manifest holds: objects with keys sorted by UTF-16 code units, no whitespace,
 * strings as `JSON.stringify` writes them, integers in decimal. Anything else (fractions, undefined, functions,
 * class instances) is refused, so the canonical form is never ambiguous.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new TypeError("canonical JSON holds safe integers only");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null)
      throw new TypeError("canonical JSON holds plain objects only");
    const entries = Object.entries(value as Record<string, unknown>);
    for (const [k, v] of entries)
      if (v === undefined) throw new TypeError(`canonical JSON: ${k} is undefined`);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
}

/** The bytes a manifest's signature covers: the context line, then the canonical JSON without `signature`. */
export function signedBytes(manifest: UnsignedManifest | BackupManifest): Buffer {
  const { signature: _omit, ...unsigned } = manifest as BackupManifest;
  return Buffer.from(SIGNATURE_CONTEXT + canonicalJson(unsigned), "utf8");
}

/** `manifest.json` as stored: the canonical JSON of the whole manifest and one line end. */
export function manifestBytes(manifest: BackupManifest): Buffer {
  return Buffer.from(`${canonicalJson(manifest)}\n`, "utf8");
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Parses `manifest.json` bytes: JSON, the schema of format version 1. Canonical form and signature are checked by
 * the verifier (`verifyBackup`), which needs the trusted keys.
 */
export function parseManifest(bytes: Uint8Array, backupId: string): BackupManifest {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new BackupManifestInvalidError(`the manifest of backup ${backupId} is not JSON`, {
      context: { backupId },
    });
  }
  const format = (json as { format?: unknown; formatVersion?: unknown } | null) ?? {};
  if (format.format === BACKUP_FORMAT && format.formatVersion !== BACKUP_FORMAT_VERSION) {
    throw new BackupManifestInvalidError(
      `backup ${backupId} has format version ${typeof format.formatVersion === "number" || typeof format.formatVersion === "string" ? String(format.formatVersion).slice(0, 20) : `<${typeof format.formatVersion}>`}; this reader knows version ${BACKUP_FORMAT_VERSION}`,
      { context: { backupId } },
    );
  }
  const r = ManifestSchema.safeParse(json);
  if (!r.success) {
    const problems = r.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.map(String).join(".").slice(0, 120) || "(manifest)"}: ${i.message}`);
    throw new BackupManifestInvalidError(
      `the manifest of backup ${backupId} is not a ${BACKUP_FORMAT} v${BACKUP_FORMAT_VERSION} manifest: ${problems.join("; ")}`,
      { context: { backupId, problems } },
    );
  }
  return r.data as BackupManifest;
}

// ---------------------------------------------------------------------------------------------------------------
// Events lines

/** One line (without its line end): the envelope in the store's order, then `data`. */
export function eventLine(event: StoredEvent): string {
  return JSON.stringify({
    streamId: event.streamId,
    version: event.version,
    eventId: event.eventId,
    type: event.type,
    schemaVersion: event.schemaVersion,
    occurredAt: event.occurredAt,
    recordedAt: event.recordedAt,
    data: event.data,
  });
}

/**
 * Parses and checks one line: JSON, the line schema, the envelope as the store checks it on append
 * (`validateNewEvent`: ids, times, data size and JSON values) and, for document events, the stream facts the store
 * checks (`AggregateId`, `WorkspaceId`, `KeyId` of the stream's workspace).
 */
export function parseEventLine(
  line: string,
  where: { backupId: string; file: string; line: number },
): StoredEvent {
  const fail = (why: string): never => {
    throw new BackupEventInvalidError(`backup ${where.backupId}, ${where.file} line ${where.line}: ${why}`, {
      context: { ...where },
    });
  };
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return fail("not JSON");
  }
  // Before the schema: zod's record would drop the key silently, and the line would restore without it.
  if (hasOwnProtoKey(json)) return fail('it has a "__proto__" key, which no stored event may have');
  const r = EventLineSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    return fail(
      `not a stored event (${issue?.path.map(String).join(".") || "line"}: ${issue?.message ?? "?"})`,
    );
  }
  const e = r.data;
  try {
    validateNewEvent(e);
    if (
      e.type === "DocumentEncryptionKeysAdded" ||
      e.type === "DocumentStored" ||
      e.type === "DocumentDeleted"
    ) {
      documentFactsOf({ streamId: e.streamId, type: e.type, data: e.data, version: e.version });
    }
  } catch (err) {
    return fail(`the event store would refuse this event: ${(err as Error).message.slice(0, 200)}`);
  }
  return { ...e, streamId: parseStreamId(e.streamId).streamId };
}

/** Field names that would mean plaintext secret material in an event's data (compared case-insensitively). */
const SECRET_FIELD_NAMES = new Set(
  [
    "dek",
    "plaintext",
    "plaintextdek",
    "passphrase",
    "password",
    "pin",
    "secret",
    "totpsecret",
    "totpcode",
    "seed",
    "privatekey",
    "masterkey",
    "keymaterial",
  ].map((s) => s.toLowerCase()),
);

/** The path of the first field of `data` named like a plaintext secret, or undefined. */
export function secretFieldIn(data: unknown, path = "data", depth = 0): string | undefined {
  if (depth > 64 || data === null || typeof data !== "object") return undefined;
  if (Array.isArray(data)) {
    for (const [i, v] of data.entries()) {
      const found = secretFieldIn(v, `${path}[${i}]`, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  for (const [k, v] of Object.entries(data as Record<string, unknown>)) {
    if (SECRET_FIELD_NAMES.has(k.toLowerCase())) return `${path}.${k}`;
    const found = secretFieldIn(v, `${path}.${k}`, depth + 1);
    if (found) return found;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Names and ids

export function eventsFileName(index: number): string {
  return `events-${String(index).padStart(4, "0")}.jsonl`;
}

export function blobName(backupId: string, file: string): string {
  return `${backupId}/${file}`;
}

export function isBackupId(value: unknown): value is string {
  return typeof value === "string" && UUID.test(value);
}

export function assertBackupId(value: unknown, field = "backupId"): string {
  if (!isBackupId(value)) {
    throw new InvalidBackupRequestError(`${field} must be a lower-case UUID`, {
      context: { [field]: typeof value === "string" ? value.slice(0, 80) : `<${typeof value}>` },
    });
  }
  return value;
}

/**
 * A new backup id: a UUID version 7 (RFC 9562), whose first 48 bits are the Unix time in milliseconds, so that backup
 * ids sort in the order the backups were made.
 */
export function newBackupId(now: Date = new Date()): string {
  const b = randomBytes(16);
  const ms = BigInt(now.getTime());
  for (let i = 0; i < 6; i++) b[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x70;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Whether a stream belongs to the scope. */
export function inScope(scope: BackupScope, streamId: string): boolean {
  if (scope.kind === "table") return isStreamId(streamId);
  return isStreamId(streamId) && parseStreamId(streamId).workspaceId === scope.workspaceId;
}

export function describeScope(scope: BackupScope): string {
  return scope.kind === "table" ? "the whole table" : `workspace ${scope.workspaceId}`;
}

export function sameScope(a: BackupScope, b: BackupScope): boolean {
  return (
    a.kind === b.kind && (a.kind === "table" || a.workspaceId === (b as { workspaceId: string }).workspaceId)
  );
}
