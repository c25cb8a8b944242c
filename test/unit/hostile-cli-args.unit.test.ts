/**
 * Hostile command lines for `amk` (cli/), property-based: the argument parsers (`positiveInt`, `checkWorkspaceId`,
 * `parseArtifacts`, the backup id of `amk backup`) and the whole command tree, parsed by commander with every action
 * replaced by a recorder (nothing runs, nothing is opened). A refused argument must be commander's typed error
 * (`CommanderError`, exit code 2 in cli/amk.ts) or the CLI's `UsageError`; an accepted one must be what it claims.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import fc from "fast-check";
import { buildProgram } from "../../cli/amk.js";
import { parseArtifacts } from "../../cli/commands/keys.js";
import { positiveInt } from "../../cli/runtime/command.js";
import { checkWorkspaceId } from "../../cli/runtime/context.js";
import { CliError, describeError, UsageError } from "../../cli/runtime/errors.js";
import { assertTyped, holds, holdsAsync, outcomeOf, probe, thrown } from "./hostile-harness.js";

const ARTIFACTS = ["file", "metadata", "thumb", "preview", "archive"];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Text an operator (or a script gone wrong) could type: digits, signs, spaces, unicode digits, long runs. */
const argText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.stringMatching(/^[+-]?[0-9]{0,25}(\.[0-9]{0,3})?(e[+-]?[0-9]{1,3})?$/),
  fc.constantFrom(
    "",
    " 1",
    "1 ",
    "0x10",
    "1_000",
    "١٢٣",
    "１２",
    "Infinity",
    "NaN",
    "9007199254740993",
    "00000000001",
  ),
  fc.bigInt({ min: 0n, max: 10n ** 30n }).map(String),
);

describe("CLI argument parsers", () => {
  it("positiveInt accepts exactly the decimal digits of an integer from 1 to max; anything else is InvalidArgumentError", async (t) => {
    const p = probe(t);
    holds(
      fc.property(
        argText,
        fc.oneof(fc.integer({ min: 1, max: 100_000 }), fc.constant(Number.MAX_SAFE_INTEGER)),
        (s, max) => {
          const parse = positiveInt("--n", max);
          const err = p.time(() => thrown(() => parse(s)));
          p.count(outcomeOf(err));
          const ok = /^[0-9]+$/.test(s) && BigInt(s) >= 1n && BigInt(s) <= BigInt(max);
          if (err !== undefined) {
            assertTyped(err, [InvalidArgumentError]);
            assert.equal(ok, false, `refused ${JSON.stringify(s)} (max ${max})`);
            assert.match((err as Error).message, /^--n must be an integer from 1 to \d+$/);
            return;
          }
          assert.equal(ok, true, `accepted ${JSON.stringify(s)} (max ${max})`);
          assert.equal(BigInt(parse(s)), BigInt(s), "the number is the text's, not a rounded one");
        },
      ),
      p.params,
    );
    p.report();
  });

  it("checkWorkspaceId accepts only 1-64 letters, digits, - and _ (not first); else UsageError (exit 2) quoting the id", async (t) => {
    const p = probe(t);
    const ws = fc.oneof(
      argText,
      fc.stringMatching(/^[A-Za-z0-9_-]{0,70}$/),
      fc.constantFrom("a".repeat(64), "a".repeat(65), "../acme", "acme\n", "ACME"),
    );
    holds(
      fc.property(ws, (s) => {
        const err = p.time(() => thrown(() => checkWorkspaceId(s)));
        p.count(outcomeOf(err));
        const ok = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(s);
        if (err === undefined) return assert.ok(ok, `accepted ${JSON.stringify(s)}`);
        assertTyped(err, [UsageError]);
        assert.equal(ok, false);
        assert.equal(describeError(err).exitCode, 2);
        assert.ok((err as Error).message.includes(JSON.stringify(s)), "the message quotes the id (escaped)");
      }),
      p.params,
    );
    p.report();
  });

  it("parseArtifacts gives a non-empty list of distinct known artifacts, or UsageError", async (t) => {
    const p = probe(t);
    const list = fc.oneof(
      argText,
      fc
        .array(
          fc.oneof(
            fc.constantFrom(...ARTIFACTS, " file", "thumb ", "", "FILE", "files"),
            fc.string({ maxLength: 6 }),
          ),
          { maxLength: 8 },
        )
        .map((xs) => xs.join(",")),
    );
    holds(
      fc.property(list, (s) => {
        const err = p.time(() => thrown(() => parseArtifacts(s)));
        p.count(outcomeOf(err));
        const items = s
          .split(",")
          .map((x) => x.trim())
          .filter(Boolean);
        const ok = items.length > 0 && items.every((x) => ARTIFACTS.includes(x));
        if (err !== undefined) {
          assertTyped(err, [UsageError]);
          return assert.equal(ok, false, `refused ${JSON.stringify(s)}`);
        }
        assert.equal(ok, true, `accepted ${JSON.stringify(s)}`);
        const got = parseArtifacts(s);
        assert.deepEqual(got, [...new Set(items)]);
        assert.ok(got.length >= 1 && got.length <= 5);
      }),
      p.params,
    );
    p.report();
  });
});

