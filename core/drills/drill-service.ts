/**
 * The drill: proves, daily or on demand, that a workspace's recovery kit and keys really recover its data. Seven
 * checks, in this order, each recorded with what was found and what an administrator should do when it failed:
 *
 *  1. `kit-in-vault`     the current kit is in the vault, parses, and is the kit `KitIssued` recorded (fingerprint);
 *  2. `kit-coverage`     the kit carries every master key version a wrap record uses and every live version;
 *  3. `drill-slot`       the kit opens inside the HSM through its drill slot, and every master key in it has the
 *                        kit's KCV when unwrapped there and equals the live key's KCV;
 *  4. `canaries`         every canary document decrypts end to end to its recorded SHA-256;
 *  5. `sample`           a random sample of documents on the versions in use decrypt (every artifact's DEK);
 *  6. `hsm-backups`      the CloudHSM cluster has fresh backups (and a copy in the second region);
 *  7. `acknowledgements` every administrator acknowledged the current kit recently.
 *
 * An unexpected error inside a check is that check's failure (name and message); it never stops the drill. The
 * result is one `DrillCompleted` event in the workspace stream, appended at the version read (a lost race re-reads
 * and retries), and, when a check failed, one critical `DRILL_FAILED` alert. A drill writes nothing else: no key is
 * created or changed, no other record appended. Results carry ids, counts, KCVs and error names, never key material;
 * every plaintext DEK of the sample is zeroized as soon as it was unwrapped.
 */
import { randomUUID } from "node:crypto";
import type { Alerts } from "../alerts/alerts.js";
import {
  ConcurrentUpdateError,
  DocumentDeletedError,
  WorkspaceNotProvisionedError,
} from "../datakeys/errors.js";
import type { DataKeyService } from "../datakeys/data-keys.js";
import {
  EventTypes,
  type DocumentEncryptionKeysAddedData,
  type DrillCheckResult,
  type DrillCompletedData,
} from "../eventstore/catalogue.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { MAX_PAGE_SIZE, type EventStore } from "../eventstore/event-store.js";
import { newEvent, type StoredEvent } from "../eventstore/events.js";
import type { DocumentProjection } from "../eventstore/projection.js";
import { assertValidWorkspaceId, documentStreamId, workspaceStreamId } from "../eventstore/stream-id.js";
import { KitError } from "../kit/errors.js";
import { DEFAULT_ACK_MAX_AGE_DAYS, type DrillCheck, type KitService } from "../kit/kit-service.js";
import { parseKeyId } from "../keystore/key-id.js";
import type { KeyStore } from "../keystore/key-store.js";
import { retryTransient } from "../shared/retry.js";
import { zeroize } from "../shared/bytes.js";
import { mapLimit } from "../shared/concurrency.js";
import { InvalidInputError } from "../shared/errors.js";
import { uuidFromName } from "../shared/ids.js";
import { SecretNotFoundError, SecretVersionNotFoundError, VaultError } from "../vault/errors.js";
import { verifyCanaries } from "../canaries/canaries.js";
import {
  isLiveKeyState,
  readWorkspace,
  type KitRecord,
  type WorkspaceState,
} from "../workspaces/workspace.js";
import { assessHsmBackups, type HsmBackupPolicy, type HsmBackupSource } from "./hsm-backups.js";

export const DEFAULT_SAMPLE_SIZE = 20;
export const MAX_SAMPLE_SIZE = 1000;
/** Appends of the result retried after losing a race on the workspace stream. */
const MAX_RECORD_ATTEMPTS = 5;
/** Sample documents decrypted at once. */
const SAMPLE_CONCURRENCY = 4;
/** Longest `Detail` / `Action` kept in the event (the whole event stays far below the store's 64 KiB). */
const MAX_TEXT = 2000;
const RUNBOOK = "docs/runbooks/drills.md";

export const DrillCheckNames = [
  "kit-in-vault",
  "kit-coverage",
  "drill-slot",
  "canaries",
  "sample",
  "hsm-backups",
  "acknowledgements",
] as const;
export type DrillCheckName = (typeof DrillCheckNames)[number];

export type DrillTrigger = DrillCompletedData["Trigger"];

