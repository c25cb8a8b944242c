/**
 * Hostile input for the functions' entry points: EventBridge lifecycle events, the data-key requests, the recovery
 * tasks, the unlock function, the drill, the restoration test and the backup export (functions/**), and the payload
 * guard every one of them shares (functions/shared/schemas.ts `parseInput`). Properties:
 *  - anything at all (JSON or not) is refused with `InvalidInputError` (`INVALID_INPUT`), never another error, never
 *    an INTERNAL answer;
 *  - a mutated valid request is refused exactly when an independent check says it is invalid (past the parse, the
 *    handlers here stop at the unconfigured HSM with `KEY_STORE_CONFIG`: nothing reaches an engine);
 *  - oversized and deeply nested payloads are refused by size before any schema runs.
 * Also: what an unknown workspace is answered (enumeration), and the unlock gate's lockout (brute force).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { describe, it } from "node:test";
import fc from "fast-check";

// The handlers build their loggers when imported: silent, and no engine configured (every service build fails fast).
process.env.POWERTOOLS_LOG_LEVEL = "SILENT";
process.env.POWERTOOLS_METRICS_DISABLED = "true";
for (const k of Object.keys(process.env))
  if (k.startsWith("AMK_") && !k.startsWith("AMK_PROPERTY_")) delete process.env[k];
delete process.env.AWS_LAMBDA_FUNCTION_NAME;

const { AmkError, InvalidInputError } = await import("../../core/shared/errors.js");
const schemas = await import("../../functions/shared/schemas.js");
const {
  parseInput,
  assertPayloadSize,
  PayloadTooLargeError,
  LifecycleEvent,
  GenerateDataKeysRequest,
  DecryptDataKeysRequest,
} = schemas;
const { ExportBackupInput } = await import("../../functions/backup/handler.js");
const generate = await import("../../functions/generate-data-keys/handler.js");
const decrypt = await import("../../functions/decrypt-data-keys/handler.js");
const lifecycle = await import("../../functions/document-lifecycle/handler.js");
const unlock = await import("../../functions/recovery-unlock/handler.js");
const recovery = await import("../../functions/recovery/handlers.js");
const drill = await import("../../functions/drill/handler.js");
const restoration = await import("../../functions/restoration/handler.js");
const { DataKeyService } = await import("../../core/datakeys/data-keys.js");
const { RecoveryService } = await import("../../core/recovery/recovery-service.js");
const { UnlockGate, lockDelayMs, LOCK_AFTER_FAILURES } = await import("../../core/factors/unlock-gate.js");
const { totpCode, DEFAULT_TOTP } = await import("../../core/factors/totp.js");
const { newEvent } = await import("../../core/eventstore/events.js");
const { ExpectedVersionConflictError } = await import("../../core/eventstore/errors.js");
const {
  assertNoPollution,
  assertTyped,
  applyJson,
  describeJsonMutation,
  holds,
  holdsAsync,
  jsonMutation,
  outcomeOf,
  probe,
  rejected,
  thrown,
} = await import("./hostile-harness.js");
import type { Json } from "./hostile-harness.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import type { StoredEvent, StreamId } from "../../core/eventstore/index.js";

// ---- independent checks of what each entry point accepts --------------------------------------------------------

const WS = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const DOC = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const LOOSE_UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const ARTIFACTS = ["file", "metadata", "thumb", "preview", "archive"];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const isStr = (v: unknown, min: number, max: number) =>
  typeof v === "string" && v.length >= min && v.length <= max;
const only = (o: Obj, keys: readonly string[]) => Object.keys(o).every((k) => keys.includes(k));
const has = (o: Obj, k: string) => Object.prototype.hasOwnProperty.call(o, k) && o[k] !== undefined;
const artifactsOk = (v: unknown) =>
  Array.isArray(v) &&
  v.length >= 1 &&
  v.length <= 5 &&
  v.every((a) => typeof a === "string" && ARTIFACTS.includes(a));
const intIn = (v: unknown, min: number, max: number) =>
  Number.isInteger(v) && (v as number) >= min && (v as number) <= max;

/** Within the payload guard: JSON of at most 1 MiB, nested at most 32 levels (objects and arrays). */
function fits(e: unknown): boolean {
  const depth = (v: unknown): number =>
    v !== null && typeof v === "object" ? 1 + Math.max(0, ...Object.values(v as object).map(depth)) : 0;
  return depth(e) <= 32 && Buffer.byteLength(JSON.stringify(e), "utf8") <= 1_048_576;
}

