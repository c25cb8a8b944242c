/**
 * The embedded default `SecretVault`: a folder on the local disk (e.g. `.amk/vault/`), for development, CI and the
 * local story. Layout (docs/vault.md):
 *
 *     <root>/                          0700, refused if group or others have any access
 *       <sha256(name) in hex>/         0700, one folder per secret: a name can never escape the root
 *         index.json                   0600, the secret's name and its versions (oldest first)
 *         v000001.bin, v000002.bin     0600, one file per version, never changed or deleted
 *         .lock                        while a put runs (O_EXCL: serialises writers across processes)
 *         .tmp-<uuid>                  a write in progress; a leftover one is ignored
 *
 * Every file is written atomically: a temporary file in the same folder (mode 0600, O_EXCL), fsync, rename, fsync of
 * the folder. A version file is written before the index that names it, so a crash leaves at most an unnamed file.
 * The index keeps each version's SHA-256 and size; a read that finds other bytes fails with `VaultCorruptionError`.
 * Puts on one secret are serialised in-process (a queue per secret) and across processes (the lock file).
 */
import { createHash, randomUUID } from "node:crypto";
import { constants } from "node:fs";
import { mkdir, open, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { z } from "zod";
import { AmkError } from "../../shared/errors.js";
import {
  SecretNotFoundError,
  SecretVersionNotFoundError,
  VaultAccessDeniedError,
  VaultConflictError,
  VaultCorruptionError,
  VaultInsecureError,
  VaultUnavailableError,
  type VaultError,
  type VaultErrorContext,
} from "../../vault/errors.js";
import {
  CURRENT_LABEL,
  PREVIOUS_LABEL,
  checkGet,
  checkPut,
  orderLabels,
  validateSecretName,
  type GetSecretOptions,
  type PutSecretOptions,
  type SecretVault,
  type SecretVersion,
  type StoredSecret,
} from "../../vault/secret-vault.js";

export const FILE_VAULT_FORMAT = "amk-file-vault/1";
const INDEX_FILE = "index.json";
const LOCK_FILE = ".lock";
const GROUP_OTHER_BITS = 0o077;
const POSIX = process.platform !== "win32";
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

export interface FileSecretVaultOptions {
  /** How long a put waits for another process's lock, in milliseconds. Default 10 s. */
  readonly lockTimeoutMs?: number;
  /** A lock file older than this is taken for abandoned (a crashed writer) and removed. Default 30 s. */
  readonly staleLockMs?: number;
}

const VersionEntry = z.object({
  versionId: z.string().regex(/^[A-Za-z0-9-]{1,64}$/),
  createdAt: z.iso.datetime(),
  labels: z.array(z.string().min(1)),
  file: z.string().regex(/^v\d{6,9}\.bin$/),
  size: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
type VersionEntry = z.infer<typeof VersionEntry>;
const Index = z.object({
  format: z.literal(FILE_VAULT_FORMAT),
  name: z.string(),
  description: z.string().optional(),
  versions: z.array(VersionEntry),
});
type Index = z.infer<typeof Index>;

export class FileSecretVault implements SecretVault {
  /** Per secret name: the tail of the queue of puts in this process. */
  private readonly queues = new Map<string, Promise<void>>();

  private constructor(
    /** The absolute root folder. */
    readonly root: string,
    private readonly lockTimeoutMs: number,
    private readonly staleLockMs: number,
  ) {}

  /**
   * Opens the vault at `root`, creating the folder (mode 0700) when it does not exist.
   * @throws VaultInsecureError when group or others may access the root, or another user owns it
   */
  static async open(root: string, options: FileSecretVaultOptions = {}): Promise<FileSecretVault> {
    const path = resolve(root);
    const context = { root: path, operation: "open" };
    try {
      const st = await stat(path).catch(async (err: unknown) => {
        if ((err as { code?: unknown }).code !== "ENOENT") throw err;
        await mkdir(path, { recursive: true, mode: 0o700 });
        return stat(path);
      });
      if (!st.isDirectory()) throw new VaultInsecureError(`Vault root "${path}" is not a directory`, context);
      if (POSIX) {
        const mode = st.mode & 0o777;
        const octal = `0${mode.toString(8).padStart(3, "0")}`;
        if ((mode & GROUP_OTHER_BITS) !== 0) {
          throw new VaultInsecureError(
            `Vault root "${path}" is accessible by group or others (mode ${octal}); restrict it to its owner: ` +
              "chmod 700",
            { ...context, mode: octal },
          );
        }
        const uid = process.getuid?.();
        if (uid !== undefined && st.uid !== uid) {
          throw new VaultInsecureError(`Vault root "${path}" belongs to another user (uid ${st.uid})`, {
            ...context,
            ownerUid: st.uid,
          });
        }
      }
    } catch (err) {
      throw fsError(err, context);
    }
    return new FileSecretVault(path, options.lockTimeoutMs ?? 10_000, options.staleLockMs ?? 30_000);
  }

  /** The folder of a secret (exists once a put started). */
  secretDir(name: string): string {
    return join(this.root, createHash("sha256").update(validateSecretName(name), "utf8").digest("hex"));
  }

  async putSecret(name: string, value: Uint8Array, options?: PutSecretOptions): Promise<SecretVersion> {
    const put = checkPut(name, value, options);
    const bytes = Uint8Array.from(value); // the bytes hashed are the bytes written, whatever the caller does meanwhile
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const dir = this.secretDir(name);
    const context = { secretName: name, operation: "putSecret" };
    try {
      await mkdir(dir, { mode: 0o700 }).catch((err: unknown) => {
        if ((err as { code?: unknown }).code !== "EEXIST") throw err;
      });
      return await this.serialised(name, dir, async () => {
        const index = (await this.readIndex(name, dir, true)) ?? {
          format: FILE_VAULT_FORMAT,
          name,
          ...(put.description === undefined ? {} : { description: put.description }),
          versions: [],
        };
        if (put.tokenVersionId !== undefined) {
          const existing = index.versions.find((v) => v.versionId === put.tokenVersionId);
          if (existing !== undefined) {
            if (existing.sha256 === sha256 && existing.size === bytes.length) return toVersion(existing);
            throw new VaultConflictError(
              `Secret "${name}" already has version ${existing.versionId} for this client token, with another ` +
                "value; versions are immutable: put the new value with another client token",
              { ...context, versionId: existing.versionId },
            );
          }
        }
        const entry: VersionEntry = {
          versionId: put.tokenVersionId ?? randomUUID(),
          createdAt: new Date().toISOString(),
          labels: orderLabels([CURRENT_LABEL, ...put.extraLabels]),
          file: `v${String(index.versions.length + 1).padStart(6, "0")}.bin`,
          size: bytes.length,
          sha256,
        };
        await writeAtomically(dir, entry.file, bytes);
        bytes.fill(0);
        const moved = new Set([PREVIOUS_LABEL, ...put.extraLabels]);
        const versions = index.versions.map((v) => {
          const kept = v.labels.filter((l) => !moved.has(l));
          const labels = kept.includes(CURRENT_LABEL)
            ? [...kept.filter((l) => l !== CURRENT_LABEL), PREVIOUS_LABEL]
            : kept;
          return { ...v, labels: orderLabels(labels) };
        });
        const next: Index = { ...index, versions: [...versions, entry] };
        await writeAtomically(dir, INDEX_FILE, Buffer.from(`${JSON.stringify(next, null, 2)}\n`, "utf8"));
        return toVersion(entry);
      });
    } catch (err) {
      throw fsError(err, context);
    } finally {
      bytes.fill(0);
    }
  }

  async getSecret(name: string, options?: GetSecretOptions): Promise<StoredSecret> {
    const wanted = checkGet(name, options);
    const context = { secretName: name, operation: "getSecret", ...wanted };
    try {
      const index = await this.readIndex(name, this.secretDir(name), false);
      const label = wanted.label ?? (wanted.versionId === undefined ? CURRENT_LABEL : undefined);
      const entry = index.versions.find((v) =>
        label === undefined ? v.versionId === wanted.versionId : v.labels.includes(label),
      );
      if (entry === undefined) {
        throw new SecretVersionNotFoundError(
          `Secret "${name}" has no version ${label === undefined ? `with id ${wanted.versionId}` : `labelled "${label}"`}`,
          context,
        );
      }
      const value = await this.readVersion(name, entry);
      return { name, ...toVersion(entry), value };
    } catch (err) {
      throw fsError(err, context);
    }
  }

  async listVersions(name: string): Promise<SecretVersion[]> {
    validateSecretName(name);
    try {
      const index = await this.readIndex(name, this.secretDir(name), false);
      return index.versions.map(toVersion).reverse();
    } catch (err) {
      throw fsError(err, { secretName: name, operation: "listVersions" });
    }
  }

  private async readVersion(name: string, entry: VersionEntry): Promise<Uint8Array> {
    const context = { secretName: name, versionId: entry.versionId, file: entry.file };
    let data: Buffer;
    try {
      data = await readRegularFile(join(this.secretDir(name), entry.file));
    } catch (err) {
      if ((err as { code?: unknown }).code === "ENOENT") {
        throw new VaultCorruptionError(
          `Version ${entry.versionId} of secret "${name}" is listed in its index but its file is missing`,
          context,
        );
      }
      throw err;
    }
    try {
      const digest = createHash("sha256").update(data).digest("hex");
      if (data.length !== entry.size || digest !== entry.sha256) {
        throw new VaultCorruptionError(
          `Version ${entry.versionId} of secret "${name}" is damaged: its file does not match the recorded ` +
            `SHA-256 and size (${entry.size} bytes recorded, ${data.length} found)`,
          { ...context, recordedSize: entry.size, foundSize: data.length },
        );
      }
      return Uint8Array.from(data);
    } finally {
      data.fill(0);
    }
  }

  /** The secret's index; `undefined` (missingOk) or `SecretNotFoundError` when the secret has none yet. */
  private async readIndex(name: string, dir: string, missingOk: true): Promise<Index | undefined>;
  private async readIndex(name: string, dir: string, missingOk: false): Promise<Index>;
  private async readIndex(name: string, dir: string, missingOk: boolean): Promise<Index | undefined> {
    let text: string;
    try {
      text = (await readRegularFile(join(dir, INDEX_FILE))).toString("utf8");
    } catch (err) {
      if ((err as { code?: unknown }).code !== "ENOENT") throw err;
      if (missingOk) return undefined;
      throw new SecretNotFoundError(`Secret "${name}" was not found in the vault`, { secretName: name });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const index = Index.safeParse(parsed);
    if (!index.success || index.data.name !== name) {
      throw new VaultCorruptionError(
        `The index of secret "${name}" is damaged or belongs to another secret`,
        {
          secretName: name,
          file: INDEX_FILE,
        },
      );
    }
    return index.data;
  }

  /** Runs `fn` after every earlier put on that secret in this process, holding the secret's lock file. */
  private async serialised<T>(name: string, dir: string, fn: () => Promise<T>): Promise<T> {
    const before = this.queues.get(name) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolveDone) => (done = resolveDone));
    const tail = before.then(() => mine);
    this.queues.set(name, tail);
    await before;
    try {
      const lock = await this.acquireLock(name, dir);
      try {
        return await fn();
      } finally {
        await unlink(lock).catch(() => undefined);
      }
    } finally {
      done();
      if (this.queues.get(name) === tail) this.queues.delete(name);
    }
  }

  private async acquireLock(name: string, dir: string): Promise<string> {
    const path = join(dir, LOCK_FILE);
    const deadline = Date.now() + this.lockTimeoutMs;
    for (;;) {
      try {
        const handle = await open(
          path,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW,
          0o600,
        );
        await handle.writeFile(`${process.pid} ${new Date().toISOString()}\n`).finally(() => handle.close());
        return path;
      } catch (err) {
        if ((err as { code?: unknown }).code !== "EEXIST") throw err;
      }
      const age = await stat(path).then(
        (st) => Date.now() - st.mtimeMs,
        () => 0,
      );
      if (age > this.staleLockMs) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) {
        throw new VaultUnavailableError(
          `Secret "${name}" is locked by another writer (${LOCK_FILE} in its folder) for longer than ` +
            `${this.lockTimeoutMs} ms; retry later`,
          { secretName: name, operation: "putSecret" },
        );
      }
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 20)));
    }
  }
}

