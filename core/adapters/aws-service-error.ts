/**
 * What the thin AWS adapters keep of an error thrown by an SDK client's `send`: the AWS error name, HTTP status and
 * request id when the service answered, otherwise the local error's name and code (a network failure, a timeout).
 * Shared by the SNS, EventBridge, Step Functions and CloudHSM adapters; each maps the facts to its own domain error.
 */

export interface AwsErrorFacts {
  /** The AWS error name (e.g. `ThrottlingException`), or the local error's name when the service did not answer. */
  readonly name: string;
  /** True when the service answered with an error response. */
  readonly answered: boolean;
  /** The SDK's fault classification of a service error. */
  readonly fault?: "client" | "server";
  readonly httpStatusCode?: number;
  readonly requestId?: string;
  /** A local error's code, e.g. `ECONNREFUSED`. */
  readonly errorCode?: string;
  /** The service's message, at most 300 characters (only for callers that know it cannot quote a secret). */
  readonly awsMessage?: string;
}

/** Reads the facts of an error thrown by an AWS SDK v3 client (any version: no `instanceof`). */
export function awsErrorFacts(err: unknown): AwsErrorFacts {
  if (err instanceof Error && "$metadata" in err) {
    const e = err as Error & {
      $fault?: unknown;
      $metadata?: { httpStatusCode?: number; requestId?: string };
    };
    const fault = e.$fault === "client" || e.$fault === "server" ? e.$fault : undefined;
    // Parser errors carry $metadata too, but no fault: they did not come from an error response.
    if (fault !== undefined && !["Error", "SyntaxError", "TypeError", "RangeError"].includes(e.name)) {
      const status = e.$metadata?.httpStatusCode;
      const requestId = e.$metadata?.requestId;
      return {
        name: e.name,
        answered: true,
        fault,
        ...(status === undefined ? {} : { httpStatusCode: status }),
        ...(requestId === undefined ? {} : { requestId }),
        ...(typeof e.message === "string" && e.message !== "" && e.message !== "UnknownError"
          ? { awsMessage: e.message.slice(0, 300) }
          : {}),
      };
    }
  }
  const name = err instanceof Error ? err.name : typeof err;
  const code = (err as { code?: unknown } | null)?.code;
  return { name, answered: false, ...(typeof code === "string" ? { errorCode: code } : {}) };
}

/** Context entries for a domain error: the facts without the service's message. */
export function awsErrorContext(facts: AwsErrorFacts): Record<string, unknown> {
  return {
    awsErrorName: facts.name,
    ...(facts.httpStatusCode === undefined ? {} : { httpStatusCode: facts.httpStatusCode }),
    ...(facts.requestId === undefined ? {} : { requestId: facts.requestId }),
    ...(facts.errorCode === undefined ? {} : { errorCode: facts.errorCode }),
  };
}

/** `Name, HTTP 503` or `Name ECONNREFUSED`: for messages. */
export function describeAwsError(facts: AwsErrorFacts): string {
  if (facts.answered) {
    return `${facts.name}${facts.httpStatusCode === undefined ? "" : `, HTTP ${facts.httpStatusCode}`}`;
  }
  return `${facts.name}${facts.errorCode === undefined ? "" : ` ${facts.errorCode}`}`;
}

/** Throttling and service-side error names common to AWS services (the services' own ones are added per adapter). */
export const COMMON_TRANSIENT_ERRORS: ReadonlySet<string> = new Set([
  "ThrottlingException",
  "Throttling",
  "ThrottledException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "ProvisionedThroughputExceededException",
  "InternalFailure",
  "InternalError",
  "InternalServerError",
  "InternalServiceError",
  "InternalException",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "RequestTimeout",
  "RequestTimeoutException",
]);

/**
 * True when retrying later may succeed: a transient AWS error name, a server fault or 5xx, or no answer (a network
 * failure or timeout).
 */
export function isTransient(facts: AwsErrorFacts, extra: ReadonlySet<string> = new Set()): boolean {
  // No answer: a network failure or timeout is transient; a TypeError or RangeError is a bug in what was sent.
  if (!facts.answered) return facts.name !== "TypeError" && facts.name !== "RangeError";
  return (
    COMMON_TRANSIENT_ERRORS.has(facts.name) ||
    extra.has(facts.name) ||
    facts.fault === "server" ||
    (facts.httpStatusCode !== undefined && facts.httpStatusCode >= 500)
  );
}

/**
 * A cause safe to keep: the error's name, AWS name and status, without its message or response (which may echo what
 * was sent, e.g. a task token).
 */
export function safeCause(facts: AwsErrorFacts, operation: string): Error {
  const cause = new Error(`${describeAwsError(facts)} from ${operation}`);
  cause.name = facts.name;
  return cause;
}
