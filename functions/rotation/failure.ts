/**
 * The rotation workflow's RecordFailure task, in an entry file of its own: it records `RotationFailed` and alerts with
 * the event store and the alerts only. It never loads the PKCS#11 adapter, so its function has no PKCS#11 layer, no
 * PIN secret and no place in the HSM's network, and it records a failure while the HSM is down.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { z } from "zod";
import { recordRotationFailure } from "../../core/rotation/failure.js";
import { eventStoreFromEnv } from "../shared/event-store.js";
import { alertsFromEnv } from "../shared/notify.js";
import { instrumented } from "../shared/powertools.js";
import { CaughtErrorSchema, causeMessageOf, parseInput, WorkspaceIdSchema } from "../shared/schemas.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

const FailureInput = z.object({
  workspaceId: WorkspaceIdSchema,
  error: CaughtErrorSchema,
});

export const failureHandler = instrumented("failureHandler", async (event: unknown) => {
  const input = parseInput(FailureInput, event);
  const name = input.error?.Error ?? "Error";
  const message = causeMessageOf(input.error?.Cause);
  // The event store and the alerts only: the failure is recorded even while the HSM cannot be opened.
  await recordRotationFailure(
    { events: eventStoreFromEnv(), alerts: alertsFromEnv(logger) },
    input.workspaceId,
    {
      name,
      message,
    },
  );
  return { workspaceId: input.workspaceId, recorded: true, error: name };
});
