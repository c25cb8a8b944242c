/**
 * The reliability suite's fault layer (test support, not production code): faults injected AROUND the real adapters,
 * never instead of them, decided by a small seeded PRNG so that a run's fault stream can be replayed from its seed.
 *
 * - HSM (PKCS#11, through the adapter's `intercept` hook): a call of the real SoftHSM2 library fails, before it
 *   reaches the library, with CKR_FUNCTION_FAILED or CKR_DEVICE_ERROR (transient: the HSM is busy or failed for a
 *   moment; PKCS#11 has no CKR_DEVICE_BUSY, CKR_DEVICE_ERROR is the code HSMs answer when busy), CKR_SESSION_HANDLE_INVALID
 *   or CKR_DEVICE_REMOVED (the session, and with it the session objects, is lost). The adapter's own retries and
 *   session recovery see exactly what a real library would return.
 * - HSM latency (a `KeyStore` wrapper): a data-key operation is delayed (a slow, loaded HSM), which widens every
 *   race window between readers and writers.
 * - Event store (an `EventStore` wrapper around the real `DynamoDbEventStore`): DynamoDB throttling (the adapter's
 *   own `EventStoreUnavailableError`, made by its own error translation), a transient `TransactionCanceledException`
 *   (`TransactionConflict`), a conditional-check conflict (`ExpectedVersionConflictError`, the adapter's answer to a
 *   `TransactionCanceledException` with `ConditionalCheckFailed`) before the real append, and a lost response: the
 *   real append is written, then the caller gets a throttling error.
 * - A function killed mid-batch: `armMidBatchCrash()` lets the next `appendToStreams` write part of its batch for
 *   real and then throw `SimulatedCrashError` (what a process exit in the middle of a batch leaves behind);
 *   `crashOnce()` makes a handler throw it once, before or after the real handler ran.
 * - EventBridge: `EventBridgeDeliveries` delivers lifecycle events at least once, in any order, with duplicates and
 *   retries of failed invocations (then a dead-letter list), to the real document-lifecycle handler.
 * - Clock skew: `skewedClock(offsetSeconds)` for the TOTP unlock gate.
 *
 * How the functions get the wrapped adapters: `installFaultLayer()` registers decorators through the test-only hooks
 * of functions/shared/key-store.ts and functions/shared/event-store.ts; every adapter they build from then on is
 * wrapped, and each wrapper asks the layer's current `FaultPlan` (one per run, swapped with `layer.use(plan)`).
 */
import pkcs11js from "pkcs11js";
import { translateCancellation, translateDynamoDbError } from "../../core/adapters/dynamodb/errors.js";
import type { BackupSource } from "../../core/backup/ports.js";
import { ExpectedVersionConflictError, type ExpectedStreamVersion } from "../../core/eventstore/errors.js";
import type { EventStore, StreamAppend, StreamAppendOutcome } from "../../core/eventstore/event-store.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { sleep } from "../../core/shared/retry.js";
import { setEventStoreDecorator } from "../../functions/shared/event-store.js";
import { setKeyStoreDecorators } from "../../functions/shared/key-store.js";

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: a small, fast 32-bit PRNG; the same seed gives the same sequence. */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  /** `count` distinct items, in random order. */
  sample<T>(items: readonly T[], count: number): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy.slice(0, count);
  }
  /** An independent stream for one purpose, so that one channel's draws never shift another's. */
  fork(label: string): Prng {
    return new Prng(seedOf(`${this.state}:${label}`));
  }
}

/** A 32-bit seed from text (FNV-1a). */
export function seedOf(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text, "utf8")) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** What a process killed in the middle of its work leaves: the invocation fails with this (never retried). */
export class SimulatedCrashError extends Error {
  override readonly name = "SimulatedCrashError";
}

// ---------------------------------------------------------------------------------------------------------------
// The plan of one run

export type HsmFault =
  "CKR_FUNCTION_FAILED" | "CKR_DEVICE_ERROR" | "CKR_SESSION_HANDLE_INVALID" | "CKR_DEVICE_REMOVED";
export type StoreFault = "throttled" | "transaction-conflict" | "version-conflict" | "lost-response";

