/**
 * Exporting a backup (docs/backup-format.md): list the streams of the scope with their heads (strongly consistent),
 * then read each stream's events up to the head read (or, for an increment, those after the chain's last version)
 * in batches, and write them as JSON Lines, a stream's events consecutive and in version order, streams in stream-id
 * order, a new file every `maxEventsPerFile` events; finally the signed manifest. Memory: one entry per stream (the
 * manifest needs it) and at most `readConcurrency` batches of about 1,000 events.
 *
 * A failed export writes no manifest: its folder is an unfinished export that verification refuses
 * (`BackupNotFoundError`) and that may be deleted.
 */
import { performance } from "node:perf_hooks";
import { EventStoreCorruptionError } from "../eventstore/errors.js";
import type { StoredEvent } from "../eventstore/events.js";
import {
  BackupChainError,
  BackupExistsError,
  BackupManifestMismatchError,
  BackupSecretFieldError,
  InvalidBackupRequestError,
} from "./errors.js";
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  DEFAULT_EVENTS_PER_FILE,
  MANIFEST_FILE,
  MAX_EVENTS_PER_FILE,
  SIGNATURE_ALGORITHM,
  assertBackupId,
  blobName,
  describeScope,
  eventLine,
  eventsFileName,
  inScope,
  manifestBytes,
  newBackupId,
  sameScope,
  secretFieldIn,
  sha256Hex,
  signedBytes,
  type BackupKind,
  type BackupManifest,
  type BackupScope,
  type ManifestFile,
  type ManifestStream,
  type UnsignedManifest,
} from "./format.js";
import { createHash, type Hash } from "node:crypto";
import type { BackupSource } from "./ports.js";
import type { BackupPublicKey, BackupSigner } from "./signing.js";
import type { BackupBlobWriter, BackupStorage } from "./storage.js";
import { chainPositions, checkTrustedKeys, loadChain, type ProgressCallback } from "./verify.js";
import { assertValidWorkspaceId } from "../eventstore/stream-id.js";

/** Events read per request batch (readEvents refs, or one readStream page of a long stream). */
const READ_BATCH = 1000;
/** Bytes gathered before a write to the storage. */
const WRITE_CHUNK = 256 * 1024;

export interface ExportBackupOptions {
  readonly source: BackupSource;
  readonly storage: BackupStorage;
  /** Signs the manifest (`backupSignerFromVault`). Its public key is also trusted for the base chain. */
  readonly signer: BackupSigner;
  readonly scope: BackupScope;
  /** Default `full`. An increment needs `baseBackupId`. */
  readonly kind?: BackupKind;
  /** The backup (full or incremental) this increment continues: its events start after the chain's last versions. */
  readonly baseBackupId?: string;
  /** Further pinned keys accepted on the base chain's manifests (e.g. before a signing-key rotation). */
  readonly trustedKeys?: readonly BackupPublicKey[];
  /** Default: a new UUID v7 (sorts by time). */
  readonly backupId?: string;
  /** Events per file, 1..1,000,000 (default 50,000). */
  readonly maxEventsPerFile?: number;
  /** Read batches in flight, 1..16 (default 4). */
  readonly readConcurrency?: number;
  readonly onProgress?: ProgressCallback;
  readonly clock?: () => Date;
}

export interface ExportBackupResult {
  readonly backupId: string;
  readonly kind: BackupKind;
  readonly scope: BackupScope;
  readonly baseBackupId?: string;
  /** SHA-256 (hex) of `manifest.json`: what an increment or a restoration test records. */
  readonly manifestSha256: string;
  /** The signing key's id. */
  readonly keyId: string;
  readonly streams: number;
  readonly events: number;
  readonly files: number;
  /** Bytes of the events files. */
  readonly bytes: number;
  readonly seconds: number;
  /** Where it was written (the storage's location). */
  readonly location: string;
}

interface WorkItem {
  readonly streamId: string;
  readonly from: number;
  readonly to: number;
}

/** One read: several short streams through `readEvents`, or a slice of one long stream through `readStream`. */
type ReadJob =
  | { readonly kind: "refs"; readonly items: readonly WorkItem[] }
  | { readonly kind: "slice"; readonly item: WorkItem };