const valid = {
  generate: (e: unknown) =>
    isObj(e) &&
    only(e, ["workspaceId", "documentId", "artifacts", "idempotencyKey"]) &&
    typeof e.workspaceId === "string" &&
    WS.test(e.workspaceId) &&
    typeof e.documentId === "string" &&
    DOC.test(e.documentId) &&
    artifactsOk(e.artifacts) &&
    typeof e.idempotencyKey === "string" &&
    /^[\x21-\x7e]{1,128}$/.test(e.idempotencyKey),
  decrypt: (e: unknown) =>
    isObj(e) &&
    only(e, ["workspaceId", "documentId", "artifacts"]) &&
    typeof e.workspaceId === "string" &&
    WS.test(e.workspaceId) &&
    typeof e.documentId === "string" &&
    DOC.test(e.documentId) &&
    artifactsOk(e.artifacts),
  lifecycle: (e: unknown) =>
    isObj(e) &&
    isStr(e.id, 1, 256) &&
    isStr(e.source, 1, 256) &&
    (e["detail-type"] === "DocumentStored" || e["detail-type"] === "DocumentDeleted") &&
    (!has(e, "time") || isStr(e.time, 0, 64)) &&
    isObj(e.detail) &&
    typeof e.detail.workspaceId === "string" &&
    WS.test(e.detail.workspaceId) &&
    typeof e.detail.documentId === "string" &&
    DOC.test(e.detail.documentId),
  unlock: (e: unknown) =>
    isObj(e) &&
    only(e, ["workspaceId", "adminId", "passphrase", "factor", "kit"]) &&
    typeof e.workspaceId === "string" &&
    WS.test(e.workspaceId) &&
    typeof e.adminId === "string" &&
    /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/.test(e.adminId) &&
    isStr(e.passphrase, 1, 1024) &&
    isObj(e.factor) &&
    only(e.factor, ["type", "code"]) &&
    e.factor.type === "totp" &&
    typeof e.factor.code === "string" &&
    /^\d{6,8}$/.test(e.factor.code) &&
    (!has(e, "kit") || isStr(e.kit, 1, 1_000_000)),
  exportBackup: (e: unknown) =>
    isObj(e) &&
    only(e, ["workspaceId", "kind", "baseBackupId"]) &&
    (!has(e, "workspaceId") || (typeof e.workspaceId === "string" && WS.test(e.workspaceId))) &&
    (e.kind === "full" || e.kind === "incremental") &&
    (!has(e, "baseBackupId") ||
      (typeof e.baseBackupId === "string" &&
        /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(e.baseBackupId))) &&
    (e.kind === "incremental") === has(e, "baseBackupId"),
  step: (e: unknown) =>
    isObj(e) &&
    typeof e.workspaceId === "string" &&
    WS.test(e.workspaceId) &&
    typeof e.recoveryId === "string" &&
    LOOSE_UUID.test(e.recoveryId),
  drill: (e: unknown) =>
    isObj(e) &&
    typeof e.workspaceId === "string" &&
    WS.test(e.workspaceId) &&
    (!has(e, "trigger") || e.trigger === "schedule" || e.trigger === "on-demand") &&
    (!has(e, "sampleSize") || intIn(e.sampleSize, 1, 1000)),
  restoration: (e: unknown) =>
    isObj(e) &&
    typeof e.workspaceId === "string" &&
    WS.test(e.workspaceId) &&
    (!has(e, "trigger") || e.trigger === "schedule" || e.trigger === "on-demand") &&
    (!has(e, "backupId") ||
      (typeof e.backupId === "string" &&
        /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(e.backupId))) &&
    (!has(e, "sampleSize") || intIn(e.sampleSize, 0, 10_000)),
};