const HSM_FAULTS: readonly { kind: HsmFault; code: number; weight: number }[] = [
  { kind: "CKR_FUNCTION_FAILED", code: pkcs11js.CKR_FUNCTION_FAILED, weight: 35 },
  { kind: "CKR_DEVICE_ERROR", code: pkcs11js.CKR_DEVICE_ERROR, weight: 35 },
  { kind: "CKR_SESSION_HANDLE_INVALID", code: pkcs11js.CKR_SESSION_HANDLE_INVALID, weight: 15 },
  { kind: "CKR_DEVICE_REMOVED", code: pkcs11js.CKR_DEVICE_REMOVED, weight: 15 },
];

/** Faults of an append: a version conflict only where the real store could answer one (numeric or no_stream). */
const APPEND_FAULTS: readonly { kind: StoreFault; weight: number }[] = [
  { kind: "throttled", weight: 25 },
  { kind: "transaction-conflict", weight: 15 },
  { kind: "version-conflict", weight: 30 },
  { kind: "lost-response", weight: 30 },
];

/**
 * PKCS#11 functions that get faults: those called on a session (the adapter runs them with retries). Slot-level
 * calls (C_Initialize, C_GetSlotList, C_GetTokenInfo) and cleanup calls (C_CloseSession, C_FindObjectsFinal) are
 * left alone: a fault there tests nothing but the fault layer.
 */
const INJECTABLE_PKCS11 = new Set([
  "C_OpenSession",
  "C_Login",
  "C_GetSessionInfo",
  "C_FindObjectsInit",
  "C_FindObjects",
  "C_GetAttributeValue",
  "C_GenerateRandom",
  "C_GenerateKey",
  "C_GenerateKeyPair",
  "C_CreateObject",
  "C_DestroyObject",
  "C_EncryptInit",
  "C_Encrypt",
  "C_DecryptInit",
  "C_Decrypt",
  "C_WrapKey",
  "C_UnwrapKey",
]);

/** KeyStore operations that get latency: the data plane (every DEK goes through them). */
const SLOW_OPERATIONS = new Set(["generateDataKey", "wrapDataKey", "unwrapDataKey", "rewrapDataKey"]);

export interface FaultPlanOptions {
  /** Probability that one PKCS#11 call fails (0 disables). Default: `rate`. */
  readonly hsmRate?: number;
  /** Probability that one event-store call fails. Default: `rate`. */
  readonly storeRate?: number;
  /** Probability that one data-key HSM operation is delayed, and the longest delay (ms). Default: `rate`, 150 ms. */
  readonly latencyRate?: number;
  readonly maxLatencyMs?: number;
}

/**
 * The faults of one run: a seed, a rate, and counters of what was injected. Faults are injected only while
 * `enabled` (a scenario pauses them for its setup and for the history checker).
 */
export class FaultPlan {
  enabled = false;
  readonly hsmRate: number;
  readonly storeRate: number;
  readonly latencyRate: number;
  readonly maxLatencyMs: number;
  /** Injected faults by kind (`hsm:CKR_...`, `store:throttled`, `latency`, `crash:mid-batch`, ...). */
  readonly injected = new Map<string, number>();
  /** Calls that passed through the layer while enabled, by channel. */
  readonly calls = { hsm: 0, store: 0, keyStore: 0 };
  private readonly hsm: Prng;
  private readonly store: Prng;
  private readonly latency: Prng;
  private crashArmed = false;
  /** Targeted one-shot faults: the next call of that PKCS#11 function fails with that code (whatever the rate). */
  private readonly once = new Map<string, { kind: HsmFault; left: number }>();
  /** Holds: the next call of that key-store operation waits until released (a stalled HSM call). */
  private readonly holds = new Map<string, { reached: () => void; released: Promise<void> }>();

  constructor(
    readonly seed: number,
    readonly rate: number,
    options: FaultPlanOptions = {},
  ) {
    const root = new Prng(seed);
    this.hsm = root.fork("hsm");
    this.store = root.fork("store");
    this.latency = root.fork("latency");
    this.hsmRate = options.hsmRate ?? rate;
    this.storeRate = options.storeRate ?? rate;
    this.latencyRate = options.latencyRate ?? rate;
    this.maxLatencyMs = options.maxLatencyMs ?? 150;
  }

  /** Runs `fn` with faults off (setup, checks), then restores the previous state. */
  async paused<T>(fn: () => Promise<T>): Promise<T> {
    const was = this.enabled;
    this.enabled = false;
    try {
      return await fn();
    } finally {
      this.enabled = was;
    }
  }

