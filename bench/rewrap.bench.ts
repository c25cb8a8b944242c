/**
 * Re-wrap benchmark (issue 5): the rotation engine (`startRotation`, then `planRewrap` -> every shard item's
 * `rewrapShard` in parallel -> again until no item is left, then `census`) re-wrapping N documents of five artifacts
 * on SoftHSM2 + DynamoDB Local, next to two references measured in the same run on the same table:
 *   (a) a naive loop: one document at a time, read the stream, re-wrap each artifact, conditional put; run twice
 *       on sets of its own, first and again after the engine (warmer JVM), and the faster run counts;
 *   (b) the slower of the bare HSM re-wrap rate (5 x rewrapDataKey per document, concurrency 8, no DynamoDB) and
 *       the best bare DynamoDB Local write rate for the same writes (the same-sized wrap-record append at the
 *       version read, concurrency 16, no HSM; also `appendToStreams` in groups of 20 when the store has it; and
 *       the raw transactions: the very TransactWriteItems the store builds for 25 such re-wrap appends at a time,
 *       captured without sending and then sent with the bare SDK client, no reads).
 * Targets: engine >= 5x (a), engine >= 70% of (b), and with two sizes (`--docs 10000,100000`) time per document at
 * the larger size <= 1.3x that at the smaller. Each target prints "met" or "MISSED".
 *
 * Seeding writes wrap records directly: software DEKs (node randomBytes) wrapped by the HSM under version 1 with
 * AMK-GCM-V1 associated data. A SHA-256 of every DEK is kept; afterwards every document (or a random sample above
 * `--verify` documents) is read back, unwrapped under the new version and compared: the re-wrap must change no DEK,
 * and each document must carry exactly one re-wrap record.
 *
 *   npx tsx bench/rewrap.bench.ts [--docs 10000[,100000]] [--naive 1000] [--bare 2000] [--verify 10000]
 *                                 [--seed-concurrency 32]
 */
import "./quiet.js";
import { pool } from "./pool.js";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  DynamoDBClient,
  TransactWriteItemsCommand,
  type TransactWriteItemsInput,
} from "@aws-sdk/client-dynamodb";
import { DynamoDbEventStore } from "../core/adapters/dynamodb/dynamodb-event-store.js";
import { deleteEventStoreTable } from "../core/adapters/dynamodb/table.js";
import { FileSecretVault } from "../core/adapters/file-vault/file-vault.js";
import { Pkcs11KeyStore } from "../core/adapters/pkcs11/pkcs11-key-store.js";
import { RecordingAlerts } from "../core/alerts/alerts.js";
import {
  ARTIFACTS,
  DEFAULT_CONTENT_ALGORITHM,
  DEFAULT_CONTENT_VERSION,
  WrapFormats,
  associatedData,
  decodeWrapped,
  encodeWrapped,
  type Artifact,
} from "../core/datakeys/wrap-format.js";
import {
  EventTypes,
  type DocumentEncryptionKeysAddedData,
  type WrappedArtifactKey,
} from "../core/eventstore/catalogue.js";
import type {
  EventStore,
  ExpectedStreamVersion,
  StreamAppend,
  StreamAppendOutcome,
} from "../core/eventstore/event-store.js";
import { newEvent, type NewEvent, type StoredEvent } from "../core/eventstore/events.js";
import { documentStreamId } from "../core/eventstore/stream-id.js";
import { softwareHmacToken } from "../core/factors/hmac-token.js";
import { masterKeyId, type KeyId } from "../core/keystore/key-id.js";
import type { KeyStore } from "../core/keystore/key-store.js";
import { KitService } from "../core/kit/kit-service.js";
import { RotationService } from "../core/rotation/rotation-service.js";
import { provisionWorkspaceWithKit } from "../core/workspaces/provision-with-kit.js";
import { createTestHsm } from "../test/support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../test/support/dynamodb.js";

// ------------------------------------------------------------------------------------------------ options

