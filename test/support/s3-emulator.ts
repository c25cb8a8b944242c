/**
 * A tiny in-memory S3 for tests, at the protocol level: a `node:http` server on 127.0.0.1 (port 0) that speaks S3's
 * REST-XML with path-style addressing (`/<bucket>/<key>`), so the real `S3Client` (`forcePathStyle: true`, SigV4 with
 * fake credentials) talks to it unchanged. It answers in the shapes recorded in test/fixtures/s3/ (the error bodies
 * are those files, with the request's key, bucket or upload id put in; the success bodies and headers follow the same
 * shapes).
 *
 * Operations of one bucket, with the semantics the S3 API reference gives them:
 * - PutObject (`If-None-Match: *`: 412 PreconditionFailed when the key exists), HeadObject (404 without a body),
 *   GetObject (404 NoSuchKey; the checksum headers with `x-amz-checksum-mode: ENABLED`), ListObjectsV2 (`prefix`,
 *   `max-keys`, `continuation-token`; pages of at most `maxKeys`).
 * - CreateMultipartUpload, UploadPart (answers the part's ETag), CompleteMultipartUpload (the parts listed must be the
 *   ones uploaded, ETag and checksum, ascending; every part but the last at least 5 MiB; `If-None-Match: *` checked at
 *   completion; the object appears only then), AbortMultipartUpload (404 NoSuchUpload for an unknown upload).
 * - Object lock on the bucket (default on): PutObject and UploadPart without `Content-MD5` or an `x-amz-checksum-*`
 *   header are refused (400 InvalidRequest). A sent `x-amz-checksum-sha256` must match the body (400 BadDigest).
 * - Default encryption SSE-KMS with `defaultKmsKeyId`; a request's `x-amz-server-side-encryption-aws-kms-key-id`
 *   overrides it. Objects remember it, and HEAD/GET/PUT answer it.
 *
 * Limits: one bucket, one version per key (a PUT without a condition replaces the object), no ranges, no delimiter,
 * no ACLs or policies; the signature's shape (credential scope, payload hash) is checked, not the signature.
 * `failNext` answers the next matching requests with a recorded error fixture, or breaks the connection.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { FAKE_CREDENTIALS } from "./aws-replay-server.js";

/** The recorded error fixtures and the HTTP status S3 answers them with. */
export const S3_ERROR_FIXTURES = {
  "no-such-key": 404,
  "no-such-bucket": 404,
  "no-such-upload": 404,
  "access-denied": 403,
  "precondition-failed": 412,
  "conditional-request-conflict": 409,
  "slow-down": 503,
  "internal-error": 500,
} as const;
export type S3ErrorFixture = keyof typeof S3_ERROR_FIXTURES;

export type S3Operation =
  | "PutObject"
  | "HeadObject"
  | "GetObject"
  | "ListObjectsV2"
  | "CreateMultipartUpload"
  | "UploadPart"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload";

export interface S3InjectedFailure {
  /** A recorded error (test/fixtures/s3/<fixture>.xml) answered with its status; or `network`. */
  readonly fixture?: S3ErrorFixture;
  /** Breaks the connection instead of answering (GetObject: after half of the body). */
  readonly network?: boolean;
  /** Only requests of this operation; default any. */
  readonly operation?: S3Operation;
  /** How many requests fail this way (default 1). */
  readonly count?: number;
}

export interface S3EmulatorRequest {
  readonly operation: S3Operation | "Unknown";
  readonly method: string;
  readonly key?: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  /** Bytes of the request body. */
  readonly bytes: number;
  /** Status answered. */
  status: number;
}

export interface S3EmulatorObject {
  body: Buffer;
  readonly etag: string;
  readonly checksumSha256?: string;
  readonly checksumType?: "FULL_OBJECT" | "COMPOSITE";
  readonly contentType: string;
  readonly kmsKeyId: string;
  readonly parts: number;
  readonly lastModified: Date;
  readonly versionId: string;
}

export interface S3EmulatorUpload {
  readonly key: string;
  readonly kmsKeyId: string;
  readonly checksumAlgorithm?: string;
  readonly contentType: string;
  readonly parts: Map<number, { body: Buffer; etag: string; checksumSha256?: string }>;
}

