/**
 * The unlock gate: the part of the unlock function that guards administrator slots. It keeps each administrator's
 * TOTP factor secret (seed and release key) in the vault, releases the release key only for a valid code that was
 * never used before, and counts failed attempts: from the fifth in a row the slot locks for a growing delay
 * (1 minute, doubling, at most 24 hours) and an alert is raised. All of it is recorded in the workspace stream,
 * every write conditional on the version read, so two concurrent unlocks cannot both use one code.
 */
import type { Alerts } from "../alerts/alerts.js";
import {
  EventTypes,
  type FactorCodeAcceptedData,
  type UnlockAttemptFailedData,
  type UnlockSucceededData,
} from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent } from "../eventstore/events.js";
import { workspaceStreamId } from "../eventstore/stream-id.js";
import { zeroize } from "../shared/bytes.js";
import { factorSecretName, type SecretVault } from "../vault/secret-vault.js";
import { readWorkspace, type AdministratorState, type WorkspaceState } from "../workspaces/workspace.js";
import {
  FactorLockedError,
  FactorNotEnrolledError,
  TotpCodeInvalidError,
  TotpCodeReplayedError,
  UnlockBusyError,
} from "./errors.js";
import { verifyTotp, type TotpParams } from "./totp.js";

export const LOCK_AFTER_FAILURES = 5;
const LOCK_BASE_MS = 60_000;
const LOCK_MAX_MS = 24 * 3600_000;
const MAX_RACES = 8;

/** What the vault keeps per TOTP administrator (secret `amk/<workspace>/factor/<adminId>`). */
export interface TotpFactorSecret {
  readonly version: 1;
  readonly factorId: string;
  readonly params: TotpParams;
  /** base32 TOTP seed */
  readonly seed: string;
  /** base64 of the 32-byte factor release key (the kit's factor material) */
  readonly releaseKey: string;
}

export { factorSecretName };

export function lockDelayMs(consecutiveFailures: number): number {
  if (consecutiveFailures < LOCK_AFTER_FAILURES) return 0;
  return Math.min(LOCK_MAX_MS, LOCK_BASE_MS * 2 ** (consecutiveFailures - LOCK_AFTER_FAILURES));
}

export interface UnlockGateDeps {
  readonly events: EventStore;
  readonly vault: SecretVault;
  readonly alerts: Alerts;
  readonly now?: () => Date;
}

export type FailureReason = UnlockAttemptFailedData["Reason"];