// ---- valid requests (what the pipeline, the workflows and the CLI send) -----------------------------------------

const bases: Record<string, Json> = {
  generate: {
    workspaceId: "acme",
    documentId: randomUUID(),
    artifacts: ["file", "thumb"],
    idempotencyKey: "ingest-42",
  },
  decrypt: {
    workspaceId: "acme",
    documentId: "doc_1",
    artifacts: ["file", "metadata", "thumb", "preview", "archive"],
  },
  lifecycle: {
    version: "0",
    id: randomUUID(),
    "detail-type": "DocumentStored",
    source: "arquivomate.ingestion",
    account: "123456789012",
    time: "2026-11-30T12:00:00Z",
    region: "eu-central-1",
    resources: [],
    detail: { workspaceId: "acme", documentId: "doc-1" },
  },
  unlock: {
    workspaceId: "acme",
    adminId: "alice@example.org",
    passphrase: "correct horse battery staple",
    factor: { type: "totp", code: "123456" },
  },
  exportBackup: {
    workspaceId: "acme",
    kind: "incremental",
    baseBackupId: "01a22f5f-2d10-7236-ad2e-7aeb4686e47f",
  },
  step: { workspaceId: "acme", recoveryId: randomUUID() },
  drill: { workspaceId: "acme", trigger: "on-demand", sampleSize: 20 },
  restoration: {
    workspaceId: "acme",
    trigger: "schedule",
    backupId: "01a22f5f-2d10-7236-ad2e-7aeb4686e47f",
    sampleSize: 0,
  },
};

/** Any value a caller could hand a function: JSON, and (for robustness) what JSON cannot hold. */
const anyInput = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.anything({
    maxDepth: 3,
    withBoxedValues: true,
    withMap: true,
    withSet: true,
    withObjectString: true,
    withNullPrototype: true,
    withTypedArray: true,
    withSparseArray: true,
    withDate: true,
  }),
  fc.dictionary(
    fc.constantFrom(
      "workspaceId",
      "documentId",
      "artifacts",
      "idempotencyKey",
      "detail",
      "detail-type",
      "id",
      "source",
      "kind",
      "__proto__",
      "constructor",
    ),
    fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom("acme", ["file"], "DocumentStored", { workspaceId: "acme", documentId: "d" }),
    ),
  ),
);

const MUTATIONS = ["delete", "retype", "huge-string", "deep", "add-key"] as const;

/** How an entry point answers, as `{ code }` (handlers that answer `{ ok: false, error }`) or by what it threw. */
async function answerOf(call: () => Promise<unknown>): Promise<{ code: string; err?: unknown }> {
  try {
    const r = (await call()) as { ok?: boolean; error?: { code: string } };
    if (r && r.ok === false && r.error) return { code: r.error.code };
    return { code: "OK" };
  } catch (err) {
    return { code: err instanceof AmkError ? err.code : `untyped ${(err as Error)?.name}`, err };
  }
}

