/**
 * The recovery kit end to end on the real engines (two SoftHSM2 tokens, DynamoDB Local, the file vault): provision
 * with two administrators (TOTP and hardware token), open with passphrase + a TOTP code from an independent
 * implementation (Debian's oathtool), recover the master keys into a second token, every single-byte flip refused,
 * each factor alone refused, replay and lockout, re-issue after a rotation without any passphrase, the drill slot
 * inside the HSM, acknowledgements and the inventory.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import { newEvent } from "../../core/eventstore/events.js";
import { workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { FactorLockedError, TotpCodeInvalidError, TotpCodeReplayedError } from "../../core/factors/errors.js";
import { softwareHmacToken } from "../../core/factors/hmac-token.js";
import {
  KitError,
  KitIntegrityError,
  KitWrongFactorError,
  KitWrongPassphraseError,
  WeakPassphraseError,
} from "../../core/kit/errors.js";
import { armour, readKit } from "../../core/kit/format.js";
import { ISSUANCE_IN_FLIGHT_MS, kitSecretName, KitService } from "../../core/kit/kit-service.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

const run = promisify(execFile);

/** A TOTP code from oathtool, an implementation independent of ours, at the given time. */
async function oathtool(seed: string, at: Date, algorithm = "SHA1", digits = 6): Promise<string> {
  const now = at
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, " UTC");
  const { stdout } = await run("oathtool", [
    `--totp=${algorithm}`,
    "--base32",
    `--digits=${digits}`,
    `--now=${now}`,
    seed,
  ]);
  return stdout.trim();
}

const seedOf = (uri: string) => new URL(uri).searchParams.get("secret")!;

