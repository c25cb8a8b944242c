/**
 * Master-key rotation and the re-wrap engine.
 *
 * - `startRotation`: a new master key version is created *pending* (`MasterKeyCreated` with `State: pending`,
 *   `RotationStarted`, one conditional append), a kit that carries it is issued, and only then it becomes active (new
 *   DEKs use it) while the version before turns decrypt-only (`MasterKeyStateChanged` x2, one conditional append):
 *   no DEK is ever wrapped under a version that no kit holds.
 *   Idempotent: while a rotation runs, starting again returns it (that is how a killed job resumes); a failed
 *   rotation is resumed with the same target version, not replaced by a new one.
 * - `rewrapShard`: the unit of work. It takes documents still on an old version from one census shard, re-wraps
 *   every artifact inside the HSM (the DEK never changes, only its wrap) and appends a new
 *   `DocumentEncryptionKeysAdded` conditional on the version it read; a lost race re-reads and retries, it never
 *   overwrites. Moved documents leave the shard's listing, so the index itself is the checkpoint: a re-run after any
 *   crash continues where the last one stopped, and running a shard twice changes nothing the second time.
 * - `census`: counts per old version (the index) and cross-checks a sample of streams.
 * - `completeRotation`: only with a census of zero: retires the old versions, then re-issues the kit (live versions).
 * - `scheduleDestruction` / `destroyRetiredKey`: a separate, deliberate step with a waiting period.
 */
import { randomUUID } from "node:crypto";
import type { Alerts } from "../alerts/alerts.js";
import {
  EventTypes,
  type DocumentEncryptionKeysAddedData,
  type MasterKeyCreatedData,
  type MasterKeyDestroyedData,
  type MasterKeyDestructionScheduledData,
  type MasterKeyStateChangedData,
  type RotationCompletedData,
  type RotationStartedData,
  type WrappedArtifactKey,
} from "../eventstore/catalogue.js";
import type { EventStore, StreamAppend } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent } from "../eventstore/events.js";
import { currentWrapRecord, projectDocument, type DocumentProjection } from "../eventstore/projection.js";
import { documentStreamId, workspaceStreamId } from "../eventstore/stream-id.js";
import {
  associatedData,
  decodeWrapped,
  encodeWrapped,
  isArtifact,
  isWrapFormat,
  WrapFormats,
} from "../datakeys/wrap-format.js";
import { ConcurrentUpdateError, WrapRecordCorruptError } from "../datakeys/errors.js";
import { KeyAlreadyExistsError } from "../keystore/errors.js";
import { describeKeyId, masterKeyId, parseKeyId, type KeyId } from "../keystore/key-id.js";
import type { KeyStore } from "../keystore/key-store.js";
import { AmkError, InvalidInputError } from "../shared/errors.js";
import { uuidFromName } from "../shared/ids.js";
import { retryTransient, sleep } from "../shared/retry.js";
import { mapLimit } from "../shared/concurrency.js";
import type { KitService } from "../kit/kit-service.js";
import { readWorkspace, type RotationState, type WorkspaceState } from "../workspaces/workspace.js";
import { recordRotationFailure } from "./failure.js";

export class RotationError extends AmkError {
  readonly code = "ROTATION_STATE";
}

/** The census still finds wrap records on an old version: nothing is retired. */
export class CensusNotEmptyError extends AmkError {
  readonly code = "CENSUS_NOT_EMPTY";
}

export interface RotationDeps {
  readonly keyStore: KeyStore;
  readonly events: EventStore;
  readonly kits: KitService;
  readonly alerts: Alerts;
  readonly now?: () => Date;
  /** Documents re-wrapped concurrently within one shard (default 8). */
  readonly documentConcurrency?: number;
  /** Retries of a document's append after losing a race (default 8). */
  readonly maxConflictRetries?: number;
  /**
   * How long after the new version became active the census must wait before it may count (default 60 s,
   * `DEFAULT_WRITER_SETTLE_MS`). A writer that read the old version as active just before the activation can still
   * append a record under it for a while (GenerateDataKeys: its write window plus the longest store append), so a
   * census taken earlier could miss that record and the old version be retired under it. Must exceed the data-key
   * writers' `writeWindowMs` plus the longest append plus clock skew (docs/rotation.md, "Writers in flight").
   */
  readonly writerSettleMs?: number;
}

