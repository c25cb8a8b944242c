/**
 * The EventStore contract against DynamoDB Local (or LocalStack when AWS_ENDPOINT_URL is set), plus checks of the
 * DynamoDB adapter itself: the table shape, the item layout, corruption detection, error translation, census
 * shard layouts, and the write rate this engine gives.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  DeleteItemCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
} from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, TransactWriteCommand } from "@aws-sdk/lib-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import { startDynamoDbLocal, type RunningDynamoDbLocal } from "../../cli/local/dynamodb-local.js";
import {
  DynamoDbEventStore,
  type DynamoDbEventStoreOptions,
} from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { translateCancellation, translateDynamoDbError } from "../../core/adapters/dynamodb/errors.js";
import {
  CENSUS_BY_KEY_ID_INDEX,
  KEY_IDS_IN_USE_INDEX,
  createEventStoreTable,
  deleteEventStoreTable,
  eventStoreTableDefinition,
} from "../../core/adapters/dynamodb/table.js";
import {
  EventStoreConfigError,
  EventStoreCorruptionError,
  EventStoreOperationError,
  EventStoreUnavailableError,
  InvalidCursorError,
  InvalidEventError,
  MAX_EVENTS_PER_APPEND,
  censusShard,
  documentStreamId,
  newEvent,
  parseStreamId,
  projectDocument,
  sameDocumentProjection,
  workspaceStreamId,
  type EventStore,
  type StreamAppend,
} from "../../core/eventstore/index.js";
import {
  eventStoreContract,
  keyId,
  lifecycle,
  listAllByKeyId,
  mapLimit,
  readAll,
  uniqueWorkspace,
  wrapRecord,
} from "../contract/event-store.contract.js";

let local: RunningDynamoDbLocal | undefined;
let client: DynamoDBClient;

function makeClient(
  endpoint: string,
  extra: Partial<ConstructorParameters<typeof DynamoDBClient>[0]> = {},
): DynamoDBClient {
  const credentials = process.env.AWS_ACCESS_KEY_ID
    ? undefined
    : { accessKeyId: "amklocal", secretAccessKey: "amklocal" }; // DynamoDB Local accepts letters and digits only
  return new DynamoDBClient({
    endpoint,
    region: process.env.AWS_REGION ?? "us-east-1",
    ...(credentials ? { credentials } : {}),
    ...extra,
  });
}

before(async () => {
  let endpoint = process.env.AWS_ENDPOINT_URL ?? process.env.AMK_DYNAMODB_ENDPOINT;
  if (!endpoint) {
    local = await startDynamoDbLocal();
    endpoint = local.endpoint;
  }
  client = makeClient(endpoint);
});

after(async () => {
  client?.destroy();
  await local?.stop();
});

const tableName = (): string => `amk-events-test-${randomUUID().slice(0, 12)}`;

async function freshStore(
  options: Partial<DynamoDbEventStoreOptions> = {},
): Promise<{ store: DynamoDbEventStore; table: string; teardown(): Promise<void> }> {
  const table = tableName();
  await createEventStoreTable(client, table);
  const store = new DynamoDbEventStore({ client, tableName: table, ...options });
  return { store, table, teardown: () => deleteEventStoreTable(client, table) };
}

/**
 * A document client that records the item count of every transaction it sends and, for each queued `before`
 * hook, runs it first: a hook may write through another client, or return an error to fail the transaction with.
 */
function spyingDocClient(): {
  doc: DynamoDBDocumentClient;
  spy: { transactions: number[]; before: ((items: number) => Promise<Error | undefined>)[] };
} {
  const doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  const spy = {
    transactions: [] as number[],
    before: [] as ((items: number) => Promise<Error | undefined>)[],
  };
  const send = doc.send.bind(doc) as (command: unknown) => Promise<unknown>;
  (doc as unknown as { send: (command: unknown) => Promise<unknown> }).send = async (command) => {
    if (command instanceof TransactWriteCommand) {
      const items = command.input.TransactItems?.length ?? 0;
      spy.transactions.push(items);
      const failure = await spy.before.shift()?.(items);
      if (failure) throw failure;
    }
    return send(command);
  };
  return { doc, spy };
}

