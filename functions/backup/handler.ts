/**
 * The backup export function: exports one workspace (`workspaceId`) or the whole table, as a full backup or as an
 * increment of `baseBackupId`, in the project's backup format (docs/backup-format.md), signed with the backup key
 * from the vault (created on the first export). Started by a schedule or on demand; the answer names the backup and
 * its manifest's SHA-256 and holds no secret. Failures are thrown (by class name, for Lambda and Step Functions
 * retries and alarms) after a log line with the error's name and code.
 *
 * Environment: AMK_EVENT_TABLE (and locally AMK_DYNAMODB_ENDPOINT), the vault as every function (AMK_VAULT_DIR or
 * AMK_VAULT_REGION, see functions/shared/vault.ts), AMK_BACKUP_BUCKET + AMK_BACKUP_PREFIX + AMK_BACKUP_KMS_KEY_ID (S3,
 * in AWS) or AMK_BACKUP_DIR (a folder, locally), optionally AMK_BACKUP_PUBLIC_KEYS (further public keys accepted
 * on a base chain besides every version of the signing key in the vault), AMK_BACKUP_EVENTS_PER_FILE and
 * AMK_BACKUP_SIGNING_KEY_SECRET (default `amk/backup/signing-key`).
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { z } from "zod";
import { S3Client } from "@aws-sdk/client-s3";
import { FolderBackupStorage } from "../../core/adapters/backup-folder/folder-backup-storage.js";
import { S3BackupStorage } from "../../core/adapters/backup-s3/s3-backup-storage.js";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { createEventStoreTable } from "../../core/adapters/dynamodb/table.js";
import {
  BACKUP_SIGNING_KEY_SECRET,
  DEFAULT_EVENTS_PER_FILE,
  MAX_EVENTS_PER_FILE,
  backupPublicKeysFromVault,
  backupSignerFromVault,
  exportBackup,
  importBackup,
  parseBackupPublicKeys,
  type BackupStorage,
  type ExportBackupResult,
} from "../../core/backup/index.js";
import { EventStoreConfigError } from "../../core/eventstore/errors.js";
import { AmkError, InvalidInputError } from "../../core/shared/errors.js";
import { dynamoDbClientFromEnv } from "../shared/event-store.js";
import { parseInput, WorkspaceIdSchema } from "../shared/schemas.js";
import { vaultFromEnv } from "../shared/vault.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const ExportBackupInput = z
  .strictObject({
    workspaceId: WorkspaceIdSchema.optional(),
    kind: z.enum(["full", "incremental"], { error: "kind must be full or incremental" }),
    baseBackupId: z.string().regex(UUID, "baseBackupId: a backup id (lower-case UUID)").optional(),
  })
  .superRefine((input, ctx) => {
    if (input.kind === "incremental" && input.baseBackupId === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["baseBackupId"],
        message: "an incremental export needs baseBackupId",
      });
    }
    if (input.kind === "full" && input.baseBackupId !== undefined) {
      ctx.addIssue({ code: "custom", path: ["baseBackupId"], message: "a full export has no baseBackupId" });
    }
  });

export interface ExportBackupAnswer {
  readonly backupId: string;
  readonly kind: "full" | "incremental";
  /** The workspace exported; absent for the whole table. */
  readonly workspaceId?: string;
  readonly baseBackupId?: string;
  readonly manifestSha256: string;
  /** Id of the public key that verifies the manifest. */
  readonly keyId: string;
  readonly streams: number;
  readonly events: number;
  readonly files: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly location: string;
}

/** Where backups are written: a folder now (AMK_BACKUP_DIR); S3 is another adapter of the same port. */
export function backupStorageFromEnv(env: NodeJS.ProcessEnv = process.env): BackupStorage {
  if (env.AMK_BACKUP_BUCKET) {
    const endpoint = env.AMK_AWS_ENDPOINT_S3 || env.AWS_ENDPOINT_URL || undefined;
    return new S3BackupStorage({
      client: new S3Client({ ...(endpoint ? { endpoint, forcePathStyle: true } : {}) }),
      bucket: env.AMK_BACKUP_BUCKET,
      prefix: env.AMK_BACKUP_PREFIX ?? "backups/",
      ...(env.AMK_BACKUP_KMS_KEY_ID ? { kmsKeyId: env.AMK_BACKUP_KMS_KEY_ID } : {}),
    });
  }
  const dir = env.AMK_BACKUP_DIR;
  if (!dir)
    throw new InvalidInputError(
      "set AMK_BACKUP_BUCKET (S3, with AMK_BACKUP_PREFIX and AMK_BACKUP_KMS_KEY_ID) or AMK_BACKUP_DIR (a folder)",
    );
  return new FolderBackupStorage(dir);
}

let cachedSource: { key: string; store: DynamoDbEventStore } | undefined;

function sourceFromEnv(env: NodeJS.ProcessEnv = process.env): DynamoDbEventStore {
  const tableName = env.AMK_EVENT_TABLE;
  if (!tableName) throw new EventStoreConfigError("AMK_EVENT_TABLE is not set");
  const key = `${tableName}|${env.AMK_DYNAMODB_ENDPOINT ?? ""}|${env.AWS_ENDPOINT_URL ?? ""}`;
  if (cachedSource?.key !== key) {
    cachedSource = { key, store: new DynamoDbEventStore({ client: dynamoDbClientFromEnv(env), tableName }) };
  }
  return cachedSource.store;
}

function eventsPerFileFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.AMK_BACKUP_EVENTS_PER_FILE;
  if (!raw) return DEFAULT_EVENTS_PER_FILE;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_EVENTS_PER_FILE) {
    throw new InvalidInputError(
      `AMK_BACKUP_EVENTS_PER_FILE must be an integer from 1 to ${MAX_EVENTS_PER_FILE}`,
    );
  }
  return n;
}

export const exportHandler = instrumented(
  "exportHandler",
  async (event: unknown): Promise<ExportBackupAnswer> => {
    const input = parseInput(ExportBackupInput, event);
    const facts = {
      kind: input.kind,
      scope: input.workspaceId === undefined ? "table" : "workspace",
      ...(input.workspaceId === undefined ? {} : { workspaceId: input.workspaceId }),
      ...(input.baseBackupId === undefined ? {} : { baseBackupId: input.baseBackupId }),
    };
    let r: ExportBackupResult;
    try {
      const env = process.env;
      const vault = await vaultFromEnv(env);
      const secretName = env.AMK_BACKUP_SIGNING_KEY_SECRET || BACKUP_SIGNING_KEY_SECRET;
      const signer = await backupSignerFromVault(vault, { secretName, create: true });
      // A base chain may be signed by earlier versions of the key (before a rotation): all of them are trusted here,
      // plus any pinned in the environment.
      const trustedKeys = [
        ...(await backupPublicKeysFromVault(vault, { secretName })),
        ...parseBackupPublicKeys(env.AMK_BACKUP_PUBLIC_KEYS),
      ];
      let lastLog = 0;
      r = await exportBackup({
        source: sourceFromEnv(env),
        storage: backupStorageFromEnv(env),
        signer,
        trustedKeys,
        scope:
          input.workspaceId === undefined
            ? { kind: "table" }
            : { kind: "workspace", workspaceId: input.workspaceId },
        kind: input.kind,
        ...(input.baseBackupId === undefined ? {} : { baseBackupId: input.baseBackupId }),
        maxEventsPerFile: eventsPerFileFromEnv(env),
        onProgress: (p) => {
          if (p.phase !== "export" || p.elapsedSeconds - lastLog < 30) return;
          lastLog = p.elapsedSeconds;
          logger.info("backup export progress", {
            ...facts,
            backupId: p.backupId,
            done: p.done,
            total: p.total,
            perSecond: Math.round(p.ratePerSecond),
          });
        },
      });
    } catch (err) {
      const e =
        err instanceof AmkError
          ? { name: err.name, code: err.code, retryable: err.retryable }
          : { name: (err as Error)?.name };
      logger.error("backup export failed", { ...facts, error: e });
      throw err;
    }
    const answer: ExportBackupAnswer = {
      backupId: r.backupId,
      kind: r.kind,
      ...(input.workspaceId === undefined ? {} : { workspaceId: input.workspaceId }),
      ...(r.baseBackupId === undefined ? {} : { baseBackupId: r.baseBackupId }),
      manifestSha256: r.manifestSha256,
      keyId: r.keyId,
      streams: r.streams,
      events: r.events,
      files: r.files,
      bytes: r.bytes,
      seconds: Math.round(r.seconds * 1000) / 1000,
      location: r.location,
    };
    logger.info("backup exported", { ...answer });
    return answer;
  },
);

export const ImportBackupInput = z.strictObject({
  backupId: z.string().regex(UUID, "backupId: a backup id (lower-case UUID)"),
  /** The new table to restore into: created empty here; an existing table must be empty (never the live one). */
  targetTable: z.string().regex(/^[A-Za-z0-9_.-]{3,255}$/, "targetTable: a DynamoDB table name"),
});

export interface ImportBackupAnswer {
  readonly backupId: string;
  readonly targetTable: string;
  readonly manifestSha256: string;
  readonly streams: number;
  readonly events: number;
  readonly verifySeconds: number;
  readonly importSeconds: number;
}

/**
 * The import function: verifies a backup (and its chain) completely, then restores it into a NEW, empty table
 * (`targetTable`, created here; refused when it is the live table or holds any item). Verification failures are
 * thrown before anything is written. Trusted keys: AMK_BACKUP_PUBLIC_KEYS, else the vault's signing-key versions.
 */
export const importHandler = instrumented(
  "importHandler",
  async (event: unknown): Promise<ImportBackupAnswer> => {
    const input = parseInput(ImportBackupInput, event);
    const env = process.env;
    if (input.targetTable === env.AMK_EVENT_TABLE) {
      throw new InvalidInputError("never restore over the live event store: name a new table");
    }
    const vault = await vaultFromEnv(env);
    const pinned = parseBackupPublicKeys(env.AMK_BACKUP_PUBLIC_KEYS);
    const trustedKeys = pinned.length > 0 ? pinned : await backupPublicKeysFromVault(vault);
    const client = dynamoDbClientFromEnv(env);
    try {
      await createEventStoreTable(client, input.targetTable);
    } catch (err) {
      if ((err as Error).name !== "ResourceInUseException") throw err; // exists: importBackup refuses it unless empty
    }
    const r = await importBackup({
      storage: backupStorageFromEnv(env),
      backupId: input.backupId,
      target: new DynamoDbEventStore({ client, tableName: input.targetTable }),
      trustedKeys,
    });
    logger.info("backup imported", {
      backupId: input.backupId,
      targetTable: input.targetTable,
      streams: r.streams,
      events: r.events,
    });
    return {
      backupId: input.backupId,
      targetTable: input.targetTable,
      manifestSha256: r.manifestSha256,
      streams: r.streams,
      events: r.events,
      verifySeconds: r.verifySeconds,
      importSeconds: r.importSeconds,
    };
  },
);
