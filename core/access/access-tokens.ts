/**
 * Access tokens with per-workspace epochs (docs/access-tokens.md). A token is a compact JWS (HS256, `typ: at+jwt`)
 * whose claims name the workspace (`ws`) and the workspace's token epoch at issue time (`ep`). Invalidating a
 * workspace's tokens appends `AccessTokensInvalidated` with the next epoch to its stream; from then on, every token
 * carrying an earlier epoch is refused (`stale-epoch`), however long it would still have lived.
 *
 * Signing and verification are `jose`'s (HMAC checked with WebCrypto's `verify`, constant time); claims are
 * validated again with zod after the signature. No message, log context or error ever holds a token or the key.
 */
import { randomUUID } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT, type JWTPayload } from "jose";
import { z } from "zod";
import { EventTypes, type AccessTokensInvalidatedData } from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { EventIdConflictError, ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent, type StoredEvent } from "../eventstore/events.js";
import { fold } from "../eventstore/projection.js";
import { assertValidWorkspaceId, WORKSPACE_ID_PATTERN, workspaceStreamId } from "../eventstore/stream-id.js";
import { WorkspaceNotProvisionedError } from "../datakeys/errors.js";
import { InvalidInputError } from "../shared/errors.js";
import { uuidFromName } from "../shared/ids.js";
import { backoffDelay, sleep, type RetryPolicy } from "../shared/retry.js";
import { emptyWorkspace, evolveWorkspace, readWorkspace } from "../workspaces/workspace.js";
import {
  AccessTokenKeyError,
  AccessTokenRejectedError,
  TokenEpochConflictError,
  type AccessTokenRejectionReason,
} from "./errors.js";

export const DEFAULT_ISSUER = "arquivomate-keys";
export const DEFAULT_AUDIENCE = "arquivomate";
/** The JOSE `typ` header of every token (RFC 9068): keeps other JWTs signed with the same key from passing. */
export const ACCESS_TOKEN_TYP = "at+jwt";
export const DEFAULT_TTL_SECONDS = 900;
export const MAX_TTL_SECONDS = 43_200;
/** Longer strings are refused as `malformed` before any parsing. */
export const MAX_ACCESS_TOKEN_LENGTH = 4096;
export const MIN_SIGNING_KEY_BYTES = 32;
/** Default allowance for clocks that disagree between issuer and verifier, in seconds. */
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 5;
/** At most this many workspaces' epochs are cached; the oldest entry leaves first. */
export const EPOCH_CACHE_MAX_ENTRIES = 10_000;
const MAX_SCOPES = 32;

const INVALIDATE_RETRY: RetryPolicy = { maxAttempts: 6, baseDelayMs: 10, maxDelayMs: 200 };

/** The claims of an access token, as signed. */
export interface AccessTokenClaims {
  /** Who the token was issued to (a user or service id). */
  readonly sub: string;
  /** The workspace the token grants access to. */
  readonly ws: string;
  /** The workspace's token epoch when the token was issued. */
  readonly ep: number;
  readonly iat: number;
  readonly exp: number;
  /** Random token id (a UUID), for audit trails and deny lists. */
  readonly jti: string;
  readonly iss: string;
  readonly aud: string | readonly string[];
  /** Space-separated scopes (RFC 9068 `scope`), when the token was issued with any. */
  readonly scope?: string;
}

export interface AccessTokenServiceDeps {
  readonly events: EventStore;
  /** The HMAC key (at least 32 bytes). Called for every issue and verify: cache it in the provider. */
  readonly signingKey: () => Promise<Uint8Array>;
  readonly now?: () => Date;
  /** `iss` of issued tokens, and the only issuer accepted. Default `arquivomate-keys`. */
  readonly issuer?: string;
  /** `aud` of issued tokens, and the audience required. Default `arquivomate`. */
  readonly audience?: string;
  /**
   * How long `verify` reuses a workspace's epoch read, in milliseconds. Default 0: every verification reads the
   * workspace stream, so an invalidation takes effect for the very next request. A positive value saves reads in a
   * busy authorizer at a price: a token invalidated elsewhere keeps passing here for up to this long (the window
   * closes at once for invalidations made through this same instance). `issue` and `invalidate` always read.
   */
  readonly epochCacheMs?: number;
  /** Default 5 seconds. */
  readonly clockToleranceSeconds?: number;
}

