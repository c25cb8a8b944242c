/**
 * Recovery-kit use cases: enroll administrators, issue and re-issue kits (stored in the vault, recorded in the
 * workspace stream), open a kit (passphrase + factor), acknowledge it (prove possession), recover the master keys
 * into an HSM, check the kit through the drill slot inside the HSM, and report the inventory.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Alerts } from "../alerts/alerts.js";
import {
  EventTypes,
  type AdministratorEnrolledData,
  type DrillKeyCreatedData,
  type KitAcknowledgedData,
  type KitIssuedData,
} from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent } from "../eventstore/events.js";
import { workspaceStreamId } from "../eventstore/stream-id.js";
import { KeyAlreadyExistsError, KeyIntegrityError, SessionKeyLostError } from "../keystore/errors.js";
import { drillKeyId, parseDrillKeyId, parseKeyId } from "../keystore/key-id.js";
import type { KeyStore, OaepHash, TransportKeyRef } from "../keystore/key-store.js";
import { zeroize } from "../shared/bytes.js";
import { AmkError, InvalidInputError } from "../shared/errors.js";
import { backoffDelay, retryTransient, sleep, TRANSIENT_RETRY } from "../shared/retry.js";
import { uuidFromName } from "../shared/ids.js";
import { kitSecretName, type SecretVault } from "../vault/secret-vault.js";
import { isLiveKeyState, readWorkspace, type WorkspaceState } from "../workspaces/workspace.js";
import { newChallenge, type HmacTokenResponder } from "../factors/hmac-token.js";
import { checkPassphrase } from "../factors/passphrase-policy.js";
import { DEFAULT_TOTP, newTotpSeed, totpUri, type TotpParams } from "../factors/totp.js";
import { UnlockGate } from "../factors/unlock-gate.js";
import { sealNewIdentity } from "./crypto.js";
import { KitIntegrityError, KitStateError, KitWrongFactorError, KitWrongPassphraseError } from "./errors.js";
import { readKit, type FactorDescriptor, type KitBody, type ParsedKit } from "./format.js";
import {
  buildKit,
  newKitSecret,
  openKitAsAdmin,
  parseBody,
  wrapKeyOf,
  type KitRecipient,
  type OpenedKit,
} from "./kit.js";

export { kitSecretName };
export const DEFAULT_ACK_MAX_AGE_DAYS = 90;

/** The kit's share of the administrator's enrollment answer: what they must keep (a TOTP URI shows a secret once). */
export interface Enrollment {
  readonly adminId: string;
  readonly recipient: KitRecipient;
  /** For TOTP: the otpauth:// URI to scan now; it holds the TOTP seed: show it once, never store or log it. */
  readonly totpUri?: string;
}

export type FactorChoice =
  | { readonly type: "totp"; readonly params?: TotpParams }
  | { readonly type: "hmac-sha1"; readonly token: HmacTokenResponder };

/** How the administrator proves the second factor when opening: a TOTP code, or a token that answers. */
export type FactorProof =
  | { readonly type: "totp"; readonly code: string }
  | { readonly type: "hmac-sha1"; readonly token: HmacTokenResponder };

export interface KitServiceDeps {
  readonly keyStore: KeyStore;
  readonly events: EventStore;
  readonly vault: SecretVault;
  readonly alerts: Alerts;
  readonly now?: () => Date;
  /** OAEP hash for the drill slot (SoftHSM2: SHA-1; CloudHSM: SHA-256). */
  readonly oaepHash?: OaepHash;
  readonly issuer?: string;
}

export interface IssuedKit {
  readonly kitVersion: number;
  readonly fingerprint: string;
  readonly vaultVersionId: string;
  readonly bytes: Buffer;
}

export interface DrillCheck {
  readonly ok: boolean;
  readonly kitVersion: number;
  readonly fingerprint: string;
  readonly masterKeys: readonly {
    keyId: string;
    kitKcv: string;
    hsmKcv: string;
    liveKcv?: string;
    ok: boolean;
  }[];
  readonly problems: readonly string[];
}

