import { AmkError } from "../shared/errors.js";

/** Base of the data-key use cases' errors. */
export abstract class DataKeyError extends AmkError {}

/** The workspace has no master key yet: provision it first. */
export class WorkspaceNotProvisionedError extends DataKeyError {
  readonly code = "WORKSPACE_NOT_PROVISIONED";
}

/** The document already has keys from another request (another idempotency key): a document is keyed once. */
export class DocumentKeysAlreadyExistError extends DataKeyError {
  readonly code = "DOCUMENT_KEYS_EXIST";
}

/** The same idempotency key was used before with different artifacts. */
export class IdempotencyKeyMismatchError extends DataKeyError {
  readonly code = "IDEMPOTENCY_KEY_MISMATCH";
}

/** The document has no wrap record. */
export class DocumentKeysNotFoundError extends DataKeyError {
  readonly code = "DOCUMENT_KEYS_NOT_FOUND";
}

/** The document was deleted: its keys are destroyed and never handed out again. */
export class DocumentDeletedError extends DataKeyError {
  readonly code = "DOCUMENT_DELETED";
}

/** The document's wrap record has no key for that artifact. */
export class ArtifactNotFoundError extends DataKeyError {
  readonly code = "ARTIFACT_NOT_FOUND";
}

/** A stored wrap record does not have the shape it must have (corrupted or written by something else). */
export class WrapRecordCorruptError extends DataKeyError {
  readonly code = "WRAP_RECORD_CORRUPT";
}

/** Writers kept racing on the same document stream beyond the retry bound; retry later. */
export class ConcurrentUpdateError extends DataKeyError {
  readonly code = "CONCURRENT_UPDATE";
  override readonly retryable = true;
}

/**
 * The HSM (or the store) was so slow that the DEKs were not recorded within the write window after the active
 * version was read: nothing was recorded, nothing handed out; a retry reads the active version again.
 */
export class WriteWindowExpiredError extends DataKeyError {
  readonly code = "WRITE_WINDOW_EXPIRED";
  override readonly retryable = true;
}
