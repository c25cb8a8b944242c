import { createHash } from "node:crypto";
import { z } from "zod";
import { InvalidCursorError } from "./errors.js";
import { DOCUMENT_ID_PATTERN, WORKSPACE_ID_PATTERN } from "./stream-id.js";

/**
 * Opaque, resumable paging cursors. A cursor is base64url of a JSON object `{ v, k, p, h }`: format version `v`
 * (1), kind `k` (which query it pages), payload `p` (where to resume) and `h`, a checksum over kind and payload.
 * Decoding validates all of it and that the cursor belongs to the query it is passed to; anything else (bad
 * base64, bad JSON, unknown version, wrong kind or query, edited bytes) is an `InvalidCursorError`. The checksum
 * detects edits and corruption, not a forger: cursors carry only positions, never anything secret or authorising.
 */
export const CURSOR_FORMAT_VERSION = 1;
export const MAX_CURSOR_LENGTH = 2048;

const BASE64URL = /^[A-Za-z0-9_-]+$/;

const envelopeSchema = z.strictObject({
  v: z.number().int(),
  k: z.string().min(1).max(32),
  p: z.record(z.string(), z.unknown()),
  h: z.string().length(22),
});

function checksum(kind: string, payload: unknown): string {
  return createHash("sha256")
    .update(`amk-cursor:v${CURSOR_FORMAT_VERSION}:${kind}:${JSON.stringify(payload)}`)
    .digest("base64url")
    .slice(0, 22);
}

export function encodeCursor(kind: string, payload: Readonly<Record<string, unknown>>): string {
  const body = { v: CURSOR_FORMAT_VERSION, k: kind, p: payload, h: checksum(kind, payload) };
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

/** Decodes a cursor of the given kind and validates its payload with `schema`. */
export function decodeCursor<T>(token: unknown, kind: string, schema: z.ZodType<T>): T {
  if (typeof token !== "string" || token.length === 0)
    throw new InvalidCursorError("cursor must be a non-empty string");
  if (token.length > MAX_CURSOR_LENGTH || !BASE64URL.test(token)) {
    throw new InvalidCursorError("cursor is not one this store issued (bad encoding)");
  }
  let json: unknown;
  try {
    const text = Buffer.from(token, "base64url").toString("utf8");
    // Non-canonical base64url (extra trailing bits) decodes to the same bytes: refuse it so one cursor has one spelling.
    if (Buffer.from(text, "utf8").toString("base64url") !== token) throw new Error("non-canonical encoding");
    json = JSON.parse(text);
  } catch (cause) {
    throw new InvalidCursorError("cursor is not one this store issued (bad encoding)", { cause });
  }
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success) throw new InvalidCursorError("cursor is not one this store issued (bad structure)");
  const { v, k, p, h } = envelope.data;
  if (v !== CURSOR_FORMAT_VERSION) {
    throw new InvalidCursorError(
      `cursor format version ${v} is not supported (expected ${CURSOR_FORMAT_VERSION})`,
      {
        context: { version: v },
      },
    );
  }
  if (h !== checksum(k, p)) throw new InvalidCursorError("cursor was altered (checksum mismatch)");
  if (k !== kind) {
    throw new InvalidCursorError(`cursor pages another query (${k}), not ${kind}`, { context: { kind: k } });
  }
  const payload = schema.safeParse(p);
  if (!payload.success) throw new InvalidCursorError("cursor is not one this store issued (bad position)");
  return payload.data;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading a stream: resume at the next version.

const streamCursorSchema = z.strictObject({ s: z.string().min(1).max(256), n: z.number().int().min(1) });

export function encodeStreamCursor(streamId: string, nextVersion: number): string {
  return encodeCursor("stream", { s: streamId, n: nextVersion });
}

/** The version to resume reading at; the cursor must have been issued for `streamId`. */
export function decodeStreamCursor(token: unknown, streamId: string): number {
  const p = decodeCursor(token, "stream", streamCursorSchema);
  if (p.s !== streamId) {
    throw new InvalidCursorError("cursor was issued for another stream", { context: { streamId } });
  }
  return p.n;
}

// ---------------------------------------------------------------------------------------------------------------
// Census paging: documents of (workspace, KeyId), shard by shard, each shard in document id order.

export interface CensusPosition {
  /** Shard to continue in. */
  readonly shard: number;
  /** Last document id returned from that shard; resume after it. */
  readonly after: string | undefined;
}

const censusCursorSchema = z.strictObject({
  w: z.string().regex(WORKSPACE_ID_PATTERN),
  k: z.string().min(1).max(200),
  n: z.number().int().min(1).max(256),
  s: z.number().int().min(0),
  a: z.string().regex(DOCUMENT_ID_PATTERN).optional(),
});

export function encodeCensusCursor(
  workspaceId: string,
  keyId: string,
  shards: number,
  pos: CensusPosition,
): string {
  const payload: Record<string, unknown> = { w: workspaceId, k: keyId, n: shards, s: pos.shard };
  if (pos.after !== undefined) payload.a = pos.after;
  return encodeCursor("census", payload);
}

/** Where to resume; the cursor must have been issued for this workspace, key id and shard count. */
export function decodeCensusCursor(
  token: unknown,
  workspaceId: string,
  keyId: string,
  shards: number,
): CensusPosition {
  const p = decodeCursor(token, "census", censusCursorSchema);
  if (p.w !== workspaceId || p.k !== keyId) {
    throw new InvalidCursorError("cursor was issued for another workspace or key id", {
      context: { workspaceId, keyId },
    });
  }
  if (p.n !== shards || p.s >= shards) {
    throw new InvalidCursorError("cursor was issued for another census shard layout", {
      context: { shards },
    });
  }
  return { shard: p.s, after: p.a };
}
