/**
 * `SecretVault` over AWS Secrets Manager (docs/vault.md). The client it is given carries the vault's place: the
 * credentials of a role in the vault account (separate from the event store's account and its backups) and the
 * vault's region. Each vault secret is one Secrets Manager secret with a binary value (`SecretBinary`):
 *
 * - `putSecret`: PutSecretValue with `ClientRequestToken` = the version id (from the client token, or a random UUID)
 *   and `VersionStages` = [AWSCURRENT, ...labels]; the service moves AWSPREVIOUS to the version that was current and
 *   moves each custom label here. The first put creates the secret with CreateSecret (`KmsKeyId` when configured):
 *   with the value when there are no extra labels, otherwise empty and followed by PutSecretValue (CreateSecret sets
 *   no staging labels). A CreateSecret that finds the secret already created by a concurrent put continues as a put.
 *   The version's creation time and labels are then read with ListSecretVersionIds.
 * - `getSecret`: GetSecretValue by VersionId or VersionStage; `listVersions`: ListSecretVersionIds with
 *   IncludeDeprecated, every page, sorted newest first by CreatedDate (ties: current, previous, then by id).
 * - Labels: our `current` and `previous` are AWSCURRENT and AWSPREVIOUS; other labels are staging labels as they are.
 *
 * The SDK's own retries (the client's `maxAttempts`) handle throttling and transient failures; what remains becomes a
 * typed error of core/vault/errors.ts that names the secret, never the value.
 */
import { ACCESS_DENIED_ERRORS, UNAVAILABLE_ERRORS } from "./aws-error-names.js";
import { randomUUID } from "node:crypto";
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  SecretsManagerServiceException,
  type SecretVersionsListEntry,
} from "@aws-sdk/client-secrets-manager";
import { AmkError } from "../../shared/errors.js";
import {
  SecretNotFoundError,
  SecretVersionNotFoundError,
  VaultAccessDeniedError,
  VaultConflictError,
  VaultCorruptionError,
  VaultRequestRejectedError,
  VaultUnavailableError,
  type VaultError,
  type VaultErrorContext,
} from "../../vault/errors.js";
import {
  CURRENT_LABEL,
  PREVIOUS_LABEL,
  checkGet,
  checkPut,
  orderLabels,
  validateSecretName,
  type GetSecretOptions,
  type PutSecretOptions,
  type SecretVault,
  type SecretVersion,
  type StoredSecret,
} from "../../vault/secret-vault.js";

const AWSCURRENT = "AWSCURRENT";
const AWSPREVIOUS = "AWSPREVIOUS";

export interface SecretsManagerVaultOptions {
  /** Client for the vault's account and region; default: a client from the environment's defaults. */
  readonly client?: SecretsManagerClient;
  /** KMS key (id, alias or ARN) for secrets this vault creates; default: the account's `aws/secretsmanager` key. */
  readonly kmsKeyId?: string;
  /**
   * Tags for a secret this vault creates; default `vaultTagsFor`. The vault stack's policy allows CreateSecret only
   * with the tag `amk:vault` = `kits` or `factors` (infra/lib/vault-stack.ts).
   */
  readonly tagsFor?: (name: string) => Record<string, string>;
}

/** `amk:vault` = `kits` for `amk/<workspace>/kit`, `factors` for `amk/<workspace>/factor/<admin>`. */
export function vaultTagsFor(name: string): Record<string, string> {
  if (/^amk\/[^/]+\/kit$/.test(name)) return { "amk:vault": "kits" };
  if (/^amk\/[^/]+\/factor\/[^/]+$/.test(name)) return { "amk:vault": "factors" };
  return {};
}

/** Our label → the staging label. */
export function toVersionStage(label: string): string {
  return label === CURRENT_LABEL ? AWSCURRENT : label === PREVIOUS_LABEL ? AWSPREVIOUS : label;
}

