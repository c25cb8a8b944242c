/**
 * Rotation and the re-wrap engine on the real engines (SoftHSM2, DynamoDB Local, the file vault): a new active
 * version at once, re-wrap by census shard with concurrent ingestion, crashes at random points resumed to the same
 * end state, every DEK unchanged, a census of zero before anything is retired, the kit re-issued, destruction only
 * after a waiting period.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { newEvent } from "../../core/eventstore/events.js";
import { documentStreamId } from "../../core/eventstore/stream-id.js";
import { KitService } from "../../core/kit/kit-service.js";
import { associatedData, encodeWrapped, WrapFormats } from "../../core/datakeys/wrap-format.js";
import { readKit } from "../../core/kit/format.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import { CensusNotEmptyError, RotationError, RotationService } from "../../core/rotation/rotation-service.js";
import { softwareHmacToken } from "../../core/factors/hmac-token.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

const ALL = ["file", "metadata", "thumb", "preview", "archive"];
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** An event store that fails the n-th append (a crash between the HSM re-wrap and the write). */
class CrashingEvents {
  appends = 0;
  crashAt = -1;
  constructor(private readonly inner: EventStore) {}
  wrap(): EventStore {
    return new Proxy(this.inner, {
      get: (target, prop, receiver) => {
        if (prop === "appendToStream" || prop === "appendToStreams") {
          const real = (target[prop] as (...a: unknown[]) => Promise<unknown>).bind(target);
          return async (...args: unknown[]) => {
            this.appends += 1;
            if (this.appends === this.crashAt) throw new Error("simulated crash before the append");
            return real(...args);
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }
}

describe("rotation and re-wrap", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let vaultDir: string;
  let ks: Pkcs11KeyStore;
  let events: DynamoDbEventStore;
  let dataKeys: DataKeyService;
  let rotations: RotationService;
  let crashing: CrashingEvents;
  let clock = new Date("2026-12-01T00:00:00.000Z");
  const alerts = new RecordingAlerts();
  const ws = `rot-${randomUUID().slice(0, 8)}`;
  const dekHashes = new Map<string, Record<string, string>>();

  async function ingest(n: number, concurrency = 8): Promise<string[]> {
    const docs = Array.from({ length: n }, () => randomUUID());
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let i = next++; i < docs.length; i = next++) {
          const r = await dataKeys.generateDataKeys({
            workspaceId: ws,
            documentId: docs[i]!,
            artifacts: ALL,
            idempotencyKey: "ingest",
          });
          dekHashes.set(docs[i]!, Object.fromEntries(r.keys.map((k) => [k.artifact, sha(k.plaintext)])));
          for (const k of r.keys) k.plaintext.fill(0);
        }
      }),
    );
    return docs;
  }

  /** Runs the re-wrap to a census of zero, shard items in parallel: what the workflow's loop does. */
  async function rewrapAll(service = rotations, maxDocuments?: number): Promise<number> {
    let moved = 0;
    for (let round = 0; round < 1000; round++) {
      const plan = await service.planRewrap(ws);
      if (plan.items.length === 0) return moved;
      const results = await Promise.all(
        plan.items.map((it) =>
          service.rewrapShard({ workspaceId: ws, ...it, ...(maxDocuments ? { maxDocuments } : {}) }),
        ),
      );
      moved += results.reduce((a, r) => a + r.moved, 0);
    }
    throw new Error("the re-wrap did not converge");
  }

  before(async () => {
    hsm = await createTestHsm(["rotation"]);
    ddb = await useTestDynamoDb();
    vaultDir = await mkdtemp(join(tmpdir(), "amk-rot-vault-"));
    ks = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!, { poolSize: 6 }));
    events = new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable("rotation") });
    crashing = new CrashingEvents(events);
    const vault = await FileSecretVault.open(vaultDir);
    const kits = new KitService({ keyStore: ks, events, vault, alerts, now: () => clock });
    dataKeys = new DataKeyService({ keyStore: ks, events });
    rotations = new RotationService({
      keyStore: ks,
      events: crashing.wrap(),
      kits,
      alerts,
      now: () => clock,
      writerSettleMs: 0,
    });
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
  });
  after(async () => {
    await ks?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    if (vaultDir) await rm(vaultDir, { recursive: true, force: true });
  });

  it("rotates: the new version is active once StartRotation returns (a kit carries it); the old one decrypt-only; starting again resumes", async () => {
    await ingest(300);
    const r = await rotations.startRotation(ws, "test");
    assert.equal(r.toKeyId, masterKeyId(ws, 2));
    assert.deepEqual(r.fromKeyIds, [masterKeyId(ws, 1)]);
    const state = await readWorkspace(events, ws);
    assert.equal(state.activeKeyId, masterKeyId(ws, 2));
    assert.deepEqual(
      state.keys.map((k) => [k.keyId, k.state]),
      [
        [masterKeyId(ws, 1), "decrypt-only"],
        [masterKeyId(ws, 2), "active"],
      ],
    );
    const again = await rotations.startRotation(ws);
    assert.equal(again.rotationId, r.rotationId, "a running rotation is resumed, not restarted");
    const fresh = await dataKeys.generateDataKeys({
      workspaceId: ws,
      documentId: randomUUID(),
      artifacts: ["file"],
      idempotencyKey: "x",
    });
    assert.equal(fresh.keyId, masterKeyId(ws, 2), "new DEKs use the new version at once");
    await assert.rejects(rotations.completeRotation(ws), CensusNotEmptyError);
  });

  it("survives crashes at 10 random points and ingestion racing it, and ends with every DEK unchanged", async () => {
    // A stale writer: an ingestion that read the workspace before the rotation and writes on the old version now.
    const staleWrite = async (): Promise<void> => {
      const doc = randomUUID();
      const v1 = masterKeyId(ws, 1);
      const dek = await ks.generateDataKey();
      const aad = associatedData(WrapFormats.AmkGcmV1, {
        workspaceId: ws,
        documentId: doc,
        artifact: "file",
        keyId: v1,
      });
      const w = await ks.wrapDataKey(v1, dek, aad);
      const data = {
        AggregateId: doc,
        WorkspaceId: ws,
        KeyId: v1,
        WrapFormat: WrapFormats.AmkGcmV1,
        Artifacts: [
          { Artifact: "file", ...encodeWrapped(w), Algorithm: "AES-256-CBC-HMACSHA256", Version: "2" },
        ],
        OccurredOn: clock.toISOString(),
      };
      await events.appendToStream(
        documentStreamId(ws, doc),
        [newEvent(EventTypes.DocumentEncryptionKeysAdded, data)],
        {
          expectedVersion: "no_stream",
        },
      );
      dekHashes.set(doc, { file: sha(dek) });
      dek.fill(0);
    };
    const ingestion = ingest(120, 8); // 8 concurrent writers during the re-wrap
    let crashes = 0;
    for (let point = 0; point < 10; point++) {
      // A random budget stops the job part-way (a Lambda timeout); a crash fails one append (a process death).
      crashing.appends = 0;
      // Within the first 10 appends: the first point alone makes more than 20 (over 400 documents, at most 20 per
      // shard call), so at least that one crashes. (Up to 30, a fast first point could finish with no crash at all.)
      crashing.crashAt = 1 + Math.floor(Math.random() * 10);
      try {
        await rewrapAll(rotations, 1 + Math.floor(Math.random() * 20));
      } catch (err) {
        assert.match((err as Error).message, /simulated crash/);
        crashes += 1;
      }
      if (point === 3) for (let i = 0; i < 5; i++) await staleWrite();
    }
    assert.ok(crashes > 0, "at least one crash happened");
    crashing.crashAt = -1;
    await ingestion;
    await rewrapAll();
    const census = await rotations.census(ws, { sample: 50 });
    assert.equal(census.remaining, 0, JSON.stringify(census));
    assert.ok(census.sampled > 0);
    assert.equal(await events.countDocumentsByKeyId(ws, masterKeyId(ws, 1)), 0);

    // Every document: exactly the DEKs first handed out, now under version 2.
    for (const [doc, hashes] of dekHashes) {
      const r = await dataKeys.decryptDataKeys({
        workspaceId: ws,
        documentId: doc,
        artifacts: Object.keys(hashes),
      });
      assert.equal(r.keyId, masterKeyId(ws, 2), doc);
      assert.deepEqual(Object.fromEntries(r.keys.map((k) => [k.artifact, sha(k.plaintext)])), hashes, doc);
    }
    // Running a shard again changes nothing.
    const plan = await rotations.planRewrap(ws);
    assert.equal(plan.items.length, 0);
    const again = await rotations.rewrapShard({ workspaceId: ws, fromKeyId: masterKeyId(ws, 1), shard: 0 });
    assert.deepEqual([again.moved, again.remaining], [0, false]);
  });

  it("completes only after a census of zero: old version retired, kit re-issued with the live version only", async () => {
    const done = await rotations.completeRotation(ws);
    assert.deepEqual(done.retired, [masterKeyId(ws, 1)]);
    const state = await readWorkspace(events, ws);
    assert.equal(state.rotation?.status, "completed");
    assert.deepEqual(
      state.keys.map((k) => k.state),
      ["retired", "active"],
    );
    assert.equal(state.kits.at(-1)?.kitVersion, done.kitVersion);
    assert.deepEqual(
      state.kits.at(-1)?.masterKeys.map((m) => m.keyId),
      [masterKeyId(ws, 2)],
    );
    // The kit issued when the rotation started carried both versions: no moment without a kit for the new one.
    assert.deepEqual(
      state.kits.at(-2)?.masterKeys.map((m) => m.keyId),
      [masterKeyId(ws, 1), masterKeyId(ws, 2)],
    );
    await assert.rejects(rotations.planRewrap(ws), RotationError);
  });

  it("destroys a retired version only as a separate step after its waiting period", async () => {
    const v1 = masterKeyId(ws, 1);
    await assert.rejects(rotations.destroyRetiredKey(ws, v1), RotationError, "not scheduled");
    const notBefore = await rotations.scheduleDestruction(ws, v1, { waitDays: 30 });
    await assert.rejects(rotations.destroyRetiredKey(ws, v1), /may not be destroyed before/);
    assert.ok(await ks.findMasterKey(v1));
    clock = new Date(Date.parse(notBefore) + 1000);
    await rotations.destroyRetiredKey(ws, v1);
    assert.equal(await ks.findMasterKey(v1), undefined);
    assert.equal((await readWorkspace(events, ws)).keys[0]!.state, "destroyed");
    await assert.rejects(
      rotations.scheduleDestruction(ws, masterKeyId(ws, 2)),
      RotationError,
      "the active version cannot be destroyed",
    );
  });

  it("a second rotation re-wraps from the active version again; the kit covers only live versions", async () => {
    const r = await rotations.startRotation(ws, "second");
    assert.equal(r.toKeyId, masterKeyId(ws, 3));
    assert.deepEqual(r.fromKeyIds, [masterKeyId(ws, 2)]);
    await rewrapAll();
    await rotations.completeRotation(ws);
    const state = await readWorkspace(events, ws);
    const vault = await FileSecretVault.open(vaultDir);
    const kit = readKit((await vault.getSecret(`amk/${ws}/kit`)).value);
    assert.equal(kit.header.kitVersion, state.kits.at(-1)?.kitVersion);
    assert.deepEqual(
      state.kits.at(-1)?.masterKeys.map((m) => m.keyId),
      [masterKeyId(ws, 3)],
    );
    // Stream sanity: one more record per document, the same event id if re-run (idempotent by construction).
    const any = [...dekHashes.keys()][0]!;
    const { events: stream } = await events.readStream(documentStreamId(ws, any));
    assert.ok(stream.filter((e) => e.type === EventTypes.DocumentEncryptionKeysAdded).length >= 3);
  });
});
