/**
 * The restoration test: proves that the latest backup of a workspace, with the recovery kit, really gives back the
 * documents' keys. It restores the backup (verified first) into a scratch event store, opens the current kit
 * through its drill slot into scratch master keys inside the HSM, decrypts the canaries and a random sample of
 * documents using only the restored records and the scratch keys, compares content hashes, then destroys the
 * scratch store and the scratch keys. The result is one `RestorationTestCompleted` in the workspace stream; a
 * failure raises one alert naming the failed checks and what to do. Nothing else is written to the live store.
 *
 * Checks: backup-integrity, restore, keys-recovered, kit-coverage, canaries, sample, cleanup.
 */
import { randomUUID } from "node:crypto";
import type { Alerts } from "../alerts/alerts.js";
import { checkTrustedKeys, loadManifest, verifyBackup } from "../backup/verify.js";
import { importBackup } from "../backup/import.js";
import type { BackupTarget } from "../backup/ports.js";
import type { BackupPublicKey } from "../backup/signing.js";
import type { BackupStorage } from "../backup/storage.js";
import {
  EventTypes,
  type DocumentEncryptionKeysAddedData,
  type DrillCheckResult,
  type RestorationTestCompletedData,
} from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent } from "../eventstore/events.js";
import { currentWrapRecord } from "../eventstore/projection.js";
import { documentStreamId, workspaceStreamId } from "../eventstore/stream-id.js";
import type { KitService } from "../kit/kit-service.js";
import type { KeyStore } from "../keystore/key-store.js";
import { InvalidInputError } from "../shared/errors.js";
import { uuidFromName } from "../shared/ids.js";
import { readWorkspace } from "../workspaces/workspace.js";
import { decryptDocumentsWithScratchKeys, openKitIntoScratchKeys } from "./scratch-keys.js";

/** A scratch event store for one test: created empty, dropped afterwards (DynamoDB: a table of its own). */
export interface ScratchStores {
  create(): Promise<{ readonly name: string; readonly store: EventStore & BackupTarget }>;
  drop(name: string): Promise<void>;
}

export interface RestorationTestDeps {
  readonly keyStore: KeyStore;
  /** The live event store (candidates for the sample, and where the result is recorded). */
  readonly events: EventStore;
  readonly kits: KitService;
  readonly storage: BackupStorage;
  /** The pinned public keys a backup manifest must be signed with. */
  readonly trustedKeys: () => Promise<readonly BackupPublicKey[]>;
  readonly scratch: ScratchStores;
  readonly alerts: Alerts;
  readonly now?: () => Date;
  readonly random?: () => number;
}

export interface RestorationTestOptions {
  readonly trigger: "schedule" | "on-demand";
  /** Default: the newest backup whose scope covers the workspace. */
  readonly backupId?: string;
  /** Documents sampled besides the canaries (default 20; `Infinity` = every document of the backup). */
  readonly sampleSize?: number;
}

export interface RestorationTestResult {
  readonly testId: string;
  readonly ok: boolean;
  readonly backupId: string;
  readonly checks: readonly DrillCheckResult[];
  readonly documentsRestored: number;
  readonly documentsDecrypted: number;
  readonly durationMs: number;
}

const ACTIONS: Record<string, string> = {
  "backup-integrity":
    "The backup is missing, unreadable or altered: check the backup bucket and the export schedule, export a new full backup, and find out what changed the old one.",
  restore:
    "The verified backup could not be written into a scratch store: check the scratch table permissions and capacity, then run the restoration test again.",
  "keys-recovered":
    "The kit's master keys do not come back through its drill slot: run a drill, re-issue the kit, and keep the current HSM keys until a restoration test passes.",
  "kit-coverage":
    "The backup uses a master key version the current kit does not carry: keep that version (do not destroy it), or re-issue a kit covering it; older backups need the keys they were written under.",
  canaries:
    "Canary documents do not decrypt from the backup: the backup or the keys are not what was recorded; investigate before relying on this backup.",
  sample:
    "Sampled documents have no usable wrap record in the backup: the backup is incomplete; export a new full backup and check the exporter.",
  cleanup:
    "Scratch objects were left behind: delete the scratch table and restart the function's HSM sessions.",
};

