/**
 * The local alert log: `FileAlerts` appends one JSON line per alert (its fields plus `at`, the ISO time it was
 * raised) to a file the CLI shows with `readAlertLog`. The file is created with mode 0600 (and its folder, 0700, if
 * missing); an existing file that others can read is narrowed to 0600 on the first write. Alerts carry no secret,
 * but they name workspaces and administrators.
 *
 * Each alert is one line appended to a file opened with O_APPEND, so writers (even in other processes) add whole
 * lines of ordinary size after each other. The reader skips lines it cannot parse (a torn last line after a crash,
 * a hand edit).
 */
import { chmod, mkdir, open } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Alert, AlertSeverity, Alerts } from "../../alerts/alerts.js";
import { AmkError, InvalidInputError } from "../../shared/errors.js";

/** An alert as the log keeps it. */
export type LoggedAlert = Alert & { readonly at: string };

export interface FileAlertsOptions {
  /** Clock for `at`; default `new Date()`. */
  readonly now?: () => Date;
}

/** The alert log could not be written (permissions, a full disk). Names the file, never the alert's content. */
export class AlertLogError extends AmkError {
  readonly code = "ALERT_LOG";
}

const SEVERITIES: ReadonlySet<string> = new Set<AlertSeverity>(["info", "warning", "critical"]);
const POSIX = process.platform !== "win32";

export class FileAlerts implements Alerts {
  private readonly now: () => Date;
  private checked = false;

  constructor(
    readonly path: string,
    options: FileAlertsOptions = {},
  ) {
    if (typeof path !== "string" || path === "") {
      throw new InvalidInputError("FileAlerts: path must be a non-empty file path");
    }
    this.now = options.now ?? (() => new Date());
  }

  async raise(alert: Alert): Promise<void> {
    if (!isAlert(alert)) {
      throw new InvalidInputError("alert is missing code, severity, workspaceId, message or action", {
        context: { path: this.path },
      });
    }
    const entry: LoggedAlert = {
      at: this.now().toISOString(),
      code: alert.code,
      severity: alert.severity,
      workspaceId: alert.workspaceId,
      message: alert.message,
      action: alert.action,
      ...(alert.context === undefined ? {} : { context: alert.context }),
    };
    let line: string;
    try {
      line = `${JSON.stringify(entry)}\n`;
    } catch {
      // A context that is not JSON (a BigInt, a cycle): the alert is kept without it.
      const { context: _dropped, ...rest } = entry;
      line = `${JSON.stringify(rest)}\n`;
    }
    try {
      await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
      const handle = await open(this.path, "a", 0o600);
      try {
        if (POSIX && !this.checked) {
          const { mode } = await handle.stat();
          if ((mode & 0o077) !== 0) await chmod(this.path, 0o600);
          this.checked = true;
        }
        await handle.appendFile(line, "utf8");
      } finally {
        await handle.close();
      }
    } catch (err) {
      const code = (err as { code?: unknown })?.code;
      throw new AlertLogError(
        `Could not append alert ${alert.code} to the alert log ${this.path}` +
          (typeof code === "string" ? ` (${code})` : ""),
        {
          cause: err,
          context: {
            path: this.path,
            alertCode: alert.code,
            ...(typeof code === "string" ? { errorCode: code } : {}),
          },
        },
      );
    }
  }
}

/** The alerts in the log, oldest first; malformed lines are skipped, a missing file is an empty log. */
export function readAlertLog(path: string): LoggedAlert[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as { code?: unknown })?.code === "ENOENT") return [];
    throw err;
  }
  const out: LoggedAlert[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      continue;
    }
    if (!isAlert(parsed)) continue;
    const at = (parsed as { at?: unknown }).at;
    if (typeof at !== "string" || Number.isNaN(Date.parse(at))) continue;
    const { code, severity, workspaceId, message, action, context } = parsed as LoggedAlert;
    out.push({
      at,
      code,
      severity,
      workspaceId,
      message,
      action,
      ...(context !== null && typeof context === "object" && !Array.isArray(context) ? { context } : {}),
    });
  }
  return out;
}

function isAlert(value: unknown): value is Alert {
  if (value === null || typeof value !== "object") return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.code === "string" &&
    v.code !== "" &&
    typeof v.severity === "string" &&
    SEVERITIES.has(v.severity) &&
    typeof v.workspaceId === "string" &&
    typeof v.message === "string" &&
    typeof v.action === "string"
  );
}