export async function exportBackup(options: ExportBackupOptions): Promise<ExportBackupResult> {
  const t0 = performance.now();
  const { source, storage, signer } = options;
  const clock = options.clock ?? (() => new Date());
  const kind = options.kind ?? "full";
  const scope = checkScope(options.scope);
  const maxEventsPerFile = checkInt(
    options.maxEventsPerFile ?? DEFAULT_EVENTS_PER_FILE,
    "maxEventsPerFile",
    1,
    MAX_EVENTS_PER_FILE,
  );
  const readConcurrency = checkInt(options.readConcurrency ?? 4, "readConcurrency", 1, 16);
  if (kind !== "full" && kind !== "incremental") {
    throw new InvalidBackupRequestError("kind must be full or incremental", {
      context: { kind: String(kind) },
    });
  }
  if (kind === "incremental" && options.baseBackupId === undefined) {
    throw new InvalidBackupRequestError("an incremental export needs baseBackupId");
  }
  if (kind === "full" && options.baseBackupId !== undefined) {
    throw new InvalidBackupRequestError("a full export has no baseBackupId");
  }
  const startedAt = clock();
  const backupId = options.backupId === undefined ? newBackupId(startedAt) : assertBackupId(options.backupId);
  if ((await storage.list(`${backupId}/`)).length > 0) {
    throw new BackupExistsError(
      `backup ${backupId} exists in ${storage.location}; backups are never overwritten`,
      {
        context: { backupId },
      },
    );
  }
  const progress = (phase: "list" | "export", done: number, total: number, since: number): void => {
    const elapsedSeconds = (performance.now() - since) / 1000;
    options.onProgress?.({
      backupId,
      phase,
      done,
      total,
      ratePerSecond: elapsedSeconds > 0 ? done / elapsedSeconds : 0,
      elapsedSeconds,
    });
  };

  // The base chain: its manifests (signatures, links), the positions to continue after.
  let base: { backupId: string; kind: BackupKind; manifestSha256: string } | null = null;
  let positions = new Map<string, number>();
  if (kind === "incremental") {
    const baseId = assertBackupId(options.baseBackupId, "baseBackupId");
    const trusted = checkTrustedKeys([signer, ...(options.trustedKeys ?? [])]);
    const chain = await loadChain(storage, baseId, trusted);
    const last = chain[chain.length - 1]!;
    if (!sameScope(last.manifest.scope, scope)) {
      throw new BackupChainError(
        `base ${baseId} covers ${describeScope(last.manifest.scope)}, not ${describeScope(scope)}`,
        { context: { baseBackupId: baseId } },
      );
    }
    if (last.manifest.source.table !== source.tableName) {
      throw new BackupChainError(
        `base ${baseId} is of table ${last.manifest.source.table}, not ${source.tableName}`,
        { context: { baseBackupId: baseId } },
      );
    }
    base = { backupId: baseId, kind: last.manifest.kind, manifestSha256: last.manifestSha256 };
    positions = chainPositions(chain);
  }

  // 1. The streams and their heads.
  const tList = performance.now();
  const heads = new Map<string, number>();
  for await (const page of source.listStreamHeads(scope)) {
    for (const h of page) {
      if (!inScope(scope, h.streamId)) {
        throw new BackupManifestMismatchError(
          `the event store listed stream ${h.streamId.slice(0, 200)} for ${describeScope(scope)}`,
          { context: { streamId: h.streamId.slice(0, 200) } },
        );
      }
      heads.set(h.streamId, Math.max(h.version, heads.get(h.streamId) ?? 0));
    }
    progress("list", heads.size, heads.size, tList);
  }
  for (const [streamId, at] of positions) {
    const head = heads.get(streamId) ?? 0;
    if (head < at) {
      throw new BackupChainError(
        `stream ${streamId} is at version ${head} in ${source.tableName}, but the base chain holds it up to ${at}: this is not the table the base was made from`,
        { context: { streamId, version: head, basePosition: at } },
      );
    }
  }
  const work: WorkItem[] = [];
  for (const streamId of [...heads.keys()].sort()) {
    const from = (positions.get(streamId) ?? 0) + 1;
    const to = heads.get(streamId) as number;
    if (from <= to) work.push({ streamId, from, to });
  }
  heads.clear();
  const totalEvents = work.reduce((n, w) => n + w.to - w.from + 1, 0);

  // 2. The events, in order, into files.
  const files = new EventsFiles(storage, backupId, maxEventsPerFile);
  const streams: Record<string, ManifestStream> = {};
  const after: Record<string, number> = {};
  const tExport = performance.now();
  let done = 0;
  try {
    const jobs = readJobs(work);
    const inflight: Promise<StoredEvent[]>[] = [];
    const fill = (): void => {
      while (inflight.length < readConcurrency) {
        const next = jobs.next();
        if (next.done) return;
        const p = readJob(source, next.value);
        p.catch(() => undefined); // awaited in order below; this only keeps an early failure from going unhandled
        inflight.push(p);
      }
    };
    fill();
    while (inflight.length > 0) {
      const events = await (inflight.shift() as Promise<StoredEvent[]>);
      fill();
      for (const e of events) {
        const field = secretFieldIn(e.data);
        if (field !== undefined) {
          throw new BackupSecretFieldError(
            `event ${e.streamId}@${e.version} (${e.type}) has a field named like a plaintext secret (${field.slice(0, 200)}); the backup was not written`,
            {
              context: { streamId: e.streamId, version: e.version, type: e.type, field: field.slice(0, 200) },
            },
          );
        }
        await files.add(eventLine(e));
      }
      done += events.length;
      progress("export", done, totalEvents, tExport);
    }
    await files.finish();
  } catch (err) {
    await files.abort();
    throw err;
  }
  for (const w of work) {
    streams[w.streamId] = { count: w.to - w.from + 1, first: w.from, last: w.to };
    if (kind === "incremental") after[w.streamId] = w.from - 1;
  }

  // 3. The manifest, signed, written last.
  const unsigned: UnsignedManifest = {
    format: BACKUP_FORMAT,
    formatVersion: BACKUP_FORMAT_VERSION,
    backupId,
    kind,
    scope,
    source: { table: source.tableName },
    startedAt: startedAt.toISOString(),
    exportedAt: clock().toISOString(),
    base,
    after,
    streams,
    files: files.written,
    totals: {
      streams: work.length,
      events: totalEvents,
      bytes: files.written.reduce((n, f) => n + f.bytes, 0),
    },
  };
  const signature = await signer.sign(signedBytes(unsigned));
  const manifest: BackupManifest = {
    ...unsigned,
    signature: {
      algorithm: SIGNATURE_ALGORITHM,
      keyId: signer.keyId,
      value: Buffer.from(signature).toString("base64"),
    },
  };
  const bytes = manifestBytes(manifest);
  await storage.put(blobName(backupId, MANIFEST_FILE), bytes);
  return {
    backupId,
    kind,
    scope,
    ...(base ? { baseBackupId: base.backupId } : {}),
    manifestSha256: sha256Hex(bytes),
    keyId: signer.keyId,
    streams: work.length,
    events: totalEvents,
    files: files.written.length,
    bytes: unsigned.totals.bytes,
    seconds: (performance.now() - t0) / 1000,
    location: storage.location,
  };
}

