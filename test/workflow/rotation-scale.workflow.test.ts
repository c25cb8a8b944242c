/**
 * A rotation of 10,000 documents (five artifacts each) through the local workflow: the ASL the CDK app synthesises,
 * run with the real handlers on SoftHSM2 and DynamoDB Local. It must end with a census of zero on the old version
 * and every DEK unchanged (each document decrypted and compared with the hash taken when it was seeded).
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runLocal } from "../../workflows/local-runner.js";
import { rotationHandlers, synthRotationWorkflow } from "../support/rotation-workflow.js";
import { keyStoreFromEnv } from "../../functions/shared/key-store.js";
import { eventStoreFromEnv } from "../../functions/shared/event-store.js";
import { vaultFromEnv } from "../../functions/shared/vault.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { KitService } from "../../core/kit/kit-service.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { softwareHmacToken } from "../../core/factors/hmac-token.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";
import { dekHash, seedDocuments } from "../support/seed.js";

const DOCUMENTS = Number(process.env.AMK_SCALE_DOCUMENTS ?? 10_000);
const ALL = ["file", "metadata", "thumb", "preview", "archive"] as const;

describe(`rotation of ${DOCUMENTS} documents through the local workflow`, () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let vaultDir: string;
  let synthDir: string;
  let keyStore: KeyStore;
  let events: EventStore;
  let hashes: Map<string, string>;
  const ws = `scale-${randomUUID().slice(0, 8)}`;

  before(async () => {
    hsm = await createTestHsm(["scale"]);
    ddb = await useTestDynamoDb();
    vaultDir = await mkdtemp(join(tmpdir(), "amk-scale-vault-"));
    const t = hsm.tokens[0]!;
    Object.assign(process.env, {
      AMK_PKCS11_LIBRARY: t.libraryPath,
      AMK_PKCS11_TOKEN_LABEL: t.label,
      AMK_PKCS11_PIN_FILE: t.pinFile,
      AMK_PKCS11_POOL_SIZE: "8",
      AMK_EVENT_TABLE: await ddb.newTable("scale"),
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      AMK_VAULT_DIR: vaultDir,
      AMK_REWRAP_BUDGET_MS: "5000",
    });
    keyStore = await keyStoreFromEnv();
    events = eventStoreFromEnv();
    const kits = new KitService({
      keyStore,
      events,
      vault: await vaultFromEnv(),
      alerts: new RecordingAlerts(),
    });
    await provisionWorkspaceWithKit(
      { keyStore, events, kits },
      {
        workspaceId: ws,
        administrators: [
          {
            adminId: "ops",
            passphrase: "nebula walnut cobalt pier",
            factor: { type: "hmac-sha1", token: softwareHmacToken(randomBytes(20)) },
          },
        ],
      },
    );
    hashes = await seedDocuments({
      keyStore,
      events,
      workspaceId: ws,
      keyId: masterKeyId(ws, 1),
      count: DOCUMENTS,
    });
  });
  after(async () => {
    await keyStore?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    for (const d of [vaultDir, synthDir]) if (d) await rm(d, { recursive: true, force: true });
  });

  it("ends with a census of zero on the old version and every DEK unchanged", async () => {
    assert.equal(await events.countDocumentsByKeyId(ws, masterKeyId(ws, 1)), DOCUMENTS);
    const synth = synthRotationWorkflow();
    synthDir = synth.outdir;
    const run = await runLocal({
      ...synth.wf,
      handlers: rotationHandlers,
      input: { workspaceId: ws },
      waitTimeOverride: 0,
      retryIntervalOverride: 0,
    });
    assert.equal(run.status, "SUCCEEDED", JSON.stringify(run.error));
    assert.equal(await events.countDocumentsByKeyId(ws, masterKeyId(ws, 1)), 0);
    assert.equal(await events.countDocumentsByKeyId(ws, masterKeyId(ws, 2)), DOCUMENTS);
    const state = await readWorkspace(events, ws);
    assert.equal(state.rotation?.status, "completed");
    assert.deepEqual(
      state.keys.map((k) => k.state),
      ["retired", "active"],
    );

    const dataKeys = new DataKeyService({ keyStore, events });
    const docs = [...hashes.keys()];
    let next = 0;
    let checked = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < docs.length; i = next++) {
          const r = await dataKeys.decryptDataKeys({
            workspaceId: ws,
            documentId: docs[i]!,
            artifacts: [...ALL],
          });
          assert.equal(r.keyId, masterKeyId(ws, 2));
          assert.equal(dekHash(r.keys.map((k) => k.plaintext)), hashes.get(docs[i]!), docs[i]);
          for (const k of r.keys) k.plaintext.fill(0);
          checked += 1;
        }
      }),
    );
    assert.equal(checked, DOCUMENTS);
  });
});