export interface S3Emulator {
  readonly endpoint: string;
  readonly region: string;
  readonly bucket: string;
  /** Every request, in order. */
  readonly requests: S3EmulatorRequest[];
  /** Requests that were not well-formed (tests expect none). */
  readonly violations: string[];
  /** What the bucket holds, by key: tests may read and change it (as a broken disk or an attacker would). */
  readonly objects: Map<string, S3EmulatorObject>;
  /** Multipart uploads in progress, by upload id. */
  readonly uploads: Map<string, S3EmulatorUpload>;
  /** A real client pointed at the emulator (path style, fake credentials, no retries unless `extra` says so). */
  client(extra?: Partial<S3ClientConfig>): S3Client;
  failNext(failure: S3InjectedFailure): void;
  close(): Promise<void>;
}

export interface S3EmulatorOptions {
  readonly bucket?: string;
  readonly region?: string;
  /** Largest ListObjectsV2 page, whatever max-keys asks (default 1000). */
  readonly maxKeys?: number;
  /** The bucket's default encryption key (default a made-up key ARN). */
  readonly defaultKmsKeyId?: string;
  /** Object lock on the bucket: uploads need an integrity checksum (default true). */
  readonly objectLock?: boolean;
  /** Called when a request arrives, before it is answered (e.g. to race another writer). */
  readonly onRequest?: (request: S3EmulatorRequest) => void;
}

const MIN_PART_BYTES = 5 * 1024 * 1024;
const XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/";

class S3Error extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly extra: Record<string, string> = {},
  ) {
    super(message);
  }
}

const fixtureText = (file: string): string =>
  readFileSync(new URL(`../fixtures/s3/${file}`, import.meta.url), "utf8");

export function xmlEscape(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => `&${{ "&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos" }[c]};`,
  );
}

