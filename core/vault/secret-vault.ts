/**
 * The secret vault: where recovery kits (binary, versioned) and factor secrets (small JSON, as bytes) are kept, apart
 * from the event store and its backups (DESIGN.md section 4 point 7). Adapters: `core/adapters/file-vault/` (the
 * embedded default) and `core/adapters/secrets-manager/secrets-manager-vault.ts` (AWS Secrets Manager, in a separate
 * account/region). Both pass `test/contract/secret-vault.contract.ts`.
 *
 * Model (the one of Secrets Manager): a secret has immutable versions; each version has a version id, a creation
 * time and labels. A label sits on at most one version of a secret. `putSecret` adds a version and gives it the label
 * `current`; the version that was current gets `previous`. Versions are never changed; the vault never deletes one.
 *
 * This module holds the port and the checks both adapters share, so that they accept and refuse the same inputs.
 */
import { uuidFromName } from "../shared/ids.js";
import { InvalidSecretNameError, InvalidSecretRequestError } from "./errors.js";

/** A version of a secret, without its value. */
export interface SecretVersion {
  readonly versionId: string;
  /** ISO 8601 (UTC) creation time. */
  readonly createdAt: string;
  /** `current` and `previous` first (when present), then the others in lexical order. */
  readonly labels: readonly string[];
}

/** A version of a secret with its value. The caller owns `value` (and may zeroize it). */
export interface StoredSecret extends SecretVersion {
  readonly name: string;
  readonly value: Uint8Array;
}

export interface PutSecretOptions {
  /** Labels to attach besides `current` (e.g. `kit-v3`); a label on another version of the secret moves here. */
  readonly labels?: readonly string[];
  /**
   * Idempotency key: the version id is derived from it (`versionIdForClientToken`). The same token with the same
   * value returns the existing version and changes nothing (labels included); with another value it fails with
   * `VaultConflictError`.
   */
  readonly clientToken?: string;
  /** Description of the secret, set when the first version creates it (Secrets Manager); ignored afterwards. */
  readonly description?: string;
}

export interface GetSecretOptions {
  /** A version id, as returned by `putSecret` or `listVersions`. */
  readonly versionId?: string;
  /** A label: `current`, `previous` or one given to `putSecret`. Give `versionId` or `label`, not both. */
  readonly label?: string;
}

export interface SecretVault {
  /**
   * Stores a new version and makes it current (label `current`; the previous current keeps its other labels and gets
   * `previous`). Returns the new version (for an idempotent repeat, the existing one as it is now).
   * @throws InvalidSecretNameError, InvalidSecretRequestError (nothing written), VaultConflictError, VaultError
   */
  putSecret(name: string, value: Uint8Array, options?: PutSecretOptions): Promise<SecretVersion>;
  /**
   * The current version, or the version with `versionId`, or the version carrying `label`.
   * @throws SecretNotFoundError, SecretVersionNotFoundError, VaultCorruptionError, VaultError
   */
  getSecret(name: string, options?: GetSecretOptions): Promise<StoredSecret>;
  /**
   * Every version, newest first.
   * @throws SecretNotFoundError, VaultError
   */
  listVersions(name: string): Promise<SecretVersion[]>;
}

export const CURRENT_LABEL = "current";
export const PREVIOUS_LABEL = "previous";
/** Largest value, in bytes: the Secrets Manager limit for SecretBinary, kept by every adapter. */
export const MAX_SECRET_BYTES = 65_536;
/** Most labels `putSecret` attaches in one call besides `current` (Secrets Manager allows 20 per version). */
export const MAX_EXTRA_LABELS = 10;
export const MAX_SECRET_NAME_LENGTH = 256;

const NAME_PATTERN = /^[A-Za-z0-9/_+=.@-]+$/;
const LABEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const CLIENT_TOKEN_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
/** A client token usable as a Secrets Manager ClientRequestToken (and version id) as it is. */
const VERBATIM_TOKEN_PATTERN = /^[A-Za-z0-9-]{32,64}$/;

/** The secret of a workspace's recovery kit. */
export function kitSecretName(workspaceId: string): string {
  return validateSecretName(`amk/${workspaceId}/kit`);
}

/** The factor secret of an administrator of a workspace. */
export function factorSecretName(workspaceId: string, adminId: string): string {
  return validateSecretName(`amk/${workspaceId}/factor/${adminId}`);
}

/**
 * Checks a secret name and returns it: 1-256 characters of `A-Za-z0-9/_+=.@-`, no `..`, no leading or trailing
 * `/`, no empty path segment (`//`). Names like `amk/<workspaceId>/kit` and `amk/<workspaceId>/factor/<adminId>`.
 * @throws InvalidSecretNameError
 */
export function validateSecretName(name: unknown): string {
  const shown = typeof name === "string" ? JSON.stringify(name.slice(0, 80)) : typeof name;
  const fail = (why: string): never => {
    throw new InvalidSecretNameError(
      `Invalid secret name ${shown}: ${why}`,
      typeof name === "string" ? name.slice(0, MAX_SECRET_NAME_LENGTH + 1) : String(typeof name),
    );
  };
  if (typeof name !== "string") return fail("not a string");
  if (name.length === 0 || name.length > MAX_SECRET_NAME_LENGTH) {
    return fail(`must be 1-${MAX_SECRET_NAME_LENGTH} characters (got ${name.length})`);
  }
  if (!NAME_PATTERN.test(name)) return fail("only A-Za-z0-9 and / _ + = . @ - are allowed");
  if (name.includes("..")) return fail('must not contain ".."');
  if (name.startsWith("/") || name.endsWith("/")) return fail('must not start or end with "/"');
  if (name.includes("//")) return fail("must not contain an empty path segment");
  return name;
}

