/** The use-case services a function needs, built from its environment once per execution environment. */
import type { Logger } from "@aws-lambda-powertools/logger";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { eventStoreFromEnv } from "./event-store.js";
import { keyStoreFromEnv } from "./key-store.js";

export async function dataKeyServiceFromEnv(logger?: Logger): Promise<DataKeyService> {
  const ttl = process.env.AMK_DATA_KEY_TTL_SECONDS ? Number(process.env.AMK_DATA_KEY_TTL_SECONDS) : undefined;
  return new DataKeyService({
    keyStore: await keyStoreFromEnv(logger),
    events: eventStoreFromEnv(),
    keyTtlSeconds: ttl,
  });
}
