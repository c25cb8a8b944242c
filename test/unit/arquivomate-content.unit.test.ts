import assert from "node:assert/strict";
import { createCipheriv, createHmac, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { ContentIntegrityError, decryptContent, encryptContent } from "../../core/content/arquivomate-v2.js";

describe("ArquivoMate content format 2", () => {
  const dek = randomBytes(32);
  const text = Buffer.from("canary document: known content");

  it("matches the format built independently from its definition", () => {
    const iv = randomBytes(16);
    const enc = createHmac("sha256", dek).update("enc").digest();
    const mac = createHmac("sha256", dek).update("mac").digest();
    const c = createCipheriv("aes-256-cbc", enc, iv);
    const ct = Buffer.concat([c.update(text), c.final()]);
    const expected = Buffer.concat([
      Buffer.from([2]),
      iv,
      ct,
      createHmac("sha256", mac).update(iv).update(ct).digest(),
    ]);
    assert.deepEqual(encryptContent(dek, text, iv), expected);
    assert.deepEqual(decryptContent(dek, expected), text);
  });

  it("rejects a flipped byte anywhere, truncation, a wrong key and a wrong version", () => {
    const blob = encryptContent(dek, text);
    for (let i = 0; i < blob.length; i++) {
      const t = Buffer.from(blob);
      t[i] = (t[i] ?? 0) ^ 1;
      assert.throws(() => decryptContent(dek, t), ContentIntegrityError, `byte ${i}`);
    }
    assert.throws(() => decryptContent(dek, blob.subarray(0, blob.length - 1)), ContentIntegrityError);
    assert.throws(() => decryptContent(randomBytes(32), blob), ContentIntegrityError);
    assert.throws(() => decryptContent(dek, Buffer.alloc(10)), ContentIntegrityError);
  });
});
