/**
 * Data-key functions end to end on the local engines (SoftHSM2 + DynamoDB Local): GenerateDataKeys and
 * DecryptDataKeys handlers, documents per second and p50/p99 latency at concurrency 1 and 16, next to the bare
 * key-store rate (the same HSM work per document) and the bare DynamoDB Local write rate (one PutItem of a wrap
 * record's size), all measured in this run. Says which one bounds the service.
 *
 *   npm run bench:datakeys -- [--docs 300] [--artifacts 5]
 */
import "./quiet.js";
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { PutItemCommand, TransactWriteItemsCommand } from "@aws-sdk/client-dynamodb";
import { handler as generate } from "../functions/generate-data-keys/handler.js";
import { handler as decrypt } from "../functions/decrypt-data-keys/handler.js";
import { keyStoreFromEnv } from "../functions/shared/key-store.js";
import { eventStoreFromEnv } from "../functions/shared/event-store.js";
import { provisionWorkspace } from "../core/workspaces/workspace.js";
import { masterKeyId } from "../core/keystore/key-id.js";
import { ARTIFACTS } from "../core/datakeys/wrap-format.js";
import { createTestHsm } from "../test/support/softhsm.js";
import { useTestDynamoDb } from "../test/support/dynamodb.js";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const DOCS = arg("docs", 300);
const ART = ARTIFACTS.slice(0, arg("artifacts", 5));

interface Figures {
  perSecond: number;
  p50: number;
  p99: number;
}

async function measure(
  n: number,
  concurrency: number,
  op: (i: number) => Promise<unknown>,
): Promise<Figures> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        const s = performance.now();
        await op(i);
        lat.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  return { perSecond: n / secs, p50: pct(0.5), p99: pct(0.99) };
}

const hsm = await createTestHsm(["bench-dk"]);
const ddb = await useTestDynamoDb();
const t = hsm.tokens[0]!;
Object.assign(process.env, {
  AMK_PKCS11_LIBRARY: t.libraryPath,
  AMK_PKCS11_TOKEN_LABEL: t.label,
  AMK_PKCS11_PIN_FILE: t.pinFile,
  AMK_PKCS11_POOL_SIZE: "4",
  AMK_EVENT_TABLE: await ddb.newTable("bench"),
  AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
});
const keyStore = await keyStoreFromEnv();
const ws = "bench";
await provisionWorkspace({ keyStore, events: eventStoreFromEnv() }, ws);
const keyId = masterKeyId(ws, 1);

const rows: [string, number, Figures][] = [];
for (const c of [1, 16]) {
  const docs = Array.from({ length: DOCS }, () => randomUUID());
  rows.push([
    "GenerateDataKeys",
    c,
    await measure(DOCS, c, async (i) => {
      const r = await generate({
        workspaceId: ws,
        documentId: docs[i]!,
        artifacts: [...ART],
        idempotencyKey: "b",
      });
      if (!r.ok) throw new Error(r.error.code);
    }),
  ]);
  rows.push([
    "DecryptDataKeys",
    c,
    await measure(DOCS, c, async (i) => {
      const r = await decrypt({ workspaceId: ws, documentId: docs[i]!, artifacts: [...ART] });
      if (!r.ok) throw new Error(r.error.code);
    }),
  ]);
  rows.push([
    "bare KeyStore (DEK+wrap per artifact)",
    c,
    await measure(DOCS, c, async () => {
      for (let a = 0; a < ART.length; a++) {
        const dek = await keyStore.generateDataKey();
        await keyStore.wrapDataKey(keyId, dek, Buffer.from("aad"));
        dek.fill(0);
      }
    }),
  ]);
  const item = { S: "x".repeat(ART.length * 140) };
  rows.push([
    "bare DynamoDB Local PutItem",
    c,
    await measure(DOCS, c, () =>
      ddb.client.send(
        new PutItemCommand({
          TableName: process.env.AMK_EVENT_TABLE,
          Item: { pk: { S: `bare#${randomUUID()}` }, sk: { S: "e#1" }, data: item },
        }),
      ),
    ),
  ]);
  rows.push([
    "bare DynamoDB Local 4-item transaction",
    c,
    await measure(DOCS, c, () => {
      const pk = `bare#${randomUUID()}`;
      const put = (sk: string, data = { S: "-" }) => ({
        Put: {
          TableName: process.env.AMK_EVENT_TABLE,
          Item: { pk: { S: pk }, sk: { S: sk }, data },
          ConditionExpression: "attribute_not_exists(pk)",
        },
      });
      return ddb.client.send(
        new TransactWriteItemsCommand({
          TransactItems: [put("head"), put("e#1", item), put("eid"), put("projection")],
        }),
      );
    }),
  ]);
}

const f = (n: number, w = 8) => n.toFixed(n >= 100 ? 0 : 1).padStart(w);
console.log(
  `\nData-key functions on SoftHSM2 + DynamoDB Local (${DOCS} documents x ${ART.length} artifacts, Node ${process.version})\n`,
);
console.log("operation                              | conc. |  docs/s |  p50 ms |  p99 ms");
console.log("---------------------------------------|-------|---------|---------|--------");
for (const [name, c, r] of rows)
  console.log(
    `${name.padEnd(38)} | ${String(c).padStart(5)} | ${f(r.perSecond, 7)} | ${f(r.p50, 7)} | ${f(r.p99, 7)}`,
  );
for (const c of [1, 16]) {
  const get = (n: string) => rows.find((r) => r[0].startsWith(n) && r[1] === c)![2].perSecond;
  const gen = get("GenerateDataKeys");
  const hsmRate = get("bare KeyStore");
  const tx = get("bare DynamoDB Local 4-item");
  // Per document GenerateDataKeys does one HSM batch and, on DynamoDB, three reads (document stream, workspace
  // stream, the append's read of the head) and one 4-item transaction.
  const bound = hsmRate < tx ? "the HSM (SoftHSM2)" : "DynamoDB Local (3 reads + 1 transaction per document)";
  console.log(
    `\nconcurrency ${c}: GenerateDataKeys ${f(gen, 0).trim()} docs/s = ${((gen / hsmRate) * 100).toFixed(1)}% of the bare key-store rate, ` +
      `${((gen / tx) * 100).toFixed(0)}% of the bare 4-item TransactWriteItems rate (${f(tx, 0).trim()}/s); bounded by ${bound}.`,
  );
}

await keyStore.close();
await ddb.cleanup();
await hsm.cleanup();
