/**
 * The key store a Lambda function uses, built once per execution environment (cold start) from its environment:
 * AMK_PKCS11_LIBRARY, AMK_PKCS11_TOKEN_LABEL, and the PIN from Secrets Manager (AMK_PKCS11_PIN_SECRET_ID) or,
 * locally, from a 0600 file (AMK_PKCS11_PIN_FILE). The PIN itself is never in the environment.
 */
import type { Logger } from "@aws-lambda-powertools/logger";
import type pkcs11js from "pkcs11js";
import { pkcs11ConfigFromEnv, type PinSource } from "../../core/adapters/pkcs11/config.js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { createFilePinSource } from "../../core/adapters/file-pin-source.js";
import { createSecretsManagerPinSource } from "../../core/adapters/secrets-manager/pin-source.js";
import { KeyStoreConfigError } from "../../core/keystore/errors.js";
import type { KeyStore } from "../../core/keystore/key-store.js";

let cached: { key: string; store: Promise<KeyStore> } | undefined;

/**
 * TEST-ONLY hook (the reliability suite's fault layer, test/support/faults.ts): wrappers applied to every key store
 * built here, around the real adapter, never instead of it. `pkcs11` wraps the loaded PKCS#11 module (the
 * adapter's `intercept` option), `keyStore` the finished store. Default: none. Production code never sets it.
 */
export interface KeyStoreDecorators {
  readonly pkcs11?: (pkcs11: pkcs11js.PKCS11) => pkcs11js.PKCS11;
  readonly keyStore?: (store: KeyStore) => KeyStore;
}

let decorators: KeyStoreDecorators = {};
/** Bumped by each `setKeyStoreDecorators`: part of the cache key, so that stores built before are not reused. */
let decoratorGeneration = 0;

/** TEST-ONLY: see `KeyStoreDecorators`. `{}` removes them. */
export function setKeyStoreDecorators(next: KeyStoreDecorators): void {
  decorators = next;
  decoratorGeneration += 1;
}

/** Which HSM the environment names: a change (a replacement token) gives a new key store. */
export function keyStoreEnvKey(env: NodeJS.ProcessEnv = process.env): string {
  return [
    env.AMK_PKCS11_LIBRARY,
    env.AMK_PKCS11_TOKEN_LABEL,
    env.AMK_PKCS11_PIN_SECRET_ID,
    env.AMK_PKCS11_PIN_FILE,
    // Only once the test-only decorators were set: production keys stay as they were.
    ...(decoratorGeneration > 0 ? [`decorators-${decoratorGeneration}`] : []),
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
    const { pkcs11: intercept, keyStore: decorate } = decorators;
    const store = Pkcs11KeyStore.open({
      config: pkcs11ConfigFromEnv(),
      pin: pinSourceFromEnv(),
      logger: logger ? { warn: (message, context) => logger.warn(message, context) } : undefined,
      ...(intercept ? { intercept } : {}),
    })
      .then((opened): KeyStore => (decorate ? decorate(opened) : opened))
      .catch((err: unknown) => {
        if (cached?.store === store) cached = undefined; // the next invocation tries again
        throw err;
      });
    cached = { key, store };
  }
  return cached.store;
}
