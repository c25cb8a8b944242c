/**
 * The drill on the real engines (SoftHSM2, DynamoDB Local, the file vault): a healthy workspace passes every check
 * and the drill changes nothing but its own DrillCompleted; each kind of damage (kit missing from the vault, kit
 * changed, kit missing a version after a rotation, a master key that changed in the HSM, a canary whose record was
 * replaced, acknowledgements missing or stale) fails the right check, records Ok false and raises one alert; the
 * result is recorded once even when the stream moves under it; the function works from its environment.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import { readAlertLog } from "../../core/adapters/file-alerts/file-alerts.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { ConcurrentUpdateError, WorkspaceNotProvisionedError } from "../../core/datakeys/errors.js";
import {
  DrillCheckNames,
  DrillService,
  drillHistory,
  type DrillResult,
} from "../../core/drills/drill-service.js";
import { EventTypes, type DocumentEncryptionKeysAddedData } from "../../core/eventstore/catalogue.js";
import { EventStoreUnavailableError } from "../../core/eventstore/errors.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { newEvent, type StoredEvent } from "../../core/eventstore/events.js";
import { documentStreamId, workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { DEFAULT_TOTP, totpCode } from "../../core/factors/totp.js";
import { kitSecretName, KitService } from "../../core/kit/kit-service.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { RotationService } from "../../core/rotation/rotation-service.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import { uuidFromName } from "../../core/shared/ids.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { keyStoreFromEnv } from "../../functions/shared/key-store.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

const PASSPHRASES: Record<string, string> = {
  alice: "orbit velvet canyon pickle",
  bob: "lantern mango tundra seventeen",
};
const ARTIFACTS = ["file", "metadata", "thumb"];

interface TestWorkspace {
  readonly ws: string;
  readonly docs: string[];
  readonly seeds: Record<string, string>;
}

describe("drill on SoftHSM2, DynamoDB Local and the file vault", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let vaultDir: string;
  let vault: FileSecretVault;
  let ks: KeyStore;
  let events: EventStore;
  let kits: KitService;
  let dataKeys: DataKeyService;
  const alerts = new RecordingAlerts();
  let clock = new Date("2026-12-01T08:00:00.000Z");
  const tick = (seconds: number) => (clock = new Date(clock.getTime() + seconds * 1000));
  /** base64 of every DEK handed out, to prove none of them reaches a result, an event or an alert. */
  const deks: string[] = [];
  const drills = (over: Partial<ConstructorParameters<typeof DrillService>[0]> = {}) =>
    new DrillService({ keyStore: ks, events, kits, dataKeys, alerts, now: () => clock, ...over });

  async function acknowledge(ws: string, adminId: string, seed: string): Promise<void> {
    tick(30);
    const code = await totpCode(seed, DEFAULT_TOTP, Math.floor(clock.getTime() / 1000));
    await kits.acknowledgeKit({
      workspaceId: ws,
      adminId,
      passphrase: PASSPHRASES[adminId]!,
      factor: { type: "totp", code },
    });
  }

  async function ingest(ws: string, n: number): Promise<string[]> {
    const docs: string[] = [];
    for (let i = 0; i < n; i++) {
      const documentId = randomUUID();
      const r = await dataKeys.generateDataKeys({
        workspaceId: ws,
        documentId,
        artifacts: ARTIFACTS,
        idempotencyKey: "ingest",
      });
      for (const k of r.keys) {
        deks.push(k.plaintext.toString("base64"), k.plaintext.toString("hex"));
        k.plaintext.fill(0);
      }
      docs.push(documentId);
    }
    return docs;
  }

  /** A provisioned workspace with its kit, canaries, a few documents, and the given administrators' acknowledgements. */
  async function newWorkspace(
    prefix: string,
    options: { admins?: string[]; acknowledged?: string[]; documents?: number } = {},
  ): Promise<TestWorkspace> {
    const admins = options.admins ?? ["alice"];
    const ws = `${prefix}-${randomUUID().slice(0, 8)}`;
    const r = await provisionWorkspaceWithKit(
      { keyStore: ks, events, kits, dataKeys, now: () => clock },
      {
        workspaceId: ws,
        administrators: admins.map((adminId) => ({
          adminId,
          passphrase: PASSPHRASES[adminId]!,
          factor: { type: "totp" as const },
        })),
      },
    );
    const seeds = Object.fromEntries(
      r.enrollments.map((e) => [e.adminId, new URL(e.totpUri!).searchParams.get("secret")!]),
    );
    const docs = await ingest(ws, options.documents ?? 4);
    for (const a of options.acknowledged ?? admins) await acknowledge(ws, a, seeds[a]!);
    return { ws, docs, seeds };
  }

  const byName = (r: DrillResult) => Object.fromEntries(r.checks.map((c) => [c.Name, c]));
  const alertsOf = (ws: string) => alerts.raised.filter((a) => a.workspaceId === ws);

  /** The drill failed on `check`: recorded once with Ok false, and one critical alert naming the check. */
  async function assertFailedOn(ws: string, r: DrillResult, check: string): Promise<void> {
    assert.equal(r.ok, false);
    const c = byName(r)[check]!;
    assert.equal(c.Status, "failed", `${check}: ${c.Detail}`);
    assert.ok(c.Action && c.Action.length > 20, `${check} says what to do`);
    const history = await drillHistory(events, ws, 10);
    assert.equal(history.length, 1);
    assert.equal(history[0]!.data.Ok, false);
    assert.equal(history[0]!.data.DrillId, r.drillId);
    assert.deepEqual(history[0]!.data.Checks, r.checks);
    const raised = alertsOf(ws);
    assert.equal(raised.length, 1);
    assert.equal(raised[0]!.code, "DRILL_FAILED");
    assert.equal(raised[0]!.severity, "critical");
    assert.match(raised[0]!.message, new RegExp(check));
    assert.ok(raised[0]!.action.includes(c.Action!));
    assert.deepEqual((await readWorkspace(events, ws)).lastDrill?.failed.includes(check), true);
  }

  function assertNoKeyMaterial(value: unknown): void {
    const text = JSON.stringify(value);
    for (const d of deks) assert.equal(text.includes(d), false, "a DEK leaked");
  }

  async function documentStreams(ws: string, docs: readonly string[]): Promise<StoredEvent[][]> {
    const canaries = (await readWorkspace(events, ws)).canaries.map((c) => c.documentId);
    return Promise.all(
      [...docs, ...canaries].map(async (d) => (await events.readStream(documentStreamId(ws, d))).events),
    );
  }

  before(async () => {
    hsm = await createTestHsm(["drill"]);
    ddb = await useTestDynamoDb();
    vaultDir = await mkdtemp(join(tmpdir(), "amk-drill-vault-"));
    const t = hsm.tokens[0]!;
    const table = await ddb.newTable("drill");
    // The environment the drill function reads (its last test); the test's own key store is the function's.
    Object.assign(process.env, {
      AMK_PKCS11_LIBRARY: t.libraryPath,
      AMK_PKCS11_TOKEN_LABEL: t.label,
      AMK_PKCS11_PIN_FILE: t.pinFile,
      AMK_EVENT_TABLE: table,
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      AMK_VAULT_DIR: vaultDir,
    });
    delete process.env.AMK_PKCS11_PIN_SECRET_ID;
    delete process.env.AMK_HSM_CLUSTER_ID;
    ks = await keyStoreFromEnv();
    events = new DynamoDbEventStore({ client: ddb.client, tableName: table });
    vault = await FileSecretVault.open(vaultDir);
    kits = new KitService({ keyStore: ks, events, vault, alerts, now: () => clock });
    dataKeys = new DataKeyService({ keyStore: ks, events });
  });
  after(async () => {
    await ks?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    if (vaultDir) await rm(vaultDir, { recursive: true, force: true });
  });

  let healthy: TestWorkspace;
  let missing: TestWorkspace;

  it("passes every check on a healthy workspace, records one DrillCompleted, raises nothing, changes nothing else", async () => {
    healthy = await newWorkspace("ok");
    const { ws, docs } = healthy;
    const streamBefore = (await events.readStream(workspaceStreamId(ws))).events;
    const docsBefore = await documentStreams(ws, docs);
    const keysBefore = await ks.listMasterKeys(ws);
    const kitVersionsBefore = await vault.listVersions(kitSecretName(ws));

    const r = await drills().runDrill(ws, { trigger: "on-demand", sampleSize: 3 });

    assert.equal(r.ok, true, JSON.stringify(r.checks, null, 2));
    assert.deepEqual(
      r.checks.map((c) => c.Name),
      [...DrillCheckNames],
    );
    for (const c of r.checks) {
      if (c.Name === "hsm-backups") {
        assert.equal(c.Status, "skipped");
        assert.equal(c.Detail, "local mode: no CloudHSM cluster");
      } else assert.equal(c.Status, "passed", `${c.Name}: ${c.Detail}`);
      assert.equal(c.Action, undefined);
    }
    const checks = byName(r);
    const mk1 = masterKeyId(ws, 1);
    const kcv = await ks.keyCheckValue(mk1);
    assert.match(
      checks["drill-slot"]!.Detail,
      new RegExp(`${mk1}: kit KCV ${kcv}, unwrapped in the HSM ${kcv}`),
    );
    assert.match(checks["kit-coverage"]!.Detail, new RegExp(mk1));
    assert.match(checks.canaries!.Detail, /^3 canaries decrypted/);
    assert.match(checks.sample!.Detail, /^3 sampled documents of 4 decrypted/);
    assert.match(checks.acknowledgements!.Detail, /alice: ok/);
    assert.ok(r.durationMs >= 0);

    // One DrillCompleted, with the drill's own id, and nothing else written anywhere.
    const streamAfter = (await events.readStream(workspaceStreamId(ws))).events;
    assert.equal(streamAfter.length, streamBefore.length + 1);
    assert.deepEqual(streamAfter.slice(0, -1), streamBefore);
    const recorded = streamAfter.at(-1)!;
    assert.equal(recorded.type, EventTypes.DrillCompleted);
    assert.equal(recorded.eventId, uuidFromName("DrillCompleted", ws, r.drillId));
    assert.deepEqual(recorded.data, {
      WorkspaceId: ws,
      DrillId: r.drillId,
      Ok: true,
      Trigger: "on-demand",
      Checks: r.checks,
      StartedAt: clock.toISOString(),
      DurationMs: r.durationMs,
    });
    assert.deepEqual(await documentStreams(ws, docs), docsBefore);
    assert.deepEqual(await ks.listMasterKeys(ws), keysBefore);
    assert.deepEqual(await vault.listVersions(kitSecretName(ws)), kitVersionsBefore);
    assert.equal(alertsOf(ws).length, 0);
    const last = (await readWorkspace(events, ws)).lastDrill;
    assert.deepEqual(
      { drillId: last?.drillId, ok: last?.ok, failed: last?.failed },
      {
        drillId: r.drillId,
        ok: true,
        failed: [],
      },
    );
    assertNoKeyMaterial(r);
    assertNoKeyMaterial(streamAfter);
  });

  it("fails kit-in-vault when the kit is missing from the vault, and skips the kit checks that need it", async () => {
    missing = await newWorkspace("nokit");
    const { ws } = missing;
    await rename(vault.secretDir(kitSecretName(ws)), join(vaultDir, "moved-away"));
    const r = await drills().runDrill(ws, { trigger: "schedule" });
    await assertFailedOn(ws, r, "kit-in-vault");
    const c = byName(r);
    assert.match(c["kit-in-vault"]!.Detail, /^SecretNotFoundError: /);
    assert.match(c["kit-in-vault"]!.Action!, /put back the version \S+ recorded by KitIssued v1/);
    assert.equal(c["kit-coverage"]!.Status, "skipped");
    assert.equal(c["drill-slot"]!.Status, "skipped");
    // The rest of the chain still works and says so.
    assert.equal(c.canaries!.Status, "passed");
    assert.equal(c.sample!.Status, "passed");
    assert.equal(c.acknowledgements!.Status, "passed");
    assert.equal((await drillHistory(events, ws, 1))[0]!.data.Trigger, "schedule");
  });

  it("fails kit-in-vault when the vault's kit was changed (altered bytes stored as a new version)", async () => {
    const { ws } = await newWorkspace("tamper");
    const stored = await vault.getSecret(kitSecretName(ws));
    const altered = Buffer.from(stored.value);
    const at = Math.floor(altered.length / 2);
    altered[at] = (altered[at] ?? 0) ^ 0x20;
    await vault.putSecret(kitSecretName(ws), altered);
    const r = await drills().runDrill(ws, { trigger: "schedule" });
    await assertFailedOn(ws, r, "kit-in-vault");
    assert.match(byName(r)["kit-in-vault"]!.Detail, /^Kit(Integrity|Header)Error: /);
    assert.equal(byName(r)["kit-coverage"]!.Status, "skipped");
    assert.equal(byName(r)["drill-slot"]!.Status, "skipped");
  });

  it("a rotation issues a kit that carries the new version at once: the drill passes kit-coverage", async () => {
    const { ws } = await newWorkspace("rotating");
    const rotations = new RotationService({
      keyStore: ks,
      events,
      kits,
      alerts,
      now: () => clock,
      writerSettleMs: 0,
    });
    const rotation = await rotations.startRotation(ws, "test: the kit follows the new version");
    assert.equal(rotation.toKeyId, masterKeyId(ws, 2));
    await ingest(ws, 2); // wrapped under mk/2
    const r = await drills().runDrill(ws, { trigger: "schedule" });
    assert.equal(byName(r)["kit-coverage"]!.Status, "passed", byName(r)["kit-coverage"]!.Detail);
    assert.equal(byName(r)["drill-slot"]!.Status, "passed", byName(r)["drill-slot"]!.Detail);
  });

  it("fails kit-coverage when records use a master key version the kit lacks (a version created without a new kit)", async () => {
    const { ws } = await newWorkspace("stale");
    // A version made active outside the rotation path (as a crashed older release could have left it): no new kit.
    const mk2 = masterKeyId(ws, 2);
    const info = await ks.createMasterKey(mk2);
    const state = await readWorkspace(events, ws);
    await events.appendToStream(
      workspaceStreamId(ws),
      [
        newEvent(EventTypes.MasterKeyCreated, {
          WorkspaceId: ws,
          KeyId: mk2,
          Kcv: info.kcv,
          Extractable: info.extractable,
        }),
      ],
      { expectedVersion: state.version },
    );
    await ingest(ws, 2); // wrapped under mk/2
    assert.deepEqual(await events.listKeyIdsInUse(ws), [masterKeyId(ws, 1), masterKeyId(ws, 2)]);

    const r = await drills().runDrill(ws, { trigger: "schedule" });
    await assertFailedOn(ws, r, "kit-coverage");
    const c = byName(r);
    assert.match(
      c["kit-coverage"]!.Detail,
      new RegExp(`lacks ${masterKeyId(ws, 2)} \\(active, used by wrap records\\)`),
    );
    assert.match(c["kit-coverage"]!.Detail, /would be unrecoverable/);
    assert.match(c["kit-coverage"]!.Action!, /Re-issue the recovery kit/);
    // What the kit does carry is still right, and every document still decrypts.
    assert.equal(c["drill-slot"]!.Status, "passed", c["drill-slot"]!.Detail);
    assert.equal(c.sample!.Status, "passed");
    assert.match(
      c.sample!.Detail,
      new RegExp(`${masterKeyId(ws, 2)}: \\d`),
      "every version in use is sampled",
    );
    assert.deepEqual(
      r.checks.filter((x) => x.Status === "failed").map((x) => x.Name),
      ["kit-coverage"],
    );
  });

  it("fails drill-slot when the HSM's key is not the kit's (destroyed and re-created under the same KeyId)", async () => {
    const { ws } = await newWorkspace("kcv");
    const mk1 = masterKeyId(ws, 1);
    const kitKcv = await ks.keyCheckValue(mk1);
    await ks.destroyMasterKey(mk1);
    const other = await ks.createMasterKey(mk1);
    assert.notEqual(other.kcv, kitKcv);
    const keysBefore = await ks.listMasterKeys(ws);

    const r = await drills().runDrill(ws, { trigger: "schedule" });
    await assertFailedOn(ws, r, "drill-slot");
    const slot = byName(r)["drill-slot"]!;
    assert.match(slot.Detail, /KCV mismatch/);
    assert.ok(
      slot.Detail.includes(
        `${mk1}: kit KCV ${kitKcv}, unwrapped in the HSM ${kitKcv}, live key ${other.kcv}`,
      ),
    );
    assert.match(slot.Action!, /Do NOT re-issue the kit/);
    // Nothing wrapped under the old key decrypts any more: the canaries and the sample say so too.
    assert.equal(byName(r).canaries!.Status, "failed");
    assert.equal(byName(r).sample!.Status, "failed");
    assert.deepEqual(await ks.listMasterKeys(ws), keysBefore, "the drill repairs nothing on its own");
  });

  it("fails canaries when a canary's current wrap record no longer unwraps", async () => {
    const { ws } = await newWorkspace("canary");
    const canary = (await readWorkspace(events, ws)).canaries[0]!;
    const stream = documentStreamId(ws, canary.documentId);
    const { events: docEvents, currentVersion } = await events.readStream(stream);
    const current = docEvents.filter((e) => e.type === EventTypes.DocumentEncryptionKeysAdded).at(-1)!;
    const data = current.data as DocumentEncryptionKeysAddedData;
    const broken: DocumentEncryptionKeysAddedData = {
      ...data,
      Artifacts: data.Artifacts.map((a) => ({ ...a, WrappedDek: randomBytes(48).toString("base64") })),
      OccurredOn: clock.toISOString(),
    };
    await events.appendToStream(
      stream,
      [newEvent(EventTypes.DocumentEncryptionKeysAdded, broken, { occurredAt: clock })],
      { expectedVersion: currentVersion! },
    );

    const r = await drills().runDrill(ws, { trigger: "schedule" });
    await assertFailedOn(ws, r, "canaries");
    assert.match(byName(r).canaries!.Detail, new RegExp(`^1 of 3 canaries .*${canary.documentId}`));
    assert.equal(byName(r).sample!.Status, "passed", "the sample is of ordinary documents");
    assert.equal(byName(r)["drill-slot"]!.Status, "passed");
  });

  it("fails acknowledgements for an administrator who never acknowledged and one whose acknowledgement is stale", async () => {
    const { ws } = await newWorkspace("ack", { admins: ["alice", "bob"], acknowledged: ["alice"] });
    tick(2 * 86_400);
    const r = await drills().runDrill(ws, { trigger: "schedule", ackMaxAgeDays: 1 });
    await assertFailedOn(ws, r, "acknowledgements");
    const c = byName(r).acknowledgements!;
    assert.match(c.Detail, /alice: stale \(last acknowledged v1 at /);
    assert.match(c.Detail, /bob: never-acknowledged/);
    assert.match(c.Action!, /acknowledges it with the CLI/);
    assert.deepEqual(
      r.checks.filter((x) => x.Status === "failed").map((x) => x.Name),
      ["acknowledgements"],
    );
  });

  it("records its result once when the workspace stream moves under it, and throws when it cannot record", async () => {
    const { ws } = healthy;
    let interfere = 1;
    /** Before the drill's append, someone else appends to the workspace stream (`interfere` times). */
    const racing = new Proxy(events, {
      get(target, prop, receiver) {
        if (prop === "appendToStream") {
          return async (...args: Parameters<EventStore["appendToStream"]>) => {
            if (interfere > 0 && args[0] === workspaceStreamId(ws)) {
              interfere -= 1;
              const head = (await target.readStream(workspaceStreamId(ws), { limit: 1 })).currentVersion!;
              await target.appendToStream(
                workspaceStreamId(ws),
                [newEvent("TestConcurrentWrite", { WorkspaceId: ws })],
                { expectedVersion: head },
              );
            }
            return target.appendToStream(...args);
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const before = (await drillHistory(events, ws, 100)).length;
    const r = await drills({ events: racing }).runDrill(ws, { trigger: "schedule" });
    assert.equal(r.ok, true);
    const history = await drillHistory(events, ws, 100);
    assert.equal(history.length, before + 1);
    assert.equal(history[0]!.data.DrillId, r.drillId);

    // Five lost races in a row: the result is not recorded, and the drill says so.
    interfere = 5;
    await assert.rejects(
      drills({ events: racing }).runDrill(ws, { trigger: "schedule" }),
      ConcurrentUpdateError,
    );
    assert.equal((await drillHistory(events, ws, 100)).length, before + 1);
    assert.equal(alertsOf(ws).length, 0, "a passing drill alerts nothing, even unrecorded");

    // A failing drill whose result cannot be written still alerts (once), then throws.
    const down = new Proxy(events, {
      get(target, prop, receiver) {
        if (prop === "appendToStream")
          return async () => {
            throw new EventStoreUnavailableError("simulated outage");
          };
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const alertsBefore = alertsOf(missing.ws).length;
    await assert.rejects(
      drills({ events: down }).runDrill(missing.ws, { trigger: "schedule" }),
      EventStoreUnavailableError,
    );
    const raised = alertsOf(missing.ws).slice(alertsBefore);
    assert.equal(raised.length, 1);
    assert.match(raised[0]!.message, /could not be recorded \(EventStoreUnavailableError\)/);
  });

  it("refuses bad input and an unprovisioned workspace, and writes nothing", async () => {
    await assert.rejects(
      drills().runDrill(healthy.ws, { trigger: "schedule", sampleSize: 0 }),
      InvalidInputError,
    );
    await assert.rejects(
      drills().runDrill(healthy.ws, { trigger: "nightly" as "schedule" }),
      InvalidInputError,
    );
    await assert.rejects(
      drills().runDrill("no-such-ws", { trigger: "schedule" }),
      WorkspaceNotProvisionedError,
    );
    assert.equal((await events.readStream(workspaceStreamId("no-such-ws"))).currentVersion, undefined);
    await assert.rejects(drillHistory(events, healthy.ws, 0), InvalidInputError);
  });

  it("runs as the drill function, configured through its environment, alerting to the local alert log", async () => {
    const alertLog = join(vaultDir, "alerts", "alerts.log");
    process.env.AMK_ALERT_LOG = alertLog;
    const { runDrillHandler } = await import("../../functions/drill/handler.js");
    const ok = await runDrillHandler({ workspaceId: healthy.ws, sampleSize: 2 });
    const bad = await runDrillHandler({ workspaceId: missing.ws, trigger: "schedule" });
    await assert.rejects(runDrillHandler({ workspaceId: healthy.ws, sampleSize: 5000 }), InvalidInputError);
    await assert.rejects(runDrillHandler({ workspaceId: "bad id!" }), InvalidInputError);
    assert.deepEqual(ok, { workspaceId: healthy.ws, drillId: ok.drillId, ok: true, failed: [] });
    const recorded = (await drillHistory(events, healthy.ws, 1))[0]!;
    assert.equal(recorded.data.DrillId, ok.drillId);
    assert.equal(recorded.data.Trigger, "on-demand");

    assert.deepEqual(bad, {
      workspaceId: missing.ws,
      drillId: bad.drillId,
      ok: false,
      failed: ["kit-in-vault"],
    });
    const badRecord = (await drillHistory(events, missing.ws, 1))[0]!;
    assert.equal(badRecord.data.DrillId, bad.drillId);
    assert.equal(badRecord.data.Trigger, "schedule");
    const logged = readAlertLog(alertLog);
    assert.equal(logged.length, 1);
    assert.equal(logged[0]!.code, "DRILL_FAILED");
    assert.equal(logged[0]!.workspaceId, missing.ws);
    assert.deepEqual(logged[0]!.context, { drillId: bad.drillId, failed: ["kit-in-vault"] });
    assertNoKeyMaterial([ok, bad, logged]);
    delete process.env.AMK_ALERT_LOG;
  });

  it("the drill function takes the CloudHSM backup listing from the workflow's ListHsmBackups step", async () => {
    process.env.AMK_HSM_CLUSTER_ID = "cluster-abcdefghijk";
    process.env.AMK_HSM_BACKUP_COPY_REGION = "eu-west-1";
    process.env.AWS_REGION = "eu-central-1";
    try {
      const { runDrillHandler } = await import("../../functions/drill/handler.js");
      const at = (hours: number) => new Date(Date.now() - hours * 3_600_000).toISOString();
      const listing = (primaryHours: number, copyHours: number) => ({
        clusterId: "cluster-abcdefghijk",
        backups: [
          {
            backupId: "backup-p",
            clusterId: "cluster-abcdefghijk",
            region: "eu-central-1",
            state: "READY",
            createdAt: at(primaryHours),
          },
          {
            backupId: "backup-c",
            clusterId: "cluster-abcdefghijk",
            region: "eu-west-1",
            state: "READY",
            createdAt: at(copyHours),
            sourceRegion: "eu-central-1",
            sourceBackupId: "backup-p",
          },
        ],
      });
      const fresh = await runDrillHandler({
        workspaceId: healthy.ws,
        sampleSize: 2,
        hsmBackups: listing(3, 5),
      });
      assert.deepEqual(fresh.failed, []);
      const stale = await runDrillHandler({
        workspaceId: healthy.ws,
        sampleSize: 2,
        hsmBackups: listing(40, 5),
      });
      assert.deepEqual(stale.failed, ["hsm-backups"]);
      const record = (await drillHistory(events, healthy.ws, 1))[0]!;
      assert.match(record.data.Checks.find((c) => c.Name === "hsm-backups")!.Detail, /backup-p/);
    } finally {
      delete process.env.AMK_HSM_CLUSTER_ID;
      delete process.env.AMK_HSM_BACKUP_COPY_REGION;
    }
  });

  it("checks the CloudHSM backups when a cluster is configured (a source listing backups)", async () => {
    const { ws } = healthy;
    const backup = (hoursOld: number, region: string) => ({
      backupId: `backup-${region}-${hoursOld}`,
      clusterId: "cluster-abcdefghijk",
      region,
      state: "READY",
      createdAt: new Date(clock.getTime() - hoursOld * 3_600_000),
    });
    const policy = { clusterId: "cluster-abcdefghijk", maxAgeHours: 26, copyRegion: "eu-west-1" };
    const fresh = await drills({
      hsmBackups: {
        source: { listBackups: async () => [backup(3, "eu-central-1"), backup(3, "eu-west-1")] },
        policy,
      },
    }).runDrill(ws, { trigger: "schedule" });
    assert.equal(byName(fresh)["hsm-backups"]!.Status, "passed", byName(fresh)["hsm-backups"]!.Detail);
    assert.equal(fresh.ok, true);

    const alertsBefore = alertsOf(ws).length;
    const stale = await drills({
      hsmBackups: { source: { listBackups: async () => [backup(40, "eu-central-1")] }, policy },
    }).runDrill(ws, { trigger: "schedule" });
    assert.equal(stale.ok, false);
    const c = byName(stale)["hsm-backups"]!;
    assert.equal(c.Status, "failed");
    assert.match(c.Detail, /backup-eu-central-1-40, 40\.0 h old/);
    assert.match(c.Detail, /no READY copy .* in eu-west-1/);
    assert.match(c.Action!, /copy-backup-to-region/);
    assert.deepEqual(
      alertsOf(ws)
        .slice(alertsBefore)
        .map((a) => a.code),
      ["DRILL_FAILED"],
    );
    assert.equal((await drillHistory(events, ws, 1))[0]!.data.DrillId, stale.drillId);
  });
});
