/**
 * `BackupStorage` on an S3 bucket: blob `<backupId>/<file>` is the object `<prefix><backupId>/<file>`. In AWS the
 * bucket is the stateful stack's backup bucket (versioned, object lock, SSE-KMS with a customer-managed key).
 *
 * - `create` refuses a name whose object exists (HeadObject), then buffers what is written: a blob under 8 MiB goes up
 *   in one PutObject at `close`; a larger one as a multipart upload of 8 MiB parts (started when the first 8 MiB are
 *   buffered, so at most a part and a chunk are held in memory) completed at `close`. Either way the object appears
 *   in one step, and both the PutObject and the CompleteMultipartUpload carry `If-None-Match: *`: S3 refuses them
 *   (412) when the key exists, even when another writer created it after the HeadObject, so a blob is never
 *   overwritten. `abort` aborts the multipart upload (the bucket's lifecycle rule removes uploads left behind).
 * - Every upload asks for SSE-KMS with `kmsKeyId` when given (otherwise the bucket's default encryption applies) and
 *   carries a SHA-256 checksum (`x-amz-checksum-sha256`; per part for multipart uploads, listed again at completion):
 *   S3 checks the bytes it stored, and a bucket with object lock refuses uploads without an integrity checksum.
 * - `get` streams GetObject's body (`ChecksumMode: ENABLED`, so the SDK checks a single-part object's checksum);
 *   `stat` is HeadObject; `list` is ListObjectsV2, every page, names relative to the prefix, sorted.
 *
 * SDK errors become `BackupStorageError` (retryable for throttling, 5xx, conflicts and network failures; access
 * denied names the bucket and the permissions needed), `BackupExistsError` (412 on a conditional write) or
 * `BackupFileMissingError` (no such key). Messages name the bucket, keys and the AWS error's name and status, never
 * the service's message or a credential. Retries are the client's (its `maxAttempts`).
 */
import { createHash } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from "@aws-sdk/client-s3";
import {
  BackupExistsError,
  BackupFileMissingError,
  BackupStorageError,
  InvalidBackupRequestError,
} from "../../backup/errors.js";
import {
  blobNameSegments,
  type BackupBlobInfo,
  type BackupBlobWriter,
  type BackupStorage,
} from "../../backup/storage.js";
import {
  awsErrorContext,
  awsErrorFacts,
  describeAwsError,
  isTransient,
  safeCause,
} from "../aws-service-error.js";

/** Size of a multipart upload's parts; a blob smaller than this is uploaded in one PutObject. */
export const S3_PART_BYTES = 8 * 1024 * 1024;

/** S3's limit on the parts of one upload: 10,000 parts of 8 MiB is 78 GiB, far beyond any events file. */
const MAX_PARTS = 10_000;

export interface S3BackupStorageOptions {
  /** The caller's client: region, credentials, endpoint and retries (`maxAttempts`) are its own. */
  readonly client: S3Client;
  readonly bucket: string;
  /** Key prefix of every blob, e.g. `backups/` (a missing trailing `/` is added); default none. */
  readonly prefix?: string;
  /** KMS key (id, ARN or alias) for SSE-KMS; without it the bucket's default encryption applies. */
  readonly kmsKeyId?: string;
}

