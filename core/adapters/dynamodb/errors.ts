/**
 * Translation of DynamoDB SDK errors into event-store errors. Conditional-check cancellations are not handled
 * here: the store reads what it collided with (marker or head) to tell a replay from a version conflict.
 */
import { AmkError } from "../../shared/errors.js";
import {
  EventStoreConfigError,
  EventStoreOperationError,
  EventStoreUnavailableError,
  type EventStoreError,
} from "../../eventstore/errors.js";

/** Service errors that mean "busy or broken for a moment": retrying later may succeed. */
const TRANSIENT_ERROR_NAMES = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "LimitExceededException",
  "InternalServerError",
  "InternalFailure",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "TransactionInProgressException",
  "TimeoutError",
  "RequestTimeout",
  "RequestTimeoutException",
]);

/** Network failures below the SDK (endpoint down, connection dropped). */
const TRANSIENT_NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** Errors that come from how the store is set up, not from the request. */
const CONFIG_ERROR_NAMES = new Set([
  "ResourceNotFoundException",
  "AccessDeniedException",
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "MissingAuthenticationTokenException",
  "ExpiredTokenException",
  "IncompleteSignature",
  "CredentialsProviderError",
]);

/** Cancellation reason codes of TransactWriteItems that are transient. */
export const TRANSIENT_CANCELLATION_CODES = new Set([
  "ThrottlingError",
  "ProvisionedThroughputExceeded",
  "TransactionConflict",
  "RequestLimitExceeded",
]);

interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
  cause?: unknown;
}

function networkCode(err: unknown, depth = 0): string | undefined {
  if (depth > 4 || typeof err !== "object" || err === null) return undefined;
  const e = err as SdkErrorShape;
  if (typeof e.code === "string" && TRANSIENT_NETWORK_CODES.has(e.code)) return e.code;
  if (Array.isArray((err as { errors?: unknown[] }).errors)) {
    for (const inner of (err as { errors: unknown[] }).errors) {
      const code = networkCode(inner, depth + 1);
      if (code) return code;
    }
  }
  return networkCode(e.cause, depth + 1);
}

/**
 * An event-store error for any failure of an SDK call. Errors that already are domain errors pass through.
 * `operation` names the call for operators (`appendToStream`, `readStream`, ...).
 */
export function translateDynamoDbError(
  err: unknown,
  operation: string,
  context: Record<string, unknown> = {},
): AmkError {
  if (err instanceof AmkError) return err;
  const e = (typeof err === "object" && err !== null ? err : {}) as SdkErrorShape;
  const name = typeof e.name === "string" ? e.name : "Error";
  const status = e.$metadata?.httpStatusCode;
  const ctx = {
    ...context,
    operation,
    awsError: name,
    ...(status === undefined ? {} : { httpStatusCode: status }),
  };
  const netCode = networkCode(err);
  if (netCode !== undefined) {
    return new EventStoreUnavailableError(`DynamoDB unreachable during ${operation} (${netCode})`, {
      cause: err,
      context: { ...ctx, networkCode: netCode },
    });
  }
  if (
    TRANSIENT_ERROR_NAMES.has(name) ||
    (status !== undefined && status >= 500) ||
    e.$retryable !== undefined
  ) {
    return new EventStoreUnavailableError(
      `DynamoDB busy or failing during ${operation} (${name}); retry later`,
      {
        cause: err,
        context: ctx,
      },
    );
  }
  if (CONFIG_ERROR_NAMES.has(name)) {
    return new EventStoreConfigError(
      `DynamoDB refused ${operation} (${name}): check the table name, region and permissions`,
      {
        cause: err,
        context: ctx,
      },
    );
  }
  return new EventStoreOperationError(`DynamoDB ${operation} failed (${name})`, { cause: err, context: ctx });
}

/** An error for a cancelled transaction whose reasons hold no conditional-check failure. */
export function translateCancellation(
  codes: readonly string[],
  err: unknown,
  operation: string,
  context: Record<string, unknown>,
): EventStoreError {
  const ctx = { ...context, operation, cancellationReasons: codes };
  if (codes.some((c) => TRANSIENT_CANCELLATION_CODES.has(c))) {
    return new EventStoreUnavailableError(
      `DynamoDB cancelled ${operation} (${codes.join(", ")}); retry later`,
      {
        cause: err,
        context: ctx,
      },
    );
  }
  return new EventStoreOperationError(`DynamoDB cancelled ${operation} (${codes.join(", ")})`, {
    cause: err,
    context: ctx,
  });
}
