import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { constantTimeEqual, usingSecret, zeroize } from "../../core/shared/bytes.js";

describe("secret bytes helpers", () => {
  it("zeroizes every buffer given, skipping absent ones", () => {
    const a = Buffer.from([1, 2, 3]);
    const b = new Uint8Array([9, 9]);
    zeroize(a, undefined, b, null);
    assert.deepEqual([...a, ...b], [0, 0, 0, 0, 0]);
  });
  it("compares equal contents as equal, anything else as unequal", () => {
    assert.equal(constantTimeEqual(Buffer.from("abc"), Buffer.from("abc")), true);
    assert.equal(constantTimeEqual(Buffer.from("abc"), Buffer.from("abd")), false);
    assert.equal(constantTimeEqual(Buffer.from("abc"), Buffer.from("abcd")), false);
    assert.equal(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)), true);
  });
  it("zeroizes the secret after use, also when the use throws", async () => {
    const s = Buffer.from([5, 5]);
    assert.equal(await usingSecret(s, (x) => x[0]), 5);
    assert.deepEqual([...s], [0, 0]);
    const t = Buffer.from([7]);
    await assert.rejects(
      usingSecret(t, () => Promise.reject(new Error("no"))),
      /no/,
    );
    assert.deepEqual([...t], [0]);
  });
});
