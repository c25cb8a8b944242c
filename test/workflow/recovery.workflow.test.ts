/**
 * The recovery workflow as Step Functions would run it: the ASL the CDK app synthesises, executed by
 * aws-local-stepfunctions with every Task bound to the real handler (recovery steps, and the rotation functions for
 * the re-wrap), the AwaitUnlock task token bridged in process, and the real unlock function called as an
 * administrator would. Real engines: SoftHSM2 (the HSM token is deleted and replaced by an empty one), DynamoDB
 * Local, the file vault, local alert and bus logs.
 *
 * Scenarios: the full story on 1,000 documents (lose the HSM, a second concurrent recovery refused, wrong passphrase
 * and wrong code answered while the execution keeps waiting, unlock, fresh key, every DEK unchanged, old tokens
 * rejected and new ones accepted, no secret anywhere); a tampered kit; a kit missing a key version; a replayed code
 * and a crash in the middle of the re-wrap, then a resumed recovery; an unlock that never comes (timeout).
 */
// First: the functions' loggers must be created at DEBUG level, with their lines captured for the secret scan.
import { capturedLogLines } from "../support/capture-logs.js";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AccessTokenService } from "../../core/access/access-tokens.js";
import { AccessTokenRejectedError } from "../../core/access/errors.js";
import { readAlertLog } from "../../core/adapters/file-alerts/file-alerts.js";
import { readBusLog } from "../../core/adapters/file-bus/file-event-bus.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { documentStreamId, workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { DEFAULT_TOTP, totpCode } from "../../core/factors/totp.js";
import { KitService } from "../../core/kit/kit-service.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { inProcessTaskCallbacks } from "../../core/recovery/task-callbacks.js";
import { RotationService } from "../../core/rotation/rotation-service.js";
import { kitSecretName } from "../../core/vault/secret-vault.js";
import type { SecretVault } from "../../core/vault/secret-vault.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { eventStoreFromEnv } from "../../functions/shared/event-store.js";
import { keyStoreFromEnv } from "../../functions/shared/key-store.js";
import { vaultFromEnv } from "../../functions/shared/vault.js";
import { handler as unlockHandler } from "../../functions/recovery-unlock/handler.js";
import { runDrillHandler } from "../../functions/drill/handler.js";
import { ensureSoftHsmHome, ensureToken, type SoftHsmHome } from "../../cli/local/softhsm.js";
import { leakedSecrets, runLocal, type LocalRun } from "../../workflows/local-runner.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";
import { awaitUnlockBridge, recoveryHandlers, synthWorkflows } from "../support/recovery-workflow.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const seedOf = (uri: string) => new URL(uri).searchParams.get("secret")!;
const ARTIFACTS = ["file", "preview"];
const PASSPHRASE = "lantern orchard quietly folding maps";
const step = () => Math.floor(Date.now() / 1000 / 30);
const codeAt = (seed: string, s: number) => totpCode(seed, DEFAULT_TOTP, s * 30 + 1);

type Unlocked = {
  ok: true;
  recoveryId: string;
  resumed: boolean;
  masterKeys: { keyId: string; kcv: string }[];
};
type Refused = { ok: false; error: { code: string; message: string } };

