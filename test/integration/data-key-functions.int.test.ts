/**
 * The data-key Lambda handlers (GenerateDataKeys, DecryptDataKeys, document lifecycle) called as Lambda calls them,
 * configured through their environment, against a real SoftHSM2 token and DynamoDB Local.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
// The handlers are imported after the log level is set (Powertools reads it at import): this file checks their logs.
process.env.POWERTOOLS_LOG_LEVEL = "INFO";
const { handler: generate } = await import("../../functions/generate-data-keys/handler.js");
const { handler: decrypt } = await import("../../functions/decrypt-data-keys/handler.js");
const { handler: lifecycle } = await import("../../functions/document-lifecycle/handler.js");
import { keyStoreFromEnv } from "../../functions/shared/key-store.js";
import { eventStoreFromEnv } from "../../functions/shared/event-store.js";
import { provisionWorkspace } from "../../core/workspaces/workspace.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import { newEvent } from "../../core/eventstore/events.js";
import { documentStreamId, workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

const ALL = ["file", "metadata", "thumb", "preview", "archive"];

type Ok = Extract<Awaited<ReturnType<typeof generate>>, { ok: true }>;
function ok(r: Awaited<ReturnType<typeof generate>>): Ok {
  assert.equal(r.ok, true, JSON.stringify(r));
  return r as Ok;
}
function errorCode(r: Awaited<ReturnType<typeof generate>>): string {
  assert.equal(r.ok, false, "expected a refusal");
  return (r as { error: { code: string } }).error.code;
}
const keysOf = (r: Ok) => Object.fromEntries(r.keys.map((k) => [k.artifact, k.dek]));

describe("data-key functions against SoftHSM2 and DynamoDB Local", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let events: EventStore;
  let keyStore: KeyStore;
  const ws = `dk-${randomUUID().slice(0, 8)}`;
  const logs: string[] = [];
  const realWrite = process.stdout.write.bind(process.stdout);

  before(async () => {
    hsm = await createTestHsm(["datakeys"]);
    ddb = await useTestDynamoDb();
    const t = hsm.tokens[0]!;
    Object.assign(process.env, {
      AMK_PKCS11_LIBRARY: t.libraryPath,
      AMK_PKCS11_TOKEN_LABEL: t.label,
      AMK_PKCS11_PIN_FILE: t.pinFile,
      AMK_EVENT_TABLE: await ddb.newTable("datakeys"),
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
    });
    keyStore = await keyStoreFromEnv();
    events = eventStoreFromEnv();
    await provisionWorkspace({ keyStore, events }, ws);
    // Capture what the functions log (Powertools writes JSON lines to stdout), to check no key leaks into it.
    process.stdout.write = ((chunk: string | Uint8Array) => {
      logs.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
  });
  after(async () => {
    process.stdout.write = realWrite;
    await keyStore?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
  });

  it("generates one DEK per artifact, records the wrap before returning, and decrypts them again", async () => {
    const doc = randomUUID();
    const r = ok(
      await generate({ workspaceId: ws, documentId: doc, artifacts: ALL, idempotencyKey: "req-1" }),
    );
    assert.equal(r.keyId, masterKeyId(ws, 1));
    assert.deepEqual(
      r.keys.map((k) => k.artifact),
      ALL,
    );
    for (const k of r.keys) assert.equal(Buffer.from(k.dek, "base64").length, 32);
    assert.equal(new Set(r.keys.map((k) => k.dek)).size, 5, "every artifact has its own DEK");
    assert.ok(Date.parse(r.expiresAt) > Date.now());

    const { events: stream } = await events.readStream(documentStreamId(ws, doc));
    assert.equal(stream.length, 1);
    const rec = stream[0]!;
    assert.equal(rec.type, "DocumentEncryptionKeysAdded");
    assert.deepEqual(rec.data, r.record);
    assert.equal(rec.data.AggregateId, doc);
    assert.equal(rec.data.WorkspaceId, ws);
    assert.equal(rec.data.KeyId, r.keyId);
    assert.equal(rec.data.WrapFormat, "AMK-GCM-V1");
    const first = (
      rec.data.Artifacts as { WrappedDek: string; WrapNonce: string; Algorithm: string; Version: string }[]
    )[0]!;
    assert.equal(Buffer.from(first.WrappedDek, "base64").length, 48);
    assert.equal(Buffer.from(first.WrapNonce, "base64").length, 12);
    assert.equal(first.Algorithm, "AES-256-CBC-HMACSHA256");
    assert.equal(first.Version, "2");
    assert.equal((await events.getDocumentProjection(ws, doc))?.keyId, r.keyId);

    const d = ok(await decrypt({ workspaceId: ws, documentId: doc, artifacts: ["thumb", "file"] }));
    assert.deepEqual(keysOf(d), { thumb: keysOf(r).thumb, file: keysOf(r).file });
  });

  it("answers a replay with the same idempotency key with the same keys, never a second set", async () => {
    const doc = randomUUID();
    const req = { workspaceId: ws, documentId: doc, artifacts: ["file", "preview"], idempotencyKey: "same" };
    const a = ok(await generate(req));
    const b = ok(await generate(req));
    assert.deepEqual(keysOf(b), keysOf(a));
    assert.equal((await events.readStream(documentStreamId(ws, doc))).events.length, 1);
    assert.equal(errorCode(await generate({ ...req, artifacts: ["file"] })), "IDEMPOTENCY_KEY_MISMATCH");
    assert.equal(errorCode(await generate({ ...req, idempotencyKey: "other" })), "DOCUMENT_KEYS_EXIST");
    assert.equal(
      (await events.readStream(documentStreamId(ws, doc))).events.length,
      1,
      "refusals wrote nothing",
    );
  });

  it("16 concurrent callers on one document: one record, every caller with the same idempotency key gets its keys", async () => {
    const doc = randomUUID();
    const req = { workspaceId: ws, documentId: doc, artifacts: ["file"], idempotencyKey: "burst" };
    const results = (await Promise.all(Array.from({ length: 16 }, () => generate(req)))).map(ok);
    const first = keysOf(results[0]!);
    for (const r of results) assert.deepEqual(keysOf(r), first);
    const stream = (await events.readStream(documentStreamId(ws, doc))).events;
    assert.equal(stream.length, 1);
    // ...and with 16 different idempotency keys exactly one wins; the record holds the winner's key.
    const doc2 = randomUUID();
    const racing = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        generate({ ...req, documentId: doc2, idempotencyKey: `racer-${i}` }),
      ),
    );
    const winners = racing.filter((r) => r.ok) as Ok[];
    assert.equal(winners.length, 1);
    for (const r of racing.filter((x) => !x.ok)) assert.equal(errorCode(r), "DOCUMENT_KEYS_EXIST");
    const d = ok(await decrypt({ workspaceId: ws, documentId: doc2, artifacts: ["file"] }));
    assert.deepEqual(keysOf(d), keysOf(winners[0]!));
  });

  it("16 concurrent writers on 16 documents lose no wrap record", async () => {
    const docs = Array.from({ length: 16 }, () => randomUUID());
    const results = (
      await Promise.all(
        docs.map((documentId) =>
          generate({ workspaceId: ws, documentId, artifacts: ALL, idempotencyKey: "k" }),
        ),
      )
    ).map(ok);
    for (const [i, documentId] of docs.entries()) {
      const d = ok(await decrypt({ workspaceId: ws, documentId, artifacts: ALL }));
      assert.deepEqual(keysOf(d), keysOf(results[i]!));
    }
  });

  it("refuses a wrapped DEK moved to another document or another artifact", async () => {
    const a = randomUUID();
    const b = randomUUID();
    ok(await generate({ workspaceId: ws, documentId: a, artifacts: ["file", "thumb"], idempotencyKey: "a" }));
    const rec = (await events.readStream(documentStreamId(ws, a))).events[0]!;
    // Another document's stream receives a copy of a's record (only the ids changed).
    const moved = newEvent(EventTypes.DocumentEncryptionKeysAdded, { ...rec.data, AggregateId: b });
    await events.appendToStream(documentStreamId(ws, b), [moved], { expectedVersion: "no_stream" });
    assert.equal(
      errorCode(await decrypt({ workspaceId: ws, documentId: b, artifacts: ["file"] })),
      "WRONG_KEY_OR_TAMPERED",
    );
    // Within a's own stream, the file key presented as the thumb key.
    const arts = rec.data.Artifacts as { Artifact: string }[];
    const swapped = newEvent(EventTypes.DocumentEncryptionKeysAdded, {
      ...rec.data,
      Artifacts: [{ ...arts[0]!, Artifact: "thumb" }],
    });
    await events.appendToStream(documentStreamId(ws, a), [swapped], { expectedVersion: 1 });
    assert.equal(
      errorCode(await decrypt({ workspaceId: ws, documentId: a, artifacts: ["thumb"] })),
      "WRONG_KEY_OR_TAMPERED",
    );
  });

  it("decrypts documents under a decrypt-only version after a new master key version became active", async () => {
    const w2 = `dk2-${randomUUID().slice(0, 8)}`;
    await provisionWorkspace({ keyStore, events }, w2);
    const old = randomUUID();
    const before = ok(
      await generate({ workspaceId: w2, documentId: old, artifacts: ["file"], idempotencyKey: "x" }),
    );
    const v2 = masterKeyId(w2, 2);
    const info = await keyStore.createMasterKey(v2);
    await events.appendToStream(
      workspaceStreamId(w2),
      [
        newEvent(EventTypes.MasterKeyCreated, {
          WorkspaceId: w2,
          KeyId: v2,
          Kcv: info.kcv,
          Extractable: true,
        }),
      ],
      { expectedVersion: 1 },
    );
    const fresh = ok(
      await generate({ workspaceId: w2, documentId: randomUUID(), artifacts: ["file"], idempotencyKey: "y" }),
    );
    assert.equal(fresh.keyId, v2, "new DEKs use the new active version at once");
    const d = ok(await decrypt({ workspaceId: w2, documentId: old, artifacts: ["file"] }));
    assert.equal(d.keyId, masterKeyId(w2, 1));
    assert.deepEqual(keysOf(d), keysOf(before));
  });

  it("records DocumentStored and DocumentDeleted once each; deleted documents get no keys", async () => {
    const doc = randomUUID();
    const keys = ok(
      await generate({ workspaceId: ws, documentId: doc, artifacts: ["file"], idempotencyKey: "l" }),
    );
    const stored = {
      id: randomUUID(),
      source: "arquivomate.ingestion",
      "detail-type": "DocumentStored",
      time: new Date().toISOString(),
      detail: { workspaceId: ws, documentId: doc },
    };
    assert.deepEqual(await lifecycle(stored), { recorded: true, status: "stored" });
    assert.deepEqual(
      await lifecycle(stored),
      { recorded: false, status: "stored" },
      "a redelivery records nothing",
    );
    assert.equal((await events.getDocumentProjection(ws, doc))?.status, "stored");
    ok(await decrypt({ workspaceId: ws, documentId: doc, artifacts: ["file"] }));

    const del = { ...stored, id: randomUUID(), "detail-type": "DocumentDeleted" };
    assert.deepEqual(await lifecycle(del), { recorded: true, status: "deleted" });
    assert.deepEqual(
      await lifecycle({ ...stored, id: randomUUID() }),
      { recorded: false, status: "deleted" },
      "a late DocumentStored changes nothing",
    );
    assert.equal(
      errorCode(await decrypt({ workspaceId: ws, documentId: doc, artifacts: ["file"] })),
      "DOCUMENT_DELETED",
    );
    assert.equal(
      errorCode(
        await generate({ workspaceId: ws, documentId: doc, artifacts: ["file"], idempotencyKey: "l" }),
      ),
      "DOCUMENT_DELETED",
    );
    assert.equal((await events.readStream(documentStreamId(ws, doc))).events.length, 3);
    assert.ok(keys.keys.length === 1);
  });

  it("throws on unknown, malformed or orphan lifecycle events (to the dead-letter queue) and changes nothing", async () => {
    const doc = randomUUID();
    ok(await generate({ workspaceId: ws, documentId: doc, artifacts: ["file"], idempotencyKey: "m" }));
    const base = {
      id: randomUUID(),
      source: "arquivomate.ingestion",
      detail: { workspaceId: ws, documentId: doc },
    };
    await assert.rejects(lifecycle({ ...base, "detail-type": "DocumentRenamed" }), {
      name: "InvalidInputError",
      message: /detail-type/,
    });
    await assert.rejects(
      lifecycle({ ...base, "detail-type": "DocumentStored", detail: { workspaceId: ws } }),
      { name: "InvalidInputError", message: /documentId/ },
    );
    await assert.rejects(lifecycle("not an event"), { name: "InvalidInputError" });
    await assert.rejects(
      lifecycle({
        ...base,
        "detail-type": "DocumentDeleted",
        detail: { workspaceId: ws, documentId: randomUUID() },
      }),
      { name: "DocumentKeysNotFoundError" },
    );
    assert.equal((await events.readStream(documentStreamId(ws, doc))).events.length, 1);
  });

  it("rejects bad requests with INVALID_INPUT and writes nothing; unknown workspaces are named", async () => {
    const doc = randomUUID();
    const good = { workspaceId: ws, documentId: doc, artifacts: ["file"], idempotencyKey: "v" };
    for (const bad of [
      { ...good, artifacts: ["photo"] },
      { ...good, artifacts: [] },
      { ...good, artifacts: ["file", "file"] },
      { ...good, documentId: "../etc" },
      { ...good, idempotencyKey: "" },
      { ...good, extra: "field" },
      { workspaceId: ws },
      null,
    ]) {
      assert.equal(errorCode(await generate(bad)), "INVALID_INPUT", JSON.stringify(bad));
    }
    assert.equal((await events.readStream(documentStreamId(ws, doc))).currentVersion, undefined);
    assert.equal(
      errorCode(await generate({ ...good, workspaceId: "never-provisioned" })),
      "WORKSPACE_NOT_PROVISIONED",
    );
    assert.equal(
      errorCode(await decrypt({ workspaceId: ws, documentId: randomUUID(), artifacts: ["file"] })),
      "DOCUMENT_KEYS_NOT_FOUND",
    );
  });

  it("never logged a plaintext DEK", async () => {
    const doc = randomUUID();
    const r = ok(await generate({ workspaceId: ws, documentId: doc, artifacts: ALL, idempotencyKey: "log" }));
    ok(await decrypt({ workspaceId: ws, documentId: doc, artifacts: ALL }));
    const text = logs.join("");
    assert.ok(text.includes("data keys generated"), "the functions did log");
    for (const k of r.keys) {
      assert.equal(text.includes(k.dek), false);
      assert.equal(text.includes(Buffer.from(k.dek, "base64").toString("hex")), false);
    }
  });
});
