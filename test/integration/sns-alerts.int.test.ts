/**
 * SnsAlerts with the real @aws-sdk/client-sns (query protocol) against a loopback server answering with recorded
 * Publish response shapes (test/fixtures/sns): what is sent for an alert, and how SNS errors map to
 * AlertDeliveryError.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { SNSClient } from "@aws-sdk/client-sns";
import { SnsAlerts, alertSubject } from "../../core/adapters/sns/sns-alerts.js";
import { AlertDeliveryError } from "../../core/adapters/sns/errors.js";
import type { Alert } from "../../core/alerts/alerts.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import {
  FAKE_CREDENTIALS,
  startReplayServer,
  textFixture,
  type ReplayServer,
} from "../support/aws-replay-server.js";

const TOPIC = "arn:aws:sns:us-east-1:123456789012:amk-alerts";
const xml = (status: number, file: string) => () => ({
  status,
  headers: { "content-type": "text/xml", "x-amzn-requestid": "d74b8436-ae13-5ab4-a9ff-ce54dfea72a0" },
  body: textFixture("sns", file),
});

const alert: Alert = {
  code: "KIT_DRILL_FAILED",
  severity: "critical",
  workspaceId: "acme-7",
  message: "the recovery kit of acme-7 did not open in the drill",
  action: "Re-issue the kit to its administrators",
  context: { drillId: "drill-1", failedChecks: ["kit-open"] },
};

describe("SnsAlerts (recorded SNS shapes)", () => {
  let server: ReplayServer;
  let alerts: SnsAlerts;

  before(async () => {
    server = await startReplayServer();
    alerts = new SnsAlerts({
      client: new SNSClient({
        endpoint: server.endpoint,
        region: "us-east-1",
        credentials: FAKE_CREDENTIALS,
        maxAttempts: 1,
      }),
      topicArn: TOPIC,
    });
  });
  after(() => server.close());
  beforeEach(() => {
    server.requests.length = 0;
    server.handler = xml(200, "publish.xml");
  });

  it("publishes one message with the alert's fields, a short ASCII subject and filterable attributes", async () => {
    await alerts.raise(alert);
    assert.equal(server.requests.length, 1);
    const req = server.requests[0]!;
    assert.equal(req.method, "POST");
    assert.equal(req.path, "/");
    assert.match(String(req.headers["content-type"]), /^application\/x-www-form-urlencoded/);
    assert.match(
      String(req.headers.authorization),
      /Credential=AKIAIOSFODNN7EXAMPLE\/\d{8}\/us-east-1\/sns\//,
    );
    const form = new URLSearchParams(req.body);
    assert.deepEqual(Object.fromEntries(form), {
      Action: "Publish",
      Version: "2010-03-31",
      TopicArn: TOPIC,
      Subject: "[amk] CRITICAL KIT_DRILL_FAILED ws-acme-7",
      Message: form.get("Message"),
      "MessageAttributes.entry.1.Name": "code",
      "MessageAttributes.entry.1.Value.DataType": "String",
      "MessageAttributes.entry.1.Value.StringValue": "KIT_DRILL_FAILED",
      "MessageAttributes.entry.2.Name": "severity",
      "MessageAttributes.entry.2.Value.DataType": "String",
      "MessageAttributes.entry.2.Value.StringValue": "critical",
      "MessageAttributes.entry.3.Name": "workspaceId",
      "MessageAttributes.entry.3.Value.DataType": "String",
      "MessageAttributes.entry.3.Value.StringValue": "acme-7",
    });
    assert.deepEqual(JSON.parse(form.get("Message")!), {
      code: "KIT_DRILL_FAILED",
      severity: "critical",
      workspaceId: "acme-7",
      message: "the recovery kit of acme-7 did not open in the drill",
      action: "Re-issue the kit to its administrators",
      context: { drillId: "drill-1", failedChecks: ["kit-open"] },
    });
  });

  it("keeps the subject within SNS's limits and sends an alert whose context cannot go", async () => {
    const subject = alertSubject({ code: "X".repeat(80), severity: "warning", workspaceId: "wörk\nspace-1" });
    assert.ok(subject.length <= 100, `subject is ${subject.length} characters`);
    assert.match(subject, /^\[amk\] WARNING X+/);
    assert.match(subject, /^[\x20-\x7e]+$/);
    assert.equal(alertSubject({ code: "A", severity: "info", workspaceId: "wö\nx" }), "[amk] INFO A ws-w??x");

    await alerts.raise({ ...alert, context: { big: 1n } as unknown as Record<string, unknown> });
    await alerts.raise({ ...alert, context: { blob: "x".repeat(300 * 1024) } });
    assert.equal(server.requests.length, 2);
    for (const req of server.requests) {
      const message = JSON.parse(new URLSearchParams(req.body).get("Message")!) as Record<string, unknown>;
      assert.deepEqual(Object.keys(message).sort(), ["action", "code", "message", "severity", "workspaceId"]);
    }
  });

  it("refuses an alert without its fields before calling SNS", async () => {
    await assert.rejects(
      alerts.raise({ ...alert, severity: "urgent" as Alert["severity"] }),
      (e: unknown) => e instanceof InvalidInputError,
    );
    await assert.rejects(
      alerts.raise({ ...alert, code: "" }),
      (e: unknown) => e instanceof InvalidInputError,
    );
    assert.equal(server.requests.length, 0);
    assert.throws(
      () => new SnsAlerts({ client: new SNSClient({}), topicArn: "amk-alerts" }),
      InvalidInputError,
    );
  });

  const cases = [
    {
      file: "authorization-error.xml",
      status: 403,
      name: "AuthorizationErrorException",
      reason: "access-denied",
    },
    { file: "not-found.xml", status: 404, name: "NotFoundException", reason: "not-found" },
    { file: "invalid-parameter.xml", status: 400, name: "InvalidParameterException", reason: "rejected" },
    { file: "throttled.xml", status: 429, name: "ThrottledException", reason: "unavailable" },
    { file: "kms-throttling.xml", status: 400, name: "KMSThrottlingException", reason: "unavailable" },
    { file: "internal-error.xml", status: 500, name: "InternalErrorException", reason: "unavailable" },
  ] as const;
  for (const c of cases) {
    it(`maps ${c.name} (HTTP ${c.status}) to AlertDeliveryError ${c.reason}`, async () => {
      server.handler = xml(c.status, c.file);
      let caught: unknown;
      await alerts.raise(alert).catch((e: unknown) => (caught = e));
      assert.ok(caught instanceof AlertDeliveryError, `got ${String(caught)}`);
      assert.equal(caught.code, "ALERT_DELIVERY");
      assert.equal(caught.reason, c.reason);
      assert.equal(caught.retryable, c.reason === "unavailable");
      assert.equal(caught.context.awsErrorName, c.name);
      assert.equal(caught.context.httpStatusCode, c.status);
      assert.equal(caught.context.topicArn, TOPIC);
      assert.equal(caught.context.alertCode, "KIT_DRILL_FAILED");
      assert.ok(caught.message.includes(c.name));
      const text = JSON.stringify(caught) + caught.message;
      assert.ok(!text.includes(alert.message), "the alert's message stays out of the error");
      assert.equal(server.requests.length, 1, "maxAttempts 1: one request");
    });
  }

  it("reports a refused connection as unavailable (retryable)", async () => {
    const dead = await startReplayServer();
    await dead.close();
    const offline = new SnsAlerts({
      client: new SNSClient({
        endpoint: dead.endpoint,
        region: "us-east-1",
        credentials: FAKE_CREDENTIALS,
        maxAttempts: 1,
      }),
      topicArn: TOPIC,
    });
    await assert.rejects(
      offline.raise(alert),
      (e: unknown) => e instanceof AlertDeliveryError && e.reason === "unavailable" && e.retryable,
    );
  });
});
