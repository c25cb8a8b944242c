/** AWS error names the Secrets Manager adapters classify alike (the PIN source and the vault). */

/** The caller may not do this, or its credentials are not accepted: not retryable. */
export const ACCESS_DENIED_ERRORS: ReadonlySet<string> = new Set([
  "AccessDeniedException",
  "AccessDenied",
  "DecryptionFailure",
  "EncryptionFailure",
  "UnrecognizedClientException",
  "InvalidClientTokenId",
  "InvalidSignatureException",
  "SignatureDoesNotMatch",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "ExpiredTokenException",
  "ExpiredToken",
]);

/** Throttling and service-side failures: retryable. */
export const UNAVAILABLE_ERRORS: ReadonlySet<string> = new Set([
  "ThrottlingException",
  "Throttling",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "InternalServiceError",
  "InternalFailure",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "RequestTimeout",
  "RequestTimeoutException",
]);
