/**
 * The HSM side of the restoration test: recover a workspace's master keys from its recovery kit through the drill
 * slot into the HSM as *scratch* keys (session objects that only decrypt, never token objects), and decrypt
 * documents with them using only the wrap records of a restored event store (the scratch table). No plaintext
 * master key exists outside the HSM at any point; what comes back is KCVs and per-document results.
 */
import { createHash } from "node:crypto";
import { decryptContent, ContentIntegrityError } from "../content/arquivomate-v2.js";
import { WrapRecordCorruptError } from "../datakeys/errors.js";
import {
  associatedData,
  decodeWrapped,
  isArtifact,
  isWrapFormat,
  type Artifact,
  type WrapFormat,
} from "../datakeys/wrap-format.js";
import type { DocumentEncryptionKeysAddedData } from "../eventstore/catalogue.js";
import { InvalidEventError } from "../eventstore/errors.js";
import type { EventStore } from "../eventstore/event-store.js";
import { currentWrapRecord, projectDocument } from "../eventstore/projection.js";
import { assertValidDocumentId, assertValidWorkspaceId, documentStreamId } from "../eventstore/stream-id.js";
import { KeyIntegrityError, KeyNotFoundError } from "../keystore/errors.js";
import { describeKeyId, parseDrillKeyId, parseKeyId, type KeyId } from "../keystore/key-id.js";
import type { KeyStore, TransportKeyRef } from "../keystore/key-store.js";
import { KitIntegrityError } from "../kit/errors.js";
import type { DrillSlot, KitBody, ParsedKit } from "../kit/format.js";
import { parseBody } from "../kit/kit.js";
import { zeroize } from "../shared/bytes.js";
import { mapLimit } from "../shared/concurrency.js";
import { InvalidInputError } from "../shared/errors.js";
import { readWorkspace, type CanaryRecord } from "../workspaces/workspace.js";
import { ScratchKeyCleanupError, ScratchKeyRecoveryError, ScratchKeysUnavailableError } from "./errors.js";

/** The kit's master keys, loaded into the HSM as scratch keys. */
export interface ScratchKeys {
  readonly workspaceId: string;
  readonly kitVersion: number;
  readonly kitFingerprint: string;
  /** One scratch master key (HSM session object, decrypt only) per master key version the kit carries. */
  readonly keys: ReadonlyMap<KeyId, TransportKeyRef>;
  /** The KCV of every recovered key: the kit's, checked inside the HSM against the unwrapped key. */
  readonly kcvs: ReadonlyMap<KeyId, string>;
  /**
   * Destroys every scratch object (and any drill-slot key still loaded). Idempotent; tries every object even when
   * one fails, then throws `ScratchKeyCleanupError` (calling it again retries the ones left).
   */
  close(): Promise<void>;
}

/**
 * Opens the kit's drill slot inside the HSM (the drill key unwraps the body key, decrypt only, and the wrap key,
 * unwrap only; the HSM decrypts the body), then unwraps every master key of the body into a scratch master key whose
 * KCV must be the one the kit records. The drill-slot keys are destroyed as soon as the scratch keys are loaded;
 * when anything fails, everything loaded so far is destroyed before the error is thrown.
 *
 * Errors: `KitIntegrityError` (no drill slot, body fails its authentication or content checks),
 * `ScratchKeyRecoveryError` (a master key does not unwrap to its KCV), key-store errors (`KeyNotFoundError` when the
 * HSM has no such drill key, `HsmUnavailableError`, ...).
 */
