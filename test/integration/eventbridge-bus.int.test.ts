/**
 * EventBridgeBus with the real @aws-sdk/client-eventbridge (AWS JSON 1.1) against a loopback server answering with
 * recorded PutEvents response shapes (test/fixtures/eventbridge): the entries sent, batching, re-sending entries
 * that failed with a retryable code, and the mapping of failures to EventBusError.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { EventBridgeBus } from "../../core/adapters/eventbridge/eventbridge-bus.js";
import { EVENT_SOURCE, EventBusError, type BusEvent } from "../../core/bus/event-bus.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import {
  FAKE_CREDENTIALS,
  jsonFixture,
  startReplayServer,
  type RecordedRequest,
  type ReplayResponse,
  type ReplayServer,
} from "../support/aws-replay-server.js";

interface SentEntry {
  Source: string;
  DetailType: string;
  Detail: string;
  EventBusName: string;
}
const entriesOf = (req: RecordedRequest): SentEntry[] =>
  (JSON.parse(req.body) as { Entries: SentEntry[] }).Entries;

/** A recorded PutEvents answer, its entries cut to as many as the request sent. */
function answer(name: string) {
  return (req: RecordedRequest): ReplayResponse => {
    const f = jsonFixture("eventbridge", name);
    const body = f.body as { FailedEntryCount: number; Entries: { ErrorCode?: string }[] };
    const entries = body.Entries.slice(0, entriesOf(req).length);
    assert.equal(entries.length, entriesOf(req).length, `${name} has enough entries`);
    return {
      ...f,
      body: { FailedEntryCount: entries.filter((e) => e.ErrorCode).length, Entries: entries },
    };
  };
}
const fixed = (name: string) => () => jsonFixture("eventbridge", name);

const event = (n: number, detail: Record<string, unknown> = { Epoch: n }): BusEvent => ({
  id: `evt-${String(n).padStart(3, "0")}`,
  detailType: "AccessTokensInvalidated",
  workspaceId: "acme-7",
  detail,
});

