/**
 * The history checker of the reliability suite: after a scenario, it reads the WHOLE event-store table (a strongly
 * consistent Scan of every item: events, stream heads, event-id markers, document projections) and the HSM
 * (`listMasterKeys`), and proves the invariants a key service must keep whatever happened on the way:
 *
 *  1. streams: every stream's versions are exactly 1..n (no gap, no duplicate), its head says n, and every event has
 *     its event-id marker pointing back at it (and every marker at an event);
 *  2. documents: every document that is not deleted has a current wrap record (the last `DocumentEncryptionKeysAdded`
 *     of its stream); deletion is terminal (no record after it), at most one `DocumentStored` and one
 *     `DocumentDeleted`; the stored projection (and its census index keys) equals the one folded from the stream;
 *  3. acknowledged records: every `generateDataKeys` result a caller was told succeeded (document id + record version)
 *     is in the store at that version, unchanged (same wrapped DEKs);
 *  4. DEKs: every current wrap record of a live document unwraps (through `DataKeyService.decryptDataKeys`, i.e. the
 *     HSM), and for acknowledged documents to the DEKs first handed out (SHA-256 kept by the scenario);
 *  5. master keys: no version that a current record of a live document uses is retired or destroyed, every such
 *     version and every live version is in the HSM with the KCV recorded at its creation, and the newest kit
 *     carries them all;
 *  6. workflow runs: each run ended in a recorded final state (rotation: `RotationCompleted`/`RotationFailed`, never
 *     left running; recovery: `RecoveryCompleted`/`RecoveryFailed` for a recovery it held, never a lock left behind;
 *     drill: its `DrillCompleted`), judged from the run's outcome and the workspace stream around the run;
 *  7. lifecycle (when given): each document's status is what the delivered lifecycle events say (deleted wins).
 *
 * It prints the counts it checked and returns the violations (empty: the history is sound).
 */
import { createHash } from "node:crypto";
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, ScanCommand } from "@aws-sdk/lib-dynamodb";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { SK_HEAD, SK_PROJECTION, keys } from "../../core/adapters/dynamodb/table.js";
import { verifyCanaries } from "../../core/canaries/canaries.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { EventTypes, type DocumentEncryptionKeysAddedData } from "../../core/eventstore/catalogue.js";
import type { StoredEvent } from "../../core/eventstore/events.js";
import {
  censusShard,
  currentWrapRecord,
  DEFAULT_CENSUS_SHARDS,
  inCensus,
  projectDocument,
} from "../../core/eventstore/projection.js";
import { parseStreamId, type StreamId } from "../../core/eventstore/stream-id.js";
import { parseKeyId } from "../../core/keystore/key-id.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import { mapLimit } from "../../core/shared/concurrency.js";
import { emptyWorkspace, evolveWorkspace, type WorkspaceState } from "../../core/workspaces/workspace.js";

/** A `generateDataKeys` result a caller was told succeeded: what the scenario keeps of it. */
export interface AcknowledgedDataKeys {
  readonly workspaceId: string;
  readonly documentId: string;
  /** The record version the caller was given. */
  readonly recordVersion: number;
  /** Artifacts in the order handed out, with the record's `WrappedDek` and the SHA-256 (hex) of each DEK. */
  readonly artifacts: readonly string[];
  readonly wrappedDeks: readonly string[];
  readonly dekSha256: readonly string[];
}

export type WorkflowKind = "rotation" | "recovery" | "drill";

/** One workflow execution as the scenario saw it end. */
export interface WorkflowRunOutcome {
  readonly kind: WorkflowKind;
  readonly workspaceId: string;
  readonly executionName: string;
  readonly status: "SUCCEEDED" | "FAILED" | "ABORTED" | "TIMED_OUT";
  /** The execution's error name when it failed. */
  readonly error?: string;
  /** The workspace stream's version before the execution started and after it ended. */
  readonly versionBefore: number;
  readonly versionAfter: number;
  /** Drill runs: the drill id of the last RunDrill answer, when there was one. */
  readonly drillId?: string;
}

export interface HistoryCheckInput {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** The HSM, without any fault layer. */
  readonly keyStore: KeyStore;
  readonly acknowledged?: readonly AcknowledgedDataKeys[];
  readonly runs?: readonly WorkflowRunOutcome[];
  /** `<workspaceId>/<documentId>` -> the status the delivered lifecycle events imply. */
  readonly lifecycle?: ReadonlyMap<string, "stored" | "deleted">;
  /** Census shards of the table (default 16). */
  readonly censusShards?: number;
  /** Where the summary line goes (default: console.log); `false` prints nothing. */
  readonly log?: ((line: string) => void) | false;
  /** Names the check in the summary line (a scenario and seed). */
  readonly label?: string;
}