function argText(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
function argNumber(name: string, fallback: number): number {
  const v = argText(name);
  const n = v === undefined ? fallback : Number(v);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} must be a positive integer`);
  return n;
}
const SIZES = (argText("docs") ?? "10000").split(",").map((s) => {
  const n = Number(s.replace(/_/g, ""));
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--docs takes sizes like 10000,100000; got ${s}`);
  return n;
});
const NAIVE_DOCS = argNumber("naive", 1000);
const VERIFY_ALL_UP_TO = argNumber("verify", 10_000);
const SEED_CONCURRENCY = argNumber("seed-concurrency", 32);
const HSM_CONCURRENCY = 8;
/** Documents' worth of re-wraps for the bare HSM rate, and documents per bare DynamoDB write measurement. */
const HSM_DOCS = 10_000;
const BARE_WRITE_DOCS = argNumber("bare", 2000);
const WRITE_CONCURRENCY = 16;
const MULTI_GROUP = 20;
/** Groups in flight for the bare appendToStreams rate: each is measured, the best counts for (b). */
const MULTI_CONCURRENCY = [2, 8];
/** Documents per raw transaction (100 items: head, event, marker, projection each) and transactions in flight. */
const RAW_GROUP = 25;
const RAW_CONCURRENCY = [2, 8];
const ART: readonly Artifact[] = ARTIFACTS;
const PROGRESS_EVERY_MS = 5000;

// ------------------------------------------------------------------------------------------------ helpers

const sha = (b: Uint8Array): Buffer => createHash("sha256").update(b).digest();
const secondsSince = (t0: number): number => (performance.now() - t0) / 1000;
const int = (n: number): string => Math.round(n).toLocaleString("en-US");
const rateText = (n: number): string => (n >= 100 ? int(n) : n.toFixed(1));

/** done / total, rate and ETA on stderr every few seconds while a phase runs. */
class Progress {
  private done = 0;
  private readonly t0 = performance.now();
  private readonly timer: ReturnType<typeof setInterval>;
  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {
    this.timer = setInterval(() => this.print(), PROGRESS_EVERY_MS);
    this.timer.unref();
  }
  add(n = 1): void {
    this.done += n;
  }
  set(n: number): void {
    this.done = n;
  }
  private print(): void {
    const s = secondsSince(this.t0);
    const rate = this.done / s;
    const eta = rate > 0 ? Math.max(0, (this.total - this.done) / rate) : Number.NaN;
    process.stderr.write(
      `  [${this.label}] ${int(this.done)}/${int(this.total)} (${((this.done / this.total) * 100).toFixed(0)}%)` +
        `, ${rateText(rate)} docs/s, elapsed ${s.toFixed(0)} s, ETA ${Number.isFinite(eta) ? eta.toFixed(0) : "?"} s\n`,
    );
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

/**
 * The multi-stream append (`EventStore.appendToStreams`), used when the store in this tree has it at run time.
 * Any append reported as a conflict is an error here: the bench's writes never race.
 */
type AppendToStreams = (appends: readonly StreamAppend[]) => Promise<StreamAppendOutcome[]>;
function appendToStreamsOf(events: object): AppendToStreams | undefined {
  const fn = (events as { appendToStreams?: unknown }).appendToStreams;
  if (typeof fn !== "function") return undefined;
  const call = (fn as AppendToStreams).bind(events);
  return async (appends) => {
    const outcomes = await call(appends);
    const conflict = outcomes.find((o) => o.status === "conflict");
    if (conflict) throw new Error(`appendToStreams: unexpected conflict on ${conflict.streamId}`);
    return outcomes;
  };
}
const streamAppend = (
  streamId: string,
  event: NewEvent,
  expectedVersion: ExpectedStreamVersion,
): StreamAppend => ({ streamId, events: [event], expectedVersion });

/**
 * Counts document records appended (single or multi-stream, conflicts not counted), for the engine's progress
 * line: independent of how the engine batches its writes.
 */
function countingAppends<T extends object>(inner: T, onAppended: (n: number) => void): T {
  return new Proxy(inner, {
    get(target, prop) {
      const v = Reflect.get(target, prop) as unknown;
      if (typeof v !== "function") return v;
      const bound = (v as (...a: unknown[]) => unknown).bind(target);
      if (prop === "appendToStream") {
        return async (...args: unknown[]) => {
          const r = await bound(...args);
          if (String(args[0]).includes("/doc-")) onAppended(1);
          return r;
        };
      }
      if (prop === "appendToStreams") {
        return async (...args: unknown[]) => {
          const r = await bound(...args);
          const outcomes: unknown[] = Array.isArray(r) ? r : [];
          onAppended(outcomes.filter((o) => (o as { status?: unknown }).status !== "conflict").length);
          return r;
        };
      }
      return bound;
    },
  });
}

/**
 * The TransactWriteItems inputs a DynamoDB event store builds for `appends` (at most `maxPerTransaction` a transaction), captured on a client of its own whose
 * middleware answers every TransactWriteItems itself once it is marshalled (nothing reaches DynamoDB). With a `knownProjection` on every
 * append the store reads nothing first, so the capture needs no other request.
 */
async function captureTransactions(
  ddb: TestDynamoDb,
  tableName: string,
  appends: readonly StreamAppend[],
  maxPerTransaction: number,
): Promise<TransactWriteItemsInput[]> {
  const captured: TransactWriteItemsInput[] = [];
  const client = new DynamoDBClient({
    endpoint: ddb.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== "TransactWriteItemsCommand") {
        throw new Error(`capture: the store sent ${context.commandName ?? "a request"} (expected no reads)`);
      }
      captured.push(structuredClone(args.input as TransactWriteItemsInput));
      return { output: { $metadata: {} }, response: {} } as Awaited<ReturnType<typeof next>>;
    },
    { step: "build", priority: "high", name: "rewrapBenchCapture" },
  );
  try {
    const store = new DynamoDbEventStore({ client, tableName });
    const outcomes = await store.appendToStreams(appends, { maxPerTransaction });
    if (outcomes.some((o) => o.status !== "appended"))
      throw new Error("capture: an append was not 'appended'");
  } finally {
    client.destroy();
  }
  return captured;
}

/** DynamoDB requests by command (and transaction items), counted by a middleware on the shared client. */
const requestCounts = new Map<string, number>();
function countRequests(ddb: TestDynamoDb): void {
  ddb.client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? "unknown";
      requestCounts.set(name, (requestCounts.get(name) ?? 0) + 1);
      const items = (args.input as { TransactItems?: unknown[] }).TransactItems;
      if (Array.isArray(items))
        requestCounts.set(`${name} items`, (requestCounts.get(`${name} items`) ?? 0) + items.length);
      return next(args);
    },
    { step: "initialize", name: "rewrapBenchRequestCounter" },
  );
}
const snapshot = (): Map<string, number> => new Map(requestCounts);
function perDocument(before: Map<string, number>, docs: number): string {
  const parts: string[] = [];
  for (const [name, n] of [...requestCounts].sort()) {
    const d = n - (before.get(name) ?? 0);
    if (d > 0)
      parts.push(
        `${(d / docs).toFixed(2)} ${name.replace(/Command$/, "").replace(/Command items$/, " items")}`,
      );
  }
  return parts.join(", ");
}

