/**
 * A workspace's master key versions, folded from its stream (`ws-<id>`), and provisioning: the first master key
 * version generated in the HSM and recorded with its KCV.
 */
import { EventTypes, type MasterKeyCreatedData } from "../eventstore/catalogue.js";
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

export type MasterKeyState = "active" | "decrypt-only";

export interface MasterKeyVersion {
  readonly keyId: KeyId;
  readonly kcv: string;
  readonly state: MasterKeyState;
}

export interface WorkspaceState {
  readonly workspaceId: string;
  readonly keys: readonly MasterKeyVersion[];
  readonly activeKeyId: KeyId | undefined;
  /** Stream version the state was folded at. */
  readonly version: number;
}

export function evolveWorkspace(state: WorkspaceState, event: StoredEvent): WorkspaceState {
  switch (event.type) {
    case EventTypes.MasterKeyCreated: {
      // A new version is active at once; the one before turns decrypt-only.
      const data = event.data as MasterKeyCreatedData;
      const keyId = parseKeyId(data.KeyId);
      const keys = state.keys.map((k) =>
        k.state === "active" ? { ...k, state: "decrypt-only" as const } : k,
      );
      return {
        ...state,
        keys: [...keys, { keyId, kcv: data.Kcv, state: "active" }],
        activeKeyId: keyId,
        version: event.version,
      };
    }
    default:
      return { ...state, version: event.version };
  }
}

export async function readWorkspace(events: EventStore, workspaceId: string): Promise<WorkspaceState> {
  const { events: stream } = await events.readStream(workspaceStreamId(workspaceId));
  return fold(stream, evolveWorkspace, { workspaceId, keys: [], activeKeyId: undefined, version: 0 });
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
