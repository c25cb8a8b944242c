/**
 * Verifying a backup before anything is restored from it (docs/backup-format.md, "Verification"). In this order,
 * for the backup and every backup of its chain (the full backup it continues, through each increment):
 *
 *  1. the manifest: present, JSON, a v1 manifest, in canonical form, signed by a trusted key, self-consistent;
 *  2. the chain: each increment names its base by id and manifest SHA-256, same scope and table, and every stream
 *     continues where the chain before it ended;
 *  3. the files: each present, of the size listed (shorter: truncated), no unlisted events file;
 *  4. the contents, streamed: SHA-256 of each file; every line a stored event the store would accept; each file's
 *     event count; every stream listed and in scope, its lines consecutive, versions contiguous from `first` to
 *     `last`, none missing.
 *
 * Each failure is its own error class. A line-level failure in a file whose checksum also fails is reported as the
 * checksum failure (the file is not the one the manifest describes). Memory: the manifests and one small entry per
 * stream; events are streamed.
 */
import { performance } from "node:perf_hooks";
import { parseStreamId } from "../eventstore/stream-id.js";
import type { AmkError } from "../shared/errors.js";
import {
  BackupChainError,
  BackupEventGapError,
  BackupFileChecksumError,
  BackupFileMissingError,
  BackupManifestInvalidError,
  BackupManifestMismatchError,
  BackupManifestTamperedError,
  BackupNotFoundError,
  BackupStreamMissingError,
  BackupTruncatedError,
  BackupUntrustedKeyError,
  InvalidBackupRequestError,
} from "./errors.js";
import {
  MANIFEST_FILE,
  assertBackupId,
  blobName,
  describeScope,
  eventsFileName,
  inScope,
  manifestBytes,
  parseEventLine,
  parseManifest,
  sameScope,
  sha256Hex,
  signedBytes,
  type BackupKind,
  type BackupManifest,
  type BackupScope,
} from "./format.js";
import { fileLines, type FileDigest } from "./lines.js";
import { verifyBackupSignature, type BackupPublicKey } from "./signing.js";
import { readBlob, type BackupStorage } from "./storage.js";

export interface BackupProgress {
  readonly backupId: string;
  readonly phase: "list" | "export" | "verify" | "import";
  /** Events done (phase `list`: streams found). */
  readonly done: number;
  /** Events to do (phase `list`: streams found so far). */
  readonly total: number;
  /** Per second since the phase began. */
  readonly ratePerSecond: number;
  readonly elapsedSeconds: number;
}

export type ProgressCallback = (progress: BackupProgress) => void;

/** A manifest whose signature and self-consistency were checked, with the SHA-256 of its bytes. */
export interface LoadedManifest {
  readonly manifest: BackupManifest;
  readonly manifestSha256: string;
}

export interface VerifyBackupOptions {
  readonly storage: BackupStorage;
  /** The backup to verify; for an increment, its whole chain back to the full backup is verified. */
  readonly backupId: string;
  /** Pinned public keys: a manifest signed by any other key is refused (`BackupUntrustedKeyError`). */
  readonly trustedKeys: readonly BackupPublicKey[];
  readonly onProgress?: ProgressCallback;
}

export interface VerifiedLink {
  readonly backupId: string;
  readonly kind: BackupKind;
  readonly manifestSha256: string;
  readonly exportedAt: string;
  readonly streams: number;
  readonly events: number;
}

export interface VerifiedBackup {
  readonly backupId: string;
  readonly kind: BackupKind;
  readonly scope: BackupScope;
  readonly sourceTable: string;
  readonly exportedAt: string;
  readonly manifestSha256: string;
  /** The key that signed this backup's manifest. */
  readonly keyId: string;
  /** The chain, full backup first, this backup last (one link for a full backup). */
  readonly chain: readonly VerifiedLink[];
  /** Across the chain: distinct streams, events, bytes of events files. */
  readonly streams: number;
  readonly events: number;
  readonly bytes: number;
}

/** Checks a backup and its chain completely; throws the first failure found (see the module comment). */
export async function verifyBackup(options: VerifyBackupOptions): Promise<VerifiedBackup> {
  return (await verifyChain(options)).summary;
}

