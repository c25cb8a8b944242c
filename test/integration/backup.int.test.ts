/**
 * Event-store backups against DynamoDB Local (no mock of the store): export a workspace of a few hundred documents
 * with a realistic history, verify it, restore it into a new table and compare every stream event for event, the
 * raw items and the census; corrupt the export in many ways and see each refused with its own error before anything
 * is written; refuse a non-empty target; full + increments restored equal the source; no plaintext secret in a backup.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cp, mkdtemp, readFile, readdir, rm, truncate, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ScanCommand } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import { FolderBackupStorage } from "../../core/adapters/backup-folder/folder-backup-storage.js";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import {
  BackupChainError,
  BackupEventGapError,
  BackupFileChecksumError,
  BackupFileMissingError,
  BackupManifestMismatchError,
  BackupManifestTamperedError,
  BackupNotFoundError,
  BackupSecretFieldError,
  BackupStreamMissingError,
  BackupTargetNotEmptyError,
  BackupTruncatedError,
  BackupUntrustedKeyError,
  MANIFEST_FILE,
  backupPublicKeysFromVault,
  backupSignerFromPkcs8,
  backupSignerFromVault,
  exportBackup,
  generateBackupSigningKey,
  importBackup,
  manifestBytes,
  parseManifest,
  signedBytes,
  verifyBackup,
  type BackupManifest,
  type BackupProgress,
  type BackupPublicKey,
  type BackupSigner,
  type ExportBackupResult,
} from "../../core/backup/index.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import { exportHandler, importHandler } from "../../functions/backup/handler.js";
import { deleteEventStoreTable } from "../../core/adapters/dynamodb/table.js";
import { newEvent } from "../../core/eventstore/events.js";
import { documentStreamId, workspaceStreamId } from "../../core/eventstore/stream-id.js";
import type { KeyId } from "../../core/keystore/key-id.js";
import { mapLimit } from "../../core/shared/concurrency.js";
import { leakedSecrets } from "../../workflows/local-runner.js";
import { appendAll, seedWorkspace, wrapRecordFor, type SeededWorkspace } from "../support/backup-seed.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

const DOCUMENTS = 300;

let ddb: TestDynamoDb;
let work: string;
let sourceTable: string;
let source: DynamoDbEventStore;
let seeded: SeededWorkspace;
let other: SeededWorkspace;
let signer: BackupSigner;
let trustedKeys: BackupPublicKey[];
let full: ExportBackupResult;
let fullRoot: string;

before(async () => {
  ddb = await useTestDynamoDb();
  work = await mkdtemp(join(tmpdir(), "amk-backup-test-"));
  sourceTable = await ddb.newTable("amk-backup-src");
  source = new DynamoDbEventStore({ client: ddb.client, tableName: sourceTable });
  seeded = await seedWorkspace({ store: source, documents: DOCUMENTS });
  // Another workspace whose id starts like the first one's: never part of the first one's backup.
  other = await seedWorkspace({ store: source, workspaceId: `${seeded.workspaceId}x`, documents: 12 });
  const vault = await FileSecretVault.open(join(work, "vault"));
  signer = await backupSignerFromVault(vault, { create: true });
  trustedKeys = await backupPublicKeysFromVault(vault);
  fullRoot = join(work, "backups");
  full = await exportBackup({
    source,
    storage: new FolderBackupStorage(fullRoot),
    signer,
    scope: { kind: "workspace", workspaceId: seeded.workspaceId },
    maxEventsPerFile: 150,
  });
});

after(async () => {
  await ddb?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------------------ helpers

async function newStore(prefix = "amk-backup-dst"): Promise<DynamoDbEventStore> {
  return new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable(prefix) });
}

async function scanTable(table: string): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  let startKey: Record<string, never> | undefined;
  do {
    const out = await ddb.client.send(
      new ScanCommand({ TableName: table, ExclusiveStartKey: startKey, ConsistentRead: true }),
    );
    items.push(...(out.Items ?? []).map((i) => unmarshall(i)));
    startKey = out.LastEvaluatedKey as Record<string, never> | undefined;
  } while (startKey !== undefined);
  return items;
}

/** Raw items of one workspace (its streams' items and its events' markers), sorted, as comparable text. */
function workspaceItems(items: Record<string, unknown>[], workspaceId: string): string[] {
  const ws = workspaceStreamId(workspaceId);
  const mine = (s: unknown) => s === ws || String(s).startsWith(`${ws}/doc-`);
  return items
    .filter((i) => mine(i.pk) || (i.kind === "eventId" && mine(i.streamId)))
    .map((i) => JSON.stringify(Object.fromEntries(Object.entries(i).sort(([a], [b]) => (a < b ? -1 : 1)))))
    .sort();
}

