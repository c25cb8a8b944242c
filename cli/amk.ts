/**
 * `amk`: the administrator's and developer's command line of ArquivoMate Keys (docs/cli.md).
 *
 * One module per command group in cli/commands/ registers its commands; adding a group (e.g. `amk backup`) is one
 * module and one line in GROUPS. Every command prints facts on stdout (or one JSON document with --json), progress
 * and prompts on stderr, and ends with an exit code from cli/runtime/errors.ts. It never prints key material, a
 * passphrase, a TOTP seed outside the enrollment or a code.
 */
import "./runtime/quiet.js"; // first: before any function module builds its logger

import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { register as alerts } from "./commands/alerts.js";
import { register as backup } from "./commands/backup.js";
import { register as drill } from "./commands/drill.js";
import { register as ingest } from "./commands/ingest.js";
import { register as keys } from "./commands/keys.js";
import { register as kit } from "./commands/kit.js";
import { register as local } from "./commands/local.js";
import { register as migrate } from "./commands/migrate.js";
import { register as recover } from "./commands/recover.js";
import { register as rotate } from "./commands/rotate.js";
import { register as token } from "./commands/token.js";
import { register as workspace } from "./commands/workspace.js";
import { session } from "./runtime/command.js";
import { describeError, EXIT_CODE_TABLE, ExitCode } from "./runtime/errors.js";
import { emitted } from "./runtime/output.js";

const VERSION = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** The command groups, in the order `amk --help` lists them. */
const GROUPS: readonly ((program: Command) => void)[] = [
  local,
  workspace,
  keys,
  ingest,
  kit,
  rotate,
  recover,
  drill,
  alerts,
  token,
  backup,
  migrate,
];

export function buildProgram(): Command {
  const program = new Command("amk");
  program
    .description(
      "ArquivoMate Keys: master keys in the HSM, data keys, recovery kits, rotation, recovery and drills.\n" +
        "Runs on the local engines of `amk local up` unless --endpoint/--profile point it at LocalStack or AWS.",
    )
    .version(VERSION, "-V, --version")
    .option(
      "--home <dir>",
      "state folder of the local engines (default: AMK_HOME, else .amk/ in the project)",
    )
    .option("--endpoint <url>", "AWS mode: endpoint of every AWS service (LocalStack); also AWS_ENDPOINT_URL")
    .option("--profile <name>", "AWS mode: the AWS profile to use")
    .option("--region <region>", "AWS mode: the region (default: the profile's)")
    .option("--table <name>", "AWS mode: the event-store table (default: AMK_EVENT_TABLE)")
    .showHelpAfterError("(run with --help for usage)")
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .exitOverride();
  for (const group of GROUPS) group(program);
  program.addHelpText(
    "after",
    [
      "",
      "Exit codes:",
      ...EXIT_CODE_TABLE.map(([c, text]) => `  ${String(c).padStart(3)}  ${text}`),
      "",
      "Secrets (passphrases, codes, tokens) are never arguments: a prompt without echo asks for them, or a flag",
      "names a file descriptor or environment variable for automation (--passphrase-fd 3, --code-env NAME).",
      "Start here: `amk local up`, then `amk workspace provision <id>`. Full reference: docs/cli.md.",
    ].join("\n"),
  );
  return program;
}

/** Makes every subcommand throw instead of exiting (commander copies the setting when subcommands are created). */
function exitOverrideAll(cmd: Command): void {
  cmd.exitOverride();
  for (const c of cmd.commands) exitOverrideAll(c);
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  exitOverrideAll(program);
  let code: number;
  try {
    await program.parseAsync([...argv], { from: "user" });
    code = typeof process.exitCode === "number" ? process.exitCode : ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end with 0; every usage error (commander printed it) with 2.
      code = err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
      session.json ||= argv.includes("--json");
      if (session.json && code !== ExitCode.OK) {
        process.stdout.write(
          `${JSON.stringify({ ok: false, error: { code: "USAGE", message: err.message, exitCode: code } }, null, 2)}\n`,
        );
      }
    } else {
      const d = describeError(err, session.mode);
      code = d.exitCode;
      process.stderr.write(`amk: ${d.message}\n${d.hint ? `  hint: ${d.hint}\n` : ""}`);
      if (process.env.AMK_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      if (session.json && !emitted.result) {
        process.stdout.write(
          `${JSON.stringify(
            {
              ok: false,
              error: { code: d.code, name: d.name, message: d.message, exitCode: d.exitCode, hint: d.hint },
            },
            null,
            2,
          )}\n`,
        );
      }
    }
  } finally {
    for (const rt of session.runtimes) await rt.close().catch(() => undefined);
  }
  return code;
}

// Run when executed (cli/bin/amk.js, `tsx cli/amk.ts`), not when imported.
const invoked = process.argv[1] ?? "";
if (/[\\/]amk(\.ts|\.js)?$/.test(invoked) || process.env.AMK_CLI_MAIN === "1") {
  // `amk ... | head`: a reader that stops early is not an error.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
  const code = await main(process.argv.slice(2));
  process.exitCode = code;
  // Open sockets (SDK keep-alive) must not keep a finished command alive.
  setTimeout(() => process.exit(code), 100).unref();
}
