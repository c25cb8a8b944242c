/**
 * Task callbacks through a folder: the local stand-in for Step Functions' `SendTaskSuccess` when the waiting
 * execution and the unlock run in different processes (`amk recover start` in one terminal, `amk recover unlock` in
 * another). Selected in the functions with `AMK_TASK_CALLBACKS=file:<dir>` (functions/shared/notify.ts).
 *
 * - the waiter (the local runner's AwaitUnlock bridge) writes `<id>.waiting` (its pid) and polls for
 *   `<id>.result.json`;
 * - `succeed` (the unlock function) refuses a token nobody waits on (`TaskTokenExpiredError`, as Step Functions
 *   does for a timed-out task; a marker whose process is gone counts as nobody), else writes `<id>.result.json`
 *   atomically;
 * - `<id>` is the SHA-256 of the task token: the token (a credential for the waiting execution) is never a file name
 *   and never written to the folder.
 *
 * The folder is created with mode 0700 and refused when group or others may use it (`TaskCallbackFolderError`):
 * whoever can write a result file can resume the execution. Results hold what the unlock function hands the
 * execution (key ids and KCVs), never a secret.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { TaskTokenExpiredError, type TaskCallbacks } from "../../recovery/task-callbacks.js";
import { AmkError, InvalidInputError } from "../../shared/errors.js";

/** The callback folder cannot be used safely (not a folder, open to group or others, another owner). */
export class TaskCallbackFolderError extends AmkError {
  readonly code = "TASK_CALLBACK_FOLDER";
}

const POSIX = process.platform !== "win32";

export interface FileTaskCallbacksOptions {
  /** How often `wait` looks for a result (default 200 ms). */
  readonly pollMs?: number;
}

export class FileTaskCallbacks implements TaskCallbacks {
  readonly dir: string;
  private readonly pollMs: number;

  constructor(dir: string, options: FileTaskCallbacksOptions = {}) {
    if (typeof dir !== "string" || dir === "") {
      throw new InvalidInputError("FileTaskCallbacks: the folder must be a non-empty path");
    }
    this.dir = resolve(dir);
    this.pollMs = options.pollMs ?? 200;
  }

  /** File name stem of a token: its SHA-256 (hex). */
  static idOf(taskToken: string): string {
    return createHash("sha256").update(taskToken, "utf8").digest("hex");
  }

  private paths(taskToken: string): { waiting: string; result: string } {
    const id = FileTaskCallbacks.idOf(taskToken);
    return { waiting: join(this.dir, `${id}.waiting`), result: join(this.dir, `${id}.result.json`) };
  }

  /** Creates the folder (0700) if needed and checks that only its owner can use it. */
  ensureFolder(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new TaskCallbackFolderError(`cannot create the task-callback folder ${this.dir}`, {
        cause: err,
        context: { dir: this.dir },
      });
    }
    const st = statSync(this.dir);
    if (!st.isDirectory()) {
      throw new TaskCallbackFolderError(`${this.dir} is not a folder`, { context: { dir: this.dir } });
    }
    if (POSIX) {
      if ((st.mode & 0o077) !== 0) {
        throw new TaskCallbackFolderError(
          `the task-callback folder ${this.dir} is open to group or others (mode 0${(st.mode & 0o777).toString(8)}); chmod 700 it`,
          { context: { dir: this.dir } },
        );
      }
      const uid = process.getuid?.();
      if (uid !== undefined && st.uid !== uid) {
        throw new TaskCallbackFolderError(`the task-callback folder ${this.dir} belongs to another user`, {
          context: { dir: this.dir, ownerUid: st.uid },
        });
      }
    }
  }

  /** True while a waiter waits on this token (its marker exists and its process is alive). */
  isWaiting(taskToken: string): boolean {
    return markerAlive(this.paths(taskToken).waiting);
  }

  /** True when any execution waits on a token in this folder. */
  anyWaiting(): boolean {
    try {
      return readdirSync(this.dir).some((n) => n.endsWith(".waiting") && markerAlive(join(this.dir, n)));
    } catch {
      return false;
    }
  }

  async succeed(taskToken: string, output: Readonly<Record<string, unknown>>): Promise<void> {
    if (typeof taskToken !== "string" || taskToken === "") {
      throw new InvalidInputError("SendTaskSuccess: the task token must be a non-empty string");
    }
    if (output === null || typeof output !== "object" || Array.isArray(output)) {
      throw new InvalidInputError("SendTaskSuccess: the output must be a JSON object");
    }
    this.ensureFolder();
    const { waiting, result } = this.paths(taskToken);
    if (!markerAlive(waiting)) {
      rmSync(waiting, { force: true }); // left by a waiter that died
      throw new TaskTokenExpiredError("no execution waits on that task token (timed out or finished)");
    }
    const tmp = `${result}.${randomBytes(6).toString("hex")}.tmp`;
    writeFileSync(tmp, JSON.stringify(output), { mode: 0o600 });
    renameSync(tmp, result);
  }

  /**
   * Waits for `succeed` on this token (from any process): resolves with the output, or fails with `States.Timeout`
   * after `timeoutMs`, or when `signal` aborts. The marker and the result are removed either way.
   */
  async wait(taskToken: string, timeoutMs: number, signal?: AbortSignal): Promise<Record<string, unknown>> {
    this.ensureFolder();
    const { waiting, result } = this.paths(taskToken);
    rmSync(result, { force: true }); // a stale result of an earlier wait is not this one's
    writeFileSync(waiting, JSON.stringify({ pid: process.pid, since: new Date().toISOString() }), {
      mode: 0o600,
    });
    const deadline = Date.now() + timeoutMs;
    try {
      for (;;) {
        const r = readResult(result);
        if (r) return r;
        if (signal?.aborted) {
          throw Object.assign(new Error("the wait for the task callback was stopped"), {
            name: "States.Aborted",
          });
        }
        if (Date.now() >= deadline) {
          rmSync(waiting, { force: true });
          const late = readResult(result); // delivered while the marker was removed
          if (late) return late;
          throw Object.assign(new Error("the task timed out waiting for its callback"), {
            name: "States.Timeout",
          });
        }
        await new Promise((r) => setTimeout(r, Math.min(this.pollMs, Math.max(1, deadline - Date.now()))));
      }
    } finally {
      rmSync(waiting, { force: true });
      rmSync(result, { force: true });
    }
  }
}

/** A waiting marker whose process is still alive. */
function markerAlive(path: string): boolean {
  if (!existsSync(path)) return false;
  try {
    const { pid } = JSON.parse(readFileSync(path, "utf8")) as { pid?: unknown };
    if (typeof pid !== "number") return false;
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}

function readResult(path: string): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as { code?: unknown }).code === "ENOENT") return undefined;
    throw err;
  }
  const value = JSON.parse(text) as unknown;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidInputError("the task-callback result is not a JSON object");
  }
  return value as Record<string, unknown>;
}
