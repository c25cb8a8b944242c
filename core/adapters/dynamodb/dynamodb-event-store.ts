/**
 * `EventStore` on one DynamoDB table (layout in ./table.ts, reasoning in docs/decisions/0004-event-store-on-dynamodb.md).
 *
 * An append is one TransactWriteItems: the stream head (conditional on the version read, or on not existing), every
 * event item and its event-id marker (each conditional on not existing: events are never overwritten) and, for a
 * document stream whose projection changes, the projection item with its census index keys. When the transaction
 * is cancelled by a condition, the store reads what it collided with: all markers present on this stream in order
 * means an idempotent replay (the original position is returned); some markers means an event id reused
 * (`EventIdConflictError`); no marker means another writer moved the head (`ExpectedVersionConflictError` with the
 * actual version read afterwards).
 */
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  type QueryCommandInput,
  type QueryCommandOutput,
  type TransactWriteCommandInput,
} from "@aws-sdk/lib-dynamodb";
import { describeKeyId, parseKeyId } from "../../keystore/key-id.js";
import { backoffDelay, sleep, type RetryPolicy } from "../../shared/retry.js";
import { InvalidInputError } from "../../shared/errors.js";
import {
  decodeCensusCursor,
  decodeStreamCursor,
  encodeCensusCursor,
  encodeStreamCursor,
} from "../../eventstore/cursor.js";
import {
  EventIdConflictError,
  EventStoreCorruptionError,
  EventStoreUnavailableError,
  ExpectedVersionConflictError,
  InvalidEventError,
  InvalidStoreOptionsError,
  type ActualStreamVersion,
  type ExpectedStreamVersion,
} from "../../eventstore/errors.js";
import {
  MAX_EVENTS_PER_APPEND,
  MAX_PAGE_SIZE,
  type AppendOptions,
  type AppendResult,
  type EventStore,
  type ListDocumentsOptions,
  type ListDocumentsResult,
  type ReadStreamOptions,
  type ReadStreamResult,
} from "../../eventstore/event-store.js";
import {
  validateNewEvent,
  type EventData,
  type NewEvent,
  type StoredEvent,
} from "../../eventstore/events.js";
import { EventTypes } from "../../eventstore/catalogue.js";
import {
  DEFAULT_CENSUS_SHARDS,
  assertShardCount,
  censusShard,
  documentFactsOf,
  evolveDocumentProjection,
  fold,
  inCensus,
  type DocumentProjection,
  type DocumentStatus,
} from "../../eventstore/projection.js";
import {
  assertValidDocumentId,
  assertValidWorkspaceId,
  documentStreamId,
  parseStreamId,
  type ParsedStreamId,
  type StreamId,
} from "../../eventstore/stream-id.js";
import { TRANSIENT_CANCELLATION_CODES, translateCancellation, translateDynamoDbError } from "./errors.js";
import {
  CENSUS_BY_KEY_ID_INDEX,
  EVENT_SK_PREFIX,
  KEY_IDS_IN_USE_INDEX,
  MAX_STREAM_VERSION,
  SK_HEAD,
  keys,
} from "./table.js";

export interface DynamoDbEventStoreOptions {
  /** A plain client (wrapped in a document client here) or a document client. */
  readonly client: DynamoDBClient | DynamoDBDocumentClient;
  readonly tableName: string;
  /** Census shards per (workspace, KeyId); fixed for the table's lifetime. Default 16. */
  readonly censusShards?: number;
  /** Source of `recordedAt`; default the system clock. */
  readonly clock?: () => Date;
  /**
   * Internal retries of an append after a transient transaction conflict (two transactions on the same head at once)
   * or, for `"any"` / `"stream_exists"`, after losing a race. Default 12 attempts, 5..250 ms full-jitter backoff.
   */
  readonly retry?: RetryPolicy;
}

const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 12, baseDelayMs: 5, maxDelayMs: 250 };
const DOCUMENT_EVENT_TYPES = new Set<string>([
  EventTypes.DocumentEncryptionKeysAdded,
  EventTypes.DocumentStored,
  EventTypes.DocumentDeleted,
]);
const DOCUMENT_STATUSES = new Set<string>(["pending", "stored", "deleted"]);

type Item = Record<string, unknown>;
type TransactItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];

