/**
 * The reliability suite (issue 11): the real workflows (the ASL the CDK app synthesises, run by the local runner with
 * the real handlers) on the real engines (SoftHSM2, DynamoDB Local, the file vault), with faults injected around the
 * real adapters at 1% and 5% (test/support/faults.ts), and after every run the history checker
 * (test/support/history-checker.ts) reads the whole event-store table and the HSM and proves the invariants.
 *
 * Scenarios, each AMK_RELIABILITY_RUNS times per fault rate (default 6; the issue's 20 with AMK_RELIABILITY_RUNS=20;
 * randomized, every run prints its seed):
 *  a. ingestion during rotation: concurrent GenerateDataKeys writers (the real function) while the rotation
 *     workflow runs (re-run by the operator until it completes), lifecycle events delivered by a simulated EventBridge
 *     (duplicates, out of order, retries) to the real document-lifecycle function;
 *  b. recovery with a crash in each step: the HSM token is lost, then the recovery workflow runs once per step with
 *     that step's function crashing once (before or after its work; the re-wrap killed in the middle of a batch),
 *     each failed execution followed by a new one that resumes, until it completes;
 *  c. a drill during a rotation: drill executions while the rotation workflow runs;
 *  d. a backup export during ingestion: `exportBackup` (reads throttled) while writers ingest, then the backup is
 *     verified, restored into a scratch table and checked there too.
 * And the TOTP unlock gate under clock skew (±29 s, ±31 s, ±61 s): within one step of drift accepted, beyond refused.
 *
 * Replay a run: AMK_RELIABILITY_SEED=<seed> AMK_RELIABILITY_RUNS=1 npx tsx --test --test-name-pattern="<test name>"
 * test/workflow/reliability.workflow.test.ts (the failure message prints the exact command). docs/reliability.md.
 */
