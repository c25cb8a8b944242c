/**
 * The Secrets Manager vault against the real protocol, with no mock of the SDK: the SecretVault contract and the
 * error translation against the protocol-level emulator (test/support/secrets-manager-emulator.ts) through a real
 * `SecretsManagerClient`, then the contract against LocalStack when AWS_ENDPOINT_URL is set (see localstack.yml).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  SecretsManagerClient,
  type SecretsManagerClientConfig,
} from "@aws-sdk/client-secrets-manager";
import { SecretsManagerSecretVault } from "../../core/adapters/secrets-manager/secrets-manager-vault.js";
import {
  SecretNotFoundError,
  SecretVersionNotFoundError,
  VaultAccessDeniedError,
  VaultConflictError,
  VaultCorruptionError,
  VaultError,
  VaultRequestRejectedError,
  VaultUnavailableError,
} from "../../core/vault/errors.js";
import { versionIdForClientToken, type SecretVault } from "../../core/vault/secret-vault.js";
import {
  startSecretsManagerEmulator,
  type InjectedFailure,
  type SecretsManagerEmulator,
} from "../support/secrets-manager-emulator.js";
import { assertNoValue, secretVaultContract } from "../contract/secret-vault.contract.js";

const text = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "utf8"));
const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");

secretVaultContract("Secrets Manager (protocol emulator)", async () => {
  // Pages of 2 versions, so that every listing goes through ListSecretVersionIds pagination.
  const emulator = await startSecretsManagerEmulator({ maxPageSize: 2 });
  return {
    vault: new SecretsManagerSecretVault({ client: emulator.client() }),
    fingerprint: async () => String(emulator.requests.length),
    close: async () => {
      await emulator.close();
      assert.deepEqual(emulator.violations, [], "every request was well-formed");
    },
  };
});

secretVaultContract("Secrets Manager (protocol emulator, CreatedDate in whole seconds)", async () => {
  // Versions created within one second tie on CreatedDate: the order then comes from the labels.
  const emulator = await startSecretsManagerEmulator({ wholeSeconds: true });
  return {
    vault: new SecretsManagerSecretVault({ client: emulator.client() }),
    close: () => emulator.close(),
  };
});

describe("Secrets Manager vault: requests and error translation", () => {
  let emulator: SecretsManagerEmulator;
  let vault: SecretsManagerSecretVault;
  const KMS_KEY = "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  before(async () => {
    emulator = await startSecretsManagerEmulator();
    vault = new SecretsManagerSecretVault({ client: emulator.client(), kmsKeyId: KMS_KEY });
  });
  after(async () => {
    await emulator.close();
    assert.deepEqual(emulator.violations, [], "every request was well-formed");
  });

  const sent = (from: number): { operation: string; body: Record<string, unknown> }[] =>
    emulator.requests.slice(from);

  it("creates the secret with the first value (KmsKeyId, Description), then puts with AWSCURRENT", async () => {
    const start = emulator.requests.length;
    const first = await vault.putSecret("amk/ws-req/kit", text("kit 1"), { description: "kit of ws-req" });
    const second = await vault.putSecret("amk/ws-req/kit", text("kit 2"), { clientToken: "issue:ws-req:2" });
    assert.deepEqual(
      sent(start).map((r) => r.operation),
      ["PutSecretValue", "CreateSecret", "ListSecretVersionIds", "PutSecretValue", "ListSecretVersionIds"],
    );
    const [put1, create, list, put2] = sent(start);
    assert.equal(put1?.body.SecretId, "amk/ws-req/kit");
    assert.deepEqual(create?.body, {
      Name: "amk/ws-req/kit",
      SecretBinary: b64("kit 1"),
      ClientRequestToken: first.versionId,
      KmsKeyId: KMS_KEY,
      Tags: [{ Key: "amk:vault", Value: "kits" }],
      Description: "kit of ws-req",
    });
    assert.deepEqual(list?.body, { SecretId: "amk/ws-req/kit", IncludeDeprecated: true, MaxResults: 100 });
    assert.deepEqual(put2?.body, {
      SecretId: "amk/ws-req/kit",
      ClientRequestToken: versionIdForClientToken("issue:ws-req:2"),
      SecretBinary: b64("kit 2"),
      VersionStages: ["AWSCURRENT"],
    });
    assert.equal(second.versionId, versionIdForClientToken("issue:ws-req:2"));
  });

  it("tags what it creates as the vault stack's policy requires: kits and factor secrets", async () => {
    const start = emulator.requests.length;
    await vault.putSecret("amk/ws-tags/factor/alice", text("factor"));
    await vault.putSecret("amk/ws-tags/other", text("other"));
    const creates = sent(start).filter((r) => r.operation === "CreateSecret");
    assert.deepEqual(creates[0]?.body.Tags, [{ Key: "amk:vault", Value: "factors" }]);
    assert.equal(creates[1]?.body.Tags, undefined);
  });

  it("puts extra labels as staging labels; a first put with labels creates an empty secret first", async () => {
    const start = emulator.requests.length;
    const v = await vault.putSecret("amk/ws-labels/kit", text("kit"), { labels: ["kit-v3"] });
    assert.deepEqual(v.labels, ["current", "kit-v3"]);
    const ops = sent(start);
    assert.deepEqual(
      ops.map((r) => r.operation),
      ["PutSecretValue", "CreateSecret", "PutSecretValue", "ListSecretVersionIds"],
    );
    assert.equal(ops[1]?.body.Name, "amk/ws-labels/kit");
    assert.equal(ops[1]?.body.KmsKeyId, KMS_KEY);
    assert.equal(ops[1]?.body.SecretBinary, undefined, "created without a value");
    assert.equal(ops[2]?.body.ClientRequestToken, v.versionId);
    assert.deepEqual(ops[2]?.body.VersionStages, ["AWSCURRENT", "kit-v3"]);
    const got = await vault.getSecret("amk/ws-labels/kit", { label: "previous" }).catch((e: unknown) => e);
    assert.ok(got instanceof SecretVersionNotFoundError);
    assert.deepEqual(emulator.requests.at(-2)?.body, {
      SecretId: "amk/ws-labels/kit",
      VersionStage: "AWSPREVIOUS",
    });
    assert.equal(emulator.requests.at(-1)?.operation, "DescribeSecret", "told apart from a missing secret");
  });

  it("continues as a put when CreateSecret finds the secret created meanwhile (ResourceExistsException)", async () => {
    await vault.putSecret("amk/ws-race/kit", text("theirs"));
    emulator.failNext({
      type: "ResourceNotFoundException",
      message: "Secrets Manager can't find the specified secret.",
      operation: "PutSecretValue",
    });
    const start = emulator.requests.length;
    const mine = await vault.putSecret("amk/ws-race/kit", text("mine"));
    assert.deepEqual(
      sent(start).map((r) => r.operation),
      ["PutSecretValue", "CreateSecret", "PutSecretValue", "ListSecretVersionIds"],
    );
    assert.deepEqual(mine.labels, ["current"]);
    assert.equal((await vault.listVersions("amk/ws-race/kit")).length, 2);
  });

  async function failure(injected: InjectedFailure, call: () => Promise<unknown>): Promise<VaultError> {
    emulator.failNext(injected);
    const err = await call().then(
      () => assert.fail("the call succeeded"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof VaultError, `got ${inspect(err)}`);
    return err;
  }

  const cases = [
    [{ fixture: "access-denied" }, VaultAccessDeniedError, "AccessDeniedException", 400, false],
    [{ fixture: "decryption-failure" }, VaultAccessDeniedError, "DecryptionFailure", 400, false],
    [{ fixture: "throttling" }, VaultUnavailableError, "ThrottlingException", 400, true],
    [{ fixture: "internal-service-error" }, VaultUnavailableError, "InternalServiceError", 500, true],
    [{ type: "ServiceUnavailable", status: 503 }, VaultUnavailableError, "ServiceUnavailable", 503, true],
    [{ fixture: "invalid-request" }, VaultRequestRejectedError, "InvalidRequestException", 400, false],
    [{ type: "LimitExceededException" }, VaultRequestRejectedError, "LimitExceededException", 400, false],
  ] as const;
  for (const [injected, ErrorClass, awsName, status, retryable] of cases) {
    it(`maps ${awsName} (HTTP ${status}) to ${ErrorClass.name} on put, get and list`, async () => {
      const name = "amk/ws-errors/kit";
      const value = text(`ERROR-CASE-VALUE-${randomUUID()}`);
      await vault.putSecret(name, text("stored"));
      for (const call of [
        () => vault.putSecret(name, value),
        () => vault.getSecret(name),
        () => vault.listVersions(name),
      ]) {
        const err = await failure(injected, call);
        assert.ok(err instanceof ErrorClass, `got ${inspect(err)}`);
        assert.equal(err.retryable, retryable);
        assert.equal(err.context.secretName, name);
        assert.equal(err.context.awsErrorName, awsName);
        assert.equal(err.context.httpStatusCode, status);
        assert.match(String(err.context.requestId), /^[0-9a-f-]{36}$/);
        assert.ok(err.message.includes(name) && err.message.includes(awsName));
        assertNoValue(err, value);
        assertNoValue(err, text("stored"));
      }
    });
  }

  it("maps an idempotency mismatch on put (ResourceExistsException, InvalidRequestException) to VaultConflictError", async () => {
    const name = "amk/ws-conflict/kit";
    await vault.putSecret(name, text("stored"));
    for (const injected of [
      { type: "ResourceExistsException", operation: "PutSecretValue" },
      {
        type: "InvalidRequestException",
        message: "The ClientRequestToken was already used for a version with another value.",
        operation: "PutSecretValue",
      },
    ]) {
      const value = text(`CONFLICT-VALUE-${randomUUID()}`);
      const err = await failure(injected, () => vault.putSecret(name, value, { clientToken: randomUUID() }));
      assert.ok(err instanceof VaultConflictError, `got ${inspect(err)}`);
      assert.equal(err.context.awsErrorName, injected.type);
      assertNoValue(err, value);
    }
  });

  it("maps ResourceNotFoundException to SecretNotFoundError or SecretVersionNotFoundError", async () => {
    const err = await failure({ type: "ResourceNotFoundException" }, () =>
      vault.listVersions("amk/ws-gone/kit"),
    );
    assert.ok(err instanceof SecretNotFoundError);
    await vault.putSecret("amk/ws-there/kit", text("here"));
    const missing = randomUUID();
    const byVersion = await vault
      .getSecret("amk/ws-there/kit", { versionId: missing })
      .catch((e: unknown) => e);
    assert.ok(byVersion instanceof SecretVersionNotFoundError);
    assert.equal(byVersion.context.awsErrorName, "ResourceNotFoundException");
    assert.equal(byVersion.context.versionId, missing);
  });

  it("maps a refused connection to VaultUnavailableError (retryable)", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const offline = new SecretsManagerSecretVault({
      client: emulator.client({ endpoint: `http://127.0.0.1:${port}` }),
    });
    const value = text(`OFFLINE-VALUE-${randomUUID()}`);
    const err = await offline.putSecret("amk/ws-offline/kit", value).catch((e: unknown) => e);
    assert.ok(err instanceof VaultUnavailableError, `got ${inspect(err)}`);
    assert.equal(err.context.errorCode, "ECONNREFUSED");
    assertNoValue(err, value);
  });

  it("lets the SDK retry throttling: two throttled answers, then success", async () => {
    const patient = new SecretsManagerSecretVault({
      client: emulator.client({ maxAttempts: 3, retryMode: "standard" }),
    });
    await patient.putSecret("amk/ws-retry/kit", text("v1"));
    emulator.failNext({ fixture: "throttling", count: 2, operation: "GetSecretValue" });
    const got = await patient.getSecret("amk/ws-retry/kit");
    assert.ok(Buffer.from(got.value).equals(Buffer.from("v1")));
  });

  it("refuses a secret that holds a SecretString (not written by this vault)", async () => {
    const raw = emulator.client();
    await raw.send(
      new CreateSecretCommand({ Name: "amk/ws-foreign/kit", SecretString: "FOREIGN-STRING-VALUE-1" }),
    );
    const err = await vault.getSecret("amk/ws-foreign/kit").catch((e: unknown) => e);
    assert.ok(err instanceof VaultCorruptionError, `got ${inspect(err)}`);
    assertNoValue(err, text("FOREIGN-STRING-VALUE-1"));
  });
});

describe(
  "Secrets Manager vault against AWS_ENDPOINT_URL (LocalStack)",
  { skip: process.env.AWS_ENDPOINT_URL ? false : "AWS_ENDPOINT_URL not set" },
  () => {
    const config: SecretsManagerClientConfig = {
      endpoint: process.env.AWS_ENDPOINT_URL,
      region: process.env.AWS_REGION ?? "us-east-1",
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
    };
    secretVaultContract("Secrets Manager (LocalStack)", async () => {
      const client = new SecretsManagerClient(config);
      const inner = new SecretsManagerSecretVault({ client });
      const names = new Set<string>();
      // Records the secrets the suite creates, so that they are deleted afterwards.
      const vault: SecretVault = {
        putSecret: (name, value, options) => {
          names.add(name);
          return inner.putSecret(name, value, options);
        },
        getSecret: (name, options) => inner.getSecret(name, options),
        listVersions: (name) => inner.listVersions(name),
      };
      return {
        vault,
        close: async () => {
          for (const name of names) {
            await client
              .send(new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true }))
              .catch(() => undefined);
          }
          client.destroy();
        },
      };
    });
  },
);
