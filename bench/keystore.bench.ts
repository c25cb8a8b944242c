/**
 * Key-store benchmark: wrap, unwrap and re-wrap operations per second through the `KeyStore` (Pkcs11KeyStore) and
 * through a bare pkcs11js loop doing the same PKCS#11 calls on the same token, in the same run, interleaved over
 * several rounds (median reported). Target: the KeyStore keeps at least 80% of the bare rate for wrap and unwrap.
 *
 *   npm run bench -- [--ops 4000] [--rounds 5]
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import pkcs11js from "pkcs11js";
import { acquirePkcs11Module } from "../core/adapters/pkcs11/library.js";
import { Pkcs11KeyStore } from "../core/adapters/pkcs11/pkcs11-key-store.js";
import { masterKeyId } from "../core/keystore/key-id.js";
import type { WrappedDataKey } from "../core/keystore/key-store.js";
import { createTestHsm } from "../test/support/softhsm.js";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const OPS = arg("ops", 4000);
const ROUNDS = arg("rounds", 5);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function rate(n: number, op: (i: number) => unknown): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await op(i);
  return n / ((performance.now() - t0) / 1000);
}

/** The bare loop is synchronous: no promise, no await, nothing but the PKCS#11 calls. */
function rateSync(n: number, op: (i: number) => unknown): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) op(i);
  return n / ((performance.now() - t0) / 1000);
}

async function rateConcurrent(
  n: number,
  concurrency: number,
  op: (i: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await op(next++);
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

const hsm = await createTestHsm(["bench"]);
const options = hsm.options(hsm.tokens[0]!);
const store = await Pkcs11KeyStore.open(options);
const v1 = masterKeyId("bench", 1);
const v2 = masterKeyId("bench", 2);
await store.createMasterKey(v1);
await store.createMasterKey(v2);

// The bare loop: its own session on the same token (already logged in by the store), handles looked up once.
const mod = acquirePkcs11Module(options.config.libraryPath);
const p = mod.pkcs11;
const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === "bench")!;
const session = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
const handle = (label: string): Buffer => {
  p.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: label }]);
  const h = p.C_FindObjects(session, 1)[0]!;
  p.C_FindObjectsFinal(session);
  return h;
};
const h1 = handle(v1);
const h2 = handle(v2);
const gcm = (iv: Buffer, aad: Buffer) => ({
  mechanism: pkcs11js.CKM_AES_GCM,
  parameter: { type: pkcs11js.CK_PARAMS_AES_GCM_v240, iv, ivBits: 96, aad, tagBits: 128 },
});
const bareWrap = (h: Buffer, dek: Buffer, aad: Buffer): WrappedDataKey => {
  const nonce = randomBytes(12);
  p.C_EncryptInit(session, gcm(nonce, aad), h);
  return { nonce, ciphertext: p.C_Encrypt(session, dek, Buffer.alloc(48)) };
};
const bareUnwrap = (h: Buffer, w: WrappedDataKey, aad: Buffer): Buffer => {
  p.C_DecryptInit(session, gcm(Buffer.from(w.nonce), aad), h);
  return p.C_Decrypt(session, Buffer.from(w.ciphertext), Buffer.alloc(48));
};

const aad = Buffer.from("ws-bench/doc-00000000-0000-0000-0000-000000000000/file/ws-bench/mk/1");
const aad2 = Buffer.from("ws-bench/doc-00000000-0000-0000-0000-000000000000/file/ws-bench/mk/2");
const dek = randomBytes(32);
const wrapped = bareWrap(h1, dek, aad);
// Sanity: both paths agree on the data before anything is timed.
if (!(await store.unwrapDataKey(v1, wrapped, aad)).equals(dek))
  throw new Error("KeyStore and bare loop disagree");
if (!bareUnwrap(h1, await store.wrapDataKey(v1, dek, aad), aad).equals(dek))
  throw new Error("bare loop disagrees");

type Row = { op: string; bare: number[]; store: number[] };
const rows: Row[] = [
  { op: "wrap", bare: [], store: [] },
  { op: "unwrap", bare: [], store: [] },
  { op: "re-wrap", bare: [], store: [] },
];
// Warm-up.
rateSync(500, () => bareWrap(h1, dek, aad));
await rate(500, () => store.wrapDataKey(v1, dek, aad));

for (let r = 0; r < ROUNDS; r++) {
  rows[0]!.bare.push(rateSync(OPS, () => bareWrap(h1, dek, aad)));
  rows[0]!.store.push(await rate(OPS, () => store.wrapDataKey(v1, dek, aad)));
  rows[1]!.bare.push(rateSync(OPS, () => bareUnwrap(h1, wrapped, aad).fill(0)));
  rows[1]!.store.push(await rate(OPS, async () => (await store.unwrapDataKey(v1, wrapped, aad)).fill(0)));
  rows[2]!.bare.push(
    rateSync(OPS, () => {
      const plain = bareUnwrap(h1, wrapped, aad);
      bareWrap(h2, plain, aad2);
      plain.fill(0);
    }),
  );
  rows[2]!.store.push(
    await rate(OPS, () => store.rewrapDataKey({ keyId: v1, aad }, { keyId: v2, aad: aad2 }, wrapped)),
  );
}
const concurrent16 = await rateConcurrent(OPS, 16, () => store.wrapDataKey(v1, dek, aad));

const fmt = (n: number) => Math.round(n).toLocaleString("en-US").padStart(9);
console.log(
  `\nKeyStore vs bare pkcs11js on SoftHSM2 (${OPS} ops x ${ROUNDS} rounds, median ops/s, Node ${process.version})\n`,
);
console.log("operation |  bare loop |   KeyStore | ratio | target");
console.log("----------|------------|------------|-------|-------");
for (const row of rows) {
  const b = median(row.bare);
  const s = median(row.store);
  const ratio = s / b;
  const target = row.op === "re-wrap" ? "  -" : ratio >= 0.8 ? " met (>= 80%)" : " MISSED (< 80%)";
  console.log(
    `${row.op.padEnd(9)} | ${fmt(b)}  | ${fmt(s)}  | ${(ratio * 100).toFixed(0).padStart(4)}% |${target}`,
  );
}
console.log(`\nKeyStore wrap at concurrency 16 (pool of 4 sessions): ${fmt(concurrent16).trim()} ops/s`);

p.C_CloseSession(session);
mod.release();
await store.close();
await hsm.cleanup();