function* readJobs(work: readonly WorkItem[]): Generator<ReadJob> {
  let items: WorkItem[] = [];
  let refs = 0;
  for (const w of work) {
    const n = w.to - w.from + 1;
    if (n > READ_BATCH) {
      if (items.length > 0) yield { kind: "refs", items };
      items = [];
      refs = 0;
      for (let from = w.from; from <= w.to; from += READ_BATCH) {
        yield {
          kind: "slice",
          item: { streamId: w.streamId, from, to: Math.min(w.to, from + READ_BATCH - 1) },
        };
      }
      continue;
    }
    if (refs + n > READ_BATCH && items.length > 0) {
      yield { kind: "refs", items };
      items = [];
      refs = 0;
    }
    items.push(w);
    refs += n;
  }
  if (items.length > 0) yield { kind: "refs", items };
}

async function readJob(source: BackupSource, job: ReadJob): Promise<StoredEvent[]> {
  if (job.kind === "slice") {
    const { streamId, from, to } = job.item;
    const page = await source.readStream(streamId, { fromVersion: from, limit: to - from + 1 });
    const events = page.events.filter((e) => e.version <= to);
    if (events.length !== to - from + 1 || events.some((e, i) => e.version !== from + i)) {
      throw missing(streamId, from, to);
    }
    return events;
  }
  const refs = job.items.flatMap((w) =>
    Array.from({ length: w.to - w.from + 1 }, (_, i) => ({ streamId: w.streamId, version: w.from + i })),
  );
  const found = await source.readEvents(refs);
  return found.map((e, i) => {
    const ref = refs[i]!;
    if (e === undefined || e.streamId !== ref.streamId || e.version !== ref.version) {
      throw missing(ref.streamId, ref.version, ref.version);
    }
    return e;
  });
}

