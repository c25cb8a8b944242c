/**
 * Manifest signatures: Ed25519 (node:crypto). The private key lives in the secret vault (`amk/backup/signing-key`,
 * PKCS#8 DER, created on the first export); verifiers hold only pinned public keys, so verifying a backup needs no
 * secret and cannot forge one. See docs/backup-format.md, "Authentication".
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as edSign,
  verify as edVerify,
  type KeyObject,
} from "node:crypto";
import { SecretNotFoundError, VaultConflictError } from "../vault/errors.js";
import { validateSecretName, type SecretVault } from "../vault/secret-vault.js";
import { InvalidBackupRequestError } from "./errors.js";

/** The vault secret that holds the backup signing key (one per deployment; older versions stay for reference). */
export const BACKUP_SIGNING_KEY_SECRET = "amk/backup/signing-key";
/** Client token of the first version: two exports racing to create the key end up with one of them. */
const FIRST_VERSION_TOKEN = "amk-backup-signing-key-v1";

/** A public key that verifies manifests. */
export interface BackupPublicKey {
  /** First 16 bytes of SHA-256 over the raw 32-byte public key, lower-case hex: what a manifest names. */
  readonly keyId: string;
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
}

/** Signs manifests. Holds the private key as a non-exportable KeyObject; never reveals it. */
export interface BackupSigner extends BackupPublicKey {
  sign(message: Uint8Array): Promise<Uint8Array>;
}

export function backupKeyId(publicKey: Uint8Array): string {
  return createHash("sha256").update(publicKey).digest("hex").slice(0, 32);
}

/**
 * A pinned public key from its raw 32 bytes or their base64 / base64url text (what `amk` prints and what
 * AMK_BACKUP_PUBLIC_KEYS holds).
 */
export function backupPublicKey(key: Uint8Array | string): BackupPublicKey {
  const raw =
    typeof key === "string"
      ? Buffer.from(key.trim(), /[-_]/.test(key) ? "base64url" : "base64")
      : Buffer.from(key);
  if (raw.length !== 32) {
    throw new InvalidBackupRequestError("a backup public key is 32 bytes (Ed25519), as base64", {
      context: { length: raw.length },
    });
  }
  return { keyId: backupKeyId(raw), publicKey: raw };
}

/** Comma- or whitespace-separated base64 public keys (an environment variable); empty text gives none. */
export function parseBackupPublicKeys(text: string | undefined): BackupPublicKey[] {
  return (text ?? "")
    .split(/[\s,]+/)
    .filter((s) => s.length > 0)
    .map((s) => backupPublicKey(s));
}

/** A signer from a PKCS#8 DER Ed25519 private key. The caller may zeroize `pkcs8` afterwards. */
export function backupSignerFromPkcs8(pkcs8: Uint8Array): BackupSigner {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
  } catch (cause) {
    throw new InvalidBackupRequestError("the backup signing key is not a PKCS#8 Ed25519 private key", {
      cause,
    });
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new InvalidBackupRequestError("the backup signing key must be an Ed25519 key", {
      context: { type: key.asymmetricKeyType },
    });
  }
  const jwk = createPublicKey(key).export({ format: "jwk" });
  const publicKey = Buffer.from(String(jwk.x), "base64url");
  return {
    keyId: backupKeyId(publicKey),
    publicKey,
    sign: async (message) => edSign(null, Buffer.from(message), key),
  };
}

/** A fresh signing key as PKCS#8 DER (for the vault, or for tests). */
export function generateBackupSigningKey(): Buffer {
  const { privateKey } = generateKeyPairSync("ed25519");
  return privateKey.export({ format: "der", type: "pkcs8" });
}

/** Whether `signature` over `message` verifies with the raw Ed25519 `publicKey`. */
export function verifyBackupSignature(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    const key = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(publicKey).toString("base64url") },
      format: "jwk",
    });
    return edVerify(null, Buffer.from(message), key, Buffer.from(signature));
  } catch {
    return false;
  }
}

/**
 * The signer whose private key is the current version of `secretName` in the vault. With `create` (the exporter),
 * a missing secret is created with a fresh key (idempotently: two first exports racing keep one key).
 */
export async function backupSignerFromVault(
  vault: SecretVault,
  options: { secretName?: string; create?: boolean } = {},
): Promise<BackupSigner> {
  const name = validateSecretName(options.secretName ?? BACKUP_SIGNING_KEY_SECRET);
  for (let attempt = 0; ; attempt++) {
    try {
      const secret = await vault.getSecret(name);
      try {
        return backupSignerFromPkcs8(secret.value);
      } finally {
        secret.value.fill(0);
      }
    } catch (err) {
      if (!(err instanceof SecretNotFoundError) || !options.create || attempt > 0) throw err;
    }
    const pkcs8 = generateBackupSigningKey();
    try {
      await vault.putSecret(name, pkcs8, {
        clientToken: FIRST_VERSION_TOKEN,
        description: "Ed25519 key that signs event-store backup manifests (ArquivoMate Keys)",
      });
    } catch (err) {
      if (!(err instanceof VaultConflictError)) throw err; // another exporter created it first: read theirs
    } finally {
      pkcs8.fill(0);
    }
  }
}

/**
 * The public keys of every version of the signing key in the vault (newest first): for verifiers that may read the
 * vault. Others pin the public keys (`backupPublicKey`), which is the point of signing rather than MACing.
 */
export async function backupPublicKeysFromVault(
  vault: SecretVault,
  options: { secretName?: string } = {},
): Promise<BackupPublicKey[]> {
  const name = validateSecretName(options.secretName ?? BACKUP_SIGNING_KEY_SECRET);
  const keys: BackupPublicKey[] = [];
  for (const version of await vault.listVersions(name)) {
    const secret = await vault.getSecret(name, { versionId: version.versionId });
    try {
      const { keyId, publicKey } = backupSignerFromPkcs8(secret.value);
      keys.push({ keyId, publicKey });
    } finally {
      secret.value.fill(0);
    }
  }
  return keys;
}