export interface InventoryReport {
  readonly workspaceId: string;
  readonly currentKitVersion: number | undefined;
  readonly administrators: readonly {
    adminId: string;
    receivedKitVersion: number | undefined;
    lastAcknowledgedVersion: number | undefined;
    lastAcknowledgedAt: string | undefined;
    status: "ok" | "stale" | "never-acknowledged" | "not-in-current-kit";
  }[];
  readonly unacknowledgedKitVersions: readonly number[];
}

/**
 * How long a kit in the vault one version ahead of the records counts as an issuance in flight (its `KitIssued` not
 * yet recorded): readers use the last recorded kit meanwhile. Older, it is an interrupted issuance, reported.
 */
export const ISSUANCE_IN_FLIGHT_MS = 15 * 60_000;

export class KitService {
  private readonly now: () => Date;
  private readonly oaepHash: OaepHash;
  readonly gate: UnlockGate;

  constructor(private readonly deps: KitServiceDeps) {
    this.now = deps.now ?? (() => new Date());
    this.oaepHash = deps.oaepHash ?? "SHA-1";
    this.gate = new UnlockGate({
      events: deps.events,
      vault: deps.vault,
      alerts: deps.alerts,
      now: this.now,
    });
  }

  /**
   * Creates the workspace's drill key pair in the HSM and records it (idempotent). When the recorded drill key is
   * missing from the HSM (a replacement HSM after a recovery), the next drill key version is created and recorded;
   * the next kit issued uses it.
   */
  async ensureDrillKey(workspaceId: string): Promise<string> {
    const ws = await readWorkspace(this.deps.events, workspaceId);
    let next = 1;
    if (ws.drill) {
      const recorded = parseDrillKeyId(ws.drill.drillKeyId);
      if (await this.deps.keyStore.getDrillKey(recorded)) return ws.drill.drillKeyId;
      next = Number(/\/drill\/(\d+)$/.exec(ws.drill.drillKeyId)?.[1] ?? "0") + 1;
    }
    const id = drillKeyId(workspaceId, next);
    const info = (await this.deps.keyStore.getDrillKey(id)) ?? (await this.createDrill(id));
    const data: DrillKeyCreatedData = {
      WorkspaceId: workspaceId,
      DrillKeyId: id,
      PublicKeySha256: createHash("sha256").update(info.publicKeySpki).digest("hex"),
      OaepHash: this.oaepHash,
    };
    await this.append(ws, EventTypes.DrillKeyCreated, data, uuidFromName("DrillKeyCreated", id));
    return id;
  }

