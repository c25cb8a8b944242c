/**
 * The pipeline side of the data-key functions: asks for a document's DEKs (GenerateDataKeys / DecryptDataKeys
 * through a `DataKeyTransport`), keeps the plaintext DEKs in memory only for a bounded time and a bounded number of
 * uses, and zeroizes them when they expire, are used up, or the client is disposed.
 *
 *   const client = new DataKeyClient({ transport });
 *   await client.generate({ workspaceId, documentId, artifacts: ["file"], idempotencyKey });
 *   const ciphertext = await client.withDataKey({ workspaceId, documentId, artifact: "file" }, (dek) => encrypt(dek, bytes));
 */
import { zeroize } from "../shared/bytes.js";
import { AmkError, InvalidInputError } from "../shared/errors.js";

export interface ErrorBody {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
}

/** The functions' answer (see functions/generate-data-keys). */
export type DataKeysAnswer =
  | {
      readonly ok: true;
      readonly workspaceId: string;
      readonly documentId: string;
      readonly keyId: string;
      readonly expiresAt: string;
      readonly keys: readonly { readonly artifact: string; readonly dek: string }[];
      readonly record: Readonly<Record<string, unknown>>;
      readonly recordVersion: number;
    }
  | { readonly ok: false; readonly error: ErrorBody };

export interface GenerateRequest {
  readonly workspaceId: string;
  readonly documentId: string;
  readonly artifacts: readonly string[];
  readonly idempotencyKey: string;
}
export interface DecryptRequest {
  readonly workspaceId: string;
  readonly documentId: string;
  readonly artifacts: readonly string[];
}

/** How requests reach the functions: in process, or Lambda Invoke (core/adapters/lambda). */
export interface DataKeyTransport {
  generate(request: GenerateRequest): Promise<DataKeysAnswer>;
  decrypt(request: DecryptRequest): Promise<DataKeysAnswer>;
}

/** The service refused a request; `code` is the service's error code (e.g. `DOCUMENT_DELETED`). */
export class DataKeyRequestError extends AmkError {
  readonly code: string;
  override readonly retryable: boolean;
  constructor(body: ErrorBody, context: Record<string, unknown>) {
    super(body.message, { context });
    this.code = body.code;
    this.retryable = body.retryable;
  }
}

export interface DataKeyClientOptions {
  readonly transport: DataKeyTransport;
  /** Longest a plaintext DEK stays in memory, whatever the service allows (default 60 s). */
  readonly maxAgeMs?: number;
  /** Uses of one cached DEK before it is dropped and fetched again (default 100). */
  readonly maxUses?: number;
  readonly now?: () => number;
  /** How often expired keys are swept and zeroized (default 5 s; 0 disables the timer). */
  readonly sweepIntervalMs?: number;
}

interface Entry {
  readonly dek: Buffer;
  readonly expiresAt: number;
  usesLeft: number;
}

export interface GeneratedKeys {
  readonly keyId: string;
  readonly recordVersion: number;
  readonly record: Readonly<Record<string, unknown>>;
  readonly artifacts: readonly string[];
}

export class DataKeyClient {
  private readonly cache = new Map<string, Entry>();
  private readonly maxAgeMs: number;
  private readonly maxUses: number;
  private readonly now: () => number;
  private readonly timer: ReturnType<typeof setInterval> | undefined;
  private disposed = false;

  constructor(private readonly options: DataKeyClientOptions) {
    this.maxAgeMs = options.maxAgeMs ?? 60_000;
    this.maxUses = options.maxUses ?? 100;
    if (!(this.maxAgeMs > 0) || !Number.isInteger(this.maxUses) || this.maxUses < 1) {
      throw new InvalidInputError("maxAgeMs must be > 0 and maxUses an integer >= 1");
    }
    this.now = options.now ?? Date.now;
    const every = options.sweepIntervalMs ?? 5_000;
    this.timer = every > 0 ? setInterval(() => this.sweep(), every) : undefined;
    this.timer?.unref?.();
  }

