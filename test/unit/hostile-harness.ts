/**
 * Shared by the hostile-input property tests (test/unit/hostile-*.unit.test.ts): the run count and seed (from the
 * environment, printed), a per-case timer that reports the slowest case (never a failure: the bound is the input
 * size, see each generator), the rejection check, and the mutations applied to valid inputs.
 *
 *   AMK_PROPERTY_RUNS   cases per property (default 10,000)
 *   AMK_PROPERTY_SEED   replay a run: the seed a failure (or the diagnostics) printed
 */
import { performance } from "node:perf_hooks";
import type { TestContext } from "node:test";
import fc from "fast-check";

export const RUNS = Number(process.env.AMK_PROPERTY_RUNS ?? 10_000);

/** One seed per file (printed), so that every property of a file can be replayed with AMK_PROPERTY_SEED. */
export const SEED =
  process.env.AMK_PROPERTY_SEED !== undefined && process.env.AMK_PROPERTY_SEED !== ""
    ? Number(process.env.AMK_PROPERTY_SEED)
    : (Date.now() ^ Math.floor(Math.random() * 0x1_0000_0000)) | 0;

export interface Probe {
  /** fast-check parameters: runs, seed; fast-check prints seed and path of a failure (with the shrunk input). */
  readonly params: { readonly numRuns: number; readonly seed: number; readonly endOnFailure: boolean };
  /** Runs a case under the timer. */
  time<T>(fn: () => T): T;
  timeAsync<T>(fn: () => Promise<T>): Promise<T>;
  /** Counts an outcome (e.g. the error class), for the diagnostics. */
  count(outcome: string): void;
  /** Prints runs, seed, slowest case and outcome counts as test diagnostics. */
  report(): void;
}

export function probe(t: TestContext, runs: number = RUNS): Probe {
  let max = 0;
  let total = 0;
  let n = 0;
  const outcomes = new Map<string, number>();
  const note = (ms: number) => {
    max = Math.max(max, ms);
    total += ms;
    n += 1;
  };
  return {
    params: { numRuns: runs, seed: SEED, endOnFailure: false },
    time<T>(fn: () => T): T {
      const t0 = performance.now();
      try {
        return fn();
      } finally {
        note(performance.now() - t0);
      }
    },
    async timeAsync<T>(fn: () => Promise<T>): Promise<T> {
      const t0 = performance.now();
      try {
        return await fn();
      } finally {
        note(performance.now() - t0);
      }
    },
    count(outcome: string) {
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    },
    report() {
      const counts = [...outcomes]
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
      t.diagnostic(
        `runs ${runs} seed ${SEED}: slowest case ${max.toFixed(2)} ms, mean ${(n ? total / n : 0).toFixed(3)} ms${counts ? `; ${counts}` : ""}`,
      );
    },
  };
}

/** fc.assert, with the failing case's own error (message and stack) in the report, after fast-check's seed and path. */
export function holds<Ts>(property: fc.IProperty<Ts>, params: fc.Parameters<Ts>): void {
  try {
    fc.assert(property, params);
  } catch (err) {
    throw explained(err);
  }
}

export async function holdsAsync<Ts>(
  property: fc.IAsyncProperty<Ts>,
  params: fc.Parameters<Ts>,
): Promise<void> {
  try {
    await fc.assert(property, params);
  } catch (err) {
    throw explained(err);
  }
}

function explained(err: unknown): unknown {
  const cause = (err as { cause?: unknown })?.cause;
  if (!(err instanceof Error) || cause === undefined) return err;
  const detail = cause instanceof Error ? (cause.stack ?? `${cause.name}: ${cause.message}`) : String(cause);
  return new Error(`${err.message}\nThe case failed with: ${detail}`);
}

/** Runs `fn`; returns the error it threw (or undefined when it returned). */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err;
  }
}

export async function rejected(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
    return undefined;
  } catch (err) {
    return err;
  }
}

/** A readable name for an outcome: the error's class (and `check`/`reason` when it has one), or "accepted". */
export function outcomeOf(err: unknown): string {
  if (err === undefined) return "accepted";
  if (!(err instanceof Error)) return `non-error ${typeof err}`;
  const e = err as Error & { check?: unknown; reason?: unknown };
  const detail =
    typeof e.check === "string" ? `/${e.check}` : typeof e.reason === "string" ? `/${e.reason}` : "";
  return `${e.name}${detail}`;
}