function toVersion(entry: VersionEntry): SecretVersion {
  return { versionId: entry.versionId, createdAt: entry.createdAt, labels: orderLabels(entry.labels) };
}

/** Reads a regular file without following a symbolic link. */
async function readRegularFile(path: string): Promise<Buffer> {
  const handle = await open(path, constants.O_RDONLY | NOFOLLOW);
  try {
    if (!(await handle.stat()).isFile()) {
      throw Object.assign(new Error(`${path} is not a regular file`), { code: "ENOTFILE" });
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Writes `data` to `dir/file` atomically: temporary file (0600), fsync, rename, fsync of the folder. */
async function writeAtomically(dir: string, file: string, data: Uint8Array): Promise<void> {
  const tmp = join(dir, `.tmp-${randomUUID()}`);
  let handle: FileHandle | undefined = await open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW,
    0o600,
  );
  try {
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, join(dir, file));
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  if (!POSIX) return;
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Keeps vault errors; turns a file-system error into a typed one naming the secret (never its value). */
function fsError(err: unknown, context: VaultErrorContext): VaultError | AmkError {
  if (err instanceof AmkError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const facts = { ...context, ...(typeof code === "string" ? { errorCode: code } : {}) };
  const what =
    context.secretName === undefined ? `vault "${String(context.root)}"` : `secret "${context.secretName}"`;
  if (code === "EACCES" || code === "EPERM") {
    return new VaultAccessDeniedError(`No file-system permission for ${what} (${code})`, facts, {
      cause: err,
    });
  }
  if (code === "ELOOP" || code === "ENOTFILE" || code === "ENOTDIR" || code === "EISDIR") {
    return new VaultCorruptionError(
      `Unexpected file type in the vault folder of ${what} (${String(code)})`,
      facts,
      {
        cause: err,
      },
    );
  }
  return new VaultUnavailableError(
    `File-system failure on ${what} (${typeof code === "string" ? code : "unknown error"}); retry later`,
    facts,
    { cause: err },
  );
}
