/**
 * The recovery workflow's use cases, one per step (workflows/recovery-workflow.ts):
 *
 * 1. `start`: the workspace exists, no other recovery holds the lock, the kit is in the vault and intact, and it
 *    covers every master key version that wrap records use; records `RecoveryStarted` (the lock). Re-running the
 *    same execution, or a new execution after a failure, resumes the same recovery.
 * 2. `awaitUnlock` records the task token the execution waits on; `unlock` (the unlock function, called by an
 *    administrator with passphrase and second factor) opens the kit, imports every master key version into the HSM
 *    with its KCV checked, records `RecoveryUnlocked` and hands back non-secret facts only (key ids, KCVs). Wrong
 *    passphrases and codes are counted by the unlock gate (lockout) and the execution keeps waiting.
 * 3. `rotate`: a fresh master key version becomes active (never one of the recovered versions); the re-wrap runs on
 *    the rotation engine's steps.
 * 4. `verify`: zero wrap records left on the recovered versions, every canary decrypts to its content hash, and a
 *    sample of documents unwraps.
 * 5. `invalidateTokens`: a new token epoch (`AccessTokensInvalidated`), published on the event bus.
 * 6. `complete`: the rotation completes (a new kit for the new master key is issued into the vault, the recovered
 *    versions are retired), then `RecoveryCompleted` with the timings.
 * Any failure: `recordFailure` records `RecoveryFailed` with the step and alerts; every old key stays as it was.
 */
import { randomUUID } from "node:crypto";
import type { Alerts } from "../alerts/alerts.js";
import type { EventBus } from "../bus/event-bus.js";
import { verifyCanaries } from "../canaries/canaries.js";
import type { DataKeyService } from "../datakeys/data-keys.js";
import {
  EventTypes,
  type AccessTokensInvalidatedData,
  type DocumentEncryptionKeysAddedData,
  type RecoveryAwaitingUnlockData,
  type RecoveryCompletedData,
  type RecoveryStartedData,
  type RecoveryUnlockedData,
} from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent, type StoredEvent } from "../eventstore/events.js";
import { currentWrapRecord } from "../eventstore/projection.js";
import { documentStreamId, workspaceStreamId } from "../eventstore/stream-id.js";
import type { FactorProof, KitService } from "../kit/kit-service.js";
import { KitIntegrityError } from "../kit/errors.js";
import type { KeyStore } from "../keystore/key-store.js";
import { parseKeyId } from "../keystore/key-id.js";
import type { RotationService } from "../rotation/rotation-service.js";
import { zeroize } from "../shared/bytes.js";
import { AmkError, InvalidInputError } from "../shared/errors.js";
import { backoffDelay, retryTransient, sleep, TRANSIENT_RETRY } from "../shared/retry.js";
import { uuidFromName } from "../shared/ids.js";
import { WorkspaceNotProvisionedError } from "../datakeys/errors.js";
import { readWorkspace, type RecoveryState, type WorkspaceState } from "../workspaces/workspace.js";
import { recordRecoveryFailure, type RecoveryFailureInput } from "./failure.js";
import {
  KitCoverageError,
  RecoveryInProgressError,
  RecoveryStateError,
  RecoveryVerificationError,
} from "./errors.js";

/** What invalidates a workspace's access tokens (core/access: a new token epoch). */
export interface TokenEpochs {
  invalidate(input: { workspaceId: string; reason: string; recoveryId?: string }): Promise<{ epoch: number }>;
}

export interface RecoveryDeps {
  readonly keyStore: KeyStore;
  readonly events: EventStore;
  readonly kits: KitService;
  readonly rotation: RotationService;
  readonly dataKeys: DataKeyService;
  readonly tokens: TokenEpochs;
  readonly bus: EventBus;
  readonly alerts: Alerts;
  readonly now?: () => Date;
}

