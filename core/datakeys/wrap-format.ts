/**
 * Wrap formats of a DEK in a `DocumentEncryptionKeysAdded` record. Both are AES-256-GCM with a 96-bit nonce and the
 * 16-byte tag appended (`WrappedDek` = base64(ciphertext || tag), `WrapNonce` = base64(nonce)); they differ in the
 * associated data, i.e. in what a wrapped DEK is bound to. See docs/wrap-formats.md.
 */
import { InvalidInputError } from "../shared/errors.js";
import { WrapRecordCorruptError } from "./errors.js";
import {
  WRAP_NONCE_LENGTH,
  WRAP_TAG_LENGTH,
  DEK_LENGTH,
  type WrappedDataKey,
} from "../keystore/key-store.js";
import type { KeyId } from "../keystore/key-id.js";

/** ArquivoMate's five artifacts of a document. */
export const ARTIFACTS = ["file", "metadata", "thumb", "preview", "archive"] as const;
export type Artifact = (typeof ARTIFACTS)[number];

export function isArtifact(value: unknown): value is Artifact {
  return typeof value === "string" && (ARTIFACTS as readonly string[]).includes(value);
}

export const WrapFormats = {
  /**
   * Ours: associated data binds the format, the workspace, the document, the artifact and the master key version,
   * so a wrapped DEK copied to another document, artifact, workspace or key version fails to unwrap.
   */
  AmkGcmV1: "AMK-GCM-V1",
  /** ArquivoMate's existing records: associated data is only `"DEK:" + artifact`. Read-only for us. */
  ArquivoMateLegacy: "ARQ-GCM-LEGACY",
} as const;
export type WrapFormat = (typeof WrapFormats)[keyof typeof WrapFormats];

/** ArquivoMate's content encryption, recorded per artifact (it describes the content, not the wrap). */
export const DEFAULT_CONTENT_ALGORITHM = "AES-256-CBC-HMACSHA256";
export const DEFAULT_CONTENT_VERSION = "2";

export interface WrapBinding {
  readonly workspaceId: string;
  readonly documentId: string;
  readonly artifact: Artifact;
  readonly keyId: KeyId;
}

/**
 * Associated data of a wrap. AMK-GCM-V1: the UTF-8 string
 * `AMK-GCM-V1\n<workspaceId>\n<documentId>\n<artifact>\n<keyId>`; every component is validated to contain no
 * newline, so the encoding is unambiguous. Legacy: `DEK:<artifact>`.
 */
export function associatedData(format: WrapFormat, binding: WrapBinding): Buffer {
  if (!isArtifact(binding.artifact)) {
    throw new InvalidInputError(`unknown artifact; expected one of ${ARTIFACTS.join(", ")}`, {
      context: { artifact: String(binding.artifact).slice(0, 40) },
    });
  }
  switch (format) {
    case WrapFormats.AmkGcmV1: {
      for (const part of [binding.workspaceId, binding.documentId, binding.keyId]) {
        if (typeof part !== "string" || part.length === 0 || /[\n\r\0]/.test(part)) {
          throw new InvalidInputError("wrap binding components must be non-empty single-line strings");
        }
      }
      return Buffer.from(
        [format, binding.workspaceId, binding.documentId, binding.artifact, binding.keyId].join("\n"),
        "utf8",
      );
    }
    case WrapFormats.ArquivoMateLegacy:
      return Buffer.from(`DEK:${binding.artifact}`, "utf8");
    default:
      throw new InvalidInputError(`unsupported wrap format ${String(format).slice(0, 40)}`, {
        context: { format: String(format).slice(0, 40) },
      });
  }
}

export function isWrapFormat(value: unknown): value is WrapFormat {
  return value === WrapFormats.AmkGcmV1 || value === WrapFormats.ArquivoMateLegacy;
}

/** `{ WrappedDek, WrapNonce }` as base64, from a wrap. */
export function encodeWrapped(w: WrappedDataKey): { WrappedDek: string; WrapNonce: string } {
  return {
    WrappedDek: Buffer.from(w.ciphertext).toString("base64"),
    WrapNonce: Buffer.from(w.nonce).toString("base64"),
  };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes a record's base64 fields. Only the shape is checked here (strict base64, lengths); whether the bytes are
 * authentic is the HSM's tag check.
 */
export function decodeWrapped(fields: { WrappedDek: unknown; WrapNonce: unknown }): WrappedDataKey {
  const { WrappedDek, WrapNonce } = fields;
  if (
    typeof WrappedDek !== "string" ||
    typeof WrapNonce !== "string" ||
    !BASE64.test(WrappedDek) ||
    !BASE64.test(WrapNonce)
  ) {
    throw new WrapRecordCorruptError("WrappedDek and WrapNonce must be base64 strings");
  }
  const ciphertext = Buffer.from(WrappedDek, "base64");
  const nonce = Buffer.from(WrapNonce, "base64");
  if (ciphertext.length !== DEK_LENGTH + WRAP_TAG_LENGTH || nonce.length !== WRAP_NONCE_LENGTH) {
    throw new WrapRecordCorruptError(
      `a wrapped DEK is ${DEK_LENGTH + WRAP_TAG_LENGTH} bytes and its nonce ${WRAP_NONCE_LENGTH} bytes`,
      { context: { wrappedDekBytes: ciphertext.length, nonceBytes: nonce.length } },
    );
  }
  return { ciphertext, nonce };
}
