/**
 * DecryptDataKeys (called by document readers): the DEKs of a document's current wrap record, whichever master key
 * version (active or decrypt-only) wraps it. Refuses deleted documents.
 * Request: { workspaceId, documentId, artifacts: ["file", ...] }.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { toResponse, type DataKeysResponse } from "../generate-data-keys/handler.js";
import { failure, type Failure } from "../shared/responses.js";
import { DecryptDataKeysRequest, parseInput } from "../shared/schemas.js";
import { dataKeyServiceFromEnv } from "../shared/services.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

export const handler = instrumented(
  "handler",
  async (event: unknown): Promise<DataKeysResponse | Failure> => {
    const ctx: Record<string, unknown> = {};
    try {
      const req = parseInput(DecryptDataKeysRequest, event);
      Object.assign(ctx, { workspaceId: req.workspaceId, documentId: req.documentId });
      const service = await dataKeyServiceFromEnv(logger);
      const result = await service.decryptDataKeys(req);
      logger.info("data keys decrypted", { ...ctx, keyId: result.keyId, artifacts: req.artifacts });
      return toResponse(result);
    } catch (err) {
      return failure(err, logger, ctx);
    }
  },
);