export const RECOVERY_STEPS = [
  "validate",
  "await-unlock",
  "rotate",
  "rewrap",
  "census",
  "verify",
  "invalidate-tokens",
  "complete",
] as const;
export type RecoveryStep = (typeof RECOVERY_STEPS)[number];

export interface StartRecoveryInput {
  readonly workspaceId: string;
  /** The Step Functions execution name: the same name resumes, another one is a second recovery. */
  readonly executionName: string;
  readonly requestedBy: string;
  readonly reason: string;
  /** The kit to use, by vault version id; default: the current kit. */
  readonly kitVaultVersionId?: string;
}

export interface StartRecoveryResult {
  readonly workspaceId: string;
  readonly recoveryId: string;
  readonly kitVersion: number;
  readonly resumed: boolean;
  /** True when the kit was already opened and the HSM holds every recovered version (a resumed recovery). */
  readonly unlocked: boolean;
}

export interface UnlockInput {
  readonly workspaceId: string;
  readonly adminId: string;
  readonly passphrase: string;
  readonly factor: FactorProof;
  /** An uploaded kit (binary or armoured) instead of the vault's. */
  readonly kit?: Uint8Array | string;
}

/** Non-secret facts the execution resumes with. */
export interface UnlockFacts {
  readonly workspaceId: string;
  readonly recoveryId: string;
  readonly kitVersion: number;
  readonly masterKeys: readonly { readonly keyId: string; readonly kcv: string }[];
}

const RECOVERY_REASON = (recoveryId: string) => `recovery ${recoveryId}`;

export class RecoveryService {
  private readonly now: () => Date;

