import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { WORKSPACE_ID_PATTERN as KEYSTORE_WORKSPACE_ID_PATTERN } from "../../core/keystore/key-id.js";
import { InvalidStreamIdError } from "../../core/eventstore/errors.js";
import {
  WORKSPACE_ID_PATTERN,
  documentStreamId,
  isStreamId,
  parseStreamId,
  workspaceStreamId,
} from "../../core/eventstore/stream-id.js";
import { InvalidInputError } from "../../core/shared/errors.js";

const idChars = fc.constantFrom(..."abcXYZ0189_-".split(""));
const workspaceId = fc
  .tuple(fc.constantFrom(..."aZ09".split("")), fc.array(idChars, { maxLength: 63 }))
  .map(([h, t]) => h + t.join(""));
const documentId = fc
  .tuple(fc.constantFrom(..."aZ09".split("")), fc.array(idChars, { maxLength: 127 }))
  .map(([h, t]) => h + t.join(""));

describe("stream ids", () => {
  it("builds and parses workspace and document stream ids", () => {
    assert.equal(workspaceStreamId("acme"), "ws-acme");
    assert.equal(
      documentStreamId("acme", "3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
      "ws-acme/doc-3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    );
    assert.deepEqual(parseStreamId("ws-acme"), {
      kind: "workspace",
      streamId: "ws-acme",
      workspaceId: "acme",
    });
    assert.deepEqual(parseStreamId("ws-acme/doc-d1"), {
      kind: "document",
      streamId: "ws-acme/doc-d1",
      workspaceId: "acme",
      documentId: "d1",
    });
    fc.assert(
      fc.property(workspaceId, documentId, (w, d) => {
        assert.deepEqual(parseStreamId(workspaceStreamId(w)), {
          kind: "workspace",
          streamId: `ws-${w}`,
          workspaceId: w,
        });
        const parsed = parseStreamId(documentStreamId(w, d));
        assert.equal(parsed.kind, "document");
        assert.equal(parsed.workspaceId, w);
        assert.equal(parsed.kind === "document" ? parsed.documentId : undefined, d);
      }),
    );
  });

  it("refuses anything else with InvalidStreamIdError (an InvalidInputError)", () => {
    const bad: unknown[] = [
      "",
      "acme",
      "ws-",
      "ws-acme/",
      "ws-acme/doc-",
      "ws-acme/doc-a/doc-b",
      "ws-acme/dok-a",
      "ws-ac#me",
      "ws-ac me",
      "ws-_acme",
      "ws-acme/doc--a",
      "WS-acme",
      `ws-${"a".repeat(65)}`,
      `ws-a/doc-${"d".repeat(129)}`,
      "ws-acmé",
      " ws-acme",
      "ws-acme\n",
      null,
      7,
      {},
    ];
    for (const value of bad) {
      assert.throws(
        () => parseStreamId(value),
        (err: unknown) => err instanceof InvalidStreamIdError && err instanceof InvalidInputError,
        JSON.stringify(value),
      );
      assert.equal(isStreamId(value), false);
    }
    assert.throws(() => workspaceStreamId("a/b"), InvalidStreamIdError);
    assert.throws(() => documentStreamId("acme", "a#b"), InvalidStreamIdError);
    assert.throws(() => documentStreamId("acme", ""), InvalidStreamIdError);
    // Any string with a separator or a character outside the alphabet is refused.
    fc.assert(
      fc.property(fc.string(), (s) => {
        if (/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(s)) return;
        assert.throws(() => workspaceStreamId(s), InvalidStreamIdError);
      }),
    );
  });

  it("accepts the same workspace ids as the key store", () => {
    assert.equal(WORKSPACE_ID_PATTERN.source, KEYSTORE_WORKSPACE_ID_PATTERN.source);
  });
});
