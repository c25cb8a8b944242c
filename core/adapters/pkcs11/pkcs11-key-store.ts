import { createPublicKey, randomBytes, randomUUID } from "node:crypto";
import pkcs11js from "pkcs11js";
import {
  describeKeyId,
  parseDrillKeyId,
  parseKeyId,
  workspaceKeyPrefix,
  type DrillKeyId,
  type KeyId,
} from "../../keystore/key-id.js";
import {
  DEK_LENGTH,
  WRAP_NONCE_LENGTH,
  WRAP_TAG_LENGTH,
  type CreateMasterKeyOptions,
  type DrillKeyInfo,
  type OaepHash,
  type SessionKeyPurpose,
  type ImportMasterKeyOptions,
  type KeyStore,
  type KeyStoreHealth,
  type MasterKeyInfo,
  type TransportKeyRef,
  type WrappedDataKey,
} from "../../keystore/key-store.js";
import {
  KeyAlreadyExistsError,
  KeyIntegrityError,
  KeyNotFoundError,
  SessionKeyLostError,
  KeyOperationNotPermittedError,
  KeyStoreClosedError,
  KeyStoreConfigError,
} from "../../keystore/errors.js";
import { InvalidInputError } from "../../shared/errors.js";
import { zeroize } from "../../shared/bytes.js";
import { backoffDelay, sleep, type RetryPolicy } from "../../shared/retry.js";
import { classifyCkr, pkcs11Code, toKeyStoreError, type ClassifyOptions } from "./ckr.js";
import { parsePkcs11Config, type Pkcs11ConfigInput, type PinSource } from "./config.js";
import { acquirePkcs11Module, type Pkcs11Module } from "./library.js";
import { SessionPool } from "./session-pool.js";

/** Something the adapter reports without secrets: retries and reconnects. */
export interface KeyStoreLogger {
  warn(message: string, context: Record<string, unknown>): void;
}

export interface Pkcs11KeyStoreOptions {
  readonly config: Pkcs11ConfigInput;
  readonly pin: PinSource;
  readonly logger?: KeyStoreLogger;
  /**
   * Wraps the loaded PKCS#11 module, e.g. to inject faults around the real library in tests (the reliability
   * suite's fault layer). Not for production configuration.
   */
  readonly intercept?: (pkcs11: pkcs11js.PKCS11) => pkcs11js.PKCS11;
}

const AES_BLOCK = 16;
const WRAP_OUTPUT_BUFFER = 256;
/** RFC 5649 output for a 32-byte key: anything else is not one of our master keys. */
const WRAPPED_MASTER_KEY_LENGTH = DEK_LENGTH + 8;
const KCV = /^[0-9A-Fa-f]{6}$/;
/** Extra attempts after a stale cached handle, beyond the retry budget (each one looks the key up again). */
const MAX_STALE_LOOKUPS = 2;

/**
 * What a session object of the store is for. The HSM enforces the uses through the object's attributes; the kind
 * lets the adapter refuse what the attributes cannot tell apart (a scratch master key and a drill-slot body key
 * both decrypt AES-GCM).
 */
type SessionObjectKind = "transport" | "decrypt" | "unwrap" | "master";

interface SessionObject {
  readonly handle: Buffer;
  readonly kind: SessionObjectKind;
  /** The keeper session generation that created it: the object exists only while that keeper is open. */
  readonly generation: number;
}

/**
 * The `KeyStore` over PKCS#11 (`pkcs11js`): SoftHSM2 locally, the AWS CloudHSM client library in production.
 * Master keys are AES-256 token objects labelled with their `KeyId`; DEKs are wrapped with AES-256-GCM
 * (C_Encrypt/C_Decrypt, since C_WrapKey has no GCM on these HSMs) under a fresh random 96-bit nonce.
 */
export class Pkcs11KeyStore implements KeyStore {
  private readonly handles = new Map<string, Buffer>();
  /** Session objects (transport keys, drill-slot session keys, scratch master keys) by ref id; all on the keeper. */
  private readonly sessionObjects = new Map<string, SessionObject>();
  /** Ids of session objects found lost with their session (SessionKeyLostError for them, not "not loaded"). */
  private readonly lostSessionObjects = new Set<string>();
  private readonly retry: RetryPolicy;
  private readonly gcmParamsType: number;
  private closed = false;

  private constructor(
    private readonly module: Pkcs11Module,
    private readonly pool: SessionPool,
    private readonly slot: Buffer,
    private readonly tokenLabel: string,
    retry: RetryPolicy,
    gcmParams: "v240" | "v220",
    private readonly logger?: KeyStoreLogger,
  ) {
    this.retry = retry;
    this.gcmParamsType = gcmParams === "v240" ? pkcs11js.CK_PARAMS_AES_GCM_v240 : pkcs11js.CK_PARAMS_AES_GCM;
  }