/**
 * Checks a label given to `putSecret` or `getSecret`: 1-128 characters of `A-Za-z0-9._-`, starting with a letter or
 * digit, not starting with `AWS` (Secrets Manager's own labels); `previous` only where `allowPrevious`.
 */
export function validateLabel(label: unknown, name: string, allowPrevious: boolean): string {
  if (typeof label !== "string" || !LABEL_PATTERN.test(label) || /^aws/i.test(label)) {
    throw new InvalidSecretRequestError(
      `Invalid label for secret "${name}": ${typeof label === "string" ? JSON.stringify(label.slice(0, 80)) : typeof label} ` +
        "(1-128 characters of A-Za-z0-9._-, starting with a letter or digit, not starting with AWS)",
      { context: { secretName: name } },
    );
  }
  if (label === PREVIOUS_LABEL && !allowPrevious) {
    throw new InvalidSecretRequestError(
      `Label "previous" of secret "${name}" is set by the vault, not by callers`,
      {
        context: { secretName: name, label },
      },
    );
  }
  return label;
}

/** The checked arguments of a `putSecret` call. */
export interface CheckedPut {
  readonly name: string;
  /** Extra labels, without `current`, deduplicated, in lexical order. */
  readonly extraLabels: readonly string[];
  /** The id the new version gets when a client token was given. */
  readonly tokenVersionId?: string;
  readonly description?: string;
}

/**
 * Checks the arguments of `putSecret`: name, value (1 to `MAX_SECRET_BYTES` bytes; an empty value is refused, as
 * Secrets Manager cannot tell it from a missing one), labels, client token, description. Error messages give the
 * value's length at most.
 */
export function checkPut(name: string, value: Uint8Array, options: PutSecretOptions = {}): CheckedPut {
  validateSecretName(name);
  if (!(value instanceof Uint8Array)) {
    throw new InvalidSecretRequestError(`The value for secret "${name}" must be a Uint8Array`, {
      context: { secretName: name },
    });
  }
  if (value.length === 0 || value.length > MAX_SECRET_BYTES) {
    throw new InvalidSecretRequestError(
      `The value for secret "${name}" must be 1-${MAX_SECRET_BYTES} bytes (got ${value.length})`,
      { context: { secretName: name, size: value.length } },
    );
  }
  const labels = options.labels ?? [];
  if (!Array.isArray(labels) || labels.length > MAX_EXTRA_LABELS) {
    throw new InvalidSecretRequestError(
      `At most ${MAX_EXTRA_LABELS} labels may be given for secret "${name}" in one call`,
      { context: { secretName: name } },
    );
  }
  const extra = [...new Set(labels.map((l) => validateLabel(l, name, false)))]
    .filter((l) => l !== CURRENT_LABEL)
    .sort();
  const { clientToken, description } = options;
  if (
    clientToken !== undefined &&
    (typeof clientToken !== "string" || !CLIENT_TOKEN_PATTERN.test(clientToken))
  ) {
    throw new InvalidSecretRequestError(
      `Invalid client token for secret "${name}": 1-128 characters of A-Za-z0-9._:- (a UUID fits)`,
      { context: { secretName: name } },
    );
  }
  if (description !== undefined && (typeof description !== "string" || description.length > 2048)) {
    throw new InvalidSecretRequestError(
      `The description of secret "${name}" must be a string of 0-2048 characters`,
      {
        context: { secretName: name },
      },
    );
  }
  return {
    name,
    extraLabels: extra,
    ...(clientToken === undefined ? {} : { tokenVersionId: versionIdForClientToken(clientToken) }),
    ...(description === undefined ? {} : { description }),
  };
}

/** Checks the arguments of `getSecret`; returns the version id or label asked for (neither: the current version). */
export function checkGet(
  name: string,
  options: GetSecretOptions = {},
): { readonly versionId?: string; readonly label?: string } {
  validateSecretName(name);
  const { versionId, label } = options;
  if (versionId !== undefined && label !== undefined) {
    throw new InvalidSecretRequestError(`Give a versionId or a label for secret "${name}", not both`, {
      context: { secretName: name },
    });
  }
  if (versionId !== undefined) {
    if (typeof versionId !== "string" || !/^[A-Za-z0-9-]{1,64}$/.test(versionId)) {
      throw new InvalidSecretRequestError(`Invalid version id for secret "${name}"`, {
        context: { secretName: name },
      });
    }
    return { versionId };
  }
  if (label !== undefined) return { label: validateLabel(label, name, true) };
  return {};
}

/**
 * The version id a client token gives: the token itself when it is 32-64 characters of `A-Za-z0-9-` (a UUID, as
 * Secrets Manager wants for ClientRequestToken), otherwise a UUID derived from it. Same token, same version id.
 */
export function versionIdForClientToken(clientToken: string): string {
  return VERBATIM_TOKEN_PATTERN.test(clientToken)
    ? clientToken
    : uuidFromName("amk-vault-client-token", clientToken);
}

/** Labels in the port's order: `current`, `previous`, then the others in lexical order, without duplicates. */
export function orderLabels(labels: Iterable<string>): string[] {
  const rank = (l: string): number => (l === CURRENT_LABEL ? 0 : l === PREVIOUS_LABEL ? 1 : 2);
  return [...new Set(labels)].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}
