/**
 * Errors of event-store backups (export, verification, import). Each failure of `verifyBackup` has its own class, so
 * a caller (and a test) can tell a tampered manifest from a truncated file from a gap in a stream. Messages and
 * contexts name backups, files, streams, versions and counts only: never an event's data, never key material.
 */
import { AmkError, InvalidInputError } from "../shared/errors.js";

/** Base of every backup error except invalid input (which extends `InvalidInputError`). */
export abstract class BackupError extends AmkError {}

/** Options of an export, verification or import that do not make sense. Nothing was read or written. */
export class InvalidBackupRequestError extends InvalidInputError {}

/** No backup with that id: its folder (prefix) has no `manifest.json` (an export that never finished has none). */
export class BackupNotFoundError extends BackupError {
  readonly code = "BACKUP_NOT_FOUND";
}

/** The backup id (or a blob name) is already taken: backups are written once and never overwritten. */
export class BackupExistsError extends BackupError {
  readonly code = "BACKUP_EXISTS";
}

/** `manifest.json` is not JSON, not a manifest of a known format version, or not self-consistent. */
export class BackupManifestInvalidError extends BackupError {
  readonly code = "BACKUP_MANIFEST_INVALID";
}

/**
 * The manifest's signature does not verify: a byte of the manifest was changed after signing (a count, a checksum,
 * a stream), the signature was replaced, or the file is not in its canonical form.
 */
export class BackupManifestTamperedError extends BackupError {
  readonly code = "BACKUP_MANIFEST_TAMPERED";
}

/** The manifest was signed by a key the verifier does not trust (not among the pinned public keys). */
export class BackupUntrustedKeyError extends BackupError {
  readonly code = "BACKUP_UNTRUSTED_KEY";
}

/** A file the manifest lists is not in the backup. */
export class BackupFileMissingError extends BackupError {
  readonly code = "BACKUP_FILE_MISSING";
}

/** A file is shorter than the manifest says (cut off), or its last line has no line end. */
export class BackupTruncatedError extends BackupError {
  readonly code = "BACKUP_TRUNCATED";
}

/** A file's SHA-256 (or size, when larger) differs from the manifest's: its bytes were changed. */
export class BackupFileChecksumError extends BackupError {
  readonly code = "BACKUP_FILE_CHECKSUM";
}

/** A line of an events file is not a stored event (JSON, envelope fields, or a document event's stream facts). */
export class BackupEventInvalidError extends BackupError {
  readonly code = "BACKUP_EVENT_INVALID";
}

/** A stream the manifest lists has no event at all in the backup's files. */
export class BackupStreamMissingError extends BackupError {
  readonly code = "BACKUP_STREAM_MISSING";
}

/** A stream's versions in the files are not contiguous from the manifest's `first` to `last`: a gap, a repeat, or out of order. */
export class BackupEventGapError extends BackupError {
  readonly code = "BACKUP_EVENT_GAP";
}

/**
 * The files do not match the manifest (and the manifest is authentic): a file's event count, a stream's count or
 * last version, an event of a stream the manifest does not list or outside the backup's scope, an events file the
 * manifest does not list.
 */
export class BackupManifestMismatchError extends BackupError {
  readonly code = "BACKUP_MANIFEST_MISMATCH";
}

/**
 * An incremental backup does not continue its base: the base is missing or another backup than the one named, of
 * another scope or table, or a stream does not continue where the chain before it ended.
 */
export class BackupChainError extends BackupError {
  readonly code = "BACKUP_CHAIN";
}

/** An import was refused because the target table is not empty: backups restore into a new, empty table only. */
export class BackupTargetNotEmptyError extends BackupError {
  readonly code = "BACKUP_TARGET_NOT_EMPTY";
}

/**
 * An export was refused because an event's data carries a field named like a plaintext secret (`Dek`, `Passphrase`,
 * `PrivateKey`, ...). Events never should; the backup is not written.
 */
export class BackupSecretFieldError extends BackupError {
  readonly code = "BACKUP_SECRET_FIELD";
}

/** The backup storage failed (file system, later S3). `retryable` when the cause is transient. */
export class BackupStorageError extends BackupError {
  readonly code = "BACKUP_STORAGE";
  override readonly retryable: boolean;

  constructor(
    message: string,
    options: { cause?: unknown; context?: Record<string, unknown>; retryable?: boolean } = {},
  ) {
    super(message, options);
    this.retryable = options.retryable ?? false;
  }
}
