/**
 * Running the deployed workflows from the CLI:
 *
 * - local mode: the state machine's ASL as the CDK app synthesises it (cached, workflows/local-app.ts), executed by
 *   the local runner with every Task bound to the real handler; `onTask` sees each task start and end (phase lines
 *   of the progress output), `taskTokens` bridges `.waitForTaskToken` tasks;
 * - AWS mode: StartExecution of the deployed state machine (AMK_<NAME>_STATE_MACHINE_ARN or --state-machine-arn),
 *   then DescribeExecution every 2 s until it ends.
 *
 * `watchRewrap` shows the re-wrap's progress (done/total/rate/ETA) from the census index in the event store: the
 * same in both modes, and whichever process does the work.
 */
import type { EventStore } from "../../core/eventstore/event-store.js";
import { readWorkspace, type WorkspaceState } from "../../core/workspaces/workspace.js";
import type { WorkflowName } from "../../workflows/local-app.js";
import type { Json, LocalHandler, TaskTokenHandler } from "../../workflows/local-runner.js";
import { ProgressBar } from "../output/progress.js";
import type { Runtime } from "./context.js";
import { UsageError } from "./errors.js";

export interface TaskEvent {
  readonly functionId: string;
  readonly phase: "start" | "end" | "error";
  readonly output?: unknown;
  readonly error?: string;
}

export interface RunWorkflowOptions {
  readonly input: Record<string, Json>;
  readonly executionName?: string;
  readonly onTask?: (e: TaskEvent) => void;
  readonly taskTokens?: Record<string, TaskTokenHandler>;
  readonly signal?: AbortSignal;
  /** AWS mode: the state machine (default AMK_<NAME>_STATE_MACHINE_ARN). */
  readonly stateMachineArn?: string;
}

export interface WorkflowResult {
  readonly status: "SUCCEEDED" | "FAILED" | "ABORTED" | "TIMED_OUT";
  readonly executionName: string;
  readonly executionArn?: string;
  readonly output?: unknown;
  readonly error?: { readonly error: string; readonly cause: string };
}

function observe(
  handlers: Record<string, LocalHandler>,
  onTask?: (e: TaskEvent) => void,
): Record<string, LocalHandler> {
  if (!onTask) return handlers;
  return Object.fromEntries(
    Object.entries(handlers).map(([id, h]) => [
      id,
      (async (event: never, context: never) => {
        onTask({ functionId: id, phase: "start" });
        try {
          const output = await h(event, context);
          onTask({ functionId: id, phase: "end", output });
          return output;
        } catch (err) {
          onTask({ functionId: id, phase: "error", error: (err as Error)?.name ?? "Error" });
          throw err;
        }
      }) as LocalHandler,
    ]),
  );
}

export function stateMachineArnFromEnv(name: WorkflowName): string | undefined {
  return process.env[`AMK_${name.toUpperCase()}_STATE_MACHINE_ARN`] || undefined;
}