interface StreamState {
  readonly current: number | undefined;
  readonly projection: DocumentProjection | undefined;
}

interface MarkerItem {
  readonly eventId: string;
  readonly streamId: string;
  readonly version: number;
}

export class DynamoDbEventStore implements EventStore {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly shards: number;
  private readonly clock: () => Date;
  private readonly retry: RetryPolicy;

  constructor(options: DynamoDbEventStoreOptions) {
    if (typeof options.tableName !== "string" || !/^[A-Za-z0-9_.-]{3,255}$/.test(options.tableName)) {
      throw new InvalidInputError(
        "tableName must be a DynamoDB table name (3-255 of letters, digits, _ . -)",
        {
          context: { tableName: String(options.tableName).slice(0, 300) },
        },
      );
    }
    const shards = options.censusShards ?? DEFAULT_CENSUS_SHARDS;
    assertShardCount(shards);
    this.doc =
      options.client instanceof DynamoDBDocumentClient
        ? options.client
        : DynamoDBDocumentClient.from(options.client as DynamoDBClient, {
            marshallOptions: { removeUndefinedValues: true },
          });
    this.tableName = options.tableName;
    this.shards = shards;
    this.clock = options.clock ?? (() => new Date());
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  get censusShards(): number {
    return this.shards;
  }

  // ------------------------------------------------------------------------------------------------ append

  async appendToStream(
    streamId: string,
    events: readonly NewEvent[],
    options: AppendOptions,
  ): Promise<AppendResult> {
    const stream = parseStreamId(streamId);
    const batch = validateBatch(stream, events);
    const expected = validateExpected(options);
    const eventIds = batch.map((b) => b.event.eventId);

    for (let attempt = 1; ; attempt++) {
      const state = await this.readStreamState(stream);
      const actual: ActualStreamVersion = state.current ?? "no_stream";
      if (!satisfies(expected, state.current)) {
        const replay = await this.findReplay(stream.streamId, eventIds);
        if (replay) return replay;
        throw new ExpectedVersionConflictError(stream.streamId, expected, actual);
      }
      const base = state.current ?? 0;
      if (base + batch.length > MAX_STREAM_VERSION) {
        throw new InvalidEventError(`stream ${stream.streamId} would exceed ${MAX_STREAM_VERSION} events`, {
          context: { streamId: stream.streamId },
        });
      }
      const recordedAt = this.clock().toISOString();
      const stored = batch.map(({ event, dataJson }, i) => ({
        event: {
          ...event,
          streamId: stream.streamId,
          version: base + i + 1,
          recordedAt,
        } satisfies StoredEvent,
        dataJson,
      }));
      const projection =
        stream.kind === "document"
          ? fold(
              stored.map((s) => s.event),
              evolveDocumentProjection,
              state.projection,
            )
          : undefined;
      const transactItems = this.appendItems(stream, state, stored, projection, recordedAt);

      try {
        await this.doc.send(new TransactWriteCommand({ TransactItems: transactItems }));
        return { appended: true, firstVersion: base + 1, nextExpectedVersion: base + batch.length };
      } catch (err) {
        if ((err as { name?: string }).name !== "TransactionCanceledException") {
          throw translateDynamoDbError(err, "appendToStream", { streamId: stream.streamId });
        }
        const codes = cancellationCodes(err);
        if (codes.includes("ConditionalCheckFailed")) {
          const replay = await this.findReplay(stream.streamId, eventIds);
          if (replay) return replay;
          const after = await this.readStreamState(stream);
          if (after.current === state.current) {
            // The head did not move, no marker exists, yet a condition failed: an event item beyond the head.
            throw new EventStoreCorruptionError(
              `stream ${stream.streamId} has event items beyond its head (version ${String(state.current)})`,
              { cause: err, context: { streamId: stream.streamId, cancellationReasons: codes } },
            );
          }
          if (expected !== "any" && expected !== "stream_exists") {
            throw new ExpectedVersionConflictError(stream.streamId, expected, after.current ?? "no_stream", {
              cause: err,
            });
          }
          // "any" / "stream_exists": another writer got in between the read and the write; read again.
        } else if (!codes.some((c) => TRANSIENT_CANCELLATION_CODES.has(c))) {
          throw translateCancellation(codes, err, "appendToStream", { streamId: stream.streamId });
        }
        if (attempt >= this.retry.maxAttempts) {
          throw new EventStoreUnavailableError(
            `append to ${stream.streamId} kept colliding with concurrent writers (${attempt} attempts); retry later`,
            {
              cause: err,
              context: { streamId: stream.streamId, attempts: attempt, cancellationReasons: codes },
            },
          );
        }
        await sleep(backoffDelay(this.retry, attempt));
      }
    }
  }

  private appendItems(
    stream: ParsedStreamId,
    state: StreamState,
    stored: { event: StoredEvent; dataJson: string }[],
    projection: DocumentProjection | undefined,
    recordedAt: string,
  ): TransactItem[] {
    const TableName = this.tableName;
    const last = stored[stored.length - 1]?.event.version ?? 0;
    const head =
      state.current === undefined
        ? { ConditionExpression: "attribute_not_exists(pk)" }
        : {
            ConditionExpression: "#version = :current",
            ExpressionAttributeNames: { "#version": "version" },
            ExpressionAttributeValues: { ":current": state.current },
          };
    const items: TransactItem[] = [
      {
        Put: {
          TableName,
          Item: {
            ...keys.head(stream.streamId),
            kind: "head",
            streamId: stream.streamId,
            version: last,
            updatedAt: recordedAt,
          },
          ...head,
        },
      },
    ];
    for (const { event, dataJson } of stored) {
      items.push({
        Put: {
          TableName,
          Item: {
            ...keys.event(stream.streamId, event.version),
            kind: "event",
            streamId: stream.streamId,
            version: event.version,
            eventId: event.eventId,
            type: event.type,
            schemaVersion: event.schemaVersion,
            occurredAt: event.occurredAt,
            data: dataJson,
            recordedAt,
          },
          ConditionExpression: "attribute_not_exists(pk)",
        },
      });
    }
    for (const { event } of stored) {
      items.push({
        Put: {
          TableName,
          Item: {
            ...keys.eventIdMarker(event.eventId),
            kind: "eventId",
            eventId: event.eventId,
            streamId: stream.streamId,
            version: event.version,
            recordedAt,
          },
          ConditionExpression: "attribute_not_exists(pk)",
        },
      });
    }
    if (projection !== undefined && projection !== state.projection) {
      items.push({ Put: { TableName, Item: this.projectionItem(stream.streamId, projection, recordedAt) } });
    }
    return items;
  }

  private projectionItem(streamId: StreamId, p: DocumentProjection, updatedAt: string): Item {
    const shard = censusShard(p.documentId, this.shards);
    const item: Item = {
      ...keys.projection(streamId),
      kind: "projection",
      workspaceId: p.workspaceId,
      documentId: p.documentId,
      status: p.status,
      version: p.version,
      shard,
      updatedAt,
    };
    if (p.keyId !== undefined) item.keyId = p.keyId;
    if (p.keysVersion !== undefined) item.keysVersion = p.keysVersion;
    if (inCensus(p)) {
      item.gsi1pk = keys.censusByKeyId(p.workspaceId, p.keyId, shard);
      item.gsi1sk = p.documentId;
      item.gsi2pk = keys.keyIdsInUse(p.workspaceId, shard);
      item.gsi2sk = keys.keyIdsInUseSort(p.keyId, p.documentId);
    }
    return item;
  }

  /** Head version and document projection, strongly consistent, in one query (sort keys `head` and `projection`). */
  private async readStreamState(stream: ParsedStreamId): Promise<StreamState> {
    const items = await this.queryAll(
      {
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk AND sk >= :head",
        ExpressionAttributeValues: { ":pk": stream.streamId, ":head": SK_HEAD },
        ConsistentRead: true,
      },
      "appendToStream",
    );
    let current: number | undefined;
    let projection: DocumentProjection | undefined;
    for (const item of items) {
      if (item.sk === SK_HEAD) current = positiveInt(item.version, item, "head version");
      else if (item.kind === "projection") projection = decodeProjection(item);
    }
    return { current, projection };
  }

  /**
   * When every event id of the batch is already stored on this stream at consecutive versions in batch order: the
   * original result. None stored: undefined. Anything else: `EventIdConflictError`.
   */
  private async findReplay(
    streamId: StreamId,
    eventIds: readonly string[],
  ): Promise<AppendResult | undefined> {
    const markers = await this.getMarkers(eventIds);
    if (markers.size === 0) return undefined;
    const found = eventIds.map((id) => markers.get(id));
    const first = found[0];
    const consistent =
      first !== undefined &&
      found.every((m, i) => m !== undefined && m.streamId === streamId && m.version === first.version + i);
    if (!consistent || markers.size !== eventIds.length) {
      const elsewhere = [...markers.values()].map((m) => ({
        eventId: m.eventId,
        streamId: m.streamId,
        version: m.version,
      }));
      throw new EventIdConflictError(
        `event ids of this batch were already used by another append (${markers.size} of ${eventIds.length} stored)`,
        { context: { streamId, stored: elsewhere.slice(0, 10) } },
      );
    }
    return {
      appended: false,
      firstVersion: first.version,
      nextExpectedVersion: first.version + eventIds.length - 1,
    };
  }

  private async getMarkers(eventIds: readonly string[]): Promise<Map<string, MarkerItem>> {
    const result = new Map<string, MarkerItem>();
    let pending: Item[] = eventIds.map((id) => keys.eventIdMarker(id));
    for (let attempt = 1; pending.length > 0; attempt++) {
      let out;
      try {
        out = await this.doc.send(
          new BatchGetCommand({
            RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } },
          }),
        );
      } catch (err) {
        throw translateDynamoDbError(err, "appendToStream", { step: "read event-id markers" });
      }
      for (const item of out.Responses?.[this.tableName] ?? []) {
        const marker = decodeMarker(item);
        result.set(marker.eventId, marker);
      }
      pending = out.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
      if (pending.length > 0) {
        if (attempt >= this.retry.maxAttempts) {
          throw new EventStoreUnavailableError(
            "DynamoDB kept deferring reads of event-id markers; retry later",
          );
        }
        await sleep(backoffDelay(this.retry, attempt));
      }
    }
    return result;
  }

  // ------------------------------------------------------------------------------------------------ read

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<ReadStreamResult> {
    const stream = parseStreamId(streamId);
    if (typeof options !== "object" || options === null)
      throw new InvalidStoreOptionsError("read options must be an object");
    if (options.cursor !== undefined && options.fromVersion !== undefined) {
      throw new InvalidStoreOptionsError("pass either cursor or fromVersion, not both");
    }
    const from =
      options.cursor !== undefined
        ? decodeStreamCursor(options.cursor, stream.streamId)
        : checkInt(options.fromVersion ?? 1, "fromVersion", 1, MAX_STREAM_VERSION);
    const limit =
      options.limit === undefined ? undefined : checkInt(options.limit, "limit", 1, MAX_PAGE_SIZE);

    let headItem: Item | undefined;
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: keys.head(stream.streamId), ConsistentRead: true }),
      );
      headItem = out.Item;
    } catch (err) {
      throw translateDynamoDbError(err, "readStream", { streamId: stream.streamId });
    }
    if (headItem === undefined) return { events: [], currentVersion: undefined };
    const current = positiveInt(headItem.version, headItem, "head version");
    if (from > current) return { events: [], currentVersion: current };
    const to = limit === undefined ? current : Math.min(current, from + limit - 1);

    const items = await this.queryAll(
      {
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk AND sk BETWEEN :from AND :to",
        ExpressionAttributeValues: {
          ":pk": stream.streamId,
          ":from": keys.event(stream.streamId, from).sk,
          ":to": keys.event(stream.streamId, to).sk,
        },
        ConsistentRead: true,
      },
      "readStream",
    );
    const events = items.map(decodeEvent);
    events.forEach((e, i) => {
      if (e.version !== from + i || e.streamId !== stream.streamId) {
        throw new EventStoreCorruptionError(
          `stream ${stream.streamId} is missing version ${from + i} (found ${e.version}): events must have no gaps`,
          { context: { streamId: stream.streamId, expectedVersion: from + i, foundVersion: e.version } },
        );
      }
    });
    if (events.length !== to - from + 1) {
      throw new EventStoreCorruptionError(
        `stream ${stream.streamId} at version ${current} lacks events ${from + events.length}..${to}`,
        { context: { streamId: stream.streamId, currentVersion: current } },
      );
    }
    return to < current
      ? { events, currentVersion: current, cursor: encodeStreamCursor(stream.streamId, to + 1) }
      : { events, currentVersion: current };
  }

  // ------------------------------------------------------------------------------------------------ projection & census

  async getDocumentProjection(
    workspaceId: string,
    documentId: string,
  ): Promise<DocumentProjection | undefined> {
    const streamId = documentStreamId(workspaceId, documentId);
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: keys.projection(streamId), ConsistentRead: true }),
      );
      return out.Item === undefined ? undefined : decodeProjection(out.Item);
    } catch (err) {
      throw translateDynamoDbError(err, "getDocumentProjection", { streamId });
    }
  }

  async countDocumentsByKeyId(workspaceId: string, keyId: string): Promise<number> {
    checkCensusQuery(workspaceId, keyId);
    const counts = await Promise.all(
      Array.from({ length: this.shards }, async (_, shard) => {
        let count = 0;
        let startKey: Record<string, unknown> | undefined;
        do {
          const out = await this.query(
            {
              TableName: this.tableName,
              IndexName: CENSUS_BY_KEY_ID_INDEX,
              KeyConditionExpression: "gsi1pk = :p",
              ExpressionAttributeValues: { ":p": keys.censusByKeyId(workspaceId, keyId, shard) },
              Select: "COUNT",
              ExclusiveStartKey: startKey,
            },
            "countDocumentsByKeyId",
          );
          count += out.Count ?? 0;
          startKey = out.LastEvaluatedKey;
        } while (startKey !== undefined);
        return count;
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  }

  async listDocumentsByKeyIdInShard(
    workspaceId: string,
    keyId: string,
    shard: number,
    options: { limit: number; after?: string },
  ): Promise<DocumentProjection[]> {
    checkCensusQuery(workspaceId, keyId);
    const s = checkInt(shard, "shard", 0, this.shards - 1);
    const limit = checkInt(options?.limit, "limit", 1, MAX_PAGE_SIZE);
    const after = options.after;
    if (after !== undefined && (typeof after !== "string" || after.length === 0 || after.length > 128)) {
      throw new InvalidStoreOptionsError("after must be a document id");
    }
    const documents: DocumentProjection[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await this.query(
        {
          TableName: this.tableName,
          IndexName: CENSUS_BY_KEY_ID_INDEX,
          KeyConditionExpression: after === undefined ? "gsi1pk = :p" : "gsi1pk = :p AND gsi1sk > :after",
          ExpressionAttributeValues: {
            ":p": keys.censusByKeyId(workspaceId, keyId, s),
            ...(after === undefined ? {} : { ":after": after }),
          },
          Limit: limit - documents.length,
          ExclusiveStartKey: startKey,
        },
        "listDocumentsByKeyIdInShard",
      );
      for (const item of out.Items ?? []) documents.push(decodeProjection(item));
      startKey = out.LastEvaluatedKey;
    } while (startKey !== undefined && documents.length < limit);
    return documents;
  }

  async listDocumentsByKeyId(
    workspaceId: string,
    keyId: string,
    options: ListDocumentsOptions,
  ): Promise<ListDocumentsResult> {
    checkCensusQuery(workspaceId, keyId);
    if (typeof options !== "object" || options === null)
      throw new InvalidStoreOptionsError("list options must be an object");
    const limit = checkInt(options.limit, "limit", 1, MAX_PAGE_SIZE);
    let { shard, after } =
      options.cursor === undefined
        ? { shard: 0, after: undefined as string | undefined }
        : decodeCensusCursor(options.cursor, workspaceId, keyId, this.shards);
    const documents: DocumentProjection[] = [];
    while (shard < this.shards) {
      let startKey: Record<string, unknown> | undefined;
      let shardDone = false;
      while (documents.length < limit) {
        const out = await this.query(
          {
            TableName: this.tableName,
            IndexName: CENSUS_BY_KEY_ID_INDEX,
            KeyConditionExpression: after === undefined ? "gsi1pk = :p" : "gsi1pk = :p AND gsi1sk > :after",
            ExpressionAttributeValues: {
              ":p": keys.censusByKeyId(workspaceId, keyId, shard),
              ...(after === undefined ? {} : { ":after": after }),
            },
            Limit: limit - documents.length,
            ExclusiveStartKey: startKey,
          },
          "listDocumentsByKeyId",
        );
        for (const item of out.Items ?? []) {
          const p = decodeProjection(item);
          documents.push(p);
          after = p.documentId;
        }
        startKey = out.LastEvaluatedKey;
        if (startKey === undefined) {
          shardDone = true;
          break;
        }
      }
      if (shardDone) {
        shard += 1;
        after = undefined;
      }
      if (documents.length >= limit) break;
    }
    if (shard >= this.shards) return { documents };
    return { documents, cursor: encodeCensusCursor(workspaceId, keyId, this.shards, { shard, after }) };
  }

  async listKeyIdsInUse(workspaceId: string): Promise<string[]> {
    assertValidWorkspaceId(workspaceId);
    const found = new Set<string>();
    await Promise.all(
      Array.from({ length: this.shards }, async (_, shard) => {
        // Skip scan: one item per distinct KeyId, then jump past that KeyId ("$" follows "#").
        let from: string | undefined;
        for (;;) {
          const out = await this.query(
            {
              TableName: this.tableName,
              IndexName: KEY_IDS_IN_USE_INDEX,
              KeyConditionExpression: from === undefined ? "gsi2pk = :p" : "gsi2pk = :p AND gsi2sk >= :from",
              ExpressionAttributeValues: {
                ":p": keys.keyIdsInUse(workspaceId, shard),
                ...(from === undefined ? {} : { ":from": from }),
              },
              Limit: 1,
            },
            "listKeyIdsInUse",
          );
          const item = out.Items?.[0];
          if (item === undefined) break;
          const sortKey = typeof item.gsi2sk === "string" ? item.gsi2sk : "";
          const keyId = sortKey.slice(0, sortKey.indexOf("#"));
          if (keyId.length === 0) {
            throw new EventStoreCorruptionError("census-2 entry without a key id", {
              context: { pk: item.pk },
            });
          }
          found.add(keyId);
          from = `${keyId}$`;
        }
      }),
    );
    return [...found].sort((a, b) => keyVersion(a) - keyVersion(b) || (a < b ? -1 : a > b ? 1 : 0));
  }

  // ------------------------------------------------------------------------------------------------ helpers

  private async query(input: QueryCommandInput, operation: string): Promise<QueryCommandOutput> {
    try {
      return await this.doc.send(new QueryCommand(input));
    } catch (err) {
      throw translateDynamoDbError(err, operation, { index: input.IndexName });
    }
  }

  private async queryAll(input: QueryCommandInput, operation: string): Promise<Item[]> {
    const items: Item[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await this.query({ ...input, ExclusiveStartKey: startKey }, operation);
      items.push(...(out.Items ?? []));
      startKey = out.LastEvaluatedKey;
    } while (startKey !== undefined);
    return items;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Validation

function validateBatch(
  stream: ParsedStreamId,
  events: readonly NewEvent[],
): { event: NewEvent; dataJson: string }[] {
  if (!Array.isArray(events)) throw new InvalidEventError("events must be an array");
  if (events.length === 0) throw new InvalidEventError("an append needs at least one event");
  if (events.length > MAX_EVENTS_PER_APPEND) {
    throw new InvalidEventError(
      `an append takes at most ${MAX_EVENTS_PER_APPEND} events, got ${events.length}`,
      {
        context: { count: events.length, max: MAX_EVENTS_PER_APPEND },
      },
    );
  }
  const batch = events.map((e, i) => validateNewEvent(e, i));
  const seen = new Set<string>();
  batch.forEach(({ event }, i) => {
    if (seen.has(event.eventId)) {
      throw new InvalidEventError(`event ${i}: eventId ${event.eventId} appears twice in the batch`, {
        context: { index: i, eventId: event.eventId },
      });
    }
    seen.add(event.eventId);
    // Document events are checked against the stream before anything is read or written.
    if (DOCUMENT_EVENT_TYPES.has(event.type)) {
      documentFactsOf({ streamId: stream.streamId, type: event.type, data: event.data, version: i + 1 });
    }
  });
  return batch;
}

function validateExpected(options: AppendOptions): ExpectedStreamVersion {
  if (typeof options !== "object" || options === null) {
    throw new InvalidStoreOptionsError("append options with an expectedVersion are required");
  }
  const e: unknown = options.expectedVersion;
  if (e === "no_stream" || e === "stream_exists" || e === "any") return e;
  if (typeof e === "number" && Number.isInteger(e) && e >= 0 && e <= MAX_STREAM_VERSION) return e;
  throw new InvalidStoreOptionsError(
    'expectedVersion must be a version (integer >= 0), "no_stream", "stream_exists" or "any"',
    { context: { expectedVersion: typeof e === "string" || typeof e === "number" ? e : `<${typeof e}>` } },
  );
}

function satisfies(expected: ExpectedStreamVersion, current: number | undefined): boolean {
  switch (expected) {
    case "any":
      return true;
    case "no_stream":
      return current === undefined;
    case "stream_exists":
      return current !== undefined;
    default:
      return (current ?? 0) === expected;
  }
}

function checkInt(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidStoreOptionsError(`${name} must be an integer from ${min} to ${max}`, {
      context: { [name]: typeof value === "number" ? value : `<${typeof value}>` },
    });
  }
  return value;
}

function checkCensusQuery(workspaceId: string, keyId: string): void {
  assertValidWorkspaceId(workspaceId);
  const owner = describeKeyId(parseKeyId(keyId)).workspaceId;
  if (owner !== workspaceId) {
    throw new InvalidInputError(`key id ${keyId} belongs to another workspace than ${workspaceId}`, {
      context: { field: "keyId", workspaceId, keyId },
    });
  }
}

function keyVersion(keyId: string): number {
  try {
    return describeKeyId(parseKeyId(keyId)).version;
  } catch {
    return Number.MAX_SAFE_INTEGER;
  }
}

function cancellationCodes(err: unknown): string[] {
  const reasons = (err as { CancellationReasons?: { Code?: string }[] }).CancellationReasons ?? [];
  return reasons.map((r) => r.Code ?? "None");
}

// ---------------------------------------------------------------------------------------------------------------
// Item decoding: anything unexpected is corruption, never silently skipped.

function corrupt(what: string, item: Item): never {
  throw new EventStoreCorruptionError(`stored item is not a valid ${what}`, {
    context: { pk: String(item.pk).slice(0, 300), sk: String(item.sk).slice(0, 40) },
  });
}

function positiveInt(value: unknown, item: Item, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) corrupt(what, item);
  return value as number;
}

function str(value: unknown, item: Item, what: string): string {
  if (typeof value !== "string") corrupt(what, item);
  return value as string;
}

function decodeEvent(item: Item): StoredEvent {
  if (item.kind !== "event" || typeof item.sk !== "string" || !item.sk.startsWith(EVENT_SK_PREFIX)) {
    corrupt("event", item);
  }
  let data: unknown;
  try {
    data = JSON.parse(str(item.data, item, "event"));
  } catch {
    corrupt("event (data is not JSON)", item);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) corrupt("event (data)", item);
  const streamId = parseStreamId(str(item.streamId, item, "event")).streamId;
  return {
    eventId: str(item.eventId, item, "event"),
    type: str(item.type, item, "event"),
    schemaVersion: positiveInt(item.schemaVersion, item, "event"),
    occurredAt: str(item.occurredAt, item, "event"),
    data: data as EventData,
    streamId,
    version: positiveInt(item.version, item, "event"),
    recordedAt: str(item.recordedAt, item, "event"),
  };
}

function decodeMarker(item: Item): MarkerItem {
  return {
    eventId: str(item.eventId, item, "event-id marker"),
    streamId: str(item.streamId, item, "event-id marker"),
    version: positiveInt(item.version, item, "event-id marker"),
  };
}

function decodeProjection(item: Item): DocumentProjection {
  const status = str(item.status, item, "document projection");
  if (!DOCUMENT_STATUSES.has(status)) corrupt("document projection (status)", item);
  const workspaceId = str(item.workspaceId, item, "document projection");
  const documentId = str(item.documentId, item, "document projection");
  try {
    assertValidWorkspaceId(workspaceId);
    assertValidDocumentId(documentId);
  } catch {
    corrupt("document projection (ids)", item);
  }
  return {
    workspaceId,
    documentId,
    keyId: item.keyId === undefined ? undefined : str(item.keyId, item, "document projection"),
    keysVersion:
      item.keysVersion === undefined ? undefined : positiveInt(item.keysVersion, item, "document projection"),
    status: status as DocumentStatus,
    version: positiveInt(item.version, item, "document projection"),
  };
}
