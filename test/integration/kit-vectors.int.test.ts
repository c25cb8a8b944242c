/**
 * Recovery-kit test vectors (test/vectors/kit-vectors.json, made from docs/kit-format.md by an independent
 * generator) against the production reader; master keys of success vectors are proven inside SoftHSM2.
 */
import assert from "node:assert/strict";
import { createCipheriv } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import {
  KitError,
  KitHeaderError,
  KitIntegrityError,
  KitUnsupportedVersionError,
  KitWrongFactorError,
  KitWrongPassphraseError,
} from "../../core/kit/errors.js";
import { readKit } from "../../core/kit/format.js";
import { openKitAsAdmin } from "../../core/kit/kit.js";
import { proveMasterKeysInHsm } from "../../core/kit/kit-service.js";
import { zeroize } from "../../core/shared/bytes.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

interface Vector {
  name: string;
  expect:
    | "success"
    | "header failure"
    | "integrity failure"
    | "wrong passphrase"
    | "wrong factor"
    | "unsupported version";
  check?: string;
  encoding: "binary" | "armour";
  kit: string;
  open?: {
    adminId: string;
    passphrase: string;
    factor:
      { type: "totp"; releaseKey: string } | { type: "hmac-sha1"; response: string; tokenSecret?: string };
  };
  masterKeys?: { keyId: string; kcv: string; state: string; key: string }[];
  fingerprint?: string;
}
const file = JSON.parse(readFileSync(new URL("../vectors/kit-vectors.json", import.meta.url), "utf8")) as {
  vectors: Vector[];
};

const errorFor: Record<Vector["expect"], (new (...a: never[]) => KitError) | undefined> = {
  success: undefined,
  "header failure": KitHeaderError,
  "unsupported version": KitUnsupportedVersionError,
  "integrity failure": KitIntegrityError,
  "wrong passphrase": KitWrongPassphraseError,
  "wrong factor": KitWrongFactorError,
};

const kcvOf = (key: Buffer) =>
  createCipheriv("aes-256-ecb", key, null)
    .update(Buffer.alloc(16))
    .subarray(0, 3)
    .toString("hex")
    .toUpperCase();

describe("kit test vectors", () => {
  let hsm: TestHsm;
  let ks: Pkcs11KeyStore;
  before(async () => {
    hsm = await createTestHsm(["kit-vectors"]);
    ks = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!));
  });
  after(async () => {
    await ks?.close();
    await hsm?.cleanup();
  });

  it("covers every expectation", () => {
    const kinds = new Set(file.vectors.map((v) => v.expect));
    assert.deepEqual([...kinds].sort(), Object.keys(errorFor).sort());
  });

  for (const v of file.vectors) {
    it(`${v.expect}: ${v.name}`, async () => {
      const attempt = async () => {
        const kit = readKit(v.encoding === "armour" ? v.kit : Buffer.from(v.kit, "base64"));
        if (!v.open) return { kit, kcvs: [] as { keyId: string; kcv: string }[] };
        const f = v.open.factor;
        const opened = await openKitAsAdmin(kit, {
          adminId: v.open.adminId,
          passphrase: v.open.passphrase,
          factorMaterial: async () => Buffer.from(f.type === "totp" ? f.releaseKey : f.response, "hex"),
        });
        try {
          return { kit, kcvs: await proveMasterKeysInHsm(ks, opened) };
        } finally {
          zeroize(opened.wrapKey);
        }
      };
      const expected = errorFor[v.expect];
      if (!expected) {
        const { kit, kcvs } = await attempt();
        assert.equal(kit.fingerprint, v.fingerprint);
        assert.deepEqual(
          kcvs,
          v.masterKeys!.map((m) => ({ keyId: m.keyId, kcv: m.kcv })),
        );
        for (const m of v.masterKeys!)
          assert.equal(kcvOf(Buffer.from(m.key, "hex")), m.kcv, "the vector's own KCV");
        return;
      }
      await assert.rejects(attempt(), (err: unknown) => {
        assert.ok(
          err instanceof expected,
          `expected ${expected.name}, got ${(err as Error)?.name}: ${(err as Error)?.message}`,
        );
        if (v.check) assert.equal((err as KitError).check, v.check, (err as Error).message);
        return true;
      });
    });
  }
});
