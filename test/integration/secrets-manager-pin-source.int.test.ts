/**
 * The Secrets Manager PIN source against the real protocol, with no mock of the SDK: a `node:http` server on
 * 127.0.0.1 answers the AWS JSON 1.1 `GetSecretValue` operation with the recorded response shapes from
 * test/fixtures/secrets-manager/, and a real `SecretsManagerClient` (SigV4-signed, dummy static credentials) talks to
 * it. The server also checks that what the client sends is a well-formed GetSecretValue request.
 *
 * When AWS_ENDPOINT_URL is set (LocalStack, see localstack.yml), one more test runs against that endpoint.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  SecretsManagerClient,
  type SecretsManagerClientConfig,
} from "@aws-sdk/client-secrets-manager";
import {
  PinSecretAccessDeniedError,
  PinSecretError,
  PinSecretFormatError,
  PinSecretNotFoundError,
  PinSecretRequestRejectedError,
  PinSecretUnavailableError,
} from "../../core/adapters/secrets-manager/errors.js";
import { createSecretsManagerPinSource } from "../../core/adapters/secrets-manager/pin-source.js";
import { InvalidInputError } from "../../core/shared/errors.js";

interface Fixture {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}
const fixture = (name: string): Fixture =>
  JSON.parse(
    readFileSync(new URL(`../fixtures/secrets-manager/${name}.json`, import.meta.url), "utf8"),
  ) as Fixture;

const REGION = "eu-central-1";
const ACCOUNT = "123456789012";
const SUCCESS = fixture("get-secret-value.success");

/** What the server answers for a SecretId: a SecretString, a binary secret, a recorded error, or raw bytes. */
type Behaviour =
  | { kind: "string"; value: string; delayMs?: number }
  | { kind: "binary"; base64: string }
  | { kind: "fixture"; name: string }
  | { kind: "raw"; status: number; body: string };

/** Every PIN-like value the server holds: none may ever appear in an error. */
const PINS = {
  plain: "crypto-user:Plain-PIN-1a",
  newline: "crypto-user:Newline-PIN-2b",
  jsonPin: "crypto-user:Json-PIN-3c",
  password: "Pass-PIN-4d",
  badKeys: "BadKeys-PIN-5e",
  broken: "Broken-PIN-6f",
  garbled: "Garbled-PIN-7g",
  binary: "Binary-PIN-8h",
} as const;

const SECRETS: Record<string, Behaviour> = {
  "amk/plain": { kind: "string", value: PINS.plain },
  "amk/slow": { kind: "string", value: PINS.plain, delayMs: 50 },
  "amk/plain-newline": { kind: "string", value: `  ${PINS.newline}\n` },
  "amk/json-pin": { kind: "string", value: JSON.stringify({ pin: PINS.jsonPin }) },
  "amk/json-userpass": {
    kind: "string",
    value: JSON.stringify({ username: "crypto-user", password: PINS.password }),
  },
  "amk/json-bad-keys": { kind: "string", value: JSON.stringify({ user: "crypto-user", pass: PINS.badKeys }) },
  "amk/json-broken": { kind: "string", value: `{"pin": "crypto-user:${PINS.broken}"` },
  "amk/binary": { kind: "binary", base64: Buffer.from(PINS.binary).toString("base64") },
  "amk/empty": { kind: "string", value: " \n" },
  "amk/missing": { kind: "fixture", name: "resource-not-found" },
  "amk/denied": { kind: "fixture", name: "access-denied" },
  "amk/kms-denied": { kind: "fixture", name: "decryption-failure" },
  "amk/throttled": { kind: "fixture", name: "throttling" },
  "amk/internal": { kind: "fixture", name: "internal-service-error" },
  "amk/deleted": { kind: "fixture", name: "invalid-request" },
  // A success status with a body that is not JSON but holds the PIN: the SDK's parser error quotes the body.
  "amk/garbled": { kind: "raw", status: 200, body: `{"SecretString": "crypto-user:${PINS.garbled}", oops` },
};

