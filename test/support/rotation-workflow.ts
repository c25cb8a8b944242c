/**
 * The rotation workflow as the workflow tests run it: the deployed CDK app synthesised offline without bundling,
 * its rotation state machine's ASL, and the real handlers of functions/rotation bound by function id.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "../../infra/bin/app.js";
import * as rotation from "../../functions/rotation/handlers.js";
import { aslFromTemplate } from "../../workflows/local-runner.js";

export function synthRotationWorkflow(): { wf: ReturnType<typeof aslFromTemplate>; outdir: string } {
  const outdir = mkdtempSync(join(tmpdir(), "amk-rotation-wf-"));
  const cdkJson = JSON.parse(readFileSync(join(process.cwd(), "cdk.json"), "utf8")) as {
    context?: Record<string, unknown>;
  };
  const amk = createApp({ context: { ...cdkJson.context, "aws:cdk:bundling-stacks": [] }, outdir });
  amk.app.synth();
  return { wf: aslFromTemplate(amk.stateless, "RotationWorkflow/StateMachine"), outdir };
}

/** Handlers by function id; the shard task gets a Lambda-like remaining time (its budget comes from the env). */
export const rotationHandlers = {
  RotationStart: rotation.startHandler,
  RotationPlan: rotation.planHandler,
  RotationRewrapShard: (e: unknown) =>
    rotation.rewrapShardHandler(e, { getRemainingTimeInMillis: () => 60_000 }),
  RotationCensus: rotation.censusHandler,
  RotationComplete: rotation.completeHandler,
  RotationFailure: rotation.failureHandler,
};
