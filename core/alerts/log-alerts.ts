/** Alerts as structured log lines (the local default, and a fallback until the SNS adapter is configured). */
import type { Alert, Alerts } from "./alerts.js";

export class LogAlerts implements Alerts {
  constructor(private readonly write: (line: Record<string, unknown>) => void) {}
  async raise(alert: Alert): Promise<void> {
    this.write({
      alert: alert.code,
      severity: alert.severity,
      workspaceId: alert.workspaceId,
      message: alert.message,
      action: alert.action,
      context: alert.context,
    });
  }
}