const ENTRY_POINTS: {
  name: string;
  base: keyof typeof bases;
  valid: (e: unknown) => boolean;
  call: (e: unknown) => Promise<unknown>;
}[] = [
  { name: "GenerateDataKeys", base: "generate", valid: valid.generate, call: (e) => generate.handler(e) },
  { name: "DecryptDataKeys", base: "decrypt", valid: valid.decrypt, call: (e) => decrypt.handler(e) },
  {
    name: "document lifecycle",
    base: "lifecycle",
    valid: valid.lifecycle,
    call: (e) => lifecycle.handler(e),
  },
  { name: "recovery unlock", base: "unlock", valid: valid.unlock, call: (e) => unlock.handler(e) },
  { name: "recovery rotate", base: "step", valid: valid.step, call: (e) => recovery.rotateHandler(e) },
  { name: "recovery verify", base: "step", valid: valid.step, call: (e) => recovery.verifyHandler(e) },
  { name: "recovery complete", base: "step", valid: valid.step, call: (e) => recovery.completeHandler(e) },
  { name: "drill", base: "drill", valid: valid.drill, call: (e) => drill.runDrillHandler(e) },
  {
    name: "restoration test",
    base: "restoration",
    valid: valid.restoration,
    call: (e) => restoration.runRestorationTestHandler(e),
  },
  // The export function's handler reads the vault before anything else: its schema (exported) is parsed alone.
  {
    name: "backup export (schema)",
    base: "exportBackup",
    valid: valid.exportBackup,
    call: async (e) => parseInput(ExportBackupInput, e),
  },
];

/** Past the parse ("OK" for a schema parsed alone), a handler here stops at the unconfigured key store or event store: never an engine call. */
const NOT_CONFIGURED = new Set(["KEY_STORE_CONFIG", "EVENT_STORE_CONFIG", "OK"]);

describe("function inputs: anything at all", () => {
  it("the shared schemas refuse any value with InvalidInputError, or accept what the independent check accepts", async (t) => {
    const p = probe(t);
    const schemaCases = [
      { name: "GenerateDataKeysRequest", schema: GenerateDataKeysRequest, valid: valid.generate },
      { name: "DecryptDataKeysRequest", schema: DecryptDataKeysRequest, valid: valid.decrypt },
      { name: "LifecycleEvent", schema: LifecycleEvent, valid: valid.lifecycle },
      { name: "ExportBackupInput", schema: ExportBackupInput, valid: valid.exportBackup },
    ] as const;
    holds(
      fc.property(fc.constantFrom(...schemaCases), anyInput, (c, input) => {
        const err = p.time(() => thrown(() => parseInput(c.schema as never, input)));
        p.count(`${c.name}: ${outcomeOf(err)}`);
        assertNoPollution();
        if (err !== undefined) assertTyped(err, [InvalidInputError]);
        // Values JSON cannot hold may pass (a Map is no request at all, but also no valid one): only JSON is judged.
        const json = (() => {
          try {
            return JSON.parse(JSON.stringify(input) ?? "null") as unknown;
          } catch {
            return Symbol("not JSON");
          }
        })();
        if (typeof json !== "symbol" && JSON.stringify(json) === JSON.stringify(input) && err === undefined) {
          assert.ok(c.valid(input), `${c.name} accepted ${JSON.stringify(input).slice(0, 200)}`);
        }
      }),
      p.params,
    );
    p.report();
  });

  it("every handler answers any value with a typed refusal (INVALID_INPUT), never INTERNAL or an untyped error", async (t) => {
    const p = probe(t);
    await holdsAsync(
      fc.asyncProperty(fc.constantFrom(...ENTRY_POINTS), anyInput, async (ep, input) => {
        const a = await p.timeAsync(() => answerOf(() => ep.call(input)));
        p.count(`${ep.name}: ${a.code}`);
        assertNoPollution();
        assert.ok(
          a.code === "INVALID_INPUT" || NOT_CONFIGURED.has(a.code),
          `${ep.name}: ${a.code} ${String((a.err as Error)?.stack ?? "")}`,
        );
        if (a.err !== undefined) assertTyped(a.err, [AmkError]);
      }),
      p.params,
    );
    p.report();
  });
});