/** `RotationDeps.writerSettleMs`'s default: GenerateDataKeys' 5 s window + 30 s of appends and retries + slack. */
export const DEFAULT_WRITER_SETTLE_MS = 60_000;

export interface ShardResult {
  readonly shard: number;
  readonly fromKeyId: string;
  /** Documents this call re-wrapped (appended a new record for). */
  readonly moved: number;
  /** Documents found already on the target version or deleted (nothing to do). */
  readonly skipped: number;
  /** True when the call stopped at its budget with documents left in the shard. */
  readonly remaining: boolean;
}

export interface CensusResult {
  readonly remaining: number;
  readonly byKeyId: Readonly<Record<string, number>>;
  /** Streams read to cross-check the index (their last wrap record is on the target version). */
  readonly sampled: number;
  readonly sampleMismatches: readonly string[];
  /**
   * Whether the writer settle time since the new version's activation has passed (`RotationDeps.writerSettleMs`).
   * Only a settled census of zero lets the old versions be retired.
   */
  readonly settled: boolean;
  /** When it is not settled: how long until it is (ms). */
  readonly settleRemainingMs: number;
}

/** The census came too early after the activation to prove that no writer in flight still uses an old version. */
export class RotationNotSettledError extends AmkError {
  readonly code = "ROTATION_NOT_SETTLED";
  override readonly retryable = true;
}

export class RotationService {
  private readonly now: () => Date;
  private readonly concurrency: number;
  private readonly maxRetries: number;
  private readonly settleMs: number;

  constructor(private readonly deps: RotationDeps) {
    this.now = deps.now ?? (() => new Date());
    this.concurrency = deps.documentConcurrency ?? 8;
    this.maxRetries = deps.maxConflictRetries ?? 8;
    this.settleMs = Math.max(0, deps.writerSettleMs ?? DEFAULT_WRITER_SETTLE_MS);
  }