export class UnlockGate {
  private readonly now: () => Date;
  constructor(private readonly deps: UnlockGateDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  /** Stores a new TOTP factor secret for an administrator (enrollment). */
  async storeTotpSecret(workspaceId: string, adminId: string, secret: TotpFactorSecret): Promise<void> {
    const bytes = Buffer.from(JSON.stringify(secret), "utf8");
    try {
      await this.deps.vault.putSecret(factorSecretName(workspaceId, adminId), bytes, {
        labels: [secret.factorId],
      });
    } finally {
      zeroize(bytes);
    }
  }

  /** Refuses at once when the administrator's slot is locked. */
  async assertNotLocked(workspaceId: string, adminId: string): Promise<AdministratorState> {
    const ws = await readWorkspace(this.deps.events, workspaceId);
    return this.checkLock(ws, adminId);
  }

  /**
   * Checks a TOTP code and, when it is valid and newer than every code accepted before, records it and returns the
   * release key (the caller zeroizes it). Otherwise records the failure and throws.
   */
  async releaseTotpKey(workspaceId: string, adminId: string, code: string): Promise<Buffer> {
    for (let race = 0; race < MAX_RACES; race++) {
      const ws = await readWorkspace(this.deps.events, workspaceId);
      const admin = this.checkLock(ws, adminId);
      const secret = await this.loadTotpSecret(workspaceId, adminId);
      const nowSeconds = Math.floor(this.now().getTime() / 1000);
      const check = await verifyTotp(secret.seed, code, secret.params, nowSeconds);
      if (!check.valid || check.timeStep <= admin.lastAcceptedStep) {
        const reason: FailureReason = check.valid ? "replayed-code" : "wrong-code";
        if (!(await this.appendFailure(ws, admin, reason))) continue;
        throw check.valid
          ? new TotpCodeReplayedError("this code was already used; wait for the next one", {
              context: { workspaceId, adminId },
            })
          : new TotpCodeInvalidError("the code is not valid", { context: { workspaceId, adminId } });
      }
      const data: FactorCodeAcceptedData = {
        WorkspaceId: workspaceId,
        AdminId: adminId,
        FactorId: secret.factorId,
        TimeStep: check.timeStep,
      };
      try {
        await this.deps.events.appendToStream(
          workspaceStreamId(workspaceId),
          [newEvent(EventTypes.FactorCodeAccepted, data, { occurredAt: this.now() })],
          { expectedVersion: ws.version },
        );
      } catch (err) {
        if (err instanceof ExpectedVersionConflictError) continue; // someone else wrote: check again (maybe our code)
        throw err;
      }
      return Buffer.from(secret.releaseKey, "base64");
    }
    throw new UnlockBusyError("the workspace kept changing during the unlock; try again", {
      context: { workspaceId, adminId },
    });
  }

  /** Records a failed attempt that the gate did not see itself (wrong passphrase, wrong token response). */
  async recordFailure(workspaceId: string, adminId: string, reason: FailureReason): Promise<void> {
    for (let race = 0; race < MAX_RACES; race++) {
      const ws = await readWorkspace(this.deps.events, workspaceId);
      const admin = ws.admins[adminId];
      if (!admin) return;
      if (await this.appendFailure(ws, admin, reason)) return;
    }
  }

  async recordSuccess(
    workspaceId: string,
    adminId: string,
    kitVersion: number,
    purpose: "verify" | "recover",
  ): Promise<void> {
    const data: UnlockSucceededData = {
      WorkspaceId: workspaceId,
      AdminId: adminId,
      KitVersion: kitVersion,
      Purpose: purpose,
    };
    await this.deps.events.appendToStream(
      workspaceStreamId(workspaceId),
      [newEvent(EventTypes.UnlockSucceeded, data, { occurredAt: this.now() })],
      { expectedVersion: "stream_exists" },
    );
  }

  private checkLock(ws: WorkspaceState, adminId: string): AdministratorState {
    const admin = ws.admins[adminId];
    if (!admin) {
      throw new FactorNotEnrolledError(
        `administrator ${adminId} is not enrolled in workspace ${ws.workspaceId}`,
        {
          context: { workspaceId: ws.workspaceId, adminId },
        },
      );
    }
    if (admin.lockedUntil && Date.parse(admin.lockedUntil) > this.now().getTime()) {
      throw new FactorLockedError(
        `${adminId}'s slot is locked after repeated failures until ${admin.lockedUntil}`,
        {
          context: {
            workspaceId: ws.workspaceId,
            adminId,
            lockedUntil: admin.lockedUntil,
            failures: admin.consecutiveFailures,
          },
        },
      );
    }
    return admin;
  }

  private async loadTotpSecret(workspaceId: string, adminId: string): Promise<TotpFactorSecret> {
    const stored = await this.deps.vault.getSecret(factorSecretName(workspaceId, adminId));
    try {
      const parsed = JSON.parse(Buffer.from(stored.value).toString("utf8")) as TotpFactorSecret;
      if (parsed.version !== 1 || typeof parsed.seed !== "string" || typeof parsed.releaseKey !== "string") {
        throw new FactorNotEnrolledError(`the factor secret of ${adminId} is not a TOTP secret`, {
          context: { workspaceId, adminId },
        });
      }
      return parsed;
    } finally {
      zeroize(stored.value);
    }
  }

  /** Appends the failure at the version read; false when another write came first (the caller re-reads). */
  private async appendFailure(
    ws: WorkspaceState,
    admin: AdministratorState,
    reason: FailureReason,
  ): Promise<boolean> {
    const failures = admin.consecutiveFailures + 1;
    const delay = lockDelayMs(failures);
    const data: UnlockAttemptFailedData = {
      WorkspaceId: ws.workspaceId,
      AdminId: admin.adminId,
      Reason: reason,
      ConsecutiveFailures: failures,
      ...(delay > 0 ? { LockedUntil: new Date(this.now().getTime() + delay).toISOString() } : {}),
    };
    try {
      await this.deps.events.appendToStream(
        workspaceStreamId(ws.workspaceId),
        [newEvent(EventTypes.UnlockAttemptFailed, data, { occurredAt: this.now() })],
        { expectedVersion: ws.version },
      );
    } catch (err) {
      if (err instanceof ExpectedVersionConflictError) return false;
      throw err;
    }
    if (delay > 0) {
      await this.deps.alerts.raise({
        code: "ADMIN_SLOT_LOCKED",
        severity: "critical",
        workspaceId: ws.workspaceId,
        message: `${failures} failed unlock attempts in a row for administrator ${admin.adminId} (last: ${reason}); the slot is locked until ${data.LockedUntil}`,
        action:
          "Confirm with the administrator that these attempts were theirs; if not, treat it as an attack on the recovery kit and rotate the kit's administrators.",
        context: { adminId: admin.adminId, failures, lockedUntil: data.LockedUntil },
      });
    }
    return true;
  }
}
