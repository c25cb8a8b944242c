/**
 * The access-token signing key a function uses: an HMAC key of at least 32 bytes held in Secrets Manager
 * (AMK_TOKEN_SIGNING_SECRET_ID; a name or ARN), as SecretBinary or as base64 in SecretString. Read once per
 * execution environment and kept in memory; a failed read is not cached (the next invocation tries again).
 * AMK_SECRETS_ENDPOINT points the client elsewhere (the emulator in tests, LocalStack).
 *
 * A rotated signing secret is not picked up by a warm container, and tokens signed with the previous key stop
 * verifying at once: key rotation is not built (docs/access-tokens.md).
 */
import {
  GetSecretValueCommand,
  SecretsManagerClient,
  type GetSecretValueCommandOutput,
} from "@aws-sdk/client-secrets-manager";
import { AccessTokenKeyError } from "../../core/access/errors.js";
import { MIN_SIGNING_KEY_BYTES } from "../../core/access/access-tokens.js";

let cached: { key: string; value: Promise<Uint8Array> } | undefined;

/** A key provider for `AccessTokenService` (`signingKey`), configured from the environment. */
export function tokenSigningKeyFromEnv(env: NodeJS.ProcessEnv = process.env): () => Promise<Uint8Array> {
  const secretId = env.AMK_TOKEN_SIGNING_SECRET_ID;
  if (!secretId) throw new AccessTokenKeyError("AMK_TOKEN_SIGNING_SECRET_ID is not set");
  const endpoint = env.AMK_SECRETS_ENDPOINT || undefined;
  const cacheKey = `${secretId}|${endpoint ?? ""}`;
  return () => {
    if (cached?.key !== cacheKey) {
      const value = readSigningKey(secretsClient(env, endpoint), secretId).catch((err: unknown) => {
        if (cached?.value === value) cached = undefined;
        throw err;
      });
      cached = { key: cacheKey, value };
    }
    return cached.value;
  };
}

/** Forgets the cached key (tests; or after an operator replaced the secret). */
export function resetTokenSigningKeyCache(): void {
  cached = undefined;
}

function secretsClient(env: NodeJS.ProcessEnv, endpoint: string | undefined): SecretsManagerClient {
  return new SecretsManagerClient({
    ...(endpoint ? { endpoint } : {}),
    region: env.AWS_REGION ?? (endpoint ? "us-east-1" : undefined),
    ...(endpoint && !env.AWS_ACCESS_KEY_ID
      ? { credentials: { accessKeyId: "local", secretAccessKey: "local" } }
      : {}),
  });
}

/** Reads and decodes the key. Errors name the secret and the AWS error, never the value. */
export async function readSigningKey(client: SecretsManagerClient, secretId: string): Promise<Uint8Array> {
  let out: GetSecretValueCommandOutput;
  try {
    out = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
  } catch (err) {
    // Keep only the error's name and HTTP status: a response that failed to parse may quote the secret's value.
    const name = err instanceof Error ? err.name : typeof err;
    const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
    const safeCause = new Error(`${name} while calling GetSecretValue`);
    safeCause.name = name;
    throw new AccessTokenKeyError(`could not read the token signing secret "${secretId}" (${name})`, {
      cause: safeCause,
      context: { secretId, awsErrorName: name, ...(status === undefined ? {} : { httpStatusCode: status }) },
    });
  }
  return decodeSigningKey(out, secretId);
}

/** SecretBinary as it is, or SecretString as standard base64 (surrounding whitespace ignored). */
export function decodeSigningKey(
  out: Pick<GetSecretValueCommandOutput, "SecretBinary" | "SecretString">,
  secretId: string,
): Uint8Array {
  let key: Uint8Array;
  if (out.SecretBinary !== undefined) {
    key = new Uint8Array(out.SecretBinary);
  } else if (out.SecretString !== undefined) {
    const text = out.SecretString.trim();
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
      throw new AccessTokenKeyError(
        `the token signing secret "${secretId}" is not base64 (store the key as SecretBinary or base64 SecretString)`,
        { context: { secretId, shape: "string" } },
      );
    }
    key = new Uint8Array(Buffer.from(text, "base64"));
  } else {
    throw new AccessTokenKeyError(`the token signing secret "${secretId}" has no value`, {
      context: { secretId, shape: "missing" },
    });
  }
  if (key.byteLength < MIN_SIGNING_KEY_BYTES) {
    const bytes = key.byteLength;
    key.fill(0);
    throw new AccessTokenKeyError(
      `the token signing secret "${secretId}" holds ${bytes} bytes; at least ${MIN_SIGNING_KEY_BYTES} are needed`,
      { context: { secretId, bytes } },
    );
  }
  return key;
}
