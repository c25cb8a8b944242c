import { AmkError, InvalidInputError, type AmkErrorOptions } from "../shared/errors.js";

/**
 * Errors of the event store. Store failures derive from `EventStoreError`; bad input derives from the shared
 * `InvalidInputError` (code `INVALID_INPUT`, so every handler maps it the same way) and says in `context.field`
 * which part of the input was wrong. Every error leaves the stored state as it was.
 */

/** Base of every event-store failure that is not bad input. */
export abstract class EventStoreError extends AmkError {}

/** What the caller expected of a stream: exactly this version, no stream yet, an existing stream, or anything. */
export type ExpectedStreamVersion = number | "no_stream" | "stream_exists" | "any";

/** What the stream actually was: its current version, or no stream. */
export type ActualStreamVersion = number | "no_stream";

/**
 * The stream was not at the version the append expected (optimistic concurrency): someone else appended first.
 * Re-read the stream, decide again, and append at the version read. Retrying the same call cannot succeed.
 */
export class ExpectedVersionConflictError extends EventStoreError {
  readonly code = "EXPECTED_VERSION_CONFLICT";
  readonly streamId: string;
  readonly expected: ExpectedStreamVersion;
  readonly actual: ActualStreamVersion;

  constructor(
    streamId: string,
    expected: ExpectedStreamVersion,
    actual: ActualStreamVersion,
    options?: AmkErrorOptions,
  ) {
    super(
      `expected version conflict on stream ${streamId}: expected ${describeExpected(expected)}, actual ${describeActual(actual)}`,
      { ...options, context: { ...options?.context, streamId, expected, actual } },
    );
    this.streamId = streamId;
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * An event id of the batch is already stored somewhere else: on another stream, at other positions, or only part of
 * the batch was stored under these ids. An exact replay of an earlier append is not an error (it returns the
 * original position); this is an event id reused for something different.
 */
export class EventIdConflictError extends EventStoreError {
  readonly code = "EVENT_ID_CONFLICT";
}

/** The store is unreachable, throttled or failed transiently; retrying the same call later may succeed. */
export class EventStoreUnavailableError extends EventStoreError {
  readonly code = "EVENT_STORE_UNAVAILABLE";
  override readonly retryable = true;
}

/** The store is misconfigured (table missing, wrong shape, access denied). Fix the configuration; retrying won't help. */
export class EventStoreConfigError extends EventStoreError {
  readonly code = "EVENT_STORE_CONFIG";
}

/**
 * Stored data breaks the store's invariants (an undecodable item, a gap in a stream's versions). Nothing was
 * changed; an operator must look. Never silently repaired.
 */
export class EventStoreCorruptionError extends EventStoreError {
  readonly code = "EVENT_STORE_CORRUPT";
}

/** A store failure that fits no other category (the backend's error is kept as `cause`). */
export class EventStoreOperationError extends EventStoreError {
  readonly code = "EVENT_STORE_FAILED";
}

/** Bad stream id (or workspace / document id that makes one). */
export class InvalidStreamIdError extends InvalidInputError {
  constructor(message: string, options: AmkErrorOptions = {}) {
    super(message, { ...options, context: { field: "streamId", ...options.context } });
  }
}

/** A bad event, an empty or oversized batch, duplicate ids in a batch, or bad append / read options. */
export class InvalidEventError extends InvalidInputError {
  constructor(message: string, options: AmkErrorOptions = {}) {
    super(message, { ...options, context: { field: "events", ...options.context } });
  }
}

/** Bad append or read options (expected version, limit, fromVersion). */
export class InvalidStoreOptionsError extends InvalidInputError {
  constructor(message: string, options: AmkErrorOptions = {}) {
    super(message, { ...options, context: { field: "options", ...options.context } });
  }
}

/** A paging cursor that is malformed, tampered with, of an unknown version, or issued for another query. */
export class InvalidCursorError extends InvalidInputError {
  constructor(message: string, options: AmkErrorOptions = {}) {
    super(message, { ...options, context: { field: "cursor", ...options.context } });
  }
}

function describeExpected(expected: ExpectedStreamVersion): string {
  return typeof expected === "number" ? `version ${expected}` : expected;
}

function describeActual(actual: ActualStreamVersion): string {
  return typeof actual === "number" ? `version ${actual}` : "no_stream";
}