export class RestorationTestService {
  private readonly now: () => Date;
  private readonly random: () => number;

  constructor(private readonly deps: RestorationTestDeps) {
    this.now = deps.now ?? (() => new Date());
    this.random = deps.random ?? Math.random;
  }

  async run(workspaceId: string, options: RestorationTestOptions): Promise<RestorationTestResult> {
    if (options.trigger !== "schedule" && options.trigger !== "on-demand")
      throw new InvalidInputError("trigger must be schedule or on-demand");
    const sampleSize = options.sampleSize ?? 20;
    if (!(sampleSize === Number.POSITIVE_INFINITY || (Number.isInteger(sampleSize) && sampleSize >= 0)))
      throw new InvalidInputError("sampleSize must be a whole number of documents");
    const live = await readWorkspace(this.deps.events, workspaceId);
    if (!live.activeKeyId) throw new InvalidInputError(`workspace ${workspaceId} has no master key`);

    const testId = randomUUID();
    const startedAt = this.now();
    const t0 = performance.now();
    const checks: DrillCheckResult[] = [];
    const pass = (name: string, detail: string) =>
      checks.push({ Name: name, Status: "passed", Detail: detail });
    const fail = (name: string, detail: string) =>
      checks.push({
        Name: name,
        Status: "failed",
        Detail: detail.slice(0, 1000),
        Action: ACTIONS[name] ?? "",
      });
    const skip = (name: string, why: string) => checks.push({ Name: name, Status: "skipped", Detail: why });
    const errorText = (err: unknown) => `${(err as Error).name}: ${(err as Error).message}`;

    let backupId = options.backupId ?? "";
    let manifestSha256 = "";
    let exportedAt = "";
    let documentsRestored = 0;
    let documentsDecrypted = 0;
    let scratch: { name: string; store: EventStore & BackupTarget } | undefined;
    let keys: Awaited<ReturnType<typeof openKitIntoScratchKeys>> | undefined;
    const trusted = await this.deps.trustedKeys();

    try {
      // 1. backup-integrity
      try {
        backupId ||= await this.latestBackup(workspaceId, checkTrustedKeys(trusted));
        const verified = await verifyBackup({ storage: this.deps.storage, backupId, trustedKeys: trusted });
        manifestSha256 = verified.manifestSha256;
        // Documents keyed before the export began must be in it (heads are read from then on).
        exportedAt = (await loadManifest(this.deps.storage, backupId, checkTrustedKeys(trusted))).manifest
          .startedAt;
        pass(
          "backup-integrity",
          `backup ${backupId} (${verified.kind}, ${verified.chain.length} link(s), exported ${verified.exportedAt}): ${verified.events} events in ${verified.streams} streams, signature and checksums valid`,
        );
      } catch (err) {
        fail("backup-integrity", backupId ? `backup ${backupId}: ${errorText(err)}` : errorText(err));
      }

      // 2. restore
      if (manifestSha256) {
        try {
          scratch = await this.deps.scratch.create();
          const restored = await importBackup({
            storage: this.deps.storage,
            backupId,
            target: scratch.store,
            trustedKeys: trusted,
          });
          documentsRestored = Math.max(0, restored.streams - 1);
          pass(
            "restore",
            `${restored.events} events in ${restored.streams} streams into scratch store ${scratch.name}`,
          );
        } catch (err) {
          fail("restore", errorText(err));
        }
      } else skip("restore", "no verified backup");

      const restoredOk = checks.at(-1)?.Name === "restore" && checks.at(-1)?.Status === "passed";
      // 3. keys-recovered (and a KCV cross-check with the restored MasterKeyCreated records)
      if (restoredOk && scratch) {
        try {
          const kit = await this.deps.kits.currentKit(workspaceId);
          keys = await openKitIntoScratchKeys(this.deps.keyStore, kit);
          const restoredWs = await readWorkspace(scratch.store, workspaceId);
          const mismatch = [...keys.kcvs.entries()].filter(([keyId, kcv]) => {
            const recorded = restoredWs.keys.find((k) => k.keyId === keyId);
            return recorded !== undefined && recorded.kcv !== kcv;
          });
          if (mismatch.length > 0) {
            fail(
              "keys-recovered",
              `KCVs differ from the backup's records: ${mismatch.map(([k, v]) => `${k} kit ${v}`).join(", ")}`,
            );
          } else {
            pass(
              "keys-recovered",
              `kit v${kit.header.kitVersion}: ${[...keys.kcvs.entries()].map(([k, v]) => `${k} (KCV ${v})`).join(", ")} unwrapped inside the HSM through the drill slot`,
            );
          }
        } catch (err) {
          fail("keys-recovered", errorText(err));
        }
      } else skip("keys-recovered", "nothing restored");

      const keysOk = keys !== undefined && checks.at(-1)?.Status === "passed";
      // 4. kit-coverage
      if (keysOk && scratch && keys) {
        const inUse = await scratch.store.listKeyIdsInUse(workspaceId);
        const missing = inUse.filter((k) => !(keys!.keys as ReadonlyMap<string, unknown>).has(k));
        if (missing.length > 0) {
          const counts = await Promise.all(
            missing.map((k) => scratch!.store.countDocumentsByKeyId(workspaceId, k)),
          );
          fail(
            "kit-coverage",
            `the backup's records use ${missing.map((k, i) => `${k} (${counts[i]} document(s))`).join(", ")}, which the current kit does not carry`,
          );
        } else
          pass("kit-coverage", `every version the backup uses (${inUse.join(", ") || "none"}) is in the kit`);
      } else skip("kit-coverage", "no scratch keys");

      // 5. canaries, 6. sample
      if (keysOk && scratch && keys) {
        const canaries = await decryptDocumentsWithScratchKeys({
          keyStore: this.deps.keyStore,
          events: scratch.store,
          workspaceId,
          keys: keys.keys,
          documents: "canaries",
        });
        const bad = canaries.filter((c) => !c.ok);
        if (canaries.length === 0) fail("canaries", "the backup holds no canary documents");
        else if (bad.length > 0)
          fail(
            "canaries",
            bad.map((b) => `${b.documentId}: ${b.reason ?? "failed"} (${b.problem ?? ""})`).join("; "),
          );
        else
          pass("canaries", `${canaries.length} canary document(s) decrypt to their recorded content hashes`);
        documentsDecrypted += canaries.filter((c) => c.ok).length;

        const sample = await this.sampleDocuments(
          workspaceId,
          exportedAt,
          sampleSize,
          live.canaries.map((c) => c.documentId),
        );
        if (sample.length === 0) pass("sample", "no documents older than the backup to sample");
        else {
          const results = await decryptDocumentsWithScratchKeys({
            keyStore: this.deps.keyStore,
            events: scratch.store,
            workspaceId,
            keys: keys.keys,
            documents: sample,
          });
          const failed = results.filter((r) => !r.ok);
          documentsDecrypted += results.length - failed.length;
          if (failed.length > 0) {
            fail(
              "sample",
              `${failed.length} of ${results.length} sampled document(s) failed: ` +
                failed
                  .slice(0, 10)
                  .map((f) => `${f.documentId}: ${f.reason ?? "failed"}`)
                  .join("; "),
            );
          } else
            pass(
              "sample",
              `${results.length} sampled document(s) decrypt with the restored records and the kit`,
            );
        }
      } else {
        skip("canaries", "no scratch keys");
        skip("sample", "no scratch keys");
      }
    } finally {
      // 7. cleanup: always
      const problems: string[] = [];
      if (keys) await keys.close().catch((err: unknown) => problems.push(errorText(err)));
      if (scratch)
        await this.deps.scratch.drop(scratch.name).catch((err: unknown) => problems.push(errorText(err)));
      if (problems.length > 0) fail("cleanup", problems.join("; "));
      else
        pass("cleanup", `${scratch ? `scratch store ${scratch.name} dropped; ` : ""}scratch keys destroyed`);
    }

    const ok = checks.every((c) => c.Status !== "failed");
    const durationMs = Math.round(performance.now() - t0);
    const data: RestorationTestCompletedData = {
      WorkspaceId: workspaceId,
      TestId: testId,
      BackupId: backupId || "(none)",
      ManifestSha256: manifestSha256,
      Ok: ok,
      Trigger: options.trigger,
      Checks: checks,
      DocumentsRestored: documentsRestored,
      DocumentsDecrypted: documentsDecrypted,
      StartedAt: startedAt.toISOString(),
      DurationMs: durationMs,
    };
    await this.record(workspaceId, data);
    if (!ok) {
      const failed = checks.filter((c) => c.Status === "failed");
      await this.deps.alerts.raise({
        code: "RESTORATION_TEST_FAILED",
        severity: "critical",
        workspaceId,
        message: `restoration test ${testId} of backup ${data.BackupId} failed: ${failed.map((c) => `${c.Name} (${c.Detail.slice(0, 200)})`).join("; ")}`,
        action: failed.map((c) => c.Action).join(" "),
        context: { testId, backupId: data.BackupId, failed: failed.map((c) => c.Name) },
      });
    }
    return { testId, ok, backupId: data.BackupId, checks, documentsRestored, documentsDecrypted, durationMs };
  }

