/**
 * `amk drill run|history`: the drill through the drill state machine (seven checks recorded as DrillCompleted; a
 * failure alerts), and the drills recorded so far.
 */
import type { Command } from "commander";
const drillHistory: typeof import("../../core/drills/drill-service.js").drillHistory = async (...args) =>
  (await import("../../core/drills/drill-service.js")).drillHistory(...args);
import type { DrillCompletedData } from "../../core/eventstore/catalogue.js";
import {
  openRuntime,
  outputOf,
  positiveInt,
  withExamples,
  withExitCodes,
  withJson,
} from "../runtime/command.js";
import { CheckFailedError } from "../runtime/errors.js";
import type { Output } from "../runtime/output.js";
import { runWorkflow } from "../runtime/workflows.js";

function printChecks(out: Output, d: DrillCompletedData): void {
  out.table(
    ["check", "status", "detail"],
    d.Checks.map((c) => [c.Name, c.Status, c.Detail.length > 90 ? `${c.Detail.slice(0, 89)}…` : c.Detail]),
  );
  for (const c of d.Checks.filter((x) => x.Status === "failed" && x.Action)) {
    out.line(`  what to do (${c.Name}): ${c.Action}`);
  }
}

export function register(program: Command): void {
  const drill = program
    .command("drill")
    .description("prove that the kit and the keys really recover the data");

  withExitCodes(
    withExamples(
      withJson(
        drill
          .command("run")
          .description(
            "run the drill workflow on demand: kit in the vault and intact, it covers every key in use, it opens " +
              "inside the HSM through the drill slot with matching KCVs, canaries and a sample of documents decrypt, " +
              "HSM backups fresh, every administrator acknowledged the kit; recorded, and alerted when it fails",
          )
          .argument("<workspace>", "workspace id")
          .option(
            "--sample-size <n>",
            "documents the sample check decrypts (default 20)",
            positiveInt("--sample-size", 1000),
          )
          .option(
            "--state-machine-arn <arn>",
            "AWS mode: the drill state machine (default AMK_DRILL_STATE_MACHINE_ARN)",
          ),
      ),
      ["amk drill run acme", "amk drill run acme --sample-size 100 --json"],
    ),
    [0, 1, 2, 3, 5],
  ).action(
    async (
      workspaceId: string,
      opts: { sampleSize?: number; stateMachineArn?: string; json?: boolean },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      const rt = await openRuntime(cmd);
      await rt.requireWorkspace(workspaceId);
      out.note(`Drilling ${workspaceId}...`);
      const startedAt = Date.now();
      const r = await runWorkflow(rt, "drill", {
        input: {
          workspaceId,
          trigger: "on-demand",
          ...(opts.sampleSize ? { sampleSize: opts.sampleSize } : {}),
        },
        ...(opts.stateMachineArn ? { stateMachineArn: opts.stateMachineArn } : {}),
      });
      // A failed drill ends the execution in its Fail state (no output): its DrillCompleted says what failed.
      const answer = (r.output ?? {}) as { drillId?: string };
      const recent = await drillHistory(rt.events(), workspaceId, 20);
      const recorded = answer.drillId
        ? recent.find((e) => e.data.DrillId === answer.drillId)
        : recent.find(
            (e) => Date.parse(e.data.StartedAt) >= startedAt - 1000 && e.data.Trigger === "on-demand",
          );
      if (!recorded) {
        out.result({ ok: false, workspaceId, status: r.status, error: r.error });
        throw new CheckFailedError(
          `the drill did not complete (${r.status}${r.error ? `: ${r.error.error}` : ""}); see \`amk alerts\``,
          "DRILL_NOT_RECORDED",
        );
      }
      const d = recorded.data;
      out.line(`Drill ${d.DrillId} of ${workspaceId}: ${d.Ok ? "PASSED" : "FAILED"} in ${d.DurationMs} ms.`);
      printChecks(out, d);
      out.result({
        ok: d.Ok,
        workspaceId,
        drillId: d.DrillId,
        durationMs: d.DurationMs,
        checks: d.Checks,
      });
      if (!d.Ok) {
        throw new CheckFailedError(
          `drill failed: ${d.Checks.filter((c) => c.Status === "failed")
            .map((c) => c.Name)
            .join(", ")}`,
          "DRILL_FAILED",
          "see what to do above, docs/runbooks/drills.md, and `amk alerts`",
        );
      }
    },
  );

  withExitCodes(
    withJson(
      drill
        .command("history")
        .description("the workspace's recorded drills, newest first")
        .argument("<workspace>", "workspace id")
        .option("--limit <n>", "how many", positiveInt("--limit", 1000), 10)
        .option("--checks", "show every check of each drill"),
    ),
    [0, 2, 3, 5],
  ).action(
    async (workspaceId: string, opts: { limit: number; checks?: boolean; json?: boolean }, cmd: Command) => {
      const out = outputOf(opts);
      const rt = await openRuntime(cmd);
      await rt.requireWorkspace(workspaceId);
      const history = await drillHistory(rt.events(), workspaceId, opts.limit);
      if (history.length === 0)
        out.line(`No drill of ${workspaceId} yet: run one with \`amk drill run ${workspaceId}\`.`);
      else {
        out.table(
          ["when", "drill", "trigger", "result", "failed checks"],
          history.map((e) => [
            e.data.StartedAt,
            e.data.DrillId,
            e.data.Trigger,
            e.data.Ok ? "passed" : "FAILED",
            e.data.Checks.filter((c) => c.Status === "failed")
              .map((c) => c.Name)
              .join(", ") || "-",
          ]),
        );
        if (opts.checks) for (const e of history) printChecks(out, e.data);
      }
      out.result({
        ok: true,
        workspaceId,
        drills: history.map((e) => ({
          drillId: e.data.DrillId,
          ok: e.data.Ok,
          trigger: e.data.Trigger,
          startedAt: e.data.StartedAt,
          durationMs: e.data.DurationMs,
          checks: e.data.Checks,
        })),
      });
    },
  );
}
