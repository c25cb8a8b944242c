import type { ExpectedStreamVersion, ExpectedVersionConflictError } from "./errors.js";
import type { NewEvent, StoredEvent } from "./events.js";
import type { DocumentProjection } from "./projection.js";

export type { ExpectedStreamVersion } from "./errors.js";

/**
 * Most events one append takes. A DynamoDB transaction holds at most 100 items and an append writes the stream
 * head, each event, each event's id marker and the document projection: 1 + 2 x 49 + 1 = 100. Every adapter keeps
 * this limit so callers behave the same on every backend.
 */
export const MAX_EVENTS_PER_APPEND = 49;
/** Largest page a read or census listing returns. */
export const MAX_PAGE_SIZE = 1000;

export interface AppendOptions {
  /**
   * The version the caller read (`0` is the same as `"no_stream"`), `"no_stream"` (the stream must not exist),
   * `"stream_exists"` (it must exist, at any version) or `"any"`. A numeric or `"no_stream"` expectation that does
   * not hold is an `ExpectedVersionConflictError`; wrap records are always appended at the version read.
   */
  readonly expectedVersion: ExpectedStreamVersion;
}

export interface AppendResult {
  /** False when every event id of the batch was already stored by an earlier append (an idempotent replay). */
  readonly appended: boolean;
  /** Version of the batch's first event. */
  readonly firstVersion: number;
  /** Version of the batch's last event: the stream version to expect next (for a replay, as originally appended). */
  readonly nextExpectedVersion: number;
}

/** One append of an `appendToStreams` call: what `appendToStream` takes, for one stream. */
export interface StreamAppend {
  readonly streamId: string;
  /** 1..MAX_EVENTS_PER_APPEND events, as for `appendToStream`. */
  readonly events: readonly NewEvent[];
  /** As `AppendOptions.expectedVersion`. */
  readonly expectedVersion: ExpectedStreamVersion;
  /**
   * Optional, document streams only: the document projection the caller read (the census listing gives it), with
   * `version` equal to `expectedVersion`. A store may then write without reading the stream's head and projection
   * first. It is a hint, never trusted: the write is also conditional on the stored projection being exactly this
   * one, and an append whose hint was wrong is read and tried again as without it (or reported as a conflict).
   */
  readonly knownProjection?: DocumentProjection;
}

/** What became of one append of an `appendToStreams` call. */
export type StreamAppendOutcome =
  | {
      /** `replayed`: every event id was already stored by an earlier append (the original position is returned). */
      readonly status: "appended" | "replayed";
      readonly streamId: string;
      readonly firstVersion: number;
      readonly nextExpectedVersion: number;
    }
  | {
      /** The expected version did not hold: nothing of this append was written; re-read, decide, append again. */
      readonly status: "conflict";
      readonly streamId: string;
      readonly error: ExpectedVersionConflictError;
    };

export interface AppendToStreamsOptions {
  /**
   * At most this many appends per atomic transaction (1..100; default: as many as the backend allows). Smaller
   * transactions collide less with concurrent writers.
   */
  readonly maxPerTransaction?: number;
}

export interface ReadStreamOptions {
  /** First version to return, from 1 (default 1). Not together with `cursor`. */
  readonly fromVersion?: number;
  /** At most this many events (1..MAX_PAGE_SIZE); without it, every event up to the current version. */
  readonly limit?: number;
  /** Resume where the previous page of the same stream ended. */
  readonly cursor?: string;
}

export interface ReadStreamResult {
  /** In version order, without gaps, up to the version current when the read started. */
  readonly events: StoredEvent[];
  /** The stream's version when the read started; undefined when the stream does not exist. */
  readonly currentVersion: number | undefined;
  /** Present when more events follow: pass it back to continue. */
  readonly cursor?: string;
}

export interface ListDocumentsOptions {
  /** Page size, 1..MAX_PAGE_SIZE. */
  readonly limit: number;
  readonly cursor?: string;
}

export interface ListDocumentsResult {
  readonly documents: DocumentProjection[];
  /** Present when more documents may follow. */
  readonly cursor?: string;
}