describe("EventBridgeBus (recorded EventBridge shapes)", () => {
  let server: ReplayServer;
  let client: EventBridgeClient;
  let bus: EventBridgeBus;

  before(async () => {
    server = await startReplayServer();
    client = new EventBridgeClient({
      endpoint: server.endpoint,
      region: "us-east-1",
      credentials: FAKE_CREDENTIALS,
      maxAttempts: 1,
    });
    bus = new EventBridgeBus({ client, eventBusName: "amk-bus", retry: { maxRetries: 2, baseDelayMs: 1 } });
  });
  after(() => server.close());
  beforeEach(() => {
    server.requests.length = 0;
    server.handler = answer("put-events-success");
  });

  it("sends each event as one entry, in requests of at most 10, with the detail plus WorkspaceId and EventId", async () => {
    const events = Array.from({ length: 23 }, (_, i) => event(i));
    await bus.publish(events);
    assert.deepEqual(
      server.requests.map((r) => entriesOf(r).length),
      [10, 10, 3],
    );
    const req = server.requests[0]!;
    assert.equal(req.method, "POST");
    assert.equal(req.headers["x-amz-target"], "AWSEvents.PutEvents");
    assert.equal(req.headers["content-type"], "application/x-amz-json-1.1");
    assert.match(String(req.headers.authorization), /\/us-east-1\/events\/aws4_request/);
    assert.deepEqual(Object.keys(JSON.parse(req.body) as object), ["Entries"]);
    const sent = server.requests.flatMap(entriesOf);
    sent.forEach((entry, i) => {
      assert.deepEqual(Object.keys(entry).sort(), ["Detail", "DetailType", "EventBusName", "Source"]);
      assert.equal(entry.Source, EVENT_SOURCE);
      assert.equal(entry.DetailType, "AccessTokensInvalidated");
      assert.equal(entry.EventBusName, "amk-bus");
      assert.deepEqual(JSON.parse(entry.Detail), {
        Epoch: i,
        WorkspaceId: "acme-7",
        EventId: `evt-${String(i).padStart(3, "0")}`,
      });
    });
  });

  it("keeps each request within 256 KB and refuses an event larger than that before sending anything", async () => {
    const big = (n: number) => event(n, { Blob: "x".repeat(100 * 1024) });
    await bus.publish([big(1), big(2), big(3)]);
    assert.deepEqual(
      server.requests.map((r) => entriesOf(r).length),
      [2, 1],
    );

    server.requests.length = 0;
    await assert.rejects(
      bus.publish([event(1), event(2, { Blob: "x".repeat(256 * 1024) })]),
      (e: unknown) =>
        e instanceof InvalidInputError && /evt-002/.test(e.message) && e.context.size !== undefined,
    );
    await assert.rejects(
      bus.publish([event(1, { WorkspaceId: "other" })]),
      (e: unknown) => e instanceof InvalidInputError,
    );
    await assert.rejects(
      bus.publish([{ ...event(1), detailType: "" }]),
      (e: unknown) => e instanceof InvalidInputError,
    );
    assert.equal(server.requests.length, 0, "nothing sent");
  });

  it("sends the entries that failed with a retryable code again, and only those", async () => {
    server.handler = (req, i) =>
      i === 0 ? answer("put-events-partial-failure")(req) : answer("put-events-success")(req);
    await bus.publish([event(1), event(2), event(3)]);
    assert.equal(server.requests.length, 2);
    const [first, second] = server.requests.map(entriesOf);
    assert.deepEqual(second, first!.slice(1), "the throttled and the failed entry, unchanged");
  });

  it("gives up after a few retries and names the events still failed (retryable)", async () => {
    server.handler = answer("put-events-all-throttled");
    let caught: unknown;
    await bus.publish([event(1), event(2)]).catch((e: unknown) => (caught = e));
    assert.ok(caught instanceof EventBusError, String(caught));
    assert.equal(server.requests.length, 3, "1 call + 2 retries");
    assert.equal(caught.retryable, true);
    assert.deepEqual(caught.context.failed, [
      { id: "evt-001", detailType: "AccessTokensInvalidated", errorCode: "ThrottlingException" },
      { id: "evt-002", detailType: "AccessTokensInvalidated", errorCode: "ThrottlingException" },
    ]);
    assert.equal(caught.context.published, 0);
    assert.match(caught.message, /evt-001 \(ThrottlingException\), evt-002 \(ThrottlingException\)/);
  });

  it("does not resend an entry refused for good, and reports it as not retryable", async () => {
    server.handler = fixed("put-events-not-authorized");
    let caught: unknown;
    await bus.publish([event(1), event(2)]).catch((e: unknown) => (caught = e));
    assert.ok(caught instanceof EventBusError, String(caught));
    assert.equal(server.requests.length, 1);
    assert.equal(caught.retryable, false);
    assert.deepEqual(caught.context.failed, [
      {
        id: "evt-002",
        detailType: "AccessTokensInvalidated",
        errorCode: "NotAuthorizedForDetailTypeException",
      },
    ]);
    assert.equal(caught.context.published, 1);
  });

  const errors = [
    { file: "access-denied", name: "AccessDeniedException", status: 400, retryable: false },
    { file: "resource-not-found", name: "ResourceNotFoundException", status: 400, retryable: false },
    { file: "throttling", name: "ThrottlingException", status: 400, retryable: true },
    { file: "internal", name: "InternalException", status: 500, retryable: true },
  ] as const;
  for (const c of errors) {
    it(`maps a failed call (${c.name}) to EventBusError, retryable ${c.retryable}`, async () => {
      server.handler = fixed(c.file);
      let caught: unknown;
      await bus.publish([event(1)]).catch((e: unknown) => (caught = e));
      assert.ok(caught instanceof EventBusError, String(caught));
      assert.equal(caught.retryable, c.retryable);
      assert.equal(caught.context.awsErrorName, c.name);
      assert.equal(caught.context.httpStatusCode, c.status);
      assert.deepEqual(caught.context.failed, [
        { id: "evt-001", detailType: "AccessTokensInvalidated", errorCode: c.name },
      ]);
    });
  }

  it("names the events of later batches too when a call fails midway", async () => {
    server.handler = (req, i) => (i === 0 ? answer("put-events-success")(req) : fixed("access-denied")());
    let caught: unknown;
    await bus.publish(Array.from({ length: 13 }, (_, i) => event(i))).catch((e: unknown) => (caught = e));
    assert.ok(caught instanceof EventBusError);
    assert.equal(server.requests.length, 2);
    assert.equal(caught.context.published, 10);
    assert.deepEqual(
      (caught.context.failed as { id: string }[]).map((f) => f.id),
      ["evt-010", "evt-011", "evt-012"],
    );
  });
});