export interface IssueAccessTokenRequest {
  readonly workspaceId: string;
  /** 1-256 characters, no control characters. */
  readonly subject: string;
  /** Lifetime, 1..43200 seconds; default 900. */
  readonly ttlSeconds?: number;
  /** Up to 32 scopes of RFC 6749 scope-token characters (printable ASCII without space, `"` and `\`). */
  readonly scopes?: readonly string[];
}

export interface IssuedAccessToken {
  readonly token: string;
  /** ISO 8601 UTC. */
  readonly expiresAt: string;
  /** The workspace's token epoch the token carries. */
  readonly epoch: number;
  /** The token's `jti`. */
  readonly tokenId: string;
}

export interface InvalidateAccessTokensRequest {
  readonly workspaceId: string;
  /** Why (recorded in the event): e.g. `recovery`, `administrator-request`. 1-256 characters. */
  readonly reason: string;
  /** The recovery that invalidates; makes the call idempotent: the same recovery invalidates once. */
  readonly recoveryId?: string;
}

export interface InvalidateAccessTokensResult {
  /** The workspace's token epoch now: tokens below it are refused. */
  readonly epoch: number;
  /** False when this recovery's invalidation was already recorded (nothing was appended). */
  readonly appended: boolean;
}

const ScopeSchema = z
  .string()
  .regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/, "scope: 1-64 scope-token characters");

const IssueRequestSchema = z.object({
  workspaceId: z.string().regex(WORKSPACE_ID_PATTERN, "workspaceId: letters, digits, - and _ (1-64)"),
  subject: z
    .string()
    .min(1, "subject: at least one character")
    .max(256, "subject: at most 256 characters")
    // eslint-disable-next-line no-control-regex
    .regex(/^[^\x00-\x1f\x7f]+$/, "subject: no control characters"),
  ttlSeconds: z
    .int("ttlSeconds: an integer")
    .min(1, "ttlSeconds: at least 1")
    .max(MAX_TTL_SECONDS, `ttlSeconds: at most ${MAX_TTL_SECONDS}`)
    .optional(),
  scopes: z.array(ScopeSchema).max(MAX_SCOPES, `scopes: at most ${MAX_SCOPES}`).optional(),
});

const InvalidateRequestSchema = z.object({
  workspaceId: z.string().regex(WORKSPACE_ID_PATTERN, "workspaceId: letters, digits, - and _ (1-64)"),
  reason: z.string().min(1, "reason: at least one character").max(256, "reason: at most 256 characters"),
  recoveryId: z
    .string()
    .regex(/^[\x21-\x7e]{1,128}$/, "recoveryId: 1-128 printable ASCII characters")
    .optional(),
});

const NumericDate = z.int().min(0).max(Number.MAX_SAFE_INTEGER);

/** What a verified token's payload must look like (after jose checked signature, typ, iss, aud, exp and iat). */
const ClaimsSchema = z.object({
  sub: z.string().min(1).max(256),
  ws: z.string().regex(WORKSPACE_ID_PATTERN),
  ep: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  iat: NumericDate,
  exp: NumericDate,
  jti: z.string().min(1).max(64),
  iss: z.string().min(1),
  aud: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  scope: z
    .string()
    .regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,64}(?: [\x21\x23-\x5b\x5d-\x7e]{1,64})*$/)
    .optional(),
});

interface EpochEntry {
  /** False when the workspace stream does not exist. */
  readonly known: boolean;
  readonly epoch: number;
  readonly expiresAt: number;
}

export class AccessTokenService {
  private readonly events: EventStore;
  private readonly signingKeyProvider: () => Promise<Uint8Array>;
  private readonly now: () => Date;
  private readonly issuer: string;
  private readonly audience: string;
  private readonly epochCacheMs: number;
  private readonly clockTolerance: number;
  private readonly epochCache = new Map<string, EpochEntry>();
  private readonly epochReads = new Map<string, Promise<EpochEntry>>();

