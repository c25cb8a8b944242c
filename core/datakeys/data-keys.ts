/**
 * The data-key use cases the ingestion pipeline and the document readers call:
 *  - generate: one DEK per artifact from the HSM, wrapped under the workspace's active master key, recorded as a
 *    `DocumentEncryptionKeysAdded` (appended at the version read), and only then returned;
 *  - decrypt: the DEKs of a document's current wrap record, whatever master key version wraps it;
 *  - lifecycle: a document was stored (confirms its keys) or deleted (its keys are never handed out again).
 */
import {
  EventTypes,
  type DocumentDeletedData,
  type DocumentEncryptionKeysAddedData,
  type DocumentStoredData,
  type WrappedArtifactKey,
} from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { isEventId, newEvent, type StoredEvent } from "../eventstore/events.js";
import { currentWrapRecord, projectDocument } from "../eventstore/projection.js";
import { assertValidDocumentId, assertValidWorkspaceId, documentStreamId } from "../eventstore/stream-id.js";
import { parseKeyId, type KeyId } from "../keystore/key-id.js";
import type { KeyStore } from "../keystore/key-store.js";
import { zeroize } from "../shared/bytes.js";
import { InvalidInputError } from "../shared/errors.js";
import { uuidFromName } from "../shared/ids.js";
import { activeKeyOf } from "../workspaces/workspace.js";
import {
  ArtifactNotFoundError,
  ConcurrentUpdateError,
  WriteWindowExpiredError,
  DocumentDeletedError,
  DocumentKeysAlreadyExistError,
  DocumentKeysNotFoundError,
  IdempotencyKeyMismatchError,
  WrapRecordCorruptError,
} from "./errors.js";
import {
  associatedData,
  decodeWrapped,
  DEFAULT_CONTENT_ALGORITHM,
  DEFAULT_CONTENT_VERSION,
  encodeWrapped,
  isArtifact,
  isWrapFormat,
  WrapFormats,
  type Artifact,
  type WrapFormat,
} from "./wrap-format.js";

export interface DataKeyDeps {
  readonly keyStore: KeyStore;
  readonly events: EventStore;
  readonly now?: () => Date;
  /** How long the caller may keep plaintext DEKs (default 300 s). */
  readonly keyTtlSeconds?: number;
  /** Appends retried after losing a race on the document stream (default 5). */
  readonly maxConflictRetries?: number;
  /**
   * The write window (default 5 s, `DEFAULT_WRITE_WINDOW_MS`): GenerateDataKeys records new DEKs only within this
   * time after it read the active master key version, else it reads again. A rotation's census waits longer than
   * this after the activation (`RotationDeps.writerSettleMs`), so no record can land on an old version after the
   * census that retires it (docs/rotation.md, "Writers in flight").
   */
  readonly writeWindowMs?: number;
}

/** `DataKeyDeps.writeWindowMs`'s default. */
export const DEFAULT_WRITE_WINDOW_MS = 5_000;

export interface PlaintextDataKey {
  readonly artifact: Artifact;
  /** The DEK. Owned by the caller, who zeroizes it when done. */
  readonly plaintext: Buffer;
}

export interface DataKeysResult {
  readonly workspaceId: string;
  readonly documentId: string;
  readonly keyId: KeyId;
  readonly keys: PlaintextDataKey[];
  /** The current wrap record (no secret in it). */
  readonly record: DocumentEncryptionKeysAddedData;
  readonly recordVersion: number;
  /** After this time the caller must forget the plaintext keys. */
  readonly expiresAt: string;
}

export interface GenerateDataKeysInput {
  readonly workspaceId: string;
  readonly documentId: string;
  readonly artifacts: readonly string[];
  /** Same key, same keys: a retry with it returns the keys of the first call, never a second set. */
  readonly idempotencyKey: string;
}

export interface DecryptDataKeysInput {
  readonly workspaceId: string;
  readonly documentId: string;
  readonly artifacts: readonly string[];
}

export interface LifecycleInput {
  readonly workspaceId: string;
  readonly documentId: string;
  /** Id of the lifecycle message (an EventBridge event id): a redelivery records nothing twice. */
  readonly messageId: string;
  readonly occurredAt?: string;
}

