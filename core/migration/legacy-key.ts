/**
 * The legacy master key in software, for the few things the migration does with it before (and instead of) the HSM:
 * read it from its file, compute its KCV, unwrap ArquivoMate's wrapped DEKs (AES-256-GCM, AAD `"DEK:" + artifact`,
 * docs/wrap-formats.md `ARQ-GCM-LEGACY`) to prove the key before anything is written, and wrap it under a transport
 * key (RFC 5649) for the import into the HSM. Every buffer made here that holds key material is the caller's to
 * zeroize, and is documented as such.
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import type { Artifact } from "../datakeys/wrap-format.js";
import { zeroize } from "../shared/bytes.js";
import { InvalidLegacyKeyError } from "./errors.js";

export const LEGACY_KEY_LENGTH = 32;
const RFC5649_IV = Buffer.from("A65959A6", "hex");

function assertKey(key: Uint8Array, what = "the legacy master key"): void {
  if (!(key instanceof Uint8Array) || key.length !== LEGACY_KEY_LENGTH) {
    throw new InvalidLegacyKeyError(`${what} must be ${LEGACY_KEY_LENGTH} bytes (AES-256)`, {
      context: { length: key instanceof Uint8Array ? key.length : undefined },
    });
  }
}

/** KCV as the HSM computes it: first 3 bytes of AES-ECB(key, 0^16), upper-case hex. */
export function keyCheckValue(key: Uint8Array): string {
  assertKey(key);
  const c = createCipheriv("aes-256-ecb", key, null).setAutoPadding(false);
  const block = Buffer.concat([c.update(Buffer.alloc(16)), c.final()]);
  return block.subarray(0, 3).toString("hex").toUpperCase();
}

/**
 * Unwraps one legacy wrapped DEK. Returns the 32-byte DEK (the caller zeroizes it), or undefined when the GCM tag
 * does not verify (wrong key, wrong artifact or damaged record).
 */
export function unwrapLegacyDek(
  key: Uint8Array,
  artifact: Artifact,
  wrapped: { wrappedDek: string; wrapNonce: string },
): Buffer | undefined {
  const blob = Buffer.from(wrapped.wrappedDek, "base64");
  const nonce = Buffer.from(wrapped.wrapNonce, "base64");
  if (blob.length !== 48 || nonce.length !== 12) return undefined;
  const d = createDecipheriv("aes-256-gcm", key, nonce);
  d.setAAD(Buffer.from(`DEK:${artifact}`, "utf8"));
  d.setAuthTag(blob.subarray(32));
  const out = d.update(blob.subarray(0, 32));
  try {
    d.final();
    return out;
  } catch {
    zeroize(out);
    return undefined;
  }
}

/** The key wrapped under `transportKey` with AES key wrap with padding (RFC 5649), as the HSM's import expects. */
export function wrapForTransport(transportKey: Uint8Array, key: Uint8Array): Buffer {
  assertKey(key);
  assertKey(transportKey, "the transport key");
  const c = createCipheriv("id-aes256-wrap-pad", transportKey, RFC5649_IV);
  return Buffer.concat([c.update(key), c.final()]);
}

/**
 * Reads the legacy key from the bytes of its file: 32 raw bytes, or text holding ArquivoMate's
 * `Encryption:MasterKeyBase64` value (base64 of 32 bytes) or 64 hex digits, surrounded by optional whitespace.
 * Returns a new buffer (the caller zeroizes it, and the file's bytes). Decoded byte by byte: no string copy of the key.
 */
export function parseLegacyKeyFile(bytes: Uint8Array): Buffer {
  if (bytes.length === LEGACY_KEY_LENGTH) return Buffer.from(bytes);
  let start = 0;
  let end = bytes.length;
  const isSpace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
  if (end >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3; // UTF-8 BOM
  while (start < end && isSpace(bytes[start]!)) start++;
  while (end > start && isSpace(bytes[end - 1]!)) end--;
  const text = bytes.subarray(start, end);
  const decoded = text.length === 64 ? decodeHex(text) : decodeBase64(text);
  if (!decoded || decoded.length !== LEGACY_KEY_LENGTH) {
    zeroize(decoded);
    throw new InvalidLegacyKeyError(
      "the master key file must hold ArquivoMate's Encryption:MasterKeyBase64 value (base64 of 32 bytes), 64 hex digits or 32 raw bytes",
      { context: { fileBytes: bytes.length } },
    );
  }
  return decoded;
}

function decodeHex(text: Uint8Array): Buffer | undefined {
  const out = Buffer.alloc(text.length / 2);
  const nibble = (c: number): number =>
    c >= 0x30 && c <= 0x39
      ? c - 0x30
      : c >= 0x61 && c <= 0x66
        ? c - 0x57
        : c >= 0x41 && c <= 0x46
          ? c - 0x37
          : -1;
  for (let i = 0; i < out.length; i++) {
    const hi = nibble(text[2 * i]!);
    const lo = nibble(text[2 * i + 1]!);
    if (hi < 0 || lo < 0) {
      zeroize(out);
      return undefined;
    }
    out[i] = (hi << 4) | lo;
  }
  return out;
}

/** Strict base64 (standard alphabet, padding required) decoded without making a string. */
function decodeBase64(text: Uint8Array): Buffer | undefined {
  if (text.length === 0 || text.length % 4 !== 0) return undefined;
  const value = (c: number): number =>
    c >= 0x41 && c <= 0x5a
      ? c - 0x41
      : c >= 0x61 && c <= 0x7a
        ? c - 0x47
        : c >= 0x30 && c <= 0x39
          ? c + 4
          : c === 0x2b
            ? 62
            : c === 0x2f
              ? 63
              : -1;
  const pad = text[text.length - 1] === 0x3d ? (text[text.length - 2] === 0x3d ? 2 : 1) : 0;
  const out = Buffer.alloc((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const last = i + 4 === text.length;
    const v: number[] = [];
    for (let j = 0; j < 4; j++) {
      const c = text[i + j]!;
      if (c === 0x3d && last && j >= 4 - pad) v.push(0);
      else {
        const x = value(c);
        if (x < 0) {
          zeroize(out);
          return undefined;
        }
        v.push(x);
      }
    }
    const n = (v[0]! << 18) | (v[1]! << 12) | (v[2]! << 6) | v[3]!;
    if (o < out.length) out[o++] = (n >> 16) & 0xff;
    if (o < out.length) out[o++] = (n >> 8) & 0xff;
    if (o < out.length) out[o++] = n & 0xff;
    v.fill(0);
  }
  return out;
}
