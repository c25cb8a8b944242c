/**
 * The DynamoDB adapter's backup methods against DynamoDB Local: `listStreamHeads` (scope by workspace or table),
 * `isEmpty`, and `importEvents` (original metadata kept; heads, markers, projections and census rebuilt exactly as
 * appends write them; conditional, validated before any write).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ScanCommand } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import type { ImportRun, StreamHead } from "../../core/backup/ports.js";
import {
  EventIdConflictError,
  ExpectedVersionConflictError,
  InvalidEventError,
  InvalidStreamIdError,
  documentStreamId,
  newEvent,
  workspaceStreamId,
  type StoredEvent,
} from "../../core/eventstore/index.js";
import { keyId, lifecycle, uniqueWorkspace, wrapRecord } from "../contract/event-store.contract.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

let ddb: TestDynamoDb;

before(async () => {
  ddb = await useTestDynamoDb();
});
after(async () => {
  await ddb?.cleanup();
});

async function store(): Promise<DynamoDbEventStore> {
  return new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable("amk-bk-adapter") });
}

async function scan(table: string): Promise<string[]> {
  const items: string[] = [];
  let startKey: Record<string, never> | undefined;
  do {
    const out = await ddb.client.send(
      new ScanCommand({ TableName: table, ExclusiveStartKey: startKey, ConsistentRead: true }),
    );
    for (const i of out.Items ?? []) {
      const item = unmarshall(i);
      items.push(
        JSON.stringify(Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : 1)))),
      );
    }
    startKey = out.LastEvaluatedKey as Record<string, never> | undefined;
  } while (startKey !== undefined);
  return items.sort();
}

async function heads(s: DynamoDbEventStore, scope: Parameters<DynamoDbEventStore["listStreamHeads"]>[0]) {
  const all: StreamHead[] = [];
  for await (const page of s.listStreamHeads(scope)) all.push(...page);
  return all.sort((a, b) => (a.streamId < b.streamId ? -1 : 1));
}

/** A source with a long workspace stream (120 events: three chunks) and documents with several events each. */
async function history(s: DynamoDbEventStore, ws: string): Promise<string[]> {
  const wsStream = workspaceStreamId(ws);
  for (let v = 0; v < 120; v += 40) {
    const events = Array.from({ length: 40 }, (_, i) =>
      newEvent("DrillCompleted", { WorkspaceId: ws, DrillId: `d${v + i}`, Ok: true }),
    );
    await s.appendToStream(wsStream, events, { expectedVersion: v });
  }
  const streams = [wsStream];
  for (let d = 0; d < 12; d++) {
    const doc = `doc${d}`;
    const streamId = documentStreamId(ws, doc);
    streams.push(streamId);
    await s.appendToStream(streamId, [wrapRecord(ws, doc, 1)], { expectedVersion: "no_stream" });
    if (d % 2 === 0)
      await s.appendToStream(streamId, [lifecycle("DocumentStored", ws, doc)], { expectedVersion: 1 });
    if (d % 3 === 0) {
      const { currentVersion } = await s.readStream(streamId, { limit: 1 });
      await s.appendToStream(streamId, [wrapRecord(ws, doc, 2), lifecycle("DocumentDeleted", ws, doc)], {
        expectedVersion: currentVersion ?? 0,
      });
    }
  }
  return streams;
}

async function runsOf(s: DynamoDbEventStore, streams: readonly string[]): Promise<ImportRun[]> {
  return Promise.all(
    streams.map(async (streamId) => ({ streamId, events: (await s.readStream(streamId)).events })),
  );
}

