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
  /** Workspace stream: the drill key pair was generated in the HSM. */
  DrillKeyCreated: "DrillKeyCreated",
  /** Workspace stream: an administrator was enrolled (public key and factor kind; no secret). */
  AdministratorEnrolled: "AdministratorEnrolled",
  /** Workspace stream: a recovery kit version was issued and stored in the vault. */
  KitIssued: "KitIssued",
  /** Workspace stream: an administrator proved they can open a kit version. */
  KitAcknowledged: "KitAcknowledged",
  /** Workspace stream: a TOTP code was accepted (its time step can never be used again). */
  FactorCodeAccepted: "FactorCodeAccepted",
  /** Workspace stream: an unlock attempt failed (wrong or replayed code, wrong passphrase); may lock the slot. */
  UnlockAttemptFailed: "UnlockAttemptFailed",
  /** Workspace stream: an administrator opened the kit (verify or recover); resets the failure count. */
  UnlockSucceeded: "UnlockSucceeded",
  /** Workspace stream: a master key version changed state (pending, active, decrypt-only, retired). */
  MasterKeyStateChanged: "MasterKeyStateChanged",
  /** Workspace stream: a rotation began: a new active version; the listed versions are to be re-wrapped away. */
  RotationStarted: "RotationStarted",
  /** Workspace stream: the census proved no wrap record uses the old versions; the kit was re-issued. */
  RotationCompleted: "RotationCompleted",
  /** Workspace stream: a rotation stopped on an error (the workspace keeps its active key). */
  RotationFailed: "RotationFailed",
  /** Workspace stream: a retired version may be destroyed after `NotBefore` (the waiting period). */
  MasterKeyDestructionScheduled: "MasterKeyDestructionScheduled",
  /** Workspace stream: a retired version was destroyed in the HSM. */
  MasterKeyDestroyed: "MasterKeyDestroyed",
  /** Workspace stream: a canary document (known content, kept encrypted here) for drills and recovery checks. */
  CanaryDocumentCreated: "CanaryDocumentCreated",
  /** Workspace stream: a recovery began; holds the workspace's recovery lock until completed or failed. */
  RecoveryStarted: "RecoveryStarted",
  /** Workspace stream: the recovery execution waits for an administrator to unlock the kit (task token). */
  RecoveryAwaitingUnlock: "RecoveryAwaitingUnlock",
  /** Workspace stream: the kit was opened and its master key versions imported into the HSM (KCVs checked). */
  RecoveryUnlocked: "RecoveryUnlocked",
  /** Workspace stream: the recovery finished: fresh key, every DEK re-wrapped, tokens invalidated, new kit. */
  RecoveryCompleted: "RecoveryCompleted",
  /** Workspace stream: a recovery stopped at a step; every old key is untouched and the recovery can be resumed. */
  RecoveryFailed: "RecoveryFailed",
  /** Workspace stream: every access token of an earlier epoch is rejected from now on. */
  AccessTokensInvalidated: "AccessTokensInvalidated",
  /** Workspace stream: a drill ran; its checks and their results. A drill writes nothing else. */
  DrillCompleted: "DrillCompleted",
  /** Workspace stream: a restoration test restored a backup into a scratch table and decrypted documents from it. */
  RestorationTestCompleted: "RestorationTestCompleted",
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
  /** How the key came into the HSM; absent means generated there. `imported-legacy`: ArquivoMate's static key (migration). */
  readonly Origin?: "generated" | "imported-legacy";
  /**
   * `pending`: created by a rotation, not yet handed out (a kit must carry it first; `MasterKeyStateChanged` to
   * `active` follows). Absent: active at once, the version before turning decrypt-only (provisioning, migration, and
   * rotations recorded before pending versions existed).
   */
  readonly State?: "pending";
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

export interface DrillKeyCreatedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  /** `ws-<workspaceId>/drill/<n>` */
  readonly DrillKeyId: string;
  /** SHA-256 (hex) of the public key's SPKI DER. */
  readonly PublicKeySha256: string;
  readonly OaepHash: "SHA-1" | "SHA-256";
}

export interface AdministratorEnrolledData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly AdminId: string;
  /** base64 X25519 public key (the kit slot's recipient). */
  readonly Recipient: string;
  readonly FactorType: "totp" | "hmac-sha1";
  /** For TOTP: names the factor secret in the vault. */
  readonly FactorId?: string;
}

export interface KitIssuedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly KitId: string;
  readonly KitVersion: number;
  /** docs/kit-format.md section 7 */
  readonly Fingerprint: string;
  readonly VaultVersionId: string;
  readonly MasterKeys: readonly { readonly KeyId: string; readonly Kcv: string; readonly State: string }[];
  /** Administrators who received this kit version (one slot each). */
  readonly AdminIds: readonly string[];
  readonly DrillKeyId: string;
  /** Workspace stream version the kit reflects. */
  readonly EventStorePosition: number;
  readonly Reason: string;
}

export interface KitAcknowledgedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly AdminId: string;
  readonly KitVersion: number;
  readonly Fingerprint: string;
  /** The KCVs the administrator's opening proved (each master key unwrapped in an HSM and checked). */
  readonly Kcvs: readonly { readonly KeyId: string; readonly Kcv: string }[];
  readonly Method: "local" | "unlock-function";
}

export interface FactorCodeAcceptedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly AdminId: string;
  readonly FactorId: string;
  /** The RFC 6238 time step of the accepted code; codes of this or an earlier step are refused from now on. */
  readonly TimeStep: number;
}