// ---- the whole command tree, actions replaced -------------------------------------------------------------------

const program = buildProgram();
let recorded: unknown[] | undefined;
const leaves: { path: string[]; cmd: Command }[] = [];
(function prepare(c: Command, path: string[]) {
  c.exitOverride();
  c.configureOutput({ writeOut: () => undefined, writeErr: () => undefined, outputError: () => undefined });
  if (c.commands.length === 0 && path.length > 0) {
    c.action((...args: unknown[]) => {
      recorded = args.slice(0, -1);
    });
    leaves.push({ path, cmd: c });
  }
  for (const s of c.commands) prepare(s, [...path, s.name()]);
})(program, []);

/** Parses argv as `amk` would (from the user's arguments); "ok" when the (recording) action ran. */
async function parse(argv: string[]): Promise<{ outcome: string; err?: unknown; args?: unknown[] }> {
  recorded = undefined;
  try {
    await program.parseAsync(argv, { from: "user" });
    return { outcome: recorded === undefined ? "no action" : "ok", args: recorded };
  } catch (err) {
    return { outcome: err instanceof CommanderError ? err.code : outcomeOf(err), err };
  }
}

describe("CLI command tree", () => {
  it("amk backup verify|export --base: a backup id is a lower-case UUID, else commander.invalidArgument", async (t) => {
    const p = probe(t);
    const id = fc.oneof(
      argText,
      fc.uuid().map((u) => u),
      fc.uuid().map((u) => u.toUpperCase()),
      fc.uuid().map((u) => ` ${u}`),
    );
    await holdsAsync(
      fc.asyncProperty(id, fc.boolean(), async (s, viaBase) => {
        fc.pre(!s.startsWith("-")); // an option, not a value: commander's own business
        const argv = viaBase ? ["backup", "export", "acme", "--base", s] : ["backup", "verify", s];
        const r = await p.timeAsync(() => parse(argv));
        p.count(r.outcome);
        if (UUID.test(s)) {
          assert.equal(r.outcome, "ok", `${argv.join(" ")}: ${String((r.err as Error)?.message)}`);
          assert.equal(viaBase ? (r.args![1] as { base: string }).base : r.args![0], s);
        } else {
          assert.equal(r.outcome, "commander.invalidArgument", `${argv.join(" ")} accepted`);
          assert.match((r.err as Error).message, /a backup id is a lower-case UUID/);
        }
      }),
      p.params,
    );
    p.report();
  });

  it("any command line is parsed or refused with a typed error (CommanderError or UsageError), never anything else", async (t) => {
    const p = probe(t);
    const flags = [
      ...new Set(leaves.flatMap(({ cmd }) => cmd.options.map((o) => o.long ?? o.short ?? ""))),
    ].filter(Boolean);
    const token = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.constantFrom(...flags, "--json", "--help", "-V", "--", "-", "--home", "--endpoint"),
      },
      { weight: 3, arbitrary: argText },
      { weight: 1, arbitrary: fc.constantFrom(...flags).chain((f) => argText.map((v) => `${f}=${v}`)) },
    );
    const argv = fc
      .tuple(fc.constantFrom(...leaves.map((l) => l.path)), fc.array(token, { maxLength: 8 }))
      .map(([path, rest]) => [...path, ...rest]);
    await holdsAsync(
      fc.asyncProperty(argv, async (a) => {
        const r = await p.timeAsync(() => parse(a));
        p.count(
          r.outcome.startsWith("commander.") ? r.outcome : r.outcome === "ok" ? "ok" : `other ${r.outcome}`,
        );
        if (r.err !== undefined) {
          assertTyped(r.err, [CommanderError, CliError]);
          assert.ok(describeError(r.err).exitCode !== 0 || r.err instanceof CommanderError);
        }
      }),
      p.params,
    );
    p.report();
  });

  it("every count, size and limit option (positiveInt) refuses 0, negatives, fractions, huge and non-ASCII numbers", async () => {
    // The options parsed with positiveInt (cli/commands/*.ts); a file descriptor (--*-fd) may be 0 and has its own parser.
    const counts = [
      "--count",
      "--concurrency",
      "--canaries",
      "--sample-size",
      "--limit",
      "--kit-version",
      "--unlock-timeout",
      "--ttl",
      "--sample",
    ];
    const numeric = leaves.flatMap(({ path, cmd }) =>
      cmd.options.filter((o) => counts.includes(o.long ?? "")).map((o) => ({ path, flag: o.long! })),
    );
    assert.ok(numeric.length >= 9, `found ${numeric.length} count options`);
    for (const { path, flag } of numeric) {
      for (const bad of ["0", "-1", "1.5", "1e3", "99999999999999999999", "١", " 1", "0x1"]) {
        const positional = leaves
          .find((l) => l.path.join(" ") === path.join(" "))!
          .cmd.registeredArguments.map(() => "acme");
        const r = await parse([...path, ...positional, flag, bad]);
        assert.equal(
          r.outcome,
          "commander.invalidArgument",
          `${path.join(" ")} ${flag} ${bad}: ${r.outcome}`,
        );
      }
    }
  });
});
