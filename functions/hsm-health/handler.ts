/**
 * hsm-health: logs in to the HSM and reports non-secret facts about the token. Used by operators and drills to
 * tell "HSM unreachable / misconfigured" apart from everything else.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { AmkError } from "../../core/shared/errors.js";
import type { KeyStoreHealth } from "../../core/keystore/key-store.js";
import { keyStoreFromEnv } from "../shared/key-store.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

export type HsmHealthResult =
  | ({ ok: true } & KeyStoreHealth)
  | { ok: false; error: { code: string; message: string; retryable: boolean } };

export const handler = instrumented("handler", async (): Promise<HsmHealthResult> => {
  try {
    const store = await keyStoreFromEnv(logger);
    const health = await store.health();
    logger.info("HSM healthy", { tokenLabel: health.tokenLabel, sessionsOpen: health.sessionsOpen });
    return { ok: true, ...health };
  } catch (err) {
    const safe =
      err instanceof AmkError
        ? { code: err.code, message: err.message, retryable: err.retryable }
        : { code: "INTERNAL", message: "unexpected error", retryable: false };
    logger.error("HSM health check failed", { error: safe });
    return { ok: false, error: safe };
  }
});
