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
 *
 * For backups (docs/backup-format.md) it is also a `BackupSource` (`listStreamHeads`: a parallel Scan of the heads)
 * and a `BackupTarget` (`isEmpty`, `importEvents`: events written with their original metadata, conditionally, with
 * heads, markers and projections as appends write them).
 */
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  ScanCommand,
  TransactWriteCommand,
  type QueryCommandInput,
  type QueryCommandOutput,
  type ScanCommandInput,
  type TransactWriteCommandInput,
} from "@aws-sdk/lib-dynamodb";
import type { BackupScope } from "../../backup/format.js";
import type { BackupSource, BackupTarget, ImportRun, StreamHead } from "../../backup/ports.js";
import { describeKeyId, parseKeyId } from "../../keystore/key-id.js";
import { backoffDelay, sleep, type RetryPolicy } from "../../shared/retry.js";
import { InvalidInputError, type AmkErrorOptions } from "../../shared/errors.js";
import {
  decodeCensusCursor,
  decodeStreamCursor,
  encodeCensusCursor,
  encodeStreamCursor,
} from "../../eventstore/cursor.js";
import {
  EventIdConflictError,
  EventStoreCorruptionError,
  EventStoreOperationError,
  EventStoreUnavailableError,
  ExpectedVersionConflictError,
  InvalidEventError,
  InvalidStoreOptionsError,
  InvalidStreamIdError,
  type ExpectedStreamVersion,
} from "../../eventstore/errors.js";
import {
  MAX_EVENTS_PER_APPEND,
  MAX_PAGE_SIZE,
  type AppendOptions,
  type AppendResult,
  type AppendToStreamsOptions,
  type EventStore,
  type ListDocumentsOptions,
  type ListDocumentsResult,
  type ReadStreamOptions,
  type ReadStreamResult,
  type StreamAppend,
  type StreamAppendOutcome,
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
  workspaceStreamId,
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
/** DynamoDB's limits for one TransactWriteItems: 100 items and 4 MB of items (estimated here with a margin). */
const MAX_TRANSACTION_ITEMS = 100;
const MAX_TRANSACTION_BYTES = 4_000_000;
/** Keys per BatchGetItem request (DynamoDB's limit). */
const MAX_BATCH_GET_KEYS = 100;
/** Requests (transactions, batch reads) of one `appendToStreams` call in flight at once. */
const REQUESTS_IN_FLIGHT = 4;
/** Segments of the parallel Scan that lists stream heads for a backup. */
const SCAN_SEGMENTS = 8;
/**
 * Items a Scan page evaluates at most. DynamoDB stops a page at 1 MB anyway (about 2,000 of this table's items); the
 * limit matters on DynamoDB Local, which without one reads every remaining row of a segment for each page: 6-7x
 * slower at 100,000 documents (measured; docs/performance.md).
 */
const SCAN_PAGE_LIMIT = 4000;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;

type Item = Record<string, unknown>;
type TransactItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];

interface StreamState {
  readonly current: number | undefined;
  readonly projection: DocumentProjection | undefined;
}

const NO_STREAM: StreamState = { current: undefined, projection: undefined };

/** An append whose stream id, events and expected version passed validation. */
interface CheckedAppend {
  readonly stream: ParsedStreamId;
  readonly batch: readonly { event: NewEvent; dataJson: string }[];
  readonly expected: ExpectedStreamVersion;
  readonly eventIds: readonly string[];
  /** The caller's `knownProjection` (checked against the stream and `expected`), used in the first round only. */
  readonly known?: DocumentProjection;
}

/** An append turned into transaction items at the state read. */
interface PreparedAppend {
  readonly items: TransactItem[];
  readonly firstVersion: number;
  readonly nextExpectedVersion: number;
  /** Estimated size of its items, for the transaction size limit. */
  readonly bytes: number;
}

interface MarkerItem {
  readonly eventId: string;
  readonly streamId: string;
  readonly version: number;
}

/** An imported event that passed validation, with its data as the JSON text the store keeps. */
interface CheckedImportEvent {
  readonly event: StoredEvent;
  readonly dataJson: string;
}

interface CheckedImportRun {
  readonly stream: ParsedStreamId;
  readonly first: number;
  readonly events: readonly CheckedImportEvent[];
}

/** What each item of an import transaction is, to name the one whose condition failed. */
type ImportItemKind =
  | { readonly kind: "head" }
  | { readonly kind: "event"; readonly version: number }
  | { readonly kind: "marker"; readonly eventId: string; readonly version: number }
  | { readonly kind: "projection" };

export class DynamoDbEventStore implements EventStore, BackupSource, BackupTarget {
  private readonly doc: DynamoDBDocumentClient;
  readonly tableName: string;
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
    const append = checkAppend(streamId, events, options);
    const { stream, expected, eventIds } = append;

