/**
 * The local engines of `amk local up|down|status`, kept in the state folder (`.amk/`, or AMK_HOME):
 *
 *   hsm/                 SoftHSM2 home (softhsm2.conf, tokens/, the token's 0600 PIN files)
 *   dynamodb/            DynamoDB Local's database (persistent; the engine runs detached in the background)
 *   vault/               the file vault (kits, factor secrets), 0700
 *   alerts.jsonl         the alert log (`amk alerts`), bus.jsonl the event-bus log
 *   callbacks/           task callbacks between a waiting `amk recover start` and `amk recover unlock`, 0700
 *   documents/           the sample documents of `amk ingest` (ciphertext only)
 *   token-signing.key    the access-token signing key (0600)
 *   logs/                DynamoDB Local's output
 *   local.json           what runs where: DynamoDB Local's pid and port, the current HSM token, the paths above
 *
 * Every other command reads local.json and checks that the engines answer before it does anything.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { DynamoDBClient, DescribeTableCommand } from "@aws-sdk/client-dynamodb";
import { createEventStoreTable } from "../../core/adapters/dynamodb/table.js";
import { dynamoDbAnswers, startDetachedDynamoDbLocal } from "./dynamodb-local.js";
import { ensureSoftHsmHome, ensureToken, listTokenLabels } from "./softhsm.js";
import { LOCAL_TOKEN_LABEL } from "./state.js";
import { EnginesNotRunningError, UsageError } from "../runtime/errors.js";

const run = promisify(execFile);

export const LOCAL_STATE_FORMAT = "amk-local/1";
export const EVENT_TABLE = "amk-events";

export interface LocalState {
  readonly format: typeof LOCAL_STATE_FORMAT;
  readonly home: string;
  readonly hsm: {
    readonly dir: string;
    readonly configPath: string;
    readonly libraryPath: string;
    /** The token the functions use now (a new one after `amk local destroy-hsm-token`). */
    readonly tokenLabel: string;
    readonly pinFile: string;
    /** How many tokens were destroyed so far (names the next replacement). */
    readonly replacements: number;
  };
  readonly dynamodb: {
    readonly dbPath: string;
    readonly logFile: string;
    /** Absent while stopped. */
    readonly running?: {
      readonly pid: number;
      readonly port: number;
      readonly endpoint: string;
      readonly startedAt: string;
    };
  };
  readonly eventTable: string;
  readonly vaultDir: string;
  readonly alertLog: string;
  readonly busLog: string;
  readonly callbacksDir: string;
  readonly documentsDir: string;
  readonly tokenSigningKeyFile: string;
}

const stateFile = (home: string) => join(home, "local.json");

export function readLocalState(home: string): LocalState | undefined {
  let text: string;
  try {
    text = readFileSync(stateFile(home), "utf8");
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return undefined;
    throw err;
  }
  const parsed = JSON.parse(text) as LocalState;
  if (parsed.format !== LOCAL_STATE_FORMAT) {
    throw new UsageError(
      `${stateFile(home)} is not a state file of this amk (format ${String(parsed.format)})`,
    );
  }
  return parsed;
}

function writeLocalState(state: LocalState): void {
  const file = stateFile(state.home);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}

/** True when `pid` is DynamoDB Local running on this state folder's database (not a recycled pid). */
function isOurDynamoDb(pid: number, dbPath: string): boolean {
  if (!pidAlive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return cmdline.some((a) => a.includes("DynamoDBLocal")) && cmdline.includes(dbPath);
  } catch {
    return true; // no /proc (not Linux): trust the pid
  }
}

export interface EngineStatus {
  readonly home: string;
  readonly ok: boolean;
  readonly hsm: { readonly ok: boolean; readonly tokenLabel?: string; readonly detail: string };
  readonly dynamodb: {
    readonly ok: boolean;
    readonly pid?: number;
    readonly endpoint?: string;
    readonly detail: string;
  };
  readonly eventTable: { readonly ok: boolean; readonly name?: string; readonly detail: string };
  readonly vault: { readonly ok: boolean; readonly dir?: string; readonly detail: string };
  readonly alertLog?: string;
}

function defaultState(home: string, hsm: LocalState["hsm"]): LocalState {
  return {
    format: LOCAL_STATE_FORMAT,
    home,
    hsm,
    dynamodb: { dbPath: join(home, "dynamodb"), logFile: join(home, "logs", "dynamodb.log") },
    eventTable: EVENT_TABLE,
    vaultDir: join(home, "vault"),
    alertLog: join(home, "alerts.jsonl"),
    busLog: join(home, "bus.jsonl"),
    callbacksDir: join(home, "callbacks"),
    documentsDir: join(home, "documents"),
    tokenSigningKeyFile: join(home, "token-signing.key"),
  };
}

