/**
 * The pipeline client end to end: over the in-process transport to the real handlers (SoftHSM2 + DynamoDB Local),
 * and the Lambda Invoke transport driving the real @aws-sdk/client-lambda against a loopback server that answers
 * with the handlers' real output and with recorded Lambda error shapes (test/fixtures/lambda).
 */
import assert from "node:assert/strict";
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { LambdaClient } from "@aws-sdk/client-lambda";
import { DataKeyClient, DataKeyRequestError } from "../../core/client/data-key-client.js";
import {
  createLambdaDataKeyTransport,
  DataKeyTransportError,
} from "../../core/adapters/lambda/lambda-data-key-transport.js";
import { inProcessTransport } from "../../cli/local/in-process-transport.js";
import { handler as generate } from "../../functions/generate-data-keys/handler.js";
import { handler as decrypt } from "../../functions/decrypt-data-keys/handler.js";
import { keyStoreFromEnv } from "../../functions/shared/key-store.js";
import { eventStoreFromEnv } from "../../functions/shared/event-store.js";
import { provisionWorkspace } from "../../core/workspaces/workspace.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/lambda/${name}.json`, import.meta.url), "utf8")) as {
    status: number;
    headers: Record<string, string>;
    body: unknown;
  };

function encrypt(dek: Buffer, plain: Buffer): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", dek, iv);
  return Buffer.concat([iv, c.update(plain), c.final(), c.getAuthTag()]);
}
function decryptContent(dek: Buffer, blob: Buffer): Buffer {
  const d = createDecipheriv("aes-256-gcm", dek, blob.subarray(0, 12));
  d.setAuthTag(blob.subarray(blob.length - 16));
  return Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]);
}

describe("data-key client", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let keyStore: KeyStore;
  const ws = `cl-${randomUUID().slice(0, 8)}`;
  let server: Server;
  let endpoint: string;
  let mode: "real" | "function-error" | "throttled" | "not-found" = "real";
  const seenPaths: string[] = [];

  before(async () => {
    hsm = await createTestHsm(["client"]);
    ddb = await useTestDynamoDb();
    const t = hsm.tokens[0]!;
    Object.assign(process.env, {
      AMK_PKCS11_LIBRARY: t.libraryPath,
      AMK_PKCS11_TOKEN_LABEL: t.label,
      AMK_PKCS11_PIN_FILE: t.pinFile,
      AMK_EVENT_TABLE: await ddb.newTable("client"),
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      POWERTOOLS_LOG_LEVEL: "ERROR",
    });
    keyStore = await keyStoreFromEnv();
    await provisionWorkspace({ keyStore, events: eventStoreFromEnv() }, ws);

    // A loopback Lambda endpoint: the real handlers behind the Invoke REST protocol, or a recorded error.
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        seenPaths.push(req.url ?? "");
        if (mode !== "real") {
          const f = fixture(`invoke-${mode}`);
          res.writeHead(f.status, f.headers).end(JSON.stringify(f.body));
          return;
        }
        const name = decodeURIComponent(/functions\/([^/]+)\/invocations/.exec(req.url ?? "")?.[1] ?? "");
        const payload = JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
        const out = name === "amk-generate" ? await generate(payload) : await decrypt(payload);
        res
          .writeHead(200, { "content-type": "application/json", "x-amz-executed-version": "$LATEST" })
          .end(JSON.stringify(out));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.close();
    await keyStore?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
  });

  it("encrypts a document with a generated key and a second client reads it back (in process)", async () => {
    const writer = new DataKeyClient({ transport: inProcessTransport });
    const reader = new DataKeyClient({ transport: inProcessTransport });
    const doc = randomUUID();
    const ref = { workspaceId: ws, documentId: doc, artifact: "file" };
    const gen = await writer.generate({
      workspaceId: ws,
      documentId: doc,
      artifacts: ["file"],
      idempotencyKey: "w1",
    });
    assert.equal(gen.keyId, `ws-${ws}/mk/1`);
    const content = Buffer.from("the archived document");
    const sealed = await writer.withDataKey(ref, (dek) => encrypt(dek, content));
    writer.forget(ws, doc);
    assert.equal(writer.size, 0);
    const opened = await reader.withDataKey(ref, (dek) => decryptContent(dek, sealed));
    assert.deepEqual(opened, content);
    await assert.rejects(
      reader.withDataKey({ ...ref, documentId: randomUUID() }, () => undefined),
      (e: unknown) => e instanceof DataKeyRequestError && e.code === "DOCUMENT_KEYS_NOT_FOUND",
    );
    writer.dispose();
    reader.dispose();
  });

  it("works over Lambda Invoke with the real SDK client", async () => {
    mode = "real";
    const transport = createLambdaDataKeyTransport({
      client: new LambdaClient({
        endpoint,
        region: "eu-central-1",
        credentials: { accessKeyId: "a", secretAccessKey: "b" },
      }),
      generateFunctionName: "amk-generate",
      decryptFunctionName: "amk-decrypt",
    });
    const c = new DataKeyClient({ transport });
    const doc = randomUUID();
    await c.generate({
      workspaceId: ws,
      documentId: doc,
      artifacts: ["file", "thumb"],
      idempotencyKey: "lam",
    });
    const viaGenerate = await c.withDataKey({ workspaceId: ws, documentId: doc, artifact: "thumb" }, (k) =>
      k.toString("hex"),
    );
    c.forget(ws, doc);
    const viaDecrypt = await c.withDataKey({ workspaceId: ws, documentId: doc, artifact: "thumb" }, (k) =>
      k.toString("hex"),
    );
    assert.equal(viaDecrypt, viaGenerate);
    assert.ok(seenPaths.some((p) => p.includes("/2015-03-31/functions/amk-generate/invocations")));
    assert.ok(seenPaths.some((p) => p.includes("/2015-03-31/functions/amk-decrypt/invocations")));
    c.dispose();
  });

  it("translates Lambda failures into typed transport errors", async () => {
    const transport = createLambdaDataKeyTransport({
      client: new LambdaClient({
        endpoint,
        region: "eu-central-1",
        credentials: { accessKeyId: "a", secretAccessKey: "b" },
        maxAttempts: 1,
      }),
      generateFunctionName: "amk-generate",
      decryptFunctionName: "amk-decrypt",
    });
    const req = { workspaceId: ws, documentId: randomUUID(), artifacts: ["file"] };
    mode = "function-error";
    await assert.rejects(
      transport.decrypt(req),
      (e: unknown) =>
        e instanceof DataKeyTransportError &&
        e.code === "FUNCTION_ERROR" &&
        /Runtime.UnhandledPromiseRejection/.test(e.message),
    );
    mode = "throttled";
    await assert.rejects(
      transport.decrypt(req),
      (e: unknown) =>
        e instanceof DataKeyTransportError && e.retryable && /TooManyRequestsException/.test(e.message),
    );
    mode = "not-found";
    await assert.rejects(
      transport.decrypt(req),
      (e: unknown) =>
        e instanceof DataKeyTransportError && !e.retryable && /ResourceNotFoundException/.test(e.message),
    );
    mode = "real";
  });
});
