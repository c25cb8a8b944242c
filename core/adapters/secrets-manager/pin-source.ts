/**
 * The HSM PIN from AWS Secrets Manager: a `PinSource` (`() => Promise<string>`) for the PKCS#11 key store.
 *
 * The secret's SecretString holds the CloudHSM login `crypto-user:password` in one of three shapes:
 * - the plain PIN (surrounding whitespace, e.g. a trailing newline, is trimmed);
 * - JSON `{"pin": "crypto-user:password"}`;
 * - JSON `{"username": "crypto-user", "password": "..."}`, joined as `username:password`.
 *
 * The PIN is cached in memory for a bounded time (default 5 minutes) so that a warm Lambda does not call Secrets
 * Manager on every invocation, while a rotated PIN is picked up within that time; `invalidate()` drops it at once
 * (e.g. after the HSM refused the login). Concurrent callers share one request. Failures are not cached.
 *
 * SDK errors become the typed errors of `./errors.ts`. Neither their messages, their contexts nor their causes
 * contain the secret's value: an error from a response that could hold the value (an unreadable success response)
 * is replaced by a sanitised cause.
 */
import { ACCESS_DENIED_ERRORS, UNAVAILABLE_ERRORS } from "./aws-error-names.js";
import {
  GetSecretValueCommand,
  SecretsManagerClient,
  SecretsManagerServiceException,
  type GetSecretValueCommandOutput,
} from "@aws-sdk/client-secrets-manager";
import { InvalidInputError } from "../../shared/errors.js";
import {
  PinSecretAccessDeniedError,
  PinSecretFormatError,
  PinSecretNotFoundError,
  PinSecretRequestRejectedError,
  PinSecretUnavailableError,
  type PinSecretError,
  type PinSecretErrorContext,
} from "./errors.js";

export const DEFAULT_PIN_CACHE_TTL_MS = 5 * 60 * 1000;

export interface SecretsManagerPinSourceOptions {
  /** Name or ARN of the secret (a complete ARN for a secret in another account). */
  readonly secretId: string;
  /** Client to use (endpoint, region, credentials, retries); default: a client from the environment's defaults. */
  readonly client?: SecretsManagerClient;
  /** How long a PIN read is reused, in milliseconds; 0 reads the secret on every call. Default 5 minutes. */
  readonly cacheTtlMs?: number;
  /** Staging label of the version to read; default: the service's default (`AWSCURRENT`). */
  readonly versionStage?: string;
  /** Clock for the cache, in milliseconds; default `Date.now`. */
  readonly now?: () => number;
}

/** A PIN source whose cached PIN can be dropped, so that the next call reads the secret again. */
export type CachedPinSource = (() => Promise<string>) & { readonly invalidate: () => void };

export function createSecretsManagerPinSource(options: SecretsManagerPinSourceOptions): CachedPinSource {
  const { secretId, versionStage } = options;
  if (typeof secretId !== "string" || secretId.trim() === "") {
    throw new InvalidInputError(
      "createSecretsManagerPinSource: secretId must be a non-empty secret name or ARN",
    );
  }
  const ttl = options.cacheTtlMs ?? DEFAULT_PIN_CACHE_TTL_MS;
  if (!Number.isFinite(ttl) || ttl < 0) {
    throw new InvalidInputError("createSecretsManagerPinSource: cacheTtlMs must be a finite number >= 0", {
      context: { secretId, cacheTtlMs: ttl },
    });
  }
  const now = options.now ?? Date.now;
  let client = options.client;
  let cached: { readonly pin: string; readonly expiresAt: number } | undefined;
  let inflight: Promise<string> | undefined;

  const read = async (): Promise<string> => {
    client ??= new SecretsManagerClient({});
    let out: GetSecretValueCommandOutput;
    try {
      out = await client.send(
        new GetSecretValueCommand({
          SecretId: secretId,
          ...(versionStage === undefined ? {} : { VersionStage: versionStage }),
        }),
      );
    } catch (err) {
      throw translateSdkError(err, secretId);
    }
    return parsePinSecretString(out.SecretString, { secretId, hasBinary: out.SecretBinary !== undefined });
  };

  // Bumped by invalidate(): a read that started before it neither fills the cache nor is shared with later callers.
  let generation = 0;

  const source = async (): Promise<string> => {
    if (cached !== undefined && now() < cached.expiresAt) return cached.pin;
    if (inflight === undefined) {
      const started = generation;
      const current: Promise<string> = read()
        .then((pin) => {
          if (ttl > 0 && started === generation) cached = { pin, expiresAt: now() + ttl };
          return pin;
        })
        .finally(() => {
          if (inflight === current) inflight = undefined;
        });
      inflight = current;
    }
    return inflight;
  };
  return Object.assign(source, {
    invalidate: (): void => {
      generation += 1;
      cached = undefined;
      inflight = undefined;
    },
  });
}

/**
 * Extracts the PIN from a SecretString (see the module comment for the accepted shapes). Errors describe the shape
 * found, never the value.
 */
