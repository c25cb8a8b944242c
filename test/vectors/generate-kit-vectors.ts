/**
 * Generates test/vectors/kit-vectors.json: recovery-kit test vectors (docs/kit-format.md), positive and negative.
 * Deliberately independent of the production code: written from the specification alone, with only node:crypto
 * and argon2, so it can also build kits the production encoder never would (bad checksums, wrong order, tampered
 * ciphertexts with recomputed checksums, ...).
 *
 * Every vector is checked before it is written by a small reader in this file (`readKit`) that follows section 6
 * of the specification step by step; the generator fails if a vector does not give the outcome it claims.
 *
 *   npx tsx test/vectors/generate-kit-vectors.ts
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  randomUUID,
  type KeyObject,
} from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as argon2 from "argon2";

// ---------------------------------------------------------------------------------------------------------------
// Primitives
// ---------------------------------------------------------------------------------------------------------------

const hex = (b: Buffer) => b.toString("hex");
const b64 = (b: Buffer) => b.toString("base64");
const utf8 = (s: string) => Buffer.from(s, "utf8");
const json = (v: unknown) => utf8(JSON.stringify(v));
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const EMPTY = Buffer.alloc(0);

function gcmSeal(key: Buffer, nonce: Buffer, plain: Buffer, aad: Buffer): Buffer {
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

function gcmOpen(key: Buffer, nonce: Buffer, sealed: Buffer, aad: Buffer): Buffer | undefined {
  if (sealed.length < 16) return undefined;
  try {
    const d = createDecipheriv("aes-256-gcm", key, nonce);
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
  } catch {
    return undefined;
  }
}

const KWP_IV = Buffer.from("A65959A6", "hex");

/** RFC 5649 AES key wrap with padding. */
function kwpWrap(kek: Buffer, key: Buffer): Buffer {
  const c = createCipheriv("id-aes256-wrap-pad", kek, KWP_IV);
  return Buffer.concat([c.update(key), c.final()]);
}

function kwpUnwrap(kek: Buffer, blob: Buffer): Buffer | undefined {
  try {
    const d = createDecipheriv("id-aes256-wrap-pad", kek, KWP_IV);
    return Buffer.concat([d.update(blob), d.final()]);
  } catch {
    return undefined;
  }
}

/** First 3 bytes of AES-256-ECB(key, 16 zero bytes), upper-case hex. */
function kcv(key: Buffer): string {
  const c = createCipheriv("aes-256-ecb", key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(Buffer.alloc(16)), c.final()])
    .subarray(0, 3)
    .toString("hex")
    .toUpperCase();
}

const hkdf = (ikm: Buffer, salt: Buffer, info: string | Buffer, len = 32) =>
  Buffer.from(hkdfSync("sha256", ikm, salt, typeof info === "string" ? utf8(info) : info, len));

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest();

const x25519Public = (pk: Buffer): KeyObject =>
  createPublicKey({ key: { kty: "OKP", crv: "X25519", x: pk.toString("base64url") }, format: "jwk" });

/** Node wants `x` next to `d` but derives the public key from `d`; `x` is only a placeholder here. */
const x25519Private = (sk: Buffer): KeyObject =>
  createPrivateKey({
    key: { kty: "OKP", crv: "X25519", d: sk.toString("base64url"), x: BASEPOINT.toString("base64url") },
    format: "jwk",
  });

const BASEPOINT = Buffer.concat([Buffer.from([9]), Buffer.alloc(31)]);

/** X25519(sk, pk); throws when OpenSSL refuses (it refuses an all-zero result). */
const x25519 = (sk: Buffer, pk: Buffer) =>
  diffieHellman({ privateKey: x25519Private(sk), publicKey: x25519Public(pk) });

function newX25519(): { sk: Buffer; pk: Buffer } {
  const { privateKey } = generateKeyPairSync("x25519");
  const jwk = privateKey.export({ format: "jwk" });
  if (jwk.d === undefined || jwk.x === undefined) throw new Error("x25519 jwk export");
  return { sk: Buffer.from(jwk.d, "base64url"), pk: Buffer.from(jwk.x, "base64url") };
}

interface Kdf {
  algorithm: string;
  version: number;
  memoryKiB: number;
  iterations: number;
  parallelism: number;
}

async function argon2id(passphrase: string, salt: Buffer, kdf: Kdf): Promise<Buffer> {
  return argon2.hash(utf8(passphrase.normalize("NFC")), {
    type: argon2.argon2id,
    memoryCost: kdf.memoryKiB,
    timeCost: kdf.iterations,
    parallelism: kdf.parallelism,
    salt,
    hashLength: 32,
    raw: true,
    version: 0x13,
  });
}

const oaepHashName = (h: string) => (h === "SHA-256" ? "sha256" : "sha1");

// ---------------------------------------------------------------------------------------------------------------
// Format constants (docs/kit-format.md)
// ---------------------------------------------------------------------------------------------------------------

const MAGIC = Buffer.from("414D4B2D4B49540A", "hex"); // "AMK-KIT\n"
const T_HEADER = 0x01;
const T_SLOT = 0x02;
const T_BODY = 0x03;
const MAX_PAYLOAD = 65536;
const MAX_KIT = 1024 * 1024;
const ALGORITHMS = {
  body: "AES-256-GCM",
  keyWrap: "AES-KWP-RFC5649",
  slot: "X25519-HKDF-SHA256-AES-256-GCM",
  identity: "ARGON2ID-HKDF-SHA256-AES-256-GCM",
  drill: "RSA-OAEP",
};
const MIN_KDF: Kdf = { algorithm: "argon2id", version: 19, memoryKiB: 65536, iterations: 3, parallelism: 1 };
const INFO_FACTOR = "amk-kit/v1 factor";
const INFO_PASS = "amk-kit/v1 passphrase";
const AAD_OUTER = (adminId: string) => utf8(`amk-kit/v1 identity outer\n${adminId}`);
const AAD_INNER = (adminId: string) => utf8(`amk-kit/v1 identity inner\n${adminId}`);
const INFO_SLOT = (kitId: string, slotId: string) => utf8(`amk-kit/v1 slot\n${kitId}\n${slotId}`);

/** A section: type(1) length(4, BE) payload checksum(16), checksum = SHA-256(type || length || payload)[0..16]. */
function section(type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeUInt32BE(payload.length, 1);
  const checksum = sha256(Buffer.concat([head, payload])).subarray(0, 16);
  return Buffer.concat([head, payload, checksum]);
}

const fingerprint = (kit: Buffer) =>
  (sha256(kit).subarray(0, 12).toString("hex").toUpperCase().match(/.{4}/g) ?? []).join("-");

// ---------------------------------------------------------------------------------------------------------------
// Writer (a second implementation of the issuing side, free to produce malformed kits)
// ---------------------------------------------------------------------------------------------------------------

const WS = "vec";
const KIT_ID = randomUUID();
const DRILL_KEY_ID = `ws-${WS}/drill/1`;
const drill = generateKeyPairSync("rsa", { modulusLength: 3072, publicExponent: 65537 });

type Json = Record<string, unknown>;
type OpenFactor =
  { type: "totp"; releaseKey: string } | { type: "hmac-sha1"; response: string; tokenSecret: string };
