/** FileAlerts and readAlertLog: the local alert log the CLI shows. */
import assert from "node:assert/strict";
import {
  appendFileSync,
  chmodSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { AlertLogError, FileAlerts, readAlertLog } from "../../core/adapters/file-alerts/file-alerts.js";
import type { Alert } from "../../core/alerts/alerts.js";
import { InvalidInputError } from "../../core/shared/errors.js";

const dir = mkdtempSync(join(tmpdir(), "amk-alert-log-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const POSIX = process.platform !== "win32";

const alert: Alert = {
  code: "ADMIN_SLOT_LOCKED",
  severity: "critical",
  workspaceId: "acme-7",
  message: "5 failed unlock attempts in a row for administrator alice",
  action: "Confirm with the administrator that these attempts were theirs",
  context: { adminId: "alice", failures: 5 },
};

describe("FileAlerts", () => {
  it("creates the file (0600) and its folder, and appends one JSON line per alert with its time", async () => {
    const path = join(dir, "nested", "state", "alerts.log");
    let t = Date.parse("2026-03-10T12:00:00Z");
    const alerts = new FileAlerts(path, { now: () => new Date((t += 1000)) });
    await alerts.raise(alert);
    await alerts.raise({ ...alert, code: "ROTATION_FAILED", severity: "warning", context: undefined });
    if (POSIX) {
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, "nested", "state")).mode & 0o777, 0o700);
    }
    const lines = readFileSync(path, "utf8").split("\n");
    assert.equal(lines.length, 3, "two lines and a final newline");
    assert.equal(lines[2], "");
    assert.deepEqual(JSON.parse(lines[0]!), { at: "2026-03-10T12:00:01.000Z", ...alert });
    assert.deepEqual(readAlertLog(path), [
      { at: "2026-03-10T12:00:01.000Z", ...alert },
      {
        at: "2026-03-10T12:00:02.000Z",
        code: "ROTATION_FAILED",
        severity: "warning",
        workspaceId: "acme-7",
        message: alert.message,
        action: alert.action,
      },
    ]);
  });

  it("narrows an existing file that others can read to 0600", { skip: !POSIX }, async () => {
    const path = join(dir, "wide.log");
    writeFileSync(path, "");
    chmodSync(path, 0o644);
    await new FileAlerts(path).raise(alert);
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  it("keeps an alert whose context is not JSON, without the context", async () => {
    const path = join(dir, "bigint.log");
    await new FileAlerts(path).raise({ ...alert, context: { n: 1n } as unknown as Record<string, unknown> });
    const [entry] = readAlertLog(path);
    assert.equal(entry?.code, "ADMIN_SLOT_LOCKED");
    assert.equal(entry?.context, undefined);
  });

  it("refuses an alert without its fields, and reports a log it cannot write", async () => {
    const path = join(dir, "refused.log");
    await assert.rejects(
      new FileAlerts(path).raise({ ...alert, severity: "loud" as Alert["severity"] }),
      InvalidInputError,
    );
    assert.deepEqual(readAlertLog(path), [], "a missing log is empty");
    const blocker = join(dir, "a-file");
    writeFileSync(blocker, "");
    await assert.rejects(new FileAlerts(join(blocker, "alerts.log")).raise(alert), (e: unknown) => {
      assert.ok(e instanceof AlertLogError);
      assert.ok(!e.message.includes(alert.message), "the error names the file, not the alert's text");
      return true;
    });
  });
});

describe("readAlertLog", () => {
  it("skips malformed lines and lines that are not alerts", async () => {
    const path = join(dir, "mixed.log");
    const alerts = new FileAlerts(path, { now: () => new Date("2026-03-10T12:00:00Z") });
    await alerts.raise(alert);
    appendFileSync(path, "not json\n");
    appendFileSync(path, `${JSON.stringify({ at: "2026-03-10T12:00:00Z", code: "X" })}\n`);
    appendFileSync(path, `${JSON.stringify({ ...alert, at: "yesterday" })}\n`);
    appendFileSync(path, `${JSON.stringify({ ...alert, severity: "fatal", at: "2026-03-10T12:00:00Z" })}\n`);
    appendFileSync(path, "[1,2,3]\n\n");
    await alerts.raise({ ...alert, code: "KIT_DRILL_FAILED" });
    appendFileSync(path, '{"at":"2026-03-10T12:00:00Z","code":"TORN');
    const read = readAlertLog(path);
    assert.deepEqual(
      read.map((a) => a.code),
      ["ADMIN_SLOT_LOCKED", "KIT_DRILL_FAILED"],
    );
    assert.ok(read.every((a) => a.at === "2026-03-10T12:00:00.000Z"));
  });
});
