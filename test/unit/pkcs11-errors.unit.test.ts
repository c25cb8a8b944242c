import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pkcs11js from "pkcs11js";
import { ckrName, classifyCkr, toKeyStoreError } from "../../core/adapters/pkcs11/ckr.js";
import { parsePkcs11Config, pkcs11ConfigFromEnv } from "../../core/adapters/pkcs11/config.js";
import {
  HsmOperationError,
  HsmUnavailableError,
  KeyIntegrityError,
  KeyNotFoundError,
  KeyOperationNotPermittedError,
  KeyStoreConfigError,
} from "../../core/keystore/errors.js";
import { backoffDelay } from "../../core/shared/retry.js";

const ckrError = (code: number) =>
  Object.assign(new Error(ckrName(code)), { name: "Pkcs11Error", code, method: "C_Test" });

describe("CKR_* translation", () => {
  it("names return codes", () => {
    assert.equal(ckrName(pkcs11js.CKR_KEY_UNEXTRACTABLE), "CKR_KEY_UNEXTRACTABLE");
    assert.equal(ckrName(0x7ffffff1), "CKR_0x7ffffff1");
  });

  it("classifies codes by what the adapter does about them", () => {
    assert.equal(classifyCkr(pkcs11js.CKR_SESSION_HANDLE_INVALID), "session");
    assert.equal(classifyCkr(pkcs11js.CKR_USER_NOT_LOGGED_IN), "session");
    assert.equal(classifyCkr(pkcs11js.CKR_DEVICE_REMOVED), "session");
    assert.equal(classifyCkr(pkcs11js.CKR_FUNCTION_FAILED), "transient");
    assert.equal(classifyCkr(pkcs11js.CKR_DEVICE_ERROR), "transient");
    assert.equal(classifyCkr(pkcs11js.CKR_KEY_HANDLE_INVALID), "stale-handle");
    assert.equal(classifyCkr(pkcs11js.CKR_ENCRYPTED_DATA_INVALID), "integrity");
    assert.equal(classifyCkr(pkcs11js.CKR_GENERAL_ERROR), "other");
    assert.equal(classifyCkr(pkcs11js.CKR_GENERAL_ERROR, { authenticatedDecrypt: true }), "integrity");
    assert.equal(classifyCkr(pkcs11js.CKR_KEY_UNEXTRACTABLE), "not-permitted");
    assert.equal(classifyCkr(pkcs11js.CKR_PIN_INCORRECT), "config");
  });

  it("maps each class to its domain error, keeping the code and cause", () => {
    const cases: [number, new (...a: never[]) => Error][] = [
      [pkcs11js.CKR_DEVICE_ERROR, HsmUnavailableError],
      [pkcs11js.CKR_SESSION_CLOSED, HsmUnavailableError],
      [pkcs11js.CKR_OBJECT_HANDLE_INVALID, KeyNotFoundError],
      [pkcs11js.CKR_WRAPPED_KEY_INVALID, KeyIntegrityError],
      [pkcs11js.CKR_KEY_FUNCTION_NOT_PERMITTED, KeyOperationNotPermittedError],
      [pkcs11js.CKR_PIN_LOCKED, KeyStoreConfigError],
      [pkcs11js.CKR_TEMPLATE_INCONSISTENT, HsmOperationError],
    ];
    for (const [code, cls] of cases) {
      const source = ckrError(code);
      const e = toKeyStoreError(source, "op", { keyId: "ws-a/mk/1" });
      assert.ok(e instanceof cls, `${ckrName(code)} -> ${cls.name}, got ${e.name}`);
      assert.equal(e.context.ckr, ckrName(code));
      assert.equal(e.context.keyId, "ws-a/mk/1");
      assert.equal(e.cause, source);
    }
    assert.equal(toKeyStoreError(ckrError(pkcs11js.CKR_DEVICE_ERROR), "op", {}).retryable, true);
    assert.equal(toKeyStoreError(ckrError(pkcs11js.CKR_WRAPPED_KEY_INVALID), "op", {}).retryable, false);
  });

  it("passes domain errors through and wraps foreign errors", () => {
    const domain = new KeyNotFoundError("x");
    assert.equal(toKeyStoreError(domain, "op", {}), domain);
    assert.ok(toKeyStoreError(new TypeError("boom"), "op", {}) instanceof HsmOperationError);
  });
});

describe("retry backoff", () => {
  const policy = { maxAttempts: 5, baseDelayMs: 10, maxDelayMs: 100 };
  it("grows exponentially with full jitter and a cap", () => {
    assert.equal(
      backoffDelay(policy, 1, () => 0.999),
      9,
    );
    assert.equal(
      backoffDelay(policy, 2, () => 0.999),
      19,
    );
    assert.equal(
      backoffDelay(policy, 3, () => 0.999),
      39,
    );
    assert.equal(
      backoffDelay(policy, 10, () => 0.999),
      99,
    );
    assert.equal(
      backoffDelay(policy, 3, () => 0),
      0,
    );
  });
});

describe("PKCS#11 configuration", () => {
  it("applies defaults and reads the environment", () => {
    const c = pkcs11ConfigFromEnv({
      AMK_PKCS11_LIBRARY: "/lib.so",
      AMK_PKCS11_TOKEN_LABEL: "hsm1",
      AMK_PKCS11_POOL_SIZE: "8",
    });
    assert.deepEqual(c, {
      libraryPath: "/lib.so",
      tokenLabel: "hsm1",
      poolSize: 8,
      maxAttempts: 4,
      backoffBaseMs: 20,
      backoffMaxMs: 1000,
      gcmParams: "v240",
    });
  });
  it("rejects missing or bad values with every problem named", () => {
    assert.throws(
      () => pkcs11ConfigFromEnv({}),
      (e: unknown) =>
        e instanceof KeyStoreConfigError && /libraryPath/.test(e.message) && /tokenLabel/.test(e.message),
    );
    assert.throws(
      () =>
        pkcs11ConfigFromEnv({
          AMK_PKCS11_LIBRARY: "/l",
          AMK_PKCS11_TOKEN_LABEL: "t",
          AMK_PKCS11_POOL_SIZE: "x",
        }),
      KeyStoreConfigError,
    );
    assert.throws(
      () => parsePkcs11Config({ libraryPath: "/l", tokenLabel: "x".repeat(33) }),
      KeyStoreConfigError,
    );
  });
});
