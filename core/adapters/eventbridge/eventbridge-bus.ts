/**
 * `EventBus` over Amazon EventBridge `PutEvents`.
 *
 * Each `BusEvent` becomes one entry: `Source` = `EVENT_SOURCE`, `DetailType`, `EventBusName`, and `Detail` = the
 * event's detail as JSON with `WorkspaceId` and `EventId` (the publication's stable id, which consumers de-duplicate
 * on: EventBridge delivers at least once and assigns its own ids) added when missing. No `Resources`, no `Time`
 * (EventBridge stamps the call's time).
 *
 * - Entries go in requests of at most 10 entries and 256 KB (EventBridge's entry size: Source + DetailType + Detail
 *   in UTF-8 bytes). An entry larger than 256 KB is refused with `InvalidInputError` before anything is sent.
 * - `PutEvents` can fail some entries and accept the others (`FailedEntryCount`, `Entries[i].ErrorCode`): entries
 *   that failed with a transient code (`ThrottlingException`, `InternalFailure`) are sent again, a few times with a
 *   short exponential backoff; then `EventBusError` lists every event still not accepted, with its error code.
 * - An exception from the call itself becomes `EventBusError` naming the events not published, retryable for
 *   throttling, service-side failures and network errors (the SDK has already retried those by then).
 */
import {
  PutEventsCommand,
  type EventBridgeClient,
  type PutEventsRequestEntry,
  type PutEventsResultEntry,
} from "@aws-sdk/client-eventbridge";
import { EVENT_SOURCE, EventBusError, type BusEvent, type EventBus } from "../../bus/event-bus.js";
import { InvalidInputError } from "../../shared/errors.js";
import { awsErrorContext, awsErrorFacts, describeAwsError, isTransient } from "../aws-service-error.js";

/** EventBridge's limits on one PutEvents request. */
export const PUT_EVENTS_MAX_ENTRIES = 10;
export const PUT_EVENTS_MAX_BYTES = 256 * 1024;
const DETAIL_TYPE_MAX = 128;

/** Entry error codes EventBridge documents as retryable. */
const TRANSIENT_ENTRY_ERRORS: ReadonlySet<string> = new Set([
  "InternalFailure",
  "InternalException",
  "ThrottlingException",
  "ServiceUnavailable",
]);

export interface EventBridgeBusOptions {
  readonly client: EventBridgeClient;
  /** Name or ARN of the event bus (`default` for the account's default bus). */
  readonly eventBusName: string;
  /** How often entries that failed with a transient code are sent again (default 3), and the first delay (100 ms). */
  readonly retry?: { readonly maxRetries?: number; readonly baseDelayMs?: number };
}

/** One event still not accepted. */
export interface FailedBusEvent {
  readonly id: string;
  readonly detailType: string;
  readonly errorCode: string;
}

interface PendingEntry {
  readonly event: BusEvent;
  readonly entry: PutEventsRequestEntry;
  readonly size: number;
}

/** One publish's state: which entries EventBridge accepted and the last error code of the others that failed. */
interface Progress {
  readonly entries: readonly PendingEntry[];
  readonly accepted: Set<PendingEntry>;
  readonly failed: Map<PendingEntry, string>;
}

/** The failed events in publication order. */
function failures(progress: Progress): FailedBusEvent[] {
  return progress.entries
    .filter((p) => progress.failed.has(p))
    .map((p) => ({ id: p.event.id, detailType: p.event.detailType, errorCode: progress.failed.get(p)! }));
}

export class EventBridgeBus implements EventBus {
  private readonly client: EventBridgeClient;
  private readonly eventBusName: string;
  private readonly maxRetries: number;
  private readonly baseDelayMs: number;

  constructor(options: EventBridgeBusOptions) {
    if (typeof options.eventBusName !== "string" || options.eventBusName.trim() === "") {
      throw new InvalidInputError("EventBridgeBus: eventBusName must be a non-empty bus name or ARN");
    }
    const maxRetries = options.retry?.maxRetries ?? 3;
    const baseDelayMs = options.retry?.baseDelayMs ?? 100;
    if (!Number.isInteger(maxRetries) || maxRetries < 0 || !Number.isFinite(baseDelayMs) || baseDelayMs < 0) {
      throw new InvalidInputError(
        "EventBridgeBus: retry.maxRetries must be an integer >= 0, baseDelayMs >= 0",
        {
          context: { maxRetries, baseDelayMs },
        },
      );
    }
    this.client = options.client;
    this.eventBusName = options.eventBusName;
    this.maxRetries = maxRetries;
    this.baseDelayMs = baseDelayMs;
  }

  async publish(events: readonly BusEvent[]): Promise<void> {
    // Everything is checked before the first call: a bad event publishes nothing.
    const entries = events.map((event) => this.toEntry(event));
    const progress: Progress = { entries, accepted: new Set(), failed: new Map() };
    for (const batch of batches(entries)) await this.putWithRetries(batch, progress);
    if (progress.failed.size > 0) {
      const failed = failures(progress);
      const listed = failed
        .slice(0, 10)
        .map((f) => `${f.id} (${f.errorCode})`)
        .join(", ");
      throw new EventBusError(
        `EventBridge did not accept ${failed.length} of ${events.length} event(s) on bus ${this.eventBusName}: ` +
          `${listed}${failed.length > 10 ? ", ..." : ""}`,
        {
          retryable: failed.every((f) => TRANSIENT_ENTRY_ERRORS.has(f.errorCode)),
          context: { eventBusName: this.eventBusName, failed, published: progress.accepted.size },
        },
      );
    }
  }

