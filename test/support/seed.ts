/**
 * Seeds many documents quickly for scale tests and benchmarks: DEKs from the HSM's random generator, wrapped by the
 * HSM under the given version (format AMK-GCM-V1), appended with appendToStreams in groups. Returns the SHA-256 of
 * every DEK (per document, artifacts in order) so a test can prove later that no DEK changed.
 */
import { createHash, randomUUID } from "node:crypto";
import { EventTypes, type DocumentEncryptionKeysAddedData } from "../../core/eventstore/catalogue.js";
import type { EventStore, StreamAppend } from "../../core/eventstore/event-store.js";
import { newEvent } from "../../core/eventstore/events.js";
import { documentStreamId } from "../../core/eventstore/stream-id.js";
import {
  associatedData,
  encodeWrapped,
  WrapFormats,
  type Artifact,
} from "../../core/datakeys/wrap-format.js";
import type { KeyId } from "../../core/keystore/key-id.js";
import type { KeyStore } from "../../core/keystore/key-store.js";

export async function seedDocuments(input: {
  keyStore: KeyStore;
  events: EventStore;
  workspaceId: string;
  keyId: KeyId;
  count: number;
  artifacts?: readonly Artifact[];
  groupSize?: number;
  concurrency?: number;
  onProgress?: (done: number) => void;
}): Promise<Map<string, string>> {
  const artifacts = input.artifacts ?? (["file", "metadata", "thumb", "preview", "archive"] as const);
  const groupSize = input.groupSize ?? 20;
  const hashes = new Map<string, string>();
  let next = 0;
  let done = 0;
  const groups = Math.ceil(input.count / groupSize);
  await Promise.all(
    Array.from({ length: input.concurrency ?? 4 }, async () => {
      for (let g = next++; g < groups; g = next++) {
        const appends: StreamAppend[] = [];
        for (let i = g * groupSize; i < Math.min(input.count, (g + 1) * groupSize); i++) {
          const documentId = randomUUID();
          const entries = [];
          const h = createHash("sha256");
          for (const artifact of artifacts) {
            const dek = await input.keyStore.generateDataKey();
            const aad = associatedData(WrapFormats.AmkGcmV1, {
              workspaceId: input.workspaceId,
              documentId,
              artifact,
              keyId: input.keyId,
            });
            const w = await input.keyStore.wrapDataKey(input.keyId, dek, aad);
            h.update(dek);
            dek.fill(0);
            entries.push({
              Artifact: artifact,
              ...encodeWrapped(w),
              Algorithm: "AES-256-CBC-HMACSHA256",
              Version: "2",
            });
          }
          hashes.set(documentId, h.digest("hex"));
          const data: DocumentEncryptionKeysAddedData = {
            AggregateId: documentId,
            WorkspaceId: input.workspaceId,
            KeyId: input.keyId,
            WrapFormat: WrapFormats.AmkGcmV1,
            Artifacts: entries,
            OccurredOn: new Date().toISOString(),
          };
          appends.push({
            streamId: documentStreamId(input.workspaceId, documentId),
            events: [newEvent(EventTypes.DocumentEncryptionKeysAdded, data)],
            expectedVersion: "no_stream",
          });
        }
        const outcomes = await input.events.appendToStreams(appends);
        const bad = outcomes.filter((o) => o.status !== "appended");
        if (bad.length > 0) throw new Error(`seeding: ${bad.length} appends not written`);
        done += appends.length;
        input.onProgress?.(done);
      }
    }),
  );
  return hashes;
}

/** SHA-256 over a document's DEKs in artifact order, as `seedDocuments` records it. */
export function dekHash(deks: readonly Uint8Array[]): string {
  const h = createHash("sha256");
  for (const d of deks) h.update(d);
  return h.digest("hex");
}
