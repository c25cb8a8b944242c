/**
 * Runs the real `amk` (cli/bin/amk.js) as child processes against local engines of its own: one state folder
 * (AMK_HOME, a temp folder) per test file, `amk local up` once, `amk local down` and removal at the end. Secrets
 * reach the CLI as it is meant for automation: on file descriptor 3, or in a named environment variable.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_TOTP, totpCode } from "../../core/factors/totp.js";

export const root = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..");
const AMK = join(root, "cli", "bin", "amk.js");

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON ({} when it is not JSON). */
  readonly json: Record<string, unknown> & { ok?: boolean; error?: { code?: string; message?: string } };
}

export interface RunOptions {
  /** Lines written to the child's file descriptor 3. */
  readonly fd3?: readonly string[];
  /** Extra environment (e.g. a secret for --passphrase-env). */
  readonly env?: Record<string, string>;
  /** Called with each stderr line as it arrives. */
  readonly onStderr?: (line: string) => void;
  readonly timeoutMs?: number;
}

/** The environment of the CLI under test: its own home, no LocalStack or shared DynamoDB endpoint. */
export function cliEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, AMK_HOME: home, ...extra };
  for (const k of ["AWS_ENDPOINT_URL", "AMK_DYNAMODB_ENDPOINT", "AMK_STATE_DIR", "AMK_DEBUG"]) delete env[k];
  return env;
}

export function runCli(
  home: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CliRun> & {
  kill(): void;
} {
  const child = spawn(process.execPath, [AMK, ...args], {
    cwd: root,
    env: cliEnv(home, options.env),
    stdio: ["ignore", "pipe", "pipe", options.fd3 ? "pipe" : "ignore"],
  });
  if (options.fd3) {
    const fd3 = child.stdio[3] as NodeJS.WritableStream;
    fd3.on("error", () => undefined); // a command that fails before reading it closes it unread
    fd3.end(options.fd3.map((l) => `${l}\n`).join(""));
  }
  let stdout = "";
  let stderr = "";
  let partial = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => {
    const text = d.toString();
    stderr += text;
    if (options.onStderr) {
      partial += text;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) options.onStderr(l);
    }
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 180_000);
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      let json: CliRun["json"] = {};
      try {
        json = JSON.parse(stdout) as CliRun["json"];
      } catch {
        // not JSON
      }
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr, json });
    });
  });
  return Object.assign(done, { kill: () => child.kill("SIGTERM") });
}

/**
 * Runs a command line in a pseudo-terminal (`script`): each input is typed once the output matches its `waitFor`
 * (if any), then after `afterMs`.
 */
export function runInTerminal(
  home: string,
  args: readonly string[],
  input: readonly { waitFor?: RegExp; afterMs?: number; text: string }[],
): Promise<{ code: number; output: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, AMK, ...args].map(quote).join(" ");
  const child = spawn("script", ["-qec", command, "/dev/null"], {
    cwd: root,
    env: { ...cliEnv(home), COLUMNS: "200" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  void (async () => {
    let seen = 0;
    for (const step of input) {
      if (step.waitFor) {
        for (let i = 0; i < 2400; i++) {
          const m = step.waitFor.exec(output.slice(seen));
          if (m) {
            seen += m.index + m[0].length;
            break;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      await new Promise((r) => setTimeout(r, step.afterMs ?? 100));
      child.stdin.write(step.text);
    }
  })();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 180_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      child.stdin.destroy();
      resolve({ code: code ?? 1, output });
    });
  });
}

export interface CliHome {
  readonly home: string;
  readonly amk: (args: readonly string[], options?: RunOptions) => ReturnType<typeof runCli>;
  /** DynamoDB Local's pid from `amk local up`. */
  pid: number | undefined;
  endpoint: string | undefined;
  /** Stops the engines, checks that nothing of this home is left running, removes the folder. */
  cleanup(): Promise<void>;
}

export async function startCliHome(prefix = "amk-cli-"): Promise<CliHome> {
  const home = await mkdtemp(join(tmpdir(), prefix));
  const h: CliHome = {
    home,
    amk: (args, options) => runCli(home, args, options),
    pid: undefined,
    endpoint: undefined,
    async cleanup() {
      await runCli(home, ["local", "down"]);
      assert.deepEqual(processesOf(home), [], "no engine of this home is left running");
      await rm(home, { recursive: true, force: true });
    },
  };
  const up = await h.amk(["local", "up", "--json"]);
  assert.equal(up.code, 0, up.stderr);
  const d = up.json.dynamodb as { pid?: number; endpoint?: string };
  h.pid = d.pid;
  h.endpoint = d.endpoint;
  return h;
}

/** Pids of processes whose command line names this home (DynamoDB Local's -dbPath does). */
export function processesOf(home: string): string[] {
  try {
    return execFileSync("pgrep", ["-f", home], { encoding: "utf8" }).split("\n").filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** The TOTP seed of an enrollment URI file written by `workspace provision --totp-uri-file`. */
export function seedFrom(uriFile: string): string {
  return new URL(readFileSync(uriFile, "utf8").trim()).searchParams.get("secret")!;
}

/** A TOTP authenticator for tests: codes for the current step, or a later one (a code is accepted once). */
export class Authenticator {
  private last = 0;
  constructor(private readonly seed: string) {}
  /** The code of the next step not used yet (the current one, or one ahead: the gate allows one step of drift). */
  async next(): Promise<string> {
    const now = Math.floor(Date.now() / 30_000);
    const s = Math.max(now, this.last + 1);
    assert.ok(s <= now + 1, "the test used more codes than the drift allows without waiting");
    this.last = s;
    return totpCode(this.seed, DEFAULT_TOTP, s * 30 + 1);
  }
  /** A code that is valid now but already used. */
  async replay(): Promise<string> {
    return totpCode(this.seed, DEFAULT_TOTP, this.last * 30 + 1);
  }
}

/** No key-like strings: 32-byte values in base64 or hex. */
export const KEY_LIKE = /[A-Za-z0-9+/]{43}=|[0-9a-f]{64}|[0-9A-F]{64}/;
