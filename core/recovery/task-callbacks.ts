/**
 * The `TaskCallbacks` port: how a function completes a workflow step that waits on a task token (Step Functions
 * `SendTaskSuccess`). The recovery's unlock function uses it to resume the waiting execution with non-secret facts
 * (key ids and KCVs) only. Step Functions in AWS; locally the runner's bridge (workflows/local-task-callbacks.ts).
 */
import { AmkError } from "../shared/errors.js";

export interface TaskCallbacks {
  /** Resumes the execution waiting on `taskToken` with `output` (JSON, no secret). */
  succeed(taskToken: string, output: Readonly<Record<string, unknown>>): Promise<void>;
}

/** The execution no longer waits on that token (it timed out, was stopped, or the token is unknown). */
export class TaskTokenExpiredError extends AmkError {
  readonly code = "TASK_TOKEN_EXPIRED";
}

/** The callback could not be delivered (throttling, service error); retrying may work. */
export class TaskCallbackError extends AmkError {
  readonly code = "TASK_CALLBACK";
  override readonly retryable = true;
}

/**
 * Task callbacks inside one process: the local runner's bridge for `.waitForTaskToken` tasks (workflow tests, the
 * local story). `wait` parks until `succeed` is called with the same token, or fails with `States.Timeout` after
 * `timeoutMs`, like a Task's `TimeoutSeconds` in Step Functions.
 */
export class InMemoryTaskCallbacks implements TaskCallbacks {
  private readonly waiting = new Map<
    string,
    { resolve: (output: Record<string, unknown>) => void; timer: NodeJS.Timeout }
  >();

  wait(taskToken: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(taskToken);
        reject(
          Object.assign(new Error("the task timed out waiting for its callback"), { name: "States.Timeout" }),
        );
      }, timeoutMs);
      this.waiting.set(taskToken, { resolve, timer });
    });
  }

  /** True while an execution waits on this token. */
  isWaiting(taskToken: string): boolean {
    return this.waiting.has(taskToken);
  }

  async succeed(taskToken: string, output: Readonly<Record<string, unknown>>): Promise<void> {
    const w = this.waiting.get(taskToken);
    if (!w) throw new TaskTokenExpiredError("no execution waits on that task token (timed out or finished)");
    this.waiting.delete(taskToken);
    clearTimeout(w.timer);
    w.resolve(JSON.parse(JSON.stringify(output)) as Record<string, unknown>);
  }
}

/** The process-wide instance the local runner's bridge and the local unlock function share. */
export const inProcessTaskCallbacks = new InMemoryTaskCallbacks();