export interface UnlockAttemptFailedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly AdminId: string;
  readonly Reason: "wrong-code" | "replayed-code" | "wrong-passphrase" | "wrong-factor";
  /** Failures since the last success, this one included. */
  readonly ConsecutiveFailures: number;
  /** Set from the fifth consecutive failure: no attempt is taken before this time. */
  readonly LockedUntil?: string;
}

export interface UnlockSucceededData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly AdminId: string;
  readonly KitVersion: number;
  readonly Purpose: "verify" | "recover";
}

export interface MasterKeyStateChangedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly KeyId: string;
  readonly From: "pending" | "active" | "decrypt-only";
  /** `active`: a pending version is handed out from now on (the active one before turns decrypt-only in the same append). */
  readonly To: "active" | "decrypt-only" | "retired";
  readonly Reason: string;
}

export interface RotationStartedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly RotationId: string;
  /** The new active version. */
  readonly ToKeyId: string;
  /** Every version whose wrap records are re-wrapped to `ToKeyId`. */
  readonly FromKeyIds: readonly string[];
  readonly Reason: string;
}

export interface RotationCompletedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly RotationId: string;
  readonly ToKeyId: string;
  readonly RetiredKeyIds: readonly string[];
  readonly KitVersion: number;
}

export interface RotationFailedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly RotationId: string;
  readonly Error: string;
  readonly Message: string;
}

export interface MasterKeyDestructionScheduledData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly KeyId: string;
  readonly NotBefore: string;
}

export interface MasterKeyDestroyedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly KeyId: string;
}

export interface CanaryDocumentCreatedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  /** The canary's document id; its wrap records live in its document stream like any document's. */
  readonly DocumentId: string;
  readonly Artifact: string;
  /** SHA-256 (hex) of the canary's plaintext content. */
  readonly ContentSha256: string;
  /** base64 of the encrypted artifact (ArquivoMate content format 2) under the canary's DEK. */
  readonly Ciphertext: string;
}

export interface RecoveryStartedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly RecoveryId: string;
  /** The kit the recovery uses: its version and fingerprint (checked against KitIssued). */
  readonly KitVersion: number;
  readonly KitFingerprint: string;
  readonly RequestedBy: string;
  readonly Reason: string;
  /** The Step Functions execution (name) that holds the lock; a re-run of the same execution resumes. */
  readonly ExecutionName: string;
  /** True when a failed recovery is resumed. */
  readonly Resumed: boolean;
}

export interface RecoveryAwaitingUnlockData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly RecoveryId: string;
  /** The Step Functions task token the unlock function completes; a capability to resume, not key material. */
  readonly TaskToken: string;
  /** The wait ends with RecoveryFailed after this time. */
  readonly ExpiresAt: string;
}

export interface RecoveryUnlockedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly RecoveryId: string;
  readonly AdminId: string;
  readonly KitVersion: number;
  readonly MasterKeys: readonly { readonly KeyId: string; readonly Kcv: string }[];
}

export interface RecoveryCompletedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly RecoveryId: string;
  /** The fresh master key version every DEK is wrapped under now. */
  readonly NewKeyId: string;
  readonly RecoveredKeyIds: readonly string[];
  readonly KitVersion: number;
  readonly TokenEpoch: number;
  /** Documents whose current wrap record uses `NewKeyId` when the recovery completed. */
  readonly DocumentsOnNewKey: number;
  readonly CanariesVerified: number;
  /** Milliseconds per step, and `Total`. */
  readonly TimingsMs: Readonly<Record<string, number>>;
}

export interface RecoveryFailedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly RecoveryId: string;
  /** The step that failed: validate, await-unlock, rotate, rewrap, census, verify, invalidate-tokens, complete. */
  readonly Step: string;
  readonly Error: string;
  readonly Message: string;
}

export interface AccessTokensInvalidatedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  /** Tokens carrying an epoch below this are rejected. */
  readonly Epoch: number;
  readonly Reason: string;
  readonly RecoveryId?: string;
}

export interface DrillCheckResult {
  readonly [field: string]: unknown;
  /** kit-in-vault, kit-coverage, drill-slot, canaries, sample, hsm-backups, acknowledgements */
  readonly Name: string;
  readonly Status: "passed" | "failed" | "skipped";
  /** What was found (non-secret: ids, counts, KCVs). */
  readonly Detail: string;
  /** What to do when it failed. */
  readonly Action?: string;
}

export interface DrillCompletedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly DrillId: string;
  readonly Ok: boolean;
  readonly Trigger: "schedule" | "on-demand";
  readonly Checks: readonly DrillCheckResult[];
  readonly StartedAt: string;
  readonly DurationMs: number;
}

export interface RestorationTestCompletedData {
  readonly [field: string]: unknown;
  readonly WorkspaceId: string;
  readonly TestId: string;
  /** The backup restored: its id and the manifest's SHA-256 (hex). */
  readonly BackupId: string;
  readonly ManifestSha256: string;
  readonly Ok: boolean;
  readonly Trigger: "schedule" | "on-demand";
  /** backup-integrity, restore, kit-coverage, keys-recovered, canaries, sample, cleanup */
  readonly Checks: readonly DrillCheckResult[];
  readonly DocumentsRestored: number;
  readonly DocumentsDecrypted: number;
  readonly StartedAt: string;
  readonly DurationMs: number;
}