export interface LifecycleResult {
  readonly recorded: boolean;
  readonly status: "pending" | "stored" | "deleted";
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;

interface DocumentView {
  readonly events: StoredEvent[];
  readonly currentVersion: number | undefined;
  readonly current: StoredEvent | undefined;
  readonly status: "pending" | "stored" | "deleted" | undefined;
}

export class DataKeyService {
  private readonly now: () => Date;
  private readonly ttlSeconds: number;
  private readonly maxRetries: number;
  private readonly writeWindowMs: number;

  constructor(private readonly deps: DataKeyDeps) {
    this.now = deps.now ?? (() => new Date());
    this.ttlSeconds = deps.keyTtlSeconds ?? 300;
    this.maxRetries = deps.maxConflictRetries ?? 5;
    this.writeWindowMs = deps.writeWindowMs ?? DEFAULT_WRITE_WINDOW_MS;
  }

  async generateDataKeys(input: GenerateDataKeysInput): Promise<DataKeysResult> {
    const artifacts = checkArtifacts(input.artifacts);
    assertValidWorkspaceId(input.workspaceId);
    assertValidDocumentId(input.documentId);
    if (typeof input.idempotencyKey !== "string" || !IDEMPOTENCY_KEY.test(input.idempotencyKey)) {
      throw new InvalidInputError("idempotencyKey must be 1-128 printable ASCII characters without spaces");
    }
    const { workspaceId, documentId } = input;
    const eventId = uuidFromName("GenerateDataKeys", workspaceId, documentId, input.idempotencyKey);
    const stream = documentStreamId(workspaceId, documentId);

    let windowExpired = false;
    for (let attempt = 0; attempt <= this.maxRetries; attempt++) {
      const doc = await this.readDocument(workspaceId, documentId);
      if (doc.status === "deleted") throw deleted(workspaceId, documentId);
      const mine = doc.events.find((e) => e.eventId === eventId);
      if (mine) {
        const originally = (mine.data as DocumentEncryptionKeysAddedData).Artifacts.map((a) => a.Artifact);
        if (!sameSet(originally, artifacts)) {
          throw new IdempotencyKeyMismatchError("this idempotency key was used with other artifacts", {
            context: { workspaceId, documentId, artifacts: originally },
          });
        }
        return this.unwrapCurrent(doc, workspaceId, documentId, artifacts);
      }
      if (doc.current) {
        throw new DocumentKeysAlreadyExistError(
          `document ${documentId} already has keys from another request; use its keys (DecryptDataKeys) or a new document id`,
          { context: { workspaceId, documentId } },
        );
      }

      // The write window starts before the active version is read (a monotonic clock).
      const readAt = performance.now();
      const keyId = await activeKeyOf(this.deps.events, workspaceId);
      const keys: PlaintextDataKey[] = [];
      try {
        const entries: WrappedArtifactKey[] = [];
        for (const artifact of artifacts) {
          const plaintext = await this.deps.keyStore.generateDataKey();
          keys.push({ artifact, plaintext });
          const aad = associatedData(WrapFormats.AmkGcmV1, { workspaceId, documentId, artifact, keyId });
          const wrapped = await this.deps.keyStore.wrapDataKey(keyId, plaintext, aad);
          entries.push({
            Artifact: artifact,
            ...encodeWrapped(wrapped),
            Algorithm: DEFAULT_CONTENT_ALGORITHM,
            Version: DEFAULT_CONTENT_VERSION,
          });
        }
        const occurredAt = this.now().toISOString();
        const record: DocumentEncryptionKeysAddedData = {
          AggregateId: documentId,
          WorkspaceId: workspaceId,
          KeyId: keyId,
          WrapFormat: WrapFormats.AmkGcmV1,
          Artifacts: entries,
          OccurredOn: occurredAt,
        };
        const event = newEvent(EventTypes.DocumentEncryptionKeysAdded, record, { eventId, occurredAt });
        if (performance.now() - readAt > this.writeWindowMs) {
          // Too late to record under the version read: a rotation may have activated another one and be counting
          // the old one's records. Nothing recorded, nothing handed out: read again.
          zeroize(...keys.map((k) => k.plaintext));
          windowExpired = true;
          continue;
        }
        const res = await this.deps.events.appendToStream(stream, [event], {
          expectedVersion: doc.currentVersion ?? "no_stream",
        });
        if (!res.appended) {
          // Our event id landed in an earlier attempt whose answer was lost: go back and return those keys.
          zeroize(...keys.map((k) => k.plaintext));
          continue;
        }
        // Recorded: only now may the keys leave.
        return {
          workspaceId,
          documentId,
          keyId,
          keys,
          record,
          recordVersion: res.nextExpectedVersion,
          expiresAt: this.expiry(),
        };
      } catch (err) {
        zeroize(...keys.map((k) => k.plaintext));
        if (err instanceof ExpectedVersionConflictError) continue; // lost a race: read again
        throw err;
      }
    }
    if (windowExpired) {
      throw new WriteWindowExpiredError(
        `the DEKs of document ${documentId} could not be recorded within ${this.writeWindowMs} ms of reading the active master key version; nothing was recorded, retry`,
        { context: { workspaceId, documentId, writeWindowMs: this.writeWindowMs } },
      );
    }
    throw new ConcurrentUpdateError(`document ${documentId} kept changing; retry later`, {
      context: { workspaceId, documentId },
    });
  }

