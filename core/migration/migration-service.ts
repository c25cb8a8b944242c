/**
 * Migration of an ArquivoMate installation (one static legacy master key, wrap records in a key backup) into a
 * workspace whose keys live in the HSM. docs/runbooks/migration.md is the operator's side of it.
 *
 * Phases (`MigrationPhase`), in order:
 *  1. verify         read and verify the backup (arquivomate-backup.ts), then unwrap EVERY current DEK with the legacy
 *                    key in software (AES-256-GCM, AAD "DEK:<artifact>"), each DEK zeroized at once. Any failure stops
 *                    here with `LegacyKeyMismatchError` naming the streams; nothing has been written.
 *  2. workspace      read-only checks of the target: a workspace or HSM holding another key as version 1 is refused
 *                    (`WorkspaceConflictError`); the administrators are checked (policy, not enrolled twice).
 *                    A dry run ends here (after the optional artifact check with the software-unwrapped DEKs).
 *  3. import-key     the legacy key into the HSM as `ws-<id>/mk/1` through a transport key (RFC 5649 in software,
 *                    unwrapped inside the HSM, KCV computed in software first and required by the import), recorded
 *                    as `MasterKeyCreated` with `Origin: "imported-legacy"`.
 *  4. kit            drill key, administrators, kit v1 (it carries mk/1).
 *  5. rotate         the rotation engine's `startRotation`: a fresh HSM-generated mk/2 is active at once and mk/1
 *                    turns decrypt-only (kit v2 carries both); canary documents are created under mk/2. This runs
 *                    before the records are imported so that the legacy key never wraps a new DEK.
 *  6. import-records every current wrap record as a `DocumentEncryptionKeysAdded` (KeyId mk/1, WrapFormat
 *                    ARQ-GCM-LEGACY) in its document stream, at `no_stream`, its event id derived from the workspace
 *                    and ArquivoMate's event id: a re-run is a replay, never a second record.
 *  7. rewrap         the re-wrap engine (planRewrap/rewrapShard) until no shard has documents on mk/1.
 *  8. complete       `completeRotation`: census of zero, mk/1 retired, the kit re-issued for mk/2 only.
 *  9. census         the proof: zero records on mk/1, a sample of streams on mk/2 in AMK-GCM-V1, the kit covering
 *                    mk/2 and not mk/1.
 * 10. artifacts      (optional) a sample of `.enc` files decrypted with the migrated keys (HMAC checked).
 *
 * Every phase of a real run can be re-run: the workspace stream and the HSM say what is done, the document streams
 * replay, the rotation resumes, the census index is the checkpoint of the re-wrap. Plaintext DEKs exist only in
 * phase 1 and 10 and are zeroized at once; the legacy key is the caller's (zeroized by it), the transport key and the
 * wrapped blob made from it are zeroized here.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { ensureCanaries, DEFAULT_CANARY_COUNT } from "../canaries/canaries.js";
import { ContentIntegrityError, decryptContent } from "../content/arquivomate-v2.js";
import type { DataKeyService } from "../datakeys/data-keys.js";
import { WrapFormats } from "../datakeys/wrap-format.js";
import {
  EventTypes,
  type DocumentEncryptionKeysAddedData,
  type MasterKeyCreatedData,
} from "../eventstore/catalogue.js";
import type { EventStore, StreamAppend } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent } from "../eventstore/events.js";
import { currentWrapRecord } from "../eventstore/projection.js";
import { assertValidWorkspaceId, documentStreamId, workspaceStreamId } from "../eventstore/stream-id.js";
import { checkPassphrase } from "../factors/passphrase-policy.js";
import type { Enrollment, KitService } from "../kit/kit-service.js";
import { KeyAlreadyExistsError } from "../keystore/errors.js";
import { masterKeyId, type KeyId } from "../keystore/key-id.js";
import type { KeyStore, MasterKeyInfo, TransportKeyRef } from "../keystore/key-store.js";
import { CensusNotEmptyError, type RotationService } from "../rotation/rotation-service.js";
import { ProgressTracker, type ProgressSnapshot } from "../rotation/progress.js";
import { zeroize } from "../shared/bytes.js";
import { AmkError, InvalidInputError } from "../shared/errors.js";
import { uuidFromName } from "../shared/ids.js";
import { sleep } from "../shared/retry.js";
import type { AdministratorToEnroll } from "../workspaces/provision-with-kit.js";
import { readWorkspace, type WorkspaceState } from "../workspaces/workspace.js";
import {
  readArquivoMateBackup,
  type ArquivoMateBackup,
  type BackupLimits,
  type LegacyWrapItem,
} from "./arquivomate-backup.js";
import {
  listArtifactFiles,
  readArtifactFile,
  sampleFiles,
  type ArtifactCheck,
  type ArtifactFile,
} from "./artifact-files.js";
import {
  LegacyKeyMismatchError,
  MigrationStateError,
  WorkspaceConflictError,
  type UnwrapFailure,
} from "./errors.js";
import { keyCheckValue, unwrapLegacyDek, wrapForTransport, LEGACY_KEY_LENGTH } from "./legacy-key.js";

export type MigrationPhase =
  | "verify"
  | "workspace"
  | "import-key"
  | "kit"
  | "rotate"
  | "import-records"
  | "rewrap"
  | "complete"
  | "census"
  | "artifacts";

export interface MigrationProgress extends ProgressSnapshot {
  readonly phase: MigrationPhase;
}

export interface MigrationDeps {
  readonly keyStore: KeyStore;
  readonly events: EventStore;
  readonly kits: KitService;
  readonly rotation: RotationService;
  readonly dataKeys: DataKeyService;
  readonly now?: () => Date;
}

export interface MigrateInput {
  readonly workspaceId: string;
  /** The key backup ZIP's bytes. */
  readonly backup: Uint8Array;
  /** The legacy master key, 32 bytes. The caller owns it and zeroizes it; no copy of it outlives the call. */
  readonly legacyKey: Uint8Array;
  /** Enrolled into kit v1 (as for provisioning). Ignored once the workspace has a kit. */
  readonly administrators: readonly AdministratorToEnroll[];
  /** Verify everything, write nothing. */
  readonly dryRun?: boolean;
  /** A folder of ArquivoMate `.enc` artifact files (artifact-files.ts) to sample-decrypt. */
  readonly artifactsDir?: string;
  /** How many artifact files to decrypt (default 20), and how many streams the census reads (same number). */
  readonly sampleSize?: number;
  /** Called as phases advance (done/total/rate): the CLI's progress bar. A throw stops the migration there. */
  readonly onProgress?: (p: MigrationProgress) => void;
  /** Called when a phase starts and ends. A throw stops the migration there. */
  readonly onPhase?: (phase: MigrationPhase, event: "start" | "end", ms?: number) => void;
  /** Called as soon as an administrator is enrolled: a TOTP URI must be shown to them now (it is shown once). */
  readonly onEnrollment?: (e: Enrollment) => void;
  readonly limits?: Partial<BackupLimits>;
  /** Documents per `appendToStreams` call (default 200). */
  readonly batchSize?: number;
  /** Census shards re-wrapped concurrently (default 4). */
  readonly shardConcurrency?: number;
  /** Canary documents of the workspace (default 3, as provisioning). */
  readonly canaries?: number;
  /** Largest artifact file sampled (default 64 MiB). */
  readonly maxArtifactBytes?: number;
}

