/**
 * GenerateDataKeys (called synchronously by the ingestion pipeline): one DEK per artifact from the HSM, wrapped under
 * the workspace's active master key and recorded in the event store before the plaintext keys are returned.
 * Request: { workspaceId, documentId, artifacts: ["file", ...], idempotencyKey }.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { zeroize } from "../../core/shared/bytes.js";
import type { DataKeysResult } from "../../core/datakeys/data-keys.js";
import { failure, type Failure } from "../shared/responses.js";
import { GenerateDataKeysRequest, parseInput } from "../shared/schemas.js";
import { dataKeyServiceFromEnv } from "../shared/services.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

export interface DataKeysResponse {
  readonly ok: true;
  readonly workspaceId: string;
  readonly documentId: string;
  readonly keyId: string;
  readonly expiresAt: string;
  /** The plaintext DEKs, base64: the only place they leave the service. Never logged. */
  readonly keys: { readonly artifact: string; readonly dek: string }[];
  readonly record: DataKeysResult["record"];
  readonly recordVersion: number;
}

/** Serialises a result and zeroizes the plaintext buffers it held. */
export function toResponse(result: DataKeysResult): DataKeysResponse {
  try {
    return {
      ok: true,
      workspaceId: result.workspaceId,
      documentId: result.documentId,
      keyId: result.keyId,
      expiresAt: result.expiresAt,
      keys: result.keys.map((k) => ({ artifact: k.artifact, dek: k.plaintext.toString("base64") })),
      record: result.record,
      recordVersion: result.recordVersion,
    };
  } finally {
    zeroize(...result.keys.map((k) => k.plaintext));
  }
}

export const handler = instrumented(
  "handler",
  async (event: unknown): Promise<DataKeysResponse | Failure> => {
    const ctx: Record<string, unknown> = {};
    try {
      const req = parseInput(GenerateDataKeysRequest, event);
      Object.assign(ctx, { workspaceId: req.workspaceId, documentId: req.documentId });
      const service = await dataKeyServiceFromEnv(logger);
      const result = await service.generateDataKeys(req);
      logger.info("data keys generated", {
        ...ctx,
        keyId: result.keyId,
        artifacts: req.artifacts,
        recordVersion: result.recordVersion,
      });
      return toResponse(result);
    } catch (err) {
      return failure(err, logger, ctx);
    }
  },
);
