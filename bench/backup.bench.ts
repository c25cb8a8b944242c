/**
 * Backup benchmark (issue 7): export, verify and import of N documents' records (one wrap record of 5 artifacts per
 * document, plus the workspace stream) on DynamoDB Local, next to the bare engine measured in the same run on the
 * same items:
 *   bare reads:  BatchGetItem of every event item (100 keys a request), and a parallel Scan of the whole table;
 *   bare writes: BatchWriteItem of every item (event, head, event-id marker, projection; this is how the source is
 *                seeded), and TransactWriteItems of the same items with the import's conditions, 25 documents a
 *                transaction, into an empty table.
 * MB/s counts the events' bytes as they are in the backup (JSON Lines), the same for every row.
 *
 *   npm run bench:backup   (= npx tsx bench/backup.bench.ts --docs 10000,100000)
 *   npx tsx bench/backup.bench.ts [--docs 10000[,100000]] [--bare-transact <docs>] [--concurrency 16]
 */
import "./quiet.js";
import { pool } from "./pool.js";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  ScanCommand,
  TransactWriteCommand,
} from "@aws-sdk/lib-dynamodb";
import { FolderBackupStorage } from "../core/adapters/backup-folder/folder-backup-storage.js";
import { DynamoDbEventStore } from "../core/adapters/dynamodb/dynamodb-event-store.js";
import { deleteEventStoreTable, keys } from "../core/adapters/dynamodb/table.js";
import {
  backupSignerFromPkcs8,
  eventLine,
  exportBackup,
  generateBackupSigningKey,
  importBackup,
  verifyBackup,
  type BackupProgress,
} from "../core/backup/index.js";
import { ARTIFACTS } from "../core/datakeys/wrap-format.js";
import { EventTypes } from "../core/eventstore/catalogue.js";
import { documentStreamId, workspaceStreamId } from "../core/eventstore/stream-id.js";
import { masterKeyId } from "../core/keystore/key-id.js";
import { batchWrite, documentItems } from "../test/support/backup-seed.js";
import { useTestDynamoDb, type TestDynamoDb } from "../test/support/dynamodb.js";

// ------------------------------------------------------------------------------------------------ options

