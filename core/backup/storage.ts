/**
 * Where backups are kept: named blobs, written once. Blob names are `<backupId>/<file>` (a folder per backup on disk,
 * a key prefix in S3). Adapters: `core/adapters/backup-folder/` (a folder on the local disk) and, here, an in-memory
 * store for tests. An S3 adapter maps `create` to a multipart upload with `If-None-Match: *`, `get` to a
 * streaming GetObject, `stat` to HeadObject and `list` to ListObjectsV2.
 */
import { BackupExistsError, BackupFileMissingError, InvalidBackupRequestError } from "./errors.js";

/** A blob being written. Nothing is visible under its name until `close` succeeds. */
export interface BackupBlobWriter {
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the blob visible under its name, in one step. */
  close(): Promise<void>;
  /** Drops what was written; the name stays free. Safe to call after a failure. */
  abort(): Promise<void>;
}

export interface BackupBlobInfo {
  readonly name: string;
  readonly bytes: number;
}

export interface BackupStorage {
  /** Where the blobs are, for messages (a folder path, `s3://bucket/prefix`). */
  readonly location: string;
  /**
   * Starts a new blob. `BackupExistsError` when a blob of that name exists (blobs are never overwritten);
   * `InvalidBackupRequestError` for a bad name.
   */
  create(name: string): Promise<BackupBlobWriter>;
  /** A whole small blob (a manifest) at once: `create`, `write`, `close`. */
  put(name: string, data: Uint8Array): Promise<void>;
  /** The blob's bytes, in chunks. `BackupFileMissingError` when there is no such blob. */
  get(name: string): AsyncIterable<Uint8Array>;
  /** Size of the blob, or undefined when there is none. */
  stat(name: string): Promise<BackupBlobInfo | undefined>;
  /** Blobs whose names start with `prefix` (e.g. `<backupId>/`), by name. */
  list(prefix: string): Promise<BackupBlobInfo[]>;
}

/** One segment of a blob name: letters, digits, `.`, `_`, `-`; not `.` or `..`, at most 128 characters. */
const SEGMENT = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}$/;

/** Checks a blob name (`<segment>` or `<segment>/<segment>`) and returns its segments. */
export function blobNameSegments(name: unknown): string[] {
  const parts = typeof name === "string" ? name.split("/") : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => SEGMENT.test(p))) {
    throw new InvalidBackupRequestError(
      "a backup blob name is <backupId>/<file>: 1-128 letters, digits, '.', '_' or '-' per part",
      { context: { name: typeof name === "string" ? name.slice(0, 300) : `<${typeof name}>` } },
    );
  }
  return parts;
}

/** Reads a whole blob into memory (manifests only: events files are read as streams). */
export async function readBlob(storage: BackupStorage, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of storage.get(name)) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** Backups kept in memory: for unit tests and small tools. Same rules as every adapter. */
export class MemoryBackupStorage implements BackupStorage {
  readonly location = "memory:";
  private readonly blobs = new Map<string, Buffer>();

  async create(name: string): Promise<BackupBlobWriter> {
    blobNameSegments(name);
    if (this.blobs.has(name)) {
      throw new BackupExistsError(`backup blob ${name} exists; backups are never overwritten`, {
        context: { name },
      });
    }
    const chunks: Buffer[] = [];
    let open = true;
    return {
      write: async (chunk) => {
        if (!open) throw new InvalidBackupRequestError(`backup blob ${name} is closed`);
        chunks.push(Buffer.from(chunk));
      },
      close: async () => {
        if (!open) return;
        open = false;
        if (this.blobs.has(name)) {
          throw new BackupExistsError(`backup blob ${name} exists; backups are never overwritten`, {
            context: { name },
          });
        }
        this.blobs.set(name, Buffer.concat(chunks));
      },
      abort: async () => {
        open = false;
        chunks.length = 0;
      },
    };
  }

  async put(name: string, data: Uint8Array): Promise<void> {
    const w = await this.create(name);
    await w.write(data);
    await w.close();
  }

  async *get(name: string): AsyncIterable<Uint8Array> {
    blobNameSegments(name);
    const blob = this.blobs.get(name);
    if (blob === undefined) {
      throw new BackupFileMissingError(`backup blob ${name} does not exist`, { context: { name } });
    }
    // Chunks of 64 KiB, as a file or an S3 body would arrive.
    for (let i = 0; i < blob.length; i += 65_536) yield blob.subarray(i, i + 65_536);
  }

  async stat(name: string): Promise<BackupBlobInfo | undefined> {
    blobNameSegments(name);
    const blob = this.blobs.get(name);
    return blob === undefined ? undefined : { name, bytes: blob.length };
  }

  async list(prefix: string): Promise<BackupBlobInfo[]> {
    return [...this.blobs]
      .filter(([name]) => name.startsWith(prefix))
      .map(([name, blob]) => ({ name, bytes: blob.length }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  // Test helpers: change what is stored behind the port's back, as an attacker or a broken disk would.

  /** The stored bytes (a copy). */
  peek(name: string): Buffer | undefined {
    const blob = this.blobs.get(name);
    return blob === undefined ? undefined : Buffer.from(blob);
  }

  /** Replaces (or creates) a blob. */
  overwrite(name: string, data: Uint8Array): void {
    this.blobs.set(name, Buffer.from(data));
  }

  remove(name: string): boolean {
    return this.blobs.delete(name);
  }
}