  /**
   * `excludeTargets`: versions that may not be the rotation's target (a recovery's recovered versions: it must
   * rotate to a fresh key). A running or failed rotation towards one of them is closed as superseded and a new
   * rotation to a fresh version starts.
   */
  async startRotation(
    workspaceId: string,
    reason = "scheduled rotation",
    options: { excludeTargets?: readonly string[] } = {},
  ): Promise<RotationState> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const ws = await readWorkspace(this.deps.events, workspaceId);
      const superseded =
        ws.rotation !== undefined &&
        ws.rotation.status !== "completed" &&
        (options.excludeTargets ?? []).includes(ws.rotation.toKeyId);
      if (superseded && ws.rotation?.status === "running") {
        await this.recordFailure(workspaceId, {
          name: "RotationSuperseded",
          message: `superseded: ${reason}`,
        });
        continue;
      }
      if (ws.rotation?.status === "running") {
        await this.ensureKitCovers(ws, ws.rotation, reason);
        await this.ensureActive(workspaceId, ws.rotation);
        return ws.rotation;
      }
      if (ws.rotation?.status === "failed" && !superseded) {
        // Resume the failed rotation where it stopped (same target version): no new key for every retry.
        const r = ws.rotation;
        const resumed: RotationStartedData = {
          WorkspaceId: workspaceId,
          RotationId: r.rotationId,
          ToKeyId: r.toKeyId,
          FromKeyIds: r.fromKeyIds,
          Reason: `resumed after failure (${reason})`,
        };
        try {
          await this.deps.events.appendToStream(
            workspaceStreamId(workspaceId),
            [newEvent(EventTypes.RotationStarted, resumed, { occurredAt: this.now() })],
            { expectedVersion: ws.version },
          );
        } catch (err) {
          if (err instanceof ExpectedVersionConflictError) continue;
          throw err;
        }
        await this.ensureKitCovers(await readWorkspace(this.deps.events, workspaceId), r, reason);
        await this.ensureActive(workspaceId, r);
        return { ...r, status: "running" };
      }
      if (!ws.activeKeyId)
        throw new RotationError(`workspace ${workspaceId} has no master key`, { context: { workspaceId } });
      const next = Math.max(...ws.keys.map((k) => describeKeyId(k.keyId).version)) + 1;
      const toKeyId = masterKeyId(workspaceId, next);
      let info = await this.deps.keyStore.findMasterKey(toKeyId);
      if (!info) {
        try {
          info = await this.deps.keyStore.createMasterKey(toKeyId);
        } catch (err) {
          if (!(err instanceof KeyAlreadyExistsError)) throw err;
          info = await this.deps.keyStore.findMasterKey(toKeyId);
          if (!info) throw err;
        }
      }
      const fromKeyIds = ws.keys
        .filter((k) => k.state === "active" || k.state === "decrypt-only")
        .map((k) => k.keyId);
      const rotationId = randomUUID();
      const at = this.now();
      // Pending: no DEK is wrapped under it before a kit carries it (ensureKitCovers, then ensureActive).
      const created: MasterKeyCreatedData = {
        WorkspaceId: workspaceId,
        KeyId: toKeyId,
        Kcv: info.kcv,
        Extractable: info.extractable,
        State: "pending",
      };
      // A pending version of a superseded rotation was never handed out (no record uses it): it is abandoned.
      const abandoned = ws.keys
        .filter((k) => k.state === "pending")
        .map((k) =>
          newEvent(
            EventTypes.MasterKeyStateChanged,
            {
              WorkspaceId: workspaceId,
              KeyId: k.keyId,
              From: "pending",
              To: "retired",
              Reason: `never activated; superseded by rotation ${rotationId}`,
            } satisfies MasterKeyStateChangedData,
            { occurredAt: at },
          ),
        );
      const started: RotationStartedData = {
        WorkspaceId: workspaceId,
        RotationId: rotationId,
        ToKeyId: toKeyId,
        FromKeyIds: fromKeyIds,
        Reason: reason,
      };
      try {
        await this.deps.events.appendToStream(
          workspaceStreamId(workspaceId),
          [
            newEvent(EventTypes.MasterKeyCreated, created, { occurredAt: at }),
            ...abandoned,
            newEvent(EventTypes.RotationStarted, started, { occurredAt: at }),
          ],
          { expectedVersion: ws.version },
        );
      } catch (err) {
        if (err instanceof ExpectedVersionConflictError) continue; // someone else changed the workspace: look again
        throw err;
      }
      const running: RotationState = { rotationId, toKeyId, fromKeyIds, status: "running" };
      await this.ensureKitCovers(await readWorkspace(this.deps.events, workspaceId), running, reason);
      await this.ensureActive(workspaceId, running);
      return running;
    }
    throw new ConcurrentUpdateError(`workspace ${workspaceId} kept changing; retry the rotation`);
  }

  /**
   * The kit must carry every live version at all times (docs/recovery-kit.md): the rotation's new version is in a
   * kit before it is handed out (ensureActive), so that documents wrapped under it stay recoverable. Issued when the
   * latest kit lacks the rotation's target (a re-run after a failed issuance repairs it).
   */
  private async ensureKitCovers(ws: WorkspaceState, rotation: RotationState, reason: string): Promise<void> {
    const latest = ws.kits.at(-1);
    if (!latest || latest.masterKeys.some((m) => m.keyId === rotation.toKeyId)) return;
    await this.deps.kits.issueKit(ws.workspaceId, {
      reason: `rotation ${rotation.rotationId} started (${reason}): the kit carries the new version`,
    });
  }

  /**
   * Makes the rotation's pending target the active version (the active one before turns decrypt-only), in one
   * conditional append, once the newest kit carries it. Idempotent: a target already active is left as it is.
   */
  private async ensureActive(workspaceId: string, rotation: RotationState): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const ws = await readWorkspace(this.deps.events, workspaceId);
      const target = ws.keys.find((k) => k.keyId === rotation.toKeyId);
      if (target?.state !== "pending") return;
      const kit = ws.kits.at(-1);
      if (kit && !kit.masterKeys.some((m) => m.keyId === rotation.toKeyId)) {
        throw new RotationError(
          `${rotation.toKeyId} is not in the newest kit (v${kit.kitVersion}): it is not activated`,
          { context: { workspaceId, keyId: rotation.toKeyId } },
        );
      }
      const at = this.now();
      const reason = `rotation ${rotation.rotationId}${kit ? `: kit v${kit.kitVersion} carries it` : ""}`;
      const changes = [
        newEvent(
          EventTypes.MasterKeyStateChanged,
          {
            WorkspaceId: workspaceId,
            KeyId: rotation.toKeyId,
            From: "pending",
            To: "active",
            Reason: reason,
          } satisfies MasterKeyStateChangedData,
          { occurredAt: at },
        ),
        ...ws.keys
          .filter((k) => k.state === "active")
          .map((k) =>
            newEvent(
              EventTypes.MasterKeyStateChanged,
              {
                WorkspaceId: workspaceId,
                KeyId: k.keyId,
                From: "active",
                To: "decrypt-only",
                Reason: reason,
              } satisfies MasterKeyStateChangedData,
              { occurredAt: at },
            ),
          ),
      ];
      try {
        await this.deps.events.appendToStream(workspaceStreamId(workspaceId), changes, {
          expectedVersion: ws.version,
        });
        return;
      } catch (err) {
        if (err instanceof ExpectedVersionConflictError) continue;
        throw err;
      }
    }
    throw new ConcurrentUpdateError(`workspace ${workspaceId} kept changing; retry the rotation`);
  }

  /** The work items of the re-wrap: one per (old version, census shard) that has documents. */
  async planRewrap(
    workspaceId: string,
  ): Promise<{ rotation: RotationState; items: { fromKeyId: string; shard: number }[]; remaining: number }> {
    const rotation = await this.runningRotation(workspaceId);
    const items: { fromKeyId: string; shard: number }[] = [];
    let remaining = 0;
    for (const fromKeyId of rotation.fromKeyIds) {
      const n = await this.deps.events.countDocumentsByKeyId(workspaceId, fromKeyId);
      remaining += n;
      if (n === 0) continue;
      for (let shard = 0; shard < this.deps.events.censusShards; shard++) items.push({ fromKeyId, shard });
    }
    return { rotation, items, remaining };
  }

  /**
   * Re-wraps the documents of one census shard that are still on `fromKeyId`, until the shard is empty or the
   * budget (documents or time) is used. Safe to run twice, concurrently with ingestion and with other shards.
   */
  async rewrapShard(input: {
    workspaceId: string;
    fromKeyId: string;
    shard: number;
    maxDocuments?: number;
    deadline?: number;
    pageSize?: number;
    /** Called with the number of documents each page moved (progress output, metrics). */
    onMoved?: (count: number) => void;
  }): Promise<ShardResult> {
    const rotation = await this.runningRotation(input.workspaceId);
    const fromKeyId = parseKeyId(input.fromKeyId);
    if (!rotation.fromKeyIds.includes(fromKeyId)) {
      throw new InvalidInputError(`${fromKeyId} is not being re-wrapped by rotation ${rotation.rotationId}`);
    }
    const max = input.maxDocuments ?? Number.POSITIVE_INFINITY;
    const pageSize = input.pageSize ?? 50;
    let moved = 0;
    let skipped = 0;
    let after: string | undefined;
    for (;;) {
      if (moved + skipped >= max || (input.deadline !== undefined && Date.now() >= input.deadline)) {
        const left = await this.deps.events.listDocumentsByKeyIdInShard(
          input.workspaceId,
          fromKeyId,
          input.shard,
          { limit: 1 },
        );
        return { shard: input.shard, fromKeyId, moved, skipped, remaining: left.length > 0 };
      }
      const page = await this.deps.events.listDocumentsByKeyIdInShard(
        input.workspaceId,
        fromKeyId,
        input.shard,
        {
          limit: Math.min(pageSize, Number.isFinite(max) ? max - moved - skipped : pageSize),
          ...(after ? { after } : {}),
        },
      );
      if (page.length === 0) return { shard: input.shard, fromKeyId, moved, skipped, remaining: false };
      const results = await this.rewrapPage(input.workspaceId, page, rotation.toKeyId);
      const movedHere = results.filter((r) => r === "moved").length;
      moved += movedHere;
      skipped += results.length - movedHere;
      if (movedHere > 0) input.onMoved?.(movedHere);
      // The index may still list a moved document for a moment (eventually consistent on AWS): continue after it.
      after = page.at(-1)!.documentId;
    }
  }

  /**
   * Re-wraps one document's current record to `toKeyId`, retrying lost races. Returns "moved", or "skipped" when it
   * is already there or deleted. The event id is derived from the version read, so a retried step is idempotent.
   */
  async rewrapDocument(
    workspaceId: string,
    documentId: string,
    toKeyId: KeyId,
  ): Promise<"moved" | "skipped"> {
    for (let attempt = 0; attempt <= this.maxRetries; attempt++) {
      const prepared = await this.prepareRewrap(workspaceId, documentId, toKeyId);
      if (prepared === "skipped") return "skipped";
      try {
        await this.deps.events.appendToStream(prepared.streamId, prepared.events, {
          expectedVersion: prepared.expectedVersion,
        });
        return "moved";
      } catch (err) {
        if (err instanceof ExpectedVersionConflictError) continue; // an ingestion or another batch won: read again
        throw err;
      }
    }
    throw new ConcurrentUpdateError(`document ${documentId} kept changing during its re-wrap`, {
      context: { workspaceId, documentId },
    });
  }

  /**
   * Re-wraps a page of documents. Listed documents (census projections) have their current record read in one
   * batch at the projection's `keysVersion`, and are appended at the projection's `version` with the listing as
   * the store's `knownProjection` (no head read; the write checks it); bare ids are read in full. HSM work runs concurrently; one `appendToStreams` writes every new record in as few transactions as
   * DynamoDB allows, each conditional on its own stream's version. A document whose append lost a race (or whose
   * listing was stale) is re-read in full and retried on its own: never overwritten.
   */
  async rewrapPage(
    workspaceId: string,
    documents: readonly (string | DocumentProjection)[],
    toKeyId: KeyId,
  ): Promise<("moved" | "skipped")[]> {
    const listed = documents.map((d) => (typeof d === "string" ? undefined : d));
    const refs = listed.flatMap((p) =>
      p?.keysVersion === undefined
        ? []
        : [{ streamId: documentStreamId(workspaceId, p.documentId), version: p.keysVersion }],
    );
    const fetched = refs.length > 0 ? await this.deps.events.readEvents(refs) : [];
    const recordAt = new Map(fetched.flatMap((e) => (e ? [[e.streamId as string, e] as const] : [])));
    const prepared = await mapLimit(documents, this.concurrency, async (d) => {
      const documentId = typeof d === "string" ? d : d.documentId;
      const known =
        typeof d === "string" ? undefined : recordAt.get(documentStreamId(workspaceId, documentId));
      if (
        typeof d !== "string" &&
        known &&
        known.type === EventTypes.DocumentEncryptionKeysAdded &&
        d.status !== "deleted"
      ) {
        const append = await this.buildRewrap(
          workspaceId,
          documentId,
          known.data as DocumentEncryptionKeysAddedData,
          d.version,
          toKeyId,
        );
        // The listing is the projection at d.version: the store need not read it again (it checks it on write).
        return append === "skipped" ? append : { ...append, knownProjection: d };
      }
      return this.prepareRewrap(workspaceId, documentId, toKeyId);
    });
    const appends = prepared.filter((p): p is StreamAppend => p !== "skipped");
    const outcomes = appends.length > 0 ? await this.deps.events.appendToStreams(appends) : [];
    const byStream = new Map(outcomes.map((o) => [o.streamId, o]));
    return mapLimit(documents, this.concurrency, async (d, i) => {
      const p = prepared[i]!;
      if (p === "skipped") return "skipped";
      const outcome = byStream.get(p.streamId);
      if (outcome && outcome.status !== "conflict") return "moved";
      return this.rewrapDocument(workspaceId, typeof d === "string" ? d : d.documentId, toKeyId);
    });
  }

  /** Reads a document and re-wraps its artifacts inside the HSM; the append is the caller's. */
  private async prepareRewrap(
    workspaceId: string,
    documentId: string,
    toKeyId: KeyId,
  ): Promise<StreamAppend | "skipped"> {
    const stream = documentStreamId(workspaceId, documentId);
    const { events, currentVersion } = await this.deps.events.readStream(stream);
    const status = projectDocument(events)?.status;
    const current = currentWrapRecord(events);
    if (!current || status === "deleted") return "skipped";
    return this.buildRewrap(
      workspaceId,
      documentId,
      current.data as DocumentEncryptionKeysAddedData,
      currentVersion ?? 0,
      toKeyId,
    );
  }

  /** Re-wraps a record's artifacts inside the HSM into the append of its successor at `currentVersion`. */
  private async buildRewrap(
    workspaceId: string,
    documentId: string,
    record: DocumentEncryptionKeysAddedData,
    currentVersion: number,
    toKeyId: KeyId,
  ): Promise<StreamAppend | "skipped"> {
    const stream = documentStreamId(workspaceId, documentId);
    if (record.KeyId === toKeyId && record.WrapFormat === WrapFormats.AmkGcmV1) return "skipped";
    if (!isWrapFormat(record.WrapFormat) || !Array.isArray(record.Artifacts)) {
      throw new WrapRecordCorruptError(`document ${documentId}'s wrap record cannot be read`, {
        context: { workspaceId, documentId },
      });
    }
    const fromKeyId = parseKeyId(record.KeyId);
    const artifacts: WrappedArtifactKey[] = [];
    for (const a of record.Artifacts) {
      if (!isArtifact(a.Artifact))
        throw new WrapRecordCorruptError(`unknown artifact in ${documentId}'s record`);
      const binding = { workspaceId, documentId, artifact: a.Artifact };
      const rewrapped = await this.deps.keyStore.rewrapDataKey(
        { keyId: fromKeyId, aad: associatedData(record.WrapFormat, { ...binding, keyId: fromKeyId }) },
        { keyId: toKeyId, aad: associatedData(WrapFormats.AmkGcmV1, { ...binding, keyId: toKeyId }) },
        decodeWrapped(a),
      );
      artifacts.push({ ...a, ...encodeWrapped(rewrapped) });
    }
    const occurredAt = this.now().toISOString();
    const data: DocumentEncryptionKeysAddedData = {
      AggregateId: documentId,
      WorkspaceId: workspaceId,
      KeyId: toKeyId,
      WrapFormat: WrapFormats.AmkGcmV1,
      Artifacts: artifacts,
      OccurredOn: occurredAt,
    };
    const eventId = uuidFromName("Rewrap", workspaceId, documentId, String(currentVersion), toKeyId);
    return {
      streamId: stream,
      events: [newEvent(EventTypes.DocumentEncryptionKeysAdded, data, { eventId, occurredAt })],
      expectedVersion: currentVersion === 0 ? "no_stream" : currentVersion,
    };
  }

  /**
   * Counts documents left on the old versions (index) and reads a sample of streams to cross-check it. Waits first
   * (at most `settleWaitMaxMs`, default `writerSettleMs`) until the writer settle time since the activation has
   * passed; a census that could not wait long enough says `settled: false`.
   */
  async census(
    workspaceId: string,
    options: { sample?: number; settleWaitMaxMs?: number } = {},
  ): Promise<CensusResult> {
    // Read-only, and many reads: each is retried on its own when the store is busy for a moment.
    const store = this.deps.events;
    const read = () => retryTransient(() => readWorkspace(store, workspaceId));
    let ws = await read();
    let rotation = runningRotationOf(ws);
    let settleRemainingMs = this.settleRemaining(ws, rotation);
    if (settleRemainingMs > 0) {
      await sleep(Math.min(settleRemainingMs, Math.max(0, options.settleWaitMaxMs ?? this.settleMs)));
      ws = await read();
      rotation = runningRotationOf(ws);
      settleRemainingMs = this.settleRemaining(ws, rotation);
    }
    const byKeyId: Record<string, number> = {};
    let remaining = 0;
    for (const k of rotation.fromKeyIds) {
      byKeyId[k] = await retryTransient(() => store.countDocumentsByKeyId(workspaceId, k));
      remaining += byKeyId[k]!;
    }
    const inUse = await retryTransient(() => store.listKeyIdsInUse(workspaceId));
    for (const k of rotation.fromKeyIds) if (inUse.includes(k) && byKeyId[k] === 0) remaining += 1;
    const mismatches: string[] = [];
    let sampled = 0;
    const want = options.sample ?? 20;
    const page = await retryTransient(() =>
      store.listDocumentsByKeyId(workspaceId, rotation.toKeyId, { limit: Math.max(1, want) }),
    );
    for (const d of page.documents.slice(0, want)) {
      sampled += 1;
      const { events } = await retryTransient(() =>
        store.readStream(documentStreamId(workspaceId, d.documentId)),
      );
      const last = currentWrapRecord(events);
      if ((last?.data as DocumentEncryptionKeysAddedData | undefined)?.KeyId !== rotation.toKeyId)
        mismatches.push(d.documentId);
    }
    return {
      remaining: remaining + mismatches.length,
      byKeyId,
      sampled,
      sampleMismatches: mismatches,
      settled: settleRemainingMs === 0,
      settleRemainingMs,
    };
  }

  /** Milliseconds until `writerSettleMs` has passed since the rotation's target became active (0: passed). */
  private settleRemaining(ws: WorkspaceState, rotation: RotationState): number {
    if (this.settleMs === 0) return 0;
    const target = ws.keys.find((k) => k.keyId === rotation.toKeyId);
    if (target?.state === "pending") return this.settleMs; // not even active yet
    const since = target?.activatedAt ? Date.parse(target.activatedAt) : NaN;
    if (!Number.isFinite(since)) return 0; // recorded before activation times existed: nothing to wait for
    return Math.max(0, Math.ceil(since + this.settleMs - this.now().getTime()));
  }

  /**
   * With a settled census of zero: retires the old versions, re-issues the kit for the live versions, completes.
   * Waits for the writer settle time at most `settleWaitMaxMs` (default: as long as it takes), else
   * `RotationNotSettledError` (retryable).
   */
  async completeRotation(
    workspaceId: string,
    options: { settleWaitMaxMs?: number } = {},
  ): Promise<{ kitVersion: number; retired: string[] }> {
    const before = await readWorkspace(this.deps.events, workspaceId);
    if (before.rotation?.status === "completed") {
      // The step again after its RotationCompleted was written but its answer lost (a retried task): same answer.
      const { events } = await this.deps.events.readStream(workspaceStreamId(workspaceId));
      const done = events
        .filter(
          (e) => e.type === EventTypes.RotationCompleted && e.data.RotationId === before.rotation?.rotationId,
        )
        .at(-1)?.data as RotationCompletedData | undefined;
      if (done) return { kitVersion: done.KitVersion, retired: [...done.RetiredKeyIds] };
    }
    const rotation = await this.runningRotation(workspaceId);
    const census = await this.census(
      workspaceId,
      options.settleWaitMaxMs !== undefined ? { settleWaitMaxMs: options.settleWaitMaxMs } : {},
    );
    if (!census.settled) {
      throw new RotationNotSettledError(
        `the census must wait ${census.settleRemainingMs} ms more for writers in flight; nothing retired`,
        { context: { workspaceId, settleRemainingMs: census.settleRemainingMs } },
      );
    }
    if (census.remaining > 0) {
      throw new CensusNotEmptyError(
        `${census.remaining} document(s) still use the old version(s); nothing retired`,
        {
          context: { workspaceId, byKeyId: census.byKeyId, sampleMismatches: census.sampleMismatches.length },
        },
      );
    }
    // 1. Retire the old versions (the census proved no record needs them; the kit issued at the start carries the
    //    new version, so the workspace is covered at every moment).
    let retired: string[];
    for (let attempt = 0; ; attempt++) {
      const ws = await readWorkspace(this.deps.events, workspaceId);
      const at = this.now();
      const toRetire = ws.keys.filter(
        (k) => rotation.fromKeyIds.includes(k.keyId) && k.state === "decrypt-only",
      );
      retired = ws.keys
        .filter(
          (k) => rotation.fromKeyIds.includes(k.keyId) && k.state !== "active" && k.state !== "decrypt-only",
        )
        .map((k) => k.keyId);
      if (toRetire.length === 0) break;
      const retire = toRetire.map((k) =>
        newEvent(
          EventTypes.MasterKeyStateChanged,
          {
            WorkspaceId: workspaceId,
            KeyId: k.keyId,
            From: "decrypt-only",
            To: "retired",
            Reason: `census of rotation ${rotation.rotationId}: no wrap record uses it`,
          } satisfies MasterKeyStateChangedData,
          { occurredAt: at },
        ),
      );
      try {
        await this.deps.events.appendToStream(workspaceStreamId(workspaceId), retire, {
          expectedVersion: ws.version,
        });
        retired = [...retired, ...toRetire.map((k) => k.keyId)];
        break;
      } catch (err) {
        if (!(err instanceof ExpectedVersionConflictError) || attempt >= 5) throw err;
      }
    }
    // 2. The kit for the live versions only (the retired ones leave it), then 3. the completion.
    const kit = await this.deps.kits.issueKit(workspaceId, {
      reason: `rotation ${rotation.rotationId} completed`,
    });
    for (let attempt = 0; attempt < 5; attempt++) {
      const ws = await readWorkspace(this.deps.events, workspaceId);
      const done: RotationCompletedData = {
        WorkspaceId: workspaceId,
        RotationId: rotation.rotationId,
        ToKeyId: rotation.toKeyId,
        RetiredKeyIds: retired,
        KitVersion: kit.kitVersion,
      };
      try {
        await this.deps.events.appendToStream(
          workspaceStreamId(workspaceId),
          [newEvent(EventTypes.RotationCompleted, done, { occurredAt: this.now() })],
          { expectedVersion: ws.version },
        );
        return { kitVersion: kit.kitVersion, retired };
      } catch (err) {
        if (!(err instanceof ExpectedVersionConflictError)) throw err;
      }
    }
    throw new ConcurrentUpdateError(`workspace ${workspaceId} kept changing; complete the rotation again`);
  }

  /** Records the failure and alerts; the workspace keeps its (new) active key and every old key. */
  async recordFailure(workspaceId: string, error: { name: string; message: string }): Promise<void> {
    await recordRotationFailure(
      { events: this.deps.events, alerts: this.deps.alerts, now: this.now },
      workspaceId,
      error,
    );
  }

  /** Schedules a retired version's destruction after a waiting period (default 30 days). */
  async scheduleDestruction(
    workspaceId: string,
    keyId: string,
    options: { waitDays?: number } = {},
  ): Promise<string> {
    const ws = await readWorkspace(this.deps.events, workspaceId);
    const key = ws.keys.find((k) => k.keyId === keyId);
    if (!key || key.state !== "retired")
      throw new RotationError(`${keyId} is not retired; only retired versions can be destroyed`);
    if ((await this.deps.events.countDocumentsByKeyId(workspaceId, keyId)) > 0)
      throw new CensusNotEmptyError(`${keyId} is still used`);
    const notBefore = new Date(this.now().getTime() + (options.waitDays ?? 30) * 86_400_000).toISOString();
    const data: MasterKeyDestructionScheduledData = {
      WorkspaceId: workspaceId,
      KeyId: keyId,
      NotBefore: notBefore,
    };
    await this.deps.events.appendToStream(
      workspaceStreamId(workspaceId),
      [newEvent(EventTypes.MasterKeyDestructionScheduled, data, { occurredAt: this.now() })],
      {
        expectedVersion: ws.version,
      },
    );
    return notBefore;
  }

  /** Destroys a retired version whose waiting period is over, after a last census. */
  async destroyRetiredKey(workspaceId: string, keyId: string): Promise<void> {
    const ws = await readWorkspace(this.deps.events, workspaceId);
    const key = ws.keys.find((k) => k.keyId === keyId);
    if (!key || key.state !== "retired" || !key.destroyNotBefore) {
      throw new RotationError(`${keyId} is not retired with a scheduled destruction`);
    }
    if (Date.parse(key.destroyNotBefore) > this.now().getTime()) {
      throw new RotationError(`${keyId} may not be destroyed before ${key.destroyNotBefore}`, {
        context: { notBefore: key.destroyNotBefore },
      });
    }
    if ((await this.deps.events.countDocumentsByKeyId(workspaceId, keyId)) > 0)
      throw new CensusNotEmptyError(`${keyId} is still used`);
    await this.deps.keyStore.destroyMasterKey(key.keyId);
    const data: MasterKeyDestroyedData = { WorkspaceId: workspaceId, KeyId: keyId };
    await this.deps.events.appendToStream(
      workspaceStreamId(workspaceId),
      [newEvent(EventTypes.MasterKeyDestroyed, data, { occurredAt: this.now() })],
      {
        expectedVersion: "stream_exists",
      },
    );
  }

  private async runningRotation(workspaceId: string): Promise<RotationState> {
    return runningRotationOf(await readWorkspace(this.deps.events, workspaceId));
  }
}

/** The workspace's running rotation, or `RotationError`. */
function runningRotationOf(ws: WorkspaceState): RotationState {
  if (ws.rotation?.status !== "running") {
    throw new RotationError(`workspace ${ws.workspaceId} has no rotation running`, {
      context: { workspaceId: ws.workspaceId },
    });
  }
  return ws.rotation;
}
