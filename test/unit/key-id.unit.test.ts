import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeKeyId, masterKeyId, parseKeyId, workspaceKeyPrefix } from "../../core/keystore/key-id.js";
import { InvalidInputError } from "../../core/shared/errors.js";

describe("KeyId", () => {
  it("formats and parses ws-<workspace>/mk/<version>", () => {
    const id = masterKeyId("acme-01", 3);
    assert.equal(id, "ws-acme-01/mk/3");
    assert.equal(parseKeyId("ws-acme-01/mk/3"), id);
    assert.deepEqual(describeKeyId(id), { workspaceId: "acme-01", version: 3 });
    assert.equal(workspaceKeyPrefix("acme-01"), "ws-acme-01/mk/");
  });

  it("rejects bad workspaces, versions and shapes with InvalidInputError", () => {
    for (const [ws, v] of [
      ["", 1],
      ["-lead", 1],
      ["has space", 1],
      ["a/b", 1],
      ["x".repeat(65), 1],
      ["ok", 0],
      ["ok", 1.5],
      ["ok", -1],
    ] as const) {
      assert.throws(() => masterKeyId(ws, v), InvalidInputError, `${ws} ${v}`);
    }
    for (const s of [
      "ws-a/mk/0",
      "ws-a/mk/01",
      "ws-a/mk/",
      "ws-/mk/1",
      "ws-a/dk/1",
      "ws-a/mk/1 ",
      "xws-a/mk/1",
    ]) {
      assert.throws(() => parseKeyId(s), InvalidInputError, s);
    }
  });

  it("does not let one workspace's prefix match another's keys", () => {
    // ws-a/mk/ must not be a prefix of ws-ab/mk/1.
    assert.equal(masterKeyId("ab", 1).startsWith(workspaceKeyPrefix("a")), false);
  });
});