export interface DrillServiceDeps {
  readonly keyStore: KeyStore;
  readonly events: EventStore;
  readonly kits: KitService;
  readonly dataKeys: DataKeyService;
  readonly alerts: Alerts;
  /** The CloudHSM cluster's backups and the rule they must meet; without it (local mode) the check is skipped. */
  readonly hsmBackups?: { readonly source: HsmBackupSource; readonly policy: HsmBackupPolicy };
  readonly now?: () => Date;
  /** Uniform in [0, 1): picks the sample (default `Math.random`). */
  readonly random?: () => number;
}

export interface RunDrillOptions {
  readonly trigger: DrillTrigger;
  /** Documents decrypted by the `sample` check, 1..1000 (default 20). */
  readonly sampleSize?: number;
  /** An acknowledgement older than this many days is stale (default `DEFAULT_ACK_MAX_AGE_DAYS`). */
  readonly ackMaxAgeDays?: number;
}

export interface DrillResult {
  readonly drillId: string;
  readonly ok: boolean;
  readonly checks: DrillCheckResult[];
  readonly durationMs: number;
}

export type StoredDrillCompleted = StoredEvent<"DrillCompleted", DrillCompletedData>;

/** What one check found. */
interface Outcome {
  readonly status: DrillCheckResult["Status"];
  readonly detail: string;
  readonly action?: string;
}

/** A call made once and shared by the checks that need it; its error is each such check's failure. */
type Settled<T> = { readonly value: T } | { readonly error: unknown };

export class DrillService {
  private readonly now: () => Date;
  private readonly random: () => number;

  constructor(private readonly deps: DrillServiceDeps) {
    this.now = deps.now ?? (() => new Date());
    this.random = deps.random ?? Math.random;
  }

  /**
   * Runs every check, records one `DrillCompleted` and alerts once when a check failed. Throws only for bad input,
   * an unprovisioned workspace, when the result cannot be recorded (the store's error, or `ConcurrentUpdateError`
   * after 5 lost races; a failed drill still raises its alert first, saying the result is unrecorded), or when the
   * alert cannot be raised.
   */
  async runDrill(workspaceId: string, options: RunDrillOptions): Promise<DrillResult> {
    assertValidWorkspaceId(workspaceId);
    const sampleSize = options.sampleSize ?? DEFAULT_SAMPLE_SIZE;
    if (!Number.isInteger(sampleSize) || sampleSize < 1 || sampleSize > MAX_SAMPLE_SIZE) {
      throw new InvalidInputError(`sampleSize must be an integer from 1 to ${MAX_SAMPLE_SIZE}`, {
        context: { sampleSize },
      });
    }
    const ackMaxAgeDays = options.ackMaxAgeDays ?? DEFAULT_ACK_MAX_AGE_DAYS;
    if (!Number.isFinite(ackMaxAgeDays) || ackMaxAgeDays <= 0) {
      throw new InvalidInputError("ackMaxAgeDays must be a positive number of days", {
        context: { ackMaxAgeDays },
      });
    }
    if (options.trigger !== "schedule" && options.trigger !== "on-demand") {
      throw new InvalidInputError("trigger must be schedule or on-demand");
    }

    const drillId = randomUUID();
    const startedAt = this.now();
    const started = performance.now();
    // The versions in use are read before and after the workspace: only a version in use at both moments is
    // certain to be known to the workspace state read in between, and not retired by a rotation meanwhile (a
    // version first used after the read, or retired before it, is no coverage gap: kit-coverage would raise a
    // false alarm while a rotation runs).
    const inUseBefore = await retryTransient(() => this.deps.events.listKeyIdsInUse(workspaceId));
    const ws = await readWorkspace(this.deps.events, workspaceId);
    if (!ws.activeKeyId) {
      // Nothing to drill, and a DrillCompleted would create the workspace stream.
      throw new WorkspaceNotProvisionedError(`workspace ${workspaceId} has no master key; nothing to drill`, {
        context: { workspaceId },
      });
    }

    const inUse = once(() => this.deps.events.listKeyIdsInUse(workspaceId));
    const checks: DrillCheckResult[] = [];

    const kitCheck = await this.check("kit-in-vault", () => this.kitInVault(ws));
    checks.push(kitCheck);
    const kitOk = kitCheck.Status === "passed";
    const record = ws.kits.at(-1);
    const drill: Settled<DrillCheck> | undefined =
      kitOk && record
        ? await settle(() => retryTransient(() => this.deps.kits.drillCheckKit(workspaceId)))
        : undefined;
    const unreadable: Outcome = {
      status: "skipped",
      detail: "the kit could not be read from the vault (kit-in-vault)",
    };
    checks.push(
      await this.check("kit-coverage", async () =>
        kitOk && record
          ? this.kitCoverage(
              ws,
              record,
              (await inUse()).filter((k) => inUseBefore.includes(k)),
              drill,
            )
          : unreadable,
      ),
    );
    checks.push(
      await this.check("drill-slot", async () =>
        kitOk && record && drill ? this.drillSlot(ws, record, drill) : unreadable,
      ),
    );
    checks.push(await this.check("canaries", () => this.canaries(workspaceId)));
    checks.push(await this.check("sample", async () => this.sample(ws, await inUse(), sampleSize)));
    checks.push(await this.check("hsm-backups", () => this.hsmBackups()));
    checks.push(
      await this.check("acknowledgements", () => this.acknowledgements(workspaceId, ackMaxAgeDays)),
    );

    const ok = checks.every((c) => c.Status !== "failed");
    const durationMs = Math.round(performance.now() - started);
    const data: DrillCompletedData = {
      WorkspaceId: workspaceId,
      DrillId: drillId,
      Ok: ok,
      Trigger: options.trigger,
      Checks: checks,
      StartedAt: startedAt.toISOString(),
      DurationMs: durationMs,
    };
    let recordError: unknown;
    try {
      await this.record(workspaceId, data);
    } catch (err) {
      recordError = err;
    }
    if (!ok) await this.alert(workspaceId, drillId, checks, recordError);
    if (recordError !== undefined) throw recordError;
    return { drillId, ok, checks, durationMs };
  }

