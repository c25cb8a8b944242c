/**
 * The rotation's activation and the writers in flight, on the real engines (SoftHSM2, DynamoDB Local, the file vault)
 * (docs/rotation.md, "Activation" and "Writers in flight"; found by the reliability suite, docs/reliability.md):
 *
 * - a rotation's new version is pending until a kit carries it: while the kit cannot be issued, new DEKs stay on the
 *   version before, and no record ever uses a version that no kit holds;
 * - GenerateDataKeys records only within its write window after reading the active version (else it reads again,
 *   and answers WriteWindowExpiredError when it keeps missing it, recording nothing);
 * - the census waits out the writer settle time after the activation, and CompleteRotation refuses to retire an old
 *   version before it has passed.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { WriteWindowExpiredError } from "../../core/datakeys/errors.js";
import { documentStreamId } from "../../core/eventstore/stream-id.js";
import { softwareHmacToken } from "../../core/factors/hmac-token.js";
import { KitService } from "../../core/kit/kit-service.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { RotationNotSettledError, RotationService } from "../../core/rotation/rotation-service.js";
import type { SecretVault } from "../../core/vault/secret-vault.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

/** `real` with one method run through `wrap` (the rest bound to `real`): a fault or delay around a real adapter. */
function around<T extends object>(
  real: T,
  method: keyof T & string,
  wrap: (call: () => unknown) => unknown,
): T {
  return new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      const bound = (v as (...a: unknown[]) => unknown).bind(target);
      return prop === method ? (...args: unknown[]) => wrap(() => bound(...args)) : bound;
    },
  });
}

/** A key store whose `wrapDataKey` can be slowed down (a slow HSM), around the real one. */
const slowWraps = (real: KeyStore, delay: { ms: number }): KeyStore =>
  around(real, "wrapDataKey", async (call) => {
    if (delay.ms > 0) await new Promise((r) => setTimeout(r, delay.ms));
    return call();
  });

/** A vault whose writes fail while `failing.on` (the kit cannot be stored). */
const flakyVault = (real: SecretVault, failing: { on: boolean }): SecretVault =>
  around(real, "putSecret", (call) =>
    failing.on ? Promise.reject(new Error("simulated vault outage")) : call(),
  );

