import { describeKeyId, parseKeyId } from "../keystore/key-id.js";
import { EventTypes } from "./catalogue.js";
import { InvalidEventError } from "./errors.js";
import type { StoredEvent } from "./events.js";
import { parseStreamId } from "./stream-id.js";

/** Current state from a stream: apply `evolve` to each event in order, starting from `initial`. */
export function fold<State, Event>(
  events: Iterable<Event>,
  evolve: (state: State, event: Event) => State,
  initial: State,
): State {
  let state = initial;
  for (const event of events) state = evolve(state, event);
  return state;
}

/**
 * Where a document stands: `pending` once it has keys (a wrap record) but no confirmation yet, `stored` after
 * `DocumentStored`, `deleted` after `DocumentDeleted` (terminal: later events do not bring it back).
 */
export type DocumentStatus = "pending" | "stored" | "deleted";

/**
 * The document projection, kept by the store atomically with every append to a document stream: which master key
 * version wraps the document's current DEKs (the `KeyId` of the stream's last `DocumentEncryptionKeysAdded`) and
 * where its lifecycle stands. Documents that have a key and are not deleted are in the census of that key.
 */
export interface DocumentProjection {
  readonly workspaceId: string;
  readonly documentId: string;
  /** `KeyId` of the last `DocumentEncryptionKeysAdded`; undefined before the first one. */
  readonly keyId: string | undefined;
  /** Stream version of the last `DocumentEncryptionKeysAdded` (read it to get the current wrap record). */
  readonly keysVersion: number | undefined;
  readonly status: DocumentStatus;
  /** Stream version of the last event that changed this projection. */
  readonly version: number;
}

/**
 * Checks a document event's data against the stream it belongs to (`WorkspaceId` and `AggregateId`, when given, must
 * name the stream's workspace and document) and returns its `KeyId` for a `DocumentEncryptionKeysAdded` (a master key
 * id of the same workspace). Throws `InvalidEventError`.
 */
export function documentFactsOf(event: Pick<StoredEvent, "streamId" | "type" | "data" | "version">): {
  keyId: string | undefined;
} {
  const stream = parseStreamId(event.streamId);
  const data = event.data;
  const fail = (message: string): never => {
    throw new InvalidEventError(`${event.type} at ${event.streamId}: ${message}`, {
      context: { streamId: event.streamId, version: event.version, type: event.type },
    });
  };
  if (stream.kind !== "document") return fail("belongs on a document stream");
  if (data.WorkspaceId !== undefined && data.WorkspaceId !== stream.workspaceId) {
    return fail("data.WorkspaceId differs from the stream's workspace");
  }
  if (data.AggregateId !== undefined && data.AggregateId !== stream.documentId) {
    return fail("data.AggregateId differs from the stream's document");
  }
  if (event.type !== EventTypes.DocumentEncryptionKeysAdded) return { keyId: undefined };
  let keyWorkspace: string | undefined;
  try {
    keyWorkspace = describeKeyId(parseKeyId(data.KeyId as string)).workspaceId;
  } catch {
    keyWorkspace = undefined;
  }
  if (keyWorkspace === undefined) return fail("data.KeyId must be a master key id (ws-<workspace>/mk/<n>)");
  if (keyWorkspace !== stream.workspaceId) return fail("data.KeyId belongs to another workspace");
  return { keyId: data.KeyId as string };
}

/**
 * One step of the document projection. Events of other types leave it unchanged (returning the same object, so a
 * caller can tell "no change" by identity).
 */
export function evolveDocumentProjection(
  state: DocumentProjection | undefined,
  event: Pick<StoredEvent, "streamId" | "type" | "data" | "version">,
): DocumentProjection | undefined {
  switch (event.type) {
    case EventTypes.DocumentEncryptionKeysAdded: {
      const { keyId } = documentFactsOf(event);
      if (state?.status === "deleted" || keyId === undefined) return state;
      const base = state ?? initialProjection(event.streamId, event.version);
      return { ...base, keyId, keysVersion: event.version, version: event.version };
    }
    case EventTypes.DocumentStored: {
      documentFactsOf(event);
      if (state !== undefined && state.status !== "pending") return state;
      const base = state ?? initialProjection(event.streamId, event.version);
      return { ...base, status: "stored", version: event.version };
    }
    case EventTypes.DocumentDeleted: {
      documentFactsOf(event);
      if (state?.status === "deleted") return state;
      const base = state ?? initialProjection(event.streamId, event.version);
      return { ...base, status: "deleted", version: event.version };
    }
    default:
      return state;
  }
}

/** The document's current wrap record: the last `DocumentEncryptionKeysAdded` of its stream (readers take the last). */
export function currentWrapRecord<E extends Pick<StoredEvent, "type">>(events: Iterable<E>): E | undefined {
  let current: E | undefined;
  for (const e of events) if (e.type === EventTypes.DocumentEncryptionKeysAdded) current = e;
  return current;
}

/** The projection of a whole document stream (undefined when no event of the stream concerns it). */
export function projectDocument(
  events: Iterable<Pick<StoredEvent, "streamId" | "type" | "data" | "version">>,
): DocumentProjection | undefined {
  return fold(events, evolveDocumentProjection, undefined as DocumentProjection | undefined);
}

function initialProjection(streamId: string, version: number): DocumentProjection {
  const stream = parseStreamId(streamId);
  if (stream.kind !== "document") {
    throw new InvalidEventError(`document events belong on a document stream, not ${streamId}`, {
      context: { streamId },
    });
  }
  return {
    workspaceId: stream.workspaceId,
    documentId: stream.documentId,
    keyId: undefined,
    keysVersion: undefined,
    status: "pending",
    version,
  };
}

export function sameDocumentProjection(
  a: DocumentProjection | undefined,
  b: DocumentProjection | undefined,
): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    a.workspaceId === b.workspaceId &&
    a.documentId === b.documentId &&
    a.keyId === b.keyId &&
    a.keysVersion === b.keysVersion &&
    a.status === b.status &&
    a.version === b.version
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Census: documents that still need a master key version, counted and paged per (workspace, KeyId).

/** Default number of census shards per (workspace, KeyId). Fixed for a table's lifetime. */
export const DEFAULT_CENSUS_SHARDS = 16;
export const MAX_CENSUS_SHARDS = 256;

/** Whether a document counts in the census of its `keyId`: it has keys and is not deleted. */
export function inCensus(p: DocumentProjection): p is DocumentProjection & { keyId: string } {
  return p.keyId !== undefined && p.status !== "deleted";
}

/** Stable shard of a document: FNV-1a (32 bit) of its id's UTF-8 bytes, modulo the shard count. */
export function censusShard(documentId: string, shards: number): number {
  assertShardCount(shards);
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(documentId, "utf8")) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}

export function assertShardCount(shards: number): void {
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_CENSUS_SHARDS) {
    throw new RangeError(
      `census shard count must be an integer from 1 to ${MAX_CENSUS_SHARDS}, got ${shards}`,
    );
  }
}