  /** Sends one batch, then again its entries that failed with a transient code, a few times. */
  private async putWithRetries(batch: PendingEntry[], progress: Progress): Promise<void> {
    let pending = batch;
    for (let attempt = 0; ; attempt++) {
      const results = await this.put(pending, progress);
      const retry: PendingEntry[] = [];
      pending.forEach((p, i) => {
        // Results answer in request order; an entry without an EventId was not accepted.
        const result: PutEventsResultEntry | undefined = results[i];
        if (result?.EventId !== undefined && result.ErrorCode === undefined) {
          progress.accepted.add(p);
          progress.failed.delete(p);
          return;
        }
        const errorCode = result?.ErrorCode ?? "NoResult";
        progress.failed.set(p, errorCode);
        if (TRANSIENT_ENTRY_ERRORS.has(errorCode)) retry.push(p);
      });
      if (retry.length === 0 || attempt >= this.maxRetries) return;
      await sleep(backoff(this.baseDelayMs, attempt));
      pending = retry;
    }
  }

  private async put(batch: PendingEntry[], progress: Progress): Promise<PutEventsResultEntry[]> {
    try {
      const out = await this.client.send(new PutEventsCommand({ Entries: batch.map((p) => p.entry) }));
      return out.Entries ?? [];
    } catch (err) {
      const facts = awsErrorFacts(err);
      // Every event not accepted so far is reported: those refused earlier with their code, the rest with this one.
      for (const p of progress.entries) {
        if (!progress.accepted.has(p) && !progress.failed.has(p)) progress.failed.set(p, facts.name);
      }
      for (const p of batch) progress.failed.set(p, facts.name);
      const failed = failures(progress);
      throw new EventBusError(
        `PutEvents on bus ${this.eventBusName} failed (${describeAwsError(facts)}): ` +
          `${failed.length} of ${progress.entries.length} event(s) not published`,
        {
          cause: err,
          retryable: isTransient(facts),
          context: {
            eventBusName: this.eventBusName,
            ...awsErrorContext(facts),
            failed,
            published: progress.accepted.size,
          },
        },
      );
    }
  }

  private toEntry(event: BusEvent): PendingEntry {
    const problems: string[] = [];
    if (typeof event?.id !== "string" || event.id === "") problems.push("id");
    if (typeof event?.workspaceId !== "string" || event.workspaceId === "") problems.push("workspaceId");
    if (
      typeof event?.detailType !== "string" ||
      event.detailType.trim() === "" ||
      event.detailType.length > DETAIL_TYPE_MAX
    ) {
      problems.push("detailType");
    }
    if (event?.detail === null || typeof event?.detail !== "object" || Array.isArray(event.detail)) {
      problems.push("detail");
    }
    const facts = { eventId: typeof event?.id === "string" ? event.id.slice(0, 128) : undefined };
    if (problems.length > 0) {
      throw new InvalidInputError(`bus event has missing or invalid fields: ${problems.join(", ")}`, {
        context: { ...facts, fields: problems },
      });
    }
    for (const [field, value] of [
      ["WorkspaceId", event.workspaceId],
      ["EventId", event.id],
    ] as const) {
      if (field in event.detail && event.detail[field] !== value) {
        throw new InvalidInputError(`bus event ${event.id}: detail.${field} differs from the event's`, {
          context: { ...facts, field },
        });
      }
    }
    let detail: string;
    try {
      detail = JSON.stringify({ ...event.detail, WorkspaceId: event.workspaceId, EventId: event.id });
    } catch {
      throw new InvalidInputError(`bus event ${event.id}: detail is not JSON-serialisable`, {
        context: facts,
      });
    }
    const entry: PutEventsRequestEntry = {
      Source: EVENT_SOURCE,
      DetailType: event.detailType,
      Detail: detail,
      EventBusName: this.eventBusName,
    };
    const size = utf8Bytes(EVENT_SOURCE) + utf8Bytes(event.detailType) + utf8Bytes(detail);
    if (size > PUT_EVENTS_MAX_BYTES) {
      throw new InvalidInputError(
        `bus event ${event.id} (${event.detailType}) is ${size} bytes: EventBridge accepts at most ` +
          `${PUT_EVENTS_MAX_BYTES} bytes per event`,
        { context: { ...facts, detailType: event.detailType, size, limit: PUT_EVENTS_MAX_BYTES } },
      );
    }
    return { event, entry, size };
  }
}

/** Splits entries, in order, into requests of at most 10 entries and 256 KB. */
function batches(entries: PendingEntry[]): PendingEntry[][] {
  const out: PendingEntry[][] = [];
  let current: PendingEntry[] = [];
  let bytes = 0;
  for (const e of entries) {
    if (
      current.length === PUT_EVENTS_MAX_ENTRIES ||
      (current.length > 0 && bytes + e.size > PUT_EVENTS_MAX_BYTES)
    ) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(e);
    bytes += e.size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

const utf8Bytes = (s: string): number => Buffer.byteLength(s, "utf8");

/** base * 2^attempt, with jitter between half and all of it. */
function backoff(baseMs: number, attempt: number): number {
  const ceiling = baseMs * 2 ** attempt;
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