async function scanTable(table: string): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  let startKey: Record<string, never> | undefined;
  do {
    const out = await client.send(
      new ScanCommand({ TableName: table, ExclusiveStartKey: startKey, ConsistentRead: true }),
    );
    items.push(...(out.Items ?? []).map((i) => unmarshall(i)));
    startKey = out.LastEvaluatedKey as Record<string, never> | undefined;
  } while (startKey !== undefined);
  return items;
}

/**
 * Raw-table invariants, seen without the port: every projection item equals the fold of its stream, every marker
 * points at the event with its id, every head equals its stream's last event, every event has a marker.
 */
async function assertTableInvariants(store: EventStore, table: string): Promise<void> {
  const items = await scanTable(table);
  const events = new Map<string, Record<string, unknown>>();
  for (const i of items.filter((i) => i.kind === "event"))
    events.set(`${String(i.streamId)}@${String(i.version)}`, i);
  const markers = items.filter((i) => i.kind === "eventId");
  for (const m of markers) {
    const e = events.get(`${String(m.streamId)}@${String(m.version)}`);
    assert.equal(e?.eventId, m.eventId, `marker ${String(m.pk)} points at its event`);
  }
  assert.equal(markers.length, events.size, "one marker per event");
  for (const h of items.filter((i) => i.kind === "head")) {
    const stream = await readAll(store, String(h.streamId));
    assert.equal(stream.length, h.version, `head of ${String(h.streamId)}`);
  }
  for (const p of items.filter((i) => i.kind === "projection")) {
    const streamId = String(p.pk);
    const parsed = parseStreamId(streamId);
    assert.equal(parsed.kind, "document");
    const folded = projectDocument(await readAll(store, streamId));
    const stored = await store.getDocumentProjection(String(p.workspaceId), String(p.documentId));
    assert.ok(sameDocumentProjection(folded, stored), `projection item of ${streamId}`);
  }
}

eventStoreContract("DynamoDB", async () => {
  const { store, table, teardown } = await freshStore();
  return {
    store,
    teardown: async () => {
      await assertTableInvariants(store, table);
      await teardown();
    },
  };
});