describe("function inputs: mutations of valid requests", () => {
  it("each entry point refuses a mutated request exactly when the independent check says it is invalid", async (t) => {
    const p = probe(t);
    const arb = fc
      .constantFrom(...ENTRY_POINTS)
      .chain((ep) => fc.tuple(fc.constant(ep), jsonMutation(bases[ep.base]!, MUTATIONS)));
    await holdsAsync(
      fc.asyncProperty(arb, async ([ep, m]) => {
        const event = applyJson(bases[ep.base]!, m);
        const a = await p.timeAsync(() => answerOf(() => ep.call(event)));
        p.count(`${ep.name} ${m.kind}: ${a.code}`);
        assertNoPollution();
        if (a.err !== undefined) assertTyped(a.err, [AmkError]);
        const expected = fits(event) && ep.valid(event) ? "accepted" : "INVALID_INPUT";
        const got =
          a.code === "INVALID_INPUT" ? "INVALID_INPUT" : NOT_CONFIGURED.has(a.code) ? "accepted" : a.code;
        assert.equal(got, expected, `${ep.name} after ${describeJsonMutation(m)}`);
      }),
      p.params,
    );
    p.report();
  });

  it("the valid requests themselves pass the parse (and stop at the unconfigured HSM)", async () => {
    for (const ep of ENTRY_POINTS) {
      const a = await answerOf(() => ep.call(bases[ep.base]));
      assert.ok(NOT_CONFIGURED.has(a.code), `${ep.name}: ${a.code}`);
    }
    assert.equal(parseInput(ExportBackupInput, bases.exportBackup).kind, "incremental");
  });
});

describe("function inputs: size and depth", () => {
  it("assertPayloadSize never refuses a payload that fits, and refuses by size only one whose JSON is larger", async (t) => {
    const p = probe(t);
    holds(
      fc.property(
        fc.jsonValue({ maxDepth: 6 }),
        fc.nat({ max: 4_000 }),
        fc.integer({ min: 1, max: 40 }),
        (v, maxBytes, maxDepth) => {
          const size = Buffer.byteLength(JSON.stringify(v) ?? "", "utf8");
          const err = p.time(() => thrown(() => assertPayloadSize(v, maxBytes, maxDepth)));
          p.count(outcomeOf(err));
          if (err === undefined) return;
          assertTyped(err, [PayloadTooLargeError]);
          const why = (err as Error).message;
          if (why.includes("larger"))
            assert.ok(size > maxBytes, `refused ${size} bytes under a limit of ${maxBytes}`);
          else assert.match(why, /nested deeper/);
        },
      ),
      p.params,
    );
    p.report();
  });

  it("refuses oversized, deep and cyclic payloads at every entry point quickly, before any schema", async (t) => {
    const deep: unknown[] = [];
    let cur = deep;
    for (let i = 0; i < 100_000; i++) cur = cur[0] = [] as unknown[];
    const cyclic: Record<string, unknown> = { workspaceId: "acme" };
    cyclic.self = cyclic;
    const wide = Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`k${i}`, i]));
    const payloads: [string, unknown][] = [
      ["a 2 MB string field", { ...(bases.unlock as Obj), kit: "A".repeat(2_000_000) }],
      ["a 20 MB string field", { ...(bases.generate as Obj), idempotencyKey: "x".repeat(20_000_000) }],
      [
        "1,000,000 array elements",
        { ...(bases.decrypt as Obj), artifacts: new Array(1_000_000).fill("file") },
      ],
      ["200,000 keys", { ...(bases.lifecycle as Obj), detail: wide }],
      ["nesting 100,000 deep", { workspaceId: "acme", recoveryId: deep }],
      ["a cycle", cyclic],
      ["a 1 MB key", { ["k".repeat(1_100_000)]: 1 }],
    ];
    for (const [name, payload] of payloads) {
      for (const ep of ENTRY_POINTS) {
        const t0 = performance.now();
        const a = await answerOf(() => ep.call(payload));
        const ms = performance.now() - t0;
        assert.equal(a.code, "INVALID_INPUT", `${ep.name}, ${name}`);
        if (a.err !== undefined) assertTyped(a.err, [PayloadTooLargeError]);
        if (ep === ENTRY_POINTS[0]) t.diagnostic(`${name}: ${a.code} in ${ms.toFixed(1)} ms (${ep.name})`);
      }
    }
    // The largest legitimate request still fits: an uploaded kit of the schema's 1,000,000 characters.
    const biggest = { ...(bases.unlock as Obj), kit: "A".repeat(1_000_000), passphrase: "p".repeat(1024) };
    assert.doesNotThrow(() => assertPayloadSize(biggest));
    // Messages stay short whatever was sent (zod quotes unknown keys).
    const err = thrown(() =>
      parseInput(GenerateDataKeysRequest, { ...(bases.generate as Obj), ["z".repeat(100_000)]: 1 }),
    );
    assertTyped(err, [InvalidInputError]);
    assert.ok(
      (err as Error).message.length < 2_500,
      `message of ${(err as Error).message.length} characters`,
    );
  });

  it("data-key requests: at most five artifacts, ids bounded, idempotency keys bounded", () => {
    const six = {
      ...(bases.decrypt as Obj),
      artifacts: ["file", "metadata", "thumb", "preview", "archive", "file"],
    };
    assert.match((thrown(() => parseInput(DecryptDataKeysRequest, six)) as Error).message, /at most five/);
    const longId = { ...(bases.decrypt as Obj), documentId: "d".repeat(129) };
    assert.match((thrown(() => parseInput(DecryptDataKeysRequest, longId)) as Error).message, /documentId/);
    const longWs = { ...(bases.decrypt as Obj), workspaceId: "w".repeat(65) };
    assert.match((thrown(() => parseInput(DecryptDataKeysRequest, longWs)) as Error).message, /workspaceId/);
    const longKey = { ...(bases.generate as Obj), idempotencyKey: "k".repeat(129) };
    assert.match(
      (thrown(() => parseInput(GenerateDataKeysRequest, longKey)) as Error).message,
      /idempotencyKey/,
    );
    const longTime = { ...(bases.lifecycle as Obj), time: "2026-11-30T12:00:00Z".padEnd(65, "0") };
    assert.match((thrown(() => parseInput(LifecycleEvent, longTime)) as Error).message, /time/);
  });
});

