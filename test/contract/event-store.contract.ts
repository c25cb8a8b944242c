/**
 * Contract suite for `EventStore`, in the style of emmett's: one suite, a factory per backend. Every test gets a
 * fresh, empty store (its own table on DynamoDB) and ends by checking that the projection and the census agree
 * with the streams (`assertProjectionConsistent`).
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { InvalidInputError } from "../../core/shared/errors.js";
import { mapLimit } from "../../core/shared/concurrency.js";
import {
  EventIdConflictError,
  EventStoreError,
  EventTypes,
  ExpectedVersionConflictError,
  InvalidCursorError,
  InvalidEventError,
  InvalidStoreOptionsError,
  InvalidStreamIdError,
  MAX_EVENTS_PER_APPEND,
  MAX_EVENT_DATA_BYTES,
  documentStreamId,
  inCensus,
  newEvent,
  parseStreamId,
  projectDocument,
  sameDocumentProjection,
  workspaceStreamId,
  type AppendOptions,
  type AppendResult,
  type AppendToStreamsOptions,
  type DocumentEncryptionKeysAddedData,
  type DocumentProjection,
  type EventStore,
  type ListDocumentsOptions,
  type NewEvent,
  type ReadStreamOptions,
  type StoredEvent,
  type StreamAppend,
  type StreamAppendOutcome,
} from "../../core/eventstore/index.js";

export interface EventStoreUnderTest {
  readonly store: EventStore;
  /** Releases the backend (drops the table). */
  teardown(): Promise<void>;
}

/** Makes a fresh, empty store for one test. */
export type EventStoreFactory = () => Promise<EventStoreUnderTest>;

// ---------------------------------------------------------------------------------------------------------------
// Helpers (exported for adapter-specific tests)

export const ARTIFACTS = ["file", "metadata", "thumb", "preview", "archive"] as const;

export function keyId(workspaceId: string, version: number): string {
  return `ws-${workspaceId}/mk/${version}`;
}

/** A realistic wrap record (random bytes stand in for wrapped DEKs). */
export function wrapRecord(
  workspaceId: string,
  documentId: string,
  mkVersion: number,
  options: { eventId?: string } = {},
): NewEvent<"DocumentEncryptionKeysAdded", DocumentEncryptionKeysAddedData> {
  const occurredAt = new Date().toISOString();
  return newEvent(
    EventTypes.DocumentEncryptionKeysAdded,
    {
      AggregateId: documentId,
      WorkspaceId: workspaceId,
      KeyId: keyId(workspaceId, mkVersion),
      WrapFormat: "test-format",
      Artifacts: ARTIFACTS.map((Artifact) => ({
        Artifact,
        WrappedDek: randomBytes(48).toString("base64"),
        WrapNonce: randomBytes(12).toString("base64"),
        Algorithm: "AES-256-CBC-HMACSHA256",
        Version: "2",
      })),
      OccurredOn: occurredAt,
    },
    { occurredAt, ...(options.eventId === undefined ? {} : { eventId: options.eventId }) },
  );
}

export function lifecycle(
  type: "DocumentStored" | "DocumentDeleted",
  workspaceId: string,
  documentId: string,
): NewEvent {
  const occurredAt = new Date().toISOString();
  return newEvent(
    type,
    { AggregateId: documentId, WorkspaceId: workspaceId, OccurredOn: occurredAt },
    { occurredAt },
  );
}

export function uniqueWorkspace(prefix = "ws"): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export { mapLimit };

export async function readAll(store: EventStore, streamId: string): Promise<StoredEvent[]> {
  return (await store.readStream(streamId)).events;
}

/** Every document of the census of (workspace, keyId), paging with `limit`; fails on a duplicate. */
export async function listAllByKeyId(
  store: EventStore,
  workspaceId: string,
  kid: string,
  limit: number,
): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  const seen = new Set<string>();
  let cursor: string | undefined;
  let pages = 0;
  do {
    const options: ListDocumentsOptions = cursor === undefined ? { limit } : { limit, cursor };
    const page = await store.listDocumentsByKeyId(workspaceId, kid, options);
    pages += 1;
    assert.ok(page.documents.length <= limit, "a page never exceeds the limit");
    for (const d of page.documents) {
      assert.equal(d.workspaceId, workspaceId);
      assert.equal(d.keyId, kid);
      assert.notEqual(d.status, "deleted");
      assert.ok(!seen.has(d.documentId), `document ${d.documentId} listed twice`);
      seen.add(d.documentId);
      ids.push(d.documentId);
    }
    cursor = page.cursor;
    assert.ok(pages < 10_000, "paging must end");
  } while (cursor !== undefined);
  return { ids, pages };
}

/** Records every stream an append was tried on, so the consistency check knows what to read. */
class RecordingStore implements EventStore {
  readonly streams = new Set<string>();
  constructor(private readonly inner: EventStore) {}
  appendToStream(
    streamId: string,
    events: readonly NewEvent[],
    options: AppendOptions,
  ): Promise<AppendResult> {
    this.streams.add(streamId);
    return this.inner.appendToStream(streamId, events, options);
  }
  appendToStreams(
    appends: readonly StreamAppend[],
    options?: AppendToStreamsOptions,
  ): Promise<StreamAppendOutcome[]> {
    if (Array.isArray(appends)) {
      for (const a of appends as unknown[]) {
        const streamId = (a as { streamId?: unknown } | null)?.streamId;
        if (typeof streamId === "string") this.streams.add(streamId);
      }
    }
    return this.inner.appendToStreams(appends, options);
  }
  readStream(streamId: string, options?: ReadStreamOptions) {
    return this.inner.readStream(streamId, options);
  }
  readEvents(refs: readonly { streamId: string; version: number }[]) {
    return this.inner.readEvents(refs);
  }
  getDocumentProjection(workspaceId: string, documentId: string) {
    return this.inner.getDocumentProjection(workspaceId, documentId);
  }
  countDocumentsByKeyId(workspaceId: string, kid: string) {
    return this.inner.countDocumentsByKeyId(workspaceId, kid);
  }
  listDocumentsByKeyId(workspaceId: string, kid: string, options: ListDocumentsOptions) {
    return this.inner.listDocumentsByKeyId(workspaceId, kid, options);
  }
  get censusShards() {
    return this.inner.censusShards;
  }
  listDocumentsByKeyIdInShard(
    workspaceId: string,
    kid: string,
    shard: number,
    options: { limit: number; after?: string },
  ) {
    return this.inner.listDocumentsByKeyIdInShard(workspaceId, kid, shard, options);
  }
  listKeyIdsInUse(workspaceId: string) {
    return this.inner.listKeyIdsInUse(workspaceId);
  }
}