interface Open {
  adminId: string;
  passphrase: string;
  factor: OpenFactor;
}
interface Admin {
  adminId: string;
  passphrase: string;
  sk: Buffer;
  pk: Buffer;
  identity: Json;
  factor: OpenFactor;
}

type FactorSpec = { type: "totp"; algorithm: "SHA1" | "SHA256"; digits: 6 | 8 } | { type: "hmac-sha1" };

/** Enrolment: a fresh identity key, encrypted under the passphrase key and then under the factor key. */
async function enrol(
  adminId: string,
  passphrase: string,
  spec: FactorSpec,
  opts: { encryptedSk?: Buffer; kdf?: Kdf } = {},
): Promise<Admin> {
  const { sk, pk } = newX25519();
  const kdf = opts.kdf ?? MIN_KDF;
  const salt = randomBytes(16);
  const factorSalt = randomBytes(16);
  const innerNonce = randomBytes(12);
  const outerNonce = randomBytes(12);
  let f: Buffer;
  let descriptor: Json;
  let factor: OpenFactor;
  if (spec.type === "totp") {
    f = randomBytes(32);
    descriptor = {
      type: "totp",
      factorId: `${adminId}-totp-1`,
      algorithm: spec.algorithm,
      digits: spec.digits,
      period: 30,
    };
    factor = { type: "totp", releaseKey: hex(f) };
  } else {
    const tokenSecret = randomBytes(20);
    const challenge = randomBytes(32);
    f = createHmac("sha1", tokenSecret).update(challenge).digest();
    descriptor = { type: "hmac-sha1", challenge: b64(challenge) };
    factor = { type: "hmac-sha1", response: hex(f), tokenSecret: hex(tokenSecret) };
  }
  const kFactor = hkdf(f, factorSalt, INFO_FACTOR);
  const kPass = hkdf(await argon2id(passphrase, salt, kdf), EMPTY, INFO_PASS);
  const inner = gcmSeal(kPass, innerNonce, opts.encryptedSk ?? sk, AAD_INNER(adminId));
  const ciphertext = gcmSeal(kFactor, outerNonce, inner, AAD_OUTER(adminId));
  const identity = {
    kdf: { ...kdf },
    salt: b64(salt),
    factor: descriptor,
    factorSalt: b64(factorSalt),
    innerNonce: b64(innerNonce),
    outerNonce: b64(outerNonce),
    ciphertext: b64(ciphertext),
  };
  return { adminId, passphrase, sk, pk, identity, factor };
}

/** Issuing an administrator slot needs only the recipient public key (and the identity block, copied). */
function adminSlot(kitId: string, a: Admin, kitSecret: Buffer): Json {
  const e = newX25519();
  const slotId = `admin-${a.adminId}`;
  const shared = x25519(e.sk, a.pk);
  const kSlot = hkdf(shared, Buffer.concat([e.pk, a.pk]), INFO_SLOT(kitId, slotId));
  const nonce = randomBytes(12);
  return {
    type: "admin",
    slotId,
    adminId: a.adminId,
    recipient: b64(a.pk),
    ephemeral: b64(e.pk),
    nonce: b64(nonce),
    wrappedKitSecret: b64(gcmSeal(kSlot, nonce, kitSecret, EMPTY)),
    identity: clone(a.identity),
  };
}

function drillSlot(kitSecret: Buffer, oaepHash: "SHA-1" | "SHA-256"): Json {
  const enc = (k: Buffer) =>
    publicEncrypt(
      { key: drill.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: oaepHashName(oaepHash) },
      k,
    );
  return {
    type: "drill",
    slotId: "drill",
    drillKeyId: DRILL_KEY_ID,
    algorithm: "RSA-OAEP",
    oaepHash,
    wrappedBodyKey: b64(enc(kitSecret.subarray(0, 32))),
    wrappedWrapKey: b64(enc(kitSecret.subarray(32, 64))),
  };
}

function header(kitVersion: number): Json {
  return {
    format: "amk-kit",
    version: 1,
    workspaceId: WS,
    kitId: KIT_ID,
    kitVersion,
    issuedAt: new Date(Date.UTC(2026, 10, 30, 12, kitVersion, 0)).toISOString(),
    eventStorePosition: { streamId: `ws-${WS}`, version: 3 + 4 * kitVersion },
    algorithms: { ...ALGORITHMS },
  };
}

interface MasterKey {
  keyId: string;
  state: "active" | "decrypt-only";
  key: Buffer;
}
const mk = (n: number, state: MasterKey["state"]): MasterKey => ({
  keyId: `ws-${WS}/mk/${n}`,
  state,
  key: MK_VALUES[n - 1] ?? Buffer.alloc(0),
});
const MK_VALUES = [randomBytes(32), randomBytes(32), randomBytes(32)];

function bodyEntries(kWrap: Buffer, keys: MasterKey[]): Json[] {
  return keys.map((m) => ({
    keyId: m.keyId,
    kcv: kcv(m.key),
    state: m.state,
    wrapped: b64(kwpWrap(kWrap, m.key)),
  }));
}

/** magic || version || pre-sections || body section, the body's AAD being every byte before it. */
function seal(
  pre: Buffer[],
  kBody: Buffer,
  plaintext: Buffer,
  opts: { magic?: Buffer; version?: number } = {},
): Buffer {
  const prefix = Buffer.concat([opts.magic ?? MAGIC, Buffer.from([opts.version ?? 1]), ...pre]);
  const nonce = randomBytes(12);
  return Buffer.concat([
    prefix,
    section(T_BODY, Buffer.concat([nonce, gcmSeal(kBody, nonce, plaintext, prefix)])),
  ]);
}

interface Kit {
  bytes: Buffer;
  header: Json;
  slots: Json[];
  kitSecret: Buffer;
  keys: MasterKey[];
  /** The body plaintext's entries (before JSON encoding). */
  entries: Json[];
}

function buildKit(h: Json, slots: (kitSecret: Buffer) => Json[], keys: MasterKey[]): Kit {
  const kitSecret = randomBytes(64);
  const s = slots(kitSecret);
  const entries = bodyEntries(kitSecret.subarray(32), keys);
  const bytes = seal(
    [section(T_HEADER, json(h)), ...s.map((x) => section(T_SLOT, json(x)))],
    kitSecret.subarray(0, 32),
    json({ masterKeys: entries }),
  );
  return { bytes, header: h, slots: s, kitSecret, keys, entries };
}

/** Re-assemble a kit from JSON parts with the right checksums and a body correctly sealed under K_body. */
function resealed(
  k: Kit,
  parts: { header?: Buffer; slots?: Buffer[]; plaintext?: Buffer; version?: number; magic?: Buffer },
): Buffer {
  return seal(
    [
      section(T_HEADER, parts.header ?? json(k.header)),
      ...(parts.slots ?? k.slots.map((s) => json(s))).map((p) => section(T_SLOT, p)),
    ],
    k.kitSecret.subarray(0, 32),
    parts.plaintext ?? json({ masterKeys: k.entries }),
    { version: parts.version, magic: parts.magic },
  );
}

interface RawSection {
  type: number;
  start: number;
  payload: Buffer;
  bytes: Buffer;
}

/** Splits a well-formed kit into its sections (for tampering). */
function splitKit(kit: Buffer): RawSection[] {
  const out: RawSection[] = [];
  let off = 9;
  while (off < kit.length) {
    const len = kit.readUInt32BE(off + 1);
    out.push({
      type: kit[off] ?? -1,
      start: off,
      payload: kit.subarray(off + 5, off + 5 + len),
      bytes: kit.subarray(off, off + 5 + len + 16),
    });
    off += 5 + len + 16;
  }
  return out;
}