import "../support/quiet-functions.js";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomInt } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { DeleteItemCommand, DeleteTableCommand } from "@aws-sdk/client-dynamodb";
import { FolderBackupStorage } from "../../core/adapters/backup-folder/folder-backup-storage.js";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import {
  backupSignerFromPkcs8,
  exportBackup,
  generateBackupSigningKey,
  importBackup,
  verifyBackup,
  type ExportBackupResult,
} from "../../core/backup/index.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { EventTypes, type DrillCompletedData } from "../../core/eventstore/catalogue.js";
import { newEvent } from "../../core/eventstore/events.js";
import { documentStreamId, workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { softwareHmacToken } from "../../core/factors/hmac-token.js";
import { DEFAULT_TOTP, totpCode } from "../../core/factors/totp.js";
import { UnlockGate } from "../../core/factors/unlock-gate.js";
import { KitService } from "../../core/kit/kit-service.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import { inProcessTaskCallbacks } from "../../core/recovery/task-callbacks.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { handler as lifecycleHandler } from "../../functions/document-lifecycle/handler.js";
import { handler as generateHandler } from "../../functions/generate-data-keys/handler.js";
import { handler as unlockHandler } from "../../functions/recovery-unlock/handler.js";
import { eventStoreFromEnv } from "../../functions/shared/event-store.js";
import { keyStoreFromEnv } from "../../functions/shared/key-store.js";
import { vaultFromEnv } from "../../functions/shared/vault.js";
import { createApp } from "../../infra/bin/app.js";
import { ensureSoftHsmHome, ensureToken, readPinFile, type SoftHsmHome } from "../../cli/local/softhsm.js";
import {
  awaitUnlockBridge,
  drillHandlers,
  recoveryHandlers,
  rotationHandlers,
  synthWith,
} from "../../workflows/local-app.js";
import {
  runLocal,
  type LocalHandler,
  type LocalRun,
  type LocalWorkflow,
} from "../../workflows/local-runner.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";
import {
  crashOnce,
  EventBridgeDeliveries,
  FaultPlan,
  installFaultLayer,
  isRetryable,
  Prng,
  skewedClock,
  type CrashMode,
  type FaultLayer,
  type LifecycleBusEvent,
} from "../support/faults.js";
import {
  checkHistory,
  type AcknowledgedDataKeys,
  type WorkflowKind,
  type WorkflowRunOutcome,
} from "../support/history-checker.js";

const exec = promisify(execFile);
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/**
 * Runs of each scenario per fault rate by default: 6, about 3.5 minutes on the 2-core CI machine, so that the whole
 * suite stays well under 15 minutes (docs/reliability.md has the measurements). The issue's 20 randomized runs:
 * AMK_RELIABILITY_RUNS=20 (about 12 minutes for this file alone).
 */
const DEFAULT_RUNS = 6;
const RUNS = Math.max(1, Number(process.env.AMK_RELIABILITY_RUNS ?? DEFAULT_RUNS));
const FIXED_SEED = process.env.AMK_RELIABILITY_SEED
  ? Number(process.env.AMK_RELIABILITY_SEED) >>> 0
  : undefined;
const RATES = [0.01, 0.05] as const;
const ARTIFACTS = ["file", "metadata", "thumb", "preview", "archive"] as const;
const PASSPHRASE = "reliable orchard lantern quietly";
const TEST_FILE = "test/workflow/reliability.workflow.test.ts";

// ---------------------------------------------------------------------------------------------------------------
// Shared engines

let ddb: TestDynamoDb;
let home: SoftHsmHome;
let work: string;
let layer: FaultLayer & { uninstall(): void };
let workflows: { rotation: LocalWorkflow; recovery: LocalWorkflow; drill: LocalWorkflow };
let runCounter = 0;
const timings: { scenario: string; rate: number; seconds: number; runs: number }[] = [];

/** In-flight handler calls of one execution (Map iterations may outlive a failed execution). */
class Inflight {
  private n = 0;
  wrap<H extends Record<string, LocalHandler>>(handlers: H): H {
    const out: Record<string, LocalHandler> = {};
    for (const [id, h] of Object.entries(handlers)) {
      out[id] = (async (event: never, context: never) => {
        this.n += 1;
        try {
          return await (h as (e: never, c: never) => unknown)(event, context);
        } finally {
          this.n -= 1;
        }
      }) as LocalHandler;
    }
    return out as H;
  }
  async drain(): Promise<void> {
    while (this.n > 0) await new Promise((r) => setTimeout(r, 10));
  }
}

interface RunContext {
  readonly label: string;
  readonly seed: number;
  readonly rate: number;
  readonly prng: Prng;
  readonly plan: FaultPlan;
  readonly workspaceId: string;
  readonly table: string;
  /** The event store without faults, for the scenario's own reads. */
  readonly raw: DynamoDbEventStore;
  tokens: string[];
  readonly acknowledged: AcknowledgedDataKeys[];
  readonly runs: WorkflowRunOutcome[];
  readonly lifecycle: Map<string, "stored" | "deleted">;
  /** Requests refused with a final (non-retryable) error: a transient fault must never end like this. */
  readonly refusals: string[];
  /** Problems the scenario itself found (the checker's violations are added to them). */
  readonly problems: string[];
  readonly notes: string[];
  totpSeed?: string;
}

function replayHint(ctx: { seed: number }, testName: string): string {
  return (
    `replay: AMK_RELIABILITY_SEED=${ctx.seed} AMK_RELIABILITY_RUNS=1 npx tsx --test ` +
    `--test-name-pattern="${testName}" ${TEST_FILE}`
  );
}

async function newToken(label: string): Promise<{ label: string; pinFile: string }> {
  const t = await ensureToken(home, label);
  return { label: t.label, pinFile: t.pinFile };
}

async function deleteToken(label: string): Promise<void> {
  await exec("softhsm2-util", ["--delete-token", "--token", label], {
    env: { ...process.env, SOFTHSM2_CONF: home.configPath },
  }).catch(() => undefined);
}

/** Points the functions at a token (they build a new key store for it). */
function useToken(t: { label: string; pinFile: string }): void {
  process.env.AMK_PKCS11_TOKEN_LABEL = t.label;
  process.env.AMK_PKCS11_PIN_FILE = t.pinFile;
}

async function startRun(scenario: string, rate: number, seed: number): Promise<RunContext> {
  const n = ++runCounter;
  const table = await ddb.newTable(`rel-${scenario}`);
  const token = await newToken(`rel-${n}`);
  process.env.AMK_EVENT_TABLE = table;
  useToken(token);
  const plan = new FaultPlan(seed, rate);
  layer.use(plan);
  const prng = new Prng(seed).fork("scenario");
  const workspaceId = `${scenario}${Math.round(rate * 100)}-${seed.toString(16)}`;
  return {
    label: `${scenario} @${rate * 100}% seed=${seed}`,
    seed,
    rate,
    prng,
    plan,
    workspaceId,
    table,
    raw: new DynamoDbEventStore({ client: ddb.client, tableName: table }),
    tokens: [token.label],
    acknowledged: [],
    runs: [],
    lifecycle: new Map(),
    refusals: [],
    problems: [],
    notes: [],
  };
}

/** Provisions the run's workspace (faults paused): master key, drill key, one administrator, kit v1, canaries. */
async function provision(
  ctx: RunContext,
  factor: "totp" | "hmac",
  options: { acknowledge?: boolean } = {},
): Promise<void> {
  const t0 = performance.now();
  await ctx.plan.paused(async () => {
    const keyStore = await keyStoreFromEnv();
    const events = eventStoreFromEnv();
    const kits = new KitService({
      keyStore,
      events,
      vault: await vaultFromEnv(),
      alerts: new RecordingAlerts(),
    });
    const dataKeys = new DataKeyService({ keyStore, events });
    const token = softwareHmacToken(Buffer.from(sha(Buffer.from(`hmac-${ctx.seed}`)), "hex").subarray(0, 20));
    const r = await provisionWorkspaceWithKit(
      { keyStore, events, kits, dataKeys },
      {
        workspaceId: ctx.workspaceId,
        administrators: [
          {
            adminId: "ops",
            passphrase: PASSPHRASE,
            factor: factor === "totp" ? { type: "totp" } : { type: "hmac-sha1", token },
          },
        ],
      },
    );
    const uri = r.enrollments[0]?.totpUri;
    if (uri) ctx.totpSeed = new URL(uri).searchParams.get("secret") ?? undefined;
    if (factor === "hmac" && options.acknowledge) {
      // The administrator proves the kit, so that a drill's acknowledgement check starts green.
      await kits.acknowledgeKit({
        workspaceId: ctx.workspaceId,
        adminId: "ops",
        passphrase: PASSPHRASE,
        factor: { type: "hmac-sha1", token },
      });
    }
  });
  ctx.notes.push(`provisioned in ${Math.round(performance.now() - t0)} ms`);
}

/** A deterministic document id from the run's PRNG. */
function documentIds(ctx: RunContext, prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${i}-${ctx.prng.int(0, 0xffffff).toString(16)}`);
}

/** A deterministic EventBridge event id (a UUID) from the run's PRNG. */
function eventId(prng: Prng): string {
  const hex = Array.from({ length: 32 }, () => prng.int(0, 15).toString(16)).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function lifecycleBus(ctx: RunContext): EventBridgeDeliveries {
  const bus = new EventBridgeDeliveries(
    ctx.prng.fork("eventbridge"),
    async (event) => {
      await lifecycleHandler(event as never);
    },
    { duplicateRate: 0.3, maxAttempts: 8, maxDelayMs: 60, concurrency: 3 },
  );
  bus.start();
  return bus;
}

/**
 * The ingestion pipeline: `writers` concurrent callers of the real GenerateDataKeys function, each retrying a
 * retryable answer with the same idempotency key (and now and then sending a request twice at once, as a client
 * that timed out and retried while the first call still ran: both answers must carry the same DEKs). An
 * acknowledged result is kept (hashes of the DEKs) for the checker, and lifecycle events follow on the bus
 * (DocumentStored, and for about a quarter DocumentDeleted right after).
 */
async function ingest(
  ctx: RunContext,
  documents: readonly string[],
  writers: number,
  bus: EventBridgeDeliveries | undefined,
): Promise<void> {
  let next = 0;
  const prng = ctx.prng.fork(`ingest-${documents[0] ?? ""}`);
  const generate = async (request: {
    workspaceId: string;
    documentId: string;
    artifacts: string[];
    idempotencyKey: string;
  }): Promise<boolean> => {
    for (let attempt = 1; ; attempt++) {
      const r = await generateHandler(request);
      if (r.ok) {
        ctx.acknowledged.push({
          workspaceId: ctx.workspaceId,
          documentId: request.documentId,
          recordVersion: r.recordVersion,
          artifacts: r.keys.map((k) => k.artifact),
          wrappedDeks: r.keys.map(
            (k) => r.record.Artifacts.find((a) => a.Artifact === k.artifact)?.WrappedDek ?? "",
          ),
          dekSha256: r.keys.map((k) => sha(Buffer.from(k.dek, "base64"))),
        });
        return true;
      }
      if (!r.error.retryable || attempt >= 15) {
        ctx.refusals.push(
          `GenerateDataKeys ${request.documentId} attempt ${attempt}: ${r.error.code} ${r.error.message}`,
        );
        return false;
      }
      await new Promise((res) => setTimeout(res, prng.int(2, 15) * attempt));
    }
  };
  await Promise.all(
    Array.from({ length: writers }, async () => {
      for (let i = next++; i < documents.length; i = next++) {
        const documentId = documents[i]!;
        const request = {
          workspaceId: ctx.workspaceId,
          documentId,
          artifacts: prng.sample(ARTIFACTS, 2),
          idempotencyKey: `ingest-${documentId}`,
        };
        const twice = prng.chance(0.15);
        const answers = await Promise.all(
          twice ? [generate(request), generate(request)] : [generate(request)],
        );
        if (!answers.some(Boolean) || !bus) continue;
        const id = `${ctx.workspaceId}/${documentId}`;
        const publish = (type: "DocumentStored" | "DocumentDeleted") =>
          bus.publish({
            id: eventId(prng),
            source: "arquivomate.ingestion",
            "detail-type": type,
            time: new Date().toISOString(),
            detail: { workspaceId: ctx.workspaceId, documentId },
          } satisfies LifecycleBusEvent);
        publish("DocumentStored");
        ctx.lifecycle.set(id, "stored");
        if (prng.chance(0.25)) {
          publish("DocumentDeleted");
          ctx.lifecycle.set(id, "deleted");
        }
      }
    }),
  );
}

async function workspaceVersion(ctx: RunContext): Promise<number> {
  return (await ctx.raw.readStream(workspaceStreamId(ctx.workspaceId), { limit: 1 })).currentVersion ?? 0;
}

/** Runs one workflow execution with the real handlers (tracked), records its outcome for the checker. */
async function execute(
  ctx: RunContext,
  kind: WorkflowKind,
  options: {
    handlers: Record<string, LocalHandler>;
    input: Record<string, unknown>;
    taskTokens?: Parameters<typeof runLocal>[0]["taskTokens"];
  },
): Promise<LocalRun> {
  const wf = workflows[kind];
  const inflight = new Inflight();
  const executionName = `${kind}-${ctx.seed.toString(16)}-${ctx.runs.length + 1}`;
  const versionBefore = await workspaceVersion(ctx);
  const t0 = performance.now();
  const run = await runLocal({
    ...wf,
    handlers: inflight.wrap(options.handlers),
    input: options.input,
    executionName,
    waitTimeOverride: 0,
    retryIntervalOverride: 5,
    ...(options.taskTokens ? { taskTokens: options.taskTokens } : {}),
  });
  await inflight.drain();
  if (process.env.AMK_RELIABILITY_VERBOSE) {
    ctx.notes.push(`${kind} execution ${run.status} in ${Math.round(performance.now() - t0)} ms`);
  }
  const drillAnswer = [...run.invocations]
    .reverse()
    .find((i) => i.target === "DrillRun" && i.output && typeof i.output === "object");
  ctx.runs.push({
    kind,
    workspaceId: ctx.workspaceId,
    executionName,
    status: run.status,
    ...(run.error ? { error: run.error.error } : {}),
    versionBefore,
    versionAfter: await workspaceVersion(ctx),
    ...(drillAnswer ? { drillId: String((drillAnswer.output as { drillId?: unknown }).drillId) } : {}),
  });
  return run;
}

/** Why an execution failed: the last failed invocation (state, error type, message), short. */
function failureOf(run: LocalRun): string {
  const failed = [...run.invocations]
    .reverse()
    .find((i) => i.error && i.target !== "RecoveryFailure" && i.target !== "RotationFailure");
  if (!failed?.error) return run.error?.error ?? "";
  return `${failed.state}: ${failed.error.errorType}: ${failed.error.errorMessage.slice(0, 160)}`;
}

/** The operator starts the rotation workflow again until it completes (each execution checked by the checker). */
async function rotateUntilDone(ctx: RunContext, maxExecutions = 6): Promise<void> {
  for (let i = 0; i < maxExecutions; i++) {
    const run = await execute(ctx, "rotation", {
      handlers: rotationHandlers,
      input: { workspaceId: ctx.workspaceId },
    });
    if (run.status === "SUCCEEDED") return;
    ctx.notes.push(`rotation execution ${i + 1} ${run.status}: ${failureOf(run)}`);
  }
  ctx.problems.push(`the rotation did not complete in ${maxExecutions} executions (a stuck workflow)`);
}

/** The checker on the run's table, then cleanup; returns everything wrong with the run. */
async function finishRun(ctx: RunContext, extra?: (keyStore: KeyStore) => Promise<void>): Promise<string[]> {
  ctx.plan.enabled = false;
  const violations: string[] = [];
  const label = process.env.AMK_PKCS11_TOKEN_LABEL!;
  const keyStore = await openRealKeyStore(label);
  try {
    const report = await checkHistory({
      client: ddb.client,
      tableName: ctx.table,
      keyStore,
      acknowledged: ctx.acknowledged,
      runs: ctx.runs,
      lifecycle: ctx.lifecycle,
      label: ctx.label,
    });
    violations.push(...report.violations);
    if (extra) await extra(keyStore);
  } finally {
    await keyStore.close();
  }
  const problems = [
    ...ctx.problems,
    ...ctx.refusals.map((r) => `a transient fault ended as a final error: ${r}`),
    ...violations,
  ];
  if (process.env.AMK_RELIABILITY_VERBOSE) {
    const { events } = await ctx.raw
      .readStream(workspaceStreamId(ctx.workspaceId))
      .catch(() => ({ events: [] }));
    const brief = (e: { version: number; type: string; data: Record<string, unknown> }) =>
      `${e.version}:${e.type}${e.data.KitVersion !== undefined ? `(v${String(e.data.KitVersion)})` : ""}${e.data.Step ? `(${String(e.data.Step)})` : ""}`;
    console.log(`  workspace stream [${ctx.label}]: ${events.map(brief).join(" ")}`);
  }
  console.log(
    `  faults [${ctx.label}]: ${ctx.plan.describe()}${ctx.notes.length ? `; ${ctx.notes.join("; ")}` : ""}`,
  );
  // Cleanup: the functions' key store for this token, the token(s), the table.
  await (await keyStoreFromEnv().catch(() => undefined))?.close();
  for (const t of ctx.tokens) await deleteToken(t);
  await ddb.client.send(new DeleteTableCommand({ TableName: ctx.table })).catch(() => undefined);
  layer.use(undefined);
  return problems;
}

/** A key store on the token without any fault layer (for the checker). */
async function openRealKeyStore(label: string): Promise<KeyStore> {
  const pinFile = process.env.AMK_PKCS11_PIN_FILE!;
  return Pkcs11KeyStore.open({
    config: { libraryPath: home.libraryPath, tokenLabel: label, poolSize: 4 },
    pin: () => readPinFile(pinFile),
  });
}

/** Runs `RUNS` seeded runs of a scenario at a fault rate; fails naming the seeds and how to replay them. */
async function runScenario(
  testName: string,
  scenario: string,
  rate: number,
  body: (ctx: RunContext) => Promise<string[]>,
): Promise<void> {
  const t0 = performance.now();
  const failures: string[] = [];
  for (let i = 0; i < RUNS; i++) {
    const seed = FIXED_SEED !== undefined ? (FIXED_SEED + i) >>> 0 : randomInt(0, 2 ** 32);
    console.log(`# ${testName}: run ${i + 1}/${RUNS} seed=${seed}`);
    const ctx = await startRun(scenario, rate, seed);
    let problems: string[];
    try {
      problems = await body(ctx);
    } catch (err) {
      problems = [`the scenario threw: ${(err as Error)?.stack ?? String(err)}`];
      problems.push(...(await finishRun(ctx).catch(() => [])));
    }
    if (problems.length > 0) {
      failures.push(
        `seed ${seed} (${ctx.label}): ${problems.length} problem(s):\n    - ${problems.join("\n    - ")}\n    ${replayHint(ctx, testName)}`,
      );
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  timings.push({ scenario: testName, rate, seconds, runs: RUNS });
  console.log(
    `# ${testName}: ${RUNS} run(s) in ${seconds.toFixed(1)} s (${(seconds / RUNS).toFixed(2)} s/run)`,
  );
  assert.deepEqual(failures, [], failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

/** (a) Ingestion during rotation, with lifecycle deliveries (duplicated, out of order). */
async function ingestionDuringRotation(ctx: RunContext): Promise<string[]> {
  await provision(ctx, "hmac");
  ctx.plan.enabled = true;
  const bus = lifecycleBus(ctx);
  await ingest(ctx, documentIds(ctx, "a", ctx.prng.int(10, 20)), 4, bus);
  const during = documentIds(ctx, "b", ctx.prng.int(10, 20));
  const writers = ingest(ctx, during, 4, bus);
  await new Promise((r) => setTimeout(r, ctx.prng.int(0, 100)));
  await rotateUntilDone(ctx);
  await writers;
  const stats = await bus.close();
  ctx.notes.push(
    `lifecycle delivered=${stats.delivered} duplicates=${stats.duplicates} outOfOrder=${stats.outOfOrder} retries=${stats.retries}`,
  );
  for (const e of stats.deadLettered)
    ctx.problems.push(`lifecycle event ${e["detail-type"]} ${e.detail.documentId} dead-lettered`);
  ctx.plan.enabled = false;
  const ws = await readWorkspace(ctx.raw, ctx.workspaceId);
  if (ws.rotation?.status !== "completed")
    ctx.problems.push(`the rotation ended ${String(ws.rotation?.status)}`);
  const left = await ctx.raw.countDocumentsByKeyId(ctx.workspaceId, masterKeyId(ctx.workspaceId, 1));
  if (left !== 0) ctx.problems.push(`${left} live document(s) still on ${masterKeyId(ctx.workspaceId, 1)}`);
  return finishRun(ctx);
}

const RECOVERY_STEPS = [
  "Validate",
  "AwaitUnlock",
  "Rotate",
  "PlanRewrap",
  "RewrapShard",
  "Census",
  "Verify",
  "InvalidateTokens",
  "Complete",
] as const;

/** (b) Recovery after the HSM token is lost, with a crash in each step, each followed by a resumed execution. */
async function recoveryWithCrashes(ctx: RunContext): Promise<string[]> {
  await provision(ctx, "totp");
  ctx.plan.enabled = true;
  await ingest(ctx, documentIds(ctx, "r", ctx.prng.int(20, 40)), 4, undefined);
  // The HSM is lost: its token deleted (every key in it gone), the functions pointed at an empty replacement.
  await ctx.plan.paused(async () => {
    await (await keyStoreFromEnv()).close();
    await deleteToken(process.env.AMK_PKCS11_TOKEN_LABEL!);
    const replacement = await newToken(`${ctx.tokens[0]!}-replacement`);
    ctx.tokens.push(replacement.label);
    useToken(replacement);
  });
  const wf = workflows.recovery;
  const unlocks = { attempts: 0, ok: 0 };
  const recoveryInput = {
    workspaceId: ctx.workspaceId,
    requestedBy: "reliability suite",
    reason: "HSM lost",
  };
  const bridge = awaitUnlockBridge(60_000, inProcessTaskCallbacks, {
    onWaiting: (token) =>
      void unlockWhenWaiting(ctx, token, unlocks).catch((err: unknown) =>
        ctx.problems.push(`the unlock threw: ${(err as Error)?.stack ?? String(err)}`),
      ),
  });
  let executions = 0;
  for (const step of RECOVERY_STEPS) {
    const functionId = wf.tasks[step]!;
    const mode: CrashMode | "mid-batch" =
      step === "RewrapShard"
        ? ctx.prng.pick(["before", "after", "mid-batch"] as const)
        : ctx.prng.pick(["before", "after"] as const);
    let fired = false;
    for (let attempt = 0; attempt < 4 && !fired; attempt++) {
      executions += 1;
      let handlers: Record<string, LocalHandler> = recoveryHandlers;
      let crash: { readonly fired: boolean } | undefined;
      if (mode === "mid-batch") ctx.plan.armMidBatchCrash();
      else {
        const c = crashOnce(
          recoveryHandlers[functionId as keyof typeof recoveryHandlers] as (e: never) => unknown,
          mode,
        );
        crash = c;
        handlers = { ...recoveryHandlers, [functionId]: c.handler as LocalHandler };
      }
      const run = await execute(ctx, "recovery", { handlers, input: recoveryInput, taskTokens: bridge });
      fired = mode === "mid-batch" ? !ctx.plan.midBatchCrashPending : crash!.fired;
      if (mode === "mid-batch" && !fired) ctx.plan.takeCrash(); // disarm: it must not hit a later execution
      if (fired && run.status !== "FAILED")
        ctx.problems.push(`${step} crashed (${mode}) but the execution ${run.status}`);
      if (!fired) ctx.notes.push(`${step}: execution ${run.status} before the crash (${failureOf(run)})`);
      if (run.status === "SUCCEEDED") break;
    }
    if ((await readWorkspace(ctx.raw, ctx.workspaceId)).recovery?.status === "completed") break;
  }
  // The operator starts it again until it completes.
  for (let i = 0; i < 6; i++) {
    if ((await readWorkspace(ctx.raw, ctx.workspaceId)).recovery?.status === "completed") break;
    executions += 1;
    const run = await execute(ctx, "recovery", {
      handlers: recoveryHandlers,
      input: recoveryInput,
      taskTokens: bridge,
    });
    if (run.status !== "SUCCEEDED")
      ctx.notes.push(`final execution ${i + 1} ${run.status} (${failureOf(run)})`);
  }
  ctx.plan.enabled = false;
  const ws = await readWorkspace(ctx.raw, ctx.workspaceId);
  ctx.notes.push(`recovery executions=${executions} unlocks=${unlocks.ok}/${unlocks.attempts}`);
  if (ws.recovery?.status !== "completed") {
    ctx.problems.push(
      `the recovery did not complete (status ${String(ws.recovery?.status)}, execution ${String(ws.recovery?.executionName)}, failure ${JSON.stringify(ws.recovery?.failure)}): a stuck workflow`,
    );
  }
  return finishRun(ctx);
}

/** The administrator answers an execution waiting for the unlock (retrying with the next code on a transient error). */
async function unlockWhenWaiting(
  ctx: RunContext,
  token: string,
  counters: { attempts: number; ok: number },
): Promise<void> {
  for (let i = 0; i < 400 && !inProcessTaskCallbacks.isWaiting(token); i++)
    await new Promise((r) => setTimeout(r, 10));
  for (let attempt = 1; attempt <= 6 && inProcessTaskCallbacks.isWaiting(token); attempt++) {
    const ws = await readWorkspace(ctx.raw, ctx.workspaceId);
    const last = ws.admins.ops?.lastAcceptedStep ?? -1;
    let now = Math.floor(Date.now() / 1000 / 30);
    // The code of the current step (or the next one, when the current one was used already): the gate accepts it
    // for at least another 30 s. (The previous step's code, accepted too, would leave as little as nothing: under
    // load the unlock outlived its step and was refused, seed 526264489 in CI.)
    let step = Math.max(last + 1, now);
    while (step > now + 1) {
      await new Promise((r) => setTimeout(r, 1000));
      now = Math.floor(Date.now() / 1000 / 30);
    }
    step = Math.max(last + 1, now);
    const code = await totpCode(ctx.totpSeed!, DEFAULT_TOTP, step * 30 + 1);
    counters.attempts += 1;
    const r = (await unlockHandler({
      workspaceId: ctx.workspaceId,
      adminId: "ops",
      passphrase: PASSPHRASE,
      factor: { type: "totp", code },
    })) as { ok: boolean; error?: { code: string; message: string; retryable: boolean } };
    if (r.ok) {
      counters.ok += 1;
      return;
    }
    ctx.notes.push(`unlock attempt ${attempt}: ${r.error?.code}`);
    if (["KIT_WRONG_PASSPHRASE", "TOTP_CODE_INVALID", "FACTOR_LOCKED"].includes(r.error?.code ?? "")) {
      ctx.problems.push(`the unlock was refused (${r.error?.code}: ${r.error?.message})`);
      return;
    }
  }
}

/** (c) Drills while the rotation runs. */
async function drillDuringRotation(ctx: RunContext): Promise<string[]> {
  await provision(ctx, "hmac", { acknowledge: true });
  ctx.plan.enabled = true;
  await ingest(ctx, documentIds(ctx, "c", ctx.prng.int(20, 40)), 4, undefined);
  let rotating = true;
  const rotation = rotateUntilDone(ctx).finally(() => (rotating = false));
  const drills = (async () => {
    const count = ctx.prng.int(1, 3);
    for (let i = 0; i < count; i++) {
      await new Promise((r) => setTimeout(r, ctx.prng.int(0, 300)));
      if (!rotating && i > 0) break;
      await execute(ctx, "drill", {
        handlers: drillHandlers,
        input: { workspaceId: ctx.workspaceId, trigger: "on-demand", sampleSize: 10 },
      });
    }
  })();
  await Promise.all([rotation, drills]);
  ctx.plan.enabled = false;
  // What the drills found: a failed check is explained by the rotation (a new kit not yet acknowledged), by an
  // injected fault, or it is a finding.
  const { events } = await ctx.raw.readStream(workspaceStreamId(ctx.workspaceId));
  const ws = await readWorkspace(ctx.raw, ctx.workspaceId);
  for (const e of events.filter((x) => x.type === EventTypes.DrillCompleted)) {
    const d = e.data as DrillCompletedData;
    for (const c of d.Checks.filter((x) => x.Status === "failed")) {
      const drill = `drill ${d.DrillId.slice(0, 8)} check ${c.Name}`;
      if (c.Name === "acknowledgements") continue;
      if (TRANSIENT.test(c.Detail)) {
        ctx.notes.push(`${drill} failed on an injected fault (a false alarm)`);
        findings.falseAlarms += 1;
        continue;
      }
      ctx.problems.push(`drill ${d.DrillId} during the rotation: check ${c.Name} failed: ${c.Detail}`);
    }
  }
  if (ws.rotation?.status !== "completed")
    ctx.problems.push(`the rotation ended ${String(ws.rotation?.status)}`);
  return finishRun(ctx);
}

/** What the drills of scenario (c) found that is not a violation, over all runs (printed at the end). */
const findings = { falseAlarms: 0 };

/** Error signatures of injected faults (after the adapters' own translation). */
const TRANSIENT =
  /HsmUnavailableError|EventStoreUnavailableError|the HSM is unavailable|DynamoDB (busy|cancelled)|lost with the HSM session|is not loaded in this key store|ConcurrentUpdateError/;

/** (d) A backup export during ingestion, then the backup verified, restored and checked. */
async function backupDuringIngestion(ctx: RunContext): Promise<string[]> {
  await provision(ctx, "hmac");
  ctx.plan.enabled = true;
  const bus = lifecycleBus(ctx);
  await ingest(ctx, documentIds(ctx, "d", ctx.prng.int(10, 20)), 4, bus);
  const dir = await mkdtemp(join(work, "backup-"));
  const storage = new FolderBackupStorage(dir);
  const signer = backupSignerFromPkcs8(generateBackupSigningKey());
  const source = layer.wrapBackupSource(new DynamoDbEventStore({ client: ddb.client, tableName: ctx.table }));
  const writers = ingest(ctx, documentIds(ctx, "e", ctx.prng.int(10, 20)), 4, bus);
  await new Promise((r) => setTimeout(r, ctx.prng.int(0, 80)));
  // Everything acknowledged before the export starts must be in the backup.
  const before = [...ctx.acknowledged];
  let exported: ExportBackupResult | undefined;
  for (let attempt = 1; attempt <= 8 && !exported; attempt++) {
    try {
      exported = await exportBackup({
        source,
        storage,
        signer,
        scope: { kind: "table" },
        maxEventsPerFile: 40,
      });
    } catch (err) {
      if (!isRetryable(err)) {
        ctx.problems.push(
          `the export failed with a final error: ${(err as Error).name}: ${(err as Error).message}`,
        );
        break;
      }
      ctx.notes.push(`export attempt ${attempt}: ${(err as Error).name}`);
    }
  }
  await writers;
  const stats = await bus.close();
  for (const e of stats.deadLettered)
    ctx.problems.push(`lifecycle event ${e["detail-type"]} ${e.detail.documentId} dead-lettered`);
  ctx.plan.enabled = false;
  if (!exported) {
    ctx.problems.push("no backup could be exported");
    return finishRun(ctx);
  }
  const backup = exported;
  return finishRun(ctx, async (keyStore) => {
    // The backup verifies, restores into an empty table, and the restored history is sound on its own.
    const verified = await verifyBackup({ storage, backupId: backup.backupId, trustedKeys: [signer] });
    const scratch = await ddb.newTable("rel-restore");
    try {
      const target = new DynamoDbEventStore({ client: ddb.client, tableName: scratch });
      await importBackup({ storage, backupId: backup.backupId, target, trustedKeys: [signer] });
      const restored = await checkHistory({
        client: ddb.client,
        tableName: scratch,
        keyStore,
        acknowledged: before,
        label: `${ctx.label} restored backup (${verified.streams} streams, ${verified.events} events)`,
      });
      ctx.problems.push(...restored.violations.map((v) => `restored backup: ${v}`));
      // Each restored stream is a prefix of the live stream: the same events at the same versions.
      for (const ack of before) {
        const id = documentStreamId(ctx.workspaceId, ack.documentId);
        const live = (await ctx.raw.readStream(id)).events;
        const copy = (await target.readStream(id)).events;
        if (copy.length === 0 || copy.some((e, i) => e.eventId !== live[i]?.eventId)) {
          ctx.problems.push(`restored backup: stream ${id} is not a prefix of the live stream`);
        }
      }
    } finally {
      await ddb.client.send(new DeleteTableCommand({ TableName: scratch })).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------

describe("reliability: faults injected around the real adapters, every history checked", () => {
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "amk-reliability-"));
    home = await ensureSoftHsmHome(join(work, "softhsm"));
    process.env.SOFTHSM2_CONF = home.configPath;
    ddb = await useTestDynamoDb();
    const synth = synthWith(createApp);
    workflows = { rotation: synth.rotation, recovery: synth.recovery, drill: synth.drill };
    await rm(synth.outdir, { recursive: true, force: true });
    Object.assign(process.env, {
      AMK_PKCS11_LIBRARY: home.libraryPath,
      AMK_PKCS11_POOL_SIZE: "6",
      // The adapter gives up after 2 attempts: injected HSM faults also reach the use cases and the workflows' Retry.
      AMK_PKCS11_MAX_ATTEMPTS: "2",
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      AMK_VAULT_DIR: join(work, "vault"),
      AMK_ALERT_LOG: join(work, "alerts.jsonl"),
      AMK_BUS_LOG: join(work, "bus.jsonl"),
      AMK_TASK_CALLBACKS: "in-process",
      AMK_REWRAP_BUDGET_MS: "300",
      // Writers in flight (docs/rotation.md): GenerateDataKeys records within 500 ms of reading the active version,
      // and a census counts no earlier than 1.5 s after an activation. Short, so that both show up in the runs.
      AMK_DATAKEY_WRITE_WINDOW_MS: "500",
      AMK_WRITER_SETTLE_MS: "1500",
    });
    layer = installFaultLayer();
    console.log(
      `# reliability: ${RUNS} run(s) per scenario and rate${FIXED_SEED !== undefined ? `, seeds from ${FIXED_SEED}` : ""}`,
    );
  });

  after(async () => {
    layer?.uninstall();
    await ddb?.cleanup();
    if (work) await rm(work, { recursive: true, force: true });
    for (const t of timings) {
      console.log(`# timing: ${t.scenario}: ${t.runs} runs, ${t.seconds.toFixed(1)} s`);
    }
    console.log(
      `# memory: rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB after ${runCounter} runs`,
    );
    console.log(`# drill findings: ${findings.falseAlarms} false alarm(s) on injected faults`);
  });

  for (const rate of RATES) {
    const pct = `${rate * 100}%`;
    const a = `ingestion during rotation, faults at ${pct}`;
    it(a, () => runScenario(a, "ing", rate, ingestionDuringRotation));
    const b = `recovery with a crash in each step, faults at ${pct}`;
    it(b, () => runScenario(b, "rec", rate, recoveryWithCrashes));
    const c = `drill during rotation, faults at ${pct}`;
    it(c, () => runScenario(c, "dri", rate, drillDuringRotation));
    const d = `backup export during ingestion, faults at ${pct}`;
    it(d, () => runScenario(d, "bak", rate, backupDuringIngestion));
  }

  it("the history checker finds what it must find (tampered histories)", async () => {
    const seed = FIXED_SEED ?? randomInt(0, 2 ** 32);
    const ctx = await startRun("chk", 0, seed);
    try {
      await provision(ctx, "hmac");
      const bus = lifecycleBus(ctx);
      await ingest(ctx, documentIds(ctx, "k", 6), 2, bus);
      await bus.close();
      // Three different documents, the first one live (a deleted document's DEKs are not compared).
      const byDoc = new Map(ctx.acknowledged.map((x) => [x.documentId, x]));
      const live = [...byDoc.values()].filter(
        (x) => ctx.lifecycle.get(`${ctx.workspaceId}/${x.documentId}`) !== "deleted",
      );
      const a = live[0]!;
      const [b, c] = [...byDoc.values()].filter((x) => x.documentId !== a.documentId);
      const keyStore = await openRealKeyStore(process.env.AMK_PKCS11_TOKEN_LABEL!);
      try {
        const sound = await checkHistory({
          client: ddb.client,
          tableName: ctx.table,
          keyStore,
          acknowledged: ctx.acknowledged,
          lifecycle: ctx.lifecycle,
          log: false,
        });
        assert.deepEqual(sound.violations, [], "an untouched history is sound");
        // 1. A caller was told other DEKs than the record holds; 2. a record that was never written.
        const acknowledged = [
          { ...a, dekSha256: [sha(Buffer.from("another DEK")), a.dekSha256[1]!] },
          { ...b!, recordVersion: b!.recordVersion + 5 },
        ];
        // 3. A document lifecycle that the store does not show.
        const lifecycle = new Map(ctx.lifecycle);
        const cid = `${ctx.workspaceId}/${c!.documentId}`;
        const opposite = ctx.lifecycle.get(cid) === "deleted" ? "stored" : "deleted";
        lifecycle.set(cid, opposite);
        // 4. A wrap record under a master key version that does not exist.
        const stray = documentStreamId(ctx.workspaceId, "stray");
        await ctx.raw.appendToStream(
          stray,
          [
            newEvent(EventTypes.DocumentEncryptionKeysAdded, {
              AggregateId: "stray",
              WorkspaceId: ctx.workspaceId,
              KeyId: masterKeyId(ctx.workspaceId, 9),
              WrapFormat: "AMK-GCM-V1",
              Artifacts: [],
              OccurredOn: new Date().toISOString(),
            }),
          ],
          { expectedVersion: "no_stream" },
        );
        // 5. A stream that lost its head item.
        await ddb.client.send(
          new DeleteItemCommand({
            TableName: ctx.table,
            Key: { pk: { S: documentStreamId(ctx.workspaceId, c!.documentId) }, sk: { S: "head" } },
          }),
        );
        // 6. A rotation said to have succeeded that recorded nothing; a recovery that left its lock.
        const version = await workspaceVersion(ctx);
        await ctx.raw.appendToStream(
          workspaceStreamId(ctx.workspaceId),
          [
            newEvent(EventTypes.RecoveryStarted, {
              WorkspaceId: ctx.workspaceId,
              RecoveryId: "0b0e6a50-5a3e-4bde-9f4e-6c1d0c1e2a11",
              KitVersion: 1,
              KitFingerprint: "x",
              RequestedBy: "t",
              Reason: "t",
              ExecutionName: "stuck",
              Resumed: false,
            }),
          ],
          { expectedVersion: version },
        );
        const runs: WorkflowRunOutcome[] = [
          {
            kind: "rotation",
            workspaceId: ctx.workspaceId,
            executionName: "r",
            status: "SUCCEEDED",
            versionBefore: 0,
            versionAfter: version,
          },
          {
            kind: "recovery",
            workspaceId: ctx.workspaceId,
            executionName: "stuck",
            status: "FAILED",
            versionBefore: version,
            versionAfter: version + 1,
          },
        ];
        const report = await checkHistory({
          client: ddb.client,
          tableName: ctx.table,
          keyStore,
          acknowledged,
          lifecycle,
          runs,
          log: false,
        });
        const expected = [
          /unwraps to other DEKs than first handed out/,
          new RegExp(
            `${b!.documentId}: the acknowledged wrap record \\(v${b!.recordVersion + 5}\\) is missing`,
          ),
          new RegExp(`${c!.documentId}: lifecycle status \\w+, the delivered events say ${opposite}`),
          /doc-stray: its current record \(v1\) uses \S+\/mk\/9, which is unknown to the workspace/,
          /mk\/9 \(unrecorded\) is not in the HSM/,
          /newest kit \(v1\) lacks \S+\/mk\/9/,
          /\/stray: the current record does not unwrap/,
          /events but no stream head/,
          /rotation run r \(SUCCEEDED\): succeeded without a RotationCompleted/,
          /recovery run stuck \(FAILED\): ended holding the recovery lock/,
        ];
        for (const re of expected) {
          assert.ok(
            report.violations.some((v) => re.test(v)),
            `expected a violation matching ${re}; got:\n${report.violations.join("\n")}`,
          );
        }
        console.log(
          `# history checker self-test: ${report.violations.length} violations found in a tampered history`,
        );
      } finally {
        await keyStore.close();
      }
    } finally {
      await finishRun(ctx).catch(() => undefined);
    }
  });

  // Found by this suite (docs/reliability.md, "Bugs found"): StartRotation made the new version active before a kit
  // carried it. Now it is pending until the kit is issued.
  it("the newest kit carries the active master key version at every moment", async () => {
    const seed = FIXED_SEED ?? randomInt(0, 2 ** 32);
    console.log(`# active version without a kit: seed=${seed}`);
    const ctx = await startRun("gap", 0, seed);
    try {
      await provision(ctx, "hmac");
      const mk1 = masterKeyId(ctx.workspaceId, 1);
      const mk2 = masterKeyId(ctx.workspaceId, 2);
      // The HSM session is lost at every export of a master key into the new kit (the transport key goes with
      // it), more often than StartRotation and the state machine retry: the kit issuance fails for good and the
      // rotation is recorded as failed.
      ctx.plan.enabled = true;
      ctx.plan.injectOnce("C_WrapKey", "CKR_DEVICE_REMOVED", 1000);
      const run = await execute(ctx, "rotation", {
        handlers: rotationHandlers,
        input: { workspaceId: ctx.workspaceId },
      });
      console.log(`# active version without a kit: rotation ${run.status}: ${failureOf(run)}`);
      assert.equal(run.status, "FAILED", "the kit issuance cannot succeed while every export fails");
      ctx.plan.injectOnce("C_WrapKey", "CKR_DEVICE_REMOVED", 0);
      // The new version was never handed out: it is pending, the active version is still mk/1, in kit v1.
      const ws = await readWorkspace(ctx.raw, ctx.workspaceId);
      assert.equal(ws.activeKeyId, mk1);
      assert.equal(ws.keys.find((k) => k.keyId === mk2)?.state, "pending");
      assert.equal(ws.rotation?.status, "failed");
      // Ingestion goes on meanwhile: its DEKs are wrapped under mk/1, which kit v1 carries.
      await ingest(ctx, ["after-the-failed-issuance"], 1, undefined);
      assert.equal(ctx.acknowledged.at(-1)?.documentId, "after-the-failed-issuance");
      // The operator starts the rotation again: kit v2 carries mk/2, then mk/2 is active, then the rotation ends.
      await rotateUntilDone(ctx);
      const after = await readWorkspace(ctx.raw, ctx.workspaceId);
      assert.equal(after.activeKeyId, mk2);
      assert.ok(after.kits.at(-1)?.masterKeys.some((m) => m.keyId === mk2));
      ctx.plan.enabled = false;
      const problems = await finishRun(ctx);
      assert.deepEqual(problems, [], problems.join("\n"));
    } finally {
      ctx.plan.enabled = false;
    }
  });

  // Found by this suite (docs/reliability.md, "Bugs found"): a GenerateDataKeys call that read the active version
  // before a rotation could record under it after the census retired it. Now the call records within its write
  // window, and the census waits out the settle time since the activation.
  it("no live wrap record on a retired master key version, even when ingestion stalls across a whole rotation", async () => {
    const seed = FIXED_SEED ?? randomInt(0, 2 ** 32);
    console.log(`# ingestion stalled across a rotation: seed=${seed}`);
    const ctx = await startRun("stl", 0, seed);
    try {
      await provision(ctx, "hmac");
      await ingest(ctx, documentIds(ctx, "s", 5), 2, undefined);
      // The next DEK wrap stalls inside the HSM (after GenerateDataKeys read the active version mk/1).
      ctx.plan.enabled = true;
      const hold = ctx.plan.holdNext("wrapDataKey");
      const stalled = ingest(ctx, ["stalled-across-the-rotation"], 1, undefined);
      await hold.reached;
      // A whole rotation runs meanwhile: census zero, mk/1 retired, kit re-issued without it.
      await rotateUntilDone(ctx);
      hold.release();
      await stalled;
      ctx.plan.enabled = false;
      const problems = await finishRun(ctx);
      assert.deepEqual(problems, [], problems.join("\n"));
    } finally {
      ctx.plan.enabled = false;
    }
  });

  it("TOTP under clock skew: a code within one step of drift is accepted, beyond it refused", async () => {
    const seed = FIXED_SEED ?? randomInt(0, 2 ** 32);
    console.log(`# TOTP clock skew: seed=${seed}`);
    const ctx = await startRun("tot", 0, seed);
    try {
      await provision(ctx, "totp");
      const vault = await vaultFromEnv();
      const alerts = new RecordingAlerts();
      const base = Math.floor(Date.now() / 1000 / 30) * 30;
      const cases: { offset: number; phase: number }[] = [];
      for (const offset of [29, -29, 31, -31, 61, -61]) cases.push({ offset, phase: 15 });
      const prng = ctx.prng.fork("skew");
      for (let i = 0; i < 12; i++)
        cases.push({ offset: prng.pick([29, -29, 31, -31, 61, -61]), phase: prng.int(0, 29) });
      const results: string[] = [];
      for (const [i, c] of cases.entries()) {
        // The administrator's authenticator reads `client`; the unlock function's clock is `offset` seconds off.
        const client = base + 300 * (i + 1) + c.phase;
        const code = await totpCode(ctx.totpSeed!, DEFAULT_TOTP, client);
        const within = Math.abs(Math.floor(client / 30) - Math.floor((client + c.offset) / 30)) <= 1;
        const gate = new UnlockGate({
          events: ctx.raw,
          vault,
          alerts,
          now: skewedClock(c.offset, () => new Date(client * 1000)),
        });
        const accepted = await gate.releaseTotpKey(ctx.workspaceId, "ops", code).then(
          (k) => (k.fill(0), true),
          (err: unknown) => {
            assert.equal((err as Error).name, "TotpCodeInvalidError", String(err));
            return false;
          },
        );
        await gate.recordSuccess(ctx.workspaceId, "ops", 1, "verify"); // resets the failure count
        results.push(
          `${c.offset > 0 ? "+" : ""}${c.offset}s@${c.phase}:${accepted ? "accepted" : "refused"}`,
        );
        assert.equal(accepted, within, `offset ${c.offset} s at phase ${c.phase} s (seed ${seed})`);
        if (c.phase === 15) assert.equal(accepted, Math.abs(c.offset) < 60, `mid-step offset ${c.offset} s`);
      }
      // The whole unlock path (KitService.openKit: passphrase + code through the gate) with a skewed clock.
      const keyStore = await keyStoreFromEnv();
      for (const [offset, expected] of [
        [31, true],
        [61, false],
      ] as const) {
        const client = base + 300 * (cases.length + (offset === 31 ? 2 : 4)) + 15;
        const kits = new KitService({
          keyStore,
          events: ctx.raw,
          vault,
          alerts,
          now: skewedClock(offset, () => new Date(client * 1000)),
        });
        const code = await totpCode(ctx.totpSeed!, DEFAULT_TOTP, client);
        const opened = await kits
          .openKit({
            workspaceId: ctx.workspaceId,
            adminId: "ops",
            passphrase: PASSPHRASE,
            factor: { type: "totp", code },
          })
          .then(
            (o) => (o.wrapKey.fill(0), true),
            (err: unknown) => {
              assert.equal((err as Error).name, "TotpCodeInvalidError");
              return false;
            },
          );
        results.push(`openKit +${offset}s:${opened ? "opened" : "refused"}`);
        assert.equal(opened, expected, `openKit with the clock ${offset} s ahead`);
      }
      console.log(`# TOTP clock skew: ${results.join(" ")}`);
    } finally {
      await finishRun(ctx);
    }
  });
});
