/**
 * A small AWS Secrets Manager emulator for tests, at the protocol level: a `node:http` server on 127.0.0.1 (port 0)
 * that speaks AWS JSON 1.1 (`POST /`, `x-amz-target: secretsmanager.<Op>`, `content-type:
 * application/x-amz-json-1.1`), so the real SDK client (SigV4-signed, dummy credentials) talks to it unchanged.
 *
 * Operations, with the service's semantics as the API reference describes them: CreateSecret, PutSecretValue,
 * GetSecretValue, ListSecretVersionIds (pagination, IncludeDeprecated) and DescribeSecret.
 * - A version's id is its ClientRequestToken. The same token with the same value is ignored (the version comes back
 *   unchanged); with another value the request fails with ResourceExistsException.
 * - Staging labels sit on one version each: a label given to a new version moves there; when AWSCURRENT moves, the
 *   version it left gets AWSPREVIOUS. A version without labels is deprecated (listed only with IncludeDeprecated).
 * - SecretBinary travels as base64 in JSON; CreatedDate as epoch seconds (strictly increasing here, in ms steps).
 * - Errors are HTTP 400 (500 for InternalServiceError) with `{"__type": <name>, "message": <text>}`.
 *
 * Limits: no UpdateSecretVersionStage, IAM, KMS, rotation, deletion, tags or replication; CreateSecret on an existing
 * name always fails (ResourceExistsException); the signature's shape (credential scope) is checked, not the signature;
 * versions are never removed (the service removes deprecated ones beyond 100).
 * `failNext` makes the next requests fail with a given error (or a recorded fixture from test/fixtures/).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { SecretsManagerClient, type SecretsManagerClientConfig } from "@aws-sdk/client-secrets-manager";

export interface InjectedFailure {
  /** AWS error name (`__type`), e.g. ThrottlingException; or give `fixture`. */
  readonly type?: string;
  /** A recorded error response in test/fixtures/secrets-manager/, e.g. `access-denied`. */
  readonly fixture?: string;
  readonly status?: number;
  readonly message?: string;
  /** How many requests fail this way (default 1). */
  readonly count?: number;
  /** Only requests of this operation (e.g. `PutSecretValue`); default any. */
  readonly operation?: string;
}

export interface EmulatorRequest {
  readonly operation: string;
  readonly body: Record<string, unknown>;
  /** The access key id the request was signed with (from its SigV4 Authorization header). */
  readonly accessKeyId?: string;
  /** The session token sent with the request (temporary credentials). */
  readonly sessionToken?: string;
}

export interface SecretsManagerEmulator {
  readonly endpoint: string;
  readonly region: string;
  /** Every request received, in order. */
  readonly requests: EmulatorRequest[];
  /** Requests that were not well-formed AWS JSON 1.1 Secrets Manager requests (tests expect none). */
  readonly violations: string[];
  /** A real SDK client pointed at the emulator (no retries unless `extra` says so). */
  client(extra?: Partial<SecretsManagerClientConfig>): SecretsManagerClient;
  failNext(failure: InjectedFailure): void;
  close(): Promise<void>;
}

interface Value {
  readonly binary?: string; // base64, as on the wire
  readonly string?: string;
}
interface Version extends Value {
  readonly id: string;
  readonly created: number; // epoch seconds
  readonly stages: Set<string>;
}
interface Secret {
  readonly arn: string;
  readonly name: string;
  readonly created: number;
  readonly description: string | undefined;
  readonly kmsKeyId: string | undefined;
  readonly tags: unknown;
  readonly versions: Version[]; // oldest first
}
type Body = Record<string, unknown>;

class AwsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const fail = (type: string, message: string, status = 400): never => {
  throw new AwsError(type, message, status);
};
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