  // ---- the checks ----------------------------------------------------------------------------------------------

  private async kitInVault(ws: WorkspaceState): Promise<Outcome> {
    const record = ws.kits.at(-1);
    if (!record) {
      return {
        status: "failed",
        detail: `no kit was ever issued for workspace ${ws.workspaceId}`,
        action: `Issue the workspace's first recovery kit and have every administrator acknowledge it (${RUNBOOK}, "kit-in-vault").`,
      };
    }
    try {
      const kit = await this.deps.kits.currentKit(ws.workspaceId, ws);
      return {
        status: "passed",
        detail:
          `kit v${kit.header.kitVersion} (fingerprint ${kit.fingerprint}) read from the vault; it is the kit ` +
          `recorded by KitIssued (vault version ${record.vaultVersionId}, issued ${record.issuedAt})`,
      };
    } catch (err) {
      let action: string;
      if (err instanceof SecretNotFoundError || err instanceof SecretVersionNotFoundError) {
        action =
          "The recovery kit is missing from the vault: restore it (a secret scheduled for deletion can be " +
          `restored; else put back the version ${record.vaultVersionId} recorded by KitIssued v${record.kitVersion}), ` +
          "or, if no copy survives, have the administrators enroll again and issue a new kit to them; find out " +
          `from the vault's audit log (CloudTrail) how it disappeared (${RUNBOOK}, "kit-in-vault").`;
      } else if (err instanceof KitError) {
        action =
          "The vault's current kit is not the one issued (changed, damaged or rolled back): do not rely on it; " +
          `make the recorded version ${record.vaultVersionId} (KitIssued v${record.kitVersion}) current again, run ` +
          "the drill again, then re-issue the kit and have every administrator acknowledge it; find out from the " +
          `vault's audit log (CloudTrail) who wrote the other version (${RUNBOOK}, "kit-in-vault").`;
      } else if (err instanceof VaultError) {
        action =
          "The vault could not be read: check the drill function's access to the vault (role, KMS key policy, " +
          `region) and run the drill again on demand (${RUNBOOK}, "kit-in-vault").`;
      } else {
        throw err;
      }
      return { status: "failed", detail: describeError(err), action };
    }
  }