/** `verifyBackup`, also returning the loaded manifests (for the importer). */
export async function verifyChain(
  options: VerifyBackupOptions,
): Promise<{ summary: VerifiedBackup; chain: LoadedManifest[] }> {
  const { storage } = options;
  const backupId = assertBackupId(options.backupId);
  const trusted = checkTrustedKeys(options.trustedKeys);
  const chain = await loadChain(storage, backupId, trusted);
  for (const link of chain) await checkFilesPresent(storage, link.manifest);

  const total = chain.reduce((n, l) => n + l.manifest.totals.events, 0);
  const t0 = performance.now();
  let done = 0;
  const report = (): void => {
    const elapsedSeconds = (performance.now() - t0) / 1000;
    options.onProgress?.({
      backupId,
      phase: "verify",
      done,
      total,
      ratePerSecond: elapsedSeconds > 0 ? done / elapsedSeconds : 0,
      elapsedSeconds,
    });
  };
  for (const link of chain) {
    await checkContents(storage, link.manifest, (n) => {
      done += n;
      report();
    });
  }
  report();

  const last = chain[chain.length - 1] as LoadedManifest;
  const streams = new Set<string>();
  for (const l of chain) for (const s of Object.keys(l.manifest.streams)) streams.add(s);
  return {
    chain,
    summary: {
      backupId,
      kind: last.manifest.kind,
      scope: last.manifest.scope,
      sourceTable: last.manifest.source.table,
      exportedAt: last.manifest.exportedAt,
      manifestSha256: last.manifestSha256,
      keyId: last.manifest.signature.keyId,
      chain: chain.map((l) => ({
        backupId: l.manifest.backupId,
        kind: l.manifest.kind,
        manifestSha256: l.manifestSha256,
        exportedAt: l.manifest.exportedAt,
        streams: l.manifest.totals.streams,
        events: l.manifest.totals.events,
      })),
      streams: streams.size,
      events: total,
      bytes: chain.reduce((n, l) => n + l.manifest.totals.bytes, 0),
    },
  };
}

