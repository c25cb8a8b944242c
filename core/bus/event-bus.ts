/**
 * The `EventBus` port: how the key service tells the other ArquivoMate services that something happened which they
 * must act on (for example `AccessTokensInvalidated`: drop every session of a workspace). EventBridge in AWS; a
 * recorder locally. Events carry ids, epochs and reasons: never a secret.
 */
import { AmkError } from "../shared/errors.js";

/** The EventBridge `source` of every event this service publishes. */
export const EVENT_SOURCE = "arquivomate.keys";

export interface BusEvent {
  /** EventBridge `detail-type`, e.g. `AccessTokensInvalidated`. */
  readonly detailType: string;
  readonly workspaceId: string;
  /** JSON-serialisable, non-secret facts; `WorkspaceId` is added by the adapter when missing. */
  readonly detail: Readonly<Record<string, unknown>>;
  /** Stable id of this publication (consumers de-duplicate on it: EventBridge delivers at least once). */
  readonly id: string;
}

export interface EventBus {
  /** Publishes every event or throws `EventBusError` naming the ones that failed. */
  publish(events: readonly BusEvent[]): Promise<void>;
}

/** The bus refused or failed some events; `context.failed` lists their ids and error codes. */
export class EventBusError extends AmkError {
  readonly code = "EVENT_BUS";
  override readonly retryable: boolean;
  constructor(
    message: string,
    options: { cause?: unknown; context?: Record<string, unknown>; retryable?: boolean } = {},
  ) {
    super(message, options);
    this.retryable = options.retryable ?? true;
  }
}

/** Keeps published events in memory (tests, the local story). */
export class RecordingEventBus implements EventBus {
  readonly published: BusEvent[] = [];
  async publish(events: readonly BusEvent[]): Promise<void> {
    this.published.push(...events);
  }
}