  private kitCoverage(
    ws: WorkspaceState,
    record: KitRecord,
    inUse: readonly string[],
    drill: Settled<DrillCheck> | undefined,
  ): Outcome {
    const live = ws.keys
      .filter((k) => k.state === "active" || k.state === "decrypt-only")
      .map((k) => k.keyId);
    const required = [...new Set<string>([...inUse, ...live])].sort(byKeyVersion);
    // Covered = in the KitIssued record of the current kit and, when the drill slot opened that same kit version, in
    // the kit body itself. (A kit issued while the drill runs, by a rotation, is a newer body than the record read:
    // its coverage is that of another workspace state, so only the record counts then.)
    const inBody =
      drill && "value" in drill && drill.value.kitVersion === record.kitVersion
        ? new Set(drill.value.masterKeys.map((m) => m.keyId))
        : undefined;
    const missing = required.filter(
      (keyId) => !record.masterKeys.some((m) => m.keyId === keyId) || (inBody && !inBody.has(keyId)),
    );
    const describe = (keyId: string) => {
      const state = ws.keys.find((k) => k.keyId === keyId)?.state ?? "unknown to the workspace";
      return `${keyId} (${state}${inUse.includes(keyId) ? ", used by wrap records" : ""})`;
    };
    const checked = inBody
      ? "its KitIssued record and its body, opened inside the HSM"
      : "its KitIssued record";
    if (missing.length > 0) {
      return {
        status: "failed",
        detail:
          `kit v${record.kitVersion} (${checked}) lacks ${missing.map(describe).join(", ")}: documents wrapped ` +
          `under ${missing.length === 1 ? "it" : "them"} would be unrecoverable from the kit. It carries ` +
          `${record.masterKeys.map((m) => m.keyId).join(", ") || "no master key"}.`,
        action:
          "Re-issue the recovery kit now (it then carries every live master key version) and have every " +
          "administrator acknowledge the new version. If a rotation is running, it re-issues the kit when it " +
          `completes: check that it is not stuck (${RUNBOOK}, "kit-coverage").`,
      };
    }
    return {
      status: "passed",
      detail:
        `kit v${record.kitVersion} (${checked}) covers every master key version used by a wrap record ` +
        `(${inUse.join(", ") || "none"}) and every live version (${live.join(", ")})`,
    };
  }

  private async drillSlot(
    ws: WorkspaceState,
    record: KitRecord,
    drill: Settled<DrillCheck>,
  ): Promise<Outcome> {
    if ("error" in drill) {
      return {
        status: "failed",
        detail: `the kit does not open inside the HSM through its drill slot: ${describeError(drill.error)}`,
        action:
          "If the drill key is missing from the HSM, restore the HSM (cluster backup) first; otherwise re-issue " +
          "the kit (a new drill slot is written) and have every administrator acknowledge it. Until then the " +
          `administrators' copies are the only proof that the kit opens (${RUNBOOK}, "drill-slot").`,
      };
    }
    const check = drill.value;
    const problems: string[] = [];
    const lines: string[] = [];
    for (const m of check.masterKeys) {
      const key = ws.keys.find((k) => k.keyId === m.keyId);
      const isLive = key !== undefined && isLiveKeyState(key.state);
      const issued = record.masterKeys.find((r) => r.keyId === m.keyId)?.kcv;
      let live = m.liveKcv;
      if (live === undefined && isLive) {
        // drillCheckKit reads "absent" for a live key it could not read: find out why.
        live = await this.deps.keyStore
          .keyCheckValue(parseKeyId(m.keyId))
          .catch((err: unknown) => `(unreadable: ${errorName(err)})`);
      }
      const line =
        `${m.keyId}: kit KCV ${m.kitKcv}, unwrapped in the HSM ${m.hsmKcv || "(failed)"}, ` +
        `live key ${live ?? "(absent)"}` +
        (key ? `, recorded at creation ${key.kcv}` : "") +
        (issued !== undefined && issued !== m.kitKcv ? `, recorded at issuance ${issued}` : "");
      lines.push(line);
      const bad =
        !m.ok ||
        m.hsmKcv !== m.kitKcv ||
        (isLive && live !== m.kitKcv) ||
        (key !== undefined && key.kcv !== m.kitKcv) ||
        (issued !== undefined && issued !== m.kitKcv);
      if (bad) problems.push(line);
    }
    if (problems.length > 0) {
      return {
        status: "failed",
        detail: `kit v${check.kitVersion} opened through its drill slot; KCV mismatch: ${problems.join("; ")}`,
        action:
          "The HSM's key and the kit's key differ. Stop rotations and key destruction for this workspace. Do NOT " +
          "re-issue the kit from the HSM before finding out which key the wrap records need: if the live key is " +
          "the wrong one, the kit is the only copy of the right one; restore that key into the HSM (recovery " +
          "workflow, or the cluster backup). If the kit's blob is the damaged one (unwrapped KCV differs), " +
          `re-issue the kit (${RUNBOOK}, "drill-slot").`,
      };
    }
    return {
      status: "passed",
      detail:
        `kit v${check.kitVersion} (fingerprint ${check.fingerprint}) opened inside the HSM through its drill slot ` +
        `(${record.drillKeyId}); ${lines.join("; ")}`,
    };
  }

