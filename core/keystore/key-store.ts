import type { DrillKeyId, KeyId } from "./key-id.js";

/** Length of a data-encryption key (AES-256) and of a master key. */
export const DEK_LENGTH = 32;
/** AES-GCM nonce length (96 bits) and tag length (128 bits) of a wrapped DEK. */
export const WRAP_NONCE_LENGTH = 12;
export const WRAP_TAG_LENGTH = 16;

/** Non-secret facts about a master key version held in the HSM. */
export interface MasterKeyInfo {
  readonly keyId: KeyId;
  /** Key check value: first 3 bytes of AES-ECB(key, 0^16), upper-case hex (6 characters). */
  readonly kcv: string;
  /** Whether the key may leave the HSM wrapped (needed for the recovery kit). */
  readonly extractable: boolean;
}

/** A DEK wrapped by AES-256-GCM under a master key version: `ciphertext` is ciphertext || 16-byte tag. */
export interface WrappedDataKey {
  readonly nonce: Uint8Array;
  readonly ciphertext: Uint8Array;
}

/**
 * A key the HSM holds as a session object, never readable: a transport key (moves master keys between HSMs), a
 * drill-slot session key, or a scratch master key. Session objects vanish with the key store's HSM session; destroy
 * them earlier with `destroyTransportKey`.
 */
export interface TransportKeyRef {
  readonly id: string;
}

export interface CreateMasterKeyOptions {
  /** Default true: the master key must be exportable (wrapped) into the recovery kit. */
  readonly extractable?: boolean;
}

export interface ImportMasterKeyOptions extends CreateMasterKeyOptions {
  /** When given, the imported key must have this KCV or it is destroyed again and the import fails. */
  readonly expectedKcv?: string;
}

/** The drill key pair: its private key never leaves the HSM; the public key (SPKI, DER) encrypts to it. */
export interface DrillKeyInfo {
  readonly drillKeyId: DrillKeyId;
  readonly publicKeySpki: Uint8Array;
}

/** OAEP hash (also the MGF1 hash). SoftHSM2 supports SHA-1 only; CloudHSM both. */
export type OaepHash = "SHA-1" | "SHA-256";

/** What an HSM-held session key may do: decrypt (AES-GCM) or unwrap (AES key wrap with padding). */
export type SessionKeyPurpose = "decrypt" | "unwrap";

export interface KeyStoreHealth {
  readonly tokenLabel: string;
  readonly manufacturer: string;
  readonly model: string;
  readonly sessionsOpen: number;
}

/**
 * The HSM that keeps master keys. Every operation on a master key names its version by `KeyId`. Plaintext DEKs
 * returned to the caller belong to the caller, who zeroizes them; buffers the store allocates internally are
 * zeroized by the store.
 */