function sectionAt(kit: Buffer, i: number): RawSection {
  const s = splitKit(kit)[i];
  if (s === undefined) throw new Error(`no section ${i}`);
  return s;
}

/** Replace section `i` with `replacement` (already encoded, checksum right or wrong) and keep every other byte. */
function replaceSection(kit: Buffer, i: number, replacement: Buffer): Buffer {
  const s = sectionAt(kit, i);
  return Buffer.concat([kit.subarray(0, s.start), replacement, kit.subarray(s.start + s.bytes.length)]);
}

const flipByte = (b: Buffer, i: number, mask = 0x01) => {
  const c = Buffer.from(b);
  c[i] = (c[i] ?? 0) ^ mask;
  return c;
};

function armour(
  kit: Buffer,
  h: Json,
  opts: { eol?: string; workspace?: string; pad?: boolean } = {},
): string {
  const eol = opts.eol ?? "\n";
  const lines = [
    "-----BEGIN AMK RECOVERY KIT-----",
    `Workspace: ${opts.workspace ?? String(h.workspaceId)}`,
    `Kit: ${String(h.kitId)} v${String(h.kitVersion)}`,
    `Issued: ${String(h.issuedAt)}`,
    `Fingerprint: ${fingerprint(kit)}`,
    "",
    ...(b64(kit).match(/.{1,64}/g) ?? []),
    "-----END AMK RECOVERY KIT-----",
  ];
  const text = lines.join(eol) + eol;
  return opts.pad === true ? `${eol}  ${text}${eol}\t ` : text;
}

// ---------------------------------------------------------------------------------------------------------------
// Reader (a throwaway, section-6-ordered reader used only to check the vectors before they are written)
// ---------------------------------------------------------------------------------------------------------------

type Code =
  "KIT_HEADER" | "KIT_UNSUPPORTED_VERSION" | "KIT_INTEGRITY" | "KIT_WRONG_FACTOR" | "KIT_WRONG_PASSPHRASE";
type Check =
  | "magic"
  | "version"
  | "structure"
  | "section-checksum"
  | "header"
  | "slot"
  | "algorithms"
  | "armour"
  | "body"
  | "body-content"
  | "master-key";

class KitError extends Error {
  constructor(
    readonly code: Code,
    readonly check: Check | undefined,
    message: string,
  ) {
    super(`${code}${check === undefined ? "" : `/${check}`}: ${message}`);
  }
}

const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ADMIN_RE = /^[A-Za-z0-9_-]{1,64}$/;

class Fields {
  constructor(
    private readonly o: Json,
    private readonly check: Check,
    private readonly where: string,
  ) {}
  fail(msg: string): never {
    throw new KitError("KIT_HEADER", this.check, `${this.where}: ${msg}`);
  }
  str(k: string): string {
    const v = this.o[k];
    if (typeof v !== "string") this.fail(`${k} missing or not a string`);
    return v;
  }
  int(k: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.o[k];
    if (typeof v !== "number" || !Number.isInteger(v)) this.fail(`${k} missing or not an integer`);
    if (v < min || v > max) this.fail(`${k} out of range`);
    return v;
  }
  obj(k: string): Fields {
    const v = this.o[k];
    if (!isObj(v)) this.fail(`${k} missing or not an object`);
    return new Fields(v, this.check, `${this.where}.${k}`);
  }
  bytes(k: string, len: number): Buffer {
    const s = this.str(k);
    const b = Buffer.from(s, "base64");
    if (!B64_RE.test(s) || b64(b) !== s) this.fail(`${k} is not canonical base64`);
    if (b.length !== len) this.fail(`${k} is not ${len} bytes`);
    return b;
  }
  is(k: string, ...allowed: unknown[]): void {
    if (!allowed.includes(this.o[k])) this.fail(`${k} has a wrong value`);
  }
}

function parseJson(payload: Buffer, code: Code, check: Check, where: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    throw new KitError(code, check, `${where} is not UTF-8 JSON`);
  }
  if (!isObj(v)) throw new KitError(code, check, `${where} is not a JSON object`);
  return v;
}

interface AdminSlot {
  adminId: string;
  slotId: string;
  recipient: Buffer;
  ephemeral: Buffer;
  nonce: Buffer;
  wrappedKitSecret: Buffer;
  kdf: Kdf;
  salt: Buffer;
  factorType: string;
  challenge?: Buffer;
  factorSalt: Buffer;
  innerNonce: Buffer;
  outerNonce: Buffer;
  ciphertext: Buffer;
}
interface DrillSlot {
  oaepHash: string;
  wrappedBodyKey: Buffer;
  wrappedWrapKey: Buffer;
}

function validateSlot(o: Json, i: number): AdminSlot | DrillSlot {
  const f = new Fields(o, "slot", `slot ${i}`);
  const type = f.str("type");
  if (type === "drill") {
    f.is("slotId", "drill");
    f.str("drillKeyId");
    f.is("algorithm", "RSA-OAEP");
    const oaepHash = f.str("oaepHash");
    f.is("oaepHash", "SHA-1", "SHA-256");
    return {
      oaepHash,
      wrappedBodyKey: f.bytes("wrappedBodyKey", 384),
      wrappedWrapKey: f.bytes("wrappedWrapKey", 384),
    };
  }
  if (type !== "admin") f.fail("unknown slot type");
  const adminId = f.str("adminId");
  if (!ADMIN_RE.test(adminId)) f.fail("adminId");
  const slotId = f.str("slotId");
  if (slotId !== `admin-${adminId}`) f.fail("slotId is not admin-<adminId>");
  const id = f.obj("identity");
  const kdfF = id.obj("kdf");
  kdfF.is("algorithm", "argon2id");
  kdfF.is("version", 19);
  const kdf: Kdf = {
    algorithm: "argon2id",
    version: 19,
    memoryKiB: kdfF.int("memoryKiB", 65536),
    iterations: kdfF.int("iterations", 3),
    parallelism: kdfF.int("parallelism", 1, 8),
  };
  const factor = id.obj("factor");
  const factorType = factor.str("type");
  let challenge: Buffer | undefined;
  if (factorType === "totp") {
    factor.str("factorId");
    factor.is("algorithm", "SHA1", "SHA256");
    factor.is("digits", 6, 8);
    factor.is("period", 30);
  } else if (factorType === "hmac-sha1") {
    challenge = factor.bytes("challenge", 32);
  } else factor.fail("unknown factor type");
  return {
    adminId,
    slotId,
    recipient: f.bytes("recipient", 32),
    ephemeral: f.bytes("ephemeral", 32),
    nonce: f.bytes("nonce", 12),
    wrappedKitSecret: f.bytes("wrappedKitSecret", 80),
    kdf,
    salt: id.bytes("salt", 16),
    factorType,
    challenge,
    factorSalt: id.bytes("factorSalt", 16),
    innerNonce: id.bytes("innerNonce", 12),
    outerNonce: id.bytes("outerNonce", 12),
    ciphertext: id.bytes("ciphertext", 64),
  };
}

