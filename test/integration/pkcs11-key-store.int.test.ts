/**
 * The KeyStore contract against a real PKCS#11 token: SoftHSM2 (two fresh tokens private to this run) by default,
 * or any other PKCS#11 library when AMK_CONTRACT_PKCS11_LIBRARY, AMK_CONTRACT_TOKEN (and AMK_CONTRACT_TOKEN_2),
 * AMK_CONTRACT_PIN_FILE are set. Plus what is specific to the adapter: configuration errors, closing.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Pkcs11KeyStore, type Pkcs11KeyStoreOptions } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { acquirePkcs11Module } from "../../core/adapters/pkcs11/library.js";
import { KeyStoreClosedError, KeyStoreConfigError } from "../../core/keystore/errors.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import { readPinFile } from "../../cli/local/softhsm.js";
import { keyStoreContract } from "../contract/key-store.contract.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

let hsm: TestHsm | undefined;

async function tokenOptions(): Promise<[Pkcs11KeyStoreOptions, Pkcs11KeyStoreOptions]> {
  const lib = process.env.AMK_CONTRACT_PKCS11_LIBRARY;
  if (lib) {
    const pinFile = process.env.AMK_CONTRACT_PIN_FILE ?? "";
    const pin = () => readPinFile(pinFile);
    const a = process.env.AMK_CONTRACT_TOKEN ?? "";
    const b = process.env.AMK_CONTRACT_TOKEN_2 ?? a;
    return [
      { config: { libraryPath: lib, tokenLabel: a }, pin },
      { config: { libraryPath: lib, tokenLabel: b }, pin },
    ];
  }
  hsm ??= await createTestHsm(["contract-a", "contract-b"]);
  return [hsm.options(hsm.tokens[0]!), hsm.options(hsm.tokens[1]!)];
}

function closeAllSessions(options: Pkcs11KeyStoreOptions): void {
  const mod = acquirePkcs11Module(options.config.libraryPath);
  try {
    for (const slot of mod.pkcs11.C_GetSlotList(true)) {
      if (mod.pkcs11.C_GetTokenInfo(slot).label.trim() === options.config.tokenLabel) {
        mod.pkcs11.C_CloseAllSessions(slot);
      }
    }
  } finally {
    mod.release();
  }
}

keyStoreContract(
  process.env.AMK_CONTRACT_PKCS11_LIBRARY ? "configured PKCS#11 token" : "SoftHSM2",
  async () => {
    const [a, b] = await tokenOptions();
    const store = await Pkcs11KeyStore.open(a);
    const second = await Pkcs11KeyStore.open(b);
    return {
      store,
      second,
      dropAllSessions: async () => closeAllSessions(a),
      oaepHash: process.env.AMK_CONTRACT_OAEP_HASH === "SHA-256" ? "SHA-256" : "SHA-1",
      close: async () => {
        await store.close();
        await second.close();
      },
    };
  },
);

describe("Pkcs11KeyStore configuration and lifecycle", () => {
  let good: Pkcs11KeyStoreOptions;
  before(async () => {
    [good] = await tokenOptions();
  });
  after(async () => {
    await hsm?.cleanup();
  });

  it("names a missing token label and lists the ones it found", async () => {
    await assert.rejects(
      Pkcs11KeyStore.open({ ...good, config: { ...good.config, tokenLabel: "no-such-token" } }),
      (err: unknown) =>
        err instanceof KeyStoreConfigError &&
        /no token labelled "no-such-token"/.test(err.message) &&
        /found:/.test(err.message),
    );
  });

  it("reports a wrong PIN as a configuration error, without the PIN in the message", async () => {
    const wrong = "not-the-pin-123456";
    await assert.rejects(
      Pkcs11KeyStore.open({ ...good, pin: async () => wrong }),
      (err: unknown) =>
        err instanceof KeyStoreConfigError &&
        /CKR_PIN_INCORRECT/.test(err.message) &&
        !JSON.stringify(err.toJSON()).includes(wrong),
    );
  });

  it("reports a library that cannot be loaded", async () => {
    await assert.rejects(
      Pkcs11KeyStore.open({ ...good, config: { ...good.config, libraryPath: "/nonexistent/libpkcs11.so" } }),
      (err: unknown) => err instanceof KeyStoreConfigError && /could not be loaded/.test(err.message),
    );
  });

  it("validates the configuration with clear messages", async () => {
    await assert.rejects(
      Pkcs11KeyStore.open({ ...good, config: { ...good.config, poolSize: 0 } }),
      (err: unknown) => err instanceof KeyStoreConfigError && /poolSize/.test(err.message),
    );
  });

  it("works with a pool of one session under concurrent callers, and refuses calls once closed", async () => {
    const store = await Pkcs11KeyStore.open({ ...good, config: { ...good.config, poolSize: 1 } });
    const k = masterKeyId(`pool-${Date.now()}`, 1);
    await store.createMasterKey(k);
    const deks = await Promise.all(Array.from({ length: 16 }, () => store.generateDataKey()));
    const wrapped = await Promise.all(deks.map((d) => store.wrapDataKey(k, d, Buffer.from("p"))));
    const back = await Promise.all(wrapped.map((w) => store.unwrapDataKey(k, w, Buffer.from("p"))));
    back.forEach((b, i) => assert.deepEqual(b, deks[i]));
    assert.equal((await store.health()).sessionsOpen, 1);
    await store.destroyMasterKey(k);
    await store.close();
    await assert.rejects(store.generateDataKey(), KeyStoreClosedError);
  });
});