// ---- enumeration and brute force, on in-memory streams ---------------------------------------------------------

/** readStream / appendToStream on maps (conditional appends, replay by event id): all these services need. */
class MemoryStreams {
  readonly streams = new Map<string, StoredEvent[]>();
  readonly store = {
    readStream: async (streamId: string) => {
      const events = [...(this.streams.get(streamId) ?? [])];
      return { events, currentVersion: events.length === 0 ? undefined : events.length };
    },
    appendToStream: async (
      streamId: string,
      batch: readonly {
        eventId: string;
        type: string;
        schemaVersion: number;
        occurredAt: string;
        data: Obj;
      }[],
      options: { expectedVersion: number | string },
    ) => {
      const stream = this.streams.get(streamId) ?? [];
      const actual = stream.length;
      if (typeof options.expectedVersion === "number" && options.expectedVersion !== actual)
        throw new ExpectedVersionConflictError(
          streamId,
          options.expectedVersion,
          actual === 0 ? "no_stream" : actual,
        );
      for (const e of batch)
        stream.push({
          ...e,
          streamId: streamId as StreamId,
          version: stream.length + 1,
          recordedAt: new Date().toISOString(),
        });
      this.streams.set(streamId, stream);
      return { appended: true, firstVersion: actual + 1, nextExpectedVersion: stream.length };
    },
  } as unknown as EventStore;

  seed(streamId: string, type: string, data: Obj): void {
    const stream = this.streams.get(streamId) ?? [];
    stream.push({
      ...newEvent(type, data as never),
      streamId: streamId as StreamId,
      version: stream.length + 1,
      recordedAt: new Date().toISOString(),
    });
    this.streams.set(streamId, stream);
  }
}