describe("DynamoDbEventStore backup methods", () => {
  it("lists stream heads by workspace (not a workspace whose id starts the same) and for the whole table", async () => {
    const s = await store();
    assert.deepEqual(await heads(s, { kind: "table" }), []);
    const ws = uniqueWorkspace("lh");
    await history(s, ws);
    await s.appendToStream(documentStreamId(`${ws}x`, "d"), [wrapRecord(`${ws}x`, "d", 1)], {
      expectedVersion: "no_stream",
    });
    await s.appendToStream(workspaceStreamId(`${ws}x`), [newEvent("DrillCompleted", { Ok: true })], {
      expectedVersion: "no_stream",
    });
    const mine = await heads(s, { kind: "workspace", workspaceId: ws });
    assert.equal(mine.length, 13);
    assert.deepEqual(mine[0], { streamId: workspaceStreamId(ws), version: 120 });
    assert.deepEqual(mine[1], { streamId: documentStreamId(ws, "doc0"), version: 4 });
    assert.deepEqual(mine[2], { streamId: documentStreamId(ws, "doc1"), version: 1 });
    assert.ok(
      mine.every((h) => h.streamId === workspaceStreamId(ws) || h.streamId.startsWith(`ws-${ws}/doc-`)),
    );
    assert.equal((await heads(s, { kind: "table" })).length, 15);
  });

  it("tells an empty table from one with any item", async () => {
    const s = await store();
    assert.equal(await s.isEmpty(), true);
    await s.appendToStream(workspaceStreamId("e1"), [newEvent("DrillCompleted", { Ok: true })], {
      expectedVersion: "no_stream",
    });
    assert.equal(await s.isEmpty(), false);
  });

  it("imports events with their original metadata: the same items as the source, in one call or in pieces", async () => {
    const src = await store();
    const ws = uniqueWorkspace("imp");
    const streams = await history(src, ws);
    const runs = await runsOf(src, streams);
    const expected = await scan(src.tableName);

    const whole = await store();
    await whole.importEvents(runs);
    assert.deepEqual(await scan(whole.tableName), expected);

    // In pieces: the first 60 events of each run, then the rest (continuing from the stored head and projection).
    const pieces = await store();
    await pieces.importEvents(runs.map((r) => ({ streamId: r.streamId, events: r.events.slice(0, 2) })));
    await pieces.importEvents(
      runs
        .filter((r) => r.events.length > 2)
        .map((r) => ({ streamId: r.streamId, events: r.events.slice(2, 60) })),
    );
    await pieces.importEvents(
      runs
        .filter((r) => r.events.length > 60)
        .map((r) => ({ streamId: r.streamId, events: r.events.slice(60) })),
    );
    assert.deepEqual(await scan(pieces.tableName), expected);

    // The census and the projections are the source's; appends continue after the imported versions; an imported
    // event id is recognised as a replay.
    for (const v of [1, 2]) {
      assert.equal(
        await pieces.countDocumentsByKeyId(ws, keyId(ws, v)),
        await src.countDocumentsByKeyId(ws, keyId(ws, v)),
      );
    }
    assert.deepEqual(await pieces.listKeyIdsInUse(ws), await src.listKeyIdsInUse(ws));
    const doc1 = documentStreamId(ws, "doc1");
    const r = await pieces.appendToStream(doc1, [lifecycle("DocumentStored", ws, "doc1")], {
      expectedVersion: 1,
    });
    assert.deepEqual(r, { appended: true, firstVersion: 2, nextExpectedVersion: 2 });
    const first = runs[2]!.events[0]!;
    assert.equal(first.streamId, doc1);
    const replay = await pieces.appendToStream(doc1, [first], { expectedVersion: 2 });
    assert.deepEqual(replay, { appended: false, firstVersion: 1, nextExpectedVersion: 1 });
  });

  it("refuses runs that do not continue the target, and event ids already stored; nothing of them is written", async () => {
    const src = await store();
    const ws = uniqueWorkspace("cf");
    const streams = await history(src, ws);
    const runs = await runsOf(src, streams);
    const dst = await store();
    await dst.importEvents([runs[1]!]);
    const before = await scan(dst.tableName);

    // A run from version 1 to a stream that exists.
    await assert.rejects(dst.importEvents([runs[1]!]), ExpectedVersionConflictError);
    // A run that continues from a version the stream is not at.
    const doc2 = runs[3]!;
    assert.equal(doc2.events.length, 2);
    await assert.rejects(
      dst.importEvents([{ streamId: doc2.streamId, events: doc2.events.slice(1) }]),
      (err: Error) => err instanceof ExpectedVersionConflictError && /no_stream|0/.test(err.message),
    );
    // An event id already stored on another stream.
    const reused: StoredEvent = {
      ...runs[1]!.events[0]!,
      streamId: documentStreamId(ws, "fresh") as StoredEvent["streamId"],
    };
    const data = { ...reused.data, AggregateId: "fresh" };
    await assert.rejects(
      dst.importEvents([{ streamId: reused.streamId, events: [{ ...reused, data }] }]),
      EventIdConflictError,
    );
    assert.deepEqual(await scan(dst.tableName), before);
  });

  it("validates every run before writing anything", async () => {
    const src = await store();
    const ws = uniqueWorkspace("val");
    const streams = await history(src, ws);
    const runs = await runsOf(src, streams);
    const dst = await store();
    const good = runs[3]!;
    const e0 = good.events[0]!;
    const bad: [string, ImportRun[], new (...a: never[]) => Error][] = [
      [
        "a gap",
        [runs[2]!, { streamId: good.streamId, events: [e0, { ...good.events[1]!, version: 3 }] }],
        InvalidEventError,
      ],
      [
        "another stream's event",
        [runs[2]!, { streamId: good.streamId, events: [runs[4]!.events[0]!] }],
        InvalidEventError,
      ],
      [
        "a bad recordedAt",
        [runs[2]!, { streamId: good.streamId, events: [{ ...e0, recordedAt: "yesterday" }] }],
        InvalidEventError,
      ],
      ["two runs to one stream", [runs[2]!, runs[2]!], InvalidStreamIdError],
      [
        "a wrap record of another document",
        [
          runs[2]!,
          { streamId: good.streamId, events: [{ ...e0, data: { ...e0.data, AggregateId: "other" } }] },
        ],
        InvalidEventError,
      ],
      [
        "one event id twice",
        [runs[2]!, { streamId: good.streamId, events: [{ ...e0, eventId: runs[2]!.events[0]!.eventId }] }],
        InvalidEventError,
      ],
      ["an empty run", [runs[2]!, { streamId: good.streamId, events: [] }], InvalidEventError],
    ];
    for (const [what, input, error] of bad) {
      await assert.rejects(dst.importEvents(input), error, what);
    }
    assert.equal(await dst.isEmpty(), true);
    await dst.importEvents([]);
    assert.equal(await dst.isEmpty(), true);
  });
});