/** S3 error names worth retrying besides the common ones (throttling, 5xx, conflicting writes). */
const TRANSIENT = new Set([
  "SlowDown",
  "RequestTimeout",
  "InternalError",
  "ServiceUnavailable",
  "OperationAborted",
  "ConditionalRequestConflict",
  "KMS.ThrottlingException",
]);
const NOT_FOUND = new Set(["NoSuchKey", "NotFound"]);
const ACCESS_DENIED = new Set(["AccessDenied", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId"]);

/** Permissions an operation needs, for access-denied messages. */
const NEEDS: Record<string, string> = {
  HeadObject:
    "s3:GetObject on the objects (and s3:ListBucket on the bucket, so that a missing object is a 404)",
  GetObject: "s3:GetObject on the objects and kms:Decrypt on the bucket's key",
  ListObjectsV2: "s3:ListBucket on the bucket",
  PutObject: "s3:PutObject on the objects and kms:GenerateDataKey on the bucket's key",
  CreateMultipartUpload:
    "s3:PutObject on the objects and kms:GenerateDataKey and kms:Decrypt on the bucket's key",
  UploadPart: "s3:PutObject on the objects and kms:GenerateDataKey and kms:Decrypt on the bucket's key",
  CompleteMultipartUpload: "s3:PutObject on the objects and kms:Decrypt on the bucket's key",
  AbortMultipartUpload: "s3:AbortMultipartUpload on the objects",
};

export class S3BackupStorage implements BackupStorage {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly kmsKeyId: string | undefined;

  constructor(options: S3BackupStorageOptions) {
    const { client, bucket, kmsKeyId } = options;
    if (typeof bucket !== "string" || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw new InvalidBackupRequestError(
        "an S3 bucket name is 3-63 lower-case letters, digits, '.' or '-'",
        {
          context: { bucket: String(bucket).slice(0, 100) },
        },
      );
    }
    let prefix = options.prefix ?? "";
    if (prefix !== "" && !prefix.endsWith("/")) prefix += "/";
    if (prefix.startsWith("/") || prefix.includes("//") || prefix.length > 512) {
      throw new InvalidBackupRequestError("an S3 key prefix does not start with '/' nor hold '//'", {
        context: { prefix: prefix.slice(0, 100) },
      });
    }
    if (kmsKeyId !== undefined && (typeof kmsKeyId !== "string" || kmsKeyId.trim() === "")) {
      throw new InvalidBackupRequestError("kmsKeyId, when given, is a KMS key id, ARN or alias");
    }
    this.client = client;
    this.bucket = bucket;
    this.prefix = prefix;
    this.kmsKeyId = kmsKeyId;
    this.location = `s3://${bucket}/${prefix}`;
  }

  async create(name: string): Promise<BackupBlobWriter> {
    blobNameSegments(name);
    if ((await this.stat(name)) !== undefined) throw exists(name, this.location);
    return new S3BlobWriter({
      client: this.client,
      bucket: this.bucket,
      name,
      key: this.key(name),
      encryption:
        this.kmsKeyId === undefined ? {} : { ServerSideEncryption: "aws:kms", SSEKMSKeyId: this.kmsKeyId },
      error: (err, operation, conditional) => this.error(err, operation, name, this.key(name), conditional),
    });
  }

  async put(name: string, data: Uint8Array): Promise<void> {
    const w = await this.create(name);
    try {
      await w.write(data);
      await w.close();
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  async *get(name: string): AsyncIterable<Uint8Array> {
    blobNameSegments(name);
    const key = this.key(name);
    let body: AsyncIterable<Uint8Array> & { destroy?: () => void };
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, ChecksumMode: "ENABLED" }),
      );
      if (out.Body === undefined) throw new Error("GetObject answered without a body");
      body = out.Body as unknown as AsyncIterable<Uint8Array> & { destroy?: () => void };
    } catch (err) {
      const facts = awsErrorFacts(err);
      if (
        facts.answered &&
        (NOT_FOUND.has(facts.name) || facts.httpStatusCode === 404) &&
        facts.name !== "NoSuchBucket"
      ) {
        throw new BackupFileMissingError(`backup blob ${name} does not exist in ${this.location}`, {
          context: { name, bucket: this.bucket, key },
        });
      }
      throw this.error(err, "GetObject", name, key);
    }
    try {
      for await (const chunk of body) yield chunk;
    } catch (err) {
      // The connection broke, or the SDK found the body's checksum wrong: reading again may succeed.
      const facts = awsErrorFacts(err);
      throw new BackupStorageError(
        `reading backup blob ${name} from ${this.location} failed (${describeAwsError(facts)})`,
        {
          cause: safeCause(facts, "GetObject"),
          context: { name, bucket: this.bucket, key, operation: "GetObject", ...awsErrorContext(facts) },
          retryable: true,
        },
      );
    } finally {
      body.destroy?.();
    }
  }

  async stat(name: string): Promise<BackupBlobInfo | undefined> {
    blobNameSegments(name);
    const key = this.key(name);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { name, bytes: out.ContentLength ?? 0 };
    } catch (err) {
      const facts = awsErrorFacts(err);
      if (facts.answered && (NOT_FOUND.has(facts.name) || facts.httpStatusCode === 404)) {
        // HEAD answers carry no body: a missing bucket is a bare 404 too. It shows up at the first write or list.
        return undefined;
      }
      throw this.error(err, "HeadObject", name, key);
    }
  }

  async list(prefix: string): Promise<BackupBlobInfo[]> {
    if (typeof prefix !== "string") {
      throw new InvalidBackupRequestError("a backup blob prefix is a string", {
        context: { prefix: typeof prefix },
      });
    }
    const out: BackupBlobInfo[] = [];
    let token: string | undefined;
    for (let page = 0; ; page++) {
      let res;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        );
      } catch (err) {
        throw this.error(err, "ListObjectsV2", prefix, this.prefix + prefix);
      }
      for (const o of res.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(this.prefix)) continue;
        const name = o.Key.slice(this.prefix.length);
        if (!name.startsWith(prefix) || !isBlobName(name)) continue; // not a blob of this adapter
        out.push({ name, bytes: o.Size ?? 0 });
      }
      if (res.IsTruncated !== true) break;
      token = res.NextContinuationToken;
      if (token === undefined || token === "") {
        throw new BackupStorageError(
          `listing ${this.location}${prefix} stopped: ListObjectsV2 page ${page + 1} is truncated without a continuation token`,
          { context: { bucket: this.bucket, prefix } },
        );
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Maps an SDK error of `operation` on blob `name` (object `key`) to a domain error. */
  private error(err: unknown, operation: string, name: string, key: string, conditional = false): Error {
    const facts = awsErrorFacts(err);
    if (
      conditional &&
      facts.answered &&
      (facts.name === "PreconditionFailed" || facts.httpStatusCode === 412)
    ) {
      return exists(name, this.location);
    }
    const context = { name, bucket: this.bucket, key, operation, ...awsErrorContext(facts) };
    const cause = safeCause(facts, operation);
    const where = `s3://${this.bucket}/${key}`;
    if (facts.answered && (ACCESS_DENIED.has(facts.name) || facts.httpStatusCode === 403)) {
      return new BackupStorageError(
        `access to backup bucket ${this.bucket} denied: ${operation} on ${where} (${describeAwsError(facts)}); ` +
          `the caller needs ${NEEDS[operation] ?? "access to the bucket and its key"}`,
        { cause, context, retryable: false },
      );
    }
    if (facts.answered && facts.name === "NoSuchBucket") {
      return new BackupStorageError(
        `backup bucket ${this.bucket} does not exist (${operation}, ${describeAwsError(facts)}); check the bucket name and the client's region`,
        { cause, context, retryable: false },
      );
    }
    if (facts.answered && facts.name === "NoSuchUpload") {
      return new BackupStorageError(
        `the multipart upload of backup blob ${name} to ${where} is gone (${operation}, ${describeAwsError(facts)}): ` +
          "aborted or completed by someone else; write the blob again",
        { cause, context, retryable: false },
      );
    }
    const retryable = isTransient(facts, TRANSIENT) || (facts.answered && facts.httpStatusCode === 409);
    return new BackupStorageError(
      `${operation} on ${where} failed (${describeAwsError(facts)})${retryable ? "; retry later" : ""}`,
      { cause, context, retryable },
    );
  }

  private key(name: string): string {
    return this.prefix + name;
  }
}