export interface MigrationFailure {
  /** ArquivoMate's stream id (the document's GUID). */
  readonly documentId: string;
  /** Our stream id, `ws-<workspace>/doc-<documentId>`. */
  readonly streamId: string;
  readonly artifact?: string;
  readonly reason: string;
}

export interface MigrationReport {
  readonly workspaceId: string;
  readonly dryRun: boolean;
  /** True when everything was verified (dry run) or migrated and proven (real run) without a failure. */
  readonly ok: boolean;
  readonly backup: {
    readonly shape: ArquivoMateBackup["shape"];
    readonly sha256: string;
    readonly items: number;
    readonly superseded: number;
    readonly exportedAtUtc?: string;
    readonly fromSequence?: number;
    readonly toSequence?: number;
  };
  /** Documents (current wrap records) and their wrapped DEKs in the backup. */
  readonly documents: number;
  readonly artifacts: number;
  /** DEKs the legacy key unwrapped in software (phase verify). */
  readonly deksVerified: number;
  readonly legacyKey: { readonly keyId: string; readonly kcv: string; readonly state?: string };
  /** Records written by this run, found from an earlier run (replayed), or refused (another record was there). */
  readonly records: { readonly appended: number; readonly replayed: number; readonly conflicts: number };
  /** Documents this run moved under the new master key. */
  readonly rewrapped: number;
  readonly activeKeyId?: string;
  readonly kit?: { readonly version: number; readonly fingerprint: string; readonly masterKeys: string[] };
  readonly census?: {
    readonly legacyKeyId: string;
    /** Records left on the legacy version (must be 0). */
    readonly remaining: number;
    /** Documents on the active version. */
    readonly onActiveKey: number;
    readonly sampled: number;
    readonly sampleMismatches: readonly string[];
  };
  readonly artifactChecks?: {
    readonly files: number;
    readonly ignored: number;
    readonly checked: number;
    readonly ok: number;
    readonly failed: number;
    readonly results: readonly ArtifactCheck[];
  };
  readonly failures: readonly MigrationFailure[];
  readonly warnings: readonly string[];
  readonly phases: readonly { readonly phase: MigrationPhase; readonly ms: number }[];
  readonly totalMs: number;
  /** True only when the census proved that nothing depends on the legacy key and nothing failed. */
  readonly legacyKeyNoLongerNeeded: boolean;
  /** One sentence for the operator. */
  readonly conclusion: string;
}

export interface MigrationResult {
  readonly report: MigrationReport;
  /** Enrollments made by this run (a TOTP URI holds a secret: show it once, never log it). */
  readonly enrollments: readonly Enrollment[];
}

