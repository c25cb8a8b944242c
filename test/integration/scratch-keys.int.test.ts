/**
 * The HSM side of the restoration test on the real engines (SoftHSM2, DynamoDB Local, the file vault): the kit's
 * master keys recovered through the drill slot into decrypt-only session objects ("scratch keys"), canaries and a
 * sample decrypted from a restored copy of the event store with those keys only (even with the live key destroyed),
 * each kind of damage in the restored records reported with its reason, nothing left in the HSM after close() or
 * after a failed open, and no master key or DEK in anything returned.
 */
import assert from "node:assert/strict";
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pkcs11js from "pkcs11js";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import { acquirePkcs11Module } from "../../core/adapters/pkcs11/library.js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import { MAX_EVENTS_PER_APPEND, type EventStore } from "../../core/eventstore/event-store.js";
import type { NewEvent, StoredEvent } from "../../core/eventstore/events.js";
import { documentStreamId, workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { KitIntegrityError } from "../../core/kit/errors.js";
import { readKit, type AdminSlot, type DrillSlot, type ParsedKit } from "../../core/kit/format.js";
import { buildKit, newKitSecret, wrapKeyOf } from "../../core/kit/kit.js";
import { KitService } from "../../core/kit/kit-service.js";
import { KeyNotFoundError } from "../../core/keystore/errors.js";
import { drillKeyId, masterKeyId, type KeyId } from "../../core/keystore/key-id.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { ScratchKeyRecoveryError, ScratchKeysUnavailableError } from "../../core/restoration/errors.js";
import {
  decryptDocumentsWithScratchKeys,
  openKitIntoScratchKeys,
  withScratchKeys,
  type RestoredDocumentResult,
} from "../../core/restoration/scratch-keys.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import type { SoftHsmToken } from "../../cli/local/softhsm.js";
import { seedDocuments } from "../support/seed.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

const ARTIFACTS = ["file", "metadata", "thumb"];

const soft = {
  kwp: (kek: Buffer, key: Buffer) => {
    const c = createCipheriv("id-aes256-wrap-pad", kek, Buffer.from("A65959A6", "hex"));
    return Buffer.concat([c.update(key), c.final()]);
  },
  unkwp: (kek: Buffer, blob: Uint8Array) => {
    const d = createDecipheriv("id-aes256-wrap-pad", kek, Buffer.from("A65959A6", "hex"));
    return Buffer.concat([d.update(blob), d.final()]);
  },
  kcv: (key: Buffer) => {
    const c = createCipheriv("aes-256-ecb", key, null);
    return c.update(Buffer.alloc(16)).subarray(0, 3).toString("hex").toUpperCase();
  },
};

interface SessionObjectView {
  readonly label: string;
  readonly token: boolean;
  readonly sensitive: boolean;
  readonly extractable: boolean;
  readonly uses: Record<"encrypt" | "decrypt" | "wrap" | "unwrap" | "sign" | "verify" | "derive", boolean>;
  /** The CKR name reading CKA_VALUE failed with (undefined would mean the value was readable). */
  readonly valueRead: string | undefined;
}

/** Every secret-key session object of the token, seen from a session of our own in this process (PKCS#11 directly). */
function sessionObjects(token: SoftHsmToken): SessionObjectView[] {
  const mod = acquirePkcs11Module(token.libraryPath);
  const p = mod.pkcs11;
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === token.label)!;
  const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  try {
    p.C_FindObjectsInit(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_TOKEN, value: false },
    ]);
    const handles = p.C_FindObjects(s, 1000);
    p.C_FindObjectsFinal(s);
    return handles.map((h) => {
      const attr = (type: number) => p.C_GetAttributeValue(s, h, [{ type }])[0]?.value as Buffer;
      const flag = (type: number) => attr(type)[0] === 1;
      let valueRead: string | undefined;
      try {
        attr(pkcs11js.CKA_VALUE);
      } catch (err) {
        valueRead = (err as Error).message;
      }
      return {
        label: attr(pkcs11js.CKA_LABEL).toString("utf8"),
        token: flag(pkcs11js.CKA_TOKEN),
        sensitive: flag(pkcs11js.CKA_SENSITIVE),
        extractable: flag(pkcs11js.CKA_EXTRACTABLE),
        uses: {
          encrypt: flag(pkcs11js.CKA_ENCRYPT),
          decrypt: flag(pkcs11js.CKA_DECRYPT),
          wrap: flag(pkcs11js.CKA_WRAP),
          unwrap: flag(pkcs11js.CKA_UNWRAP),
          sign: flag(pkcs11js.CKA_SIGN),
          verify: flag(pkcs11js.CKA_VERIFY),
          derive: flag(pkcs11js.CKA_DERIVE),
        },
        valueRead,
      };
    });
  } finally {
    p.C_CloseSession(s);
    mod.release();
  }
}