    for (let attempt = 1; ; attempt++) {
      const state = await this.readStreamState(stream);
      if (!satisfies(expected, state.current)) {
        const replay = await this.findReplay(stream.streamId, eventIds);
        if (replay) return replay;
        throw new ExpectedVersionConflictError(stream.streamId, expected, state.current ?? "no_stream");
      }
      const prepared = this.prepareAppend(append, state, this.clock().toISOString());

      try {
        await this.doc.send(new TransactWriteCommand({ TransactItems: prepared.items }));
        return {
          appended: true,
          firstVersion: prepared.firstVersion,
          nextExpectedVersion: prepared.nextExpectedVersion,
        };
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
            throw beyondHead(stream.streamId, state.current, err, codes);
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

  /**
   * Rounds until every append is written or reported: read the heads and projections of the pending appends (one
   * consistent BatchGetItem per 50 streams); settle those whose expectation no longer holds (replay or conflict)
   * without a transaction; pack the others into transactions (item count, size, `maxPerTransaction`) and send
   * them. In a transaction cancelled by conditions, the reasons name the items that failed: their appends are checked
   * like `appendToStream` checks its own (replay, conflict with the actual version, or for `"any"` /
   * `"stream_exists"` another round), the other appends of that transaction go again in the next round. Transient
   * cancellations charge the appends they name and back off as `appendToStream` does.
   */
  async appendToStreams(
    appends: readonly StreamAppend[],
    options?: AppendToStreamsOptions,
  ): Promise<StreamAppendOutcome[]> {
    const { list, maxPerTransaction } = checkAppends(appends, options);
    const outcomes = new Array<StreamAppendOutcome | undefined>(list.length);
    const failures = new Array<number>(list.length).fill(0);
    let pending = list.map((_, i) => i);
    // First round only: appends with a known projection are written without reading their state. The projection's
    // Put is then conditional on the stored projection being that one, and a failed hint is simply read next round.
    let firstRound = true;

    while (pending.length > 0) {
      const hintOf = (i: number): DocumentProjection | undefined =>
        firstRound ? at(list, i).known : undefined;
      const toRead = pending.filter((i) => hintOf(i) === undefined);
      const states =
        toRead.length > 0
          ? await this.readStreamStates(toRead.map((i) => at(list, i).stream.streamId))
          : new Map<string, StreamState>();
      const stateOf = (i: number): StreamState => {
        const hint = hintOf(i);
        if (hint !== undefined) return { current: hint.version, projection: hint };
        return states.get(at(list, i).stream.streamId) ?? NO_STREAM;
      };

      // Expectations that no longer hold: a replay or a conflict, found without paying for a transaction.
      const stale = pending.filter((i) => !satisfies(at(list, i).expected, stateOf(i).current));
      const staleSet = new Set(stale);
      await this.settleStale(list, stale, stateOf, outcomes);

      const recordedAt = this.clock().toISOString();
      const ready = pending
        .filter((i) => !staleSet.has(i))
        .map((index) => ({
          index,
          state: stateOf(index),
          prepared: this.prepareAppend(at(list, index), stateOf(index), recordedAt, hintOf(index)),
        }));
      const groups = packTransactions(ready, maxPerTransaction);
      const results = await mapSettled(groups, REQUESTS_IN_FLIGHT, (group) => this.sendTransaction(group));

      const next: number[] = [];
      const suspects: { index: number; state: StreamState; codes: string[]; cause: unknown }[] = [];
      let backOff = false;
      for (const [g, result] of results.entries()) {
        const group = at(groups, g);
        if (result.status === "rejected") throw result.reason;
        const cancelled = result.value;
        if (cancelled === undefined) {
          for (const { index, prepared } of group) {
            outcomes[index] = {
              status: "appended",
              streamId: at(list, index).stream.streamId,
              firstVersion: prepared.firstVersion,
              nextExpectedVersion: prepared.nextExpectedVersion,
            };
          }
          continue;
        }
        const { codes, err } = cancelled;
        const itemCount = group.reduce((n, m) => n + m.prepared.items.length, 0);
        const other = codes.find(
          (c) => c !== "None" && c !== "ConditionalCheckFailed" && !TRANSIENT_CANCELLATION_CODES.has(c),
        );
        if (other !== undefined || (codes.length !== itemCount && codes.length > 0)) {
          throw translateCancellation(codes, err, "appendToStreams", {
            streams: group.map((m) => at(list, m.index).stream.streamId).slice(0, 10),
          });
        }
        let offset = 0;
        for (const member of group) {
          const own = codes.slice(offset, offset + member.prepared.items.length);
          offset += member.prepared.items.length;
          if (hintOf(member.index) && (codes.length === 0 || own.includes("ConditionalCheckFailed"))) {
            // Its state was the caller's hint, not a read: read it and decide in the next round.
            failures[member.index] = at(failures, member.index) + 1;
            next.push(member.index);
          } else if (codes.length === 0 || own.includes("ConditionalCheckFailed")) {
            // Without reasons every member is a suspect, but none proves corruption.
            suspects.push({ ...member, codes: own, cause: err });
          } else if (own.some((c) => TRANSIENT_CANCELLATION_CODES.has(c))) {
            failures[member.index] = at(failures, member.index) + 1;
            backOff = true;
            next.push(member.index);
          } else {
            next.push(member.index); // cancelled for another append's sake: goes again, uncharged
          }
        }
      }

      if (suspects.length > 0) {
        const markers = await this.getMarkers(suspects.flatMap((s) => at(list, s.index).eventIds));
        const after = await this.readStreamStates(suspects.map((s) => at(list, s.index).stream.streamId));
        for (const { index, state, codes, cause } of suspects) {
          const { stream, expected, eventIds } = at(list, index);
          const replay = replayOf(stream.streamId, eventIds, markers);
          if (replay) {
            outcomes[index] = replayed(stream.streamId, replay);
            continue;
          }
          const now = after.get(stream.streamId) ?? NO_STREAM;
          if (now.current === state.current && codes.includes("ConditionalCheckFailed")) {
            // The head did not move, no marker exists, yet one of its conditions failed.
            throw beyondHead(stream.streamId, state.current, cause, codes);
          }
          if (now.current !== state.current && expected !== "any" && expected !== "stream_exists") {
            outcomes[index] = {
              status: "conflict",
              streamId: stream.streamId,
              error: new ExpectedVersionConflictError(stream.streamId, expected, now.current ?? "no_stream", {
                cause,
              }),
            };
            continue;
          }
          // "any" / "stream_exists" lost a race (or no reasons were given): another round, charged.
          failures[index] = at(failures, index) + 1;
          backOff = true;
          next.push(index);
        }
      }

      firstRound = false;
      pending = next.sort((a, b) => a - b);
      const worst = pending.reduce((n, i) => Math.max(n, at(failures, i)), 0);
      if (worst >= this.retry.maxAttempts) {
        const stuck = pending.filter((i) => at(failures, i) >= this.retry.maxAttempts);
        throw new EventStoreUnavailableError(
          `${stuck.length} append(s) kept colliding with concurrent writers (${worst} attempts); retry later`,
          {
            context: {
              streams: stuck.map((i) => at(list, i).stream.streamId).slice(0, 10),
              attempts: worst,
              settled: outcomes.filter((o) => o !== undefined).length,
            },
          },
        );
      }
      if (backOff && pending.length > 0) await sleep(backoffDelay(this.retry, Math.max(1, worst)));
    }
    return outcomes.map((o, i) => {
      if (o === undefined) throw new Error(`appendToStreams left append ${i} without an outcome`);
      return o;
    });
  }

  /** Appends whose expectation failed before any write: replays (by their markers) or conflicts. */
  private async settleStale(
    list: readonly CheckedAppend[],
    stale: readonly number[],
    stateOf: (i: number) => StreamState,
    outcomes: (StreamAppendOutcome | undefined)[],
  ): Promise<void> {
    if (stale.length === 0) return;
    const markers = await this.getMarkers(stale.flatMap((i) => at(list, i).eventIds));
    for (const i of stale) {
      const { stream, expected, eventIds } = at(list, i);
      const replay = replayOf(stream.streamId, eventIds, markers);
      outcomes[i] = replay
        ? replayed(stream.streamId, replay)
        : {
            status: "conflict",
            streamId: stream.streamId,
            error: new ExpectedVersionConflictError(
              stream.streamId,
              expected,
              stateOf(i).current ?? "no_stream",
            ),
          };
    }
  }

  /** One transaction of appends: undefined when committed, the cancellation reasons when cancelled. */
  private async sendTransaction(
    group: readonly { index: number; prepared: PreparedAppend }[],
  ): Promise<{ codes: string[]; err: unknown } | undefined> {
    try {
      await this.doc.send(
        new TransactWriteCommand({ TransactItems: group.flatMap((m) => m.prepared.items) }),
      );
      return undefined;
    } catch (err) {
      if ((err as { name?: string }).name !== "TransactionCanceledException") {
        throw translateDynamoDbError(err, "appendToStreams", { appends: group.length });
      }
      return { codes: cancellationCodes(err), err };
    }
  }

  /**
   * The one place an append becomes items: versions after the head read, the projection folded from the stored
   * projection, and the transaction items (head, events, markers, projection when it changes).
   */
  private prepareAppend(
    append: CheckedAppend,
    state: StreamState,
    recordedAt: string,
    hint?: DocumentProjection,
  ): PreparedAppend {
    const { stream, batch } = append;
    const base = state.current ?? 0;
    if (base + batch.length > MAX_STREAM_VERSION) {
      throw new InvalidEventError(`stream ${stream.streamId} would exceed ${MAX_STREAM_VERSION} events`, {
        context: { streamId: stream.streamId },
      });
    }
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
    const items = this.appendItems(stream, state, stored, projection, recordedAt, hint);
    return {
      items,
      firstVersion: base + 1,
      nextExpectedVersion: base + batch.length,
      bytes: items.reduce((n, t) => n + itemBytes(t.Put?.Item ?? {}), 0),
    };
  }

  private appendItems(
    stream: ParsedStreamId,
    state: StreamState,
    stored: { event: StoredEvent; dataJson: string }[],
    projection: DocumentProjection | undefined,
    recordedAt: string,
    hint: DocumentProjection | undefined,
  ): TransactItem[] {
    const TableName = this.tableName;
    const last = stored[stored.length - 1]?.event.version ?? 0;
    const head = headCondition(state.current);
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
    for (const { event, dataJson } of stored)
      items.push(this.eventPut(stream.streamId, event, dataJson, recordedAt));
    for (const { event } of stored) items.push(this.markerPut(stream.streamId, event, recordedAt));
    if (projection !== undefined && projection !== state.projection) {
      items.push({
        Put: {
          TableName,
          Item: this.projectionItem(stream.streamId, projection, recordedAt),
          // A projection that was not read must be the stored one, field for field.
          ...(hint ? storedProjectionCondition(hint) : {}),
        },
      });
    } else if (hint) {
      // Not rewritten, still checked: else a forged hint under which the fold changes nothing would go unnoticed.
      items.push({
        ConditionCheck: {
          TableName,
          Key: keys.projection(stream.streamId),
          ...storedProjectionCondition(hint),
        },
      });
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
    return streamStateOf(items);
  }

  /** `readStreamState` for many streams: their head and projection items, in consistent BatchGetItems. */
  private async readStreamStates(streamIds: readonly string[]): Promise<Map<string, StreamState>> {
    const items = await this.batchGet(
      streamIds.flatMap((s) => [keys.head(s), keys.projection(s)]),
      "appendToStreams",
      "read stream heads",
    );
    const byStream = new Map<string, Item[]>();
    for (const item of items) {
      const pk = String(item.pk);
      byStream.set(pk, [...(byStream.get(pk) ?? []), item]);
    }
    return new Map(streamIds.map((s) => [s, streamStateOf(byStream.get(s) ?? [])]));
  }

  /**
   * When every event id of the batch is already stored on this stream at consecutive versions in batch order: the
   * original result. None stored: undefined. Anything else: `EventIdConflictError`.
   */
  private async findReplay(
    streamId: StreamId,
    eventIds: readonly string[],
  ): Promise<AppendResult | undefined> {
    return replayOf(streamId, eventIds, await this.getMarkers(eventIds));
  }

  private async getMarkers(eventIds: readonly string[]): Promise<Map<string, MarkerItem>> {
    const items = await this.batchGet(
      eventIds.map((id) => keys.eventIdMarker(id)),
      "appendToStream",
      "read event-id markers",
    );
    const result = new Map<string, MarkerItem>();
    for (const item of items) {
      const marker = decodeMarker(item);
      result.set(marker.eventId, marker);
    }
    return result;
  }

  /** Consistent BatchGetItem of any number of keys (100 a request), retrying what DynamoDB leaves unprocessed. */
  private async batchGet(keyList: readonly Item[], operation: string, step: string): Promise<Item[]> {
    const chunks: Item[][] = [];
    for (let i = 0; i < keyList.length; i += MAX_BATCH_GET_KEYS) {
      chunks.push(keyList.slice(i, i + MAX_BATCH_GET_KEYS));
    }
    const results = await mapSettled(chunks, REQUESTS_IN_FLIGHT, async (chunk) => {
      const found: Item[] = [];
      let pending: Item[] = chunk;
      for (let attempt = 1; pending.length > 0; attempt++) {
        let out;
        try {
          out = await this.doc.send(
            new BatchGetCommand({
              RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } },
            }),
          );
        } catch (err) {
          throw translateDynamoDbError(err, operation, { step });
        }
        found.push(...(out.Responses?.[this.tableName] ?? []));
        pending = out.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
        if (pending.length > 0) {
          if (attempt >= this.retry.maxAttempts) {
            throw new EventStoreUnavailableError(`DynamoDB kept deferring reads (${step}); retry later`, {
              context: { operation, step },
            });
          }
          await sleep(backoffDelay(this.retry, attempt));
        }
      }
      return found;
    });
    return results.flatMap((r) => {
      if (r.status === "rejected") throw r.reason;
      return r.value;
    });
  }

  // ------------------------------------------------------------------------------------------------ read

  async readEvents(
    refs: readonly { readonly streamId: string; readonly version: number }[],
  ): Promise<(StoredEvent | undefined)[]> {
    if (!Array.isArray(refs)) throw new InvalidStoreOptionsError("refs must be an array");
    const keyList = refs.map((r, i) => {
      const stream = parseStreamId(r?.streamId);
      if (!Number.isInteger(r.version) || r.version < 1 || r.version > MAX_STREAM_VERSION) {
        throw new InvalidStoreOptionsError(`ref ${i}: version must be an integer from 1`, {
          context: { index: i },
        });
      }
      return keys.event(stream.streamId, r.version);
    });
    const items = await this.batchGet(keyList, "readEvents", "read events");
    const found = new Map(items.map((item) => [`${String(item.pk)}\n${String(item.sk)}`, item]));
    return keyList.map((k) => {
      const item = found.get(`${k.pk}\n${k.sk}`);
      return item === undefined ? undefined : decodeEvent(item);
    });
  }

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

  // ------------------------------------------------------------------------------------------------ backup

  /**
   * `BackupSource`: the head of every stream in the scope, by a strongly consistent parallel `Scan` of the table
   * (`SCAN_SEGMENTS` segments, pages of at most `SCAN_PAGE_LIMIT` items) that keeps only head items. A backup is the one reader that must see every stream,
   * including deleted and key-less documents, which no index lists; it reads the whole table once (the census never
   * scans). Pages come as the segments deliver them.
   */
  async *listStreamHeads(scope: BackupScope): AsyncIterable<readonly StreamHead[]> {
    const input: ScanCommandInput = { TableName: this.tableName, ConsistentRead: true };
    if (scope.kind === "workspace") {
      const ws = workspaceStreamId(scope.workspaceId);
      input.FilterExpression = "sk = :head AND (pk = :ws OR begins_with(pk, :docs))";
      input.ExpressionAttributeValues = { ":head": SK_HEAD, ":ws": ws, ":docs": `${ws}/doc-` };
    } else if (scope.kind === "table") {
      input.FilterExpression = "sk = :head AND begins_with(pk, :ws)";
      input.ExpressionAttributeValues = { ":head": SK_HEAD, ":ws": "ws-" };
    } else {
      throw new InvalidStoreOptionsError("scope must be a workspace or the table");
    }
    input.ProjectionExpression = "pk, #version";
    input.ExpressionAttributeNames = { "#version": "version" };

    const pages: StreamHead[][] = [];
    let wake: (() => void) | undefined;
    let running = SCAN_SEGMENTS;
    let failure: { error: unknown } | undefined;
    const notify = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const segments = Array.from({ length: SCAN_SEGMENTS }, async (_, segment) => {
      try {
        let startKey: Record<string, unknown> | undefined;
        do {
          let out;
          try {
            out = await this.doc.send(
              new ScanCommand({
                ...input,
                Segment: segment,
                TotalSegments: SCAN_SEGMENTS,
                Limit: SCAN_PAGE_LIMIT,
                ExclusiveStartKey: startKey,
              }),
            );
          } catch (err) {
            throw translateDynamoDbError(err, "listStreamHeads", { segment });
          }
          const heads = (out.Items ?? []).map((item) => ({
            streamId: parseStreamId(str(item.pk, item, "stream head")).streamId,
            version: positiveInt(item.version, item, "stream head"),
          }));
          if (heads.length > 0) pages.push(heads);
          notify();
          startKey = out.LastEvaluatedKey;
        } while (startKey !== undefined && failure === undefined);
      } catch (error) {
        failure ??= { error };
      } finally {
        running -= 1;
        notify();
      }
    });
    try {
      for (;;) {
        if (failure !== undefined) throw failure.error;
        const page = pages.shift();
        if (page !== undefined) {
          yield page;
          continue;
        }
        if (running === 0) break;
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      failure ??= { error: new Error("listing stopped by its reader") };
      await Promise.allSettled(segments);
    }
  }

  /** `BackupTarget`: true when the table holds no item at all (a strongly consistent scan for one item). */
  async isEmpty(): Promise<boolean> {
    let startKey: Record<string, unknown> | undefined;
    do {
      let out;
      try {
        out = await this.doc.send(
          new ScanCommand({
            TableName: this.tableName,
            ConsistentRead: true,
            Limit: 1,
            ProjectionExpression: "pk",
            ExclusiveStartKey: startKey,
          }),
        );
      } catch (err) {
        throw translateDynamoDbError(err, "isEmpty", {});
      }
      if ((out.Items ?? []).length > 0) return false;
      startKey = out.LastEvaluatedKey;
    } while (startKey !== undefined);
    return true;
  }

  /**
   * `BackupTarget`: writes stored events with their original event ids, versions, times and data, as appends would
   * have written them: per chunk of up to `MAX_EVENTS_PER_APPEND` events of a stream, one set of items (the head,
   * conditional on the version before the chunk or on not existing; each event and its event-id marker, conditional
   * on not existing; the document projection folded by `evolveDocumentProjection`, when it changes, with its census
   * keys), packed with other streams' chunks into transactions of at most 100 items, up to 4 in flight. The head,
   * marker and projection items carry the `recordedAt` of the events they come from, so a restored table holds the
   * same items as the one backed up. Runs are validated completely before anything is written.
   */
  async importEvents(runs: readonly ImportRun[]): Promise<void> {
    const checked = checkImportRuns(runs);
    if (checked.length === 0) return;
    const continuing = checked.filter((r) => r.first > 1).map((r) => r.stream.streamId);
    const states =
      continuing.length > 0 ? await this.readStreamStates(continuing) : new Map<string, StreamState>();
    const cursors = checked.map((run) => {
      const state = run.first === 1 ? NO_STREAM : (states.get(run.stream.streamId) ?? NO_STREAM);
      if ((state.current ?? 0) !== run.first - 1) {
        throw new ExpectedVersionConflictError(
          run.stream.streamId,
          run.first === 1 ? "no_stream" : run.first - 1,
          state.current ?? "no_stream",
        );
      }
      return { run, state, offset: 0 };
    });
    for (;;) {
      const ready = cursors
        .filter((c) => c.offset < c.run.events.length)
        .map((c) => {
          const chunk = c.run.events.slice(c.offset, c.offset + MAX_EVENTS_PER_APPEND);
          return { cursor: c, chunk, prepared: this.prepareImport(c.run.stream, c.state, chunk) };
        });
      if (ready.length === 0) return;
      const groups = packTransactions(ready, MAX_TRANSACTION_ITEMS);
      const results = await mapSettled(groups, REQUESTS_IN_FLIGHT, (group) => this.sendImport(group));
      for (const r of results) if (r.status === "rejected") throw r.reason;
      for (const { cursor, chunk, prepared } of ready) {
        cursor.offset += chunk.length;
        cursor.state = prepared.after;
      }
    }
  }

  /** An event item (never overwritten): one layout for appends and imports. */
  private eventPut(streamId: string, event: StoredEvent, dataJson: string, recordedAt: string): TransactItem {
    return {
      Put: {
        TableName: this.tableName,
        Item: {
          ...keys.event(streamId, event.version),
          kind: "event",
          streamId,
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
    };
  }

  /** An event's event-id marker (never overwritten: an event id is used once in the table). */
  private markerPut(streamId: string, event: StoredEvent, recordedAt: string): TransactItem {
    return {
      Put: {
        TableName: this.tableName,
        Item: {
          ...keys.eventIdMarker(event.eventId),
          kind: "eventId",
          eventId: event.eventId,
          streamId,
          version: event.version,
          recordedAt,
        },
        ConditionExpression: "attribute_not_exists(pk)",
      },
    };
  }

  /** The items of one imported chunk (see `importEvents`) and the stream state after it. */
  private prepareImport(
    stream: ParsedStreamId,
    state: StreamState,
    chunk: readonly CheckedImportEvent[],
  ): PreparedAppend & { after: StreamState; kinds: ImportItemKind[] } {
    const TableName = this.tableName;
    const events = chunk.map((c) => c.event);
    const last = events[events.length - 1] as StoredEvent;
    const projection =
      stream.kind === "document" ? fold(events, evolveDocumentProjection, state.projection) : undefined;
    const items: TransactItem[] = [
      {
        Put: {
          TableName,
          Item: {
            ...keys.head(stream.streamId),
            kind: "head",
            streamId: stream.streamId,
            version: last.version,
            updatedAt: last.recordedAt,
          },
          ...headCondition(state.current),
        },
      },
    ];
    const kinds: ImportItemKind[] = [{ kind: "head" }];
    for (const { event, dataJson } of chunk) {
      items.push(this.eventPut(stream.streamId, event, dataJson, event.recordedAt));
      kinds.push({ kind: "event", version: event.version });
    }
    for (const event of events) {
      items.push(this.markerPut(stream.streamId, event, event.recordedAt));
      kinds.push({ kind: "marker", eventId: event.eventId, version: event.version });
    }
    if (projection !== undefined && projection !== state.projection) {
      const changedBy = events.find((e) => e.version === projection.version) ?? last;
      items.push({
        Put: { TableName, Item: this.projectionItem(stream.streamId, projection, changedBy.recordedAt) },
      });
      kinds.push({ kind: "projection" });
    }
    return {
      items,
      kinds,
      firstVersion: (events[0] as StoredEvent).version,
      nextExpectedVersion: last.version,
      bytes: items.reduce((n, t) => n + itemBytes(t.Put?.Item ?? {}), 0),
      after: { current: last.version, projection },
    };
  }

  /** One import transaction; transient cancellations are retried with backoff, failed conditions reported. */
  private async sendImport(
    group: readonly {
      cursor: { run: CheckedImportRun };
      prepared: PreparedAppend & { kinds: ImportItemKind[] };
    }[],
  ): Promise<void> {
    const TransactItems = group.flatMap((m) => m.prepared.items);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.doc.send(new TransactWriteCommand({ TransactItems }));
        return;
      } catch (err) {
        const streams = group.map((m) => m.cursor.run.stream.streamId).slice(0, 10);
        if ((err as { name?: string }).name !== "TransactionCanceledException") {
          throw translateDynamoDbError(err, "importEvents", { streams });
        }
        const codes = cancellationCodes(err);
        const failed = codes.indexOf("ConditionalCheckFailed");
        if (failed >= 0) throw await this.importConflict(group, failed, err);
        if (!codes.some((c) => TRANSIENT_CANCELLATION_CODES.has(c)) || attempt >= this.retry.maxAttempts) {
          throw translateCancellation(codes, err, "importEvents", { streams, attempts: attempt });
        }
        await sleep(backoffDelay(this.retry, attempt));
      }
    }
  }

  /** The error for the item whose condition failed in an import transaction. */
  private async importConflict(
    group: readonly {
      cursor: { run: CheckedImportRun };
      prepared: PreparedAppend & { kinds: ImportItemKind[] };
    }[],
    index: number,
    cause: unknown,
  ): Promise<Error> {
    let offset = 0;
    for (const { cursor, prepared } of group) {
      if (index >= offset + prepared.kinds.length) {
        offset += prepared.kinds.length;
        continue;
      }
      const item = prepared.kinds[index - offset] as ImportItemKind;
      const stream = cursor.run.stream;
      switch (item.kind) {
        case "head": {
          const now = await this.readStreamState(stream);
          const before = prepared.firstVersion - 1;
          return new ExpectedVersionConflictError(
            stream.streamId,
            before === 0 ? "no_stream" : before,
            now.current ?? "no_stream",
            { cause },
          );
        }
        case "marker":
          return new EventIdConflictError(
            `event id ${item.eventId} (${stream.streamId}@${item.version}) is already stored in ${this.tableName}`,
            { cause, context: { streamId: stream.streamId, version: item.version, eventId: item.eventId } },
          );
        case "event":
          return beyondHead(stream.streamId, prepared.firstVersion - 1, cause, ["ConditionalCheckFailed"]);
        default:
          break;
      }
    }
    return new EventStoreOperationError(`DynamoDB refused an import transaction of ${this.tableName}`, {
      cause,
      context: { operation: "importEvents" },
    });
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

function checkAppend(streamId: unknown, events: readonly NewEvent[], options: AppendOptions): CheckedAppend {
  const stream = parseStreamId(streamId);
  const batch = validateBatch(stream, events);
  const expected = validateExpected(options);
  return { stream, batch, expected, eventIds: batch.map((b) => b.event.eventId) };
}

/** Every append of an `appendToStreams` call, checked before anything is read or written. */
function checkAppends(
  appends: readonly StreamAppend[],
  options: AppendToStreamsOptions | undefined,
): { list: CheckedAppend[]; maxPerTransaction: number } {
  if (options !== undefined && (typeof options !== "object" || options === null)) {
    throw new InvalidStoreOptionsError("appendToStreams options must be an object");
  }
  const maxPerTransaction =
    options?.maxPerTransaction === undefined
      ? MAX_TRANSACTION_ITEMS
      : checkInt(options.maxPerTransaction, "maxPerTransaction", 1, MAX_TRANSACTION_ITEMS);
  if (!Array.isArray(appends)) {
    throw new InvalidEventError("appends must be an array", { context: { field: "appends" } });
  }
  const streams = new Map<string, number>();
  const eventIds = new Map<string, number>();
  const list = (appends as readonly unknown[]).map((raw, i) => {
    if (typeof raw !== "object" || raw === null) {
      throw new InvalidEventError(`append ${i} must be an object with streamId, events and expectedVersion`, {
        context: { field: "appends", appendIndex: i },
      });
    }
    const append = raw as StreamAppend;
    let checked: CheckedAppend;
    try {
      checked = checkAppend(append.streamId, append.events, append);
    } catch (err) {
      throw withAppendIndex(err, i);
    }
    const streamId = checked.stream.streamId;
    const earlier = streams.get(streamId);
    if (earlier !== undefined) {
      throw new InvalidStreamIdError(
        `appends ${earlier} and ${i} both go to stream ${streamId}: one append per stream and call`,
        { context: { streamId, appendIndex: i, otherAppendIndex: earlier } },
      );
    }
    streams.set(streamId, i);
    for (const eventId of checked.eventIds) {
      const other = eventIds.get(eventId);
      if (other !== undefined) {
        throw new InvalidEventError(`eventId ${eventId} appears in appends ${other} and ${i}`, {
          context: { eventId, appendIndex: i, otherAppendIndex: other },
        });
      }
      eventIds.set(eventId, i);
    }
    const known = append.knownProjection;
    if (known !== undefined) {
      try {
        checkKnownProjection(checked, known);
      } catch (err) {
        throw withAppendIndex(err, i);
      }
      return { ...checked, known };
    }
    return checked;
  });
  return { list, maxPerTransaction };
}

/** A `knownProjection` must be a plausible projection of this document stream at the expected version. */
function checkKnownProjection(append: CheckedAppend, p: DocumentProjection): void {
  const fail = (why: string): never => {
    throw new InvalidEventError(`knownProjection ${why}`, {
      context: { field: "knownProjection", streamId: append.stream.streamId },
    });
  };
  if (typeof p !== "object" || p === null) fail("must be a document projection");
  const { stream, expected } = append;
  if (stream.kind !== "document") fail("is for document streams only");
  if (
    stream.kind === "document" &&
    (p.workspaceId !== stream.workspaceId || p.documentId !== stream.documentId)
  )
    fail("belongs to another document");
  if (typeof expected !== "number" || p.version !== expected)
    fail("needs expectedVersion equal to its version");
  if (!DOCUMENT_STATUSES.has(p.status)) fail("has an unknown status");
  if (p.keyId !== undefined && typeof p.keyId !== "string") fail("has a keyId that is not a string");
  if (p.keysVersion !== undefined && !(Number.isInteger(p.keysVersion) && p.keysVersion >= 1))
    fail("has a keysVersion that is not a positive integer");
}

/** Condition of a projection Put written on a caller's hint: the stored projection is exactly `p`. */
function storedProjectionCondition(p: DocumentProjection): {
  ConditionExpression: string;
  ExpressionAttributeNames: Record<string, string>;
  ExpressionAttributeValues: Record<string, unknown>;
} {
  const names: Record<string, string> = {
    "#v": "version",
    "#st": "status",
    "#k": "keyId",
    "#kv": "keysVersion",
  };
  const values: Record<string, unknown> = { ":pv": p.version, ":pst": p.status };
  const parts = ["#v = :pv", "#st = :pst"];
  if (p.keyId === undefined) parts.push("attribute_not_exists(#k)");
  else {
    parts.push("#k = :pk");
    values[":pk"] = p.keyId;
  }
  if (p.keysVersion === undefined) parts.push("attribute_not_exists(#kv)");
  else {
    parts.push("#kv = :pkv");
    values[":pkv"] = p.keysVersion;
  }
  return {
    ConditionExpression: parts.join(" AND "),
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
}

/** The same bad-input error, naming the append of the call it came from. */
function withAppendIndex(err: unknown, index: number): unknown {
  if (!(err instanceof InvalidInputError)) return err;
  const Type = err.constructor as new (message: string, options: AmkErrorOptions) => InvalidInputError;
  return new Type(`append ${index}: ${err.message}`, {
    cause: err,
    context: { ...err.context, appendIndex: index },
  });
}

/**
 * Every run of an `importEvents` call, checked before anything is read or written: stream ids, one run per stream,
 * every event's envelope as an append checks it, consecutive versions, `recordedAt` times, document facts, no event
 * id twice.
 */
function checkImportRuns(runs: readonly ImportRun[]): CheckedImportRun[] {
  if (!Array.isArray(runs))
    throw new InvalidEventError("runs must be an array", { context: { field: "runs" } });
  const streams = new Set<string>();
  const eventIds = new Set<string>();
  return (runs as readonly unknown[]).map((raw, r) => {
    const run = raw as ImportRun;
    if (typeof run !== "object" || run === null || !Array.isArray(run.events) || run.events.length === 0) {
      throw new InvalidEventError(`run ${r} must be { streamId, events } with at least one event`, {
        context: { runIndex: r },
      });
    }
    const stream = parseStreamId(run.streamId);
    if (streams.has(stream.streamId)) {
      throw new InvalidStreamIdError(
        `two runs go to stream ${stream.streamId}: one run per stream and call`,
        {
          context: { streamId: stream.streamId, runIndex: r },
        },
      );
    }
    streams.add(stream.streamId);
    const first = (run.events[0] as StoredEvent | undefined)?.version;
    if (typeof first !== "number" || !Number.isInteger(first) || first < 1) {
      throw new InvalidEventError(`run ${r} (${stream.streamId}): versions start at 1 or later`, {
        context: { streamId: stream.streamId },
      });
    }
    if (first + run.events.length - 1 > MAX_STREAM_VERSION) {
      throw new InvalidEventError(`stream ${stream.streamId} would exceed ${MAX_STREAM_VERSION} events`, {
        context: { streamId: stream.streamId },
      });
    }
    const events = run.events.map((e, i) => {
      const { event, dataJson } = validateNewEvent(e, i);
      const where = { streamId: stream.streamId, index: i };
      if (e.streamId !== stream.streamId) {
        throw new InvalidEventError(
          `run ${r} event ${i}: belongs to another stream than ${stream.streamId}`,
          {
            context: where,
          },
        );
      }
      if (e.version !== first + i) {
        throw new InvalidEventError(
          `run ${r} event ${i}: version ${String(e.version)} where ${first + i} follows (versions are consecutive)`,
          { context: where },
        );
      }
      if (
        typeof e.recordedAt !== "string" ||
        !ISO_UTC.test(e.recordedAt) ||
        Number.isNaN(Date.parse(e.recordedAt))
      ) {
        throw new InvalidEventError(`run ${r} event ${i}: recordedAt must be an ISO 8601 UTC time`, {
          context: where,
        });
      }
      if (eventIds.has(event.eventId)) {
        throw new InvalidEventError(`eventId ${event.eventId} appears twice in the runs`, {
          context: { ...where, eventId: event.eventId },
        });
      }
      eventIds.add(event.eventId);
      const stored: StoredEvent = {
        ...event,
        streamId: stream.streamId,
        version: e.version,
        recordedAt: e.recordedAt,
      };
      if (DOCUMENT_EVENT_TYPES.has(stored.type)) documentFactsOf(stored);
      return { event: stored, dataJson };
    });
    return { stream, first, events };
  });
}

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

function beyondHead(
  streamId: string,
  current: number | undefined,
  cause: unknown,
  codes: readonly string[],
): EventStoreCorruptionError {
  return new EventStoreCorruptionError(
    `stream ${streamId} has event items beyond its head (version ${String(current)})`,
    { cause, context: { streamId, cancellationReasons: codes } },
  );
}

/**
 * When every event id of the batch is stored on this stream at consecutive versions in batch order: the original
 * result. None stored: undefined. Anything else: `EventIdConflictError`. `markers` may hold other batches' markers.
 */
function replayOf(
  streamId: string,
  eventIds: readonly string[],
  markers: ReadonlyMap<string, MarkerItem>,
): AppendResult | undefined {
  const found = eventIds.map((id) => markers.get(id));
  const stored = found.filter((m): m is MarkerItem => m !== undefined);
  if (stored.length === 0) return undefined;
  const first = found[0];
  const consistent =
    first !== undefined &&
    found.every((m, i) => m !== undefined && m.streamId === streamId && m.version === first.version + i);
  if (!consistent) {
    const elsewhere = stored.map((m) => ({ eventId: m.eventId, streamId: m.streamId, version: m.version }));
    throw new EventIdConflictError(
      `event ids of this batch were already used by another append (${stored.length} of ${eventIds.length} stored)`,
      { context: { streamId, stored: elsewhere.slice(0, 10) } },
    );
  }
  return {
    appended: false,
    firstVersion: first.version,
    nextExpectedVersion: first.version + eventIds.length - 1,
  };
}

function replayed(streamId: string, replay: AppendResult): StreamAppendOutcome {
  return {
    status: "replayed",
    streamId,
    firstVersion: replay.firstVersion,
    nextExpectedVersion: replay.nextExpectedVersion,
  };
}

/**
 * Consecutive appends (in input order) into transactions of at most `maxPerTransaction` appends, 100 items and
 * the size budget; an append that is alone always goes (one append never exceeds the limits).
 */
function packTransactions<T extends { prepared: PreparedAppend }>(
  ready: readonly T[],
  maxPerTransaction: number,
): T[][] {
  const groups: T[][] = [];
  let group: T[] = [];
  let items = 0;
  let bytes = 0;
  for (const append of ready) {
    const n = append.prepared.items.length;
    const b = append.prepared.bytes;
    if (
      group.length > 0 &&
      (group.length >= maxPerTransaction ||
        items + n > MAX_TRANSACTION_ITEMS ||
        bytes + b > MAX_TRANSACTION_BYTES)
    ) {
      groups.push(group);
      group = [];
      items = 0;
      bytes = 0;
    }
    group.push(append);
    items += n;
    bytes += b;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/** An upper estimate of an item's size as DynamoDB counts it (attribute names and values). */
function itemBytes(item: Item): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(item)) {
    bytes += Buffer.byteLength(name, "utf8");
    if (typeof value === "string") bytes += Buffer.byteLength(value, "utf8");
    else if (typeof value === "number") bytes += 21;
    else bytes += Buffer.byteLength(JSON.stringify(value) ?? "", "utf8");
  }
  return bytes + 100;
}

/** `fn` over `items`, at most `limit` at a time, waiting for all of them (so no write is left unobserved). */
async function mapSettled<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<PromiseSettledResult<R>[]> {
  const results = new Array<PromiseSettledResult<R>>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: "fulfilled", value: await fn(at(items, i)) };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  });
  await Promise.all(workers);
  return results;
}

function at<T>(items: readonly T[], index: number): T {
  return items[index] as T;
}

function streamStateOf(items: readonly Item[]): StreamState {
  let current: number | undefined;
  let projection: DocumentProjection | undefined;
  for (const item of items) {
    if (item.sk === SK_HEAD) current = positiveInt(item.version, item, "head version");
    else if (item.kind === "projection") projection = decodeProjection(item);
  }
  return { current, projection };
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

/** The condition of a stream head's write: new (no head yet), or still at the version read. */
function headCondition(
  current: number | undefined,
): Pick<
  NonNullable<TransactItem["Put"]>,
  "ConditionExpression" | "ExpressionAttributeNames" | "ExpressionAttributeValues"
> {
  return current === undefined
    ? { ConditionExpression: "attribute_not_exists(pk)" }
    : {
        ConditionExpression: "#version = :current",
        ExpressionAttributeNames: { "#version": "version" },
        ExpressionAttributeValues: { ":current": current },
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