  constructor(deps: AccessTokenServiceDeps) {
    this.events = deps.events;
    this.signingKeyProvider = deps.signingKey;
    this.now = deps.now ?? (() => new Date());
    this.issuer = deps.issuer ?? DEFAULT_ISSUER;
    this.audience = deps.audience ?? DEFAULT_AUDIENCE;
    this.epochCacheMs = deps.epochCacheMs ?? 0;
    this.clockTolerance = deps.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
    if (!Number.isFinite(this.epochCacheMs) || this.epochCacheMs < 0) {
      throw new InvalidInputError("AccessTokenService: epochCacheMs must be a finite number >= 0", {
        context: { field: "epochCacheMs", epochCacheMs: this.epochCacheMs },
      });
    }
    if (!Number.isFinite(this.clockTolerance) || this.clockTolerance < 0 || this.clockTolerance > 300) {
      throw new InvalidInputError("AccessTokenService: clockToleranceSeconds must be between 0 and 300", {
        context: { field: "clockToleranceSeconds", clockToleranceSeconds: this.clockTolerance },
      });
    }
    if (this.issuer === "" || this.audience === "") {
      throw new InvalidInputError("AccessTokenService: issuer and audience must be non-empty");
    }
  }

  /**
   * Issues a token for a workspace, carrying the workspace's current token epoch (read from its stream, never from
   * the cache). Throws `WorkspaceNotProvisionedError` for a workspace without a stream, `InvalidInputError` for a
   * bad request.
   */
  async issue(request: IssueAccessTokenRequest): Promise<IssuedAccessToken> {
    const req = parse(IssueRequestSchema, request, "issue");
    const ws = await readWorkspace(this.events, req.workspaceId);
    if (ws.version === 0) throw unknownWorkspace(req.workspaceId);
    const epoch = ws.tokenEpoch;
    this.remember(req.workspaceId, { known: true, epoch });

    const iat = Math.floor(this.now().getTime() / 1000);
    const exp = iat + (req.ttlSeconds ?? DEFAULT_TTL_SECONDS);
    const jti = randomUUID();
    const payload: JWTPayload = { ws: req.workspaceId, ep: epoch };
    if (req.scopes !== undefined && req.scopes.length > 0) payload.scope = [...new Set(req.scopes)].join(" ");
    const token = await new SignJWT(payload)
      .setProtectedHeader({ alg: "HS256", typ: ACCESS_TOKEN_TYP })
      .setSubject(req.subject)
      .setIssuer(this.issuer)
      .setAudience(this.audience)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(jti)
      .sign(await this.key());
    if (token.length > MAX_ACCESS_TOKEN_LENGTH) {
      // Cannot happen within the request limits; refuse rather than hand out a token no verifier accepts.
      throw new InvalidInputError(`issue: the token would exceed ${MAX_ACCESS_TOKEN_LENGTH} characters`, {
        context: { workspaceId: req.workspaceId, length: token.length },
      });
    }
    return { token, expiresAt: new Date(exp * 1000).toISOString(), epoch, tokenId: jti };
  }

