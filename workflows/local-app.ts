/**
 * The deployed workflows, ready for the local runner: what the workflow tests and the `amk` CLI share.
 *
 * - `synthLocalWorkflows()`: the CDK app (infra/bin/app.ts) synthesised offline without bundling, and the rotation,
 *   recovery and drill state machines' ASL taken from its stateless stack (`aslFromTemplate`).
 * - `loadLocalWorkflows()`: the same, cached on disk under a hash of the sources that shape the template (the CDK
 *   app and every project file it imports, cdk.json, package-lock.json), so a CLI command does not pay the
 *   synthesis (about 6 s) each time. A changed source gives a new hash and a fresh synthesis.
 * - the handler maps: every function id of those state machines bound to the real handler module;
 * - `awaitUnlockBridge`: what Step Functions does with the recovery's `.waitForTaskToken` AwaitUnlock task: the
 *   runner has already called the real awaitUnlock function (which records the token); the bridge parks on a waiter
 *   (the in-process task callbacks, or a folder shared with other processes: core/adapters/file-task-callbacks)
 *   until the real unlock function resumes it, or fails with `States.Timeout`.
 */
import { createHash } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as recovery from "../functions/recovery/handlers.js";
import * as rotation from "../functions/rotation/handlers.js";
import { failureHandler as rotationFailure } from "../functions/rotation/failure.js";
import { failureHandler as recoveryFailure } from "../functions/recovery/failure.js";
import { runDrillHandler } from "../functions/drill/handler.js";
import { runRestorationTestHandler } from "../functions/restoration/handler.js";
import { inProcessTaskCallbacks } from "../core/recovery/task-callbacks.js";
import { aslFromTemplate, TaskFailure, type LocalWorkflow, type TaskTokenHandler } from "./local-runner.js";

export const projectRoot = join(fileURLToPath(new URL(".", import.meta.url)), "..");

/** Construct paths of the state machines in the stateless stack. */
export const STATE_MACHINES = {
  rotation: "RotationWorkflow/StateMachine",
  recovery: "RecoveryWorkflow/StateMachine",
  drill: "DrillWorkflow/StateMachine",
  restoration: "RestorationWorkflow/StateMachine",
} as const;
export type WorkflowName = keyof typeof STATE_MACHINES;

export type LocalWorkflows = Record<WorkflowName, LocalWorkflow>;

/** `createApp` of infra/bin/app.ts (passed in, so that importing this module does not load the infra code). */
export type CreateAmkApp = (options: { context?: Record<string, unknown>; outdir?: string }) => {
  app: { synth(): unknown };
  stateless: Parameters<typeof aslFromTemplate>[0];
};

/**
 * Synthesises the app into `outdir` (default: a new temporary folder, which the caller removes) and returns the
 * three workflows. Synchronous, for test `before` hooks that import `createApp` themselves.
 */
export function synthWith(
  createApp: CreateAmkApp,
  options: { outdir?: string } = {},
): LocalWorkflows & { outdir: string } {
  const outdir = options.outdir ?? mkdtempSync(join(tmpdir(), "amk-wf-synth-"));
  const cdkJson = JSON.parse(readFileSync(join(projectRoot, "cdk.json"), "utf8")) as {
    context?: Record<string, unknown>;
  };
  const amk = createApp({ context: { ...cdkJson.context, "aws:cdk:bundling-stacks": [] }, outdir });
  amk.app.synth();
  return {
    rotation: aslFromTemplate(amk.stateless, STATE_MACHINES.rotation),
    recovery: aslFromTemplate(amk.stateless, STATE_MACHINES.recovery),
    drill: aslFromTemplate(amk.stateless, STATE_MACHINES.drill),
    restoration: aslFromTemplate(amk.stateless, STATE_MACHINES.restoration),
    outdir,
  };
}

/** `synthWith` the project's app, loading aws-cdk-lib's constructs and the infra code on first use only. */
export async function synthLocalWorkflows(
  options: { outdir?: string } = {},
): Promise<LocalWorkflows & { outdir: string }> {
  const { createApp } = await import("../infra/bin/app.js");
  return synthWith(createApp, options);
}

const ENTRY = join("infra", "bin", "app.ts");
const HASHED_FILES = ["cdk.json", "package-lock.json"];
const RELATIVE_IMPORT = /(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g;

/**
 * A hash of every source that can change the synthesised template: the CDK app's entry and, transitively, every
 * project file it imports (relative imports), with cdk.json and package-lock.json. Edits elsewhere keep the cache.
 */
export function workflowSourceHash(root = projectRoot): string {
  const h = createHash("sha256");
  const seen = new Set<string>();
  const queue = [join(root, ENTRY)];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    seen.add(file);
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue; // a path the regex misread: nothing to hash
    }
    for (const m of text.matchAll(RELATIVE_IMPORT)) {
      const target = join(dirname(file), m[1]!).replace(/\.js$/, ".ts");
      if (target.endsWith(".ts")) queue.push(target);
    }
  }
  for (const file of [...seen].sort()) {
    try {
      h.update(file.slice(root.length)).update("\0").update(readFileSync(file)).update("\0");
    } catch {
      // unreadable: skipped
    }
  }
  for (const f of HASHED_FILES) {
    try {
      h.update(f)
        .update("\0")
        .update(readFileSync(join(root, f)));
    } catch {
      // absent: nothing to hash
    }
  }
  return h.digest("hex").slice(0, 32);
}