export interface UpResult {
  readonly state: LocalState;
  readonly started: boolean;
  readonly tableCreated: boolean;
}

/** Starts (or finds running) every local engine of `home` and records them in local.json. */
export async function localUp(
  home: string,
  log: (line: string) => void = () => undefined,
): Promise<UpResult> {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const previous = readLocalState(home);
  const hsmHome = await ensureSoftHsmHome(join(home, "hsm"));
  const label = previous?.hsm.tokenLabel ?? LOCAL_TOKEN_LABEL;
  const token = await ensureToken(hsmHome, label);
  log(`SoftHSM2 token ${token.label} (${hsmHome.dir})`);
  let state: LocalState = {
    ...defaultState(home, {
      dir: hsmHome.dir,
      configPath: hsmHome.configPath,
      libraryPath: hsmHome.libraryPath,
      tokenLabel: token.label,
      pinFile: token.pinFile,
      replacements: previous?.hsm.replacements ?? 0,
    }),
    ...(previous ? { dynamodb: previous.dynamodb } : {}),
  };
  for (const d of [state.vaultDir, state.callbacksDir, state.documentsDir, join(home, "logs")]) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
  }
  if (!existsSync(state.tokenSigningKeyFile)) {
    writeFileSync(state.tokenSigningKeyFile, randomBytes(32).toString("base64"), { mode: 0o600, flag: "wx" });
  }

  let started = false;
  const running = state.dynamodb.running;
  if (
    !running ||
    !isOurDynamoDb(running.pid, state.dynamodb.dbPath) ||
    !(await dynamoDbAnswers(running.endpoint))
  ) {
    if (running && isOurDynamoDb(running.pid, state.dynamodb.dbPath)) await stopPid(running.pid);
    log("starting DynamoDB Local (detached, database in dynamodb/)");
    const d = await startDetachedDynamoDbLocal({
      dbPath: state.dynamodb.dbPath,
      logFile: state.dynamodb.logFile,
    });
    state = {
      ...state,
      dynamodb: {
        ...state.dynamodb,
        running: { pid: d.pid, port: d.port, endpoint: d.endpoint, startedAt: new Date().toISOString() },
      },
    };
    started = true;
    writeLocalState(state); // record the pid at once: `amk local down` can stop it even if what follows fails
  }
  log(`DynamoDB Local ${state.dynamodb.running!.endpoint} (pid ${state.dynamodb.running!.pid})`);
  const tableCreated = await ensureTable(state.dynamodb.running!.endpoint, state.eventTable);
  log(`event-store table ${state.eventTable}${tableCreated ? " (created)" : ""}`);
  writeLocalState(state);
  return { state, started, tableCreated };
}

function localClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
}

async function ensureTable(endpoint: string, table: string): Promise<boolean> {
  const client = localClient(endpoint);
  try {
    await client.send(new DescribeTableCommand({ TableName: table }));
    return false;
  } catch (err) {
    if ((err as { name?: string }).name !== "ResourceNotFoundException") throw err;
    await createEventStoreTable(client, table);
    return true;
  } finally {
    client.destroy();
  }
}

async function tableExists(endpoint: string, table: string): Promise<boolean> {
  const client = localClient(endpoint);
  try {
    await client.send(new DescribeTableCommand({ TableName: table }));
    return true;
  } catch {
    return false;
  } finally {
    client.destroy();
  }
}