// ------------------------------------------------------------------------------------------------ records

interface SeededDoc {
  readonly documentId: string;
  /** SHA-256 of each artifact's DEK, in ART order. */
  readonly dekHashes: Buffer[];
  /** The version-1 wrap record as seeded (kept only for the reference set). */
  readonly artifacts?: WrappedArtifactKey[];
}

function wrapRecord(
  workspaceId: string,
  documentId: string,
  keyId: KeyId,
  artifacts: WrappedArtifactKey[],
): DocumentEncryptionKeysAddedData {
  return {
    AggregateId: documentId,
    WorkspaceId: workspaceId,
    KeyId: keyId,
    WrapFormat: WrapFormats.AmkGcmV1,
    Artifacts: artifacts,
    OccurredOn: new Date().toISOString(),
  };
}

const aadFor = (workspaceId: string, documentId: string, artifact: Artifact, keyId: KeyId): Buffer =>
  associatedData(WrapFormats.AmkGcmV1, { workspaceId, documentId, artifact, keyId });

/** A wrap record's artifacts for fresh software DEKs, wrapped by the HSM under `keyId`. */
async function wrapFreshDeks(
  keyStore: KeyStore,
  workspaceId: string,
  documentId: string,
  keyId: KeyId,
): Promise<{ artifacts: WrappedArtifactKey[]; dekHashes: Buffer[] }> {
  const artifacts: WrappedArtifactKey[] = [];
  const dekHashes: Buffer[] = [];
  for (const artifact of ART) {
    const dek = randomBytes(32);
    dekHashes.push(sha(dek));
    const w = await keyStore.wrapDataKey(keyId, dek, aadFor(workspaceId, documentId, artifact, keyId));
    dek.fill(0);
    artifacts.push({
      Artifact: artifact,
      ...encodeWrapped(w),
      Algorithm: DEFAULT_CONTENT_ALGORITHM,
      Version: DEFAULT_CONTENT_VERSION,
    });
  }
  return { artifacts, dekHashes };
}