export async function openKitIntoScratchKeys(keyStore: KeyStore, kit: ParsedKit): Promise<ScratchKeys> {
  const drillSlot = kit.slots.find((s): s is DrillSlot => s.type === "drill");
  if (!drillSlot) throw new KitIntegrityError("the kit has no drill slot", "slot");
  const drillId = parseDrillKeyId(drillSlot.drillKeyId);
  const { kitVersion, workspaceId } = kit.header;
  const slotKeys: TransportKeyRef[] = [];
  const keys = new Map<KeyId, TransportKeyRef>();
  const kcvs = new Map<KeyId, string>();
  let loaded = false;
  /** What `close()` destroys: every scratch key, plus drill-slot keys whose destroy failed here. */
  let toDestroy: TransportKeyRef[] = [];
  try {
    const bodyKey = await keyStore.unwrapWithDrillKey(
      drillId,
      Buffer.from(drillSlot.wrappedBodyKey, "base64"),
      {
        oaepHash: drillSlot.oaepHash,
        purpose: "decrypt",
      },
    );
    slotKeys.push(bodyKey);
    const wrapKey = await keyStore.unwrapWithDrillKey(
      drillId,
      Buffer.from(drillSlot.wrappedWrapKey, "base64"),
      {
        oaepHash: drillSlot.oaepHash,
        purpose: "unwrap",
      },
    );
    slotKeys.push(wrapKey);
    const body = await decryptBody(keyStore, bodyKey, kit);
    for (const mk of body.masterKeys) {
      const keyId = parseKeyId(mk.keyId);
      try {
        const ref = await keyStore.unwrapMasterKeyToSession(wrapKey, Buffer.from(mk.wrapped, "base64"), {
          expectedKcv: mk.kcv,
        });
        keys.set(keyId, ref);
        kcvs.set(keyId, mk.kcv);
      } catch (err) {
        if (!(err instanceof KeyIntegrityError)) throw err;
        throw new ScratchKeyRecoveryError(
          `master key ${keyId} of kit v${kitVersion} does not unwrap to its recorded KCV ${mk.kcv} inside the HSM ` +
            "(the kit's body or drill slot was changed, or the kit was issued with another key)",
          { cause: err, context: { workspaceId, kitVersion, keyId, kitKcv: mk.kcv } },
        );
      }
    }
    loaded = true;
  } finally {
    // The drill-slot keys only serve to load the scratch keys. On failure the scratch keys go too, and the original
    // error is what the caller sees (anything left vanishes with the key store's HSM session).
    if (loaded) toDestroy = [...keys.values(), ...(await destroyAll(keyStore, slotKeys))];
    else await destroyAll(keyStore, [...slotKeys, ...keys.values()]);
  }
  return {
    workspaceId,
    kitVersion,
    kitFingerprint: kit.fingerprint,
    keys,
    kcvs,
    async close() {
      if (toDestroy.length === 0) return;
      const failed = await destroyAll(keyStore, toDestroy);
      toDestroy = failed;
      if (failed.length > 0) {
        throw new ScratchKeyCleanupError(
          `${failed.length} scratch object(s) could not be destroyed; they vanish with the key store's HSM session`,
          { context: { workspaceId, kitVersion, failed: failed.length } },
        );
      }
    },
  };
}

/** Opens the kit into scratch keys, runs `fn`, and closes them whatever happens (an error of `fn` wins). */
export async function withScratchKeys<T>(
  keyStore: KeyStore,
  kit: ParsedKit,
  fn: (scratch: ScratchKeys) => Promise<T>,
): Promise<T> {
  const scratch = await openKitIntoScratchKeys(keyStore, kit);
  let result: T;
  try {
    result = await fn(scratch);
  } catch (err) {
    await scratch.close().catch(() => undefined);
    throw err;
  }
  await scratch.close();
  return result;
}

// ---- decrypting restored documents ------------------------------------------------------------------------------

/** Why a restored document did not decrypt. */
export type RestoredDocumentFailure =
  /** The restored store has no `DocumentEncryptionKeysAdded` for it: the backup lost its wrap record. */
  | "wrap-record-missing"
  /** Its wrap record names a master key version the kit does not carry. */
  | "key-not-covered"
  /** Its wrap record is malformed (format, key id, artifacts, base64, lengths). */
  | "wrap-record-corrupt"
  /** A DEK does not unwrap with the kit's key of that version: wrong key, or a changed record. */
  | "wrong-key-or-tampered"
  /** A canary's content does not decrypt, or not to the recorded SHA-256. */
  | "content-mismatch"
  /** The document was deleted: its keys are not handed out (sample live documents). */
  | "document-deleted";

export interface RestoredDocumentResult {
  readonly documentId: string;
  readonly kind: "document" | "canary";
  readonly ok: boolean;
  /** The master key version of its current wrap record, when that record could be read. */
  readonly keyId?: string;
  /** Artifacts whose DEK unwrapped with a scratch key. */
  readonly artifacts: number;
  readonly reason?: RestoredDocumentFailure;
  /** Human-readable: ids, versions and reasons, never key material. */
  readonly problem?: string;
}

export interface DecryptWithScratchKeysInput {
  readonly keyStore: KeyStore;
  /** The restored event store (the scratch table), never the live one. */
  readonly events: EventStore;
  readonly workspaceId: string;
  /** Scratch master keys by `KeyId` (`ScratchKeys.keys`). */
  readonly keys: ReadonlyMap<string, TransportKeyRef>;
  /**
   * Document ids (every artifact's DEK of each is unwrapped), or `"canaries"`: the canaries recorded in the restored
   * workspace stream, whose content is also decrypted and compared with its recorded SHA-256.
   */
  readonly documents: readonly string[] | "canaries";
  /** Documents decrypted at once, 1..64 (default 8). */
  readonly concurrency?: number;
}