const refusing = new Proxy(
  {},
  {
    get: (_t, prop) =>
      typeof prop === "symbol" || prop === "then"
        ? undefined
        : () => {
            throw new Error(`unexpected call: ${String(prop)}`);
          },
  },
);

describe("enumeration of workspaces", () => {
  const mem = new MemoryStreams();
  mem.seed("ws-known", "MasterKeyCreated", {
    WorkspaceId: "known",
    KeyId: "ws-known/mk/1",
    Kcv: "ABCDEF",
    Extractable: false,
  });
  const keyStore = {
    generateDataKey: async () => Buffer.alloc(32, 1),
    wrapDataKey: async () => ({ ciphertext: Buffer.alloc(48), nonce: Buffer.alloc(12) }),
  };
  const dataKeys = new DataKeyService({ keyStore: keyStore as never, events: mem.store });

  it("DecryptDataKeys and the lifecycle events answer an unknown workspace as a known one without that document", async () => {
    const unknown = await rejected(() =>
      dataKeys.decryptDataKeys({ workspaceId: "nobody", documentId: "d1", artifacts: ["file"] }),
    );
    const known = await rejected(() =>
      dataKeys.decryptDataKeys({ workspaceId: "known", documentId: "d1", artifacts: ["file"] }),
    );
    assert.equal((unknown as InstanceType<typeof AmkError>).code, "DOCUMENT_KEYS_NOT_FOUND");
    assert.equal((known as InstanceType<typeof AmkError>).code, "DOCUMENT_KEYS_NOT_FOUND");
    assert.equal((unknown as Error).message, (known as Error).message);
    for (const ws of ["nobody", "known"]) {
      const err = await rejected(() =>
        dataKeys.recordDocumentStored({ workspaceId: ws, documentId: "d1", messageId: "m1" }),
      );
      assert.equal((err as InstanceType<typeof AmkError>).code, "DOCUMENT_KEYS_NOT_FOUND");
    }
  });

  it("GenerateDataKeys tells an unknown workspace (WORKSPACE_NOT_PROVISIONED) from a known one (keys generated)", async () => {
    const unknown = await rejected(() =>
      dataKeys.generateDataKeys({
        workspaceId: "nobody",
        documentId: "d1",
        artifacts: ["file"],
        idempotencyKey: "k",
      }),
    );
    assert.equal((unknown as InstanceType<typeof AmkError>).code, "WORKSPACE_NOT_PROVISIONED");
    const known = await dataKeys.generateDataKeys({
      workspaceId: "known",
      documentId: "d1",
      artifacts: ["file"],
      idempotencyKey: "k",
    });
    assert.equal(known.keyId, "ws-known/mk/1");
  });

  it("the unlock answers an unknown workspace as a known one with no recovery running (RECOVERY_STATE)", async () => {
    const service = new RecoveryService({
      keyStore: refusing,
      events: mem.store,
      kits: refusing,
      rotation: refusing,
      dataKeys: refusing,
      tokens: refusing,
      bus: refusing,
      alerts: refusing,
    } as never);
    const input = (workspaceId: string) => ({
      workspaceId,
      adminId: "alice",
      passphrase: "x",
      factor: { type: "totp" as const, code: "123456" },
    });
    const unknown = await rejected(() => service.unlock(input("nobody")));
    const known = await rejected(() => service.unlock(input("known")));
    assert.equal((unknown as InstanceType<typeof AmkError>).code, "RECOVERY_STATE");
    assert.equal((known as InstanceType<typeof AmkError>).code, "RECOVERY_STATE");
    assert.equal(
      (unknown as Error).message.replace("nobody", "X"),
      (known as Error).message.replace("known", "X"),
    );
  });
});

