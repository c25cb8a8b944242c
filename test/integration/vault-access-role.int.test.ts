/**
 * The vault through its access role: with AMK_VAULT_ACCESS_ROLE_ARN the function's vault client assumes the role
 * (STS AssumeRole with the session tag amk:vault-caller) and signs every Secrets Manager call with the temporary
 * credentials. Driven with the real SDK against a loopback STS that answers with recorded response shapes and the
 * Secrets Manager emulator.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SecretsManagerSecretVault } from "../../core/adapters/secrets-manager/secrets-manager-vault.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import { VaultAccessDeniedError } from "../../core/vault/errors.js";
import { secretsManagerConfigFromEnv } from "../../functions/shared/vault.js";
import {
  startSecretsManagerEmulator,
  type SecretsManagerEmulator,
} from "../support/secrets-manager-emulator.js";

const fixture = (name: string) => readFileSync(new URL(`../fixtures/sts/${name}`, import.meta.url), "utf8");

describe("vault access role (STS AssumeRole with a session tag)", () => {
  let sts: Server;
  let stsEndpoint: string;
  let emulator: SecretsManagerEmulator;
  const stsRequests: URLSearchParams[] = [];
  let deny = false;

  before(async () => {
    emulator = await startSecretsManagerEmulator();
    sts = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        stsRequests.push(new URLSearchParams(body));
        res
          .writeHead(deny ? 403 : 200, { "content-type": "text/xml" })
          .end(fixture(deny ? "access-denied.xml" : "assume-role.xml"));
      });
    });
    await new Promise<void>((r) => sts.listen(0, "127.0.0.1", r));
    stsEndpoint = `http://127.0.0.1:${(sts.address() as AddressInfo).port}`;
  });
  after(async () => {
    sts?.close();
    await emulator?.close();
  });

  const env = (caller: string) => ({
    AMK_VAULT_REGION: emulator.region,
    AMK_VAULT_ENDPOINT: emulator.endpoint,
    AMK_VAULT_ACCESS_ROLE_ARN: "arn:aws:iam::210987654321:role/amk-dev-vault-access",
    AMK_VAULT_CALLER: caller,
    AMK_STS_ENDPOINT: stsEndpoint,
    AWS_ACCESS_KEY_ID: "AKIAFUNCTIONROLE0001",
    AWS_SECRET_ACCESS_KEY: "function-role-secret",
  });

  it("assumes the role with the writer tag and signs vault calls with the role's temporary credentials", async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: "AKIAFUNCTIONROLE0001",
      AWS_SECRET_ACCESS_KEY: "function-role-secret",
    });
    try {
      const vault = new SecretsManagerSecretVault({
        client: new SecretsManagerClient(secretsManagerConfigFromEnv(env("writer"))),
      });
      const start = emulator.requests.length;
      await vault.putSecret("amk/ws-role/kit", Buffer.from("kit"));
      const got = await vault.getSecret("amk/ws-role/kit");
      assert.equal(Buffer.from(got.value).toString(), "kit");
      const assume = stsRequests.at(-1)!;
      assert.equal(assume.get("Action"), "AssumeRole");
      assert.equal(assume.get("RoleArn"), "arn:aws:iam::210987654321:role/amk-dev-vault-access");
      assert.equal(assume.get("Tags.member.1.Key"), "amk:vault-caller");
      assert.equal(assume.get("Tags.member.1.Value"), "writer");
      for (const r of emulator.requests.slice(start)) {
        assert.equal(
          r.accessKeyId,
          "ASIAIOSFODNN7VAULT01",
          `${r.operation} is signed with the role's credentials`,
        );
        assert.equal(r.sessionToken, "IQoJb3JpZ2luX2VjEXAMPLEVAULTSESSIONTOKEN");
      }
    } finally {
      process.env = saved;
    }
  });

  it("reports a refused AssumeRole as access denied, and refuses a missing caller kind", async () => {
    deny = true;
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: "AKIAFUNCTIONROLE0001",
      AWS_SECRET_ACCESS_KEY: "function-role-secret",
    });
    try {
      const vault = new SecretsManagerSecretVault({
        client: new SecretsManagerClient(secretsManagerConfigFromEnv(env("unlock"))),
      });
      await assert.rejects(
        vault.getSecret("amk/ws-role/kit"),
        (e: unknown) => e instanceof VaultAccessDeniedError && !e.retryable,
      );
    } finally {
      deny = false;
      process.env = saved;
    }
    assert.throws(
      () => secretsManagerConfigFromEnv({ ...env("writer"), AMK_VAULT_CALLER: "" }),
      InvalidInputError,
    );
    assert.equal(
      secretsManagerConfigFromEnv({ AMK_VAULT_REGION: "eu-central-1" }).credentials,
      undefined,
      "no role: the function's own credentials",
    );
  });
});