/** SIGTERM to the process group, SIGKILL after 5 s. */
async function stopPid(pid: number): Promise<void> {
  const signal = (s: NodeJS.Signals): void => {
    try {
      process.kill(-pid, s); // the detached engine leads its own process group
    } catch {
      try {
        process.kill(pid, s);
      } catch {
        // gone
      }
    }
  };
  signal("SIGTERM");
  const deadline = Date.now() + 5000;
  while (pidAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (pidAlive(pid)) signal("SIGKILL");
  while (pidAlive(pid) && Date.now() < deadline + 2000) await new Promise((r) => setTimeout(r, 50));
}

/** Stops DynamoDB Local (the data stays in dynamodb/). `stopped` is false when nothing was running. */
export async function localDown(home: string): Promise<{ stopped: boolean; pid?: number }> {
  const state = readLocalState(home);
  const running = state?.dynamodb.running;
  if (!state || !running) return { stopped: false };
  let stopped = false;
  if (isOurDynamoDb(running.pid, state.dynamodb.dbPath)) {
    await stopPid(running.pid);
    stopped = true;
  }
  const { running: _gone, ...dynamodb } = state.dynamodb;
  writeLocalState({ ...state, dynamodb });
  return { stopped, pid: running.pid };
}

export async function localStatus(home: string): Promise<EngineStatus> {
  const state = readLocalState(home);
  if (!state) {
    const none = { ok: false, detail: "not set up" };
    return { home, ok: false, hsm: none, dynamodb: none, eventTable: none, vault: none };
  }
  let hsm: EngineStatus["hsm"];
  try {
    const labels = await listTokenLabels({
      dir: state.hsm.dir,
      configPath: state.hsm.configPath,
      libraryPath: state.hsm.libraryPath,
    });
    hsm = labels.includes(state.hsm.tokenLabel)
      ? { ok: true, tokenLabel: state.hsm.tokenLabel, detail: `token ${state.hsm.tokenLabel} present` }
      : { ok: false, tokenLabel: state.hsm.tokenLabel, detail: `token ${state.hsm.tokenLabel} missing` };
  } catch (err) {
    hsm = { ok: false, detail: `softhsm2-util failed: ${(err as Error).message.split("\n")[0]}` };
  }
  const running = state.dynamodb.running;
  let dynamodb: EngineStatus["dynamodb"];
  let eventTable: EngineStatus["eventTable"] = { ok: false, name: state.eventTable, detail: "unknown" };
  if (!running) {
    dynamodb = { ok: false, detail: "stopped" };
  } else if (!isOurDynamoDb(running.pid, state.dynamodb.dbPath)) {
    dynamodb = {
      ok: false,
      pid: running.pid,
      endpoint: running.endpoint,
      detail: `pid ${running.pid} is gone`,
    };
  } else if (!(await dynamoDbAnswers(running.endpoint))) {
    dynamodb = { ok: false, pid: running.pid, endpoint: running.endpoint, detail: "does not answer" };
  } else {
    dynamodb = { ok: true, pid: running.pid, endpoint: running.endpoint, detail: "answers" };
    const exists = await tableExists(running.endpoint, state.eventTable);
    eventTable = { ok: exists, name: state.eventTable, detail: exists ? "exists" : "missing" };
  }
  const vaultOk = existsSync(state.vaultDir);
  const vault = { ok: vaultOk, dir: state.vaultDir, detail: vaultOk ? "present" : "missing" };
  return {
    home,
    ok: hsm.ok && dynamodb.ok && eventTable.ok && vault.ok,
    hsm,
    dynamodb,
    eventTable,
    vault,
    alertLog: state.alertLog,
  };
}

/**
 * The state of a running local setup, for every command but `local ...`: throws `EnginesNotRunningError` (exit 3,
 * naming `amk local up`) when it is not set up or DynamoDB Local does not answer.
 */
export async function requireRunning(
  home: string,
): Promise<LocalState & { dynamodb: { running: NonNullable<LocalState["dynamodb"]["running"]> } }> {
  const state = readLocalState(home);
  if (!state) {
    throw new EnginesNotRunningError(`the local engines are not set up in ${home}`);
  }
  const running = state.dynamodb.running;
  if (!running) throw new EnginesNotRunningError(`the local engines in ${home} are stopped`);
  if (!(await dynamoDbAnswers(running.endpoint, 3000))) {
    throw new EnginesNotRunningError(
      `DynamoDB Local (pid ${running.pid}, ${running.endpoint}) does not answer`,
      "start the engines again with `amk local up`",
    );
  }
  return state as LocalState & { dynamodb: { running: NonNullable<LocalState["dynamodb"]["running"]> } };
}

/**
 * Simulates losing the HSM (developers, the story): deletes the current SoftHSM2 token with every key in it and
 * makes an empty replacement token the current one.
 */
export async function destroyHsmToken(home: string): Promise<{ destroyed: string; replacement: string }> {
  const state = readLocalState(home);
  if (!state) throw new EnginesNotRunningError(`the local engines are not set up in ${home}`);
  const env = { ...process.env, SOFTHSM2_CONF: state.hsm.configPath };
  const destroyed = state.hsm.tokenLabel;
  await run("softhsm2-util", ["--delete-token", "--token", destroyed], { env }).catch((err: unknown) => {
    throw new EnginesNotRunningError(
      `softhsm2-util could not delete token ${destroyed}: ${(err as Error).message.split("\n")[0]}`,
    );
  });
  const replacements = state.hsm.replacements + 1;
  const home_ = await ensureSoftHsmHome(state.hsm.dir);
  const token = await ensureToken(home_, `${LOCAL_TOKEN_LABEL}-r${replacements}`);
  writeLocalState({
    ...state,
    hsm: { ...state.hsm, tokenLabel: token.label, pinFile: token.pinFile, replacements },
  });
  return { destroyed, replacement: token.label };
}