  async decryptDataKeys(input: DecryptDataKeysInput): Promise<DataKeysResult> {
    const artifacts = checkArtifacts(input.artifacts);
    assertValidWorkspaceId(input.workspaceId);
    assertValidDocumentId(input.documentId);
    const doc = await this.readDocument(input.workspaceId, input.documentId);
    if (doc.status === "deleted") throw deleted(input.workspaceId, input.documentId);
    return this.unwrapCurrent(doc, input.workspaceId, input.documentId, artifacts);
  }

  async recordDocumentStored(input: LifecycleInput): Promise<LifecycleResult> {
    return this.recordLifecycle(input, EventTypes.DocumentStored);
  }

  async recordDocumentDeleted(input: LifecycleInput): Promise<LifecycleResult> {
    return this.recordLifecycle(input, EventTypes.DocumentDeleted);
  }

  // ---- internals -------------------------------------------------------------------------------------------

  private async recordLifecycle(
    input: LifecycleInput,
    type: typeof EventTypes.DocumentStored | typeof EventTypes.DocumentDeleted,
  ): Promise<LifecycleResult> {
    assertValidWorkspaceId(input.workspaceId);
    assertValidDocumentId(input.documentId);
    if (typeof input.messageId !== "string" || input.messageId.length === 0 || input.messageId.length > 256) {
      throw new InvalidInputError("messageId must be a non-empty string of at most 256 characters");
    }
    const { workspaceId, documentId } = input;
    const eventId = isEventId(input.messageId)
      ? input.messageId
      : uuidFromName(type, workspaceId, input.messageId);
    const stream = documentStreamId(workspaceId, documentId);
    for (let attempt = 0; attempt <= this.maxRetries; attempt++) {
      const doc = await this.readDocument(workspaceId, documentId);
      if (!doc.current || doc.status === undefined) {
        throw new DocumentKeysNotFoundError(
          `document ${documentId} has no keys; nothing to ${type === EventTypes.DocumentStored ? "confirm" : "delete"}`,
          {
            context: { workspaceId, documentId },
          },
        );
      }
      if (doc.events.some((e) => e.eventId === eventId)) return { recorded: false, status: doc.status };
      // Terminal or already confirmed: a late or duplicated message changes nothing.
      if (doc.status === "deleted" || (type === EventTypes.DocumentStored && doc.status === "stored")) {
        return { recorded: false, status: doc.status };
      }
      const occurredAt = input.occurredAt ?? this.now().toISOString();
      const data: DocumentStoredData | DocumentDeletedData = {
        AggregateId: documentId,
        WorkspaceId: workspaceId,
        OccurredOn: occurredAt,
      };
      try {
        const res = await this.deps.events.appendToStream(
          stream,
          [newEvent(type, data, { eventId, occurredAt })],
          {
            expectedVersion: doc.currentVersion ?? "no_stream",
          },
        );
        return { recorded: res.appended, status: type === EventTypes.DocumentStored ? "stored" : "deleted" };
      } catch (err) {
        if (err instanceof ExpectedVersionConflictError) continue;
        throw err;
      }
    }
    throw new ConcurrentUpdateError(`document ${documentId} kept changing; retry later`, {
      context: { workspaceId, documentId },
    });
  }