/** Default cache folder: `node_modules/.cache/amk-workflows` (override with AMK_WORKFLOW_CACHE; `off` disables). */
export function defaultWorkflowCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = env.AMK_WORKFLOW_CACHE;
  if (v === "off") return undefined;
  return v || join(projectRoot, "node_modules", ".cache", "amk-workflows");
}

/**
 * The three workflows, from the cache when the sources did not change since it was written, else synthesised
 * (and cached). `cached` says which.
 */
export async function loadLocalWorkflows(
  options: { cacheDir?: string | undefined; quiet?: boolean } = {
    cacheDir: defaultWorkflowCacheDir(),
    quiet: true,
  },
): Promise<{ workflows: LocalWorkflows; cached: boolean; hash: string }> {
  const hash = workflowSourceHash();
  const dir = options.cacheDir;
  const file = dir ? join(dir, `workflows-${hash}.json`) : undefined;
  if (file) {
    try {
      const parsed = JSON.parse(readFileSync(file, "utf8")) as { hash?: string; workflows?: LocalWorkflows };
      if (parsed.hash === hash && parsed.workflows)
        return { workflows: parsed.workflows, cached: true, hash };
    } catch {
      // missing or unreadable: synthesise
    }
  }
  // The synthesis prints cdk-nag's and the annotations' report; the CLI's output is not the place for it.
  const saved = { log: console.log, error: console.error, warn: console.warn, info: console.info };
  if (options.quiet) console.log = console.error = console.warn = console.info = () => undefined;
  let synth;
  try {
    synth = await synthLocalWorkflows();
  } finally {
    Object.assign(console, saved);
  }
  rmSync(synth.outdir, { recursive: true, force: true });
  const workflows: LocalWorkflows = {
    rotation: synth.rotation,
    recovery: synth.recovery,
    drill: synth.drill,
    restoration: synth.restoration,
  };
  if (dir && file) {
    mkdirSync(dir, { recursive: true });
    for (const old of readdirSync(dir)) {
      if (old.startsWith("workflows-") && old !== `workflows-${hash}.json`)
        rmSync(join(dir, old), { force: true });
    }
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ hash, workflows }));
    renameSync(tmp, file);
  }
  return { workflows, cached: false, hash };
}

// ---- handlers ---------------------------------------------------------------------------------------------------

/** Rotation handlers by function id; the shard task gets a Lambda-like remaining time (its budget comes from the env). */
export const rotationHandlers = {
  RotationStart: rotation.startHandler,
  RotationPlan: rotation.planHandler,
  RotationRewrapShard: (e: unknown) =>
    rotation.rewrapShardHandler(e, { getRemainingTimeInMillis: () => 60_000 }),
  RotationCensus: rotation.censusHandler,
  RotationComplete: rotation.completeHandler,
  RotationFailure: rotationFailure,
};

/** Recovery handlers by function id (the re-wrap runs on the rotation functions). */
export const recoveryHandlers = {
  ...rotationHandlers,
  RecoveryStart: recovery.startHandler,
  RecoveryAwaitUnlock: recovery.awaitUnlockHandler,
  RecoveryRotate: recovery.rotateHandler,
  RecoveryVerify: recovery.verifyHandler,
  RecoveryInvalidateTokens: recovery.invalidateTokensHandler,
  RecoveryComplete: recovery.completeHandler,
  RecoveryFailure: recoveryFailure,
};

export const drillHandlers = { DrillRun: runDrillHandler };

export const restorationHandlers = { RestorationTestRun: runRestorationTestHandler };

/** Something an AwaitUnlock bridge can park on until the unlock function calls `succeed` with the same token. */
export interface TaskTokenWaiter {
  wait(taskToken: string, timeoutMs: number, signal?: AbortSignal): Promise<Record<string, unknown>>;
}

/**
 * The AwaitUnlock bridge: what Step Functions does with `.waitForTaskToken`, locally. Waits on `waiter` (default
 * the in-process task callbacks; `AMK_TASK_CALLBACKS=in-process` makes the unlock function complete those), and
 * turns its failure (timeout, abort) into the Task's failure.
 */
export function awaitUnlockBridge(
  timeoutMs: number,
  waiter: TaskTokenWaiter = inProcessTaskCallbacks,
  options: { signal?: AbortSignal; onWaiting?: (token: string) => void } = {},
): Record<string, TaskTokenHandler> {
  return {
    AwaitUnlock: async ({ token }) => {
      options.onWaiting?.(token);
      try {
        return await waiter.wait(token, timeoutMs, options.signal);
      } catch (err) {
        throw new TaskFailure((err as Error).name, (err as Error).message);
      }
    },
  };
}
