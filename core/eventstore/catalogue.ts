/**
 * The event types this module defines, with the shape of their `data` (schema version 1). `docs/events.md` is the
 * human catalogue; add new types there and here. Field names are PascalCase, as in ArquivoMate's events; byte fields
 * are base64, ids are strings.
 */
import type { NewEvent, StoredEvent } from "./events.js";

export const EventTypes = {
  /** Workspace stream: a master key version was generated in the HSM. */
  MasterKeyCreated: "MasterKeyCreated",
  /** Document stream: the wrap record. The last one of a stream holds the document's current DEKs. */
  DocumentEncryptionKeysAdded: "DocumentEncryptionKeysAdded",
  /** Document stream: the ingestion pipeline confirmed that the document was stored with these keys. */
  DocumentStored: "DocumentStored",
  /** Document stream: the document was deleted; its DEKs are destroyed and never handed out again. */
  DocumentDeleted: "DocumentDeleted",
} as const;

export type EventType = (typeof EventTypes)[keyof typeof EventTypes];

/** The content-encryption algorithm and format version ArquivoMate records per artifact. */
export interface WrappedArtifactKey {
  /** One of `file`, `metadata`, `thumb`, `preview`, `archive`. */
  readonly Artifact: string;
  /** base64 of ciphertext || 16-byte GCM tag. */
  readonly WrappedDek: string;
  /** base64 of the 12-byte GCM nonce. */
  readonly WrapNonce: string;
  /** Content encryption, e.g. `AES-256-CBC-HMACSHA256`. */
  readonly Algorithm: string;
  /** Content encryption format version, e.g. `"2"`. */
  readonly Version: string;
}

export interface MasterKeyCreatedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  /** `ws-<workspaceId>/mk/<version>` */
  readonly KeyId: string;
  /** Key check value: first 3 bytes of AES-ECB(key, 0^16), upper-case hex. */
  readonly Kcv: string;
  /** Whether the key may leave the HSM wrapped (into the recovery kit). */
  readonly Extractable: boolean;
}

/** ArquivoMate's `DocumentEncryptionKeysAdded` plus `WorkspaceId`, `KeyId` and `WrapFormat`. */
export interface DocumentEncryptionKeysAddedData {
  readonly [field: string]: unknown;
  /** The document id (ArquivoMate's aggregate id, a GUID string). */
  readonly AggregateId: string;
  readonly WorkspaceId: string;
  /** The master key version that wraps every DEK of this record. */
  readonly KeyId: string;
  /** Wrap-format tag: how the DEKs are wrapped and what their associated data binds (defined by the data-key module). */
  readonly WrapFormat: string;
  readonly Artifacts: WrappedArtifactKey[];
  /** ArquivoMate's timestamp field; equals the envelope's `occurredAt`. */
  readonly OccurredOn: string;
}

export interface DocumentStoredData {
  readonly [field: string]: unknown;
  readonly AggregateId: string;
  readonly WorkspaceId: string;
  readonly OccurredOn: string;
}

export interface DocumentDeletedData {
  readonly [field: string]: unknown;
  readonly AggregateId: string;
  readonly WorkspaceId: string;
  readonly OccurredOn: string;
}

export type MasterKeyCreated = NewEvent<"MasterKeyCreated", MasterKeyCreatedData>;
export type DocumentEncryptionKeysAdded = NewEvent<
  "DocumentEncryptionKeysAdded",
  DocumentEncryptionKeysAddedData
>;
export type DocumentStored = NewEvent<"DocumentStored", DocumentStoredData>;
export type DocumentDeleted = NewEvent<"DocumentDeleted", DocumentDeletedData>;

export type StoredDocumentEncryptionKeysAdded = StoredEvent<
  "DocumentEncryptionKeysAdded",
  DocumentEncryptionKeysAddedData
>;
