/**
 * `amk recover start|unlock|status` (docs/runbooks/recovery.md): the recovery state machine.
 *
 * `start` runs it (locally: the synthesised ASL on the local runner; AWS: StartExecution). At AwaitUnlock the
 * execution waits for an administrator: in this terminal the command asks for the passphrase and the TOTP code
 * (without echo) and calls the real unlock function; from another terminal `amk recover unlock` does the same (the
 * two processes meet through the 0700 task-callback folder of the state folder, AMK_TASK_CALLBACKS=file:...); for
 * automation `--passphrase-fd/--code-fd` (or -env) unlock once the execution waits. The passphrase and the code go
 * to the unlock function only: never into the execution's input, output or history.
 */
import { userInfo } from "node:os";
import type { Command } from "commander";
import { FileTaskCallbacks } from "../../core/adapters/file-task-callbacks/file-task-callbacks.js";
import { zeroize } from "../../core/shared/bytes.js";
import { readWorkspace, type WorkspaceState } from "../../core/workspaces/workspace.js";
import { recordRecoveryFailure } from "../../core/recovery/failure.js";
import {
  openRuntime,
  outputOf,
  positiveInt,
  withExamples,
  withExitCodes,
  withJson,
} from "../runtime/command.js";
import type { Runtime } from "../runtime/context.js";
import {
  CheckFailedError,
  ConflictError,
  exitCodeOfCode,
  ExitCode,
  InterruptedError,
  NotFoundError,
  UsageError,
} from "../runtime/errors.js";
import type { Output } from "../runtime/output.js";
import {
  addSecretOptions,
  interactive,
  promptHidden,
  readCode,
  readPassphrase,
  type SecretSource,
} from "../runtime/secrets.js";
import {
  documentsOnLiveKeys,
  runWorkflow,
  stateMachineArnFromEnv,
  watchRewrap,
  type TaskEvent,
} from "../runtime/workflows.js";

type UnlockAnswer =
  | {
      ok: true;
      workspaceId: string;
      recoveryId: string;
      kitVersion: number;
      masterKeys: { keyId: string; kcv: string }[];
      resumed: boolean;
      note?: string;
    }
  | { ok: false; error: { code: string; message: string; retryable?: boolean } };