  constructor(private readonly deps: RecoveryDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  /** Step 1: validate and take the workspace's recovery lock. */
  async start(input: StartRecoveryInput): Promise<StartRecoveryResult> {
    checkText(input.executionName, "executionName", 80);
    checkText(input.requestedBy, "requestedBy", 200);
    checkText(input.reason, "reason", 500);
    const { workspaceId } = input;
    for (let attempt = 0; attempt < 5; attempt++) {
      const ws = await readWorkspace(this.deps.events, workspaceId);
      if (ws.keys.length === 0) {
        throw new WorkspaceNotProvisionedError(`workspace ${workspaceId} does not exist (no master key)`, {
          context: { workspaceId },
        });
      }
      const current = ws.recovery;
      if (current?.status === "running") {
        if (current.executionName !== input.executionName) {
          throw new RecoveryInProgressError(
            `recovery ${current.recoveryId} (execution ${current.executionName}) is already running for workspace ${workspaceId}`,
            { context: { workspaceId, recoveryId: current.recoveryId } },
          );
        }
        // The same execution again: its Validate task retried after a transient failure, maybe after it took the
        // lock and before it checked the kit. The checks are read-only: run them again, never skip them.
        if (!ws.kits.at(-1)) throw new KitCoverageError(`workspace ${workspaceId} has no recovery kit`);
        await this.checkKit(ws, input.kitVaultVersionId);
        return this.startResult(ws, current, true);
      }
      const resumed = current?.status === "failed";
      const recoveryId = resumed ? current.recoveryId : randomUUID();
      const issued = ws.kits.at(-1);
      const data: RecoveryStartedData = {
        WorkspaceId: workspaceId,
        RecoveryId: recoveryId,
        KitVersion: issued?.kitVersion ?? 0,
        KitFingerprint: issued?.fingerprint ?? "",
        RequestedBy: input.requestedBy,
        Reason: input.reason,
        ExecutionName: input.executionName,
        Resumed: resumed,
      };
      try {
        await this.append(ws, EventTypes.RecoveryStarted, data);
      } catch (err) {
        if (err instanceof ExpectedVersionConflictError) continue; // someone else moved: look again (the lock)
        throw err;
      }
      // The lock is ours: a kit that is missing, tampered or incomplete fails this step (RecoveryFailed).
      const after = await readWorkspace(this.deps.events, workspaceId);
      if (!issued) throw new KitCoverageError(`workspace ${workspaceId} has no recovery kit`);
      await this.checkKit(after, input.kitVaultVersionId);
      return this.startResult(after, after.recovery!, resumed);
    }
    throw new RecoveryInProgressError(`workspace ${workspaceId} kept changing while the recovery started`);
  }

  /** Step 2a: records the task token the execution waits on (the unlock function completes it). */
  async awaitUnlock(input: {
    workspaceId: string;
    recoveryId: string;
    taskToken: string;
    timeoutSeconds: number;
  }): Promise<void> {
    if (typeof input.taskToken !== "string" || input.taskToken.length === 0 || input.taskToken.length > 8192)
      throw new InvalidInputError("taskToken must be 1-8192 characters");
    for (let attempt = 0; attempt < 5; attempt++) {
      const ws = await readWorkspace(this.deps.events, input.workspaceId);
      const r = this.ownRecovery(ws, input.recoveryId);
      if (r.awaiting?.taskToken === input.taskToken) return;
      const data: RecoveryAwaitingUnlockData = {
        WorkspaceId: input.workspaceId,
        RecoveryId: input.recoveryId,
        TaskToken: input.taskToken,
        ExpiresAt: new Date(this.now().getTime() + input.timeoutSeconds * 1000).toISOString(),
      };
      try {
        await this.append(ws, EventTypes.RecoveryAwaitingUnlock, data);
        return;
      } catch (err) {
        if (!(err instanceof ExpectedVersionConflictError)) throw err;
      }
    }
    throw new RecoveryStateError(`workspace ${input.workspaceId} kept changing; the wait was not recorded`);
  }

  /**
   * Step 2b, the unlock function: opens the kit with passphrase + second factor, imports every master key version
   * into the HSM (KCV checked against the kit and against the workspace's records), records `RecoveryUnlocked`.
   * Returns the task token to complete and the non-secret facts. A wrong passphrase or code throws the kit's or the
   * factor's error (counted by the gate); nothing else changes and the execution keeps waiting.
   */
  async unlock(input: UnlockInput): Promise<{ taskToken: string | undefined; facts: UnlockFacts }> {
    const ws = await readWorkspace(this.deps.events, input.workspaceId);
    const r = ws.recovery;
    if (r?.status !== "running") {
      throw new RecoveryStateError(`no recovery is running for workspace ${input.workspaceId}`, {
        context: { workspaceId: input.workspaceId },
      });
    }
    if (!r.awaiting && !r.unlocked) {
      throw new RecoveryStateError(
        `recovery ${r.recoveryId} does not wait for an unlock yet; try again shortly`,
        {
          context: { workspaceId: input.workspaceId, recoveryId: r.recoveryId },
        },
      );
    }
    const recovered = await this.deps.kits.recoverMasterKeys(
      {
        workspaceId: input.workspaceId,
        adminId: input.adminId,
        passphrase: input.passphrase,
        factor: input.factor,
        ...(input.kit !== undefined ? { kit: input.kit } : {}),
      },
      this.deps.keyStore,
    );
    const masterKeys = recovered.masterKeys.map((m) => ({ keyId: m.keyId, kcv: m.kcv }));
    // From here on the administrator's code is used up: a transient failure must not cost them another one, so the
    // remaining reads and the record are retried (all idempotent).
    const fresh = await retryTransient(() => readWorkspace(this.deps.events, input.workspaceId));
    for (const m of masterKeys) {
      const recorded = fresh.keys.find((k) => k.keyId === m.keyId);
      if (recorded && recorded.kcv !== m.kcv) {
        throw new KitIntegrityError(
          `${m.keyId} from the kit has KCV ${m.kcv}, the workspace recorded ${recorded.kcv}`,
          "master-key",
        );
      }
    }
    await retryTransient(() =>
      this.assertCovers(
        fresh,
        masterKeys.map((m) => m.keyId),
        `kit v${recovered.kitVersion}`,
      ),
    );
    const data: RecoveryUnlockedData = {
      WorkspaceId: input.workspaceId,
      RecoveryId: r.recoveryId,
      AdminId: input.adminId,
      KitVersion: recovered.kitVersion,
      MasterKeys: masterKeys.map((m) => ({ KeyId: m.keyId, Kcv: m.kcv })),
    };
    let state = fresh;
    // One event id for every attempt: an append whose answer was lost is then a replay, never a second record.
    const eventId = randomUUID();
    for (let attempt = 0; ; attempt++) {
      try {
        await this.append(state, EventTypes.RecoveryUnlocked, data, eventId);
        break;
      } catch (err) {
        const transient = err instanceof AmkError && err.retryable;
        if (!(err instanceof ExpectedVersionConflictError || transient) || attempt >= 5) throw err;
        if (transient) await sleep(backoffDelay(TRANSIENT_RETRY, attempt + 1));
        state = await retryTransient(() => readWorkspace(this.deps.events, input.workspaceId));
      }
    }
    return {
      taskToken: r.awaiting?.taskToken,
      facts: {
        workspaceId: input.workspaceId,
        recoveryId: r.recoveryId,
        kitVersion: recovered.kitVersion,
        masterKeys,
      },
    };
  }

  /**
   * Step 3: a fresh master key version becomes active (the recovered versions turn decrypt-only and are re-wrapped
   * away by the rotation engine). The HSM must hold every recovered version. A drill key missing from a
   * replacement HSM is created anew so that the new kit has a drill slot.
   */
  async rotate(input: {
    workspaceId: string;
    recoveryId: string;
  }): Promise<{ rotationId: string; toKeyId: string; fromKeyIds: string[] }> {
    const ws = await readWorkspace(this.deps.events, input.workspaceId);
    const r = this.ownRecovery(ws, input.recoveryId);
    if (!r.unlocked) throw new RecoveryStateError(`recovery ${r.recoveryId} has not been unlocked`);
    await this.assertKeysInHsm(r);
    await this.deps.kits.ensureDrillKey(input.workspaceId);
    const rotation = await this.deps.rotation.startRotation(
      input.workspaceId,
      RECOVERY_REASON(r.recoveryId),
      {
        excludeTargets: r.unlocked.masterKeys.map((m) => m.keyId),
      },
    );
    return {
      rotationId: rotation.rotationId,
      toKeyId: rotation.toKeyId,
      fromKeyIds: [...rotation.fromKeyIds],
    };
  }

  /** Step 4: nothing left on the recovered versions, every canary decrypts, a sample of documents unwraps. */
  async verify(input: {
    workspaceId: string;
    recoveryId: string;
    sampleSize?: number;
  }): Promise<{ canaries: number; sampled: number; remaining: number }> {
    // Many reads and unwraps: each is retried on its own when the HSM or the store is busy for a moment, so that one
    // transient failure does not throw away the whole verification (all of it is read-only).
    const ws = await retryTransient(() => readWorkspace(this.deps.events, input.workspaceId));
    const r = this.ownRecovery(ws, input.recoveryId);
    const recovered = r.unlocked?.masterKeys.map((m) => m.keyId) ?? [];
    let remaining = 0;
    for (const k of recovered)
      remaining += await retryTransient(() => this.deps.events.countDocumentsByKeyId(input.workspaceId, k));
    if (remaining > 0) {
      throw new RecoveryVerificationError(`${remaining} document(s) are still on recovered versions`, {
        context: { workspaceId: input.workspaceId, remaining },
      });
    }
    const canaries = await retryTransient(() => verifyCanaries(this.deps, input.workspaceId));
    const bad = canaries.filter((c) => !c.ok);
    if (canaries.length === 0 || bad.length > 0) {
      throw new RecoveryVerificationError(
        canaries.length === 0
          ? "the workspace has no canary documents to verify"
          : `${bad.length} canary document(s) do not decrypt: ${bad.map((b) => `${b.documentId} (${b.problem})`).join("; ")}`,
        { context: { workspaceId: input.workspaceId, failed: bad.map((b) => b.documentId) } },
      );
    }
    const active = ws.activeKeyId;
    let sampled = 0;
    if (active) {
      const page = await retryTransient(() =>
        this.deps.events.listDocumentsByKeyId(input.workspaceId, active, {
          limit: input.sampleSize ?? 20,
        }),
      );
      for (const d of page.documents) {
        if (d.status === "deleted") continue;
        const keyId = await retryTransient(async () => {
          const { events } = await this.deps.events.readStream(
            documentStreamId(input.workspaceId, d.documentId),
          );
          const record = currentWrapRecord(events)?.data as DocumentEncryptionKeysAddedData | undefined;
          if (!record) return undefined;
          const keys = await this.deps.dataKeys.decryptDataKeys({
            workspaceId: input.workspaceId,
            documentId: d.documentId,
            artifacts: record.Artifacts.map((a) => a.Artifact),
          });
          zeroize(...keys.keys.map((k) => k.plaintext));
          return keys.keyId;
        });
        if (keyId === undefined) continue;
        if (keyId !== active) {
          throw new RecoveryVerificationError(`document ${d.documentId} is not on the new master key`);
        }
        sampled += 1;
      }
    }
    return { canaries: canaries.length, sampled, remaining };
  }

  /** Step 5: every access token issued before now is rejected; the services are told on the event bus. */
  async invalidateTokens(input: { workspaceId: string; recoveryId: string }): Promise<{ epoch: number }> {
    const ws = await readWorkspace(this.deps.events, input.workspaceId);
    this.ownRecovery(ws, input.recoveryId);
    const reason = `recovery ${input.recoveryId}: every access token issued before it is invalid`;
    const { epoch } = await this.deps.tokens.invalidate({
      workspaceId: input.workspaceId,
      reason,
      recoveryId: input.recoveryId,
    });
    const detail: AccessTokensInvalidatedData = {
      WorkspaceId: input.workspaceId,
      Epoch: epoch,
      Reason: reason,
      RecoveryId: input.recoveryId,
    };
    await this.deps.bus.publish([
      {
        detailType: EventTypes.AccessTokensInvalidated,
        workspaceId: input.workspaceId,
        detail,
        id: uuidFromName("AccessTokensInvalidated", input.workspaceId, String(epoch)),
      },
    ]);
    return { epoch };
  }

  /**
   * Step 6: completes the recovery's rotation (new kit for the new master key in the vault, recovered versions
   * retired) and records `RecoveryCompleted` with the timings. Idempotent.
   */
  async complete(input: { workspaceId: string; recoveryId: string }): Promise<RecoveryCompletedData> {
    let ws = await readWorkspace(this.deps.events, input.workspaceId);
    const r = this.ownRecovery(ws, input.recoveryId);
    const recovered = r.unlocked?.masterKeys.map((m) => m.keyId) ?? [];
    if (ws.rotation?.status === "running") {
      await this.deps.rotation.completeRotation(input.workspaceId);
      ws = await readWorkspace(this.deps.events, input.workspaceId);
    }
    const rotation = ws.rotation;
    if (!rotation || rotation.status !== "completed" || recovered.includes(rotation.toKeyId)) {
      throw new RecoveryStateError(`recovery ${r.recoveryId} has no completed rotation to a fresh key`);
    }
    const { events } = await this.deps.events.readStream(workspaceStreamId(input.workspaceId));
    const at = this.now();
    const timings = timingsOf(events, r, rotation.rotationId, at);
    const canaries = ws.canaries.length;
    const data: RecoveryCompletedData = {
      WorkspaceId: input.workspaceId,
      RecoveryId: r.recoveryId,
      NewKeyId: rotation.toKeyId,
      RecoveredKeyIds: recovered,
      KitVersion: ws.kits.at(-1)?.kitVersion ?? 0,
      TokenEpoch: ws.tokenEpoch,
      DocumentsOnNewKey: await this.deps.events.countDocumentsByKeyId(input.workspaceId, rotation.toKeyId),
      CanariesVerified: canaries,
      TimingsMs: timings,
    };
    for (let attempt = 0; ; attempt++) {
      try {
        await this.append(
          ws,
          EventTypes.RecoveryCompleted,
          data,
          uuidFromName("RecoveryCompleted", r.recoveryId),
        );
        break;
      } catch (err) {
        if (!(err instanceof ExpectedVersionConflictError) || attempt >= 5) throw err;
        ws = await readWorkspace(this.deps.events, input.workspaceId);
        if (ws.recovery?.status === "completed") break;
      }
    }
    await this.deps.alerts.raise({
      code: "RECOVERY_COMPLETED",
      severity: "info",
      workspaceId: input.workspaceId,
      message: `recovery ${r.recoveryId} completed: every DEK is wrapped under ${rotation.toKeyId}; kit v${data.KitVersion} is in the vault`,
      action:
        "Enroll the new administrator and re-issue the kit for them, then have every administrator acknowledge the new kit (the drill fails until they do).",
      context: { recoveryId: r.recoveryId, kitVersion: data.KitVersion },
    });
    return data;
  }

  /**
   * The catch path: records `RecoveryFailed` for the execution's own recovery and alerts. An execution that never
   * took the lock (a second, concurrent recovery) records nothing but the alert. Old keys are never touched here.
   */
  async recordFailure(input: RecoveryFailureInput): Promise<{ recorded: boolean; recoveryId?: string }> {
    return recordRecoveryFailure(
      { events: this.deps.events, alerts: this.deps.alerts, now: this.now },
      input,
    );
  }

  // ---- internals -----------------------------------------------------------------------------------------------

  private async startResult(
    ws: WorkspaceState,
    r: RecoveryState,
    resumed: boolean,
  ): Promise<StartRecoveryResult> {
    let unlocked = false;
    if (r.unlocked)
      unlocked = await this.assertKeysInHsm(r).then(
        () => true,
        () => false,
      );
    return {
      workspaceId: ws.workspaceId,
      recoveryId: r.recoveryId,
      kitVersion: r.kitVersion,
      resumed,
      unlocked,
    };
  }

  /** The kit in the vault (current, or the given version) parses, matches its KitIssued record and covers the keys. */
  private async checkKit(
    ws: WorkspaceState,
    vaultVersionId: string | undefined,
  ): Promise<{ kitVersion: number; fingerprint: string }> {
    let kitVersion: number;
    let fingerprint: string;
    if (vaultVersionId === undefined) {
      const kit = await this.deps.kits.currentKit(ws.workspaceId, ws);
      kitVersion = kit.header.kitVersion;
      fingerprint = kit.fingerprint;
    } else {
      const record = ws.kits.find((k) => k.vaultVersionId === vaultVersionId);
      if (!record) throw new InvalidInputError(`no kit was issued with vault version ${vaultVersionId}`);
      const kit = await this.deps.kits.kitAtVaultVersion(ws.workspaceId, vaultVersionId);
      if (kit.fingerprint !== record.fingerprint) {
        throw new KitIntegrityError(
          `the kit at vault version ${vaultVersionId} is not the one recorded at issuance`,
          "fingerprint",
        );
      }
      kitVersion = kit.header.kitVersion;
      fingerprint = kit.fingerprint;
    }
    const record = ws.kits.find((k) => k.kitVersion === kitVersion)!;
    await this.assertCovers(
      ws,
      record.masterKeys.map((m) => m.keyId),
      `kit v${kitVersion}`,
    );
    return { kitVersion, fingerprint };
  }

  /**
   * Every version a current wrap record uses, and every live version, must be covered by the kit or be in the HSM
   * with its recorded KCV (an HSM that survived keeps what it has; a lost one only gets back what the kit holds).
   */
  private async assertCovers(ws: WorkspaceState, covered: readonly string[], what: string): Promise<void> {
    const inUse = await this.deps.events.listKeyIdsInUse(ws.workspaceId);
    const live = ws.keys
      .filter((k) => k.state === "active" || k.state === "decrypt-only")
      .map((k) => k.keyId);
    const lost: string[] = [];
    for (const keyId of new Set<string>([...inUse, ...live])) {
      if (covered.includes(keyId)) continue;
      const recorded = ws.keys.find((k) => k.keyId === keyId);
      const info = await this.deps.keyStore.findMasterKey(parseKeyId(keyId)).catch(() => undefined);
      if (!info || !recorded || info.kcv !== recorded.kcv) lost.push(keyId);
    }
    if (lost.length > 0) {
      throw new KitCoverageError(
        `${what} does not cover ${lost.join(", ")}, and the HSM does not hold ${lost.length === 1 ? "it" : "them"}: documents wrapped under ${lost.length === 1 ? "it" : "them"} could not be recovered`,
        { context: { workspaceId: ws.workspaceId, missing: lost } },
      );
    }
  }

  private async assertKeysInHsm(r: RecoveryState): Promise<void> {
    for (const m of r.unlocked?.masterKeys ?? []) {
      const info = await this.deps.keyStore.findMasterKey(parseKeyId(m.keyId));
      if (!info || info.kcv !== m.kcv) {
        throw new RecoveryStateError(`${m.keyId} is not in the HSM with KCV ${m.kcv}; unlock the kit again`, {
          context: { keyId: m.keyId },
        });
      }
    }
  }

  private ownRecovery(ws: WorkspaceState, recoveryId: string): RecoveryState {
    const r = ws.recovery;
    if (!r || r.recoveryId !== recoveryId || r.status !== "running") {
      throw new RecoveryStateError(`recovery ${recoveryId} is not running for workspace ${ws.workspaceId}`, {
        context: { workspaceId: ws.workspaceId, recoveryId },
      });
    }
    return r;
  }

  private async append(
    ws: WorkspaceState,
    type: string,
    data: Record<string, unknown>,
    eventId?: string,
  ): Promise<void> {
    await this.deps.events.appendToStream(
      workspaceStreamId(ws.workspaceId),
      [newEvent(type, data, { occurredAt: this.now(), ...(eventId ? { eventId } : {}) })],
      { expectedVersion: ws.version },
    );
  }
}

function checkText(value: unknown, field: string, max: number): void {
  if (typeof value !== "string" || value.trim().length === 0 || value.length > max)
    throw new InvalidInputError(`${field} must be 1-${max} characters`);
}

/** Milliseconds per phase, from the workspace stream's own timestamps. */
function timingsOf(
  events: readonly StoredEvent[],
  r: RecoveryState,
  rotationId: string,
  end: Date,
): Record<string, number> {
  const t = (e: StoredEvent | undefined) => (e ? Date.parse(e.occurredAt) : undefined);
  const mine = (e: StoredEvent) => e.data.RecoveryId === r.recoveryId;
  const started = Date.parse(r.startedAt);
  const unlocked = t(events.find((e) => e.type === EventTypes.RecoveryUnlocked && mine(e)));
  const rotated = t(
    events.find((e) => e.type === EventTypes.RotationStarted && e.data.RotationId === rotationId),
  );
  const invalidated = t(events.find((e) => e.type === EventTypes.AccessTokensInvalidated && mine(e)));
  const completed = t(
    events.find((e) => e.type === EventTypes.RotationCompleted && e.data.RotationId === rotationId),
  );
  const out: Record<string, number> = { Total: end.getTime() - started };
  if (unlocked !== undefined) out.AwaitUnlock = unlocked - started;
  if (unlocked !== undefined && rotated !== undefined) out.Rotate = Math.max(0, rotated - unlocked);
  if (rotated !== undefined && invalidated !== undefined) out.RewrapAndVerify = invalidated - rotated;
  if (invalidated !== undefined && completed !== undefined) out.NewKit = completed - invalidated;
  return out;
}
