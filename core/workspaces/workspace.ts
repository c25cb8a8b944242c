/**
 * A workspace's master key versions, folded from its stream (`ws-<id>`), and provisioning: the first master key
 * version generated in the HSM and recorded with its KCV.
 */
import {
  EventTypes,
  type AccessTokensInvalidatedData,
  type CanaryDocumentCreatedData,
  type DrillCompletedData,
  type RecoveryAwaitingUnlockData,
  type RecoveryCompletedData,
  type RecoveryFailedData,
  type RecoveryStartedData,
  type RecoveryUnlockedData,
  type AdministratorEnrolledData,
  type DrillKeyCreatedData,
  type FactorCodeAcceptedData,
  type KitAcknowledgedData,
  type KitIssuedData,
  type MasterKeyCreatedData,
  type MasterKeyDestroyedData,
  type MasterKeyDestructionScheduledData,
  type MasterKeyStateChangedData,
  type RotationCompletedData,
  type RotationFailedData,
  type RotationStartedData,
  type UnlockAttemptFailedData,
  type UnlockSucceededData,
} from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent, type StoredEvent } from "../eventstore/events.js";
import { fold } from "../eventstore/projection.js";
import { workspaceStreamId } from "../eventstore/stream-id.js";
import { KeyAlreadyExistsError } from "../keystore/errors.js";
import { masterKeyId, parseKeyId, type KeyId } from "../keystore/key-id.js";
import type { KeyStore } from "../keystore/key-store.js";
import { uuidFromName } from "../shared/ids.js";
import { WorkspaceNotProvisionedError } from "../datakeys/errors.js";

/**
 * `pending`: created by a rotation and not handed out yet (it becomes active once a kit carries it); `active`: new
 * DEKs are wrapped under it; `decrypt-only`: records still use it; `retired`: no record does (census zero).
 */
export type MasterKeyState = "pending" | "active" | "decrypt-only" | "retired" | "destroyed";

/** The versions a kit must carry: every one that a record uses or may use (pending, active, decrypt-only). */
export const isLiveKeyState = (state: MasterKeyState): boolean =>
  state === "pending" || state === "active" || state === "decrypt-only";

export interface MasterKeyVersion {
  readonly keyId: KeyId;
  readonly kcv: string;
  readonly state: MasterKeyState;
  /** Set when its destruction is scheduled: not before this time. */
  readonly destroyNotBefore?: string;
  /** When it became active (the event's time): from then on no new DEK is wrapped under the version before it. */
  readonly activatedAt?: string;
}

export interface RotationState {
  readonly rotationId: string;
  readonly toKeyId: KeyId;
  readonly fromKeyIds: readonly KeyId[];
  readonly status: "running" | "completed" | "failed";
}

export interface AdministratorState {
  readonly adminId: string;
  readonly recipient: string;
  readonly factorType: "totp" | "hmac-sha1";
  readonly factorId?: string;
  /** Highest TOTP time step accepted; codes of this or earlier steps are refused. */
  readonly lastAcceptedStep: number;
  readonly consecutiveFailures: number;
  readonly lockedUntil?: string;
}

export interface KitRecord {
  readonly kitId: string;
  readonly kitVersion: number;
  readonly fingerprint: string;
  readonly vaultVersionId: string;
  readonly issuedAt: string;
  readonly adminIds: readonly string[];
  readonly masterKeys: readonly { keyId: string; kcv: string; state: string }[];
  readonly drillKeyId: string;
}

export interface KitAcknowledgement {
  readonly adminId: string;
  readonly kitVersion: number;
  readonly fingerprint: string;
  readonly at: string;
}

export interface CanaryRecord {
  readonly documentId: string;
  readonly artifact: string;
  readonly contentSha256: string;
  /** base64 of the encrypted artifact. */
  readonly ciphertext: string;
}

export interface RecoveryState {
  readonly recoveryId: string;
  readonly status: "running" | "completed" | "failed";
  readonly executionName: string;
  readonly kitVersion: number;
  readonly kitFingerprint: string;
  readonly requestedBy: string;
  readonly startedAt: string;
  /** The pending unlock wait (task token), while the execution waits for an administrator. */
  readonly awaiting?: { readonly taskToken: string; readonly expiresAt: string };
  /** Set once the kit was opened: the versions imported into the HSM and their KCVs. */
  readonly unlocked?: {
    readonly adminId: string;
    readonly masterKeys: readonly { readonly keyId: string; readonly kcv: string }[];
  };
  readonly failure?: { readonly step: string; readonly error: string };
}