export async function startSecretsManagerEmulator(
  options: {
    region?: string;
    account?: string;
    /** Largest page of ListSecretVersionIds, whatever MaxResults asks (default 100). */
    maxPageSize?: number;
    /** CreatedDate in whole seconds (as some emulators give it), instead of strictly increasing milliseconds. */
    wholeSeconds?: boolean;
  } = {},
): Promise<SecretsManagerEmulator> {
  const region = options.region ?? "eu-central-1";
  const account = options.account ?? "123456789012";
  const maxPageSize = options.maxPageSize ?? 100;
  const secrets = new Map<string, Secret>();
  const requests: EmulatorRequest[] = [];
  const violations: string[] = [];
  const failures: { failure: InjectedFailure; left: number }[] = [];
  let lastMs = 0;
  const now = (): number =>
    options.wholeSeconds === true
      ? Math.floor(Date.now() / 1000)
      : (lastMs = Math.max(Date.now(), lastMs + 1)) / 1000;

  const find = (id: unknown): Secret =>
    secrets.get(str(id) ?? "") ??
    [...secrets.values()].find((x) => x.arn === id) ??
    fail("ResourceNotFoundException", "Secrets Manager can't find the specified secret.");
  const token = (body: Body): string => {
    const t = str(body.ClientRequestToken) ?? "";
    return t.length >= 32 && t.length <= 64
      ? t
      : fail("InvalidParameterException", "Invalid ClientRequestToken.");
  };
  const value = (body: Body): Value | undefined => {
    const [binary, string] = [str(body.SecretBinary), str(body.SecretString)];
    if (binary !== undefined && string !== undefined) {
      fail("InvalidParameterException", "You can't specify both a binary secret value and a string.");
    }
    return binary !== undefined ? { binary } : string !== undefined ? { string } : undefined;
  };
  /** Attaches `stage` to `target` only; moving AWSCURRENT gives the version it left AWSPREVIOUS. */
  const attach = (secret: Secret, target: Version, stage: string): void => {
    for (const v of secret.versions) {
      if (v !== target && v.stages.delete(stage) && stage === "AWSCURRENT") attach(secret, v, "AWSPREVIOUS");
    }
    target.stages.add(stage);
  };
  const addVersion = (secret: Secret, id: string, val: Value, stages: string[]): Version => {
    const existing = secret.versions.find((v) => v.id === id);
    if (existing !== undefined) {
      if (existing.binary === val.binary && existing.string === val.string) return existing;
      fail(
        "ResourceExistsException",
        "You can't modify an existing version, you can only create a new version.",
      );
    }
    const version: Version = { id, ...val, created: now(), stages: new Set() };
    secret.versions.push(version);
    const first = secret.versions.length === 1 ? ["AWSCURRENT"] : [];
    for (const stage of [...first, ...stages]) attach(secret, version, stage);
    return version;
  };
  const stagesOf = (v: Version): string[] => [...v.stages].sort();

  const operations: Record<string, (body: Body) => Body> = {
    CreateSecret(body) {
      const name = str(body.Name) ?? "";
      if (!/^[A-Za-z0-9/_+=.@-]{1,512}$/.test(name)) fail("InvalidParameterException", "Invalid name.");
      if (secrets.has(name)) {
        fail("ResourceExistsException", `The operation failed because the secret ${name} already exists.`);
      }
      const val = value(body);
      const secret: Secret = {
        arn: `arn:aws:secretsmanager:${region}:${account}:secret:${name}-${randomBytes(3).toString("hex")}`,
        name,
        created: now(),
        description: str(body.Description),
        kmsKeyId: str(body.KmsKeyId),
        tags: body.Tags,
        versions: [],
      };
      const version = val === undefined ? undefined : addVersion(secret, token(body), val, []);
      secrets.set(name, secret);
      return { ARN: secret.arn, Name: name, VersionId: version?.id };
    },
    PutSecretValue(body) {
      const secret = find(body.SecretId);
      const val =
        value(body) ?? fail("InvalidRequestException", "You must provide SecretString or SecretBinary.");
      const stages = Array.isArray(body.VersionStages) ? body.VersionStages.map(String) : ["AWSCURRENT"];
      if (stages.length < 1 || stages.length > 20)
        fail("InvalidParameterException", "Invalid VersionStages.");
      const v = addVersion(secret, token(body), val, stages);
      return { ARN: secret.arn, Name: secret.name, VersionId: v.id, VersionStages: stagesOf(v) };
    },
    GetSecretValue(body) {
      const secret = find(body.SecretId);
      const id = str(body.VersionId);
      const stage = str(body.VersionStage) ?? (id === undefined ? "AWSCURRENT" : undefined);
      const v =
        secret.versions.find((x) => (id ?? x.id) === x.id && (stage === undefined || x.stages.has(stage))) ??
        fail(
          "ResourceNotFoundException",
          `Secrets Manager can't find the specified secret value for ${id === undefined ? `staging label: ${stage}` : `VersionId: ${id}`}`,
        );
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: v.id,
        SecretBinary: v.binary,
        SecretString: v.string,
        VersionStages: stagesOf(v),
        CreatedDate: v.created,
      };
    },
    ListSecretVersionIds(body) {
      const secret = find(body.SecretId);
      const all = secret.versions.filter((v) => body.IncludeDeprecated === true || v.stages.size > 0);
      const start =
        body.NextToken === undefined ? 0 : Number(Buffer.from(String(body.NextToken), "base64").toString());
      if (!Number.isInteger(start) || start < 0 || start > all.length) {
        fail("InvalidNextTokenException", "The NextToken value is invalid.");
      }
      const size = Math.min(typeof body.MaxResults === "number" ? body.MaxResults : 100, maxPageSize);
      const page = all.slice(start, start + size);
      const end = start + page.length;
      return {
        ARN: secret.arn,
        Name: secret.name,
        Versions: page.map((v) => ({ VersionId: v.id, VersionStages: stagesOf(v), CreatedDate: v.created })),
        NextToken: end < all.length ? Buffer.from(String(end)).toString("base64") : undefined,
      };
    },
    DescribeSecret(body) {
      const secret = find(body.SecretId);
      const labelled = secret.versions.filter((v) => v.stages.size > 0);
      return {
        ARN: secret.arn,
        Name: secret.name,
        Description: secret.description,
        KmsKeyId: secret.kmsKeyId,
        Tags: secret.tags,
        CreatedDate: secret.created,
        VersionIdsToStages: Object.fromEntries(labelled.map((v) => [v.id, stagesOf(v)])),
      };
    },
  };

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/x-amz-json-1.1",
      "x-amzn-requestid": randomUUID(),
      "content-length": String(Buffer.byteLength(text)),
    });
    res.end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const target = String(req.headers["x-amz-target"]);
    const operation = target.replace(/^secretsmanager\./, "");
    let body: Body | undefined;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Body;
    } catch {
      body = undefined;
    }
    const scope = new RegExp(
      `^AWS4-HMAC-SHA256 Credential=[^/]+/\\d{8}/${region}/secretsmanager/aws4_request, `,
    );
    const problem = (
      [
        [req.method === "POST" && req.url === "/", `expected POST /, got ${req.method} ${req.url}`],
        [req.headers["content-type"] === "application/x-amz-json-1.1", "content-type is not AWS JSON 1.1"],
        [target.startsWith("secretsmanager."), `unexpected x-amz-target ${target}`],
        [
          scope.test(req.headers.authorization ?? ""),
          `not a SigV4 signature for secretsmanager in ${region}`,
        ],
        [body !== undefined, "body is not JSON"],
        [operation in operations, `unknown operation ${operation}`],
      ] as const
    ).find(([ok]) => !ok)?.[1];
    if (problem !== undefined || body === undefined) {
      violations.push(`${operation}: ${problem}`);
      return send(res, 400, { __type: "SerializationException", message: problem });
    }
    const accessKeyId = /Credential=([^/]+)\//.exec(req.headers.authorization ?? "")?.[1];
    const token = req.headers["x-amz-security-token"];
    requests.push({
      operation,
      body,
      ...(accessKeyId ? { accessKeyId } : {}),
      ...(typeof token === "string" ? { sessionToken: token } : {}),
    });
    const injected = failures.find((f) => (f.failure.operation ?? operation) === operation);
    if (injected !== undefined) {
      if (--injected.left <= 0) failures.splice(failures.indexOf(injected), 1);
      const { fixture, type = "InternalServiceError", status, message } = injected.failure;
      if (fixture === undefined) {
        const code = status ?? (type === "InternalServiceError" ? 500 : 400);
        return send(res, code, { __type: type, message: message ?? `Injected ${type}` });
      }
      const url = new URL(`../fixtures/secrets-manager/${fixture}.json`, import.meta.url);
      const recorded = JSON.parse(readFileSync(url, "utf8")) as { status: number; body: unknown };
      return send(res, recorded.status, recorded.body);
    }
    try {
      send(res, 200, operations[operation]!(body));
    } catch (err) {
      if (!(err instanceof AwsError)) throw err;
      send(res, err.status, { __type: err.type, message: err.message });
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      violations.push(`emulator error: ${String(err)}`);
      if (!res.headersSent) send(res, 500, { __type: "InternalServiceError", message: "emulator error" });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    region,
    requests,
    violations,
    client: (extra = {}) =>
      new SecretsManagerClient({
        endpoint,
        region,
        credentials: { accessKeyId: "AKIDAMKEMULATOR", secretAccessKey: "amk-emulator-secret-access-key" },
        maxAttempts: 1,
        ...extra,
      }),
    failNext: (failure) => failures.push({ failure, left: failure.count ?? 1 }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
