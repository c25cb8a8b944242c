/**
 * Building and opening recovery kits (docs/kit-format.md). Building needs no administrator: only their public keys
 * and sealed identities (from enrollment or the previous kit). Opening as an administrator needs the passphrase and
 * the factor material; the master keys stay wrapped (`K_wrap` is returned so that the HSM unwraps them).
 */
import { constants, createPublicKey, publicEncrypt, randomBytes } from "node:crypto";
import { describeKeyId, parseKeyId } from "../keystore/key-id.js";
import type { OaepHash } from "../keystore/key-store.js";
import { zeroize } from "../shared/bytes.js";
import { gcmOpen, gcmSeal, KIT_SECRET_LENGTH, openIdentity, openSlot, sealSlot } from "./crypto.js";
import { KitIntegrityError, KitSlotNotFoundError } from "./errors.js";
import {
  ALGORITHMS_V1,
  appendBody,
  BodySchema,
  encodePrefix,
  FORMAT_VERSION,
  parseKit,
  type AdminSlot,
  type DrillSlot,
  type FactorDescriptor,
  type KitBody,
  type KitHeader,
  type ParsedKit,
  type SealedIdentity,
  type Slot,
} from "./format.js";

export interface KitRecipient {
  readonly adminId: string;
  /** X25519 public key, 32 bytes. */
  readonly recipient: Uint8Array;
  readonly identity: SealedIdentity;
}

export interface KitDrillRecipient {
  readonly drillKeyId: string;
  readonly publicKeySpki: Uint8Array;
  readonly oaepHash: OaepHash;
}

export interface BuildKitInput {
  readonly workspaceId: string;
  readonly kitId: string;
  readonly kitVersion: number;
  readonly issuedAt: string;
  readonly eventStorePosition: { streamId: string; version: number };
  readonly admins: readonly KitRecipient[];
  readonly drill: KitDrillRecipient;
  /** Every live master key version, wrapped (RFC 5649) under `K_wrap` (bytes 32-63 of the kit secret). */
  readonly masterKeys: KitBody["masterKeys"];
  /** 64 random bytes; the caller made the master key blobs with its second half and zeroizes it. */
  readonly kitSecret: Uint8Array;
}

export function newKitSecret(): Buffer {
  return randomBytes(KIT_SECRET_LENGTH);
}
export const bodyKeyOf = (kitSecret: Uint8Array): Buffer => Buffer.from(kitSecret.subarray(0, 32));
export const wrapKeyOf = (kitSecret: Uint8Array): Buffer => Buffer.from(kitSecret.subarray(32, 64));

export function buildKit(input: BuildKitInput): Buffer {
  if (input.kitSecret.length !== KIT_SECRET_LENGTH) throw new RangeError("the kit secret is 64 bytes");
  if (input.admins.length === 0) throw new RangeError("a kit needs at least one administrator slot");
  const header: KitHeader = {
    format: "amk-kit",
    version: FORMAT_VERSION,
    workspaceId: input.workspaceId,
    kitId: input.kitId,
    kitVersion: input.kitVersion,
    issuedAt: input.issuedAt,
    eventStorePosition: input.eventStorePosition,
    algorithms: { ...ALGORITHMS_V1 },
  };
  const kBody = bodyKeyOf(input.kitSecret);
  const kWrap = wrapKeyOf(input.kitSecret);
  try {
    const slots: Slot[] = input.admins.map((a): AdminSlot => {
      const slotId = `admin-${a.adminId}`;
      const sealed = sealSlot(a.recipient, input.kitSecret, input.kitId, slotId);
      return {
        type: "admin",
        slotId,
        adminId: a.adminId,
        recipient: Buffer.from(a.recipient).toString("base64"),
        ephemeral: sealed.ephemeral.toString("base64"),
        nonce: sealed.nonce.toString("base64"),
        wrappedKitSecret: sealed.wrappedKitSecret.toString("base64"),
        identity: a.identity,
      };
    });
    const pub = createPublicKey({ key: Buffer.from(input.drill.publicKeySpki), format: "der", type: "spki" });
    const oaep = (k: Buffer) =>
      publicEncrypt(
        {
          key: pub,
          padding: constants.RSA_PKCS1_OAEP_PADDING,
          oaepHash: input.drill.oaepHash === "SHA-1" ? "sha1" : "sha256",
        },
        k,
      ).toString("base64");
    const drill: DrillSlot = {
      type: "drill",
      slotId: "drill",
      drillKeyId: input.drill.drillKeyId,
      algorithm: "RSA-OAEP",
      oaepHash: input.drill.oaepHash,
      wrappedBodyKey: oaep(kBody),
      wrappedWrapKey: oaep(kWrap),
    };
    const prefix = encodePrefix(header, [...slots, drill]);
    const nonce = randomBytes(12);
    const body = Buffer.from(JSON.stringify({ masterKeys: input.masterKeys } satisfies KitBody), "utf8");
    const bytes = appendBody(prefix, nonce, gcmSeal(kBody, nonce, body, prefix));
    // Check what we wrote with the reader before anyone relies on it.
    parseKit(bytes);
    return bytes;
  } finally {
    zeroize(kBody, kWrap);
  }
}

