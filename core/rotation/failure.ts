/**
 * The rotation's failure path (RecordFailure): `RotationFailed` for the running rotation, and the alert. A module of
 * its own, with the event store and the alerts as its only dependencies, so that the failure function loads neither
 * the key store nor the kit and records a failure while the HSM is down.
 */
import type { Alerts } from "../alerts/alerts.js";
import { EventTypes, type RotationFailedData } from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { newEvent } from "../eventstore/events.js";
import { workspaceStreamId } from "../eventstore/stream-id.js";
import { AmkError } from "../shared/errors.js";
import { backoffDelay, retryTransient, sleep, TRANSIENT_RETRY } from "../shared/retry.js";
import { readWorkspace } from "../workspaces/workspace.js";

/**
 * What `RotationService.recordFailure` does, without the service: records `RotationFailed` for the running rotation and
 * alerts. It needs only the event store and the alerts, so the failure function works while the HSM is down.
 */
export async function recordRotationFailure(
  deps: { readonly events: EventStore; readonly alerts: Alerts; readonly now?: () => Date },
  workspaceId: string,
  error: { name: string; message: string },
): Promise<void> {
  const now = deps.now ?? (() => new Date());
  // The catch path must not be lost to a transient store failure: reads and the append are retried (bounded), and
  // an append whose answer was lost is recognised on the re-read (the rotation is no longer running).
  const read = () => retryTransient(() => readWorkspace(deps.events, workspaceId));
  const ws = await read();
  if (ws.rotation?.status !== "running") return;
  const data: RotationFailedData = {
    WorkspaceId: workspaceId,
    RotationId: ws.rotation.rotationId,
    Error: error.name,
    Message: error.message.slice(0, 500),
  };
  for (let attempt = 1; ; attempt++) {
    try {
      await deps.events.appendToStream(
        workspaceStreamId(workspaceId),
        [newEvent(EventTypes.RotationFailed, data, { occurredAt: now() })],
        {
          expectedVersion: "stream_exists",
        },
      );
      break;
    } catch (err) {
      if (!(err instanceof AmkError && err.retryable) || attempt >= TRANSIENT_RETRY.maxAttempts) throw err;
      await sleep(backoffDelay(TRANSIENT_RETRY, attempt));
      const current = (await read()).rotation;
      if (current?.rotationId !== data.RotationId || current.status !== "running") break;
    }
  }
  await deps.alerts.raise({
    code: "ROTATION_FAILED",
    severity: "warning",
    workspaceId,
    message: `rotation ${ws.rotation.rotationId} to ${ws.rotation.toKeyId} stopped: ${error.name}`,
    action:
      "New DEKs already use the new key and every old key still decrypts. Fix the cause and start the rotation again: it continues where it stopped.",
    context: { rotationId: ws.rotation.rotationId, error: error.name },
  });
}
