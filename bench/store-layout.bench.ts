/**
 * Store-layout benchmark (issue 5's open gap): how many items a re-wrap writes per document bounds both the batched
 * engine and the one-document-at-a-time loop on DynamoDB Local, and so the ratio between them. It sends raw
 * requests (the bare SDK client, no adapter, no HSM) shaped like the event store's, for three layouts:
 *
 *   4 items (today)      stream head, event, event-id marker, document projection with census index keys
 *   3 items              the head of a document stream carries the projection (and the census keys); no projection item
 *   2 items (reference)  as 3, without the event-id marker: gives up table-wide event-id uniqueness and the replay
 *                        detection built on it, so it is not an option for this store; shown to locate the bound
 *
 * For each layout, in fresh tables of `--docs` documents seeded at version 1, rounds interleaved (median shown):
 *   batched: transactions of 25 documents' items, 8 in flight, after one BatchGetItem of the 25 current events
 *            and one census-index Query per 50 documents (what the engine reads);
 *   loop:    one document at a time: GetItem of the head + Query of the events (the stream read), the head read of
 *            the append, and a TransactWriteItems of that document's items (what the naive loop sends).
 *
 *   npx tsx bench/store-layout.bench.ts [--docs 2000] [--rounds 3]
 */
import "./quiet.js";
import { pool } from "./pool.js";
import {
  BatchGetItemCommand,
  BatchWriteItemCommand,
  GetItemCommand,
  QueryCommand,
  TransactWriteItemsCommand,
  type AttributeValue,
  type BatchWriteItemCommandOutput,
  type TransactWriteItem,
  type WriteRequest,
} from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { randomBytes, randomUUID } from "node:crypto";
import { cpus } from "node:os";
import { CENSUS_BY_KEY_ID_INDEX, deleteEventStoreTable } from "../core/adapters/dynamodb/table.js";
import { useTestDynamoDb } from "../test/support/dynamodb.js";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const n = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} must be a positive integer`);
  return n;
}
const DOCS = arg("docs", 2000);
const ROUNDS = arg("rounds", 3);
const LOOP_DOCS = Math.min(DOCS, 500);
const GROUP = 25;
const IN_FLIGHT = 8;
const PAGE = 50;
const SHARDS = 16;
const WS = "layout-ws";
/** A wrap record's data as the store keeps it: JSON text of about 1.1 KB (five artifacts). */
const DATA = JSON.stringify({ Artifacts: randomBytes(800).toString("base64") });

type Layout = { readonly name: string; readonly merged: boolean; readonly marker: boolean };
const LAYOUTS: readonly Layout[] = [
  { name: "4 items (today)", merged: false, marker: true },
  { name: "3 items (head carries projection)", merged: true, marker: true },
  { name: "2 items (no event-id marker; reference)", merged: true, marker: false },
];

const now = (): string => new Date().toISOString();
const keyId = (v: number): string => `ws-${WS}/mk/${v}`;

function projectionAttrs(doc: string, shard: number, v: number): Record<string, unknown> {
  return {
    workspaceId: WS,
    documentId: doc,
    status: "stored",
    projectionVersion: v,
    shard,
    keyId: keyId(v),
    keysVersion: v,
    gsi1pk: `census#${WS}#${keyId(v)}#${shard}`,
    gsi1sk: doc,
    gsi2pk: `keys#${WS}#${shard}`,
    gsi2sk: `${keyId(v)}#${doc}`,
  };
}