  private async canaries(workspaceId: string): Promise<Outcome> {
    const results = await verifyCanaries(
      { dataKeys: this.deps.dataKeys, events: this.deps.events },
      workspaceId,
    );
    if (results.length === 0) {
      return {
        status: "failed",
        detail: "no canary documents: nothing proves the whole chain (HSM key, wrap record, DEK, content)",
        action: `Create the workspace's canary documents (ensureCanaries) and run the drill again (${RUNBOOK}, "canaries").`,
      };
    }
    const failed = results.filter((r) => !r.ok);
    const byKey = countBy(results.map((r) => r.keyId ?? "(no record)"));
    if (failed.length > 0) {
      return {
        status: "failed",
        detail:
          `${failed.length} of ${results.length} canaries do not decrypt to their recorded content: ` +
          failed
            .map((r) => `${r.documentId}${r.keyId ? ` (${r.keyId})` : ""}: ${r.problem ?? "failed"}`)
            .join("; "),
        action:
          "Documents wrapped like these canaries may be unrecoverable. Look at the drill-slot and sample checks " +
          "of this drill, then at each failed canary's document stream (its last DocumentEncryptionKeysAdded): " +
          "a record appended by something other than the key service, or a master key that changed in the HSM. " +
          `Restore the right key, or re-create the canary if only its record was damaged (${RUNBOOK}, "canaries").`,
      };
    }
    return {
      status: "passed",
      detail: `${results.length} canaries decrypted to their recorded SHA-256 (${formatCounts(byKey)})`,
    };
  }

  private async sample(ws: WorkspaceState, inUse: readonly string[], size: number): Promise<Outcome> {
    const workspaceId = ws.workspaceId;
    const canaries = new Set(ws.canaries.map((c) => c.documentId));
    // Reservoir sampling (uniform over every document listed) plus one document per version in use, so that every
    // version that wraps documents is exercised.
    const overall: DocumentProjection[] = [];
    const perKey = new Map<string, DocumentProjection>();
    let seen = 0;
    for (const keyId of inUse) {
      let seenOfKey = 0;
      let cursor: string | undefined;
      do {
        const page = await this.deps.events.listDocumentsByKeyId(workspaceId, keyId, {
          limit: MAX_PAGE_SIZE,
          ...(cursor ? { cursor } : {}),
        });
        for (const d of page.documents) {
          if (canaries.has(d.documentId) || d.status === "deleted") continue;
          seen += 1;
          seenOfKey += 1;
          if (overall.length < size) overall.push(d);
          else {
            const j = Math.floor(this.random() * seen);
            if (j < size) overall[j] = d;
          }
          if (Math.floor(this.random() * seenOfKey) === 0) perKey.set(keyId, d);
        }
        cursor = page.cursor;
      } while (cursor);
    }
    if (seen === 0) {
      return { status: "skipped", detail: "the workspace has no documents besides its canaries" };
    }
    const chosen = new Map<string, DocumentProjection>();
    for (const d of perKey.values()) if (chosen.size < size) chosen.set(d.documentId, d);
    for (const d of overall) if (chosen.size < size) chosen.set(d.documentId, d);
    const sample = [...chosen.values()];

    // The artifacts of each document's current wrap record, read in one batch.
    const records = await this.deps.events.readEvents(
      sample.map((d) => ({
        streamId: documentStreamId(workspaceId, d.documentId),
        version: d.keysVersion ?? 0,
      })),
    );
    const results = await mapLimit(sample, SAMPLE_CONCURRENCY, async (d, i) => {
      const data = records[i]?.data as DocumentEncryptionKeysAddedData | undefined;
      const artifacts = Array.isArray(data?.Artifacts) ? data.Artifacts.map((a) => a.Artifact) : [];
      try {
        if (artifacts.length === 0) throw new Error("its current wrap record lists no artifact");
        // A busy HSM or store proves nothing about the document: retried before it counts as a failure.
        const r = await retryTransient(() =>
          this.deps.dataKeys.decryptDataKeys({
            workspaceId,
            documentId: d.documentId,
            artifacts,
          }),
        );
        zeroize(...r.keys.map((k) => k.plaintext));
        return { documentId: d.documentId, keyId: r.keyId as string, outcome: "ok" as const };
      } catch (err) {
        if (err instanceof DocumentDeletedError)
          return { documentId: d.documentId, keyId: d.keyId ?? "", outcome: "deleted" as const };
        return { documentId: d.documentId, keyId: d.keyId ?? "", outcome: "failed" as const, problem: err };
      }
    });
    const failed = results.filter((r) => r.outcome === "failed");
    const decrypted = results.filter((r) => r.outcome === "ok");
    const deleted = results.length - failed.length - decrypted.length;
    const tail = deleted > 0 ? `; ${deleted} deleted meanwhile` : "";
    if (failed.length > 0) {
      return {
        status: "failed",
        detail:
          `${failed.length} of ${results.length} sampled documents (of ${seen}) do not decrypt: ` +
          failed
            .slice(0, 10)
            .map((r) => `${r.documentId} (${r.keyId}): ${describeError(r.problem)}`)
            .join("; ") +
          (failed.length > 10 ? `; and ${failed.length - 10} more` : "") +
          tail,
        action:
          "Documents whose DEKs no longer unwrap are unrecoverable until the right master key is back. Look at " +
          "the drill-slot check (a key that changed in the HSM) and at the failed documents' last " +
          "DocumentEncryptionKeysAdded; restore the key from the kit or the cluster backup before anything is " +
          `rotated or destroyed (${RUNBOOK}, "sample").`,
      };
    }
    return {
      status: "passed",
      detail:
        `${decrypted.length} sampled documents of ${seen} decrypted (every artifact's DEK unwrapped in the HSM; ` +
        `${formatCounts(countBy(decrypted.map((r) => r.keyId)))})${tail}`,
    };
  }