const DEFAULT_CONCURRENCY = 8;
const MAX_CONCURRENCY = 64;
const KEY_NOT_COVERED = "key version not covered by the kit";

/**
 * Decrypts documents of a restored event store with scratch keys only: for each document, its current wrap record
 * (the last `DocumentEncryptionKeysAdded` of its stream in that store), every artifact's DEK unwrapped with the
 * scratch key of the record's `KeyId`, and for canaries the content decrypted (ArquivoMate format 2) and hashed.
 * Every DEK and every decrypted content is zeroized. Results come in input order; a document that does not decrypt
 * is a result with `ok: false` and a reason. Throws only when the check itself cannot go on: bad input
 * (`InvalidInputError`), a scratch key that is gone (`ScratchKeysUnavailableError`), the HSM or the store failing.
 */
export async function decryptDocumentsWithScratchKeys(
  input: DecryptWithScratchKeysInput,
): Promise<RestoredDocumentResult[]> {
  const { keyStore, events, workspaceId, keys } = input;
  assertValidWorkspaceId(workspaceId);
  if (!keys || typeof keys.get !== "function")
    throw new InvalidInputError("keys must be a map of scratch keys");
  const concurrency = input.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new InvalidInputError(`concurrency must be an integer from 1 to ${MAX_CONCURRENCY}`, {
      context: { concurrency },
    });
  }
  const targets: { documentId: string; canary?: CanaryRecord }[] = [];
  if (input.documents === "canaries") {
    for (const canary of (await readWorkspace(events, workspaceId)).canaries) {
      targets.push({ documentId: canary.documentId, canary });
    }
  } else if (Array.isArray(input.documents)) {
    for (const documentId of input.documents) {
      assertValidDocumentId(documentId);
      targets.push({ documentId });
    }
  } else {
    throw new InvalidInputError('documents must be a list of document ids or "canaries"');
  }
  return mapLimit(targets, concurrency, (t) =>
    decryptOne({ keyStore, events, workspaceId, keys }, t.documentId, t.canary),
  );
}

// ---- internals ------------------------------------------------------------------------------------------------

async function decryptBody(keyStore: KeyStore, bodyKey: TransportKeyRef, kit: ParsedKit): Promise<KitBody> {
  let plain: Buffer | undefined;
  try {
    plain = await keyStore.decryptWithSessionKey(bodyKey, {
      nonce: kit.bodyNonce,
      ciphertext: kit.bodyCiphertext,
      aad: kit.bodyAad,
    });
    return parseBody(plain, kit.header);
  } catch (err) {
    if (err instanceof KeyIntegrityError) {
      throw new KitIntegrityError("the kit body fails its authentication inside the HSM", "body", {
        cause: err,
      });
    }
    throw err;
  } finally {
    zeroize(plain);
  }
}

/** Destroys every ref, going on past failures; returns the refs that could not be destroyed. */
async function destroyAll(keyStore: KeyStore, refs: readonly TransportKeyRef[]): Promise<TransportKeyRef[]> {
  const failed: TransportKeyRef[] = [];
  for (const ref of refs) {
    try {
      await keyStore.destroyTransportKey(ref);
    } catch {
      failed.push(ref);
    }
  }
  return failed;
}

/** A document that does not decrypt, for a reason found in the data (not an infrastructure failure). */
class DocumentProblem extends Error {
  constructor(
    readonly reason: RestoredDocumentFailure,
    message: string,
  ) {
    super(message);
  }
}

interface Ctx {
  readonly keyStore: KeyStore;
  readonly events: EventStore;
  readonly workspaceId: string;
  readonly keys: ReadonlyMap<string, TransportKeyRef>;
}

