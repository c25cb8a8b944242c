/**
 * `TaskCallbacks` over AWS Step Functions `SendTaskSuccess`: resumes the execution waiting on a task token.
 *
 * Errors:
 * - `TaskTimedOut`, `TaskDoesNotExist`, `InvalidToken`: `TaskTokenExpiredError` (the execution no longer waits on it);
 * - `InvalidOutput` (and output that is not JSON or is larger than 256 KB, checked before the call):
 *   `InvalidInputError`;
 * - throttling (also KMS's), service-side failures and network errors: `TaskCallbackError` (retryable);
 * - anything else (access denied, a disabled KMS key): `TaskCallbackRejectedError` (./errors.ts, not retryable).
 *
 * The task token is a credential for the waiting execution: no message, context or cause of these errors contains
 * it. The service's error messages can quote it, so the SDK error is replaced by a cause holding only its name and
 * HTTP status.
 */
import { SendTaskSuccessCommand, type SFNClient } from "@aws-sdk/client-sfn";
import {
  TaskCallbackError,
  TaskTokenExpiredError,
  type TaskCallbacks,
} from "../../recovery/task-callbacks.js";
import { InvalidInputError } from "../../shared/errors.js";
import {
  awsErrorContext,
  awsErrorFacts,
  describeAwsError,
  isTransient,
  safeCause,
} from "../aws-service-error.js";
import { TaskCallbackRejectedError } from "./errors.js";

/** Step Functions' limit on a task's output (UTF-8 bytes). */
export const SFN_OUTPUT_MAX_BYTES = 256 * 1024;

const EXPIRED = new Set(["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"]);
const INVALID_OUTPUT = new Set(["InvalidOutput"]);
const TRANSIENT = new Set(["KmsThrottlingException"]);

export interface StepFunctionsTaskCallbacksOptions {
  readonly client: SFNClient;
}

export class StepFunctionsTaskCallbacks implements TaskCallbacks {
  private readonly client: SFNClient;

  constructor(options: StepFunctionsTaskCallbacksOptions) {
    this.client = options.client;
  }

  async succeed(taskToken: string, output: Readonly<Record<string, unknown>>): Promise<void> {
    if (typeof taskToken !== "string" || taskToken.trim() === "") {
      throw new InvalidInputError("SendTaskSuccess: the task token must be a non-empty string");
    }
    if (output === null || typeof output !== "object" || Array.isArray(output)) {
      throw new InvalidInputError("SendTaskSuccess: the output must be a JSON object");
    }
    let json: string;
    try {
      json = JSON.stringify(output);
    } catch {
      throw new InvalidInputError("SendTaskSuccess: the output is not JSON-serialisable");
    }
    const size = Buffer.byteLength(json, "utf8");
    if (size > SFN_OUTPUT_MAX_BYTES) {
      throw new InvalidInputError(
        `SendTaskSuccess: the output is ${size} bytes, Step Functions accepts at most ${SFN_OUTPUT_MAX_BYTES}`,
        { context: { size, limit: SFN_OUTPUT_MAX_BYTES } },
      );
    }
    try {
      await this.client.send(new SendTaskSuccessCommand({ taskToken, output: json }));
    } catch (err) {
      throw translate(err);
    }
  }
}

function translate(err: unknown): Error {
  const facts = awsErrorFacts(err);
  // Never the service's message (it may quote the token), never the SDK error itself.
  const context = { operation: "SendTaskSuccess", ...awsErrorContext(facts) };
  const cause = safeCause(facts, "SendTaskSuccess");
  const detail = describeAwsError(facts);
  if (facts.answered && EXPIRED.has(facts.name)) {
    return new TaskTokenExpiredError(
      `The execution no longer waits on this task token (${detail}): it timed out, was stopped, or the token ` +
        "is unknown",
      { context, cause },
    );
  }
  if (facts.answered && INVALID_OUTPUT.has(facts.name)) {
    return new InvalidInputError(`Step Functions refused the task output (${detail})`, { context, cause });
  }
  if (isTransient(facts, TRANSIENT)) {
    return new TaskCallbackError(`SendTaskSuccess could not be delivered now (${detail}); retry later`, {
      context,
      cause,
    });
  }
  return new TaskCallbackRejectedError(`Step Functions refused SendTaskSuccess (${detail})`, {
    context,
    cause,
  });
}
