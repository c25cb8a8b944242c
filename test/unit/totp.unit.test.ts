/** Our TOTP against the RFC 6238 test vectors and Debian's oathtool (an independent implementation). */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { totpCode, verifyTotp, type TotpParams } from "../../core/factors/totp.js";
import { InvalidInputError } from "../../core/shared/errors.js";

const run = promisify(execFile);

function base32(bytes: Buffer): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

const SHA1_8: TotpParams = { algorithm: "SHA1", digits: 8, period: 30 };
const SHA256_8: TotpParams = { algorithm: "SHA256", digits: 8, period: 30 };
const seed1 = base32(Buffer.from("12345678901234567890"));
const seed256 = base32(Buffer.from("12345678901234567890123456789012"));

describe("TOTP (RFC 6238)", () => {
  it("matches the RFC's test vectors", async () => {
    for (const [t, sha1, sha256] of [
      [59, "94287082", "46119246"],
      [1111111109, "07081804", "68084774"],
      [1111111111, "14050471", "67062674"],
      [1234567890, "89005924", "91819424"],
      [2000000000, "69279037", "90698825"],
    ] as const) {
      assert.equal(await totpCode(seed1, SHA1_8, t), sha1, `SHA1 t=${t}`);
      assert.equal(await totpCode(seed256, SHA256_8, t), sha256, `SHA256 t=${t}`);
    }
  });

  it("accepts one step of drift either way and reports the step the code belongs to", async () => {
    const t = 1_800_000_000;
    const step = Math.floor(t / 30);
    for (const d of [-1, 0, 1]) {
      const code = await totpCode(seed1, SHA1_8, t + d * 30);
      assert.deepEqual(await verifyTotp(seed1, code, SHA1_8, t), { valid: true, timeStep: step + d });
    }
    for (const d of [-2, 2]) {
      assert.deepEqual(await verifyTotp(seed1, await totpCode(seed1, SHA1_8, t + d * 30), SHA1_8, t), {
        valid: false,
      });
    }
    await assert.rejects(verifyTotp(seed1, "12ab", SHA1_8, t), InvalidInputError);
  });

  it("verifies codes made by oathtool, for SHA-1/6 and SHA-256/8", async () => {
    const t = 1_900_000_000;
    const now = new Date(t * 1000)
      .toISOString()
      .replace("T", " ")
      .replace(/\.\d+Z$/, " UTC");
    for (const [params, seed, mode] of [
      [{ algorithm: "SHA1", digits: 6, period: 30 } as TotpParams, seed1, "SHA1"],
      [SHA256_8, seed256, "SHA256"],
    ] as const) {
      const { stdout } = await run("oathtool", [
        `--totp=${mode}`,
        "--base32",
        `--digits=${params.digits}`,
        `--now=${now}`,
        seed,
      ]);
      const r = await verifyTotp(seed, stdout.trim(), params, t);
      assert.deepEqual(r, { valid: true, timeStep: Math.floor(t / 30) }, mode);
    }
  });
});
