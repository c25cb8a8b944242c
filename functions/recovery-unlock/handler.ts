/**
 * The unlock function: the only place where an administrator's passphrase and second factor meet the recovery.
 * Called directly (the CLI's `amk recover unlock`, or an authenticated call), never by the workflow: it opens the
 * kit, imports the master key versions into the HSM with their KCVs checked, records `RecoveryUnlocked`, and resumes
 * the waiting execution with non-secret facts (key ids, KCVs). A wrong passphrase or code is answered here and
 * counted (lockout); the execution keeps waiting. The request is never logged; errors carry codes and messages only.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { z } from "zod";
import { TaskTokenExpiredError } from "../../core/recovery/task-callbacks.js";
import { failure } from "../shared/responses.js";
import { parseInput, WorkspaceIdSchema } from "../shared/schemas.js";
import { taskCallbacksFromEnv } from "../shared/notify.js";
import { recoveryServiceFromEnv } from "../recovery/services.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

const UnlockRequest = z.strictObject({
  workspaceId: WorkspaceIdSchema,
  adminId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/, "adminId: 1-128 characters"),
  passphrase: z.string().min(1, "passphrase is required").max(1024),
  factor: z.strictObject({
    type: z.literal("totp"),
    code: z.string().regex(/^\d{6,8}$/, "code: 6-8 digits"),
  }),
  /** An uploaded kit (armoured text) instead of the vault's current kit. */
  kit: z.string().min(1).max(1_000_000).optional(),
});

export const handler = instrumented("handler", async (event: unknown) => {
  const context = {
    workspaceId:
      typeof event === "object" && event ? (event as { workspaceId?: unknown }).workspaceId : undefined,
  };
  try {
    const input = parseInput(UnlockRequest, event);
    const service = await recoveryServiceFromEnv(logger);
    const { taskToken, facts } = await service.unlock({
      workspaceId: input.workspaceId,
      adminId: input.adminId,
      passphrase: input.passphrase,
      factor: input.factor,
      ...(input.kit !== undefined ? { kit: input.kit } : {}),
    });
    let resumed = false;
    if (taskToken) {
      try {
        await taskCallbacksFromEnv().succeed(taskToken, { ...facts });
        resumed = true;
      } catch (err) {
        if (!(err instanceof TaskTokenExpiredError)) throw err;
      }
    }
    logger.info("kit unlocked for recovery", {
      workspaceId: facts.workspaceId,
      recoveryId: facts.recoveryId,
      adminId: input.adminId,
      kitVersion: facts.kitVersion,
      resumed,
    });
    return {
      ok: true as const,
      ...facts,
      resumed,
      ...(resumed
        ? {}
        : {
            note: "the execution no longer waits (timed out or stopped); start the recovery again: it resumes with the keys already in the HSM",
          }),
    };
  } catch (err) {
    return failure(err, logger, { ...context, operation: "recovery-unlock" });
  }
});