  /**
   * Enrolls an administrator: checks the passphrase policy, creates their identity sealed under passphrase and
   * factor, stores a TOTP factor secret in the vault, records the enrollment. Returns what goes into kit slots.
   */
  async enrollAdministrator(input: {
    workspaceId: string;
    adminId: string;
    passphrase: string;
    factor: FactorChoice;
  }): Promise<Enrollment> {
    const { workspaceId, adminId } = input;
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(adminId)) {
      throw new InvalidInputError("administrator id: 1-64 letters, digits, - and _");
    }
    checkPassphrase(input.passphrase, { workspaceId, adminId });
    const ws = await readWorkspace(this.deps.events, workspaceId);
    if (ws.admins[adminId]) {
      throw new InvalidInputError(`administrator ${adminId} is already enrolled in ${workspaceId}`, {
        context: { workspaceId, adminId },
      });
    }
    let descriptor: FactorDescriptor;
    let material: Buffer;
    let uri: string | undefined;
    let factorId: string | undefined;
    if (input.factor.type === "totp") {
      const params = input.factor.params ?? DEFAULT_TOTP;
      factorId = `${adminId}-totp-1`;
      const seed = newTotpSeed(params);
      material = randomBytes(32);
      await this.gate.storeTotpSecret(workspaceId, adminId, {
        version: 1,
        factorId,
        params,
        seed,
        releaseKey: material.toString("base64"),
      });
      descriptor = {
        type: "totp",
        factorId,
        algorithm: params.algorithm,
        digits: params.digits,
        period: params.period,
      };
      uri = totpUri({
        issuer: this.deps.issuer ?? "ArquivoMate Keys",
        account: `${workspaceId}:${adminId}`,
        seed,
        params,
      });
    } else {
      const challenge = newChallenge();
      material = Buffer.from(await input.factor.token(challenge));
      descriptor = { type: "hmac-sha1", challenge: challenge.toString("base64") };
    }
    try {
      const sealed = await sealNewIdentity({
        adminId,
        passphrase: input.passphrase,
        factor: descriptor,
        factorMaterial: material,
      });
      const data: AdministratorEnrolledData = {
        WorkspaceId: workspaceId,
        AdminId: adminId,
        Recipient: sealed.recipient.toString("base64"),
        FactorType: descriptor.type,
        ...(factorId ? { FactorId: factorId } : {}),
      };
      await this.append(ws, EventTypes.AdministratorEnrolled, data);
      return {
        adminId,
        recipient: { adminId, recipient: sealed.recipient, identity: sealed.identity },
        ...(uri ? { totpUri: uri } : {}),
      };
    } finally {
      zeroize(material);
    }
  }

  /**
   * Issues the next kit version for every live master key version, to the given administrators (default: those of
   * the current kit, so no administrator needs to be present) and the drill slot; stores it in the vault and records
   * `KitIssued`.
   */
  async issueKit(
    workspaceId: string,
    options: { admins?: readonly KitRecipient[]; reason: string },
  ): Promise<IssuedKit> {
    const ws = await readWorkspace(this.deps.events, workspaceId);
    if (ws.keys.length === 0 || !ws.activeKeyId)
      throw new KitStateError(`workspace ${workspaceId} has no master key yet`);
    if (!ws.drill) throw new KitStateError(`workspace ${workspaceId} has no drill key yet`);
    const admins = options.admins ?? (await this.currentRecipients(workspaceId));
    if (admins.length === 0) throw new KitStateError("a kit needs at least one administrator");
    for (const a of admins) {
      const enrolled = ws.admins[a.adminId];
      if (!enrolled || enrolled.recipient !== Buffer.from(a.recipient).toString("base64")) {
        throw new KitStateError(`administrator ${a.adminId} is not enrolled with that public key`, {
          context: { adminId: a.adminId },
        });
      }
    }
    const drill = await this.deps.keyStore.getDrillKey(parseDrillKeyId(ws.drill.drillKeyId));
    if (!drill) throw new KitStateError(`drill key ${ws.drill.drillKeyId} is missing from the HSM`);

    const kitSecret = newKitSecret();
    const wrapKey = wrapKeyOf(kitSecret);
    let transport: TransportKeyRef | undefined;
    try {
      // The export needs the transport key for several calls: when the HSM session holding it is lost on the way
      // (SessionKeyLostError), the export starts again with the transport key loaded again (a few times).
      let masterKeys: KitBody["masterKeys"] = [];
      for (let attempt = 1; ; attempt++) {
        try {
          transport = await this.deps.keyStore.importTransportKey(wrapKey);
          masterKeys = await this.exportLive(ws, transport);
          break;
        } catch (err) {
          if (!(err instanceof SessionKeyLostError) || attempt >= 3) throw err;
          if (transport) await this.deps.keyStore.destroyTransportKey(transport);
          transport = undefined;
        }
      }
      const kitVersion = (ws.kits.at(-1)?.kitVersion ?? 0) + 1;
      const kitId = ws.kits[0]?.kitId ?? uuidFromName("kit", workspaceId);
      const bytes = buildKit({
        workspaceId,
        kitId,
        kitVersion,
        issuedAt: this.now().toISOString(),
        eventStorePosition: { streamId: workspaceStreamId(workspaceId), version: ws.version },
        admins,
        drill: {
          drillKeyId: ws.drill.drillKeyId,
          publicKeySpki: drill.publicKeySpki,
          oaepHash: ws.drill.oaepHash,
        },
        masterKeys,
        kitSecret,
      });
      const parsed = readKit(bytes);
      // No per-version label: Secrets Manager caps staging labels per secret; KitIssued records the version id.
      const stored = await this.deps.vault.putSecret(kitSecretName(workspaceId), bytes, {
        clientToken: uuidFromName("kit-version", workspaceId, String(kitVersion), parsed.fingerprint),
        description: `ArquivoMate Keys recovery kit of workspace ${workspaceId}`,
      });
      const data: KitIssuedData = {
        WorkspaceId: workspaceId,
        KitId: kitId,
        KitVersion: kitVersion,
        Fingerprint: parsed.fingerprint,
        VaultVersionId: stored.versionId,
        MasterKeys: masterKeys.map((m) => ({ KeyId: m.keyId, Kcv: m.kcv, State: m.state })),
        AdminIds: admins.map((a) => a.adminId),
        DrillKeyId: ws.drill.drillKeyId,
        EventStorePosition: ws.version,
        Reason: options.reason,
      };
      await this.recordIssued(ws, data);
      return { kitVersion, fingerprint: parsed.fingerprint, vaultVersionId: stored.versionId, bytes };
    } finally {
      zeroize(kitSecret, wrapKey);
      if (transport) await this.deps.keyStore.destroyTransportKey(transport);
    }
  }

  /**
   * The administrators' public keys and sealed identities, from the last kit `KitIssued` recorded, read from the
   * vault at the version it recorded (fingerprint checked). Not the vault's current version: an issuance interrupted
   * between its vault write and its `KitIssued` (a transient store failure, a lost race) leaves a newer, unrecorded
   * version there, and the next issuance must still work (it replaces that version); `currentKit` keeps refusing it.
   */
  async currentRecipients(workspaceId: string): Promise<KitRecipient[]> {
    const ws = await readWorkspace(this.deps.events, workspaceId);
    const latest = ws.kits.at(-1);
    const kit = latest
      ? await this.kitAtVaultVersion(workspaceId, latest.vaultVersionId)
      : await this.currentKit(workspaceId, ws);
    if (latest && kit.fingerprint !== latest.fingerprint) {
      throw new KitIntegrityError(
        `the kit at vault version ${latest.vaultVersionId} is not kit v${latest.kitVersion} as recorded at issuance`,
        "fingerprint",
        { context: { workspaceId, kitVersion: latest.kitVersion } },
      );
    }
    return kit.slots
      .filter((s) => s.type === "admin")
      .map((s) => ({
        adminId: s.adminId,
        recipient: Buffer.from(s.recipient, "base64"),
        identity: s.identity,
      }));
  }

  /** A kit version from the vault by its vault version id (parsed; the caller checks it against KitIssued). */
  async kitAtVaultVersion(workspaceId: string, versionId: string): Promise<ParsedKit> {
    const stored = await this.deps.vault.getSecret(kitSecretName(workspaceId), { versionId });
    return readKit(stored.value);
  }

  /**
   * The current kit from the vault, checked against the fingerprint recorded when it was issued. While an issuance
   * is in flight (its kit in the vault, its `KitIssued` not yet recorded: the vault holds the next version, issued
   * less than `ISSUANCE_IN_FLIGHT_MS` ago), the last recorded kit is read at its recorded vault version instead.
   */
  async currentKit(workspaceId: string, ws?: WorkspaceState): Promise<ParsedKit> {
    const state = ws ?? (await readWorkspace(this.deps.events, workspaceId));
    const stored = await this.deps.vault.getSecret(kitSecretName(workspaceId));
    let kit = readKit(stored.value);
    const latest = state.kits.at(-1);
    const issuedAt = Date.parse(kit.header.issuedAt);
    const inFlight =
      latest !== undefined &&
      kit.header.kitVersion === latest.kitVersion + 1 &&
      Number.isFinite(issuedAt) &&
      this.now().getTime() - issuedAt < ISSUANCE_IN_FLIGHT_MS;
    if (inFlight) kit = await this.kitAtVaultVersion(workspaceId, latest.vaultVersionId);
    if (latest && kit.header.kitVersion === latest.kitVersion + 1) {
      throw new KitIntegrityError(
        `the vault's current kit is v${kit.header.kitVersion}, which was never recorded (v${latest.kitVersion} was issued last): an issuance was interrupted after storing it; issue the kit again`,
        "vault-version",
        {
          context: {
            workspaceId,
            vaultKitVersion: kit.header.kitVersion,
            issuedKitVersion: latest.kitVersion,
          },
        },
      );
    }
    if (latest && kit.header.kitVersion !== latest.kitVersion) {
      throw new KitIntegrityError(
        `the vault's current kit is v${kit.header.kitVersion} but v${latest.kitVersion} was issued last (rolled back or not stored?)`,
        "vault-version",
        {
          context: {
            workspaceId,
            vaultKitVersion: kit.header.kitVersion,
            issuedKitVersion: latest.kitVersion,
          },
        },
      );
    }
    const record = state.kits.find((k) => k.kitVersion === kit.header.kitVersion);
    if (!record || record.fingerprint !== kit.fingerprint) {
      throw new KitIntegrityError(
        `the kit in the vault (v${kit.header.kitVersion}, ${kit.fingerprint}) is not the one recorded at issuance`,
        "fingerprint",
        { context: { workspaceId, kitVersion: kit.header.kitVersion } },
      );
    }
    return kit;
  }

  /**
   * Opens a kit as an administrator. A TOTP code goes through the unlock gate (replay, lockout); wrong passphrases
   * and token responses are counted too. The caller zeroizes `wrapKey`.
   */
  async openKit(input: {
    workspaceId: string;
    adminId: string;
    passphrase: string;
    factor: FactorProof;
    kit?: Uint8Array | string;
  }): Promise<OpenedKit> {
    const { workspaceId, adminId } = input;
    await this.gate.assertNotLocked(workspaceId, adminId);
    const kit = input.kit !== undefined ? readKit(input.kit) : await this.currentKit(workspaceId);
    if (kit.header.workspaceId !== workspaceId)
      throw new InvalidInputError("that kit belongs to another workspace");
    try {
      return await openKitAsAdmin(kit, {
        adminId,
        passphrase: input.passphrase,
        factorMaterial: async (factor) => {
          if (factor.type === "totp") {
            if (input.factor.type !== "totp")
              throw new KitWrongFactorError(`${adminId}'s slot needs a TOTP code`, "factor");
            return this.gate.releaseTotpKey(workspaceId, adminId, input.factor.code);
          }
          if (input.factor.type !== "hmac-sha1")
            throw new KitWrongFactorError(`${adminId}'s slot needs the hardware token`, "factor");
          return input.factor.token(Buffer.from(factor.challenge, "base64"));
        },
      });
    } catch (err) {
      if (err instanceof KitWrongPassphraseError)
        await this.gate.recordFailure(workspaceId, adminId, "wrong-passphrase");
      if (err instanceof KitWrongFactorError)
        await this.gate.recordFailure(workspaceId, adminId, "wrong-factor");
      throw err;
    }
  }

  /**
   * Acknowledgement: the administrator opens the kit, every master key is unwrapped inside the HSM and its KCV
   * checked, and the KCVs they proved are recorded.
   */
  async acknowledgeKit(input: {
    workspaceId: string;
    adminId: string;
    passphrase: string;
    factor: FactorProof;
    method?: "local" | "unlock-function";
  }): Promise<KitAcknowledgedData> {
    const opened = await this.openKit(input);
    try {
      const kcvs = await proveMasterKeysInHsm(this.deps.keyStore, opened);
      const ws = await readWorkspace(this.deps.events, input.workspaceId);
      const data: KitAcknowledgedData = {
        WorkspaceId: input.workspaceId,
        AdminId: input.adminId,
        KitVersion: opened.kit.header.kitVersion,
        Fingerprint: opened.kit.fingerprint,
        Kcvs: kcvs.map((k) => ({ KeyId: k.keyId, Kcv: k.kcv })),
        Method: input.method ?? "local",
      };
      await this.append(ws, EventTypes.KitAcknowledged, data);
      await this.gate.recordSuccess(input.workspaceId, input.adminId, opened.kit.header.kitVersion, "verify");
      return data;
    } finally {
      zeroize(opened.wrapKey);
    }
  }

  /**
   * Recovery of the master keys into an HSM (`target`, e.g. a replacement token): each key is unwrapped inside the
   * target HSM and must have the KCV the kit recorded. Keys already there with the same KCV are left as they are.
   */
  async recoverMasterKeys(
    input: {
      workspaceId: string;
      adminId: string;
      passphrase: string;
      factor: FactorProof;
      kit?: Uint8Array | string;
    },
    target: KeyStore,
  ): Promise<{ kitVersion: number; masterKeys: { keyId: string; kcv: string; imported: boolean }[] }> {
    const opened = await this.openKit(input);
    let transport: TransportKeyRef | undefined;
    try {
      // The code is used up once the kit is open: transient failures from here on are retried (each step is
      // idempotent: an import that already happened is recognised below), so they do not cost another code.
      // Transient failures and a transport key lost with its HSM session are retried: an import that already
      // happened is recognised (KeyAlreadyExistsError + the same KCV), so the loop may start again from the top.
      const notLost = (err: unknown) => !(err instanceof SessionKeyLostError);
      let out: { keyId: string; kcv: string; imported: boolean }[] = [];
      for (let attempt = 1; ; attempt++) {
        try {
          transport = await retryTransient(() => target.importTransportKey(opened.wrapKey));
          out = [];
          for (const mk of opened.body.masterKeys) {
            const keyId = parseKeyId(mk.keyId);
            try {
              const ref = transport;
              const info = await retryTransient(
                () =>
                  target.importMasterKey(keyId, Buffer.from(mk.wrapped, "base64"), ref, {
                    expectedKcv: mk.kcv,
                  }),
                undefined,
                notLost,
              );
              out.push({ keyId: mk.keyId, kcv: info.kcv, imported: true });
            } catch (err) {
              if (!(err instanceof KeyAlreadyExistsError)) throw err;
              const kcv = await retryTransient(() => target.keyCheckValue(keyId));
              if (kcv !== mk.kcv)
                throw new KitIntegrityError(
                  `${mk.keyId} already exists in the target HSM with another KCV`,
                  "master-key",
                );
              out.push({ keyId: mk.keyId, kcv, imported: false });
            }
          }
          break;
        } catch (err) {
          const failedKey = opened.body.masterKeys[out.length]?.keyId ?? "";
          if (!(err instanceof SessionKeyLostError) || attempt >= 3) throw mapMasterKeyError(err, failedKey);
          if (transport) await target.destroyTransportKey(transport);
          transport = undefined;
        }
      }
      await retryTransient(() =>
        this.gate.recordSuccess(input.workspaceId, input.adminId, opened.kit.header.kitVersion, "recover"),
      );
      return { kitVersion: opened.kit.header.kitVersion, masterKeys: out };
    } finally {
      zeroize(opened.wrapKey);
      if (transport) await target.destroyTransportKey(transport);
    }
  }

  /**
   * The drill check of the kit, entirely inside the HSM: the drill slot's keys are unwrapped into session objects,
   * the body is decrypted and every master key blob unwrapped there; only KCVs come out, compared with the kit's and
   * with the live keys'. Also checks that the kit covers every master key version of the workspace.
   */
  async drillCheckKit(workspaceId: string): Promise<DrillCheck> {
    const ws = await readWorkspace(this.deps.events, workspaceId);
    const kit = await this.currentKit(workspaceId, ws);
    const drillSlot = kit.slots.find((s) => s.type === "drill");
    if (!drillSlot || drillSlot.type !== "drill")
      throw new KitIntegrityError("the kit has no drill slot", "slot");
    const ks = this.deps.keyStore;
    const drillId = parseDrillKeyId(drillSlot.drillKeyId);
    const opts = { oaepHash: drillSlot.oaepHash } as const;
    const refs: TransportKeyRef[] = [];
    try {
      const bodyKey = await ks.unwrapWithDrillKey(drillId, Buffer.from(drillSlot.wrappedBodyKey, "base64"), {
        ...opts,
        purpose: "decrypt",
      });
      refs.push(bodyKey);
      const wrapKey = await ks.unwrapWithDrillKey(drillId, Buffer.from(drillSlot.wrappedWrapKey, "base64"), {
        ...opts,
        purpose: "unwrap",
      });
      refs.push(wrapKey);
      let plain: Buffer;
      try {
        plain = await ks.decryptWithSessionKey(bodyKey, {
          nonce: kit.bodyNonce,
          ciphertext: kit.bodyCiphertext,
          aad: kit.bodyAad,
        });
      } catch (err) {
        if (err instanceof KeyIntegrityError)
          throw new KitIntegrityError("the kit body fails its authentication", "body", { cause: err });
        throw err;
      }
      const body = parseBody(plain, kit.header);
      const problems: string[] = [];
      const masterKeys: DrillCheck["masterKeys"][number][] = [];
      for (const mk of body.masterKeys) {
        let hsmKcv = "";
        try {
          hsmKcv = await ks.checkWrappedMasterKey(wrapKey, Buffer.from(mk.wrapped, "base64"));
        } catch (err) {
          if (!(err instanceof KeyIntegrityError)) throw err;
        }
        const live = ws.keys.find((k) => k.keyId === mk.keyId);
        const liveKcv = live ? await ks.keyCheckValue(live.keyId).catch(() => undefined) : undefined;
        const ok = hsmKcv === mk.kcv && (liveKcv === undefined || liveKcv === mk.kcv);
        if (!ok)
          problems.push(
            `${mk.keyId}: kit KCV ${mk.kcv}, unwrapped ${hsmKcv || "(failed)"}, live ${liveKcv ?? "(absent)"}`,
          );
        masterKeys.push({ keyId: mk.keyId, kitKcv: mk.kcv, hsmKcv, ...(liveKcv ? { liveKcv } : {}), ok });
      }
      for (const k of ws.keys.filter((x) => isLiveKeyState(x.state))) {
        if (!body.masterKeys.some((m) => m.keyId === k.keyId))
          problems.push(`${k.keyId} is not covered by kit v${kit.header.kitVersion}`);
      }
      return {
        ok: problems.length === 0,
        kitVersion: kit.header.kitVersion,
        fingerprint: kit.fingerprint,
        masterKeys,
        problems,
      };
    } finally {
      for (const r of refs) await ks.destroyTransportKey(r);
    }
  }

  /** Who holds which kit version and when they last proved it (stale after `maxAgeDays`). */
  async inventory(workspaceId: string, options: { maxAgeDays?: number } = {}): Promise<InventoryReport> {
    const ws = await readWorkspace(this.deps.events, workspaceId);
    const maxAgeMs = (options.maxAgeDays ?? DEFAULT_ACK_MAX_AGE_DAYS) * 86_400_000;
    const current = ws.kits.at(-1);
    const administrators = Object.values(ws.admins).map((a) => {
      const received = [...ws.kits].reverse().find((k) => k.adminIds.includes(a.adminId))?.kitVersion;
      const acks = ws.acknowledgements.filter((x) => x.adminId === a.adminId);
      const last = acks.at(-1);
      const ackOfCurrent = acks.filter((x) => x.kitVersion === current?.kitVersion).at(-1);
      let status: InventoryReport["administrators"][number]["status"];
      if (!current || !current.adminIds.includes(a.adminId)) status = "not-in-current-kit";
      else if (!ackOfCurrent) status = "never-acknowledged";
      else status = this.now().getTime() - Date.parse(ackOfCurrent.at) > maxAgeMs ? "stale" : "ok";
      return {
        adminId: a.adminId,
        receivedKitVersion: received,
        lastAcknowledgedVersion: last?.kitVersion,
        lastAcknowledgedAt: last?.at,
        status,
      };
    });
    const unacknowledgedKitVersions = ws.kits
      .filter((k) => !ws.acknowledgements.some((x) => x.kitVersion === k.kitVersion))
      .map((k) => k.kitVersion);
    return { workspaceId, currentKitVersion: current?.kitVersion, administrators, unacknowledgedKitVersions };
  }

  // ---- internals -----------------------------------------------------------------------------------------------

  private async createDrill(id: ReturnType<typeof drillKeyId>) {
    try {
      return await this.deps.keyStore.createDrillKey(id);
    } catch (err) {
      if (!(err instanceof KeyAlreadyExistsError)) throw err;
      const info = await this.deps.keyStore.getDrillKey(id);
      if (!info) throw err;
      return info;
    }
  }

  /**
   * Every live version, exported under the transport key: pending (a rotation's next version: active once a kit
   * carries it), active and decrypt-only. Retired versions no record needs; destroyed ones are gone.
   */
  private async exportLive(ws: WorkspaceState, transport: TransportKeyRef): Promise<KitBody["masterKeys"]> {
    const masterKeys: KitBody["masterKeys"] = [];
    for (const k of ws.keys.filter((x) => isLiveKeyState(x.state))) {
      const blob = await this.deps.keyStore.exportMasterKey(k.keyId, transport);
      // Prove the blob before anyone relies on it: unwrapped inside the HSM, it has the recorded KCV.
      const kcv = await this.deps.keyStore.checkWrappedMasterKey(transport, blob);
      if (kcv !== k.kcv) {
        throw new KeyIntegrityError(`master key ${k.keyId} in the HSM does not match its recorded KCV`, {
          context: { keyId: k.keyId, recorded: k.kcv, actual: kcv },
        });
      }
      masterKeys.push({
        keyId: k.keyId,
        kcv,
        state: k.state === "active" || k.state === "pending" ? k.state : "decrypt-only",
        wrapped: Buffer.from(blob).toString("base64"),
      });
    }
    return masterKeys;
  }

  /**
   * Records `KitIssued` once the kit is in the vault. The vault already holds the new version as current: giving up
   * here on a write that merely raced (an unlock attempt, a drill result on the workspace stream) or failed for a
   * moment would leave that version unrecorded, which `currentKit` refuses from then on. So the append is retried
   * (bounded) at the version re-read, as long as the kit it records is still the right one: the same live master key
   * versions and no other kit of this version recorded meanwhile. A lost answer is recognised on the re-read.
   */
  private async recordIssued(ws: WorkspaceState, data: KitIssuedData): Promise<void> {
    const live = (w: WorkspaceState) =>
      w.keys
        .filter((k) => isLiveKeyState(k.state))
        .map((k) => `${k.keyId}:${k.state}`)
        .join(",");
    let state = ws;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.append(state, EventTypes.KitIssued, data);
        return;
      } catch (err) {
        const transient = err instanceof AmkError && err.retryable;
        if (
          !(err instanceof ExpectedVersionConflictError || transient) ||
          attempt >= TRANSIENT_RETRY.maxAttempts
        )
          throw err;
        if (transient) await sleep(backoffDelay(TRANSIENT_RETRY, attempt));
        const fresh = await retryTransient(() => readWorkspace(this.deps.events, ws.workspaceId));
        const same = fresh.kits.find((k) => k.kitVersion === data.KitVersion);
        if (same?.fingerprint === data.Fingerprint) return; // recorded: the answer was lost
        if (same || live(fresh) !== live(ws)) throw err; // another kit, or other keys: this one is not the one to record
        state = fresh;
      }
    }
  }

  /** Appends one event to the workspace stream at the version read (a concurrent change fails the call). */
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