function argText(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const SIZES = (argText("docs") ?? "10000,100000").split(",").map((s) => {
  const n = Number(s.replace(/_/g, ""));
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--docs takes sizes like 10000,100000; got ${s}`);
  return n;
});
const CONCURRENCY = Number(argText("concurrency") ?? 16);
const BARE_TRANSACT = argText("bare-transact") === undefined ? undefined : Number(argText("bare-transact"));
const PROGRESS_EVERY_MS = 5000;
/** As the adapter's listStreamHeads (core/adapters/dynamodb/dynamodb-event-store.ts). */
const SCAN_SEGMENTS = 8;
const SCAN_PAGE_LIMIT = 4000;

// ------------------------------------------------------------------------------------------------ helpers

const secondsSince = (t0: number): number => (performance.now() - t0) / 1000;
const int = (n: number): string => Math.round(n).toLocaleString("en-US");
const rate = (n: number): string => (n >= 100 ? int(n) : n.toFixed(1));

class Progress {
  private done = 0;
  private readonly t0 = performance.now();
  private readonly timer: ReturnType<typeof setInterval>;
  constructor(
    private readonly label: string,
    private total: number,
  ) {
    this.timer = setInterval(() => this.print(), PROGRESS_EVERY_MS);
    this.timer.unref();
  }
  add(n: number): void {
    this.done += n;
  }
  set(done: number, total = this.total): void {
    this.done = done;
    this.total = total;
  }
  private print(): void {
    const s = secondsSince(this.t0);
    const r = this.done / s;
    const eta = r > 0 ? Math.max(0, (this.total - this.done) / r) : Number.NaN;
    process.stderr.write(
      `  [${this.label}] ${int(this.done)}/${int(this.total)}, ${rate(r)}/s, ${s.toFixed(0)} s, ETA ${Number.isFinite(eta) ? eta.toFixed(0) : "?"} s\n`,
    );
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

type Item = Record<string, unknown>;

// ------------------------------------------------------------------------------------------------ one size

interface Row {
  readonly name: string;
  readonly docs: number;
  readonly seconds: number;
  readonly note?: string;
}

async function runSize(
  n: number,
  ddb: TestDynamoDb,
  doc: DynamoDBDocumentClient,
): Promise<{ lines: string[]; ok: boolean }> {
  const rows: Row[] = [];
  const workspaceId = `bench-${randomUUID().slice(0, 8)}`;
  const sourceTable = await ddb.newTable("amk-bench-backup-src");
  const source = new DynamoDbEventStore({ client: ddb.client, tableName: sourceTable });
  await source.appendToStream(
    workspaceStreamId(workspaceId),
    [
      {
        eventId: randomUUID(),
        type: EventTypes.MasterKeyCreated,
        schemaVersion: 1,
        occurredAt: new Date().toISOString(),
        data: {
          WorkspaceId: workspaceId,
          KeyId: masterKeyId(workspaceId, 1),
          Kcv: "ABCDEF",
          Extractable: true,
        },
      },
    ],
    { expectedVersion: "no_stream" },
  );

  // Seed = the bare BatchWriteItem rate: 25 items (about 6 documents) a request.
  const documentIds: string[] = [];
  const eventKeys: Item[] = [];
  let lineBytes = 0;
  const seedProgress = new Progress(`seed ${int(n)}`, n);
  const perRequest = 6;
  const seedSeconds = await pool(Math.ceil(n / perRequest), CONCURRENCY, async (g) => {
    const items: Item[] = [];
    for (let i = g * perRequest; i < Math.min(n, (g + 1) * perRequest); i++) {
      const documentId = randomUUID();
      const { event, items: four } = documentItems(workspaceId, documentId);
      documentIds[i] = documentId;
      eventKeys[i] = keys.event(event.streamId, 1);
      lineBytes += Buffer.byteLength(eventLine(event)) + 1;
      items.push(...four);
    }
    await batchWrite(doc, sourceTable, items);
    seedProgress.add(items.length / 4);
  });
  seedProgress.stop();
  const mbPerDoc = lineBytes / n / 1e6;
  const census = await source.countDocumentsByKeyId(workspaceId, masterKeyId(workspaceId, 1));
  if (census !== n) throw new Error(`seeding: census ${census}, expected ${n}`);

  // Bare reads.
  const getSeconds = await pool(Math.ceil(n / 100), CONCURRENCY, async (g) => {
    let pending = eventKeys.slice(g * 100, (g + 1) * 100);
    while (pending.length > 0) {
      const out = await doc.send(
        new BatchGetCommand({ RequestItems: { [sourceTable]: { Keys: pending, ConsistentRead: true } } }),
      );
      pending = (out.UnprocessedKeys?.[sourceTable]?.Keys ?? []) as Item[];
    }
  });
  rows.push({
    name: `bare read: BatchGetItem of the event items, c=${CONCURRENCY}`,
    docs: n,
    seconds: getSeconds,
  });
  // The read an export starts with, without the adapter: the same Scan request for the stream heads.
  const tScan = performance.now();
  let scanned = 0;
  let heads = 0;
  await Promise.all(
    Array.from({ length: SCAN_SEGMENTS }, async (_, segment) => {
      let startKey: Item | undefined;
      do {
        const out = await doc.send(
          new ScanCommand({
            TableName: sourceTable,
            ConsistentRead: true,
            Segment: segment,
            TotalSegments: SCAN_SEGMENTS,
            Limit: SCAN_PAGE_LIMIT,
            FilterExpression: "sk = :head",
            ExpressionAttributeValues: { ":head": "head" },
            ProjectionExpression: "pk, #version",
            ExpressionAttributeNames: { "#version": "version" },
            ExclusiveStartKey: startKey,
          }),
        );
        scanned += out.ScannedCount ?? 0;
        heads += out.Count ?? 0;
        startKey = out.LastEvaluatedKey;
      } while (startKey !== undefined);
    }),
  );
  rows.push({
    name: `bare read: Scan for the stream heads, ${SCAN_SEGMENTS} segments`,
    docs: n,
    seconds: secondsSince(tScan),
    note: `${int(scanned)} items scanned, ${int(heads)} heads`,
  });

  // Export.
  const root = await mkdtemp(join(tmpdir(), "amk-bench-backup-"));
  const storage = new FolderBackupStorage(root);
  const signer = backupSignerFromPkcs8(generateBackupSigningKey());
  const exportProgress = new Progress(`export ${int(n)}`, n);
  let listSeconds = 0;
  const exported = await exportBackup({
    source,
    storage,
    signer,
    scope: { kind: "workspace", workspaceId },
    onProgress: (p: BackupProgress) => {
      if (p.phase === "list") listSeconds = p.elapsedSeconds;
      exportProgress.set(p.done, p.phase === "list" ? n + 1 : p.total);
    },
  });
  exportProgress.stop();
  rows.push({
    name: "export: list heads (Scan) + read events (BatchGet) + write JSONL",
    docs: n,
    seconds: exported.seconds,
    note: `${exported.files} files, ${(exported.bytes / 1e6).toFixed(1)} MB; listing ${listSeconds.toFixed(1)} s`,
  });
  const tVerify = performance.now();
  const verified = await verifyBackup({ storage, backupId: exported.backupId, trustedKeys: [signer] });
  rows.push({ name: "verify: signature, SHA-256, every line", docs: n, seconds: secondsSince(tVerify) });

  // Bare writes.
  rows.push({
    name: `bare write: BatchWriteItem of the same 4 items/doc, c=${CONCURRENCY}`,
    docs: n,
    seconds: seedSeconds,
  });
  const transactDocs = Math.min(n, BARE_TRANSACT ?? n);
  const bareTable = await ddb.newTable("amk-bench-backup-bare");
  const transactProgress = new Progress(`bare transact ${int(transactDocs)}`, transactDocs);
  const transactSeconds = await pool(Math.ceil(transactDocs / 25), CONCURRENCY, async (g) => {
    const TransactItems = [];
    for (let i = g * 25; i < Math.min(transactDocs, (g + 1) * 25); i++) {
      for (const Item of documentItems(workspaceId, documentIds[i] as string).items) {
        TransactItems.push({
          Put: { TableName: bareTable, Item, ConditionExpression: "attribute_not_exists(pk)" },
        });
      }
    }
    await doc.send(new TransactWriteCommand({ TransactItems }));
    transactProgress.add(TransactItems.length / 4);
  });
  transactProgress.stop();
  await deleteEventStoreTable(ddb.client, bareTable);
  const bareTransactRow: Row = {
    name: `bare write: TransactWriteItems, 25 docs (100 items) each, c=${CONCURRENCY}`,
    docs: transactDocs,
    seconds: transactSeconds,
  };
  rows.push(bareTransactRow);

  // Import.
  const targetTable = await ddb.newTable("amk-bench-backup-dst");
  const target = new DynamoDbEventStore({ client: ddb.client, tableName: targetTable });
  const importProgress = new Progress(`import ${int(n)}`, n);
  const imported = await importBackup({
    storage,
    backupId: exported.backupId,
    target,
    trustedKeys: [signer],
    onProgress: (p) => importProgress.set(p.done, p.total),
  });
  importProgress.stop();
  rows.push({
    name: "import: writes (conditional transactions, default options)",
    docs: n,
    seconds: imported.importSeconds,
  });
  rows.push({
    name: "import: verification + writes",
    docs: n,
    seconds: imported.verifySeconds + imported.importSeconds,
  });

  // Correctness: the census and a sample of streams.
  const restoredCensus = await target.countDocumentsByKeyId(workspaceId, masterKeyId(workspaceId, 1));
  let sampleOk = true;
  for (const documentId of documentIds.slice(0, 200)) {
    const streamId = documentStreamId(workspaceId, documentId);
    const [a, b] = await Promise.all([source.readStream(streamId), target.readStream(streamId)]);
    if (JSON.stringify(a.events) !== JSON.stringify(b.events)) sampleOk = false;
  }
  const ok =
    restoredCensus === n && sampleOk && imported.events === verified.events && verified.events === n + 1;

  const lines: string[] = [];
  const w = Math.max(...rows.map((r) => r.name.length));
  lines.push(
    `Backups on DynamoDB Local: ${int(n)} documents x ${ARTIFACTS.length} artifacts, ${int(n + 1)} events (Node ${process.version}, ${cpus().length} CPUs)`,
    `(${(exported.bytes / 1e6).toFixed(1)} MB of events in the backup, ${(mbPerDoc * 1e6).toFixed(0)} bytes per document)`,
    "",
    `${"measurement".padEnd(w)} |    docs | seconds |  docs/s |  MB/s | note`,
    `${"-".repeat(w)}-|---------|---------|---------|-------|-----`,
  );
  for (const r of rows) {
    const dps = r.docs / r.seconds;
    lines.push(
      `${r.name.padEnd(w)} | ${int(r.docs).padStart(7)} | ${r.seconds.toFixed(1).padStart(7)} | ${rate(dps).padStart(7)} | ${(dps * mbPerDoc).toFixed(2).padStart(5)} | ${r.note ?? ""}`,
    );
  }
  const by = (prefix: string) => rows.find((r) => r.name.startsWith(prefix)) as Row;
  const dps = (r: Row) => r.docs / r.seconds;
  lines.push("");
  // An export must list the streams (a Scan) and then read their events (BatchGets): both, one after the other.
  const bareSequence = 1 / (1 / dps(by("bare read: BatchGetItem")) + 1 / dps(by("bare read: Scan")));
  lines.push(
    `export = ${((dps(by("export")) / bareSequence) * 100).toFixed(0)}% of the bare Scan + BatchGetItem in sequence (${rate(bareSequence)} docs/s), ` +
      `${((dps(by("export")) / dps(by("bare read: BatchGetItem"))) * 100).toFixed(0)}% of BatchGetItem alone`,
  );
  lines.push(
    `import writes = ${((dps(by("import: writes")) / dps(bareTransactRow)) * 100).toFixed(0)}% of the bare TransactWriteItems rate, ` +
      `${((dps(by("import: writes")) / dps(by("bare write: BatchWriteItem"))) * 100).toFixed(0)}% of the bare BatchWriteItem rate`,
  );
  lines.push(
    `restored: census ${int(restoredCensus)} of ${int(n)}, 200 sampled streams ${sampleOk ? "equal" : "DIFFERENT"}, ${int(imported.events)} events` +
      `${ok ? "" : "  CORRECTNESS FAILED"}`,
  );

  await deleteEventStoreTable(ddb.client, targetTable).catch(() => undefined);
  await deleteEventStoreTable(ddb.client, sourceTable).catch(() => undefined);
  await rm(root, { recursive: true, force: true });
  return { lines, ok };
}

// ------------------------------------------------------------------------------------------------ main

const ddb = await useTestDynamoDb();
const doc = DynamoDBDocumentClient.from(ddb.client, { marshallOptions: { removeUndefinedValues: true } });
try {
  let failed = false;
  for (const n of SIZES) {
    const r = await runSize(n, ddb, doc);
    console.log(`\n${r.lines.join("\n")}`);
    failed ||= !r.ok;
  }
  if (failed) process.exitCode = 1;
} finally {
  await ddb.cleanup();
}
