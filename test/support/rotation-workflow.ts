/**
 * The rotation workflow as the workflow tests run it: the deployed CDK app synthesised offline without bundling,
 * its rotation state machine's ASL, and the real handlers of functions/rotation bound by function id. The
 * implementation is shared with the `amk` CLI: workflows/local-app.ts.
 */
import { createApp } from "../../infra/bin/app.js";
import { synthWith } from "../../workflows/local-app.js";
import type { LocalWorkflow } from "../../workflows/local-runner.js";

export { rotationHandlers } from "../../workflows/local-app.js";

export function synthRotationWorkflow(): { wf: LocalWorkflow; outdir: string } {
  const synth = synthWith(createApp);
  return { wf: synth.rotation, outdir: synth.outdir };
}
