/**
 * Restoring a backup (a full backup, or an increment with its whole chain) into a new, empty event store:
 *
 *  1. the target must be empty: not one item (`BackupTargetNotEmptyError`); never restore over a live table;
 *  2. `verifyBackup` checks the whole chain (manifests, signatures, files, every event) before anything is written;
 *  3. the target is checked empty again, then the events are written in backup order through the target's import
 *     path (`BackupTarget.importEvents`: original ids, versions and times; heads, markers, projections and census
 *     entries as appends make them), each stream conditional on being exactly where the previous chunk left it.
 *
 * The files are read a second time for step 3 and hashed again: a file changed after the verification stops the
 * import with `BackupFileChecksumError`. A failed import leaves a partly filled table that must be deleted (an import
 * never resumes into a non-empty table).
 */
import { performance } from "node:perf_hooks";
import type { StoredEvent } from "../eventstore/events.js";
import { BackupFileChecksumError, BackupTargetNotEmptyError, InvalidBackupRequestError } from "./errors.js";
import { blobName, parseEventLine } from "./format.js";
import { fileLines, type FileDigest } from "./lines.js";
import type { BackupTarget, ImportRun } from "./ports.js";
import type { BackupPublicKey } from "./signing.js";
import type { BackupStorage } from "./storage.js";
import { verifyChain, type ProgressCallback, type VerifiedBackup } from "./verify.js";

export interface ImportBackupOptions {
  readonly storage: BackupStorage;
  /** The backup to restore: a full backup, or the last increment of a chain (its bases are restored first). */
  readonly backupId: string;
  /** A new, empty event store. */
  readonly target: BackupTarget;
  readonly trustedKeys: readonly BackupPublicKey[];
  /** Events per `importEvents` call, 1..10,000 (default 500). */
  readonly batchEvents?: number;
  /** `importEvents` calls in flight, 1..16 (default 4). */
  readonly concurrency?: number;
  /** Progress of the verification (phase `verify`) and of the writes (phase `import`). */
  readonly onProgress?: ProgressCallback;
}

export interface ImportBackupResult {
  readonly backupId: string;
  readonly manifestSha256: string;
  /** What was verified, including the chain restored (full backup first). */
  readonly verified: VerifiedBackup;
  readonly target: string;
  readonly streams: number;
  readonly events: number;
  /** Seconds of verification and of writing. */
  readonly verifySeconds: number;
  readonly importSeconds: number;
}

export async function importBackup(options: ImportBackupOptions): Promise<ImportBackupResult> {
  const { storage, target } = options;
  const batchEvents = checkInt(options.batchEvents ?? 500, "batchEvents", 1, 10_000);
  const concurrency = checkInt(options.concurrency ?? 4, "concurrency", 1, 16);
  await assertEmpty(target);

  const tVerify = performance.now();
  const { summary, chain } = await verifyChain(options);
  const verifySeconds = (performance.now() - tVerify) / 1000;
  await assertEmpty(target);

  const tImport = performance.now();
  let done = 0;
  const report = (): void => {
    const elapsedSeconds = (performance.now() - tImport) / 1000;
    options.onProgress?.({
      backupId: summary.backupId,
      phase: "import",
      done,
      total: summary.events,
      ratePerSecond: elapsedSeconds > 0 ? done / elapsedSeconds : 0,
      elapsedSeconds,
    });
  };
  const writer = new ImportWriter(target, batchEvents, concurrency, (n) => {
    done += n;
    report();
  });
  try {
    for (const { manifest } of chain) {
      for (const file of manifest.files) {
        const digest: FileDigest = { sha256: "", bytes: 0 };
        const where = { backupId: manifest.backupId, file: file.name };
        for await (const line of fileLines(storage.get(blobName(manifest.backupId, file.name)), digest)) {
          if (line.kind !== "line") continue; // verified before: cannot happen unless the file changed (below)
          await writer.add(parseEventLine(line.text, { ...where, line: line.number }));
        }
        if (digest.sha256 !== file.sha256) {
          throw new BackupFileChecksumError(
            `${file.name} of backup ${manifest.backupId} changed after it was verified; the import stopped and ${target.tableName} holds part of the backup: delete that table`,
            { context: where },
          );
        }
      }
      // An increment continues streams of its base: everything before it is written first.
      await writer.drain();
    }
  } catch (err) {
    await writer.settle();
    throw err;
  }
  report();
  return {
    backupId: summary.backupId,
    manifestSha256: summary.manifestSha256,
    verified: summary,
    target: target.tableName,
    streams: summary.streams,
    events: done,
    verifySeconds,
    importSeconds: (performance.now() - tImport) / 1000,
  };
}

async function assertEmpty(target: BackupTarget): Promise<void> {
  if (!(await target.isEmpty())) {
    throw new BackupTargetNotEmptyError(
      `table ${target.tableName} is not empty: a backup is restored into a new, empty table only, never over a live one; create a new table and import into it`,
      { context: { table: target.tableName } },
    );
  }
}

/**
 * Groups consecutive events into runs per stream and runs into batches, and writes up to `concurrency` batches at a
 * time. A batch that continues the last stream of the batch before it waits until everything in flight is written
 * (the continuation is conditional on the version the earlier batch leaves).
 */
class ImportWriter {
  private runs: { streamId: string; events: StoredEvent[] }[] = [];
  private count = 0;
  private lastStreamSent: string | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly target: BackupTarget,
    private readonly batchEvents: number,
    private readonly concurrency: number,
    private readonly onWritten: (n: number) => void,
  ) {}

  async add(event: StoredEvent): Promise<void> {
    const run = this.runs[this.runs.length - 1];
    if (run !== undefined && run.streamId === event.streamId) run.events.push(event);
    else this.runs.push({ streamId: event.streamId, events: [event] });
    this.count += 1;
    if (this.count >= this.batchEvents) await this.send();
  }

  /** Sends what is gathered and waits until everything is written. */
  async drain(): Promise<void> {
    await this.send();
    await this.waitAll();
    this.lastStreamSent = undefined;
  }

  /** Waits for the writes in flight without raising their errors (after another failure). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  private async send(): Promise<void> {
    this.raise();
    if (this.runs.length === 0) return;
    const batch: ImportRun[] = this.runs;
    const events = this.count;
    this.runs = [];
    this.count = 0;
    if (batch[0]?.streamId === this.lastStreamSent) await this.waitAll();
    while (this.inflight.size >= this.concurrency) await Promise.race(this.inflight);
    this.raise();
    this.lastStreamSent = batch[batch.length - 1]?.streamId;
    const p: Promise<void> = this.target.importEvents(batch).then(
      () => this.onWritten(events),
      (error: unknown) => {
        this.failure ??= { error };
      },
    );
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private async waitAll(): Promise<void> {
    await Promise.all([...this.inflight]);
    this.raise();
  }

  private raise(): void {
    if (this.failure !== undefined) throw this.failure.error;
  }
}

function checkInt(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidBackupRequestError(`${name} must be an integer from ${min} to ${max}`, {
      context: { [name]: typeof value === "number" ? value : `<${typeof value}>` },
    });
  }
  return value;
}
