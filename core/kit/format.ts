/**
 * The recovery kit's encodings (docs/kit-format.md): the binary form (magic, version, checksummed sections), the JSON
 * of its header and slots, the armour, and the fingerprint. Parsing runs the keyless checks of the spec's section 6
 * (steps 1-6) and reports the first that fails; nothing here touches a key.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { KitHeaderError, KitIntegrityError, KitUnsupportedVersionError } from "./errors.js";

export const MAGIC = Buffer.from("AMK-KIT\n", "ascii");
export const FORMAT_VERSION = 1;
export const SECTION = { header: 0x01, slot: 0x02, body: 0x03 } as const;
const CHECKSUM_LENGTH = 16;
const MAX_SECTION = 65_536;
const MAX_KIT = 1024 * 1024;
const MAX_SLOTS = 32;

export const ALGORITHMS_V1 = {
  body: "AES-256-GCM",
  keyWrap: "AES-KWP-RFC5649",
  slot: "X25519-HKDF-SHA256-AES-256-GCM",
  identity: "ARGON2ID-HKDF-SHA256-AES-256-GCM",
  drill: "RSA-OAEP",
} as const;

export const KDF_MINIMUM = { memoryKiB: 65_536, iterations: 3 } as const;

const b64 = (bytes?: number) =>
  z
    .string()
    .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, "must be base64")
    .refine((v) => bytes === undefined || Buffer.from(v, "base64").length === bytes, {
      message: `must decode to ${bytes} bytes`,
    });
const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/);
const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
const isoTime = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/);

export const HeaderSchema = z.strictObject({
  format: z.literal("amk-kit"),
  version: z.number().int(),
  workspaceId: id,
  kitId: uuid,
  kitVersion: z.number().int().min(1),
  issuedAt: isoTime,
  eventStorePosition: z.strictObject({
    streamId: z.string().min(1).max(200),
    version: z.number().int().min(0),
  }),
  algorithms: z.strictObject({
    body: z.string(),
    keyWrap: z.string(),
    slot: z.string(),
    identity: z.string(),
    drill: z.string(),
  }),
});
export type KitHeader = z.infer<typeof HeaderSchema>;

export const KdfParamsSchema = z.strictObject({
  algorithm: z.literal("argon2id"),
  version: z.literal(19),
  // Upper bounds too: a hostile kit must not make a reader spend unbounded memory or time before any keyed check.
  memoryKiB: z
    .number()
    .int()
    .min(KDF_MINIMUM.memoryKiB)
    .max(1024 * 1024),
  iterations: z.number().int().min(KDF_MINIMUM.iterations).max(10),
  parallelism: z.number().int().min(1).max(8),
});
export type KdfParams = z.infer<typeof KdfParamsSchema>;

export const FactorDescriptorSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("totp"),
    factorId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/),
    algorithm: z.enum(["SHA1", "SHA256"]),
    digits: z.union([z.literal(6), z.literal(8)]),
    period: z.literal(30),
  }),
  z.strictObject({ type: z.literal("hmac-sha1"), challenge: b64(32) }),
]);
export type FactorDescriptor = z.infer<typeof FactorDescriptorSchema>;

export const IdentitySchema = z.strictObject({
  kdf: KdfParamsSchema,
  salt: b64(16),
  factor: FactorDescriptorSchema,
  factorSalt: b64(16),
  innerNonce: b64(12),
  outerNonce: b64(12),
  ciphertext: b64(64),
});
export type SealedIdentity = z.infer<typeof IdentitySchema>;

export const AdminSlotSchema = z.strictObject({
  type: z.literal("admin"),
  slotId: z.string(),
  adminId: id,
  recipient: b64(32),
  ephemeral: b64(32),
  nonce: b64(12),
  wrappedKitSecret: b64(80),
  identity: IdentitySchema,
});
export type AdminSlot = z.infer<typeof AdminSlotSchema>;

export const DrillSlotSchema = z.strictObject({
  type: z.literal("drill"),
  slotId: z.literal("drill"),
  drillKeyId: z.string().regex(/^ws-[A-Za-z0-9][A-Za-z0-9_-]{0,63}\/drill\/[1-9][0-9]{0,8}$/),
  algorithm: z.literal("RSA-OAEP"),
  oaepHash: z.enum(["SHA-1", "SHA-256"]),
  wrappedBodyKey: b64(),
  wrappedWrapKey: b64(),
});
export type DrillSlot = z.infer<typeof DrillSlotSchema>;

export const SlotSchema = z.discriminatedUnion("type", [AdminSlotSchema, DrillSlotSchema]);
export type Slot = z.infer<typeof SlotSchema>;

export const BodySchema = z.strictObject({
  masterKeys: z
    .array(
      z.strictObject({
        keyId: z.string().regex(/^ws-[A-Za-z0-9][A-Za-z0-9_-]{0,63}\/mk\/[1-9][0-9]{0,8}$/),
        kcv: z.string().regex(/^[0-9A-F]{6}$/),
        state: z.enum(["pending", "active", "decrypt-only"]),
        wrapped: b64(40),
      }),
    )
    .min(1),
});
export type KitBody = z.infer<typeof BodySchema>;

/** A parsed kit whose keyless checks all passed. */
export interface ParsedKit {
  readonly bytes: Buffer;
  readonly header: KitHeader;
  readonly slots: Slot[];
  /** Every byte before the body section: the body's associated data. */
  readonly bodyAad: Buffer;
  readonly bodyNonce: Buffer;
  /** Ciphertext || tag. */
  readonly bodyCiphertext: Buffer;
  readonly fingerprint: string;
}