export interface DrillRecord {
  readonly drillId: string;
  readonly ok: boolean;
  readonly at: string;
  readonly failed: readonly string[];
}

export interface WorkspaceState {
  readonly workspaceId: string;
  readonly keys: readonly MasterKeyVersion[];
  readonly activeKeyId: KeyId | undefined;
  readonly drill?: {
    readonly drillKeyId: string;
    readonly publicKeySha256: string;
    readonly oaepHash: "SHA-1" | "SHA-256";
  };
  readonly admins: Readonly<Record<string, AdministratorState>>;
  /** Every kit version issued, oldest first. */
  readonly kits: readonly KitRecord[];
  readonly acknowledgements: readonly KitAcknowledgement[];
  /** The last rotation, if any. */
  readonly rotation?: RotationState;
  /** The last recovery, if any (`running` = the workspace's recovery lock is held). */
  readonly recovery?: RecoveryState;
  /** Access tokens carrying an epoch below this are rejected (0 until the first invalidation). */
  readonly tokenEpoch: number;
  readonly canaries: readonly CanaryRecord[];
  /** The last drill, if any. */
  readonly lastDrill?: DrillRecord;
  /** Stream version the state was folded at. */
  readonly version: number;
}

export const emptyWorkspace = (workspaceId: string): WorkspaceState => ({
  workspaceId,
  keys: [],
  activeKeyId: undefined,
  admins: {},
  kits: [],
  acknowledgements: [],
  tokenEpoch: 0,
  canaries: [],
  version: 0,
});

function updateKey(state: WorkspaceState, keyId: string, patch: Partial<MasterKeyVersion>): WorkspaceState {
  return { ...state, keys: state.keys.map((k) => (k.keyId === keyId ? { ...k, ...patch } : k)) };
}

function updateAdmin(
  state: WorkspaceState,
  adminId: string,
  patch: Partial<AdministratorState>,
): WorkspaceState {
  const current = state.admins[adminId];
  if (!current) return state;
  return { ...state, admins: { ...state.admins, [adminId]: { ...current, ...patch } } };
}