function missing(streamId: string, from: number, to: number): EventStoreCorruptionError {
  return new EventStoreCorruptionError(
    `stream ${streamId} lacks events ${from}..${to} below the head it was listed with`,
    { context: { streamId, from, to } },
  );
}

/** The events files of one backup: a new file every `max` events, each hashed as it is written. */
class EventsFiles {
  readonly written: ManifestFile[] = [];
  private writer: BackupBlobWriter | undefined;
  private hash: Hash | undefined;
  private buffer: Buffer[] = [];
  private buffered = 0;
  private events = 0;
  private bytes = 0;

  constructor(
    private readonly storage: BackupStorage,
    private readonly backupId: string,
    private readonly max: number,
  ) {}

  async add(line: string): Promise<void> {
    if (this.writer === undefined) {
      this.writer = await this.storage.create(
        blobName(this.backupId, eventsFileName(this.written.length + 1)),
      );
      this.hash = createHash("sha256");
      this.events = 0;
      this.bytes = 0;
    }
    const b = Buffer.from(`${line}\n`, "utf8");
    this.buffer.push(b);
    this.buffered += b.length;
    this.events += 1;
    if (this.buffered >= WRITE_CHUNK) await this.flush();
    if (this.events >= this.max) await this.close();
  }

  async finish(): Promise<void> {
    if (this.writer !== undefined) await this.close();
  }

  async abort(): Promise<void> {
    const w = this.writer;
    this.writer = undefined;
    this.buffer = [];
    await w?.abort().catch(() => undefined);
  }

  private async flush(): Promise<void> {
    if (this.buffered === 0 || this.writer === undefined) return;
    const chunk = Buffer.concat(this.buffer, this.buffered);
    this.buffer = [];
    this.buffered = 0;
    this.hash?.update(chunk);
    this.bytes += chunk.length;
    await this.writer.write(chunk);
  }

  private async close(): Promise<void> {
    await this.flush();
    const writer = this.writer as BackupBlobWriter;
    await writer.close();
    this.writer = undefined;
    this.written.push({
      name: eventsFileName(this.written.length + 1),
      bytes: this.bytes,
      events: this.events,
      sha256: (this.hash as Hash).digest("hex"),
    });
  }
}

function checkScope(scope: BackupScope): BackupScope {
  if (typeof scope !== "object" || scope === null) {
    throw new InvalidBackupRequestError(
      "scope must be { kind: 'workspace', workspaceId } or { kind: 'table' }",
    );
  }
  if (scope.kind === "table") return { kind: "table" };
  if (scope.kind === "workspace") {
    assertValidWorkspaceId(scope.workspaceId);
    return { kind: "workspace", workspaceId: scope.workspaceId };
  }
  throw new InvalidBackupRequestError("scope.kind must be workspace or table", {
    context: { kind: String((scope as { kind?: unknown }).kind).slice(0, 40) },
  });
}

function checkInt(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidBackupRequestError(`${name} must be an integer from ${min} to ${max}`, {
      context: { [name]: typeof value === "number" ? value : `<${typeof value}>` },
    });
  }
  return value;
}