/**
 * The event store: streams per workspace (`ws-<id>`) and per document (`ws-<id>/doc-<id>`), each an ordered list of
 * immutable events. Appends are atomic and conditional on the expected version. Appending to a document stream
 * updates its `DocumentProjection` in the same atomic write, derived from the events by `evolveDocumentProjection`,
 * so the projection and the census never disagree with the streams.
 *
 * Errors: bad input is an `InvalidInputError` (`InvalidStreamIdError`, `InvalidEventError`,
 * `InvalidStoreOptionsError`, `InvalidCursorError`) and writes nothing; store failures are `EventStoreError`s
 * (`ExpectedVersionConflictError`, `EventIdConflictError`, `EventStoreUnavailableError` (retryable), ...).
 */
export interface EventStore {
  /**
   * Appends 1..MAX_EVENTS_PER_APPEND events atomically at the expected version. If every event id of the batch was
   * already appended, in this order, to this stream, nothing is written and the original position is returned with
   * `appended: false`, whatever the expected version (an exact retry of a lost response). If only some were, or
   * elsewhere: `EventIdConflictError`.
   */
  appendToStream(
    streamId: string,
    events: readonly NewEvent[],
    options: AppendOptions,
  ): Promise<AppendResult>;

  /**
   * Appends to several streams (each at most once per call) in as few atomic transactions as the backend allows
   * (DynamoDB: 100 items, 4 MB). Each append is conditional on its own expected version exactly as in
   * `appendToStream` and updates its document projection the same way; an append whose expectation fails is
   * reported as `conflict` (and the others are still written), an exact replay as `replayed` with its original
   * position. Outcomes are in input order. No atomicity across appends is promised: each append is all or nothing.
   *
   * Every append is validated before anything is written: bad input (including two appends to one stream, or one
   * event id in two appends) is an `InvalidInputError` and writes nothing. An empty list returns `[]`.
   * An event id reused for something else (`EventIdConflictError`) or a store failure rejects the whole call; appends
   * committed before stay written, and repeating the same call is safe (they come back `replayed`).
   */
  appendToStreams(
    appends: readonly StreamAppend[],
    options?: AppendToStreamsOptions,
  ): Promise<StreamAppendOutcome[]>;

  /**
   * The events at the given positions (stream and version), in input order; undefined where a stream has no event at
   * that version. Strongly consistent, batched: for readers that know where to look (the re-wrap reads each
   * document's current record at the projection's `keysVersion`).
   */
  readEvents(
    refs: readonly { readonly streamId: string; readonly version: number }[],
  ): Promise<(StoredEvent | undefined)[]>;

  /** Events of a stream in version order, with a cursor when a `limit` cut the page short. */
  readStream(streamId: string, options?: ReadStreamOptions): Promise<ReadStreamResult>;

  /** The document projection (strongly consistent); undefined when the document stream has no projected event. */
  getDocumentProjection(workspaceId: string, documentId: string): Promise<DocumentProjection | undefined>;

  /**
   * How many documents of the workspace have `keyId` as their current key and are not deleted. Reads an index that
   * follows the projection within moments (eventually consistent on DynamoDB): a census that must prove a key
   * unused runs after writes to it have stopped, and double-checks with `getDocumentProjection`.
   */
  countDocumentsByKeyId(workspaceId: string, keyId: string): Promise<number>;

  /** The documents counted by `countDocumentsByKeyId`, a page at a time, each exactly once across the pages. */
  listDocumentsByKeyId(
    workspaceId: string,
    keyId: string,
    options: ListDocumentsOptions,
  ): Promise<ListDocumentsResult>;

  /** How many census shards a (workspace, KeyId) is spread over; shards are numbered 0..censusShards-1. */
  readonly censusShards: number;

  /**
   * One census shard's documents on `keyId`, in document-id order, after `after` when given. Lets the re-wrap work
   * on shards in parallel and resume from the index itself (a moved document leaves its shard's listing).
   */
  listDocumentsByKeyIdInShard(
    workspaceId: string,
    keyId: string,
    shard: number,
    options: { limit: number; after?: string },
  ): Promise<DocumentProjection[]>;

  /** Every `KeyId` that at least one live (not deleted) document of the workspace uses, by ascending key version. */
  listKeyIdsInUse(workspaceId: string): Promise<string[]>;
}