/** What a writer needs of its storage. */
interface WriterTarget {
  readonly client: S3Client;
  readonly bucket: string;
  readonly name: string;
  readonly key: string;
  /** Parameters every upload carries: SSE-KMS, when a key is configured. */
  readonly encryption: { ServerSideEncryption?: "aws:kms"; SSEKMSKeyId?: string };
  /** Maps an SDK error; `conditional`: a 412 means the name is taken. */
  readonly error: (err: unknown, operation: string, conditional?: boolean) => Error;
}

/** The writer of one blob: buffers, then one PutObject or a multipart upload. */
class S3BlobWriter implements BackupBlobWriter {
  private state: "open" | "closed" | "aborted" | "failed" = "open";
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private uploadId: string | undefined;
  private readonly parts: CompletedPart[] = [];
  /** Operations run one after another, even when a caller does not await. */
  private tail: Promise<unknown> = Promise.resolve();

  private readonly name: string;

  constructor(private readonly target: WriterTarget) {
    this.name = target.name;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.serial(async () => {
      this.checkOpen();
      if (!(chunk instanceof Uint8Array)) {
        throw new InvalidBackupRequestError(`a chunk of backup blob ${this.name} is not bytes`);
      }
      if (chunk.length === 0) return;
      this.pending.push(Buffer.from(chunk)); // a copy: the caller may reuse its buffer
      this.pendingBytes += chunk.length;
      try {
        while (this.pendingBytes >= S3_PART_BYTES) {
          const all = Buffer.concat(this.pending, this.pendingBytes);
          const rest = all.subarray(S3_PART_BYTES);
          this.pending = rest.length > 0 ? [rest] : [];
          this.pendingBytes = rest.length;
          await this.uploadPart(all.subarray(0, S3_PART_BYTES));
        }
      } catch (err) {
        this.state = "failed";
        this.pending = [];
        this.pendingBytes = 0;
        throw err;
      }
    });
  }

