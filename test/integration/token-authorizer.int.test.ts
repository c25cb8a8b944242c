/**
 * The token-authorizer Lambda handler called as API Gateway calls it, configured through its environment: the
 * event store on DynamoDB Local, the signing key in the Secrets Manager protocol emulator
 * (test/support/secrets-manager-emulator.ts) read through the real SDK client.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { CreateSecretCommand } from "@aws-sdk/client-secrets-manager";
// The handler is imported after the log level is set (Powertools reads it at import): this file checks its logs.
process.env.POWERTOOLS_LOG_LEVEL = "INFO";
const { handler } = await import("../../functions/token-authorizer/handler.js");
import { AccessTokenService } from "../../core/access/access-tokens.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { newEvent } from "../../core/eventstore/events.js";
import { workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { eventStoreFromEnv } from "../../functions/shared/event-store.js";
import { resetTokenSigningKeyCache } from "../../functions/shared/token-key.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";
import {
  startSecretsManagerEmulator,
  type SecretsManagerEmulator,
} from "../support/secrets-manager-emulator.js";

const METHOD_ARN = "arn:aws:execute-api:eu-central-1:123456789012:a1b2c3d4e5/prod/GET/documents";

const requestEvent = (headers: Record<string, string> | null, pathParameters?: Record<string, string>) => ({
  type: "REQUEST",
  methodArn: METHOD_ARN,
  resource: "/documents",
  path: "/documents",
  httpMethod: "GET",
  headers,
  ...(pathParameters ? { pathParameters } : {}),
});

describe("token-authorizer against DynamoDB Local and the Secrets Manager emulator", () => {
  let ddb: TestDynamoDb;
  let secrets: SecretsManagerEmulator;
  let events: EventStore;
  let tokens: AccessTokenService;
  const key = new Uint8Array(randomBytes(32));
  const ws = `auth-${randomUUID().slice(0, 8)}`;
  const logs: string[] = [];
  const issuedTokens: string[] = [];
  const saved = { ...process.env };

  /** Calls the handler with stdout and stderr captured (Powertools writes JSON lines: info to one, warn to the other). */
  async function call(event: unknown): Promise<Awaited<ReturnType<typeof handler>>> {
    const out = process.stdout.write;
    const err = process.stderr.write;
    const capture = ((chunk: string | Uint8Array) => {
      logs.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    process.stdout.write = capture;
    process.stderr.write = capture;
    try {
      return await handler(event);
    } finally {
      process.stdout.write = out;
      process.stderr.write = err;
    }
  }

  async function issue(workspaceId = ws): Promise<string> {
    const { token } = await tokens.issue({ workspaceId, subject: "user-42" });
    issuedTokens.push(token);
    return token;
  }

  const lastLog = (): Record<string, unknown> => JSON.parse(logs.at(-1)!) as Record<string, unknown>;

  before(async () => {
    ddb = await useTestDynamoDb();
    secrets = await startSecretsManagerEmulator({ region: process.env.AWS_REGION ?? "us-east-1" });
    const sm = secrets.client();
    await sm.send(
      new CreateSecretCommand({
        Name: "amk/token-signing",
        SecretBinary: key,
        ClientRequestToken: randomUUID(),
      }),
    );
    await sm.send(
      new CreateSecretCommand({
        Name: "amk/token-signing-b64",
        SecretString: Buffer.from(key).toString("base64"),
        ClientRequestToken: randomUUID(),
      }),
    );
    await sm.send(
      new CreateSecretCommand({
        Name: "amk/token-signing-short",
        SecretBinary: new Uint8Array(8),
        ClientRequestToken: randomUUID(),
      }),
    );
    sm.destroy();
    Object.assign(process.env, {
      AMK_EVENT_TABLE: await ddb.newTable("authorizer"),
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      AMK_TOKEN_SIGNING_SECRET_ID: "amk/token-signing",
      AMK_SECRETS_ENDPOINT: secrets.endpoint,
    });
    resetTokenSigningKeyCache();
    events = eventStoreFromEnv();
    await events.appendToStream(
      workspaceStreamId(ws),
      [
        newEvent(EventTypes.MasterKeyCreated, {
          WorkspaceId: ws,
          KeyId: `ws-${ws}/mk/1`,
          Kcv: "ABC123",
          Extractable: true,
        }),
      ],
      { expectedVersion: "no_stream" },
    );
    tokens = new AccessTokenService({ events, signingKey: async () => key });
  });
  after(async () => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    resetTokenSigningKeyCache();
    await secrets?.close();
    await ddb?.cleanup();
    assert.deepEqual(secrets?.violations ?? [], [], "every Secrets Manager request was well-formed");
  });

  it("allows a fresh token (REQUEST, header in any case): policy on the method, principal and context", async () => {
    const token = await issue();
    for (const name of ["Authorization", "authorization", "AUTHORIZATION"]) {
      const result = await call(requestEvent({ Host: "api.example", [name]: `Bearer ${token}` }));
      assert.deepEqual(result, {
        principalId: "user-42",
        policyDocument: {
          Version: "2012-10-17",
          Statement: [{ Action: "execute-api:Invoke", Effect: "Allow", Resource: METHOD_ARN }],
        },
        context: { workspaceId: ws, epoch: 0, subject: "user-42" },
      });
    }
    assert.equal(lastLog().message, "access token accepted");
    assert.equal(lastLog().workspaceId, ws);
    // The key was read once for this container.
    assert.equal(secrets.requests.filter((r) => r.operation === "GetSecretValue").length, 1);
  });

  it("accepts the TOKEN type (authorizationToken, with or without the Bearer scheme)", async () => {
    const token = await issue();
    for (const authorizationToken of [`Bearer ${token}`, `bearer ${token}`, token]) {
      const r = await call({ type: "TOKEN", methodArn: METHOD_ARN, authorizationToken });
      assert.equal(r.principalId, "user-42");
      assert.equal(r.policyDocument.Statement[0]!.Effect, "Allow");
    }
  });

  it("answers Unauthorized after the workspace's tokens were invalidated; a new token passes", async () => {
    const old = await issue();
    assert.equal((await call(requestEvent({ Authorization: `Bearer ${old}` }))).principalId, "user-42");
    await tokens.invalidate({ workspaceId: ws, reason: "recovery", recoveryId: "rec-auth" });
    await assert.rejects(call(requestEvent({ Authorization: `Bearer ${old}` })), { message: "Unauthorized" });
    const entry = lastLog();
    assert.equal(entry.level, "WARN");
    assert.equal(entry.message, "access token rejected");
    assert.equal(entry.reason, "stale-epoch");
    assert.equal(entry.currentEpoch, 1);

    const fresh = await issue();
    const r = await call(requestEvent({ Authorization: `Bearer ${fresh}` }));
    assert.deepEqual(r.context, { workspaceId: ws, epoch: 1, subject: "user-42" });
  });

  it("answers Unauthorized without a bearer token, for a bad token, or for another workspace's route", async () => {
    const token = await issue();
    const cases: [unknown, string][] = [
      [requestEvent({ Host: "api.example" }), "missing-token"],
      [requestEvent(null), "missing-token"],
      [requestEvent({ Authorization: "" }), "missing-token"],
      [requestEvent({ Authorization: `Basic ${Buffer.from("a:b").toString("base64")}` }), "missing-token"],
      [requestEvent({ Authorization: `Bearer ${token} extra` }), "missing-token"],
      [{ type: "TOKEN", methodArn: METHOD_ARN }, "missing-token"],
      [requestEvent({ Authorization: "Bearer not.a.jwt" }), "malformed"],
      [requestEvent({ Authorization: `Bearer ${token.slice(0, -3)}AAA` }), "bad-signature"],
      [requestEvent({ Authorization: `Bearer ${"x".repeat(5000)}` }), "malformed"],
      [
        requestEvent({ Authorization: `Bearer ${token}` }, { workspaceId: "someone-else" }),
        "wrong-workspace",
      ],
      [requestEvent({ Authorization: `Bearer ${token}` }, { workspaceId: "../bad" }), "invalid-workspace-id"],
    ];
    for (const [event, reason] of cases) {
      await assert.rejects(call(event), { message: "Unauthorized" }, JSON.stringify(event).slice(0, 120));
      assert.equal(lastLog().reason, reason);
    }
    // With its own workspace in the path, the same token passes.
    const ok = await call(requestEvent({ Authorization: `Bearer ${token}` }, { workspaceId: ws }));
    assert.equal(ok.context?.workspaceId, ws);
  });

  it("reads a base64 SecretString key too; a short key or a missing secret is a 500, not a 401", async () => {
    const token = await issue();
    process.env.AMK_TOKEN_SIGNING_SECRET_ID = "amk/token-signing-b64";
    try {
      assert.equal((await call(requestEvent({ Authorization: `Bearer ${token}` }))).principalId, "user-42");
      for (const id of ["amk/token-signing-short", "amk/no-such-secret"]) {
        process.env.AMK_TOKEN_SIGNING_SECRET_ID = id;
        await assert.rejects(call(requestEvent({ Authorization: `Bearer ${token}` })), {
          message: "authorizer unavailable",
        });
        const entry = lastLog();
        assert.equal(entry.level, "ERROR");
        assert.equal((entry.error as { code: string }).code, "ACCESS_TOKEN_KEY");
      }
      // A bad cache setting is a configuration error too, never a verdict on the token.
      process.env.AMK_TOKEN_SIGNING_SECRET_ID = "amk/token-signing";
      process.env.AMK_TOKEN_EPOCH_CACHE_MS = "soon";
      await assert.rejects(call(requestEvent({ Authorization: `Bearer ${token}` }, { workspaceId: ws })), {
        message: "authorizer unavailable",
      });
      assert.equal((lastLog().error as { code: string }).code, "INVALID_INPUT");
    } finally {
      process.env.AMK_TOKEN_SIGNING_SECRET_ID = "amk/token-signing";
      delete process.env.AMK_TOKEN_EPOCH_CACHE_MS;
    }
    await assert.rejects(call({ type: "SOMETHING", methodArn: METHOD_ARN }), {
      message: "authorizer misconfigured",
    });
    assert.equal((await call(requestEvent({ Authorization: `Bearer ${token}` }))).principalId, "user-42");
  });

  it("never logged a token or its signature", () => {
    const text = logs.join("");
    assert.ok(text.includes("access token accepted") && text.includes("access token rejected"), "it did log");
    assert.ok(issuedTokens.length >= 5);
    for (const token of issuedTokens) {
      const [header, payload, signature] = token.split(".") as [string, string, string];
      assert.equal(text.includes(token), false);
      assert.equal(text.includes(payload), false);
      assert.equal(text.includes(signature), false);
      assert.equal(text.includes(`${header}.`), false);
    }
    assert.equal(text.includes(Buffer.from(key).toString("base64")), false, "nor the key");
    assert.equal(text.includes(Buffer.from(key).toString("hex")), false, "nor the key");
  });
});