// ---- encoding -------------------------------------------------------------------------------------------------

function section(type: number, payload: Buffer): Buffer {
  if (payload.length > MAX_SECTION)
    throw new KitHeaderError(`section payload over ${MAX_SECTION} bytes`, "structure");
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeUInt32BE(payload.length, 1);
  const sum = createHash("sha256").update(head).update(payload).digest().subarray(0, CHECKSUM_LENGTH);
  return Buffer.concat([head, payload, sum]);
}

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v), "utf8");

/** Magic, version, header and slot sections: the prefix the body authenticates. */
export function encodePrefix(header: KitHeader, slots: readonly Slot[]): Buffer {
  return Buffer.concat([
    MAGIC,
    Buffer.from([FORMAT_VERSION]),
    section(SECTION.header, json(header)),
    ...slots.map((s) => section(SECTION.slot, json(s))),
  ]);
}

export function appendBody(prefix: Buffer, nonce: Buffer, ciphertext: Buffer): Buffer {
  return Buffer.concat([prefix, section(SECTION.body, Buffer.concat([nonce, ciphertext]))]);
}

export function fingerprintOf(bytes: Uint8Array): string {
  const hex = createHash("sha256").update(bytes).digest().subarray(0, 12).toString("hex").toUpperCase();
  return hex.match(/.{4}/g)!.join("-");
}

// ---- parsing --------------------------------------------------------------------------------------------------

function parseJson<T>(payload: Buffer, schema: z.ZodType<T>, check: "header" | "slot", index: number): T {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch (cause) {
    throw new KitHeaderError(`${check} section ${index} is not UTF-8 JSON`, check, {
      cause,
      context: { section: index },
    });
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).slice(0, 5);
    throw new KitHeaderError(`${check} section ${index} is malformed: ${problems.join("; ")}`, check, {
      context: { section: index, problems },
    });
  }
  return r.data;
}

