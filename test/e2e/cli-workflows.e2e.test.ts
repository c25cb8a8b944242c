/**
 * `amk drill`, `amk rotate` and `amk recover`: the deployed state machines run by the real CLI (child processes)
 * through the local runner, on local engines started for this file. The recovery is told three ways: across two
 * processes (`recover start` waits, `recover unlock` from "another terminal" resumes it), by automation with a wrong
 * passphrase (exit 4, the recovery stops and is recorded as failed), and in one terminal (a pseudo-terminal: the
 * prompts ask without echo), which resumes the failed recovery.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  Authenticator,
  KEY_LIKE,
  runInTerminal,
  seedFrom,
  startCliHome,
  type CliHome,
  type CliRun,
} from "./cli-harness.js";

const PASSPHRASE = "violet harbour sings under amber clocks";
const A = "wf-a";
const B = "wf-b";

describe("amk drill / rotate / recover (state machines through the local runner, real CLI)", () => {
  let h: CliHome;
  let dir: string;
  const auth: Record<string, Authenticator> = {};
  const outputs: string[] = [];
  const amk = async (args: string[], options?: Parameters<CliHome["amk"]>[1]): Promise<CliRun> => {
    const r = await h.amk(args, options);
    outputs.push(r.stdout, r.stderr);
    return r;
  };

  before(async () => {
    h = await startCliHome("amk-cli-wf-");
    dir = await mkdtemp(join(tmpdir(), "amk-cli-wf-files-"));
    for (const ws of [A, B]) {
      const uri = join(dir, `${ws}.totp`);
      const p = await amk(
        ["workspace", "provision", ws, "--admin", "ops", "--passphrase-fd", "3", "--totp-uri-file", uri],
        { fd3: [PASSPHRASE] },
      );
      assert.equal(p.code, 0, p.stderr);
      auth[ws] = new Authenticator(seedFrom(uri));
    }
    const i = await amk(["ingest", A, "--count", "30", "--artifacts", "file,metadata"]);
    assert.equal(i.code, 0, i.stderr);
    const t = await amk(["token", "issue", A, "--subject", "alice", "--out", join(dir, "old.jwt")]);
    assert.equal(t.code, 0, t.stderr);
  });
  after(async () => {
    await h?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("drill run: fails (exit 1, alert) until the kit is acknowledged, then passes; history lists both", async () => {
    const failed = await amk(["drill", "run", A, "--json"]);
    assert.equal(failed.code, 1, failed.stderr);
    assert.equal(failed.json.ok, false);
    const checks = failed.json.checks as { Name: string; Status: string }[];
    assert.equal(checks.length, 7);
    assert.equal(checks.find((c) => c.Name === "acknowledgements")?.Status, "failed");
    assert.match(failed.stderr, /drill failed: acknowledgements/);
    const alerts = await amk(["alerts", "--workspace", A, "--code", "DRILL_FAILED", "--json"]);
    assert.equal(alerts.code, 0);
    assert.equal((alerts.json.alerts as unknown[]).length, 1);

    const ack = await amk(["kit", "ack", A, "--admin", "ops", "--passphrase-fd", "3", "--code-fd", "3"], {
      fd3: [PASSPHRASE, await auth[A]!.next()],
    });
    assert.equal(ack.code, 0, ack.stderr);
    const passed = await amk(["drill", "run", A, "--json"]);
    assert.equal(passed.code, 0, passed.stderr);
    assert.equal(passed.json.ok, true);
    assert.deepEqual(
      (passed.json.checks as { Name: string; Status: string }[]).map((c) => `${c.Name}:${c.Status}`),
      [
        "kit-in-vault:passed",
        "kit-coverage:passed",
        "drill-slot:passed",
        "canaries:passed",
        "sample:passed",
        "hsm-backups:skipped",
        "acknowledgements:passed",
      ],
    );
    const history = await amk(["drill", "history", A, "--json"]);
    assert.equal(history.code, 0);
    assert.deepEqual(
      (history.json.drills as { ok: boolean }[]).map((d) => d.ok),
      [true, false],
    );
  });

  it("rotate start: the rotation state machine re-wraps every document (progress with rate and ETA); status shows the versions", async () => {
    const r = await amk(["rotate", "start", A, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.activeKeyId, `ws-${A}/mk/2`);
    assert.deepEqual(r.json.retired, [`ws-${A}/mk/1`]);
    assert.equal(r.json.documentsRewrapped, 33, "30 documents and 3 canaries");
    assert.match(r.stderr, /re-wrap: 33\/33 100\.0% [\d.]+\/s ETA 0:00/);
    assert.match(r.stderr, /RotationStart: new master key version active/);
    const s = await amk(["rotate", "status", A, "--json"]);
    assert.equal(s.code, 0);
    assert.deepEqual(
      (s.json.keys as { keyId: string; state: string; documents?: number }[]).map((k) => [
        k.keyId,
        k.state,
        k.documents,
      ]),
      [
        [`ws-${A}/mk/1`, "retired", undefined],
        [`ws-${A}/mk/2`, "active", 33],
      ],
    );
    assert.equal((s.json.rotation as { status: string }).status, "completed");
  });

  it("recover across two processes: start waits, a wrong code exits 4 and it keeps waiting, the unlock resumes it; documents decrypt under a fresh key, the old token is rejected", async () => {
    const none = await amk(
      ["recover", "unlock", A, "--admin", "ops", "--passphrase-fd", "3", "--code-fd", "3"],
      {
        fd3: [PASSPHRASE, "123456"],
      },
    );
    assert.equal(none.code, 6, "nothing to unlock");
    assert.match(none.stderr, /no recovery of wf-a is running/);

    const lost = await amk(["local", "destroy-hsm-token", "--yes", "--json"]);
    assert.equal(lost.code, 0, lost.stderr);
    const unreadable = await amk(["keys", "decrypt", A, "--all", "--json"]);
    assert.equal(unreadable.code, 1, "no document decrypts without the keys");

    let waiting!: () => void;
    const isWaiting = new Promise<void>((r) => (waiting = r));
    const started = h.amk(["recover", "start", A, "--no-prompt", "--requested-by", "cli test", "--json"], {
      onStderr: (l) => {
        if (l.includes("Unlock it from another terminal")) waiting();
      },
    });
    await Promise.race([isWaiting, started.then((r) => assert.fail(`recover start ended: ${r.stderr}`))]);

    const status = await amk(["recover", "status", A, "--json"]);
    assert.equal(status.code, 0);
    const rs = status.json.recovery as {
      status: string;
      waitingForUnlock: boolean;
      localRunnerWaiting: boolean;
    };
    assert.deepEqual([rs.status, rs.waitingForUnlock, rs.localRunnerWaiting], ["running", true, true]);

    const second = await amk(["recover", "start", A, "--no-prompt"]);
    assert.equal(second.code, 6);
    assert.match(second.stderr, /already running/);

    const wrong = await amk(
      ["recover", "unlock", A, "--admin", "ops", "--passphrase-env", "P", "--code-env", "C", "--json"],
      {
        env: { P: PASSPHRASE, C: "000000" },
      },
    );
    assert.equal(wrong.code, 4, wrong.stderr);
    assert.equal((wrong.json.error as { code: string }).code, "TOTP_CODE_INVALID");
    const still = await amk(["recover", "status", A, "--json"]);
    assert.equal((still.json.recovery as { waitingForUnlock: boolean }).waitingForUnlock, true);

    const ok = await amk(
      ["recover", "unlock", A, "--admin", "ops", "--passphrase-fd", "3", "--code-fd", "3", "--json"],
      {
        fd3: [PASSPHRASE, await auth[A]!.next()],
      },
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.json.resumed, true);
    assert.deepEqual(
      (ok.json.masterKeys as { keyId: string }[]).map((m) => m.keyId),
      [`ws-${A}/mk/2`],
    );

    const done = await started;
    outputs.push(done.stdout, done.stderr);
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.json.newKeyId, `ws-${A}/mk/3`);
    assert.deepEqual(done.json.recoveredKeyIds, [`ws-${A}/mk/2`]);
    assert.equal(done.json.tokenEpoch, 1);
    assert.equal(done.json.documentsRewrapped, 33);
    assert.match(done.stderr, /validated: kit v\d+ intact/);
    assert.match(done.stderr, /re-wrap: 33\/33 100\.0%/);
    assert.match(done.stderr, /access tokens issued before are now rejected/);

    const all = await amk(["keys", "decrypt", A, "--all", "--json"]);
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual(all.json.byKeyId, { [`ws-${A}/mk/3`]: 30 });

    const old = await amk(["token", "verify", A, "--token-file", join(dir, "old.jwt"), "--json"]);
    assert.equal(old.code, 1);
    assert.equal(old.json.reason, "stale-epoch");
    await amk(["token", "issue", A, "--subject", "alice", "--out", join(dir, "new.jwt")]);
    const fresh = await amk(["token", "verify", A, "--token-file", join(dir, "new.jwt"), "--json"]);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.equal(fresh.json.epoch, 1);

    const after = await amk(["recover", "status", A, "--json"]);
    assert.equal((after.json.recovery as { status: string }).status, "completed");
    const alerts = await amk(["alerts", "--workspace", A, "--json"]);
    assert.ok((alerts.json.alerts as { code: string }[]).some((a) => a.code === "RECOVERY_COMPLETED"));
  });

  it("recover by automation with a wrong passphrase: exit 4, the recovery stops (recorded as failed at await-unlock)", async () => {
    const r = await amk(
      ["recover", "start", B, "--admin", "ops", "--passphrase-fd", "3", "--code-fd", "3", "--json"],
      { fd3: ["certainly not the right passphrase", await auth[B]!.next()] },
    );
    assert.equal(r.code, 4, r.stderr);
    assert.equal(r.json.ok, false);
    assert.deepEqual(r.json.unlock, { refused: true, code: "KIT_WRONG_PASSPHRASE" });
    assert.equal((r.json.failure as { step: string }).step, "await-unlock");
    const s = await amk(["recover", "status", B, "--json"]);
    assert.equal((s.json.recovery as { status: string }).status, "failed");
  });

  it("recover in one terminal: passphrase and code asked without echo; it resumes the failed recovery", async () => {
    const code = await auth[B]!.next();
    const r = await runInTerminal(
      h.home,
      ["recover", "start", B, "--admin", "ops"],
      [
        { waitFor: /Kit passphrase: /, text: `${PASSPHRASE}\r` },
        { waitFor: /TOTP code: /, text: `${code}\r` },
      ],
    );
    outputs.push(r.output);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /resuming the recovery/);
    assert.match(r.output, /Unlock it here as ops/);
    assert.match(r.output, /Kit v1 unlocked/);
    assert.match(r.output, /Workspace wf-b recovered/);
    assert.ok(!r.output.includes(code), "the code is not echoed");
    const s = await amk(["workspace", "status", B, "--json"]);
    assert.equal(s.json.activeKeyId, `ws-${B}/mk/2`);
  });

  it("no secret and nothing key-like in any output", () => {
    const all = outputs.join("\n");
    assert.ok(!all.includes(PASSPHRASE));
    assert.doesNotMatch(all, KEY_LIKE);
  });
});