/** Staging labels → our labels, in the port's order. */
export function fromVersionStages(stages: readonly string[] | undefined): string[] {
  return orderLabels(
    (stages ?? []).map((s) => (s === AWSCURRENT ? CURRENT_LABEL : s === AWSPREVIOUS ? PREVIOUS_LABEL : s)),
  );
}

export class SecretsManagerSecretVault implements SecretVault {
  private readonly client: SecretsManagerClient;
  private readonly kmsKeyId: string | undefined;
  private readonly tagsFor: (name: string) => Record<string, string>;

  constructor(options: SecretsManagerVaultOptions = {}) {
    this.client = options.client ?? new SecretsManagerClient({});
    this.kmsKeyId = options.kmsKeyId;
    this.tagsFor = options.tagsFor ?? vaultTagsFor;
  }

  async putSecret(name: string, value: Uint8Array, options?: PutSecretOptions): Promise<SecretVersion> {
    const put = checkPut(name, value, options);
    const versionId = put.tokenVersionId ?? randomUUID();
    const stages = [AWSCURRENT, ...put.extraLabels.map(toVersionStage)];
    const binary = Uint8Array.from(value);
    const context = { secretName: name, versionId, operation: "putSecret" };
    const putValue = async (): Promise<readonly string[] | undefined> =>
      (
        await this.client.send(
          new PutSecretValueCommand({
            SecretId: name,
            ClientRequestToken: versionId,
            SecretBinary: binary,
            VersionStages: stages,
          }),
        )
      ).VersionStages;
    try {
      let stagesNow: readonly string[] | undefined;
      try {
        stagesNow = await putValue();
      } catch (err) {
        if (awsErrorName(err) !== "ResourceNotFoundException") throw err;
        const withValue = put.extraLabels.length === 0;
        try {
          await this.client.send(
            new CreateSecretCommand({
              Name: name,
              ...(withValue ? { SecretBinary: binary, ClientRequestToken: versionId } : {}),
              ...(this.kmsKeyId === undefined ? {} : { KmsKeyId: this.kmsKeyId }),
              ...tagList(this.tagsFor(name)),
              ...(put.description === undefined ? {} : { Description: put.description }),
            }),
          );
          stagesNow = withValue ? [AWSCURRENT] : await putValue();
        } catch (createErr) {
          // Created meanwhile by a concurrent put (or by an earlier try of this one): add the version to it.
          if (awsErrorName(createErr) !== "ResourceExistsException") throw createErr;
          stagesNow = await putValue();
        }
      }
      const listed = await this.findVersion(name, versionId);
      return (
        listed ?? { versionId, createdAt: new Date().toISOString(), labels: fromVersionStages(stagesNow) }
      );
    } catch (err) {
      throw translateVaultError(err, context);
    } finally {
      binary.fill(0);
    }
  }

  async getSecret(name: string, options?: GetSecretOptions): Promise<StoredSecret> {
    const wanted = checkGet(name, options);
    const context = { secretName: name, operation: "getSecret", ...wanted };
    try {
      const out = await this.client.send(
        new GetSecretValueCommand({
          SecretId: name,
          ...(wanted.versionId === undefined ? {} : { VersionId: wanted.versionId }),
          ...(wanted.label === undefined ? {} : { VersionStage: toVersionStage(wanted.label) }),
        }),
      );
      if (out.SecretBinary === undefined || out.VersionId === undefined) {
        throw new VaultCorruptionError(
          `Secret "${name}" holds no binary value${out.SecretString === undefined ? "" : " (it holds a SecretString)"}: ` +
            "it was not written by this vault",
          { ...context, ...(out.VersionId === undefined ? {} : { versionId: out.VersionId }) },
        );
      }
      const value = new Uint8Array(out.SecretBinary);
      out.SecretBinary.fill(0);
      return {
        name,
        versionId: out.VersionId,
        createdAt: isoDate(out.CreatedDate),
        labels: fromVersionStages(out.VersionStages),
        value,
      };
    } catch (err) {
      if (awsErrorName(err) === "ResourceNotFoundException" && (await this.exists(name))) {
        const which =
          wanted.versionId === undefined
            ? `labelled "${wanted.label ?? CURRENT_LABEL}"`
            : `with id ${wanted.versionId}`;
        throw new SecretVersionNotFoundError(
          `Secret "${name}" has no version ${which}`,
          serviceContext(err, context),
          {
            cause: err,
          },
        );
      }
      throw translateVaultError(err, context);
    }
  }

