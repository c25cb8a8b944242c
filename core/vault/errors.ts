/**
 * Errors of the secret vault (`SecretVault` and its adapters). Messages and contexts name the secret, the version
 * and the label (none of them is secret); none carries a secret's value, not even in its cause.
 */
import { AmkError, InvalidInputError, type AmkErrorOptions } from "../shared/errors.js";

/** Non-secret facts about a failed vault operation, kept in the error's `context`. */
export interface VaultErrorContext {
  readonly secretName?: string;
  readonly versionId?: string;
  readonly label?: string;
  /** The operation that failed, e.g. `putSecret`. */
  readonly operation?: string;
  /** Further non-secret facts: AWS error name, HTTP status, request id, file-system error code, ... */
  readonly [fact: string]: unknown;
}

/** Base of every vault error except invalid input (which extends `InvalidInputError`). */
export abstract class VaultError extends AmkError {
  declare readonly context: Readonly<VaultErrorContext>;

  constructor(
    message: string,
    context: VaultErrorContext = {},
    options: Pick<AmkErrorOptions, "cause"> = {},
  ) {
    super(message, { ...options, context });
  }

  /** The secret the operation was about, when there was one. */
  get secretName(): string | undefined {
    return this.context.secretName;
  }
}

/** No secret with that name (or it is not visible from this account/region). */
export class SecretNotFoundError extends VaultError {
  readonly code = "SECRET_NOT_FOUND";
}

/** The secret exists, but no version has that version id or carries that label. */
export class SecretVersionNotFoundError extends VaultError {
  readonly code = "SECRET_VERSION_NOT_FOUND";
}

/** The caller may not use the vault or the secret (IAM, KMS key policy, file permissions). Retrying won't help. */
export class VaultAccessDeniedError extends VaultError {
  readonly code = "VAULT_ACCESS_DENIED";
}

/** Throttling, a service-side failure, a network or transient file-system failure: retrying later may succeed. */
export class VaultUnavailableError extends VaultError {
  readonly code = "VAULT_UNAVAILABLE";
  override readonly retryable = true;
}

/**
 * The write conflicts with what is stored: the client token was already used for a version with another value
 * (versions are immutable). Nothing was changed.
 */
export class VaultConflictError extends VaultError {
  readonly code = "VAULT_CONFLICT";
}

/** What is stored is damaged or not what this vault wrote (checksum mismatch, unreadable index, foreign format). */
export class VaultCorruptionError extends VaultError {
  readonly code = "VAULT_CORRUPTION";
}

/** The vault's storage is not safe to use (e.g. a root folder that group or others can access). Nothing was read. */
export class VaultInsecureError extends VaultError {
  readonly code = "VAULT_INSECURE";
}

/** The backend refused the request for another reason (e.g. a secret scheduled for deletion, a quota). */
export class VaultRequestRejectedError extends VaultError {
  readonly code = "VAULT_REQUEST_REJECTED";
}

/** A secret name that breaks the naming rules (see `validateSecretName`). Nothing was read or written. */
export class InvalidSecretNameError extends InvalidInputError {
  readonly secretName: string;

  constructor(message: string, secretName: string) {
    super(message, { context: { secretName } });
    this.secretName = secretName;
  }
}

/** Other invalid arguments: an empty or too large value, a bad label or client token. Nothing was written. */
export class InvalidSecretRequestError extends InvalidInputError {}
