/**
 * `amk alerts`: the local alert log (alerts the functions raised: failed drills, locked slots, recoveries). In AWS
 * the alerts go to the SNS topic (stack output AlertTopicArn): subscribe to it instead.
 */
import type { Command } from "commander";
import { readAlertLog } from "../../core/adapters/file-alerts/file-alerts.js";
import {
  openRuntime,
  outputOf,
  positiveInt,
  withExamples,
  withExitCodes,
  withJson,
} from "../runtime/command.js";
import { checkWorkspaceId } from "../runtime/context.js";
import { UsageError } from "../runtime/errors.js";

export function register(program: Command): void {
  withExitCodes(
    withExamples(
      withJson(
        program
          .command("alerts")
          .description("show the local alert log, newest first (in AWS: subscribe to the alert topic)")
          .option("--workspace <id>", "only this workspace's alerts")
          .option("--code <code>", "only alerts with this code (e.g. DRILL_FAILED)")
          .option("--limit <n>", "how many", positiveInt("--limit", 10_000), 20),
      ),
      ["amk alerts", "amk alerts --workspace acme --code DRILL_FAILED --json"],
    ),
    [0, 2, 3],
  ).action(
    async (opts: { workspace?: string; code?: string; limit: number; json?: boolean }, cmd: Command) => {
      const out = outputOf(opts);
      if (opts.workspace) checkWorkspaceId(opts.workspace);
      const rt = await openRuntime(cmd);
      if (!rt.local) {
        throw new UsageError(
          "AWS mode has no alert log: alerts go to the SNS topic",
          "subscribe to the stateful stack's AlertTopicArn (email, chat, pager)",
        );
      }
      const all = readAlertLog(rt.local.alertLog)
        .filter((a) => !opts.workspace || a.workspaceId === opts.workspace)
        .filter((a) => !opts.code || a.code === opts.code);
      const shown = all.slice(-opts.limit).reverse();
      if (shown.length === 0) out.line("No alerts.");
      for (const a of shown) {
        out.line(`${a.at}  ${a.severity.toUpperCase().padEnd(8)} ${a.code}  ${a.workspaceId}`);
        out.line(`    ${a.message}`);
        out.line(`    what to do: ${a.action}`);
      }
      out.result({ ok: true, total: all.length, alerts: shown });
    },
  );
}