describe("recovery workflow (synthesised ASL, local runner, real handlers, HSM token lost)", () => {
  let hsm: TestHsm;
  let home: SoftHsmHome;
  let ddb: TestDynamoDb;
  let dir: string;
  let wf: ReturnType<typeof synthWorkflows>["recovery"];
  let drillWf: ReturnType<typeof synthWorkflows>["drill"];
  let synthDir: string;
  let events: EventStore;
  let vault: SecretVault;
  let tokens: AccessTokenService;
  let replacement = 0;
  let mainWs = "";
  const secrets: (string | Uint8Array)[] = [PASSPHRASE];
  const runs: LocalRun[] = [];

  const keyStore = (): Promise<KeyStore> => keyStoreFromEnv();
  const kitService = async () =>
    new KitService({ keyStore: await keyStore(), events, vault, alerts: new RecordingAlerts() });

  /** Deletes the current HSM token (every key in it is gone) and points the functions at a new, empty one. */
  async function loseHsm(): Promise<void> {
    const ks = await keyStore();
    await ks.close();
    execFileSync("softhsm2-util", ["--delete-token", "--token", process.env.AMK_PKCS11_TOKEN_LABEL!], {
      env: { ...process.env, SOFTHSM2_CONF: home.configPath },
      stdio: "ignore",
    });
    const t = await ensureToken(home, `replacement-${++replacement}`);
    process.env.AMK_PKCS11_TOKEN_LABEL = t.label;
    process.env.AMK_PKCS11_PIN_FILE = t.pinFile;
  }

  async function provision(ws: string, documents: number) {
    const ks = await keyStore();
    const kits = await kitService();
    const dataKeys = new DataKeyService({ keyStore: ks, events });
    const r = await provisionWorkspaceWithKit(
      { keyStore: ks, events, kits, dataKeys },
      {
        workspaceId: ws,
        administrators: [{ adminId: "ops", passphrase: PASSPHRASE, factor: { type: "totp" } }],
      },
    );
    const seed = seedOf(r.enrollments[0]!.totpUri!);
    secrets.push(seed);
    const deks = new Map<string, string>();
    const ids = Array.from({ length: documents }, () => randomUUID());
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < ids.length; i = next++) {
          const k = await dataKeys.generateDataKeys({
            workspaceId: ws,
            documentId: ids[i]!,
            artifacts: ARTIFACTS,
            idempotencyKey: "ingest",
          });
          deks.set(ids[i]!, k.keys.map((x) => sha(x.plaintext)).join(","));
          if (i < 5) secrets.push(Buffer.from(k.keys[0]!.plaintext));
          for (const x of k.keys) x.plaintext.fill(0);
        }
      }),
    );
    return { seed, deks, kitVersion: r.kit.kitVersion };
  }

  /** Every document decrypts with the current HSM to the DEKs first handed out, under `keyId`. */
  async function assertDeksUnchanged(ws: string, deks: Map<string, string>, keyId?: string): Promise<void> {
    const dataKeys = new DataKeyService({ keyStore: await keyStore(), events });
    let checked = 0;
    for (const [documentId, hashes] of deks) {
      const r = await dataKeys.decryptDataKeys({ workspaceId: ws, documentId, artifacts: ARTIFACTS });
      assert.equal(r.keys.map((x) => sha(x.plaintext)).join(","), hashes, `DEKs of ${documentId} changed`);
      if (keyId) assert.equal(r.keyId, keyId);
      for (const x of r.keys) x.plaintext.fill(0);
      checked += 1;
    }
    assert.equal(checked, deks.size);
  }

  function start(
    ws: string,
    executionName: string,
    options: { unlockTimeoutMs?: number; handlers?: object; kitVaultVersionId?: string } = {},
  ) {
    const run = runLocal({
      ...wf,
      handlers: { ...recoveryHandlers, ...(options.handlers ?? {}) },
      taskTokens: awaitUnlockBridge(options.unlockTimeoutMs ?? 120_000),
      input: {
        workspaceId: ws,
        requestedBy: "alice (console)",
        reason: "the administrators lost access",
        ...(options.kitVaultVersionId ? { kitVaultVersionId: options.kitVaultVersionId } : {}),
      },
      executionName,
      waitTimeOverride: 0,
      retryIntervalOverride: 0,
    }).then((r) => {
      runs.push(r);
      return r;
    });
    return run;
  }

  async function waitingFor(executionName: string): Promise<void> {
    const token = `local-task-token:${executionName}`;
    for (let i = 0; i < 600 && !inProcessTaskCallbacks.isWaiting(token); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(inProcessTaskCallbacks.isWaiting(token), `${executionName} never waited for the unlock`);
  }

  const unlock = async (ws: string, passphrase: string, code: string) => {
    secrets.push(code);
    return (await unlockHandler({
      workspaceId: ws,
      adminId: "ops",
      passphrase,
      factor: { type: "totp", code },
    })) as Unlocked | Refused;
  };

  const lastOf = async (ws: string, type: string) => {
    const { events: stream } = await events.readStream(workspaceStreamId(ws));
    return stream.filter((e) => e.type === type).at(-1);
  };

  before(async () => {
    const synth = synthWorkflows();
    wf = synth.recovery;
    drillWf = synth.drill;
    synthDir = synth.outdir;
    hsm = await createTestHsm(["live"]);
    home = await ensureSoftHsmHome(hsm.dir);
    ddb = await useTestDynamoDb();
    dir = await mkdtemp(join(tmpdir(), "amk-recovery-wf-"));
    const t = hsm.tokens[0]!;
    Object.assign(process.env, {
      AMK_PKCS11_LIBRARY: t.libraryPath,
      AMK_PKCS11_TOKEN_LABEL: t.label,
      AMK_PKCS11_PIN_FILE: t.pinFile,
      AMK_PKCS11_POOL_SIZE: "6",
      AMK_EVENT_TABLE: await ddb.newTable("recovery-wf"),
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      AMK_VAULT_DIR: join(dir, "vault"),
      AMK_ALERT_LOG: join(dir, "alerts.jsonl"),
      AMK_BUS_LOG: join(dir, "bus.jsonl"),
      AMK_TASK_CALLBACKS: "in-process",
      AMK_REWRAP_BUDGET_MS: "2000",
    });
    events = eventStoreFromEnv();
    vault = await vaultFromEnv();
    const signingKey = randomBytes(32);
    tokens = new AccessTokenService({ events, signingKey: async () => signingKey });
  });

  after(async () => {
    await (await keyStore().catch(() => undefined))?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    for (const d of [dir, synthDir]) if (d) await rm(d, { recursive: true, force: true });
  });

  it("maps every Task state to its function, and AwaitUnlock waits on a task token", () => {
    assert.deepEqual(Object.fromEntries(Object.entries(wf.tasks).sort()), {
      AwaitUnlock: "RecoveryAwaitUnlock",
      Census: "RotationCensus",
      Complete: "RecoveryComplete",
      InvalidateTokens: "RecoveryInvalidateTokens",
      PlanRewrap: "RotationPlan",
      RecordFailure: "RecoveryFailure",
      RewrapShard: "RotationRewrapShard",
      Rotate: "RecoveryRotate",
      Validate: "RecoveryStart",
      Verify: "RecoveryVerify",
    });
    const asl = JSON.stringify(wf.asl);
    assert.match(asl, /lambda:invoke\.waitForTaskToken/);
    assert.match(asl, /"taskToken\.\$":"\$\$\.Task\.Token"/);
  });

  it("1,000 documents: lose the HSM, recover with passphrase + TOTP, every DEK unchanged under a fresh key, old tokens rejected", async () => {
    const ws = `rec-${randomUUID().slice(0, 8)}`;
    mainWs = ws;
    const { seed, deks } = await provision(ws, 1000);
    const oldToken = await tokens.issue({ workspaceId: ws, subject: "user-1" });
    secrets.push(oldToken.token);
    assert.equal(oldToken.epoch, 0);
    await tokens.verify(oldToken.token, { workspaceId: ws });

    await loseHsm();
    assert.deepEqual(await (await keyStore()).listMasterKeys(ws), [], "the replacement HSM starts empty");

    const main = start(ws, "recovery-main");
    await waitingFor("recovery-main");
    let state = await readWorkspace(events, ws);
    assert.equal(state.recovery?.status, "running");
    assert.equal(state.recovery?.executionName, "recovery-main");

    // A second recovery while the first waits: refused, records nothing, alerts; the first keeps its lock.
    const second = await start(ws, "recovery-second");
    assert.equal(second.status, "FAILED");
    assert.ok(
      second.invocations.some(
        (i) => i.target === "RecoveryStart" && i.error?.errorType === "RecoveryInProgressError",
      ),
    );
    state = await readWorkspace(events, ws);
    assert.equal(state.recovery?.executionName, "recovery-main");
    assert.equal(state.recovery?.status, "running");

    // Wrong passphrase, then a wrong code: answered by the unlock function, counted, the execution keeps waiting.
    const s = step();
    const wrongPassphrase = await unlock(ws, "not the passphrase at all, sorry", await codeAt(seed, s - 1));
    assert.equal(wrongPassphrase.ok, false);
    assert.equal((wrongPassphrase as Refused).error.code, "KIT_WRONG_PASSPHRASE");
    const wrongCode = await unlock(ws, PASSPHRASE, await codeAt(seed, s + 7));
    assert.equal(wrongCode.ok, false);
    assert.equal((wrongCode as Refused).error.code, "TOTP_CODE_INVALID");
    state = await readWorkspace(events, ws);
    assert.equal(state.admins.ops?.consecutiveFailures, 2);
    assert.ok(inProcessTaskCallbacks.isWaiting("local-task-token:recovery-main"), "still waiting");
    assert.equal(state.recovery?.unlocked, undefined);

    const ok = await unlock(ws, PASSPHRASE, await codeAt(seed, Math.max(step(), s)));
    assert.equal(ok.ok, true, JSON.stringify(ok));
    assert.equal((ok as Unlocked).resumed, true);
    assert.deepEqual(
      (ok as Unlocked).masterKeys.map((m) => m.keyId),
      [masterKeyId(ws, 1)],
    );

    const run = await main;
    assert.equal(run.status, "SUCCEEDED", JSON.stringify(run.error));
    const out = run.output as {
      newKeyId: string;
      tokenEpoch: number;
      kitVersion: number;
      recoveredKeyIds: string[];
    };
    assert.equal(out.newKeyId, masterKeyId(ws, 2));
    assert.deepEqual(out.recoveredKeyIds, [masterKeyId(ws, 1)]);
    assert.equal(out.tokenEpoch, 1);

    state = await readWorkspace(events, ws);
    assert.equal(state.recovery?.status, "completed");
    assert.equal(state.activeKeyId, masterKeyId(ws, 2));
    assert.equal(state.keys.find((k) => k.keyId === masterKeyId(ws, 1))?.state, "retired");
    assert.equal(await events.countDocumentsByKeyId(ws, masterKeyId(ws, 1)), 0);
    // The new kit covers the new key and is the vault's current kit.
    const kit = state.kits.at(-1)!;
    assert.equal(kit.kitVersion, out.kitVersion);
    assert.deepEqual(
      kit.masterKeys.map((m) => m.keyId),
      [masterKeyId(ws, 2)],
    );
    assert.equal((await (await kitService()).currentKit(ws)).header.kitVersion, kit.kitVersion);
    const completed = await lastOf(ws, EventTypes.RecoveryCompleted);
    const timings = completed?.data.TimingsMs as Record<string, number>;
    assert.ok(timings.Total! > 0 && timings.AwaitUnlock! >= 0, JSON.stringify(timings));

    await assertDeksUnchanged(ws, deks, masterKeyId(ws, 2));
    // Canaries too (the verify step checked them; check again from here).
    assert.equal(state.canaries.length, 3);

    // Old access tokens are rejected; new ones are accepted; the services were told.
    await assert.rejects(
      tokens.verify(oldToken.token, { workspaceId: ws }),
      (e: unknown) => e instanceof AccessTokenRejectedError && e.reason === "stale-epoch",
    );
    const fresh = await tokens.issue({ workspaceId: ws, subject: "user-1" });
    assert.equal(fresh.epoch, 1);
    assert.equal((await tokens.verify(fresh.token, { workspaceId: ws })).ws, ws);
    const published = (await readBusLog(process.env.AMK_BUS_LOG!)).filter(
      (e) => e.workspaceId === ws && e.detailType === "AccessTokensInvalidated",
    );
    assert.equal(published.length, 1);
    assert.equal(published[0]!.detail.Epoch, 1);

    // The administrator acknowledges the new kit; then a drill through its own state machine passes.
    const lastStep = (await readWorkspace(events, ws)).admins.ops!.lastAcceptedStep;
    const ackCode = await codeAt(seed, Math.max(step(), lastStep + 1));
    secrets.push(ackCode);
    await (
      await kitService()
    ).acknowledgeKit({
      workspaceId: ws,
      adminId: "ops",
      passphrase: PASSPHRASE,
      factor: { type: "totp", code: ackCode },
    });
    const drill = await runLocal({
      ...drillWf,
      handlers: { DrillRun: runDrillHandler },
      input: { workspaceId: ws, trigger: "on-demand" },
    });
    runs.push(drill);
    assert.equal(drill.status, "SUCCEEDED", JSON.stringify(drill.error));
    assert.equal((await readWorkspace(events, ws)).lastDrill?.ok, true);

    const alerts = (await readAlertLog(process.env.AMK_ALERT_LOG!)).filter((a) => a.workspaceId === ws);
    assert.ok(alerts.some((a) => a.code === "RECOVERY_REJECTED"));
    assert.ok(alerts.some((a) => a.code === "RECOVERY_COMPLETED"));
    assert.ok(!alerts.some((a) => a.code === "RECOVERY_FAILED"));
  });

  it("a tampered kit fails validation: RecoveryFailed at validate, an alert, every key untouched", async () => {
    const ws = `tam-${randomUUID().slice(0, 8)}`;
    const { deks } = await provision(ws, 5);
    const stored = await vault.getSecret(kitSecretName(ws));
    const bytes = Buffer.from(stored.value);
    bytes[bytes.length - 40]! ^= 0x01;
    await vault.putSecret(kitSecretName(ws), bytes);
    const before = await readWorkspace(events, ws);

    const run = await start(ws, `tampered-${randomUUID().slice(0, 6)}`);
    assert.equal(run.status, "FAILED");
    const failed = await lastOf(ws, EventTypes.RecoveryFailed);
    assert.equal(failed?.data.Step, "validate");
    assert.match(String(failed?.data.Error), /^Kit(Integrity|Header)Error$/);
    const after = await readWorkspace(events, ws);
    assert.deepEqual(after.keys, before.keys);
    assert.equal(after.activeKeyId, masterKeyId(ws, 1));
    assert.equal(await (await keyStore()).keyCheckValue(masterKeyId(ws, 1)), before.keys[0]!.kcv);
    await assertDeksUnchanged(ws, deks, masterKeyId(ws, 1));
    const alerts = (await readAlertLog(process.env.AMK_ALERT_LOG!)).filter((a) => a.workspaceId === ws);
    assert.ok(alerts.some((a) => a.code === "RECOVERY_FAILED"));
  });

  it("an unlock that never comes: the wait times out, RecoveryFailed at await-unlock, nothing changed", async () => {
    const ws = `tmo-${randomUUID().slice(0, 8)}`;
    await provision(ws, 3);
    const before = await readWorkspace(events, ws);
    const run = await start(ws, `timeout-${randomUUID().slice(0, 6)}`, { unlockTimeoutMs: 300 });
    assert.equal(run.status, "FAILED");
    const failed = await lastOf(ws, EventTypes.RecoveryFailed);
    assert.equal(failed?.data.Step, "await-unlock");
    assert.equal(failed?.data.Error, "States.Timeout");
    const after = await readWorkspace(events, ws);
    assert.deepEqual(after.keys, before.keys);
    assert.equal(after.recovery?.status, "failed");
  });

  it("a replayed code is refused; a crash in the middle of the re-wrap fails the run; a new execution resumes without a second unlock", async () => {
    const ws = `crs-${randomUUID().slice(0, 8)}`;
    const { seed, deks } = await provision(ws, 40);
    // The administrator proves the kit (acknowledgement) with the current code: that code is now used.
    const s = step();
    const used = await codeAt(seed, s);
    secrets.push(used);
    await (
      await kitService()
    ).acknowledgeKit({
      workspaceId: ws,
      adminId: "ops",
      passphrase: PASSPHRASE,
      factor: { type: "totp", code: used },
    });

    let shardCalls = 0;
    const name = `crash-${randomUUID().slice(0, 6)}`;
    const first = start(ws, name, {
      handlers: {
        RotationRewrapShard: async (e: unknown) => {
          shardCalls += 1;
          if (shardCalls === 2)
            throw Object.assign(new Error("simulated crash"), { name: "SimulatedCrashError" });
          return recoveryHandlers.RotationRewrapShard(e);
        },
      },
    });
    await waitingFor(name);
    const replayed = await unlock(ws, PASSPHRASE, used);
    assert.equal(replayed.ok, false);
    assert.equal((replayed as Refused).error.code, "TOTP_CODE_REPLAYED");
    const ok = await unlock(ws, PASSPHRASE, await codeAt(seed, s + 1));
    assert.equal(ok.ok, true, JSON.stringify(ok));

    const crashed = await first;
    assert.equal(crashed.status, "FAILED");
    const failed = await lastOf(ws, EventTypes.RecoveryFailed);
    assert.equal(failed?.data.Step, "rewrap");
    assert.equal(failed?.data.Error, "SimulatedCrashError");
    // Mid-way: nothing lost, every document still decrypts (some on the new key, some on the recovered one).
    await assertDeksUnchanged(ws, deks);
    const recovered = await readWorkspace(events, ws);
    assert.equal(recovered.keys.find((k) => k.keyId === masterKeyId(ws, 1))?.state, "decrypt-only");

    const resumed = await start(ws, `resume-${randomUUID().slice(0, 6)}`);
    assert.equal(resumed.status, "SUCCEEDED", JSON.stringify(resumed.error));
    assert.ok(
      !resumed.history.some((h) => h.type === "StateEntered" && h.state?.name === "AwaitUnlock"),
      "a resumed recovery does not wait for a second unlock",
    );
    const done = await readWorkspace(events, ws);
    assert.equal(done.recovery?.status, "completed");
    assert.equal(done.recovery?.recoveryId, recovered.recovery?.recoveryId, "the same recovery resumed");
    await assertDeksUnchanged(ws, deks, masterKeyId(ws, 2));
  });

  it("a kit missing a key version (an older kit that lacks a version in use, the HSM lost): refused at validate, nothing changed", async () => {
    const ws = `stl-${randomUUID().slice(0, 8)}`;
    await provision(ws, 5);
    const ks = await keyStore();
    const kits = await kitService();
    const rotation = new RotationService({
      keyStore: ks,
      events,
      kits,
      alerts: new RecordingAlerts(),
      writerSettleMs: 0,
    });
    await rotation.startRotation(ws, "interrupted rotation");
    const dataKeys = new DataKeyService({ keyStore: ks, events });
    const k = await dataKeys.generateDataKeys({
      workspaceId: ws,
      documentId: randomUUID(),
      artifacts: ARTIFACTS,
      idempotencyKey: "after-rotation",
    });
    assert.equal(k.keyId, masterKeyId(ws, 2));
    for (const x of k.keys) x.plaintext.fill(0);

    // The rotation issued kit v2 (mk/1 + mk/2); the administrator brings kit v1, which only has mk/1.
    const v1 = (await readWorkspace(events, ws)).kits[0]!;
    assert.equal(v1.kitVersion, 1);
    await loseHsm();
    const run = await start(ws, `stale-${randomUUID().slice(0, 6)}`, {
      kitVaultVersionId: v1.vaultVersionId,
    });
    assert.equal(run.status, "FAILED");
    const failed = await lastOf(ws, EventTypes.RecoveryFailed);
    assert.equal(failed?.data.Step, "validate");
    assert.equal(failed?.data.Error, "KitCoverageError");
    assert.match(String(failed?.data.Message), new RegExp(`ws-${ws}/mk/2`));
    assert.deepEqual(await (await keyStore()).listMasterKeys(ws), [], "nothing imported or created");
  });

  it("no secret in any execution's input, output or history, in the logs, the bus or the event store", async () => {
    assert.ok(runs.length >= 7);
    assert.ok(
      runs.some((r) => r.invocations.some((i) => i.target === "DrillRun")),
      "a drill is among the runs",
    );
    const leaks: string[] = [];
    for (const r of runs) {
      leaks.push(...leakedSecrets(r.history, secrets), ...leakedSecrets(r.invocations, secrets));
    }
    assert.ok(capturedLogLines.length > 20, "the functions' log lines were captured");
    assert.ok(capturedLogLines.some((l) => l.includes("kit unlocked for recovery")));
    leaks.push(...leakedSecrets(capturedLogLines.join("\n"), secrets));
    leaks.push(...leakedSecrets(await readFile(process.env.AMK_ALERT_LOG!, "utf8"), secrets));
    leaks.push(...leakedSecrets(await readFile(process.env.AMK_BUS_LOG!, "utf8"), secrets));
    const state = await readWorkspace(events, mainWs);
    const streams = [workspaceStreamId(state.workspaceId)];
    for (const c of state.canaries) streams.push(documentStreamId(state.workspaceId, c.documentId));
    for (const id of streams) leaks.push(...leakedSecrets((await events.readStream(id)).events, secrets));
    assert.deepEqual(leaks, []);
  });
});
