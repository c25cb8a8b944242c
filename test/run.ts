/**
 * Test runner with tiers. `tsx test/run.ts [all|static|unit|integration|workflow|e2e|infra ...]`
 *
 *  static       type check (tsc) and lint (eslint + prettier --check)
 *  unit         *.unit.test.ts         pure logic, no engine
 *  integration  *.int.test.ts          adapters against the real local engines (SoftHSM2, DynamoDB Local, pkcs11-tool)
 *  workflow     *.workflow.test.ts     synthesised ASL executed with the real handlers
 *  e2e          *.e2e.test.ts          the local story, end to end
 *  infra        *.infra.test.ts        CDK assertions and cdk-nag
 *
 * Engines that tests share (DynamoDB Local) are started once here and stopped afterwards; the endpoint reaches the
 * tests as AMK_DYNAMODB_ENDPOINT unless AWS_ENDPOINT_URL points the suite at LocalStack. Every test file makes its
 * own SoftHSM2 token. All selected tiers run in one `node --test` invocation, so there is one summary.
 */
import { spawn, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { startDynamoDbLocal, type RunningDynamoDbLocal } from "../cli/local/dynamodb-local.js";

const root = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const TIERS = {
  unit: ".unit.test.ts",
  integration: ".int.test.ts",
  workflow: ".workflow.test.ts",
  e2e: ".e2e.test.ts",
  infra: ".infra.test.ts",
} as const;
type Tier = keyof typeof TIERS;
const NEEDS_DYNAMODB: Tier[] = ["integration", "workflow", "e2e"];

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name === "node_modules" || e.name.startsWith(".")) return [];
    const p = join(dir, e.name);
    return e.isDirectory() ? listFiles(p) : [p];
  });
}

function runStatic(): boolean {
  const bin = (n: string): string => join(root, "node_modules", ".bin", n);
  const steps: [string, string[]][] = [
    [bin("tsc"), ["--noEmit", "-p", "tsconfig.json"]],
    [bin("eslint"), ["."]],
    [bin("prettier"), ["--check", "--log-level", "warn", "."]],
  ];
  for (const [cmd, args] of steps) {
    process.stdout.write(`# static: ${relative(root, cmd)} ${args.join(" ")}\n`);
    const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
    if (r.status !== 0) return false;
  }
  return true;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const wanted = args.length === 0 || args.includes("all") ? ["static", ...Object.keys(TIERS)] : args;
  for (const w of wanted) {
    if (w !== "static" && !(w in TIERS)) {
      console.error(`unknown tier "${w}"; use one of: all, static, ${Object.keys(TIERS).join(", ")}`);
      return 2;
    }
  }
  if (wanted.includes("static") && !runStatic()) {
    console.error("static checks failed");
    return 1;
  }
  const tiers = wanted.filter((w): w is Tier => w in TIERS);
  if (tiers.length === 0) return 0;

  const all = listFiles(join(root, "test"));
  const files = tiers.flatMap((t) => all.filter((f) => f.endsWith(TIERS[t])).sort());
  for (const t of tiers) {
    const n = files.filter((f) => f.endsWith(TIERS[t])).length;
    process.stdout.write(`# tier ${t}: ${n} file(s)\n`);
  }
  if (files.length === 0) {
    process.stdout.write("# no test files in the selected tiers: nothing to run\n");
    return 0;
  }

  // The AWS SDK's notice that releases after early January 2027 need Node 22 would repeat in every test process.
  // The functions' structured logs are kept to errors (tests that check logging raise the level themselves).
  const env: NodeJS.ProcessEnv = {
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    POWERTOOLS_LOG_LEVEL: "ERROR",
    // No writer settle wait after a rotation's activation, except in the tests of it (they set their own).
    AMK_WRITER_SETTLE_MS: "0",
    ...process.env,
  };
  let ddb: RunningDynamoDbLocal | undefined;
  if (tiers.some((t) => NEEDS_DYNAMODB.includes(t)) && !process.env.AWS_ENDPOINT_URL) {
    ddb = await startDynamoDbLocal();
    env.AMK_DYNAMODB_ENDPOINT = ddb.endpoint;
    process.stdout.write(`# DynamoDB Local at ${ddb.endpoint}\n`);
  }
  try {
    const code = await new Promise<number>((res) => {
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          "--test",
          "--test-reporter=spec",
          "--test-concurrency=2",
          ...files.map((f) => relative(root, f)),
        ],
        { cwd: root, env, stdio: "inherit" },
      );
      child.on("exit", (c, sig) => res(c ?? (sig ? 1 : 0)));
    });
    return code;
  } finally {
    await ddb?.stop();
  }
}

process.exitCode = await main();
