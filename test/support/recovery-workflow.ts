/**
 * The recovery and drill workflows as the workflow tests run them: the CDK app synthesised offline without bundling,
 * the state machines' ASL from the stateless stack, the real handlers bound by function id, and the AwaitUnlock task
 * bridged to the in-process task callbacks (the runner calls the real awaitUnlock function, which records the token;
 * the execution then waits until the real unlock function resumes it, or fails with States.Timeout). The
 * implementation is shared with the `amk` CLI: workflows/local-app.ts.
 */
import { createApp } from "../../infra/bin/app.js";
import { synthWith } from "../../workflows/local-app.js";
import type { LocalWorkflow } from "../../workflows/local-runner.js";

export { awaitUnlockBridge, drillHandlers, recoveryHandlers } from "../../workflows/local-app.js";

export function synthWorkflows(): { recovery: LocalWorkflow; drill: LocalWorkflow; outdir: string } {
  const synth = synthWith(createApp);
  return { recovery: synth.recovery, drill: synth.drill, outdir: synth.outdir };
}