function xmlUnescape(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) => {
    const named: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
    if (named[e] !== undefined) return named[e];
    return String.fromCodePoint(e.startsWith("#x") ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}

/** Replaces the text of the first `<tag>` element (for filling a recorded body with the request's facts). */
function setElement(xml: string, tag: string, value: string): string {
  return xml.replace(new RegExp(`<${tag}>[^<]*</${tag}>`), `<${tag}>${xmlEscape(value)}</${tag}>`);
}

/** A recorded error body with the request's key, bucket, upload id and a fresh request id put in. */
function errorBody(
  fixture: S3ErrorFixture,
  facts: { key?: string; bucket: string; uploadId?: string },
): string {
  let xml = fixtureText(`${fixture}.xml`);
  if (facts.key !== undefined) xml = setElement(xml, "Key", facts.key);
  if (facts.uploadId !== undefined) xml = setElement(xml, "UploadId", facts.uploadId);
  xml = setElement(xml, "BucketName", facts.bucket);
  return setElement(xml, "RequestId", requestId());
}

function requestId(): string {
  return randomBytes(8).toString("hex").toUpperCase();
}

const md5 = (b: Uint8Array): Buffer => createHash("md5").update(b).digest();
const sha256 = (b: Uint8Array): Buffer => createHash("sha256").update(b).digest();

export async function startS3Emulator(options: S3EmulatorOptions = {}): Promise<S3Emulator> {
  const bucket = options.bucket ?? "amk-backups-test";
  const region = options.region ?? "eu-central-1";
  const maxKeys = options.maxKeys ?? 1000;
  const defaultKmsKeyId =
    options.defaultKmsKeyId ??
    "arn:aws:kms:eu-central-1:123456789012:key/00000000-0000-4000-8000-0000000bucket";
  const objectLock = options.objectLock ?? true;
  const requests: S3EmulatorRequest[] = [];
  const violations: string[] = [];
  const objects = new Map<string, S3EmulatorObject>();
  const uploads = new Map<string, S3EmulatorUpload>();
  const failures: { failure: S3InjectedFailure; left: number }[] = [];
  let versions = 0;

  const operationOf = (
    method: string,
    key: string | undefined,
    q: Record<string, string>,
  ): S3Operation | "Unknown" => {
    if (key === undefined) return method === "GET" && q["list-type"] === "2" ? "ListObjectsV2" : "Unknown";
    if (method === "PUT") return q.uploadId !== undefined ? "UploadPart" : "PutObject";
    if (method === "POST")
      return "uploads" in q ? "CreateMultipartUpload" : q.uploadId ? "CompleteMultipartUpload" : "Unknown";
    if (method === "DELETE") return q.uploadId !== undefined ? "AbortMultipartUpload" : "Unknown";
    if (method === "HEAD") return "HeadObject";
    if (method === "GET") return "GetObject";
    return "Unknown";
  };

  /** Checks the request's integrity headers against its body; returns the SHA-256 checksum sent, if any. */
  const checkUploadChecksum = (headers: IncomingHttpHeaders, body: Buffer): string | undefined => {
    const sent = headers["x-amz-checksum-sha256"];
    const any = Object.keys(headers).some(
      (h) => h.startsWith("x-amz-checksum-") && h !== "x-amz-checksum-type",
    );
    if (objectLock && !any && headers["content-md5"] === undefined) {
      throw new S3Error(
        "InvalidRequest",
        400,
        "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters",
      );
    }
    if (typeof sent === "string" && sent !== sha256(body).toString("base64")) {
      throw new S3Error("BadDigest", 400, "The SHA256 you specified did not match the calculated checksum.");
    }
    return typeof sent === "string" ? sent : undefined;
  };

  const sseHeaders = (kmsKeyId: string): Record<string, string> => ({
    "x-amz-server-side-encryption": "aws:kms",
    "x-amz-server-side-encryption-aws-kms-key-id": kmsKeyId,
    "x-amz-server-side-encryption-bucket-key-enabled": "true",
  });

  const requestedKmsKey = (headers: IncomingHttpHeaders): string => {
    const sse = headers["x-amz-server-side-encryption"];
    const key = headers["x-amz-server-side-encryption-aws-kms-key-id"];
    if (sse !== undefined && sse !== "aws:kms" && sse !== "AES256") {
      throw new S3Error("InvalidArgument", 400, "The encryption method specified is not supported");
    }
    if (key !== undefined && sse !== "aws:kms") {
      throw new S3Error(
        "InvalidArgument",
        400,
        "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
      );
    }
    return typeof key === "string" ? key : defaultKmsKeyId;
  };

  const refuseIfExists = (headers: IncomingHttpHeaders, key: string): void => {
    const inm = headers["if-none-match"];
    if (inm === undefined) return;
    if (inm !== "*") throw new S3Error("NotImplemented", 501, "If-None-Match supports only '*' on writes");
    if (objects.has(key)) throw new S3Error("PreconditionFailed", 412, "");
  };

  type Answer = { status: number; headers?: Record<string, string>; body?: string | Buffer };

  const operations: Record<
    S3Operation,
    (key: string, q: Record<string, string>, headers: IncomingHttpHeaders, body: Buffer) => Answer
  > = {
    PutObject(key, _q, headers, body) {
      const kmsKeyId = requestedKmsKey(headers);
      const checksum = checkUploadChecksum(headers, body);
      refuseIfExists(headers, key);
      const object: S3EmulatorObject = {
        body,
        etag: `"${md5(body).toString("hex")}"`,
        ...(checksum === undefined ? {} : { checksumSha256: checksum, checksumType: "FULL_OBJECT" as const }),
        contentType: String(headers["content-type"] ?? "binary/octet-stream"),
        kmsKeyId,
        parts: 0,
        lastModified: new Date(),
        versionId: `v${++versions}`,
      };
      objects.set(key, object);
      return {
        status: 200,
        headers: {
          etag: object.etag,
          "x-amz-version-id": object.versionId,
          ...(checksum === undefined
            ? {}
            : { "x-amz-checksum-sha256": checksum, "x-amz-checksum-type": "FULL_OBJECT" }),
          ...sseHeaders(kmsKeyId),
        },
      };
    },
    HeadObject(key) {
      const o = objects.get(key);
      if (o === undefined) return { status: 404 };
      return { status: 200, headers: objectHeaders(o, false) };
    },
    GetObject(key, _q, headers) {
      const o = objects.get(key);
      if (o === undefined) throw new S3Error("NoSuchKey", 404, "");
      return {
        status: 200,
        headers: objectHeaders(o, headers["x-amz-checksum-mode"] === "ENABLED"),
        body: o.body,
      };
    },
    ListObjectsV2(_key, q) {
      if (q.delimiter !== undefined || q["start-after"] !== undefined) {
        throw new S3Error("NotImplemented", 501, "the emulator lists without delimiter and start-after");
      }
      const prefix = q.prefix ?? "";
      const size = Math.min(q["max-keys"] === undefined ? 1000 : Number(q["max-keys"]), maxKeys);
      const keys = [...objects.keys()]
        .filter((k) => k.startsWith(prefix))
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const token = q["continuation-token"];
      const after = token === undefined ? undefined : Buffer.from(token, "base64").toString("utf8");
      if (token !== undefined && (after === undefined || after === "")) {
        throw new S3Error("InvalidArgument", 400, "The continuation token provided is incorrect");
      }
      const rest =
        after === undefined
          ? keys
          : keys.filter((k) => Buffer.compare(Buffer.from(k), Buffer.from(after)) > 0);
      const page = rest.slice(0, size);
      const truncated = rest.length > page.length;
      const contents = page
        .map((k) => {
          const o = objects.get(k) as S3EmulatorObject;
          return (
            `<Contents><Key>${xmlEscape(k)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified>` +
            `<ETag>${xmlEscape(o.etag)}</ETag>` +
            (o.checksumSha256 === undefined
              ? ""
              : `<ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumType>${o.checksumType}</ChecksumType>`) +
            `<Size>${o.body.length}</Size><StorageClass>STANDARD</StorageClass></Contents>`
          );
        })
        .join("");
      const body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="${XMLNS}"><Name>${xmlEscape(bucket)}</Name>` +
        `<Prefix>${xmlEscape(prefix)}</Prefix>` +
        (token === undefined ? "" : `<ContinuationToken>${xmlEscape(token)}</ContinuationToken>`) +
        `<KeyCount>${page.length}</KeyCount><MaxKeys>${size}</MaxKeys><IsTruncated>${truncated}</IsTruncated>` +
        (truncated
          ? `<NextContinuationToken>${Buffer.from(page[page.length - 1] as string).toString("base64")}</NextContinuationToken>`
          : "") +
        `${contents}</ListBucketResult>`;
      return { status: 200, headers: { "content-type": "application/xml" }, body };
    },
    CreateMultipartUpload(key, _q, headers) {
      const kmsKeyId = requestedKmsKey(headers);
      const algorithm = headers["x-amz-checksum-algorithm"];
      if (algorithm !== undefined && algorithm !== "SHA256") {
        throw new S3Error("NotImplemented", 501, "the emulator keeps SHA256 checksums only");
      }
      const uploadId = randomBytes(24).toString("base64url");
      uploads.set(uploadId, {
        key,
        kmsKeyId,
        ...(algorithm === undefined ? {} : { checksumAlgorithm: algorithm }),
        contentType: String(headers["content-type"] ?? "binary/octet-stream"),
        parts: new Map(),
      });
      let xml = fixtureText("create-multipart-upload.xml");
      xml = setElement(setElement(setElement(xml, "Bucket", bucket), "Key", key), "UploadId", uploadId);
      return {
        status: 200,
        headers: {
          "content-type": "application/xml",
          ...sseHeaders(kmsKeyId),
          ...(algorithm === undefined ? {} : { "x-amz-checksum-algorithm": algorithm }),
        },
        body: xml,
      };
    },
    UploadPart(key, q, headers, body) {
      const upload = uploadOf(q.uploadId, key);
      const partNumber = Number(q.partNumber);
      if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000) {
        throw new S3Error(
          "InvalidArgument",
          400,
          "Part number must be an integer between 1 and 10000, inclusive",
        );
      }
      const checksum = checkUploadChecksum(headers, body);
      if (upload.checksumAlgorithm === "SHA256" && checksum === undefined) {
        throw new S3Error(
          "InvalidRequest",
          400,
          "The upload was created using a sha256 checksum. The part is missing it.",
        );
      }
      const etag = `"${md5(body).toString("hex")}"`;
      upload.parts.set(partNumber, {
        body,
        etag,
        ...(checksum === undefined ? {} : { checksumSha256: checksum }),
      });
      return {
        status: 200,
        headers: {
          etag,
          ...(checksum === undefined ? {} : { "x-amz-checksum-sha256": checksum }),
          ...sseHeaders(upload.kmsKeyId),
        },
      };
    },
    CompleteMultipartUpload(key, q, headers, body) {
      const uploadId = q.uploadId as string;
      const upload = uploadOf(uploadId, key);
      const xml = body.toString("utf8");
      const listed = [...xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => {
        const field = (tag: string): string | undefined => {
          const v = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(m[1] as string)?.[1];
          return v === undefined ? undefined : xmlUnescape(v);
        };
        return {
          partNumber: Number(field("PartNumber")),
          etag: field("ETag"),
          checksum: field("ChecksumSHA256"),
        };
      });
      if (!xml.includes("<CompleteMultipartUpload") || listed.length === 0) {
        throw new S3Error(
          "MalformedXML",
          400,
          "The XML you provided was not well-formed or did not validate against our published schema.",
        );
      }
      const bodies: Buffer[] = [];
      const digests: Buffer[] = [];
      const md5s: Buffer[] = [];
      listed.forEach((p, i) => {
        if (i > 0 && p.partNumber <= (listed[i - 1] as { partNumber: number }).partNumber) {
          throw new S3Error("InvalidPartOrder", 400, "The list of parts was not in ascending order.");
        }
        const part = upload.parts.get(p.partNumber);
        if (
          part === undefined ||
          part.etag !== p.etag ||
          (upload.checksumAlgorithm === "SHA256" && part.checksumSha256 !== p.checksum)
        ) {
          throw new S3Error("InvalidPart", 400, "One or more of the specified parts could not be found.");
        }
        if (i < listed.length - 1 && part.body.length < MIN_PART_BYTES) {
          throw new S3Error(
            "EntityTooSmall",
            400,
            "Your proposed upload is smaller than the minimum allowed object size.",
          );
        }
        bodies.push(part.body);
        md5s.push(md5(part.body));
        digests.push(Buffer.from(part.checksumSha256 ?? "", "base64"));
      });
      refuseIfExists(headers, key);
      const whole = Buffer.concat(bodies);
      const composite =
        upload.checksumAlgorithm === "SHA256"
          ? `${sha256(Buffer.concat(digests)).toString("base64")}-${listed.length}`
          : undefined;
      const object: S3EmulatorObject = {
        body: whole,
        etag: `"${md5(Buffer.concat(md5s)).toString("hex")}-${listed.length}"`,
        ...(composite === undefined ? {} : { checksumSha256: composite, checksumType: "COMPOSITE" as const }),
        contentType: upload.contentType,
        kmsKeyId: upload.kmsKeyId,
        parts: listed.length,
        lastModified: new Date(),
        versionId: `v${++versions}`,
      };
      objects.set(key, object);
      uploads.delete(uploadId);
      let result = fixtureText("complete-multipart-upload.xml");
      result = setElement(result, "Location", `http://127.0.0.1/${bucket}/${key}`);
      result = setElement(setElement(result, "Bucket", bucket), "Key", key);
      result = setElement(result, "ETag", object.etag);
      result =
        composite === undefined
          ? result.replace(/<ChecksumSHA256>[^<]*<\/ChecksumSHA256><ChecksumType>[^<]*<\/ChecksumType>/, "")
          : setElement(result, "ChecksumSHA256", composite);
      return {
        status: 200,
        headers: {
          "content-type": "application/xml",
          "x-amz-version-id": object.versionId,
          ...sseHeaders(object.kmsKeyId),
        },
        body: result,
      };
    },
    AbortMultipartUpload(key, q) {
      uploadOf(q.uploadId, key);
      uploads.delete(q.uploadId as string);
      return { status: 204 };
    },
  };

  function uploadOf(uploadId: string | undefined, key: string): S3EmulatorUpload {
    const upload = uploadId === undefined ? undefined : uploads.get(uploadId);
    if (upload === undefined || upload.key !== key) throw new S3Error("NoSuchUpload", 404, "");
    return upload;
  }

  function objectHeaders(o: S3EmulatorObject, checksum: boolean): Record<string, string> {
    return {
      "content-length": String(o.body.length),
      "content-type": o.contentType,
      etag: o.etag,
      "last-modified": o.lastModified.toUTCString(),
      "accept-ranges": "bytes",
      "x-amz-version-id": o.versionId,
      "x-amz-object-lock-mode": "GOVERNANCE",
      ...(o.parts > 0 ? { "x-amz-mp-parts-count": String(o.parts) } : {}),
      ...(checksum && o.checksumSha256 !== undefined
        ? { "x-amz-checksum-sha256": o.checksumSha256, "x-amz-checksum-type": o.checksumType as string }
        : {}),
      ...sseHeaders(o.kmsKeyId),
    };
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? "/", "http://localhost");
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? "";
    const [, bucketPart, ...keyParts] = url.pathname.split("/");
    const key =
      keyParts.length === 0 || (keyParts.length === 1 && keyParts[0] === "")
        ? undefined
        : decodeURIComponent(keyParts.join("/"));
    const operation = operationOf(method, key, query);
    const recorded: S3EmulatorRequest = {
      operation,
      method,
      ...(key === undefined ? {} : { key }),
      query,
      headers: req.headers,
      bytes: body.length,
      status: 0,
    };
    requests.push(recorded);
    options.onRequest?.(recorded);

    const send = (
      status: number,
      headers: Record<string, string> = {},
      payload: string | Buffer = "",
    ): void => {
      recorded.status = status;
      const bytes = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
      res.writeHead(status, {
        "x-amz-request-id": requestId(),
        "x-amz-id-2": randomBytes(24).toString("base64"),
        ...(bytes.length > 0 && headers["content-type"] === undefined
          ? { "content-type": "application/xml" }
          : {}),
        ...(headers["content-length"] === undefined
          ? { "content-length": String(method === "HEAD" ? 0 : bytes.length) }
          : {}),
        ...headers,
      });
      if (method === "HEAD" || bytes.length === 0) {
        res.end();
        return;
      }
      // In 1 MiB writes, as a large body arrives.
      for (let i = 0; i < bytes.length; i += 1 << 20) res.write(bytes.subarray(i, i + (1 << 20)));
      res.end();
    };
    const sendError = (fixture: S3ErrorFixture | undefined, err: S3Error): void => {
      const xml =
        fixture !== undefined
          ? errorBody(fixture, {
              ...(key === undefined ? {} : { key }),
              bucket,
              ...(query.uploadId ? { uploadId: query.uploadId } : {}),
            })
          : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${err.code}</Code><Message>${xmlEscape(err.message)}</Message>` +
            `<RequestId>${requestId()}</RequestId><HostId>${randomBytes(24).toString("base64")}</HostId></Error>`;
      send(err.status, { "content-type": "application/xml" }, xml);
    };

    // The request's shape: SigV4 for s3 in the region, the payload hash, no chunked encoding, a known bucket.
    const auth = req.headers.authorization ?? "";
    const payloadHash = req.headers["x-amz-content-sha256"];
    const problem = (
      [
        [
          new RegExp(`^AWS4-HMAC-SHA256 Credential=[^/]+/\\d{8}/${region}/s3/aws4_request, `).test(auth),
          `not a SigV4 signature for s3 in ${region}`,
        ],
        [
          payloadHash === "UNSIGNED-PAYLOAD" || payloadHash === sha256(body).toString("hex"),
          `x-amz-content-sha256 is not the body's (${String(payloadHash)})`,
        ],
        [
          !String(req.headers["content-encoding"] ?? "").includes("aws-chunked"),
          "aws-chunked bodies are not expected",
        ],
        [operation !== "Unknown", `unknown operation ${method} ${req.url}`],
      ] as const
    ).find(([ok]) => !ok)?.[1];
    if (problem !== undefined) {
      violations.push(`${operation}: ${problem}`);
      return sendError(undefined, new S3Error("InvalidRequest", 400, problem));
    }
    if (bucketPart !== bucket) return sendError("no-such-bucket", new S3Error("NoSuchBucket", 404, ""));

    const injected = failures.find((f) => (f.failure.operation ?? operation) === operation);
    if (injected !== undefined) {
      if (--injected.left <= 0) failures.splice(failures.indexOf(injected), 1);
      const { fixture, network } = injected.failure;
      if (network === true) {
        recorded.status = -1;
        const o = operation === "GetObject" && key !== undefined ? objects.get(key) : undefined;
        if (o !== undefined && o.body.length > 1) {
          // Headers and half of the body, then the connection breaks.
          res.writeHead(200, objectHeaders(o, false));
          res.write(o.body.subarray(0, o.body.length >> 1), () => res.destroy());
        } else {
          res.destroy();
        }
        return;
      }
      if (fixture !== undefined) {
        return method === "HEAD"
          ? send(S3_ERROR_FIXTURES[fixture])
          : sendError(fixture, new S3Error(fixture, S3_ERROR_FIXTURES[fixture], ""));
      }
    }
    try {
      const answer = operations[operation as S3Operation](key as string, query, req.headers, body);
      send(answer.status, answer.headers, answer.body);
    } catch (err) {
      if (!(err instanceof S3Error)) throw err;
      const fixture = (
        {
          NoSuchKey: "no-such-key",
          NoSuchUpload: "no-such-upload",
          PreconditionFailed: "precondition-failed",
        } as Record<string, S3ErrorFixture>
      )[err.code];
      if (method === "HEAD") return send(err.status);
      sendError(fixture, err);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      violations.push(`emulator error: ${String(err)}`);
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    region,
    bucket,
    requests,
    violations,
    objects,
    uploads,
    client: (extra = {}) =>
      new S3Client({
        endpoint,
        region,
        forcePathStyle: true,
        credentials: FAKE_CREDENTIALS,
        maxAttempts: 1,
        ...extra,
      }),
    failNext: (failure) => failures.push({ failure, left: failure.count ?? 1 }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
