/**
 * A workspace with a realistic history for backup tests: two master-key versions on the workspace stream, documents
 * whose DEKs (random, kept by the caller for leak scans) are wrapped AMK-GCM-V1 under version 1 in software (the
 * format the HSM writes; the backup never looks inside), some stored, some re-wrapped to version 2, some deleted.
 * Appended through the store's own `appendToStreams`, 20 documents a call.
 */
import { createCipheriv, createHash, randomBytes, randomUUID } from "node:crypto";
import { BatchWriteCommand, type DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { keys } from "../../core/adapters/dynamodb/table.js";
import {
  ARTIFACTS,
  DEFAULT_CONTENT_ALGORITHM,
  DEFAULT_CONTENT_VERSION,
  WrapFormats,
  associatedData,
  encodeWrapped,
} from "../../core/datakeys/wrap-format.js";
import { EventTypes, type WrappedArtifactKey } from "../../core/eventstore/catalogue.js";
import type { EventStore, StreamAppend } from "../../core/eventstore/event-store.js";
import { newEvent, type NewEvent, type StoredEvent } from "../../core/eventstore/events.js";
import { DEFAULT_CENSUS_SHARDS, censusShard } from "../../core/eventstore/projection.js";
import { documentStreamId, workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { masterKeyId, type KeyId } from "../../core/keystore/key-id.js";
import { mapLimit } from "../../core/shared/concurrency.js";

export interface SeededWorkspace {
  readonly workspaceId: string;
  readonly documentIds: string[];
  /** Plaintext DEKs of the first `keepDeks` documents, and the master keys: what must never appear in a backup. */
  readonly secrets: Uint8Array[];
  readonly keyIds: KeyId[];
}

export interface SeedOptions {
  readonly store: EventStore;
  readonly workspaceId?: string;
  readonly documents: number;
  /** Every n-th document gets DocumentStored / a re-wrap to version 2 / DocumentDeleted (0: none). */
  readonly storedEvery?: number;
  readonly rewrapEvery?: number;
  readonly deleteEvery?: number;
  /** Documents whose DEKs are kept in `secrets` (default 50). */
  readonly keepDeks?: number;
  readonly groupSize?: number;
  readonly concurrency?: number;
}

function kcv(key: Uint8Array): string {
  const c = createCipheriv("aes-256-ecb", key, null);
  return Buffer.concat([c.update(Buffer.alloc(16)), c.final()])
    .subarray(0, 3)
    .toString("hex")
    .toUpperCase();
}

function wrap(mk: Uint8Array, dek: Uint8Array, aad: Uint8Array): { nonce: Buffer; ciphertext: Buffer } {
  const nonce = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", mk, nonce);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(dek), c.final(), c.getAuthTag()]);
  return { nonce, ciphertext: ct };
}

export function wrapRecordFor(
  workspaceId: string,
  documentId: string,
  keyId: KeyId,
  mk: Uint8Array,
  deks: readonly Uint8Array[],
): NewEvent {
  const artifacts: WrappedArtifactKey[] = ARTIFACTS.map((artifact, i) => ({
    Artifact: artifact,
    ...encodeWrapped(
      wrap(
        mk,
        deks[i] as Uint8Array,
        associatedData(WrapFormats.AmkGcmV1, { workspaceId, documentId, artifact, keyId }),
      ),
    ),
    Algorithm: DEFAULT_CONTENT_ALGORITHM,
    Version: DEFAULT_CONTENT_VERSION,
  }));
  const occurredAt = new Date().toISOString();
  return newEvent(
    EventTypes.DocumentEncryptionKeysAdded,
    {
      AggregateId: documentId,
      WorkspaceId: workspaceId,
      KeyId: keyId,
      WrapFormat: WrapFormats.AmkGcmV1,
      Artifacts: artifacts,
      OccurredOn: occurredAt,
    },
    { occurredAt },
  );
}

function lifecycle(
  type: "DocumentStored" | "DocumentDeleted",
  workspaceId: string,
  documentId: string,
): NewEvent {
  const occurredAt = new Date().toISOString();
  return newEvent(
    type,
    { AggregateId: documentId, WorkspaceId: workspaceId, OccurredOn: occurredAt },
    { occurredAt },
  );
}

/** Appends `events` to each stream in groups through appendToStreams; every append must be written. */
export async function appendAll(
  store: EventStore,
  appends: readonly StreamAppend[],
  groupSize = 20,
  concurrency = 4,
): Promise<void> {
  const groups: StreamAppend[][] = [];
  for (let i = 0; i < appends.length; i += groupSize) groups.push(appends.slice(i, i + groupSize));
  await mapLimit(groups, concurrency, async (g) => {
    const outcomes = await store.appendToStreams(g);
    const bad = outcomes.filter((o) => o.status !== "appended");
    if (bad.length > 0) throw new Error(`seeding: ${bad.length} appends not written (${bad[0]?.status})`);
  });
}

export async function seedWorkspace(options: SeedOptions): Promise<SeededWorkspace> {
  const { store } = options;
  const workspaceId = options.workspaceId ?? `bk-${randomUUID().slice(0, 8)}`;
  const keepDeks = options.keepDeks ?? 50;
  const storedEvery = options.storedEvery ?? 2;
  const rewrapEvery = options.rewrapEvery ?? 5;
  const deleteEvery = options.deleteEvery ?? 7;
  const mk1 = randomBytes(32);
  const mk2 = randomBytes(32);
  const k1 = masterKeyId(workspaceId, 1);
  const k2 = masterKeyId(workspaceId, 2);
  const secrets: Uint8Array[] = [mk1, mk2];
  const ws = workspaceStreamId(workspaceId);
  const created = (keyId: KeyId, key: Uint8Array) =>
    newEvent(EventTypes.MasterKeyCreated, {
      WorkspaceId: workspaceId,
      KeyId: keyId,
      Kcv: kcv(key),
      Extractable: true,
    });
  await store.appendToStream(ws, [created(k1, mk1)], { expectedVersion: "no_stream" });

  const documentIds = Array.from({ length: options.documents }, () => randomUUID());
  const deks = new Map<string, Buffer[]>();
  const first: StreamAppend[] = documentIds.map((documentId, i) => {
    const d = ARTIFACTS.map(() => randomBytes(32));
    deks.set(documentId, d);
    if (i < keepDeks) secrets.push(...d);
    return {
      streamId: documentStreamId(workspaceId, documentId),
      events: [wrapRecordFor(workspaceId, documentId, k1, mk1, d)],
      expectedVersion: "no_stream",
    };
  });
  await appendAll(store, first, options.groupSize, options.concurrency);

  // Later events, one more append per document where any applies: stored, re-wrapped to version 2, deleted.
  await store.appendToStream(ws, [created(k2, mk2)], { expectedVersion: 1 });
  const later: StreamAppend[] = [];
  documentIds.forEach((documentId, i) => {
    const events: NewEvent[] = [];
    if (storedEvery > 0 && i % storedEvery === 0)
      events.push(lifecycle("DocumentStored", workspaceId, documentId));
    if (rewrapEvery > 0 && i % rewrapEvery === 0) {
      events.push(wrapRecordFor(workspaceId, documentId, k2, mk2, deks.get(documentId) as Buffer[]));
    }
    if (deleteEvery > 0 && i % deleteEvery === 3)
      events.push(lifecycle("DocumentDeleted", workspaceId, documentId));
    if (events.length > 0) {
      later.push({ streamId: documentStreamId(workspaceId, documentId), events, expectedVersion: 1 });
    }
  });
  await appendAll(store, later, options.groupSize, options.concurrency);
  for (const d of deks.values()) for (const b of d) if (!secrets.includes(b)) b.fill(0);
  return { workspaceId, documentIds, secrets, keyIds: [k1, k2] };
}

/** A short fingerprint of bytes, for messages. */
export function fingerprint(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex").slice(0, 12);
}

// ---------------------------------------------------------------------------------------------------------------
// Raw seeding for scale tests and benchmarks: items written straight into the table, exactly in the adapter's layout.

type Item = Record<string, unknown>;

/** One document's first wrap record as the store keeps it, and its four items (exactly the adapter's layout). */
export function documentItems(
  workspaceId: string,
  documentId: string,
): { event: StoredEvent; items: Item[] } {
  const streamId = documentStreamId(workspaceId, documentId);
  const keyId = masterKeyId(workspaceId, 1);
  const now = new Date().toISOString();
  const data = {
    AggregateId: documentId,
    WorkspaceId: workspaceId,
    KeyId: keyId,
    WrapFormat: WrapFormats.AmkGcmV1,
    Artifacts: ARTIFACTS.map((artifact) => ({
      Artifact: artifact,
      WrappedDek: randomBytes(48).toString("base64"),
      WrapNonce: randomBytes(12).toString("base64"),
      Algorithm: DEFAULT_CONTENT_ALGORITHM,
      Version: DEFAULT_CONTENT_VERSION,
    })),
    OccurredOn: now,
  };
  const event: StoredEvent = {
    streamId,
    version: 1,
    eventId: randomUUID(),
    type: EventTypes.DocumentEncryptionKeysAdded,
    schemaVersion: 1,
    occurredAt: now,
    recordedAt: now,
    data,
  };
  const shard = censusShard(documentId, DEFAULT_CENSUS_SHARDS);
  return {
    event,
    items: [
      {
        ...keys.event(streamId, 1),
        kind: "event",
        streamId,
        version: 1,
        eventId: event.eventId,
        type: event.type,
        schemaVersion: 1,
        occurredAt: now,
        data: JSON.stringify(data),
        recordedAt: now,
      },
      { ...keys.head(streamId), kind: "head", streamId, version: 1, updatedAt: now },
      {
        ...keys.eventIdMarker(event.eventId),
        kind: "eventId",
        eventId: event.eventId,
        streamId,
        version: 1,
        recordedAt: now,
      },
      {
        ...keys.projection(streamId),
        kind: "projection",
        workspaceId,
        documentId,
        status: "pending",
        version: 1,
        shard,
        updatedAt: now,
        keyId,
        keysVersion: 1,
        gsi1pk: keys.censusByKeyId(workspaceId, keyId, shard),
        gsi1sk: documentId,
        gsi2pk: keys.keyIdsInUse(workspaceId, shard),
        gsi2sk: keys.keyIdsInUseSort(keyId, documentId),
      },
    ],
  };
}

/** BatchWriteItem of `items` (25 a request), retrying what DynamoDB leaves unprocessed. */
export async function batchWrite(doc: DynamoDBDocumentClient, table: string, items: Item[]): Promise<void> {
  let pending = items.map((Item) => ({ PutRequest: { Item } }));
  for (let attempt = 0; pending.length > 0; attempt++) {
    const out = await doc.send(new BatchWriteCommand({ RequestItems: { [table]: pending } }));
    pending = (out.UnprocessedItems?.[table] ?? []) as typeof pending;
    if (pending.length > 0) await new Promise((r) => setTimeout(r, Math.min(200, 5 * 2 ** attempt)));
  }
}

/** Seeds `count` documents (one wrap record each) with BatchWriteItem, `concurrency` requests at once. */
export async function seedRawDocuments(
  doc: DynamoDBDocumentClient,
  table: string,
  workspaceId: string,
  count: number,
  concurrency = 16,
): Promise<string[]> {
  const documentIds: string[] = new Array(count);
  const perRequest = 6;
  await mapLimit(
    Array.from({ length: Math.ceil(count / perRequest) }, (_, g) => g),
    concurrency,
    async (g) => {
      const items: Item[] = [];
      for (let i = g * perRequest; i < Math.min(count, (g + 1) * perRequest); i++) {
        const documentId = randomUUID();
        documentIds[i] = documentId;
        items.push(...documentItems(workspaceId, documentId).items);
      }
      await batchWrite(doc, table, items);
    },
  );
  return documentIds;
}
