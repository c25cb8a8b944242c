import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { InvalidEventError } from "../../core/eventstore/errors.js";
import {
  MAX_EVENT_DATA_BYTES,
  newEvent,
  validateNewEvent,
  type StoredEvent,
} from "../../core/eventstore/events.js";
import {
  censusShard,
  documentFactsOf,
  evolveDocumentProjection,
  fold,
  inCensus,
  projectDocument,
  type DocumentProjection,
} from "../../core/eventstore/projection.js";
import { documentStreamId, type StreamId } from "../../core/eventstore/stream-id.js";

const ws = "acme";
const doc = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
const stream = documentStreamId(ws, doc);

function stored(
  type: string,
  version: number,
  data: Record<string, unknown> = {},
  streamId: StreamId = stream,
): StoredEvent {
  return {
    ...newEvent(type, { AggregateId: doc, WorkspaceId: ws, ...data }),
    streamId,
    version,
    recordedAt: new Date().toISOString(),
  };
}
const keys = (version: number, mk: number) =>
  stored("DocumentEncryptionKeysAdded", version, { KeyId: `ws-acme/mk/${mk}` });

describe("fold", () => {
  it("applies evolve to each event in order from the initial state", () => {
    assert.equal(
      fold([1, 2, 3], (s: string, e: number) => s + e, ">"),
      ">123",
    );
    assert.equal(
      fold([], (s: number) => s + 1, 7),
      7,
    );
    fc.assert(
      fc.property(fc.array(fc.integer()), (xs) => {
        assert.deepEqual(
          fold(xs, (s: number[], x: number) => [...s, x], []),
          xs,
        );
      }),
    );
  });
});

describe("document projection", () => {
  it("follows the last wrap record and the lifecycle", () => {
    const events = [keys(1, 1), stored("DocumentStored", 2), stored("DocumentViewed", 3), keys(4, 2)];
    const expected: DocumentProjection = {
      workspaceId: ws,
      documentId: doc,
      keyId: "ws-acme/mk/2",
      keysVersion: 4,
      status: "stored",
      version: 4,
    };
    assert.deepEqual(projectDocument(events), expected);
    assert.ok(inCensus(expected));
    assert.equal(projectDocument([]), undefined);
    assert.equal(projectDocument([stored("DocumentViewed", 1)]), undefined);
    assert.deepEqual(projectDocument([keys(1, 1)]), {
      ...expected,
      keyId: "ws-acme/mk/1",
      keysVersion: 1,
      status: "pending",
      version: 1,
    });
  });

  it("treats deletion as terminal and out of the census", () => {
    const deleted = projectDocument([
      keys(1, 1),
      stored("DocumentDeleted", 2),
      keys(3, 2),
      stored("DocumentStored", 4),
    ]);
    assert.deepEqual(deleted, {
      workspaceId: ws,
      documentId: doc,
      keyId: "ws-acme/mk/1",
      keysVersion: 1,
      status: "deleted",
      version: 2,
    });
    assert.ok(deleted && !inCensus(deleted));
    const neverKeyed = projectDocument([stored("DocumentStored", 1)]);
    assert.equal(neverKeyed?.keyId, undefined);
    assert.ok(neverKeyed && !inCensus(neverKeyed));
  });

  it("returns the same object when an event changes nothing (the store writes nothing then)", () => {
    const state = projectDocument([keys(1, 1), stored("DocumentStored", 2)]);
    assert.equal(evolveDocumentProjection(state, stored("DocumentViewed", 3)), state);
    assert.equal(evolveDocumentProjection(state, stored("DocumentStored", 3)), state);
    assert.notEqual(evolveDocumentProjection(state, keys(3, 1)), state);
  });

  it("refuses document events that do not belong to their stream", () => {
    const bad: StoredEvent[] = [
      stored("DocumentEncryptionKeysAdded", 1, {}),
      stored("DocumentEncryptionKeysAdded", 1, { KeyId: "mk-1" }),
      stored("DocumentEncryptionKeysAdded", 1, { KeyId: "ws-other/mk/1" }),
      stored("DocumentEncryptionKeysAdded", 1, { KeyId: "ws-acme/mk/0" }),
      stored("DocumentEncryptionKeysAdded", 1, { KeyId: "ws-acme/mk/1", AggregateId: "other" }),
      stored("DocumentStored", 1, { WorkspaceId: "other" }),
      stored("DocumentDeleted", 1, { AggregateId: "other" }),
      stored("DocumentEncryptionKeysAdded", 1, { KeyId: "ws-acme/mk/1" }, "ws-acme" as StreamId),
    ];
    for (const e of bad) {
      assert.throws(() => evolveDocumentProjection(undefined, e), InvalidEventError, JSON.stringify(e.data));
    }
    assert.deepEqual(documentFactsOf(keys(1, 7)), { keyId: "ws-acme/mk/7" });
  });
});

describe("census shards", () => {
  it("are stable, in range, and spread documents evenly", () => {
    assert.equal(censusShard(doc, 16), censusShard(doc, 16));
    assert.equal(censusShard("a", 1), 0);
    // FNV-1a 32-bit of "a" is 0xe40c292c.
    assert.equal(censusShard("a", 256), 0xe40c292c % 256);
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.integer({ min: 1, max: 256 }), (id, n) => {
        const s = censusShard(id, n);
        assert.ok(Number.isInteger(s) && s >= 0 && s < n);
      }),
    );
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 16_000; i++) {
      const s = censusShard(`doc-${i}`, 16);
      counts[s] = (counts[s] ?? 0) + 1;
    }
    for (const c of counts) assert.ok(c > 800 && c < 1200, `shard holds ${c} of 16000`);
    assert.throws(() => censusShard("a", 0), RangeError);
    assert.throws(() => censusShard("a", 257), RangeError);
  });
});

describe("event envelope", () => {
  it("accepts a well-formed event and keeps its data as exact JSON", () => {
    const e = newEvent("MasterKeyCreated", { KeyId: "ws-acme/mk/1", n: 1.5, list: [null, "ä"] });
    const { event, dataJson } = validateNewEvent(e);
    assert.deepEqual(event, e);
    assert.equal(dataJson, JSON.stringify(e.data));
    assert.match(e.eventId, /^[0-9a-f-]{36}$/);
  });

  it("refuses malformed events with InvalidEventError naming the event", () => {
    const good = newEvent("Thing", { a: 1 });
    const cases: unknown[] = [
      null,
      [],
      { ...good, eventId: undefined },
      { ...good, eventId: "3F2504E0-4F89-11D3-9A0C-0305E82C3301" },
      { ...good, type: "thing" },
      { ...good, type: "Thing Happened" },
      { ...good, schemaVersion: 1.5 },
      { ...good, schemaVersion: "1" },
      { ...good, occurredAt: "2026-13-45T00:00:00Z" },
      { ...good, occurredAt: "2026-01-01" },
      { ...good, data: null },
      { ...good, data: "x" },
      { ...good, data: { f: () => 1 } },
      { ...good, data: { big: 10n } },
      { ...good, data: { inf: Infinity } },
      { ...good, data: { bytes: new Uint8Array(2) } },
      { ...good, data: { s: "x".repeat(MAX_EVENT_DATA_BYTES) } },
    ];
    cases.forEach((c, i) => {
      assert.throws(
        () => validateNewEvent(c, 4),
        (err: unknown) =>
          err instanceof InvalidEventError && /^event 4:/.test(err.message) && err.context.index === 4,
        `case ${i}`,
      );
    });
  });
});
