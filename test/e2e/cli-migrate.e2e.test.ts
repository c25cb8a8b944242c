/**
 * `amk migrate arquivomate` through the real CLI on local engines: a backup made by the independent generator, a
 * dry run that writes nothing, a wrong legacy key refused before any write (exit 1/2 with the typed error), then the
 * real migration: every document's keys readable under the new master key with `amk keys decrypt`, and the report
 * saying the legacy key is no longer needed. Nothing secret is printed.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { generateBackup } from "../support/arquivomate-backup-generator.js";
import { startCliHome, type CliHome } from "./cli-harness.js";

const PASSPHRASE = "copper lanterns drift over quiet harbours";

describe("amk migrate arquivomate (real CLI, local engines)", () => {
  let h: CliHome;
  let dir: string;
  const backup = generateBackup({ documents: 60 });
  const printed: string[] = [];

  before(async () => {
    h = await startCliHome("amk-cli-migrate-");
    dir = await mkdtemp(join(tmpdir(), "amk-cli-migrate-files-"));
    await writeFile(join(dir, "keys.zip"), backup.zip);
    await writeFile(join(dir, "legacy.key"), `${backup.legacyKey.toString("base64")}\n`, { mode: 0o600 });
    await writeFile(join(dir, "wrong.key"), `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  });
  after(async () => {
    await h?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const migrate = async (extra: string[], fd3?: string[]) => {
    const r = await h.amk(
      [
        "migrate",
        "arquivomate",
        "--backup",
        join(dir, "keys.zip"),
        "--workspace",
        "legacy",
        "--json",
        ...extra,
      ],
      fd3 ? { fd3 } : {},
    );
    printed.push(r.stdout, r.stderr);
    return r;
  };

  it("has --help naming its flags", async () => {
    const r = await h.amk(["migrate", "arquivomate", "--help"]);
    assert.equal(r.code, 0);
    for (const flag of ["--backup", "--master-key-file", "--workspace", "--dry-run", "--artifacts"])
      assert.match(r.stdout, new RegExp(flag));
  });

  it("a dry run checks everything and writes nothing", async () => {
    const r = await migrate(["--master-key-file", join(dir, "legacy.key"), "--dry-run"]);
    assert.equal(r.code, 0, r.stderr);
    const report = r.json.report as { dryRun?: boolean; documents?: number };
    assert.equal(report.documents, 60);
    const status = await h.amk(["workspace", "status", "legacy", "--json"]);
    assert.equal(status.code, 5, "the workspace does not exist after a dry run");
  });

  it("a wrong legacy key is refused before anything is written", async () => {
    const r = await migrate(["--master-key-file", join(dir, "wrong.key"), "--dry-run"]);
    assert.notEqual(r.code, 0);
    assert.match(`${r.json.error?.code} ${r.stderr}`, /LEGACY_KEY|legacy key/i);
  });

  it("migrates: every document decrypts under the new key; the legacy key is no longer needed", async () => {
    const uri = join(dir, "admin.totp");
    const r = await migrate(
      [
        "--master-key-file",
        join(dir, "legacy.key"),
        "--admin",
        "ops",
        "--passphrase-fd",
        "3",
        "--totp-uri-file",
        uri,
      ],
      [PASSPHRASE],
    );
    assert.equal(r.code, 0, r.stderr);
    const report = r.json.report as { legacyKeyNoLongerNeeded?: boolean; documents?: number };
    assert.equal(report.legacyKeyNoLongerNeeded, true);
    for (const d of backup.documents.slice(0, 5)) {
      const k = await h.amk(["keys", "decrypt", "legacy", "--document", d.documentId, "--json"]);
      assert.equal(k.code, 0, k.stderr);
      assert.equal(k.json.keyId, "ws-legacy/mk/2");
    }
    const leaked = printed.join("\n");
    assert.ok(!leaked.includes(backup.legacyKey.toString("base64")), "the legacy key is never printed");
    assert.ok(!leaked.includes(PASSPHRASE));
  });
});
