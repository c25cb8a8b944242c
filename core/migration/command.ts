/**
 * The logic of `amk migrate arquivomate --backup FILE --master-key-file FILE --workspace W [--dry-run]
 * [--artifacts DIR] [--sample N]` (docs/runbooks/migration.md), for the CLI to call: it reads the two files, runs the
 * migration and returns its result; prompting for the administrators' passphrases and factors, printing progress
 * and the report, and the exit code are the CLI's. The legacy key is read from a file (never an argument) and
 * zeroized here, with every byte read from its file, whatever happens.
 */
import { open, stat } from "node:fs/promises";
import { zeroize } from "../shared/bytes.js";
import { InvalidInputError } from "../shared/errors.js";
import type { AdministratorToEnroll } from "../workspaces/provision-with-kit.js";
import type { Enrollment } from "../kit/kit-service.js";
import { DEFAULT_BACKUP_LIMITS, type BackupLimits } from "./arquivomate-backup.js";
import { BackupTooLargeError, InvalidLegacyKeyError } from "./errors.js";
import { parseLegacyKeyFile } from "./legacy-key.js";
import {
  MigrationService,
  type MigrationDeps,
  type MigrationPhase,
  type MigrationProgress,
  type MigrationReport,
  type MigrationResult,
} from "./migration-service.js";

export interface MigrateArquivoMateOptions {
  /** `--backup FILE`: ArquivoMate's key-backup ZIP. */
  readonly backupFile: string;
  /** `--master-key-file FILE`: the legacy key (`Encryption:MasterKeyBase64` value, 64 hex digits or 32 raw bytes). */
  readonly masterKeyFile: string;
  /** `--workspace W`: the target workspace id (new, or the one an interrupted run started). */
  readonly workspace: string;
  /** `--dry-run`: verify everything, write nothing. */
  readonly dryRun?: boolean;
  /** `--artifacts DIR`: a folder of `.enc` artifact files to sample-decrypt. */
  readonly artifactsDir?: string;
  /** `--sample N`: artifact files decrypted and streams read by the census (default 20). */
  readonly sampleSize?: number;
  /** Prompted by the CLI (passphrase and factor each); not needed for a dry run or once the workspace has a kit. */
  readonly administrators?: readonly AdministratorToEnroll[];
  readonly limits?: Partial<BackupLimits>;
  readonly onProgress?: (p: MigrationProgress) => void;
  readonly onPhase?: (phase: MigrationPhase, event: "start" | "end", ms?: number) => void;
  readonly onEnrollment?: (e: Enrollment) => void;
}

const MAX_KEY_FILE_BYTES = 4096;

export async function migrateArquivoMate(
  deps: MigrationDeps,
  options: MigrateArquivoMateOptions,
): Promise<MigrationResult> {
  if (!options.backupFile || !options.masterKeyFile || !options.workspace) {
    throw new InvalidInputError("--backup, --master-key-file and --workspace are required");
  }
  const warnings: string[] = [];
  const keyFileBytes = await readSmallFile(options.masterKeyFile, MAX_KEY_FILE_BYTES, warnings);
  let legacyKey: Buffer | undefined;
  try {
    legacyKey = parseLegacyKeyFile(keyFileBytes);
  } finally {
    zeroize(keyFileBytes);
  }
  try {
    const maxZip = options.limits?.maxZipBytes ?? DEFAULT_BACKUP_LIMITS.maxZipBytes;
    const size = (await stat(options.backupFile)).size;
    if (size > maxZip) {
      throw new BackupTooLargeError(`the backup is ${size} bytes; at most ${maxZip} are accepted`, {
        context: { bytes: size, limit: maxZip },
      });
    }
    const backup = await readWhole(options.backupFile, maxZip);
    const result = await new MigrationService(deps).migrate({
      workspaceId: options.workspace,
      backup,
      legacyKey,
      administrators: options.administrators ?? [],
      ...(options.dryRun ? { dryRun: true } : {}),
      ...(options.artifactsDir ? { artifactsDir: options.artifactsDir } : {}),
      ...(options.sampleSize !== undefined ? { sampleSize: options.sampleSize } : {}),
      ...(options.limits ? { limits: options.limits } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.onPhase ? { onPhase: options.onPhase } : {}),
      ...(options.onEnrollment ? { onEnrollment: options.onEnrollment } : {}),
    });
    if (warnings.length === 0) return result;
    return { ...result, report: { ...result.report, warnings: [...warnings, ...result.report.warnings] } };
  } finally {
    zeroize(legacyKey);
  }
}