async function readManifest(root: string, backupId: string): Promise<BackupManifest> {
  return parseManifest(await readFile(join(root, backupId, MANIFEST_FILE)), backupId);
}

/** Every stream of the manifests, event for event, and the census of the workspace: equal in both stores. */
async function assertSameWorkspace(
  a: DynamoDbEventStore,
  b: DynamoDbEventStore,
  workspace: SeededWorkspace,
  streamIds: Iterable<string>,
): Promise<number> {
  const ids = [...streamIds];
  let events = 0;
  await mapLimit(ids, 8, async (streamId) => {
    const [x, y] = await Promise.all([a.readStream(streamId), b.readStream(streamId)]);
    assert.deepEqual(y.events, x.events, `stream ${streamId}`);
    assert.equal(y.currentVersion, x.currentVersion);
    events += x.events.length;
  });
  for (const keyId of workspace.keyIds) {
    assert.equal(
      await b.countDocumentsByKeyId(workspace.workspaceId, keyId),
      await a.countDocumentsByKeyId(workspace.workspaceId, keyId),
      `census of ${keyId}`,
    );
    const list = async (s: DynamoDbEventStore) => {
      const out: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await s.listDocumentsByKeyId(workspace.workspaceId, keyId, {
          limit: 100,
          ...(cursor ? { cursor } : {}),
        });
        out.push(...page.documents.map((d) => `${d.documentId}:${d.status}:${d.keysVersion}`));
        cursor = page.cursor;
      } while (cursor);
      return out.sort();
    };
    assert.deepEqual(await list(b), await list(a), `documents listed by ${keyId}`);
  }
  assert.deepEqual(
    await b.listKeyIdsInUse(workspace.workspaceId),
    await a.listKeyIdsInUse(workspace.workspaceId),
  );
  for (const documentId of workspace.documentIds.slice(0, 40)) {
    assert.deepEqual(
      await b.getDocumentProjection(workspace.workspaceId, documentId),
      await a.getDocumentProjection(workspace.workspaceId, documentId),
    );
  }
  return events;
}

/** A copy of a backup folder (and of the others of its chain) to corrupt. */
async function copyBackups(ids: readonly string[], from = fullRoot): Promise<string> {
  const root = await mkdtemp(join(work, "case-"));
  for (const id of ids) await cp(join(from, id), join(root, id), { recursive: true });
  return root;
}