export const MIGRATION_ROTATION_REASON = "migration from ArquivoMate: every DEK moves off the legacy key";
const ADMIN_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const MAX_LISTED_FAILURES = 1000;

/** The event id of a document's migrated legacy record: derived, so a re-run replays instead of appending. */
export function migratedEventId(workspaceId: string, legacyEventId: string): string {
  return uuidFromName("ArquivoMateMigration", workspaceId, legacyEventId.toLowerCase());
}

interface RunState {
  readonly input: MigrateInput;
  readonly workspaceId: string;
  readonly legacyKeyId: KeyId;
  readonly phases: { phase: MigrationPhase; ms: number }[];
  readonly warnings: string[];
  readonly failures: MigrationFailure[];
  readonly enrollments: Enrollment[];
  records: { appended: number; replayed: number; conflicts: number };
  rewrapped: number;
}

export class MigrationService {
  private readonly now: () => Date;

  constructor(private readonly deps: MigrationDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  async migrate(input: MigrateInput): Promise<MigrationResult> {
    const started = performance.now();
    assertValidWorkspaceId(input.workspaceId);
    if (!(input.legacyKey instanceof Uint8Array) || input.legacyKey.length !== LEGACY_KEY_LENGTH) {
      throw new InvalidInputError(`the legacy master key must be ${LEGACY_KEY_LENGTH} bytes`);
    }
    const run: RunState = {
      input,
      workspaceId: input.workspaceId,
      legacyKeyId: masterKeyId(input.workspaceId, 1),
      phases: [],
      warnings: [],
      failures: [],
      enrollments: [],
      records: { appended: 0, replayed: 0, conflicts: 0 },
      rewrapped: 0,
    };
    const dryRun = input.dryRun ?? false;

    // 1. verify: nothing is written before every DEK unwrapped.
    const { backup, kcv } = await this.phase(run, "verify", () => this.verify(run));
    run.warnings.push(...backup.warnings);

    // 2. workspace: read-only.
    const existing = await this.phase(run, "workspace", () => this.checkWorkspace(run, kcv, dryRun));

    if (dryRun) {
      const artifactChecks = input.artifactsDir
        ? await this.phase(run, "artifacts", () => this.checkArtifactsInSoftware(run, backup))
        : undefined;
      return this.finish(run, backup, kcv, started, { existing, artifactChecks });
    }

    await this.phase(run, "import-key", () => this.importKey(run, kcv, existing));
    await this.phase(run, "kit", () => this.ensureKit(run));
    const completed = await this.phase(run, "rotate", () => this.ensureRotation(run));
    await this.phase(run, "import-records", () => this.importRecords(run, backup, completed));
    if (!completed) {
      await this.phase(run, "rewrap", () => this.rewrapAll(run));
      await this.phase(run, "complete", () => this.complete(run));
    }
    const census = await this.phase(run, "census", () => this.census(run));
    const artifactChecks = input.artifactsDir
      ? await this.phase(run, "artifacts", () => this.checkArtifactsMigrated(run, backup))
      : undefined;
    return this.finish(run, backup, kcv, started, { census, artifactChecks });
  }

  // ---- phases ------------------------------------------------------------------------------------------------

  private async phase<T>(run: RunState, phase: MigrationPhase, fn: () => Promise<T>): Promise<T> {
    run.input.onPhase?.(phase, "start");
    const t0 = performance.now();
    const out = await fn();
    const ms = Math.round(performance.now() - t0);
    run.phases.push({ phase, ms });
    run.input.onPhase?.(phase, "end", ms);
    return out;
  }

  private async verify(run: RunState): Promise<{ backup: ArquivoMateBackup; kcv: string }> {
    const backup = readArquivoMateBackup(run.input.backup, run.input.limits);
    const kcv = keyCheckValue(run.input.legacyKey);
    const tracker = new ProgressTracker(backup.documents.length);
    const failures: UnwrapFailure[] = [];
    this.emit(run, "verify", tracker);
    let sinceEmit = 0;
    for (const doc of backup.documents) {
      for (const a of doc.artifacts) {
        const dek = unwrapLegacyDek(run.input.legacyKey, a.artifact, a);
        if (dek) zeroize(dek);
        else
          failures.push({
            streamId: documentStreamId(run.workspaceId, doc.documentId),
            documentId: doc.documentId,
            artifact: a.artifact,
            eventId: doc.eventId,
          });
      }
      tracker.add(1);
      if (++sinceEmit >= 1000) {
        sinceEmit = 0;
        this.emit(run, "verify", tracker);
        await yieldToEventLoop(); // very large backups: let timers and I/O run between chunks
      }
    }
    this.emit(run, "verify", tracker);
    if (failures.length > 0) {
      const docs = [...new Set(failures.map((f) => f.documentId))];
      const examples = docs.slice(0, 5).join(", ");
      const message =
        failures.length === backup.artifacts
          ? `the legacy key (KCV ${kcv}) unwraps none of the backup's ${backup.artifacts} DEKs: it is not the key these records were wrapped with (wrong key file?). Nothing was written.`
          : `the legacy key (KCV ${kcv}) does not unwrap ${failures.length} of ${backup.artifacts} DEKs, in ${docs.length} document(s) (ArquivoMate streams ${examples}${docs.length > 5 ? ", ..." : ""}): those records were wrapped under another key or are damaged. Nothing was written.`;
      throw new LegacyKeyMismatchError(message, failures, { context: { kcv, deks: backup.artifacts } });
    }
    return { backup, kcv };
  }

  /** Read-only: what the workspace and the HSM hold, and whether the migration may write into them. */
  private async checkWorkspace(run: RunState, kcv: string, dryRun: boolean): Promise<WorkspaceState> {
    const { workspaceId, legacyKeyId } = run;
    const ws = await readWorkspace(this.deps.events, workspaceId);
    const recorded = ws.keys.find((k) => k.keyId === legacyKeyId);
    if (ws.keys.length > 0 && (!recorded || recorded.kcv !== kcv)) {
      throw new WorkspaceConflictError(
        `workspace ${workspaceId} is already provisioned: ${legacyKeyId} has KCV ${recorded?.kcv ?? "(none)"}, the legacy key has KCV ${kcv}. Migrate into a new workspace id; nothing was written.`,
        { context: { workspaceId, keyId: legacyKeyId, recordedKcv: recorded?.kcv, legacyKcv: kcv } },
      );
    }
    const live = !recorded || recorded.state === "active" || recorded.state === "decrypt-only";
    if (live) {
      const inHsm = await this.deps.keyStore.findMasterKey(legacyKeyId);
      if (inHsm && inHsm.kcv !== kcv) {
        throw new WorkspaceConflictError(
          `the HSM already holds ${legacyKeyId} with KCV ${inHsm.kcv}, not the legacy key (KCV ${kcv})${recorded ? "" : ", and the event store has no record of it"}. Find out where it comes from before migrating into ${workspaceId}; nothing was written.`,
          { context: { workspaceId, keyId: legacyKeyId, hsmKcv: inHsm.kcv, legacyKcv: kcv } },
        );
      }
      if (recorded && !inHsm) {
        run.warnings.push(
          `${legacyKeyId} is recorded but missing from this HSM: it will be imported again (same KCV ${kcv})`,
        );
      }
    }
    if (recorded) {
      run.warnings.push(
        `workspace ${workspaceId} already holds the legacy key as ${legacyKeyId} (${recorded.state}): an earlier run is continued`,
      );
    }
    if (ws.kits.length === 0) {
      const admins = run.input.administrators;
      if (admins.length === 0) {
        if (!dryRun)
          throw new InvalidInputError(
            "at least one administrator is enrolled into the workspace's first kit; nothing was written",
          );
        run.warnings.push("a real run needs at least one administrator (passphrase and second factor)");
      }
      const seen = new Set<string>();
      for (const a of admins) {
        if (!ADMIN_ID.test(a.adminId)) {
          throw new InvalidInputError("administrator id: 1-64 letters, digits, - and _", {
            context: { adminId: String(a.adminId).slice(0, 64) },
          });
        }
        if (seen.has(a.adminId))
          throw new InvalidInputError(`administrator ${a.adminId} is listed twice`, {
            context: { adminId: a.adminId },
          });
        seen.add(a.adminId);
        checkPassphrase(a.passphrase, { workspaceId, adminId: a.adminId });
        if (ws.admins[a.adminId]) {
          throw new MigrationStateError(
            `administrator ${a.adminId} was enrolled by an interrupted run before the first kit was issued, and that enrollment cannot be put into a kit any more. Run again with another administrator id (e.g. ${a.adminId}-2); nothing was written by this run.`,
            { context: { workspaceId, adminId: a.adminId } },
          );
        }
      }
    }
    return ws;
  }

  private async importKey(run: RunState, kcv: string, existing: WorkspaceState): Promise<void> {
    const { workspaceId, legacyKeyId } = run;
    const recorded = existing.keys.find((k) => k.keyId === legacyKeyId);
    const live = !recorded || recorded.state === "active" || recorded.state === "decrypt-only";
    let info: MasterKeyInfo | undefined = live
      ? await this.deps.keyStore.findMasterKey(legacyKeyId)
      : undefined;
    if (live && !info) info = await this.importIntoHsm(legacyKeyId, run.input.legacyKey, kcv);
    if (recorded) return;
    const data: MasterKeyCreatedData = {
      WorkspaceId: workspaceId,
      KeyId: legacyKeyId,
      Kcv: info!.kcv,
      Extractable: info!.extractable,
      Origin: "imported-legacy",
    };
    try {
      await this.deps.events.appendToStream(
        workspaceStreamId(workspaceId),
        [
          newEvent(EventTypes.MasterKeyCreated, data, {
            eventId: uuidFromName("ArquivoMateMigration", "MasterKeyCreated", legacyKeyId, kcv),
            occurredAt: this.now(),
          }),
        ],
        { expectedVersion: existing.version === 0 ? "no_stream" : existing.version },
      );
    } catch (err) {
      if (!(err instanceof ExpectedVersionConflictError)) throw err;
      // Someone else wrote the workspace first: it must hold our key, or we stop.
    }
    const after = await readWorkspace(this.deps.events, workspaceId);
    const mk1 = after.keys.find((k) => k.keyId === legacyKeyId);
    if (!mk1 || mk1.kcv !== kcv) {
      throw new WorkspaceConflictError(
        `workspace ${workspaceId} was provisioned by someone else while the migration ran (${legacyKeyId} has KCV ${mk1?.kcv ?? "(none)"}); migrate into a new workspace id`,
        { context: { workspaceId, keyId: legacyKeyId } },
      );
    }
  }

  /** RFC 5649 under a fresh transport key in software, unwrapped inside the HSM; the HSM must find the same KCV. */
  private async importIntoHsm(keyId: KeyId, legacyKey: Uint8Array, kcv: string): Promise<MasterKeyInfo> {
    const transportKey = randomBytes(32);
    let blob: Buffer | undefined;
    let ref: TransportKeyRef | undefined;
    try {
      blob = wrapForTransport(transportKey, legacyKey);
      ref = await this.deps.keyStore.importTransportKey(transportKey);
      return await this.deps.keyStore.importMasterKey(keyId, blob, ref, {
        expectedKcv: kcv,
        extractable: true,
      });
    } catch (err) {
      if (!(err instanceof KeyAlreadyExistsError)) throw err;
      const info = await this.deps.keyStore.findMasterKey(keyId);
      if (info?.kcv === kcv) return info;
      throw new WorkspaceConflictError(`the HSM holds another key as ${keyId}`, {
        cause: err,
        context: { keyId, hsmKcv: info?.kcv, legacyKcv: kcv },
      });
    } finally {
      zeroize(transportKey, blob);
      if (ref) await this.deps.keyStore.destroyTransportKey(ref);
    }
  }

  private async ensureKit(run: RunState): Promise<void> {
    const { workspaceId } = run;
    await this.deps.kits.ensureDrillKey(workspaceId);
    const ws = await readWorkspace(this.deps.events, workspaceId);
    if (ws.kits.length > 0) {
      const inKit = new Set(ws.kits.at(-1)!.adminIds);
      const absent = run.input.administrators.filter((a) => !inKit.has(a.adminId)).map((a) => a.adminId);
      if (absent.length > 0) {
        run.warnings.push(
          `the workspace's kit was issued by an earlier run; administrators not in it were not enrolled: ${absent.join(", ")}`,
        );
      }
      return;
    }
    for (const a of run.input.administrators) {
      const e = await this.deps.kits.enrollAdministrator({ workspaceId, ...a });
      run.enrollments.push(e);
      run.input.onEnrollment?.(e);
    }
    await this.deps.kits.issueKit(workspaceId, {
      admins: run.enrollments.map((e) => e.recipient),
      reason: `migration from ArquivoMate: kit v1 carries the imported legacy key ${run.legacyKeyId}`,
    });
  }

  /** Starts (or resumes) the rotation away from mk/1. Returns true when the migration's rotation already completed. */
  private async ensureRotation(run: RunState): Promise<boolean> {
    const { workspaceId, legacyKeyId } = run;
    const ws = await readWorkspace(this.deps.events, workspaceId);
    const mk1 = ws.keys.find((k) => k.keyId === legacyKeyId);
    if (mk1 && (mk1.state === "retired" || mk1.state === "destroyed")) return true;
    const rotation = await this.deps.rotation.startRotation(workspaceId, MIGRATION_ROTATION_REASON);
    if (!rotation.fromKeyIds.includes(legacyKeyId)) {
      throw new MigrationStateError(
        `rotation ${rotation.rotationId} of ${workspaceId} does not re-wrap ${legacyKeyId}; let it complete, then run the migration again`,
        { context: { workspaceId, rotationId: rotation.rotationId } },
      );
    }
    await ensureCanaries(
      { dataKeys: this.deps.dataKeys, events: this.deps.events, now: this.now },
      workspaceId,
      run.input.canaries ?? DEFAULT_CANARY_COUNT,
    );
    return false;
  }

  private recordOf(run: RunState, doc: LegacyWrapItem): DocumentEncryptionKeysAddedData {
    return {
      AggregateId: doc.documentId,
      WorkspaceId: run.workspaceId,
      KeyId: run.legacyKeyId,
      WrapFormat: WrapFormats.ArquivoMateLegacy,
      Artifacts: doc.artifacts.map((a) => ({
        Artifact: a.artifact,
        WrappedDek: a.wrappedDek,
        WrapNonce: a.wrapNonce,
        Algorithm: a.algorithm,
        Version: a.version,
      })),
      OccurredOn: doc.occurredOn,
    };
  }

  private async importRecords(run: RunState, backup: ArquivoMateBackup, completed: boolean): Promise<void> {
    const { workspaceId } = run;
    const batchSize = Math.max(1, Math.min(run.input.batchSize ?? 200, 1000));
    const tracker = new ProgressTracker(backup.documents.length);
    this.emit(run, "import-records", tracker);
    for (let i = 0; i < backup.documents.length; i += batchSize) {
      const batch = backup.documents.slice(i, i + batchSize);
      if (completed) {
        await this.checkMigrated(run, batch);
      } else {
        await this.assertLegacyKeyLive(run);
        const appends: StreamAppend[] = batch.map((doc) => ({
          streamId: documentStreamId(workspaceId, doc.documentId),
          events: [
            newEvent(EventTypes.DocumentEncryptionKeysAdded, this.recordOf(run, doc), {
              eventId: migratedEventId(workspaceId, doc.eventId),
              occurredAt: doc.occurredOn,
            }),
          ],
          expectedVersion: "no_stream",
        }));
        const outcomes = await this.deps.events.appendToStreams(appends);
        for (const [j, o] of outcomes.entries()) {
          if (o.status === "appended") run.records.appended += 1;
          else if (o.status === "replayed") run.records.replayed += 1;
          else this.conflict(run, batch[j]!);
        }
      }
      tracker.add(batch.length);
      this.emit(run, "import-records", tracker);
    }
  }

  /** After completion: every document must be in the store already (a re-run), else the backup is newer. */
  private async checkMigrated(run: RunState, batch: readonly LegacyWrapItem[]): Promise<void> {
    const { workspaceId } = run;
    const found = await this.deps.events.readEvents(
      batch.map((d) => ({ streamId: documentStreamId(workspaceId, d.documentId), version: 1 })),
    );
    const missing: string[] = [];
    for (const [j, e] of found.entries()) {
      const doc = batch[j]!;
      if (!e) missing.push(doc.documentId);
      else if (e.eventId === migratedEventId(workspaceId, doc.eventId)) run.records.replayed += 1;
      else this.conflict(run, doc);
    }
    if (missing.length > 0) {
      throw new MigrationStateError(
        `the migration into ${workspaceId} completed earlier and ${run.legacyKeyId} is retired, but this backup holds documents that were not migrated (ArquivoMate streams ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}): they were probably keyed after the first export. Keep the legacy key and see the runbook (documents keyed after the export).`,
        { context: { workspaceId, missing: missing.length, streamIds: missing.slice(0, 20) } },
      );
    }
  }

  private conflict(run: RunState, doc: LegacyWrapItem): void {
    run.records.conflicts += 1;
    if (run.failures.length < MAX_LISTED_FAILURES) {
      run.failures.push({
        documentId: doc.documentId,
        streamId: documentStreamId(run.workspaceId, doc.documentId),
        reason:
          "the document stream already holds other wrap records (not from this backup); nothing was overwritten",
      });
    }
  }

  private async assertLegacyKeyLive(run: RunState): Promise<void> {
    const ws = await readWorkspace(this.deps.events, run.workspaceId);
    const mk1 = ws.keys.find((k) => k.keyId === run.legacyKeyId);
    if (!mk1 || (mk1.state !== "active" && mk1.state !== "decrypt-only")) {
      throw new MigrationStateError(
        `${run.legacyKeyId} was ${mk1?.state ?? "removed"} while its records were being imported (a rotation completed by someone else?); records imported now would be on a key that no longer decrypts. Keep the legacy key; see the runbook.`,
        { context: { workspaceId: run.workspaceId, state: mk1?.state } },
      );
    }
  }

  /** Loops plan -> shards until no shard has documents on mk/1; shards run concurrently, each in chunks. */
  private async rewrapAll(run: RunState): Promise<void> {
    const { workspaceId } = run;
    const concurrency = Math.max(1, run.input.shardConcurrency ?? 4);
    let plan = await this.deps.rotation.planRewrap(workspaceId);
    const tracker = new ProgressTracker(plan.remaining);
    this.emit(run, "rewrap", tracker);
    for (let round = 0; plan.items.length > 0; round++) {
      if (round >= 100) {
        throw new MigrationStateError(
          `the re-wrap of ${workspaceId} did not converge (${plan.remaining} documents left); run the migration again`,
        );
      }
      const queue = [...plan.items];
      let failed = false;
      const worker = async (): Promise<void> => {
        for (let item = queue.shift(); item && !failed; item = queue.shift()) {
          for (;;) {
            const r = await this.deps.rotation.rewrapShard({
              workspaceId,
              fromKeyId: item.fromKeyId,
              shard: item.shard,
              maxDocuments: 200,
            });
            run.rewrapped += r.moved;
            tracker.add(r.moved);
            this.emit(run, "rewrap", tracker);
            if (!r.remaining || failed) break;
          }
        }
      };
      const settled = await Promise.allSettled(
        Array.from({ length: Math.min(concurrency, queue.length) }, () =>
          worker().catch((err: unknown) => {
            failed = true;
            throw err;
          }),
        ),
      );
      const rejected = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
      if (rejected) throw rejected.reason;
      plan = await this.deps.rotation.planRewrap(workspaceId);
      tracker.setTotal(tracker.snapshot().done + plan.remaining);
    }
  }

  private async complete(run: RunState): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.deps.rotation.completeRotation(run.workspaceId);
        return;
      } catch (err) {
        // The census index follows the streams within moments (eventually consistent on DynamoDB): look again.
        if (!(err instanceof CensusNotEmptyError) || attempt >= 5) throw err;
        await sleep(500 * attempt);
        await this.rewrapAll(run);
      }
    }
  }

  private async census(run: RunState): Promise<NonNullable<MigrationReport["census"]>> {
    const { workspaceId, legacyKeyId } = run;
    const ws = await readWorkspace(this.deps.events, workspaceId);
    const active = ws.activeKeyId!;
    let remaining = await this.deps.events.countDocumentsByKeyId(workspaceId, legacyKeyId);
    if (remaining === 0 && (await this.deps.events.listKeyIdsInUse(workspaceId)).includes(legacyKeyId)) {
      remaining = 1;
    }
    const want = Math.max(1, run.input.sampleSize ?? 20);
    const page = await this.deps.events.listDocumentsByKeyId(workspaceId, active, { limit: want });
    const mismatches: string[] = [];
    let sampled = 0;
    for (const d of page.documents) {
      const { events } = await this.deps.events.readStream(documentStreamId(workspaceId, d.documentId));
      const last = currentWrapRecord(events)?.data as DocumentEncryptionKeysAddedData | undefined;
      sampled += 1;
      if (last?.KeyId !== active || last.WrapFormat !== WrapFormats.AmkGcmV1) mismatches.push(d.documentId);
    }
    const onActiveKey = await this.deps.events.countDocumentsByKeyId(workspaceId, active);
    return { legacyKeyId, remaining, onActiveKey, sampled, sampleMismatches: mismatches };
  }

  // ---- artifacts ---------------------------------------------------------------------------------------------

  private async checkArtifactsInSoftware(
    run: RunState,
    backup: ArquivoMateBackup,
  ): Promise<NonNullable<MigrationReport["artifactChecks"]>> {
    const byDoc = new Map(backup.documents.map((d) => [d.documentId, d]));
    return this.checkArtifacts(run, async (file, blob) => {
      const doc = byDoc.get(file.documentId);
      if (!doc) return { problem: "the document is not in the backup" };
      const entry = doc.artifacts.find((a) => a.artifact === file.artifact);
      if (!entry) return { problem: `the backup has no key for artifact ${file.artifact}` };
      const dek = unwrapLegacyDek(run.input.legacyKey, entry.artifact, entry);
      if (!dek) return { problem: "the legacy key does not unwrap its DEK" };
      try {
        zeroize(decryptContent(dek, blob));
        return {};
      } finally {
        zeroize(dek);
      }
    });
  }

  private async checkArtifactsMigrated(
    run: RunState,
    backup: ArquivoMateBackup,
  ): Promise<NonNullable<MigrationReport["artifactChecks"]>> {
    const known = new Set(backup.documents.map((d) => d.documentId));
    const ws = await readWorkspace(this.deps.events, run.workspaceId);
    const active = ws.activeKeyId;
    return this.checkArtifacts(run, async (file, blob) => {
      if (!known.has(file.documentId)) return { problem: "the document is not in the backup" };
      const r = await this.deps.dataKeys.decryptDataKeys({
        workspaceId: run.workspaceId,
        documentId: file.documentId,
        artifacts: [file.artifact],
      });
      const dek = r.keys[0]!.plaintext;
      try {
        if (r.keyId !== active || r.record.WrapFormat !== WrapFormats.AmkGcmV1) {
          return {
            keyId: r.keyId,
            problem: `its DEK is on ${r.keyId} (${r.record.WrapFormat}), not ${active}`,
          };
        }
        zeroize(decryptContent(dek, blob));
        return { keyId: r.keyId };
      } finally {
        zeroize(...r.keys.map((k) => k.plaintext));
      }
    });
  }

  private async checkArtifacts(
    run: RunState,
    check: (file: ArtifactFile, blob: Buffer) => Promise<{ keyId?: string; problem?: string }>,
  ): Promise<NonNullable<MigrationReport["artifactChecks"]>> {
    const dir = run.input.artifactsDir!;
    const { files, ignored } = await listArtifactFiles(dir);
    const sample = sampleFiles(files, Math.max(0, run.input.sampleSize ?? 20));
    const tracker = new ProgressTracker(sample.length);
    this.emit(run, "artifacts", tracker);
    const results: ArtifactCheck[] = [];
    for (const file of sample) {
      const base = { documentId: file.documentId, artifact: file.artifact, path: file.path };
      let outcome: { keyId?: string; problem?: string };
      try {
        const blob = await readArtifactFile(dir, file, run.input.maxArtifactBytes ?? 64 * 1024 * 1024);
        outcome = await check(file, blob);
      } catch (err) {
        outcome = { problem: describeError(err) };
      }
      results.push({ ...base, ok: !outcome.problem, ...outcome });
      if (outcome.problem && run.failures.length < MAX_LISTED_FAILURES) {
        run.failures.push({
          documentId: file.documentId,
          streamId: documentStreamId(run.workspaceId, file.documentId),
          artifact: file.artifact,
          reason: `artifact file ${file.path}: ${outcome.problem}`,
        });
      }
      tracker.add(1);
      this.emit(run, "artifacts", tracker);
    }
    if (files.length === 0) run.warnings.push(`no artifact files (*.enc) found in ${dir}`);
    const ok = results.filter((r) => r.ok).length;
    return {
      files: files.length,
      ignored,
      checked: results.length,
      ok,
      failed: results.length - ok,
      results,
    };
  }

  // ---- report ------------------------------------------------------------------------------------------------

  private emit(run: RunState, phase: MigrationPhase, tracker: ProgressTracker): void {
    run.input.onProgress?.({ phase, ...tracker.snapshot() });
  }

  private async finish(
    run: RunState,
    backup: ArquivoMateBackup,
    kcv: string,
    started: number,
    extra: {
      existing?: WorkspaceState;
      census?: MigrationReport["census"];
      artifactChecks?: MigrationReport["artifactChecks"];
    },
  ): Promise<MigrationResult> {
    const dryRun = run.input.dryRun ?? false;
    const ws = extra.existing ?? (await readWorkspace(this.deps.events, run.workspaceId));
    const mk1 = ws.keys.find((k) => k.keyId === run.legacyKeyId);
    const kit = ws.kits.at(-1);
    const census = extra.census;
    const kitKeys = kit?.masterKeys.map((m) => m.keyId) ?? [];
    const proven =
      !dryRun &&
      census !== undefined &&
      census.remaining === 0 &&
      census.sampleMismatches.length === 0 &&
      (mk1?.state === "retired" || mk1?.state === "destroyed") &&
      ws.activeKeyId !== undefined &&
      kitKeys.includes(ws.activeKeyId) &&
      !kitKeys.includes(run.legacyKeyId);
    const failed = run.failures.length > 0;
    const ok = dryRun ? !failed : proven && !failed;
    const deks = backup.artifacts;
    let conclusion: string;
    if (dryRun) {
      conclusion = failed
        ? `dry run: the backup and the legacy key are fine, but ${run.failures.length} artifact check(s) failed (see failures); nothing was written.`
        : `dry run: the backup is intact and the legacy key (KCV ${kcv}) unwraps all ${deks} DEKs of ${backup.documents.length} documents; nothing was written. Run again without --dry-run to migrate.`;
    } else if (ok) {
      conclusion = `${backup.documents.length} documents (${deks} DEKs) are wrapped under ${ws.activeKeyId} and the census finds 0 records on ${run.legacyKeyId}, which is retired: the legacy key is no longer needed; retire it from configuration.`;
    } else if (failed) {
      conclusion = `${run.failures.length} problem(s) (see failures): keep the legacy key until they are resolved.`;
    } else {
      conclusion = `the census could not prove that nothing depends on ${run.legacyKeyId} (see census): keep the legacy key and run the migration again.`;
    }
    const report: MigrationReport = {
      workspaceId: run.workspaceId,
      dryRun,
      ok,
      backup: {
        shape: backup.shape,
        sha256: backup.sha256,
        items: backup.itemCount,
        superseded: backup.superseded,
        ...(backup.exportedAtUtc ? { exportedAtUtc: backup.exportedAtUtc } : {}),
        ...(backup.fromSequence !== undefined ? { fromSequence: backup.fromSequence } : {}),
        ...(backup.toSequence !== undefined ? { toSequence: backup.toSequence } : {}),
      },
      documents: backup.documents.length,
      artifacts: deks,
      deksVerified: deks,
      legacyKey: { keyId: run.legacyKeyId, kcv, ...(mk1 ? { state: mk1.state } : {}) },
      records: run.records,
      rewrapped: run.rewrapped,
      ...(ws.activeKeyId ? { activeKeyId: ws.activeKeyId } : {}),
      ...(kit ? { kit: { version: kit.kitVersion, fingerprint: kit.fingerprint, masterKeys: kitKeys } } : {}),
      ...(census ? { census } : {}),
      ...(extra.artifactChecks ? { artifactChecks: extra.artifactChecks } : {}),
      failures: run.failures,
      warnings: run.warnings,
      phases: run.phases,
      totalMs: Math.round(performance.now() - started),
      legacyKeyNoLongerNeeded: !dryRun && ok,
      conclusion,
    };
    return { report, enrollments: run.enrollments };
  }
}

function describeError(err: unknown): string {
  if (err instanceof ContentIntegrityError) return `content check failed: ${err.message}`;
  if (err instanceof AmkError) return `${err.name}: ${err.message}`;
  if (err instanceof RangeError) return err.message;
  return `${(err as Error)?.name ?? "Error"}: ${String((err as Error)?.message ?? err).slice(0, 200)}`;
}
