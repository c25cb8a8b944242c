/**
 * The drill workflow through the ASL the CDK app synthesises, with the real drill function on SoftHSM2, DynamoDB
 * Local and the file vault: a healthy workspace passes (DrillCompleted Ok, execution SUCCEEDED, no alert); a tampered
 * kit fails the execution with DrillFailed, records the failed check and raises the alert in the local alert log.
 * (Every failure reason of the drill is covered against the service in test/integration/drill.int.test.ts.)
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readAlertLog } from "../../core/adapters/file-alerts/file-alerts.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { DEFAULT_TOTP, totpCode } from "../../core/factors/totp.js";
import { KitService } from "../../core/kit/kit-service.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { kitSecretName, type SecretVault } from "../../core/vault/secret-vault.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace as readWorkspaceState } from "../../core/workspaces/workspace.js";
import { runDrillHandler } from "../../functions/drill/handler.js";
import { eventStoreFromEnv } from "../../functions/shared/event-store.js";
import { keyStoreFromEnv } from "../../functions/shared/key-store.js";
import { vaultFromEnv } from "../../functions/shared/vault.js";
import { runLocal } from "../../workflows/local-runner.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";
import { synthWorkflows } from "../support/recovery-workflow.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

const PASSPHRASE = "copper meadow whistle under rain";

describe("drill workflow (synthesised ASL, local runner, real drill function)", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let dir: string;
  let synthDir: string;
  let wf: ReturnType<typeof synthWorkflows>["drill"];
  let keyStore: KeyStore;
  let events: EventStore;
  let vault: SecretVault;
  const ws = `drl-${randomUUID().slice(0, 8)}`;

  before(async () => {
    const synth = synthWorkflows();
    wf = synth.drill;
    synthDir = synth.outdir;
    hsm = await createTestHsm(["drill-wf"]);
    ddb = await useTestDynamoDb();
    dir = await mkdtemp(join(tmpdir(), "amk-drill-wf-"));
    const t = hsm.tokens[0]!;
    Object.assign(process.env, {
      AMK_PKCS11_LIBRARY: t.libraryPath,
      AMK_PKCS11_TOKEN_LABEL: t.label,
      AMK_PKCS11_PIN_FILE: t.pinFile,
      AMK_EVENT_TABLE: await ddb.newTable("drill-wf"),
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      AMK_VAULT_DIR: join(dir, "vault"),
      AMK_ALERT_LOG: join(dir, "alerts.jsonl"),
    });
    keyStore = await keyStoreFromEnv();
    events = eventStoreFromEnv();
    vault = await vaultFromEnv();
    const kits = new KitService({ keyStore, events, vault, alerts: new RecordingAlerts() });
    const dataKeys = new DataKeyService({ keyStore, events });
    const r = await provisionWorkspaceWithKit(
      { keyStore, events, kits, dataKeys },
      {
        workspaceId: ws,
        administrators: [{ adminId: "ops", passphrase: PASSPHRASE, factor: { type: "totp" } }],
      },
    );
    for (let i = 0; i < 10; i++) {
      const k = await dataKeys.generateDataKeys({
        workspaceId: ws,
        documentId: randomUUID(),
        artifacts: ["file", "thumb"],
        idempotencyKey: "ingest",
      });
      for (const x of k.keys) x.plaintext.fill(0);
    }
    const seed = new URL(r.enrollments[0]!.totpUri!).searchParams.get("secret")!;
    await kits.acknowledgeKit({
      workspaceId: ws,
      adminId: "ops",
      passphrase: PASSPHRASE,
      factor: { type: "totp", code: await totpCode(seed, DEFAULT_TOTP, Date.now() / 1000) },
    });
  });

  after(async () => {
    await keyStore?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    for (const d of [dir, synthDir]) if (d) await rm(d, { recursive: true, force: true });
  });

  const drills = async () =>
    (await events.readStream(workspaceStreamId(ws))).events.filter(
      (e) => e.type === EventTypes.DrillCompleted,
    );

  it("maps its Task to the drill function", () => {
    assert.deepEqual(wf.tasks, { RunDrill: "DrillRun" });
  });

  it("passes on a healthy workspace: SUCCEEDED, one DrillCompleted with every check passed or skipped, no alert", async () => {
    const before = (await readWorkspace()).version;
    const run = await runLocal({
      ...wf,
      handlers: { DrillRun: runDrillHandler },
      input: { workspaceId: ws, trigger: "schedule" },
    });
    assert.equal(run.status, "SUCCEEDED", JSON.stringify(run.error));
    const recorded = await drills();
    assert.equal(recorded.length, 1);
    const data = recorded[0]!.data as {
      Ok: boolean;
      Trigger: string;
      Checks: { Name: string; Status: string }[];
    };
    assert.equal(data.Ok, true);
    assert.equal(data.Trigger, "schedule");
    assert.ok(
      data.Checks.every((c) => c.Status !== "failed"),
      JSON.stringify(data.Checks),
    );
    assert.equal(data.Checks.find((c) => c.Name === "hsm-backups")?.Status, "skipped");
    assert.equal((await readWorkspace()).version, before + 1, "the drill wrote its result and nothing else");
    assert.equal((await readAlertLog(process.env.AMK_ALERT_LOG!)).length, 0);
  });

  it("fails on a tampered kit: DrillFailed, the failed check recorded, an alert with the action", async () => {
    const stored = await vault.getSecret(kitSecretName(ws));
    const bytes = Buffer.from(stored.value);
    bytes[bytes.length - 50]! ^= 0x40;
    await vault.putSecret(kitSecretName(ws), bytes);
    const run = await runLocal({
      ...wf,
      handlers: { DrillRun: runDrillHandler },
      input: { workspaceId: ws, trigger: "on-demand" },
    });
    assert.equal(run.status, "FAILED");
    assert.equal(run.error?.error, "DrillFailed");
    const last = (await drills()).at(-1)!.data as { Ok: boolean; Checks: { Name: string; Status: string }[] };
    assert.equal(last.Ok, false);
    assert.equal(last.Checks.find((c) => c.Name === "kit-in-vault")?.Status, "failed");
    const alerts = await readAlertLog(process.env.AMK_ALERT_LOG!);
    assert.equal(alerts.length, 1);
    assert.equal(alerts[0]!.code, "DRILL_FAILED");
    assert.match(alerts[0]!.message, /kit-in-vault/);
    assert.ok(alerts[0]!.action.length > 0);
  });

  const readWorkspace = () => readWorkspaceState(events, ws);
});