/** Scratch keys, drill-slot session keys and KCV probes: none may outlive the operation that made them. */
const restorationObjects = (token: SoftHsmToken) =>
  sessionObjects(token).filter((o) => /^(scratch|session|probe)\//.test(o.label));

function flipBase64(value: string, index: number): string {
  const b = Buffer.from(value, "base64");
  b[index] = (b[index] ?? 0) ^ 0x01;
  return b.toString("base64");
}

describe("restoration scratch keys on SoftHSM2, DynamoDB Local and the file vault", () => {
  let hsm: TestHsm;
  let token: SoftHsmToken;
  let ddb: TestDynamoDb;
  let vaultDir: string;
  let ks: Pkcs11KeyStore;
  let live: EventStore;
  let kits: KitService;
  let dataKeys: DataKeyService;
  const clock = new Date("2026-12-05T09:00:00.000Z");
  const ws = `rst-${randomUUID().slice(0, 8)}`;
  const mk1 = masterKeyId(ws, 1);
  const mk2 = masterKeyId(ws, 2);
  /** Documents under mk/1 (three artifacts each); documents under mk/2, which the kit does not carry; a deleted one. */
  let docs: string[];
  let v2docs: string[];
  let deletedDoc: string;
  let canaryIds: string[];
  let kit: ParsedKit;
  /** base64 and hex of every DEK handed out, and of the master key: none may appear in anything returned. */
  const secrets: string[] = [];

  /** Copies streams of the live store into a fresh table, as restoring a backup would; `edit` may change or drop events. */
  async function restore(
    edit: (e: StoredEvent) => NewEvent | undefined = (e) => e,
    dropStreams: readonly string[] = [],
  ): Promise<EventStore> {
    const restored = new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable("scratch") });
    const streams = [
      workspaceStreamId(ws),
      ...[...canaryIds, ...docs, ...v2docs].map((d) => documentStreamId(ws, d)),
    ].filter((s) => !dropStreams.includes(s));
    for (const streamId of streams) {
      const { events } = await live.readStream(streamId);
      const copies = events.flatMap((e) => {
        const c = edit(e);
        return c
          ? [
              {
                eventId: c.eventId,
                type: c.type,
                schemaVersion: c.schemaVersion,
                occurredAt: c.occurredAt,
                data: c.data,
              },
            ]
          : [];
      });
      let version = 0;
      for (let i = 0; i < copies.length; i += MAX_EVENTS_PER_APPEND) {
        const chunk = copies.slice(i, i + MAX_EVENTS_PER_APPEND);
        const r = await restored.appendToStream(streamId, chunk, {
          expectedVersion: version === 0 ? "no_stream" : version,
        });
        version = r.nextExpectedVersion;
      }
    }
    return restored;
  }

  before(async () => {
    hsm = await createTestHsm(["restore"]);
    token = hsm.tokens[0]!;
    ddb = await useTestDynamoDb();
    vaultDir = await mkdtemp(join(tmpdir(), "amk-restore-vault-"));
    ks = await Pkcs11KeyStore.open(hsm.options(token));
    live = new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable("live") });
    const vault = await FileSecretVault.open(vaultDir);
    kits = new KitService({
      keyStore: ks,
      events: live,
      vault,
      alerts: new RecordingAlerts(),
      now: () => clock,
    });
    dataKeys = new DataKeyService({ keyStore: ks, events: live });

    await provisionWorkspaceWithKit(
      { keyStore: ks, events: live, kits, dataKeys, now: () => clock },
      {
        workspaceId: ws,
        administrators: [
          { adminId: "alice", passphrase: "orbit velvet canyon pickle", factor: { type: "totp" } },
        ],
      },
    );
    canaryIds = (await readWorkspace(live, ws)).canaries.map((c) => c.documentId);
    docs = [];
    for (let i = 0; i < 7; i++) {
      const documentId = randomUUID();
      const r = await dataKeys.generateDataKeys({
        workspaceId: ws,
        documentId,
        artifacts: ARTIFACTS,
        idempotencyKey: "ingest",
      });
      for (const k of r.keys) {
        secrets.push(k.plaintext.toString("base64"), k.plaintext.toString("hex"));
        k.plaintext.fill(0);
      }
      docs.push(documentId);
    }
    deletedDoc = docs.at(-1)!;
    await dataKeys.recordDocumentDeleted({ workspaceId: ws, documentId: deletedDoc, messageId: "gone" });
    // A version the kit does not carry (as if the backup were newer than the kit): wraps two documents.
    await ks.createMasterKey(mk2);
    v2docs = [
      ...(await seedDocuments({ keyStore: ks, events: live, workspaceId: ws, keyId: mk2, count: 2 })).keys(),
    ];
    kit = await kits.currentKit(ws);
  });
  after(async () => {
    await ks?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    if (vaultDir) await rm(vaultDir, { recursive: true, force: true });
  });

  it("recovers the kit's master keys into decrypt-only session objects; the drill-slot keys are gone at once", async () => {
    const restored = await restore();
    const recorded = (await readWorkspace(restored, ws)).keys.find((k) => k.keyId === mk1);
    const listedBefore = await ks.listMasterKeys(ws);
    assert.deepEqual(restorationObjects(token), []);

    const scratch = await openKitIntoScratchKeys(ks, kit);
    try {
      assert.equal(scratch.workspaceId, ws);
      assert.equal(scratch.kitVersion, kit.header.kitVersion);
      assert.deepEqual([...scratch.keys.keys()], [mk1]);
      assert.deepEqual([...scratch.kcvs], [[mk1, await ks.keyCheckValue(mk1)]]);
      assert.equal(scratch.kcvs.get(mk1), recorded?.kcv, "the KCV recorded in the restored backup");

      const objects = restorationObjects(token);
      assert.equal(objects.length, 1, JSON.stringify(objects.map((o) => o.label)));
      const [o] = objects;
      assert.equal(o!.label, scratch.keys.get(mk1)!.id);
      assert.equal(o!.token, false);
      assert.equal(o!.sensitive, true);
      assert.equal(o!.extractable, false);
      assert.deepEqual(o!.uses, {
        encrypt: false,
        decrypt: true,
        wrap: false,
        unwrap: false,
        sign: false,
        verify: false,
        derive: false,
      });
      assert.match(o!.valueRead ?? "(readable!)", /CKR_ATTRIBUTE_SENSITIVE/);
      // Not a master key version of the token.
      assert.deepEqual(await ks.listMasterKeys(ws), listedBefore);
      assert.equal(await ks.findMasterKey(masterKeyId(ws, 3)), undefined);
    } finally {
      await scratch.close();
    }
    assert.deepEqual(restorationObjects(token), []);
  });

  it("decrypts the canaries and a sample from the restored table with the scratch keys only, even without the live key", async () => {
    // The master key's value, for the leak check only: exported under a transport key we know.
    const material = randomBytes(32);
    const t = await ks.importTransportKey(material);
    const mk = soft.unkwp(material, await ks.exportMasterKey(mk1, t));
    await ks.destroyTransportKey(t);
    secrets.push(mk.toString("base64"), mk.toString("hex"));

    const restored = await restore();
    const calls: string[] = [];
    const watched = new Proxy(ks as KeyStore, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== "function") return v;
        return (...args: unknown[]) => {
          calls.push(String(prop));
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const run = async (
      documents: readonly string[] | "canaries",
      keys: ReadonlyMap<string, { id: string }>,
    ) =>
      decryptDocumentsWithScratchKeys({
        keyStore: watched,
        events: restored,
        workspaceId: ws,
        keys,
        documents,
      });

    const outcome = await withScratchKeys(watched, kit, async (scratch) => {
      const canaries = await run("canaries", scratch.keys);
      const sample = await run([...docs.slice(0, 4), ...v2docs, deletedDoc], scratch.keys);
      // The live master key is destroyed: the backup and the kit alone still decrypt everything.
      await ks.destroyMasterKey(mk1);
      const again = await run(docs.slice(0, 4), scratch.keys);
      const canariesAgain = await run("canaries", scratch.keys);
      return { canaries, sample, again, canariesAgain, kcvs: [...scratch.kcvs] };
    });

    assert.equal(outcome.canaries.length, 3);
    for (const c of [...outcome.canaries, ...outcome.canariesAgain]) {
      assert.deepEqual(c, { documentId: c.documentId, kind: "canary", ok: true, keyId: mk1, artifacts: 1 });
    }
    assert.deepEqual(
      outcome.canaries.map((c) => c.documentId),
      canaryIds,
    );
    const byId = new Map(outcome.sample.map((r) => [r.documentId, r]));
    for (const d of [...docs.slice(0, 4)]) {
      assert.deepEqual(byId.get(d), { documentId: d, kind: "document", ok: true, keyId: mk1, artifacts: 3 });
    }
    for (const d of v2docs) {
      const r = byId.get(d)!;
      assert.equal(r.ok, false);
      assert.equal(r.reason, "key-not-covered");
      assert.equal(r.keyId, mk2);
      assert.match(r.problem!, /^key version not covered by the kit: /);
      assert.equal(r.artifacts, 0);
    }
    assert.equal(byId.get(deletedDoc)!.reason, "document-deleted");
    assert.ok(outcome.again.every((r) => r.ok && r.artifacts === 3));

    // Only the drill slot and scratch keys were used: no operation on a token master key.
    assert.deepEqual(
      new Set(calls),
      new Set([
        "unwrapWithDrillKey",
        "decryptWithSessionKey",
        "unwrapMasterKeyToSession",
        "destroyTransportKey",
        "unwrapDataKeyWithSessionKey",
      ]),
    );
    // What comes back is KCVs and results: no master key, no DEK.
    const text = JSON.stringify(outcome);
    for (const s of secrets) assert.equal(text.includes(s), false, "key material in a result");
    assert.deepEqual(restorationObjects(token), []);
  });

  it("reports each kind of damage in the restored records with its reason", async () => {
    const canaries = (await readWorkspace(live, ws)).canaries;
    const damaged = await restore(
      (e) => {
        const doc = e.data.AggregateId;
        if (e.type === EventTypes.DocumentEncryptionKeysAdded && doc === docs[1]) {
          // A changed byte of a wrapped DEK.
          const arts = e.data.Artifacts as { WrappedDek: string }[];
          return {
            ...e,
            data: {
              ...e.data,
              Artifacts: arts.map((a, i) =>
                i === 1 ? { ...a, WrappedDek: flipBase64(a.WrappedDek, 7) } : a,
              ),
            },
          };
        }
        if (e.type === EventTypes.DocumentEncryptionKeysAdded && doc === docs[2]) {
          // A nonce that is not even base64.
          const arts = e.data.Artifacts as { WrapNonce: string }[];
          return { ...e, data: { ...e.data, Artifacts: arts.map((a) => ({ ...a, WrapNonce: "%%%" })) } };
        }
        if (e.type === EventTypes.CanaryDocumentCreated && e.data.DocumentId === canaries[1]!.documentId) {
          return { ...e, data: { ...e.data, ContentSha256: "0".repeat(64) } };
        }
        if (e.type === EventTypes.CanaryDocumentCreated && e.data.DocumentId === canaries[2]!.documentId) {
          return { ...e, data: { ...e.data, Ciphertext: flipBase64(e.data.Ciphertext as string, 30) } };
        }
        return e;
      },
      [documentStreamId(ws, docs[3]!)],
    );
    const scratch = await openKitIntoScratchKeys(ks, kit);
    let canaryResults: RestoredDocumentResult[];
    let docResults: RestoredDocumentResult[];
    try {
      const common = { keyStore: ks, events: damaged, workspaceId: ws, keys: scratch.keys, concurrency: 3 };
      canaryResults = await decryptDocumentsWithScratchKeys({ ...common, documents: "canaries" });
      docResults = await decryptDocumentsWithScratchKeys({ ...common, documents: docs.slice(0, 4) });
    } finally {
      await scratch.close();
    }
    assert.deepEqual(
      canaryResults.map((r) => [r.ok, r.reason]),
      [
        [true, undefined],
        [false, "content-mismatch"],
        [false, "content-mismatch"],
      ],
    );
    assert.match(canaryResults[1]!.problem!, /hash differs/);
    assert.match(canaryResults[2]!.problem!, /MAC mismatch/);
    assert.deepEqual(
      docResults.map((r) => [r.documentId, r.ok, r.reason, r.artifacts]),
      [
        [docs[0], true, undefined, 3],
        [docs[1], false, "wrong-key-or-tampered", 1],
        [docs[2], false, "wrap-record-corrupt", 0],
        [docs[3], false, "wrap-record-missing", 0],
      ],
    );
    assert.match(docResults[1]!.problem!, /^artifact metadata: /);
    assert.deepEqual(restorationObjects(token), []);
  });

  it("after close() no scratch object remains and a scratch key can no longer be used", async () => {
    const restored = await restore();
    const scratch = await openKitIntoScratchKeys(ks, kit);
    const ref = scratch.keys.get(mk1)!;
    assert.equal(restorationObjects(token).length, 1);
    await scratch.close();
    assert.deepEqual(restorationObjects(token), []);
    await scratch.close(); // idempotent
    const record = (await restored.readStream(documentStreamId(ws, docs[0]!))).events.find(
      (e) => e.type === EventTypes.DocumentEncryptionKeysAdded,
    )!;
    const entry = (record.data.Artifacts as { WrappedDek: string; WrapNonce: string }[])[0]!;
    await assert.rejects(
      ks.unwrapDataKeyWithSessionKey(
        ref,
        {
          nonce: Buffer.from(entry.WrapNonce, "base64"),
          ciphertext: Buffer.from(entry.WrappedDek, "base64"),
        },
        Buffer.from("any"),
      ),
      KeyNotFoundError,
    );
    await assert.rejects(
      decryptDocumentsWithScratchKeys({
        keyStore: ks,
        events: restored,
        workspaceId: ws,
        keys: scratch.keys,
        documents: [docs[0]!],
      }),
      ScratchKeysUnavailableError,
    );
    // withScratchKeys closes on the way out, also when the work fails.
    await assert.rejects(
      withScratchKeys(ks, kit, async () => {
        assert.equal(restorationObjects(token).length, 1);
        throw new Error("the restoration check failed");
      }),
      /the restoration check failed/,
    );
    assert.deepEqual(restorationObjects(token), []);
  });

  it("a kit that does not open, or whose key does not match its KCV, leaves nothing behind", async () => {
    // The body changed: its authentication fails inside the HSM.
    const flipped = Buffer.from(kit.bodyCiphertext);
    flipped[3] = (flipped[3] ?? 0) ^ 0x01;
    await assert.rejects(
      openKitIntoScratchKeys(ks, { ...kit, bodyCiphertext: flipped }),
      (err: unknown) => err instanceof KitIntegrityError && err.check === "body",
    );
    assert.deepEqual(restorationObjects(token), []);

    // A well-formed kit whose second master key does not unwrap to its recorded KCV: the first one is destroyed too.
    const admin = kit.slots.find((s): s is AdminSlot => s.type === "admin")!;
    const drill = kit.slots.find((s): s is DrillSlot => s.type === "drill")!;
    assert.equal(drill.drillKeyId, drillKeyId(ws, 1));
    const drillInfo = (await ks.getDrillKey(drillKeyId(ws, 1)))!;
    const build = (
      masterKeys: { keyId: KeyId; kcv: string; state: "active" | "decrypt-only"; wrapped: string }[],
      drillId = drillKeyId(ws, 1),
    ) => {
      const kitSecret = newKitSecret();
      const kWrap = wrapKeyOf(kitSecret);
      const bytes = buildKit({
        workspaceId: ws,
        kitId: randomUUID(),
        kitVersion: 9,
        issuedAt: clock.toISOString(),
        eventStorePosition: { streamId: `ws-${ws}`, version: 1 },
        admins: [
          {
            adminId: admin.adminId,
            recipient: Buffer.from(admin.recipient, "base64"),
            identity: admin.identity,
          },
        ],
        drill: { drillKeyId: drillId, publicKeySpki: drillInfo.publicKeySpki, oaepHash: "SHA-1" },
        masterKeys: masterKeys.map((m) => ({
          ...m,
          wrapped: soft.kwp(kWrap, Buffer.from(m.wrapped, "hex")).toString("base64"),
        })),
        kitSecret,
      });
      kitSecret.fill(0);
      kWrap.fill(0);
      return readKit(bytes);
    };
    const a = randomBytes(32);
    const b = randomBytes(32);
    const forged = build([
      { keyId: mk1, kcv: soft.kcv(a), state: "decrypt-only", wrapped: a.toString("hex") },
      { keyId: mk2, kcv: soft.kcv(a), state: "active", wrapped: b.toString("hex") },
    ]);
    await assert.rejects(
      openKitIntoScratchKeys(ks, forged),
      (err: unknown) =>
        err instanceof ScratchKeyRecoveryError &&
        err.context.keyId === mk2 &&
        !/[0-9a-f]{64}/.test(err.message),
    );
    assert.deepEqual(restorationObjects(token), []);
    // The same kit with the right KCVs opens (a check that the failure above was the KCV, not the construction).
    const good = build([
      { keyId: mk1, kcv: soft.kcv(a), state: "decrypt-only", wrapped: a.toString("hex") },
      { keyId: mk2, kcv: soft.kcv(b), state: "active", wrapped: b.toString("hex") },
    ]);
    await withScratchKeys(ks, good, async (s) => {
      assert.deepEqual(
        [...s.kcvs],
        [
          [mk1, soft.kcv(a)],
          [mk2, soft.kcv(b)],
        ],
      );
      assert.equal(restorationObjects(token).length, 2);
    });
    // A drill slot naming a drill key this HSM does not hold.
    const elsewhere = build(
      [{ keyId: mk1, kcv: soft.kcv(a), state: "active", wrapped: a.toString("hex") }],
      drillKeyId(ws, 7),
    );
    await assert.rejects(openKitIntoScratchKeys(ks, elsewhere), KeyNotFoundError);
    assert.deepEqual(restorationObjects(token), []);
  });

  it("refuses bad input with InvalidInputError before touching the HSM or the store", async () => {
    const restored = await restore();
    const base = { keyStore: ks, events: restored, workspaceId: ws, keys: new Map(), documents: [docs[0]!] };
    await assert.rejects(
      decryptDocumentsWithScratchKeys({ ...base, workspaceId: "bad/ws" }),
      InvalidInputError,
    );
    await assert.rejects(
      decryptDocumentsWithScratchKeys({ ...base, documents: ["a\nb"] }),
      InvalidInputError,
    );
    await assert.rejects(decryptDocumentsWithScratchKeys({ ...base, concurrency: 0 }), InvalidInputError);
    await assert.rejects(
      decryptDocumentsWithScratchKeys({ ...base, documents: "all" as unknown as "canaries" }),
      InvalidInputError,
    );
    // With no scratch key at all, every document reports its version as not covered.
    const [r] = await decryptDocumentsWithScratchKeys(base);
    assert.equal(r!.reason, "key-not-covered");
  });
});