  /** Loads the library, finds the token by label and logs in (checking the PIN at once). */
  static async open(options: Pkcs11KeyStoreOptions): Promise<Pkcs11KeyStore> {
    const config = parsePkcs11Config(options.config);
    const shared = acquirePkcs11Module(config.libraryPath);
    const module: Pkcs11Module = options.intercept
      ? {
          pkcs11: options.intercept(shared.pkcs11),
          libraryPath: shared.libraryPath,
          release: () => shared.release(),
        }
      : shared;
    try {
      const slot = findSlot(module.pkcs11, config.tokenLabel);
      const pool = new SessionPool(module.pkcs11, slot, config.poolSize, options.pin);
      const store = new Pkcs11KeyStore(
        module,
        pool,
        slot,
        config.tokenLabel,
        {
          maxAttempts: config.maxAttempts,
          baseDelayMs: config.backoffBaseMs,
          maxDelayMs: config.backoffMaxMs,
        },
        config.gcmParams,
        options.logger,
      );
      // Open one session now so that a wrong PIN or token fails here, with a clear error.
      await store.run("login", {}, () => undefined, {}, "keeper");
      return store;
    } catch (err) {
      module.release();
      throw toKeyStoreError(err, "open key store", { tokenLabel: config.tokenLabel });
    }
  }

