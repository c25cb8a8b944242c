/**
 * The re-wrap job killed with SIGKILL at 10 random moments (a process crash: no cleanup, no finally) and resumed by a
 * fresh process each time: it ends with every document on the new version exactly once (one re-wrap record per
 * document) and every DEK unchanged.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
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
import { documentStreamId } from "../../core/eventstore/stream-id.js";
import { softwareHmacToken } from "../../core/factors/hmac-token.js";
import { KitService } from "../../core/kit/kit-service.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import { RotationService } from "../../core/rotation/rotation-service.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("re-wrap job killed by SIGKILL and resumed", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let vaultDir: string;
  let ks: Pkcs11KeyStore;
  let events: DynamoDbEventStore;
  let table: string;
  const ws = `crash-${randomUUID().slice(0, 8)}`;
  const hashes = new Map<string, string>();

  before(async () => {
    hsm = await createTestHsm(["crash"]);
    ddb = await useTestDynamoDb();
    vaultDir = await mkdtemp(join(tmpdir(), "amk-crash-vault-"));
    ks = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!));
    table = await ddb.newTable("crash");
    events = new DynamoDbEventStore({ client: ddb.client, tableName: table });
    const alerts = new RecordingAlerts();
    const kits = new KitService({
      keyStore: ks,
      events,
      vault: await FileSecretVault.open(vaultDir),
      alerts,
    });
    await provisionWorkspaceWithKit(
      { keyStore: ks, events, kits },
      {
        workspaceId: ws,
        administrators: [
          {
            adminId: "ops",
            passphrase: "quartz lagoon ember falcon",
            factor: { type: "hmac-sha1", token: softwareHmacToken(randomBytes(20)) },
          },
        ],
      },
    );
    const dataKeys = new DataKeyService({ keyStore: ks, events });
    const docs = Array.from({ length: 240 }, () => randomUUID());
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < docs.length; i = next++) {
          const r = await dataKeys.generateDataKeys({
            workspaceId: ws,
            documentId: docs[i]!,
            artifacts: ["file", "thumb"],
            idempotencyKey: "k",
          });
          hashes.set(docs[i]!, r.keys.map((k) => sha(k.plaintext)).join(","));
          for (const k of r.keys) k.plaintext.fill(0);
        }
      }),
    );
    await new RotationService({ keyStore: ks, events, kits, alerts, writerSettleMs: 0 }).startRotation(ws);
  });
  after(async () => {
    await ks?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    if (vaultDir) await rm(vaultDir, { recursive: true, force: true });
  });

  function worker(
    killAfterMs?: number,
  ): Promise<{ code: number | null; signal: string | null; out: string }> {
    const t = hsm.tokens[0]!;
    const child = spawn(process.execPath, ["--import", "tsx", "test/support/rewrap-worker.ts"], {
      env: {
        ...process.env,
        WORKER_WORKSPACE: ws,
        AMK_PKCS11_LIBRARY: t.libraryPath,
        AMK_PKCS11_TOKEN_LABEL: t.label,
        AMK_PKCS11_PIN_FILE: t.pinFile,
        AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
        AMK_EVENT_TABLE: table,
        AMK_VAULT_DIR: vaultDir,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    // Kill only once it is working (it has printed progress), at a random moment after.
    if (killAfterMs !== undefined) {
      const onData = () => {
        if (!/moved \d+/.test(out)) return;
        child.stdout.off("data", onData);
        setTimeout(() => child.kill("SIGKILL"), killAfterMs);
      };
      child.stdout.on("data", onData);
    }
    return new Promise((res) => child.on("exit", (code, signal) => res({ code, signal, out })));
  }

  it("ends with every document on the new version exactly once and every DEK unchanged", async () => {
    let killed = 0;
    for (let i = 0; i < 10; i++) {
      // Killed 0-60 ms after its first round: well inside its next one (a round of 16 shards x 5 documents takes
      // longer than that), so that each attempt until the work is done is killed mid-way. (It was 0-400 ms: on a
      // quiet machine the whole rest of the work could finish first, and no attempt was killed at all.)
      const r = await worker(Math.floor(Math.random() * 60));
      if (r.signal === "SIGKILL") killed += 1;
      else assert.equal(r.code, 0, r.out);
    }
    assert.ok(killed >= 1, "the job was killed at least once");
    const final = await worker();
    assert.equal(final.code, 0, final.out);
    assert.match(final.out, /done/);

    assert.equal(await events.countDocumentsByKeyId(ws, masterKeyId(ws, 1)), 0);
    const dataKeys = new DataKeyService({ keyStore: ks, events });
    for (const [doc, h] of hashes) {
      const { events: stream } = await events.readStream(documentStreamId(ws, doc));
      const records = stream.filter((e) => e.type === EventTypes.DocumentEncryptionKeysAdded);
      assert.equal(records.length, 2, `${doc}: the original record and exactly one re-wrap`);
      assert.equal(records[1]!.data.KeyId, masterKeyId(ws, 2));
      const r = await dataKeys.decryptDataKeys({
        workspaceId: ws,
        documentId: doc,
        artifacts: ["file", "thumb"],
      });
      assert.equal(r.keys.map((k) => sha(k.plaintext)).join(","), h, doc);
    }
  });
});
