/** The use-case services a function needs, built from its environment once per execution environment. */
import type { Logger } from "@aws-lambda-powertools/logger";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import { eventStoreFromEnv } from "./event-store.js";
import { keyStoreFromEnv } from "./key-store.js";

/** A non-negative integer of milliseconds from the environment, or `undefined` (the core default applies). */
function millisFromEnv(name: string, env: NodeJS.ProcessEnv): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidInputError(`${name} must be a whole number of milliseconds`);
  return n;
}

/**
 * The writers-in-flight timing (docs/rotation.md, "Writers in flight"): GenerateDataKeys' write window
 * (AMK_DATAKEY_WRITE_WINDOW_MS) and how long a rotation's census waits after the activation (AMK_WRITER_SETTLE_MS).
 * Unset: the core defaults (5 s and 60 s). The settle must exceed the window plus the longest store append.
 */
export function writerTimingFromEnv(env: NodeJS.ProcessEnv = process.env): {
  writeWindowMs?: number;
  writerSettleMs?: number;
} {
  const writeWindowMs = millisFromEnv("AMK_DATAKEY_WRITE_WINDOW_MS", env);
  const writerSettleMs = millisFromEnv("AMK_WRITER_SETTLE_MS", env);
  return {
    ...(writeWindowMs !== undefined ? { writeWindowMs } : {}),
    ...(writerSettleMs !== undefined ? { writerSettleMs } : {}),
  };
}

export async function dataKeyServiceFromEnv(logger?: Logger): Promise<DataKeyService> {
  const ttl = process.env.AMK_DATA_KEY_TTL_SECONDS ? Number(process.env.AMK_DATA_KEY_TTL_SECONDS) : undefined;
  const { writeWindowMs } = writerTimingFromEnv();
  return new DataKeyService({
    keyStore: await keyStoreFromEnv(logger),
    events: eventStoreFromEnv(),
    keyTtlSeconds: ttl,
    ...(writeWindowMs !== undefined ? { writeWindowMs } : {}),
  });
}