  private async hsmBackups(): Promise<Outcome> {
    const cfg = this.deps.hsmBackups;
    if (!cfg) return { status: "skipped", detail: "local mode: no CloudHSM cluster" };
    const backups = await cfg.source.listBackups(cfg.policy.clusterId);
    const a = assessHsmBackups(backups, cfg.policy, this.now());
    return a.ok
      ? { status: "passed", detail: a.detail }
      : {
          status: "failed",
          detail: a.detail,
          action:
            (a.action ? `${a.action} ` : "") +
            `Check the CloudHSM cluster's backups and the copy to the second region (${RUNBOOK}, "hsm-backups").`,
        };
  }

  private async acknowledgements(workspaceId: string, maxAgeDays: number): Promise<Outcome> {
    const inv = await this.deps.kits.inventory(workspaceId, { maxAgeDays });
    if (inv.administrators.length === 0) {
      return {
        status: "failed",
        detail: "no administrator is enrolled: nobody can open the kit",
        action: `Enroll at least one administrator and re-issue the kit to them (${RUNBOOK}, "acknowledgements").`,
      };
    }
    const describe = (a: (typeof inv.administrators)[number]) =>
      `${a.adminId}: ${a.status}` +
      (a.lastAcknowledgedAt
        ? ` (last acknowledged v${a.lastAcknowledgedVersion} at ${a.lastAcknowledgedAt})`
        : "");
    const notOk = inv.administrators.filter((a) => a.status !== "ok");
    if (notOk.length > 0) {
      return {
        status: "failed",
        detail:
          `kit v${inv.currentKitVersion ?? "-"}, acknowledgements older than ${maxAgeDays} days are stale: ` +
          notOk.map(describe).join("; "),
        action:
          "Each administrator named here opens the current kit with passphrase and second factor and " +
          "acknowledges it with the CLI (proving the kit opens); an administrator who can no longer open it, or " +
          `who left, is replaced and the kit re-issued (${RUNBOOK}, "acknowledgements").`,
      };
    }
    return {
      status: "passed",
      detail: `kit v${inv.currentKitVersion ?? "-"}: ${inv.administrators.map(describe).join("; ")}`,
    };
  }

  // ---- recording -----------------------------------------------------------------------------------------------