/** An unlock the function refused: its code decides the exit code (4 for a wrong passphrase or code). */
export class UnlockRefusedError extends Error {
  override name = "UnlockRefusedError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Calls the real unlock function: in process (local), or Lambda Invoke (AWS, AMK_UNLOCK_FUNCTION_NAME). */
async function callUnlock(
  rt: Runtime,
  request: { workspaceId: string; adminId: string; passphrase: string; code: string; kit?: string },
  functionName?: string,
): Promise<UnlockAnswer> {
  const event = {
    workspaceId: request.workspaceId,
    adminId: request.adminId,
    passphrase: request.passphrase,
    factor: { type: "totp" as const, code: request.code },
    ...(request.kit ? { kit: request.kit } : {}),
  };
  if (rt.local) {
    const { handler } = await import("../../functions/recovery-unlock/handler.js");
    return (await handler(event)) as UnlockAnswer;
  }
  const name = functionName ?? process.env.AMK_UNLOCK_FUNCTION_NAME;
  if (!name) {
    throw new UsageError(
      "AWS mode needs the unlock function",
      "pass --function-name or set AMK_UNLOCK_FUNCTION_NAME (stack output RecoveryUnlockFunctionName)",
    );
  }
  const { InvokeCommand, LambdaClient } = await import("@aws-sdk/client-lambda");
  const payload = Buffer.from(JSON.stringify(event), "utf8");
  const client = new LambdaClient({});
  try {
    const r = await client.send(new InvokeCommand({ FunctionName: name, Payload: payload }));
    if (r.FunctionError) {
      throw new CheckFailedError(
        `the unlock function failed (${r.FunctionError}); see its logs`,
        "UNLOCK_FUNCTION_ERROR",
      );
    }
    return JSON.parse(Buffer.from(r.Payload ?? new Uint8Array()).toString("utf8")) as UnlockAnswer;
  } finally {
    zeroize(payload);
    client.destroy();
  }
}

function refusal(a: Extract<UnlockAnswer, { ok: false }>): UnlockRefusedError {
  return new UnlockRefusedError(a.error.code, `unlock refused: ${a.error.message} (${a.error.code})`);
}

function reportUnlocked(out: Output, a: Extract<UnlockAnswer, { ok: true }>, toStderr: boolean): void {
  const say = (t: string) => (toStderr ? out.note(t) : out.line(t));
  say(
    `Kit v${a.kitVersion} unlocked: ${a.masterKeys.length} master key version(s) imported into the HSM, KCVs checked.`,
  );
  for (const m of a.masterKeys) say(`    ${m.keyId}  KCV ${m.kcv}`);
  say(
    a.resumed
      ? "The waiting recovery continues."
      : `Nothing waited for this unlock (${a.note ?? "the execution timed out or stopped"}).`,
  );
}

function onlyAdmin(ws: WorkspaceState): string | undefined {
  const ids = Object.keys(ws.admins);
  return ids.length === 1 ? ids[0] : undefined;
}

const PHASES: Record<string, (o: Record<string, unknown>) => string> = {
  RecoveryStart: (o) =>
    `validated: kit v${String(o.kitVersion)} intact and covering every key in use${o.resumed ? " (resuming the recovery)" : ""}`,
  RecoveryRotate: (o) => `rotated: fresh master key ${String(o.toKeyId)} active; re-wrapping every DEK`,
  RotationCensus: (o) => `census: ${String(o.remaining)} wrap records left on the recovered keys`,
  RecoveryVerify: (o) =>
    `verified: ${String(o.canaries)} canaries and ${String(o.sampled)} sampled documents decrypt under the new key`,
  RecoveryInvalidateTokens: (o) =>
    `access tokens issued before are now rejected (token epoch ${String(o.epoch)})`,
  RecoveryComplete: (o) => `completed: recovered keys retired, new kit v${String(o.kitVersion)} in the vault`,
  RecoveryFailure: (o) => `FAILED at step ${String(o.step)}: ${String(o.error)} (the old keys are untouched)`,
};

interface StartOptions extends Partial<Record<"passphraseFd" | "codeFd", number>> {
  requestedBy?: string;
  reason: string;
  kitVersion?: number;
  executionName?: string;
  unlockTimeout: number;
  admin?: string;
  prompt: boolean;
  passphraseEnv?: string;
  codeEnv?: string;
  stateMachineArn?: string;
  functionName?: string;
  json?: boolean;
}

/** The error name `amk recover release` records for the way the lock's execution ended. */
const ENDED_EXECUTION_ERROR: Record<string, string> = {
  ABORTED: "ExecutionAborted",
  TIMED_OUT: "ExecutionTimedOut",
  FAILED: "ExecutionFailed",
  SUCCEEDED: "ExecutionSucceeded",
};

export function register(program: Command): void {
  const recover = program
    .command("recover")
    .description(
      "recover a workspace with the kit (passphrase + TOTP): rotate to a fresh key, re-wrap, invalidate tokens",
    );

  const start = withJson(
    addSecretOptions(
      addSecretOptions(
        recover
          .command("start")
          .description(
            "run the recovery workflow: validate the kit, wait for an administrator to unlock it (asked here on a " +
              "terminal, or `amk recover unlock` from another one), import the keys into the HSM, rotate to a fresh " +
              "key, re-wrap every DEK (progress bar), verify, invalidate every earlier access token, issue a new kit; with " +
              "--passphrase-fd/--code-fd (or -env) it unlocks by itself once the recovery waits (automation)",
          )
          .argument("<workspace>", "workspace id")
          .option("--requested-by <who>", "recorded with the recovery (default: your user name)")
          .option("--reason <why>", "recorded with the recovery", "administrators lost access")
          .option(
            "--kit-version <n>",
            "use an older issued kit version (default: the current kit)",
            positiveInt("--kit-version"),
          )
          .option(
            "--execution-name <name>",
            "the execution's name; the name of a stopped recovery resumes it",
          )
          .option(
            "--unlock-timeout <minutes>",
            "how long to wait for the unlock",
            positiveInt("--unlock-timeout", 1440),
            60,
          )
          .option("--admin <id>", "the administrator who unlocks in this terminal (default: the only one)")
          .option("--no-prompt", "never ask here: wait for `amk recover unlock` from another terminal")
          .option(
            "--state-machine-arn <arn>",
            "AWS mode: the recovery state machine (default AMK_RECOVERY_STATE_MACHINE_ARN)",
          )
          .option(
            "--function-name <name>",
            "AWS mode: the unlock function (default AMK_UNLOCK_FUNCTION_NAME)",
          ),
        "passphrase",
        "passphrase",
      ),
      "code",
      "TOTP code",
    ),
  );
  withExitCodes(
    withExamples(start, [
      "amk recover start acme --admin alice",
      "amk recover start acme --no-prompt            # then, elsewhere: amk recover unlock acme --admin alice",
      "amk recover start acme --admin ops --passphrase-fd 3 --code-fd 3 3<secrets",
    ]),
    [0, 1, 2, 3, 4, 5, 6, 130],
  ).action(async (workspaceId: string, opts: StartOptions, cmd: Command) => {
    const out = outputOf(opts);
    const automated =
      opts.passphraseFd !== undefined ||
      opts.passphraseEnv !== undefined ||
      opts.codeFd !== undefined ||
      opts.codeEnv !== undefined;
    if (opts.executionName && !/^[A-Za-z0-9_-]{1,80}$/.test(opts.executionName)) {
      throw new UsageError("--execution-name: 1-80 letters, digits, - and _");
    }
    const rt = await openRuntime(cmd);
    const ws = await rt.requireWorkspace(workspaceId);
    const admin = opts.admin ?? onlyAdmin(ws);
    if (opts.admin && !ws.admins[opts.admin]) {
      throw new UsageError(`administrator ${opts.admin} is not enrolled in ${workspaceId}`);
    }
    if (automated && !admin) throw new UsageError("automation needs --admin <id>");
    let kitVaultVersionId: string | undefined;
    if (opts.kitVersion !== undefined) {
      const record = ws.kits.find((k) => k.kitVersion === opts.kitVersion);
      if (!record) throw new UsageError(`no kit v${opts.kitVersion} was issued for ${workspaceId}`);
      kitVaultVersionId = record.vaultVersionId;
    }
    const running = ws.recovery?.status === "running" ? ws.recovery : undefined;
    if (running && opts.executionName !== running.executionName) {
      throw new ConflictError(
        `recovery ${running.recoveryId} of ${workspaceId} is already running (execution ${running.executionName})`,
        "RECOVERY_IN_PROGRESS",
        running.awaiting && !running.unlocked
          ? `it waits for an unlock: \`amk recover unlock ${workspaceId} --admin <id>\`; if the \`amk recover start\` that ran it stopped, resume it with --execution-name ${running.executionName}`
          : `if the \`amk recover start\` that ran it stopped, resume it with --execution-name ${running.executionName}`,
      );
    }
    const executionName =
      opts.executionName ?? `recovery-${Date.now().toString(36)}-${workspaceId}`.slice(0, 80);
    const started = Date.now();
    out.note(`Recovering ${workspaceId} (execution ${executionName}).`);

    // The unlock: automation secrets, a prompt here, or another terminal.
    const stopPrompt = new AbortController();
    const stopWait = new AbortController();
    let refused: UnlockRefusedError | undefined;
    let interrupted = false;
    let unlockedHere: Extract<UnlockAnswer, { ok: true }> | undefined;
    // Ctrl-C while the execution waits for the unlock stops the wait (the recovery records its failure and can be
    // started again); at any other time it ends the process as usual.
    let waitingNow = false;
    const onSigint = (): void => {
      if (!waitingNow) {
        process.kill(process.pid, "SIGINT"); // the handler is gone (once): the default ends the process
        return;
      }
      interrupted = true;
      stopPrompt.abort();
      stopWait.abort();
    };
    process.once("SIGINT", onSigint);

    const unlockOnce = async (source: {
      passphrase: SecretSource;
      code: SecretSource;
    }): Promise<UnlockAnswer> => {
      const passphrase = await readPassphrase(source.passphrase, stopPrompt.signal);
      const code = await readCode(source.code, stopPrompt.signal);
      return callUnlock(rt, { workspaceId, adminId: admin!, passphrase, code }, opts.functionName);
    };

    const whenWaiting = async (): Promise<void> => {
      out.note("The recovery waits for an administrator to unlock the kit (passphrase + TOTP code).");
      if (automated) {
        const a = await unlockOnce({
          passphrase: { fd: opts.passphraseFd, env: opts.passphraseEnv },
          code: { fd: opts.codeFd, env: opts.codeEnv },
        });
        if (a.ok) {
          unlockedHere = a;
          reportUnlocked(out, a, true);
        } else {
          refused = refusal(a);
          out.note(refused.message);
          stopWait.abort(); // automation does not wait for a second try
        }
        return;
      }
      if (interactive() && opts.prompt && admin) {
        out.note(
          `Unlock it here as ${admin} (or from another terminal: amk recover unlock ${workspaceId} --admin <id>).`,
        );
        for (let attempt = 1; attempt <= 5 && !stopPrompt.signal.aborted; attempt++) {
          const passphrase = await promptHidden("Kit passphrase: ", stopPrompt.signal);
          if (passphrase === undefined) return;
          const code = await promptHidden("TOTP code: ", stopPrompt.signal);
          if (code === undefined) return;
          const a = await callUnlock(
            rt,
            { workspaceId, adminId: admin, passphrase, code: code.replace(/\s+/g, "") },
            opts.functionName,
          );
          if (a.ok) {
            unlockedHere = a;
            reportUnlocked(out, a, true);
            return;
          }
          out.note(`Unlock refused: ${a.error.message} (${a.error.code})`);
          if (exitCodeOfCode(a.error.code) !== ExitCode.AUTH && a.error.code !== "INVALID_INPUT") return;
        }
        return;
      }
      out.note(
        `Unlock it from another terminal: amk recover unlock ${workspaceId} --admin ${admin ?? "<id>"}` +
          `${cmd.optsWithGlobals().home ? ` --home ${String(cmd.optsWithGlobals().home)}` : ""}`,
      );
    };
    const unlocking: Promise<void>[] = [];
    const startUnlock = (): void => {
      unlocking.push(
        whenWaiting().catch((err: unknown) => {
          if (err instanceof InterruptedError) onSigint();
          else {
            refused = err instanceof UnlockRefusedError ? err : undefined;
            out.note(`amk: ${(err as Error).message}`);
            if (automated) stopWait.abort();
          }
        }),
      );
    };

    const watch = watchRewrap(rt.events(), workspaceId, {
      label: "re-wrap",
      total: await documentsOnLiveKeys(rt.events(), workspaceId),
    });
    const onTask = (e: TaskEvent): void => {
      if (e.phase !== "end") return;
      const say = PHASES[e.functionId];
      if (!say) return;
      const line = `  ${say((e.output ?? {}) as Record<string, unknown>)}`;
      if (e.functionId === "RotationCensus" && (e.output as { remaining?: number })?.remaining === 0) {
        void watch.stop(true).then(() => out.note(line));
      } else out.note(line);
    };
    let taskTokens;
    let awsWatcher: Promise<void> | undefined;
    if (rt.local) {
      const { awaitUnlockBridge } = await import("../../workflows/local-app.js");
      const callbacks = new FileTaskCallbacks(rt.local.callbacksDir);
      callbacks.ensureFolder();
      const waiter = {
        wait: async (token: string, timeoutMs: number, signal?: AbortSignal) => {
          waitingNow = true;
          try {
            return await callbacks.wait(token, timeoutMs, signal);
          } finally {
            waitingNow = false;
            stopPrompt.abort(); // unlocked (here or elsewhere), timed out or stopped: no more prompts
          }
        },
      };
      taskTokens = awaitUnlockBridge(opts.unlockTimeout * 60_000, waiter, {
        signal: stopWait.signal,
        onWaiting: startUnlock,
      });
    } else {
      // AWS: the execution's wait shows in the workspace stream (RecoveryAwaitingUnlock).
      let stop = false;
      awsWatcher = (async () => {
        while (!stop && !stopPrompt.signal.aborted) {
          const now = await readWorkspace(rt.events(), workspaceId).catch(() => undefined);
          const r = now?.recovery;
          if (r?.executionName === executionName && r.status === "running" && r.awaiting && !r.unlocked) {
            waitingNow = true;
            startUnlock();
            return;
          }
          if (r?.executionName === executionName && r.status !== "running") return;
          await new Promise((res) => setTimeout(res, 2000));
        }
      })();
      stopPrompt.signal.addEventListener("abort", () => (stop = true));
    }

    let result;
    try {
      result = await runWorkflow(rt, "recovery", {
        input: {
          workspaceId,
          requestedBy: opts.requestedBy ?? `${userInfo().username} (amk)`,
          reason: opts.reason,
          ...(kitVaultVersionId ? { kitVaultVersionId } : {}),
        },
        executionName,
        onTask,
        ...(taskTokens ? { taskTokens } : {}),
        ...(opts.stateMachineArn ? { stateMachineArn: opts.stateMachineArn } : {}),
        // AWS: stop watching a refused or interrupted unlock (the execution itself waits until its timeout).
        ...(rt.local ? {} : { signal: stopWait.signal }),
      });
    } finally {
      stopPrompt.abort();
      process.off("SIGINT", onSigint);
      await Promise.all(unlocking);
      await awsWatcher;
    }
    const rewrap = await watch.stop(result.status === "SUCCEEDED");
    const seconds = (Date.now() - started) / 1000;
    if (interrupted) throw new InterruptedError();
    if (result.status !== "SUCCEEDED") {
      const after = await readWorkspace(rt.events(), workspaceId);
      const failure = after.recovery?.failure;
      out.result({
        ok: false,
        workspaceId,
        executionName,
        status: result.status,
        failure,
        ...(refused ? { unlock: { refused: true, code: refused.code } } : {}),
      });
      if (refused) throw refused;
      if (result.status === "ABORTED" && !rt.local) {
        throw new CheckFailedError(
          `stopped watching execution ${result.executionArn ?? executionName}: it still waits for an unlock`,
          "RECOVERY_NOT_WATCHED",
          `unlock it with \`amk recover unlock ${workspaceId} --admin <id>\`, or stop it in the Step Functions console`,
        );
      }
      throw new CheckFailedError(
        `the recovery failed${failure ? ` at step ${failure.step}: ${failure.error}` : ` (${result.status})`}; the old keys are untouched`,
        "RECOVERY_FAILED",
        `fix the cause and run \`amk recover start ${workspaceId}\` again: it resumes (see \`amk alerts\`)`,
      );
    }
    const o = (result.output ?? {}) as {
      newKeyId?: string;
      recoveredKeyIds?: string[];
      kitVersion?: number;
      tokenEpoch?: number;
      documentsOnNewKey?: number;
      timingsMs?: Record<string, number>;
    };
    out.line(`Workspace ${workspaceId} recovered in ${seconds.toFixed(1)} s.`);
    out.fact("recovered keys", (o.recoveredKeyIds ?? []).join(", "));
    out.fact("new master key", o.newKeyId);
    out.fact("documents re-wrapped", rewrap?.documents ?? 0);
    out.fact("documents on new key", o.documentsOnNewKey);
    out.fact("token epoch", `${o.tokenEpoch} (tokens issued before are rejected)`);
    out.fact(
      "new recovery kit",
      o.kitVersion ? `v${o.kitVersion}: every administrator acknowledges it (amk kit ack)` : undefined,
    );
    out.result({
      ok: true,
      workspaceId,
      executionName,
      newKeyId: o.newKeyId,
      recoveredKeyIds: o.recoveredKeyIds,
      kitVersion: o.kitVersion,
      tokenEpoch: o.tokenEpoch,
      documentsOnNewKey: o.documentsOnNewKey,
      documentsRewrapped: rewrap?.documents ?? 0,
      unlockedHere: Boolean(unlockedHere),
      timingsMs: o.timingsMs,
      seconds: Number(seconds.toFixed(2)),
    });
  });

  withExitCodes(
    withExamples(
      withJson(
        addSecretOptions(
          addSecretOptions(
            recover
              .command("unlock")
              .description(
                "unlock the kit for the waiting recovery with your passphrase and TOTP code (asked without echo): the " +
                  "unlock function opens the kit, imports the master keys into the HSM with their KCVs checked, and " +
                  "resumes the execution; a wrong passphrase or code is counted and the recovery keeps waiting",
              )
              .argument("<workspace>", "workspace id")
              .requiredOption("--admin <id>", "your administrator id")
              .option("--kit-file <path>", "open this kit file (armoured) instead of the vault's current kit")
              .option(
                "--function-name <name>",
                "AWS mode: the unlock function (default AMK_UNLOCK_FUNCTION_NAME)",
              ),
            "passphrase",
            "passphrase",
          ),
          "code",
          "TOTP code",
        ),
      ),
      [
        "amk recover unlock acme --admin alice",
        "amk recover unlock acme --admin ops --passphrase-fd 0 --code-fd 0 <secrets",
      ],
    ),
    [0, 2, 3, 4, 5, 6],
  ).action(
    async (
      workspaceId: string,
      opts: {
        admin: string;
        kitFile?: string;
        functionName?: string;
        passphraseFd?: number;
        passphraseEnv?: string;
        codeFd?: number;
        codeEnv?: string;
        json?: boolean;
      },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      const rt = await openRuntime(cmd);
      const ws = await rt.requireWorkspace(workspaceId);
      const r = ws.recovery;
      if (r?.status !== "running") {
        throw new ConflictError(
          `no recovery of ${workspaceId} is running`,
          "RECOVERY_STATE",
          `start one with \`amk recover start ${workspaceId}\``,
        );
      }
      let kit: string | undefined;
      if (opts.kitFile) {
        const { readFileSync } = await import("node:fs");
        kit = readFileSync(opts.kitFile, "utf8");
      }
      const passphrase = await readPassphrase({ fd: opts.passphraseFd, env: opts.passphraseEnv });
      const code = await readCode({ fd: opts.codeFd, env: opts.codeEnv });
      const a = await callUnlock(
        rt,
        { workspaceId, adminId: opts.admin, passphrase, code, ...(kit ? { kit } : {}) },
        opts.functionName,
      );
      if (!a.ok) {
        out.result({ ok: false, workspaceId, error: a.error });
        throw refusal(a);
      }
      reportUnlocked(out, a, false);
      out.result({
        ok: true,
        workspaceId,
        recoveryId: a.recoveryId,
        kitVersion: a.kitVersion,
        masterKeys: a.masterKeys,
        resumed: a.resumed,
        ...(a.note ? { note: a.note } : {}),
      });
    },
  );

  withExitCodes(
    withJson(
      recover
        .command("release")
        .description(
          "AWS mode: release the lock of a recovery whose execution ended without recording it (stopped by hand, " +
            "timed out, or its RecordFailure could not run): records RecoveryFailed (step `released`) once Step " +
            "Functions says the execution is no longer running; `amk recover start` then resumes the same recovery",
        )
        .argument("<workspace>", "workspace id")
        .option(
          "--state-machine-arn <arn>",
          "the recovery state machine (default AMK_RECOVERY_STATE_MACHINE_ARN)",
        ),
    ),
    [0, 2, 3, 5, 6],
  ).action(async (workspaceId: string, opts: { stateMachineArn?: string; json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    const rt = await openRuntime(cmd);
    const ws = await rt.requireWorkspace(workspaceId);
    const r = ws.recovery;
    if (r?.status !== "running") {
      throw new ConflictError(
        `no recovery of ${workspaceId} holds the lock${r ? ` (the last one, ${r.recoveryId}, is ${r.status})` : ""}`,
        "NOTHING_TO_RELEASE",
      );
    }
    if (rt.local) {
      // A local execution runs inside the `amk recover start` that started it: nothing else can tell whether it
      // still runs, and the same execution name resumes it anyway.
      throw new ConflictError(
        `locally, recovery ${r.recoveryId} is resumed, not released`,
        "RELEASE_NOT_LOCAL",
        `stop the \`amk recover start\` that runs it (if any), then: amk recover start ${workspaceId} --execution-name ${r.executionName}`,
      );
    }
    const arn = opts.stateMachineArn ?? stateMachineArnFromEnv("recovery");
    if (!arn) {
      throw new UsageError(
        "release needs the recovery state machine",
        "pass --state-machine-arn or set AMK_RECOVERY_STATE_MACHINE_ARN (stack output RecoveryStateMachineArn)",
      );
    }
    const [{ SFNClient }, { describeExecution, executionArnOf }] = await Promise.all([
      import("@aws-sdk/client-sfn"),
      import("../../core/adapters/sfn/sfn-executions.js"),
    ]);
    const executionArn = executionArnOf(arn, r.executionName);
    const client = new SFNClient({});
    let facts;
    try {
      facts = await describeExecution(client, executionArn);
    } finally {
      client.destroy();
    }
    if (facts === undefined) {
      throw new NotFoundError(
        `execution ${r.executionName} (holding recovery ${r.recoveryId}) is not an execution of ${arn}`,
        "EXECUTION_NOT_FOUND",
        "check --state-machine-arn: the lock is released only once its own execution is seen to have ended",
      );
    }
    if (facts.status === "RUNNING" || facts.status === "PENDING_REDRIVE") {
      throw new ConflictError(
        `execution ${r.executionName} of recovery ${r.recoveryId} is still ${facts.status.toLowerCase().replace("_", " ")}`,
        "EXECUTION_RUNNING",
        `let it finish, or stop it first: aws stepfunctions stop-execution --execution-arn ${executionArn}`,
      );
    }
    const recorded = await recordRecoveryFailure(
      { events: rt.events(), alerts: await rt.alerts() },
      {
        workspaceId,
        executionName: r.executionName,
        step: "released",
        error: {
          name: ENDED_EXECUTION_ERROR[facts.status] ?? "ExecutionEnded",
          message:
            `execution ${r.executionName} ended ${facts.status}${facts.stopDate ? ` at ${facts.stopDate}` : ""}; ` +
            `lock released by ${userInfo().username} with amk recover release`,
        },
      },
    );
    if (!recorded.recorded) {
      throw new ConflictError(
        `recovery ${r.recoveryId} changed meanwhile; see amk recover status ${workspaceId}`,
      );
    }
    out.line(
      `Released recovery ${r.recoveryId} of ${workspaceId}: its execution ${r.executionName} ended ${facts.status}.`,
    );
    out.line(`  Start it again (it resumes the same recovery): amk recover start ${workspaceId}`);
    out.result({
      ok: true,
      workspaceId,
      released: true,
      recoveryId: r.recoveryId,
      executionName: r.executionName,
      executionStatus: facts.status,
      ...(facts.stopDate ? { stoppedAt: facts.stopDate } : {}),
    });
  });

  withExitCodes(
    withJson(
      recover
        .command("status")
        .description(
          "the workspace's last recovery: running, waiting for an unlock, completed or failed (and where)",
        )
        .argument("<workspace>", "workspace id"),
    ),
    [0, 2, 3, 5],
  ).action(async (workspaceId: string, opts: { json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    const rt = await openRuntime(cmd);
    const ws = await rt.requireWorkspace(workspaceId);
    const r = ws.recovery;
    if (!r) {
      out.line(`No recovery of ${workspaceId} was ever started.`);
      out.result({ ok: true, workspaceId, recovery: null });
      return;
    }
    const waiting = r.status === "running" && Boolean(r.awaiting) && !r.unlocked;
    const runnerWaiting =
      rt.local && r.awaiting
        ? new FileTaskCallbacks(rt.local.callbacksDir).isWaiting(r.awaiting.taskToken)
        : undefined;
    let left: number | undefined;
    if (r.status === "running" && ws.rotation?.status === "running") {
      left = 0;
      for (const k of ws.rotation.fromKeyIds) left += await rt.events().countDocumentsByKeyId(workspaceId, k);
    }
    out.line(
      `Recovery ${r.recoveryId} of ${workspaceId}: ${r.status}${waiting ? ", waiting for an unlock" : ""}.`,
    );
    out.fact("execution", r.executionName);
    out.fact("requested by", r.requestedBy);
    out.fact("started", r.startedAt);
    out.fact("kit", `v${r.kitVersion} (${r.kitFingerprint})`);
    if (waiting) {
      out.fact("unlock wait expires", r.awaiting?.expiresAt);
      if (runnerWaiting === false) {
        out.line(
          `  The \`amk recover start\` that waited is gone: resume with \`amk recover start ${workspaceId} --execution-name ${r.executionName}\`.`,
        );
      } else out.line(`  Unlock it: amk recover unlock ${workspaceId} --admin <id>`);
    }
    if (r.unlocked) {
      out.fact("unlocked by", r.unlocked.adminId);
      for (const m of r.unlocked.masterKeys) out.fact(m.keyId, `KCV ${m.kcv}`);
    }
    if (left !== undefined) out.fact("documents to re-wrap", left);
    if (r.failure) out.fact("failed", `at step ${r.failure.step}: ${r.failure.error}`);
    out.result({
      ok: true,
      workspaceId,
      recovery: {
        recoveryId: r.recoveryId,
        status: r.status,
        executionName: r.executionName,
        requestedBy: r.requestedBy,
        startedAt: r.startedAt,
        kitVersion: r.kitVersion,
        kitFingerprint: r.kitFingerprint,
        waitingForUnlock: waiting,
        ...(runnerWaiting !== undefined ? { localRunnerWaiting: runnerWaiting } : {}),
        ...(r.awaiting ? { unlockExpiresAt: r.awaiting.expiresAt } : {}),
        ...(r.unlocked ? { unlocked: r.unlocked } : {}),
        ...(r.failure ? { failure: r.failure } : {}),
        ...(left !== undefined ? { documentsToRewrap: left } : {}),
      },
    });
  });
}