  /** The next `times` calls of the PKCS#11 function `fn` fail with `kind` (while enabled; deterministic faults). */
  injectOnce(fn: string, kind: HsmFault, times = 1): void {
    if (times <= 0) this.once.delete(fn);
    else this.once.set(fn, { kind, left: times });
  }

  /**
   * The next call of the key-store operation `operation` stalls until `release()` (a slow HSM, deterministically):
   * `reached` resolves when the call is waiting.
   */
  holdNext(operation: string): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    let release!: () => void;
    const reachedP = new Promise<void>((r) => (reached = r));
    const released = new Promise<void>((r) => (release = r));
    this.holds.set(operation, { reached, released });
    return { reached: reachedP, release };
  }

  /** The hold of this key-store operation, taken (one call waits on it). */
  takeHold(operation: string): Promise<void> | undefined {
    const h = this.holds.get(operation);
    if (!h) return undefined;
    this.holds.delete(operation);
    this.count("hsm:stalled");
    h.reached();
    return h.released;
  }

  /** The next `appendToStreams` writes part of its batch for real, then throws `SimulatedCrashError`. */
  armMidBatchCrash(): void {
    this.crashArmed = true;
  }

  get midBatchCrashPending(): boolean {
    return this.crashArmed;
  }

  /** Total faults injected. */
  get total(): number {
    let n = 0;
    for (const v of this.injected.values()) n += v;
    return n;
  }

  /** One line: the seed, the rates and what was injected. */
  describe(): string {
    const kinds = [...this.injected.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    return (
      `seed=${this.seed} rate=${this.rate} calls hsm=${this.calls.hsm} store=${this.calls.store} ` +
      `keyStore=${this.calls.keyStore}; injected ${this.total}${kinds ? `: ${kinds}` : ""}`
    );
  }

  count(kind: string): void {
    this.injected.set(kind, (this.injected.get(kind) ?? 0) + 1);
  }

  /** The PKCS#11 fault for this call, if any. */
  hsmFault(fn: string): { kind: HsmFault; code: number } | undefined {
    if (!this.enabled || !INJECTABLE_PKCS11.has(fn)) return undefined;
    this.calls.hsm += 1;
    const targeted = this.once.get(fn);
    if (targeted) {
      if (--targeted.left <= 0) this.once.delete(fn);
      this.count(`hsm:${targeted.kind}`);
      return HSM_FAULTS.find((f) => f.kind === targeted.kind)!;
    }
    if (!this.hsm.chance(this.hsmRate)) return undefined;
    const f = weighted(this.hsm, HSM_FAULTS);
    this.count(`hsm:${f.kind}`);
    return f;
  }

  /** Milliseconds to delay this key-store operation (0: none). */
  latencyFor(operation: string): number {
    if (!this.enabled || !SLOW_OPERATIONS.has(operation)) return 0;
    this.calls.keyStore += 1;
    if (!this.latency.chance(this.latencyRate)) return 0;
    this.count("hsm:latency");
    return this.latency.int(10, this.maxLatencyMs);
  }

  /** The fault of a read (throttling only), if any. */
  readFault(): "throttled" | undefined {
    if (!this.enabled) return undefined;
    this.calls.store += 1;
    if (!this.store.chance(this.storeRate)) return undefined;
    this.count("store:throttled");
    return "throttled";
  }

  /** The fault of an append, if any: a version conflict only for a numeric or no_stream expectation. */
  appendFault(expected: ExpectedStreamVersion | "mixed"): StoreFault | undefined {
    if (!this.enabled) return undefined;
    this.calls.store += 1;
    if (!this.store.chance(this.storeRate)) return undefined;
    let kind = weighted(this.store, APPEND_FAULTS).kind;
    if (kind === "version-conflict" && (expected === "any" || expected === "stream_exists"))
      kind = "throttled";
    this.count(`store:${kind}`);
    return kind;
  }

  /** Whether this append of a batch loses its race (an injected conflict outcome). */
  conflictOne(): boolean {
    return this.store.chance(0.5);
  }

  /** Consumes an armed mid-batch crash. */
  takeCrash(): boolean {
    if (!this.crashArmed) return false;
    this.crashArmed = false;
    this.count("crash:mid-batch");
    return true;
  }
}

function weighted<T extends { weight: number }>(prng: Prng, items: readonly T[]): T {
  const total = items.reduce((a, i) => a + i.weight, 0);
  let r = prng.next() * total;
  for (const i of items) {
    r -= i.weight;
    if (r < 0) return i;
  }
  return items[items.length - 1]!;
}