/**
 * Reads every document stream that was written, folds it, and compares with the stored projection; then checks
 * that each workspace's census (key ids in use, counts, listings) is exactly the set of live documents with keys.
 */
export async function assertProjectionConsistent(
  store: EventStore,
  streamIds: Iterable<string>,
): Promise<void> {
  const documents: { workspaceId: string; documentId: string; streamId: string }[] = [];
  const workspaces = new Set<string>();
  for (const s of streamIds) {
    let parsed;
    try {
      parsed = parseStreamId(s);
    } catch {
      continue; // a bad stream id a test tried on purpose
    }
    workspaces.add(parsed.workspaceId);
    if (parsed.kind === "document") documents.push({ ...parsed });
  }
  const expectedCensus = new Map<string, Map<string, Set<string>>>();
  await mapLimit(documents, 8, async ({ workspaceId, documentId, streamId }) => {
    const folded = projectDocument(await readAll(store, streamId));
    const stored = await store.getDocumentProjection(workspaceId, documentId);
    assert.ok(
      sameDocumentProjection(folded, stored),
      `projection of ${streamId} differs from its stream: folded ${JSON.stringify(folded)}, stored ${JSON.stringify(stored)}`,
    );
    if (folded !== undefined && inCensus(folded)) {
      const byKey = expectedCensus.get(workspaceId) ?? new Map<string, Set<string>>();
      expectedCensus.set(workspaceId, byKey);
      const set = byKey.get(folded.keyId) ?? new Set<string>();
      byKey.set(folded.keyId, set);
      set.add(documentId);
    }
  });
  for (const ws of workspaces) {
    const expected = expectedCensus.get(ws) ?? new Map<string, Set<string>>();
    const inUse = await store.listKeyIdsInUse(ws);
    assert.deepEqual([...inUse].sort(), [...expected.keys()].sort(), `key ids in use in ${ws}`);
    for (const [kid, ids] of expected) {
      assert.equal(await store.countDocumentsByKeyId(ws, kid), ids.size, `census count of ${kid}`);
      const listed = await listAllByKeyId(store, ws, kid, 100);
      assert.deepEqual(new Set(listed.ids), ids, `census listing of ${kid}`);
    }
  }
}

async function rejectsWith<E extends Error>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => E,
  check?: (err: E) => void,
): Promise<E> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(
    caught instanceof type,
    `expected ${type.name}, got ${caught === undefined ? "success" : String(caught)}`,
  );
  check?.(caught);
  return caught;
}

// ---------------------------------------------------------------------------------------------------------------
// The suite

