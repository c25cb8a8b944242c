/**
 * The recovery and drill workflows as the workflow tests run them: the CDK app synthesised offline without bundling,
 * the state machines' ASL from the stateless stack, the real handlers bound by function id, and the AwaitUnlock task
 * bridged to the in-process task callbacks (the runner calls the real awaitUnlock function, which records the token;
 * the execution then waits until the real unlock function resumes it, or fails with States.Timeout).
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "../../infra/bin/app.js";
import * as recovery from "../../functions/recovery/handlers.js";
import { inProcessTaskCallbacks } from "../../core/recovery/task-callbacks.js";
import { aslFromTemplate, TaskFailure, type TaskTokenHandler } from "../../workflows/local-runner.js";
import { rotationHandlers } from "./rotation-workflow.js";

export function synthWorkflows(): {
  recovery: ReturnType<typeof aslFromTemplate>;
  drill: ReturnType<typeof aslFromTemplate>;
  outdir: string;
} {
  const outdir = mkdtempSync(join(tmpdir(), "amk-recovery-wf-"));
  const cdkJson = JSON.parse(readFileSync(join(process.cwd(), "cdk.json"), "utf8")) as {
    context?: Record<string, unknown>;
  };
  const amk = createApp({ context: { ...cdkJson.context, "aws:cdk:bundling-stacks": [] }, outdir });
  amk.app.synth();
  return {
    recovery: aslFromTemplate(amk.stateless, "RecoveryWorkflow/StateMachine"),
    drill: aslFromTemplate(amk.stateless, "DrillWorkflow/StateMachine"),
    outdir,
  };
}

export const recoveryHandlers = {
  ...rotationHandlers,
  RecoveryStart: recovery.startHandler,
  RecoveryAwaitUnlock: recovery.awaitUnlockHandler,
  RecoveryRotate: recovery.rotateHandler,
  RecoveryVerify: recovery.verifyHandler,
  RecoveryInvalidateTokens: recovery.invalidateTokensHandler,
  RecoveryComplete: recovery.completeHandler,
  RecoveryFailure: recovery.failureHandler,
};

/** The AwaitUnlock bridge: what Step Functions does with `.waitForTaskToken`, in process. */
export function awaitUnlockBridge(timeoutMs: number): Record<string, TaskTokenHandler> {
  return {
    // The runner has already called the real awaitUnlock function with the payload (it records the token).
    AwaitUnlock: async ({ token }) => {
      try {
        return await inProcessTaskCallbacks.wait(token, timeoutMs);
      } catch (err) {
        throw new TaskFailure((err as Error).name, (err as Error).message);
      }
    },
  };
}
