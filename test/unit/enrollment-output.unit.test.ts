import assert from "node:assert/strict";
import { describe, it } from "node:test";
import QRCode from "qrcode";
import { renderKitIssued, renderTotpEnrollment } from "../../cli/output/enrollment.js";
import { DEFAULT_TOTP, newTotpSeed, totpUri } from "../../core/factors/totp.js";

describe("enrollment output", () => {
  it("shows the otpauth URI and a terminal QR code that encodes exactly it", async () => {
    const seed = newTotpSeed(DEFAULT_TOTP);
    const uri = totpUri({ issuer: "ArquivoMate Keys", account: "acme:alice", seed, params: DEFAULT_TOTP });
    assert.match(uri, new RegExp(`^otpauth://totp/ArquivoMate%20Keys:acme:alice\\?secret=${seed}&`));
    const text = await renderTotpEnrollment(uri);
    assert.ok(text.includes(uri));
    // The QR block is the one qrcode makes for this URI (block characters, several lines).
    const qr = (
      await QRCode.toString(uri, { type: "terminal", small: true, errorCorrectionLevel: "M" })
    ).trimEnd();
    assert.ok(text.includes(qr));
    assert.ok(qr.split("\n").length > 10);
  });
  it("prints the kit fingerprint", () => {
    assert.match(
      renderKitIssued({ kitVersion: 1, fingerprint: "9F3A-0C11-7B2E-D4A8-5561-E0F9" }, "acme"),
      /Fingerprint: 9F3A-0C11-7B2E-D4A8-5561-E0F9/,
    );
  });
});
