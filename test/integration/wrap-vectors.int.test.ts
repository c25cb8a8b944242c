/**
 * Wrap-record test vectors (test/vectors/wrap-records.json, made by an independent generator) against the
 * production format code and a real SoftHSM2 token; and an ArquivoMate legacy record decrypted end to end through
 * DecryptDataKeys.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { WrapRecordCorruptError } from "../../core/datakeys/errors.js";
import {
  associatedData,
  decodeWrapped,
  type Artifact,
  type WrapFormat,
} from "../../core/datakeys/wrap-format.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import { newEvent } from "../../core/eventstore/events.js";
import { documentStreamId } from "../../core/eventstore/stream-id.js";
import { KeyIntegrityError } from "../../core/keystore/errors.js";
import { parseKeyId } from "../../core/keystore/key-id.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

interface VectorFile {
  transportKey: string;
  masterKeys: { keyId: string; blob: string; raw: string }[];
  vectors: {
    name: string;
    expect: "success" | "integrity failure" | "corrupt record";
    format: WrapFormat;
    keyId: string;
    workspaceId: string;
    documentId: string;
    artifact: Artifact;
    record: { Artifact: string; WrappedDek: string; WrapNonce: string; Algorithm: string; Version: string };
    dek?: string;
  }[];
}

const file = JSON.parse(
  readFileSync(new URL("../vectors/wrap-records.json", import.meta.url), "utf8"),
) as VectorFile;

describe("wrap-record test vectors on SoftHSM2", () => {
  let hsm: TestHsm;
  let store: Pkcs11KeyStore;

  before(async () => {
    hsm = await createTestHsm(["vectors"]);
    store = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!));
    const transport = await store.importTransportKey(Buffer.from(file.transportKey, "hex"));
    for (const mk of file.masterKeys) {
      await store.importMasterKey(parseKeyId(mk.keyId), Buffer.from(mk.blob, "hex"), transport);
    }
    await store.destroyTransportKey(transport);
  });
  after(async () => {
    await store?.close();
    await hsm?.cleanup();
  });

  it("has positive and negative vectors of every kind for both formats", () => {
    for (const format of ["ARQ-GCM-LEGACY", "AMK-GCM-V1"]) {
      const kinds = new Set(file.vectors.filter((v) => v.format === format).map((v) => v.expect));
      assert.deepEqual([...kinds].sort(), ["corrupt record", "integrity failure", "success"]);
    }
  });

  it("imports the vectors' master keys with the KCVs of their raw values", async () => {
    const { createCipheriv } = await import("node:crypto");
    for (const mk of file.masterKeys) {
      const c = createCipheriv("aes-256-ecb", Buffer.from(mk.raw, "hex"), null);
      const kcv = c.update(Buffer.alloc(16)).subarray(0, 3).toString("hex").toUpperCase();
      assert.equal(await store.keyCheckValue(parseKeyId(mk.keyId)), kcv, mk.keyId);
    }
  });

  for (const v of file.vectors) {
    it(`${v.name}: ${v.expect}`, async () => {
      const attempt = async () => {
        const keyId = parseKeyId(v.keyId);
        const wrapped = decodeWrapped(v.record);
        const aad = associatedData(v.format, {
          workspaceId: v.workspaceId,
          documentId: v.documentId,
          artifact: v.artifact,
          keyId,
        });
        return store.unwrapDataKey(keyId, wrapped, aad);
      };
      switch (v.expect) {
        case "success":
          assert.equal((await attempt()).toString("hex"), v.dek);
          break;
        case "integrity failure":
          await assert.rejects(attempt(), KeyIntegrityError);
          break;
        case "corrupt record":
          await assert.rejects(attempt(), WrapRecordCorruptError);
          break;
      }
    });
  }
});

describe("an ArquivoMate legacy record through DecryptDataKeys", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let store: Pkcs11KeyStore;

  before(async () => {
    hsm = await createTestHsm(["legacy"]);
    ddb = await useTestDynamoDb();
    store = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!));
    const transport = await store.importTransportKey(Buffer.from(file.transportKey, "hex"));
    const legacy = file.masterKeys[0]!;
    await store.importMasterKey(parseKeyId(legacy.keyId), Buffer.from(legacy.blob, "hex"), transport);
    await store.destroyTransportKey(transport);
  });
  after(async () => {
    await store?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
  });

  it("returns the DEK of a legacy-format wrap record", async () => {
    const v = file.vectors.find((x) => x.format === "ARQ-GCM-LEGACY" && x.expect === "success")!;
    const events = new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable("legacy") });
    const record = {
      AggregateId: v.documentId,
      WorkspaceId: v.workspaceId,
      KeyId: v.keyId,
      WrapFormat: "ARQ-GCM-LEGACY",
      Artifacts: [v.record],
      OccurredOn: "2025-06-01T10:00:00.000Z",
    };
    await events.appendToStream(
      documentStreamId(v.workspaceId, v.documentId),
      [newEvent(EventTypes.DocumentEncryptionKeysAdded, record)],
      { expectedVersion: "no_stream" },
    );
    const service = new DataKeyService({ keyStore: store, events });
    const r = await service.decryptDataKeys({
      workspaceId: v.workspaceId,
      documentId: v.documentId,
      artifacts: ["file"],
    });
    assert.equal(r.keys[0]!.plaintext.toString("hex"), v.dek);
  });
});
