import { randomUUID } from "node:crypto";
import { InvalidEventError } from "./errors.js";
import type { StreamId } from "./stream-id.js";

/**
 * The event envelope. Events are immutable facts: once stored they are never changed or removed. `data` is a JSON
 * object whose shape is fixed by `type` and `schemaVersion` (see `docs/events.md`); it never carries a plaintext
 * key, passphrase, TOTP secret or code.
 */
export type EventData = Readonly<Record<string, unknown>>;

export interface NewEvent<Type extends string = string, Data extends EventData = EventData> {
  /** Lower-case UUID (8-4-4-4-12 hex). Appending the same id again is an idempotent replay. */
  readonly eventId: string;
  /** PascalCase event type, e.g. `DocumentEncryptionKeysAdded`. */
  readonly type: Type;
  /** Version of `data`'s schema for this type, from 1; bumped on any incompatible change. */
  readonly schemaVersion: number;
  /** When it happened, ISO 8601 UTC (`2026-11-30T12:00:00.000Z`). */
  readonly occurredAt: string;
  readonly data: Data;
}

export interface StoredEvent<
  Type extends string = string,
  Data extends EventData = EventData,
> extends NewEvent<Type, Data> {
  readonly streamId: StreamId;
  /** Position in the stream: 1 for the first event, then 2, 3, ... without gaps. */
  readonly version: number;
  /** When the store accepted it, ISO 8601 UTC. */
  readonly recordedAt: string;
}

/** Largest `data` accepted, as UTF-8 JSON. Keeps every item far below DynamoDB's 400 KB and a full batch below 4 MB. */
export const MAX_EVENT_DATA_BYTES = 64 * 1024;

const EVENT_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const EVENT_TYPE_PATTERN = /^[A-Z][A-Za-z0-9]{0,127}$/;
const ISO_UTC_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;

export function isEventId(value: unknown): value is string {
  return typeof value === "string" && EVENT_ID_PATTERN.test(value);
}

/** A fresh event with a random id and the current time (or the given ones). */
export function newEvent<Type extends string, Data extends EventData>(
  type: Type,
  data: Data,
  options: { eventId?: string; schemaVersion?: number; occurredAt?: Date | string } = {},
): NewEvent<Type, Data> {
  const occurredAt =
    options.occurredAt instanceof Date
      ? options.occurredAt.toISOString()
      : (options.occurredAt ?? new Date().toISOString());
  return {
    eventId: options.eventId ?? randomUUID(),
    type,
    schemaVersion: options.schemaVersion ?? 1,
    occurredAt,
    data,
  };
}

/**
 * Checks one event's envelope and returns its `data` serialised (the exact JSON the store keeps). Throws
 * `InvalidEventError` naming the event and the field.
 */
export function validateNewEvent(event: unknown, index = 0): { event: NewEvent; dataJson: string } {
  const fail = (message: string, extra: Record<string, unknown> = {}): never => {
    throw new InvalidEventError(`event ${index}: ${message}`, { context: { index, ...extra } });
  };
  if (typeof event !== "object" || event === null || Array.isArray(event)) fail("must be an object");
  const e = event as Record<string, unknown>;
  if (!isEventId(e.eventId)) fail("eventId must be a lower-case UUID", { eventId: preview(e.eventId) });
  if (typeof e.type !== "string" || !EVENT_TYPE_PATTERN.test(e.type)) {
    fail("type must be PascalCase letters and digits (1-128)", { type: preview(e.type) });
  }
  if (typeof e.schemaVersion !== "number" || !Number.isInteger(e.schemaVersion) || e.schemaVersion < 1) {
    fail("schemaVersion must be an integer >= 1", { schemaVersion: preview(e.schemaVersion) });
  }
  if (
    typeof e.occurredAt !== "string" ||
    !ISO_UTC_PATTERN.test(e.occurredAt) ||
    Number.isNaN(Date.parse(e.occurredAt))
  ) {
    fail("occurredAt must be an ISO 8601 UTC time such as 2026-01-31T12:00:00.000Z", {
      occurredAt: preview(e.occurredAt),
    });
  }
  if (typeof e.data !== "object" || e.data === null || Array.isArray(e.data))
    fail("data must be a JSON object");
  let dataJson: string;
  try {
    dataJson = JSON.stringify(e.data);
  } catch (cause) {
    return fail("data is not serialisable as JSON", { cause: String(cause) });
  }
  // Values JSON cannot keep (undefined, functions, NaN, Dates, byte arrays...) would come back different: refuse them.
  if (!isJsonValue(e.data))
    fail("data must hold only JSON values (strings, finite numbers, booleans, null, arrays, objects)");
  // JSON.parse makes `"__proto__"` an own key, which many readers (zod records, object spreads) drop or turn into
  // a prototype: no event may carry one, so that every reader sees the same data.
  if (hasOwnProtoKey(e.data)) fail('data must not have a "__proto__" key (at any depth)');
  const bytes = Buffer.byteLength(dataJson, "utf8");
  if (bytes > MAX_EVENT_DATA_BYTES)
    fail(`data is ${bytes} bytes; at most ${MAX_EVENT_DATA_BYTES} are accepted`);
  const clean: NewEvent = {
    eventId: e.eventId as string,
    type: e.type as string,
    schemaVersion: e.schemaVersion as number,
    occurredAt: e.occurredAt as string,
    data: JSON.parse(dataJson) as EventData,
  };
  return { event: clean, dataJson };
}

function isJsonValue(value: unknown, depth = 0): boolean {
  if (depth > 64) return false;
  if (value === null || typeof value === "string" || typeof value === "boolean") return true;
  if (typeof value === "number") return Number.isFinite(value);
  if (Array.isArray(value)) return value.every((v) => isJsonValue(v, depth + 1));
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) return false;
    return Object.values(value as Record<string, unknown>).every((v) => isJsonValue(v, depth + 1));
  }
  return false;
}

/** Whether a JSON value has an own `__proto__` key at any depth (JSON.parse makes one from `"__proto__":`). */
export function hasOwnProtoKey(value: unknown, depth = 0): boolean {
  if (depth > 64 || value === null || typeof value !== "object") return false;
  if (Array.isArray(value)) return value.some((v) => hasOwnProtoKey(v, depth + 1));
  if (Object.prototype.hasOwnProperty.call(value, "__proto__")) return true;
  return Object.values(value as Record<string, unknown>).some((v) => hasOwnProtoKey(v, depth + 1));
}

function preview(value: unknown): string {
  if (typeof value === "string") return value.slice(0, 100);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return `<${value === null ? "null" : typeof value}>`;
}