  async createMasterKey(keyId: KeyId, options: CreateMasterKeyOptions = {}): Promise<MasterKeyInfo> {
    parseKeyId(keyId);
    const extractable = options.extractable ?? true;
    return this.run("create master key", { keyId }, (p, s) => {
      if (this.findHandles(s, keyId).length > 0) {
        throw new KeyAlreadyExistsError(`master key ${keyId} already exists in the HSM`, {
          context: { keyId },
        });
      }
      const h = p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        ...masterKeyTemplate(keyId, extractable),
        { type: pkcs11js.CKA_VALUE_LEN, value: DEK_LENGTH },
      ]);
      this.handles.set(keyId, h);
      return { keyId, kcv: kcvOf(p, s, h), extractable };
    });
  }

  async findMasterKey(keyId: KeyId): Promise<MasterKeyInfo | undefined> {
    parseKeyId(keyId);
    return this.run("find master key", { keyId }, (p, s) => {
      const h = this.findHandles(s, keyId)[0];
      if (!h) return undefined;
      this.handles.set(keyId, h);
      return this.info(p, s, keyId, h);
    });
  }

  async listMasterKeys(workspaceId: string): Promise<MasterKeyInfo[]> {
    const prefix = workspaceKeyPrefix(workspaceId);
    return this.run("list master keys", { workspaceId }, (p, s) => {
      const found = this.findPrivate(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_TOKEN, value: true },
      ]);
      const infos: MasterKeyInfo[] = [];
      for (const h of found) {
        const label =
          p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL }])[0]?.value?.toString("utf8") ?? "";
        if (!label.startsWith(prefix)) continue;
        infos.push(this.info(p, s, label as KeyId, h));
      }
      return infos.sort((a, b) => describeKeyId(a.keyId).version - describeKeyId(b.keyId).version);
    });
  }

  async keyCheckValue(keyId: KeyId): Promise<string> {
    parseKeyId(keyId);
    return this.run("key check value", { keyId }, (p, s) => kcvOf(p, s, this.handleFor(s, keyId)));
  }

  async generateDataKey(): Promise<Buffer> {
    return this.randomBytes(DEK_LENGTH);
  }

  async randomBytes(length: number): Promise<Buffer> {
    if (!Number.isInteger(length) || length < 1 || length > 4096) {
      throw new InvalidInputError("random length must be an integer from 1 to 4096", { context: { length } });
    }
    return this.run("generate random", { length }, (p, s) => p.C_GenerateRandom(s, Buffer.alloc(length)));
  }

  async wrapDataKey(keyId: KeyId, dek: Uint8Array, aad: Uint8Array): Promise<WrappedDataKey> {
    parseKeyId(keyId);
    if (!(dek instanceof Uint8Array) || dek.length !== DEK_LENGTH) {
      throw new InvalidInputError(`a data key must be ${DEK_LENGTH} bytes`, {
        context: { keyId, length: dek?.length },
      });
    }
    return this.run("wrap data key", { keyId }, (p, s) =>
      this.gcmEncrypt(p, s, this.handleFor(s, keyId), dek, aad),
    );
  }

  async unwrapDataKey(keyId: KeyId, wrapped: WrappedDataKey, aad: Uint8Array): Promise<Buffer> {
    parseKeyId(keyId);
    checkWrapped(wrapped, { keyId });
    return this.run(
      "unwrap data key",
      { keyId },
      (p, s) => this.gcmDecrypt(p, s, this.handleFor(s, keyId), wrapped, aad),
      { authenticatedDecrypt: true },
    );
  }

  async rewrapDataKey(
    from: { keyId: KeyId; aad: Uint8Array },
    to: { keyId: KeyId; aad: Uint8Array },
    wrapped: WrappedDataKey,
  ): Promise<WrappedDataKey> {
    parseKeyId(from.keyId);
    parseKeyId(to.keyId);
    checkWrapped(wrapped, { keyId: from.keyId });
    return this.run(
      "rewrap data key",
      { fromKeyId: from.keyId, toKeyId: to.keyId },
      (p, s) => {
        const target = this.handleFor(s, to.keyId);
        const dek = this.gcmDecrypt(p, s, this.handleFor(s, from.keyId), wrapped, from.aad);
        try {
          return this.gcmEncrypt(p, s, target, dek, to.aad);
        } finally {
          zeroize(dek);
        }
      },
      { authenticatedDecrypt: true },
    );
  }

  async importTransportKey(material: Uint8Array): Promise<TransportKeyRef> {
    if (!(material instanceof Uint8Array) || material.length !== 32) {
      throw new InvalidInputError("transport key material must be 32 bytes (AES-256)", {
        context: { length: material?.length },
      });
    }
    const id = `transport/${randomUUID()}`;
    const value = Buffer.from(material);
    try {
      return await this.run(
        "import transport key",
        { transportKeyId: id },
        (p, s, generation) => {
          const h = p.C_CreateObject(s, [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
            { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
            { type: pkcs11js.CKA_VALUE, value },
            { type: pkcs11js.CKA_TOKEN, value: false },
            { type: pkcs11js.CKA_PRIVATE, value: true },
            { type: pkcs11js.CKA_SENSITIVE, value: true },
            { type: pkcs11js.CKA_EXTRACTABLE, value: false },
            { type: pkcs11js.CKA_WRAP, value: true },
            { type: pkcs11js.CKA_UNWRAP, value: true },
            { type: pkcs11js.CKA_ENCRYPT, value: false },
            { type: pkcs11js.CKA_DECRYPT, value: false },
            { type: pkcs11js.CKA_LABEL, value: id },
          ]);
          this.sessionObjects.set(id, { handle: h, kind: "transport", generation });
          return { id };
        },
        {},
        "keeper",
      );
    } finally {
      zeroize(value);
    }
  }

  async destroyTransportKey(ref: TransportKeyRef): Promise<void> {
    this.lostSessionObjects.delete(ref?.id);
    const obj = this.sessionObjects.get(ref?.id);
    if (!obj) return;
    if (obj.generation !== this.pool.currentGeneration) {
      // Its keeper session is gone, and the object with it.
      this.sessionObjects.delete(ref.id);
      return;
    }
    await this.run("destroy session key", { sessionKeyId: ref.id, kind: obj.kind }, (p, s) => {
      try {
        // Destroy only the object we made: once it vanished (its session closed underneath), the handle could name
        // another object. Each session object carries its ref id as its label.
        const label = p.C_GetAttributeValue(s, obj.handle, [{ type: pkcs11js.CKA_LABEL }])[0]?.value;
        if (label?.toString("utf8") === ref.id) p.C_DestroyObject(s, obj.handle);
      } catch (err) {
        const code = pkcs11Code(err);
        if (code === undefined || classifyCkr(code) !== "stale-handle") throw err;
      }
    });
    // Forgotten only once destroyed (or gone): a failed destroy can be retried.
    this.sessionObjects.delete(ref.id);
  }

  async exportMasterKey(keyId: KeyId, transport: TransportKeyRef): Promise<Uint8Array> {
    parseKeyId(keyId);
    return this.run("export master key", { keyId, transportKeyId: transport.id }, (p, s) => {
      const blob = p.C_WrapKey(
        s,
        { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD },
        this.sessionHandle(transport, ["transport"]),
        this.handleFor(s, keyId),
        Buffer.alloc(WRAP_OUTPUT_BUFFER),
      );
      return Buffer.from(blob);
    });
  }

  async importMasterKey(
    keyId: KeyId,
    blob: Uint8Array,
    transport: TransportKeyRef,
    options: ImportMasterKeyOptions = {},
  ): Promise<MasterKeyInfo> {
    parseKeyId(keyId);
    checkWrappedMasterKeyBlob(blob, { keyId });
    const extractable = options.extractable ?? true;
    return this.run(
      "import master key",
      { keyId, transportKeyId: transport.id },
      (p, s) => {
        if (this.findHandles(s, keyId).length > 0) {
          throw new KeyAlreadyExistsError(`master key ${keyId} already exists in the HSM`, {
            context: { keyId },
          });
        }
        const h = p.C_UnwrapKey(
          s,
          { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD },
          this.sessionHandle(transport, ["transport", "unwrap"]),
          Buffer.from(blob),
          masterKeyTemplate(keyId, extractable),
        );
        const kcv = kcvOf(p, s, h);
        if (options.expectedKcv !== undefined && options.expectedKcv.toUpperCase() !== kcv) {
          p.C_DestroyObject(s, h);
          throw new KeyIntegrityError(`imported key ${keyId} does not match the expected key check value`, {
            context: { keyId, expectedKcv: options.expectedKcv.toUpperCase(), actualKcv: kcv },
          });
        }
        this.handles.set(keyId, h);
        return { keyId, kcv, extractable };
      },
      { authenticatedDecrypt: true },
    );
  }

  async createDrillKey(id: DrillKeyId): Promise<DrillKeyInfo> {
    parseDrillKeyId(id);
    return this.run("create drill key", { drillKeyId: id }, (p, s) => {
      if (this.findKeyObjects(s, id, pkcs11js.CKO_PRIVATE_KEY).length > 0) {
        throw new KeyAlreadyExistsError(`drill key ${id} already exists in the HSM`, {
          context: { drillKeyId: id },
        });
      }
      const label = { type: pkcs11js.CKA_LABEL, value: id };
      const cid = { type: pkcs11js.CKA_ID, value: Buffer.from(id, "utf8") };
      const pair = p.C_GenerateKeyPair(
        s,
        { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN },
        [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_PRIVATE, value: false },
          { type: pkcs11js.CKA_MODULUS_BITS, value: 3072 },
          { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
          { type: pkcs11js.CKA_ENCRYPT, value: false },
          { type: pkcs11js.CKA_WRAP, value: false },
          { type: pkcs11js.CKA_VERIFY, value: false },
          label,
          cid,
        ],
        [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_PRIVATE, value: true },
          { type: pkcs11js.CKA_SENSITIVE, value: true },
          { type: pkcs11js.CKA_EXTRACTABLE, value: false },
          { type: pkcs11js.CKA_UNWRAP, value: true },
          { type: pkcs11js.CKA_DECRYPT, value: false },
          { type: pkcs11js.CKA_SIGN, value: false },
          { type: pkcs11js.CKA_DERIVE, value: false },
          label,
          cid,
        ],
      );
      return { drillKeyId: id, publicKeySpki: rsaPublicSpki(p, s, pair.publicKey) };
    });
  }

  async getDrillKey(id: DrillKeyId): Promise<DrillKeyInfo | undefined> {
    parseDrillKeyId(id);
    return this.run("find drill key", { drillKeyId: id }, (p, s) => {
      const priv = this.findKeyObjects(s, id, pkcs11js.CKO_PRIVATE_KEY)[0];
      const pub = findObjects(p, s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_LABEL, value: id },
      ])[0];
      if (!priv || !pub) return undefined;
      return { drillKeyId: id, publicKeySpki: rsaPublicSpki(p, s, pub) };
    });
  }

  async unwrapWithDrillKey(
    id: DrillKeyId,
    wrapped: Uint8Array,
    options: { oaepHash: OaepHash; purpose: SessionKeyPurpose },
  ): Promise<TransportKeyRef> {
    parseDrillKeyId(id);
    if (options.oaepHash !== "SHA-1" && options.oaepHash !== "SHA-256") {
      throw new InvalidInputError("oaepHash must be SHA-1 or SHA-256", {
        context: { oaepHash: String(options.oaepHash) },
      });
    }
    if (options.purpose !== "decrypt" && options.purpose !== "unwrap") {
      throw new InvalidInputError("purpose must be decrypt or unwrap", {
        context: { purpose: String(options.purpose) },
      });
    }
    const ref = `session/${randomUUID()}`;
    return this.run(
      "unwrap with drill key",
      { drillKeyId: id, purpose: options.purpose },
      (p, s, generation) => {
        const priv = this.findKeyObjects(s, id, pkcs11js.CKO_PRIVATE_KEY)[0];
        if (!priv)
          throw new KeyNotFoundError(`drill key ${id} does not exist in the HSM`, {
            context: { drillKeyId: id },
          });
        const sha1 = options.oaepHash === "SHA-1";
        const h = p.C_UnwrapKey(
          s,
          {
            mechanism: pkcs11js.CKM_RSA_PKCS_OAEP,
            parameter: {
              type: pkcs11js.CK_PARAMS_RSA_OAEP,
              hashAlg: sha1 ? pkcs11js.CKM_SHA_1 : pkcs11js.CKM_SHA256,
              mgf: sha1 ? pkcs11js.CKG_MGF1_SHA1 : pkcs11js.CKG_MGF1_SHA256,
              source: CKZ_DATA_SPECIFIED,
            } as pkcs11js.RsaOAEP,
          },
          priv,
          Buffer.from(wrapped),
          sessionAesTemplate(ref, {
            decrypt: options.purpose === "decrypt",
            unwrap: options.purpose === "unwrap",
          }),
        );
        this.sessionObjects.set(ref, { handle: h, kind: options.purpose, generation });
        return { id: ref };
      },
      { authenticatedDecrypt: true },
      "keeper",
    );
  }

  async decryptWithSessionKey(
    ref: TransportKeyRef,
    input: { nonce: Uint8Array; ciphertext: Uint8Array; aad: Uint8Array },
  ): Promise<Buffer> {
    if (input.nonce?.length !== WRAP_NONCE_LENGTH || !(input.ciphertext?.length >= WRAP_TAG_LENGTH)) {
      throw new KeyIntegrityError("GCM input needs a 12-byte nonce and at least a 16-byte tag", {
        context: { sessionKeyId: ref.id },
      });
    }
    return this.run(
      "decrypt with session key",
      { sessionKeyId: ref.id },
      (p, s) => {
        p.C_DecryptInit(
          s,
          { mechanism: pkcs11js.CKM_AES_GCM, parameter: this.gcmParams(Buffer.from(input.nonce), input.aad) },
          // Not a scratch master key: it opens wrapped DEKs through unwrapDataKeyWithSessionKey only.
          this.sessionHandle(ref, ["decrypt"]),
        );
        return Buffer.from(
          p.C_Decrypt(s, Buffer.from(input.ciphertext), Buffer.alloc(input.ciphertext.length)),
        );
      },
      { authenticatedDecrypt: true },
    );
  }

  async checkWrappedMasterKey(ref: TransportKeyRef, blob: Uint8Array): Promise<string> {
    checkWrappedMasterKeyBlob(blob, { transportKeyId: ref.id });
    return this.run(
      "check wrapped master key",
      { transportKeyId: ref.id },
      (p, s) => {
        const h = p.C_UnwrapKey(
          s,
          { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD },
          this.sessionHandle(ref, ["transport", "unwrap"]),
          Buffer.from(blob),
          sessionAesTemplate(`check/${randomUUID()}`, { encrypt: true }),
        );
        try {
          return kcvOf(p, s, h);
        } finally {
          p.C_DestroyObject(s, h);
        }
      },
      { authenticatedDecrypt: true },
    );
  }

  async unwrapMasterKeyToSession(
    ref: TransportKeyRef,
    blob: Uint8Array,
    options: { expectedKcv: string },
  ): Promise<TransportKeyRef> {
    checkWrappedMasterKeyBlob(blob, { unwrapKeyId: ref?.id });
    if (typeof options?.expectedKcv !== "string" || !KCV.test(options.expectedKcv)) {
      throw new InvalidInputError("expectedKcv must be 6 hexadecimal digits", {
        context: { unwrapKeyId: ref?.id },
      });
    }
    const expectedKcv = options.expectedKcv.toUpperCase();
    const id = `scratch/${randomUUID()}`;
    // On the keeper session, like every session object: a worker session may be closed after any failed call, and
    // PKCS#11 destroys session objects with the session that created them.
    return this.run(
      "unwrap master key to session",
      { unwrapKeyId: ref.id, sessionKeyId: id },
      (p, s, generation) => {
        const unwrapping = this.sessionHandle(ref, ["transport", "unwrap"]);
        const mechanism = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
        // The kept object may only decrypt, so it cannot compute its own KCV (AES-ECB *encryption* of a zero block).
        // A probe unwrapped from the same blob with encrypt only gives it, then is destroyed at once.
        let probeBlock: Buffer;
        const probe = p.C_UnwrapKey(
          s,
          mechanism,
          unwrapping,
          Buffer.from(blob),
          sessionAesTemplate(`probe/${randomUUID()}`, { encrypt: true }),
        );
        try {
          probeBlock = ecbEncryptZeroBlock(p, s, probe);
        } finally {
          p.C_DestroyObject(s, probe);
        }
        try {
          const actualKcv = probeBlock.subarray(0, 3).toString("hex").toUpperCase();
          if (actualKcv !== expectedKcv) {
            throw new KeyIntegrityError(
              "the unwrapped master key does not match the expected key check value",
              {
                context: { unwrapKeyId: ref.id, expectedKcv, actualKcv },
              },
            );
          }
          const h = p.C_UnwrapKey(s, mechanism, unwrapping, Buffer.from(blob), scratchMasterKeyTemplate(id));
          try {
            // Bind the kept object to the checked value: it must decrypt the probe's AES-ECB(K, 0^16) to 0^16.
            p.C_DecryptInit(s, { mechanism: pkcs11js.CKM_AES_ECB }, h);
            const back = p.C_Decrypt(s, probeBlock, Buffer.alloc(AES_BLOCK));
            const same = back.equals(Buffer.alloc(AES_BLOCK));
            zeroize(back);
            if (!same) {
              throw new KeyIntegrityError(
                "the unwrapped master key differs from the one whose KCV was checked",
                {
                  context: { unwrapKeyId: ref.id },
                },
              );
            }
          } catch (err) {
            p.C_DestroyObject(s, h);
            throw err;
          }
          this.sessionObjects.set(id, { handle: h, kind: "master", generation });
          return { id };
        } finally {
          zeroize(probeBlock);
        }
      },
      { authenticatedDecrypt: true },
      "keeper",
    );
  }

  async unwrapDataKeyWithSessionKey(
    ref: TransportKeyRef,
    wrapped: WrappedDataKey,
    aad: Uint8Array,
  ): Promise<Buffer> {
    checkWrapped(wrapped, { sessionKeyId: ref?.id });
    return this.run(
      "unwrap data key with session key",
      { sessionKeyId: ref.id },
      (p, s) => this.gcmDecrypt(p, s, this.sessionHandle(ref, ["master"]), wrapped, aad),
      { authenticatedDecrypt: true },
    );
  }

  async destroyMasterKey(keyId: KeyId): Promise<void> {
    parseKeyId(keyId);
    await this.run("destroy master key", { keyId }, (p, s) => {
      const found = this.findHandles(s, keyId);
      this.handles.delete(keyId);
      if (found.length === 0) {
        throw new KeyNotFoundError(`master key ${keyId} does not exist in the HSM`, { context: { keyId } });
      }
      for (const h of found) p.C_DestroyObject(s, h);
    });
  }

  async health(): Promise<KeyStoreHealth> {
    return this.run("health", {}, (p) => {
      const info = p.C_GetTokenInfo(this.slot);
      return {
        tokenLabel: info.label.trim(),
        manufacturer: info.manufacturerID.trim(),
        model: info.model.trim(),
        sessionsOpen: this.pool.sessionsOpen,
      };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handles.clear();
    // Session objects go with the keeper session that the pool closes.
    this.sessionObjects.clear();
    await this.pool.close();
    this.module.release();
  }

  // ---- internals -------------------------------------------------------------------------------------------

  /**
   * Runs one synchronous PKCS#11 step on a pooled session, with bounded retries: a lost session is dropped and
   * reopened (with a new login), transient failures back off, a stale cached handle is looked up again. Everything
   * else becomes a domain error at once.
   */
  private async run<T>(
    operation: string,
    context: Record<string, unknown>,
    fn: (p: pkcs11js.PKCS11, session: Buffer, generation: number) => T,
    classify: ClassifyOptions = {},
    where: "worker" | "keeper" = "worker",
  ): Promise<T> {
    let staleLookups = 0;
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new KeyStoreClosedError("the key store is closed", { context: { operation } });
      let session;
      try {
        session = where === "keeper" ? await this.pool.keeperSession() : await this.pool.acquire();
      } catch (err) {
        if (this.shouldRetry(err, attempt, operation, context)) {
          await sleep(backoffDelay(this.retry, attempt));
          continue;
        }
        throw toKeyStoreError(err, operation, { tokenLabel: this.tokenLabel, ...context }, classify);
      }
      try {
        const result = fn(this.module.pkcs11, session.handle, session.generation);
        this.pool.release(session);
        return result;
      } catch (err) {
        const code = pkcs11Code(err);
        const kind = code === undefined ? undefined : classifyCkr(code, classify);
        if (kind === "session") {
          this.pool.reset(session);
          this.handles.clear();
        } else if (kind !== undefined) {
          // After a failed PKCS#11 call an operation may still be active in the session: never hand it on.
          this.pool.drop(session);
          if (kind === "stale-handle") this.handles.clear();
        } else {
          this.pool.release(session);
        }
        if (kind === "stale-handle" && staleLookups < MAX_STALE_LOOKUPS) {
          // A cached handle went stale (SoftHSM renumbers private objects after the last session closed, which a
          // dropped session can cause): not an HSM failure, so it does not use up the retry budget. The next
          // attempt looks the key up again; a key that is really gone is KeyNotFoundError from that lookup.
          staleLookups += 1;
          attempt -= 1;
          continue;
        }
        if (this.shouldRetry(err, attempt, operation, context, classify)) {
          if (kind !== "stale-handle") await sleep(backoffDelay(this.retry, attempt));
          continue;
        }
        throw toKeyStoreError(err, operation, context, classify);
      }
    }
  }

  private shouldRetry(
    err: unknown,
    attempt: number,
    operation: string,
    context: Record<string, unknown>,
    classify: ClassifyOptions = {},
  ): boolean {
    const code = pkcs11Code(err);
    if (code === undefined || attempt >= this.retry.maxAttempts) return false;
    const kind = classifyCkr(code, classify);
    if (kind !== "session" && kind !== "transient" && kind !== "stale-handle") return false;
    this.logger?.warn("HSM call failed, retrying", { operation, ...context, kind, attempt, code });
    return true;
  }

  private findHandles(session: Buffer, keyId: KeyId): Buffer[] {
    return this.findPrivate(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: keyId },
    ]);
  }

  private findKeyObjects(session: Buffer, label: string, cls: number): Buffer[] {
    return this.findPrivate(session, [
      { type: pkcs11js.CKA_CLASS, value: cls },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: label },
    ]);
  }

  /**
   * Finds private objects. Private objects are invisible to a session that is not logged in: an empty result
   * from such a session is a lost login (retried after a new login), not a missing key.
   */
  private findPrivate(session: Buffer, template: pkcs11js.Template): Buffer[] {
    const found = findObjects(this.module.pkcs11, session, template);
    if (found.length === 0 && !this.pool.isUserSession(session)) throw notLoggedIn();
    return found;
  }

  private handleFor(session: Buffer, keyId: KeyId): Buffer {
    const cached = this.handles.get(keyId);
    if (cached) return cached;
    const h = this.findHandles(session, keyId)[0];
    if (!h) {
      throw new KeyNotFoundError(`master key ${keyId} does not exist in the HSM`, { context: { keyId } });
    }
    this.handles.set(keyId, h);
    return h;
  }

  /** The handle of a session object of one of the `allowed` kinds; a destroyed or lost one is KeyNotFoundError. */
  private sessionHandle(ref: TransportKeyRef, allowed: readonly SessionObjectKind[]): Buffer {
    const obj = this.sessionObjects.get(ref?.id);
    if (!obj && this.lostSessionObjects.has(ref?.id)) {
      throw new SessionKeyLostError(
        `session key ${ref.id} was lost with the HSM session that held it; load it again`,
        { context: { sessionKeyId: ref.id } },
      );
    }
    if (!obj) {
      throw new KeyNotFoundError(
        `session key ${ref?.id} is not loaded in this key store (destroyed?); load it again`,
        {
          context: { sessionKeyId: ref?.id },
        },
      );
    }
    if (obj.generation !== this.pool.currentGeneration) {
      this.sessionObjects.delete(ref.id);
      this.lostSessionObjects.add(ref.id);
      throw new SessionKeyLostError(
        `session key ${ref.id} was lost with the HSM session that held it; load it again`,
        {
          context: { sessionKeyId: ref.id },
        },
      );
    }
    if (!allowed.includes(obj.kind)) {
      throw new KeyOperationNotPermittedError(
        `session key ${ref.id} (${obj.kind}) may not be used for this`,
        {
          context: { sessionKeyId: ref.id, kind: obj.kind, allowed: [...allowed] },
        },
      );
    }
    return obj.handle;
  }

  private info(p: pkcs11js.PKCS11, s: Buffer, keyId: KeyId, h: Buffer): MasterKeyInfo {
    const attrs = p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_EXTRACTABLE }]);
    const extractable = (attrs[0]?.value as Buffer | undefined)?.[0] === 1;
    return { keyId, kcv: kcvOf(p, s, h), extractable };
  }

  private gcmParams(nonce: Buffer, aad: Uint8Array): pkcs11js.GcmParams {
    return {
      type: this.gcmParamsType,
      iv: nonce,
      ivBits: WRAP_NONCE_LENGTH * 8,
      aad: Buffer.from(aad),
      tagBits: WRAP_TAG_LENGTH * 8,
    };
  }

  private gcmEncrypt(
    p: pkcs11js.PKCS11,
    s: Buffer,
    key: Buffer,
    dek: Uint8Array,
    aad: Uint8Array,
  ): WrappedDataKey {
    const nonce = randomBytes(WRAP_NONCE_LENGTH);
    p.C_EncryptInit(s, { mechanism: pkcs11js.CKM_AES_GCM, parameter: this.gcmParams(nonce, aad) }, key);
    const input = Buffer.from(dek.buffer, dek.byteOffset, dek.byteLength);
    const out = p.C_Encrypt(s, input, Buffer.alloc(DEK_LENGTH + WRAP_TAG_LENGTH));
    return { nonce, ciphertext: Buffer.from(out) };
  }

  /** Returns the plaintext in a buffer that the caller owns and zeroizes. */
  private gcmDecrypt(
    p: pkcs11js.PKCS11,
    s: Buffer,
    key: Buffer,
    wrapped: WrappedDataKey,
    aad: Uint8Array,
  ): Buffer {
    p.C_DecryptInit(
      s,
      { mechanism: pkcs11js.CKM_AES_GCM, parameter: this.gcmParams(Buffer.from(wrapped.nonce), aad) },
      key,
    );
    const out = Buffer.alloc(wrapped.ciphertext.length);
    let plain: Buffer;
    try {
      plain = p.C_Decrypt(s, Buffer.from(wrapped.ciphertext), out);
    } catch (err) {
      zeroize(out);
      throw err;
    }
    if (plain.length !== DEK_LENGTH) {
      zeroize(out);
      throw new KeyIntegrityError("unwrapped data is not a data key", { context: { length: plain.length } });
    }
    return plain;
  }
}

