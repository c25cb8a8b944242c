/**
 * AccessTokenService on a tiny in-memory stream store (readStream/appendToStream only): token format, every
 * rejection reason, the epoch cache's trade-off, and that no error ever carries the token. The same behaviour
 * against DynamoDB Local (concurrency included) is in test/integration/access-tokens.int.test.ts.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { decodeJwt, decodeProtectedHeader, SignJWT, type JWTPayload } from "jose";
import {
  AccessTokenService,
  MAX_ACCESS_TOKEN_LENGTH,
  MAX_TTL_SECONDS,
  type AccessTokenServiceDeps,
} from "../../core/access/access-tokens.js";
import {
  AccessTokenKeyError,
  AccessTokenRejectedError,
  type AccessTokenRejectionReason,
} from "../../core/access/errors.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../../core/eventstore/errors.js";
import { newEvent, type NewEvent, type StoredEvent } from "../../core/eventstore/events.js";
import { workspaceStreamId, type StreamId } from "../../core/eventstore/stream-id.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import { decodeSigningKey } from "../../functions/shared/token-key.js";

/** Just enough of an event store: versioned streams, conditional appends, replay by event id. */
class MemoryStreams {
  readonly streams = new Map<string, StoredEvent[]>();
  reads = 0;
  /** Runs once before the next append (to simulate a concurrent writer). */
  beforeAppend: (() => void) | undefined;

  readonly store = {
    readStream: async (streamId: string) => {
      this.reads++;
      const events = [...(this.streams.get(streamId) ?? [])];
      return { events, currentVersion: events.length === 0 ? undefined : events.length };
    },
    appendToStream: async (
      streamId: string,
      batch: readonly NewEvent[],
      options: { expectedVersion: number | string },
    ) => {
      const hook = this.beforeAppend;
      this.beforeAppend = undefined;
      hook?.();
      const stream = this.streams.get(streamId) ?? [];
      const existing = stream.find((e) => e.eventId === batch[0]!.eventId);
      if (existing)
        return { appended: false, firstVersion: existing.version, nextExpectedVersion: existing.version };
      const actual = stream.length;
      if (typeof options.expectedVersion === "number" && options.expectedVersion !== actual) {
        throw new ExpectedVersionConflictError(
          streamId,
          options.expectedVersion,
          actual === 0 ? "no_stream" : actual,
        );
      }
      for (const e of batch) {
        stream.push({
          ...e,
          streamId: streamId as StreamId,
          version: stream.length + 1,
          recordedAt: new Date().toISOString(),
        });
      }
      this.streams.set(streamId, stream);
      return { appended: true, firstVersion: actual + 1, nextExpectedVersion: stream.length };
    },
  };

  seed(workspaceId: string): void {
    const e = newEvent(EventTypes.MasterKeyCreated, {
      WorkspaceId: workspaceId,
      KeyId: `ws-${workspaceId}/mk/1`,
      Kcv: "A1B2C3",
      Extractable: true,
    });
    void this.store.appendToStream(workspaceStreamId(workspaceId), [e], { expectedVersion: "no_stream" });
  }
}

const KEY = new Uint8Array(randomBytes(32));
const T0 = new Date("2026-05-01T10:00:00.000Z");

function setup(extra: Partial<AccessTokenServiceDeps> = {}, clock = { t: T0.getTime() }) {
  const mem = new MemoryStreams();
  mem.seed("ws-a");
  mem.seed("ws-b");
  const service = new AccessTokenService({
    events: mem.store as unknown as EventStore,
    signingKey: async () => KEY,
    now: () => new Date(clock.t),
    ...extra,
  });
  return { mem, service, clock };
}

async function rejected(
  p: Promise<unknown>,
  reason: AccessTokenRejectionReason,
  token?: string,
): Promise<AccessTokenRejectedError> {
  const err = await p.then(
    () => assert.fail(`expected a ${reason} rejection`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof AccessTokenRejectedError, `expected AccessTokenRejectedError, got ${String(err)}`);
  assert.equal(err.reason, reason, err.message);
  assert.equal(err.code, "ACCESS_TOKEN_REJECTED");
  assert.equal(err.retryable, false);
  assert.equal(err.context.reason, reason);
  if (token) {
    const text = JSON.stringify(err.toJSON()) + err.message + String(err.stack);
    for (const part of token.split(".")) if (part.length > 8) assert.equal(text.includes(part), false);
  }
  return err;
}

/** Signs arbitrary claims/headers with the service's key: tokens the production encoder never makes. */
async function forge(
  claims: JWTPayload,
  header: Record<string, unknown> = {},
  key: Uint8Array = KEY,
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "at+jwt", ...header }).sign(key);
}