export function evolveWorkspace(state: WorkspaceState, event: StoredEvent): WorkspaceState {
  switch (event.type) {
    case EventTypes.MasterKeyCreated: {
      const data = event.data as MasterKeyCreatedData;
      const keyId = parseKeyId(data.KeyId);
      if (data.State === "pending") {
        // Created, not handed out: the active version stays active until the activation.
        return {
          ...state,
          keys: [...state.keys, { keyId, kcv: data.Kcv, state: "pending" }],
          version: event.version,
        };
      }
      // A new version is active at once; the one before turns decrypt-only.
      const keys = state.keys.map((k) =>
        k.state === "active" ? { ...k, state: "decrypt-only" as const } : k,
      );
      return {
        ...state,
        keys: [...keys, { keyId, kcv: data.Kcv, state: "active", activatedAt: event.occurredAt }],
        activeKeyId: keyId,
        version: event.version,
      };
    }
    case EventTypes.MasterKeyStateChanged: {
      const d = event.data as MasterKeyStateChangedData;
      if (d.To === "active") {
        return {
          ...updateKey(state, d.KeyId, { state: "active", activatedAt: event.occurredAt }),
          activeKeyId: parseKeyId(d.KeyId),
          version: event.version,
        };
      }
      const next = updateKey(state, d.KeyId, { state: d.To });
      // The active version demoted without a successor (never by this service): no active version.
      const activeKeyId = state.activeKeyId === d.KeyId ? undefined : state.activeKeyId;
      return { ...next, activeKeyId, version: event.version };
    }
    case EventTypes.MasterKeyDestructionScheduled: {
      const d = event.data as MasterKeyDestructionScheduledData;
      return { ...updateKey(state, d.KeyId, { destroyNotBefore: d.NotBefore }), version: event.version };
    }
    case EventTypes.MasterKeyDestroyed: {
      const d = event.data as MasterKeyDestroyedData;
      return { ...updateKey(state, d.KeyId, { state: "destroyed" }), version: event.version };
    }
    case EventTypes.RotationStarted: {
      const d = event.data as RotationStartedData;
      const rotation: RotationState = {
        rotationId: d.RotationId,
        toKeyId: parseKeyId(d.ToKeyId),
        fromKeyIds: d.FromKeyIds.map((k) => parseKeyId(k)),
        status: "running",
      };
      return { ...state, rotation, version: event.version };
    }
    case EventTypes.RotationCompleted:
    case EventTypes.RotationFailed: {
      const d = event.data as RotationCompletedData | RotationFailedData;
      if (!state.rotation || state.rotation.rotationId !== d.RotationId)
        return { ...state, version: event.version };
      const status = event.type === EventTypes.RotationCompleted ? "completed" : "failed";
      return { ...state, rotation: { ...state.rotation, status }, version: event.version };
    }
    case EventTypes.DrillKeyCreated: {
      const d = event.data as DrillKeyCreatedData;
      return {
        ...state,
        drill: { drillKeyId: d.DrillKeyId, publicKeySha256: d.PublicKeySha256, oaepHash: d.OaepHash },
        version: event.version,
      };
    }
    case EventTypes.AdministratorEnrolled: {
      const d = event.data as AdministratorEnrolledData;
      const admin: AdministratorState = {
        adminId: d.AdminId,
        recipient: d.Recipient,
        factorType: d.FactorType,
        ...(d.FactorId ? { factorId: d.FactorId } : {}),
        lastAcceptedStep: -1,
        consecutiveFailures: 0,
      };
      return { ...state, admins: { ...state.admins, [d.AdminId]: admin }, version: event.version };
    }
    case EventTypes.KitIssued: {
      const d = event.data as KitIssuedData;
      const kit: KitRecord = {
        kitId: d.KitId,
        kitVersion: d.KitVersion,
        fingerprint: d.Fingerprint,
        vaultVersionId: d.VaultVersionId,
        issuedAt: event.occurredAt,
        adminIds: d.AdminIds,
        masterKeys: d.MasterKeys.map((m) => ({ keyId: m.KeyId, kcv: m.Kcv, state: m.State })),
        drillKeyId: d.DrillKeyId,
      };
      return { ...state, kits: [...state.kits, kit], version: event.version };
    }
    case EventTypes.KitAcknowledged: {
      const d = event.data as KitAcknowledgedData;
      const ack = {
        adminId: d.AdminId,
        kitVersion: d.KitVersion,
        fingerprint: d.Fingerprint,
        at: event.occurredAt,
      };
      return { ...state, acknowledgements: [...state.acknowledgements, ack], version: event.version };
    }
    case EventTypes.FactorCodeAccepted: {
      const d = event.data as FactorCodeAcceptedData;
      const prev = state.admins[d.AdminId]?.lastAcceptedStep ?? -1;
      return {
        ...updateAdmin(state, d.AdminId, { lastAcceptedStep: Math.max(prev, d.TimeStep) }),
        version: event.version,
      };
    }
    case EventTypes.UnlockAttemptFailed: {
      const d = event.data as UnlockAttemptFailedData;
      return {
        ...updateAdmin(state, d.AdminId, {
          consecutiveFailures: d.ConsecutiveFailures,
          ...(d.LockedUntil ? { lockedUntil: d.LockedUntil } : {}),
        }),
        version: event.version,
      };
    }
    case EventTypes.UnlockSucceeded: {
      const d = event.data as UnlockSucceededData;
      const admin = state.admins[d.AdminId];
      if (!admin) return { ...state, version: event.version };
      const { lockedUntil: _unlocked, ...rest } = admin;
      return {
        ...state,
        admins: { ...state.admins, [d.AdminId]: { ...rest, consecutiveFailures: 0 } },
        version: event.version,
      };
    }
    case EventTypes.CanaryDocumentCreated: {
      const d = event.data as CanaryDocumentCreatedData;
      if (state.canaries.some((c) => c.documentId === d.DocumentId))
        return { ...state, version: event.version };
      const canary: CanaryRecord = {
        documentId: d.DocumentId,
        artifact: d.Artifact,
        contentSha256: d.ContentSha256,
        ciphertext: d.Ciphertext,
      };
      return { ...state, canaries: [...state.canaries, canary], version: event.version };
    }
    case EventTypes.RecoveryStarted: {
      const d = event.data as RecoveryStartedData;
      const previous = state.recovery?.recoveryId === d.RecoveryId ? state.recovery : undefined;
      const recovery: RecoveryState = {
        recoveryId: d.RecoveryId,
        status: "running",
        executionName: d.ExecutionName,
        kitVersion: d.KitVersion,
        kitFingerprint: d.KitFingerprint,
        requestedBy: d.RequestedBy,
        startedAt: previous?.startedAt ?? event.occurredAt,
        ...(previous?.unlocked ? { unlocked: previous.unlocked } : {}),
      };
      return { ...state, recovery, version: event.version };
    }
    case EventTypes.RecoveryAwaitingUnlock: {
      const d = event.data as RecoveryAwaitingUnlockData;
      if (state.recovery?.recoveryId !== d.RecoveryId) return { ...state, version: event.version };
      const awaiting = { taskToken: d.TaskToken, expiresAt: d.ExpiresAt };
      return { ...state, recovery: { ...state.recovery, awaiting }, version: event.version };
    }
    case EventTypes.RecoveryUnlocked: {
      const d = event.data as RecoveryUnlockedData;
      if (state.recovery?.recoveryId !== d.RecoveryId) return { ...state, version: event.version };
      const { awaiting: _done, ...rest } = state.recovery;
      const unlocked = {
        adminId: d.AdminId,
        masterKeys: d.MasterKeys.map((m) => ({ keyId: m.KeyId, kcv: m.Kcv })),
      };
      return { ...state, recovery: { ...rest, unlocked }, version: event.version };
    }
    case EventTypes.RecoveryCompleted:
    case EventTypes.RecoveryFailed: {
      const d = event.data as RecoveryCompletedData | RecoveryFailedData;
      if (state.recovery?.recoveryId !== d.RecoveryId) return { ...state, version: event.version };
      const { awaiting: _gone, ...rest } = state.recovery;
      const recovery: RecoveryState =
        event.type === EventTypes.RecoveryCompleted
          ? { ...rest, status: "completed" }
          : {
              ...rest,
              status: "failed",
              failure: { step: (d as RecoveryFailedData).Step, error: (d as RecoveryFailedData).Error },
            };
      return { ...state, recovery, version: event.version };
    }
    case EventTypes.AccessTokensInvalidated: {
      const d = event.data as AccessTokensInvalidatedData;
      return { ...state, tokenEpoch: Math.max(state.tokenEpoch, d.Epoch), version: event.version };
    }
    case EventTypes.DrillCompleted: {
      const d = event.data as DrillCompletedData;
      const lastDrill: DrillRecord = {
        drillId: d.DrillId,
        ok: d.Ok,
        at: event.occurredAt,
        failed: d.Checks.filter((c) => c.Status === "failed").map((c) => c.Name),
      };
      return { ...state, lastDrill, version: event.version };
    }
    default:
      return { ...state, version: event.version };
  }
}

