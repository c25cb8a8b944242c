/**
 * The S3 adapter of `BackupStorage` driven through the real `S3Client` (path style, fake static credentials, no
 * retries) against a loopback server, no mock of the SDK:
 * - the BackupStorage contract and the adapter's requests against the in-memory S3 emulator
 *   (test/support/s3-emulator.ts), which answers in the recorded shapes of test/fixtures/s3/;
 * - the recorded responses themselves, replayed verbatim (test/support/aws-replay-server.ts): ListObjectsV2 pages with
 *   a continuation token, a multipart upload, every error fixture mapped to its domain error;
 * - the same round trip as the folder adapter: a workspace in DynamoDB Local exported into S3 with `exportBackup`
 *   (full and incremental), verified, corrupted in the bucket and refused, and imported into a new table.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { S3Client } from "@aws-sdk/client-s3";
import { FolderBackupStorage } from "../../core/adapters/backup-folder/folder-backup-storage.js";
import { S3BackupStorage, S3_PART_BYTES } from "../../core/adapters/backup-s3/s3-backup-storage.js";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import {
  BackupExistsError,
  BackupFileChecksumError,
  BackupFileMissingError,
  BackupNotFoundError,
  BackupStorageError,
  InvalidBackupRequestError,
  MANIFEST_FILE,
  backupPublicKey,
  backupSignerFromPkcs8,
  exportBackup,
  generateBackupSigningKey,
  importBackup,
  parseManifest,
  readBlob,
  verifyBackup,
  type BackupPublicKey,
  type BackupSigner,
} from "../../core/backup/index.js";
import { ARTIFACTS } from "../../core/datakeys/wrap-format.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import { documentStreamId, workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { backupStorageContract } from "../contract/backup-storage.contract.js";
import {
  FAKE_CREDENTIALS,
  jsonFixture,
  startReplayServer,
  textFixture,
  type RecordedRequest,
  type ReplayServer,
} from "../support/aws-replay-server.js";
import { appendAll, seedWorkspace, wrapRecordFor } from "../support/backup-seed.js";
import { useTestDynamoDb, type TestDynamoDb } from "../support/dynamodb.js";
import {
  S3_ERROR_FIXTURES,
  startS3Emulator,
  type S3Emulator,
  type S3EmulatorRequest,
  type S3ErrorFixture,
  type S3Operation,
} from "../support/s3-emulator.js";

const KMS_KEY = "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const MiB = 1024 * 1024;

const sha256b64 = (b: Uint8Array): string => createHash("sha256").update(b).digest("base64");

/** Every string an error could show a log: message, JSON, context, the cause chain. */
function renderings(err: unknown): string {
  const out: string[] = [];
  let e: unknown = err;
  for (let i = 0; i < 6 && e instanceof Error; i++) {
    out.push(
      e.message,
      String(e.stack),
      JSON.stringify(e),
      JSON.stringify((e as { context?: unknown }).context),
    );
    e = e.cause;
  }
  return out.join("\n");
}

function assertNoCredentials(err: unknown): void {
  const text = renderings(err);
  assert.ok(!text.includes(FAKE_CREDENTIALS.accessKeyId), "no access key id in the error");
  assert.ok(!text.includes(FAKE_CREDENTIALS.secretAccessKey), "no secret key in the error");
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof Error);
    return err;
  }
  assert.fail("expected a rejection");
}

// ------------------------------------------------------------------------------------------------ the contract

backupStorageContract("S3 (emulator, prefix backups/, SSE-KMS, ListObjectsV2 pages of 2)", async () => {
  const emulator = await startS3Emulator({ maxKeys: 2 });
  const client = emulator.client();
  return {
    storage: new S3BackupStorage({ client, bucket: emulator.bucket, prefix: "backups/", kmsKeyId: KMS_KEY }),
    close: async () => {
      client.destroy();
      await emulator.close();
      assert.deepEqual(emulator.violations, [], "every request was well-formed");
    },
  };
});

backupStorageContract("S3 (emulator, no prefix, the bucket's default encryption)", async () => {
  const emulator = await startS3Emulator();
  const client = emulator.client();
  return {
    storage: new S3BackupStorage({ client, bucket: emulator.bucket }),
    close: async () => {
      client.destroy();
      await emulator.close();
      assert.deepEqual(emulator.violations, [], "every request was well-formed");
    },
  };
});

// ------------------------------------------------------------------------------------------------ requests

