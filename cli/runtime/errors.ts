/**
 * The CLI's exit codes and how every error becomes one (docs/cli.md, "Exit codes"). Domain errors are mapped by
 * their stable `code` (core/**\/errors.ts); the CLI's own errors carry their exit code. Messages never carry a
 * secret: domain messages name ids and versions only, and the CLI's own messages are written here.
 */
import { AmkError } from "../../core/shared/errors.js";

export const ExitCode = {
  /** Done. */
  OK: 0,
  /** A check or an operation failed: a drill, a workflow, a tampered kit, a rejected token, an unexpected error. */
  FAILED: 1,
  /** Bad usage or input: unknown option, invalid id, malformed kit file, weak passphrase, no terminal to prompt. */
  USAGE: 2,
  /** The engines are not running or cannot be reached (locally: start them with `amk local up`). */
  ENGINES: 3,
  /** Authentication failed: wrong passphrase, wrong or replayed code, wrong factor, slot locked. */
  AUTH: 4,
  /** Not found: unknown workspace, document or kit. */
  NOT_FOUND: 5,
  /** State conflict: already provisioned, a recovery already running, nothing waiting for an unlock. */
  CONFLICT: 6,
  /** Interrupted (Ctrl-C at a prompt). */
  INTERRUPTED: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODE_TABLE: readonly [number, string][] = [
  [0, "success"],
  [1, "a check or an operation failed (drill, workflow, tampered kit, rejected token)"],
  [2, "bad usage or input (unknown option, invalid id, malformed kit file, weak passphrase)"],
  [3, "engines not running or unreachable (locally: start them with `amk local up`)"],
  [4, "authentication failed (wrong passphrase or code, replayed code, slot locked)"],
  [5, "not found (unknown workspace, document or kit)"],
  [6, "state conflict (already provisioned, a recovery running, nothing waiting for an unlock)"],
  [130, "interrupted"],
];

/** An error of the CLI itself, with its exit code and an optional hint (what to do). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class UsageError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.USAGE, "USAGE", hint);
  }
}

export class EnginesNotRunningError extends CliError {
  constructor(message: string, hint = "start them with `amk local up`") {
    super(message, ExitCode.ENGINES, "ENGINES_NOT_RUNNING", hint);
  }
}

export class NotFoundError extends CliError {
  constructor(message: string, code = "NOT_FOUND", hint?: string) {
    super(message, ExitCode.NOT_FOUND, code, hint);
  }
}

export class ConflictError extends CliError {
  constructor(message: string, code = "CONFLICT", hint?: string) {
    super(message, ExitCode.CONFLICT, code, hint);
  }
}

/** A check that ran and failed (the command printed what failed). */
export class CheckFailedError extends CliError {
  constructor(message: string, code = "CHECK_FAILED", hint?: string) {
    super(message, ExitCode.FAILED, code, hint);
  }
}

export class InterruptedError extends CliError {
  constructor() {
    super("interrupted", ExitCode.INTERRUPTED, "INTERRUPTED");
  }
}

/** Domain error codes -> exit codes (anything else: 1). */
const BY_CODE: Record<string, number> = {
  INVALID_INPUT: ExitCode.USAGE,
  KIT_HEADER: ExitCode.USAGE,
  KIT_UNSUPPORTED_VERSION: ExitCode.USAGE,
  IDEMPOTENCY_KEY_MISMATCH: ExitCode.USAGE,

  EVENT_STORE_UNAVAILABLE: ExitCode.ENGINES,
  EVENT_STORE_CONFIG: ExitCode.ENGINES,
  HSM_UNAVAILABLE: ExitCode.ENGINES,
  KEY_STORE_CONFIG: ExitCode.ENGINES,
  KEY_STORE_CLOSED: ExitCode.ENGINES,
  PIN_FILE_NOT_FOUND: ExitCode.ENGINES,
  VAULT_UNAVAILABLE: ExitCode.ENGINES,
  TRANSPORT_UNAVAILABLE: ExitCode.ENGINES,

  KIT_WRONG_PASSPHRASE: ExitCode.AUTH,
  KIT_WRONG_FACTOR: ExitCode.AUTH,
  KIT_SLOT_NOT_FOUND: ExitCode.AUTH,
  TOTP_CODE_INVALID: ExitCode.AUTH,
  TOTP_CODE_REPLAYED: ExitCode.AUTH,
  FACTOR_LOCKED: ExitCode.AUTH,
  FACTOR_NOT_ENROLLED: ExitCode.AUTH,

  WORKSPACE_NOT_PROVISIONED: ExitCode.NOT_FOUND,
  DOCUMENT_KEYS_NOT_FOUND: ExitCode.NOT_FOUND,
  DOCUMENT_DELETED: ExitCode.NOT_FOUND,
  ARTIFACT_NOT_FOUND: ExitCode.NOT_FOUND,
  SECRET_NOT_FOUND: ExitCode.NOT_FOUND,
  SECRET_VERSION_NOT_FOUND: ExitCode.NOT_FOUND,
  KEY_NOT_FOUND: ExitCode.NOT_FOUND,

  RECOVERY_IN_PROGRESS: ExitCode.CONFLICT,
  RECOVERY_STATE: ExitCode.CONFLICT,
  ROTATION_STATE: ExitCode.CONFLICT,
  KIT_STATE: ExitCode.CONFLICT,
  DOCUMENT_KEYS_EXIST: ExitCode.CONFLICT,
  TASK_TOKEN_EXPIRED: ExitCode.CONFLICT,
  UNLOCK_BUSY: ExitCode.CONFLICT,
  CONCURRENT_UPDATE: ExitCode.CONFLICT,
  EXPECTED_VERSION_CONFLICT: ExitCode.CONFLICT,
  CENSUS_NOT_EMPTY: ExitCode.CONFLICT,
};

/** The exit code of a domain error code (`KIT_WRONG_PASSPHRASE` -> 4); 1 for codes not in the table. */
export function exitCodeOfCode(code: string | undefined): number {
  return (code ? BY_CODE[code] : undefined) ?? ExitCode.FAILED;
}

function hintFor(code: string | undefined, err: unknown, mode: "local" | "aws"): string | undefined {
  const engines =
    mode === "local"
      ? "start the local engines with `amk local up` (check them with `amk local status`)"
      : "check --endpoint / --profile / --region and the AMK_* settings (docs/cli.md, AWS mode)";
  switch (code) {
    case "EVENT_STORE_UNAVAILABLE":
    case "EVENT_STORE_CONFIG":
    case "HSM_UNAVAILABLE":
    case "KEY_STORE_CONFIG":
    case "KEY_STORE_CLOSED":
    case "PIN_FILE_NOT_FOUND":
    case "VAULT_UNAVAILABLE":
    case "TRANSPORT_UNAVAILABLE":
      return engines;
    case "WORKSPACE_NOT_PROVISIONED":
      return "check the workspace id, or provision it with `amk workspace provision <id>`";
    case "FACTOR_LOCKED": {
      const until = err instanceof AmkError ? err.context.lockedUntil : undefined;
      return `too many failed attempts${typeof until === "string" ? `: locked until ${until}` : ""}; another administrator may unlock meanwhile`;
    }
    case "TOTP_CODE_REPLAYED":
      return "a code is accepted once: wait for the next code of your authenticator";
    case "TOTP_CODE_INVALID":
      return "check the authenticator's clock and the account (workspace:administrator)";
    case "KIT_WRONG_PASSPHRASE":
      return "failed attempts are counted; after 5 the slot locks for a while";
    case "KIT_HEADER":
    case "KIT_UNSUPPORTED_VERSION":
      return "is it an armoured kit written by `amk kit export` (-----BEGIN AMK RECOVERY KIT-----)?";
    case "KIT_INTEGRITY":
      return "the kit was changed or damaged: use another copy (the vault keeps every version; see `amk kit show`)";
    default:
      return undefined;
  }
}

export interface DescribedError {
  readonly exitCode: number;
  readonly code: string;
  readonly name: string;
  readonly message: string;
  readonly hint?: string;
}

/** What the CLI prints for an error (never its cause chain: causes may hold SDK payloads). */
export function describeError(err: unknown, mode: "local" | "aws" = "local"): DescribedError {
  if (err instanceof CliError) {
    return {
      exitCode: err.exitCode,
      code: err.code,
      name: err.name,
      message: err.message,
      ...(err.hint ? { hint: err.hint } : {}),
    };
  }
  const code =
    err instanceof AmkError
      ? err.code
      : typeof (err as { code?: unknown })?.code === "string" &&
          /^[A-Z][A-Z_]+$/.test((err as { code: string }).code)
        ? (err as { code: string }).code
        : undefined;
  if (err instanceof Error && code) {
    const hint = hintFor(code, err, mode);
    return {
      exitCode: exitCodeOfCode(code),
      code,
      name: err.name,
      message: err.message,
      ...(hint ? { hint } : {}),
    };
  }
  const e = err as { name?: string; message?: string; code?: string };
  return {
    exitCode: ExitCode.FAILED,
    code: "INTERNAL",
    name: e?.name ?? "Error",
    message: `${e?.message ?? String(err)}${e?.code ? ` (${e.code})` : ""}`,
    hint: "run again with AMK_DEBUG=1 for the stack trace",
  };
}