/** PKCS#11 CKZ_DATA_SPECIFIED (OAEP label source); pkcs11js exports no CKZ_* constants. */
const CKZ_DATA_SPECIFIED = 1;

/**
 * A scratch master key: an AES session object (never a token object) that can only decrypt. Sensitive and
 * non-extractable; no encrypt (it cannot wrap new DEKs), no wrap or unwrap (it cannot export or import keys), no
 * sign, verify or derive.
 */
function scratchMasterKeyTemplate(label: string): pkcs11js.Template {
  return [
    ...sessionAesTemplate(label, { decrypt: true }),
    { type: pkcs11js.CKA_SIGN, value: false },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ];
}

/** RFC 5649 of an AES-256 key is 40 bytes: any other length is refused like a tampered blob. */
function checkWrappedMasterKeyBlob(blob: Uint8Array, context: Record<string, unknown>): void {
  if (!(blob instanceof Uint8Array) || blob.length !== WRAPPED_MASTER_KEY_LENGTH) {
    throw new KeyIntegrityError(
      `a wrapped master key blob must be ${WRAPPED_MASTER_KEY_LENGTH} bytes (RFC 5649 of AES-256)`,
      { context: { ...context, length: (blob as Uint8Array | undefined)?.length } },
    );
  }
}

/** A non-extractable, sensitive AES session object allowed only the given uses. */
function sessionAesTemplate(
  label: string,
  uses: { decrypt?: boolean; unwrap?: boolean; encrypt?: boolean },
): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: uses.encrypt ?? false },
    { type: pkcs11js.CKA_DECRYPT, value: uses.decrypt ?? false },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: uses.unwrap ?? false },
    { type: pkcs11js.CKA_LABEL, value: label },
  ];
}