export interface KeyStore {
  /** Generates a new AES-256 master key version inside the HSM (token object, sensitive). */
  createMasterKey(keyId: KeyId, options?: CreateMasterKeyOptions): Promise<MasterKeyInfo>;
  findMasterKey(keyId: KeyId): Promise<MasterKeyInfo | undefined>;
  /** Every master key version of a workspace held by this HSM, by ascending version. */
  listMasterKeys(workspaceId: string): Promise<MasterKeyInfo[]>;
  keyCheckValue(keyId: KeyId): Promise<string>;
  /** A fresh 32-byte DEK from the HSM's random generator. */
  generateDataKey(): Promise<Buffer>;
  randomBytes(length: number): Promise<Buffer>;
  /** AES-256-GCM with a fresh random 96-bit nonce and the given associated data. */
  wrapDataKey(keyId: KeyId, dek: Uint8Array, aad: Uint8Array): Promise<WrappedDataKey>;
  unwrapDataKey(keyId: KeyId, wrapped: WrappedDataKey, aad: Uint8Array): Promise<Buffer>;
  /** Unwraps under one version and wraps under another; the plaintext never leaves the store. */
  rewrapDataKey(
    from: { keyId: KeyId; aad: Uint8Array },
    to: { keyId: KeyId; aad: Uint8Array },
    wrapped: WrappedDataKey,
  ): Promise<WrappedDataKey>;
  /** Loads AES-256 transport key material into the HSM (non-extractable session object); the caller zeroizes it. */
  importTransportKey(material: Uint8Array): Promise<TransportKeyRef>;
  /**
   * Destroys a session object: a transport key, a drill-slot session key or a scratch master key. Idempotent: an
   * unknown, already destroyed or lost ref is ignored.
   */
  destroyTransportKey(ref: TransportKeyRef): Promise<void>;
  /** The master key wrapped under the transport key with AES key wrap with padding (RFC 5649). */
  exportMasterKey(keyId: KeyId, transport: TransportKeyRef): Promise<Uint8Array>;
  /** Unwraps an RFC 5649 blob under the transport key into a new master key version (token object, sensitive). */
  importMasterKey(
    keyId: KeyId,
    blob: Uint8Array,
    transport: TransportKeyRef,
    options?: ImportMasterKeyOptions,
  ): Promise<MasterKeyInfo>;
  /** Generates an RSA-3072 drill key pair (private key sensitive, never extractable, unwrap only). */
  createDrillKey(drillKeyId: DrillKeyId): Promise<DrillKeyInfo>;
  getDrillKey(drillKeyId: DrillKeyId): Promise<DrillKeyInfo | undefined>;
  /**
   * RSA-OAEP-unwraps a 32-byte AES key with the drill private key into a non-extractable session object usable
   * only for `purpose`. Its value never leaves the HSM; destroy it with `destroyTransportKey`.
   */
  unwrapWithDrillKey(
    drillKeyId: DrillKeyId,
    wrapped: Uint8Array,
    options: { oaepHash: OaepHash; purpose: SessionKeyPurpose },
  ): Promise<TransportKeyRef>;
  /** AES-256-GCM decryption with a session key of purpose `decrypt` (`ciphertext` = ct || 16-byte tag). */
  decryptWithSessionKey(
    ref: TransportKeyRef,
    input: { nonce: Uint8Array; ciphertext: Uint8Array; aad: Uint8Array },
  ): Promise<Buffer>;
  /**
   * Unwraps an RFC 5649 master key blob with a session key of purpose `unwrap` (or a transport key) into a temporary
   * non-extractable session object, returns its KCV and destroys it: proves the blob without the key leaving.
   */
  checkWrappedMasterKey(ref: TransportKeyRef, blob: Uint8Array): Promise<string>;
  /**
   * Unwraps an RFC 5649 master key blob with a session key of purpose `unwrap` (or a transport key) into a *scratch
   * master key*: a session object (never a token object: `findMasterKey`/`listMasterKeys` do not see it, and it
   * vanishes with the store's HSM session), sensitive, non-extractable, allowed only to decrypt. Its KCV must equal
   * `expectedKcv`, else nothing is kept and `KeyIntegrityError` is thrown (as for a tampered blob or a wrong unwrap
   * key). Use it with `unwrapDataKeyWithSessionKey`; destroy it with `destroyTransportKey`.
   */
  unwrapMasterKeyToSession(
    ref: TransportKeyRef,
    blob: Uint8Array,
    options: { expectedKcv: string },
  ): Promise<TransportKeyRef>;
  /**
   * `unwrapDataKey` with a scratch master key from `unwrapMasterKeyToSession` (same checks, same errors: a wrong key,
   * wrong associated data or tampered data is `KeyIntegrityError`). Any other kind of session key is refused
   * (`KeyOperationNotPermittedError`); a destroyed or lost one is `KeyNotFoundError`.
   */
  unwrapDataKeyWithSessionKey(
    ref: TransportKeyRef,
    wrapped: WrappedDataKey,
    aad: Uint8Array,
  ): Promise<Buffer>;
  /** Destroys every object of that master key version. Callers prove first that no record still needs it. */
  destroyMasterKey(keyId: KeyId): Promise<void>;
  health(): Promise<KeyStoreHealth>;
  close(): Promise<void>;
}