/** Seeds `n` documents on `keyId` (version 1) of `workspaceId`; appends singly, or in groups via appendToStreams. */
async function seed(
  keyStore: KeyStore,
  events: Pick<EventStore, "appendToStream">,
  workspaceId: string,
  n: number,
  label: string,
  keepRecords: boolean,
): Promise<{ docs: SeededDoc[]; seconds: number }> {
  const keyId = masterKeyId(workspaceId, 1);
  const docs: SeededDoc[] = new Array(n);
  const multi = appendToStreamsOf(events);
  const progress = new Progress(label, n);
  const one = async (i: number) => {
    const documentId = randomUUID();
    const { artifacts, dekHashes } = await wrapFreshDeks(keyStore, workspaceId, documentId, keyId);
    docs[i] = { documentId, dekHashes, ...(keepRecords ? { artifacts } : {}) };
    return {
      streamId: documentStreamId(workspaceId, documentId),
      event: newEvent(
        EventTypes.DocumentEncryptionKeysAdded,
        wrapRecord(workspaceId, documentId, keyId, artifacts),
      ),
    };
  };
  let seconds: number;
  if (multi) {
    const groups = Math.ceil(n / MULTI_GROUP);
    seconds = await pool(groups, Math.max(1, Math.ceil(SEED_CONCURRENCY / MULTI_GROUP) * 2), async (g) => {
      const entries = [];
      for (let i = g * MULTI_GROUP; i < Math.min(n, (g + 1) * MULTI_GROUP); i++) {
        const { streamId, event } = await one(i);
        entries.push(streamAppend(streamId, event, "no_stream"));
      }
      await multi(entries);
      progress.add(entries.length);
    });
  } else {
    seconds = await pool(n, SEED_CONCURRENCY, async (i) => {
      const { streamId, event } = await one(i);
      await events.appendToStream(streamId, [event], { expectedVersion: "no_stream" });
      progress.add();
    });
  }
  progress.stop();
  return { docs, seconds };
}

function lastWrapRecord(events: readonly StoredEvent[]): {
  record: DocumentEncryptionKeysAddedData | undefined;
  count: number;
} {
  let record: DocumentEncryptionKeysAddedData | undefined;
  let count = 0;
  for (const e of events)
    if (e.type === EventTypes.DocumentEncryptionKeysAdded) {
      record = e.data as DocumentEncryptionKeysAddedData;
      count += 1;
    }
  return { record, count };
}

/**
 * Reads each document back and unwraps every DEK under `toKeyId`: the DEK must hash as seeded, and the stream must
 * hold exactly `records` wrap records (the seeded one plus exactly one re-wrap).
 */
async function verify(
  keyStore: KeyStore,
  events: Pick<EventStore, "readStream">,
  workspaceId: string,
  toKeyId: KeyId,
  docs: readonly SeededDoc[],
  label: string,
): Promise<{ checked: number; deks: number; failures: string[] }> {
  const failures: string[] = [];
  let deks = 0;
  const progress = new Progress(label, docs.length);
  await pool(docs.length, 16, async (i) => {
    const d = docs[i]!;
    const { events: stream } = await events.readStream(documentStreamId(workspaceId, d.documentId));
    const { record, count } = lastWrapRecord(stream);
    progress.add();
    if (!record || record.KeyId !== toKeyId || count !== 2) {
      failures.push(`${d.documentId}: ${count} records, last on ${record?.KeyId ?? "-"}`);
      return;
    }
    for (const [k, artifact] of ART.entries()) {
      const a = record.Artifacts.find((x) => x.Artifact === artifact);
      if (!a) {
        failures.push(`${d.documentId}/${artifact}: missing`);
        continue;
      }
      const dek = await keyStore.unwrapDataKey(
        toKeyId,
        decodeWrapped(a),
        aadFor(workspaceId, d.documentId, artifact, toKeyId),
      );
      if (!sha(dek).equals(d.dekHashes[k]!)) failures.push(`${d.documentId}/${artifact}: DEK changed`);
      dek.fill(0);
      deks += 1;
    }
  });
  progress.stop();
  return { checked: docs.length, deks, failures };
}

// ------------------------------------------------------------------------------------------------ one size

interface Row {
  readonly name: string;
  readonly docs: number;
  readonly seconds: number;
}
const perSecond = (r: Row): number => r.docs / r.seconds;