/** The RSA public key object as SPKI DER. */
function rsaPublicSpki(p: pkcs11js.PKCS11, s: Buffer, h: Buffer): Buffer {
  const [n, e] = p.C_GetAttributeValue(s, h, [
    { type: pkcs11js.CKA_MODULUS },
    { type: pkcs11js.CKA_PUBLIC_EXPONENT },
  ]);
  const key = createPublicKey({
    key: {
      kty: "RSA",
      n: (n?.value as Buffer).toString("base64url"),
      e: (e?.value as Buffer).toString("base64url"),
    },
    format: "jwk",
  });
  return key.export({ type: "spki", format: "der" });
}

function notLoggedIn(): Error {
  return Object.assign(new Error("CKR_USER_NOT_LOGGED_IN"), {
    name: "Pkcs11Error",
    code: pkcs11js.CKR_USER_NOT_LOGGED_IN,
  });
}

function masterKeyTemplate(keyId: KeyId, extractable: boolean): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: extractable },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: true },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_SIGN, value: false },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
    { type: pkcs11js.CKA_LABEL, value: keyId },
    { type: pkcs11js.CKA_ID, value: Buffer.from(keyId, "utf8") },
  ];
}

/** KCV: first 3 bytes of AES-ECB(key, zero block), as PKCS#11 defines CKA_CHECK_VALUE for AES keys. */
function kcvOf(p: pkcs11js.PKCS11, s: Buffer, h: Buffer): string {
  const block = ecbEncryptZeroBlock(p, s, h);
  const kcv = block.subarray(0, 3).toString("hex").toUpperCase();
  zeroize(block);
  return kcv;
}