const nowSec = Math.floor(T0.getTime() / 1000);
const goodClaims = (over: JWTPayload = {}): JWTPayload => ({
  sub: "user-1",
  ws: "ws-a",
  ep: 0,
  iat: nowSec,
  exp: nowSec + 900,
  jti: "00000000-0000-4000-8000-000000000000",
  iss: "arquivomate-keys",
  aud: "arquivomate",
  ...over,
});

describe("access tokens: issue", () => {
  it("issues an HS256 at+jwt with sub, ws, ep, iat, exp, jti, iss, aud (and scope)", async () => {
    const { service } = setup();
    const r = await service.issue({
      workspaceId: "ws-a",
      subject: "user-1",
      scopes: ["docs:read", "docs:write"],
    });
    assert.deepEqual(decodeProtectedHeader(r.token), { alg: "HS256", typ: "at+jwt" });
    const c = decodeJwt(r.token);
    assert.deepEqual(Object.keys(c).sort(), ["aud", "ep", "exp", "iat", "iss", "jti", "scope", "sub", "ws"]);
    assert.equal(c.sub, "user-1");
    assert.equal(c.ws, "ws-a");
    assert.equal(c.ep, 0);
    assert.equal(c.iat, nowSec);
    assert.equal(c.exp, nowSec + 900);
    assert.equal(c.iss, "arquivomate-keys");
    assert.equal(c.aud, "arquivomate");
    assert.equal(c.scope, "docs:read docs:write");
    assert.match(String(c.jti), /^[0-9a-f-]{36}$/);
    assert.equal(r.tokenId, c.jti);
    assert.equal(r.epoch, 0);
    assert.equal(r.expiresAt, new Date((nowSec + 900) * 1000).toISOString());
    const again = await service.issue({ workspaceId: "ws-a", subject: "user-1" });
    assert.notEqual(decodeJwt(again.token).jti, c.jti, "jti is random");
    assert.equal(decodeJwt(again.token).scope, undefined);
  });

  it("honours ttlSeconds within 1..43200 and refuses anything else, and bad subjects, scopes and workspaces", async () => {
    const { service } = setup();
    const max = await service.issue({ workspaceId: "ws-a", subject: "s", ttlSeconds: MAX_TTL_SECONDS });
    assert.equal(decodeJwt(max.token).exp, nowSec + MAX_TTL_SECONDS);
    for (const bad of [
      { workspaceId: "ws-a", subject: "s", ttlSeconds: 0 },
      { workspaceId: "ws-a", subject: "s", ttlSeconds: MAX_TTL_SECONDS + 1 },
      { workspaceId: "ws-a", subject: "s", ttlSeconds: 1.5 },
      { workspaceId: "ws-a", subject: "" },
      { workspaceId: "ws-a", subject: "a\nb" },
      { workspaceId: "ws-a", subject: "x".repeat(257) },
      { workspaceId: "ws-a", subject: "s", scopes: ["has space"] },
      { workspaceId: "ws-a", subject: "s", scopes: Array.from({ length: 33 }, (_, i) => `s${i}`) },
      { workspaceId: "../etc", subject: "s" },
    ]) {
      await assert.rejects(service.issue(bad), InvalidInputError, JSON.stringify(bad));
    }
    await assert.rejects(service.issue({ workspaceId: "never-seen", subject: "s" }), {
      code: "WORKSPACE_NOT_PROVISIONED",
    });
  });

  it("refuses a signing key shorter than 32 bytes", async () => {
    const { service } = setup({ signingKey: async () => new Uint8Array(16) });
    await assert.rejects(service.issue({ workspaceId: "ws-a", subject: "s" }), AccessTokenKeyError);
    await assert.rejects(service.verify("a.b.c"), AccessTokenKeyError);
  });
});