describe("recovery kit on SoftHSM2, DynamoDB Local and the file vault", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let vaultDir: string;
  let primary: Pkcs11KeyStore;
  let replacement: Pkcs11KeyStore;
  let kits: KitService;
  let events: DynamoDbEventStore;
  const alerts = new RecordingAlerts();
  let clock = new Date("2026-11-30T12:00:00.000Z");
  const tick = (seconds: number) => (clock = new Date(clock.getTime() + seconds * 1000));
  const ws = `kit-${randomUUID().slice(0, 8)}`;
  const alice = { adminId: "alice", passphrase: "orbit velvet canyon pickle" };
  const bob = { adminId: "bob", passphrase: "lantern mango tundra seventeen" };
  const bobToken = softwareHmacToken(randomBytes(20));
  let aliceSeed: string;
  const code = () => oathtool(aliceSeed, clock);

  before(async () => {
    hsm = await createTestHsm(["kit-primary", "kit-replacement"]);
    ddb = await useTestDynamoDb();
    vaultDir = await mkdtemp(join(tmpdir(), "amk-vault-"));
    primary = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!));
    replacement = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[1]!));
    events = new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable("kit") });
    const vault = await FileSecretVault.open(vaultDir);
    kits = new KitService({ keyStore: primary, events, vault, alerts, now: () => clock });
  });
  after(async () => {
    await primary?.close();
    await replacement?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    if (vaultDir) await rm(vaultDir, { recursive: true, force: true });
  });

  it("refuses a weak passphrase at enrollment with a clear message and records nothing", async () => {
    await assert.rejects(
      kits.enrollAdministrator({
        workspaceId: "weak-ws",
        adminId: "carol",
        passphrase: "short",
        factor: { type: "totp" },
      }),
      (e: unknown) => e instanceof WeakPassphraseError && /at least 15/.test(e.message),
    );
    assert.equal((await readWorkspace(events, "weak-ws")).version, 0);
  });

  it("provisions: master key, drill key, two administrators, kit v1 in the vault, recorded", async () => {
    const r = await provisionWorkspaceWithKit(
      { keyStore: primary, events, kits },
      {
        workspaceId: ws,
        administrators: [
          { ...alice, factor: { type: "totp" } },
          { ...bob, factor: { type: "hmac-sha1", token: bobToken } },
        ],
      },
    );
    const uri = r.enrollments[0]!.totpUri!;
    assert.match(uri, /^otpauth:\/\/totp\/.*secret=[A-Z2-7]+/);
    aliceSeed = seedOf(uri);
    assert.equal(r.enrollments[1]!.totpUri, undefined);
    assert.equal(r.kit.kitVersion, 1);
    assert.match(r.kit.fingerprint, /^([0-9A-F]{4}-){5}[0-9A-F]{4}$/);
    const kitRecord = r.state.kits[0]!;
    assert.equal(kitRecord.fingerprint, r.kit.fingerprint);
    assert.deepEqual(kitRecord.adminIds, ["alice", "bob"]);
    assert.deepEqual(kitRecord.masterKeys, [
      { keyId: masterKeyId(ws, 1), kcv: await primary.keyCheckValue(masterKeyId(ws, 1)), state: "active" },
    ]);
    assert.equal(r.state.drill?.drillKeyId, `ws-${ws}/drill/1`);
    // The kit holds no plaintext key: no master key or kit secret bytes appear in it in any encoding we can check.
    const kit = readKit(r.kit.bytes);
    assert.equal(kit.header.workspaceId, ws);
    assert.equal(kit.slots.length, 3);
  });

  it("opens with passphrase + a TOTP code from oathtool and recovers the master keys into another token, same KCVs", async () => {
    tick(30);
    const recovered = await kits.recoverMasterKeys(
      {
        workspaceId: ws,
        adminId: "alice",
        passphrase: alice.passphrase,
        factor: { type: "totp", code: await code() },
      },
      replacement,
    );
    const recorded = (await readWorkspace(events, ws)).kits[0]!.masterKeys;
    assert.deepEqual(
      recovered.masterKeys.map((m) => ({ keyId: m.keyId, kcv: m.kcv })),
      recorded.map((m) => ({ keyId: m.keyId, kcv: m.kcv })),
    );
    assert.equal(await replacement.keyCheckValue(masterKeyId(ws, 1)), recorded[0]!.kcv);
    // The recovered key really is the same key: it unwraps what the original wrapped.
    const dek = randomBytes(32);
    const w = await primary.wrapDataKey(masterKeyId(ws, 1), dek, Buffer.from("x"));
    assert.deepEqual(await replacement.unwrapDataKey(masterKeyId(ws, 1), w, Buffer.from("x")), dek);
  });

  it("never accepts a TOTP code twice", async () => {
    const used = await code(); // the step alice just used
    await assert.rejects(
      kits.openKit({
        workspaceId: ws,
        adminId: "alice",
        passphrase: alice.passphrase,
        factor: { type: "totp", code: used },
      }),
      TotpCodeReplayedError,
    );
  });

  it("opens nothing with the passphrase alone or the factor alone", async () => {
    tick(30);
    // Passphrase right, code wrong.
    await assert.rejects(
      kits.openKit({
        workspaceId: ws,
        adminId: "alice",
        passphrase: alice.passphrase,
        factor: { type: "totp", code: "000000" === (await code()) ? "111111" : "000000" },
      }),
      TotpCodeInvalidError,
    );
    // Code right, passphrase wrong.
    await assert.rejects(
      kits.openKit({
        workspaceId: ws,
        adminId: "alice",
        passphrase: "wrong but long passphrase here",
        factor: { type: "totp", code: await code() },
      }),
      KitWrongPassphraseError,
    );
    // Hardware token: wrong token, right passphrase; right token, wrong passphrase.
    await assert.rejects(
      kits.openKit({
        workspaceId: ws,
        adminId: "bob",
        passphrase: bob.passphrase,
        factor: { type: "hmac-sha1", token: softwareHmacToken(randomBytes(20)) },
      }),
      KitWrongFactorError,
    );
    await assert.rejects(
      kits.openKit({
        workspaceId: ws,
        adminId: "bob",
        passphrase: "not bob's passphrase at all",
        factor: { type: "hmac-sha1", token: bobToken },
      }),
      KitWrongPassphraseError,
    );
    // A TOTP code for the token slot is the wrong factor.
    await assert.rejects(
      kits.openKit({
        workspaceId: ws,
        adminId: "bob",
        passphrase: bob.passphrase,
        factor: { type: "totp", code: await code() },
      }),
      KitWrongFactorError,
    );
    // Both right: bob opens and acknowledges.
    const ack = await kits.acknowledgeKit({
      workspaceId: ws,
      adminId: "bob",
      passphrase: bob.passphrase,
      factor: { type: "hmac-sha1", token: bobToken },
    });
    assert.equal(ack.KitVersion, 1);
    assert.equal(ack.Kcvs[0]!.Kcv, await primary.keyCheckValue(masterKeyId(ws, 1)));
  });

  it("locks a slot after 5 failed attempts in a row, with a growing delay and an alert", async () => {
    tick(30);
    const wrong = async () => ((await code()) === "123456" ? "654321" : "123456");
    const attempt = async () =>
      kits.openKit({
        workspaceId: ws,
        adminId: "alice",
        passphrase: alice.passphrase,
        factor: { type: "totp", code: await wrong() },
      });
    // alice has failures from the tests before (a replayed code, a wrong code, a wrong passphrase): make it 5.
    const before = (await readWorkspace(events, ws)).admins.alice!.consecutiveFailures;
    assert.equal(before, 3);
    for (let i = before; i < 5; i++) await assert.rejects(attempt(), TotpCodeInvalidError);
    const state = (await readWorkspace(events, ws)).admins.alice!;
    assert.equal(state.consecutiveFailures, 5);
    assert.equal(Date.parse(state.lockedUntil!) - clock.getTime(), 60_000);
    assert.equal(alerts.raised.filter((a) => a.code === "ADMIN_SLOT_LOCKED").length, 1);
    assert.ok(!JSON.stringify(alerts.raised).includes(alice.passphrase));
    // Locked: even the right code is refused, and the refusal uses up nothing.
    await assert.rejects(
      kits.openKit({
        workspaceId: ws,
        adminId: "alice",
        passphrase: alice.passphrase,
        factor: { type: "totp", code: await code() },
      }),
      FactorLockedError,
    );
    // After the delay: one more failure doubles it.
    tick(61);
    await assert.rejects(attempt(), TotpCodeInvalidError);
    const again = (await readWorkspace(events, ws)).admins.alice!;
    assert.equal(Date.parse(again.lockedUntil!) - clock.getTime(), 120_000);
    assert.equal(alerts.raised.filter((a) => a.code === "ADMIN_SLOT_LOCKED").length, 2);
    // After that delay the right secrets open it and reset the count.
    tick(121);
    await kits.acknowledgeKit({
      workspaceId: ws,
      adminId: "alice",
      passphrase: alice.passphrase,
      factor: { type: "totp", code: await code() },
    });
    assert.equal((await readWorkspace(events, ws)).admins.alice!.consecutiveFailures, 0);
  });

  it("rejects every single-byte change of a real kit, binary and armoured, with a typed error before any key is used", async () => {
    const stored = await FileSecretVault.open(vaultDir).then((v) => v.getSecret(kitSecretName(ws)));
    const bytes = Buffer.from(stored.value);
    const seen = new Map<string, number>();
    for (let i = 0; i < bytes.length; i++) {
      const t = Buffer.from(bytes);
      t[i] = (t[i] ?? 0) ^ 0x01;
      assert.throws(
        () => readKit(t),
        (e: unknown) => {
          assert.ok(e instanceof KitError, `byte ${i}: ${(e as Error)?.name}`);
          seen.set(`${e.code}/${e.check}`, (seen.get(`${e.code}/${e.check}`) ?? 0) + 1);
          return true;
        },
      );
    }
    // Most flips hit a section's payload and fail its checksum; the magic and structure bytes fail their own checks.
    assert.ok(
      (seen.get("KIT_INTEGRITY/section-checksum") ?? 0) > bytes.length * 0.9,
      JSON.stringify([...seen]),
    );
    assert.ok(seen.has("KIT_HEADER/magic") && seen.has("KIT_UNSUPPORTED_VERSION/version"));
    const text = armour(bytes);
    const lines = text.split("\n");
    const dataLine = lines.findIndex((l, i) => i > 5 && l.length === 64);
    for (const col of [0, 17, 63]) {
      const changed = [...lines];
      const l = changed[dataLine]!;
      changed[dataLine] = l.slice(0, col) + (l[col] === "A" ? "B" : "A") + l.slice(col + 1);
      assert.throws(() => readKit(changed.join("\n")), KitError, `armour column ${col}`);
    }
    assert.throws(
      () => readKit(text.replace(`Workspace: ${ws}`, "Workspace: other")),
      (e: unknown) => e instanceof KitError && e.check === "armour",
    );
    assert.equal(readKit(text).fingerprint, readKit(bytes).fingerprint);
  });

  it("re-issues the kit after a rotation with no administrator present; the same passphrase and factor open it", async () => {
    const v2 = masterKeyId(ws, 2);
    const info = await primary.createMasterKey(v2);
    const before = await readWorkspace(events, ws);
    await events.appendToStream(
      workspaceStreamId(ws),
      [
        newEvent(EventTypes.MasterKeyCreated, {
          WorkspaceId: ws,
          KeyId: v2,
          Kcv: info.kcv,
          Extractable: true,
        }),
      ],
      { expectedVersion: before.version },
    );
    const issued = await kits.issueKit(ws, { reason: "rotation" }); // no admins given: taken from the current kit
    assert.equal(issued.kitVersion, 2);
    const kit = readKit(issued.bytes);
    assert.deepEqual(
      kit.slots.filter((s) => s.type === "admin").map((s) => s.adminId),
      ["alice", "bob"],
    );
    tick(30);
    const recovered = await kits.recoverMasterKeys(
      {
        workspaceId: ws,
        adminId: "alice",
        passphrase: alice.passphrase,
        factor: { type: "totp", code: await code() },
      },
      replacement,
    );
    assert.equal(recovered.kitVersion, 2);
    assert.deepEqual(
      recovered.masterKeys.map((m) => [m.keyId, m.kcv, m.imported]),
      [
        [masterKeyId(ws, 1), await primary.keyCheckValue(masterKeyId(ws, 1)), false],
        [v2, info.kcv, true],
      ],
    );
    const opened = await kits.openKit({
      workspaceId: ws,
      adminId: "bob",
      passphrase: bob.passphrase,
      factor: { type: "hmac-sha1", token: bobToken },
    });
    assert.deepEqual(
      opened.body.masterKeys.map((m) => m.state),
      ["decrypt-only", "active"],
    );
    opened.wrapKey.fill(0);
  });

  it("checks the kit through the drill slot inside the HSM: KCVs match the live keys, nothing leaves", async () => {
    const check = await kits.drillCheckKit(ws);
    assert.equal(check.ok, true, check.problems.join("; "));
    assert.equal(check.kitVersion, 2);
    assert.deepEqual(
      check.masterKeys.map((m) => [m.keyId, m.hsmKcv === m.kitKcv && m.kitKcv === m.liveKcv]),
      [
        [masterKeyId(ws, 1), true],
        [masterKeyId(ws, 2), true],
      ],
    );
    // A master key version the kit does not cover is reported.
    const v3 = masterKeyId(ws, 3);
    const info = await primary.createMasterKey(v3);
    const state = await readWorkspace(events, ws);
    await events.appendToStream(
      workspaceStreamId(ws),
      [
        newEvent(EventTypes.MasterKeyCreated, {
          WorkspaceId: ws,
          KeyId: v3,
          Kcv: info.kcv,
          Extractable: true,
        }),
      ],
      { expectedVersion: state.version },
    );
    const stale = await kits.drillCheckKit(ws);
    assert.equal(stale.ok, false);
    assert.match(stale.problems.join("\n"), /mk\/3 is not covered by kit v2/);
  });

  it("refuses a kit in the vault that is not the one recorded at issuance", async () => {
    const vault = await FileSecretVault.open(vaultDir);
    const current = await vault.getSecret(kitSecretName(ws));
    const other = await kits.issueKit(ws, { reason: "test" }); // v3, recorded
    // Put back an old version as current: its fingerprint belongs to v2, but the vault says current.
    await vault.putSecret(kitSecretName(ws), current.value, { labels: ["replayed"] });
    await assert.rejects(
      kits.drillCheckKit(ws),
      (e: unknown) => e instanceof KitIntegrityError && e.check === "vault-version",
    );
    // Restore the real current kit.
    await vault.putSecret(kitSecretName(ws), other.bytes, { labels: ["restored"] });
    assert.equal((await kits.drillCheckKit(ws)).ok, true);
  });

  it("reports the inventory: who received which version, who acknowledged, what is stale", async () => {
    const now = await kits.inventory(ws);
    assert.equal(now.currentKitVersion, 3);
    const byAdmin = Object.fromEntries(now.administrators.map((a) => [a.adminId, a]));
    assert.equal(byAdmin.alice!.receivedKitVersion, 3);
    assert.equal(byAdmin.alice!.lastAcknowledgedVersion, 1);
    assert.equal(byAdmin.alice!.status, "never-acknowledged", "acknowledged v1, not the current v3");
    assert.deepEqual(now.unacknowledgedKitVersions, [2, 3]);
    tick(30);
    await kits.acknowledgeKit({
      workspaceId: ws,
      adminId: "alice",
      passphrase: alice.passphrase,
      factor: { type: "totp", code: await code() },
    });
    assert.equal((await kits.inventory(ws)).administrators.find((a) => a.adminId === "alice")!.status, "ok");
    tick(91 * 86_400);
    const later = await kits.inventory(ws);
    assert.equal(later.administrators.find((a) => a.adminId === "alice")!.status, "stale");
    assert.equal(later.administrators.find((a) => a.adminId === "bob")!.status, "never-acknowledged");
  });

  it("keeps secrets out of the event store", async () => {
    const { events: stream } = await events.readStream(workspaceStreamId(ws));
    const text = JSON.stringify(stream);
    for (const secret of [alice.passphrase, bob.passphrase, aliceSeed])
      assert.equal(text.includes(secret), false);
    const hash = createHash("sha256").update(aliceSeed).digest("hex");
    assert.equal(text.includes(hash), false);
  });

  it("an issuance in flight (kit stored, not yet recorded) does not fail readers; left interrupted, it is reported", async () => {
    const vault = await FileSecretVault.open(vaultDir);
    // A KitService whose KitIssued append fails for good: the kit reaches the vault, the record never comes.
    const refusing = new Proxy(events, {
      get(target, prop, receiver) {
        if (prop === "appendToStream")
          return () => Promise.reject(new Error("simulated crash before KitIssued"));
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const interrupted = new KitService({
      keyStore: primary,
      events: refusing,
      vault,
      alerts,
      now: () => clock,
    });
    const recorded = (await readWorkspace(events, ws)).kits.at(-1)!;
    await assert.rejects(
      interrupted.issueKit(ws, { reason: "interrupted" }),
      /simulated crash before KitIssued/,
    );
    const orphan = readKit((await vault.getSecret(kitSecretName(ws))).value);
    assert.equal(orphan.header.kitVersion, recorded.kitVersion + 1, "the vault is one version ahead");
    // Within the in-flight window: readers get the last recorded kit (its recorded vault version, fingerprint checked).
    const current = await kits.currentKit(ws);
    assert.equal(current.header.kitVersion, recorded.kitVersion);
    assert.equal(current.fingerprint, recorded.fingerprint);
    assert.equal((await kits.drillCheckKit(ws)).ok, true);
    // Much later, still unrecorded: an interrupted issuance, reported with what to do.
    const later = new KitService({
      keyStore: primary,
      events,
      vault,
      alerts,
      now: () => new Date(clock.getTime() + ISSUANCE_IN_FLIGHT_MS + 1000),
    });
    await assert.rejects(
      later.currentKit(ws),
      (e: unknown) =>
        e instanceof KitIntegrityError &&
        e.check === "vault-version" &&
        /interrupted.*issue the kit again/.test(e.message),
    );
    // The next issuance replaces the orphan (its recipients come from the recorded kit).
    const next = await kits.issueKit(ws, { reason: "after the interruption" });
    assert.equal(next.kitVersion, recorded.kitVersion + 1);
    assert.equal((await later.currentKit(ws)).fingerprint, next.fingerprint);
  });
});