/** The key file: at most `max` bytes; a warning when group or others may read it (POSIX). */
async function readSmallFile(path: string, max: number, warnings: string[]): Promise<Buffer> {
  const st = await stat(path);
  if (!st.isFile()) throw new InvalidLegacyKeyError(`${path} is not a regular file`);
  if (st.size > max) {
    throw new InvalidLegacyKeyError(`the master key file is ${st.size} bytes; a key file is at most ${max}`);
  }
  if (process.platform !== "win32" && (st.mode & 0o077) !== 0) {
    warnings.push(
      `the master key file ${path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); restrict it (chmod 600) and delete it after the migration`,
    );
  }
  return readWhole(path, max);
}

async function readWhole(path: string, max: number): Promise<Buffer> {
  const h = await open(path, "r");
  try {
    const buf = Buffer.alloc(Math.min((await h.stat()).size, max));
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await h.read(buf, off, buf.length - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return off === buf.length ? buf : buf.subarray(0, off);
  } finally {
    await h.close();
  }
}

/** The report as lines for a terminal or a log (no secret is in a report). */
export function formatMigrationReport(r: MigrationReport): string {
  const lines: string[] = [];
  lines.push(
    `${r.dryRun ? "Dry run of the migration" : "Migration"} into workspace ${r.workspaceId}: ${r.ok ? "OK" : "NOT OK"}`,
  );
  lines.push(
    `  backup: ${r.backup.shape}, ${r.backup.items} items (${r.backup.superseded} superseded), sha256 ${r.backup.sha256}${r.backup.exportedAtUtc ? `, exported ${r.backup.exportedAtUtc}` : ""}`,
  );
  lines.push(
    `  documents: ${r.documents}, artifacts (DEKs): ${r.artifacts}, unwrapped with the legacy key: ${r.deksVerified}`,
  );
  lines.push(
    `  legacy key: ${r.legacyKey.keyId}, KCV ${r.legacyKey.kcv}${r.legacyKey.state ? `, ${r.legacyKey.state}` : ""}`,
  );
  if (!r.dryRun) {
    lines.push(
      `  records: ${r.records.appended} written, ${r.records.replayed} already there, ${r.records.conflicts} refused; re-wrapped: ${r.rewrapped}`,
    );
  }
  if (r.activeKeyId) lines.push(`  active master key: ${r.activeKeyId}`);
  if (r.kit)
    lines.push(`  kit v${r.kit.version} (${r.kit.fingerprint}) carries ${r.kit.masterKeys.join(", ")}`);
  if (r.census) {
    lines.push(
      `  census: ${r.census.remaining} records on ${r.census.legacyKeyId}, ${r.census.onActiveKey} documents on the active key, ${r.census.sampled} streams read, ${r.census.sampleMismatches.length} mismatches`,
    );
  }
  if (r.artifactChecks) {
    const a = r.artifactChecks;
    lines.push(`  artifact files: ${a.files} found, ${a.checked} decrypted, ${a.ok} ok, ${a.failed} failed`);
  }
  lines.push(
    `  phases: ${r.phases.map((p) => `${p.phase} ${(p.ms / 1000).toFixed(1)} s`).join(", ")}; total ${(r.totalMs / 1000).toFixed(1)} s`,
  );
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  for (const f of r.failures.slice(0, 50)) {
    lines.push(
      `  failure: ArquivoMate stream ${f.documentId}${f.artifact ? ` (${f.artifact})` : ""}: ${f.reason}`,
    );
  }
  if (r.failures.length > 50) lines.push(`  ... and ${r.failures.length - 50} more failures`);
  lines.push(r.conclusion);
  return lines.join("\n");
}