describe("access tokens: verify", () => {
  it("accepts a fresh token and returns its claims; checks the workspace when asked", async () => {
    const { service } = setup();
    const { token } = await service.issue({ workspaceId: "ws-a", subject: "user-1" });
    const claims = await service.verify(token);
    assert.equal(claims.sub, "user-1");
    assert.equal(claims.ws, "ws-a");
    assert.equal(claims.ep, 0);
    assert.equal((await service.verify(token, { workspaceId: "ws-a" })).jti, claims.jti);
    await rejected(service.verify(token, { workspaceId: "ws-b" }), "wrong-workspace", token);
    await assert.rejects(service.verify(token, { workspaceId: "no/such" }), InvalidInputError);
  });

  it("rejects a token issued before an invalidation (stale-epoch) and accepts one issued after", async () => {
    const { service } = setup();
    const old = (await service.issue({ workspaceId: "ws-a", subject: "u" })).token;
    assert.deepEqual(await service.invalidate({ workspaceId: "ws-a", reason: "test" }), {
      epoch: 1,
      appended: true,
    });
    const e = await rejected(service.verify(old), "stale-epoch", old);
    assert.deepEqual(
      { tokenEpoch: e.context.tokenEpoch, currentEpoch: e.context.currentEpoch },
      { tokenEpoch: 0, currentEpoch: 1 },
    );
    const fresh = await service.issue({ workspaceId: "ws-a", subject: "u" });
    assert.equal(fresh.epoch, 1);
    assert.equal((await service.verify(fresh.token)).ep, 1);
    // Other workspaces keep their tokens.
    const b = (await service.issue({ workspaceId: "ws-b", subject: "u" })).token;
    assert.equal((await service.verify(b)).ep, 0);
  });

  it("rejects tampered, foreign-key, expired, future, wrong-audience, unknown-workspace tokens with their reason", async () => {
    const { service, clock } = setup();
    const { token } = await service.issue({ workspaceId: "ws-a", subject: "u", ttlSeconds: 60 });
    const [h, p, s] = token.split(".") as [string, string, string];
    const flipped = s.slice(0, -2) + (s.at(-2) === "A" ? "B" : "A") + s.at(-1);
    await rejected(service.verify(`${h}.${p}.${flipped}`), "bad-signature", token);
    const otherPayload = Buffer.from(JSON.stringify({ ...decodeJwt(token), sub: "admin" })).toString(
      "base64url",
    );
    await rejected(service.verify(`${h}.${otherPayload}.${s}`), "bad-signature", token);
    const foreign = await forge(goodClaims(), {}, new Uint8Array(randomBytes(32)));
    await rejected(service.verify(foreign), "bad-signature", foreign);

    clock.t += 64_000; // past exp, within the 5 s clock tolerance
    assert.equal((await service.verify(token)).sub, "u");
    clock.t += 2_000;
    await rejected(service.verify(token), "expired", token);
    clock.t = T0.getTime();

    await rejected(service.verify(await forge(goodClaims({ iat: nowSec + 120 }))), "not-yet-valid");
    await rejected(service.verify(await forge(goodClaims({ nbf: nowSec + 120 }))), "not-yet-valid");
    // Within the clock tolerance (5 s) a slightly early iat passes.
    assert.equal((await service.verify(await forge(goodClaims({ iat: nowSec + 3 })))).ws, "ws-a");
    await rejected(service.verify(await forge(goodClaims({ aud: "other-app" }))), "wrong-audience");
    await rejected(service.verify(await forge(goodClaims({ ws: "ghost" }))), "unknown-workspace");
  });

  it("rejects malformed tokens: garbage, oversized, wrong typ/alg, missing or ill-typed claims, another issuer", async () => {
    const { service } = setup();
    const cases: [string, unknown][] = [
      ["empty", ""],
      ["not a string", 42],
      ["garbage", "not-a-jwt"],
      ["two parts", "a.b"],
      ["bad base64", "!!!.???.***"],
      ["json header not object", `${b64u("[]")}.${b64u("{}")}.AAAA`],
      ["oversized", "a".repeat(MAX_ACCESS_TOKEN_LENGTH + 1)],
      ["alg none", `${b64u('{"alg":"none","typ":"at+jwt"}')}.${b64u(JSON.stringify(goodClaims()))}.`],
      ["other typ", await forge(goodClaims(), { typ: "JWT" })],
      ["no typ", await new SignJWT(goodClaims()).setProtectedHeader({ alg: "HS256" }).sign(KEY)],
      [
        "HS512",
        await new SignJWT(goodClaims()).setProtectedHeader({ alg: "HS512", typ: "at+jwt" }).sign(KEY),
      ],
      ["no ws", await forge({ ...goodClaims(), ws: undefined })],
      ["no ep", await forge({ ...goodClaims(), ep: undefined })],
      ["no jti", await forge({ ...goodClaims(), jti: undefined })],
      ["no exp", await forge({ ...goodClaims(), exp: undefined })],
      ["no iat", await forge({ ...goodClaims(), iat: undefined })],
      ["ep string", await forge(goodClaims({ ep: "0" }))],
      ["ep negative", await forge(goodClaims({ ep: -1 }))],
      ["ep fraction", await forge(goodClaims({ ep: 0.5 }))],
      ["ws bad", await forge(goodClaims({ ws: "../x" }))],
      ["exp string", await forge(goodClaims({ exp: "soon" } as unknown as JWTPayload))],
      ["lifetime too long", await forge(goodClaims({ exp: nowSec + MAX_TTL_SECONDS + 60 }))],
      ["other issuer", await forge(goodClaims({ iss: "someone-else" }))],
      ["bad scope", await forge(goodClaims({ scope: "a  b" }))],
    ];
    for (const [name, token] of cases) {
      const e = await rejected(
        service.verify(token),
        "malformed",
        typeof token === "string" ? token : undefined,
      );
      assert.ok(!e.message.includes(String(token).slice(0, 20)) || String(token).length < 8, name);
    }
  });

  it("never lets a mutated token through and never fails with anything but a rejection (fuzz)", async () => {
    const { service } = setup();
    const { token } = await service.issue({ workspaceId: "ws-a", subject: "u" });
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
    for (let i = 0; i < 300; i++) {
      const chars = [...token];
      const n = 1 + (i % 4);
      for (let k = 0; k < n; k++) {
        const at = Math.floor(Math.random() * chars.length);
        const op = Math.floor(Math.random() * 3);
        const c = alphabet[Math.floor(Math.random() * alphabet.length)]!;
        if (op === 0) chars[at] = c;
        else if (op === 1) chars.splice(at, 1);
        else chars.splice(at, 0, c);
      }
      const mutated = chars.join("");
      if (mutated === token) continue;
      try {
        await service.verify(mutated);
        // base64url has slack in its last character: a change there can decode to the same bytes.
        assert.equal(
          Buffer.from(mutated.split(".")[2] ?? "", "base64url").equals(
            Buffer.from(token.split(".")[2]!, "base64url"),
          ),
          true,
          `mutation ${i} was accepted`,
        );
      } catch (err) {
        assert.ok(err instanceof AccessTokenRejectedError, `mutation ${i}: ${String(err)}`);
      }
    }
  });
});

