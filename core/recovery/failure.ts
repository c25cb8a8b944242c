/**
 * The recovery's failure path (RecordFailure): `RecoveryFailed` for the execution's own recovery (which releases its
 * lock), and the alert. A module of its own, with the event store and the alerts as its only dependencies, so that
 * the failure function loads neither the key store nor the kit and records a failure while the HSM is down.
 */
import type { Alerts } from "../alerts/alerts.js";
import { EventTypes, type RecoveryFailedData } from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent } from "../eventstore/events.js";
import { workspaceStreamId } from "../eventstore/stream-id.js";
import { AmkError } from "../shared/errors.js";
import { backoffDelay, retryTransient, sleep, TRANSIENT_RETRY } from "../shared/retry.js";
import { readWorkspace } from "../workspaces/workspace.js";

/** What the recovery's failure path records. */
export interface RecoveryFailureInput {
  readonly workspaceId: string;
  readonly executionName: string;
  readonly step: string;
  readonly error: { readonly name: string; readonly message: string };
}

/**
 * What `RecoveryService.recordFailure` does, without the service: it needs only the event store and the alerts, so the
 * failure function records the failure (and releases the recovery's lock) while the HSM is down.
 */
export async function recordRecoveryFailure(
  deps: { readonly events: EventStore; readonly alerts: Alerts; readonly now?: () => Date },
  input: RecoveryFailureInput,
): Promise<{ recorded: boolean; recoveryId?: string }> {
  const now = deps.now ?? (() => new Date());
  // The catch path must not lose the lock's release to a transient store failure: a read that fails for a moment
  // is retried (else the execution's recovery would stay "running" and refuse every later execution).
  const read = () => retryTransient(() => readWorkspace(deps.events, input.workspaceId));
  const ws = await read().catch(() => undefined);
  const r = ws?.recovery;
  const own = ws !== undefined && r?.status === "running" && r.executionName === input.executionName;
  if (own) {
    const data: RecoveryFailedData = {
      WorkspaceId: input.workspaceId,
      RecoveryId: r.recoveryId,
      Step: input.step.slice(0, 40),
      Error: input.error.name.slice(0, 200),
      Message: input.error.message.slice(0, 500),
    };
    let state = ws;
    for (let attempt = 0; ; attempt++) {
      try {
        await deps.events.appendToStream(
          workspaceStreamId(state.workspaceId),
          [newEvent(EventTypes.RecoveryFailed, data, { occurredAt: now() })],
          { expectedVersion: state.version },
        );
        break;
      } catch (err) {
        const transient = err instanceof AmkError && err.retryable;
        if (!(err instanceof ExpectedVersionConflictError || transient) || attempt >= 5) throw err;
        if (transient) await sleep(backoffDelay(TRANSIENT_RETRY, attempt + 1));
        state = await read();
        // Recorded already (an append whose answer was lost), or no longer this execution's to close.
        const now = state.recovery;
        if (now?.recoveryId !== r.recoveryId || now.status !== "running") break;
      }
    }
  }
  await deps.alerts.raise({
    code: own ? "RECOVERY_FAILED" : "RECOVERY_REJECTED",
    severity: "critical",
    workspaceId: input.workspaceId,
    message: own
      ? `recovery ${r.recoveryId} stopped at step ${input.step}: ${input.error.name}`
      : `a recovery of workspace ${input.workspaceId} was refused at step ${input.step}: ${input.error.name}`,
    action: own
      ? "Every old key is untouched. Fix the cause (see the message in RecoveryFailed) and start the recovery again: it resumes where it stopped."
      : "Another recovery is running or the request was invalid; see the execution's error. Nothing was changed.",
    context: { step: input.step, error: input.error.name, ...(own ? { recoveryId: r.recoveryId } : {}) },
  });
  return own ? { recorded: true, recoveryId: r.recoveryId } : { recorded: false };
}