function parseArmour(text: string): { kit: Buffer; lines: string[] } {
  const bad = (msg: string): never => {
    throw new KitError("KIT_HEADER", "armour", msg);
  };
  const lines = text.replace(/\r\n/g, "\n").trim().split("\n");
  if (lines[0] !== "-----BEGIN AMK RECOVERY KIT-----") bad("BEGIN line");
  if (lines[lines.length - 1] !== "-----END AMK RECOVERY KIT-----") bad("END line");
  const heads = ["Workspace: ", "Kit: ", "Issued: ", "Fingerprint: "];
  heads.forEach((p, i) => {
    if (!(lines[i + 1] ?? "").startsWith(p)) bad(`header line ${i + 1} is not ${p}`);
  });
  if (lines[5] !== "") bad("no blank line after the headers");
  const data = lines.slice(6, -1).join("");
  if (data.length === 0 || !B64_RE.test(data)) bad("base64 is not strict");
  const kit = Buffer.from(data, "base64");
  if (b64(kit) !== data) bad("base64 is not canonical");
  return { kit, lines: lines.slice(1, 5) };
}

interface Opened {
  masterKeys: { keyId: string; kcv: string; state: string; key: string }[];
  fingerprint: string;
}

/** Section 6 in order. `open` is an administrator; `drillKey` opens the drill slot instead. */
async function readKit(
  encoding: "binary" | "armour",
  text: string,
  open: Open | { drillKey: KeyObject },
): Promise<Opened> {
  let kit: Buffer;
  let armourLines: string[] | undefined;
  if (encoding === "armour") {
    ({ kit, lines: armourLines } = parseArmour(text));
  } else kit = Buffer.from(text, "base64");

  // 1-2
  if (kit.length < 9 || !kit.subarray(0, 8).equals(MAGIC)) throw new KitError("KIT_HEADER", "magic", "magic");
  if (kit[8] !== 1) throw new KitError("KIT_UNSUPPORTED_VERSION", "version", `version byte ${kit[8]}`);

  // 3
  const structure = (m: string): never => {
    throw new KitError("KIT_HEADER", "structure", m);
  };
  if (kit.length > MAX_KIT) structure("kit larger than 1 MiB");
  const secs: { type: number; head: Buffer; payload: Buffer; checksum: Buffer; start: number }[] = [];
  for (let off = 9; off < kit.length;) {
    if (kit.length - off < 5) structure("trailing bytes");
    const type = kit[off] ?? -1;
    if (type !== T_HEADER && type !== T_SLOT && type !== T_BODY) structure(`unknown section type ${type}`);
    const len = kit.readUInt32BE(off + 1);
    if (len > MAX_PAYLOAD) structure("section longer than 65,536 bytes");
    if (off + 5 + len + 16 > kit.length) structure("section runs past the end");
    secs.push({
      type,
      head: kit.subarray(off, off + 5),
      payload: kit.subarray(off + 5, off + 5 + len),
      checksum: kit.subarray(off + 5 + len, off + 5 + len + 16),
      start: off,
    });
    off += 5 + len + 16;
  }
  const types = secs.map((s) => s.type);
  const slotCount = types.filter((t) => t === T_SLOT).length;
  if (types[0] !== T_HEADER || types.lastIndexOf(T_HEADER) !== 0)
    structure("header is not exactly once and first");
  if (types[types.length - 1] !== T_BODY || types.indexOf(T_BODY) !== types.length - 1)
    structure("body is not exactly once and last");
  if (slotCount < 1 || slotCount > 32) structure("not 1 to 32 slots");

  // 4
  secs.forEach((s, i) => {
    if (
      !sha256(Buffer.concat([s.head, s.payload]))
        .subarray(0, 16)
        .equals(s.checksum)
    )
      throw new KitError("KIT_INTEGRITY", "section-checksum", `section ${i} (type ${s.type})`);
  });

  // 5
  const h = parseJson(secs[0]?.payload ?? EMPTY, "KIT_HEADER", "header", "header");
  const hf = new Fields(h, "header", "header");
  hf.is("format", "amk-kit");
  hf.is("version", 1);
  const workspaceId = hf.str("workspaceId");
  if (workspaceId.length === 0 || workspaceId.includes("/")) hf.fail("workspaceId");
  const kitId = hf.str("kitId");
  if (!UUID_RE.test(kitId)) hf.fail("kitId is not a lower-case UUID");
  const kitVersion = hf.int("kitVersion", 1);
  const issuedAt = hf.str("issuedAt");
  if (Number.isNaN(Date.parse(issuedAt)) || new Date(issuedAt).toISOString() !== issuedAt)
    hf.fail("issuedAt");
  const esp = hf.obj("eventStorePosition");
  if (esp.str("streamId") !== `ws-${workspaceId}`) esp.fail("streamId is not ws-<workspaceId>");
  esp.int("version", 0);
  const alg = hf.obj("algorithms");
  for (const k of Object.keys(ALGORITHMS)) alg.str(k);

  const slots = secs
    .filter((s) => s.type === T_SLOT)
    .map((s, i) => validateSlot(parseJson(s.payload, "KIT_HEADER", "slot", `slot ${i}`), i));
  const drills = slots.filter((s): s is DrillSlot => !("adminId" in s));
  const admins = slots.filter((s): s is AdminSlot => "adminId" in s);
  if (drills.length !== 1) throw new KitError("KIT_HEADER", "slot", `${drills.length} drill slots`);
  if (new Set(admins.map((a) => a.adminId)).size !== admins.length)
    throw new KitError("KIT_HEADER", "slot", "two slots for one administrator");

  // 6
  const algObj = h.algorithms as Json;
  const algKeys = Object.keys(algObj);
  if (
    algKeys.length !== Object.keys(ALGORITHMS).length ||
    Object.entries(ALGORITHMS).some(([k, v]) => algObj[k] !== v)
  )
    throw new KitError("KIT_UNSUPPORTED_VERSION", "algorithms", "algorithms");

  // Armour headers against the decoded kit.
  if (armourLines !== undefined) {
    const want = [
      `Workspace: ${workspaceId}`,
      `Kit: ${kitId} v${kitVersion}`,
      `Issued: ${issuedAt}`,
      `Fingerprint: ${fingerprint(kit)}`,
    ];
    if (want.some((w, i) => armourLines[i] !== w))
      throw new KitError("KIT_HEADER", "armour", "a header line does not match");
  }

  // 7
  let kBody: Buffer;
  let kWrap: Buffer;
  if ("drillKey" in open) {
    const d = drills[0] as DrillSlot;
    const dec = (c: Buffer) => {
      try {
        return privateDecrypt(
          {
            key: open.drillKey,
            padding: constants.RSA_PKCS1_OAEP_PADDING,
            oaepHash: oaepHashName(d.oaepHash),
          },
          c,
        );
      } catch {
        throw new KitError("KIT_INTEGRITY", "slot", "drill slot does not decrypt");
      }
    };
    kBody = dec(d.wrappedBodyKey);
    kWrap = dec(d.wrappedWrapKey);
    if (kBody.length !== 32 || kWrap.length !== 32)
      throw new KitError("KIT_INTEGRITY", "slot", "drill key sizes");
  } else {
    const a = admins.find((s) => s.adminId === open.adminId);
    if (a === undefined) throw new KitError("KIT_HEADER", "slot", `no slot for ${open.adminId}`);
    if (a.factorType !== open.factor.type) throw new KitError("KIT_WRONG_FACTOR", undefined, "factor type");
    const fm = Buffer.from(
      open.factor.type === "totp" ? open.factor.releaseKey : open.factor.response,
      "hex",
    );
    const kFactor = hkdf(fm, a.factorSalt, INFO_FACTOR);
    const inner = gcmOpen(kFactor, a.outerNonce, a.ciphertext, AAD_OUTER(a.adminId));
    if (inner === undefined) throw new KitError("KIT_WRONG_FACTOR", undefined, "outer tag");
    const kPass = hkdf(await argon2id(open.passphrase, a.salt, a.kdf), EMPTY, INFO_PASS);
    const sk = gcmOpen(kPass, a.innerNonce, inner, AAD_INNER(a.adminId));
    if (sk === undefined) throw new KitError("KIT_WRONG_PASSPHRASE", undefined, "inner tag");
    if (!x25519(sk, BASEPOINT).equals(a.recipient))
      throw new KitError("KIT_INTEGRITY", "slot", "identity does not match recipient");
    let shared: Buffer;
    try {
      shared = x25519(sk, a.ephemeral);
    } catch {
      throw new KitError("KIT_INTEGRITY", "slot", "X25519 refused (all-zero shared secret)");
    }
    if (shared.equals(Buffer.alloc(32)))
      throw new KitError("KIT_INTEGRITY", "slot", "all-zero shared secret");
    const kSlot = hkdf(shared, Buffer.concat([a.ephemeral, a.recipient]), INFO_SLOT(kitId, a.slotId));
    const ks = gcmOpen(kSlot, a.nonce, a.wrappedKitSecret, EMPTY);
    if (ks === undefined) throw new KitError("KIT_INTEGRITY", "slot", "slot tag");
    kBody = ks.subarray(0, 32);
    kWrap = ks.subarray(32);
  }

  // 8
  const body = secs[secs.length - 1];
  if (body === undefined) throw new Error("unreachable");
  const plain =
    body.payload.length >= 28
      ? gcmOpen(kBody, body.payload.subarray(0, 12), body.payload.subarray(12), kit.subarray(0, body.start))
      : undefined;
  if (plain === undefined) throw new KitError("KIT_INTEGRITY", "body", "body tag");

  // 9
  const content: (m: string) => never = (m) => {
    throw new KitError("KIT_INTEGRITY", "body-content", m);
  };
  const bj = parseJson(plain, "KIT_INTEGRITY", "body-content", "body");
  const list = bj.masterKeys;
  if (!Array.isArray(list) || list.length === 0) content("masterKeys missing or empty");
  const entries = list.map((e: unknown) => {
    if (!isObj(e)) content("entry is not an object");
    const { keyId, kcv: k, state, wrapped } = e;
    if (typeof keyId !== "string" || !new RegExp(`^ws-${workspaceId}/mk/[1-9][0-9]*$`).test(keyId))
      content(`keyId ${String(keyId)} is not of workspace ${workspaceId}`);
    if (typeof k !== "string" || !/^[0-9A-F]{6}$/.test(k)) content("kcv");
    if (state !== "active" && state !== "decrypt-only") content("state");
    if (typeof wrapped !== "string" || !B64_RE.test(wrapped) || Buffer.from(wrapped, "base64").length !== 40)
      content("wrapped");
    return { keyId, kcv: k, state, wrapped: Buffer.from(wrapped, "base64") };
  });
  if (entries.filter((e) => e.state === "active").length !== 1) content("not exactly one active key");
  if (new Set(entries.map((e) => e.keyId)).size !== entries.length) content("duplicate keyId");

  // 10
  const masterKeys = entries.map((e) => {
    const key = kwpUnwrap(kWrap, e.wrapped);
    if (key === undefined || key.length !== 32)
      throw new KitError("KIT_INTEGRITY", "master-key", `${e.keyId} unwrap`);
    if (kcv(key) !== e.kcv) throw new KitError("KIT_INTEGRITY", "master-key", `${e.keyId} KCV`);
    return { keyId: e.keyId, kcv: e.kcv, state: e.state, key: hex(key) };
  });
  return { masterKeys, fingerprint: fingerprint(kit) };
}

