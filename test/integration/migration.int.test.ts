/**
 * Migration of an ArquivoMate installation on the real engines (SoftHSM2, DynamoDB Local, the file vault), with
 * backups from the independent generator (test/support/arquivomate-backup-generator.ts): a few thousand documents
 * migrated so that every DEK unwraps to the original under the new master key, the legacy key retired after a census
 * of zero, the kit covering the new key, artifact files decrypting; the bare-array variant; a dry run and every bad
 * input writing nothing; crashes at many points resumed to the same end state without a duplicate record.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ScanCommand } from "@aws-sdk/client-dynamodb";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { decryptContent } from "../../core/content/arquivomate-v2.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { WrapFormats } from "../../core/datakeys/wrap-format.js";
import { EventTypes, type DocumentEncryptionKeysAddedData } from "../../core/eventstore/catalogue.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { documentStreamId, workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { softwareHmacToken } from "../../core/factors/hmac-token.js";
import { KitService } from "../../core/kit/kit-service.js";
import { drillKeyId, masterKeyId } from "../../core/keystore/key-id.js";
import {
  BackupChecksumError,
  CountMismatchError,
  DuplicateItemError,
  LegacyKeyMismatchError,
  MalformedBackupError,
  MigrationStateError,
  WorkspaceConflictError,
} from "../../core/migration/errors.js";
import { formatMigrationReport, migrateArquivoMate } from "../../core/migration/command.js";
import { keyCheckValue } from "../../core/migration/legacy-key.js";
import {
  migratedEventId,
  MigrationService,
  type MigrateInput,
  type MigrationPhase,
  type MigrationResult,
} from "../../core/migration/migration-service.js";
import { RotationService } from "../../core/rotation/rotation-service.js";
import type { AdministratorToEnroll } from "../../core/workspaces/provision-with-kit.js";
import { provisionWorkspaceWithKit } from "../../core/workspaces/provision-with-kit.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import {
  backupZip,
  checksumLine,
  clone,
  generateBackup,
  legacyWrap,
  serialize,
  writeArtifactFiles,
  type GeneratedBackup,
} from "../support/arquivomate-backup-generator.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const PASSPHRASE = "granite meadow violin harbor";
const admin = (adminId = "ops"): AdministratorToEnroll => ({
  adminId,
  passphrase: PASSPHRASE,
  factor: { type: "hmac-sha1", token: softwareHmacToken(randomBytes(20)) },
});

/** An event store that fails the next append to a workspace stream once (a crash between HSM work and its record). */
class FlakyEvents {
  failNextWorkspaceAppend = false;
  constructor(private readonly inner: EventStore) {}
  wrap(): EventStore {
    return new Proxy(this.inner, {
      get: (target, prop, receiver) => {
        if (prop === "appendToStream") {
          return async (streamId: string, ...rest: unknown[]) => {
            if (this.failNextWorkspaceAppend && !streamId.includes("/doc-")) {
              this.failNextWorkspaceAppend = false;
              throw new Error("simulated crash before the workspace append");
            }
            return (target.appendToStream as (...a: unknown[]) => Promise<unknown>).call(
              target,
              streamId,
              ...rest,
            );
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }
}

interface Engines {
  events: DynamoDbEventStore;
  dataKeys: DataKeyService;
  kits: KitService;
  rotation: RotationService;
  migration: MigrationService;
  flaky: FlakyEvents;
  vaultDir: string;
  tableName: string;
}

describe("migration of an ArquivoMate installation", () => {
  let hsm: TestHsm;
  let ddb: TestDynamoDb;
  let ks: Pkcs11KeyStore;
  const dirs: string[] = [];
  const alerts = new RecordingAlerts();

  async function engines(prefix: string): Promise<Engines> {
    const vaultDir = await mkdtemp(join(tmpdir(), `amk-mig-vault-`));
    dirs.push(vaultDir);
    const tableName = await ddb.newTable(prefix);
    const events = new DynamoDbEventStore({ client: ddb.client, tableName });
    const vault = await FileSecretVault.open(vaultDir);
    const kits = new KitService({ keyStore: ks, events, vault, alerts });
    const dataKeys = new DataKeyService({ keyStore: ks, events });
    const rotation = new RotationService({ keyStore: ks, events, kits, alerts, writerSettleMs: 0 });
    const flaky = new FlakyEvents(events);
    const migration = new MigrationService({ keyStore: ks, events: flaky.wrap(), kits, rotation, dataKeys });
    return { events, dataKeys, kits, rotation, migration, flaky, vaultDir, tableName };
  }

  async function tempDir(prefix: string): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  }

  /** The end state every migration must reach, checked document by document. */
  async function assertMigrated(
    e: Engines,
    ws: string,
    g: GeneratedBackup,
    result: MigrationResult,
  ): Promise<void> {
    const v1 = masterKeyId(ws, 1);
    const v2 = masterKeyId(ws, 2);
    const r = result.report;
    assert.equal(r.ok, true, JSON.stringify({ failures: r.failures.slice(0, 3), census: r.census }));
    assert.equal(r.legacyKeyNoLongerNeeded, true);
    assert.match(r.conclusion, /the legacy key is no longer needed; retire it from configuration/);
    assert.equal(r.documents, g.documents.length);
    assert.equal(r.artifacts, g.artifactCount);
    assert.deepEqual(r.failures, []);
    assert.equal(r.census?.remaining, 0);
    assert.equal(r.activeKeyId, v2);

    // The workspace: mk/1 is the legacy key (KCV, origin), retired; mk/2 active; kits v1 [1], v2 [1,2], v3 [2].
    const state = await readWorkspace(e.events, ws);
    assert.deepEqual(
      state.keys.map((k) => [k.keyId, k.state]),
      [
        [v1, "retired"],
        [v2, "active"],
      ],
    );
    assert.equal(state.keys[0]!.kcv, keyCheckValue(g.legacyKey));
    assert.equal((await ks.findMasterKey(v1))?.kcv, keyCheckValue(g.legacyKey));
    const { events: wsEvents } = await e.events.readStream(workspaceStreamId(ws));
    const created = wsEvents.filter((x) => x.type === EventTypes.MasterKeyCreated);
    assert.equal(created.length, 2, "each master key version recorded once");
    assert.equal(created[0]!.data.Origin, "imported-legacy");
    assert.equal(created[0]!.data.Kcv, keyCheckValue(g.legacyKey));
    assert.deepEqual(
      state.kits.map((k) => k.masterKeys.map((m) => m.keyId)),
      [[v1], [v1, v2], [v2]],
      "kit v1 carries the legacy key while it is live, the last kit only mk/2",
    );
    assert.equal(state.rotation?.status, "completed");
    assert.equal((await e.kits.currentKit(ws)).header.kitVersion, 3);
    assert.equal(state.canaries.length, 3);
    assert.equal(await e.events.countDocumentsByKeyId(ws, v1), 0, "census: nothing on the legacy key");
    assert.ok(!(await e.events.listKeyIdsInUse(ws)).includes(v1));

    // Every document: exactly the legacy record then the re-wrap record; every DEK the original, now under mk/2.
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < g.documents.length; i = next++) {
          const d = g.documents[i]!;
          const { events: stream } = await e.events.readStream(documentStreamId(ws, d.documentId));
          assert.deepEqual(
            stream.map((x) => [x.type, x.data.KeyId, x.data.WrapFormat]),
            [
              [EventTypes.DocumentEncryptionKeysAdded, v1, WrapFormats.ArquivoMateLegacy],
              [EventTypes.DocumentEncryptionKeysAdded, v2, WrapFormats.AmkGcmV1],
            ],
            d.documentId,
          );
          assert.equal(stream[0]!.eventId, migratedEventId(ws, d.current.eventId));
          const legacy = stream[0]!.data as DocumentEncryptionKeysAddedData;
          assert.deepEqual(
            legacy.Artifacts.map((a) => a.WrappedDek),
            d.current.artifacts.map((a) => a.WrappedDek),
          );
          const keys = await e.dataKeys.decryptDataKeys({
            workspaceId: ws,
            documentId: d.documentId,
            artifacts: d.current.artifacts.map((a) => a.artifact),
          });
          assert.equal(keys.keyId, v2);
          assert.equal(keys.record.WrapFormat, WrapFormats.AmkGcmV1);
          assert.deepEqual(
            keys.keys.map((k) => sha(k.plaintext)),
            d.current.artifacts.map((a) => sha(a.dek)),
            d.documentId,
          );
          for (const k of keys.keys) k.plaintext.fill(0);
        }
      }),
    );
  }

  before(async () => {
    hsm = await createTestHsm(["migration"]);
    ddb = await useTestDynamoDb();
    ks = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!, { poolSize: 6 }));
  });
  after(async () => {
    await ks?.close();
    await ddb?.cleanup();
    await hsm?.cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it("migrates 2,000 documents: every DEK unwraps to the original under mk/2, mk/1 retired, kit on mk/2, artifacts decrypt", async () => {
    const e = await engines("migration");
    const ws = `mig-${randomUUID().slice(0, 8)}`;
    const g = generateBackup({
      documents: 2000,
      supersededEvery: 40,
      artifactsOf: (i) => (i % 3 === 0 ? ["file", "metadata", "thumb"] : ["file", "preview"]),
    });
    const artifactsDir = await tempDir("amk-mig-enc-");
    const written = await writeArtifactFiles(artifactsDir, g.documents, { count: 40 });
    const phases = new Set<MigrationPhase>();
    let lastRewrap = { done: 0, total: 0 };
    const t0 = Date.now();
    const result = await e.migration.migrate({
      workspaceId: ws,
      backup: g.zip,
      legacyKey: Buffer.from(g.legacyKey),
      administrators: [admin("ops"), admin("cto")],
      artifactsDir,
      sampleSize: 30,
      onProgress: (p) => {
        phases.add(p.phase);
        if (p.phase === "rewrap") lastRewrap = { done: p.done, total: p.total };
        assert.ok(p.rate >= 0 && p.done <= p.total);
      },
    });
    const ms = Date.now() - t0;
    console.log(
      `# migrated ${g.documents.length} documents (${g.artifactCount} DEKs) in ${ms} ms: ${result.report.phases.map((p) => `${p.phase} ${p.ms}`).join(", ")}`,
    );
    await assertMigrated(e, ws, g, result);
    assert.deepEqual([...phases].sort(), ["artifacts", "import-records", "rewrap", "verify"]);
    assert.deepEqual(lastRewrap, { done: 2000, total: 2000 });
    assert.equal(result.report.records.appended, 2000);
    assert.equal(result.report.rewrapped, 2000);
    assert.equal(result.report.backup.superseded, 50);
    assert.deepEqual(
      result.enrollments.map((x) => x.adminId),
      ["ops", "cto"],
    );

    // The sample of artifact files decrypted (HMAC checked) with the migrated keys.
    const checks = result.report.artifactChecks!;
    assert.equal(checks.files, written.length);
    assert.equal(checks.checked, 30);
    assert.equal(checks.failed, 0, JSON.stringify(checks.results.filter((c) => !c.ok)));
    assert.ok(checks.results.every((c) => c.keyId === masterKeyId(ws, 2)));
    // And every written file, independently: content as written.
    for (const w of written) {
      const keys = await e.dataKeys.decryptDataKeys({
        workspaceId: ws,
        documentId: w.documentId,
        artifacts: [w.artifact],
      });
      const plain = decryptContent(keys.keys[0]!.plaintext, await readFile(join(artifactsDir, w.path)));
      assert.equal(sha(plain), w.contentSha256, w.path);
      keys.keys[0]!.plaintext.fill(0);
    }

    // A re-run of the finished migration is a replay: nothing new anywhere.
    const wsVersion = (await readWorkspace(e.events, ws)).version;
    const again = await e.migration.migrate({
      workspaceId: ws,
      backup: g.zip,
      legacyKey: Buffer.from(g.legacyKey),
      administrators: [],
    });
    assert.equal(again.report.ok, true);
    assert.deepEqual(again.report.records, { appended: 0, replayed: 2000, conflicts: 0 });
    assert.equal(again.report.rewrapped, 0);
    assert.equal((await readWorkspace(e.events, ws)).version, wsVersion);

    // A backup exported later (a document keyed after the migration) is refused, not recorded on the retired key.
    const later = generateBackup({ documents: 1, legacyKey: g.legacyKey });
    await assert.rejects(
      e.migration.migrate({ workspaceId: ws, backup: later.zip, legacyKey: g.legacyKey, administrators: [] }),
      (err: unknown) => err instanceof MigrationStateError && /not migrated/.test(err.message),
    );
  });

  it("migrates the bare-array variant of the backup", async () => {
    const e = await engines("migration-bare");
    const ws = `bare-${randomUUID().slice(0, 8)}`;
    const g = generateBackup({ documents: 120, shape: "bare-array", supersededEvery: 7, upperCaseIds: true });
    const artifactsDir = await tempDir("amk-mig-enc-");
    await writeArtifactFiles(artifactsDir, g.documents, { count: 10, layout: "nested" });
    const result = await e.migration.migrate({
      workspaceId: ws,
      backup: g.zip,
      legacyKey: g.legacyKey,
      administrators: [admin()],
      artifactsDir,
    });
    assert.equal(result.report.backup.shape, "bare-array");
    await assertMigrated(e, ws, g, result);
    assert.equal(result.report.artifactChecks?.failed, 0);
  });

  describe("writes nothing when it must not", () => {
    let e: Engines;
    const ws = `neg-${randomUUID().slice(0, 8)}`;
    const g = generateBackup({ documents: 40, supersededEvery: 5 });
    const run = (over: Partial<MigrateInput>) =>
      e.migration.migrate({
        workspaceId: ws,
        backup: g.zip,
        legacyKey: g.legacyKey,
        administrators: [admin()],
        ...over,
      });

    before(async () => {
      e = await engines("migration-neg");
    });

    async function assertNothingWritten(): Promise<void> {
      const scan = await ddb.client.send(new ScanCommand({ TableName: e.tableName, Select: "COUNT" }));
      assert.equal(scan.Count, 0, "the event store table is empty");
      assert.deepEqual(await ks.listMasterKeys(ws), [], "no master key in the HSM");
      assert.equal(await ks.getDrillKey(drillKeyId(ws, 1)), undefined, "no drill key in the HSM");
      assert.deepEqual(await readdir(e.vaultDir), [], "the vault is empty");
    }

    it("dry run: verifies the backup, every DEK and the artifact files, and writes nothing", async () => {
      const artifactsDir = await tempDir("amk-mig-enc-");
      await writeArtifactFiles(artifactsDir, g.documents, { count: 5 });
      const seen: MigrationPhase[] = [];
      const { report } = await run({
        dryRun: true,
        artifactsDir,
        onPhase: (p, ev) => ev === "start" && seen.push(p),
      });
      assert.equal(report.ok, true, JSON.stringify(report.failures));
      assert.equal(report.dryRun, true);
      assert.equal(report.deksVerified, g.artifactCount);
      assert.equal(report.legacyKey.kcv, keyCheckValue(g.legacyKey));
      assert.equal(report.artifactChecks?.failed, 0);
      assert.equal(report.legacyKeyNoLongerNeeded, false);
      assert.match(report.conclusion, /nothing was written/);
      assert.deepEqual(seen, ["verify", "workspace", "artifacts"]);
      await assertNothingWritten();
    });

    it("dry run: a wrong legacy key is caught by unwrapping, with the streams named", async () => {
      await assert.rejects(run({ dryRun: true, legacyKey: randomBytes(32) }), (err: unknown) => {
        assert.ok(err instanceof LegacyKeyMismatchError);
        assert.match(err.message, /unwraps none of the backup's \d+ DEKs/);
        assert.equal(err.failures.length, g.artifactCount);
        assert.ok(err.failures.every((f) => g.documents.some((d) => d.documentId === f.documentId)));
        return true;
      });
      // One record wrapped under another key: named precisely.
      const v = clone(g.value) as {
        items: {
          streamId: string;
          event: { Artifacts: { Artifact: string; WrappedDek: string; WrapNonce: string }[] };
        }[];
      };
      const victim = v.items[7]!;
      Object.assign(
        victim.event.Artifacts[0]!,
        legacyWrap(randomBytes(32), victim.event.Artifacts[0]!.Artifact, randomBytes(32)),
      );
      await assert.rejects(run({ dryRun: true, backup: backupZip(serialize(v)) }), (err: unknown) => {
        assert.ok(err instanceof LegacyKeyMismatchError);
        assert.equal(err.failures.length, 1);
        assert.equal(err.failures[0]!.documentId, victim.streamId);
        assert.match(err.message, new RegExp(`does not unwrap 1 of .*${victim.streamId}`));
        return true;
      });
      await assertNothingWritten();
    });

    it("real run: tampered ZIP, wrong key, malformed JSON, duplicate items, itemCount mismatch: typed errors, nothing written", async () => {
      const json = Buffer.from(g.json);
      json[300] = json[300]! ^ 0x02;
      await assert.rejects(
        run({ backup: backupZip(json, { checksum: checksumLine(g.json) }) }),
        BackupChecksumError,
      );
      await assert.rejects(run({ legacyKey: randomBytes(32) }), LegacyKeyMismatchError);
      await assert.rejects(
        run({ backup: backupZip(Buffer.from('{"formatVersion":"1","items":[{')) }),
        MalformedBackupError,
      );
      const dup = clone(g.value) as { itemCount: number; items: unknown[] };
      dup.items.push(clone(dup.items[3]));
      dup.itemCount += 1;
      await assert.rejects(run({ backup: backupZip(serialize(dup)) }), DuplicateItemError);
      const count = clone(g.value) as { itemCount: number };
      count.itemCount -= 1;
      await assert.rejects(run({ backup: backupZip(serialize(count)) }), CountMismatchError);
      await assert.rejects(run({ administrators: [] }), /at least one administrator/);
      await assertNothingWritten();
    });
  });

  it("refuses a workspace already provisioned with another key, and changes nothing in it", async () => {
    const e = await engines("migration-conflict");
    const ws = `prov-${randomUUID().slice(0, 8)}`;
    await provisionWorkspaceWithKit(
      { keyStore: ks, events: e.events, kits: e.kits },
      { workspaceId: ws, administrators: [admin()] },
    );
    const before = await readWorkspace(e.events, ws);
    const g = generateBackup({ documents: 5 });
    for (const dryRun of [true, false]) {
      await assert.rejects(
        e.migration.migrate({
          workspaceId: ws,
          backup: g.zip,
          legacyKey: g.legacyKey,
          administrators: [admin("x")],
          dryRun,
        }),
        (err: unknown) =>
          err instanceof WorkspaceConflictError && /already provisioned.*new workspace id/.test(err.message),
      );
    }
    assert.equal((await readWorkspace(e.events, ws)).version, before.version);
    assert.equal(await e.events.countDocumentsByKeyId(ws, masterKeyId(ws, 1)), 0);
  });

  it("the command reads the two files (key as Encryption:MasterKeyBase64), warns about a readable key file", async () => {
    const e = await engines("migration-cmd");
    const ws = `cmd-${randomUUID().slice(0, 8)}`;
    const g = generateBackup({ documents: 30, shape: "bare-array" });
    const dir = await tempDir("amk-mig-cmd-");
    await writeFile(join(dir, "backup.zip"), g.zip);
    await writeFile(join(dir, "master.key"), `${g.legacyKey.toString("base64")}\n`);
    await chmod(join(dir, "master.key"), 0o644);
    const deps = { keyStore: ks, events: e.events, kits: e.kits, rotation: e.rotation, dataKeys: e.dataKeys };
    const options = {
      backupFile: join(dir, "backup.zip"),
      masterKeyFile: join(dir, "master.key"),
      workspace: ws,
    };
    const dry = await migrateArquivoMate(deps, { ...options, dryRun: true });
    assert.equal(dry.report.ok, true);
    assert.match(dry.report.warnings[0]!, /readable by group or others .*chmod 600/);
    assert.deepEqual(await ks.listMasterKeys(ws), []);
    await chmod(join(dir, "master.key"), 0o600);
    const real = await migrateArquivoMate(deps, { ...options, administrators: [admin()] });
    assert.equal(real.report.ok, true);
    const text = formatMigrationReport(real.report);
    assert.match(text, /Migration into workspace cmd-.*: OK/);
    assert.match(text, /census: 0 records on ws-cmd-[0-9a-f]+\/mk\/1/);
    assert.match(text, /the legacy key is no longer needed; retire it from configuration/);
    assert.ok(!text.includes(g.legacyKey.toString("base64")));
  });

  it("never overwrites a document that already has other keys: reported, and the legacy key is kept", async () => {
    const e = await engines("migration-clash");
    const ws = `clash-${randomUUID().slice(0, 8)}`;
    const g = generateBackup({ documents: 20 });
    const victim = g.documents[4]!.documentId;
    const stop = (p: MigrationPhase, ev: string) => {
      if (p === "import-records" && ev === "start")
        throw new Error("simulated crash: stop before the import");
    };
    const input = { workspaceId: ws, backup: g.zip, legacyKey: g.legacyKey, administrators: [admin()] };
    await assert.rejects(e.migration.migrate({ ...input, onPhase: stop }), /simulated crash/);
    // Meanwhile an ingestion keyed the same document id natively (under the new active key).
    const native = await e.dataKeys.generateDataKeys({
      workspaceId: ws,
      documentId: victim,
      artifacts: ["file"],
      idempotencyKey: "x",
    });
    native.keys[0]!.plaintext.fill(0);
    const { report } = await e.migration.migrate({ ...input, administrators: [] });
    assert.equal(report.ok, false);
    assert.equal(report.legacyKeyNoLongerNeeded, false);
    assert.equal(report.records.conflicts, 1);
    assert.deepEqual(
      report.failures.map((f) => f.documentId),
      [victim],
    );
    assert.match(report.conclusion, /keep the legacy key/);
    const { events: stream } = await e.events.readStream(documentStreamId(ws, victim));
    assert.equal(stream.length, 1, "the native record is untouched");
    assert.equal(stream[0]!.data.WrapFormat, WrapFormats.AmkGcmV1);
  });

  it("resumes after crashes at every phase and ends in the same state with no duplicate record", async () => {
    const e = await engines("migration-crash");
    const ws = `crash-${randomUUID().slice(0, 8)}`;
    const g = generateBackup({ documents: 300, supersededEvery: 10 });
    const input = (over: Partial<MigrateInput> = {}): MigrateInput => ({
      workspaceId: ws,
      backup: g.zip,
      legacyKey: g.legacyKey,
      administrators: [admin()],
      batchSize: 25,
      ...over,
    });
    const crash = (label: string) => {
      throw new Error(`simulated crash: ${label}`);
    };
    const crashes: string[] = [];
    const attempt = async (label: string, over: Partial<MigrateInput>) => {
      await assert.rejects(e.migration.migrate(input(over)), (err: unknown) => {
        assert.match((err as Error).message, /simulated crash/, String(err));
        return true;
      });
      crashes.push(label);
    };

    // 1. Killed between the HSM import and its record: the key is in the HSM, the event store knows nothing.
    e.flaky.failNextWorkspaceAppend = true;
    await attempt("after the HSM import", {});
    assert.ok(await ks.findMasterKey(masterKeyId(ws, 1)));
    assert.equal((await readWorkspace(e.events, ws)).keys.length, 0);
    // 2. Killed between an enrollment and the first kit: that administrator cannot be put into a kit any more.
    await attempt("after an enrollment", { onEnrollment: () => crash("enrolled") });
    await assert.rejects(e.migration.migrate(input()), (err: unknown) => {
      assert.ok(err instanceof MigrationStateError);
      assert.match(
        err.message,
        /administrator ops was enrolled by an interrupted run.*another administrator id/,
      );
      return true;
    });
    const admins = [admin("ops-2")];
    // 3. Killed before the rotation starts, 4. in the middle of the import (after 3 batches), 5. between the import
    //    and the re-wrap, 6. in the middle of the re-wrap, 7. before the rotation completes, 8. before the census.
    await attempt("before rotate", {
      administrators: admins,
      onPhase: (p, ev) => p === "rotate" && ev === "start" && crash(p),
    });
    await attempt("mid import", {
      administrators: admins,
      onProgress: (p) => p.phase === "import-records" && p.done >= 75 && crash("import"),
    });
    const partway = await e.events.countDocumentsByKeyId(ws, masterKeyId(ws, 1));
    assert.ok(partway >= 75 && partway < 300, `part of the records imported (${partway})`);
    await attempt("before rewrap", {
      administrators: admins,
      onPhase: (p, ev) => p === "rewrap" && ev === "start" && crash(p),
    });
    await attempt("mid rewrap", {
      administrators: admins,
      shardConcurrency: 2,
      onProgress: (p) => p.phase === "rewrap" && p.done >= 100 && crash("rewrap"),
    });
    const left = await e.events.countDocumentsByKeyId(ws, masterKeyId(ws, 1));
    assert.ok(left > 0 && left < 300, `part of the documents re-wrapped (${left} left)`);
    await attempt("before complete", {
      administrators: admins,
      onPhase: (p, ev) => p === "complete" && ev === "start" && crash(p),
    });
    await attempt("before census", {
      administrators: admins,
      onPhase: (p, ev) => p === "census" && ev === "start" && crash(p),
    });
    assert.equal(crashes.length, 8);

    const result = await e.migration.migrate(input({ administrators: admins }));
    await assertMigrated(e, ws, g, result);
    // Only the kit issued with ops-2 exists (three versions): the interrupted enrollment of ops is in no kit.
    const state = await readWorkspace(e.events, ws);
    assert.ok(state.kits.every((k) => k.adminIds.join() === "ops-2"));
    assert.equal(alerts.raised.length, 0);
  });
});
