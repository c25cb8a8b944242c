/**
 * `amk local up|down|status|destroy-hsm-token`: the local engines in the state folder (cli/local/engines.ts).
 */
import type { Command } from "commander";
import { destroyHsmToken, localDown, localStatus, localUp } from "../local/engines.js";
import { homeOf, globalsOf } from "../runtime/context.js";
import { outputOf, withExamples, withExitCodes, withJson } from "../runtime/command.js";
import { ExitCode, UsageError } from "../runtime/errors.js";

export function register(program: Command): void {
  const local = program
    .command("local")
    .description(
      "start, stop and check the local engines (SoftHSM2 token, DynamoDB Local, file vault, logs)",
    );

  withExitCodes(
    withExamples(
      withJson(
        local
          .command("up")
          .description(
            "start the local engines in the state folder (idempotent): a SoftHSM2 token, DynamoDB Local in the " +
              "background with its database on disk, the file vault, the alert and bus logs",
          )
          .option(
            "--no-warm",
            "do not prepare the workflows (the first workflow command then synthesises them)",
          ),
      ),
      ["amk local up", "AMK_HOME=/tmp/amk-demo amk local up --json"],
    ),
    [0, 1, 2],
  ).action(async (opts: { json?: boolean; warm: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    const home = homeOf(globalsOf(cmd));
    const up = await localUp(home, (l) => out.line(`  ${l}`));
    let workflows: { cached: boolean } | undefined;
    if (opts.warm) {
      const { loadLocalWorkflows } = await import("../../workflows/local-app.js");
      workflows = await loadLocalWorkflows();
      out.line(`  workflows rotation, recovery, drill ${workflows.cached ? "(cached)" : "(synthesised)"}`);
    }
    const s = up.state;
    out.line(`Local engines ${up.started ? "started" : "already running"} in ${home}.`);
    out.line("Stop them with `amk local down`; the data stays for the next `amk local up`.");
    out.result({
      ok: true,
      home,
      started: up.started,
      dynamodb: { pid: s.dynamodb.running?.pid, endpoint: s.dynamodb.running?.endpoint },
      hsm: { tokenLabel: s.hsm.tokenLabel },
      eventTable: s.eventTable,
      vaultDir: s.vaultDir,
      alertLog: s.alertLog,
      workflowsCached: workflows?.cached,
    });
  });

  withExitCodes(
    withJson(
      local.command("down").description("stop the local engines (the data stays in the state folder)"),
    ),
    [0, 1],
  ).action(async (opts: { json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    const home = homeOf(globalsOf(cmd));
    const r = await localDown(home);
    out.line(r.stopped ? `DynamoDB Local (pid ${r.pid}) stopped.` : "Nothing was running.");
    out.result({ ok: true, home, stopped: r.stopped, ...(r.pid ? { pid: r.pid } : {}) });
  });

  withExitCodes(
    withJson(local.command("status").description("check that every local engine is there and answers")),
    [0, 3],
  ).action(async (opts: { json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    const home = homeOf(globalsOf(cmd));
    const s = await localStatus(home);
    out.line(`Local engines in ${home}: ${s.ok ? "running" : "NOT running"}`);
    out.table(
      ["engine", "ok", "detail"],
      [
        ["SoftHSM2", s.hsm.ok ? "yes" : "no", s.hsm.detail],
        [
          "DynamoDB Local",
          s.dynamodb.ok ? "yes" : "no",
          `${s.dynamodb.detail}${s.dynamodb.endpoint ? ` (${s.dynamodb.endpoint}, pid ${s.dynamodb.pid})` : ""}`,
        ],
        [
          "event-store table",
          s.eventTable.ok ? "yes" : "no",
          `${s.eventTable.name ?? "-"}: ${s.eventTable.detail}`,
        ],
        ["file vault", s.vault.ok ? "yes" : "no", s.vault.detail],
      ],
    );
    if (!s.ok) out.line("Start them with `amk local up`.");
    out.result(s);
    if (!s.ok) process.exitCode = ExitCode.ENGINES;
  });

  withExitCodes(
    withJson(
      local
        .command("destroy-hsm-token")
        .description(
          "simulate losing the HSM: delete the current SoftHSM2 token with every key in it and switch to an empty " +
            "replacement token (then recover with `amk recover start`)",
        )
        .option("--yes", "confirm: every master key in the token is destroyed"),
    ),
    [0, 2, 3],
  ).action(async (opts: { json?: boolean; yes?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    if (!opts.yes) {
      throw new UsageError(
        "this deletes every key in the local HSM token",
        "pass --yes to confirm (documents stay unreadable until `amk recover` restores the keys from the kit)",
      );
    }
    const home = homeOf(globalsOf(cmd));
    const r = await destroyHsmToken(home);
    out.line(`HSM token ${r.destroyed} destroyed; the engines now use the empty token ${r.replacement}.`);
    out.result({ ok: true, destroyed: r.destroyed, replacement: r.replacement });
  });
}
