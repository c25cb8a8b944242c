/** `DataKeyTransport` that calls the real Lambda handlers in this process: the local stand-in for Lambda Invoke. */
import type { DataKeyTransport, DataKeysAnswer } from "../../core/client/data-key-client.js";
import { handler as generate } from "../../functions/generate-data-keys/handler.js";
import { handler as decrypt } from "../../functions/decrypt-data-keys/handler.js";

// Through JSON, as Lambda would serialise the payloads.
const viaJson = (x: unknown): DataKeysAnswer => JSON.parse(JSON.stringify(x)) as DataKeysAnswer;

export const inProcessTransport: DataKeyTransport = {
  generate: async (request) => viaJson(await generate(JSON.parse(JSON.stringify(request)))),
  decrypt: async (request) => viaJson(await decrypt(JSON.parse(JSON.stringify(request)))),
};
