/**
 * Errors of the ArquivoMate migration. Each says what is wrong and where (entry, item index, stream id, field),
 * never a key, a DEK or a wrapped DEK. Every error raised before the first write leaves the HSM, the event store and
 * the vault as they were; the ones a real run can raise later (`MigrationStateError`) say what was written and that a
 * re-run continues.
 */
import { AmkError, type AmkErrorOptions } from "../shared/errors.js";

/** Base of every migration error. */
export abstract class MigrationError extends AmkError {}

/** The ZIP's `document-encryption-keys.sha256` is missing a usable line, or the JSON's SHA-256 differs from it. */
export class BackupChecksumError extends MigrationError {
  readonly code = "BACKUP_CHECKSUM";
}

/** Not a ZIP, entries missing or doubled, JSON that does not parse or does not have one of the accepted shapes. */
export class MalformedBackupError extends MigrationError {
  readonly code = "BACKUP_MALFORMED";
}

/** The backup exceeds a size limit (ZIP bytes, an entry's declared size, entries, items): refused before unpacking. */
export class BackupTooLargeError extends MigrationError {
  readonly code = "BACKUP_TOO_LARGE";
}

/** The same event twice (same `eventId`), or two items at the same position of one stream (stream + sequence). */
export class DuplicateItemError extends MigrationError {
  readonly code = "BACKUP_DUPLICATE_ITEM";
}

/** `itemCount` differs from the number of items, or an item lies outside the declared sequence range. */
export class CountMismatchError extends MigrationError {
  readonly code = "BACKUP_COUNT_MISMATCH";
}

/** The legacy master key file is not 32 bytes (raw) or base64 of 32 bytes. */
export class InvalidLegacyKeyError extends MigrationError {
  readonly code = "LEGACY_KEY_INVALID";
}

/** One wrapped DEK that the legacy key did not unwrap: where it is, never what it is. */
export interface UnwrapFailure {
  readonly streamId: string;
  readonly documentId: string;
  readonly artifact: string;
  readonly eventId: string;
}

/**
 * The legacy key does not unwrap some (or all) of the backup's current DEKs: a wrong key file, or records written
 * under another key or damaged. Nothing was written.
 */
export class LegacyKeyMismatchError extends MigrationError {
  readonly code = "LEGACY_KEY_MISMATCH";
  readonly failures: readonly UnwrapFailure[];

  constructor(message: string, failures: readonly UnwrapFailure[], options: AmkErrorOptions = {}) {
    super(message, {
      ...options,
      context: {
        ...options.context,
        failed: failures.length,
        streamIds: [...new Set(failures.map((f) => f.streamId))].slice(0, 20),
      },
    });
    this.failures = failures;
  }
}

/** The target workspace (or the HSM) already holds another master key as version 1: migrate into a new workspace. */
export class WorkspaceConflictError extends MigrationError {
  readonly code = "MIGRATION_WORKSPACE_CONFLICT";
}

/**
 * The workspace is in a state the migration cannot continue from by itself (an administrator enrolled by an
 * interrupted run without a kit, the legacy version retired while the backup holds documents not migrated, a rotation
 * of someone else in the way). The message says what to do.
 */
export class MigrationStateError extends MigrationError {
  readonly code = "MIGRATION_STATE";
}