  private async readDocument(workspaceId: string, documentId: string): Promise<DocumentView> {
    const { events, currentVersion } = await this.deps.events.readStream(
      documentStreamId(workspaceId, documentId),
    );
    const current = currentWrapRecord(events);
    return { events, currentVersion, current, status: projectDocument(events)?.status };
  }

  private async unwrapCurrent(
    doc: DocumentView,
    workspaceId: string,
    documentId: string,
    artifacts: Artifact[],
  ): Promise<DataKeysResult> {
    if (!doc.current) {
      throw new DocumentKeysNotFoundError(`document ${documentId} has no keys`, {
        context: { workspaceId, documentId },
      });
    }
    const record = doc.current.data as DocumentEncryptionKeysAddedData;
    const { keyId, format } = checkRecord(record, workspaceId, documentId, doc.current.version);
    const keys: PlaintextDataKey[] = [];
    try {
      for (const artifact of artifacts) {
        const entry = record.Artifacts.find((a) => a.Artifact === artifact);
        if (!entry) {
          throw new ArtifactNotFoundError(`document ${documentId} has no key for artifact ${artifact}`, {
            context: { workspaceId, documentId, artifact },
          });
        }
        const aad = associatedData(format, { workspaceId, documentId, artifact, keyId });
        const plaintext = await this.deps.keyStore.unwrapDataKey(keyId, decodeWrapped(entry), aad);
        keys.push({ artifact, plaintext });
      }
    } catch (err) {
      zeroize(...keys.map((k) => k.plaintext));
      throw err;
    }
    return {
      workspaceId,
      documentId,
      keyId,
      keys,
      record,
      recordVersion: doc.current.version,
      expiresAt: this.expiry(),
    };
  }

  private expiry(): string {
    return new Date(this.now().getTime() + this.ttlSeconds * 1000).toISOString();
  }
}

function checkArtifacts(artifacts: readonly string[]): Artifact[] {
  if (!Array.isArray(artifacts) || artifacts.length === 0 || artifacts.length > 5) {
    throw new InvalidInputError("artifacts must list 1 to 5 of file, metadata, thumb, preview, archive");
  }
  const out: Artifact[] = [];
  for (const a of artifacts) {
    if (!isArtifact(a)) {
      throw new InvalidInputError("unknown artifact; expected file, metadata, thumb, preview or archive", {
        context: { artifact: String(a).slice(0, 40) },
      });
    }
    if (out.includes(a))
      throw new InvalidInputError(`artifact ${a} is listed twice`, { context: { artifact: a } });
    out.push(a);
  }
  return out;
}

function checkRecord(
  record: DocumentEncryptionKeysAddedData,
  workspaceId: string,
  documentId: string,
  version: number,
): { keyId: KeyId; format: WrapFormat } {
  const context = { workspaceId, documentId, version };
  if (!isWrapFormat(record.WrapFormat)) {
    throw new WrapRecordCorruptError("the wrap record has an unknown WrapFormat", { context });
  }
  if (!Array.isArray(record.Artifacts))
    throw new WrapRecordCorruptError("the wrap record has no Artifacts", { context });
  let keyId: KeyId;
  try {
    keyId = parseKeyId(record.KeyId);
  } catch (cause) {
    throw new WrapRecordCorruptError("the wrap record has no valid KeyId", { cause, context });
  }
  return { keyId, format: record.WrapFormat };
}

function deleted(workspaceId: string, documentId: string): DocumentDeletedError {
  return new DocumentDeletedError(`document ${documentId} was deleted; its keys are no longer handed out`, {
    context: { workspaceId, documentId },
  });
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