/** Runs the keyless checks (spec section 6, steps 1-6) on a binary kit. */
export function parseKit(input: Uint8Array): ParsedKit {
  const bytes = Buffer.from(input);
  if (bytes.length < MAGIC.length + 1 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new KitHeaderError("not a recovery kit (magic bytes missing)", "magic");
  }
  if (bytes[MAGIC.length] !== FORMAT_VERSION) {
    throw new KitUnsupportedVersionError(
      `kit format version ${bytes[MAGIC.length]} is not supported (only 1)`,
      "version",
      {
        context: { version: bytes[MAGIC.length] },
      },
    );
  }
  if (bytes.length > MAX_KIT) throw new KitHeaderError(`a kit is at most ${MAX_KIT} bytes`, "structure");

  // Step 3 and 4: structure, then each section's checksum, before any content is interpreted.
  const sections: { type: number; payload: Buffer; start: number; index: number }[] = [];
  let at = MAGIC.length + 1;
  while (at < bytes.length) {
    const index = sections.length;
    if (bytes.length - at < 5 + CHECKSUM_LENGTH) {
      throw new KitHeaderError(`section ${index} is truncated`, "structure", { context: { section: index } });
    }
    const type = bytes[at]!;
    const length = bytes.readUInt32BE(at + 1);
    if (length > MAX_SECTION || at + 5 + length + CHECKSUM_LENGTH > bytes.length) {
      throw new KitHeaderError(`section ${index} has an impossible length`, "structure", {
        context: { section: index },
      });
    }
    const payload = bytes.subarray(at + 5, at + 5 + length);
    const stored = bytes.subarray(at + 5 + length, at + 5 + length + CHECKSUM_LENGTH);
    const actual = createHash("sha256")
      .update(bytes.subarray(at, at + 5 + length))
      .digest()
      .subarray(0, CHECKSUM_LENGTH);
    if (!actual.equals(stored)) {
      const name =
        type === SECTION.header
          ? "header"
          : type === SECTION.slot
            ? "slot"
            : type === SECTION.body
              ? "body"
              : `type ${type}`;
      throw new KitIntegrityError(
        `section ${index} (${name}) fails its checksum: the kit was changed or damaged`,
        "section-checksum",
        {
          context: { section: index, sectionType: name },
        },
      );
    }
    if (type !== SECTION.header && type !== SECTION.slot && type !== SECTION.body) {
      throw new KitHeaderError(`section ${index} has unknown type ${type}`, "structure", {
        context: { section: index },
      });
    }
    sections.push({ type, payload, start: at, index });
    at += 5 + length + CHECKSUM_LENGTH;
  }
  const types = sections.map((s) => s.type);
  const slotCount = types.filter((t) => t === SECTION.slot).length;
  if (
    types[0] !== SECTION.header ||
    types.at(-1) !== SECTION.body ||
    types.filter((t) => t === SECTION.header).length !== 1 ||
    types.filter((t) => t === SECTION.body).length !== 1 ||
    slotCount < 1 ||
    slotCount > MAX_SLOTS
  ) {
    throw new KitHeaderError("sections must be: one header, 1 to 32 slots, one body (last)", "structure");
  }

  // Step 5 and 6: the header and slot fields.
  const header = parseJson(sections[0]!.payload, HeaderSchema, "header", 0);
  if (header.version !== FORMAT_VERSION) {
    throw new KitHeaderError(
      `the header says format version ${header.version} but the version byte says 1`,
      "header",
    );
  }
  if (header.eventStorePosition.streamId !== `ws-${header.workspaceId}`) {
    throw new KitHeaderError("eventStorePosition names another workspace's stream", "header");
  }
  const slots = sections.slice(1, -1).map((s) => parseJson(s.payload, SlotSchema, "slot", s.index));
  for (const [k, v] of Object.entries(ALGORITHMS_V1)) {
    if (header.algorithms[k as keyof typeof ALGORITHMS_V1] !== v) {
      throw new KitUnsupportedVersionError(
        `algorithm ${k} = ${header.algorithms[k as keyof typeof ALGORITHMS_V1]} is not supported`,
        "algorithms",
      );
    }
  }
  if (!slots.some((s) => s.type === "admin"))
    throw new KitHeaderError("a kit has at least one administrator slot", "slot");
  const drills = slots.filter((s) => s.type === "drill");
  if (drills.length !== 1) throw new KitHeaderError("a kit has exactly one drill slot", "slot");
  if (!drills[0]!.drillKeyId.startsWith(`ws-${header.workspaceId}/`)) {
    throw new KitHeaderError("the drill slot names another workspace's drill key", "slot");
  }
  const ids = new Set<string>();
  for (const s of slots) {
    if (s.type === "admin" && s.slotId !== `admin-${s.adminId}`)
      throw new KitHeaderError(`slot id ${s.slotId} does not match its administrator`, "slot");
    if (ids.has(s.slotId)) throw new KitHeaderError(`slot ${s.slotId} appears twice`, "slot");
    ids.add(s.slotId);
  }
  const body = sections.at(-1)!;
  if (body.payload.length < 12 + 16) throw new KitHeaderError("the body is too short", "structure");
  return {
    bytes,
    header,
    slots,
    bodyAad: bytes.subarray(0, body.start),
    bodyNonce: body.payload.subarray(0, 12),
    bodyCiphertext: body.payload.subarray(12),
    fingerprint: fingerprintOf(bytes),
  };
}

