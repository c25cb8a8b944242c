/**
 * Errors of the Secrets Manager adapter. Every error names the secret (its id is not secret) and, where the service
 * answered, the AWS error name, HTTP status and request id; none carries the secret's value, not even in its cause.
 */
import { AmkError, type AmkErrorOptions } from "../../shared/errors.js";

/** Non-secret facts about a failed read, kept in the error's `context`. */
export interface PinSecretErrorContext {
  readonly secretId: string;
  /** The AWS error name (`__type`), when the service answered with an error. */
  readonly awsErrorName?: string;
  readonly httpStatusCode?: number;
  readonly requestId?: string;
  /** Additional non-secret facts, e.g. the JSON keys found in a malformed secret. */
  readonly [fact: string]: unknown;
}

/** Base of every error reading the HSM PIN from Secrets Manager. */
export abstract class PinSecretError extends AmkError {
  readonly secretId: string;

  constructor(message: string, context: PinSecretErrorContext, options: Pick<AmkErrorOptions, "cause"> = {}) {
    super(message, { ...options, context });
    this.secretId = context.secretId;
  }
}

/** The secret does not exist (or is not visible from this account/region). Fix the configuration. */
export class PinSecretNotFoundError extends PinSecretError {
  readonly code = "PIN_SECRET_NOT_FOUND";
}

/**
 * The caller may not read the secret: missing `secretsmanager:GetSecretValue`, missing `kms:Decrypt` on the secret's
 * key (`DecryptionFailure`), or invalid credentials. Fix the permissions; retrying won't help.
 */
export class PinSecretAccessDeniedError extends PinSecretError {
  readonly code = "PIN_SECRET_ACCESS_DENIED";
}

/** Throttling, a service-side failure or a network problem: retrying later may succeed. */
export class PinSecretUnavailableError extends PinSecretError {
  readonly code = "PIN_SECRET_UNAVAILABLE";
  override readonly retryable = true;
}

/**
 * The service refused the request for another reason, e.g. the secret is scheduled for deletion
 * (`InvalidRequestException`) or the version asked for does not exist. Retrying won't help.
 */
export class PinSecretRequestRejectedError extends PinSecretError {
  readonly code = "PIN_SECRET_REQUEST_REJECTED";
}

/**
 * The secret was read but holds no usable PIN: binary only, empty, or JSON without `pin` or `username`/`password`.
 * The message describes the shape found (e.g. the JSON keys), never the value.
 */
export class PinSecretFormatError extends PinSecretError {
  readonly code = "PIN_SECRET_FORMAT";
}