  /**
   * Verifies a token: signature, format, lifetime, audience, then (when `workspaceId` is given) that it belongs to
   * that workspace, then that its epoch is not below the workspace's current one. Returns its claims, or throws
   * `AccessTokenRejectedError` with the reason. Infrastructure failures (event store, key) are thrown as they are:
   * they are not a verdict on the token.
   */
  async verify(token: unknown, options: { readonly workspaceId?: string } = {}): Promise<AccessTokenClaims> {
    if (options.workspaceId !== undefined) assertValidWorkspaceId(options.workspaceId);
    if (typeof token !== "string" || token.length === 0) {
      throw reject("malformed", "access token is missing or not a string");
    }
    if (token.length > MAX_ACCESS_TOKEN_LENGTH) {
      throw reject("malformed", `access token is longer than ${MAX_ACCESS_TOKEN_LENGTH} characters`, {
        length: token.length,
      });
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, await this.key(), {
        algorithms: ["HS256"],
        typ: ACCESS_TOKEN_TYP,
        issuer: this.issuer,
        audience: this.audience,
        requiredClaims: ["sub", "ws", "ep", "iat", "exp", "jti"],
        // Also refuses an `iat` in the future ("it should be in the past").
        maxTokenAge: MAX_TTL_SECONDS,
        clockTolerance: this.clockTolerance,
        currentDate: this.now(),
      }));
    } catch (err) {
      throw translateJoseError(err);
    }
    const parsed = ClaimsSchema.safeParse(payload);
    if (!parsed.success) {
      const claims = [...new Set(parsed.error.issues.map((i) => String(i.path[0] ?? "")))].filter(Boolean);
      throw reject("malformed", `access token claims are invalid (${claims.join(", ")})`, { claims });
    }
    const claims = parsed.data;
    if (claims.exp - claims.iat > MAX_TTL_SECONDS) {
      throw reject("malformed", `access token lifetime exceeds ${MAX_TTL_SECONDS} seconds`);
    }
    if (options.workspaceId !== undefined && claims.ws !== options.workspaceId) {
      throw reject("wrong-workspace", "access token belongs to another workspace", {
        workspaceId: options.workspaceId,
        tokenWorkspaceId: claims.ws,
      });
    }
    const current = await this.currentEpoch(claims.ws);
    if (!current.known) {
      throw reject("unknown-workspace", `access token names unknown workspace ${claims.ws}`, {
        workspaceId: claims.ws,
      });
    }
    if (claims.ep < current.epoch) {
      throw reject("stale-epoch", "access token was issued before the workspace's tokens were invalidated", {
        workspaceId: claims.ws,
        tokenEpoch: claims.ep,
        currentEpoch: current.epoch,
      });
    }
    return claims as AccessTokenClaims;
  }

  /**
   * Invalidates every token of the workspace issued so far: appends `AccessTokensInvalidated` with epoch = current
   * + 1, at the stream version read (a lost race re-reads and decides again, a few times). With a `recoveryId`, the
   * call is idempotent: if that recovery's invalidation is already in the stream, its epoch is returned and nothing
   * is appended. Throws `WorkspaceNotProvisionedError` for a workspace without a stream.
   */
  async invalidate(request: InvalidateAccessTokensRequest): Promise<InvalidateAccessTokensResult> {
    const req = parse(InvalidateRequestSchema, request, "invalidate");
    const streamId = workspaceStreamId(req.workspaceId);
    const eventId =
      req.recoveryId === undefined
        ? randomUUID()
        : uuidFromName(EventTypes.AccessTokensInvalidated, req.workspaceId, req.recoveryId);
    let lastConflict: unknown;
    for (let attempt = 1; attempt <= INVALIDATE_RETRY.maxAttempts; attempt++) {
      if (attempt > 1) await sleep(backoffDelay(INVALIDATE_RETRY, attempt - 1));
      const { events: stream } = await this.events.readStream(streamId);
      if (req.recoveryId !== undefined) {
        const done = findInvalidation(stream, req.recoveryId);
        if (done !== undefined) {
          this.remember(req.workspaceId, { known: true, epoch: this.foldEpoch(req.workspaceId, stream) });
          return { epoch: done.Epoch, appended: false };
        }
      }
      const state = fold(stream, evolveWorkspace, emptyWorkspace(req.workspaceId));
      if (state.version === 0) throw unknownWorkspace(req.workspaceId);
      const epoch = state.tokenEpoch + 1;
      const data: AccessTokensInvalidatedData = {
        WorkspaceId: req.workspaceId,
        Epoch: epoch,
        Reason: req.reason,
        ...(req.recoveryId === undefined ? {} : { RecoveryId: req.recoveryId }),
      };
      const event = newEvent(EventTypes.AccessTokensInvalidated, data, { eventId, occurredAt: this.now() });
      try {
        const result = await this.events.appendToStream(streamId, [event], {
          expectedVersion: state.version,
        });
        if (!result.appended) {
          // The same event id was appended by a concurrent call: re-read to learn the epoch it recorded.
          lastConflict = undefined;
          continue;
        }
      } catch (err) {
        if (!(err instanceof ExpectedVersionConflictError) && !(err instanceof EventIdConflictError))
          throw err;
        lastConflict = err;
        continue;
      }
      this.remember(req.workspaceId, { known: true, epoch });
      return { epoch, appended: true };
    }
    throw new TokenEpochConflictError(
      `invalidate: the stream of workspace ${req.workspaceId} kept changing; retry later`,
      {
        cause: lastConflict,
        context: { workspaceId: req.workspaceId, attempts: INVALIDATE_RETRY.maxAttempts },
      },
    );
  }

  /** Drops every cached epoch (or one workspace's), so the next verification reads the stream. */
  clearEpochCache(workspaceId?: string): void {
    if (workspaceId === undefined) this.epochCache.clear();
    else this.epochCache.delete(workspaceId);
  }

  private foldEpoch(workspaceId: string, stream: readonly StoredEvent[]): number {
    return fold(stream, evolveWorkspace, emptyWorkspace(workspaceId)).tokenEpoch;
  }

  private async key(): Promise<Uint8Array> {
    const key = await this.signingKeyProvider();
    if (!(key instanceof Uint8Array) || key.byteLength < MIN_SIGNING_KEY_BYTES) {
      throw new AccessTokenKeyError(
        `the access-token signing key must be at least ${MIN_SIGNING_KEY_BYTES} bytes`,
        { context: { bytes: key instanceof Uint8Array ? key.byteLength : undefined } },
      );
    }
    return key;
  }

  private async currentEpoch(workspaceId: string): Promise<EpochEntry> {
    if (this.epochCacheMs > 0) {
      const hit = this.epochCache.get(workspaceId);
      if (hit !== undefined && this.now().getTime() < hit.expiresAt) return hit;
      const pending = this.epochReads.get(workspaceId);
      if (pending !== undefined) return pending;
    }
    const read = readWorkspace(this.events, workspaceId)
      .then((ws) => this.remember(workspaceId, { known: ws.version > 0, epoch: ws.tokenEpoch }))
      .finally(() => {
        if (this.epochReads.get(workspaceId) === read) this.epochReads.delete(workspaceId);
      });
    if (this.epochCacheMs > 0) this.epochReads.set(workspaceId, read);
    return read;
  }

  /** Records a workspace's epoch in the cache (never lowering a known one) and returns the entry. */
  private remember(workspaceId: string, fact: { known: boolean; epoch: number }): EpochEntry {
    const previous = this.epochCache.get(workspaceId);
    const epoch = previous?.known && fact.known ? Math.max(previous.epoch, fact.epoch) : fact.epoch;
    const entry: EpochEntry = {
      known: fact.known,
      epoch,
      expiresAt: this.now().getTime() + this.epochCacheMs,
    };
    if (this.epochCacheMs > 0) {
      this.epochCache.delete(workspaceId);
      this.epochCache.set(workspaceId, entry);
      if (this.epochCache.size > EPOCH_CACHE_MAX_ENTRIES) {
        const oldest = this.epochCache.keys().next().value;
        if (oldest !== undefined) this.epochCache.delete(oldest);
      }
    }
    return entry;
  }
}

