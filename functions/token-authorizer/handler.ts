/**
 * token-authorizer: an API Gateway (REST API) Lambda authorizer for ArquivoMate's access tokens.
 * - REQUEST type: the `Authorization` header (any case) must be `Bearer <jwt>`; when the route has a
 *   `{workspaceId}` path parameter, the token must belong to that workspace.
 * - TOKEN type: `authorizationToken` is `Bearer <jwt>` or the bare token.
 * A valid token gets an IAM policy allowing `execute-api:Invoke` on the method, with principalId = the token's
 * subject and context { workspaceId, epoch, subject }. A refused token makes the function throw
 * `Error("Unauthorized")`, which API Gateway answers with 401; the reason is logged (never the token). A failure to
 * reach the event store or the signing key is thrown as another error (API Gateway answers 500): fail closed.
 *
 * Environment: AMK_EVENT_TABLE (and AMK_DYNAMODB_ENDPOINT locally), AMK_TOKEN_SIGNING_SECRET_ID (and
 * AMK_SECRETS_ENDPOINT locally), AMK_TOKEN_EPOCH_CACHE_MS (default 0: every request reads the workspace's epoch),
 * AMK_TOKEN_ISSUER and AMK_TOKEN_AUDIENCE (defaults `arquivomate-keys`, `arquivomate`).
 * Turn API Gateway's own authorizer result cache off (TTL 0) or keep it short: it would let an invalidated token
 * through for as long as it caches the policy.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import type { APIGatewayAuthorizerResult } from "aws-lambda";
import { z } from "zod";
import { AccessTokenService } from "../../core/access/access-tokens.js";
import { AccessTokenRejectedError } from "../../core/access/errors.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { WORKSPACE_ID_PATTERN } from "../../core/eventstore/stream-id.js";
import { AmkError } from "../../core/shared/errors.js";
import { eventStoreFromEnv } from "../shared/event-store.js";
import { tokenSigningKeyFromEnv } from "../shared/token-key.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

const MethodArn = z.string().regex(/^arn:aws[a-z-]*:execute-api:/, "methodArn: an execute-api ARN");

const AuthorizerEvent = z.discriminatedUnion("type", [
  z.object({ type: z.literal("TOKEN"), methodArn: MethodArn, authorizationToken: z.string().optional() }),
  z.object({
    type: z.literal("REQUEST"),
    methodArn: MethodArn,
    headers: z.record(z.string(), z.string().nullish()).nullish(),
    pathParameters: z.record(z.string(), z.string().nullish()).nullish(),
  }),
]);
type AuthorizerEvent = z.infer<typeof AuthorizerEvent>;

let cached: { store: EventStore; settings: string; service: AccessTokenService } | undefined;

function serviceFromEnv(env: NodeJS.ProcessEnv = process.env): AccessTokenService {
  const store = eventStoreFromEnv(env);
  const settings = [
    env.AMK_TOKEN_SIGNING_SECRET_ID,
    env.AMK_SECRETS_ENDPOINT,
    env.AMK_TOKEN_EPOCH_CACHE_MS,
    env.AMK_TOKEN_ISSUER,
    env.AMK_TOKEN_AUDIENCE,
  ].join("|");
  // Kept per execution environment, so that the epoch cache (when enabled) outlives one invocation.
  if (cached?.store !== store || cached.settings !== settings) {
    const cacheMs = env.AMK_TOKEN_EPOCH_CACHE_MS ? Number(env.AMK_TOKEN_EPOCH_CACHE_MS) : 0;
    const service = new AccessTokenService({
      events: store,
      signingKey: tokenSigningKeyFromEnv(env),
      epochCacheMs: cacheMs,
      ...(env.AMK_TOKEN_ISSUER ? { issuer: env.AMK_TOKEN_ISSUER } : {}),
      ...(env.AMK_TOKEN_AUDIENCE ? { audience: env.AMK_TOKEN_AUDIENCE } : {}),
    });
    cached = { store, settings, service };
  }
  return cached.service;
}

/** The bearer token of the event, or undefined when there is none (or the header is not a Bearer credential). */
export function bearerTokenOf(event: AuthorizerEvent): string | undefined {
  const value =
    event.type === "TOKEN"
      ? event.authorizationToken
      : Object.entries(event.headers ?? {}).find(([name]) => name.toLowerCase() === "authorization")?.[1];
  if (typeof value !== "string") return undefined;
  const m = /^Bearer +(\S+) *$/i.exec(value);
  if (m) return m[1];
  // TOKEN type: API Gateway may pass the bare token (identity source mapping without the scheme).
  if (event.type === "TOKEN" && /^\S+$/.test(value)) return value;
  return undefined;
}

function unauthorized(reason: string, facts: Record<string, unknown> = {}): Error {
  logger.warn("access token rejected", { reason, ...facts });
  return new Error("Unauthorized");
}

export const handler = instrumented(
  "handler",
  async (event: unknown): Promise<APIGatewayAuthorizerResult> => {
    const parsed = AuthorizerEvent.safeParse(event);
    if (!parsed.success) {
      // Not an API Gateway authorizer event this function is wired for: a configuration error, not a 401.
      logger.error("not a TOKEN or REQUEST authorizer event", {
        problems: parsed.error.issues.map((i) => `${i.path.join(".") || "event"}: ${i.message}`),
      });
      throw new Error("authorizer misconfigured");
    }
    const ev = parsed.data;
    const token = bearerTokenOf(ev);
    if (token === undefined) throw unauthorized("missing-token", { type: ev.type });
    const workspaceId = ev.type === "REQUEST" ? (ev.pathParameters?.workspaceId ?? undefined) : undefined;
    // A path workspace id that is not a workspace id at all: no token can be valid for it.
    if (workspaceId !== undefined && !WORKSPACE_ID_PATTERN.test(workspaceId)) {
      throw unauthorized("invalid-workspace-id", { type: ev.type });
    }

    try {
      const claims = await serviceFromEnv().verify(token, workspaceId === undefined ? {} : { workspaceId });
      logger.info("access token accepted", {
        workspaceId: claims.ws,
        epoch: claims.ep,
        subject: claims.sub,
        tokenId: claims.jti,
      });
      return {
        principalId: claims.sub,
        policyDocument: {
          Version: "2012-10-17",
          Statement: [{ Action: "execute-api:Invoke", Effect: "Allow", Resource: ev.methodArn }],
        },
        context: { workspaceId: claims.ws, epoch: claims.ep, subject: claims.sub },
      };
    } catch (err) {
      if (err instanceof AccessTokenRejectedError) throw unauthorized(err.reason, { ...err.context });
      const error =
        err instanceof AmkError
          ? { name: err.name, code: err.code, retryable: err.retryable, context: err.context }
          : { name: (err as Error)?.name ?? typeof err };
      logger.error("access token could not be verified", { error });
      // No cause on purpose: what leaves the function carries nothing about the token or the store.
      // eslint-disable-next-line preserve-caught-error
      throw new Error("authorizer unavailable");
    }
  },
);
