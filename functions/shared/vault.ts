/**
 * The secret vault a function uses: a folder (AMK_VAULT_DIR, the embedded default) or Secrets Manager in the vault
 * account/region (AMK_VAULT_REGION, optional AMK_VAULT_KMS_KEY_ID). With AMK_VAULT_ACCESS_ROLE_ARN, every vault
 * call goes through the vault stack's access role, assumed with the session tag `amk:vault-caller` =
 * AMK_VAULT_CALLER (`writer` or `unlock`): the vault key and the secrets are usable through that role only.
 */
import { SecretsManagerClient, type SecretsManagerClientConfig } from "@aws-sdk/client-secrets-manager";
import { fromTemporaryCredentials } from "@aws-sdk/credential-providers";
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
        client: new SecretsManagerClient(secretsManagerConfigFromEnv(env)),
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

export const VAULT_CALLER_TAG = "amk:vault-caller";

/** The Secrets Manager client settings for the vault, assuming the access role when one is configured. */
export function secretsManagerConfigFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): SecretsManagerClientConfig {
  const region = env.AMK_VAULT_REGION;
  const endpoint = env.AMK_VAULT_ENDPOINT || undefined;
  const roleArn = env.AMK_VAULT_ACCESS_ROLE_ARN;
  if (!roleArn) return { region, ...(endpoint ? { endpoint } : {}) };
  const caller = env.AMK_VAULT_CALLER;
  if (caller !== "writer" && caller !== "unlock") {
    throw new InvalidInputError(
      "AMK_VAULT_CALLER must be writer or unlock when AMK_VAULT_ACCESS_ROLE_ARN is set",
    );
  }
  return {
    region,
    ...(endpoint ? { endpoint } : {}),
    credentials: fromTemporaryCredentials({
      params: {
        RoleArn: roleArn,
        RoleSessionName: `amk-${caller}`,
        Tags: [{ Key: VAULT_CALLER_TAG, Value: caller }],
        DurationSeconds: 900,
      },
      clientConfig: { region, ...(env.AMK_STS_ENDPOINT ? { endpoint: env.AMK_STS_ENDPOINT } : {}) },
    }),
  };
}