/** Re-signs an edited manifest with `by` (an exporter bug, or an insider with the signing key). */
async function resign(root: string, manifest: BackupManifest, by: BackupSigner): Promise<void> {
  const signature = Buffer.from(await by.sign(signedBytes(manifest))).toString("base64");
  const signed = { ...manifest, signature: { ...manifest.signature, keyId: by.keyId, value: signature } };
  await writeFile(join(root, manifest.backupId, MANIFEST_FILE), manifestBytes(signed));
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Rewrites one events file with `edit(lines)` and fixes its entry (bytes, events, SHA-256) and the totals. */
async function editFile(
  root: string,
  manifest: BackupManifest,
  file: string,
  edit: (lines: string[]) => string[],
): Promise<BackupManifest> {
  const path = join(root, manifest.backupId, file);
  const lines = (await readFile(path, "utf8")).split("\n").slice(0, -1);
  const text = Buffer.from(
    edit(lines)
      .map((l) => `${l}\n`)
      .join(""),
    "utf8",
  );
  await writeFile(path, text);
  const files = manifest.files.map((f) =>
    f.name === file
      ? { ...f, bytes: text.length, events: text.toString().split("\n").length - 1, sha256: sha256(text) }
      : f,
  );
  return {
    ...manifest,
    files,
    totals: {
      ...manifest.totals,
      events: files.reduce((n, f) => n + f.events, 0),
      bytes: files.reduce((n, f) => n + f.bytes, 0),
    },
  };
}

// ------------------------------------------------------------------------------------------------ tests

describe("event-store backups (DynamoDB Local)", () => {
  it("exports a workspace, verifies it and restores it into a new table: every stream, item and census equal", async () => {
    const manifest = await readManifest(fullRoot, full.backupId);
    assert.equal(full.streams, DOCUMENTS + 1, "the workspace stream and every document stream");
    assert.equal(manifest.kind, "full");
    assert.deepEqual(manifest.scope, { kind: "workspace", workspaceId: seeded.workspaceId });
    assert.equal(manifest.source.table, sourceTable);
    assert.ok(manifest.files.length >= 3, `split at 150 events: ${manifest.files.length} files`);
    assert.ok(
      Object.keys(manifest.streams).every(
        (s) => s === workspaceStreamId(seeded.workspaceId) || s.startsWith(`ws-${seeded.workspaceId}/doc-`),
      ),
      "no stream of the other workspace",
    );
    assert.deepEqual(manifest.streams[workspaceStreamId(seeded.workspaceId)], {
      count: 2,
      first: 1,
      last: 2,
    });

    const verified = await verifyBackup({
      storage: new FolderBackupStorage(fullRoot),
      backupId: full.backupId,
      trustedKeys,
    });
    assert.equal(verified.events, full.events);
    assert.equal(verified.manifestSha256, full.manifestSha256);
    assert.equal(verified.keyId, signer.keyId);

    const target = await newStore();
    const progress: BackupProgress[] = [];
    const restored = await importBackup({
      storage: new FolderBackupStorage(fullRoot),
      backupId: full.backupId,
      target,
      trustedKeys,
      onProgress: (p) => progress.push(p),
    });
    assert.equal(restored.events, full.events);
    const last = progress.filter((p) => p.phase === "import").at(-1);
    assert.equal(last?.done, full.events);
    assert.equal(last?.total, full.events);
    assert.ok(progress.some((p) => p.phase === "verify"));

    const compared = await assertSameWorkspace(source, target, seeded, Object.keys(manifest.streams));
    assert.equal(compared, full.events);
    // The raw items too: events, heads, markers, projections with their census keys and times.
    const [srcItems, dstItems] = await Promise.all([scanTable(sourceTable), scanTable(target.tableName)]);
    const expected = workspaceItems(srcItems, seeded.workspaceId);
    assert.equal(dstItems.length, expected.length, "the target holds this workspace only");
    assert.deepEqual(workspaceItems(dstItems, seeded.workspaceId), expected);
  });

  it("reports export progress with done, total and rate", async () => {
    const progress: BackupProgress[] = [];
    const r = await exportBackup({
      source,
      storage: new FolderBackupStorage(join(work, "progress")),
      signer,
      scope: { kind: "workspace", workspaceId: other.workspaceId },
      onProgress: (p) => progress.push(p),
    });
    const exported = progress.filter((p) => p.phase === "export");
    assert.ok(exported.length > 0);
    assert.equal(exported.at(-1)?.done, r.events);
    assert.ok(exported.every((p) => p.total === r.events && p.ratePerSecond >= 0));
    assert.equal(progress.filter((p) => p.phase === "list").at(-1)?.done, r.streams);
    assert.equal(r.streams, 13);
  });

  it("holds no plaintext secret: no DEK and no master key in any file of the backup", async () => {
    const dir = join(fullRoot, full.backupId);
    const texts: string[] = [];
    for (const f of await readdir(dir)) texts.push(await readFile(join(dir, f), "utf8"));
    assert.ok(seeded.secrets.length >= 2 + 50 * 5, "the master keys and 250 DEKs are checked");
    assert.deepEqual(leakedSecrets(texts, seeded.secrets), []);
    // The scan does find a secret where there is one (the check is not vacuous).
    const planted = [...texts, Buffer.from(seeded.secrets[7] as Uint8Array).toString("base64")];
    assert.deepEqual(leakedSecrets(planted, seeded.secrets), ["secret #7 as base64"]);
    assert.ok(texts.join("").includes("WrappedDek"), "the wrapped DEKs are there");
  });

  describe("a corrupted backup is refused before anything is written", () => {
    const cases: {
      name: string;
      error: new (...args: never[]) => Error;
      corrupt: (root: string, m: BackupManifest) => Promise<void>;
    }[] = [
      {
        name: "a truncated file",
        error: BackupTruncatedError,
        corrupt: async (root, m) => {
          const f = m.files[1]!;
          await truncate(join(root, m.backupId, f.name), Math.floor(f.bytes / 2));
        },
      },
      {
        name: "a changed byte in a line",
        error: BackupFileChecksumError,
        corrupt: async (root, m) => {
          const path = join(root, m.backupId, m.files[0]!.name);
          const bytes = await readFile(path);
          const at = bytes.indexOf("WrappedDek") + 20;
          bytes[at] = bytes[at] === 0x41 ? 0x42 : 0x41; // one base64 character of a wrapped DEK
          await writeFile(path, bytes);
        },
      },
      {
        name: "a file deleted",
        error: BackupFileMissingError,
        corrupt: async (root, m) => unlink(join(root, m.backupId, m.files[2]!.name)),
      },
      {
        name: "the manifest edited (a stream's count) without re-signing",
        error: BackupManifestTamperedError,
        corrupt: async (root, m) => {
          const [streamId, s] = Object.entries(m.streams)[5]!;
          const edited = {
            ...m,
            streams: { ...m.streams, [streamId]: { ...s, count: s.count + 1, last: s.last + 1 } },
          };
          await writeFile(join(root, m.backupId, MANIFEST_FILE), manifestBytes(edited));
        },
      },
      {
        name: "the manifest pretty-printed (not canonical)",
        error: BackupManifestTamperedError,
        corrupt: async (root, m) =>
          writeFile(join(root, m.backupId, MANIFEST_FILE), JSON.stringify(m, null, 2)),
      },
      {
        name: "the manifest re-signed with another key",
        error: BackupUntrustedKeyError,
        corrupt: async (root, m) => resign(root, m, backupSignerFromPkcs8(generateBackupSigningKey())),
      },
      {
        name: "another key's signature under the trusted key id",
        error: BackupManifestTamperedError,
        corrupt: async (root, m) => {
          const forger = backupSignerFromPkcs8(generateBackupSigningKey());
          const value = Buffer.from(await forger.sign(signedBytes(m))).toString("base64");
          await writeFile(
            join(root, m.backupId, MANIFEST_FILE),
            manifestBytes({ ...m, signature: { ...m.signature, value } }),
          );
        },
      },
      {
        name: "a stream's lines removed (manifest re-signed with the genuine key)",
        error: BackupStreamMissingError,
        corrupt: async (root, m) => {
          const lines = (await readFile(join(root, m.backupId, m.files[1]!.name), "utf8")).split("\n");
          const victim = (JSON.parse(lines[10]!) as { streamId: string }).streamId;
          const edited = await editFile(root, m, m.files[1]!.name, (ls) =>
            ls.filter((l) => (JSON.parse(l) as { streamId: string }).streamId !== victim),
          );
          await resign(root, edited, signer);
        },
      },
      {
        name: "two events of a stream swapped (manifest re-signed)",
        error: BackupEventGapError,
        corrupt: async (root, m) => {
          const file = m.files[0]!.name;
          const edited = await editFile(root, m, file, (ls) => {
            const i = ls.findIndex((l, k) => {
              const a = JSON.parse(l) as { streamId: string };
              const b =
                ls[k + 1] === undefined ? undefined : (JSON.parse(ls[k + 1]!) as { streamId: string });
              return b !== undefined && a.streamId === b.streamId;
            });
            assert.ok(i >= 0, "a stream with two events in the first file");
            return [...ls.slice(0, i), ls[i + 1]!, ls[i]!, ...ls.slice(i + 2)];
          });
          await resign(root, edited, signer);
        },
      },
      {
        name: "an event of a stream the manifest does not list (manifest re-signed)",
        error: BackupManifestMismatchError,
        corrupt: async (root, m) => {
          const edited = await editFile(root, m, m.files[0]!.name, (ls) => {
            const e = JSON.parse(ls[0]!) as Record<string, unknown>;
            const stranger = documentStreamId(seeded.workspaceId, "not-in-the-manifest");
            const data = { ...(e.data as object), AggregateId: "not-in-the-manifest" };
            return [...ls, JSON.stringify({ ...e, streamId: stranger, version: 1, data })];
          });
          await resign(root, edited, signer);
        },
      },
      {
        name: "the manifest deleted",
        error: BackupNotFoundError,
        corrupt: async (root, m) => unlink(join(root, m.backupId, MANIFEST_FILE)),
      },
    ];

    for (const c of cases) {
      it(`${c.name}: ${c.error.name}`, async () => {
        const root = await copyBackups([full.backupId]);
        const m = await readManifest(root, full.backupId);
        await c.corrupt(root, m);
        const storage = new FolderBackupStorage(root);
        await assert.rejects(verifyBackup({ storage, backupId: full.backupId, trustedKeys }), c.error);
        const target = await newStore();
        await assert.rejects(
          importBackup({ storage, backupId: full.backupId, target, trustedKeys }),
          (err: Error) => {
            assert.ok(err instanceof c.error, `${err.name}: ${err.message}`);
            assert.ok(err.message.length > 20 && !/undefined/.test(err.message), err.message);
            return true;
          },
        );
        assert.equal(await target.isEmpty(), true, "nothing was written to the target");
      });
    }
  });

  it("refuses to import into a table that holds any item, and leaves it as it was", async () => {
    const target = await newStore();
    await target.appendToStream(
      workspaceStreamId("someone-else"),
      [
        newEvent(EventTypes.MasterKeyCreated, {
          WorkspaceId: "someone-else",
          KeyId: "ws-someone-else/mk/1",
          Kcv: "ABCDEF",
        }),
      ],
      { expectedVersion: "no_stream" },
    );
    const before = await scanTable(target.tableName);
    await assert.rejects(
      importBackup({
        storage: new FolderBackupStorage(fullRoot),
        backupId: full.backupId,
        target,
        trustedKeys,
      }),
      (err: Error) =>
        err instanceof BackupTargetNotEmptyError &&
        /not empty/.test(err.message) &&
        err.message.includes(target.tableName),
    );
    assert.deepEqual(await scanTable(target.tableName), before);
    // Nor twice into the same table: the second import finds the first one's items.
    const fresh = await newStore();
    await importBackup({
      storage: new FolderBackupStorage(fullRoot),
      backupId: full.backupId,
      target: fresh,
      trustedKeys,
    });
    await assert.rejects(
      importBackup({
        storage: new FolderBackupStorage(fullRoot),
        backupId: full.backupId,
        target: fresh,
        trustedKeys,
      }),
      BackupTargetNotEmptyError,
    );
  });

  it("restores a full backup plus two increments: equal to the source", async () => {
    const table = await ddb.newTable("amk-backup-inc");
    const store = new DynamoDbEventStore({ client: ddb.client, tableName: table });
    const ws = await seedWorkspace({ store, documents: 60, keepDeks: 0 });
    const root = join(work, "incremental");
    const storage = new FolderBackupStorage(root);
    const scope = { kind: "workspace" as const, workspaceId: ws.workspaceId };
    const base = await exportBackup({ source: store, storage, signer, scope, maxEventsPerFile: 40 });

    // After the full backup: new documents, more events on old ones, a workspace event.
    const more = await seedMore(store, ws, 15);
    const inc1 = await exportBackup({
      source: store,
      storage,
      signer,
      scope,
      kind: "incremental",
      baseBackupId: base.backupId,
    });
    const m1 = await readManifest(root, inc1.backupId);
    assert.equal(m1.kind, "incremental");
    assert.deepEqual(m1.base, { backupId: base.backupId, kind: "full", manifestSha256: base.manifestSha256 });
    assert.equal(inc1.events, more.events, "only the events after the base");
    for (const [s, r] of Object.entries(m1.streams)) assert.equal(m1.after[s], r.first - 1);
    assert.equal(m1.after[workspaceStreamId(ws.workspaceId)], 2);

    await seedMore(store, ws, 5);
    const inc2 = await exportBackup({
      source: store,
      storage,
      signer,
      scope,
      kind: "incremental",
      baseBackupId: inc1.backupId,
    });
    // Nothing new: an empty increment is still a valid link.
    const inc3 = await exportBackup({
      source: store,
      storage,
      signer,
      scope,
      kind: "incremental",
      baseBackupId: inc2.backupId,
    });
    assert.equal(inc3.events, 0);

    const verified = await verifyBackup({ storage, backupId: inc3.backupId, trustedKeys });
    assert.deepEqual(
      verified.chain.map((l) => l.backupId),
      [base.backupId, inc1.backupId, inc2.backupId, inc3.backupId],
    );

    const target = await newStore();
    const restored = await importBackup({
      storage,
      backupId: inc3.backupId,
      target,
      trustedKeys,
      batchEvents: 7,
    });
    assert.equal(restored.events, base.events + inc1.events + inc2.events);
    const streams = new Set<string>();
    for (const id of [base.backupId, inc1.backupId, inc2.backupId]) {
      for (const s of Object.keys((await readManifest(root, id)).streams)) streams.add(s);
    }
    await assertSameWorkspace(
      store,
      target,
      { ...ws, documentIds: [...ws.documentIds, ...more.documentIds] },
      streams,
    );
    const [a, b] = await Promise.all([scanTable(table), scanTable(target.tableName)]);
    assert.deepEqual(workspaceItems(b, ws.workspaceId), workspaceItems(a, ws.workspaceId));

    // Chain failures: the base missing; another backup's manifest in the base's place; a base of another scope.
    const noBase = await copyBackups([inc1.backupId], root);
    await assert.rejects(
      verifyBackup({ storage: new FolderBackupStorage(noBase), backupId: inc1.backupId, trustedKeys }),
      BackupChainError,
    );
    const swapped = await copyBackups([inc1.backupId, base.backupId], root);
    await writeFile(
      join(swapped, base.backupId, MANIFEST_FILE),
      await readFile(join(fullRoot, full.backupId, MANIFEST_FILE)),
    );
    const dst = await newStore();
    await assert.rejects(
      importBackup({
        storage: new FolderBackupStorage(swapped),
        backupId: inc1.backupId,
        target: dst,
        trustedKeys,
      }),
      BackupChainError,
    );
    assert.equal(await dst.isEmpty(), true);
    await assert.rejects(
      exportBackup({
        source: store,
        storage,
        signer,
        scope: { kind: "table" },
        kind: "incremental",
        baseBackupId: base.backupId,
      }),
      BackupChainError,
    );
  });

  it("exports the whole table: every workspace", async () => {
    const root = join(work, "table");
    const r = await exportBackup({
      source,
      storage: new FolderBackupStorage(root),
      signer,
      scope: { kind: "table" },
    });
    const m = await readManifest(root, r.backupId);
    assert.equal(r.streams, DOCUMENTS + 1 + 12 + 1);
    assert.ok(m.streams[workspaceStreamId(other.workspaceId)]);
    const target = await newStore();
    await importBackup({ storage: new FolderBackupStorage(root), backupId: r.backupId, target, trustedKeys });
    assert.equal(
      await target.countDocumentsByKeyId(other.workspaceId, other.keyIds[0]!),
      await source.countDocumentsByKeyId(other.workspaceId, other.keyIds[0]!),
    );
  });

  it("the export function writes to AMK_BACKUP_DIR, signed with the vault's key; refuses bad input", async () => {
    Object.assign(process.env, {
      AMK_EVENT_TABLE: sourceTable,
      AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
      AMK_VAULT_DIR: join(work, "vault"),
      AMK_BACKUP_DIR: join(work, "function"),
      AMK_BACKUP_EVENTS_PER_FILE: "5",
    });
    const fn = await exportHandler({ workspaceId: other.workspaceId, kind: "full" });
    assert.equal(fn.keyId, signer.keyId, "the key created in the vault by the first export");
    assert.equal(fn.streams, 13);
    assert.equal(fn.files, Math.ceil(fn.events / 5));
    const inc = await exportHandler({
      workspaceId: other.workspaceId,
      kind: "incremental",
      baseBackupId: fn.backupId,
    });
    assert.equal(inc.events, 0);
    assert.equal(inc.baseBackupId, fn.backupId);
    const v = await verifyBackup({
      storage: new FolderBackupStorage(join(work, "function")),
      backupId: inc.backupId,
      trustedKeys,
    });
    assert.equal(v.chain.length, 2);
    assert.equal(JSON.stringify(fn).includes("WrappedDek"), false);
    for (const bad of [
      { kind: "incremental" },
      { kind: "full", baseBackupId: fn.backupId },
      { kind: "full", workspaceId: "not valid!" },
      { kind: "weekly" },
      { kind: "full", extra: 1 },
    ]) {
      await assert.rejects(exportHandler(bad), InvalidInputError, JSON.stringify(bad));
    }

    // The import function: into a new table only, the chain verified first; never the live table, never twice.
    const target = `amk-backup-fn-${Date.now().toString(36)}`;
    const imported = await importHandler({ backupId: inc.backupId, targetTable: target });
    assert.equal(imported.events, fn.events);
    assert.equal(imported.streams, fn.streams);
    const restored = new DynamoDbEventStore({ client: ddb.client, tableName: target });
    const ws = workspaceStreamId(other.workspaceId);
    assert.deepEqual((await restored.readStream(ws)).events, (await source.readStream(ws)).events);
    await assert.rejects(
      importHandler({ backupId: inc.backupId, targetTable: target }),
      BackupTargetNotEmptyError,
    );
    await assert.rejects(
      importHandler({ backupId: inc.backupId, targetTable: sourceTable }),
      InvalidInputError,
    );
    await assert.rejects(importHandler({ backupId: "nope", targetTable: "amk-x-1" }), InvalidInputError);
    await deleteEventStoreTable(ddb.client, target);
  });

  it("refuses to export an event with a field named like a plaintext secret, and writes no manifest", async () => {
    const store = await newStore("amk-backup-secret");
    await store.appendToStream(
      workspaceStreamId("leaky"),
      [newEvent("SomethingRecorded", { WorkspaceId: "leaky", Details: { Passphrase: "hunter2" } })],
      { expectedVersion: "no_stream" },
    );
    const root = join(work, "leaky");
    await assert.rejects(
      exportBackup({
        source: store,
        storage: new FolderBackupStorage(root),
        signer,
        scope: { kind: "table" },
      }),
      (err: Error) =>
        err instanceof BackupSecretFieldError &&
        !err.message.includes("hunter2") &&
        /Passphrase/.test(err.message),
    );
    const written = await readdir(root).catch(() => []);
    for (const d of written) assert.ok(!(await readdir(join(root, d))).includes(MANIFEST_FILE));
  });
});

/** More history after a backup: `n` new documents, a re-wrap and a deletion on old ones, a workspace event. */
async function seedMore(
  store: DynamoDbEventStore,
  ws: SeededWorkspace,
  n: number,
): Promise<{ documentIds: string[]; events: number }> {
  const mk = Buffer.alloc(32, 7);
  const documentIds = Array.from({ length: n }, (_, i) => `later-${n}-${i}`);
  const [k1, k2] = ws.keyIds as [KeyId, KeyId];
  await appendAll(
    store,
    documentIds.map((d) => ({
      streamId: documentStreamId(ws.workspaceId, d),
      events: [
        wrapRecordFor(
          ws.workspaceId,
          d,
          k2,
          mk,
          Array.from({ length: 5 }, () => Buffer.alloc(32, 1)),
        ),
      ],
      expectedVersion: "no_stream" as const,
    })),
  );
  let events = n;
  for (const [i, d] of ws.documentIds.slice(0, 4).entries()) {
    const streamId = documentStreamId(ws.workspaceId, d);
    const { currentVersion } = await store.readStream(streamId, { limit: 1 });
    const e =
      i % 2 === 0
        ? wrapRecordFor(
            ws.workspaceId,
            d,
            k1,
            mk,
            Array.from({ length: 5 }, () => Buffer.alloc(32, 2)),
          )
        : newEvent(EventTypes.DocumentDeleted, {
            AggregateId: d,
            WorkspaceId: ws.workspaceId,
            OccurredOn: new Date().toISOString(),
          });
    await store.appendToStream(streamId, [e], { expectedVersion: currentVersion ?? 0 });
    events += 1;
  }
  const wsStream = workspaceStreamId(ws.workspaceId);
  const head = (await store.readStream(wsStream, { limit: 1 })).currentVersion ?? 0;
  await store.appendToStream(
    wsStream,
    [
      newEvent(EventTypes.MasterKeyStateChanged, {
        WorkspaceId: ws.workspaceId,
        KeyId: k1,
        From: "active",
        To: "decrypt-only",
        Reason: `test ${n}`,
      }),
    ],
    { expectedVersion: head },
  );
  return { documentIds, events: events + 1 };
}
