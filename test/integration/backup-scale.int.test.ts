/**
 * Backups at the scale on DynamoDB Local: a workspace of 10,000 documents (one wrap record of five artifacts
 * each, seeded straight into the table in the adapter's layout) exported, verified and restored into a new table; the
 * census and a sample of streams equal the source's. Prints the rates (docs/s); no assertion on time. The 100,000
 * documents run is `npm run bench:backup` (docs/performance.md).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, it } from "node:test";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { FolderBackupStorage } from "../../core/adapters/backup-folder/folder-backup-storage.js";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import {
  backupSignerFromPkcs8,
  exportBackup,
  generateBackupSigningKey,
  importBackup,
} from "../../core/backup/index.js";
import { documentStreamId } from "../../core/eventstore/stream-id.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import { mapLimit } from "../../core/shared/concurrency.js";
import { seedRawDocuments } from "../support/backup-seed.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";

const DOCUMENTS = 10_000;

let ddb: TestDynamoDb;
let work: string;

before(async () => {
  ddb = await useTestDynamoDb();
  work = await mkdtemp(join(tmpdir(), "amk-backup-scale-"));
});
after(async () => {
  await ddb?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

it(`exports a workspace of ${DOCUMENTS.toLocaleString("en-US")} documents and restores it into a new table`, async (t) => {
  const workspaceId = `scale-${randomUUID().slice(0, 8)}`;
  const keyId = masterKeyId(workspaceId, 1);
  const source = new DynamoDbEventStore({
    client: ddb.client,
    tableName: await ddb.newTable("amk-backup-scale"),
  });
  const doc = DynamoDBDocumentClient.from(ddb.client);
  const t0 = performance.now();
  const documentIds = await seedRawDocuments(doc, source.tableName, workspaceId, DOCUMENTS);
  t.diagnostic(`seeded ${DOCUMENTS} documents in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(await source.countDocumentsByKeyId(workspaceId, keyId), DOCUMENTS);

  const storage = new FolderBackupStorage(join(work, "backups"));
  const signer = backupSignerFromPkcs8(generateBackupSigningKey());
  const exported = await exportBackup({
    source,
    storage,
    signer,
    scope: { kind: "workspace", workspaceId },
    maxEventsPerFile: 4000,
  });
  assert.equal(exported.streams, DOCUMENTS);
  assert.equal(exported.events, DOCUMENTS);
  assert.equal(exported.files, 3);
  t.diagnostic(
    `export: ${(DOCUMENTS / exported.seconds).toFixed(0)} documents/s (${exported.seconds.toFixed(1)} s, ${(exported.bytes / 1e6).toFixed(1)} MB)`,
  );

  const target = new DynamoDbEventStore({
    client: ddb.client,
    tableName: await ddb.newTable("amk-backup-scale-dst"),
  });
  const imported = await importBackup({
    storage,
    backupId: exported.backupId,
    target,
    trustedKeys: [signer],
  });
  assert.equal(imported.events, DOCUMENTS);
  t.diagnostic(
    `verify: ${(DOCUMENTS / imported.verifySeconds).toFixed(0)} documents/s; import: ${(DOCUMENTS / imported.importSeconds).toFixed(0)} documents/s (${imported.importSeconds.toFixed(1)} s)`,
  );

  assert.equal(await target.countDocumentsByKeyId(workspaceId, keyId), DOCUMENTS);
  assert.deepEqual(await target.listKeyIdsInUse(workspaceId), [keyId]);
  const sample = documentIds.filter((_, i) => i % 50 === 0);
  await mapLimit(sample, 8, async (documentId) => {
    const streamId = documentStreamId(workspaceId, documentId);
    const [a, b] = await Promise.all([source.readStream(streamId), target.readStream(streamId)]);
    assert.deepEqual(b.events, a.events, streamId);
    assert.deepEqual(
      await target.getDocumentProjection(workspaceId, documentId),
      await source.getDocumentProjection(workspaceId, documentId),
    );
  });
});
