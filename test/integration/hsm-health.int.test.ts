/** The hsm-health Lambda handler against a real SoftHSM2 token, configured through its environment. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

describe("hsm-health handler", () => {
  let hsm: TestHsm;
  before(async () => {
    hsm = await createTestHsm(["health"]);
  });
  after(async () => {
    await hsm?.cleanup();
  });

  it("reports a typed, secret-free error for a bad token label, then recovers once the config is right", async () => {
    const { handler } = await import("../../functions/hsm-health/handler.js");
    const t = hsm.tokens[0]!;
    process.env.AMK_PKCS11_LIBRARY = t.libraryPath;
    process.env.AMK_PKCS11_PIN_FILE = t.pinFile;
    process.env.AMK_PKCS11_TOKEN_LABEL = "wrong-label";
    const bad = await handler();
    assert.equal(bad.ok, false);
    assert.equal(!bad.ok && bad.error.code, "KEY_STORE_CONFIG");

    process.env.AMK_PKCS11_TOKEN_LABEL = t.label;
    const good = await handler();
    assert.ok(good.ok, JSON.stringify(good));
    assert.equal(good.tokenLabel, "health");
    assert.equal(good.manufacturer, "SoftHSM project");
    assert.ok(good.sessionsOpen >= 1);
  });
});