export interface HistoryCheckReport {
  readonly counts: Readonly<Record<string, number>>;
  readonly violations: readonly string[];
}

type Item = Record<string, unknown>;

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

export async function checkHistory(input: HistoryCheckInput): Promise<HistoryCheckReport> {
  const violations: string[] = [];
  const violate = (message: string): void => {
    violations.push(message);
  };
  const counts = {
    items: 0,
    streams: 0,
    events: 0,
    workspaces: 0,
    documents: 0,
    liveDocuments: 0,
    deletedDocuments: 0,
    currentRecords: 0,
    acknowledged: 0,
    acknowledgedDeleted: 0,
    deksCompared: 0,
    deksUnwrapped: 0,
    canaries: 0,
    keyVersionsInUse: 0,
    hsmKeys: 0,
    runs: 0,
    lifecycle: 0,
  };
  const shards = input.censusShards ?? DEFAULT_CENSUS_SHARDS;

  // ---- read everything ---------------------------------------------------------------------------------------
  const items = await scanAll(input.client, input.tableName);
  counts.items = items.length;
  const events = new Map<string, StoredEvent[]>();
  const heads = new Map<string, number>();
  const projections = new Map<string, Item>();
  const markers = new Map<string, { streamId: string; version: number }>();
  for (const item of items) {
    const pk = String(item.pk);
    const sk = String(item.sk);
    if (pk.startsWith("eid#")) {
      markers.set(String(item.eventId), { streamId: String(item.streamId), version: Number(item.version) });
    } else if (sk === SK_HEAD) {
      heads.set(pk, Number(item.version));
    } else if (sk === SK_PROJECTION) {
      projections.set(pk, item);
    } else if (sk.startsWith("e#")) {
      let data: Record<string, unknown>;
      try {
        data = JSON.parse(String(item.data)) as Record<string, unknown>;
      } catch {
        violate(`${pk} v${String(item.version)}: event data is not JSON`);
        continue;
      }
      const list = events.get(pk) ?? [];
      list.push({
        streamId: pk as StreamId,
        version: Number(item.version),
        eventId: String(item.eventId),
        type: String(item.type),
        schemaVersion: Number(item.schemaVersion),
        occurredAt: String(item.occurredAt),
        recordedAt: String(item.recordedAt),
        data,
      });
      events.set(pk, list);
      if (keys.event(pk, Number(item.version)).sk !== sk) {
        violate(`${pk}: event item ${sk} holds version ${String(item.version)}`);
      }
    } else {
      violate(`unknown item ${pk} / ${sk}`);
    }
  }

  // ---- 1. streams ------------------------------------------------------------------------------------------------
  for (const streamId of new Set([...events.keys(), ...heads.keys()])) {
    counts.streams += 1;
    const list = (events.get(streamId) ?? []).sort((a, b) => a.version - b.version);
    counts.events += list.length;
    list.forEach((e, i) => {
      if (e.version !== i + 1)
        violate(`${streamId}: version ${e.version} at position ${i + 1} (a gap or a duplicate)`);
      const m = markers.get(e.eventId);
      if (!m || m.streamId !== streamId || m.version !== e.version) {
        violate(`${streamId} v${e.version}: event id ${e.eventId} has no marker pointing at it`);
      }
    });
    const head = heads.get(streamId);
    if (head === undefined) violate(`${streamId}: events but no stream head`);
    else if (head !== list.length)
      violate(`${streamId}: head says version ${head}, the stream has ${list.length} events`);
  }
  for (const [eventId, m] of markers) {
    if (!(events.get(m.streamId) ?? []).some((e) => e.eventId === eventId && e.version === m.version)) {
      violate(`marker of event ${eventId} points at ${m.streamId} v${m.version}, which does not hold it`);
    }
  }

  // ---- workspaces ------------------------------------------------------------------------------------------------
  const workspaces = new Map<string, WorkspaceState>();
  const workspaceEvents = new Map<string, StoredEvent[]>();
  const documentsByWorkspace = new Map<string, { documentId: string; streamId: string }[]>();
  for (const [streamId, list] of events) {
    const parsed = parseStreamId(streamId);
    if (parsed.kind === "workspace") {
      workspaceEvents.set(parsed.workspaceId, list);
      workspaces.set(parsed.workspaceId, list.reduce(evolveWorkspace, emptyWorkspace(parsed.workspaceId)));
    } else {
      const docs = documentsByWorkspace.get(parsed.workspaceId) ?? [];
      docs.push({ documentId: parsed.documentId, streamId });
      documentsByWorkspace.set(parsed.workspaceId, docs);
    }
  }
  counts.workspaces = workspaces.size;

  // ---- 2. documents ----------------------------------------------------------------------------------------------
  const store = new DynamoDbEventStore({
    client: input.client,
    tableName: input.tableName,
    censusShards: shards,
  });
  const dataKeys = new DataKeyService({ keyStore: input.keyStore, events: store });
  const liveCurrent = new Map<
    string,
    { workspaceId: string; documentId: string; record: DocumentEncryptionKeysAddedData }
  >();
  const statusOf = new Map<string, "pending" | "stored" | "deleted" | undefined>();
  const keysInUse = new Map<string, Set<string>>();
  for (const [workspaceId, docs] of documentsByWorkspace) {
    const ws = workspaces.get(workspaceId);
    if (!ws) violate(`workspace ${workspaceId} has documents but no workspace stream`);
    for (const { documentId, streamId } of docs) {
      counts.documents += 1;
      const list = events.get(streamId)!;
      const computed = projectDocument(list);
      const current = currentWrapRecord(list);
      const status = computed?.status;
      statusOf.set(`${workspaceId}/${documentId}`, status);
      const deletedAt = list.find((e) => e.type === EventTypes.DocumentDeleted)?.version;
      if (deletedAt !== undefined) {
        const late = list.filter(
          (e) => e.version > deletedAt && e.type === EventTypes.DocumentEncryptionKeysAdded,
        );
        if (late.length > 0)
          violate(`${streamId}: a wrap record after DocumentDeleted (v${late[0]!.version})`);
      }
      for (const type of [EventTypes.DocumentStored, EventTypes.DocumentDeleted]) {
        const n = list.filter((e) => e.type === type).length;
        if (n > 1) violate(`${streamId}: ${n} ${type} events (a redelivery recorded twice)`);
      }
      // The stored projection equals the folded one, with census keys exactly when it is in the census.
      const stored = projections.get(streamId);
      if (computed && !stored) violate(`${streamId}: no projection item`);
      if (stored && computed) {
        const same =
          stored.keyId === computed.keyId &&
          stored.keysVersion === computed.keysVersion &&
          stored.status === computed.status &&
          stored.version === computed.version;
        if (!same) {
          violate(
            `${streamId}: projection item (${String(stored.keyId)} v${String(stored.keysVersion)} ${String(stored.status)} @${String(stored.version)}) ` +
              `differs from the stream (${computed.keyId} v${computed.keysVersion} ${computed.status} @${computed.version})`,
          );
        }
        const expectedGsi = inCensus(computed)
          ? keys.censusByKeyId(workspaceId, computed.keyId, censusShard(documentId, shards))
          : undefined;
        if (stored.gsi1pk !== expectedGsi) {
          violate(`${streamId}: census key ${String(stored.gsi1pk)}, expected ${String(expectedGsi)}`);
        }
      }
      if (status === "deleted") {
        counts.deletedDocuments += 1;
        continue;
      }
      counts.liveDocuments += 1;
      if (!current) {
        violate(`${streamId}: a live document (${String(status)}) without a current wrap record`);
        continue;
      }
      counts.currentRecords += 1;
      const record = current.data as DocumentEncryptionKeysAddedData;
      liveCurrent.set(`${workspaceId}/${documentId}`, { workspaceId, documentId, record });
      let keyId: string;
      try {
        keyId = parseKeyId(record.KeyId);
      } catch {
        violate(`${streamId} v${current.version}: the current record has no valid KeyId`);
        continue;
      }
      const used = keysInUse.get(workspaceId) ?? new Set<string>();
      used.add(keyId);
      keysInUse.set(workspaceId, used);
      const state = ws?.keys.find((k) => k.keyId === keyId)?.state;
      if (state !== "active" && state !== "decrypt-only") {
        violate(
          `${streamId}: its current record (v${current.version}) uses ${keyId}, which is ${state ?? "unknown to the workspace"}`,
        );
      }
    }
  }

  // ---- 3 + 4. acknowledged records and their DEKs ------------------------------------------------------------------
  const acknowledgedDocs = new Set<string>();
  await mapLimit(input.acknowledged ?? [], 4, async (ack) => {
    counts.acknowledged += 1;
    const id = `${ack.workspaceId}/${ack.documentId}`;
    acknowledgedDocs.add(id);
    const streamId = `ws-${ack.workspaceId}/doc-${ack.documentId}`;
    const at = (events.get(streamId) ?? []).find((e) => e.version === ack.recordVersion);
    if (!at || at.type !== EventTypes.DocumentEncryptionKeysAdded) {
      violate(`${id}: the acknowledged wrap record (v${ack.recordVersion}) is missing`);
      return;
    }
    const data = at.data as DocumentEncryptionKeysAddedData;
    const wrapped = ack.artifacts.map((a) => data.Artifacts.find((x) => x.Artifact === a)?.WrappedDek);
    if (wrapped.some((w, i) => w !== ack.wrappedDeks[i])) {
      violate(
        `${id}: the record at v${ack.recordVersion} is not the one acknowledged (its wrapped DEKs differ)`,
      );
    }
    if (statusOf.get(id) === "deleted") {
      counts.acknowledgedDeleted += 1;
      return;
    }
    try {
      const r = await dataKeys.decryptDataKeys({
        workspaceId: ack.workspaceId,
        documentId: ack.documentId,
        artifacts: ack.artifacts,
      });
      const got = r.keys.map((k) => sha256(k.plaintext));
      for (const k of r.keys) k.plaintext.fill(0);
      counts.deksCompared += got.length;
      if (got.some((h, i) => h !== ack.dekSha256[i])) {
        violate(
          `${id}: the current record (v${r.recordVersion}, ${r.keyId}) unwraps to other DEKs than first handed out`,
        );
      }
    } catch (err) {
      violate(`${id}: the current record does not unwrap: ${describe(err)}`);
    }
  });
  // Live documents nobody was told about (canaries, or a generate whose answer was lost): they must unwrap.
  await mapLimit([...liveCurrent.entries()], 4, async ([id, doc]) => {
    if (acknowledgedDocs.has(id)) return;
    try {
      const r = await dataKeys.decryptDataKeys({
        workspaceId: doc.workspaceId,
        documentId: doc.documentId,
        artifacts: doc.record.Artifacts.map((a) => a.Artifact),
      });
      counts.deksUnwrapped += r.keys.length;
      for (const k of r.keys) k.plaintext.fill(0);
    } catch (err) {
      violate(`${id}: the current record does not unwrap: ${describe(err)}`);
    }
  });
  for (const workspaceId of workspaces.keys()) {
    const results = await verifyCanaries({ dataKeys, events: store }, workspaceId).catch((err: unknown) => {
      violate(`workspace ${workspaceId}: canaries unreadable: ${describe(err)}`);
      return [];
    });
    counts.canaries += results.length;
    for (const c of results.filter((r) => !r.ok)) {
      violate(
        `workspace ${workspaceId}: canary ${c.documentId} does not decrypt to its content (${c.problem ?? "?"})`,
      );
    }
  }

  // ---- 5. master keys ----------------------------------------------------------------------------------------------
  for (const [workspaceId, ws] of workspaces) {
    if (ws.keys.length === 0) continue;
    let inHsm: Map<string, string>;
    try {
      inHsm = new Map(
        (await input.keyStore.listMasterKeys(workspaceId)).map((k) => [k.keyId as string, k.kcv]),
      );
    } catch (err) {
      violate(`workspace ${workspaceId}: the HSM's keys cannot be listed: ${describe(err)}`);
      continue;
    }
    counts.hsmKeys += inHsm.size;
    const used = keysInUse.get(workspaceId) ?? new Set<string>();
    counts.keyVersionsInUse += used.size;
    const live = ws.keys
      .filter((k) => k.state === "active" || k.state === "decrypt-only")
      .map((k) => k.keyId as string);
    for (const keyId of new Set([...used, ...live])) {
      const recorded = ws.keys.find((k) => k.keyId === keyId);
      const kcv = inHsm.get(keyId);
      if (kcv === undefined) violate(`${keyId} (${recorded?.state ?? "unrecorded"}) is not in the HSM`);
      else if (recorded && kcv !== recorded.kcv) {
        violate(`${keyId}: the HSM's KCV ${kcv} differs from the recorded ${recorded.kcv}`);
      }
    }
    const kit = ws.kits.at(-1);
    if (!kit) violate(`workspace ${workspaceId}: no kit was ever issued`);
    else {
      const missing = [...new Set([...used, ...live])].filter(
        (k) => !kit.masterKeys.some((m) => m.keyId === k),
      );
      if (missing.length > 0) {
        violate(`workspace ${workspaceId}: the newest kit (v${kit.kitVersion}) lacks ${missing.join(", ")}`);
      }
    }
  }

  // ---- 6. workflow runs --------------------------------------------------------------------------------------------
  for (const run of input.runs ?? []) {
    counts.runs += 1;
    const stream = workspaceEvents.get(run.workspaceId) ?? [];
    const window = stream.filter((e) => e.version > run.versionBefore && e.version <= run.versionAfter);
    const after = stream
      .filter((e) => e.version <= run.versionAfter)
      .reduce(evolveWorkspace, emptyWorkspace(run.workspaceId));
    const name = `${run.kind} run ${run.executionName} (${run.status}${run.error ? ` ${run.error}` : ""})`;
    if (run.kind === "rotation") {
      if (after.rotation?.status === "running") {
        violate(
          `${name}: ended with rotation ${after.rotation.rotationId} still running (no RotationCompleted/RotationFailed)`,
        );
      } else if (run.status === "SUCCEEDED") {
        const done = window.some(
          (e) => e.type === EventTypes.RotationCompleted && e.data.RotationId === after.rotation?.rotationId,
        );
        if (!done) violate(`${name}: succeeded without a RotationCompleted`);
      }
    } else if (run.kind === "recovery") {
      const r = after.recovery;
      if (r?.status === "running" && r.executionName === run.executionName) {
        violate(
          `${name}: ended holding the recovery lock (recovery ${r.recoveryId} still running, no RecoveryFailed)`,
        );
        continue;
      }
      // Each lock this execution took (a RecoveryStarted naming it) must be released by it: RecoveryFailed, or
      // RecoveryCompleted, for that recovery after the RecoveryStarted.
      const taken = window.filter(
        (e) => e.type === EventTypes.RecoveryStarted && e.data.ExecutionName === run.executionName,
      );
      const released = (start: StoredEvent) =>
        window.some(
          (e) =>
            (e.type === EventTypes.RecoveryFailed || e.type === EventTypes.RecoveryCompleted) &&
            e.data.RecoveryId === start.data.RecoveryId &&
            e.version > start.version,
        );
      if (run.status === "SUCCEEDED") {
        const done = window.some(
          (e) => e.type === EventTypes.RecoveryCompleted && e.data.RecoveryId === r?.recoveryId,
        );
        if (!done) violate(`${name}: succeeded without a RecoveryCompleted`);
      } else {
        for (const start of taken.filter((t) => !released(t))) {
          violate(
            `${name}: took the lock of recovery ${String(start.data.RecoveryId)} and ended without a RecoveryFailed`,
          );
        }
      }
    } else {
      const drills = window.filter((e) => e.type === EventTypes.DrillCompleted);
      const mine = run.drillId ? drills.filter((e) => e.data.DrillId === run.drillId) : drills;
      if (mine.length === 0) violate(`${name}: no DrillCompleted recorded`);
      else if (run.status === "SUCCEEDED" && mine.at(-1)!.data.Ok !== true) {
        violate(`${name}: succeeded, but its DrillCompleted says not ok`);
      }
    }
  }

  // ---- 7. lifecycle ------------------------------------------------------------------------------------------------
  for (const [id, expected] of input.lifecycle ?? new Map<string, "stored" | "deleted">()) {
    counts.lifecycle += 1;
    const status = statusOf.get(id);
    if (status !== expected)
      violate(`${id}: lifecycle status ${String(status)}, the delivered events say ${expected}`);
  }

  const log = input.log === undefined ? (line: string) => console.log(line) : input.log;
  if (log) {
    log(
      `history checker${input.label ? ` [${input.label}]` : ""}: ` +
        Object.entries(counts)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ") +
        ` -> ${violations.length} violation(s)`,
    );
  }
  return { counts, violations };
}

/** Every item of the table, strongly consistent, page by page. */
async function scanAll(client: DynamoDBClient, tableName: string): Promise<Item[]> {
  const doc = DynamoDBDocumentClient.from(client);
  const out: Item[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await doc.send(
      new ScanCommand({ TableName: tableName, ConsistentRead: true, ExclusiveStartKey: startKey }),
    );
    out.push(...((page.Items ?? []) as Item[]));
    startKey = page.LastEvaluatedKey;
  } while (startKey !== undefined);
  return out;
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