/** The items of a document at version `v` (v = 1 when seeding, 2 for the re-wrap). */
function itemsOf(layout: Layout, tableName: string, stream: string, doc: string, shard: number, v: number) {
  const eventId = randomUUID();
  const head = {
    pk: stream,
    sk: "head",
    kind: "head",
    streamId: stream,
    version: v,
    updatedAt: now(),
    ...(layout.merged ? projectionAttrs(doc, shard, v) : {}),
  };
  const event = {
    pk: stream,
    sk: `e#${String(v).padStart(10, "0")}`,
    kind: "event",
    streamId: stream,
    version: v,
    eventId,
    type: "DocumentEncryptionKeysAdded",
    schemaVersion: 1,
    occurredAt: now(),
    data: DATA,
    recordedAt: now(),
  };
  const marker = {
    pk: `eid#${eventId}`,
    sk: "eid",
    kind: "eventId",
    eventId,
    streamId: stream,
    version: v,
    recordedAt: now(),
  };
  const projection = {
    pk: stream,
    sk: "projection",
    kind: "projection",
    version: v,
    updatedAt: now(),
    ...projectionAttrs(doc, shard, v),
  };
  const puts: {
    item: Record<string, unknown>;
    condition?: Omit<NonNullable<TransactWriteItem["Put"]>, "TableName" | "Item">;
  }[] = [
    {
      item: head,
      condition:
        v === 1
          ? { ConditionExpression: "attribute_not_exists(pk)" }
          : {
              ConditionExpression: "#version = :current",
              ExpressionAttributeNames: { "#version": "version" },
              ExpressionAttributeValues: { ":current": { N: String(v - 1) } },
            },
    },
    { item: event, condition: { ConditionExpression: "attribute_not_exists(pk)" } },
  ];
  if (layout.marker)
    puts.push({ item: marker, condition: { ConditionExpression: "attribute_not_exists(pk)" } });
  if (!layout.merged) puts.push({ item: projection });
  return puts.map(({ item, condition }) => ({
    Put: { TableName: tableName, Item: marshall(item), ...condition },
  }));
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const ddb = await useTestDynamoDb();
const { client } = ddb;

async function measure(layout: Layout): Promise<{ batched: number; loop: number }> {
  const tableName = await ddb.newTable(`layout-${randomBytes(3).toString("hex")}`);
  try {
    const docs = Array.from({ length: DOCS + LOOP_DOCS }, (_, i) => {
      const doc = `d${i}-${randomUUID().slice(0, 8)}`;
      return { doc, stream: `ws-${WS}/doc-${doc}`, shard: i % SHARDS };
    });
    // Seed version 1 of every document, unconditionally (BatchWriteItem, 25 items a request).
    const seedItems: WriteRequest[] = docs.flatMap((d) =>
      itemsOf(layout, tableName, d.stream, d.doc, d.shard, 1).map((t) => ({
        PutRequest: { Item: t.Put.Item },
      })),
    );
    await pool(Math.ceil(seedItems.length / 25), 8, async (g) => {
      let request: Record<string, WriteRequest[]> | undefined = {
        [tableName]: seedItems.slice(g * 25, g * 25 + 25),
      };
      while (request && Object.keys(request).length > 0) {
        const out: BatchWriteItemCommandOutput = await client.send(
          new BatchWriteItemCommand({ RequestItems: request }),
        );
        request = out.UnprocessedItems;
      }
    });
    const batchedDocs = docs.slice(0, DOCS);
    const loopDocs = docs.slice(DOCS);

    // Batched: per page of 50, one census Query and one BatchGetItem of the current events; then 2 transactions.
    const pages = Math.ceil(batchedDocs.length / PAGE);
    const batchedSeconds = await pool(pages, IN_FLIGHT / 2, async (p) => {
      const page = batchedDocs.slice(p * PAGE, (p + 1) * PAGE);
      await client.send(
        new QueryCommand({
          TableName: tableName,
          IndexName: CENSUS_BY_KEY_ID_INDEX,
          KeyConditionExpression: "gsi1pk = :pk",
          ExpressionAttributeValues: { ":pk": { S: `census#${WS}#${keyId(1)}#${p % SHARDS}` } },
          Limit: PAGE,
        }),
      );
      const keys: Record<string, AttributeValue>[] = page.map((d) =>
        marshall({ pk: d.stream, sk: "e#0000000001" }),
      );
      await client.send(
        new BatchGetItemCommand({ RequestItems: { [tableName]: { Keys: keys, ConsistentRead: true } } }),
      );
      for (let g = 0; g * GROUP < page.length; g++) {
        await client.send(
          new TransactWriteItemsCommand({
            TransactItems: page
              .slice(g * GROUP, (g + 1) * GROUP)
              .flatMap((d) => itemsOf(layout, tableName, d.stream, d.doc, d.shard, 2)),
          }),
        );
      }
    });

    // Loop: one document at a time, as the naive loop's requests.
    const loopSeconds = await pool(loopDocs.length, 1, async (i) => {
      const d = loopDocs[i]!;
      await client.send(
        new GetItemCommand({
          TableName: tableName,
          Key: marshall({ pk: d.stream, sk: "head" }),
          ConsistentRead: true,
        }),
      );
      await client.send(
        new QueryCommand({
          TableName: tableName,
          KeyConditionExpression: "pk = :pk AND begins_with(sk, :e)",
          ExpressionAttributeValues: { ":pk": { S: d.stream }, ":e": { S: "e#" } },
          ConsistentRead: true,
        }),
      );
      await client.send(
        new QueryCommand({
          TableName: tableName,
          KeyConditionExpression: "pk = :pk AND sk >= :head",
          ExpressionAttributeValues: { ":pk": { S: d.stream }, ":head": { S: "head" } },
          ConsistentRead: true,
        }),
      );
      await client.send(
        new TransactWriteItemsCommand({
          TransactItems: itemsOf(layout, tableName, d.stream, d.doc, d.shard, 2),
        }),
      );
    });
    return { batched: batchedDocs.length / batchedSeconds, loop: loopDocs.length / loopSeconds };
  } finally {
    await deleteEventStoreTable(client, tableName).catch(() => undefined);
  }
}

const results = new Map<string, { batched: number[]; loop: number[] }>(
  LAYOUTS.map((l) => [l.name, { batched: [], loop: [] }]),
);
try {
  await measure(LAYOUTS[0]!); // warm-up: the JVM's JIT, not counted
  for (let round = 0; round < ROUNDS; round++) {
    for (const layout of LAYOUTS) {
      const r = await measure(layout);
      results.get(layout.name)!.batched.push(r.batched);
      results.get(layout.name)!.loop.push(r.loop);
      process.stderr.write(
        `  [round ${round + 1}/${ROUNDS}] ${layout.name}: batched ${r.batched.toFixed(0)}, loop ${r.loop.toFixed(0)} docs/s\n`,
      );
    }
  }
} finally {
  await ddb.cleanup();
}

const w = Math.max(...LAYOUTS.map((l) => l.name.length));
const lines = [
  `Re-wrap writes by store layout on DynamoDB Local: raw requests, ${DOCS.toLocaleString("en-US")} documents batched, ` +
    `${LOOP_DOCS} in the loop, ${ROUNDS} rounds, median (Node ${process.version}, ${cpus().length} CPUs)`,
  "",
  `${"layout".padEnd(w)} | batched docs/s | loop docs/s | batched / loop | batched vs today`,
  `${"-".repeat(w)}-|----------------|-------------|----------------|-----------------`,
];
const today = median(results.get(LAYOUTS[0]!.name)!.batched);
for (const layout of LAYOUTS) {
  const r = results.get(layout.name)!;
  const b = median(r.batched);
  const l = median(r.loop);
  lines.push(
    `${layout.name.padEnd(w)} | ${b.toFixed(0).padStart(14)} | ${l.toFixed(0).padStart(11)} | ` +
      `${(b / l).toFixed(2).padStart(13)}x | ${((b / today) * 100).toFixed(0).padStart(15)}%`,
  );
}
process.stdout.write(`${lines.join("\n")}\n`);
process.exit(0);
