/**
 * `amk rotate start|status`: master-key rotation through the rotation state machine (locally: its synthesised ASL
 * on the local runner with the real handlers; in AWS mode: StartExecution), with the re-wrap's progress.
 */
import type { Command } from "commander";
import { openRuntime, outputOf, withExamples, withExitCodes, withJson } from "../runtime/command.js";
import { CheckFailedError } from "../runtime/errors.js";
import { documentsOnLiveKeys, documentsPerLiveKey, runWorkflow, watchRewrap } from "../runtime/workflows.js";

const STEP: Record<string, string> = {
  RotationStart: "new master key version active, the old ones decrypt-only, kit re-issued",
  RotationCensus: "census of the wrap records",
  RotationComplete: "old versions retired, kit re-issued",
};

export function register(program: Command): void {
  const rotate = program.command("rotate").description("rotate a workspace's master key");

  withExitCodes(
    withExamples(
      withJson(
        rotate
          .command("start")
          .description(
            "run the rotation workflow: a new master key version becomes active once a kit carries it, every wrap record is " +
              "re-wrapped inside the HSM (progress: done/total/rate/ETA), a census proves none is left on the " +
              "old versions, they are retired and the kit re-issued",
          )
          .argument("<workspace>", "workspace id")
          .option("--reason <text>", "recorded with the rotation", "rotation started with amk")
          .option(
            "--state-machine-arn <arn>",
            "AWS mode: the rotation state machine (default AMK_ROTATION_STATE_MACHINE_ARN)",
          ),
      ),
      ["amk rotate start acme", "amk rotate start acme --reason 'yearly rotation' --json"],
    ),
    [0, 1, 2, 3, 5, 6],
  ).action(
    async (
      workspaceId: string,
      opts: { reason: string; stateMachineArn?: string; json?: boolean },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      const rt = await openRuntime(cmd);
      const before = await rt.requireWorkspace(workspaceId);
      const started = Date.now();
      out.note(`Rotating the master key of ${workspaceId} (active: ${before.activeKeyId})`);
      const watch = watchRewrap(rt.events(), workspaceId, {
        total: await documentsOnLiveKeys(rt.events(), workspaceId),
      });
      const r = await runWorkflow(rt, "rotation", {
        input: { workspaceId, reason: opts.reason },
        ...(opts.stateMachineArn ? { stateMachineArn: opts.stateMachineArn } : {}),
        onTask: (e) => {
          const what = STEP[e.functionId];
          if (
            e.phase === "end" &&
            e.functionId === "RotationCensus" &&
            (e.output as { remaining?: number })?.remaining === 0
          ) {
            void watch
              .stop(true)
              .then(() => out.note(`  ${e.functionId}: ${what}: none left on the old versions`));
            return;
          }
          if (e.phase === "end" && what) out.note(`  ${e.functionId}: ${what}`);
          if (e.phase === "error")
            out.note(`  ${e.functionId}: ${e.error} (the workflow retries or records the failure)`);
        },
      }).catch(async (err: unknown) => {
        await watch.stop(false);
        throw err;
      });
      const rewrap = await watch.stop(r.status === "SUCCEEDED");
      const after = await rt.requireWorkspace(workspaceId);
      const seconds = (Date.now() - started) / 1000;
      if (r.status !== "SUCCEEDED") {
        out.result({ ok: false, workspaceId, status: r.status, error: r.error, rotation: after.rotation });
        throw new CheckFailedError(
          `the rotation ${r.status.toLowerCase()}: ${r.error?.error ?? ""}; the old keys are untouched (see \`amk rotate status ${workspaceId}\`, \`amk alerts\`)`,
          "ROTATION_FAILED",
          "fix the cause and run `amk rotate start` again: it resumes where it stopped",
        );
      }
      const output = (r.output ?? {}) as { kitVersion?: number; retired?: string[] };
      out.line(`Master key of ${workspaceId} rotated in ${seconds.toFixed(1)} s.`);
      out.fact("active key", after.activeKeyId);
      out.fact("retired", (output.retired ?? []).join(", ") || "-");
      out.fact("documents re-wrapped", rewrap?.documents ?? 0);
      if (rewrap) out.fact("re-wrap rate", `${rewrap.rate.toFixed(1)} documents/s`);
      out.fact(
        "recovery kit",
        output.kitVersion ? `v${output.kitVersion} (acknowledge it: amk kit ack)` : undefined,
      );
      out.result({
        ok: true,
        workspaceId,
        executionName: r.executionName,
        activeKeyId: after.activeKeyId,
        retired: output.retired ?? [],
        kitVersion: output.kitVersion,
        documentsRewrapped: rewrap?.documents ?? 0,
        seconds: Number(seconds.toFixed(2)),
      });
    },
  );

  withExitCodes(
    withJson(
      rotate
        .command("status")
        .description(
          "the workspace's master key versions, the last rotation, and how many documents each live version wraps",
        )
        .argument("<workspace>", "workspace id"),
    ),
    [0, 2, 3, 5],
  ).action(async (workspaceId: string, opts: { json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    const rt = await openRuntime(cmd);
    const ws = await rt.requireWorkspace(workspaceId);
    const documents = await documentsPerLiveKey(rt.events(), ws);
    out.line(`Master keys of ${workspaceId}:`);
    out.table(
      ["key", "state", "KCV", "documents"],
      ws.keys.map((k) => [k.keyId, k.state, k.kcv, documents[k.keyId]]),
    );
    const r = ws.rotation;
    out.fact(
      "last rotation",
      r ? `${r.status}: ${r.fromKeyIds.join(", ") || "-"} -> ${r.toKeyId} (${r.rotationId})` : "never",
    );
    if (r?.status === "running") {
      const left = r.fromKeyIds.reduce((n, k) => n + (documents[k] ?? 0), 0);
      out.fact("documents left", left);
    }
    out.result({
      ok: true,
      workspaceId,
      activeKeyId: ws.activeKeyId,
      keys: ws.keys.map((k) => ({
        keyId: k.keyId,
        state: k.state,
        kcv: k.kcv,
        documents: documents[k.keyId],
      })),
      rotation: r,
    });
  });
}
