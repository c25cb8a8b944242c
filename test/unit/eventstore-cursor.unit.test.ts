import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { z } from "zod";
import {
  CURSOR_FORMAT_VERSION,
  decodeCensusCursor,
  decodeCursor,
  decodeStreamCursor,
  encodeCensusCursor,
  encodeCursor,
  encodeStreamCursor,
} from "../../core/eventstore/cursor.js";
import { InvalidCursorError } from "../../core/eventstore/errors.js";
import { InvalidInputError } from "../../core/shared/errors.js";

const ws = "acme";
const kid = "ws-acme/mk/3";

function rawCursor(body: unknown): string {
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

describe("cursors", () => {
  it("round-trip stream and census positions", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9_999_999_999 }), (n) => {
        assert.equal(decodeStreamCursor(encodeStreamCursor("ws-acme/doc-1", n), "ws-acme/doc-1"), n);
      }),
    );
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 256 })
          .chain((shards) =>
            fc.tuple(
              fc.constant(shards),
              fc.integer({ min: 0, max: shards - 1 }),
              fc.option(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$/), { nil: undefined }),
            ),
          ),
        ([shards, shard, after]) => {
          const token = encodeCensusCursor(ws, kid, shards, { shard, after });
          assert.match(token, /^[A-Za-z0-9_-]+$/, "base64url");
          assert.deepEqual(decodeCensusCursor(token, ws, kid, shards), { shard, after });
        },
      ),
    );
  });

  it("is base64url of versioned JSON", () => {
    const token = encodeStreamCursor("ws-acme", 7);
    const body = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Record<string, unknown>;
    assert.equal(body.v, CURSOR_FORMAT_VERSION);
    assert.equal(body.k, "stream");
    assert.deepEqual(body.p, { s: "ws-acme", n: 7 });
    assert.equal(typeof body.h, "string");
  });

  it("refuses any single-character edit (typed error, never a wrong position)", () => {
    const token = encodeCensusCursor(ws, kid, 16, { shard: 5, after: "doc-0042" });
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: token.length - 1 }),
        fc.integer({ min: 1, max: 63 }),
        (pos, shift) => {
          const original = token[pos] as string;
          const replacement = alphabet[(alphabet.indexOf(original) + shift) % 64] as string;
          const edited = token.slice(0, pos) + replacement + token.slice(pos + 1);
          assert.throws(() => decodeCensusCursor(edited, ws, kid, 16), InvalidCursorError);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses malformed, foreign and future cursors with InvalidCursorError (an InvalidInputError)", () => {
    const good = encodeStreamCursor("ws-acme", 3);
    const goodBody = JSON.parse(Buffer.from(good, "base64url").toString("utf8")) as Record<string, unknown>;
    const bad: unknown[] = [
      undefined,
      42,
      "",
      "***",
      `${good}=`,
      `${good}A`,
      good.slice(0, -1),
      "x".repeat(5000),
      rawCursor("a string"),
      rawCursor([1, 2]),
      rawCursor({ ...goodBody, v: 2 }),
      rawCursor({ ...goodBody, extra: 1 }),
      rawCursor({ ...goodBody, p: { s: "ws-acme", n: 4 } }), // position edited, checksum kept
      rawCursor({ ...goodBody, h: "A".repeat(22) }),
      Buffer.from("{not json").toString("base64url"),
    ];
    for (const token of bad) {
      assert.throws(
        () => decodeStreamCursor(token, "ws-acme"),
        (err: unknown) =>
          err instanceof InvalidCursorError &&
          err instanceof InvalidInputError &&
          err.code === "INVALID_INPUT",
        String(token).slice(0, 40),
      );
    }
    // Right format, wrong query.
    assert.throws(() => decodeStreamCursor(good, "ws-other"), InvalidCursorError);
    const census = encodeCensusCursor(ws, kid, 16, { shard: 2, after: undefined });
    assert.throws(() => decodeStreamCursor(census, "ws-acme"), /another query/);
    assert.throws(() => decodeCensusCursor(good, ws, kid, 16), InvalidCursorError);
    assert.throws(() => decodeCensusCursor(census, "other", kid, 16), InvalidCursorError);
    assert.throws(() => decodeCensusCursor(census, ws, "ws-acme/mk/4", 16), InvalidCursorError);
    assert.throws(() => decodeCensusCursor(census, ws, kid, 8), /shard layout/);
    // A checksum-valid payload that fails the schema (crafted outside the encoder).
    assert.throws(
      () =>
        decodeCursor(
          encodeCursor("stream", { s: "ws-acme", n: 0 }),
          "stream",
          z.strictObject({ s: z.string(), n: z.number().min(1) }),
        ),
      InvalidCursorError,
    );
    assert.throws(
      () => decodeCensusCursor(encodeCursor("census", { w: ws, k: kid, n: 16, s: 99 }), ws, kid, 16),
      InvalidCursorError,
    );
  });
});