  async listVersions(name: string): Promise<SecretVersion[]> {
    validateSecretName(name);
    try {
      const entries = await this.listEntries(name);
      return entries
        .map(toSecretVersion)
        .sort(
          (a, b) =>
            b.createdAt.localeCompare(a.createdAt) ||
            labelRank(a) - labelRank(b) ||
            a.versionId.localeCompare(b.versionId),
        );
    } catch (err) {
      throw translateVaultError(err, { secretName: name, operation: "listVersions" });
    }
  }

  private async listEntries(name: string, stopAt?: string): Promise<SecretVersionsListEntry[]> {
    const entries: SecretVersionsListEntry[] = [];
    let nextToken: string | undefined;
    do {
      const page = await this.client.send(
        new ListSecretVersionIdsCommand({
          SecretId: name,
          IncludeDeprecated: true,
          MaxResults: 100,
          ...(nextToken === undefined ? {} : { NextToken: nextToken }),
        }),
      );
      entries.push(...(page.Versions ?? []));
      if (stopAt !== undefined && entries.some((e) => e.VersionId === stopAt)) break;
      nextToken = page.NextToken;
    } while (nextToken !== undefined);
    return entries;
  }

  private async findVersion(name: string, versionId: string): Promise<SecretVersion | undefined> {
    const entry = (await this.listEntries(name, versionId)).find((e) => e.VersionId === versionId);
    return entry === undefined ? undefined : toSecretVersion(entry);
  }

  /** Whether the secret exists (after a ResourceNotFoundException: the secret or only the version is missing?). */
  private async exists(name: string): Promise<boolean> {
    try {
      await this.client.send(new DescribeSecretCommand({ SecretId: name }));
      return true;
    } catch (err) {
      if (awsErrorName(err) === "ResourceNotFoundException") return false;
      throw translateVaultError(err, { secretName: name, operation: "getSecret" });
    }
  }
}

/**
 * Orders versions created at the same instant (CreatedDate has at most millisecond precision, and whole seconds on
 * some emulators): the current version first, then the previous one, then the others.
 */
function labelRank(v: SecretVersion): number {
  return v.labels.includes(CURRENT_LABEL) ? 0 : v.labels.includes(PREVIOUS_LABEL) ? 1 : 2;
}

function toSecretVersion(entry: SecretVersionsListEntry): SecretVersion {
  return {
    versionId: entry.VersionId ?? "",
    createdAt: isoDate(entry.CreatedDate),
    labels: fromVersionStages(entry.VersionStages),
  };
}

function isoDate(date: Date | undefined): string {
  return (date ?? new Date(0)).toISOString();
}

/** The wording of the service when a client token names a version that holds another value. */
const IDEMPOTENCY_MISMATCH = /ClientRequestToken|idempoten|existing version/i;

/** The AWS error name of a service error response, or undefined for any other failure. */
function awsErrorName(err: unknown): string | undefined {
  return isServiceError(err) ? err.name : undefined;
}

function serviceContext(err: unknown, context: VaultErrorContext): VaultErrorContext {
  if (!isServiceError(err)) return context;
  const status = err.$metadata?.httpStatusCode;
  return {
    ...context,
    awsErrorName: err.name,
    ...(status === undefined ? {} : { httpStatusCode: status }),
    ...(err.$metadata?.requestId === undefined ? {} : { requestId: err.$metadata.requestId }),
    ...(typeof err.message === "string" && err.message !== ""
      ? { awsMessage: err.message.slice(0, 500) }
      : {}),
  };
}

