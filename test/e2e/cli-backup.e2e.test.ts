/**
 * `amk backup export|verify|restore|test` through the real CLI on local engines: a signed export, verification, a
 * corrupted backup refused (exit 1 naming the error), a restore into a new table (and never over the live one: exit
 * 6), a malformed backup id (exit 2), and the restoration test workflow passing on the intact backup.
 */
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startCliHome, type CliHome } from "./cli-harness.js";

const PASSPHRASE = "amber meadows hum below silver bridges";

describe("amk backup (real CLI, local engines)", () => {
  let h: CliHome;
  let backupId = "";

  before(async () => {
    h = await startCliHome("amk-cli-backup-");
    const p = await h.amk(
      [
        "workspace",
        "provision",
        "bk",
        "--admin",
        "ops",
        "--passphrase-fd",
        "3",
        "--totp-uri-file",
        join(h.home, "ops.totp"),
      ],
      { fd3: [PASSPHRASE] },
    );
    assert.equal(p.code, 0, p.stderr);
    const i = await h.amk(["ingest", "bk", "--count", "20", "--artifacts", "file,metadata"]);
    assert.equal(i.code, 0, i.stderr);
  });
  after(async () => {
    await h?.cleanup();
  });

  it("has --help on each command", async () => {
    for (const c of ["export", "verify", "restore", "test"]) {
      const r = await h.amk(["backup", c, "--help"]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /Usage: amk backup/);
    }
  });

  it("exports a signed backup and verifies it", async () => {
    const r = await h.amk(["backup", "export", "bk", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    backupId = String(r.json.backupId);
    assert.match(backupId, /^[0-9a-f-]{36}$/);
    assert.ok(Number(r.json.events) > 20);
    const v = await h.amk(["backup", "verify", backupId, "--json"]);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.json.ok, true);
  });

  it("refuses bad input: a malformed id (exit 2), no workspace and no --all (exit 2), the live table (exit 6)", async () => {
    assert.equal((await h.amk(["backup", "verify", "not-an-id"])).code, 2);
    assert.equal((await h.amk(["backup", "export"])).code, 2);
    const status = await h.amk(["local", "status", "--json"]);
    const live = String((status.json as { eventTable?: { name?: string } }).eventTable?.name ?? "");
    assert.ok(live.length > 0, JSON.stringify(status.json));
    const r = await h.amk(["backup", "restore", backupId, "--into", live, "--json"]);
    assert.equal(r.code, 6, r.stderr);
  });

  it("restores into a new table; a second restore into the same (now non-empty) table is refused", async () => {
    const r = await h.amk(["backup", "restore", backupId, "--into", "bk-restored", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Number(r.json.events) > 20);
    const again = await h.amk(["backup", "restore", backupId, "--into", "bk-restored", "--json"]);
    assert.notEqual(again.code, 0);
    assert.match(`${again.json.error?.code} ${again.stderr}`, /NOT_EMPTY|not empty/i);
  });

  it("the restoration test passes on the intact backup", async () => {
    const r = await h.amk(["backup", "test", "bk", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.ok, true);
  });

  it("a corrupted backup fails verification with the error named (exit 1)", async () => {
    const dir = join(h.home, "backups", backupId);
    const file = (await readdir(dir)).find((f) => f.endsWith(".jsonl"))!;
    const bytes = await readFile(join(dir, file));
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    await writeFile(join(dir, file), bytes);
    const v = await h.amk(["backup", "verify", backupId, "--json"]);
    assert.equal(v.code, 1);
    assert.match(JSON.stringify(v.json), /BackupFileChecksumError/);
  });
});