  /** The newest backup (ids are time-ordered UUIDv7) whose scope is the workspace or the whole table. */
  private async latestBackup(
    workspaceId: string,
    trusted: ReadonlyMap<string, BackupPublicKey>,
  ): Promise<string> {
    const manifests = (await this.deps.storage.list(""))
      .map((b) => b.name)
      .filter((n) => n.endsWith("/manifest.json"))
      .map((n) => n.slice(0, -"/manifest.json".length))
      .sort()
      .reverse();
    for (const id of manifests) {
      const { manifest } = await loadManifest(this.deps.storage, id, trusted);
      const scope = manifest.scope;
      if (scope.kind === "table" || (scope.kind === "workspace" && scope.workspaceId === workspaceId))
        return id;
    }
    throw new InvalidInputError(`no backup of workspace ${workspaceId} in ${this.deps.storage.location}`);
  }

  /**
   * A random sample of the live workspace's documents that had keys when the backup was exported (their first wrap
   * record was recorded before it): each must have a usable wrap record in the backup. Canaries are checked apart.
   */
  private async sampleDocuments(
    workspaceId: string,
    exportedAt: string,
    size: number,
    canaries: readonly string[],
  ): Promise<string[]> {
    if (size === 0) return [];
    const cutoff = Date.parse(exportedAt);
    const ids: string[] = [];
    for (const keyId of await this.deps.events.listKeyIdsInUse(workspaceId)) {
      let cursor: string | undefined;
      do {
        const page = await this.deps.events.listDocumentsByKeyId(workspaceId, keyId, {
          limit: 1000,
          ...(cursor ? { cursor } : {}),
        });
        for (const d of page.documents)
          if (d.status !== "deleted" && !canaries.includes(d.documentId)) ids.push(d.documentId);
        cursor = page.cursor;
      } while (cursor);
    }
    // Fisher-Yates on a copy, then keep those that existed at export time (reading only what is needed).
    for (let i = ids.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [ids[i], ids[j]] = [ids[j]!, ids[i]!];
    }
    const out: string[] = [];
    for (const id of ids) {
      if (out.length >= size) break;
      const { events } = await this.deps.events.readStream(documentStreamId(workspaceId, id));
      const first = events.find((e) => e.type === EventTypes.DocumentEncryptionKeysAdded);
      if (first && Date.parse(first.recordedAt) <= cutoff && currentWrapRecord(events)) {
        const data = first.data as DocumentEncryptionKeysAddedData;
        if (data.Artifacts.length > 0) out.push(id);
      }
    }
    return out;
  }

  private async record(workspaceId: string, data: RestorationTestCompletedData): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const ws = await readWorkspace(this.deps.events, workspaceId);
      try {
        await this.deps.events.appendToStream(
          workspaceStreamId(workspaceId),
          [
            newEvent(EventTypes.RestorationTestCompleted, data, {
              eventId: uuidFromName("RestorationTestCompleted", workspaceId, data.TestId),
              occurredAt: this.now(),
            }),
          ],
          { expectedVersion: ws.version },
        );
        return;
      } catch (err) {
        if (!(err instanceof ExpectedVersionConflictError) || attempt >= 5) throw err;
      }
    }
  }
}