// ---------------------------------------------------------------------------------------------------------------
// Vectors
// ---------------------------------------------------------------------------------------------------------------

type Expect =
  | "success"
  | "header failure"
  | "integrity failure"
  | "wrong passphrase"
  | "wrong factor"
  | "unsupported version";
interface Vector {
  name: string;
  expect: Expect;
  check?: Check;
  encoding: "binary" | "armour";
  kit: string;
  open: Open;
  masterKeys?: { keyId: string; kcv: string; state: string; key: string }[];
  fingerprint?: string;
}

const EXPECT_OF: Record<Code, Expect> = {
  KIT_HEADER: "header failure",
  KIT_UNSUPPORTED_VERSION: "unsupported version",
  KIT_INTEGRITY: "integrity failure",
  KIT_WRONG_FACTOR: "wrong factor",
  KIT_WRONG_PASSPHRASE: "wrong passphrase",
};

const vectors: Vector[] = [];
const openAs = (a: Admin, over: Partial<Open> = {}): Open => ({
  adminId: a.adminId,
  passphrase: a.passphrase,
  factor: a.factor,
  ...over,
});
const expectedKeys = (k: Kit) =>
  k.keys.map((m) => ({ keyId: m.keyId, kcv: kcv(m.key), state: m.state, key: hex(m.key) }));

function success(name: string, k: Kit, open: Open, encoding: "binary" | "armour" = "binary", text?: string) {
  vectors.push({
    name,
    expect: "success",
    encoding,
    kit: text ?? b64(k.bytes),
    open,
    masterKeys: expectedKeys(k),
    fingerprint: fingerprint(k.bytes),
  });
}

function failure(
  name: string,
  expect: Exclude<Expect, "success">,
  check: Check | undefined,
  kit: Buffer | string,
  open: Open,
) {
  const v: Vector = {
    name,
    expect,
    encoding: typeof kit === "string" ? "armour" : "binary",
    kit: typeof kit === "string" ? kit : b64(kit),
    open,
  };
  if (check !== undefined) v.check = check;
  vectors.push(v);
}

// Administrators (one Argon2id run each at the specification's minimum parameters).
const alice = await enrol("alice", "correct horse battery staple", {
  type: "totp",
  algorithm: "SHA1",
  digits: 6,
});
const bob = await enrol("bob", "Tr0ub4dor&3 plus a few more words", { type: "hmac-sha1" });
// The passphrase is stored NFC; one vector gives it NFD to check that the reader normalises.
const carol = await enrol("carol_2", "Pässwörter über Brücken, ça va".normalize("NFC"), {
  type: "totp",
  algorithm: "SHA256",
  digits: 8,
});
const strangerSk = newX25519().sk;
const erin = await enrol(
  "erin",
  "erin's passphrase",
  { type: "totp", algorithm: "SHA1", digits: 6 },
  {
    encryptedSk: strangerSk,
  },
);

const twoKeys = [mk(1, "decrypt-only"), mk(2, "active")];