/**
 * Spec step 10 inside an HSM: loads `K_wrap` as a transport key, unwraps every master key blob into a temporary
 * session object and compares its KCV with the kit's. No key value leaves the HSM.
 */
export async function proveMasterKeysInHsm(
  ks: KeyStore,
  opened: OpenedKit,
): Promise<{ keyId: string; kcv: string }[]> {
  const transport = await ks.importTransportKey(opened.wrapKey);
  try {
    const out: { keyId: string; kcv: string }[] = [];
    for (const mk of opened.body.masterKeys) {
      let kcv: string;
      try {
        kcv = await ks.checkWrappedMasterKey(transport, Buffer.from(mk.wrapped, "base64"));
      } catch (err) {
        throw mapMasterKeyError(err, mk.keyId);
      }
      if (kcv !== mk.kcv)
        throw new KitIntegrityError(`${mk.keyId} unwraps to a key whose KCV is not the kit's`, "master-key");
      out.push({ keyId: mk.keyId, kcv });
    }
    return out;
  } finally {
    await ks.destroyTransportKey(transport);
  }
}

function mapMasterKeyError(err: unknown, keyId: string): unknown {
  if (err instanceof KeyIntegrityError) {
    return new KitIntegrityError(
      `master key ${keyId} does not unwrap from the kit (or its KCV differs)`,
      "master-key",
      { cause: err },
    );
  }
  return err;
}
