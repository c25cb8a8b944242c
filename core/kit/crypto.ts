/**
 * The kit's cryptography in software (docs/kit-format.md sections 4 and 5): administrator identities sealed under
 * passphrase and factor, X25519 slots, the body. Every buffer holding a secret that this module creates is zeroized
 * before it returns, except the results it hands to the caller (who owns and zeroizes them).
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from "node:crypto";
import argon2 from "argon2";
import { zeroize } from "../shared/bytes.js";
import { KitIntegrityError, KitWrongFactorError, KitWrongPassphraseError } from "./errors.js";
import type { FactorDescriptor, KdfParams, SealedIdentity } from "./format.js";

export const KIT_SECRET_LENGTH = 64;
const INFO_PASSPHRASE = "amk-kit/v1 passphrase";
const INFO_FACTOR = "amk-kit/v1 factor";

export const DEFAULT_KDF: KdfParams = {
  algorithm: "argon2id",
  version: 19,
  memoryKiB: 65_536,
  iterations: 3,
  parallelism: 1,
};

// ---- primitives -----------------------------------------------------------------------------------------------

export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from(info, "utf8"), 32));
}

export function gcmSeal(key: Uint8Array, nonce: Uint8Array, plain: Uint8Array, aad: Uint8Array): Buffer {
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

/** Returns undefined when the tag does not verify. */
export function gcmOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array,
): Buffer | undefined {
  if (sealed.length < 16) return undefined;
  const d = createDecipheriv("aes-256-gcm", key, nonce);
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  const out = d.update(sealed.subarray(0, sealed.length - 16));
  try {
    return Buffer.concat([out, d.final()]);
  } catch {
    zeroize(out);
    return undefined;
  } finally {
    zeroize(out);
  }
}

const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

function x25519Private(raw: Uint8Array): KeyObject {
  const der = Buffer.concat([PKCS8_X25519_PREFIX, Buffer.from(raw)]);
  try {
    return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  } finally {
    zeroize(der);
  }
}

function x25519PublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: "OKP", crv: "X25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  });
}

/** The 32-byte public key of a raw X25519 private key. */
export function x25519PublicOf(raw: Uint8Array): Buffer {
  const jwk = createPublicKey(x25519Private(raw)).export({ format: "jwk" }) as { x: string };
  return Buffer.from(jwk.x, "base64url");
}

export function x25519Generate(): { privateKey: Buffer; publicKey: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const d = privateKey.export({ format: "jwk" }) as { d: string };
  const x = publicKey.export({ format: "jwk" }) as { x: string };
  return { privateKey: Buffer.from(d.d, "base64url"), publicKey: Buffer.from(x.x, "base64url") };
}

function x25519(priv: Uint8Array, pub: Uint8Array): Buffer {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: x25519Private(priv), publicKey: x25519PublicKey(pub) });
  } catch (cause) {
    // OpenSSL refuses low-order points (the all-zero shared secret) itself.
    throw new KitIntegrityError("X25519 with the slot's ephemeral key fails (a low-order point)", "slot", {
      cause,
    });
  }
  if (shared.every((b) => b === 0))
    throw new KitIntegrityError("X25519 produced the all-zero secret", "slot");
  return shared;
}

export async function passphraseKey(passphrase: string, salt: Uint8Array, kdf: KdfParams): Promise<Buffer> {
  const p = await argon2.hash(passphrase.normalize("NFC"), {
    type: argon2.argon2id,
    version: 0x13,
    memoryCost: kdf.memoryKiB,
    timeCost: kdf.iterations,
    parallelism: kdf.parallelism,
    salt: Buffer.from(salt),
    hashLength: 32,
    raw: true,
  });
  try {
    return hkdf(p, Buffer.alloc(0), INFO_PASSPHRASE);
  } finally {
    zeroize(p);
  }
}

const aadFor = (layer: "inner" | "outer", adminId: string) =>
  Buffer.from(`amk-kit/v1 identity ${layer}\n${adminId}`, "utf8");

// ---- identities -----------------------------------------------------------------------------------------------

export interface NewIdentity {
  readonly recipient: Buffer;
  readonly identity: SealedIdentity;
}

/**
 * Creates an administrator identity: a fresh X25519 key pair whose private key is sealed under the passphrase
 * (inner) and the factor material (outer). Only the public key and the sealed block leave; `factorMaterial` is the
 * caller's to zeroize.
 */
