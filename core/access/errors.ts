import { AmkError, type AmkErrorOptions } from "../shared/errors.js";

/**
 * Errors of the access-token module. A refused token is an `AccessTokenRejectedError` whose `reason` says why; a
 * misconfigured signing key, or writers racing on the workspace stream beyond the retry bound, have their own types.
 * No message or context ever carries a token, a part of one, or the signing key.
 */

/** Base of the access-token module's errors. */
export abstract class AccessTokenError extends AmkError {}

/** Why a token was refused. Part of the contract: callers log and count these, tests assert them. */
export const ACCESS_TOKEN_REJECTION_REASONS = [
  /** Not a compact HS256 JWT of this format: bad encoding, wrong `typ` or algorithm, missing or ill-typed claims,
   * another issuer, longer than MAX_ACCESS_TOKEN_LENGTH. */
  "malformed",
  /** The signature does not verify under the signing key (tampered, or signed with another key). */
  "bad-signature",
  /** `exp` has passed (or the token is older than the longest lifetime). */
  "expired",
  /** `iat` (or `nbf`) lies in the future beyond the clock tolerance. */
  "not-yet-valid",
  /** `aud` does not name this audience. */
  "wrong-audience",
  /** The token belongs to another workspace than the one the caller asked about. */
  "wrong-workspace",
  /** The token's epoch is below the workspace's current token epoch: it was issued before an invalidation. */
  "stale-epoch",
  /** The token names a workspace this event store has never heard of. */
  "unknown-workspace",
] as const;

export type AccessTokenRejectionReason = (typeof ACCESS_TOKEN_REJECTION_REASONS)[number];

/**
 * The token is refused (answer 401). `reason` is one of ACCESS_TOKEN_REJECTION_REASONS; `context` holds only facts
 * such as the reason, the workspace id and epochs, never the token. Retrying with the same token cannot succeed.
 */
export class AccessTokenRejectedError extends AccessTokenError {
  readonly code = "ACCESS_TOKEN_REJECTED";
  readonly reason: AccessTokenRejectionReason;

  constructor(reason: AccessTokenRejectionReason, message: string, options: AmkErrorOptions = {}) {
    super(message, { ...options, context: { ...options.context, reason } });
    this.reason = reason;
  }
}

/** The signing key is missing or too short. Fix the configuration; retrying will not help. */
export class AccessTokenKeyError extends AccessTokenError {
  readonly code = "ACCESS_TOKEN_KEY";
}

/** Invalidations kept racing on the workspace stream beyond the retry bound; retry later. */
export class TokenEpochConflictError extends AccessTokenError {
  readonly code = "TOKEN_EPOCH_CONFLICT";
  override readonly retryable = true;
}