describe("DynamoDbEventStore (adapter)", () => {
  it("creates the table with exactly the fixed shape", async () => {
    const table = tableName();
    try {
      const described = await createEventStoreTable(client, table);
      const { Table } = await client.send(new DescribeTableCommand({ TableName: table }));
      assert.ok(Table);
      assert.equal(described.TableName, table);
      assert.deepEqual(Table.KeySchema, [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ]);
      const gsis = (Table.GlobalSecondaryIndexes ?? [])
        .map((g) => ({ name: g.IndexName, keys: g.KeySchema, projection: g.Projection?.ProjectionType }))
        .sort((a, b) => String(a.name).localeCompare(String(b.name)));
      assert.deepEqual(gsis, [
        {
          name: CENSUS_BY_KEY_ID_INDEX,
          keys: [
            { AttributeName: "gsi1pk", KeyType: "HASH" },
            { AttributeName: "gsi1sk", KeyType: "RANGE" },
          ],
          projection: "ALL",
        },
        {
          name: KEY_IDS_IN_USE_INDEX,
          keys: [
            { AttributeName: "gsi2pk", KeyType: "HASH" },
            { AttributeName: "gsi2sk", KeyType: "RANGE" },
          ],
          projection: "ALL",
        },
      ]);
      const types = Object.fromEntries(
        (Table.AttributeDefinitions ?? []).map((a) => [a.AttributeName, a.AttributeType]),
      );
      assert.deepEqual(types, { pk: "S", sk: "S", gsi1pk: "S", gsi1sk: "S", gsi2pk: "S", gsi2sk: "S" });
      assert.equal(eventStoreTableDefinition(table).BillingMode, "PAY_PER_REQUEST");
      if (Table.BillingModeSummary) assert.equal(Table.BillingModeSummary.BillingMode, "PAY_PER_REQUEST");
    } finally {
      await deleteEventStoreTable(client, table);
    }
  });

  it("lays items out as documented: events, head, markers, projection with sharded census keys", async () => {
    const { store, table, teardown } = await freshStore();
    try {
      const ws = uniqueWorkspace();
      const doc = randomUUID();
      const stream = documentStreamId(ws, doc);
      const record = wrapRecord(ws, doc, 3);
      await store.appendToStream(stream, [record], { expectedVersion: "no_stream" });
      const get = async (pk: string, sk: string) => {
        const out = await client.send(
          new GetItemCommand({
            TableName: table,
            Key: { pk: { S: pk }, sk: { S: sk } },
            ConsistentRead: true,
          }),
        );
        return out.Item ? unmarshall(out.Item) : undefined;
      };
      const event = await get(stream, "e#0000000001");
      assert.equal(event?.eventId, record.eventId);
      assert.deepEqual(JSON.parse(String(event?.data)), record.data);
      assert.equal((await get(stream, "head"))?.version, 1);
      assert.deepEqual(
        { ...(await get(`eid#${record.eventId}`, "eid")) },
        {
          pk: `eid#${record.eventId}`,
          sk: "eid",
          kind: "eventId",
          eventId: record.eventId,
          streamId: stream,
          version: 1,
          recordedAt: event?.recordedAt,
        },
      );
      const shard = censusShard(doc, 16);
      const projection = await get(stream, "projection");
      assert.equal(projection?.gsi1pk, `census#${ws}#${keyId(ws, 3)}#${shard}`);
      assert.equal(projection?.gsi1sk, doc);
      assert.equal(projection?.gsi2pk, `keys#${ws}#${shard}`);
      assert.equal(projection?.gsi2sk, `${keyId(ws, 3)}#${doc}`);
      assert.equal(projection?.shard, shard);

      // A deleted document leaves both census indexes (sparse: no index keys on the item).
      await store.appendToStream(stream, [lifecycle("DocumentDeleted", ws, doc)], { expectedVersion: 1 });
      const deleted = await get(stream, "projection");
      assert.equal(deleted?.status, "deleted");
      for (const k of ["gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]) assert.equal(deleted?.[k], undefined, k);
      // The event items were written once and never touched again.
      assert.deepEqual(await get(stream, "e#0000000001"), event);
      await assertTableInvariants(store, table);
    } finally {
      await teardown();
    }
  });

  it("detects corruption instead of repairing it: a lost event, an item beyond the head", async () => {
    const { store, table, teardown } = await freshStore();
    try {
      const stream = workspaceStreamId(uniqueWorkspace());
      const events = [1, 2, 3].map((i) => newEvent("Thing", { i }));
      await store.appendToStream(stream, events, { expectedVersion: "no_stream" });
      await client.send(
        new DeleteItemCommand({ TableName: table, Key: { pk: { S: stream }, sk: { S: "e#0000000002" } } }),
      );
      await assert.rejects(store.readStream(stream), EventStoreCorruptionError);

      // Somebody wrote an event item past the head: the append fails and does not overwrite it.
      const stream2 = workspaceStreamId(uniqueWorkspace());
      await store.appendToStream(stream2, [newEvent("Thing", {})], { expectedVersion: "no_stream" });
      const stray = {
        pk: { S: stream2 },
        sk: { S: "e#0000000002" },
        kind: { S: "event" },
        note: { S: "stray" },
      };
      await client.send(new PutItemCommand({ TableName: table, Item: stray }));
      await assert.rejects(
        store.appendToStream(stream2, [newEvent("Thing", {})], { expectedVersion: 1 }),
        EventStoreCorruptionError,
      );
      const kept = await client.send(
        new GetItemCommand({ TableName: table, Key: { pk: stray.pk, sk: stray.sk }, ConsistentRead: true }),
      );
      assert.equal(kept.Item?.note?.S, "stray");
    } finally {
      await teardown();
    }
  });

  it('retries internally for "any" under contention: 16 writers, all appended, no gap', async () => {
    const { store, teardown } = await freshStore();
    try {
      const stream = workspaceStreamId(uniqueWorkspace());
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          store.appendToStream(stream, [newEvent("Tick", { i })], { expectedVersion: "any" }),
        ),
      );
      assert.deepEqual(
        results.map((r) => r.nextExpectedVersion).sort((a, b) => a - b),
        Array.from({ length: 16 }, (_, i) => i + 1),
      );
      assert.equal((await readAll(store, stream)).length, 16);
    } finally {
      await teardown();
    }
  });

  it("works with any shard count and refuses a cursor of another shard layout", async () => {
    const table = tableName();
    await createEventStoreTable(client, table);
    try {
      const ws = uniqueWorkspace();
      const mk = keyId(ws, 1);
      const three = new DynamoDbEventStore({ client, tableName: table, censusShards: 3 });
      const docs = Array.from({ length: 25 }, () => randomUUID());
      await mapLimit(docs, 8, (doc) =>
        three.appendToStream(documentStreamId(ws, doc), [wrapRecord(ws, doc, 1)], {
          expectedVersion: "no_stream",
        }),
      );
      assert.equal(await three.countDocumentsByKeyId(ws, mk), 25);
      assert.deepEqual(new Set((await listAllByKeyId(three, ws, mk, 4)).ids), new Set(docs));
      const page = await three.listDocumentsByKeyId(ws, mk, { limit: 2 });
      assert.ok(page.cursor);
      const sixteen = new DynamoDbEventStore({ client, tableName: table, censusShards: 16 });
      await assert.rejects(
        sixteen.listDocumentsByKeyId(ws, mk, { limit: 2, cursor: page.cursor }),
        InvalidCursorError,
      );
      assert.throws(() => new DynamoDbEventStore({ client, tableName: table, censusShards: 0 }), RangeError);
    } finally {
      await deleteEventStoreTable(client, table);
    }
  });

  it("accepts an injected document client", async () => {
    const { table, teardown } = await freshStore();
    try {
      const store = new DynamoDbEventStore({ client: DynamoDBDocumentClient.from(client), tableName: table });
      const stream = workspaceStreamId(uniqueWorkspace());
      await store.appendToStream(stream, [newEvent("Thing", { ok: true })], { expectedVersion: "no_stream" });
      assert.deepEqual((await readAll(store, stream))[0]?.data, { ok: true });
    } finally {
      await teardown();
    }
  });

  it("translates SDK failures: missing table, unreachable endpoint, throttling, 5xx, cancellations", async () => {
    const missing = new DynamoDbEventStore({ client, tableName: `amk-missing-${randomUUID().slice(0, 8)}` });
    const stream = workspaceStreamId(uniqueWorkspace());
    await assert.rejects(missing.readStream(stream), EventStoreConfigError);
    await assert.rejects(
      missing.appendToStream(stream, [newEvent("Thing", {})], { expectedVersion: "no_stream" }),
      EventStoreConfigError,
    );

    const deadClient = makeClient("http://127.0.0.1:9", { maxAttempts: 1 });
    try {
      const dead = new DynamoDbEventStore({ client: deadClient, tableName: "amk-nowhere" });
      await assert.rejects(dead.readStream(stream), (err: unknown) => {
        assert.ok(err instanceof EventStoreUnavailableError, String(err));
        assert.equal(err.retryable, true);
        return true;
      });
    } finally {
      deadClient.destroy();
    }

    const op = "appendToStream";
    const cases: [unknown, abstract new (...a: never[]) => Error][] = [
      [
        { name: "ProvisionedThroughputExceededException", $metadata: { httpStatusCode: 400 } },
        EventStoreUnavailableError,
      ],
      [{ name: "ThrottlingException", $retryable: { throttling: true } }, EventStoreUnavailableError],
      [{ name: "RequestLimitExceeded" }, EventStoreUnavailableError],
      [{ name: "InternalServerError", $metadata: { httpStatusCode: 500 } }, EventStoreUnavailableError],
      [{ name: "SomethingNew", $metadata: { httpStatusCode: 503 } }, EventStoreUnavailableError],
      [Object.assign(new Error("socket"), { code: "ECONNRESET" }), EventStoreUnavailableError],
      [{ name: "ResourceNotFoundException", $metadata: { httpStatusCode: 400 } }, EventStoreConfigError],
      [{ name: "AccessDeniedException" }, EventStoreConfigError],
      [{ name: "ValidationException", $metadata: { httpStatusCode: 400 } }, EventStoreOperationError],
    ];
    for (const [err, type] of cases) {
      const translated = translateDynamoDbError(err, op);
      assert.ok(translated instanceof type, `${JSON.stringify(err)} -> ${translated.name}`);
      assert.equal(translated.cause, err);
      assert.equal(translated.context.operation, op);
    }
    assert.ok(
      translateCancellation(["None", "TransactionConflict"], {}, op, {}) instanceof
        EventStoreUnavailableError,
    );
    assert.ok(translateCancellation(["ThrottlingError"], {}, op, {}) instanceof EventStoreUnavailableError);
    assert.ok(translateCancellation(["ValidationError"], {}, op, {}) instanceof EventStoreOperationError);
  });

  it("measures the append rate on this engine (documents' first wrap record, one transaction each)", async (t) => {
    const { store, teardown } = await freshStore();
    try {
      const ws = uniqueWorkspace();
      const run = async (count: number, concurrency: number) => {
        const docs = Array.from({ length: count }, () => randomUUID());
        const started = process.hrtime.bigint();
        await mapLimit(docs, concurrency, (doc) =>
          store.appendToStream(documentStreamId(ws, doc), [wrapRecord(ws, doc, 1)], {
            expectedVersion: "no_stream",
          }),
        );
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        return count / seconds;
      };
      await run(20, 4); // warm-up
      const c1 = await run(60, 1);
      const c16 = await run(400, 16);
      t.diagnostic(
        `appends/s (1 wrap record, 3-4 items per transaction): concurrency 1: ${c1.toFixed(0)}, concurrency 16: ${c16.toFixed(0)}`,
      );
      assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 1)), 480);
    } finally {
      await teardown();
    }
  });

  // ------------------------------------------------------------------------------------------------------------
  // appendToStreams: what the port cannot show (transactions, cancellation reasons, transient cancellations)

  it("appendToStreams packs appends into transactions within DynamoDB's limits", async () => {
    const { doc, spy } = spyingDocClient();
    const { table, teardown } = await freshStore();
    try {
      const store = new DynamoDbEventStore({ client: doc, tableName: table });
      const ws = uniqueWorkspace();
      const firstWraps = (n: number) =>
        Array.from({ length: n }, () => {
          const d = randomUUID();
          return {
            streamId: documentStreamId(ws, d),
            events: [wrapRecord(ws, d, 1)],
            expectedVersion: "no_stream" as const,
          };
        });
      // 60 appends of 4 items (head, event, marker, projection): 25 + 25 + 10.
      await store.appendToStreams(firstWraps(60));
      assert.deepEqual(spy.transactions.splice(0), [100, 100, 40]);
      // At most 7 appends a transaction.
      await store.appendToStreams(firstWraps(60), { maxPerTransaction: 7 });
      assert.deepEqual(spy.transactions.splice(0), [...Array.from({ length: 8 }, () => 28), 16]);
      // Full batches (1 + 2 x 49 + 1 = 100 items) each take a transaction of their own; small ones share one.
      const big = Array.from({ length: 3 }, () => {
        const d = randomUUID();
        return {
          streamId: documentStreamId(ws, d),
          events: [
            wrapRecord(ws, d, 1),
            ...Array.from({ length: MAX_EVENTS_PER_APPEND - 1 }, (_, i) => newEvent("DocumentViewed", { i })),
          ],
          expectedVersion: "no_stream" as const,
        };
      });
      const small = firstWraps(4);
      const order: [StreamAppend[], number][] = [
        [small, 0],
        [big, 0],
        [big, 1],
        [small, 1],
        [small, 2],
        [big, 2],
        [small, 3],
      ];
      const outcomes = await store.appendToStreams(order.map(([list, i]) => list[i] as StreamAppend));
      assert.ok(outcomes.every((o) => o.status === "appended"));
      assert.deepEqual(spy.transactions.splice(0), [4, 100, 100, 8, 100, 4]);
      assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 1)), 127);
      await assertTableInvariants(store, table);
    } finally {
      await teardown();
    }
  });

  it("appendToStreams uses the cancellation reasons when writers get in between its read and its transaction", async () => {
    const { doc, spy } = spyingDocClient();
    const { table, teardown } = await freshStore();
    try {
      const store = new DynamoDbEventStore({ client: doc, tableName: table });
      const other = new DynamoDbEventStore({ client, tableName: table });
      const ws = uniqueWorkspace();
      const docs = Array.from({ length: 10 }, () => randomUUID());
      const streamOf = (i: number) => documentStreamId(ws, docs[i] as string);
      await store.appendToStreams(
        docs.map((d, i) => ({ streamId: streamOf(i), events: [wrapRecord(ws, d, 1)], expectedVersion: 0 })),
      );
      spy.transactions.splice(0);
      const appends: StreamAppend[] = docs.map((d, i) => ({
        streamId: streamOf(i),
        events: [wrapRecord(ws, d, 2)],
        expectedVersion: i === 7 ? "any" : i === 9 ? "stream_exists" : 1,
      }));
      const stored = (i: number) => [lifecycle("DocumentStored", ws, docs[i] as string)];
      // After the heads were read, before the transaction: others append to 2, 7 and 9, and a lost response's
      // retry commits append 5 exactly.
      spy.before.push(async () => {
        await other.appendToStream(streamOf(2), stored(2), { expectedVersion: 1 });
        await other.appendToStream(streamOf(5), appends[5]?.events ?? [], { expectedVersion: 1 });
        await other.appendToStream(streamOf(7), stored(7), { expectedVersion: 1 });
        await other.appendToStream(streamOf(9), stored(9), { expectedVersion: 1 });
        return undefined;
      });
      const outcomes = await store.appendToStreams(appends);
      const summary = outcomes.map((o) =>
        o.status === "conflict" ? [o.status, o.error.expected, o.error.actual] : [o.status, o.firstVersion],
      );
      assert.deepEqual(summary, [
        ["appended", 2],
        ["appended", 2],
        ["conflict", 1, 2],
        ["appended", 2],
        ["appended", 2],
        ["replayed", 2],
        ["appended", 2],
        ["appended", 3],
        ["appended", 2],
        ["appended", 3],
      ]);
      assert.ok(spy.transactions.length >= 2, "the rest of the cancelled transaction went again");
      assert.equal(spy.transactions[0], 40);
      assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 2)), 9);
      assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 1)), 1);
      await assertTableInvariants(store, table);

      // An event item beyond a head (written outside the store) is corruption, as for appendToStream.
      await client.send(
        new PutItemCommand({
          TableName: table,
          Item: {
            pk: { S: streamOf(0) },
            sk: { S: "e#0000000003" },
            kind: { S: "event" },
            note: { S: "stray" },
          },
        }),
      );
      await assert.rejects(
        store.appendToStreams([
          { streamId: streamOf(0), events: stored(0), expectedVersion: 2 },
          { streamId: streamOf(1), events: stored(1), expectedVersion: 2 },
        ]),
        EventStoreCorruptionError,
      );
      const kept = await client.send(
        new GetItemCommand({
          TableName: table,
          Key: { pk: { S: streamOf(0) }, sk: { S: "e#0000000003" } },
          ConsistentRead: true,
        }),
      );
      assert.equal(kept.Item?.note?.S, "stray");
    } finally {
      await teardown();
    }
  });

  it("appendToStreams with a knownProjection writes without reading first, and never trusts the hint", async () => {
    const { table, teardown } = await freshStore();
    try {
      // A document client that counts the requests it sends, by command.
      const doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
      const sent: string[] = [];
      const send = doc.send.bind(doc) as (command: unknown) => Promise<unknown>;
      (doc as unknown as { send: (command: unknown) => Promise<unknown> }).send = (command) => {
        sent.push((command as object).constructor.name);
        return send(command);
      };
      const store = new DynamoDbEventStore({ client: doc, tableName: table });
      const other = new DynamoDbEventStore({ client, tableName: table });
      const ws = uniqueWorkspace();
      const docs = Array.from({ length: 6 }, () => randomUUID());
      const streamOf = (i: number) => documentStreamId(ws, docs[i] as string);
      await store.appendToStreams(
        docs.map((d, i) => ({
          streamId: streamOf(i),
          events: [wrapRecord(ws, d, 1)],
          expectedVersion: "no_stream",
        })),
      );
      const read = async (i: number) => {
        const p = await store.getDocumentProjection(ws, docs[i] as string);
        assert.ok(p);
        return p;
      };
      const rewrap = async (i: number): Promise<StreamAppend> => {
        const p = await read(i);
        return {
          streamId: streamOf(i),
          events: [wrapRecord(ws, docs[i] as string, 2)],
          expectedVersion: p.version,
          knownProjection: p,
        };
      };

      // Good hints: one transaction, no read at all.
      const clean = [await rewrap(0), await rewrap(1)];
      sent.splice(0);
      const first = await store.appendToStreams(clean);
      assert.deepEqual(
        first.map((o) => o.status),
        ["appended", "appended"],
      );
      assert.deepEqual(sent, ["TransactWriteCommand"]);
      for (const i of [0, 1]) {
        const p = await read(i);
        assert.equal(p.keyId, keyId(ws, 2));
        assert.equal(p.keysVersion, 2);
        assert.equal(p.version, 2);
      }

      // A stale hint (the head moved since) is a conflict, and the good append of the same call still goes.
      const stale = await rewrap(2);
      await other.appendToStream(streamOf(2), [lifecycle("DocumentStored", ws, docs[2] as string)], {
        expectedVersion: 1,
      });
      const mixed = await store.appendToStreams([stale, await rewrap(3)]);
      assert.deepEqual(
        mixed.map((o) => (o.status === "conflict" ? [o.status, o.error.actual] : [o.status, o.firstVersion])),
        [
          ["conflict", 2],
          ["appended", 2],
        ],
      );
      assert.equal((await read(2)).keyId, keyId(ws, 1), "nothing of the stale append was written");
      assert.equal((await read(3)).keyId, keyId(ws, 2));

      // A hint at the right version with other content is caught by the condition on the stored projection, alone
      // in its transaction; the append is then written on what the store reads. Two forgeries: one that changes
      // what the new projection would be, one ("deleted") under which the fold would leave the projection as is.
      for (const [i, forgery] of [
        [4, { keyId: keyId(ws, 7) }],
        [5, { status: "deleted" as const }],
      ] as const) {
        const honest = await rewrap(i);
        sent.splice(0);
        const [outcome] = await store.appendToStreams([
          { ...honest, knownProjection: { ...honest.knownProjection!, ...forgery } },
        ]);
        assert.equal(outcome?.status, "appended");
        assert.deepEqual(sent.slice(0, 2), ["TransactWriteCommand", "BatchGetCommand"], "refused, then read");
        const stored = await read(i);
        assert.equal(stored.keyId, keyId(ws, 2), `doc ${i}: the projection follows the stream`);
        assert.equal(stored.status, "pending", `doc ${i}: the forged status was not written`);
        assert.ok(sameDocumentProjection(projectDocument(await readAll(store, streamOf(i))), stored));
      }

      // Repeating a committed call is a replay, hint or not.
      const again = await store.appendToStreams(clean);
      assert.deepEqual(
        again.map((o) => [o.status, o.status === "conflict" ? 0 : o.firstVersion]),
        [
          ["replayed", 2],
          ["replayed", 2],
        ],
      );

      // Bad hints are bad input: refused before anything is written.
      const five = await rewrap(2);
      const bad: [string, StreamAppend][] = [
        ["another document", { ...five, knownProjection: await read(0) }],
        ["a version other than expectedVersion", { ...five, expectedVersion: 0 }],
        ["an expectedVersion that is not a number", { ...five, expectedVersion: "any" }],
        [
          "a workspace stream",
          {
            streamId: workspaceStreamId(ws),
            events: [newEvent("WorkspaceNoted", { note: "a workspace event" })],
            expectedVersion: 1,
            knownProjection: five.knownProjection!,
          },
        ],
        [
          "an unknown status",
          { ...five, knownProjection: { ...five.knownProjection!, status: "lost" as "stored" } },
        ],
      ];
      for (const [what, append] of bad) {
        await assert.rejects(
          store.appendToStreams([await rewrap(1), append]),
          (err: unknown) => err instanceof InvalidEventError && /knownProjection/.test(err.message),
          what,
        );
      }
      assert.equal((await read(2)).version, 2, "nothing was written by the refused calls");
      assert.equal((await read(1)).version, 2);
      await assertTableInvariants(store, table);
    } finally {
      await teardown();
    }
  });

  it("appendToStreams retries transient cancellations with backoff and translates the others", async () => {
    const { doc, spy } = spyingDocClient();
    const { table, teardown } = await freshStore();
    try {
      const retry = { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 };
      const store = new DynamoDbEventStore({ client: doc, tableName: table, retry });
      const ws = uniqueWorkspace();
      const appendsOf = (n: number): StreamAppend[] =>
        Array.from({ length: n }, () => {
          const d = randomUUID();
          return {
            streamId: documentStreamId(ws, d),
            events: [wrapRecord(ws, d, 1)],
            expectedVersion: "no_stream",
          };
        });
      const cancelled = (code: string, at: number) => async (items: number) =>
        Object.assign(new Error("Transaction cancelled"), {
          name: "TransactionCanceledException",
          CancellationReasons: Array.from({ length: items }, (_, i) => ({ Code: i === at ? code : "None" })),
        });

      spy.before.push(cancelled("TransactionConflict", 4));
      const first = appendsOf(5);
      const outcomes = await store.appendToStreams(first);
      assert.deepEqual(
        outcomes.map((o) => o.status),
        first.map(() => "appended"),
      );
      assert.deepEqual(spy.transactions.splice(0), [20, 20]);

      spy.before.push(cancelled("ValidationError", 0));
      const second = appendsOf(3);
      await assert.rejects(store.appendToStreams(second), EventStoreOperationError);
      spy.before.push(
        // The same append (items 0-3) is named three times: out of attempts.
        cancelled("ThrottlingError", 2),
        cancelled("TransactionConflict", 0),
        cancelled("TransactionConflict", 1),
      );
      await assert.rejects(store.appendToStreams(second), (err: unknown) => {
        assert.ok(err instanceof EventStoreUnavailableError, String(err));
        assert.equal(err.retryable, true);
        return true;
      });
      for (const a of second) assert.equal((await store.readStream(a.streamId)).currentVersion, undefined);
      spy.before.splice(0);
      assert.ok((await store.appendToStreams(second)).every((o) => o.status === "appended"));
      await assertTableInvariants(store, table);
    } finally {
      await teardown();
    }
  });

  it("measures documents/s: single appends at concurrency 16 vs appendToStreams in groups of 20 at concurrency 4", async (t) => {
    const { store, teardown } = await freshStore();
    try {
      const ws = uniqueWorkspace();
      const firstWrap = () => {
        const d = randomUUID();
        return {
          streamId: documentStreamId(ws, d),
          events: [wrapRecord(ws, d, 1)],
          expectedVersion: "no_stream" as const,
        };
      };
      const single = async (count: number, concurrency: number) => {
        const appends = Array.from({ length: count }, firstWrap);
        const started = process.hrtime.bigint();
        await mapLimit(appends, concurrency, (a) => store.appendToStream(a.streamId, a.events, a));
        return count / (Number(process.hrtime.bigint() - started) / 1e9);
      };
      const grouped = async (count: number, size: number, concurrency: number) => {
        const groups = Array.from({ length: Math.ceil(count / size) }, () =>
          Array.from({ length: size }, firstWrap),
        );
        const started = process.hrtime.bigint();
        const outcomes = await mapLimit(groups, concurrency, (g) => store.appendToStreams(g));
        const rate = count / (Number(process.hrtime.bigint() - started) / 1e9);
        assert.ok(outcomes.flat().every((o) => o.status === "appended"));
        return rate;
      };
      await single(20, 4); // warm-up
      await grouped(40, 20, 2);
      const s16 = await single(500, 16);
      const g20 = await grouped(500, 20, 4);
      t.diagnostic(
        `documents/s (first wrap record each): 500 single appends at concurrency 16: ${s16.toFixed(0)}; ` +
          `500 via appendToStreams in groups of 20 at concurrency 4: ${g20.toFixed(0)} (x${(g20 / s16).toFixed(1)})`,
      );
      assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 1)), 1060);
    } finally {
      await teardown();
    }
  });
});