interface SizeResult {
  readonly n: number;
  readonly engineRate: number;
  readonly msPerDoc: number;
  readonly lines: string[];
  readonly ok: boolean;
}

async function runSize(
  n: number,
  keyStore: Pkcs11KeyStore,
  ddb: TestDynamoDb,
  alerts: RecordingAlerts,
): Promise<SizeResult> {
  const tableName = await ddb.newTable(`rewrap-bench-${n}`);
  const base = new DynamoDbEventStore({ client: ddb.client, tableName });
  let engineAppends = 0;
  const events = countingAppends(base, (k) => (engineAppends += k));
  const vaultDir = await mkdtemp(join(tmpdir(), "amk-rewrap-bench-vault-"));
  const vault = await FileSecretVault.open(vaultDir);
  const kits = new KitService({ keyStore, events: base, vault, alerts });
  const rotations = new RotationService({ keyStore, events, kits, alerts, writerSettleMs: 0 });
  const tag = randomBytes(3).toString("hex");
  const ws = `rewrap-${n}-${tag}`;
  const refWs = `rewrap-ref-${n}-${tag}`;
  for (const w of [ws, refWs]) {
    await provisionWorkspaceWithKit(
      { keyStore, events: base, kits },
      {
        workspaceId: w,
        administrators: [
          {
            adminId: "ops",
            passphrase: "granite meadow violin harbor",
            factor: { type: "hmac-sha1", token: softwareHmacToken(randomBytes(20)) },
          },
        ],
      },
    );
  }
  const multi = appendToStreamsOf(base);
  const refN = Math.min(n, NAIVE_DOCS);
  const bareN = Math.min(n, BARE_WRITE_DOCS);
  const rows: Row[] = [];
  const notes: string[] = [];
  process.stderr.write(`\n== ${int(n)} documents (table ${tableName}) ==\n`);

  // Seeding: the engine's documents, then the reference sets (naive loop, bare appends, bare multi-appends).
  const seeded = await seed(keyStore, base, ws, n, `seed ${int(n)}`, false);
  rows.push({
    name: multi
      ? `seeding (5 x HSM wrap + appendToStreams x${MULTI_GROUP})`
      : `seeding (5 x HSM wrap + appendToStream, c=${SEED_CONCURRENCY})`,
    docs: n,
    seconds: seeded.seconds,
  });
  const naiveSet = await seed(keyStore, base, refWs, refN, "seed naive set", true);
  const naiveLateSet = await seed(keyStore, base, refWs, refN, "seed second naive set", true);
  const bareSet = await seed(keyStore, base, refWs, bareN, "seed bare-write set", false);
  const multiSets = multi
    ? await Promise.all(
        MULTI_CONCURRENCY.map(() => seed(keyStore, base, refWs, bareN, "seed multi-write sets", false)),
      )
    : [];
  const rawSets = await Promise.all(
    RAW_CONCURRENCY.map(() => seed(keyStore, base, refWs, bareN, "seed raw-transaction sets", false)),
  );

  // (a) the naive loop, on the reference workspace rotated to its version 2.
  const refRotation = await rotations.startRotation(refWs, "bench reference");
  const refTo = refRotation.toKeyId;
  const refFrom = masterKeyId(refWs, 1);
  // The naive loop runs twice: before everything else, and again after the engine on a warmer JVM. The faster of
  // the two counts for the target (the stricter comparison); both are printed.
  const naiveLoop = async (docs: typeof naiveSet.docs, label: string): Promise<number> => {
    const progress = new Progress(label, docs.length);
    const t0 = performance.now();
    for (const d of docs) {
      const stream = documentStreamId(refWs, d.documentId);
      const { events: read, currentVersion } = await base.readStream(stream);
      const { record } = lastWrapRecord(read);
      if (!record) throw new Error(`naive loop: ${d.documentId} has no wrap record`);
      const artifacts: WrappedArtifactKey[] = [];
      for (const a of record.Artifacts) {
        const artifact = a.Artifact as Artifact;
        const w = await keyStore.rewrapDataKey(
          { keyId: refFrom, aad: aadFor(refWs, d.documentId, artifact, refFrom) },
          { keyId: refTo, aad: aadFor(refWs, d.documentId, artifact, refTo) },
          decodeWrapped(a),
        );
        artifacts.push({ ...a, ...encodeWrapped(w) });
      }
      await base.appendToStream(
        stream,
        [newEvent(EventTypes.DocumentEncryptionKeysAdded, wrapRecord(refWs, d.documentId, refTo, artifacts))],
        { expectedVersion: currentVersion ?? "no_stream" },
      );
      progress.add();
    }
    progress.stop();
    return secondsSince(t0);
  };
  const naiveRow: Row = {
    name: "(a) naive loop: read, 5 x re-wrap, put; 1 doc at a time",
    docs: refN,
    seconds: await naiveLoop(naiveSet.docs, "naive loop"),
  };
  rows.push(naiveRow);

  // (b) bare HSM: 5 x rewrapDataKey per document, concurrency 8, no DynamoDB (the naive set's version-1 records,
  // cycled over HSM_DOCS documents so that the measurement lasts a few seconds).
  const hsmDocs = HSM_DOCS;
  await pool(200, HSM_CONCURRENCY, async (i) => {
    const d = naiveSet.docs[i % refN]!;
    const a = d.artifacts![0]!;
    await keyStore.rewrapDataKey(
      { keyId: refFrom, aad: aadFor(refWs, d.documentId, "file", refFrom) },
      { keyId: refTo, aad: aadFor(refWs, d.documentId, "file", refTo) },
      decodeWrapped(a),
    );
  }); // warm-up
  const hsmSeconds = await pool(hsmDocs, HSM_CONCURRENCY, async (i) => {
    const d = naiveSet.docs[i % refN]!;
    for (const a of d.artifacts!) {
      const artifact = a.Artifact as Artifact;
      await keyStore.rewrapDataKey(
        { keyId: refFrom, aad: aadFor(refWs, d.documentId, artifact, refFrom) },
        { keyId: refTo, aad: aadFor(refWs, d.documentId, artifact, refTo) },
        decodeWrapped(a),
      );
    }
  });
  const hsmRow: Row = {
    name: `HSM alone: 5 x rewrapDataKey, c=${HSM_CONCURRENCY}`,
    docs: hsmDocs,
    seconds: hsmSeconds,
  };
  rows.push(hsmRow);

  // (b) bare DynamoDB Local: the same-sized wrap-record append at the version read (1), no HSM (random wrap bytes).
  const junkRecord = (documentId: string) =>
    newEvent(
      EventTypes.DocumentEncryptionKeysAdded,
      wrapRecord(
        refWs,
        documentId,
        refTo,
        ART.map((artifact) => ({
          Artifact: artifact,
          ...encodeWrapped({ nonce: randomBytes(12), ciphertext: randomBytes(48) }),
          Algorithm: DEFAULT_CONTENT_ALGORITHM,
          Version: DEFAULT_CONTENT_VERSION,
        })),
      ),
    );
  const writeSeconds = await pool(bareN, WRITE_CONCURRENCY, async (i) => {
    const d = bareSet.docs[i]!;
    await base.appendToStream(documentStreamId(refWs, d.documentId), [junkRecord(d.documentId)], {
      expectedVersion: 1,
    });
  });
  const writeRow: Row = {
    name: `DynamoDB Local alone: appendToStream, c=${WRITE_CONCURRENCY}`,
    docs: bareN,
    seconds: writeSeconds,
  };
  rows.push(writeRow);
  const multiRows: Row[] = [];
  if (multi) {
    const groups = Math.ceil(bareN / MULTI_GROUP);
    try {
      for (const [k, concurrency] of MULTI_CONCURRENCY.entries()) {
        const set = multiSets[k]!.docs;
        const s = await pool(groups, concurrency, async (g) => {
          const entries = set
            .slice(g * MULTI_GROUP, (g + 1) * MULTI_GROUP)
            .map((d) => streamAppend(documentStreamId(refWs, d.documentId), junkRecord(d.documentId), 1));
          await multi(entries);
        });
        const row = {
          name: `DynamoDB Local alone: appendToStreams x${MULTI_GROUP}, c=${concurrency}`,
          docs: bareN,
          seconds: s,
        };
        multiRows.push(row);
        rows.push(row);
      }
    } catch (err) {
      notes.push(`appendToStreams is present but the bench's call failed: ${(err as Error).message}`);
    }
  } else {
    notes.push(
      "appendToStreams: not in this event store (typeof !== 'function'); measured appendToStream only",
    );
  }
  // The raw transactions: what the store sends for re-wrap appends with the listing's projection (the engine's
  // write path), captured, then sent with the bare SDK client: no reads, no adapter, no HSM.
  const rawRows: Row[] = [];
  for (const [k, concurrency] of RAW_CONCURRENCY.entries()) {
    const set = rawSets[k]!.docs;
    const appends: StreamAppend[] = [];
    for (const d of set) {
      const projection = await base.getDocumentProjection(refWs, d.documentId);
      if (!projection) throw new Error(`raw transactions: ${d.documentId} has no projection`);
      appends.push({
        ...streamAppend(documentStreamId(refWs, d.documentId), junkRecord(d.documentId), projection.version),
        knownProjection: projection,
      });
    }
    const transactions = await captureTransactions(ddb, tableName, appends, RAW_GROUP);
    const items = transactions.reduce((n, t) => n + (t.TransactItems?.length ?? 0), 0);
    if (items !== set.length * 4)
      throw new Error(`raw transactions: ${items} items for ${set.length} documents`);
    const s = await pool(transactions.length, concurrency, async (t) => {
      await ddb.client.send(new TransactWriteItemsCommand(transactions[t]!));
    });
    const row = {
      name: `DynamoDB Local alone: raw TransactWriteItems x${RAW_GROUP}, c=${concurrency}`,
      docs: set.length,
      seconds: s,
    };
    rawRows.push(row);
    rows.push(row);
  }
  const bestWrite = Math.max(perSecond(writeRow), ...multiRows.map(perSecond), ...rawRows.map(perSecond));
  const b = Math.min(perSecond(hsmRow), bestWrite);
  const bBound = perSecond(hsmRow) < bestWrite ? "the HSM" : "DynamoDB Local";

  // (c) the engine, on the N documents.
  const rotation = await rotations.startRotation(ws, "bench");
  const before = snapshot();
  const progress = new Progress(`engine ${int(n)}`, n);
  const poll = setInterval(() => progress.set(engineAppends), 1000);
  poll.unref();
  engineAppends = 0;
  let rounds = 0;
  let moved = 0;
  let items = 0;
  const t0 = performance.now();
  for (;;) {
    const plan = await rotations.planRewrap(ws);
    if (plan.items.length === 0) break;
    rounds += 1;
    items += plan.items.length;
    const results = await Promise.all(
      plan.items.map((it) => rotations.rewrapShard({ workspaceId: ws, ...it })),
    );
    moved += results.reduce((s, r) => s + r.moved, 0);
    if (rounds > 100) throw new Error("the re-wrap did not converge");
  }
  const engineSeconds = secondsSince(t0);
  clearInterval(poll);
  progress.stop();
  const requests = perDocument(before, n);
  const tc = performance.now();
  const census = await rotations.census(ws, { sample: 50 });
  const censusSeconds = secondsSince(tc);
  const engineRow: Row = {
    name: `(c) engine: ${items / Math.max(1, rounds)} shard items in parallel, default concurrency`,
    docs: n,
    seconds: engineSeconds,
  };
  rows.push(engineRow);
  const naiveLateRow: Row = {
    name: "(a) naive loop again, after the engine",
    docs: refN,
    seconds: await naiveLoop(naiveLateSet.docs, "naive loop again"),
  };
  rows.push(naiveLateRow);

  // Verification: the engine's documents (all, or a random sample) and the naive set.
  const sample = n <= VERIFY_ALL_UP_TO ? seeded.docs : shuffle([...seeded.docs]).slice(0, VERIFY_ALL_UP_TO);
  const checked = await verify(keyStore, base, ws, rotation.toKeyId, sample, "verify engine DEKs");
  const checkedNaive = await verify(
    keyStore,
    base,
    refWs,
    refTo,
    [...naiveSet.docs, ...naiveLateSet.docs],
    "verify naive DEKs",
  );
  const engineRate = perSecond(engineRow);
  const naiveRate = Math.max(perSecond(naiveRow), perSecond(naiveLateRow));

  // Output.
  const lines: string[] = [];
  const w = Math.max(...rows.map((r) => r.name.length), 44);
  lines.push(
    `Re-wrap on SoftHSM2 + DynamoDB Local: ${int(n)} documents x ${ART.length} artifacts (Node ${process.version}, ${cpus().length} CPUs)`,
    "",
    `${"measurement".padEnd(w)} |    docs | seconds |  docs/s | ms/doc`,
    `${"-".repeat(w)}-|---------|---------|---------|-------`,
  );
  const line = (name: string, docs: string, secs: string, rate: number) =>
    `${name.padEnd(w)} | ${docs.padStart(7)} | ${secs.padStart(7)} | ${rateText(rate).padStart(7)} | ${(1000 / rate).toFixed(2).padStart(6)}`;
  for (const r of rows) {
    if (r === engineRow) lines.push(line(`(b) = slower of HSM and best write: ${bBound}`, "", "", b));
    lines.push(line(r.name, int(r.docs), r.seconds.toFixed(1), perSecond(r)));
  }
  lines.push("");
  lines.push(
    `engine: ${moved} moved in ${rounds} round(s) of planRewrap + rewrapShard; census ${census.remaining} remaining` +
      ` (${censusSeconds.toFixed(1)} s, ${census.sampled} streams sampled, ${census.sampleMismatches.length} mismatches)`,
  );
  lines.push(`engine DynamoDB requests per document: ${requests}`);
  lines.push(
    `DEKs: ${int(checked.checked - checked.failures.length)} of ${int(checked.checked)} engine documents` +
      `${checked.checked < n ? " (random sample)" : ""} and ${int(checkedNaive.checked - checkedNaive.failures.length)} of ${int(checkedNaive.checked)} naive-loop documents` +
      ` read back with exactly one re-wrap record and every DEK unchanged (${int(checked.deks + checkedNaive.deks)} DEKs unwrapped under the new version)`,
  );
  for (const f of [...checked.failures, ...checkedNaive.failures].slice(0, 10)) lines.push(`  FAILED ${f}`);
  for (const note of notes) lines.push(note);
  const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
  const vsNaive = engineRate / naiveRate;
  const vsB = engineRate / b;
  lines.push("");
  lines.push(
    `target engine >= 5x naive:      ${rateText(engineRate)} / ${rateText(naiveRate)} docs/s = ${vsNaive.toFixed(2)}x  ${verdict(vsNaive >= 5)}` +
      "  (the faster naive run)",
  );
  lines.push(
    `target engine >= 70% of (b):    ${rateText(engineRate)} / ${rateText(b)} docs/s = ${(vsB * 100).toFixed(0)}%  ${verdict(vsB >= 0.7)}`,
  );
  // The ceiling: no engine commits faster than the bare write rate (b) of the same records. When (b) itself is
  // below 5x the naive loop, the 5x target is out of reach of any engine on this machine and store.
  lines.push(
    `ceiling (b) / naive:            ${rateText(b)} / ${rateText(naiveRate)} docs/s = ${(b / naiveRate).toFixed(2)}x` +
      (b / naiveRate < 5 ? "  (below 5x: the store, not the engine, bounds the ratio here)" : ""),
  );
  const ok =
    census.remaining === 0 &&
    moved === n &&
    checked.failures.length === 0 &&
    checkedNaive.failures.length === 0;
  if (!ok) lines.push("CORRECTNESS FAILED: see above");

  await deleteEventStoreTable(ddb.client, tableName).catch(() => undefined);
  await rm(vaultDir, { recursive: true, force: true });
  return { n, engineRate, msPerDoc: 1000 / engineRate, lines, ok };
}

// ------------------------------------------------------------------------------------------------ main

const hsm = await createTestHsm(["bench-rewrap"]);
const ddb = await useTestDynamoDb();
countRequests(ddb);
const keyStore = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!));
const alerts = new RecordingAlerts();
const results: SizeResult[] = [];
try {
  for (const n of SIZES) {
    const r = await runSize(n, keyStore, ddb, alerts);
    results.push(r);
    console.log(`\n${r.lines.join("\n")}`);
  }
  if (results.length > 1) {
    const small = results[0]!;
    const large = results.at(-1)!;
    const ratio = large.msPerDoc / small.msPerDoc;
    console.log(
      `\ntarget time per document at ${int(large.n)} <= 1.3x that at ${int(small.n)}: ` +
        `${large.msPerDoc.toFixed(2)} / ${small.msPerDoc.toFixed(2)} ms = ${ratio.toFixed(2)}x  ${ratio <= 1.3 ? "met" : "MISSED"}`,
    );
  }
  if (results.some((r) => !r.ok)) process.exitCode = 1;
} finally {
  await keyStore.close();
  await ddb.cleanup();
  await hsm.cleanup();
}
