/**
 * Document lifecycle events from the ingestion pipeline, delivered by EventBridge (asynchronous invocation):
 * `DocumentStored` confirms a document's keys, `DocumentDeleted` records that they are destroyed (DecryptDataKeys
 * refuses the document from then on). Redeliveries record nothing twice (the EventBridge event id is the event id).
 *
 * An unknown or malformed event, or one about a document without keys, throws a typed error and changes nothing:
 * the invocation fails, and Lambda's on-failure destination puts the event with the error type and message (the
 * reason) on the dead-letter queue.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import type { LifecycleResult } from "../../core/datakeys/data-keys.js";
import { LifecycleEvent, parseInput } from "../shared/schemas.js";
import { dataKeyServiceFromEnv } from "../shared/services.js";
import { AmkError } from "../../core/shared/errors.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

export const handler = instrumented("handler", async (event: unknown): Promise<LifecycleResult> => {
  try {
    const e = parseInput(LifecycleEvent, event);
    const service = await dataKeyServiceFromEnv(logger);
    const input = {
      workspaceId: e.detail.workspaceId,
      documentId: e.detail.documentId,
      messageId: e.id,
      occurredAt: e.time && !Number.isNaN(Date.parse(e.time)) ? new Date(e.time).toISOString() : undefined,
    };
    const result =
      e["detail-type"] === "DocumentStored"
        ? await service.recordDocumentStored(input)
        : await service.recordDocumentDeleted(input);
    logger.info("lifecycle event handled", { type: e["detail-type"], eventId: e.id, ...input, ...result });
    return result;
  } catch (err) {
    const safe =
      err instanceof AmkError ? { name: err.name, code: err.code, message: err.message } : { name: "Error" };
    logger.error("lifecycle event refused; it goes to the dead-letter queue", { error: safe });
    throw err;
  }
});