  /**
   * Runs one check; an unexpected error becomes its failure, never the drill's. A transient error (retryable: the
   * HSM, the store or the vault busy for a moment) runs the check again first (read-only), so that a drill does not
   * raise a critical alarm for a moment of load.
   */
  private async check(name: DrillCheckName, fn: () => Promise<Outcome> | Outcome): Promise<DrillCheckResult> {
    let outcome: Outcome;
    try {
      outcome = await retryTransient(async () => fn());
    } catch (err) {
      outcome = {
        status: "failed",
        detail: `the check stopped on an error: ${describeError(err)}`,
        action: `Look at the error, fix its cause (HSM, event store, vault access) and run the drill again on demand (${RUNBOOK}, "${name}").`,
      };
    }
    return {
      Name: name,
      Status: outcome.status,
      Detail: clip(outcome.detail),
      ...(outcome.status === "failed" && outcome.action ? { Action: clip(outcome.action) } : {}),
    };
  }

  /** Appends the one DrillCompleted at the version read; a lost race re-reads and tries again (5 attempts). */
  private async record(workspaceId: string, data: DrillCompletedData): Promise<void> {
    const eventId = uuidFromName("DrillCompleted", workspaceId, data.DrillId);
    let last: unknown;
    for (let attempt = 0; attempt < MAX_RECORD_ATTEMPTS; attempt++) {
      const { currentVersion } = await this.deps.events.readStream(workspaceStreamId(workspaceId), {
        limit: 1,
      });
      const event = newEvent(EventTypes.DrillCompleted, data, { eventId, occurredAt: this.now() });
      try {
        await this.deps.events.appendToStream(workspaceStreamId(workspaceId), [event], {
          expectedVersion: currentVersion ?? "no_stream",
        });
        return;
      } catch (err) {
        if (!(err instanceof ExpectedVersionConflictError)) throw err;
        last = err;
      }
    }
    throw new ConcurrentUpdateError(
      `the result of drill ${data.DrillId} could not be recorded: workspace ${workspaceId} kept changing`,
      { cause: last, context: { workspaceId, drillId: data.DrillId } },
    );
  }

  private async alert(
    workspaceId: string,
    drillId: string,
    checks: readonly DrillCheckResult[],
    recordError: unknown,
  ): Promise<void> {
    const failed = checks.filter((c) => c.Status === "failed");
    await this.deps.alerts.raise({
      code: "DRILL_FAILED",
      severity: "critical",
      workspaceId,
      message:
        `Drill ${drillId} of workspace ${workspaceId} failed: ` +
        failed.map((c) => `${c.Name} (${c.Detail.slice(0, 300)})`).join("; ") +
        (recordError !== undefined ? `; the result could not be recorded (${errorName(recordError)})` : ""),
      action: failed.map((c) => `${c.Name}: ${c.Action ?? "see the check's detail"}`).join(" | "),
      context: { drillId, failed: failed.map((c) => c.Name) },
    });
  }
}

/** The last `limit` DrillCompleted events of a workspace (1..1000, default 10), newest first. */
export async function drillHistory(
  events: EventStore,
  workspaceId: string,
  limit = 10,
): Promise<StoredDrillCompleted[]> {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
    throw new InvalidInputError(`limit must be an integer from 1 to ${MAX_PAGE_SIZE}`, {
      context: { limit },
    });
  }
  const found: StoredDrillCompleted[] = [];
  let cursor: string | undefined;
  do {
    const page = await events.readStream(workspaceStreamId(workspaceId), {
      limit: MAX_PAGE_SIZE,
      ...(cursor ? { cursor } : {}),
    });
    for (const e of page.events)
      if (e.type === EventTypes.DrillCompleted) found.push(e as StoredDrillCompleted);
    cursor = page.cursor;
  } while (cursor);
  return found.reverse().slice(0, limit);
}

// ---- helpers -----------------------------------------------------------------------------------------------------

function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

async function settle<T>(fn: () => Promise<T>): Promise<Settled<T>> {
  try {
    return { value: await fn() };
  } catch (error) {
    return { error };
  }
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}

/** Name and message of an error (domain messages carry ids only), without its cause or stack. */
function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`.slice(0, 400);
  return String(err).slice(0, 200);
}

function clip(text: string): string {
  return text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT - 1)}…`;
}

function countBy(keys: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
  return m;
}

function formatCounts(m: Map<string, number>): string {
  return [...m.entries()].map(([k, n]) => `${k}: ${n}`).join(", ");
}

function byKeyVersion(a: string, b: string): number {
  const v = (k: string) => Number(/\/mk\/(\d+)$/.exec(k)?.[1] ?? 0);
  return v(a) - v(b) || a.localeCompare(b);
}
