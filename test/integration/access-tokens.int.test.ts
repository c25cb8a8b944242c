/**
 * AccessTokenService against DynamoDB Local through the DynamoDbEventStore adapter: epochs folded from the real
 * workspace stream, invalidation appended conditionally (concurrent recoveries lose no update), idempotency per
 * recovery, and every rejection reason.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { decodeJwt, SignJWT } from "jose";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { AccessTokenService, MAX_ACCESS_TOKEN_LENGTH } from "../../core/access/access-tokens.js";
import { AccessTokenRejectedError, type AccessTokenRejectionReason } from "../../core/access/errors.js";
import { EventTypes, type AccessTokensInvalidatedData } from "../../core/eventstore/catalogue.js";
import { newEvent } from "../../core/eventstore/events.js";
import { workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { uuidFromName } from "../../core/shared/ids.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

async function rejectedWith(p: Promise<unknown>, reason: AccessTokenRejectionReason, token?: string) {
  const err = await p.then(
    () => assert.fail(`expected rejection "${reason}"`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof AccessTokenRejectedError, String(err));
  assert.equal(err.reason, reason, err.message);
  if (token !== undefined) {
    const text = `${err.message} ${JSON.stringify(err.toJSON())}`;
    assert.equal(text.includes(token), false, "the token is never echoed");
    assert.equal(text.includes(token.split(".")[2]!), false, "nor its signature");
  }
  return err;
}

describe("access tokens against DynamoDB Local", () => {
  let ddb: TestDynamoDb;
  let events: DynamoDbEventStore;
  let service: AccessTokenService;
  const key = new Uint8Array(randomBytes(32));
  let clock = new Date();
  const now = () => clock;

  /** A workspace with a stream (a MasterKeyCreated, as provisioning records it). */
  async function workspace(prefix = "tok"): Promise<string> {
    const ws = `${prefix}-${randomUUID().slice(0, 8)}`;
    const created = newEvent(EventTypes.MasterKeyCreated, {
      WorkspaceId: ws,
      KeyId: `ws-${ws}/mk/1`,
      Kcv: "0A1B2C",
      Extractable: true,
    });
    await events.appendToStream(workspaceStreamId(ws), [created], { expectedVersion: "no_stream" });
    return ws;
  }

  before(async () => {
    ddb = await useTestDynamoDb();
    events = new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable("tokens") });
    service = new AccessTokenService({ events, signingKey: async () => key, now });
  });
  after(async () => {
    await ddb?.cleanup();
  });

  it("issue -> verify: the claims name the workspace and its current epoch", async () => {
    const ws = await workspace();
    const issued = await service.issue({ workspaceId: ws, subject: "user-7", scopes: ["docs:read"] });
    assert.equal(issued.epoch, 0);
    const claims = await service.verify(issued.token, { workspaceId: ws });
    assert.equal(claims.ws, ws);
    assert.equal(claims.sub, "user-7");
    assert.equal(claims.ep, 0);
    assert.equal(claims.scope, "docs:read");
    assert.equal(claims.exp - claims.iat, 900);
    assert.equal(claims.jti, issued.tokenId);
  });

  it("invalidate: old tokens are rejected as stale-epoch, tokens issued afterwards are accepted", async () => {
    const ws = await workspace();
    const old = (await service.issue({ workspaceId: ws, subject: "u" })).token;
    const r = await service.invalidate({ workspaceId: ws, reason: "recovery", recoveryId: "rec-a" });
    assert.deepEqual(r, { epoch: 1, appended: true });
    assert.equal((await readWorkspace(events, ws)).tokenEpoch, 1, "the workspace fold sees the new epoch");
    const err = await rejectedWith(service.verify(old), "stale-epoch", old);
    assert.equal(err.context.currentEpoch, 1);

    const fresh = await service.issue({ workspaceId: ws, subject: "u" });
    assert.equal(fresh.epoch, 1);
    assert.equal(decodeJwt(fresh.token).ep, 1);
    assert.equal((await service.verify(fresh.token, { workspaceId: ws })).ep, 1);

    // A second service instance (another container) reads the same stream: same verdicts.
    const other = new AccessTokenService({ events, signingKey: async () => key, now });
    await rejectedWith(other.verify(old), "stale-epoch");
    assert.equal((await other.verify(fresh.token)).ep, 1);
  });

  it("invalidate is idempotent per recoveryId: one event, with the derived event id, same epoch", async () => {
    const ws = await workspace();
    const a = await service.invalidate({ workspaceId: ws, reason: "recovery", recoveryId: "rec-1" });
    const again = await service.invalidate({ workspaceId: ws, reason: "recovery", recoveryId: "rec-1" });
    assert.deepEqual(a, { epoch: 1, appended: true });
    assert.deepEqual(again, { epoch: 1, appended: false });
    // Concurrent retries of the same recovery (lost responses, a re-run execution) still append once.
    const burst = await Promise.all(
      Array.from({ length: 6 }, () =>
        service.invalidate({ workspaceId: ws, reason: "recovery", recoveryId: "rec-2" }),
      ),
    );
    assert.deepEqual(new Set(burst.map((b) => b.epoch)), new Set([2]));
    assert.equal(burst.filter((b) => b.appended).length, 1);

    const { events: stream } = await events.readStream(workspaceStreamId(ws));
    const inv = stream.filter((e) => e.type === EventTypes.AccessTokensInvalidated);
    assert.equal(inv.length, 2);
    assert.equal(inv[0]!.eventId, uuidFromName("AccessTokensInvalidated", ws, "rec-1"));
    assert.deepEqual(inv[0]!.data as AccessTokensInvalidatedData, {
      WorkspaceId: ws,
      Epoch: 1,
      Reason: "recovery",
      RecoveryId: "rec-1",
    });
    assert.equal((inv[1]!.data as AccessTokensInvalidatedData).Epoch, 2);
  });

  it("concurrent invalidations of two different recoveries end with epochs 1 and 2 (no lost update)", async () => {
    for (let round = 0; round < 5; round++) {
      const ws = await workspace("race");
      const [x, y] = await Promise.all([
        service.invalidate({ workspaceId: ws, reason: "recovery", recoveryId: "rec-x" }),
        new AccessTokenService({ events, signingKey: async () => key, now }).invalidate({
          workspaceId: ws,
          reason: "recovery",
          recoveryId: "rec-y",
        }),
      ]);
      assert.deepEqual([x.epoch, y.epoch].sort(), [1, 2], `round ${round}`);
      assert.equal(x.appended && y.appended, true);
      const { events: stream } = await events.readStream(workspaceStreamId(ws));
      const epochs = stream
        .filter((e) => e.type === EventTypes.AccessTokensInvalidated)
        .map((e) => (e.data as AccessTokensInvalidatedData).Epoch);
      assert.deepEqual(epochs, [1, 2]);
      assert.equal((await readWorkspace(events, ws)).tokenEpoch, 2);
    }
  });

  it("rejects a tampered signature, an expired token, another workspace's, another audience's", async () => {
    const ws = await workspace();
    const otherWs = await workspace();
    const { token } = await service.issue({ workspaceId: ws, subject: "u", ttlSeconds: 60 });

    const [h, p, s] = token.split(".") as [string, string, string];
    const sig = Buffer.from(s, "base64url");
    sig[0] = sig[0]! ^ 0x01;
    await rejectedWith(service.verify(`${h}.${p}.${sig.toString("base64url")}`), "bad-signature", token);
    const claims = decodeJwt(token);
    const elevated = Buffer.from(JSON.stringify({ ...claims, ws: otherWs })).toString("base64url");
    await rejectedWith(service.verify(`${h}.${elevated}.${s}`), "bad-signature", token);

    const saved = clock;
    clock = new Date(saved.getTime() + 10 * 60_000);
    await rejectedWith(service.verify(token), "expired", token);
    clock = saved;

    await rejectedWith(service.verify(token, { workspaceId: otherWs }), "wrong-workspace", token);

    const foreignAudience = new AccessTokenService({
      events,
      signingKey: async () => key,
      now,
      audience: "some-other-service",
    });
    const theirs = (await foreignAudience.issue({ workspaceId: ws, subject: "u" })).token;
    await rejectedWith(service.verify(theirs), "wrong-audience", theirs);
    assert.equal((await foreignAudience.verify(theirs)).ws, ws);
  });

  it("rejects malformed and oversized tokens, and tokens of workspaces the store does not know", async () => {
    for (const bad of [
      "",
      "abc",
      "a.b.c",
      "eyJhbGciOiJub25lIn0.e30.",
      `${"x".repeat(40)}.${"y".repeat(40)}`,
    ]) {
      await rejectedWith(service.verify(bad), "malformed");
    }
    // A well-formed HS256 header with no signature at all: jose checks the signature first.
    await rejectedWith(service.verify("eyJhbGciOiJIUzI1NiJ9.e30."), "bad-signature");
    const huge = "e".repeat(MAX_ACCESS_TOKEN_LENGTH + 1);
    const err = await rejectedWith(service.verify(huge), "malformed", huge);
    assert.equal(err.context.length, MAX_ACCESS_TOKEN_LENGTH + 1);
    // A validly signed token naming a workspace with no stream.
    const iat = Math.floor(clock.getTime() / 1000);
    const ghost = await new SignJWT({ ws: `ghost-${randomUUID().slice(0, 8)}`, ep: 0 })
      .setProtectedHeader({ alg: "HS256", typ: "at+jwt" })
      .setSubject("u")
      .setIssuer("arquivomate-keys")
      .setAudience("arquivomate")
      .setIssuedAt(iat)
      .setExpirationTime(iat + 60)
      .setJti(randomUUID())
      .sign(key);
    await rejectedWith(service.verify(ghost), "unknown-workspace", ghost);
    await assert.rejects(service.issue({ workspaceId: "ghost-ws", subject: "u" }), {
      code: "WORKSPACE_NOT_PROVISIONED",
    });
    await assert.rejects(service.invalidate({ workspaceId: "ghost-ws", reason: "x" }), {
      code: "WORKSPACE_NOT_PROVISIONED",
    });
    assert.equal((await events.readStream(workspaceStreamId("ghost-ws"))).currentVersion, undefined);
  });
});