describe("S3BackupStorage: what goes on the wire (emulator)", () => {
  let emulator: S3Emulator;
  let client: S3Client;
  let storage: S3BackupStorage;
  before(async () => {
    emulator = await startS3Emulator({ maxKeys: 3 });
    client = emulator.client();
    storage = new S3BackupStorage({ client, bucket: emulator.bucket, prefix: "backups", kmsKeyId: KMS_KEY });
  });
  after(async () => {
    client.destroy();
    await emulator.close();
    assert.deepEqual(emulator.violations, [], "every request was well-formed");
  });

  const since = (n: number): S3EmulatorRequest[] => emulator.requests.slice(n);
  const ops = (rs: S3EmulatorRequest[]): string[] => rs.map((r) => r.operation);

  it("names its location s3://bucket/prefix and checks its options", () => {
    assert.equal(storage.location, `s3://${emulator.bucket}/backups/`);
    assert.equal(new S3BackupStorage({ client, bucket: "b-1.x" }).location, "s3://b-1.x/");
    for (const bad of [
      { bucket: "Bad_Bucket" },
      { bucket: "ab" },
      { bucket: "ok-bucket", prefix: "/backups/" },
      { bucket: "ok-bucket", prefix: "a//b/" },
      { bucket: "ok-bucket", kmsKeyId: " " },
    ]) {
      assert.throws(
        () => new S3BackupStorage({ client, ...bad }),
        InvalidBackupRequestError,
        JSON.stringify(bad),
      );
    }
  });

  it("puts a small blob in one PutObject: If-None-Match *, SSE-KMS with the key, SHA-256 checksum", async () => {
    const n = emulator.requests.length;
    const data = Buffer.from('{"a":1}\n');
    await storage.put("b1/manifest.json", data);
    const [head, put] = since(n);
    assert.deepEqual(ops(since(n)), ["HeadObject", "PutObject"]);
    assert.equal(head?.key, "backups/b1/manifest.json");
    assert.equal(head?.status, 404);
    assert.equal(put?.key, "backups/b1/manifest.json");
    assert.equal(put?.headers["if-none-match"], "*");
    assert.equal(put?.headers["x-amz-server-side-encryption"], "aws:kms");
    assert.equal(put?.headers["x-amz-server-side-encryption-aws-kms-key-id"], KMS_KEY);
    assert.equal(put?.headers["x-amz-sdk-checksum-algorithm"], "SHA256");
    assert.equal(put?.headers["x-amz-checksum-sha256"], sha256b64(data));
    assert.equal(put?.headers["content-type"], "application/json");
    assert.equal(put?.bytes, data.length);
    const stored = emulator.objects.get("backups/b1/manifest.json");
    assert.equal(stored?.kmsKeyId, KMS_KEY);
    assert.equal(stored?.parts, 0);
    assert.deepEqual(stored?.body, data);
  });

  it("leaves encryption to the bucket's default when no key is configured", async () => {
    const plain = new S3BackupStorage({ client, bucket: emulator.bucket, prefix: "plain/" });
    const n = emulator.requests.length;
    await plain.put("b2/manifest.json", Buffer.from("{}\n"));
    const put = since(n).find((r) => r.operation === "PutObject");
    assert.equal(put?.headers["x-amz-server-side-encryption"], undefined);
    assert.equal(put?.headers["x-amz-server-side-encryption-aws-kms-key-id"], undefined);
    assert.equal(put?.headers["if-none-match"], "*");
    assert.equal(put?.headers["x-amz-checksum-sha256"], sha256b64(Buffer.from("{}\n")));
    assert.match(emulator.objects.get("plain/b2/manifest.json")?.kmsKeyId ?? "", /bucket$/);
  });

  it("uploads a blob just under 8 MiB in one PutObject", async () => {
    const n = emulator.requests.length;
    const data = randomBytes(S3_PART_BYTES - 1);
    const w = await storage.create("b3/events-0001.jsonl");
    for (let i = 0; i < data.length; i += MiB) await w.write(data.subarray(i, i + MiB));
    await w.close();
    assert.deepEqual(ops(since(n)), ["HeadObject", "PutObject"]);
    assert.equal(since(n)[1]?.bytes, S3_PART_BYTES - 1);
    assert.equal(since(n)[1]?.headers["content-type"], "application/x-ndjson");
  });

  it("uploads a larger blob in 8 MiB parts, visible only at CompleteMultipartUpload (If-None-Match *)", async () => {
    const n = emulator.requests.length;
    const data = randomBytes(2 * S3_PART_BYTES + 3 * MiB + 5);
    const name = "b4/events-0001.jsonl";
    const w = await storage.create(name);
    const step = MiB + 1; // chunks that do not line up with the parts
    for (let i = 0; i < data.length; i += step) {
      await w.write(data.subarray(i, i + step));
      assert.equal(emulator.objects.has(`backups/${name}`), false, "nothing visible before close");
    }
    assert.equal(await storage.stat(name), undefined);
    assert.equal(emulator.uploads.size, 1);
    await w.close();
    const sent = since(n).filter((r) => r.operation !== "HeadObject");
    assert.deepEqual(ops(sent), [
      "CreateMultipartUpload",
      "UploadPart",
      "UploadPart",
      "UploadPart",
      "CompleteMultipartUpload",
    ]);
    const [create, ...rest] = sent;
    const parts = rest.slice(0, 3);
    const complete = rest[3];
    assert.equal(create?.headers["x-amz-server-side-encryption"], "aws:kms");
    assert.equal(create?.headers["x-amz-server-side-encryption-aws-kms-key-id"], KMS_KEY);
    assert.equal(create?.headers["x-amz-checksum-algorithm"], "SHA256");
    assert.deepEqual(
      parts.map((p) => p.bytes),
      [S3_PART_BYTES, S3_PART_BYTES, 3 * MiB + 5],
    );
    assert.deepEqual(
      parts.map((p) => p.query.partNumber),
      ["1", "2", "3"],
    );
    parts.forEach((p, i) => {
      const slice = data.subarray(i * S3_PART_BYTES, (i + 1) * S3_PART_BYTES);
      assert.equal(p.headers["x-amz-checksum-sha256"], sha256b64(slice), `checksum of part ${i + 1}`);
    });
    assert.equal(complete?.headers["if-none-match"], "*");
    assert.equal(emulator.uploads.size, 0);
    const stored = emulator.objects.get(`backups/${name}`);
    assert.equal(stored?.parts, 3);
    assert.match(stored?.etag ?? "", /-3"$/);
    assert.match(stored?.checksumSha256 ?? "", /-3$/);
    assert.equal(stored?.kmsKeyId, KMS_KEY);

    // Read back streamed, in several chunks, equal.
    const chunks: Buffer[] = [];
    const g = since(emulator.requests.length);
    for await (const c of storage.get(name)) chunks.push(Buffer.from(c));
    assert.ok(chunks.length > 1, `${chunks.length} chunks`);
    assert.deepEqual(Buffer.concat(chunks), data);
    assert.equal(g.length, 0);
    const get = emulator.requests.at(-1);
    assert.equal(get?.operation, "GetObject");
    assert.equal(get?.headers["x-amz-checksum-mode"], "ENABLED");
    assert.deepEqual(await storage.stat(name), { name, bytes: data.length });
  });

  it("uses one part for exactly 8 MiB", async () => {
    const n = emulator.requests.length;
    await storage.put("b5/events-0001.jsonl", randomBytes(S3_PART_BYTES));
    assert.deepEqual(ops(since(n)), [
      "HeadObject",
      "CreateMultipartUpload",
      "UploadPart",
      "CompleteMultipartUpload",
    ]);
  });

  it("aborts the multipart upload on abort: no parts left, the name free", async () => {
    const name = "b6/events-0001.jsonl";
    const w = await storage.create(name);
    await w.write(randomBytes(S3_PART_BYTES + 10));
    assert.equal(emulator.uploads.size, 1);
    const n = emulator.requests.length;
    await w.abort();
    assert.deepEqual(ops(since(n)), ["AbortMultipartUpload"]);
    assert.equal(emulator.uploads.size, 0);
    assert.equal(await storage.stat(name), undefined);
    await storage.put(name, Buffer.from("x\n"));
  });

  it("does not overwrite an object created by a racing writer after the HeadObject: 412 at completion", async () => {
    const name = "b7/events-0001.jsonl";
    const w = await storage.create(name); // HeadObject: free
    await w.write(randomBytes(S3_PART_BYTES + 1));
    await storage.put(name, Buffer.from("the other writer\n")); // gets there first
    const n = emulator.requests.length;
    const err = await rejection(w.close());
    assert.ok(err instanceof BackupExistsError, String(err));
    assert.deepEqual(ops(since(n)), ["UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"]);
    assert.equal(since(n)[1]?.status, 412);
    assert.equal(emulator.uploads.size, 0, "the upload was aborted");
    assert.equal((await readBlob(storage, name)).toString(), "the other writer\n");
  });

  it("lists every page (continuation tokens), names relative to the prefix, sorted, foreign keys skipped", async () => {
    const id = randomUUID();
    for (const f of ["manifest.json", "events-0003.jsonl", "events-0001.jsonl", "events-0002.jsonl"]) {
      await storage.put(`${id}/${f}`, Buffer.from(f));
    }
    // Objects that are not blobs of this adapter: too deep, or outside its prefix.
    emulator.objects.set(`backups/${id}/sub/dir.txt`, {
      ...emulator.objects.get(`backups/${id}/manifest.json`)!,
    });
    emulator.objects.set(`elsewhere/${id}/manifest.json`, {
      ...emulator.objects.get(`backups/${id}/manifest.json`)!,
    });
    const n = emulator.requests.length;
    const listed = await storage.list(`${id}/`);
    assert.deepEqual(
      listed.map((b) => b.name),
      ["events-0001.jsonl", "events-0002.jsonl", "events-0003.jsonl", "manifest.json"].map(
        (f) => `${id}/${f}`,
      ),
    );
    assert.deepEqual(listed[3], { name: `${id}/manifest.json`, bytes: "manifest.json".length });
    const pages = since(n);
    assert.deepEqual(ops(pages), ["ListObjectsV2", "ListObjectsV2"]);
    assert.equal(pages[0]?.query.prefix, `backups/${id}/`);
    assert.equal(pages[0]?.query["continuation-token"], undefined);
    assert.ok((pages[1]?.query["continuation-token"] ?? "").length > 0);
  });

  it("streams GetObject's body: a connection broken mid-body is a retryable BackupStorageError", async () => {
    await storage.put("b8/events-0001.jsonl", randomBytes(3 * MiB));
    emulator.failNext({ operation: "GetObject", network: true });
    const err = await rejection(readBlob(storage, "b8/events-0001.jsonl"));
    assert.ok(err instanceof BackupStorageError, String(err));
    assert.equal(err.retryable, true);
    assertNoCredentials(err);
  });

  it("a body that does not match its stored checksum (corrupted in transit) is a retryable BackupStorageError", async () => {
    const name = "b10/events-0001.jsonl";
    await storage.put(name, Buffer.from("line one\nline two\n"));
    const o = emulator.objects.get(`backups/${name}`)!;
    emulator.objects.set(`backups/${name}`, { ...o, body: Buffer.from("line one\nline 2wo\n") });
    const err = await rejection(readBlob(storage, name));
    assert.ok(err instanceof BackupStorageError && err.retryable, String(err));
    emulator.objects.set(`backups/${name}`, o);
  });

  it("a failed part upload fails the writer; abort cleans up; the name stays free", async () => {
    const name = "b9/events-0001.jsonl";
    const w = await storage.create(name);
    emulator.failNext({ operation: "UploadPart", fixture: "slow-down" });
    const err = await rejection(w.write(randomBytes(S3_PART_BYTES)));
    assert.ok(err instanceof BackupStorageError && err.retryable, String(err));
    await assert.rejects(w.write(Buffer.from("more")), BackupStorageError);
    await assert.rejects(w.close(), BackupStorageError);
    await w.abort();
    assert.equal(emulator.uploads.size, 0);
    assert.equal(await storage.stat(name), undefined);
  });
});

// ------------------------------------------------------------------------------------------------ errors

describe("S3BackupStorage: every recorded error maps to its domain error (emulator)", () => {
  let emulator: S3Emulator;
  let client: S3Client;
  let storage: S3BackupStorage;
  before(async () => {
    emulator = await startS3Emulator();
    client = emulator.client();
    storage = new S3BackupStorage({ client, bucket: emulator.bucket, prefix: "backups/", kmsKeyId: KMS_KEY });
    await storage.put("present/manifest.json", Buffer.from("{}\n"));
  });
  after(async () => {
    client.destroy();
    await emulator.close();
    assert.deepEqual(emulator.violations, [], "every request was well-formed");
  });

  type Call = (s: S3BackupStorage) => Promise<unknown>;
  const big = async (s: S3BackupStorage): Promise<void> => {
    const w = await s.create(`big-${randomUUID()}/events-0001.jsonl`);
    try {
      await w.write(randomBytes(S3_PART_BYTES + 1));
      await w.close();
    } catch (err) {
      await w.abort();
      throw err;
    }
  };
  const put: Call = (s) => s.put(`${randomUUID()}/manifest.json`, Buffer.from("{}\n"));
  const get: Call = (s) => readBlob(s, "present/manifest.json");
  const stat: Call = (s) => s.stat("present/manifest.json");
  const list: Call = (s) => s.list("present/");

  const cases: {
    fixture: S3ErrorFixture;
    operation: S3Operation;
    call: Call;
    error: new (...a: never[]) => Error;
    retryable?: boolean;
    message?: RegExp;
  }[] = [
    { fixture: "no-such-key", operation: "GetObject", call: get, error: BackupFileMissingError },
    {
      fixture: "access-denied",
      operation: "PutObject",
      call: put,
      error: BackupStorageError,
      retryable: false,
      message:
        /access to backup bucket amk-backups-test denied: PutObject .*s3:PutObject.*kms:GenerateDataKey/,
    },
    {
      fixture: "access-denied",
      operation: "GetObject",
      call: get,
      error: BackupStorageError,
      retryable: false,
      message: /amk-backups-test denied: GetObject .*kms:Decrypt/,
    },
    {
      fixture: "access-denied",
      operation: "HeadObject",
      call: stat,
      error: BackupStorageError,
      retryable: false,
      message: /amk-backups-test denied: HeadObject/,
    },
    {
      fixture: "access-denied",
      operation: "ListObjectsV2",
      call: list,
      error: BackupStorageError,
      retryable: false,
      message: /amk-backups-test denied: ListObjectsV2 .*s3:ListBucket/,
    },
    {
      fixture: "access-denied",
      operation: "CreateMultipartUpload",
      call: big,
      error: BackupStorageError,
      retryable: false,
      message: /denied: CreateMultipartUpload/,
    },
    {
      fixture: "slow-down",
      operation: "PutObject",
      call: put,
      error: BackupStorageError,
      retryable: true,
      message: /SlowDown, HTTP 503/,
    },
    {
      fixture: "slow-down",
      operation: "ListObjectsV2",
      call: list,
      error: BackupStorageError,
      retryable: true,
    },
    { fixture: "slow-down", operation: "UploadPart", call: big, error: BackupStorageError, retryable: true },
    { fixture: "slow-down", operation: "HeadObject", call: stat, error: BackupStorageError, retryable: true },
    {
      fixture: "internal-error",
      operation: "GetObject",
      call: get,
      error: BackupStorageError,
      retryable: true,
    },
    {
      fixture: "internal-error",
      operation: "CompleteMultipartUpload",
      call: big,
      error: BackupStorageError,
      retryable: true,
    },
    { fixture: "precondition-failed", operation: "PutObject", call: put, error: BackupExistsError },
    {
      fixture: "precondition-failed",
      operation: "CompleteMultipartUpload",
      call: big,
      error: BackupExistsError,
    },
    {
      fixture: "conditional-request-conflict",
      operation: "CompleteMultipartUpload",
      call: big,
      error: BackupStorageError,
      retryable: true,
    },
    {
      fixture: "conditional-request-conflict",
      operation: "PutObject",
      call: put,
      error: BackupStorageError,
      retryable: true,
    },
    {
      fixture: "no-such-upload",
      operation: "UploadPart",
      call: big,
      error: BackupStorageError,
      retryable: false,
      message: /multipart upload .* is gone/,
    },
    {
      fixture: "no-such-bucket",
      operation: "PutObject",
      call: put,
      error: BackupStorageError,
      retryable: false,
      message: /bucket amk-backups-test does not exist/,
    },
    {
      fixture: "no-such-bucket",
      operation: "ListObjectsV2",
      call: list,
      error: BackupStorageError,
      retryable: false,
    },
  ];

  for (const c of cases) {
    it(`${c.fixture} (HTTP ${S3_ERROR_FIXTURES[c.fixture]}) on ${c.operation}: ${c.error.name}${c.retryable === undefined ? "" : c.retryable ? ", retryable" : ", not retryable"}`, async () => {
      const uploads = emulator.uploads.size;
      emulator.failNext({ fixture: c.fixture, operation: c.operation });
      const n = emulator.requests.length;
      const err = await rejection(c.call(storage));
      assert.ok(err instanceof c.error, `${err.name}: ${err.message}`);
      assert.ok(
        emulator.requests
          .slice(n)
          .some((r) => r.operation === c.operation && r.status === S3_ERROR_FIXTURES[c.fixture]),
      );
      if (c.retryable !== undefined) assert.equal((err as BackupStorageError).retryable, c.retryable);
      if (c.message !== undefined) assert.match(err.message, c.message);
      assertNoCredentials(err);
      // The service's message (which may name a role or a policy) is not repeated.
      assert.ok(!renderings(err).includes("assumed-role"), "no AWS message in the error");
      assert.equal(emulator.uploads.size, uploads, "no multipart upload left behind");
    });
  }

  it("stat: a 404 is no blob; get: a missing key is BackupFileMissingError naming the blob", async () => {
    assert.equal(await storage.stat("absent/manifest.json"), undefined);
    const err = await rejection(readBlob(storage, "absent/manifest.json"));
    assert.ok(err instanceof BackupFileMissingError);
    assert.match(err.message, /absent\/manifest\.json does not exist in s3:\/\/amk-backups-test\/backups\//);
  });

  it("a network failure (connection reset) is retryable", async () => {
    emulator.failNext({ operation: "PutObject", network: true });
    const err = await rejection(put(storage));
    assert.ok(err instanceof BackupStorageError && err.retryable, String(err));
  });

  it("nothing listening: retryable, no credentials in the error", async () => {
    const dead = await startS3Emulator();
    await dead.close();
    const c = dead.client();
    try {
      const err = await rejection(new S3BackupStorage({ client: c, bucket: dead.bucket }).list(""));
      assert.ok(err instanceof BackupStorageError && err.retryable, String(err));
      assertNoCredentials(err);
    } finally {
      c.destroy();
    }
  });
});

// ------------------------------------------------------------------------------------------------ recorded shapes

describe("S3BackupStorage against the recorded responses, replayed verbatim", () => {
  let server: ReplayServer;
  let client: S3Client;
  const bucket = "amk-backups-example";
  before(async () => {
    server = await startReplayServer();
    client = new S3Client({
      endpoint: server.endpoint,
      region: "eu-central-1",
      forcePathStyle: true,
      credentials: FAKE_CREDENTIALS,
      maxAttempts: 1,
    });
  });
  after(async () => {
    client.destroy();
    await server.close();
  });

  const query = (r: RecordedRequest | undefined): URLSearchParams =>
    new URL(r?.path ?? "/", "http://x").searchParams;
  const xml = (body: string, status = 200) => ({
    status,
    headers: { "content-type": "application/xml" },
    body,
  });

  it("ListObjectsV2: follows NextContinuationToken, names relative to the prefix, sorted, a deeper key skipped", async () => {
    const n = server.requests.length;
    server.handler = (r) =>
      xml(
        textFixture(
          "s3",
          query(r).has("continuation-token") ? "list-objects-v2-page-2.xml" : "list-objects-v2-page-1.xml",
        ),
      );
    const storage = new S3BackupStorage({ client, bucket, prefix: "backups/" });
    const listed = await storage.list("");
    assert.deepEqual(listed, [
      { name: "01a22f24-3e1d-7bd4-ab0c-c9292755b766/events-0001.jsonl", bytes: 9437184 },
      { name: "01a22f24-3e1d-7bd4-ab0c-c9292755b766/events-0002.jsonl", bytes: 574467 },
      { name: "01a22f24-3e1d-7bd4-ab0c-c9292755b766/manifest.json", bytes: 1893 },
      { name: "01a22f25-0000-7000-8000-000000000001/manifest.json", bytes: 1024 },
    ]);
    const [p1, p2] = server.requests.slice(n);
    assert.equal(p1?.method, "GET");
    assert.match(p1?.path ?? "", new RegExp(`^/${bucket}/?\\?`));
    assert.equal(query(p1).get("list-type"), "2");
    assert.equal(query(p1).get("prefix"), "backups/");
    assert.equal(query(p2).get("continuation-token"), "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    assert.match(
      String(p1?.headers.authorization),
      /Credential=AKIAIOSFODNN7EXAMPLE\/\d{8}\/eu-central-1\/s3\/aws4_request/,
    );
  });

  it("PutObject: the recorded answer completes the write", async () => {
    const data = Buffer.from("{}\n");
    server.handler = (r) => {
      if (r.method === "HEAD") return { status: 404, headers: {}, body: "" };
      const f = jsonFixture("s3", "put-object");
      return { ...f, headers: { ...f.headers, "x-amz-checksum-sha256": sha256b64(data) } };
    };
    const n = server.requests.length;
    await new S3BackupStorage({ client, bucket, prefix: "backups/", kmsKeyId: KMS_KEY }).put(
      "x/manifest.json",
      data,
    );
    const put = server.requests.slice(n)[1];
    assert.equal(put?.method, "PUT");
    assert.equal(put?.path, `/${bucket}/backups/x/manifest.json?x-id=PutObject`);
    assert.equal(put?.headers["if-none-match"], "*");
    assert.equal(put?.headers["x-amz-server-side-encryption-aws-kms-key-id"], KMS_KEY);
    assert.equal(put?.body, "{}\n");
  });

  it("multipart: the UploadId and the parts' ETags of the recorded answers go into CompleteMultipartUpload", async () => {
    const uploadId = "VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA";
    const data = randomBytes(S3_PART_BYTES + 100);
    server.handler = (r) => {
      const q = query(r);
      if (r.method === "HEAD") return { status: 404, headers: {}, body: "" };
      if (r.method === "POST" && q.has("uploads"))
        return xml(textFixture("s3", "create-multipart-upload.xml"));
      if (r.method === "PUT") {
        assert.equal(q.get("uploadId"), uploadId);
        const f = jsonFixture("s3", "upload-part");
        return {
          ...f,
          headers: { ...f.headers, "x-amz-checksum-sha256": String(r.headers["x-amz-checksum-sha256"]) },
        };
      }
      if (r.method === "POST" && q.get("uploadId") === uploadId)
        return xml(textFixture("s3", "complete-multipart-upload.xml"));
      return xml(textFixture("s3", "internal-error.xml"), 500);
    };
    const n = server.requests.length;
    const storage = new S3BackupStorage({ client, bucket, prefix: "backups/", kmsKeyId: KMS_KEY });
    await storage.put("01a22f24-3e1d-7bd4-ab0c-c9292755b766/events-0001.jsonl", data);
    const sent = server.requests.slice(n);
    assert.deepEqual(
      sent.map((r) => r.method),
      ["HEAD", "POST", "PUT", "PUT", "POST"],
    );
    const complete = sent[4];
    assert.equal(complete?.headers["if-none-match"], "*");
    const etag = /<ETag>([^<]*)<\/ETag>/g;
    assert.deepEqual(
      [...(complete?.body ?? "").matchAll(etag)].map((m) => m[1]!.replace(/&quot;/g, '"')),
      ['"b54357faf0632cce46e942fa68356b38"', '"b54357faf0632cce46e942fa68356b38"'],
    );
    assert.deepEqual(
      [...(complete?.body ?? "").matchAll(/<ChecksumSHA256>([^<]*)<\/ChecksumSHA256>/g)].map((m) => m[1]),
      [sha256b64(data.subarray(0, S3_PART_BYTES)), sha256b64(data.subarray(S3_PART_BYTES))],
    );
    assert.deepEqual(
      [...(complete?.body ?? "").matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => m[1]),
      ["1", "2"],
    );
  });

  const errorCases: [
    S3ErrorFixture,
    string,
    (s: S3BackupStorage) => Promise<unknown>,
    new (...a: never[]) => Error,
    boolean?,
  ][] = [
    ["no-such-key", "GET", (s) => readBlob(s, "x/manifest.json"), BackupFileMissingError],
    ["access-denied", "PUT", (s) => s.put("x/manifest.json", Buffer.from("{}")), BackupStorageError, false],
    ["slow-down", "PUT", (s) => s.put("x/manifest.json", Buffer.from("{}")), BackupStorageError, true],
    ["precondition-failed", "PUT", (s) => s.put("x/manifest.json", Buffer.from("{}")), BackupExistsError],
    [
      "conditional-request-conflict",
      "PUT",
      (s) => s.put("x/manifest.json", Buffer.from("{}")),
      BackupStorageError,
      true,
    ],
    ["internal-error", "GET", (s) => s.list("x/"), BackupStorageError, true],
    ["no-such-bucket", "GET", (s) => s.list("x/"), BackupStorageError, false],
  ];
  for (const [fixture, method, call, error, retryable] of errorCases) {
    it(`${fixture}.xml (HTTP ${S3_ERROR_FIXTURES[fixture]}) answering ${method}: ${error.name}`, async () => {
      server.handler = (r) =>
        r.method === "HEAD"
          ? { status: 404, headers: {}, body: "" }
          : r.method === method
            ? xml(textFixture("s3", `${fixture}.xml`), S3_ERROR_FIXTURES[fixture])
            : xml(textFixture("s3", "internal-error.xml"), 500);
      const err = await rejection(call(new S3BackupStorage({ client, bucket, prefix: "backups/" })));
      assert.ok(err instanceof error, `${err.name}: ${err.message}`);
      if (retryable !== undefined) assert.equal((err as BackupStorageError).retryable, retryable);
      assertNoCredentials(err);
      assert.ok(!renderings(err).includes("assumed-role"));
    });
  }
});

// ------------------------------------------------------------------------------------------------ round trip

describe("event-store backups through S3BackupStorage (DynamoDB Local + S3 emulator)", () => {
  let ddb: TestDynamoDb;
  let emulator: S3Emulator;
  let client: S3Client;
  let storage: S3BackupStorage;
  let signer: BackupSigner;
  let trustedKeys: BackupPublicKey[];
  before(async () => {
    ddb = await useTestDynamoDb();
    emulator = await startS3Emulator({ maxKeys: 4 });
    client = emulator.client();
    storage = new S3BackupStorage({ client, bucket: emulator.bucket, prefix: "backups/", kmsKeyId: KMS_KEY });
    signer = backupSignerFromPkcs8(generateBackupSigningKey());
    trustedKeys = [backupPublicKey(signer.publicKey)];
  });
  after(async () => {
    client?.destroy();
    await emulator?.close();
    await ddb?.cleanup();
    assert.deepEqual(emulator?.violations ?? [], [], "every request was well-formed");
  });

  it("exports full + incremental into S3, verifies, refuses corruption, imports into a new table: equal", async () => {
    const store = new DynamoDbEventStore({ client: ddb.client, tableName: await ddb.newTable("amk-s3-src") });
    const ws = await seedWorkspace({ store, documents: 40, keepDeks: 0 });
    const scope = { kind: "workspace" as const, workspaceId: ws.workspaceId };
    const full = await exportBackup({ source: store, storage, signer, scope, maxEventsPerFile: 25 });
    assert.ok(full.files >= 3, `${full.files} files`);
    assert.equal(full.location, storage.location);

    // Five new documents after the full backup.
    const mk = randomBytes(32);
    const added = Array.from({ length: 5 }, () => randomUUID());
    await appendAll(
      store,
      added.map((documentId) => ({
        streamId: documentStreamId(ws.workspaceId, documentId),
        events: [
          wrapRecordFor(
            ws.workspaceId,
            documentId,
            masterKeyId(ws.workspaceId, 1),
            mk,
            ARTIFACTS.map(() => randomBytes(32)),
          ),
        ],
        expectedVersion: "no_stream" as const,
      })),
    );
    const inc = await exportBackup({
      source: store,
      storage,
      signer,
      scope,
      kind: "incremental",
      baseBackupId: full.backupId,
    });
    assert.equal(inc.events, 5);

    // Every object was written with If-None-Match, SSE-KMS and a checksum; manifests last.
    const writes = emulator.requests.filter((r) => r.operation === "PutObject");
    assert.equal(writes.length, full.files + inc.files + 2);
    for (const w of writes) {
      assert.equal(w.headers["if-none-match"], "*", w.key);
      assert.equal(w.headers["x-amz-server-side-encryption-aws-kms-key-id"], KMS_KEY, w.key);
      assert.ok(w.headers["x-amz-checksum-sha256"], w.key);
    }
    assert.ok(writes.findIndex((w) => w.key === `backups/${full.backupId}/${MANIFEST_FILE}`) === full.files);
    assert.deepEqual(
      (await storage.list(`${full.backupId}/`)).map((b) => b.name.split("/")[1]),
      [
        ...Array.from({ length: full.files }, (_, i) => `events-${String(i + 1).padStart(4, "0")}.jsonl`),
        MANIFEST_FILE,
      ],
    );

    const verified = await verifyBackup({ storage, backupId: inc.backupId, trustedKeys });
    assert.deepEqual(
      verified.chain.map((l) => l.backupId),
      [full.backupId, inc.backupId],
    );
    const manifest = parseManifest(
      await readBlob(storage, `${full.backupId}/${MANIFEST_FILE}`),
      full.backupId,
    );
    assert.equal(manifest.totals.events, full.events);

    // The same backup id again: refused, nothing overwritten.
    await assert.rejects(
      exportBackup({ source: store, storage, signer, scope, backupId: full.backupId }),
      BackupExistsError,
    );

    // Restore the chain into a new table: every stream equal.
    const target = new DynamoDbEventStore({
      client: ddb.client,
      tableName: await ddb.newTable("amk-s3-dst"),
    });
    const restored = await importBackup({ storage, backupId: inc.backupId, target, trustedKeys });
    assert.equal(restored.events, full.events + inc.events);
    const streams = [
      workspaceStreamId(ws.workspaceId),
      ...[...ws.documentIds, ...added].map((d) => documentStreamId(ws.workspaceId, d)),
    ];
    for (const s of streams) {
      const [x, y] = await Promise.all([store.readStream(s), target.readStream(s)]);
      assert.deepEqual(y.events, x.events, s);
    }

    // The same blobs copied to a folder verify there too: one format, whatever the storage.
    const folder = new FolderBackupStorage(await mkdtemp(join(tmpdir(), "amk-s3-copy-")));
    try {
      for (const id of [full.backupId, inc.backupId]) {
        for (const b of await storage.list(`${id}/`))
          await folder.put(b.name, await readBlob(storage, b.name));
      }
      const copied = await verifyBackup({ storage: folder, backupId: inc.backupId, trustedKeys });
      assert.equal(copied.manifestSha256, verified.manifestSha256);
    } finally {
      await rm(folder.location, { recursive: true, force: true });
    }

    // Corruption in the bucket (an events file replaced with one byte changed, as by someone allowed to bypass the
    // object lock; the manifest gone) is refused before any write.
    const key = `backups/${full.backupId}/events-0002.jsonl`;
    const original = emulator.objects.get(key)!;
    const changed = Buffer.from(original.body);
    changed[10] = changed[10] === 0x41 ? 0x42 : 0x41;
    emulator.objects.set(key, { ...original, body: changed, checksumSha256: sha256b64(changed) });
    await assert.rejects(
      verifyBackup({ storage, backupId: full.backupId, trustedKeys }),
      BackupFileChecksumError,
    );
    emulator.objects.set(key, original);
    await verifyBackup({ storage, backupId: full.backupId, trustedKeys });
    emulator.objects.delete(`backups/${inc.backupId}/${MANIFEST_FILE}`);
    await assert.rejects(verifyBackup({ storage, backupId: inc.backupId, trustedKeys }), BackupNotFoundError);
  });
});