function findInvalidation(
  stream: readonly StoredEvent[],
  recoveryId: string,
): AccessTokensInvalidatedData | undefined {
  for (const e of stream) {
    if (e.type !== EventTypes.AccessTokensInvalidated) continue;
    const d = e.data as AccessTokensInvalidatedData;
    if (d.RecoveryId === recoveryId) return d;
  }
  return undefined;
}

function reject(
  reason: AccessTokenRejectionReason,
  message: string,
  context: Record<string, unknown> = {},
): AccessTokenRejectedError {
  return new AccessTokenRejectedError(reason, message, { context });
}

function unknownWorkspace(workspaceId: string): WorkspaceNotProvisionedError {
  return new WorkspaceNotProvisionedError(`workspace ${workspaceId} is unknown: provision it first`, {
    context: { workspaceId },
  });
}

/**
 * jose's verdicts as rejection reasons. jose checks the signature before it reads any claim, so an unsigned or
 * forged token never learns which claim would have failed. Its messages and payloads are not kept (the claims set
 * rides on JWTClaimValidationFailed): only the error's name and the claim name.
 */
function translateJoseError(err: unknown): unknown {
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return reject("bad-signature", "access token signature does not verify");
  }
  if (err instanceof joseErrors.JWTExpired) {
    return reject("expired", "access token has expired", { claim: err.claim });
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const { claim, reason } = err;
    if (reason === "check_failed" && (claim === "nbf" || claim === "iat")) {
      return reject("not-yet-valid", "access token is not valid yet", { claim });
    }
    if (reason === "check_failed" && claim === "aud") {
      return reject("wrong-audience", "access token is meant for another audience", { claim });
    }
    const problem =
      reason === "missing" ? "is missing" : reason === "invalid" ? "has the wrong type" : "is not accepted";
    return reject("malformed", `access token claim "${claim}" ${problem}`, { claim, check: reason });
  }
  if (err instanceof joseErrors.JOSEError) {
    return reject("malformed", "access token is not a compact HS256 JWT of this format", {
      joseCode: err.code,
    });
  }
  if (err instanceof TypeError || err instanceof SyntaxError) {
    return reject("malformed", "access token could not be decoded", { errorName: err.name });
  }
  return err;
}

function parse<T>(schema: z.ZodType<T>, input: unknown, operation: string): T {
  const r = schema.safeParse(input);
  if (!r.success) {
    const problems = r.error.issues.map((i) =>
      i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message,
    );
    throw new InvalidInputError(`${operation}: invalid request: ${problems.join("; ")}`, {
      context: { problems },
    });
  }
  return r.data;
}