/** Checks the decrypted body's content (spec section 5). */
export function parseBody(plain: Uint8Array, header: KitHeader): KitBody {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain));
  } catch (cause) {
    throw new KitIntegrityError("the kit body is not JSON", "body-content", { cause });
  }
  const r = BodySchema.safeParse(value);
  if (!r.success) throw new KitIntegrityError("the kit body is malformed", "body-content");
  const body = r.data;
  for (const mk of body.masterKeys) {
    if (describeKeyId(parseKeyId(mk.keyId)).workspaceId !== header.workspaceId) {
      throw new KitIntegrityError(`master key ${mk.keyId} belongs to another workspace`, "body-content");
    }
  }
  if (body.masterKeys.filter((m) => m.state === "active").length !== 1) {
    throw new KitIntegrityError("the kit body must have exactly one active master key", "body-content");
  }
  if (new Set(body.masterKeys.map((m) => m.keyId)).size !== body.masterKeys.length) {
    throw new KitIntegrityError("the kit body lists a master key twice", "body-content");
  }
  return body;
}

/** Produces the factor material for a slot's factor descriptor (TOTP: the released key; token: its response). */
export type FactorMaterialSource = (factor: FactorDescriptor, adminId: string) => Promise<Uint8Array>;

export interface OpenedKit {
  readonly kit: ParsedKit;
  readonly body: KitBody;
  /** `K_wrap`: load it into the HSM as a transport key to unwrap the master keys; the caller zeroizes it. */
  readonly wrapKey: Buffer;
}

/** Opens a kit as an administrator: factor, passphrase, slot, body (spec section 6, steps 7-9). */
export async function openKitAsAdmin(
  kit: ParsedKit,
  input: { adminId: string; passphrase: string; factorMaterial: FactorMaterialSource },
): Promise<OpenedKit> {
  const slot = kit.slots.find((s): s is AdminSlot => s.type === "admin" && s.adminId === input.adminId);
  if (!slot) {
    throw new KitSlotNotFoundError(`the kit has no slot for administrator ${input.adminId}`, "slot", {
      context: { adminId: input.adminId, kitVersion: kit.header.kitVersion },
    });
  }
  const material = Buffer.from(await input.factorMaterial(slot.identity.factor, input.adminId));
  let sk: Buffer | undefined;
  let secret: Buffer | undefined;
  let kBody: Buffer | undefined;
  try {
    sk = await openIdentity({
      adminId: slot.adminId,
      recipient: Buffer.from(slot.recipient, "base64"),
      identity: slot.identity,
      passphrase: input.passphrase,
      factorMaterial: material,
    });
    secret = openSlot(sk, slot, kit.header.kitId);
    kBody = bodyKeyOf(secret);
    const plain = gcmOpen(kBody, kit.bodyNonce, kit.bodyCiphertext, kit.bodyAad);
    if (!plain)
      throw new KitIntegrityError("the kit body fails its authentication: the kit was changed", "body");
    return { kit, body: parseBody(plain, kit.header), wrapKey: wrapKeyOf(secret) };
  } finally {
    zeroize(material, sk, secret, kBody);
  }
}