describe("access tokens: invalidate", () => {
  it("is idempotent per recoveryId and uses a derived event id", async () => {
    const { service, mem } = setup();
    const first = await service.invalidate({ workspaceId: "ws-a", reason: "recovery", recoveryId: "rec-1" });
    assert.deepEqual(first, { epoch: 1, appended: true });
    assert.deepEqual(
      await service.invalidate({ workspaceId: "ws-a", reason: "recovery", recoveryId: "rec-1" }),
      {
        epoch: 1,
        appended: false,
      },
    );
    assert.deepEqual(
      await service.invalidate({ workspaceId: "ws-a", reason: "recovery", recoveryId: "rec-2" }),
      {
        epoch: 2,
        appended: true,
      },
    );
    // rec-1 again after rec-2: still its own epoch, nothing appended.
    assert.deepEqual(
      await service.invalidate({ workspaceId: "ws-a", reason: "again", recoveryId: "rec-1" }),
      {
        epoch: 1,
        appended: false,
      },
    );
    const stream = mem.streams.get("ws-ws-a")!;
    const inv = stream.filter((e) => e.type === EventTypes.AccessTokensInvalidated);
    assert.equal(inv.length, 2);
    assert.deepEqual(inv[0]!.data, {
      WorkspaceId: "ws-a",
      Epoch: 1,
      Reason: "recovery",
      RecoveryId: "rec-1",
    });
    assert.equal(inv[0]!.occurredAt, T0.toISOString());
    // Without a recovery id every call is a new invalidation, and RecoveryId is absent (not undefined).
    assert.deepEqual(await service.invalidate({ workspaceId: "ws-a", reason: "admin" }), {
      epoch: 3,
      appended: true,
    });
    assert.equal("RecoveryId" in stream.at(-1)!.data, false);
  });

  it("re-reads and takes the next epoch when another writer appended first", async () => {
    const { service, mem } = setup();
    mem.beforeAppend = () => {
      // A concurrent invalidation lands between our read and our append.
      const e = newEvent(EventTypes.AccessTokensInvalidated, {
        WorkspaceId: "ws-a",
        Epoch: 1,
        Reason: "other",
      });
      const s = mem.streams.get("ws-ws-a")!;
      s.push({ ...e, streamId: "ws-ws-a" as StreamId, version: s.length + 1, recordedAt: T0.toISOString() });
    };
    assert.deepEqual(await service.invalidate({ workspaceId: "ws-a", reason: "mine" }), {
      epoch: 2,
      appended: true,
    });
  });

  it("refuses unknown workspaces and bad requests, writing nothing", async () => {
    const { service, mem } = setup();
    await assert.rejects(service.invalidate({ workspaceId: "ghost", reason: "x" }), {
      code: "WORKSPACE_NOT_PROVISIONED",
    });
    assert.equal(mem.streams.has("ws-ghost"), false);
    for (const bad of [
      { workspaceId: "ws-a", reason: "" },
      { workspaceId: "ws-a", reason: "x", recoveryId: "has space" },
      { workspaceId: "a/b", reason: "x" },
    ]) {
      await assert.rejects(service.invalidate(bad), InvalidInputError);
    }
    assert.equal(mem.streams.get("ws-ws-a")!.length, 1);
  });
});