export function parsePinSecretString(
  secretString: string | undefined,
  facts: { readonly secretId: string; readonly hasBinary?: boolean },
): string {
  const { secretId } = facts;
  if (secretString === undefined) {
    throw new PinSecretFormatError(
      `HSM PIN secret "${secretId}" has no SecretString` +
        (facts.hasBinary === true ? " (it holds SecretBinary): store the PIN as a string" : ""),
      { secretId, shape: facts.hasBinary === true ? "binary" : "missing" },
    );
  }
  const text = secretString.trim();
  if (text === "") {
    throw new PinSecretFormatError(`HSM PIN secret "${secretId}" is empty`, { secretId, shape: "empty" });
  }
  if (!text.startsWith("{")) return text;

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // No cause on purpose: JSON.parse messages quote the text they failed on.
    throw new PinSecretFormatError(
      `HSM PIN secret "${secretId}" starts with "{" but is not valid JSON; expected a plain PIN, ` +
        `{"pin": "..."} or {"username": "...", "password": "..."}`,
      { secretId, shape: "invalid-json" },
    );
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new PinSecretFormatError(`HSM PIN secret "${secretId}" is JSON but not an object`, {
      secretId,
      shape: "json-non-object",
    });
  }
  const fields = parsed as Record<string, unknown>;
  const nonEmpty = (v: unknown): v is string => typeof v === "string" && v !== "";
  if ("pin" in fields) {
    if (nonEmpty(fields.pin)) return fields.pin;
    throw new PinSecretFormatError(`HSM PIN secret "${secretId}": "pin" must be a non-empty string`, {
      secretId,
      shape: "json",
      keys: Object.keys(fields).sort(),
    });
  }
  if (nonEmpty(fields.username) && nonEmpty(fields.password)) {
    if (fields.username.includes(":")) {
      throw new PinSecretFormatError(
        `HSM PIN secret "${secretId}": "username" must not contain ":" (the PIN is "username:password")`,
        { secretId, shape: "json", keys: Object.keys(fields).sort() },
      );
    }
    return `${fields.username}:${fields.password}`;
  }
  const keys = Object.keys(fields).sort().slice(0, 20);
  throw new PinSecretFormatError(
    `HSM PIN secret "${secretId}" is JSON without a usable PIN: expected a non-empty string "pin", or non-empty ` +
      `strings "username" and "password" (found keys: ${keys.length === 0 ? "none" : keys.join(", ")})`,
    { secretId, shape: "json", keys },
  );
}

const NOT_FOUND = new Set(["ResourceNotFoundException"]);

/** Translates an error thrown by `client.send` into a typed error that names the secret but holds no value. */
export function translateSdkError(err: unknown, secretId: string): PinSecretError {
  if (err instanceof SecretsManagerServiceException || isServiceErrorShape(err)) {
    // An error response from the service: its body is an error message, never the secret's value.
    const e = err as SecretsManagerServiceException;
    const status = e.$metadata?.httpStatusCode;
    const context: PinSecretErrorContext = {
      secretId,
      awsErrorName: e.name,
      ...(status === undefined ? {} : { httpStatusCode: status }),
      ...(e.$metadata?.requestId === undefined ? {} : { requestId: e.$metadata.requestId }),
      ...(typeof e.message === "string" && e.message !== "" ? { awsMessage: e.message.slice(0, 500) } : {}),
    };
    const detail = `${e.name}${status === undefined ? "" : `, HTTP ${status}`}`;
    if (NOT_FOUND.has(e.name)) {
      return new PinSecretNotFoundError(
        `HSM PIN secret "${secretId}" was not found (${detail}): check the configured secret name or ARN, ` +
          "account and region",
        context,
        { cause: err },
      );
    }
    if (ACCESS_DENIED_ERRORS.has(e.name)) {
      return new PinSecretAccessDeniedError(
        `Not allowed to read HSM PIN secret "${secretId}" (${detail}): the caller needs ` +
          "secretsmanager:GetSecretValue on it (and kms:Decrypt on its key if that is customer-managed)",
        context,
        { cause: err },
      );
    }
    if (UNAVAILABLE_ERRORS.has(e.name) || e.$fault === "server" || (status !== undefined && status >= 500)) {
      return new PinSecretUnavailableError(
        `Secrets Manager could not serve HSM PIN secret "${secretId}" now (${detail}); retry later`,
        context,
        { cause: err },
      );
    }
    return new PinSecretRequestRejectedError(
      `Secrets Manager refused to read HSM PIN secret "${secretId}" (${detail}): ${context.awsMessage ?? "no message"}`,
      context,
      { cause: err },
    );
  }

  // No error response: a network failure, a timeout, or a response that could not be read. The last kind carries
  // the raw response (which may hold the value) and a parser message quoting it, so only safe facts are kept.
  const name = err instanceof Error ? err.name : typeof err;
  const code =
    typeof (err as { code?: unknown })?.code === "string" ? (err as { code: string }).code : undefined;
  const safeCause = new Error(`${name}${code === undefined ? "" : ` ${code}`} while calling GetSecretValue`);
  safeCause.name = name;
  return new PinSecretUnavailableError(
    `Could not read HSM PIN secret "${secretId}" from Secrets Manager (${code ?? name}); retry later`,
    { secretId, errorName: name, ...(code === undefined ? {} : { errorCode: code }) },
    { cause: safeCause },
  );
}

/**
 * A service error from another copy of the SDK (where `instanceof` fails): has `$fault` and `$metadata` and an AWS
 * error name. Parser errors (SyntaxError, TypeError) are never taken for service errors: they may quote the body.
 */
function isServiceErrorShape(err: unknown): boolean {
  if (!(err instanceof Error) || !("$metadata" in err)) return false;
  const fault = (err as { $fault?: unknown }).$fault;
  return (
    (fault === "client" || fault === "server") &&
    !["Error", "SyntaxError", "TypeError", "RangeError"].includes(err.name)
  );
}
