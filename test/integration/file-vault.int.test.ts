/**
 * The file vault: the SecretVault contract on a temporary folder, then what only files have: permissions, the
 * refusal of an exposed root, corruption detection, atomic writes and the lock file.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import {
  SecretNotFoundError,
  VaultCorruptionError,
  VaultInsecureError,
  VaultUnavailableError,
} from "../../core/vault/errors.js";
import { assertNoValue, secretVaultContract } from "../contract/secret-vault.contract.js";

const POSIX = process.platform !== "win32";
const text = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "utf8"));

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), "amk-file-vault-"));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Every path under `dir` with its size: what the vault holds. */
async function tree(dir: string): Promise<string> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const lines = await Promise.all(
    entries.map(async (e) => {
      const path = join(e.parentPath, e.name);
      return `${path.slice(dir.length)} ${e.isFile() ? (await stat(path)).size : "dir"}`;
    }),
  );
  return lines.sort().join("\n");
}

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

secretVaultContract("file vault", async () => {
  const root = join(base, `contract-${randomUUID()}`);
  const vault = await FileSecretVault.open(root);
  return { vault, fingerprint: () => tree(root), close: async () => undefined };
});

describe("file vault: on disk", () => {
  let root: string;
  let vault: FileSecretVault;
  before(async () => {
    root = join(base, "disk", "nested", "vault");
    vault = await FileSecretVault.open(root);
  });

  it("creates the root 0700, a folder per secret 0700, and every file 0600", { skip: !POSIX }, async () => {
    await vault.putSecret("amk/ws-1/kit", text("kit one"));
    await vault.putSecret("amk/ws-1/kit", text("kit two"));
    assert.equal(await mode(root), 0o700);
    const dir = vault.secretDir("amk/ws-1/kit");
    assert.equal(await mode(dir), 0o700);
    const files = (await readdir(dir)).sort();
    assert.deepEqual(
      files,
      ["index.json", "v000001.bin", "v000002.bin"],
      "no temp or lock file is left behind",
    );
    for (const f of files) assert.equal(await mode(join(dir, f)), 0o600, f);
  });

  it("names a secret's folder by the SHA-256 of its name, so no name can leave the root", async () => {
    const name = "amk/ws-1/factor/admin@example.com";
    await vault.putSecret(name, text("{}"));
    const hash = createHash("sha256").update(name).digest("hex");
    assert.equal(vault.secretDir(name), join(root, hash));
    const index = JSON.parse(await readFile(join(root, hash, "index.json"), "utf8")) as Record<
      string,
      unknown
    >;
    assert.equal(index.format, "amk-file-vault/1");
    assert.equal(index.name, name);
    assert.ok(!JSON.stringify(index).includes(Buffer.from("{}").toString("base64")));
  });

  it(
    "refuses a root that group or others can access, and one that is not a folder",
    { skip: !POSIX },
    async () => {
      for (const m of [0o755, 0o750, 0o701, 0o707]) {
        const exposed = join(base, `exposed-${m.toString(8)}`);
        await mkdir(exposed);
        await chmod(exposed, m);
        const err = await FileSecretVault.open(exposed).then(
          () => assert.fail("opened an exposed root"),
          (e: unknown) => e,
        );
        assert.ok(err instanceof VaultInsecureError, `got ${inspect(err)}`);
        assert.equal(err.code, "VAULT_INSECURE");
        assert.equal(err.context.mode, `0${m.toString(8)}`);
        assert.match(err.message, /chmod 700/);
      }
      const file = join(base, "a-file");
      await writeFile(file, "x");
      await assert.rejects(FileSecretVault.open(file), VaultInsecureError);
    },
  );

  it("detects a changed, truncated or missing version file (VaultCorruptionError)", async () => {
    const name = "amk/ws-corrupt/kit";
    const v1 = await vault.putSecret(name, text("first kit bytes"));
    const v2 = await vault.putSecret(name, text("second kit bytes"));
    const dir = vault.secretDir(name);
    const original = await readFile(join(dir, "v000002.bin"));
    const flipped = Buffer.from(original);
    flipped[3] = (flipped[3] ?? 0) ^ 0x01;
    await writeFile(join(dir, "v000002.bin"), flipped, { mode: 0o600 });
    const err = await vault.getSecret(name).then(
      () => assert.fail("read a damaged version"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof VaultCorruptionError, `got ${inspect(err)}`);
    assert.equal(err.context.versionId, v2.versionId);
    assert.equal(err.context.secretName, name);
    assertNoValue(err, flipped);
    assertNoValue(err, original);
    assert.ok(
      Buffer.from((await vault.getSecret(name, { versionId: v1.versionId })).value).equals(
        Buffer.from("first kit bytes"),
      ),
    );

    await writeFile(join(dir, "v000002.bin"), original.subarray(0, 5), { mode: 0o600 });
    await assert.rejects(vault.getSecret(name), VaultCorruptionError);
    await rm(join(dir, "v000002.bin"));
    await assert.rejects(vault.getSecret(name), VaultCorruptionError);
  });

  it("detects a damaged index, and an index that belongs to another secret", async () => {
    const a = "amk/ws-index/a";
    const b = "amk/ws-index/b";
    await vault.putSecret(a, text("a"));
    await vault.putSecret(b, text("b"));
    const indexA = join(vault.secretDir(a), "index.json");
    await writeFile(indexA, await readFile(join(vault.secretDir(b), "index.json")));
    await assert.rejects(vault.getSecret(a), VaultCorruptionError);
    await writeFile(indexA, "{ not json");
    await assert.rejects(vault.listVersions(a), VaultCorruptionError);
    await assert.rejects(vault.putSecret(a, text("again")), VaultCorruptionError);
  });

  it("does not follow a version file replaced by a symbolic link", { skip: !POSIX }, async () => {
    const name = "amk/ws-link/kit";
    await vault.putSecret(name, text("linked"));
    const dir = vault.secretDir(name);
    await rm(join(dir, "v000001.bin"));
    await symlink(join(base, "a-file"), join(dir, "v000001.bin"));
    await assert.rejects(vault.getSecret(name), VaultCorruptionError);
  });

  it("ignores a leftover temporary file and a version file no index names (a crash mid-put)", async () => {
    const name = "amk/ws-crash/kit";
    const v1 = await vault.putSecret(name, text("before the crash"));
    const dir = vault.secretDir(name);
    await writeFile(join(dir, `.tmp-${randomUUID()}`), "half-written", { mode: 0o600 });
    await writeFile(join(dir, "v000002.bin"), "written, but the index was not", { mode: 0o600 });
    assert.deepEqual(
      (await vault.listVersions(name)).map((v) => v.versionId),
      [v1.versionId],
    );
    assert.ok(Buffer.from((await vault.getSecret(name)).value).equals(Buffer.from("before the crash")));
    const v2 = await vault.putSecret(name, text("after the crash"));
    assert.ok(Buffer.from((await vault.getSecret(name)).value).equals(Buffer.from("after the crash")));
    assert.deepEqual(
      (await vault.listVersions(name)).map((v) => [v.versionId, v.labels]),
      [
        [v2.versionId, ["current"]],
        [v1.versionId, ["previous"]],
      ],
    );
  });

  it("keeps every version when two vault instances on one root put at once (the lock file)", async () => {
    const other = await FileSecretVault.open(root);
    const name = "amk/ws-two-writers/kit";
    const puts = Array.from({ length: 12 }, (_, i) =>
      (i % 2 === 0 ? vault : other).putSecret(name, text(`writer ${i % 2} value ${i}`)),
    );
    const versions = await Promise.all(puts);
    const listed = await vault.listVersions(name);
    assert.equal(listed.length, 12);
    assert.deepEqual(listed.map((v) => v.versionId).sort(), versions.map((v) => v.versionId).sort());
  });

  it("waits for a held lock, gives up after lockTimeoutMs, and removes a stale one", async () => {
    const name = "amk/ws-lock/kit";
    await vault.putSecret(name, text("v1"));
    const lock = join(vault.secretDir(name), ".lock");
    await writeFile(lock, "4242 held by another process\n", { mode: 0o600 });
    const impatient = await FileSecretVault.open(root, { lockTimeoutMs: 100, staleLockMs: 60_000 });
    const err = await impatient.putSecret(name, text("v2")).then(
      () => assert.fail("wrote through a held lock"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof VaultUnavailableError, `got ${inspect(err)}`);
    assert.equal(err.retryable, true);
    assert.equal((await vault.listVersions(name)).length, 1);

    const breaker = await FileSecretVault.open(root, { lockTimeoutMs: 1_000, staleLockMs: 0 });
    await new Promise((r) => setTimeout(r, 10));
    await breaker.putSecret(name, text("v2"));
    assert.equal((await vault.listVersions(name)).length, 2);
  });

  it("reports a secret whose folder exists without an index as not found", async () => {
    const name = "amk/ws-empty/kit";
    await mkdir(vault.secretDir(name), { mode: 0o700 });
    await assert.rejects(vault.getSecret(name), SecretNotFoundError);
    await assert.rejects(vault.listVersions(name), SecretNotFoundError);
  });
});