export async function readWorkspace(events: EventStore, workspaceId: string): Promise<WorkspaceState> {
  const { events: stream } = await events.readStream(workspaceStreamId(workspaceId));
  return fold(stream, evolveWorkspace, emptyWorkspace(workspaceId));
}

/** The active master key version, or `WorkspaceNotProvisionedError`. */
export async function activeKeyOf(events: EventStore, workspaceId: string): Promise<KeyId> {
  const ws = await readWorkspace(events, workspaceId);
  if (!ws.activeKeyId) {
    throw new WorkspaceNotProvisionedError(`workspace ${workspaceId} has no master key; provision it first`, {
      context: { workspaceId },
    });
  }
  return ws.activeKeyId;
}

/**
 * Provisions a workspace: generates master key version 1 in the HSM and records `MasterKeyCreated` with its KCV.
 * Idempotent: a provisioned workspace is returned as it is; a key left in the HSM by a provisioning that crashed
 * before recording it is recorded now (same KeyId, its own KCV).
 */
export async function provisionWorkspace(
  deps: { keyStore: KeyStore; events: EventStore; now?: () => Date },
  workspaceId: string,
): Promise<{ state: WorkspaceState; created: boolean }> {
  const existing = await readWorkspace(deps.events, workspaceId);
  if (existing.activeKeyId) return { state: existing, created: false };
  const keyId = masterKeyId(workspaceId, 1);
  let info;
  try {
    info = await deps.keyStore.createMasterKey(keyId);
  } catch (err) {
    if (!(err instanceof KeyAlreadyExistsError)) throw err;
    info = await deps.keyStore.findMasterKey(keyId);
    if (!info) throw err;
  }
  const data: MasterKeyCreatedData = {
    WorkspaceId: workspaceId,
    KeyId: keyId,
    Kcv: info.kcv,
    Extractable: info.extractable,
  };
  const event = newEvent(EventTypes.MasterKeyCreated, data, {
    eventId: uuidFromName("MasterKeyCreated", keyId),
    occurredAt: (deps.now ?? (() => new Date()))(),
  });
  try {
    await deps.events.appendToStream(workspaceStreamId(workspaceId), [event], {
      expectedVersion: "no_stream",
    });
  } catch (err) {
    // Another provisioning of the same workspace won the race: take its result.
    if (!(err instanceof ExpectedVersionConflictError)) throw err;
  }
  return { state: await readWorkspace(deps.events, workspaceId), created: true };
}
