/** Errors of the Step Functions task-callback adapter beyond the port's (core/recovery/task-callbacks.ts). */
import { AmkError } from "../../shared/errors.js";

/**
 * Step Functions refused the callback for a reason retrying won't fix: access denied (`states:SendTaskSuccess`),
 * invalid credentials, a disabled or inaccessible KMS key. Not a `TaskCallbackError` (that one is always
 * retryable). Like every error of this adapter, it never contains the task token.
 */
export class TaskCallbackRejectedError extends AmkError {
  readonly code = "TASK_CALLBACK_REJECTED";
}

/** The status of an execution could not be read now (throttling, a service failure, the network): retry later. */
export class ExecutionStatusUnavailableError extends AmkError {
  readonly code = "EXECUTION_STATUS_UNAVAILABLE";
  override readonly retryable = true;
}

/** Step Functions refused to describe the execution (access denied, an invalid ARN): retrying won't help. */
export class ExecutionStatusRejectedError extends AmkError {
  readonly code = "EXECUTION_STATUS_REJECTED";
}