export async function runWorkflow(
  rt: Runtime,
  name: WorkflowName,
  opts: RunWorkflowOptions,
): Promise<WorkflowResult> {
  if (rt.mode === "aws") return runInAws(name, opts);
  const [app, { runLocal }] = await Promise.all([
    import("../../workflows/local-app.js"),
    import("../../workflows/local-runner.js"),
  ]);
  const { workflows } = await app.loadLocalWorkflows();
  const handlers: Record<string, LocalHandler> =
    name === "rotation"
      ? app.rotationHandlers
      : name === "recovery"
        ? app.recoveryHandlers
        : name === "drill"
          ? app.drillHandlers
          : app.restorationHandlers;
  const run = await runLocal({
    ...workflows[name],
    handlers: observe(handlers, opts.onTask),
    ...(opts.taskTokens ? { taskTokens: opts.taskTokens } : {}),
    input: opts.input,
    ...(opts.executionName ? { executionName: opts.executionName } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    // The rotation's "let the index catch up" wait: DynamoDB Local's indexes follow at once.
    waitTimeOverride: 1000,
  });
  return {
    status: run.status,
    executionName: run.executionName,
    ...(run.output !== undefined ? { output: run.output } : {}),
    ...(run.error ? { error: run.error } : {}),
  };
}

async function runInAws(name: WorkflowName, opts: RunWorkflowOptions): Promise<WorkflowResult> {
  const arn = opts.stateMachineArn ?? stateMachineArnFromEnv(name);
  if (!arn) {
    throw new UsageError(
      `AWS mode needs the ${name} state machine`,
      `pass --state-machine-arn or set AMK_${name.toUpperCase()}_STATE_MACHINE_ARN (stack output ${name[0]!.toUpperCase()}${name.slice(1)}StateMachineArn)`,
    );
  }
  const { DescribeExecutionCommand, SFNClient, StartExecutionCommand } = await import("@aws-sdk/client-sfn");
  const client = new SFNClient({});
  try {
    const started = await client.send(
      new StartExecutionCommand({
        stateMachineArn: arn,
        ...(opts.executionName ? { name: opts.executionName } : {}),
        input: JSON.stringify(opts.input),
      }),
    );
    const executionArn = started.executionArn!;
    for (;;) {
      if (opts.signal?.aborted) {
        return { status: "ABORTED", executionName: executionArn.split(":").at(-1)!, executionArn };
      }
      const d = await client.send(new DescribeExecutionCommand({ executionArn }));
      if (d.status && d.status !== "RUNNING" && d.status !== "PENDING_REDRIVE") {
        const status =
          d.status === "SUCCEEDED"
            ? "SUCCEEDED"
            : d.status === "TIMED_OUT"
              ? "TIMED_OUT"
              : d.status === "ABORTED"
                ? "ABORTED"
                : "FAILED";
        return {
          status,
          executionName: d.name ?? "",
          executionArn,
          ...(d.output ? { output: JSON.parse(d.output) as unknown } : {}),
          ...(d.error || d.cause ? { error: { error: d.error ?? "", cause: d.cause ?? "" } } : {}),
        };
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  } finally {
    client.destroy();
  }
}

/** Documents per live master key version of a workspace (active and decrypt-only), from the census index. */
export async function documentsPerLiveKey(
  events: EventStore,
  ws: WorkspaceState,
): Promise<Record<string, number>> {
  const documents: Record<string, number> = {};
  for (const k of ws.keys.filter((x) => x.state === "active" || x.state === "decrypt-only")) {
    documents[k.keyId] = await events.countDocumentsByKeyId(ws.workspaceId, k.keyId);
  }
  return documents;
}

/** Documents on the workspace's live master key versions (what a rotation or a recovery will re-wrap). */
export async function documentsOnLiveKeys(events: EventStore, workspaceId: string): Promise<number> {
  const counts = await documentsPerLiveKey(events, await readWorkspace(events, workspaceId));
  return Object.values(counts).reduce((a, n) => a + n, 0);
}

/**
 * Polls the workspace's running rotation (a rotation's, or a recovery's) and draws the re-wrap's progress: total =
 * `options.total` (the documents on the live versions before the workflow started) or, if larger, what is left on
 * the old versions when the rotation is first seen; done = how many have left them since.
 */
export function watchRewrap(
  events: EventStore,
  workspaceId: string,
  options: { intervalMs?: number; label?: string; total?: number } = {},
): { stop(completed: boolean): Promise<{ documents: number; seconds: number; rate: number } | undefined> } {
  let bar: ProgressBar | undefined;
  let total = options.total ?? 0;
  let last = 0;
  let stopped = false;
  let started = Date.now();
  const tick = async (): Promise<void> => {
    const ws = await readWorkspace(events, workspaceId);
    const r = ws.rotation;
    if (r?.status !== "running") return;
    let remaining = 0;
    for (const k of r.fromKeyIds) remaining += await events.countDocumentsByKeyId(workspaceId, k);
    if (!bar) {
      if (remaining === 0 && total === 0) return;
      total = Math.max(total, remaining);
      started = Date.now();
      bar = new ProgressBar(options.label ?? "re-wrap", total);
      if (total > remaining) bar.add(total - remaining);
      last = remaining;
      return;
    }
    if (remaining > last) {
      total += remaining - last; // documents ingested meanwhile
      bar.setTotal(total);
    } else if (remaining < last) {
      bar.add(last - remaining);
    }
    last = remaining;
  };
  let wake: (() => void) | undefined;
  const loop = (async () => {
    while (!stopped) {
      await tick().catch(() => undefined);
      await new Promise<void>((r) => {
        const t = setTimeout(r, options.intervalMs ?? 500);
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  })();
  let result: Promise<{ documents: number; seconds: number; rate: number } | undefined> | undefined;
  return {
    stop(completed: boolean) {
      result ??= finish(completed);
      return result;
    },
  };
  async function finish(completed: boolean) {
    stopped = true;
    wake?.();
    await loop;
    if (!bar && completed && total > 0) {
      // It all happened between two polls.
      bar = new ProgressBar(options.label ?? "re-wrap", total);
      last = total;
    }
    if (!bar) return undefined;
    if (completed && last > 0) bar.add(last); // the rest moved between the last poll and the end
    bar.finish();
    const seconds = (Date.now() - started) / 1000;
    return { documents: total, seconds, rate: seconds > 0 ? total / seconds : 0 };
  }
}
