/**
 * ArquivoMate's content encryption, format "2" (`Algorithm` AES-256-CBC-HMACSHA256): what the pipeline does with a
 * DEK. `0x02 || IV(16) || AES-256-CBC(encKey, PKCS#7) || HMAC-SHA256(macKey, IV || ciphertext)`, with
 * `encKey = HMAC-SHA256(DEK, "enc")` and `macKey = HMAC-SHA256(DEK, "mac")`. The key service uses it for canary
 * documents and the local story; the MAC is checked (in constant time) before anything is decrypted.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import { constantTimeEqual, zeroize } from "../shared/bytes.js";
import { AmkError } from "../shared/errors.js";

export class ContentIntegrityError extends AmkError {
  readonly code = "CONTENT_INTEGRITY";
}

const VERSION = 0x02;
const IV = 16;
const MAC = 32;

function subkeys(dek: Uint8Array): { enc: Buffer; mac: Buffer } {
  if (dek.length !== 32) throw new ContentIntegrityError("a content key must be 32 bytes");
  return {
    enc: createHmac("sha256", dek).update("enc").digest(),
    mac: createHmac("sha256", dek).update("mac").digest(),
  };
}

export function encryptContent(dek: Uint8Array, plaintext: Uint8Array, iv: Buffer = randomBytes(IV)): Buffer {
  const { enc, mac } = subkeys(dek);
  try {
    const c = createCipheriv("aes-256-cbc", enc, iv);
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    const tag = createHmac("sha256", mac).update(iv).update(ct).digest();
    return Buffer.concat([Buffer.from([VERSION]), iv, ct, tag]);
  } finally {
    zeroize(enc, mac);
  }
}

export function decryptContent(dek: Uint8Array, blob: Uint8Array): Buffer {
  const b = Buffer.from(blob);
  if (b.length < 1 + IV + 16 + MAC || b[0] !== VERSION) {
    throw new ContentIntegrityError("not ArquivoMate content format 2 (version byte or length)");
  }
  const { enc, mac } = subkeys(dek);
  try {
    const iv = b.subarray(1, 1 + IV);
    const ct = b.subarray(1 + IV, b.length - MAC);
    const expected = createHmac("sha256", mac).update(iv).update(ct).digest();
    if (!constantTimeEqual(expected, b.subarray(b.length - MAC))) {
      throw new ContentIntegrityError("content MAC mismatch: wrong key or tampered content");
    }
    const d = createDecipheriv("aes-256-cbc", enc, iv);
    return Buffer.concat([d.update(ct), d.final()]);
  } finally {
    zeroize(enc, mac);
  }
}