/** Fails with the error itself when it is not an instance of one of `classes`. */
export function assertTyped(
  err: unknown,
  classes: readonly (abstract new (...args: never[]) => unknown)[],
): void {
  if (classes.some((c) => err instanceof c)) return;
  const e = err as Error | undefined;
  const what = e instanceof Error ? `${e.name}: ${e.message.slice(0, 300)}` : String(err);
  throw new Error(
    `expected one of ${classes.map((c) => c.name).join(", ")}, got ${what}${e?.stack ? `\n${e.stack}` : ""}`,
  );
}

// ---- byte mutations -------------------------------------------------------------------------------------------

export type ByteMutation =
  | { readonly kind: "flip"; readonly at: number; readonly bit: number }
  | { readonly kind: "truncate"; readonly length: number }
  | { readonly kind: "insert"; readonly at: number; readonly bytes: Uint8Array }
  | { readonly kind: "delete"; readonly at: number; readonly count: number }
  | { readonly kind: "overwrite"; readonly at: number; readonly bytes: Uint8Array };

/** One mutation of a buffer of `length` bytes (positions drawn within it). */
export function byteMutation(length: number): fc.Arbitrary<ByteMutation> {
  const at = fc.nat({ max: Math.max(0, length - 1) });
  return fc.oneof(
    fc.record({ kind: fc.constant("flip" as const), at, bit: fc.nat({ max: 7 }) }),
    fc.record({ kind: fc.constant("truncate" as const), length: fc.nat({ max: Math.max(0, length - 1) }) }),
    fc.record({
      kind: fc.constant("insert" as const),
      at: fc.nat({ max: length }),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    }),
    fc.record({ kind: fc.constant("delete" as const), at, count: fc.integer({ min: 1, max: 64 }) }),
    fc.record({
      kind: fc.constant("overwrite" as const),
      at,
      bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
    }),
  );
}

export function applyBytes(input: Uint8Array, m: ByteMutation): Buffer {
  const b = Buffer.from(input);
  switch (m.kind) {
    case "flip": {
      const out = Buffer.from(b);
      out[m.at] = (out[m.at] ?? 0) ^ (1 << m.bit);
      return out;
    }
    case "truncate":
      return b.subarray(0, m.length);
    case "insert":
      return Buffer.concat([b.subarray(0, m.at), m.bytes, b.subarray(m.at)]);
    case "delete":
      return Buffer.concat([b.subarray(0, m.at), b.subarray(m.at + m.count)]);
    case "overwrite": {
      const out = Buffer.from(b);
      Buffer.from(m.bytes).copy(out, m.at);
      return out;
    }
  }
}

// ---- JSON mutations -------------------------------------------------------------------------------------------

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];

/** Every path to a value inside `value` (the root excluded), depth first. */
export function pathsOf(value: Json, prefix: Path = []): Path[] {
  const out: Path[] = [];
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      out.push([...prefix, i], ...pathsOf(v, [...prefix, i]));
    });
  } else if (value !== null && typeof value === "object") {
    for (const k of Object.keys(value)) out.push([...prefix, k], ...pathsOf(value[k]!, [...prefix, k]));
  }
  return out;
}

export function getAt(value: Json, path: Path): Json | undefined {
  let v: Json | undefined = value;
  for (const p of path) v = v === null || typeof v !== "object" ? undefined : (v as Record<string, Json>)[p];
  return v;
}

/** Sets an own, enumerable property (so `__proto__` becomes a key that JSON.stringify writes, as in a hostile file). */
export function defineKey(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

export type JsonMutation =
  /** The value at the path removed (an object key, or an array element). */
  | { readonly kind: "delete"; readonly path: Path }
  /** The value at the path replaced by a value of another JSON type. */
  | { readonly kind: "retype"; readonly path: Path; readonly value: Json }
  /** The value at the path replaced by a long string (no valid id, base64 or enum value: it ends in U+0000). */
  | { readonly kind: "huge-string"; readonly path: Path; readonly length: number }
  /** The value at the path replaced by arrays (or objects) nested `depth` deep. */
  | { readonly kind: "deep"; readonly path: Path; readonly depth: number; readonly objects: boolean }
  /** A key added to the object at the path (or the root): `__proto__`, `constructor`, `prototype` or any other. */
  | { readonly kind: "add-key"; readonly path: Path; readonly key: string; readonly value: Json };

export const POLLUTION_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "__defineGetter__",
  "toString",
  "hasOwnProperty",
];

export const jsonScalar: fc.Arbitrary<Json> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 20 }),
);

