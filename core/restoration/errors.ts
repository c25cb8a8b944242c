import { AmkError } from "../shared/errors.js";

/** Base of the restoration test's errors. */
export abstract class RestorationError extends AmkError {}

/**
 * A master key of the kit could not be recovered into the HSM through the drill slot: its wrapped blob does not
 * unwrap, or unwraps to a key whose KCV is not the one the kit records. Nothing of the kit stays loaded.
 */
export class ScratchKeyRecoveryError extends RestorationError {
  readonly code = "SCRATCH_KEY_RECOVERY_FAILED";
}

/**
 * A scratch master key is no longer in the HSM: its scratch keys were closed, or the HSM session that held them was
 * lost. Open the kit into scratch keys again.
 */
export class ScratchKeysUnavailableError extends RestorationError {
  readonly code = "SCRATCH_KEYS_UNAVAILABLE";
  override readonly retryable = true;
}

/**
 * Some scratch objects could not be destroyed (the HSM failed). They are session objects: they vanish with the key
 * store's HSM session at the latest (closing the key store ends it).
 */
export class ScratchKeyCleanupError extends RestorationError {
  readonly code = "SCRATCH_KEY_CLEANUP_FAILED";
}
