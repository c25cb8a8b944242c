/**
 * The key store a Lambda function uses, built once per execution environment (cold start) from its environment:
 * AMK_PKCS11_LIBRARY, AMK_PKCS11_TOKEN_LABEL, and the PIN from Secrets Manager (AMK_PKCS11_PIN_SECRET_ID) or,
 * locally, from a 0600 file (AMK_PKCS11_PIN_FILE). The PIN itself is never in the environment.
 */
import type { Logger } from "@aws-lambda-powertools/logger";
import { pkcs11ConfigFromEnv, type PinSource } from "../../core/adapters/pkcs11/config.js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { createFilePinSource } from "../../core/adapters/file-pin-source.js";
import { createSecretsManagerPinSource } from "../../core/adapters/secrets-manager/pin-source.js";
import { KeyStoreConfigError } from "../../core/keystore/errors.js";
import type { KeyStore } from "../../core/keystore/key-store.js";

let cached: { key: string; store: Promise<KeyStore> } | undefined;

/** Which HSM the environment names: a change (a replacement token) gives a new key store. */
export function keyStoreEnvKey(env: NodeJS.ProcessEnv = process.env): string {
  return [
    env.AMK_PKCS11_LIBRARY,
    env.AMK_PKCS11_TOKEN_LABEL,
    env.AMK_PKCS11_PIN_SECRET_ID,
    env.AMK_PKCS11_PIN_FILE,
  ].join("|");
}

export function pinSourceFromEnv(env: NodeJS.ProcessEnv = process.env): PinSource {
  if (env.AMK_PKCS11_PIN_SECRET_ID)
    return createSecretsManagerPinSource({ secretId: env.AMK_PKCS11_PIN_SECRET_ID });
  if (env.AMK_PKCS11_PIN_FILE) return createFilePinSource(env.AMK_PKCS11_PIN_FILE);
  throw new KeyStoreConfigError(
    "set AMK_PKCS11_PIN_SECRET_ID (Secrets Manager) or AMK_PKCS11_PIN_FILE for the HSM PIN",
  );
}

export function keyStoreFromEnv(logger?: Logger): Promise<KeyStore> {
  const key = keyStoreEnvKey();
  if (cached?.key !== key) {
    const store = Pkcs11KeyStore.open({
      config: pkcs11ConfigFromEnv(),
      pin: pinSourceFromEnv(),
      logger: logger ? { warn: (message, context) => logger.warn(message, context) } : undefined,
    }).catch((err: unknown) => {
      if (cached?.store === store) cached = undefined; // the next invocation tries again
      throw err;
    });
    cached = { key, store };
  }
  return cached.store;
}
