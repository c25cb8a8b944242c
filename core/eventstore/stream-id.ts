import { WORKSPACE_ID_PATTERN } from "../keystore/key-id.js";
import { InvalidStreamIdError } from "./errors.js";

/**
 * Stream ids. A workspace has one stream, `ws-<workspaceId>` (master keys, rotations, drills, kits), and each of its
 * documents one, `ws-<workspaceId>/doc-<documentId>` (wrap records and lifecycle). Ids are letters, digits, `-` and
 * `_` only (so `/` and `#` are free as separators in storage keys); workspace ids are the key store's
 * (1-64 characters), document ids 1-128 characters (ArquivoMate's GUID strings fit).
 */
export type StreamId = string & { readonly __brand: "StreamId" };

export { WORKSPACE_ID_PATTERN };
export const DOCUMENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const STREAM_ID_PATTERN = /^ws-([A-Za-z0-9][A-Za-z0-9_-]{0,63})(?:\/doc-([A-Za-z0-9][A-Za-z0-9_-]{0,127}))?$/;

export type ParsedStreamId =
  | { readonly kind: "workspace"; readonly streamId: StreamId; readonly workspaceId: string }
  | {
      readonly kind: "document";
      readonly streamId: StreamId;
      readonly workspaceId: string;
      readonly documentId: string;
    };

export function assertValidWorkspaceId(workspaceId: unknown): asserts workspaceId is string {
  if (typeof workspaceId !== "string" || !WORKSPACE_ID_PATTERN.test(workspaceId)) {
    throw new InvalidStreamIdError(
      "workspace id must be 1-64 characters of letters, digits, '-' or '_', starting with a letter or digit",
      { context: { workspaceId: preview(workspaceId) } },
    );
  }
}

export function assertValidDocumentId(documentId: unknown): asserts documentId is string {
  if (typeof documentId !== "string" || !DOCUMENT_ID_PATTERN.test(documentId)) {
    throw new InvalidStreamIdError(
      "document id must be 1-128 characters of letters, digits, '-' or '_', starting with a letter or digit",
      { context: { documentId: preview(documentId) } },
    );
  }
}

/** `ws-<workspaceId>` */
export function workspaceStreamId(workspaceId: string): StreamId {
  assertValidWorkspaceId(workspaceId);
  return `ws-${workspaceId}` as StreamId;
}

/** `ws-<workspaceId>/doc-<documentId>` */
export function documentStreamId(workspaceId: string, documentId: string): StreamId {
  assertValidWorkspaceId(workspaceId);
  assertValidDocumentId(documentId);
  return `ws-${workspaceId}/doc-${documentId}` as StreamId;
}

/** Validates a stream id and says what it names; throws `InvalidStreamIdError` for anything else. */
export function parseStreamId(value: unknown): ParsedStreamId {
  if (typeof value !== "string") {
    throw new InvalidStreamIdError("stream id must be a string", { context: { streamId: preview(value) } });
  }
  const m = STREAM_ID_PATTERN.exec(value);
  const workspaceId = m?.[1];
  if (!m || workspaceId === undefined) {
    throw new InvalidStreamIdError(
      "stream id must be ws-<workspaceId> or ws-<workspaceId>/doc-<documentId>",
      {
        context: { streamId: preview(value) },
      },
    );
  }
  const documentId = m[2];
  const streamId = value as StreamId;
  return documentId === undefined
    ? { kind: "workspace", streamId, workspaceId }
    : { kind: "document", streamId, workspaceId, documentId };
}

export function isStreamId(value: unknown): value is StreamId {
  return typeof value === "string" && STREAM_ID_PATTERN.test(value);
}

function preview(value: unknown): string {
  return typeof value === "string" ? value.slice(0, 200) : `<${typeof value}>`;
}