  close(): Promise<void> {
    return this.serial(async () => {
      if (this.state === "closed" || this.state === "aborted") return;
      this.checkOpen();
      this.state = "closed";
      const rest = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
      if (this.uploadId === undefined) {
        await this.putObject(rest);
        return;
      }
      try {
        if (rest.length > 0) await this.uploadPart(rest);
        await this.complete();
      } catch (err) {
        await this.abortUpload();
        throw err;
      }
    });
  }

  abort(): Promise<void> {
    return this.serial(async () => {
      if (this.state === "closed" || this.state === "aborted") return;
      this.state = "aborted";
      this.pending = [];
      this.pendingBytes = 0;
      await this.abortUpload();
    });
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.tail.then(op, op);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private checkOpen(): void {
    if (this.state === "open") return;
    throw new BackupStorageError(
      this.state === "failed"
        ? `backup blob ${this.name} was not written: an upload failed; abort it and write it again`
        : `backup blob ${this.name} is not open`,
      { context: { name: this.name } },
    );
  }

  private async putObject(body: Buffer): Promise<void> {
    try {
      await this.target.client.send(
        new PutObjectCommand({
          Bucket: this.target.bucket,
          Key: this.target.key,
          Body: body,
          ContentLength: body.length,
          ContentType: contentType(this.name),
          IfNoneMatch: "*",
          ChecksumAlgorithm: "SHA256",
          ChecksumSHA256: sha256(body),
          ...this.target.encryption,
        }),
      );
    } catch (err) {
      throw this.target.error(err, "PutObject", true);
    }
  }

  private async uploadPart(body: Buffer): Promise<void> {
    if (this.uploadId === undefined) {
      try {
        const out = await this.target.client.send(
          new CreateMultipartUploadCommand({
            Bucket: this.target.bucket,
            Key: this.target.key,
            ContentType: contentType(this.name),
            ChecksumAlgorithm: "SHA256",
            ...this.target.encryption,
          }),
        );
        if (out.UploadId === undefined || out.UploadId === "") throw new Error("no UploadId in the answer");
        this.uploadId = out.UploadId;
      } catch (err) {
        throw this.target.error(err, "CreateMultipartUpload");
      }
    }
    const partNumber = this.parts.length + 1;
    if (partNumber > MAX_PARTS) {
      throw new BackupStorageError(
        `backup blob ${this.name} exceeds ${MAX_PARTS} parts of ${S3_PART_BYTES} bytes`,
        {
          context: { name: this.name },
        },
      );
    }
    const checksum = sha256(body);
    try {
      const out = await this.target.client.send(
        new UploadPartCommand({
          Bucket: this.target.bucket,
          Key: this.target.key,
          UploadId: this.uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
          ChecksumAlgorithm: "SHA256",
          ChecksumSHA256: checksum,
        }),
      );
      if (out.ETag === undefined || out.ETag === "") throw new Error("no ETag in the answer");
      this.parts.push({ PartNumber: partNumber, ETag: out.ETag, ChecksumSHA256: checksum });
    } catch (err) {
      throw this.target.error(err, "UploadPart");
    }
  }

  private async complete(): Promise<void> {
    try {
      await this.target.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.target.bucket,
          Key: this.target.key,
          UploadId: this.uploadId,
          MultipartUpload: { Parts: this.parts },
          IfNoneMatch: "*",
        }),
      );
      this.uploadId = undefined;
    } catch (err) {
      throw this.target.error(err, "CompleteMultipartUpload", true);
    }
  }

  /** Best effort: parts left behind are removed by the bucket's lifecycle rule (abort incomplete uploads). */
  private async abortUpload(): Promise<void> {
    const uploadId = this.uploadId;
    if (uploadId === undefined) return;
    this.uploadId = undefined;
    await this.target.client
      .send(
        new AbortMultipartUploadCommand({
          Bucket: this.target.bucket,
          Key: this.target.key,
          UploadId: uploadId,
        }),
      )
      .catch(() => undefined);
  }
}

function exists(name: string, location: string): BackupExistsError {
  return new BackupExistsError(`backup blob ${name} exists in ${location}; backups are never overwritten`, {
    context: { name },
  });
}

function isBlobName(name: string): boolean {
  try {
    blobNameSegments(name);
    return true;
  } catch {
    return false;
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("base64");
}

function contentType(name: string): string {
  return name.endsWith(".json")
    ? "application/json"
    : name.endsWith(".jsonl")
      ? "application/x-ndjson"
      : "application/octet-stream";
}
