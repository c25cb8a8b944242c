/**
 * `BackupStorage` on a folder of the local disk: `<root>/<backupId>/manifest.json`, `<root>/<backupId>/events-0001.jsonl`
 * ... Folders are created with mode 0700 and files with 0600 (backups hold wrapped keys and the archive's
 * structure: not secrets, but nobody else's business).
 *
 * A blob is written to a temporary file in its folder (`.tmp-<uuid>`, O_EXCL), synced, then linked to its name
 * (`link` fails if the name exists, so a blob is never overwritten, not even by a racing writer) and the temporary
 * name removed; the folder is synced. A crash leaves at most a `.tmp-*` file, which `list` ignores.
 */
import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { link, mkdir, open, readdir, stat, unlink, type FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { BackupExistsError, BackupFileMissingError, BackupStorageError } from "../../backup/errors.js";
import {
  blobNameSegments,
  type BackupBlobInfo,
  type BackupBlobWriter,
  type BackupStorage,
} from "../../backup/storage.js";

const TRANSIENT_CODES = new Set(["EAGAIN", "EBUSY", "EMFILE", "ENFILE", "EINTR", "ETIMEDOUT"]);

export class FolderBackupStorage implements BackupStorage {
  readonly location: string;

  constructor(root: string) {
    this.location = resolve(root);
  }

  async create(name: string): Promise<BackupBlobWriter> {
    const [dirPart, filePart] = split(name);
    const dir = dirPart === undefined ? this.location : join(this.location, dirPart);
    const path = join(dir, filePart);
    await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      throw storageError(err, `cannot create the backup folder ${dir}`, name);
    });
    if (await exists(path)) throw exists_(name);
    const tmp = join(dir, `.tmp-${randomUUID()}`);
    let handle: FileHandle | undefined;
    try {
      handle = await open(tmp, "wx", 0o600);
    } catch (err) {
      throw storageError(err, `cannot write in ${dir}`, name);
    }
    let state: "open" | "closed" | "aborted" = "open";
    const fh = handle;
    const cleanup = async (): Promise<void> => {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    };
    return {
      write: async (chunk) => {
        if (state !== "open")
          throw new BackupStorageError(`backup blob ${name} is not open`, { context: { name } });
        try {
          await fh.write(chunk);
        } catch (err) {
          throw storageError(err, `cannot write ${path}`, name);
        }
      },
      close: async () => {
        if (state !== "open") return;
        state = "closed";
        try {
          await fh.sync();
          await fh.close();
        } catch (err) {
          await cleanup();
          throw storageError(err, `cannot write ${path}`, name);
        }
        try {
          await link(tmp, path);
        } catch (err) {
          await unlink(tmp).catch(() => undefined);
          if ((err as { code?: string }).code === "EEXIST") throw exists_(name);
          throw storageError(err, `cannot name ${path}`, name);
        }
        await unlink(tmp).catch(() => undefined);
        await syncDir(dir);
      },
      abort: async () => {
        if (state !== "open") return;
        state = "aborted";
        await cleanup();
      },
    };
  }

  async put(name: string, data: Uint8Array): Promise<void> {
    const w = await this.create(name);
    try {
      await w.write(data);
      await w.close();
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  async *get(name: string): AsyncIterable<Uint8Array> {
    const path = this.path(name);
    const stream = createReadStream(path, { highWaterMark: 1024 * 1024 });
    try {
      for await (const chunk of stream) yield chunk as Buffer;
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") {
        throw new BackupFileMissingError(`backup blob ${name} does not exist in ${this.location}`, {
          context: { name },
        });
      }
      throw storageError(err, `cannot read ${path}`, name);
    } finally {
      stream.destroy();
    }
  }

  async stat(name: string): Promise<BackupBlobInfo | undefined> {
    const path = this.path(name);
    try {
      const st = await stat(path);
      return st.isFile() ? { name, bytes: st.size } : undefined;
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") return undefined;
      throw storageError(err, `cannot read ${path}`, name);
    }
  }

  async list(prefix: string): Promise<BackupBlobInfo[]> {
    const slash = prefix.indexOf("/");
    const out: BackupBlobInfo[] = [];
    const dirs =
      slash === -1
        ? await this.entries(this.location, true)
        : [prefix.slice(0, slash)].filter((d) => d.length > 0);
    if (slash === -1) {
      // Top-level: every blob of every backup folder whose name starts with the prefix.
      for (const d of dirs.filter((x) => x.startsWith(prefix))) out.push(...(await this.listDir(d, "")));
    } else {
      const d = dirs[0];
      if (d !== undefined) out.push(...(await this.listDir(d, prefix.slice(slash + 1))));
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private async listDir(dir: string, filePrefix: string): Promise<BackupBlobInfo[]> {
    try {
      blobNameSegments(dir);
    } catch {
      return [];
    }
    const path = join(this.location, dir);
    const out: BackupBlobInfo[] = [];
    for (const f of await this.entries(path, false)) {
      if (f.startsWith(".") || !f.startsWith(filePrefix)) continue;
      const st = await stat(join(path, f)).catch(() => undefined);
      if (st?.isFile()) out.push({ name: `${dir}/${f}`, bytes: st.size });
    }
    return out;
  }

  private async entries(path: string, directories: boolean): Promise<string[]> {
    try {
      const list = await readdir(path, { withFileTypes: true });
      return list.filter((e) => (directories ? e.isDirectory() : e.isFile())).map((e) => e.name);
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") return [];
      throw storageError(err, `cannot list ${path}`, path);
    }
  }

  private path(name: string): string {
    return join(this.location, ...blobNameSegments(name));
  }
}

function split(name: string): [string | undefined, string] {
  const parts = blobNameSegments(name);
  return parts.length === 2 ? [parts[0], parts[1] as string] : [undefined, parts[0] as string];
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function exists_(name: string): BackupExistsError {
  return new BackupExistsError(`backup blob ${name} exists; backups are never overwritten`, {
    context: { name },
  });
}

async function syncDir(dir: string): Promise<void> {
  const h = await open(dir, "r").catch(() => undefined);
  await h?.sync().catch(() => undefined);
  await h?.close().catch(() => undefined);
}

function storageError(err: unknown, message: string, name: string): BackupStorageError {
  const code = (err as { code?: string }).code;
  return new BackupStorageError(`${message}${code ? ` (${code})` : ""}`, {
    cause: err,
    context: { name, ...(code ? { fsCode: code } : {}) },
    retryable: code !== undefined && TRANSIENT_CODES.has(code),
  });
}
