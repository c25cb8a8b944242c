/**
 * The rotation workflow as Step Functions would run it: the ASL that the CDK app synthesises (the stateless stack),
 * executed by aws-local-stepfunctions with every Task bound to the real handler of functions/rotation, on SoftHSM2,
 * DynamoDB Local and the file vault. Checks the end state (census zero, every DEK unchanged, kit re-issued, old
 * version retired), a failing step's path (RecordFailure, alert, the workspace keeps its keys), a resumed execution,
 * and that no secret reaches any payload or the history.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { rotationHandlers, synthRotationWorkflow } from "../support/rotation-workflow.js";
import { aslFromTemplate, leakedSecrets, runLocal } from "../../workflows/local-runner.js";
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

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const ALL = ["file", "metadata", "thumb", "preview", "archive"];

const handlers = rotationHandlers;

describe("rotation workflow (synthesised ASL, local runner, real handlers)", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let vaultDir: string;
  let synthDir: string;
  let wf: ReturnType<typeof aslFromTemplate>;
  let keyStore: KeyStore;
  let events: EventStore;
  let dataKeys: DataKeyService;
  const ws = `wf-${randomUUID().slice(0, 8)}`;
  const passphrase = "saffron glacier tuba orchard";
  const deks = new Map<string, string>();
  const secrets: Buffer[] = [];

  before(async () => {
    const synth = synthRotationWorkflow();
    synthDir = synth.outdir;
    wf = synth.wf;
    hsm = await createTestHsm(["rotation-wf"]);
    ddb = await useTestDynamoDb();
    vaultDir = await mkdtemp(join(tmpdir(), "amk-wf-vault-"));
    const t = hsm.tokens[0]!;
    Object.assign(process.env, {
      AMK_PKCS11_LIBRARY: t.libraryPath,
      AMK_PKCS11_TOKEN_LABEL: t.label,
      AMK_PKCS11_PIN_FILE: t.pinFile,
      AMK_PKCS11_POOL_SIZE: "6",
      AMK_EVENT_TABLE: await ddb.newTable("rotation-wf"),
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      AMK_VAULT_DIR: vaultDir,
      AMK_REWRAP_BUDGET_MS: "400",
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
            passphrase,
            factor: { type: "hmac-sha1", token: softwareHmacToken(randomBytes(20)) },
          },
        ],
      },
    );
    dataKeys = new DataKeyService({ keyStore, events });
    const docs = Array.from({ length: 300 }, () => randomUUID());
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < docs.length; i = next++) {
          const r = await dataKeys.generateDataKeys({
            workspaceId: ws,
            documentId: docs[i]!,
            artifacts: ALL,
            idempotencyKey: "i",
          });
          deks.set(docs[i]!, r.keys.map((k) => sha(k.plaintext)).join(","));
          if (i < 3) secrets.push(Buffer.from(r.keys[0]!.plaintext));
          for (const k of r.keys) k.plaintext.fill(0);
        }
      }),
    );
  });
  after(async () => {
    await keyStore?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    for (const d of [vaultDir, synthDir]) if (d) await rm(d, { recursive: true, force: true });
  });

  it("maps every Task state of the synthesised ASL to its function", () => {
    assert.deepEqual(Object.fromEntries(Object.entries(wf.tasks).sort()), {
      Census: "RotationCensus",
      CompleteRotation: "RotationComplete",
      PlanRewrap: "RotationPlan",
      RecordFailure: "RotationFailure",
      RewrapShard: "RotationRewrapShard",
      StartRotation: "RotationStart",
    });
  });

  it("fails a step on purpose: RecordFailure runs, the execution fails, the workspace keeps every key; a new execution resumes and completes", async () => {
    // The first shard task throws a final error: the Map's Catch sends the execution to RecordFailure.
    let calls = 0;
    const failing = await runLocal({
      ...wf,
      handlers: {
        ...handlers,
        RotationRewrapShard: async (e: unknown) => {
          calls += 1;
          if (calls === 2)
            throw Object.assign(new Error("simulated defect"), { name: "SimulatedDefectError" });
          return handlers.RotationRewrapShard(e);
        },
      },
      input: { workspaceId: ws },
      waitTimeOverride: 0,
      retryIntervalOverride: 0,
    });
    assert.equal(failing.status, "FAILED");
    let state = await readWorkspace(events, ws);
    assert.equal(state.rotation?.status, "failed");
    assert.equal(state.activeKeyId, masterKeyId(ws, 2), "the new version stays active");
    assert.deepEqual(
      state.keys.map((k) => k.state),
      ["decrypt-only", "active"],
      "nothing retired",
    );

    // The operator starts the workflow again: the failed rotation resumes (same target version, no new key).
    const rotationId = state.rotation?.rotationId;
    const emitted: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string | Uint8Array) => (
      emitted.push(String(chunk)),
      true
    )) as typeof process.stdout.write;
    let run: Awaited<ReturnType<typeof runLocal>>;
    try {
      run = await runLocal({
        ...wf,
        handlers,
        input: { workspaceId: ws },
        waitTimeOverride: 0,
        retryIntervalOverride: 0,
      });
    } finally {
      process.stdout.write = write;
    }
    // The shard tasks publish their progress as CloudWatch metrics (embedded metric format).
    const emf = emitted
      .flatMap((l) => l.split("\n"))
      .filter((l) => l.includes('"_aws"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const rewrapped = emf
      .filter((m) => typeof m.DocumentsRewrapped === "number")
      .reduce((a, m) => a + (m.DocumentsRewrapped as number), 0);
    assert.ok(rewrapped > 0 && emf.every((m) => m.workspaceId === ws), `EMF lines: ${emf.length}`);
    assert.equal(run.status, "SUCCEEDED", JSON.stringify(run.error));
    state = await readWorkspace(events, ws);
    assert.equal(state.rotation?.status, "completed");
    assert.equal(state.rotation?.rotationId, rotationId);
    assert.equal(state.activeKeyId, masterKeyId(ws, 2));
    assert.deepEqual(
      state.keys.map((k) => k.state),
      ["retired", "active"],
    );
    assert.equal(await events.countDocumentsByKeyId(ws, masterKeyId(ws, 1)), 0);
    assert.equal(
      state.kits
        .at(-1)
        ?.masterKeys.map((m) => m.keyId)
        .join(),
      masterKeyId(ws, 2),
    );
    // The shard loop ran more than once per shard (budget 400 ms): the checkpoint is the census index.
    const shardCalls = run.invocations.filter((i) => i.target === "RotationRewrapShard").length;
    assert.ok(shardCalls > 4, `shard tasks: ${shardCalls}`);

    // Every DEK unchanged.
    for (const [doc, hashes] of deks) {
      const r = await dataKeys.decryptDataKeys({ workspaceId: ws, documentId: doc, artifacts: ALL });
      assert.equal(r.keyId, masterKeyId(ws, 2));
      assert.equal(r.keys.map((k) => sha(k.plaintext)).join(","), hashes, doc);
    }
    // Nothing secret in any payload or the history.
    assert.deepEqual(leakedSecrets(run, [...secrets, Buffer.from(passphrase)]), []);
    assert.deepEqual(leakedSecrets(failing, [...secrets, Buffer.from(passphrase)]), []);
  });
});