function ecbEncryptZeroBlock(p: pkcs11js.PKCS11, s: Buffer, h: Buffer): Buffer {
  p.C_EncryptInit(s, { mechanism: pkcs11js.CKM_AES_ECB }, h);
  return p.C_Encrypt(s, Buffer.alloc(AES_BLOCK), Buffer.alloc(AES_BLOCK));
}

function findObjects(p: pkcs11js.PKCS11, s: Buffer, template: pkcs11js.Template): Buffer[] {
  p.C_FindObjectsInit(s, template);
  try {
    const all: Buffer[] = [];
    for (;;) {
      const batch = p.C_FindObjects(s, 64);
      all.push(...batch);
      if (batch.length < 64) return all;
    }
  } finally {
    p.C_FindObjectsFinal(s);
  }
}

function findSlot(p: pkcs11js.PKCS11, tokenLabel: string): Buffer {
  const labels: string[] = [];
  for (const slot of p.C_GetSlotList(true)) {
    const label = p.C_GetTokenInfo(slot).label.trim();
    if (label === tokenLabel) return slot;
    labels.push(label);
  }
  throw new KeyStoreConfigError(
    `no token labelled "${tokenLabel}" (found: ${labels.length ? labels.map((l) => `"${l}"`).join(", ") : "none"})`,
    { context: { tokenLabel, available: labels } },
  );
}

/** `context` names the key (a `keyId` or a `sessionKeyId`) for the error. */
function checkWrapped(wrapped: WrappedDataKey, context: Record<string, unknown>): void {
  if (!wrapped || !(wrapped.nonce instanceof Uint8Array) || !(wrapped.ciphertext instanceof Uint8Array)) {
    throw new InvalidInputError("a wrapped data key needs a nonce and a ciphertext", { context });
  }
  if (wrapped.nonce.length !== WRAP_NONCE_LENGTH) {
    throw new KeyIntegrityError(`the wrap nonce must be ${WRAP_NONCE_LENGTH} bytes (tampered or truncated)`, {
      context: { ...context, nonceLength: wrapped.nonce.length },
    });
  }
  if (wrapped.ciphertext.length !== DEK_LENGTH + WRAP_TAG_LENGTH) {
    throw new KeyIntegrityError(
      `a wrapped data key must be ${DEK_LENGTH + WRAP_TAG_LENGTH} bytes (tampered or truncated)`,
      { context: { ...context, ciphertextLength: wrapped.ciphertext.length } },
    );
  }
}