describe("access tokens: epoch cache", () => {
  it("default (0): every verification reads the stream, so an invalidation elsewhere applies at once", async () => {
    const { service, mem } = setup();
    const elsewhere = new AccessTokenService({
      events: mem.store as unknown as EventStore,
      signingKey: async () => KEY,
      now: () => T0,
    });
    const { token } = await service.issue({ workspaceId: "ws-a", subject: "u" });
    const before = mem.reads;
    await service.verify(token);
    await service.verify(token);
    assert.equal(mem.reads - before, 2);
    await elsewhere.invalidate({ workspaceId: "ws-a", reason: "x" });
    await rejected(service.verify(token), "stale-epoch");
  });

  it("with a TTL: fewer reads, an invalidation elsewhere is seen only after the TTL; one made here at once", async () => {
    const clock = { t: T0.getTime() };
    const { service, mem } = setup({ epochCacheMs: 10_000 }, clock);
    const elsewhere = new AccessTokenService({
      events: mem.store as unknown as EventStore,
      signingKey: async () => KEY,
      now: () => new Date(clock.t),
    });
    const { token } = await service.issue({ workspaceId: "ws-a", subject: "u", ttlSeconds: 3600 });
    const before = mem.reads;
    await Promise.all(Array.from({ length: 20 }, () => service.verify(token)));
    assert.equal(mem.reads - before, 0, "issue warmed the cache");

    await elsewhere.invalidate({ workspaceId: "ws-a", reason: "x" });
    await service.verify(token); // the stale window: still accepted from the cache
    clock.t += 10_001;
    await rejected(service.verify(token), "stale-epoch");

    const t2 = (await service.issue({ workspaceId: "ws-a", subject: "u", ttlSeconds: 3600 })).token;
    await service.invalidate({ workspaceId: "ws-a", reason: "y" });
    await rejected(service.verify(t2), "stale-epoch", t2);

    service.clearEpochCache();
    const reads = mem.reads;
    await Promise.all(Array.from({ length: 10 }, () => service.verify(t2).catch(() => undefined)));
    assert.equal(mem.reads - reads, 1, "concurrent misses share one read");
  });

  it("refuses a negative cache TTL", () => {
    assert.throws(() => setup({ epochCacheMs: -1 }), InvalidInputError);
  });
});

describe("token signing key decoding", () => {
  it("takes SecretBinary as is and SecretString as base64; refuses short, non-base64 and empty secrets", () => {
    const bytes = new Uint8Array(randomBytes(32));
    assert.deepEqual(decodeSigningKey({ SecretBinary: bytes }, "k"), bytes);
    const b64 = Buffer.from(bytes).toString("base64");
    assert.deepEqual(decodeSigningKey({ SecretString: `${b64}\n` }, "k"), bytes);
    for (const out of [
      { SecretBinary: new Uint8Array(31) },
      { SecretString: Buffer.alloc(16).toString("base64") },
      { SecretString: "not base64 at all!" },
      {},
    ]) {
      const err = (() => {
        try {
          decodeSigningKey(out, "k");
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      assert.ok(err instanceof AccessTokenKeyError, JSON.stringify(out));
      assert.equal(err.message.includes("not base64 at all"), false, "the value is never quoted");
    }
  });
});

function b64u(text: string): string {
  return Buffer.from(text).toString("base64url");
}
