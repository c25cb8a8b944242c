/**
 * How handlers answer: `{ ok: true, ... }`, or `{ ok: false, error: { code, message, retryable } }` for every domain
 * error. Only the error's code, message and retryable flag leave the function (messages never carry secrets);
 * anything unexpected becomes INTERNAL with a generic message and is logged by name only.
 */
import type { Logger } from "@aws-lambda-powertools/logger";
import { AmkError } from "../../core/shared/errors.js";

export interface ErrorBody {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
}
export type Failure = { readonly ok: false; readonly error: ErrorBody };

export function failure(err: unknown, logger: Logger, context: Record<string, unknown>): Failure {
  if (err instanceof AmkError) {
    logger.warn("request refused", {
      ...context,
      error: { name: err.name, code: err.code, retryable: err.retryable },
    });
    return { ok: false, error: { code: err.code, message: err.message, retryable: err.retryable } };
  }
  logger.error("unexpected error", { ...context, error: { name: (err as Error)?.name ?? typeof err } });
  return {
    ok: false,
    error: { code: "INTERNAL", message: "unexpected error; see the function's logs", retryable: false },
  };
}
