/**
 * The recovery service a recovery function uses, built once per execution environment (and again when the
 * environment names another HSM: a replacement token). Every dependency comes from the environment.
 */
import type { Logger } from "@aws-lambda-powertools/logger";
import { AccessTokenService } from "../../core/access/access-tokens.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { KitService } from "../../core/kit/kit-service.js";
import { RecoveryService } from "../../core/recovery/recovery-service.js";
import { RotationService } from "../../core/rotation/rotation-service.js";
import { eventStoreFromEnv } from "../shared/event-store.js";
import { keyStoreEnvKey, keyStoreFromEnv } from "../shared/key-store.js";
import { alertsFromEnv, eventBusFromEnv } from "../shared/notify.js";
import { vaultFromEnv } from "../shared/vault.js";
import { writerTimingFromEnv } from "../shared/services.js";

let cached: { key: string; service: Promise<RecoveryService> } | undefined;

export function recoveryServiceFromEnv(logger: Logger): Promise<RecoveryService> {
  const key = `${keyStoreEnvKey()}|${process.env.AMK_EVENT_TABLE ?? ""}|${process.env.AMK_VAULT_DIR ?? ""}`;
  if (cached?.key !== key) cached = { key, service: build(logger) };
  const current = cached;
  return current.service.catch((err: unknown) => {
    if (cached === current) cached = undefined;
    throw err;
  });
}

async function build(logger: Logger): Promise<RecoveryService> {
  const keyStore = await keyStoreFromEnv(logger);
  const events = eventStoreFromEnv();
  const alerts = alertsFromEnv(logger);
  const kits = new KitService({
    keyStore,
    events,
    vault: await vaultFromEnv(),
    alerts,
    oaepHash: process.env.AMK_DRILL_OAEP_HASH === "SHA-256" ? "SHA-256" : "SHA-1",
  });
  const rotation = new RotationService({
    keyStore,
    events,
    kits,
    alerts,
    documentConcurrency: Number(process.env.AMK_REWRAP_DOCUMENT_CONCURRENCY ?? 8),
    ...writerTimingFromEnv(),
  });
  // Invalidation only records a new epoch: it never signs, so these functions get no signing key.
  const tokens = new AccessTokenService({
    events,
    signingKey: () => Promise.reject(new Error("the recovery functions do not sign access tokens")),
  });
  return new RecoveryService({
    keyStore,
    events,
    kits,
    rotation,
    dataKeys: new DataKeyService({ keyStore, events }),
    tokens,
    bus: eventBusFromEnv(),
    alerts,
  });
}
