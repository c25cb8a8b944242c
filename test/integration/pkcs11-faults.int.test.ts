/**
 * Transient HSM failures injected around the real SoftHSM2 library: the key store retries them with backoff up to
 * its bound, reports exhaustion as HsmUnavailableError (retryable), and never retries a final error.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pkcs11js from "pkcs11js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { HsmUnavailableError, KeyOperationNotPermittedError } from "../../core/keystore/errors.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

/** Fails the next `count` calls of `method` with `code`, then lets calls through to the real library. */
class FaultPlan {
  failures = new Map<string, { code: number; count: number }>();
  calls = new Map<string, number>();
  fail(method: string, code: number, count: number): void {
    this.failures.set(method, { code, count });
    this.calls.set(method, 0);
  }
  wrap(real: pkcs11js.PKCS11): pkcs11js.PKCS11 {
    return new Proxy(real, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          const name = String(prop);
          this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
          const f = this.failures.get(name);
          if (f && f.count > 0) {
            f.count -= 1;
            throw new pkcs11js.Pkcs11Error(`injected ${f.code}`, f.code, name);
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  }
}

describe("key store under injected HSM faults", () => {
  let hsm: TestHsm;
  let store: Pkcs11KeyStore;
  const plan = new FaultPlan();
  const warnings: Record<string, unknown>[] = [];
  const k = masterKeyId("faults", 1);

  before(async () => {
    hsm = await createTestHsm(["faults"]);
    store = await Pkcs11KeyStore.open({
      ...hsm.options(hsm.tokens[0]!, { maxAttempts: 4, backoffBaseMs: 5, backoffMaxMs: 20 }),
      intercept: (p) => plan.wrap(p),
      logger: { warn: (_m, c) => warnings.push(c) },
    });
    await store.createMasterKey(k);
  });
  after(async () => {
    await store?.close();
    await hsm?.cleanup();
  });

  it("retries transient failures (device error, function failed) and succeeds within the bound", async () => {
    const dek = await store.generateDataKey();
    plan.fail("C_Encrypt", pkcs11js.CKR_DEVICE_ERROR, 2);
    warnings.length = 0;
    const w = await store.wrapDataKey(k, dek, Buffer.from("a"));
    assert.equal(plan.calls.get("C_Encrypt"), 3, "two failures, then success");
    assert.deepEqual(
      warnings.map((x) => [x.operation, x.kind, x.attempt]),
      [
        ["wrap data key", "transient", 1],
        ["wrap data key", "transient", 2],
      ],
    );
    plan.fail("C_Decrypt", pkcs11js.CKR_FUNCTION_FAILED, 3);
    assert.deepEqual(await store.unwrapDataKey(k, w, Buffer.from("a")), dek);
    assert.equal(plan.calls.get("C_Decrypt"), 4);
  });

  it("gives up after maxAttempts with a retryable HsmUnavailableError naming the code", async () => {
    plan.fail("C_Encrypt", pkcs11js.CKR_DEVICE_ERROR, 100);
    await assert.rejects(
      store.wrapDataKey(k, Buffer.alloc(32, 1), Buffer.from("a")),
      (e: unknown) => e instanceof HsmUnavailableError && e.retryable && e.context.ckr === "CKR_DEVICE_ERROR",
    );
    assert.equal(plan.calls.get("C_Encrypt"), 4, "exactly maxAttempts calls");
    plan.fail("C_Encrypt", pkcs11js.CKR_DEVICE_ERROR, 0);
  });

  it("does not retry a final error", async () => {
    plan.fail("C_Encrypt", pkcs11js.CKR_KEY_FUNCTION_NOT_PERMITTED, 5);
    await assert.rejects(
      store.wrapDataKey(k, Buffer.alloc(32, 1), Buffer.from("a")),
      KeyOperationNotPermittedError,
    );
    assert.equal(plan.calls.get("C_Encrypt"), 1);
    plan.fail("C_Encrypt", 0, 0);
  });

  it("recovers when the session turns invalid mid-operation", async () => {
    plan.fail("C_EncryptInit", pkcs11js.CKR_SESSION_HANDLE_INVALID, 1);
    const w = await store.wrapDataKey(k, Buffer.alloc(32, 2), Buffer.from("s"));
    assert.deepEqual(await store.unwrapDataKey(k, w, Buffer.from("s")), Buffer.alloc(32, 2));
  });
});