export async function sealNewIdentity(input: {
  adminId: string;
  passphrase: string;
  factor: FactorDescriptor;
  factorMaterial: Uint8Array;
  kdf?: KdfParams;
}): Promise<NewIdentity> {
  const kdf = input.kdf ?? DEFAULT_KDF;
  const { privateKey, publicKey } = x25519Generate();
  const salt = randomBytes(16);
  const factorSalt = randomBytes(16);
  const innerNonce = randomBytes(12);
  const outerNonce = randomBytes(12);
  const kPass = await passphraseKey(input.passphrase, salt, kdf);
  const kFactor = hkdf(input.factorMaterial, factorSalt, INFO_FACTOR);
  try {
    const inner = gcmSeal(kPass, innerNonce, privateKey, aadFor("inner", input.adminId));
    const ciphertext = gcmSeal(kFactor, outerNonce, inner, aadFor("outer", input.adminId));
    return {
      recipient: publicKey,
      identity: {
        kdf,
        salt: salt.toString("base64"),
        factor: input.factor,
        factorSalt: factorSalt.toString("base64"),
        innerNonce: innerNonce.toString("base64"),
        outerNonce: outerNonce.toString("base64"),
        ciphertext: ciphertext.toString("base64"),
      },
    };
  } finally {
    zeroize(privateKey, kPass, kFactor);
  }
}

/** Opens an identity: factor first (wrong factor), then passphrase (wrong passphrase); returns the private key. */
export async function openIdentity(input: {
  adminId: string;
  recipient: Uint8Array;
  identity: SealedIdentity;
  passphrase: string;
  factorMaterial: Uint8Array;
}): Promise<Buffer> {
  const id = input.identity;
  const kFactor = hkdf(input.factorMaterial, Buffer.from(id.factorSalt, "base64"), INFO_FACTOR);
  const inner = gcmOpen(
    kFactor,
    Buffer.from(id.outerNonce, "base64"),
    Buffer.from(id.ciphertext, "base64"),
    aadFor("outer", input.adminId),
  );
  zeroize(kFactor);
  if (!inner) {
    throw new KitWrongFactorError(`the second factor does not open ${input.adminId}'s slot`, "factor", {
      context: { adminId: input.adminId },
    });
  }
  const kPass = await passphraseKey(input.passphrase, Buffer.from(id.salt, "base64"), id.kdf);
  const sk = gcmOpen(kPass, Buffer.from(id.innerNonce, "base64"), inner, aadFor("inner", input.adminId));
  zeroize(kPass, inner);
  if (!sk || sk.length !== 32) {
    throw new KitWrongPassphraseError(`the passphrase does not open ${input.adminId}'s slot`, "passphrase", {
      context: { adminId: input.adminId },
    });
  }
  if (!x25519PublicOf(sk).equals(Buffer.from(input.recipient))) {
    zeroize(sk);
    throw new KitIntegrityError(`${input.adminId}'s identity does not match the slot's recipient`, "slot", {
      context: { adminId: input.adminId },
    });
  }
  return sk;
}

// ---- slots ----------------------------------------------------------------------------------------------------

const slotInfo = (kitId: string, slotId: string) => `amk-kit/v1 slot\n${kitId}\n${slotId}`;

export function sealSlot(
  recipient: Uint8Array,
  kitSecret: Uint8Array,
  kitId: string,
  slotId: string,
): { ephemeral: Buffer; nonce: Buffer; wrappedKitSecret: Buffer } {
  const e = x25519Generate();
  const shared = x25519(e.privateKey, recipient);
  const key = hkdf(shared, Buffer.concat([e.publicKey, Buffer.from(recipient)]), slotInfo(kitId, slotId));
  const nonce = randomBytes(12);
  try {
    return {
      ephemeral: e.publicKey,
      nonce,
      wrappedKitSecret: gcmSeal(key, nonce, kitSecret, Buffer.alloc(0)),
    };
  } finally {
    zeroize(e.privateKey, shared, key);
  }
}

export function openSlot(
  sk: Uint8Array,
  slot: { recipient: string; ephemeral: string; nonce: string; wrappedKitSecret: string; slotId: string },
  kitId: string,
): Buffer {
  const ephemeral = Buffer.from(slot.ephemeral, "base64");
  const shared = x25519(sk, ephemeral);
  const key = hkdf(
    shared,
    Buffer.concat([ephemeral, Buffer.from(slot.recipient, "base64")]),
    slotInfo(kitId, slot.slotId),
  );
  const secret = gcmOpen(
    key,
    Buffer.from(slot.nonce, "base64"),
    Buffer.from(slot.wrappedKitSecret, "base64"),
    Buffer.alloc(0),
  );
  zeroize(shared, key);
  if (!secret || secret.length !== KIT_SECRET_LENGTH) {
    throw new KitIntegrityError(`slot ${slot.slotId} does not open: the kit was changed`, "slot", {
      context: { slotId: slot.slotId },
    });
  }
  return secret;
}