// --- success ------------------------------------------------------------------------------------------------------
const k1 = buildKit(header(1), (ks) => [adminSlot(KIT_ID, alice, ks), drillSlot(ks, "SHA-1")], twoKeys);
success(
  "binary: one admin (TOTP SHA1/6) + drill (RSA-3072, OAEP SHA-1), mk/1 decrypt-only + mk/2 active",
  k1,
  openAs(alice),
);
success("armour (LF) of the same kit", k1, openAs(alice), "armour", armour(k1.bytes, k1.header));
success(
  "armour (CRLF, surrounding whitespace) of the same kit",
  k1,
  openAs(alice),
  "armour",
  armour(k1.bytes, k1.header, { eol: "\r\n", pad: true }),
);

const k2 = buildKit(
  header(2),
  (ks) => [adminSlot(KIT_ID, alice, ks), adminSlot(KIT_ID, bob, ks), drillSlot(ks, "SHA-1")],
  twoKeys,
);
success("two admins (alice TOTP, bob hmac-sha1) + drill, opened by the second admin bob", k2, openAs(bob));
success("two admins (alice TOTP, bob hmac-sha1) + drill, opened by the first admin alice", k2, openAs(alice));

const k3 = buildKit(header(3), (ks) => [adminSlot(KIT_ID, carol, ks), drillSlot(ks, "SHA-256")], twoKeys);
success(
  "TOTP factor descriptor SHA256 with 8 digits; drill slot OAEP SHA-256; non-ASCII passphrase (NFC)",
  k3,
  openAs(carol),
);
success(
  "same kit, passphrase given in NFD: the reader NFC-normalises before Argon2id",
  k3,
  openAs(carol, { passphrase: carol.passphrase.normalize("NFD") }),
);

const k4 = buildKit(
  header(4),
  (ks) => [drillSlot(ks, "SHA-1"), adminSlot(KIT_ID, bob, ks), adminSlot(KIT_ID, alice, ks)],
  [mk(1, "decrypt-only"), mk(2, "decrypt-only"), mk(3, "active")],
);
success(
  "admin slot not first (drill, bob, alice; opened by alice); re-issued kit: identity blocks copied, three master keys",
  k4,
  openAs(alice),
);

// --- wrong passphrase / wrong factor --------------------------------------------------------------------------------
const otherTokenSecret = randomBytes(20);
const bobSlot = k2.slots[1] as { identity: { factor: { challenge: string } } };
const wrongHmac: OpenFactor = {
  type: "hmac-sha1",
  response: hex(
    createHmac("sha1", otherTokenSecret)
      .update(Buffer.from(bobSlot.identity.factor.challenge, "base64"))
      .digest(),
  ),
  tokenSecret: hex(otherTokenSecret),
};
const wrongTotp: OpenFactor = { type: "totp", releaseKey: hex(randomBytes(32)) };
failure(
  "wrong passphrase, right TOTP factor",
  "wrong passphrase",
  undefined,
  k1.bytes,
  openAs(alice, { passphrase: "correct horse battery stapler" }),
);
failure(
  "wrong passphrase, right hmac-sha1 factor",
  "wrong passphrase",
  undefined,
  k2.bytes,
  openAs(bob, { passphrase: "Tr0ub4dor&3" }),
);
failure(
  "wrong TOTP factor release key, right passphrase",
  "wrong factor",
  undefined,
  k1.bytes,
  openAs(alice, { factor: wrongTotp }),
);
failure(
  "wrong hmac-sha1 response (another token's secret), right passphrase",
  "wrong factor",
  undefined,
  k2.bytes,
  openAs(bob, { factor: wrongHmac }),
);
failure(
  "wrong passphrase AND wrong factor: the factor is checked first, so wrong factor",
  "wrong factor",
  undefined,
  k1.bytes,
  openAs(alice, { passphrase: "nope", factor: wrongTotp }),
);

// --- header failures --------------------------------------------------------------------------------------------
const A = openAs(alice);
const hdr1 = sectionAt(k1.bytes, 0);
const slotA = sectionAt(k1.bytes, 1);
const slotD = sectionAt(k1.bytes, 2);
const body1 = sectionAt(k1.bytes, 3);
const headerWith = (mutate: (h: Json) => void) => {
  const h = clone(k1.header);
  mutate(h);
  return json(h);
};
const slotWith = (i: number, mutate: (s: Json) => void) => {
  const slots = k1.slots.map((s) => clone(s));
  const s = slots[i];
  if (s === undefined) throw new Error("slot");
  mutate(s);
  return slots.map((x) => json(x));
};
const kdfOf = (s: Json) => (s.identity as Json).kdf as Json;