export function eventStoreContract(backend: string, factory: EventStoreFactory): void {
  async function withStore(fn: (store: EventStore) => Promise<void>): Promise<void> {
    const underTest = await factory();
    const store = new RecordingStore(underTest.store);
    try {
      await fn(store);
      await assertProjectionConsistent(underTest.store, store.streams);
    } finally {
      await underTest.teardown();
    }
  }

  describe(`EventStore contract: ${backend}`, () => {
    it("reads events by position in batches, in input order, undefined where there is none", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const docs = Array.from({ length: 130 }, (_, i) => `d${i}-${randomUUID().slice(0, 6)}`);
        await store.appendToStreams(
          docs.map((d) => ({
            streamId: documentStreamId(ws, d),
            events: [wrapRecord(ws, d, 1)],
            expectedVersion: "no_stream" as const,
          })),
        );
        await store.appendToStream(documentStreamId(ws, docs[0]!), [wrapRecord(ws, docs[0]!, 2)], {
          expectedVersion: 1,
        });
        const refs = [
          ...docs.map((d) => ({ streamId: documentStreamId(ws, d), version: 1 })),
          { streamId: documentStreamId(ws, docs[0]!), version: 2 },
          { streamId: documentStreamId(ws, docs[1]!), version: 2 },
          { streamId: documentStreamId(ws, "never-written"), version: 1 },
        ];
        const events = await store.readEvents(refs);
        assert.equal(events.length, refs.length);
        docs.forEach((d, i) => {
          assert.equal(events[i]?.streamId, documentStreamId(ws, d));
          assert.equal(events[i]?.version, 1);
          assert.equal(events[i]?.data.AggregateId, d);
        });
        assert.equal(events[130]?.data.KeyId, keyId(ws, 2));
        assert.equal(events[131], undefined);
        assert.equal(events[132], undefined);
        assert.deepEqual(await store.readEvents([]), []);
        await rejectsWith(store.readEvents([{ streamId: "bad id", version: 1 }]), InvalidInputError);
        await rejectsWith(
          store.readEvents([{ streamId: documentStreamId(ws, docs[0]!), version: 0 }]),
          InvalidInputError,
        );
      }));

    it("appends and reads back events in order, with paging that resumes", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const stream = workspaceStreamId(ws);
        assert.deepEqual(await store.readStream(stream), { events: [], currentVersion: undefined });

        const first = [1, 2, 3].map((i) =>
          newEvent("MasterKeyCreated", {
            WorkspaceId: ws,
            KeyId: keyId(ws, i),
            Kcv: "A1B2C3",
            Extractable: true,
            Nested: { list: [1, 2.5, null, "ä✓"], flag: false },
          }),
        );
        const r1 = await store.appendToStream(stream, first, { expectedVersion: "no_stream" });
        assert.deepEqual(r1, { appended: true, firstVersion: 1, nextExpectedVersion: 3 });
        const r2 = await store.appendToStream(stream, [newEvent("DrillSucceeded", { WorkspaceId: ws })], {
          expectedVersion: 3,
        });
        assert.deepEqual(r2, { appended: true, firstVersion: 4, nextExpectedVersion: 4 });
        const r3 = await store.appendToStream(
          stream,
          [newEvent("DrillSucceeded", { WorkspaceId: ws, n: 2 })],
          {
            expectedVersion: 4,
          },
        );
        assert.equal(r3.nextExpectedVersion, 5);

        const all = await store.readStream(stream);
        assert.equal(all.currentVersion, 5);
        assert.equal(all.cursor, undefined);
        assert.deepEqual(
          all.events.map((e) => e.version),
          [1, 2, 3, 4, 5],
        );
        all.events.slice(0, 3).forEach((e, i) => {
          const sent = first[i];
          assert.ok(sent);
          assert.equal(e.eventId, sent.eventId);
          assert.equal(e.type, sent.type);
          assert.equal(e.schemaVersion, sent.schemaVersion);
          assert.equal(e.occurredAt, sent.occurredAt);
          assert.deepEqual(e.data, sent.data);
          assert.equal(e.streamId, stream);
          assert.ok(!Number.isNaN(Date.parse(e.recordedAt)));
        });

        // Paging with a limit resumes through cursors and ends without one.
        const seen: number[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await store.readStream(
            stream,
            cursor === undefined ? { limit: 2 } : { limit: 2, cursor },
          );
          assert.equal(page.currentVersion, 5);
          seen.push(...page.events.map((e) => e.version));
          cursor = page.cursor;
          pages += 1;
        } while (cursor !== undefined);
        assert.deepEqual(seen, [1, 2, 3, 4, 5]);
        assert.equal(pages, 3);

        const tail = await store.readStream(stream, { fromVersion: 4 });
        assert.deepEqual(
          tail.events.map((e) => e.version),
          [4, 5],
        );
        assert.deepEqual(await store.readStream(stream, { fromVersion: 9 }), {
          events: [],
          currentVersion: 5,
        });

        // A cursor belongs to its stream.
        const other = workspaceStreamId(uniqueWorkspace());
        const page = await store.readStream(stream, { limit: 1 });
        assert.ok(page.cursor);
        await rejectsWith(store.readStream(other, { cursor: page.cursor }), InvalidCursorError);

        // The largest batch is accepted whole.
        const big = Array.from({ length: MAX_EVENTS_PER_APPEND }, (_, i) => newEvent("BulkThing", { i }));
        const rb = await store.appendToStream(stream, big, { expectedVersion: 5 });
        assert.deepEqual(rb, {
          appended: true,
          firstVersion: 6,
          nextExpectedVersion: 5 + MAX_EVENTS_PER_APPEND,
        });
        const after = await readAll(store, stream);
        assert.deepEqual(
          after.map((e) => e.version),
          Array.from({ length: 5 + MAX_EVENTS_PER_APPEND }, (_, i) => i + 1),
        );
        assert.deepEqual(
          after.slice(5).map((e) => e.data.i),
          big.map((_, i) => i),
        );
      }));

    it("refuses appends at a stale expected version with a typed conflict naming stream, expected and actual", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const stream = workspaceStreamId(ws);
        const missing = workspaceStreamId(uniqueWorkspace());
        const ev = () => newEvent("SomethingHappened", { WorkspaceId: ws });

        await rejectsWith(
          store.appendToStream(missing, [ev()], { expectedVersion: 3 }),
          ExpectedVersionConflictError,
          (e) => {
            assert.equal(e.streamId, missing);
            assert.equal(e.expected, 3);
            assert.equal(e.actual, "no_stream");
          },
        );
        await rejectsWith(
          store.appendToStream(missing, [ev()], { expectedVersion: "stream_exists" }),
          ExpectedVersionConflictError,
          (e) => assert.deepEqual([e.expected, e.actual], ["stream_exists", "no_stream"]),
        );

        await store.appendToStream(stream, [ev()], { expectedVersion: "no_stream" });
        const conflict = await rejectsWith(
          store.appendToStream(stream, [ev()], { expectedVersion: "no_stream" }),
          ExpectedVersionConflictError,
        );
        assert.equal(conflict.streamId, stream);
        assert.equal(conflict.expected, "no_stream");
        assert.equal(conflict.actual, 1);
        assert.ok(conflict instanceof EventStoreError);
        assert.equal(conflict.code, "EXPECTED_VERSION_CONFLICT");
        assert.equal(conflict.retryable, false);
        assert.match(conflict.message, new RegExp(stream));
        assert.deepEqual(conflict.toJSON().context, { streamId: stream, expected: "no_stream", actual: 1 });

        await rejectsWith(
          store.appendToStream(stream, [ev()], { expectedVersion: 0 }),
          ExpectedVersionConflictError,
          (e) => assert.deepEqual([e.expected, e.actual], [0, 1]),
        );
        await rejectsWith(
          store.appendToStream(stream, [ev()], { expectedVersion: 5 }),
          ExpectedVersionConflictError,
          (e) => assert.deepEqual([e.expected, e.actual], [5, 1]),
        );

        // Expectations that hold.
        assert.equal(
          (await store.appendToStream(stream, [ev()], { expectedVersion: 1 })).nextExpectedVersion,
          2,
        );
        assert.equal(
          (await store.appendToStream(stream, [ev()], { expectedVersion: "stream_exists" }))
            .nextExpectedVersion,
          3,
        );
        assert.equal(
          (await store.appendToStream(stream, [ev()], { expectedVersion: "any" })).nextExpectedVersion,
          4,
        );
        assert.equal(
          (await store.appendToStream(missing, [ev()], { expectedVersion: 0 })).nextExpectedVersion,
          1,
        );
        assert.equal((await store.readStream(stream)).events.length, 4);
        assert.equal((await store.readStream(missing)).events.length, 1);
      }));

    it("16 concurrent writers on one stream: exactly one winner per version, no lost event, no gap", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const doc = randomUUID();
        const stream = documentStreamId(ws, doc);
        const writers = 16;
        const perWriter = 4;
        const winners = new Map<number, string>();
        let conflicts = 0;

        await Promise.all(
          Array.from({ length: writers }, async (_, w) => {
            for (let k = 0; k < perWriter; k++) {
              // A re-wrap and an ingestion racing: each reads, decides, and appends at the version it read.
              const event = wrapRecord(ws, doc, 1 + ((w + k) % 3));
              for (;;) {
                const { currentVersion, events } = await store.readStream(stream);
                projectDocument(events);
                try {
                  const r = await store.appendToStream(stream, [event], {
                    expectedVersion: currentVersion ?? "no_stream",
                  });
                  assert.equal(r.appended, true);
                  assert.equal(r.firstVersion, (currentVersion ?? 0) + 1);
                  assert.ok(
                    !winners.has(r.nextExpectedVersion),
                    `two winners for version ${r.nextExpectedVersion}`,
                  );
                  winners.set(r.nextExpectedVersion, event.eventId);
                  break;
                } catch (err) {
                  if (!(err instanceof ExpectedVersionConflictError)) throw err;
                  assert.equal(err.streamId, stream);
                  assert.equal(err.expected, currentVersion ?? "no_stream");
                  assert.ok(typeof err.actual === "number" && err.actual > (currentVersion ?? 0));
                  conflicts += 1;
                }
              }
            }
          }),
        );

        const total = writers * perWriter;
        const events = await readAll(store, stream);
        assert.deepEqual(
          events.map((e) => e.version),
          Array.from({ length: total }, (_, i) => i + 1),
        );
        assert.equal(new Set(events.map((e) => e.eventId)).size, total, "every event stored exactly once");
        for (const e of events)
          assert.equal(winners.get(e.version), e.eventId, `winner of version ${e.version}`);
        assert.ok(conflicts > 0, "the writers did collide");
        const projection = await store.getDocumentProjection(ws, doc);
        const lastRecord = events[events.length - 1];
        assert.equal(projection?.keysVersion, total);
        assert.equal(projection?.keyId, lastRecord?.data.KeyId);
      }));

    it("appending the same event ids again is idempotent: same result, nothing duplicated", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const doc = randomUUID();
        const stream = documentStreamId(ws, doc);
        const a = wrapRecord(ws, doc, 1);
        const b = lifecycle("DocumentStored", ws, doc);

        const original = await store.appendToStream(stream, [a, b], { expectedVersion: "no_stream" });
        assert.deepEqual(original, { appended: true, firstVersion: 1, nextExpectedVersion: 2 });
        const replay = { appended: false, firstVersion: 1, nextExpectedVersion: 2 };
        // Whatever the expectation, the replay answers with the original position.
        assert.deepEqual(
          await store.appendToStream(stream, [a, b], { expectedVersion: "no_stream" }),
          replay,
        );
        assert.deepEqual(await store.appendToStream(stream, [a, b], { expectedVersion: 2 }), replay);
        assert.deepEqual(await store.appendToStream(stream, [a, b], { expectedVersion: "any" }), replay);
        // A retry carrying new content under the same ids still returns the stored events' position, unchanged.
        assert.deepEqual(
          await store.appendToStream(stream, [{ ...a, data: { ...a.data, KeyId: keyId(ws, 9) } }, b], {
            expectedVersion: 0,
          }),
          replay,
        );
        let events = await readAll(store, stream);
        assert.equal(events.length, 2);
        assert.deepEqual(events[0]?.data, a.data);

        // Part of a batch already stored, or stored in another order or on another stream: not a replay.
        const c = lifecycle("DocumentDeleted", ws, doc);
        await rejectsWith(store.appendToStream(stream, [b, c], { expectedVersion: 2 }), EventIdConflictError);
        await rejectsWith(store.appendToStream(stream, [b, a], { expectedVersion: 2 }), EventIdConflictError);
        const otherDoc = randomUUID();
        await rejectsWith(
          store.appendToStream(
            documentStreamId(ws, otherDoc),
            [{ ...a, data: { ...a.data, AggregateId: otherDoc } }],
            {
              expectedVersion: "no_stream",
            },
          ),
          EventIdConflictError,
        );
        assert.equal((await store.readStream(stream)).currentVersion, 2);
        // The rejected batch left no marker behind: c appends normally.
        assert.deepEqual(await store.appendToStream(stream, [c], { expectedVersion: 2 }), {
          appended: true,
          firstVersion: 3,
          nextExpectedVersion: 3,
        });

        // Concurrent identical retries: one append, the others replays of it.
        const d = newEvent("DocumentAudited", { AggregateId: doc });
        const results = await Promise.all(
          Array.from({ length: 8 }, () => store.appendToStream(stream, [d], { expectedVersion: 3 })),
        );
        assert.equal(results.filter((r) => r.appended).length, 1);
        for (const r of results) assert.equal(r.nextExpectedVersion, 4);
        events = await readAll(store, stream);
        assert.deepEqual(
          events.map((e) => e.eventId),
          [a.eventId, b.eventId, c.eventId, d.eventId],
        );
      }));

    it("keeps the document projection and census in step with each append", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const doc = randomUUID();
        const stream = documentStreamId(ws, doc);
        const mk1 = keyId(ws, 1);
        const mk2 = keyId(ws, 2);
        assert.equal(await store.getDocumentProjection(ws, doc), undefined);

        await store.appendToStream(stream, [wrapRecord(ws, doc, 1)], { expectedVersion: "no_stream" });
        const expectProjection = async (p: Partial<DocumentProjection>) =>
          assert.deepEqual(await store.getDocumentProjection(ws, doc), {
            workspaceId: ws,
            documentId: doc,
            ...p,
          });
        await expectProjection({ keyId: mk1, keysVersion: 1, status: "pending", version: 1 });
        assert.equal(await store.countDocumentsByKeyId(ws, mk1), 1);

        await store.appendToStream(stream, [lifecycle("DocumentStored", ws, doc)], { expectedVersion: 1 });
        await expectProjection({ keyId: mk1, keysVersion: 1, status: "stored", version: 2 });
        // An event the projection ignores changes nothing but the stream.
        await store.appendToStream(stream, [newEvent("DocumentViewed", { AggregateId: doc })], {
          expectedVersion: 2,
        });
        await expectProjection({ keyId: mk1, keysVersion: 1, status: "stored", version: 2 });

        // Re-wrap: the last wrap record decides.
        await store.appendToStream(stream, [wrapRecord(ws, doc, 2)], { expectedVersion: 3 });
        await expectProjection({ keyId: mk2, keysVersion: 4, status: "stored", version: 4 });
        assert.equal(await store.countDocumentsByKeyId(ws, mk1), 0);
        assert.equal(await store.countDocumentsByKeyId(ws, mk2), 1);
        assert.deepEqual(await store.listKeyIdsInUse(ws), [mk2]);

        await store.appendToStream(stream, [lifecycle("DocumentDeleted", ws, doc)], { expectedVersion: 4 });
        await expectProjection({ keyId: mk2, keysVersion: 4, status: "deleted", version: 5 });
        assert.equal(await store.countDocumentsByKeyId(ws, mk2), 0);
        assert.deepEqual(await store.listKeyIdsInUse(ws), []);
        // Deletion is terminal for the projection.
        await store.appendToStream(stream, [wrapRecord(ws, doc, 1)], { expectedVersion: 5 });
        await expectProjection({ keyId: mk2, keysVersion: 4, status: "deleted", version: 5 });
        assert.equal(await store.countDocumentsByKeyId(ws, mk1), 0);

        // Several projected events in one batch fold in order.
        const doc2 = randomUUID();
        await store.appendToStream(
          documentStreamId(ws, doc2),
          [wrapRecord(ws, doc2, 1), lifecycle("DocumentStored", ws, doc2), wrapRecord(ws, doc2, 2)],
          { expectedVersion: "no_stream" },
        );
        assert.deepEqual(await store.getDocumentProjection(ws, doc2), {
          workspaceId: ws,
          documentId: doc2,
          keyId: mk2,
          keysVersion: 3,
          status: "stored",
          version: 3,
        });
        // A workspace stream has no document projection.
        await store.appendToStream(workspaceStreamId(ws), [newEvent("MasterKeyCreated", { KeyId: mk1 })], {
          expectedVersion: "no_stream",
        });
      }));

    it("counts the census exactly across shards and pages it with resumable cursors", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const mk1 = keyId(ws, 1);
        const mk2 = keyId(ws, 2);
        const docs = Array.from(
          { length: 200 },
          (_, i) => `doc-${String(i).padStart(3, "0")}-${randomUUID().slice(0, 6)}`,
        );
        const keyOf = (i: number) => (i % 5 < 3 ? 1 : 2);
        await mapLimit(docs, 16, (doc, i) =>
          store.appendToStream(documentStreamId(ws, doc), [wrapRecord(ws, doc, keyOf(i))], {
            expectedVersion: "no_stream",
          }),
        );
        const by1 = new Set(docs.filter((_, i) => keyOf(i) === 1));
        const by2 = new Set(docs.filter((_, i) => keyOf(i) === 2));
        assert.equal(await store.countDocumentsByKeyId(ws, mk1), 120);
        assert.equal(await store.countDocumentsByKeyId(ws, mk2), 80);
        assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 3)), 0);
        assert.deepEqual(await store.listKeyIdsInUse(ws), [mk1, mk2]);

        for (const limit of [7, 50, 1000]) {
          const listed = await listAllByKeyId(store, ws, mk1, limit);
          assert.deepEqual(new Set(listed.ids), by1, `pages of ${limit}`);
          assert.equal(listed.ids.length, 120);
          if (limit === 7) assert.ok(listed.pages >= 18);
        }
        assert.deepEqual(new Set((await listAllByKeyId(store, ws, mk2, 9)).ids), by2);

        // Shard by shard: the shards partition the census, each in document-id order, resumable with `after`.
        const viaShards: string[] = [];
        for (let shard = 0; shard < store.censusShards; shard++) {
          let after: string | undefined;
          for (;;) {
            const page = await store.listDocumentsByKeyIdInShard(ws, mk1, shard, {
              limit: 4,
              ...(after ? { after } : {}),
            });
            const ids = page.map((d) => d.documentId);
            assert.deepEqual(ids, [...ids].sort(), "document-id order within a shard");
            viaShards.push(...ids);
            if (page.length < 4) break;
            after = ids.at(-1);
          }
        }
        assert.equal(viaShards.length, 120);
        assert.deepEqual(new Set(viaShards), by1);
        await rejectsWith(
          store.listDocumentsByKeyIdInShard(ws, mk1, store.censusShards, { limit: 4 }),
          InvalidStoreOptionsError,
        );

        // Cursors are opaque and checked: edited, foreign or from another query, they are refused.
        const page = await store.listDocumentsByKeyId(ws, mk1, { limit: 5 });
        assert.equal(page.documents.length, 5);
        const cursor = page.cursor;
        assert.ok(cursor);
        const resumed = await store.listDocumentsByKeyId(ws, mk1, { limit: 5, cursor });
        assert.equal(
          resumed.documents.filter((d) => page.documents.some((p) => p.documentId === d.documentId)).length,
          0,
        );
        const flipped = cursor.slice(0, 20) + (cursor[20] === "A" ? "B" : "A") + cursor.slice(21);
        for (const bad of [flipped, `${cursor}x`, cursor.slice(0, -2), "not a cursor", "", "eyJ2IjoxfQ"]) {
          await rejectsWith(
            store.listDocumentsByKeyId(ws, mk1, { limit: 5, cursor: bad }),
            InvalidCursorError,
          );
        }
        await rejectsWith(store.listDocumentsByKeyId(ws, mk2, { limit: 5, cursor }), InvalidCursorError);

        // Re-wrap 30 documents from mk1 to mk2 and delete 10 of mk2's: counts follow.
        const moved = [...by1].slice(0, 30);
        await mapLimit(moved, 16, (doc) =>
          store.appendToStream(documentStreamId(ws, doc), [wrapRecord(ws, doc, 2)], { expectedVersion: 1 }),
        );
        const deleted = [...by2].slice(0, 10);
        await mapLimit(deleted, 16, (doc) =>
          store.appendToStream(documentStreamId(ws, doc), [lifecycle("DocumentDeleted", ws, doc)], {
            expectedVersion: 1,
          }),
        );
        const streamPage = await store.readStream(documentStreamId(ws, moved[0] as string), { limit: 1 });
        assert.ok(streamPage.cursor, "a stream of two events read one at a time has a cursor");
        await rejectsWith(
          store.listDocumentsByKeyId(ws, mk1, { limit: 5, cursor: streamPage.cursor }),
          InvalidCursorError,
        );
        assert.equal(await store.countDocumentsByKeyId(ws, mk1), 90);
        assert.equal(await store.countDocumentsByKeyId(ws, mk2), 100);
        const listed2 = await listAllByKeyId(store, ws, mk2, 13);
        const expected2 = new Set([...by2].filter((d) => !deleted.includes(d)).concat(moved));
        assert.deepEqual(new Set(listed2.ids), expected2);
        // Another workspace's census is separate.
        const other = uniqueWorkspace();
        assert.equal(await store.countDocumentsByKeyId(other, keyId(other, 1)), 0);
        assert.deepEqual(await store.listKeyIdsInUse(other), []);
      }));

    it("rejects bad input with typed errors and writes nothing", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const doc = randomUUID();
        const stream = documentStreamId(ws, doc);
        const good = wrapRecord(ws, doc, 1);
        await store.appendToStream(stream, [good], { expectedVersion: "no_stream" });
        const before = await readAll(store, stream);
        const projectionBefore = await store.getDocumentProjection(ws, doc);
        const fresh = () => lifecycle("DocumentStored", ws, doc);
        const probe = fresh();

        const badStreamIds: unknown[] = [
          "",
          "doc-1",
          "ws-",
          "ws-a/doc-",
          "ws-a#b",
          "ws-a/doc-b/c",
          `ws-${"a".repeat(65)}`,
          "ws-ä",
          42,
          undefined,
        ];
        for (const bad of badStreamIds) {
          await rejectsWith(
            store.appendToStream(bad as string, [fresh()], { expectedVersion: "any" }),
            InvalidStreamIdError,
          );
          await rejectsWith(store.readStream(bad as string), InvalidStreamIdError);
        }
        await rejectsWith(store.getDocumentProjection(ws, "a/b"), InvalidStreamIdError);
        await rejectsWith(store.getDocumentProjection("ws#1", doc), InvalidStreamIdError);

        const badBatches: { name: string; events: unknown }[] = [
          { name: "empty", events: [] },
          { name: "not an array", events: fresh() },
          {
            name: "over the batch limit",
            events: Array.from({ length: MAX_EVENTS_PER_APPEND + 1 }, () => newEvent("X", {})),
          },
          { name: "bad event id", events: [{ ...fresh(), eventId: "not-a-uuid" }] },
          { name: "upper-case event id", events: [{ ...fresh(), eventId: randomUUID().toUpperCase() }] },
          { name: "duplicate ids", events: [probe, { ...fresh(), eventId: probe.eventId }] },
          { name: "bad type", events: [{ ...fresh(), type: "document-stored" }] },
          { name: "bad schema version", events: [{ ...fresh(), schemaVersion: 0 }] },
          { name: "bad time", events: [{ ...fresh(), occurredAt: "yesterday" }] },
          { name: "local time", events: [{ ...fresh(), occurredAt: "2026-01-01T10:00:00+01:00" }] },
          { name: "data not an object", events: [{ ...fresh(), data: [1, 2] }] },
          { name: "data with undefined", events: [{ ...fresh(), data: { a: undefined } }] },
          { name: "data with a Date", events: [{ ...fresh(), data: { at: new Date() } }] },
          { name: "data with NaN", events: [{ ...fresh(), data: { n: Number.NaN } }] },
          {
            name: "data too large",
            events: [{ ...fresh(), data: { blob: "x".repeat(MAX_EVENT_DATA_BYTES) } }],
          },
          {
            name: "key of another workspace",
            events: [{ ...good, eventId: randomUUID(), data: { ...good.data, KeyId: keyId("other", 1) } }],
          },
          {
            name: "not a key id",
            events: [{ ...good, eventId: randomUUID(), data: { ...good.data, KeyId: "mk-1" } }],
          },
          {
            name: "wrong aggregate",
            events: [{ ...good, eventId: randomUUID(), data: { ...good.data, AggregateId: "other" } }],
          },
          {
            name: "wrong workspace",
            events: [{ ...fresh(), data: { WorkspaceId: "other", AggregateId: doc } }],
          },
          { name: "good then bad", events: [probe, { ...fresh(), type: "" }] },
        ];
        for (const { name, events } of badBatches) {
          await rejectsWith(
            store.appendToStream(stream, events as NewEvent[], { expectedVersion: 1 }),
            InvalidEventError,
            (e) => assert.equal(e.code, "INVALID_INPUT", name),
          );
        }
        // Document events belong on document streams.
        await rejectsWith(
          store.appendToStream(workspaceStreamId(ws), [wrapRecord(ws, doc, 1)], {
            expectedVersion: "no_stream",
          }),
          InvalidEventError,
        );

        for (const expectedVersion of [-1, 1.5, "latest", null, undefined, Number.NaN]) {
          await rejectsWith(
            store.appendToStream(stream, [fresh()], { expectedVersion } as unknown as AppendOptions),
            InvalidStoreOptionsError,
          );
        }
        await rejectsWith(
          store.appendToStream(stream, [fresh()], undefined as unknown as AppendOptions),
          InvalidStoreOptionsError,
        );
        for (const options of [
          { limit: 0 },
          { limit: 1001 },
          { limit: 1.5 },
          { fromVersion: 0 },
          { fromVersion: -3 },
        ]) {
          await rejectsWith(store.readStream(stream, options), InvalidStoreOptionsError);
        }
        const page = await store.readStream(stream, { limit: 1, fromVersion: 1 });
        assert.equal(page.cursor, undefined);
        await rejectsWith(
          store.readStream(stream, { cursor: "x", fromVersion: 1 }),
          InvalidStoreOptionsError,
        );
        await rejectsWith(store.readStream(stream, { cursor: "!!" }), InvalidCursorError);
        for (const limit of [0, -1, 1001, 2.5]) {
          await rejectsWith(store.listDocumentsByKeyId(ws, keyId(ws, 1), { limit }), InvalidInputError);
        }
        await rejectsWith(store.countDocumentsByKeyId(ws, keyId("someone-else", 1)), InvalidInputError);
        await rejectsWith(store.countDocumentsByKeyId(ws, "ws-x/mk/0"), InvalidInputError);
        await rejectsWith(store.listKeyIdsInUse("bad/ws"), InvalidStreamIdError);

        // Nothing changed, and the ids of the rejected batches are still free.
        assert.deepEqual(await readAll(store, stream), before);
        assert.deepEqual(await store.getDocumentProjection(ws, doc), projectionBefore);
        assert.deepEqual(await store.appendToStream(stream, [probe], { expectedVersion: 1 }), {
          appended: true,
          firstVersion: 2,
          nextExpectedVersion: 2,
        });
      }));

    // ---------------------------------------------------------------------------------------------------------
    // appendToStreams

    it("appends to 60 document streams in one call (several transactions) and reads them back", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const docs = Array.from({ length: 60 }, () => randomUUID());
        const appends: StreamAppend[] = docs.map((doc, i) => ({
          streamId: documentStreamId(ws, doc),
          events:
            i % 3 === 0
              ? [wrapRecord(ws, doc, 1), lifecycle("DocumentStored", ws, doc)]
              : [wrapRecord(ws, doc, 1)],
          expectedVersion: i % 2 === 0 ? "no_stream" : 0,
        }));
        // A workspace stream may go along with document streams.
        appends.push({
          streamId: workspaceStreamId(ws),
          events: [newEvent("MasterKeyCreated", { WorkspaceId: ws, KeyId: keyId(ws, 1) })],
          expectedVersion: "any",
        });
        const outcomes = await store.appendToStreams(appends);
        assert.deepEqual(
          outcomes,
          appends.map((a) => ({
            status: "appended",
            streamId: a.streamId,
            firstVersion: 1,
            nextExpectedVersion: a.events.length,
          })),
        );
        await mapLimit(appends, 8, async (a) => {
          const events = await readAll(store, a.streamId);
          assert.deepEqual(
            events.map((e) => [e.eventId, e.version, e.streamId]),
            a.events.map((e, i) => [e.eventId, i + 1, a.streamId]),
          );
          assert.deepEqual(
            events.map((e) => e.data),
            a.events.map((e) => e.data),
          );
        });
        assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 1)), 60);
        const stored = await store.getDocumentProjection(ws, docs[0] as string);
        assert.equal(stored?.status, "stored");

        // A re-wrap of all 60 at the versions read, in small transactions: each moves to the new key.
        const rewrap = await store.appendToStreams(
          docs.map((doc, i) => ({
            streamId: documentStreamId(ws, doc),
            events: [wrapRecord(ws, doc, 2)],
            expectedVersion: i % 3 === 0 ? 2 : 1,
          })),
          { maxPerTransaction: 7 },
        );
        rewrap.forEach((o, i) => {
          const v = i % 3 === 0 ? 3 : 2;
          assert.deepEqual(o, {
            status: "appended",
            streamId: documentStreamId(ws, docs[i] as string),
            firstVersion: v,
            nextExpectedVersion: v,
          });
        });
        assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 1)), 0);
        assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 2)), 60);
        assert.deepEqual(await store.listKeyIdsInUse(ws), [keyId(ws, 2)]);
        assert.deepEqual(await store.appendToStreams([]), []);
      }));

    it("appendToStreams reports exactly the appends at a stale expected version as conflicts, writes the others", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const docs = Array.from({ length: 60 }, () => randomUUID());
        const streamOf = (i: number) => documentStreamId(ws, docs[i] as string);
        await store.appendToStreams(
          docs.map((doc, i) => ({
            streamId: streamOf(i),
            events: [wrapRecord(ws, doc, 1)],
            expectedVersion: "no_stream",
          })),
        );
        // Five documents move on behind the re-wrap's back.
        const movedOn = [3, 17, 29, 41, 58];
        for (const i of movedOn) {
          await store.appendToStream(streamOf(i), [lifecycle("DocumentStored", ws, docs[i] as string)], {
            expectedVersion: 1,
          });
        }
        const appends = docs.map((doc, i) => ({
          streamId: streamOf(i),
          events: [wrapRecord(ws, doc, 2)],
          expectedVersion: 1,
        }));
        const outcomes = await store.appendToStreams(appends, { maxPerTransaction: 12 });
        assert.equal(outcomes.length, 60);
        outcomes.forEach((o, i) => {
          assert.equal(o.streamId, streamOf(i));
          if (movedOn.includes(i)) {
            assert.equal(o.status, "conflict", `append ${i}`);
            assert.ok(o.status === "conflict" && o.error instanceof ExpectedVersionConflictError);
            assert.deepEqual([o.error.streamId, o.error.expected, o.error.actual], [streamOf(i), 1, 2]);
          } else {
            assert.deepEqual(o, {
              status: "appended",
              streamId: streamOf(i),
              firstVersion: 2,
              nextExpectedVersion: 2,
            });
          }
        });
        await mapLimit(docs, 8, async (doc, i) => {
          const events = await readAll(store, streamOf(i));
          assert.equal(events.length, 2);
          const second = events[1];
          assert.ok(second);
          if (movedOn.includes(i)) assert.equal(second.type, "DocumentStored");
          else assert.equal(second.eventId, appends[i]?.events[0]?.eventId);
        });
        assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 1)), 5);
        assert.equal(await store.countDocumentsByKeyId(ws, keyId(ws, 2)), 55);

        // Every kind of expectation, as appendToStream checks it.
        const missing = workspaceStreamId(uniqueWorkspace());
        const missing2 = workspaceStreamId(uniqueWorkspace());
        const ev = () => newEvent("SomethingHappened", { WorkspaceId: ws });
        const mixed = await store.appendToStreams([
          { streamId: streamOf(0), events: [ev()], expectedVersion: "no_stream" },
          { streamId: missing, events: [ev()], expectedVersion: "stream_exists" },
          { streamId: missing2, events: [ev()], expectedVersion: 3 },
          { streamId: streamOf(1), events: [ev()], expectedVersion: "any" },
          { streamId: streamOf(2), events: [ev()], expectedVersion: "stream_exists" },
          { streamId: workspaceStreamId(ws), events: [ev()], expectedVersion: 0 },
        ]);
        const summary = mixed.map((o) =>
          o.status === "conflict" ? [o.status, o.error.expected, o.error.actual] : [o.status, o.firstVersion],
        );
        assert.deepEqual(summary, [
          ["conflict", "no_stream", 2],
          ["conflict", "stream_exists", "no_stream"],
          ["conflict", 3, "no_stream"],
          ["appended", 3],
          ["appended", 3],
          ["appended", 1],
        ]);
        assert.equal((await store.readStream(missing)).currentVersion, undefined);
      }));

    it("appendToStreams answers an exact replay with the original positions and writes nothing twice", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const docs = Array.from({ length: 30 }, () => randomUUID());
        const appends: StreamAppend[] = docs.map((doc, i) => ({
          streamId: documentStreamId(ws, doc),
          events:
            i % 4 === 0
              ? [wrapRecord(ws, doc, 1), lifecycle("DocumentStored", ws, doc), wrapRecord(ws, doc, 2)]
              : [wrapRecord(ws, doc, 1)],
          expectedVersion: "no_stream",
        }));
        const original = await store.appendToStreams(appends);
        assert.ok(original.every((o) => o.status === "appended"));
        const asReplay = original.map((o) => ({ ...o, status: "replayed" }));

        // The same call again (a lost response), and the same appends with expectations that hold or do not.
        assert.deepEqual(await store.appendToStreams(appends), asReplay);
        assert.deepEqual(
          await store.appendToStreams(appends.map((a) => ({ ...a, expectedVersion: "any" }))),
          asReplay,
        );
        assert.deepEqual(
          await store.appendToStreams(
            appends.map((a) => ({ ...a, expectedVersion: a.events.length })),
            { maxPerTransaction: 5 },
          ),
          asReplay,
        );

        // Replays next to new appends: each gets its own answer.
        const fresh = Array.from({ length: 10 }, () => randomUUID());
        const newAppends: StreamAppend[] = fresh.map((doc) => ({
          streamId: documentStreamId(ws, doc),
          events: [wrapRecord(ws, doc, 1)],
          expectedVersion: "no_stream",
        }));
        const mixed = await store.appendToStreams([...appends.slice(0, 10), ...newAppends]);
        assert.deepEqual(mixed.slice(0, 10), asReplay.slice(0, 10));
        assert.deepEqual(
          mixed.slice(10).map((o) => o.status),
          fresh.map(() => "appended"),
        );
        await mapLimit(appends, 8, async (a) => {
          assert.equal((await readAll(store, a.streamId)).length, a.events.length);
        });

        // An event id reused for something else is refused, as by appendToStream.
        const reused = appends[1]?.events[0];
        assert.ok(reused);
        const other = randomUUID();
        await rejectsWith(
          store.appendToStreams([
            {
              streamId: documentStreamId(ws, other),
              events: [{ ...reused, data: { ...reused.data, AggregateId: other } }],
              expectedVersion: "no_stream",
            },
          ]),
          EventIdConflictError,
        );
        assert.equal((await store.readStream(documentStreamId(ws, other))).currentVersion, undefined);
      }));

    it("8 concurrent appendToStreams callers on overlapping streams: no lost or duplicated event, no gap", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const docs = Array.from({ length: 24 }, () => randomUUID());
        const callers = 8;
        const rounds = 3;
        const setOf = (w: number) => Array.from({ length: 9 }, (_, j) => (w * 3 + j) % docs.length);
        const winners = new Map<string, string>();
        const sent = new Map<string, number>();
        let conflicts = 0;

        await Promise.all(
          Array.from({ length: callers }, async (_, w) => {
            for (let round = 0; round < rounds; round++) {
              // One wrap record per document of this caller's set, each appended at the version read.
              let todo = setOf(w).map((d) => {
                const doc = docs[d] as string;
                return {
                  streamId: documentStreamId(ws, doc),
                  event: wrapRecord(ws, doc, 1 + ((w + round) % 3)),
                };
              });
              for (let tries = 0; todo.length > 0; tries++) {
                assert.ok(tries < 200, "every caller gets its appends in");
                const read = await Promise.all(todo.map((t) => store.readStream(t.streamId)));
                const appends = todo.map((t, i) => ({
                  streamId: t.streamId,
                  events: [t.event],
                  expectedVersion: read[i]?.currentVersion ?? ("no_stream" as const),
                }));
                const outcomes = await store.appendToStreams(appends, { maxPerTransaction: 4 });
                const again: typeof todo = [];
                outcomes.forEach((o, i) => {
                  const t = todo[i];
                  const expected = appends[i]?.expectedVersion;
                  assert.ok(t && expected !== undefined);
                  assert.equal(o.streamId, t.streamId);
                  if (o.status === "conflict") {
                    assert.equal(o.error.expected, expected);
                    assert.ok(
                      typeof o.error.actual === "number" &&
                        o.error.actual > (expected === "no_stream" ? 0 : expected),
                    );
                    conflicts += 1;
                    again.push(t);
                    return;
                  }
                  assert.equal(o.status, "appended");
                  assert.equal(o.firstVersion, (expected === "no_stream" ? 0 : expected) + 1);
                  const slot = `${o.streamId}@${o.nextExpectedVersion}`;
                  assert.ok(!winners.has(slot), `two winners for ${slot}`);
                  winners.set(slot, t.event.eventId);
                  sent.set(t.streamId, (sent.get(t.streamId) ?? 0) + 1);
                });
                todo = again;
              }
            }
          }),
        );

        let total = 0;
        for (const doc of docs) {
          const streamId = documentStreamId(ws, doc);
          const events = await readAll(store, streamId);
          const expected = sent.get(streamId) ?? 0;
          total += events.length;
          assert.equal(events.length, expected, `every append to ${streamId} stored once`);
          assert.deepEqual(
            events.map((e) => e.version),
            Array.from({ length: expected }, (_, i) => i + 1),
          );
          for (const e of events) assert.equal(winners.get(`${streamId}@${e.version}`), e.eventId);
          const projection = await store.getDocumentProjection(ws, doc);
          assert.equal(projection?.keysVersion, expected);
          assert.equal(projection?.keyId, events.at(-1)?.data.KeyId);
        }
        assert.equal(total, callers * rounds * 9);
        assert.equal(new Set(winners.values()).size, total, "no event stored twice");
        assert.ok(conflicts > 0, "the callers did collide");
      }));

    it("appendToStreams rejects bad input with typed errors and writes nothing", () =>
      withStore(async (store) => {
        const ws = uniqueWorkspace();
        const doc = randomUUID();
        const stream = documentStreamId(ws, doc);
        await store.appendToStream(stream, [wrapRecord(ws, doc, 1)], { expectedVersion: "no_stream" });
        const before = await readAll(store, stream);
        const projectionBefore = await store.getDocumentProjection(ws, doc);
        const newDoc = randomUUID();
        const newStream = documentStreamId(ws, newDoc);
        const goodEvent = wrapRecord(ws, newDoc, 1);
        const good: StreamAppend = { streamId: newStream, events: [goodEvent], expectedVersion: "no_stream" };
        const on = (events: unknown, expectedVersion: unknown = 1, streamId: unknown = stream) =>
          ({ streamId, events, expectedVersion }) as StreamAppend;
        const stored = () => lifecycle("DocumentStored", ws, doc);

        const cases: { name: string; appends: unknown; type: abstract new (...a: never[]) => Error }[] = [
          { name: "not an array", appends: good, type: InvalidEventError },
          { name: "null append", appends: [good, null], type: InvalidEventError },
          {
            name: "bad stream id",
            appends: [good, on([stored()], 1, "ws-a/doc-")],
            type: InvalidStreamIdError,
          },
          {
            name: "missing stream id",
            appends: [good, { events: [stored()], expectedVersion: 1 }],
            type: InvalidStreamIdError,
          },
          { name: "no events", appends: [good, on([])], type: InvalidEventError },
          { name: "events not an array", appends: [good, on(stored())], type: InvalidEventError },
          {
            name: "over the batch limit",
            appends: [good, on(Array.from({ length: MAX_EVENTS_PER_APPEND + 1 }, () => newEvent("X", {})))],
            type: InvalidEventError,
          },
          {
            name: "bad event",
            appends: [good, on([{ ...stored(), eventId: "x" }])],
            type: InvalidEventError,
          },
          {
            name: "wrong aggregate",
            appends: [good, on([wrapRecord(ws, newDoc, 1)])],
            type: InvalidEventError,
          },
          {
            name: "bad expected version",
            appends: [good, on([stored()], "latest")],
            type: InvalidStoreOptionsError,
          },
          {
            name: "no expected version",
            appends: [good, { streamId: stream, events: [stored()] }],
            type: InvalidStoreOptionsError,
          },
          {
            name: "same stream twice",
            appends: [good, { ...good, events: [wrapRecord(ws, newDoc, 2)] }],
            type: InvalidStreamIdError,
          },
          {
            name: "event id in two appends",
            appends: [good, on([{ ...stored(), eventId: goodEvent.eventId }])],
            type: InvalidEventError,
          },
        ];
        for (const { name, appends, type } of cases) {
          await rejectsWith(store.appendToStreams(appends as StreamAppend[]), type, (e) => {
            assert.ok(e instanceof InvalidInputError, name);
            if (Array.isArray(appends)) assert.equal((e as InvalidInputError).context.appendIndex, 1, name);
          });
        }
        for (const options of [
          { maxPerTransaction: 0 },
          { maxPerTransaction: 101 },
          { maxPerTransaction: 1.5 },
          { maxPerTransaction: "5" },
          null,
          "fast",
        ]) {
          await rejectsWith(
            store.appendToStreams([good], options as unknown as AppendToStreamsOptions),
            InvalidStoreOptionsError,
          );
        }

        // Nothing was written: the good append of every rejected call still goes in, once.
        assert.deepEqual(await readAll(store, stream), before);
        assert.deepEqual(await store.getDocumentProjection(ws, doc), projectionBefore);
        assert.deepEqual(await store.readStream(newStream), { events: [], currentVersion: undefined });
        assert.deepEqual(await store.appendToStreams([good], { maxPerTransaction: 1 }), [
          { status: "appended", streamId: newStream, firstVersion: 1, nextExpectedVersion: 1 },
        ]);
      }));
  });
}
