/**
 * Generates test/vectors/wrap-records.json: wrap-record test vectors for both wrap formats, positive and negative.
 * Deliberately independent of the production code (only node:crypto and the format as written in
 * docs/wrap-formats.md), so it can also make records the production encoder never would.
 *
 *   npx tsx test/vectors/generate-wrap-vectors.ts
 */
import { createCipheriv, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const hex = (b: Buffer) => b.toString("hex");
const b64 = (b: Buffer) => b.toString("base64");

function gcm(key: Buffer, nonce: Buffer, aad: Buffer, plain: Buffer): Buffer {
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

/** RFC 5649 key wrap with padding (Node's id-aes256-wrap-pad, fixed alternative IV A65959A6). */
function wrapPad(kek: Buffer, key: Buffer): Buffer {
  const c = createCipheriv("id-aes256-wrap-pad", kek, Buffer.from("A65959A6", "hex"));
  return Buffer.concat([c.update(key), c.final()]);
}

const transport = randomBytes(32);
const legacyMk = randomBytes(32);
const amkMk = randomBytes(32);
const otherMk = randomBytes(32);
const ws = "vectors";
const legacyKeyId = `ws-${ws}/mk/1`;
const amkKeyId = `ws-${ws}/mk/2`;
const otherKeyId = `ws-${ws}/mk/3`;
const doc = "3f2b8c1e-7d4a-4e5b-9c6d-0a1b2c3d4e5f";
const otherDoc = "9e8d7c6b-5a49-4837-8261-504f3e2d1c0b";

const legacyAad = (artifact: string) => Buffer.from(`DEK:${artifact}`, "utf8");
const amkAad = (w: string, d: string, artifact: string, keyId: string) =>
  Buffer.from(["AMK-GCM-V1", w, d, artifact, keyId].join("\n"), "utf8");

type Expect = "success" | "integrity failure" | "corrupt record";
interface Vector {
  name: string;
  expect: Expect;
  format: "ARQ-GCM-LEGACY" | "AMK-GCM-V1";
  /** Which master key the reader uses (a KeyId of `masterKeys`). */
  keyId: string;
  /** What the reader binds the unwrap to. */
  workspaceId: string;
  documentId: string;
  artifact: string;
  record: { Artifact: string; WrappedDek: string; WrapNonce: string; Algorithm: string; Version: string };
  /** The DEK a successful unwrap yields (hex); absent for failures. */
  dek?: string;
}

function record(artifact: string, ct: Buffer, nonce: Buffer) {
  return {
    Artifact: artifact,
    WrappedDek: b64(ct),
    WrapNonce: b64(nonce),
    Algorithm: "AES-256-CBC-HMACSHA256",
    Version: "2",
  };
}
const flip = (b: Buffer, i: number) => {
  const c = Buffer.from(b);
  c[i] = (c[i] ?? 0) ^ 0x80;
  return c;
};

const vectors: Vector[] = [];
{
  const dek = randomBytes(32);
  const nonce = randomBytes(12);
  const ct = gcm(legacyMk, nonce, legacyAad("file"), dek);
  const base = {
    format: "ARQ-GCM-LEGACY" as const,
    keyId: legacyKeyId,
    workspaceId: ws,
    documentId: doc,
    artifact: "file",
  };
  vectors.push({
    name: "legacy: ArquivoMate record unwraps",
    expect: "success",
    ...base,
    record: record("file", ct, nonce),
    dek: hex(dek),
  });
  vectors.push({
    name: "legacy: legacy records are not bound to a document (any document opens them)",
    expect: "success",
    ...base,
    documentId: otherDoc,
    record: record("file", ct, nonce),
    dek: hex(dek),
  });
  vectors.push({
    name: "legacy: tampered ciphertext byte",
    expect: "integrity failure",
    ...base,
    record: record("file", flip(ct, 3), nonce),
  });
  vectors.push({
    name: "legacy: tampered tag byte",
    expect: "integrity failure",
    ...base,
    record: record("file", flip(ct, 47), nonce),
  });
  vectors.push({
    name: "legacy: tampered nonce",
    expect: "integrity failure",
    ...base,
    record: record("file", ct, flip(nonce, 0)),
  });
  vectors.push({
    name: "legacy: file key presented as thumb",
    expect: "integrity failure",
    ...base,
    artifact: "thumb",
    record: record("thumb", ct, nonce),
  });
  vectors.push({
    name: "legacy: wrong master key",
    expect: "integrity failure",
    ...base,
    keyId: otherKeyId,
    record: record("file", ct, nonce),
  });
  vectors.push({
    name: "legacy: truncated (tag cut off)",
    expect: "corrupt record",
    ...base,
    record: record("file", ct.subarray(0, 32), nonce),
  });
}
{
  const dek = randomBytes(32);
  const nonce = randomBytes(12);
  const ct = gcm(amkMk, nonce, amkAad(ws, doc, "preview", amkKeyId), dek);
  const base = {
    format: "AMK-GCM-V1" as const,
    keyId: amkKeyId,
    workspaceId: ws,
    documentId: doc,
    artifact: "preview",
  };
  vectors.push({
    name: "amk-v1: record unwraps",
    expect: "success",
    ...base,
    record: record("preview", ct, nonce),
    dek: hex(dek),
  });
  vectors.push({
    name: "amk-v1: moved to another document",
    expect: "integrity failure",
    ...base,
    documentId: otherDoc,
    record: record("preview", ct, nonce),
  });
  vectors.push({
    name: "amk-v1: presented as another artifact",
    expect: "integrity failure",
    ...base,
    artifact: "archive",
    record: record("archive", ct, nonce),
  });
  vectors.push({
    name: "amk-v1: presented in another workspace",
    expect: "integrity failure",
    ...base,
    workspaceId: "elsewhere",
    record: record("preview", ct, nonce),
  });
  vectors.push({
    name: "amk-v1: tampered ciphertext byte",
    expect: "integrity failure",
    ...base,
    record: record("preview", flip(ct, 0), nonce),
  });
  vectors.push({
    name: "amk-v1: tampered nonce",
    expect: "integrity failure",
    ...base,
    record: record("preview", ct, flip(nonce, 11)),
  });
  vectors.push({
    name: "amk-v1: wrong master key version",
    expect: "integrity failure",
    ...base,
    keyId: otherKeyId,
    record: record("preview", ct, nonce),
  });
  vectors.push({
    name: "amk-v1: truncated by one byte",
    expect: "corrupt record",
    ...base,
    record: record("preview", ct.subarray(0, 47), nonce),
  });
  vectors.push({
    name: "amk-v1: nonce of 16 bytes",
    expect: "corrupt record",
    ...base,
    record: record("preview", ct, Buffer.concat([nonce, Buffer.alloc(4)])),
  });
  vectors.push({
    name: "amk-v1: WrappedDek not base64",
    expect: "corrupt record",
    ...base,
    record: { ...record("preview", ct, nonce), WrappedDek: "not base64!" },
  });
}

const out = {
  description:
    "Wrap-record test vectors (docs/wrap-formats.md). Each vector: the reader imports masterKeys into an HSM (each blob is the key wrapped with RFC 5649 under transportKey), then unwraps `record` under `keyId` with the associated data of `format` bound to workspaceId/documentId/artifact. `expect` says what must happen: success (yields `dek`), integrity failure (the GCM tag check fails in the HSM), corrupt record (rejected by shape before any key is used).",
  generator: "test/vectors/generate-wrap-vectors.ts",
  transportKey: hex(transport),
  masterKeys: [
    {
      keyId: legacyKeyId,
      note: "ArquivoMate's static Encryption:MasterKeyBase64",
      blob: hex(wrapPad(transport, legacyMk)),
      raw: hex(legacyMk),
    },
    { keyId: amkKeyId, blob: hex(wrapPad(transport, amkMk)), raw: hex(amkMk) },
    { keyId: otherKeyId, blob: hex(wrapPad(transport, otherMk)), raw: hex(otherMk) },
  ],
  vectors,
};
const target = join(fileURLToPath(new URL(".", import.meta.url)), "wrap-records.json");
writeFileSync(target, `${JSON.stringify(out, null, 2)}\n`);
console.log(`wrote ${vectors.length} vectors to ${target}`);
