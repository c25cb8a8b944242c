/**
 * The `Alerts` port: how the service tells people something needs them (a locked slot, a failed drill). Alerts
 * carry ids, codes and what to do, never a secret. SNS in AWS; locally a recorder and a log line.
 */
export type AlertSeverity = "info" | "warning" | "critical";

export interface Alert {
  readonly code: string;
  readonly severity: AlertSeverity;
  readonly workspaceId: string;
  readonly message: string;
  /** What an operator should do about it. */
  readonly action: string;
  readonly context?: Readonly<Record<string, unknown>>;
}

export interface Alerts {
  raise(alert: Alert): Promise<void>;
}

/** Keeps alerts in memory (tests, the local story) and optionally prints them as JSON lines. */
export class RecordingAlerts implements Alerts {
  readonly raised: Alert[] = [];
  constructor(private readonly print?: (line: string) => void) {}
  async raise(alert: Alert): Promise<void> {
    this.raised.push(alert);
    this.print?.(
      JSON.stringify({
        alert: alert.code,
        severity: alert.severity,
        workspaceId: alert.workspaceId,
        message: alert.message,
        action: alert.action,
      }),
    );
  }
}
