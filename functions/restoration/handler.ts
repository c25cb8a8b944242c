/**
 * The restoration test function (workflows/restoration-workflow.ts): restores the newest backup of a workspace into
 * a scratch table, opens the current kit into scratch keys inside the HSM, decrypts the canaries and a sample from
 * the restored records, drops everything scratch, records `RestorationTestCompleted` and alerts on failure. Answers
 * with ids, counts and the failed checks' names: no secret.
 *
 * Environment: as every HSM function (PKCS#11, event table, vault), AMK_BACKUP_DIR (the backups; S3 comes behind
 * the same port), AMK_BACKUP_PUBLIC_KEYS (pinned public keys; without it the signing key's versions are read from
 * the vault), AMK_SCRATCH_TABLE_PREFIX (default: the event table's name + "-scratch").
 */
import { randomBytes } from "node:crypto";
import { Logger } from "@aws-lambda-powertools/logger";
import { z } from "zod";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { createEventStoreTable, deleteEventStoreTable } from "../../core/adapters/dynamodb/table.js";
import { backupPublicKeysFromVault, parseBackupPublicKeys } from "../../core/backup/index.js";
import { KitService } from "../../core/kit/kit-service.js";
import { RestorationTestService, type ScratchStores } from "../../core/restoration/restoration-test.js";
import { EventStoreConfigError } from "../../core/eventstore/errors.js";
import { backupStorageFromEnv } from "../backup/handler.js";
import { dynamoDbClientFromEnv, eventStoreFromEnv } from "../shared/event-store.js";
import { keyStoreEnvKey, keyStoreFromEnv } from "../shared/key-store.js";
import { alertsFromEnv } from "../shared/notify.js";
import { parseInput, WorkspaceIdSchema } from "../shared/schemas.js";
import { vaultFromEnv } from "../shared/vault.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

const Input = z.object({
  workspaceId: WorkspaceIdSchema,
  trigger: z.enum(["schedule", "on-demand"]).default("on-demand"),
  backupId: z
    .string()
    .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, "backupId: a backup id")
    .optional(),
  sampleSize: z.number().int().min(0).max(10_000).optional(),
});

export function scratchStoresFromEnv(env: NodeJS.ProcessEnv = process.env): ScratchStores {
  const table = env.AMK_EVENT_TABLE;
  if (!table) throw new EventStoreConfigError("AMK_EVENT_TABLE is not set");
  const prefix = env.AMK_SCRATCH_TABLE_PREFIX || `${table}-scratch`;
  const client = dynamoDbClientFromEnv(env);
  return {
    async create() {
      const name = `${prefix}-${randomBytes(6).toString("hex")}`;
      await createEventStoreTable(client, name);
      return { name, store: new DynamoDbEventStore({ client, tableName: name }) };
    },
    async drop(name: string) {
      if (!name.startsWith(`${prefix}-`)) throw new EventStoreConfigError(`${name} is not a scratch table`);
      await deleteEventStoreTable(client, name);
    },
  };
}

let cached: { key: string; service: Promise<RestorationTestService> } | undefined;
function service(): Promise<RestorationTestService> {
  const key = `${keyStoreEnvKey()}|${process.env.AMK_EVENT_TABLE ?? ""}|${process.env.AMK_BACKUP_DIR ?? ""}`;
  if (cached?.key !== key) {
    cached = {
      key,
      service: (async () => {
        const keyStore = await keyStoreFromEnv(logger);
        const events = eventStoreFromEnv();
        const vault = await vaultFromEnv();
        const alerts = alertsFromEnv(logger);
        const pinned = parseBackupPublicKeys(process.env.AMK_BACKUP_PUBLIC_KEYS);
        return new RestorationTestService({
          keyStore,
          events,
          kits: new KitService({
            keyStore,
            events,
            vault,
            alerts,
            oaepHash: process.env.AMK_DRILL_OAEP_HASH === "SHA-256" ? "SHA-256" : "SHA-1",
          }),
          storage: backupStorageFromEnv(),
          trustedKeys: async () => (pinned.length > 0 ? pinned : backupPublicKeysFromVault(vault)),
          scratch: scratchStoresFromEnv(),
          alerts,
        });
      })(),
    };
  }
  const current = cached;
  return current.service.catch((err: unknown) => {
    if (cached === current) cached = undefined;
    throw err;
  });
}

export const runRestorationTestHandler = instrumented("runRestorationTestHandler", async (event: unknown) => {
  const input = parseInput(Input, event);
  const r = await (
    await service()
  ).run(input.workspaceId, {
    trigger: input.trigger,
    ...(input.backupId ? { backupId: input.backupId } : {}),
    ...(input.sampleSize !== undefined ? { sampleSize: input.sampleSize } : {}),
  });
  const failed = r.checks.filter((c) => c.Status === "failed").map((c) => c.Name);
  logger.info("restoration test", {
    workspaceId: input.workspaceId,
    testId: r.testId,
    backupId: r.backupId,
    ok: r.ok,
    failed,
    documentsRestored: r.documentsRestored,
    documentsDecrypted: r.documentsDecrypted,
    durationMs: r.durationMs,
  });
  return {
    workspaceId: input.workspaceId,
    testId: r.testId,
    backupId: r.backupId,
    ok: r.ok,
    failed,
    documentsRestored: r.documentsRestored,
    documentsDecrypted: r.documentsDecrypted,
  };
});