/**
 * Translates a failure of `client.send` into a typed vault error naming the secret (and version), never the value.
 * Vault errors pass through unchanged.
 */
export function translateVaultError(err: unknown, context: VaultErrorContext): VaultError | AmkError {
  if (err instanceof AmkError) return err;
  const name = context.secretName ?? "(unknown)";
  if (isServiceError(err)) {
    const facts = serviceContext(err, context);
    const status = err.$metadata?.httpStatusCode;
    const detail = `${err.name}${status === undefined ? "" : `, HTTP ${status}`}`;
    const op = context.operation === undefined ? "" : ` (${context.operation})`;
    if (err.name === "ResourceNotFoundException") {
      return new SecretNotFoundError(`Secret "${name}" was not found in the vault${op} (${detail})`, facts, {
        cause: err,
      });
    }
    if (ACCESS_DENIED_ERRORS.has(err.name)) {
      return new VaultAccessDeniedError(
        `Not allowed to use secret "${name}"${op} (${detail}): check the role's secretsmanager permissions, the ` +
          "secret's resource policy and the KMS key policy",
        facts,
        { cause: err },
      );
    }
    if (
      UNAVAILABLE_ERRORS.has(err.name) ||
      err.$fault === "server" ||
      (status !== undefined && status >= 500)
    ) {
      return new VaultUnavailableError(
        `Secrets Manager could not serve secret "${name}"${op} now (${detail})`,
        facts,
        {
          cause: err,
        },
      );
    }
    if (
      context.operation === "putSecret" &&
      (err.name === "ResourceExistsException" ||
        (err.name === "InvalidRequestException" && IDEMPOTENCY_MISMATCH.test(err.message)))
    ) {
      return new VaultConflictError(
        `Secret "${name}" already has version ${String(context.versionId)} with another value${op} (${detail}); ` +
          "versions are immutable: put the new value with another client token",
        facts,
        { cause: err },
      );
    }
    return new VaultRequestRejectedError(
      `Secrets Manager refused the request on secret "${name}"${op} (${detail}): ${String(facts.awsMessage ?? "no message")}`,
      facts,
      { cause: err },
    );
  }
  // No error response: a network failure, a timeout, or a response that could not be read. The last kind may carry
  // the raw response (which may hold a value) and a parser message quoting it, so only safe facts are kept.
  const errName = err instanceof Error ? err.name : typeof err;
  const code =
    typeof (err as { code?: unknown })?.code === "string" ? (err as { code: string }).code : undefined;
  const safeCause = new Error(
    `${errName}${code === undefined ? "" : ` ${code}`} while calling Secrets Manager`,
  );
  safeCause.name = errName;
  return new VaultUnavailableError(
    `Could not reach Secrets Manager for secret "${name}" (${code ?? errName}); retry later`,
    { ...context, errorName: errName, ...(code === undefined ? {} : { errorCode: code }) },
    { cause: safeCause },
  );
}

/**
 * A service error response (also from another copy of the SDK, where `instanceof` fails). Parser errors
 * (SyntaxError, TypeError) are never taken for service errors: they may quote the body.
 */
function isServiceError(err: unknown): err is SecretsManagerServiceException {
  if (err instanceof SecretsManagerServiceException) return true;
  if (!(err instanceof Error) || !("$metadata" in err)) return false;
  const fault = (err as { $fault?: unknown }).$fault;
  return (
    (fault === "client" || fault === "server") &&
    !["Error", "SyntaxError", "TypeError", "RangeError"].includes(err.name)
  );
}

function tagList(tags: Record<string, string>): { Tags?: { Key: string; Value: string }[] } {
  const list = Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
  return list.length === 0 ? {} : { Tags: list };
}
