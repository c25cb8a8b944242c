/**
 * What every command module shares: the `--json` option, the exit-code lines of its help, the runtime it opens
 * (closed by cli/amk.ts when the command ends, whatever happened), and the output mode its errors are printed in.
 */
import { InvalidArgumentError, type Command } from "commander";
import { EXIT_CODE_TABLE } from "./errors.js";
import { globalsOf, Runtime, type Mode } from "./context.js";
import { Output } from "./output.js";

/** The running command's session (one command per process). */
export const session: { json: boolean; mode: Mode; runtimes: Runtime[] } = {
  json: false,
  mode: "local",
  runtimes: [],
};

export function withJson(cmd: Command): Command {
  return cmd.option("--json", "print the result as one JSON document on stdout");
}

/** Appends the exit codes this command can end with to its `--help`. */
export function withExitCodes(cmd: Command, codes: readonly number[]): Command {
  const lines = EXIT_CODE_TABLE.filter(([c]) => codes.includes(c)).map(
    ([c, text]) => `  ${String(c).padStart(3)}  ${text}`,
  );
  return cmd.addHelpText("after", `\nExit codes:\n${lines.join("\n")}`);
}

/** Adds example lines to a command's `--help`. */
export function withExamples(cmd: Command, examples: readonly string[]): Command {
  return cmd.addHelpText("after", `\nExamples:\n${examples.map((e) => `  $ ${e}`).join("\n")}`);
}

export function outputOf(opts: { json?: boolean }): Output {
  session.json = Boolean(opts.json);
  return new Output(session.json);
}

/** Opens the command's runtime (local engines checked, or AWS) and registers it for closing. */
export async function openRuntime(cmd: Command): Promise<Runtime> {
  const rt = await Runtime.open(globalsOf(cmd));
  session.mode = rt.mode;
  session.runtimes.push(rt);
  return rt;
}

/** Parses a positive integer option. */
export function positiveInt(name: string, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) {
      throw new InvalidArgumentError(`${name} must be an integer from 1 to ${max}`);
    }
    return Number(value);
  };
}