describe("writers in flight: pending activation, write window, settle time", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let vaultDir: string;
  let ks: Pkcs11KeyStore;
  let events: DynamoDbEventStore;
  let vault: FileSecretVault;
  const alerts = new RecordingAlerts();

  before(async () => {
    hsm = await createTestHsm(["writers"]);
    ddb = await useTestDynamoDb();
    vaultDir = await mkdtemp(join(tmpdir(), "amk-writers-vault-"));
    ks = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!, { poolSize: 4 }));
    events = new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable("writers") });
    vault = await FileSecretVault.open(vaultDir);
  });
  after(async () => {
    await ks?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    if (vaultDir) await rm(vaultDir, { recursive: true, force: true });
  });

  async function workspace(kits: KitService): Promise<string> {
    const ws = `wif-${randomUUID().slice(0, 8)}`;
    await provisionWorkspaceWithKit(
      { keyStore: ks, events, kits },
      {
        workspaceId: ws,
        administrators: [
          {
            adminId: "ops",
            passphrase: "granite meadow violin harbor",
            factor: { type: "hmac-sha1", token: softwareHmacToken(randomBytes(20)) },
          },
        ],
      },
    );
    return ws;
  }

  it("a new version stays pending, and new DEKs on the old one, until a kit carries it", async () => {
    const failing = { on: false };
    const kits = new KitService({ keyStore: ks, events, vault: flakyVault(vault, failing), alerts });
    const ws = await workspace(kits);
    const rotations = new RotationService({ keyStore: ks, events, kits, alerts, writerSettleMs: 0 });
    const dataKeys = new DataKeyService({ keyStore: ks, events });
    const [mk1, mk2] = [masterKeyId(ws, 1), masterKeyId(ws, 2)];

    failing.on = true;
    await assert.rejects(rotations.startRotation(ws, "vault down"), /simulated vault outage/);
    let state = await readWorkspace(events, ws);
    assert.equal(state.activeKeyId, mk1, "the version before stays active");
    assert.deepEqual(
      state.keys.map((k) => [k.keyId, k.state]),
      [
        [mk1, "active"],
        [mk2, "pending"],
      ],
    );
    assert.equal(state.rotation?.status, "running");
    assert.deepEqual(
      state.kits.at(-1)?.masterKeys.map((m) => m.keyId),
      [mk1],
      "no kit carries mk/2 yet",
    );
    const during = await dataKeys.generateDataKeys({
      workspaceId: ws,
      documentId: "during-the-outage",
      artifacts: ["file"],
      idempotencyKey: "k",
    });
    during.keys.forEach((k) => k.plaintext.fill(0));
    assert.equal(during.keyId, mk1, "no DEK is wrapped under a version that no kit holds");

    failing.on = false;
    const resumed = await rotations.startRotation(ws, "vault back");
    assert.equal(resumed.toKeyId, mk2, "the same rotation resumes, with the same target");
    state = await readWorkspace(events, ws);
    assert.equal(state.activeKeyId, mk2);
    const kit = state.kits.at(-1)!;
    assert.deepEqual(
      kit.masterKeys.map((m) => [m.keyId, m.state]),
      [
        [mk1, "active"],
        [mk2, "pending"],
      ],
      "the kit was issued while mk/2 was pending, before it was handed out",
    );
    assert.ok(state.keys.find((k) => k.keyId === mk2)?.activatedAt, "the activation time is recorded");
    assert.equal(state.keys.find((k) => k.keyId === mk1)?.state, "decrypt-only");
    const afterwards = await dataKeys.generateDataKeys({
      workspaceId: ws,
      documentId: "after-the-activation",
      artifacts: ["file"],
      idempotencyKey: "k",
    });
    afterwards.keys.forEach((k) => k.plaintext.fill(0));
    assert.equal(afterwards.keyId, mk2);

    // A superseded rotation's pending version (a recovery excludes it as a target) is abandoned, never handed out.
    for (const item of (await rotations.planRewrap(ws)).items)
      await rotations.rewrapShard({ workspaceId: ws, ...item });
    await rotations.completeRotation(ws);
    failing.on = true;
    await assert.rejects(rotations.startRotation(ws, "third"), /simulated vault outage/);
    failing.on = false;
    const mk3 = masterKeyId(ws, 3);
    const next = await rotations.startRotation(ws, "superseding", { excludeTargets: [mk3] });
    assert.equal(next.toKeyId, masterKeyId(ws, 4));
    state = await readWorkspace(events, ws);
    assert.equal(state.keys.find((k) => k.keyId === mk3)?.state, "retired", "mk/3 was abandoned");
    assert.equal(state.activeKeyId, masterKeyId(ws, 4));
  });

  it("GenerateDataKeys records only within its write window; past it, nothing is recorded", async () => {
    const kits = new KitService({ keyStore: ks, events, vault, alerts });
    const ws = await workspace(kits);
    const delay = { ms: 0 };
    const dataKeys = new DataKeyService({
      keyStore: slowWraps(ks, delay),
      events,
      writeWindowMs: 150,
      maxConflictRetries: 2,
    });
    delay.ms = 400; // every wrap takes longer than the window
    await assert.rejects(
      dataKeys.generateDataKeys({
        workspaceId: ws,
        documentId: "slow",
        artifacts: ["file"],
        idempotencyKey: "k",
      }),
      (err: unknown) => err instanceof WriteWindowExpiredError && err.retryable,
    );
    const stream = await events.readStream(documentStreamId(ws, "slow"));
    assert.equal(stream.events.length, 0, "nothing recorded past the window");
    delay.ms = 0;
    const ok = await dataKeys.generateDataKeys({
      workspaceId: ws,
      documentId: "slow",
      artifacts: ["file"],
      idempotencyKey: "k",
    });
    ok.keys.forEach((k) => k.plaintext.fill(0));
    assert.equal(ok.recordVersion, 1, "the retry records once the HSM answers in time");
  });

  it("the census waits out the settle time after the activation; before it, nothing is retired", async () => {
    const kits = new KitService({ keyStore: ks, events, vault, alerts });
    const ws = await workspace(kits);
    let now = Date.parse("2026-12-01T10:00:00.000Z");
    const rotations = new RotationService({
      keyStore: ks,
      events,
      kits,
      alerts,
      writerSettleMs: 60_000,
      now: () => new Date(now),
    });
    await rotations.startRotation(ws, "settle");
    now += 20_000; // 20 s after the activation: 40 s to go
    const early = await rotations.census(ws, { settleWaitMaxMs: 0 });
    assert.equal(early.remaining, 0);
    assert.equal(early.settled, false);
    assert.equal(early.settleRemainingMs, 40_000);
    let state = await readWorkspace(events, ws);
    assert.equal(state.keys.find((k) => k.keyId === masterKeyId(ws, 1))?.state, "decrypt-only");
    now += 40_000; // settled
    const late = await rotations.census(ws, { settleWaitMaxMs: 0 });
    assert.equal(late.settled, true);
    await rotations.completeRotation(ws);
    state = await readWorkspace(events, ws);
    assert.equal(state.keys.find((k) => k.keyId === masterKeyId(ws, 1))?.state, "retired");
  });

  it("CompleteRotation refuses before the settle time when it may not wait that long", async () => {
    const kits = new KitService({ keyStore: ks, events, vault, alerts });
    const ws = await workspace(kits);
    const rotations = new RotationService({ keyStore: ks, events, kits, alerts, writerSettleMs: 3_600_000 });
    await rotations.startRotation(ws, "settle");
    await assert.rejects(
      rotations.completeRotation(ws, { settleWaitMaxMs: 0 }),
      (err: unknown) => err instanceof RotationNotSettledError && err.retryable,
    );
    const state = await readWorkspace(events, ws);
    assert.equal(state.rotation?.status, "running");
    assert.equal(state.keys.find((k) => k.keyId === masterKeyId(ws, 1))?.state, "decrypt-only");
  });
});
