/**
 * The folder-based task callbacks (core/adapters/file-task-callbacks): the local stand-in for SendTaskSuccess between
 * a waiting `amk recover start` and `amk recover unlock` in another process.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmod, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  FileTaskCallbacks,
  TaskCallbackFolderError,
} from "../../core/adapters/file-task-callbacks/file-task-callbacks.js";
import { TaskTokenExpiredError } from "../../core/recovery/task-callbacks.js";

describe("FileTaskCallbacks", () => {
  const dirs: string[] = [];
  const folder = async () => {
    const d = await mkdtemp(join(tmpdir(), "amk-cb-"));
    dirs.push(d);
    return join(d, "callbacks");
  };
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it("a waiter gets the output that succeed() delivers (as another process would: another instance)", async () => {
    const dir = await folder();
    const waiter = new FileTaskCallbacks(dir, { pollMs: 10 });
    const token = "local-task-token:recovery-1 (with characters no file name should hold: /\\:*)";
    const waiting = waiter.wait(token, 5000);
    for (let i = 0; i < 100 && !waiter.isWaiting(token); i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(waiter.anyWaiting(), true);
    await new FileTaskCallbacks(dir).succeed(token, { masterKeys: [{ keyId: "ws-a/mk/1", kcv: "ABCDEF" }] });
    assert.deepEqual(await waiting, { masterKeys: [{ keyId: "ws-a/mk/1", kcv: "ABCDEF" }] });
    assert.deepEqual(await readdir(dir), [], "marker and result removed; the token never named a file");
  });

  it("succeed() for a token nobody waits on is TaskTokenExpiredError; a wait times out with States.Timeout", async () => {
    const dir = await folder();
    const cb = new FileTaskCallbacks(dir, { pollMs: 10 });
    await assert.rejects(cb.succeed("nobody", { a: 1 }), TaskTokenExpiredError);
    await assert.rejects(cb.wait("t", 50), (e: Error) => e.name === "States.Timeout");
    assert.equal(cb.isWaiting("t"), false);
    const ctl = new AbortController();
    const w = cb.wait("u", 5000, ctl.signal);
    ctl.abort();
    await assert.rejects(w, (e: Error) => e.name === "States.Aborted");
  });

  it("a marker left by a waiter that died counts as nobody waiting", async () => {
    const dir = await folder();
    const cb = new FileTaskCallbacks(dir);
    cb.ensureFolder();
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
      encoding: "utf8",
    }).stdout;
    await writeFile(
      join(dir, `${FileTaskCallbacks.idOf("t")}.waiting`),
      JSON.stringify({ pid: Number(dead) }),
    );
    assert.equal(cb.isWaiting("t"), false);
    await assert.rejects(cb.succeed("t", {}), TaskTokenExpiredError);
    assert.deepEqual(await readdir(dir), [], "the stale marker is removed");
  });

  it("refuses a folder that group or others may use", async () => {
    const dir = await folder();
    const cb = new FileTaskCallbacks(dir);
    cb.ensureFolder();
    await chmod(dir, 0o755);
    assert.throws(() => cb.ensureFolder(), TaskCallbackFolderError);
    await assert.rejects(cb.succeed("t", {}), TaskCallbackFolderError);
  });
});
