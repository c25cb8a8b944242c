/**
 * The contract every `KeyStore` keeps. It takes a fixture factory, so the same suite runs against SoftHSM2 in CI
 * and against any other PKCS#11 token by configuration (see test/integration/pkcs11-key-store.int.test.ts).
 */
import assert from "node:assert/strict";
import { constants, createCipheriv, createPublicKey, publicEncrypt, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  KeyAlreadyExistsError,
  KeyIntegrityError,
  KeyNotFoundError,
  KeyOperationNotPermittedError,
  SessionKeyLostError,
} from "../../core/keystore/errors.js";
import { drillKeyId, masterKeyId, type KeyId } from "../../core/keystore/key-id.js";
import type { KeyStore, OaepHash, WrappedDataKey } from "../../core/keystore/key-store.js";
import { InvalidInputError } from "../../core/shared/errors.js";

export interface KeyStoreContractFixture {
  /** The store under test, on the primary token. */
  readonly store: KeyStore;
  /** A store on a second token (another HSM, for export/import). */
  readonly second: KeyStore;
  /** Closes every session of the primary token underneath the store, as an HSM failover or timeout would. */
  dropAllSessions(): Promise<void>;
  close(): Promise<void>;
  /** OAEP hash the token supports (SoftHSM2: SHA-1 only). */
  readonly oaepHash?: OaepHash;
}

/** Software reference operations the HSM results are compared with. */
const soft = {
  kwp: (kek: Buffer, key: Buffer) => {
    const c = createCipheriv("id-aes256-wrap-pad", kek, Buffer.from("A65959A6", "hex"));
    return Buffer.concat([c.update(key), c.final()]);
  },
  kcv: (key: Buffer) => {
    const c = createCipheriv("aes-256-ecb", key, null);
    return c.update(Buffer.alloc(16)).subarray(0, 3).toString("hex").toUpperCase();
  },
  gcm: (key: Buffer, nonce: Buffer, aad: Buffer, plain: Buffer) => {
    const c = createCipheriv("aes-256-gcm", key, nonce);
    c.setAAD(aad);
    return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
  },
};

const aad = (s: string): Buffer => Buffer.from(s, "utf8");

function flip(buf: Uint8Array, index: number): Buffer {
  const copy = Buffer.from(buf);
  copy[index] = (copy[index] ?? 0) ^ 0x01;
  return copy;
}

