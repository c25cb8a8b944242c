import { AmkError } from "../shared/errors.js";

export abstract class FactorError extends AmkError {}

/** The TOTP code is not valid now (one step of drift allowed). Counted as a failed attempt. */
export class TotpCodeInvalidError extends FactorError {
  readonly code = "TOTP_CODE_INVALID";
}

/** The TOTP code (or an older one) was already used: a code is never accepted twice. Counted as a failed attempt. */
export class TotpCodeReplayedError extends FactorError {
  readonly code = "TOTP_CODE_REPLAYED";
}

/** Too many failed attempts: the administrator's slot is locked until `context.lockedUntil`. */
export class FactorLockedError extends FactorError {
  readonly code = "FACTOR_LOCKED";
}

/** The administrator, or their factor secret, is unknown. */
export class FactorNotEnrolledError extends FactorError {
  readonly code = "FACTOR_NOT_ENROLLED";
}

/** Other writes to the workspace kept racing the unlock; retry. */
export class UnlockBusyError extends FactorError {
  readonly code = "UNLOCK_BUSY";
  override readonly retryable = true;
}
