/**
 * The recovery workflow's tasks (workflows/recovery-workflow.ts), one Lambda function each; the re-wrap itself runs
 * on the rotation functions (plan, shard, census). Inputs and outputs are ids, versions, counts and KCVs: the
 * passphrase and the second factor only ever reach the unlock function (functions/recovery-unlock), never a
 * workflow payload. Domain errors keep their class name, which the state machine's Retry and Catch match on.
 * RecordFailure has an entry file of its own (failure.ts), without the HSM.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { z } from "zod";
import { parseInput, WorkspaceIdSchema, ExecutionNameSchema } from "../shared/schemas.js";
import { recoveryServiceFromEnv } from "./services.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });
const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? "ArquivoMateKeys",
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys",
});
const service = () => recoveryServiceFromEnv(logger);

const RecoveryIdSchema = z.uuid("recoveryId must be a UUID");

/** The execution input (non-secret only) and the execution's name, as the Validate task passes them. */
const StartInput = z.object({
  request: z.object({
    workspaceId: WorkspaceIdSchema,
    requestedBy: z.string().min(1, "requestedBy: who is recovering").max(200),
    reason: z.string().min(1, "reason: why").max(500),
    kitVaultVersionId: z.string().min(1).max(128).optional(),
  }),
  executionName: ExecutionNameSchema,
});
const Step = z.object({ workspaceId: WorkspaceIdSchema, recoveryId: RecoveryIdSchema });
const AwaitInput = Step.extend({ taskToken: z.string().min(1).max(8192) });

export const startHandler = instrumented("startHandler", async (event: unknown) => {
  const { request, executionName } = parseInput(StartInput, event);
  const r = await (await service()).start({ ...request, executionName });
  logger.info("recovery started", { ...r });
  return r;
});

export const awaitUnlockHandler = instrumented("awaitUnlockHandler", async (event: unknown) => {
  const input = parseInput(AwaitInput, event);
  const timeoutSeconds = Number(process.env.AMK_UNLOCK_TIMEOUT_SECONDS ?? 86_400);
  await (await service()).awaitUnlock({ ...input, timeoutSeconds });
  logger.info("recovery waits for an unlock", {
    workspaceId: input.workspaceId,
    recoveryId: input.recoveryId,
  });
  return { workspaceId: input.workspaceId, recoveryId: input.recoveryId, waiting: true };
});

export const rotateHandler = instrumented("rotateHandler", async (event: unknown) => {
  const input = parseInput(Step, event);
  const r = await (await service()).rotate(input);
  logger.info("recovery rotated to a fresh master key", { ...input, toKeyId: r.toKeyId });
  return r;
});

export const verifyHandler = instrumented("verifyHandler", async (event: unknown) => {
  const input = parseInput(Step, event);
  const r = await (
    await service()
  ).verify({
    ...input,
    sampleSize: Number(process.env.AMK_RECOVERY_SAMPLE_SIZE ?? 20),
  });
  logger.info("recovery verified", { ...input, ...r });
  return r;
});

export const invalidateTokensHandler = instrumented("invalidateTokensHandler", async (event: unknown) => {
  const input = parseInput(Step, event);
  const r = await (await service()).invalidateTokens(input);
  logger.info("access tokens invalidated", { ...input, epoch: r.epoch });
  return r;
});

export const completeHandler = instrumented("completeHandler", async (event: unknown) => {
  const input = parseInput(Step, event);
  const r = await (await service()).complete(input);
  logger.info("recovery completed", { ...input, newKeyId: r.NewKeyId, kitVersion: r.KitVersion });
  metrics.addDimension("workspaceId", input.workspaceId);
  metrics.addMetric("RecoveryDurationMs", MetricUnit.Milliseconds, r.TimingsMs.Total ?? 0);
  metrics.publishStoredMetrics();
  return {
    workspaceId: r.WorkspaceId,
    recoveryId: r.RecoveryId,
    newKeyId: r.NewKeyId,
    recoveredKeyIds: r.RecoveredKeyIds,
    kitVersion: r.KitVersion,
    tokenEpoch: r.TokenEpoch,
    documentsOnNewKey: r.DocumentsOnNewKey,
    timingsMs: r.TimingsMs,
  };
});