// ---- armour ---------------------------------------------------------------------------------------------------

const BEGIN = "-----BEGIN AMK RECOVERY KIT-----";
const END = "-----END AMK RECOVERY KIT-----";
/**
 * Longest armour read: a kit of MAX_KIT bytes in base64, lines of 64 characters with CRLF ends, plus room for the
 * header lines and surrounding white space. Longer text is refused before it is split or decoded.
 */
export const MAX_ARMOUR_CHARS = Math.ceil(((Math.ceil(MAX_KIT / 3) * 4) / 64) * 66) + 4096;

export function armour(bytes: Uint8Array): string {
  const kit = parseKit(bytes);
  const b = Buffer.from(bytes).toString("base64");
  const lines = b.match(/.{1,64}/g) ?? [];
  return [
    BEGIN,
    `Workspace: ${kit.header.workspaceId}`,
    `Kit: ${kit.header.kitId} v${kit.header.kitVersion}`,
    `Issued: ${kit.header.issuedAt}`,
    `Fingerprint: ${kit.fingerprint}`,
    "",
    ...lines,
    END,
    "",
  ].join("\n");
}

/** Decodes the armour strictly and checks its header lines against the kit it carries. */
export function dearmour(text: string): ParsedKit {
  const fail = (why: string): never => {
    throw new KitHeaderError(`armour: ${why}`, "armour");
  };
  if (typeof text !== "string") fail("not text");
  if (text.length > MAX_ARMOUR_CHARS) fail(`longer than any kit (at most ${MAX_ARMOUR_CHARS} characters)`);
  const lines = text
    .replace(/\r\n/g, "\n")
    .trim()
    .split("\n")
    .map((l) => l.trim());
  if (lines[0] !== BEGIN || lines.at(-1) !== END) fail("BEGIN/END lines missing");
  const fields = lines.slice(1, 5);
  const expect = ["Workspace: ", "Kit: ", "Issued: ", "Fingerprint: "];
  fields.forEach((f, i) => {
    if (!f?.startsWith(expect[i]!)) fail(`line ${i + 2} must start with "${expect[i]!.trim()}"`);
  });
  if (lines[5] !== "") fail("a blank line must follow the headers");
  const data = lines.slice(6, -1).join("");
  if (data.length === 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(data) || data.length % 4 !== 0) {
    fail("the kit is not valid base64");
  }
  const kit = parseKit(Buffer.from(data, "base64"));
  const actual = [
    `Workspace: ${kit.header.workspaceId}`,
    `Kit: ${kit.header.kitId} v${kit.header.kitVersion}`,
    `Issued: ${kit.header.issuedAt}`,
    `Fingerprint: ${kit.fingerprint}`,
  ];
  actual.forEach((a, i) => {
    if (fields[i] !== a) fail(`header line "${fields[i]}" does not match the kit ("${a}")`);
  });
  return kit;
}

/** Accepts either encoding. */
export function readKit(input: Uint8Array | string): ParsedKit {
  if (typeof input === "string") return dearmour(input);
  const b = Buffer.from(input);
  if (b.subarray(0, 5).toString("ascii") === "-----") return dearmour(b.toString("utf8"));
  return parseKit(b);
}