// ---------------------------------------------------------------------------------------------------------------
// The layer: decorators registered once, delegating to the current plan

export class FaultLayer {
  /** The plan faults are taken from; none: every wrapper passes calls straight through. */
  plan: FaultPlan | undefined;

  use(plan: FaultPlan | undefined): void {
    this.plan = plan;
  }

  /** Wraps a loaded PKCS#11 module: a call fails (before reaching the library) when the plan says so. */
  wrapPkcs11(real: pkcs11js.PKCS11): pkcs11js.PKCS11 {
    return new Proxy(real, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== "function") return value;
        const name = String(prop);
        return (...args: unknown[]) => {
          const fault = this.plan?.hsmFault(name);
          if (fault) throw new pkcs11js.Pkcs11Error(`injected ${fault.kind}`, fault.code, name);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  }

  /** Wraps a key store: data-key operations may be delayed; everything else passes through. */
  wrapKeyStore(real: KeyStore): KeyStore {
    return new Proxy(real, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== "function") return value;
        const name = String(prop);
        return async (...args: unknown[]) => {
          const hold = this.plan?.takeHold(name);
          if (hold) await hold;
          const delay = this.plan?.latencyFor(name) ?? 0;
          if (delay > 0) await sleep(delay);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  }

  /** Wraps an event store: throttled reads; throttled, conflicting, cancelled or lost-response appends. */
  wrapEventStore(real: EventStore): EventStore {
    const read =
      <A extends unknown[], R>(operation: string, f: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        if (this.plan?.readFault()) throw throttled(operation);
        return f(...args);
      };
    const current = (): FaultPlan | undefined => this.plan;
    return {
      get censusShards() {
        return real.censusShards;
      },
      async appendToStream(streamId, events, options) {
        const plan = current();
        const fault = plan?.appendFault(options.expectedVersion);
        if (fault === "throttled") throw throttled("appendToStream");
        if (fault === "transaction-conflict") throw transactionConflict("appendToStream");
        if (fault === "version-conflict") throw versionConflict(streamId, options.expectedVersion);
        const result = await real.appendToStream(streamId, events, options);
        if (fault === "lost-response") throw throttled("appendToStream", true);
        return result;
      },
      async appendToStreams(appends, options) {
        const plan = current();
        if (plan?.enabled && plan.takeCrash()) {
          // A process killed in the middle of its batch: the first part is written, the rest never is.
          const written = Math.max(1, Math.floor(appends.length / 2));
          await real.appendToStreams(appends.slice(0, written), options);
          throw new SimulatedCrashError(
            `simulated crash after writing ${written} of ${appends.length} appends of a batch`,
          );
        }
        const fault = plan?.appendFault("mixed");
        if (fault === "throttled") throw throttled("appendToStreams");
        if (fault === "transaction-conflict") throw transactionConflict("appendToStreams");
        if (fault === "version-conflict") {
          // Some appends lose their race (reported per append, as the real store does); the others are written.
          const losing = new Set<StreamAppend>();
          for (const a of appends) {
            if (canConflict(a.expectedVersion) && plan!.conflictOne()) losing.add(a);
          }
          const rest = appends.filter((a) => !losing.has(a));
          const outcomes = rest.length > 0 ? await real.appendToStreams(rest, options) : [];
          const byStream = new Map(outcomes.map((o) => [o.streamId, o]));
          return appends.map((a): StreamAppendOutcome =>
            losing.has(a)
              ? {
                  status: "conflict",
                  streamId: a.streamId,
                  error: versionConflict(a.streamId, a.expectedVersion),
                }
              : byStream.get(a.streamId)!,
          );
        }
        const result = await real.appendToStreams(appends, options);
        if (fault === "lost-response") throw throttled("appendToStreams", true);
        return result;
      },
      readEvents: read("readEvents", (refs) => real.readEvents(refs)),
      readStream: read("readStream", (id, o) => real.readStream(id, o)),
      getDocumentProjection: read("getDocumentProjection", (w, d) => real.getDocumentProjection(w, d)),
      countDocumentsByKeyId: read("countDocumentsByKeyId", (w, k) => real.countDocumentsByKeyId(w, k)),
      listDocumentsByKeyId: read("listDocumentsByKeyId", (w, k, o) => real.listDocumentsByKeyId(w, k, o)),
      listDocumentsByKeyIdInShard: read("listDocumentsByKeyIdInShard", (w, k, s, o) =>
        real.listDocumentsByKeyIdInShard(w, k, s, o),
      ),
      listKeyIdsInUse: read("listKeyIdsInUse", (w) => real.listKeyIdsInUse(w)),
    };
  }

  /** Wraps a backup source (an export's reads): throttled reads and listing pages. */
  wrapBackupSource(real: BackupSource): BackupSource {
    const current = (): FaultPlan | undefined => this.plan;
    return {
      tableName: real.tableName,
      async readEvents(refs) {
        if (current()?.readFault()) throw throttled("readEvents");
        return real.readEvents(refs);
      },
      async readStream(id, options) {
        if (current()?.readFault()) throw throttled("readStream");
        return real.readStream(id, options);
      },
      async *listStreamHeads(scope) {
        for await (const page of real.listStreamHeads(scope)) {
          if (current()?.readFault()) throw throttled("listStreamHeads");
          yield page;
        }
      },
    };
  }
}

const canConflict = (e: ExpectedStreamVersion): boolean => typeof e === "number" || e === "no_stream";

/** DynamoDB throttling as the adapter itself translates it (`EventStoreUnavailableError`, retryable). */
function throttled(operation: string, afterWrite = false): Error {
  const sdk = Object.assign(new Error("Rate of requests exceeds the allowed throughput."), {
    name: "ThrottlingException",
    $metadata: { httpStatusCode: 400 },
    $retryable: { throttling: true },
  });
  return translateDynamoDbError(sdk, operation, {
    injected: afterWrite ? "lost-response" : "throttled",
  });
}

/** A transaction cancelled by a concurrent transaction on the same items (transient, retryable). */
function transactionConflict(operation: string): Error {
  const sdk = Object.assign(new Error("Transaction cancelled"), {
    name: "TransactionCanceledException",
    $metadata: { httpStatusCode: 400 },
  });
  return translateCancellation(["TransactionConflict"], sdk, operation, { injected: "transaction-conflict" });
}

/** The adapter's answer to a failed conditional check on the stream head: someone else appended first. */
function versionConflict(streamId: string, expected: ExpectedStreamVersion): ExpectedVersionConflictError {
  const actual = typeof expected === "number" ? expected + 1 : 1;
  return new ExpectedVersionConflictError(streamId, expected, actual, {
    context: { injected: "version-conflict" },
  });
}

/**
 * Registers the layer's decorators with the functions' adapter factories (test-only hooks): every key store and
 * event store the functions build from now on is wrapped. Returns the layer; `uninstall()` removes the hooks.
 */
export function installFaultLayer(): FaultLayer & { uninstall(): void } {
  const layer = new FaultLayer();
  setKeyStoreDecorators({
    pkcs11: (p) => layer.wrapPkcs11(p),
    keyStore: (ks) => layer.wrapKeyStore(ks),
  });
  setEventStoreDecorator((es) => layer.wrapEventStore(es));
  return Object.assign(layer, {
    uninstall: () => {
      setKeyStoreDecorators({});
      setEventStoreDecorator(undefined);
    },
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Crashes of handlers

export type CrashMode = "before" | "after";

/**
 * A handler that crashes once: `before` throws without running the real handler (the function died on entry),
 * `after` runs it and then throws (its work is done, its answer is lost). Later calls run the real handler.
 */
export function crashOnce<H extends (...args: never[]) => unknown>(
  handler: H,
  mode: CrashMode,
  onCrash?: () => void,
): { handler: H; readonly fired: boolean } {
  let fired = false;
  const wrapped = (async (...args: Parameters<H>) => {
    if (fired) return handler(...args);
    if (mode === "before") {
      fired = true;
      onCrash?.();
      throw new SimulatedCrashError("simulated crash on entry");
    }
    await handler(...args);
    fired = true;
    onCrash?.();
    throw new SimulatedCrashError("simulated crash after the work, before the answer");
  }) as unknown as H;
  return {
    handler: wrapped,
    get fired() {
      return fired;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Callers that retry

/** What a caller sees of a failure: a retryable flag (domain errors and handler answers carry one). */
export function isRetryable(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { retryable?: unknown }).retryable === true;
}

/** Retries `fn` while it fails with a retryable error, up to `attempts`, with a short jittered pause. */
export async function withRetries<T>(
  fn: (attempt: number) => Promise<T>,
  options: { attempts: number; prng: Prng; onRetry?: (err: unknown) => void },
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!isRetryable(err) || attempt >= options.attempts) throw err;
      options.onRetry?.(err);
      await sleep(options.prng.int(2, 20) * attempt);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// EventBridge deliveries

/** An EventBridge event of the ingestion pipeline, as the document-lifecycle function receives it. */
export interface LifecycleBusEvent {
  readonly id: string;
  readonly source: string;
  readonly "detail-type": "DocumentStored" | "DocumentDeleted";
  readonly time: string;
  readonly detail: { readonly workspaceId: string; readonly documentId: string };
}

interface Pending {
  readonly event: LifecycleBusEvent;
  readonly dueAt: number;
  readonly attempt: number;
  readonly duplicate: boolean;
}

export interface DeliveryStats {
  published: number;
  delivered: number;
  duplicates: number;
  /** Deliveries of an event before one published earlier (for the same document, or at all). */
  outOfOrder: number;
  retries: number;
  deadLettered: LifecycleBusEvent[];
}

/**
 * EventBridge to an asynchronously invoked function: at least once, in no particular order (each event is in
 * flight for a random 0..`maxDelayMs`, and due events are taken at random), a delivered event delivered again with
 * probability `duplicateRate`, a failed invocation retried up to `maxAttempts` (Lambda's async retries and the
 * rule's retry policy), then dead-lettered.
 */
export class EventBridgeDeliveries {
  readonly stats: DeliveryStats = {
    published: 0,
    delivered: 0,
    duplicates: 0,
    outOfOrder: 0,
    retries: 0,
    deadLettered: [],
  };
  private readonly pending: Pending[] = [];
  private readonly publishedAt = new Map<string, number>();
  private lastDeliveredSeq = -1;
  private closed = false;
  private workers: Promise<void>[] = [];

  constructor(
    private readonly prng: Prng,
    private readonly handler: (event: LifecycleBusEvent) => Promise<unknown>,
    private readonly options: {
      duplicateRate: number;
      maxAttempts: number;
      maxDelayMs: number;
      concurrency: number;
    },
  ) {}

  publish(event: LifecycleBusEvent): void {
    this.publishedAt.set(event.id, this.stats.published++);
    this.enqueue({ event, attempt: 1, duplicate: false });
  }

  start(): void {
    this.workers = Array.from({ length: this.options.concurrency }, () => this.work());
  }

  /** Waits until every event was delivered (or dead-lettered). */
  async close(): Promise<DeliveryStats> {
    this.closed = true;
    await Promise.all(this.workers);
    return this.stats;
  }

  private enqueue(p: Omit<Pending, "dueAt">): void {
    this.pending.push({ ...p, dueAt: Date.now() + this.prng.int(0, this.options.maxDelayMs) });
  }

  private async work(): Promise<void> {
    for (;;) {
      const now = Date.now();
      const due = this.pending.filter((p) => p.dueAt <= now);
      if (due.length === 0) {
        if (this.closed && this.pending.length === 0) return;
        await sleep(5);
        continue;
      }
      const p = this.prng.pick(due);
      this.pending.splice(this.pending.indexOf(p), 1);
      const seq = this.publishedAt.get(p.event.id)!;
      if (!p.duplicate && p.attempt === 1) {
        if (seq < this.lastDeliveredSeq) this.stats.outOfOrder += 1;
        this.lastDeliveredSeq = Math.max(this.lastDeliveredSeq, seq);
      }
      try {
        await this.handler(p.event);
        this.stats.delivered += 1;
        if (p.duplicate) this.stats.duplicates += 1;
        else if (this.prng.chance(this.options.duplicateRate)) {
          this.enqueue({ event: p.event, attempt: 1, duplicate: true });
        }
      } catch {
        if (p.attempt >= this.options.maxAttempts) this.stats.deadLettered.push(p.event);
        else {
          this.stats.retries += 1;
          this.enqueue({ event: p.event, attempt: p.attempt + 1, duplicate: p.duplicate });
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Clock skew

/** A clock `offsetSeconds` ahead of (or, negative, behind) `base`. */
export function skewedClock(offsetSeconds: number, base: () => Date = () => new Date()): () => Date {
  return () => new Date(base().getTime() + offsetSeconds * 1000);
}
