/**
 * Errors of the CloudHSM backup source. Each names the cluster and the region asked, and (when CloudHSM answered)
 * the AWS error name, HTTP status and request id.
 */
import { AmkError, type AmkErrorOptions } from "../../shared/errors.js";

/**
 * Why the backups could not be listed:
 * - `access-denied`: the caller needs `cloudhsm:DescribeBackups` in that region, or its credentials are refused;
 * - `not-found`: CloudHSM does not know a resource the request names;
 * - `rejected`: CloudHSM refused the request (`CloudHsmInvalidRequestException`, `CloudHsmServiceException`, ...);
 * - `unavailable`: throttling, `CloudHsmInternalFailureException`, another service-side failure or a network error.
 */
export type HsmBackupCheckFailure = "access-denied" | "not-found" | "rejected" | "unavailable";

/** Listing a cluster's backups failed. Retryable only when `reason` is `unavailable`. */
export class HsmBackupCheckError extends AmkError {
  readonly code = "HSM_BACKUP_CHECK";
  override readonly retryable: boolean;
  readonly reason: HsmBackupCheckFailure;

  constructor(
    message: string,
    reason: HsmBackupCheckFailure,
    options: Pick<AmkErrorOptions, "cause"> & { readonly context: Readonly<Record<string, unknown>> },
  ) {
    super(message, { cause: options.cause, context: { ...options.context, reason } });
    this.reason = reason;
    this.retryable = reason === "unavailable";
  }
}