async function decryptOne(
  ctx: Ctx,
  documentId: string,
  canary?: CanaryRecord,
): Promise<RestoredDocumentResult> {
  const kind = canary ? "canary" : "document";
  let keyId: KeyId | undefined;
  const deks = new Map<Artifact, Buffer>();
  let content: Buffer | undefined;
  try {
    const { events } = await ctx.events.readStream(documentStreamId(ctx.workspaceId, documentId));
    const current = currentWrapRecord(events);
    if (!current) {
      throw new DocumentProblem(
        "wrap-record-missing",
        "no wrap record (DocumentEncryptionKeysAdded) in the restored store",
      );
    }
    let status;
    try {
      status = projectDocument(events)?.status;
    } catch (err) {
      if (!(err instanceof InvalidEventError)) throw err;
      throw new DocumentProblem("wrap-record-corrupt", `its stream does not fold: ${err.message}`);
    }
    if (status === "deleted") {
      throw new DocumentProblem("document-deleted", "the document was deleted: its keys are not handed out");
    }
    const record = checkRecord(current.data as DocumentEncryptionKeysAddedData, ctx.workspaceId, documentId);
    keyId = record.keyId;
    const ref = ctx.keys.get(keyId);
    if (!ref) throw new DocumentProblem("key-not-covered", `${KEY_NOT_COVERED}: ${keyId}`);
    for (const entry of record.artifacts) {
      let wrapped;
      try {
        wrapped = decodeWrapped(entry);
      } catch (err) {
        if (!(err instanceof WrapRecordCorruptError)) throw err;
        throw new DocumentProblem("wrap-record-corrupt", `artifact ${entry.Artifact}: ${err.message}`);
      }
      const aad = associatedData(record.format, {
        workspaceId: ctx.workspaceId,
        documentId,
        artifact: entry.Artifact,
        keyId,
      });
      try {
        deks.set(entry.Artifact, await ctx.keyStore.unwrapDataKeyWithSessionKey(ref, wrapped, aad));
      } catch (err) {
        if (err instanceof KeyIntegrityError) {
          throw new DocumentProblem(
            "wrong-key-or-tampered",
            `artifact ${entry.Artifact}: its DEK does not unwrap with the kit's ${keyId} (wrong key, or the record was changed)`,
          );
        }
        if (err instanceof KeyNotFoundError) {
          throw new ScratchKeysUnavailableError(
            `the scratch key for ${keyId} is no longer in the HSM (closed, or its HSM session was lost); open the kit again`,
            { cause: err, context: { workspaceId: ctx.workspaceId, keyId } },
          );
        }
        throw err;
      }
    }
    if (canary) {
      const dek = deks.get(canary.artifact as Artifact);
      if (!dek) {
        throw new DocumentProblem(
          "wrap-record-corrupt",
          `the wrap record has no key for the canary's ${canary.artifact}`,
        );
      }
      try {
        content = decryptContent(dek, Buffer.from(canary.ciphertext, "base64"));
      } catch (err) {
        if (!(err instanceof ContentIntegrityError)) throw err;
        throw new DocumentProblem("content-mismatch", `the canary content does not decrypt: ${err.message}`);
      }
      if (createHash("sha256").update(content).digest("hex") !== canary.contentSha256) {
        throw new DocumentProblem(
          "content-mismatch",
          "the canary content hash differs from the recorded one",
        );
      }
    }
    return { documentId, kind, ok: true, keyId, artifacts: deks.size };
  } catch (err) {
    if (!(err instanceof DocumentProblem)) throw err;
    return {
      documentId,
      kind,
      ok: false,
      ...(keyId ? { keyId } : {}),
      artifacts: deks.size,
      reason: err.reason,
      problem: err.message,
    };
  } finally {
    zeroize(...deks.values(), content);
  }
}

/** The parts of a wrap record this check needs, validated; a malformed record is a `wrap-record-corrupt` problem. */
function checkRecord(
  data: DocumentEncryptionKeysAddedData,
  workspaceId: string,
  documentId: string,
): {
  keyId: KeyId;
  format: WrapFormat;
  artifacts: { Artifact: Artifact; WrappedDek: unknown; WrapNonce: unknown }[];
} {
  const corrupt = (why: string): never => {
    throw new DocumentProblem("wrap-record-corrupt", `the wrap record ${why}`);
  };
  if (!data || typeof data !== "object") return corrupt("has no data");
  if (data.WorkspaceId !== undefined && data.WorkspaceId !== workspaceId) corrupt("names another workspace");
  if (data.AggregateId !== undefined && data.AggregateId !== documentId) corrupt("names another document");
  const format = isWrapFormat(data.WrapFormat) ? data.WrapFormat : corrupt("has an unknown WrapFormat");
  let keyId: KeyId;
  try {
    keyId = parseKeyId(data.KeyId);
  } catch {
    return corrupt("has no valid KeyId");
  }
  if (describeKeyId(keyId).workspaceId !== workspaceId) corrupt(`names another workspace's key ${keyId}`);
  if (!Array.isArray(data.Artifacts) || data.Artifacts.length === 0) corrupt("lists no artifact");
  const seen = new Set<string>();
  const artifacts = data.Artifacts.map((a) => {
    if (!a || typeof a !== "object" || !isArtifact(a.Artifact)) return corrupt("lists an unknown artifact");
    if (seen.has(a.Artifact)) corrupt(`lists artifact ${a.Artifact} twice`);
    seen.add(a.Artifact);
    return { Artifact: a.Artifact, WrappedDek: a.WrappedDek, WrapNonce: a.WrapNonce };
  });
  return { keyId, format, artifacts };
}
