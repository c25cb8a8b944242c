import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkPassphrase } from "../../core/factors/passphrase-policy.js";
import { WeakPassphraseError } from "../../core/kit/errors.js";

describe("passphrase policy", () => {
  it("accepts long passphrases of unrelated words, in any script", () => {
    for (const p of [
      "orbit velvet canyon pickle",
      "Mango-Tundra-Lantern-42",
      "água viva ônibus lâmpada",
      "correct horse battery staple extra words",
    ]) {
      assert.doesNotThrow(() => checkPassphrase(p, { workspaceId: "acme", adminId: "alice" }), p);
    }
  });
  it("refuses weak ones with a message that says why and never echoes the passphrase", () => {
    const cases: [string, RegExp][] = [
      ["short one", /at least 15/],
      ["aaaaaaaaaaaaaaaaaaaa", /different/],
      ["abababababababababab", /different/],
      ["qwertyuiop12345678", /keyboard|well-known/],
      ["Password123456789!!", /well-known|keyboard/],
      ["abcdefghijklmnopqrs", /keyboard|alphabet/],
      ["my acme vault phrase xyz", /workspace id/],
      ["alice's long passphrase", /administrator id/],
    ];
    for (const [p, why] of cases) {
      assert.throws(
        () => checkPassphrase(p, { workspaceId: "acme", adminId: "alice" }),
        (e: unknown) => e instanceof WeakPassphraseError && why.test(e.message) && !e.message.includes(p),
        p,
      );
    }
  });
});