failure(
  "bad magic (AMK-KIT\\r instead of AMK-KIT\\n)",
  "header failure",
  "magic",
  Buffer.concat([Buffer.from("AMK-KIT\r"), k1.bytes.subarray(8)]),
  A,
);
failure("kit of 8 bytes (magic only, no version byte)", "header failure", "magic", MAGIC, A);
failure(
  "trailing byte after the body section",
  "header failure",
  "structure",
  Buffer.concat([k1.bytes, Buffer.from([0])]),
  A,
);
failure(
  "missing header section (slots then body, all checksums right, body sealed over them)",
  "header failure",
  "structure",
  seal([slotA.bytes, slotD.bytes], k1.kitSecret.subarray(0, 32), json({ masterKeys: k1.entries })),
  A,
);
failure(
  "body not last: a slot section after the body",
  "header failure",
  "structure",
  Buffer.concat([k1.bytes, slotD.bytes]),
  A,
);
failure(
  "unknown section type 0x04 (checksum right) between the slots and the body",
  "header failure",
  "structure",
  seal(
    [hdr1.bytes, slotA.bytes, slotD.bytes, section(0x04, json({}))],
    k1.kitSecret.subarray(0, 32),
    json({ masterKeys: k1.entries }),
  ),
  A,
);
failure(
  "two header sections",
  "header failure",
  "structure",
  seal(
    [hdr1.bytes, hdr1.bytes, slotA.bytes, slotD.bytes],
    k1.kitSecret.subarray(0, 32),
    json({ masterKeys: k1.entries }),
  ),
  A,
);
failure(
  "no slot section at all (header then body)",
  "header failure",
  "structure",
  seal([hdr1.bytes], k1.kitSecret.subarray(0, 32), json({ masterKeys: k1.entries })),
  A,
);
failure(
  "33 slot sections (the admin slot 32 times, then the drill slot)",
  "header failure",
  "structure",
  seal(
    [hdr1.bytes, ...Array<Buffer>(32).fill(slotA.bytes), slotD.bytes],
    k1.kitSecret.subarray(0, 32),
    json({ masterKeys: k1.entries }),
  ),
  A,
);
failure(
  "slot payload of 65,537 bytes (JSON padded with spaces, checksum right)",
  "header failure",
  "structure",
  resealed(k1, {
    slots: [
      Buffer.concat([json(k1.slots[0]), Buffer.alloc(65537 - json(k1.slots[0]).length, 0x20)]),
      json(k1.slots[1]),
    ],
  }),
  A,
);
failure(
  "truncated kit: cut in the middle of the body payload",
  "header failure",
  "structure",
  k1.bytes.subarray(0, body1.start + 5 + Math.floor(body1.payload.length / 2)),
  A,
);
failure(
  "header payload is not JSON (checksum right)",
  "header failure",
  "header",
  resealed(k1, { header: utf8("{not json") }),
  A,
);
failure(
  "header without kitId (checksum right)",
  "header failure",
  "header",
  resealed(k1, { header: headerWith((h) => delete h.kitId) }),
  A,
);
failure(
  "header kitId in upper case (checksum right)",
  "header failure",
  "header",
  resealed(k1, { header: headerWith((h) => (h.kitId = KIT_ID.toUpperCase())) }),
  A,
);
failure(
  "workspace id mismatch inside the header: eventStorePosition.streamId ws-other while workspaceId is vec (checksum right)",
  "header failure",
  "header",
  resealed(k1, { header: headerWith((h) => ((h.eventStorePosition as Json).streamId = "ws-other")) }),
  A,
);
failure(
  'header format "amk-kat" (checksum right)',
  "header failure",
  "header",
  resealed(k1, { header: headerWith((h) => (h.format = "amk-kat")) }),
  A,
);
failure(
  "header version 2 while the version byte is 1 (spec section 3: a mismatch is a header failure, not an unsupported version)",
  "header failure",
  "header",
  resealed(k1, { header: headerWith((h) => (h.version = 2)) }),
  A,
);
failure(
  "admin slot kdf memoryKiB 32768, below the minimum 65536 (checksums right)",
  "header failure",
  "slot",
  resealed(k1, { slots: slotWith(0, (s) => (kdfOf(s).memoryKiB = 32768)) }),
  A,
);
failure(
  "admin slot kdf parallelism 9, above 8 (checksums right)",
  "header failure",
  "slot",
  resealed(k1, { slots: slotWith(0, (s) => (kdfOf(s).parallelism = 9)) }),
  A,
);
failure(
  "admin slot TOTP digits 7 (checksums right)",
  "header failure",
  "slot",
  resealed(k1, { slots: slotWith(0, (s) => (((s.identity as Json).factor as Json).digits = 7)) }),
  A,
);
failure(
  'admin slot slotId "admin-bob" for adminId alice (checksums right)',
  "header failure",
  "slot",
  resealed(k1, { slots: slotWith(0, (s) => (s.slotId = "admin-bob")) }),
  A,
);
failure(
  "admin slot without ephemeral (checksums right)",
  "header failure",
  "slot",
  resealed(k1, { slots: slotWith(0, (s) => delete s.ephemeral) }),
  A,
);
failure(
  "admin slot recipient of 31 bytes (checksums right)",
  "header failure",
  "slot",
  resealed(k1, { slots: slotWith(0, (s) => (s.recipient = b64(randomBytes(31)))) }),
  A,
);
failure(
  "two drill slots (checksums right)",
  "header failure",
  "slot",
  resealed(k1, { slots: [json(k1.slots[0]), json(k1.slots[1]), json(drillSlot(k1.kitSecret, "SHA-256"))] }),
  A,
);
failure(
  "no drill slot (checksums right)",
  "header failure",
  "slot",
  resealed(k1, { slots: [json(k1.slots[0])] }),
  A,
);
failure(
  "armour whose Workspace line (other) does not match the kit (vec)",
  "header failure",
  "armour",
  armour(k1.bytes, k1.header, { workspace: "other" }),
  A,
);
{
  const t = armour(k1.bytes, k1.header).split("\n");
  const line = t[7] ?? "";
  t[7] = `${line.slice(0, 10)}*${line.slice(11)}`;
  failure("armour with a non-base64 character (*) in the data", "header failure", "armour", t.join("\n"), A);
}
{
  const t = armour(k1.bytes, k1.header).split("\n");
  t[4] = `Fingerprint: ${fingerprint(k2.bytes)}`;
  failure("armour whose Fingerprint line is another kit's", "header failure", "armour", t.join("\n"), A);
}
{
  const t = armour(k1.bytes, k1.header).split("\n");
  [t[1], t[2]] = [t[2] ?? "", t[1] ?? ""];
  failure("armour with the Workspace and Kit lines swapped", "header failure", "armour", t.join("\n"), A);
}

// --- unsupported version --------------------------------------------------------------------------------------------
failure("version byte 2", "unsupported version", "version", resealed(k1, { version: 2 }), A);
failure(
  'algorithms.body "AES-128-GCM" (checksum right)',
  "unsupported version",
  "algorithms",
  resealed(k1, { header: headerWith((h) => ((h.algorithms as Json).body = "AES-128-GCM")) }),
  A,
);
failure(
  'algorithms.identity "ARGON2I-HKDF-SHA256-AES-256-GCM" (checksum right)',
  "unsupported version",
  "algorithms",
  resealed(k1, {
    header: headerWith((h) => ((h.algorithms as Json).identity = "ARGON2I-HKDF-SHA256-AES-256-GCM")),
  }),
  A,
);

