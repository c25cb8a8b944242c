/**
 * The rotation workflow's tasks (one Lambda function each; see workflows/rotation-workflow.ts). Payloads hold ids,
 * counts and key ids only: never key material. Domain errors are thrown with their class name, which the state
 * machine's Retry and Catch match on (`HsmUnavailableError`, `EventStoreUnavailableError`, `ConcurrentUpdateError`,
 * `CensusNotEmptyError`, ...). RecordFailure has an entry file of its own (failure.ts), without the HSM.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { z } from "zod";
import { KitService } from "../../core/kit/kit-service.js";
import { RotationService } from "../../core/rotation/rotation-service.js";
import { eventStoreFromEnv } from "../shared/event-store.js";
import { keyStoreEnvKey, keyStoreFromEnv } from "../shared/key-store.js";
import { parseInput, WorkspaceIdSchema } from "../shared/schemas.js";
import { alertsFromEnv } from "../shared/notify.js";
import { vaultFromEnv } from "../shared/vault.js";
import { instrumented } from "../shared/powertools.js";
import { writerTimingFromEnv } from "../shared/services.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });
/** CloudWatch metrics (EMF): the re-wrap's progress, per workspace. */
const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? "ArquivoMateKeys",
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys",
});

let cached: { key: string; service: Promise<RotationService> } | undefined;
function service(): Promise<RotationService> {
  const key = keyStoreEnvKey();
  if (cached?.key !== key) cached = { key, service: build() };
  const current = cached;
  return current.service.catch((err: unknown) => {
    if (cached === current) cached = undefined;
    throw err;
  });
}

function build(): Promise<RotationService> {
  return (async () => {
    const keyStore = await keyStoreFromEnv(logger);
    const events = eventStoreFromEnv();
    const alerts = alertsFromEnv(logger);
    const kits = new KitService({
      keyStore,
      events,
      vault: await vaultFromEnv(),
      alerts,
      oaepHash: process.env.AMK_DRILL_OAEP_HASH === "SHA-256" ? "SHA-256" : "SHA-1",
    });
    return new RotationService({
      keyStore,
      events,
      kits,
      alerts,
      documentConcurrency: Number(process.env.AMK_REWRAP_DOCUMENT_CONCURRENCY ?? 8),
      ...writerTimingFromEnv(),
    });
  })();
}

const Workspace = z.object({ workspaceId: WorkspaceIdSchema, reason: z.string().max(200).optional() });
const ShardInput = z.object({
  workspaceId: WorkspaceIdSchema,
  fromKeyId: z.string().max(100),
  shard: z.number().int().min(0).max(1023),
});

export const startHandler = instrumented("startHandler", async (event: unknown) => {
  const input = parseInput(Workspace, event);
  const r = await (await service()).startRotation(input.workspaceId, input.reason ?? "rotation workflow");
  logger.info("rotation started", {
    workspaceId: input.workspaceId,
    rotationId: r.rotationId,
    toKeyId: r.toKeyId,
  });
  return {
    workspaceId: input.workspaceId,
    rotationId: r.rotationId,
    toKeyId: r.toKeyId,
    fromKeyIds: r.fromKeyIds,
  };
});

export const planHandler = instrumented("planHandler", async (event: unknown) => {
  const input = parseInput(Workspace, event);
  const plan = await (await service()).planRewrap(input.workspaceId);
  logger.info("re-wrap planned", {
    workspaceId: input.workspaceId,
    items: plan.items.length,
    remaining: plan.remaining,
  });
  return {
    workspaceId: input.workspaceId,
    remaining: plan.remaining,
    hasWork: plan.items.length > 0,
    items: plan.items.map((i) => ({
      workspaceId: input.workspaceId,
      fromKeyId: i.fromKeyId,
      shard: i.shard,
    })),
  };
});

/** Budget: the Lambda's remaining time less a margin, or AMK_REWRAP_BUDGET_MS. */
export const rewrapShardHandler = instrumented(
  "rewrapShardHandler",
  async (event: unknown, context?: { getRemainingTimeInMillis?: () => number }) => {
    const input = parseInput(ShardInput, event);
    const budget =
      Number(process.env.AMK_REWRAP_BUDGET_MS ?? 0) ||
      Math.max(1000, (context?.getRemainingTimeInMillis?.() ?? 60_000) - 15_000);
    const r = await (await service()).rewrapShard({ ...input, deadline: Date.now() + budget });
    logger.info("shard re-wrapped", { ...input, moved: r.moved, skipped: r.skipped, remaining: r.remaining });
    metrics.addDimension("workspaceId", input.workspaceId);
    metrics.addMetric("DocumentsRewrapped", MetricUnit.Count, r.moved);
    metrics.addMetric("DocumentsSkipped", MetricUnit.Count, r.skipped);
    metrics.publishStoredMetrics();
    return r;
  },
);

/**
 * Waits (within the Lambda's remaining time less a margin) for the writer settle time since the activation, then
 * counts. `settled: false` sends the state machine round again (CensusZero needs remaining 0 and settled).
 */
export const censusHandler = instrumented(
  "censusHandler",
  async (event: unknown, context?: { getRemainingTimeInMillis?: () => number }) => {
    const input = parseInput(Workspace, event);
    const settleWaitMaxMs = Math.max(0, (context?.getRemainingTimeInMillis?.() ?? 60_000) - 15_000);
    const c = await (await service()).census(input.workspaceId, { settleWaitMaxMs });
    logger.info("census", {
      workspaceId: input.workspaceId,
      remaining: c.remaining,
      sampled: c.sampled,
      settled: c.settled,
    });
    metrics.addDimension("workspaceId", input.workspaceId);
    metrics.addMetric("DocumentsOnOldVersions", MetricUnit.Count, c.remaining);
    metrics.publishStoredMetrics();
    return {
      workspaceId: input.workspaceId,
      remaining: c.remaining,
      settled: c.settled,
      sampled: c.sampled,
      byKeyId: c.byKeyId,
    };
  },
);

export const completeHandler = instrumented("completeHandler", async (event: unknown) => {
  const input = parseInput(Workspace, event);
  const r = await (await service()).completeRotation(input.workspaceId);
  logger.info("rotation completed", { workspaceId: input.workspaceId, ...r });
  return { workspaceId: input.workspaceId, kitVersion: r.kitVersion, retired: r.retired };
});
