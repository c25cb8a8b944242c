/**
 * Errors of the SNS alerts adapter. Each names the topic, the alert's code and workspace, and (when SNS answered) the
 * AWS error name, HTTP status and request id; none carries the alert's message (it reaches people, not logs).
 */
import { AmkError, type AmkErrorOptions } from "../../shared/errors.js";

/**
 * Why an alert was not delivered:
 * - `access-denied`: the caller may not publish (missing `sns:Publish`, or `kms:GenerateDataKey`/`kms:Decrypt` on an
 *   encrypted topic's key), or its credentials are not accepted;
 * - `not-found`: the topic (or its KMS key) does not exist in this account and region;
 * - `rejected`: SNS refused the request (invalid parameter, disabled KMS key, ...);
 * - `unavailable`: throttling, a service-side failure or a network problem.
 */
export type AlertDeliveryFailure = "access-denied" | "not-found" | "rejected" | "unavailable";

/** An alert could not be published to SNS. Retryable only when `reason` is `unavailable`. */
export class AlertDeliveryError extends AmkError {
  readonly code = "ALERT_DELIVERY";
  override readonly retryable: boolean;
  readonly reason: AlertDeliveryFailure;

  constructor(
    message: string,
    reason: AlertDeliveryFailure,
    options: Pick<AmkErrorOptions, "cause"> & { readonly context: Readonly<Record<string, unknown>> },
  ) {
    super(message, { cause: options.cause, context: { ...options.context, reason } });
    this.reason = reason;
    this.retryable = reason === "unavailable";
  }
}