// --- integrity failures -------------------------------------------------------------------------------------------
{
  // Flip a digit of issuedAt inside the header payload; the checksum is left as it was.
  const at = hdr1.payload.indexOf(utf8("2026-"));
  const p = flipByte(hdr1.payload, at + 3);
  failure(
    "a byte of the header payload changed, checksum not recomputed",
    "integrity failure",
    "section-checksum",
    replaceSection(
      k1.bytes,
      0,
      Buffer.concat([hdr1.bytes.subarray(0, 5), p, hdr1.bytes.subarray(5 + p.length)]),
    ),
    A,
  );
  failure(
    "a byte of the admin slot's checksum flipped",
    "integrity failure",
    "section-checksum",
    replaceSection(k1.bytes, 1, flipByte(slotA.bytes, slotA.bytes.length - 1)),
    A,
  );
  failure(
    "a byte of the body ciphertext changed, checksum not recomputed",
    "integrity failure",
    "section-checksum",
    replaceSection(k1.bytes, 3, flipByte(body1.bytes, 5 + 20)),
    A,
  );
  failure(
    "header kitVersion changed AND its checksum recomputed (body not re-sealed): only the body GCM tag catches it",
    "integrity failure",
    "body",
    replaceSection(
      k1.bytes,
      0,
      section(
        T_HEADER,
        headerWith((h) => (h.kitVersion = 9)),
      ),
    ),
    A,
  );
  const wks = Buffer.from(String(k1.slots[0]?.wrappedKitSecret), "base64");
  failure(
    "admin slot wrappedKitSecret changed, checksum recomputed",
    "integrity failure",
    "slot",
    replaceSection(
      k1.bytes,
      1,
      section(
        T_SLOT,
        (slotWith(0, (s) => (s.wrappedKitSecret = b64(flipByte(wks, 5)))) as Buffer[])[0] ?? EMPTY,
      ),
    ),
    A,
  );
  failure(
    "body ciphertext changed, checksum recomputed",
    "integrity failure",
    "body",
    replaceSection(k1.bytes, 3, section(T_BODY, flipByte(body1.payload, 20))),
    A,
  );
  failure(
    "body nonce changed, checksum recomputed",
    "integrity failure",
    "body",
    replaceSection(k1.bytes, 3, section(T_BODY, flipByte(body1.payload, 0))),
    A,
  );
  const dslot = k1.slots[1] as Json;
  const wbk = Buffer.from(String(dslot.wrappedBodyKey), "base64");
  failure(
    "drill slot wrappedBodyKey changed, checksum recomputed, opened by an admin: the body GCM tag catches it",
    "integrity failure",
    "body",
    replaceSection(k1.bytes, 2, section(T_SLOT, json({ ...dslot, wrappedBodyKey: b64(flipByte(wbk, 100)) }))),
    A,
  );
}
failure(
  "identity opens (right passphrase and factor) to a private key that does not match recipient; body sealed correctly",
  "integrity failure",
  "slot",
  buildKit(header(5), (ks) => [adminSlot(KIT_ID, erin, ks), drillSlot(ks, "SHA-1")], twoKeys).bytes,
  openAs(erin),
);
failure(
  "admin slot ephemeral is the all-zero (low-order) point: X25519 gives an all-zero shared secret; body sealed correctly",
  "integrity failure",
  "slot",
  resealed(k1, { slots: slotWith(0, (s) => (s.ephemeral = b64(Buffer.alloc(32)))) }),
  A,
);
failure(
  "admin slot ephemeral replaced by another valid public key; body sealed correctly",
  "integrity failure",
  "slot",
  resealed(k1, { slots: slotWith(0, (s) => (s.ephemeral = b64(newX25519().pk))) }),
  A,
);
{
  const e = clone(k1.entries);
  (e[1] as Json).keyId = "ws-other/mk/2";
  failure(
    "workspace id mismatch in the body: a master key keyId of another workspace (ws-other/mk/2), body sealed correctly",
    "integrity failure",
    "body-content",
    resealed(k1, { plaintext: json({ masterKeys: e }) }),
    A,
  );
}
{
  const e = clone(k1.entries);
  (e[0] as Json).state = "active";
  failure(
    "body with two active master keys, sealed correctly",
    "integrity failure",
    "body-content",
    resealed(k1, { plaintext: json({ masterKeys: e }) }),
    A,
  );
}
failure(
  "body with an empty masterKeys list, sealed correctly",
  "integrity failure",
  "body-content",
  resealed(k1, { plaintext: json({ masterKeys: [] }) }),
  A,
);
failure(
  "body plaintext is not JSON, sealed correctly",
  "integrity failure",
  "body-content",
  resealed(k1, { plaintext: utf8("masterKeys: none") }),
  A,
);
{
  const e = clone(k1.entries);
  const w = Buffer.from(String((e[1] as Json).wrapped), "base64");
  (e[1] as Json).wrapped = b64(flipByte(w, 17));
  failure(
    "body JSON valid but mk/2's wrapped blob has a flipped byte (KWP integrity check fails), sealed correctly",
    "integrity failure",
    "master-key",
    resealed(k1, { plaintext: json({ masterKeys: e }) }),
    A,
  );
}
{
  const e = clone(k1.entries);
  (e[0] as Json).kcv = kcv(MK_VALUES[2] ?? EMPTY);
  failure(
    "body JSON valid but mk/1's kcv is another key's, sealed correctly",
    "integrity failure",
    "master-key",
    resealed(k1, { plaintext: json({ masterKeys: e }) }),
    A,
  );
}
{
  // Tampering with the identity block and recomputing the checksum is reported at step 7, before the body tag.
  const slots = slotWith(0, (s) => {
    const id = s.identity as Json;
    id.ciphertext = b64(flipByte(Buffer.from(String(id.ciphertext), "base64"), 3));
  });
  failure(
    "identity ciphertext changed, checksum recomputed, right passphrase and factor: reported as wrong factor (step 7 runs before the body tag)",
    "wrong factor",
    undefined,
    replaceSection(k1.bytes, 1, section(T_SLOT, slots[0] ?? EMPTY)),
    A,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Self-check: every vector through the reader above; success kits with a drill slot also through the drill path.
// ---------------------------------------------------------------------------------------------------------------

for (const v of vectors) {
  let got: { expect: Expect; check?: Check; opened?: Opened; message?: string };
  try {
    got = { expect: "success", opened: await readKit(v.encoding, v.kit, v.open) };
  } catch (e) {
    if (!(e instanceof KitError)) throw e;
    got = { expect: EXPECT_OF[e.code], check: e.check, message: e.message };
  }
  if (got.expect !== v.expect || got.check !== v.check)
    throw new Error(
      `vector "${v.name}": expected ${v.expect}/${v.check}, got ${got.expect}/${got.check} ${got.message}`,
    );
  if (v.expect === "success") {
    const same = (o: Opened | undefined) =>
      o !== undefined &&
      JSON.stringify(o.masterKeys) === JSON.stringify(v.masterKeys) &&
      o.fingerprint === v.fingerprint;
    if (!same(got.opened)) throw new Error(`vector "${v.name}": wrong master keys or fingerprint`);
    if (!same(await readKit(v.encoding, v.kit, { drillKey: drill.privateKey })))
      throw new Error(`vector "${v.name}": drill path disagrees`);
  }
}

const counts: Record<string, number> = {};
for (const v of vectors) counts[v.expect] = (counts[v.expect] ?? 0) + 1;

const out = {
  description: [
    "Recovery-kit test vectors (docs/kit-format.md, version 1). For each vector a reader decodes `kit` (`encoding`",
    "binary: `kit` is the base64 of the binary kit; armour: `kit` is the armour text, exactly as printed) and opens it",
    "as administrator `open.adminId` with `open.passphrase` and `open.factor`, running the checks of section 6 in order.",
    "`open.factor` is the factor material F of section 4.1 step 1: for totp, `releaseKey` is the 32-byte factor release",
    "key the unlock service releases after a valid TOTP code (used directly as F; no TOTP code is involved here); for",
    "hmac-sha1, `response` is F = HMAC-SHA1(key = tokenSecret, message = the 32 raw bytes of the slot's",
    "identity.factor.challenge after base64 decoding), 20 bytes, and `tokenSecret` is the 20-byte HMAC key of the",
    "token, so a test can recompute `response` itself (a wrong-factor vector gives another token's secret and its",
    "response). `expect` is the outcome: success (the reader yields `masterKeys` in body order, with `key` the",
    "unwrapped 32-byte master key in hex, and the kit's `fingerprint`, section 7); header failure (KIT_HEADER);",
    "unsupported version (KIT_UNSUPPORTED_VERSION); integrity failure (KIT_INTEGRITY); wrong passphrase",
    "(KIT_WRONG_PASSPHRASE); wrong factor (KIT_WRONG_FACTOR). For failures other than wrong passphrase/factor, `check`",
    "is the section-6 check that must report it (the error's `check`). Each failing vector has one defect (two only where its name says so);",
    "every other byte is as a correct writer would make it (checksums recomputed and the body re-sealed under K_body",
    "over the new preceding bytes where the name says so), and `open` holds the right credentials unless the name",
    "says otherwise. Success kits carry a drill slot for the RSA-3072 key in `drillKeys` (PKCS#8), so a drill test",
    "can open them too; all kits belong to workspace `workspaceId`, kit id `kitId`.",
  ].join(" "),
  spec: "docs/kit-format.md",
  generator: "test/vectors/generate-kit-vectors.ts",
  workspaceId: WS,
  kitId: KIT_ID,
  drillKeys: [
    {
      drillKeyId: DRILL_KEY_ID,
      publicKeySpkiPem: drill.publicKey.export({ type: "spki", format: "pem" }),
      privateKeyPkcs8Pem: drill.privateKey.export({ type: "pkcs8", format: "pem" }),
    },
  ],
  vectors,
};

const here = fileURLToPath(new URL(".", import.meta.url));
writeFileSync(join(here, "kit-vectors.json"), JSON.stringify(out, null, 2) + "\n");
console.log(`wrote ${vectors.length} vectors to test/vectors/kit-vectors.json`, counts);