/** A value of another JSON type than `v` (a string for a number, an object for an array, ...). */
export function otherType(v: Json | undefined): fc.Arbitrary<Json> {
  const kind = v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
  const all: [string, fc.Arbitrary<Json>][] = [
    ["null", fc.constant(null)],
    ["boolean", fc.boolean()],
    ["number", fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }))],
    ["string", fc.string({ maxLength: 20 })],
    ["array", fc.array(jsonScalar, { maxLength: 3 })],
    ["object", fc.dictionary(fc.string({ maxLength: 8 }), jsonScalar, { maxKeys: 3 })],
  ];
  return fc.oneof(...all.filter(([k]) => k !== kind).map(([, a]) => a));
}

/**
 * A mutation of `value`, drawn among `kinds`, at a path accepted by `where` (default: any). The add-key mutation
 * draws pollution keys half of the time.
 */
export function jsonMutation(
  value: Json,
  kinds: readonly JsonMutation["kind"][],
  where: (path: Path) => boolean = () => true,
): fc.Arbitrary<JsonMutation> {
  const paths = pathsOf(value).filter(where);
  const objectPaths: Path[] = [[], ...pathsOf(value)].filter(where).filter((p) => {
    const v = getAt(value, p);
    return v !== null && typeof v === "object" && !Array.isArray(v);
  });
  const path = fc.constantFrom(...paths);
  const arbs: fc.Arbitrary<JsonMutation>[] = [];
  for (const kind of kinds) {
    if (kind === "delete") arbs.push(path.map((p) => ({ kind, path: p })));
    if (kind === "retype")
      arbs.push(path.chain((p) => otherType(getAt(value, p)).map((v) => ({ kind, path: p, value: v }))));
    if (kind === "huge-string")
      arbs.push(
        fc
          .tuple(path, fc.integer({ min: 300, max: 40_000 }))
          .map(([p, length]) => ({ kind, path: p, length })),
      );
    if (kind === "deep")
      arbs.push(
        fc
          .tuple(path, fc.integer({ min: 2, max: 3_000 }), fc.boolean())
          .map(([p, depth, objects]) => ({ kind, path: p, depth, objects })),
      );
    if (kind === "add-key" && objectPaths.length > 0)
      arbs.push(
        fc
          .tuple(
            fc.constantFrom(...objectPaths),
            fc.oneof(fc.constantFrom(...POLLUTION_KEYS), fc.string({ minLength: 1, maxLength: 12 })),
            fc.oneof(jsonScalar, fc.constant({ polluted: true } as Json)),
          )
          .map(([p, key, v]) => ({ kind, path: p, key, value: v })),
      );
  }
  return fc.oneof(...arbs);
}

function deepValue(depth: number, objects: boolean): Json {
  let v: Json = 0;
  for (let i = 0; i < depth; i++) v = objects ? { a: v } : [v];
  return v;
}

/** A deep copy of `value` with the mutation applied (own `__proto__` keys kept as keys). */
export function applyJson(value: Json, m: JsonMutation): Json {
  const copy = JSON.parse(JSON.stringify(value)) as Json;
  const parentPath = m.kind === "add-key" ? m.path : m.path.slice(0, -1);
  const parent = parentPath.length === 0 ? copy : getAt(copy, parentPath);
  if (parent === null || typeof parent !== "object") return copy;
  if (m.kind === "add-key") {
    if (!Array.isArray(parent)) defineKey(parent, m.key, m.value);
    return copy;
  }
  const last = m.path[m.path.length - 1]!;
  const replacement =
    m.kind === "retype"
      ? m.value
      : m.kind === "huge-string"
        ? `${"A".repeat(m.length)}\u0000`
        : m.kind === "deep"
          ? deepValue(m.depth, m.objects)
          : undefined;
  if (Array.isArray(parent)) {
    if (m.kind === "delete") parent.splice(last as number, 1);
    else parent[last as number] = replacement!;
  } else if (m.kind === "delete") {
    delete (parent as Record<string, Json>)[last as string];
  } else {
    defineKey(parent, last as string, replacement);
  }
  return copy;
}

export function describeJsonMutation(m: JsonMutation): string {
  return `${m.kind} at ${m.path.join(".") || "(root)"}${m.kind === "add-key" ? ` key ${JSON.stringify(m.key)}` : ""}`;
}

/** Fails when a prototype was polluted by a parser (a key of `{ polluted: true }` reached Object.prototype). */
export function assertNoPollution(): void {
  const probeObject = {} as Record<string, unknown>;
  if (
    probeObject.polluted !== undefined ||
    (Object.prototype as Record<string, unknown>).polluted !== undefined
  ) {
    throw new Error("Object.prototype was polluted");
  }
}