describe("brute force on the unlock gate (core/factors/unlock-gate.ts)", () => {
  it("the lock delay is 0 below five failures, then 1 minute doubling, at most 24 hours, never shrinking", () => {
    holds(
      fc.property(fc.integer({ min: 0, max: 10_000 }), (n) => {
        const d = lockDelayMs(n);
        if (n < LOCK_AFTER_FAILURES) assert.equal(d, 0);
        else assert.equal(d, Math.min(86_400_000, 60_000 * 2 ** (n - LOCK_AFTER_FAILURES)));
        assert.ok(lockDelayMs(n + 1) >= d);
      }),
      { numRuns: 1_000 },
    );
  });

  it("five wrong codes lock the slot: even the right code is refused until the delay has passed, with an alert", async () => {
    const mem = new MemoryStreams();
    mem.seed("ws-acme", "MasterKeyCreated", {
      WorkspaceId: "acme",
      KeyId: "ws-acme/mk/1",
      Kcv: "ABCDEF",
      Extractable: false,
    });
    mem.seed("ws-acme", "AdministratorEnrolled", {
      WorkspaceId: "acme",
      AdminId: "alice",
      Recipient: Buffer.alloc(32).toString("base64"),
      FactorType: "totp",
      FactorId: "f1",
    });
    const seed = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const secret = {
      version: 1,
      factorId: "f1",
      params: DEFAULT_TOTP,
      seed,
      releaseKey: Buffer.alloc(32, 7).toString("base64"),
    };
    const vault = { getSecret: async () => ({ value: Buffer.from(JSON.stringify(secret)) }) };
    const alerts: { code: string }[] = [];
    let now = Date.UTC(2026, 10, 30, 12, 0, 0);
    const gate = new UnlockGate({
      events: mem.store,
      vault: vault as never,
      alerts: { raise: async (a: { code: string }) => void alerts.push(a) } as never,
      now: () => new Date(now),
    });
    const right = () => totpCode(seed, DEFAULT_TOTP, Math.floor(now / 1000));
    const wrong = async () => String((Number(await right()) + 500_000) % 1_000_000).padStart(6, "0");
    const codeOf = (err: unknown) => (err as InstanceType<typeof AmkError>).code;

    for (let i = 1; i <= 5; i++) {
      const w = await wrong();
      assert.equal(
        codeOf(await rejected(() => gate.releaseTotpKey("acme", "alice", w))),
        "TOTP_CODE_INVALID",
      );
    }
    assert.equal(alerts.length, 1, "the fifth failure raises ADMIN_SLOT_LOCKED");
    const locked = await rejected(async () => gate.releaseTotpKey("acme", "alice", await right()));
    assert.equal(codeOf(locked), "FACTOR_LOCKED");
    now += 59_000;
    assert.equal(
      codeOf(await rejected(async () => gate.releaseTotpKey("acme", "alice", await right()))),
      "FACTOR_LOCKED",
    );
    now += 2_000; // past the first minute: one more try, wrong again: locked for two minutes
    assert.equal(
      codeOf(await rejected(async () => gate.releaseTotpKey("acme", "alice", await wrong()))),
      "TOTP_CODE_INVALID",
    );
    now += 119_000;
    assert.equal(
      codeOf(await rejected(async () => gate.releaseTotpKey("acme", "alice", await right()))),
      "FACTOR_LOCKED",
    );
    now += 2_000;
    const key = await gate.releaseTotpKey("acme", "alice", await right());
    assert.equal(key.length, 32);
    // A wrong-length code is refused as input and not counted (it could never be right).
    assert.equal(
      codeOf(await rejected(() => gate.releaseTotpKey("acme", "alice", "12345678"))),
      "INVALID_INPUT",
    );
    // An administrator who is not enrolled (or a workspace that does not exist) is named as such.
    assert.equal(
      codeOf(await rejected(() => gate.releaseTotpKey("acme", "mallory", "123456"))),
      "FACTOR_NOT_ENROLLED",
    );
    assert.equal(
      codeOf(await rejected(() => gate.releaseTotpKey("nobody", "alice", "123456"))),
      "FACTOR_NOT_ENROLLED",
    );
  });
});
