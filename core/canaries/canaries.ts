/**
 * Canary documents: a few documents per workspace whose content is known (its SHA-256 is recorded) and whose
 * ciphertext is kept in the workspace stream. Their DEKs are ordinary wrap records in their own document streams,
 * so rotations and recoveries move them like any document; a drill or a recovery proves the whole chain (HSM master
 * key -> wrap record -> DEK -> content) by decrypting them and comparing the hash.
 */
import { createHash, randomBytes } from "node:crypto";
import { decryptContent, encryptContent } from "../content/arquivomate-v2.js";
import { EventTypes, type CanaryDocumentCreatedData } from "../eventstore/catalogue.js";
import type { EventStore } from "../eventstore/event-store.js";
import { ExpectedVersionConflictError } from "../eventstore/errors.js";
import { newEvent } from "../eventstore/events.js";
import { workspaceStreamId } from "../eventstore/stream-id.js";
import type { DataKeyService } from "../datakeys/data-keys.js";
import { zeroize } from "../shared/bytes.js";
import { AmkError } from "../shared/errors.js";
import { uuidFromName } from "../shared/ids.js";
import { readWorkspace, type CanaryRecord } from "../workspaces/workspace.js";

export const DEFAULT_CANARY_COUNT = 3;
const CANARY_ARTIFACT = "file";

/** A canary did not decrypt to its recorded content (or has no keys): documents may be unrecoverable. */
export class CanaryCheckError extends AmkError {
  readonly code = "CANARY_CHECK_FAILED";
}

export interface CanaryDeps {
  readonly dataKeys: DataKeyService;
  readonly events: EventStore;
  readonly now?: () => Date;
}

export interface CanaryResult {
  readonly documentId: string;
  readonly ok: boolean;
  /** The master key version that wraps its DEK (when its record could be read). */
  readonly keyId?: string;
  /** Why it failed: an error name and message, never key material. */
  readonly problem?: string;
}

/** The canary document ids of a workspace (stable: the same names every time). */
export function canaryDocumentId(workspaceId: string, index: number): string {
  return `canary-${uuidFromName("canary", workspaceId, String(index))}`;
}

/**
 * Creates the workspace's canaries (idempotent: existing ones are kept). Each gets a DEK from the data-key service
 * (recorded like any document's), content of random bytes with a readable prefix, encrypted with ArquivoMate's
 * content format; the plaintext and the DEK are zeroized once the ciphertext and the hash are recorded.
 */
export async function ensureCanaries(
  deps: CanaryDeps,
  workspaceId: string,
  count = DEFAULT_CANARY_COUNT,
): Promise<CanaryRecord[]> {
  for (let i = 0; i < count; i++) {
    const ws = await readWorkspace(deps.events, workspaceId);
    const documentId = canaryDocumentId(workspaceId, i);
    if (ws.canaries.some((c) => c.documentId === documentId)) continue;
    const keys = await deps.dataKeys.generateDataKeys({
      workspaceId,
      documentId,
      artifacts: [CANARY_ARTIFACT],
      idempotencyKey: `canary-${i}`,
    });
    const content = Buffer.concat([
      Buffer.from(`ArquivoMate Keys canary ${i} of workspace ${workspaceId}\n`),
      randomBytes(64),
    ]);
    try {
      const dek = keys.keys[0]!.plaintext;
      const ciphertext = encryptContent(dek, content);
      const data: CanaryDocumentCreatedData = {
        WorkspaceId: workspaceId,
        DocumentId: documentId,
        Artifact: CANARY_ARTIFACT,
        ContentSha256: createHash("sha256").update(content).digest("hex"),
        Ciphertext: ciphertext.toString("base64"),
      };
      try {
        await deps.events.appendToStream(
          workspaceStreamId(workspaceId),
          [
            newEvent(EventTypes.CanaryDocumentCreated, data, {
              eventId: uuidFromName("CanaryDocumentCreated", workspaceId, documentId),
              occurredAt: (deps.now ?? (() => new Date()))(),
            }),
          ],
          { expectedVersion: ws.version },
        );
      } catch (err) {
        if (!(err instanceof ExpectedVersionConflictError)) throw err;
        i -= 1; // the workspace changed under us: read it again and retry this canary
      }
    } finally {
      zeroize(content, ...keys.keys.map((k) => k.plaintext));
    }
  }
  return [...(await readWorkspace(deps.events, workspaceId)).canaries];
}

/**
 * Decrypts every canary end to end with the current wrap records and the HSM, and compares the content hash.
 * Never throws for a canary that fails: it is reported with the reason. A transient failure on the way (a retryable
 * error: the HSM or the event store busy) proves nothing about the canary and is thrown, for the caller to retry.
 */
export async function verifyCanaries(
  deps: Pick<CanaryDeps, "dataKeys" | "events">,
  workspaceId: string,
): Promise<CanaryResult[]> {
  const ws = await readWorkspace(deps.events, workspaceId);
  const out: CanaryResult[] = [];
  for (const c of ws.canaries) out.push(await verifyCanary(deps.dataKeys, workspaceId, c));
  return out;
}

export async function verifyCanary(
  dataKeys: DataKeyService,
  workspaceId: string,
  canary: CanaryRecord,
): Promise<CanaryResult> {
  let dek: Buffer | undefined;
  let plain: Buffer | undefined;
  let keyId: string | undefined;
  try {
    const r = await dataKeys.decryptDataKeys({
      workspaceId,
      documentId: canary.documentId,
      artifacts: [canary.artifact],
    });
    keyId = r.keyId;
    dek = r.keys[0]!.plaintext;
    plain = decryptContent(dek, Buffer.from(canary.ciphertext, "base64"));
    const hash = createHash("sha256").update(plain).digest("hex");
    if (hash !== canary.contentSha256) {
      return { documentId: canary.documentId, ok: false, keyId, problem: "content hash differs" };
    }
    return { documentId: canary.documentId, ok: true, keyId };
  } catch (err) {
    if (err instanceof AmkError && err.retryable) throw err;
    const e = err as Error;
    return {
      documentId: canary.documentId,
      ok: false,
      ...(keyId ? { keyId } : {}),
      problem: `${e.name}: ${e.message}`.slice(0, 300),
    };
  } finally {
    if (dek) zeroize(dek);
    if (plain) zeroize(plain);
  }
}
