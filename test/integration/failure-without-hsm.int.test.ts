/**
 * The workflows' failure functions (RecordFailure of the rotation and of the recovery) record the failure while the
 * HSM cannot be opened: they use the event store and the alerts only. Before, they built the whole service and so
 * opened the HSM first: an HSM outage longer than RecordFailure's retries left a rotation "running" and a recovery
 * holding its lock. The real handlers run on DynamoDB Local; the HSM is SoftHSM2 while the rotation and the recovery
 * start, then the functions' PKCS#11 library path points at nothing.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

process.env.POWERTOOLS_LOG_LEVEL = "ERROR";

import { Logger } from "@aws-lambda-powertools/logger";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { softwareHmacToken } from "../../core/factors/hmac-token.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { KitService } from "../../core/kit/kit-service.js";
import { RotationService } from "../../core/rotation/rotation-service.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import * as recoveryFunctions from "../../functions/recovery/handlers.js";
import { failureHandler as recoveryFailure } from "../../functions/recovery/failure.js";
import { recoveryServiceFromEnv } from "../../functions/recovery/services.js";
import * as rotationFunctions from "../../functions/rotation/handlers.js";
import { failureHandler as rotationFailure } from "../../functions/rotation/failure.js";
import { eventStoreFromEnv } from "../../functions/shared/event-store.js";
import { keyStoreFromEnv } from "../../functions/shared/key-store.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

describe("failure functions without the HSM", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let keyStore: KeyStore;
  let events: EventStore;
  let vaultDir: string;
  let alertLog: string;
  let workingLibrary: string;
  const admin = {
    adminId: "ops",
    passphrase: "granite meadow violin harbor",
    factor: { type: "hmac-sha1" as const, token: softwareHmacToken(randomBytes(20)) },
  };

  before(async () => {
    hsm = await createTestHsm(["failures"]);
    ddb = await useTestDynamoDb();
    vaultDir = await mkdtemp(join(tmpdir(), "amk-failure-vault-"));
    alertLog = join(vaultDir, "alerts.log");
    const t = hsm.tokens[0]!;
    workingLibrary = t.libraryPath;
    Object.assign(process.env, {
      AMK_PKCS11_LIBRARY: t.libraryPath,
      AMK_PKCS11_TOKEN_LABEL: t.label,
      AMK_PKCS11_PIN_FILE: t.pinFile,
      AMK_EVENT_TABLE: await ddb.newTable("failures"),
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      AMK_VAULT_DIR: vaultDir,
      AMK_ALERT_LOG: alertLog,
    });
    keyStore = await keyStoreFromEnv();
    events = eventStoreFromEnv();
  });
  after(async () => {
    process.env.AMK_PKCS11_LIBRARY = workingLibrary;
    await keyStore?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    await rm(vaultDir, { recursive: true, force: true });
  });

  /** A provisioned workspace (keys, kit in the vault), with the working HSM. */
  async function provisioned(): Promise<{ workspaceId: string; kits: KitService }> {
    const workspaceId = `fail-${randomUUID().slice(0, 8)}`;
    const vault = await FileSecretVault.open(vaultDir);
    const kits = new KitService({ keyStore, events, vault, alerts: new RecordingAlerts() });
    await provisionWorkspaceWithKit({ keyStore, events, kits }, { workspaceId, administrators: [admin] });
    return { workspaceId, kits };
  }

  /** The error of a step that had to open the HSM (not a refusal of its input). */
  const hsmError = (err: unknown): boolean => {
    assert.ok(err instanceof Error);
    assert.match(`${err.name}: ${err.message}`, /pkcs#?11|library|HSM/i);
    return true;
  };

  /** Points the functions' PKCS#11 library at nothing: opening the HSM now fails. */
  function breakHsm(): void {
    process.env.AMK_PKCS11_LIBRARY = join(vaultDir, "no-such-pkcs11-library.so");
  }
  function repairHsm(): void {
    process.env.AMK_PKCS11_LIBRARY = workingLibrary;
  }

  it("RecordFailure of a rotation records RotationFailed and alerts while the HSM is down", async () => {
    const { workspaceId, kits } = await provisioned();
    const rotations = new RotationService({
      keyStore,
      events,
      kits,
      alerts: new RecordingAlerts(),
      writerSettleMs: 0,
    });
    const started = await rotations.startRotation(workspaceId, "test");
    assert.equal((await readWorkspace(events, workspaceId)).rotation?.status, "running");
    breakHsm();
    try {
      // The control: a step that needs the HSM fails in this environment.
      await assert.rejects(rotationFunctions.startHandler({ workspaceId }), hsmError);
      const out = await rotationFailure({
        workspaceId,
        error: {
          Error: "HsmUnavailableError",
          Cause: JSON.stringify({ errorMessage: "the HSM did not answer" }),
        },
      });
      assert.deepEqual(out, { workspaceId, recorded: true, error: "HsmUnavailableError" });
    } finally {
      repairHsm();
    }
    const ws = await readWorkspace(events, workspaceId);
    assert.equal(ws.rotation?.status, "failed");
    assert.equal(ws.rotation?.rotationId, started.rotationId);
    const alerts = await readFile(alertLog, "utf8");
    assert.match(alerts, new RegExp(`ROTATION_FAILED.*${workspaceId}|${workspaceId}.*ROTATION_FAILED`));
  });

  it("RecordFailure of a recovery releases its lock while the HSM is down", async () => {
    const { workspaceId } = await provisioned();
    const recoveries = await recoveryServiceFromEnv(new Logger({ serviceName: "test" }));
    const executionName = `recovery-${randomUUID().slice(0, 8)}`;
    const started = await recoveries.start({
      workspaceId,
      executionName,
      requestedBy: "test",
      reason: "test",
    });
    assert.equal((await readWorkspace(events, workspaceId)).recovery?.status, "running");
    breakHsm();
    try {
      await assert.rejects(
        recoveryFunctions.startHandler({
          request: { workspaceId, requestedBy: "test", reason: "test" },
          executionName,
        }),
        hsmError,
      );
      const out = await recoveryFailure({
        workspaceId,
        executionName,
        step: "await-unlock",
        error: {
          Error: "HsmUnavailableError",
          Cause: JSON.stringify({ errorMessage: "the HSM did not answer" }),
        },
      });
      assert.equal(out.recorded, true);
      assert.equal(out.recoveryId, started.recoveryId);
    } finally {
      repairHsm();
    }
    const ws = await readWorkspace(events, workspaceId);
    assert.equal(ws.recovery?.status, "failed");
    assert.equal(ws.recovery?.recoveryId, started.recoveryId);
    const alerts = await readFile(alertLog, "utf8");
    assert.match(alerts, /RECOVERY_FAILED/);
    // The lock is released: with the HSM back, the same recovery resumes (a failed one is resumed, not refused).
    const resumed = await recoveries.start({
      workspaceId,
      executionName,
      requestedBy: "test",
      reason: "again",
    });
    assert.equal(resumed.recoveryId, started.recoveryId);
    assert.equal(resumed.resumed, true);
  });
});