export function keyStoreContract(name: string, makeFixture: () => Promise<KeyStoreContractFixture>): void {
  describe(`KeyStore contract: ${name}`, () => {
    let fx: KeyStoreContractFixture;
    let ks: KeyStore;
    const ws = `ct-${randomBytes(4).toString("hex")}`;
    let v1: KeyId;
    let v2: KeyId;

    before(async () => {
      fx = await makeFixture();
      ks = fx.store;
      v1 = masterKeyId(ws, 1);
      v2 = masterKeyId(ws, 2);
      await ks.createMasterKey(v1);
      await ks.createMasterKey(v2);
    });
    after(async () => {
      await fx?.close();
    });

    it("creates a master key version with a 6-hex-digit KCV and finds it again", async () => {
      const found = await ks.findMasterKey(v1);
      assert.ok(found);
      assert.equal(found.keyId, v1);
      assert.match(found.kcv, /^[0-9A-F]{6}$/);
      assert.equal(found.extractable, true);
      assert.equal(await ks.keyCheckValue(v1), found.kcv);
      assert.notEqual(await ks.keyCheckValue(v2), found.kcv, "two versions are two different keys");
    });

    it("refuses to create a version that already exists", async () => {
      await assert.rejects(ks.createMasterKey(v1), KeyAlreadyExistsError);
    });

    it("lists the versions of a workspace in order, and nothing of other workspaces", async () => {
      const list = await ks.listMasterKeys(ws);
      assert.deepEqual(
        list.map((k) => k.keyId),
        [v1, v2],
      );
      assert.deepEqual(await ks.listMasterKeys(`${ws}x`), []);
    });

    it("draws distinct 32-byte DEKs from the HSM", async () => {
      const a = await ks.generateDataKey();
      const b = await ks.generateDataKey();
      assert.equal(a.length, 32);
      assert.equal(b.length, 32);
      assert.notDeepEqual(a, b);
    });

    it("wraps and unwraps a DEK (round trip) with a fresh 96-bit nonce each time", async () => {
      const dek = await ks.generateDataKey();
      const w1 = await ks.wrapDataKey(v1, dek, aad("doc-1:file"));
      const w2 = await ks.wrapDataKey(v1, dek, aad("doc-1:file"));
      assert.equal(w1.nonce.length, 12);
      assert.equal(w1.ciphertext.length, 48);
      assert.notDeepEqual(Buffer.from(w1.nonce), Buffer.from(w2.nonce));
      assert.notDeepEqual(Buffer.from(w1.ciphertext.subarray(0, 32)), dek, "ciphertext is not the DEK");
      assert.deepEqual(await ks.unwrapDataKey(v1, w1, aad("doc-1:file")), dek);
      assert.deepEqual(await ks.unwrapDataKey(v1, w2, aad("doc-1:file")), dek);
    });

    it("refuses to unwrap with other associated data", async () => {
      const w = await ks.wrapDataKey(v1, await ks.generateDataKey(), aad("doc-1:file"));
      await assert.rejects(ks.unwrapDataKey(v1, w, aad("doc-2:file")), KeyIntegrityError);
      await assert.rejects(ks.unwrapDataKey(v1, w, aad("")), KeyIntegrityError);
    });

    it("detects any tampered byte of ciphertext, tag or nonce, and truncation", async () => {
      const w = await ks.wrapDataKey(v1, await ks.generateDataKey(), aad("a"));
      for (const i of [0, 15, 31, 32, 47]) {
        await assert.rejects(
          ks.unwrapDataKey(v1, { nonce: w.nonce, ciphertext: flip(w.ciphertext, i) }, aad("a")),
          KeyIntegrityError,
          `ciphertext byte ${i}`,
        );
      }
      for (const i of [0, 11]) {
        await assert.rejects(
          ks.unwrapDataKey(v1, { nonce: flip(w.nonce, i), ciphertext: w.ciphertext }, aad("a")),
          KeyIntegrityError,
          `nonce byte ${i}`,
        );
      }
      await assert.rejects(
        ks.unwrapDataKey(v1, { nonce: w.nonce, ciphertext: w.ciphertext.subarray(0, 47) }, aad("a")),
        KeyIntegrityError,
      );
      await assert.rejects(
        ks.unwrapDataKey(v1, { nonce: w.nonce.subarray(0, 8), ciphertext: w.ciphertext }, aad("a")),
        KeyIntegrityError,
      );
    });

    it("refuses to unwrap under the wrong master key version", async () => {
      const w = await ks.wrapDataKey(v1, await ks.generateDataKey(), aad("a"));
      await assert.rejects(ks.unwrapDataKey(v2, w, aad("a")), KeyIntegrityError);
    });

    it("names a missing key version with KeyNotFoundError", async () => {
      const missing = masterKeyId(ws, 99);
      assert.equal(await ks.findMasterKey(missing), undefined);
      await assert.rejects(ks.wrapDataKey(missing, Buffer.alloc(32, 1), aad("a")), KeyNotFoundError);
      const w = await ks.wrapDataKey(v1, Buffer.alloc(32, 1), aad("a"));
      await assert.rejects(ks.unwrapDataKey(missing, w, aad("a")), KeyNotFoundError);
      await assert.rejects(ks.keyCheckValue(missing), KeyNotFoundError);
    });

    it("rejects bad input with InvalidInputError", async () => {
      await assert.rejects(ks.wrapDataKey(v1, Buffer.alloc(31), aad("a")), InvalidInputError);
      await assert.rejects(
        ks.wrapDataKey("ws-x/mk/0" as KeyId, Buffer.alloc(32), aad("a")),
        InvalidInputError,
      );
      await assert.rejects(ks.createMasterKey("nonsense" as KeyId), InvalidInputError);
      await assert.rejects(ks.randomBytes(0), InvalidInputError);
    });

    it("re-wraps a DEK from one version to another without changing it", async () => {
      const dek = await ks.generateDataKey();
      const old = await ks.wrapDataKey(v1, dek, aad("v1-bound"));
      const moved = await ks.rewrapDataKey(
        { keyId: v1, aad: aad("v1-bound") },
        { keyId: v2, aad: aad("v2-bound") },
        old,
      );
      assert.deepEqual(await ks.unwrapDataKey(v2, moved, aad("v2-bound")), dek);
      await assert.rejects(ks.unwrapDataKey(v1, moved, aad("v2-bound")), KeyIntegrityError);
      await assert.rejects(
        ks.rewrapDataKey({ keyId: v1, aad: aad("wrong") }, { keyId: v2, aad: aad("x") }, old),
        KeyIntegrityError,
      );
    });

    it("refuses to export a non-extractable master key", async () => {
      const locked = masterKeyId(ws, 3);
      const info = await ks.createMasterKey(locked, { extractable: false });
      assert.equal(info.extractable, false);
      const material = randomBytes(32);
      const t = await ks.importTransportKey(material);
      try {
        await assert.rejects(ks.exportMasterKey(locked, t), KeyOperationNotPermittedError);
      } finally {
        await ks.destroyTransportKey(t);
      }
    });

    it("exports a master key under a transport key (RFC 5649) and imports it into a second token, same KCV", async () => {
      const material = randomBytes(32);
      const tA = await ks.importTransportKey(material);
      const tB = await fx.second.importTransportKey(material);
      try {
        const blob = await ks.exportMasterKey(v1, tA);
        assert.equal(blob.length, 40, "RFC 5649 of a 32-byte key is 40 bytes");
        const kcv = await ks.keyCheckValue(v1);
        const imported = await fx.second.importMasterKey(v1, blob, tB, { expectedKcv: kcv });
        assert.equal(imported.kcv, kcv);
        // The imported key opens what the original wrapped.
        const dek = await ks.generateDataKey();
        const w = await ks.wrapDataKey(v1, dek, aad("moved"));
        assert.deepEqual(await fx.second.unwrapDataKey(v1, w, aad("moved")), dek);
        // A second import of the same version is refused.
        await assert.rejects(fx.second.importMasterKey(v1, blob, tB), KeyAlreadyExistsError);
        // A tampered blob or a wrong transport key is refused, and leaves no key behind.
        const other = await fx.second.importTransportKey(randomBytes(32));
        const target = masterKeyId(ws, 7);
        await assert.rejects(fx.second.importMasterKey(target, flip(blob, 5), tB), KeyIntegrityError);
        await assert.rejects(fx.second.importMasterKey(target, blob, other), KeyIntegrityError);
        await assert.rejects(fx.second.importMasterKey(target, blob.subarray(0, 39), tB), KeyIntegrityError);
        assert.equal(await fx.second.findMasterKey(target), undefined);
        // A KCV that does not match destroys the imported key again.
        await assert.rejects(
          fx.second.importMasterKey(target, blob, tB, { expectedKcv: "000000" }),
          KeyIntegrityError,
        );
        assert.equal(await fx.second.findMasterKey(target), undefined);
        await fx.second.destroyTransportKey(other);
      } finally {
        await ks.destroyTransportKey(tA);
        await fx.second.destroyTransportKey(tB);
      }
    });

    it("refuses a destroyed transport key", async () => {
      const t = await ks.importTransportKey(randomBytes(32));
      await ks.destroyTransportKey(t);
      await assert.rejects(ks.exportMasterKey(v1, t), KeyNotFoundError);
      await assert.rejects(ks.importTransportKey(randomBytes(16)), InvalidInputError);
    });

    it("serves 32 concurrent wrap/unwrap callers with no error and no mix-up", async () => {
      const callers = Array.from({ length: 32 }, (_, i) => i);
      const results = await Promise.all(
        callers.map(async (i) => {
          const key = i % 2 === 0 ? v1 : v2;
          const out: boolean[] = [];
          for (let round = 0; round < 5; round++) {
            const dek = await ks.generateDataKey();
            const bound = aad(`caller-${i}/round-${round}`);
            const w: WrappedDataKey = await ks.wrapDataKey(key, dek, bound);
            const back = await ks.unwrapDataKey(key, w, bound);
            out.push(back.equals(dek));
          }
          return out.every(Boolean);
        }),
      );
      assert.deepEqual(
        results,
        callers.map(() => true),
      );
    });

    it("recovers from sessions closed underneath it (reopens and logs in again)", async () => {
      const dek = await ks.generateDataKey();
      const w = await ks.wrapDataKey(v1, dek, aad("before"));
      await fx.dropAllSessions();
      assert.deepEqual(await ks.unwrapDataKey(v1, w, aad("before")), dek);
      const again = await ks.wrapDataKey(v2, dek, aad("after"));
      await fx.dropAllSessions();
      const results = await Promise.all(
        Array.from({ length: 8 }, () => ks.unwrapDataKey(v2, again, aad("after"))),
      );
      for (const r of results) assert.deepEqual(r, dek);
    });

    it("keeps a drill key pair whose private key opens RSA-OAEP blobs only inside the HSM", async () => {
      const oaepHash = fx.oaepHash ?? "SHA-1";
      const id = drillKeyId(ws, 1);
      const created = await ks.createDrillKey(id);
      await assert.rejects(ks.createDrillKey(id), KeyAlreadyExistsError);
      const found = await ks.getDrillKey(id);
      assert.deepEqual(Buffer.from(found!.publicKeySpki), Buffer.from(created.publicKeySpki));
      assert.equal(await ks.getDrillKey(drillKeyId(ws, 2)), undefined);
      const pub = createPublicKey({ key: Buffer.from(created.publicKeySpki), format: "der", type: "spki" });
      assert.equal(pub.asymmetricKeyDetails?.modulusLength, 3072);
      const seal = (k: Buffer) =>
        publicEncrypt(
          {
            key: pub,
            padding: constants.RSA_PKCS1_OAEP_PADDING,
            oaepHash: oaepHash === "SHA-1" ? "sha1" : "sha256",
          },
          k,
        );

      // An unwrap-only session key proves a wrapped master key by its KCV, without the key leaving.
      const kWrap = randomBytes(32);
      const mk = randomBytes(32);
      const unwrapRef = await ks.unwrapWithDrillKey(id, seal(kWrap), { oaepHash, purpose: "unwrap" });
      assert.equal(await ks.checkWrappedMasterKey(unwrapRef, soft.kwp(kWrap, mk)), soft.kcv(mk));
      await assert.rejects(
        ks.checkWrappedMasterKey(unwrapRef, flip(soft.kwp(kWrap, mk), 9)),
        KeyIntegrityError,
      );

      // A decrypt-only session key opens AES-GCM data, and only with the right associated data.
      const kBody = randomBytes(32);
      const nonce = randomBytes(12);
      const body = Buffer.from('{"masterKeys":[]}');
      const ct = soft.gcm(kBody, nonce, aad("header"), body);
      const decRef = await ks.unwrapWithDrillKey(id, seal(kBody), { oaepHash, purpose: "decrypt" });
      assert.deepEqual(
        await ks.decryptWithSessionKey(decRef, { nonce, ciphertext: ct, aad: aad("header") }),
        body,
      );
      await assert.rejects(
        ks.decryptWithSessionKey(decRef, { nonce, ciphertext: ct, aad: aad("other") }),
        KeyIntegrityError,
      );

      // Each session key does only its own job.
      await assert.rejects(
        ks.checkWrappedMasterKey(decRef, soft.kwp(kBody, mk)),
        KeyOperationNotPermittedError,
      );
      await assert.rejects(
        ks.decryptWithSessionKey(unwrapRef, { nonce, ciphertext: ct, aad: aad("header") }),
        KeyOperationNotPermittedError,
      );
      // A tampered RSA blob is refused.
      await assert.rejects(
        ks.unwrapWithDrillKey(id, flip(seal(kBody), 100), { oaepHash, purpose: "decrypt" }),
        KeyIntegrityError,
      );
      await ks.destroyTransportKey(unwrapRef);
      await ks.destroyTransportKey(decRef);
      await assert.rejects(ks.checkWrappedMasterKey(unwrapRef, soft.kwp(kWrap, mk)), KeyNotFoundError);
    });

    it("proves a master key exported under a transport key by its KCV", async () => {
      const material = randomBytes(32);
      const t = await ks.importTransportKey(material);
      const blob = await ks.exportMasterKey(v2, t);
      assert.equal(await ks.checkWrappedMasterKey(t, blob), await ks.keyCheckValue(v2));
      await ks.destroyTransportKey(t);
    });

    it("recovers an exported master key into a decrypt-only scratch session object that opens its DEKs", async () => {
      const t = await ks.importTransportKey(randomBytes(32));
      const listed = (await ks.listMasterKeys(ws)).map((k) => k.keyId);
      try {
        const blob = await ks.exportMasterKey(v1, t);
        const kcv = await ks.keyCheckValue(v1);
        const scratch = await ks.unwrapMasterKeyToSession(t, blob, { expectedKcv: kcv.toLowerCase() });
        // A session object, not a token object: no master key version appeared.
        assert.deepEqual(
          (await ks.listMasterKeys(ws)).map((k) => k.keyId),
          listed,
        );
        assert.ok(!listed.includes(scratch.id as KeyId));

        // A DEK wrapped under the token key opens with the scratch key, bound to the same associated data.
        const dek = await ks.generateDataKey();
        const w = await ks.wrapDataKey(v1, dek, aad("doc-s:file"));
        assert.deepEqual(await ks.unwrapDataKeyWithSessionKey(scratch, w, aad("doc-s:file")), dek);
        await assert.rejects(
          ks.unwrapDataKeyWithSessionKey(scratch, w, aad("doc-s:thumb")),
          KeyIntegrityError,
        );
        for (const i of [0, 31, 47]) {
          await assert.rejects(
            ks.unwrapDataKeyWithSessionKey(
              scratch,
              { nonce: w.nonce, ciphertext: flip(w.ciphertext, i) },
              aad("doc-s:file"),
            ),
            KeyIntegrityError,
            `ciphertext byte ${i}`,
          );
        }
        await assert.rejects(
          ks.unwrapDataKeyWithSessionKey(
            scratch,
            { nonce: flip(w.nonce, 3), ciphertext: w.ciphertext },
            aad("doc-s:file"),
          ),
          KeyIntegrityError,
        );
        await assert.rejects(
          ks.unwrapDataKeyWithSessionKey(
            scratch,
            { nonce: w.nonce, ciphertext: w.ciphertext.subarray(0, 40) },
            aad("doc-s:file"),
          ),
          KeyIntegrityError,
        );
        // A DEK wrapped under another version does not open.
        const other = await ks.wrapDataKey(v2, dek, aad("doc-s:file"));
        await assert.rejects(
          ks.unwrapDataKeyWithSessionKey(scratch, other, aad("doc-s:file")),
          KeyIntegrityError,
        );

        // It only decrypts DEKs: no wrap, no unwrap, no export, no plain GCM decryption.
        await assert.rejects(ks.exportMasterKey(v1, scratch), KeyOperationNotPermittedError);
        await assert.rejects(ks.checkWrappedMasterKey(scratch, blob), KeyOperationNotPermittedError);
        await assert.rejects(
          ks.unwrapMasterKeyToSession(scratch, blob, { expectedKcv: kcv }),
          KeyOperationNotPermittedError,
        );
        await assert.rejects(
          ks.decryptWithSessionKey(scratch, {
            nonce: w.nonce,
            ciphertext: w.ciphertext,
            aad: aad("doc-s:file"),
          }),
          KeyOperationNotPermittedError,
        );
        // And a transport key is not a scratch master key.
        await assert.rejects(
          ks.unwrapDataKeyWithSessionKey(t, w, aad("doc-s:file")),
          KeyOperationNotPermittedError,
        );

        // Destroyed, it is gone; destroying again changes nothing.
        await ks.destroyTransportKey(scratch);
        await assert.rejects(ks.unwrapDataKeyWithSessionKey(scratch, w, aad("doc-s:file")), KeyNotFoundError);
        await ks.destroyTransportKey(scratch);
        // The token key is untouched.
        assert.deepEqual(await ks.unwrapDataKey(v1, w, aad("doc-s:file")), dek);
        assert.equal(await ks.keyCheckValue(v1), kcv);
      } finally {
        await ks.destroyTransportKey(t);
      }
    });

    it("refuses a scratch master key with a wrong KCV, a tampered blob, a wrong unwrap key, or a bad request", async () => {
      const t = await ks.importTransportKey(randomBytes(32));
      const wrongT = await ks.importTransportKey(randomBytes(32));
      try {
        const blob = await ks.exportMasterKey(v2, t);
        const kcv = await ks.keyCheckValue(v2);
        const otherKcv = await ks.keyCheckValue(v1);
        await assert.rejects(
          ks.unwrapMasterKeyToSession(t, blob, { expectedKcv: otherKcv }),
          KeyIntegrityError,
        );
        await assert.rejects(
          ks.unwrapMasterKeyToSession(t, flip(blob, 5), { expectedKcv: kcv }),
          KeyIntegrityError,
        );
        await assert.rejects(
          ks.unwrapMasterKeyToSession(t, flip(blob, 39), { expectedKcv: kcv }),
          KeyIntegrityError,
        );
        await assert.rejects(
          ks.unwrapMasterKeyToSession(t, blob.subarray(0, 39), { expectedKcv: kcv }),
          KeyIntegrityError,
        );
        await assert.rejects(
          ks.unwrapMasterKeyToSession(wrongT, blob, { expectedKcv: kcv }),
          KeyIntegrityError,
        );
        await assert.rejects(ks.unwrapMasterKeyToSession(t, blob, { expectedKcv: "XYZ" }), InvalidInputError);
        await assert.rejects(
          ks.unwrapMasterKeyToSession(t, blob, {} as { expectedKcv: string }),
          InvalidInputError,
        );
        await assert.rejects(
          ks.unwrapMasterKeyToSession({ id: "transport/none" }, blob, { expectedKcv: kcv }),
          KeyNotFoundError,
        );
        // The store still works, and the right request still succeeds.
        const ok = await ks.unwrapMasterKeyToSession(t, blob, { expectedKcv: kcv });
        await ks.destroyTransportKey(ok);
      } finally {
        await ks.destroyTransportKey(t);
        await ks.destroyTransportKey(wrongT);
      }
    });

    it("recovers a master key through drill-slot session keys: unwrap purpose only", async () => {
      const oaepHash = fx.oaepHash ?? "SHA-1";
      const id = drillKeyId(ws, 4);
      const created = await ks.createDrillKey(id);
      const pub = createPublicKey({ key: Buffer.from(created.publicKeySpki), format: "der", type: "spki" });
      const seal = (k: Buffer) =>
        publicEncrypt(
          {
            key: pub,
            padding: constants.RSA_PKCS1_OAEP_PADDING,
            oaepHash: oaepHash === "SHA-1" ? "sha1" : "sha256",
          },
          k,
        );
      const kWrap = randomBytes(32);
      const mk = randomBytes(32);
      const blob = soft.kwp(kWrap, mk);
      const unwrapRef = await ks.unwrapWithDrillKey(id, seal(kWrap), { oaepHash, purpose: "unwrap" });
      const decRef = await ks.unwrapWithDrillKey(id, seal(kWrap), { oaepHash, purpose: "decrypt" });
      try {
        // A decrypt-purpose key (even with the right value) does not unwrap a master key.
        await assert.rejects(
          ks.unwrapMasterKeyToSession(decRef, blob, { expectedKcv: soft.kcv(mk) }),
          KeyOperationNotPermittedError,
        );
        await assert.rejects(
          ks.unwrapDataKeyWithSessionKey(
            decRef,
            { nonce: randomBytes(12), ciphertext: randomBytes(48) },
            aad("x"),
          ),
          KeyOperationNotPermittedError,
        );
        const scratch = await ks.unwrapMasterKeyToSession(unwrapRef, blob, { expectedKcv: soft.kcv(mk) });
        // The recovered key opens a DEK wrapped in software under the same key material.
        const dek = randomBytes(32);
        const nonce = randomBytes(12);
        const ct = soft.gcm(mk, nonce, aad("ws/doc/file"), dek);
        assert.deepEqual(
          await ks.unwrapDataKeyWithSessionKey(scratch, { nonce, ciphertext: ct }, aad("ws/doc/file")),
          dek,
        );
        await ks.destroyTransportKey(scratch);
        await assert.rejects(
          ks.unwrapDataKeyWithSessionKey(scratch, { nonce, ciphertext: ct }, aad("ws/doc/file")),
          KeyNotFoundError,
        );
      } finally {
        await ks.destroyTransportKey(unwrapRef);
        await ks.destroyTransportKey(decRef);
      }
    });

    it("loses scratch master keys with the HSM session that held them (typed error, no stale use)", async () => {
      const t = await ks.importTransportKey(randomBytes(32));
      const blob = await ks.exportMasterKey(v1, t);
      const scratch = await ks.unwrapMasterKeyToSession(t, blob, { expectedKcv: await ks.keyCheckValue(v1) });
      const w = await ks.wrapDataKey(v1, await ks.generateDataKey(), aad("lost"));
      await fx.dropAllSessions();
      // SessionKeyLostError (a KeyNotFoundError, retryable: loading the key again works), every time it is used.
      await assert.rejects(ks.unwrapDataKeyWithSessionKey(scratch, w, aad("lost")), SessionKeyLostError);
      await assert.rejects(ks.unwrapDataKeyWithSessionKey(scratch, w, aad("lost")), SessionKeyLostError);
      await assert.rejects(
        ks.unwrapMasterKeyToSession(t, blob, { expectedKcv: "000000" }),
        SessionKeyLostError,
      );
      await ks.destroyTransportKey(scratch);
      await ks.destroyTransportKey(t);
      // The token keys are still there.
      assert.ok(await ks.findMasterKey(v1));
    });

    it("destroys a key version; it can no longer be used", async () => {
      const doomed = masterKeyId(ws, 9);
      await ks.createMasterKey(doomed);
      const w = await ks.wrapDataKey(doomed, Buffer.alloc(32, 7), aad("d"));
      await ks.destroyMasterKey(doomed);
      assert.equal(await ks.findMasterKey(doomed), undefined);
      await assert.rejects(ks.unwrapDataKey(doomed, w, aad("d")), KeyNotFoundError);
      await assert.rejects(ks.destroyMasterKey(doomed), KeyNotFoundError);
    });
  });
}
