/**
 * `Alerts` over Amazon SNS: one `Publish` per alert to a topic that people (email, chat, paging) subscribe to.
 *
 * - `Subject` (email subscriptions): `[amk] <SEVERITY> <code> ws-<workspaceId>`, printable ASCII only, at most 100
 *   characters (SNS's limits).
 * - `Message`: JSON `{code, severity, workspaceId, message, action, context}`, the alert's own fields and nothing
 *   else. A `context` that cannot be serialised, or that would push the message past SNS's 256 KB limit, is left out
 *   rather than losing the alert.
 * - `MessageAttributes` `code`, `severity`, `workspaceId` (String), for subscription filter policies.
 *
 * SDK errors become `AlertDeliveryError` (./errors.ts), retryable for throttling and service-side failures.
 */
import { PublishCommand, type MessageAttributeValue, type SNSClient } from "@aws-sdk/client-sns";
import type { Alert, Alerts } from "../../alerts/alerts.js";
import { InvalidInputError } from "../../shared/errors.js";
import { awsErrorContext, awsErrorFacts, describeAwsError, isTransient } from "../aws-service-error.js";
import { AlertDeliveryError, type AlertDeliveryFailure } from "./errors.js";

export interface SnsAlertsOptions {
  readonly client: SNSClient;
  /** ARN of the alert topic (standard, not FIFO). */
  readonly topicArn: string;
}

/** SNS's limit on a Subject. */
export const SNS_SUBJECT_MAX = 100;
/** SNS's limit on a message with its attributes is 256 KiB; the message keeps a margin for the attributes. */
export const SNS_MESSAGE_MAX_BYTES = 256 * 1024 - 2048;

const SEVERITIES = new Set(["info", "warning", "critical"]);

const ACCESS_DENIED = new Set([
  "AuthorizationErrorException",
  "AuthorizationError",
  "KMSAccessDeniedException",
  "KMSOptInRequired",
  "InvalidSecurityException",
  "AccessDeniedException",
  "AccessDenied",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "SignatureDoesNotMatch",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "ExpiredToken",
  "ExpiredTokenException",
]);
const NOT_FOUND = new Set([
  "NotFoundException",
  "NotFound",
  "KMSNotFoundException",
  "ResourceNotFoundException",
]);
const TRANSIENT = new Set(["ThrottledException", "KMSThrottlingException", "InternalErrorException"]);

export class SnsAlerts implements Alerts {
  private readonly client: SNSClient;
  private readonly topicArn: string;

  constructor(options: SnsAlertsOptions) {
    if (
      typeof options.topicArn !== "string" ||
      !/^arn:aws[a-z-]*:sns:[^:]+:\d{12}:[^:]+$/.test(options.topicArn)
    ) {
      throw new InvalidInputError("SnsAlerts: topicArn must be an SNS topic ARN", {
        context: { topicArn: String(options.topicArn).slice(0, 256) },
      });
    }
    this.client = options.client;
    this.topicArn = options.topicArn;
  }

  async raise(alert: Alert): Promise<void> {
    checkAlert(alert);
    const attributes: Record<string, MessageAttributeValue> = {};
    // SNS refuses empty attribute values.
    for (const [name, value] of [
      ["code", alert.code],
      ["severity", alert.severity],
      ["workspaceId", alert.workspaceId],
    ] as const) {
      if (value !== "") attributes[name] = { DataType: "String", StringValue: value };
    }
    try {
      await this.client.send(
        new PublishCommand({
          TopicArn: this.topicArn,
          Subject: alertSubject(alert),
          Message: alertMessage(alert),
          MessageAttributes: attributes,
        }),
      );
    } catch (err) {
      throw this.translate(err, alert);
    }
  }

  private translate(err: unknown, alert: Alert): AlertDeliveryError {
    const facts = awsErrorFacts(err);
    const reason: AlertDeliveryFailure = !facts.answered
      ? isTransient(facts)
        ? "unavailable"
        : "rejected"
      : ACCESS_DENIED.has(facts.name)
        ? "access-denied"
        : NOT_FOUND.has(facts.name)
          ? "not-found"
          : isTransient(facts, TRANSIENT)
            ? "unavailable"
            : "rejected";
    const hint: Record<AlertDeliveryFailure, string> = {
      "access-denied":
        "the caller needs sns:Publish on the topic (and kms:GenerateDataKey and kms:Decrypt on its key if encrypted)",
      "not-found": "check the topic ARN (account and region) and, for an encrypted topic, its KMS key",
      rejected: "SNS refused the request",
      unavailable: "retry later",
    };
    return new AlertDeliveryError(
      `Could not publish alert ${alert.code} for workspace ${alert.workspaceId} to ${this.topicArn} ` +
        `(${describeAwsError(facts)}): ${hint[reason]}`,
      reason,
      {
        cause: err,
        context: {
          topicArn: this.topicArn,
          alertCode: alert.code,
          workspaceId: alert.workspaceId,
          ...awsErrorContext(facts),
        },
      },
    );
  }
}

/** `[amk] CRITICAL KIT_DRILL_FAILED ws-<id>`: printable ASCII, at most 100 characters. */
export function alertSubject(alert: Pick<Alert, "code" | "severity" | "workspaceId">): string {
  const subject = `[amk] ${alert.severity.toUpperCase()} ${alert.code} ws-${alert.workspaceId}`;
  // SNS: ASCII text starting with a letter, digit or punctuation; no line breaks or control characters.
  return subject.replace(/[^\x20-\x7e]/g, "?").slice(0, SNS_SUBJECT_MAX);
}

/** The message body: the alert's fields only. */
export function alertMessage(alert: Alert): string {
  const base = {
    code: alert.code,
    severity: alert.severity,
    workspaceId: alert.workspaceId,
    message: alert.message,
    action: alert.action,
  };
  if (alert.context !== undefined) {
    try {
      const full = JSON.stringify({ ...base, context: alert.context });
      if (Buffer.byteLength(full, "utf8") <= SNS_MESSAGE_MAX_BYTES) return full;
    } catch {
      // Not serialisable (a BigInt, a cycle): sent without it.
    }
  }
  const text = JSON.stringify(base);
  if (Buffer.byteLength(text, "utf8") > SNS_MESSAGE_MAX_BYTES) {
    throw new InvalidInputError(`alert ${alert.code}: message and action exceed SNS's message size limit`, {
      context: { alertCode: alert.code, workspaceId: alert.workspaceId },
    });
  }
  return text;
}

function checkAlert(alert: Alert): void {
  const problems: string[] = [];
  if (typeof alert?.code !== "string" || alert.code === "") problems.push("code");
  if (!SEVERITIES.has(alert?.severity)) problems.push("severity");
  if (typeof alert?.workspaceId !== "string") problems.push("workspaceId");
  if (typeof alert?.message !== "string") problems.push("message");
  if (typeof alert?.action !== "string") problems.push("action");
  if (problems.length > 0) {
    throw new InvalidInputError(`alert is missing or has invalid fields: ${problems.join(", ")}`, {
      context: { fields: problems },
    });
  }
}
