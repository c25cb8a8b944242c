/**
 * The secret vault a function uses: a folder (AMK_VAULT_DIR, the embedded default) or Secrets Manager in the vault
 * account/region (AMK_VAULT_REGION, optional AMK_VAULT_KMS_KEY_ID).
 */
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import { SecretsManagerSecretVault } from "../../core/adapters/secrets-manager/secrets-manager-vault.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import type { SecretVault } from "../../core/vault/secret-vault.js";

let cached: Promise<SecretVault> | undefined;

export function vaultFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<SecretVault> {
  cached ??= (async (): Promise<SecretVault> => {
    if (env.AMK_VAULT_DIR) return FileSecretVault.open(env.AMK_VAULT_DIR);
    if (env.AMK_VAULT_REGION) {
      return new SecretsManagerSecretVault({
        client: new SecretsManagerClient({ region: env.AMK_VAULT_REGION }),
        ...(env.AMK_VAULT_KMS_KEY_ID ? { kmsKeyId: env.AMK_VAULT_KMS_KEY_ID } : {}),
      });
    }
    throw new InvalidInputError(
      "set AMK_VAULT_DIR (file vault) or AMK_VAULT_REGION (Secrets Manager) for the vault",
    );
  })().catch((err: unknown) => {
    cached = undefined;
    throw err;
  });
  return cached;
}
