/**
 * The hardware-token factor: HMAC-SHA1 challenge-response, as the YubiKey OTP applet's challenge-response slot
 * computes it. The kit stores a 32-byte challenge; the token's 20-byte response is the factor material.
 */
import { createHmac, randomBytes } from "node:crypto";

/** Asks the token to answer a challenge (a YubiKey through its driver, or the software stand-in). */
export type HmacTokenResponder = (challenge: Uint8Array) => Promise<Uint8Array>;

export function newChallenge(): Buffer {
  return randomBytes(32);
}

/** A software stand-in computing what the token computes: HMAC-SHA1(secret, challenge). For tests and drills. */
export function softwareHmacToken(secret: Uint8Array): HmacTokenResponder {
  const key = Buffer.from(secret);
  return async (challenge) => createHmac("sha1", key).update(challenge).digest();
}
