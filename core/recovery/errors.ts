/** Errors of the recovery workflow's steps. Messages and context carry ids and versions only, never a secret. */
import { AmkError } from "../shared/errors.js";

export abstract class RecoveryError extends AmkError {}

/** Another recovery holds the workspace's recovery lock; this one changes nothing. */
export class RecoveryInProgressError extends RecoveryError {
  readonly code = "RECOVERY_IN_PROGRESS";
}

/** The step does not fit the recovery's state (no recovery running, none waiting for an unlock, ...). */
export class RecoveryStateError extends RecoveryError {
  readonly code = "RECOVERY_STATE";
}

/** The kit does not cover every master key version that wrap records use: those documents would be lost. */
export class KitCoverageError extends RecoveryError {
  readonly code = "KIT_COVERAGE";
}

/** After the re-wrap, records remain on recovered versions or a canary does not decrypt: nothing is retired. */
export class RecoveryVerificationError extends RecoveryError {
  readonly code = "RECOVERY_VERIFICATION";
}