  /** Keys a new document (idempotent by `idempotencyKey`) and caches its DEKs. */
  async generate(request: GenerateRequest): Promise<GeneratedKeys> {
    const answer = await this.options.transport.generate(request);
    const ok = this.accept(answer, request);
    return {
      keyId: ok.keyId,
      recordVersion: ok.recordVersion,
      record: ok.record,
      artifacts: ok.keys.map((k) => k.artifact),
    };
  }

  /**
   * Runs `use` with the document artifact's DEK, fetching it (DecryptDataKeys) when it is not cached, expired or used
   * up. The buffer is only valid during `use`: do not keep it.
   */
  async withDataKey<T>(
    ref: { workspaceId: string; documentId: string; artifact: string },
    use: (dek: Buffer) => T | Promise<T>,
  ): Promise<T> {
    this.assertOpen();
    const key = cacheKey(ref.workspaceId, ref.documentId, ref.artifact);
    let entry = this.live(key);
    if (!entry) {
      const request = { workspaceId: ref.workspaceId, documentId: ref.documentId, artifacts: [ref.artifact] };
      this.accept(await this.options.transport.decrypt(request), ref);
      entry = this.live(key);
      if (!entry)
        throw new InvalidInputError("the service returned no key for that artifact", { context: { ...ref } });
    }
    entry.usesLeft -= 1;
    if (entry.usesLeft <= 0) this.drop(key);
    // A copy for the call: the cached buffer may be zeroized (expiry, dispose) while `use` still runs.
    const copy = Buffer.from(entry.dek);
    try {
      return await use(copy);
    } finally {
      zeroize(copy);
    }
  }

  /** Number of DEKs held in memory right now. */
  get size(): number {
    this.sweep();
    return this.cache.size;
  }

  /** Zeroizes and forgets every cached DEK of a document (e.g. once it is stored). */
  forget(workspaceId: string, documentId: string): void {
    const prefix = cacheKey(workspaceId, documentId, "");
    for (const key of [...this.cache.keys()]) if (key.startsWith(prefix)) this.drop(key);
  }

  /** Zeroizes everything and stops the sweep timer. */
  dispose(): void {
    this.disposed = true;
    if (this.timer) clearInterval(this.timer);
    for (const key of [...this.cache.keys()]) this.drop(key);
  }

  private accept(
    answer: DataKeysAnswer,
    request: { workspaceId: string; documentId: string },
  ): Extract<DataKeysAnswer, { ok: true }> {
    this.assertOpen();
    if (!answer.ok) {
      throw new DataKeyRequestError(answer.error, {
        workspaceId: request.workspaceId,
        documentId: request.documentId,
      });
    }
    const expiresAt = Math.min(Date.parse(answer.expiresAt) || 0, this.now() + this.maxAgeMs);
    for (const k of answer.keys) {
      const key = cacheKey(answer.workspaceId, answer.documentId, k.artifact);
      this.drop(key);
      this.cache.set(key, { dek: Buffer.from(k.dek, "base64"), expiresAt, usesLeft: this.maxUses });
    }
    return answer;
  }

  private live(key: string): Entry | undefined {
    const e = this.cache.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= this.now() || e.usesLeft <= 0) {
      this.drop(key);
      return undefined;
    }
    return e;
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, e] of [...this.cache]) if (e.expiresAt <= now || e.usesLeft <= 0) this.drop(key);
  }

  private drop(key: string): void {
    const e = this.cache.get(key);
    if (e) zeroize(e.dek);
    this.cache.delete(key);
  }

  private assertOpen(): void {
    if (this.disposed) throw new InvalidInputError("the data-key client was disposed");
  }
}

function cacheKey(workspaceId: string, documentId: string, artifact: string): string {
  return `${workspaceId}\n${documentId}\n${artifact}`;
}