interface RecordedRequest {
  secretId: string;
  body: Record<string, unknown>;
}
const requests: RecordedRequest[] = [];
const protocolViolations: string[] = [];
const hits = (secretId: string): number => requests.filter((r) => r.secretId === secretId).length;

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  res.writeHead(status, {
    "content-type": "application/x-amz-json-1.1",
    ...lower,
    "x-amzn-requestid": randomUUID(), // fresh per response, as the service does
    "content-length": String(Buffer.byteLength(body)),
  });
  res.end(body);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const violation = (what: string): void => {
    protocolViolations.push(what);
    send(res, 400, JSON.stringify({ __type: "SerializationException", message: what }));
  };
  if (req.method !== "POST" || req.url !== "/")
    return violation(`expected POST /, got ${req.method} ${req.url}`);
  if (req.headers["x-amz-target"] !== "secretsmanager.GetSecretValue") {
    return violation(`unexpected x-amz-target ${String(req.headers["x-amz-target"])}`);
  }
  if (req.headers["content-type"] !== "application/x-amz-json-1.1") {
    return violation(`unexpected content-type ${String(req.headers["content-type"])}`);
  }
  const auth = req.headers.authorization ?? "";
  if (
    !new RegExp(
      `^AWS4-HMAC-SHA256 Credential=AKIDAMKTEST/\\d{8}/${REGION}/secretsmanager/aws4_request, `,
    ).test(auth)
  ) {
    return violation(`not a SigV4 signature for secretsmanager in ${REGION}: ${auth}`);
  }
  if (req.headers["x-amz-date"] === undefined) return violation("missing x-amz-date");
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
  } catch {
    return violation("request body is not JSON");
  }
  const secretId = body.SecretId;
  if (typeof secretId !== "string") return violation("SecretId missing");
  requests.push({ secretId, body });

  const behaviour = SECRETS[secretId] ?? { kind: "fixture", name: "resource-not-found" };
  switch (behaviour.kind) {
    case "fixture": {
      const f = fixture(behaviour.name);
      return send(res, f.status, JSON.stringify(f.body), f.headers);
    }
    case "raw":
      return send(res, behaviour.status, behaviour.body);
    case "string":
    case "binary": {
      if (behaviour.kind === "string" && behaviour.delayMs !== undefined) {
        await new Promise((resolve) => setTimeout(resolve, behaviour.delayMs));
      }
      const { SecretString: _example, ...shape } = SUCCESS.body;
      const value =
        behaviour.kind === "string" ? { SecretString: behaviour.value } : { SecretBinary: behaviour.base64 };
      return send(
        res,
        SUCCESS.status,
        JSON.stringify({
          ...shape,
          ARN: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${secretId}-AbC123`,
          Name: secretId,
          ...value,
        }),
        SUCCESS.headers,
      );
    }
  }
}

let server: Server;
let endpoint: string;

function client(extra: Partial<SecretsManagerClientConfig> = {}): SecretsManagerClient {
  return new SecretsManagerClient({
    endpoint,
    region: REGION,
    credentials: { accessKeyId: "AKIDAMKTEST", secretAccessKey: "amk-test-secret-access-key" },
    maxAttempts: 1,
    ...extra,
  });
}

/** Everything a log line or a response could carry about an error: message, JSON, inspection, the cause chain. */
function renderings(err: unknown): string[] {
  const out: string[] = [inspect(err, { depth: 8 })];
  let e: unknown = err;
  for (let i = 0; i < 8 && e !== undefined && e !== null; i++) {
    if (e instanceof Error) {
      out.push(e.message, String(e.stack));
      out.push(JSON.stringify(e));
    }
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}
function assertNoPin(err: unknown): void {
  for (const text of renderings(err)) {
    for (const pin of Object.values(PINS))
      assert.ok(!text.includes(pin), `error text contains a PIN: ${text}`);
  }
}

async function readError(
  secretId: string,
  extra: Partial<SecretsManagerClientConfig> = {},
): Promise<PinSecretError> {
  const source = createSecretsManagerPinSource({ secretId, client: client(extra) });
  try {
    await source();
  } catch (err) {
    assert.ok(err instanceof PinSecretError, `expected a PinSecretError, got ${inspect(err)}`);
    assert.equal(err.secretId, secretId);
    assert.equal(err.context.secretId, secretId);
    assert.ok(err.message.includes(secretId), "the message names the secret");
    assertNoPin(err);
    return err;
  }
  assert.fail(`reading ${secretId} did not fail`);
}

before(async () => {
  server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      protocolViolations.push(`server error: ${String(err)}`);
      res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.deepEqual(protocolViolations, [], "every request was a well-formed GetSecretValue");
});

describe("Secrets Manager PIN source: formats", () => {
  for (const [secretId, expected] of [
    ["amk/plain", PINS.plain],
    ["amk/plain-newline", PINS.newline],
    ["amk/json-pin", PINS.jsonPin],
    ["amk/json-userpass", `crypto-user:${PINS.password}`],
  ] as const) {
    it(`reads ${secretId}`, async () => {
      const pin = await createSecretsManagerPinSource({ secretId, client: client() })();
      assert.equal(pin, expected);
    });
  }

  it("sends a signed GetSecretValue with the SecretId (and VersionStage when asked)", async () => {
    await createSecretsManagerPinSource({
      secretId: "amk/plain",
      client: client(),
      versionStage: "AWSPENDING",
    })();
    assert.deepEqual(requests.at(-1)?.body, { SecretId: "amk/plain", VersionStage: "AWSPENDING" });
    assert.ok(requests.some((r) => JSON.stringify(r.body) === JSON.stringify({ SecretId: "amk/plain" })));
  });

  for (const [secretId, pattern] of [
    ["amk/binary", /has no SecretString \(it holds SecretBinary\)/],
    ["amk/empty", /is empty/],
    ["amk/json-bad-keys", /JSON without a usable PIN.*found keys: pass, user/],
    ["amk/json-broken", /is not valid JSON/],
  ] as const) {
    it(`rejects ${secretId} with PinSecretFormatError, without its value`, async () => {
      const err = await readError(secretId);
      assert.ok(err instanceof PinSecretFormatError);
      assert.equal(err.code, "PIN_SECRET_FORMAT");
      assert.equal(err.retryable, false);
      assert.match(err.message, pattern);
      assert.equal(err.cause, undefined, "no cause that could quote the value");
    });
  }
});

describe("Secrets Manager PIN source: errors", () => {
  const cases = [
    ["amk/missing", PinSecretNotFoundError, "PIN_SECRET_NOT_FOUND", "ResourceNotFoundException", 400, false],
    [
      "amk/denied",
      PinSecretAccessDeniedError,
      "PIN_SECRET_ACCESS_DENIED",
      "AccessDeniedException",
      400,
      false,
    ],
    [
      "amk/kms-denied",
      PinSecretAccessDeniedError,
      "PIN_SECRET_ACCESS_DENIED",
      "DecryptionFailure",
      400,
      false,
    ],
    ["amk/throttled", PinSecretUnavailableError, "PIN_SECRET_UNAVAILABLE", "ThrottlingException", 400, true],
    ["amk/internal", PinSecretUnavailableError, "PIN_SECRET_UNAVAILABLE", "InternalServiceError", 500, true],
    [
      "amk/deleted",
      PinSecretRequestRejectedError,
      "PIN_SECRET_REQUEST_REJECTED",
      "InvalidRequestException",
      400,
      false,
    ],
  ] as const;
  for (const [secretId, ErrorClass, code, awsName, status, retryable] of cases) {
    it(`maps ${awsName} (HTTP ${status}) to ${ErrorClass.name}`, async () => {
      const err = await readError(secretId);
      assert.ok(err instanceof ErrorClass, `got ${err.name}`);
      assert.equal(err.code, code);
      assert.equal(err.retryable, retryable);
      assert.equal(err.context.awsErrorName, awsName);
      assert.equal(err.context.httpStatusCode, status);
      assert.match(String(err.context.requestId), /^[0-9a-f-]{36}$/);
      assert.ok(err.message.includes(awsName));
      const json = err.toJSON();
      assert.deepEqual(Object.keys(json).sort(), ["code", "context", "message", "name", "retryable"]);
      assert.equal(json.name, ErrorClass.name);
      assert.equal(JSON.stringify(json).includes(secretId), true);
    });
  }

  it("keeps the service's message for operators (who was denied what)", async () => {
    const err = await readError("amk/denied");
    assert.match(String(err.context.awsMessage), /not authorized to perform: secretsmanager:GetSecretValue/);
    assert.match(err.message, /needs secretsmanager:GetSecretValue/);
  });

  it("treats an unreadable success response as unavailable, and keeps no trace of its body", async () => {
    const err = await readError("amk/garbled");
    assert.ok(err instanceof PinSecretUnavailableError);
    assert.equal(err.retryable, true);
    assert.ok(err.cause instanceof Error);
    assert.equal((err.cause as { $response?: unknown }).$response, undefined, "no raw response kept");
  });

  it("treats a connection failure as unavailable (retryable)", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await readError("amk/plain", { endpoint: `http://127.0.0.1:${port}` });
    assert.ok(err instanceof PinSecretUnavailableError);
    assert.equal(err.context.errorCode, "ECONNREFUSED");
  });

  it("validates its options", () => {
    assert.throws(() => createSecretsManagerPinSource({ secretId: " " }), InvalidInputError);
    assert.throws(() => createSecretsManagerPinSource({ secretId: "x", cacheTtlMs: -1 }), InvalidInputError);
    assert.throws(
      () => createSecretsManagerPinSource({ secretId: "x", cacheTtlMs: Number.POSITIVE_INFINITY }),
      InvalidInputError,
    );
  });
});

describe("Secrets Manager PIN source: caching", () => {
  it("reads the secret once within the TTL, also for concurrent callers", async () => {
    const secretId = "amk/json-pin";
    const before = hits(secretId);
    const source = createSecretsManagerPinSource({ secretId, client: client() });
    const pins = await Promise.all([source(), source(), source()]);
    assert.deepEqual(pins, [PINS.jsonPin, PINS.jsonPin, PINS.jsonPin]);
    assert.equal(await source(), PINS.jsonPin);
    assert.equal(hits(secretId) - before, 1);
  });

  it("reads again after the TTL, and at once after invalidate()", async () => {
    const secretId = "amk/json-userpass";
    const start = hits(secretId);
    let now = 1_000_000;
    const source = createSecretsManagerPinSource({
      secretId,
      client: client(),
      cacheTtlMs: 60_000,
      now: () => now,
    });
    await source();
    now += 59_999;
    await source();
    assert.equal(hits(secretId) - start, 1, "still cached just before the TTL");
    now += 1;
    await source();
    assert.equal(hits(secretId) - start, 2, "read again once the TTL has passed");
    source.invalidate();
    await source();
    assert.equal(hits(secretId) - start, 3, "read again after invalidate()");
  });

  it("does not let a read that started before invalidate() fill the cache", async () => {
    const secretId = "amk/slow";
    const source = createSecretsManagerPinSource({ secretId, client: client() });
    const early = source();
    source.invalidate();
    const late = source();
    assert.deepEqual(await Promise.all([early, late]), [PINS.plain, PINS.plain]);
    assert.equal(hits(secretId), 2, "the call after invalidate() did not join the earlier read");
    await source();
    assert.equal(hits(secretId), 2, "the later read is cached");
  });

  it("with cacheTtlMs 0 reads on every call", async () => {
    const secretId = "amk/plain-newline";
    const start = hits(secretId);
    const source = createSecretsManagerPinSource({ secretId, client: client(), cacheTtlMs: 0 });
    await source();
    await source();
    assert.equal(hits(secretId) - start, 2);
  });

  it("does not cache failures", async () => {
    const secretId = "amk/throttled";
    const start = hits(secretId);
    const source = createSecretsManagerPinSource({ secretId, client: client() });
    await assert.rejects(source(), PinSecretUnavailableError);
    await assert.rejects(source(), PinSecretUnavailableError);
    assert.equal(hits(secretId) - start, 2);
  });
});

describe("Secrets Manager PIN source against AWS_ENDPOINT_URL (LocalStack)", () => {
  const url = process.env.AWS_ENDPOINT_URL;
  it(
    "reads a JSON username/password secret and reports a missing one",
    { skip: url ? false : "AWS_ENDPOINT_URL not set" },
    async () => {
      const sm = new SecretsManagerClient({
        endpoint: url,
        region: process.env.AWS_REGION ?? "us-east-1",
        credentials: { accessKeyId: "test", secretAccessKey: "test" },
      });
      const name = `amk-test/hsm-pin-${randomUUID()}`;
      await sm.send(
        new CreateSecretCommand({
          Name: name,
          SecretString: JSON.stringify({ username: "cu", password: "LocalStack-PIN" }),
        }),
      );
      try {
        assert.equal(
          await createSecretsManagerPinSource({ secretId: name, client: sm })(),
          "cu:LocalStack-PIN",
        );
        await assert.rejects(
          createSecretsManagerPinSource({ secretId: `${name}-absent`, client: sm })(),
          PinSecretNotFoundError,
        );
      } finally {
        await sm.send(new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true }));
      }
    },
  );
});
