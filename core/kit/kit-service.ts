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
import { newEvent } from "../eventstore/events.js";
import { workspaceStreamId } from "../eventstore/stream-id.js";
import { KeyAlreadyExistsError, KeyIntegrityError } from "../keystore/errors.js";
import { drillKeyId, parseDrillKeyId, parseKeyId } from "../keystore/key-id.js";
import type { KeyStore, OaepHash, TransportKeyRef } from "../keystore/key-store.js";
import { zeroize } from "../shared/bytes.js";
import { InvalidInputError } from "../shared/errors.js";
import { uuidFromName } from "../shared/ids.js";
import { kitSecretName, type SecretVault } from "../vault/secret-vault.js";
import { readWorkspace, type WorkspaceState } from "../workspaces/workspace.js";
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
      transport = await this.deps.keyStore.importTransportKey(wrapKey);
      const masterKeys: KitBody["masterKeys"] = [];
      // Every live version: active and decrypt-only (retired versions no record needs; destroyed ones are gone).
      const live = ws.keys.filter((k) => k.state === "active" || k.state === "decrypt-only");
      for (const k of live) {
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
          state: k.state === "active" ? "active" : "decrypt-only",
          wrapped: Buffer.from(blob).toString("base64"),
        });
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
      await this.append(ws, EventTypes.KitIssued, data);
      return { kitVersion, fingerprint: parsed.fingerprint, vaultVersionId: stored.versionId, bytes };
    } finally {
      zeroize(kitSecret, wrapKey);
      if (transport) await this.deps.keyStore.destroyTransportKey(transport);
    }
  }

  /** The administrators' public keys and sealed identities, from the current kit in the vault. */
  async currentRecipients(workspaceId: string): Promise<KitRecipient[]> {
    const kit = await this.currentKit(workspaceId);
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

  /** The current kit from the vault, checked against the fingerprint recorded when it was issued. */
  async currentKit(workspaceId: string, ws?: WorkspaceState): Promise<ParsedKit> {
    const state = ws ?? (await readWorkspace(this.deps.events, workspaceId));
    const stored = await this.deps.vault.getSecret(kitSecretName(workspaceId));
    const kit = readKit(stored.value);
    const latest = state.kits.at(-1);
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
      transport = await target.importTransportKey(opened.wrapKey);
      const out: { keyId: string; kcv: string; imported: boolean }[] = [];
      for (const mk of opened.body.masterKeys) {
        const keyId = parseKeyId(mk.keyId);
        try {
          const info = await target.importMasterKey(keyId, Buffer.from(mk.wrapped, "base64"), transport, {
            expectedKcv: mk.kcv,
          });
          out.push({ keyId: mk.keyId, kcv: info.kcv, imported: true });
        } catch (err) {
          if (!(err instanceof KeyAlreadyExistsError)) throw mapMasterKeyError(err, mk.keyId);
          const kcv = await target.keyCheckValue(keyId);
          if (kcv !== mk.kcv)
            throw new KitIntegrityError(
              `${mk.keyId} already exists in the target HSM with another KCV`,
              "master-key",
            );
          out.push({ keyId: mk.keyId, kcv, imported: false });
        }
      }
      await this.gate.recordSuccess(
        input.workspaceId,
        input.adminId,
        opened.kit.header.kitVersion,
        "recover",
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
      for (const k of ws.keys.filter((x) => x.state === "active" || x.state === "decrypt-only")) {
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