export function checkTrustedKeys(keys: readonly BackupPublicKey[] | undefined): Map<string, BackupPublicKey> {
  if (!Array.isArray(keys) || keys.length === 0) {
    throw new InvalidBackupRequestError(
      "trustedKeys: at least one pinned public key is needed to verify a backup (backupPublicKey(...))",
    );
  }
  return new Map(keys.map((k) => [k.keyId, k]));
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Manifest

/** Reads one manifest and checks its form, signature and self-consistency (not its files). */
export async function loadManifest(
  storage: BackupStorage,
  backupId: string,
  trusted: ReadonlyMap<string, BackupPublicKey>,
): Promise<LoadedManifest> {
  const name = blobName(backupId, MANIFEST_FILE);
  if ((await storage.stat(name)) === undefined) {
    throw new BackupNotFoundError(
      `backup ${backupId} has no ${MANIFEST_FILE} in ${storage.location} (an export that did not finish has none)`,
      { context: { backupId } },
    );
  }
  let bytes: Buffer;
  try {
    bytes = await readBlob(storage, name);
  } catch (err) {
    if (err instanceof BackupFileMissingError) {
      throw new BackupNotFoundError(`backup ${backupId} has no ${MANIFEST_FILE}`, { context: { backupId } });
    }
    throw err;
  }
  const manifest = parseManifest(bytes, backupId);
  if (!manifestBytes(manifest).equals(bytes)) {
    throw new BackupManifestTamperedError(
      `the manifest of backup ${backupId} is not in its canonical form: it was edited after it was written`,
      { context: { backupId } },
    );
  }
  const { keyId } = manifest.signature;
  const key = trusted.get(keyId);
  if (key === undefined) {
    throw new BackupUntrustedKeyError(
      `the manifest of backup ${backupId} is signed by key ${keyId}, which is not among the ${trusted.size} trusted backup key(s)`,
      { context: { backupId, keyId, trusted: [...trusted.keys()] } },
    );
  }
  if (
    !verifyBackupSignature(
      key.publicKey,
      signedBytes(manifest),
      Buffer.from(manifest.signature.value, "base64"),
    )
  ) {
    throw new BackupManifestTamperedError(
      `the signature of backup ${backupId}'s manifest does not verify with key ${keyId}: the manifest was changed after it was signed`,
      { context: { backupId, keyId } },
    );
  }
  if (manifest.backupId !== backupId) {
    throw new BackupManifestMismatchError(
      `the manifest under ${backupId} is the manifest of backup ${manifest.backupId}`,
      { context: { backupId, manifestBackupId: manifest.backupId } },
    );
  }
  checkConsistency(manifest);
  return { manifest, manifestSha256: sha256Hex(bytes) };
}

/** What a signed manifest must satisfy on its own: totals, file names, stream ranges, kind-specific fields. */
function checkConsistency(m: BackupManifest): void {
  const fail = (why: string): never => {
    throw new BackupManifestInvalidError(`the manifest of backup ${m.backupId} is not consistent: ${why}`, {
      context: { backupId: m.backupId },
    });
  };
  m.files.forEach((f, i) => {
    if (f.name !== eventsFileName(i + 1))
      fail(`file ${i + 1} must be ${eventsFileName(i + 1)}, not ${f.name}`);
  });
  const fileEvents = m.files.reduce((n, f) => n + f.events, 0);
  const fileBytes = m.files.reduce((n, f) => n + f.bytes, 0);
  const streamIds = Object.keys(m.streams);
  // Whether the streams' counts add up to the files' events is a question about the files: the content check
  // answers it with a precise error (a stream missing, a gap, an unlisted stream).
  for (const s of streamIds) {
    const { count, first, last } = m.streams[s] as { count: number; first: number; last: number };
    if (last < first || count !== last - first + 1)
      fail(`stream ${s}: count ${count} does not span ${first}..${last}`);
    if (!inScope(m.scope, s)) fail(`stream ${s} is outside the backup's scope (${describeScope(m.scope)})`);
    if (m.kind === "full" && first !== 1)
      fail(`stream ${s} starts at version ${first}; a full backup starts at 1`);
    if (m.kind === "incremental" && m.after[s] !== first - 1) {
      fail(`stream ${s} starts at version ${first} but is listed after version ${String(m.after[s])}`);
    }
  }
  if (m.totals.events !== fileEvents) fail(`totals.events ${m.totals.events}, files hold ${fileEvents}`);
  if (m.totals.bytes !== fileBytes) fail(`totals.bytes ${m.totals.bytes}, files hold ${fileBytes}`);
  if (m.totals.streams !== streamIds.length)
    fail(`totals.streams ${m.totals.streams}, ${streamIds.length} listed`);
  if (m.kind === "full" && (m.base !== null || Object.keys(m.after).length > 0)) {
    fail("a full backup has no base and no after positions");
  }
  if (m.kind === "incremental") {
    if (m.base === null) fail("an incremental backup names its base");
    if (Object.keys(m.after).length !== streamIds.length)
      fail("after must list exactly the backup's streams");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Chain

/** Longest chain of increments followed (a loop or an absurd chain is refused). */
const MAX_CHAIN = 10_000;

/** The manifests from the full backup to `backupId`, each loaded and checked, and the links between them. */
export async function loadChain(
  storage: BackupStorage,
  backupId: string,
  trusted: ReadonlyMap<string, BackupPublicKey>,
): Promise<LoadedManifest[]> {
  const chain: LoadedManifest[] = [await loadManifest(storage, backupId, trusted)];
  const seen = new Set([backupId]);
  for (;;) {
    const child = (chain[0] as LoadedManifest).manifest;
    if (child.base === null) break;
    const base = child.base;
    const fail = (why: string, cause?: AmkError): never => {
      throw new BackupChainError(
        `backup ${child.backupId} does not continue its base ${base.backupId}: ${why}`,
        {
          ...(cause ? { cause } : {}),
          context: { backupId: child.backupId, baseBackupId: base.backupId },
        },
      );
    };
    if (seen.has(base.backupId) || seen.size >= MAX_CHAIN) fail("the chain of bases loops");
    seen.add(base.backupId);
    let loaded: LoadedManifest;
    try {
      loaded = await loadManifest(storage, base.backupId, trusted);
    } catch (err) {
      if (err instanceof BackupNotFoundError) fail(`the base is not in ${storage.location}`, err);
      if (err instanceof BackupManifestMismatchError)
        fail("another backup's manifest stands in its place", err);
      throw err;
    }
    if (loaded.manifestSha256 !== base.manifestSha256)
      fail("the base's manifest is not the one it was made from");
    if (loaded.manifest.kind !== base.kind) fail(`the base is ${loaded.manifest.kind}, not ${base.kind}`);
    if (!sameScope(loaded.manifest.scope, child.scope)) {
      fail(`the base covers ${describeScope(loaded.manifest.scope)}, not ${describeScope(child.scope)}`);
    }
    if (loaded.manifest.source.table !== child.source.table) {
      fail(`the base is of table ${loaded.manifest.source.table}, not ${child.source.table}`);
    }
    if (loaded.manifest.exportedAt > child.startedAt) fail("the base was finished after this backup began");
    chain.unshift(loaded);
  }
  // Every increment continues each of its streams exactly where the chain before it ended.
  const positions = new Map<string, number>();
  for (const { manifest } of chain) {
    for (const [s, range] of Object.entries(manifest.streams)) {
      const at = positions.get(s) ?? 0;
      if (manifest.kind === "incremental" && manifest.after[s] !== at) {
        throw new BackupChainError(
          `backup ${manifest.backupId} continues stream ${s} after version ${String(manifest.after[s])}, but the chain before it ends at ${at}`,
          {
            context: {
              backupId: manifest.backupId,
              streamId: s,
              after: manifest.after[s],
              chainPosition: at,
            },
          },
        );
      }
      positions.set(s, range.last);
    }
  }
  return chain;
}

/** The last version of every stream across a chain (the positions an increment of it starts after). */
export function chainPositions(chain: readonly LoadedManifest[]): Map<string, number> {
  const positions = new Map<string, number>();
  for (const { manifest } of chain) {
    for (const [s, range] of Object.entries(manifest.streams)) positions.set(s, range.last);
  }
  return positions;
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Files present, sizes

async function checkFilesPresent(storage: BackupStorage, m: BackupManifest): Promise<void> {
  const stored = new Map((await storage.list(`${m.backupId}/`)).map((b) => [b.name, b.bytes]));
  const listed = new Set(m.files.map((f) => blobName(m.backupId, f.name)));
  for (const f of m.files) {
    const bytes = stored.get(blobName(m.backupId, f.name));
    const context = { backupId: m.backupId, file: f.name, expectedBytes: f.bytes, bytes };
    if (bytes === undefined) {
      throw new BackupFileMissingError(`backup ${m.backupId} lacks ${f.name}, which its manifest lists`, {
        context,
      });
    }
    if (bytes < f.bytes) {
      throw new BackupTruncatedError(
        `${f.name} of backup ${m.backupId} is cut off: ${bytes} of ${f.bytes} bytes`,
        { context },
      );
    }
    if (bytes !== f.bytes) {
      throw new BackupFileChecksumError(
        `${f.name} of backup ${m.backupId} has ${bytes} bytes; the manifest says ${f.bytes}`,
        { context },
      );
    }
  }
  for (const name of stored.keys()) {
    if (/\/events-\d+\.jsonl$/.test(name) && !listed.has(name)) {
      throw new BackupManifestMismatchError(
        `backup ${m.backupId} holds ${name.slice(m.backupId.length + 1)}, which its manifest does not list`,
        { context: { backupId: m.backupId, file: name } },
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Contents

interface StreamCheck {
  readonly first: number;
  readonly last: number;
  next: number;
  /** 0: no line yet; 1: its lines are being read; 2: another stream's lines came after them. */
  state: 0 | 1 | 2;
}

async function checkContents(
  storage: BackupStorage,
  m: BackupManifest,
  onEvents: (n: number) => void,
): Promise<void> {
  const streams = new Map<string, StreamCheck>(
    Object.entries(m.streams).map(([s, r]) => [s, { first: r.first, last: r.last, next: r.first, state: 0 }]),
  );
  let current: StreamCheck | undefined;
  for (const file of m.files) {
    const digest: FileDigest = { sha256: "", bytes: 0 };
    const where = { backupId: m.backupId, file: file.name };
    let lineError: Error | undefined;
    let events = 0;
    let batch = 0;
    for await (const line of fileLines(storage.get(blobName(m.backupId, file.name)), digest)) {
      if (lineError !== undefined) continue;
      if (line.kind === "unterminated") {
        lineError = new BackupTruncatedError(
          `${file.name} of backup ${m.backupId} ends inside line ${line.number}: the file is cut off`,
          { context: { ...where, line: line.number } },
        );
        continue;
      }
      if (line.kind === "too-long") {
        lineError = new BackupManifestMismatchError(
          `${file.name} of backup ${m.backupId}, line ${line.number}: longer than any event`,
          { context: { ...where, line: line.number } },
        );
        continue;
      }
      try {
        const e = parseEventLine(line.text, { ...where, line: line.number });
        events += 1;
        if (events > file.events) {
          throw new BackupManifestMismatchError(
            `${file.name} of backup ${m.backupId} holds more than the ${file.events} events its manifest lists`,
            { context: where },
          );
        }
        const s = streams.get(e.streamId);
        const at = { ...where, line: line.number, streamId: e.streamId, version: e.version };
        if (s === undefined) {
          throw new BackupManifestMismatchError(
            inScope(m.scope, e.streamId)
              ? `${file.name} line ${line.number}: stream ${e.streamId} is not listed in the manifest of backup ${m.backupId}`
              : `${file.name} line ${line.number}: stream ${e.streamId} is outside the scope of backup ${m.backupId} (${describeScope(m.scope)})`,
            { context: at },
          );
        }
        if (s !== current) {
          if (s.state === 2) {
            throw new BackupEventGapError(
              `${file.name} line ${line.number}: stream ${e.streamId} appears again after other streams; a stream's lines are consecutive`,
              { context: at },
            );
          }
          if (current !== undefined) current.state = 2;
          s.state = 1;
          current = s;
        }
        if (e.version !== s.next) {
          throw new BackupEventGapError(
            e.version < s.next
              ? `${file.name} line ${line.number}: stream ${e.streamId} version ${e.version} repeats or is out of order (expected ${s.next})`
              : `${file.name} line ${line.number}: stream ${e.streamId} lacks versions ${s.next}..${e.version - 1}`,
            { context: { ...at, expectedVersion: s.next } },
          );
        }
        if (e.version > s.last) {
          throw new BackupManifestMismatchError(
            `${file.name} line ${line.number}: stream ${e.streamId} goes beyond version ${s.last}, its last in the manifest`,
            { context: at },
          );
        }
        s.next += 1;
        if (++batch === 1000) {
          onEvents(batch);
          batch = 0;
        }
      } catch (err) {
        lineError = err as Error;
      }
    }
    onEvents(batch);
    // The checksum decides first: a file that is not the one the manifest describes is reported as such.
    if (digest.sha256 !== file.sha256 || digest.bytes !== file.bytes) {
      const context = { ...where, expectedSha256: file.sha256, sha256: digest.sha256, bytes: digest.bytes };
      if (digest.bytes < file.bytes) {
        throw new BackupTruncatedError(
          `${file.name} of backup ${m.backupId} is cut off: ${digest.bytes} of ${file.bytes} bytes`,
          { context },
        );
      }
      throw new BackupFileChecksumError(
        `${file.name} of backup ${m.backupId} does not match its SHA-256 in the manifest: its bytes were changed`,
        { context },
      );
    }
    if (lineError !== undefined) throw lineError;
    if (events !== file.events) {
      throw new BackupManifestMismatchError(
        `${file.name} of backup ${m.backupId} holds ${events} events; its manifest lists ${file.events}`,
        { context: { ...where, events, expectedEvents: file.events } },
      );
    }
  }
  for (const [streamId, s] of streams) {
    if (s.state === 0) {
      throw new BackupStreamMissingError(
        `stream ${streamId} (versions ${s.first}..${s.last}) is listed in the manifest of backup ${m.backupId} but none of its events is in the files`,
        { context: { backupId: m.backupId, streamId, first: s.first, last: s.last } },
      );
    }
    if (s.next !== s.last + 1) {
      throw new BackupEventGapError(
        `stream ${streamId} of backup ${m.backupId} ends at version ${s.next - 1}; the manifest says ${s.last}`,
        { context: { backupId: m.backupId, streamId, lastSeen: s.next - 1, last: s.last } },
      );
    }
  }
}

/** The workspace a stream belongs to (for messages and scope checks). */
export function workspaceOf(streamId: string): string {
  return parseStreamId(streamId).workspaceId;
}
