/**
 * `DataKeyTransport` over Lambda Invoke (RequestResponse): how the ingestion pipeline calls GenerateDataKeys and
 * DecryptDataKeys in AWS. SDK failures become typed errors; a function error (unhandled exception) is reported
 * with its error type, never with the payload.
 */
import { InvokeCommand, LambdaClient, LambdaServiceException } from "@aws-sdk/client-lambda";
import type { DataKeyTransport, DataKeysAnswer } from "../../client/data-key-client.js";
import { AmkError } from "../../shared/errors.js";

export class DataKeyTransportError extends AmkError {
  readonly code: string;
  override readonly retryable: boolean;
  constructor(
    message: string,
    code: string,
    retryable: boolean,
    options: { cause?: unknown; context?: Record<string, unknown> },
  ) {
    super(message, options);
    this.code = code;
    this.retryable = retryable;
  }
}

const RETRYABLE = new Set([
  "TooManyRequestsException",
  "ServiceException",
  "EC2ThrottledException",
  "ResourceNotReadyException",
  "ENILimitReachedException",
  "SnapStartTimeoutException",
]);

export interface LambdaDataKeyTransportOptions {
  readonly client?: LambdaClient;
  readonly generateFunctionName: string;
  readonly decryptFunctionName: string;
}

export function createLambdaDataKeyTransport(options: LambdaDataKeyTransportOptions): DataKeyTransport {
  const client = options.client ?? new LambdaClient({});
  const invoke = async (functionName: string, request: unknown): Promise<DataKeysAnswer> => {
    let out;
    try {
      out = await client.send(
        new InvokeCommand({
          FunctionName: functionName,
          InvocationType: "RequestResponse",
          Payload: new TextEncoder().encode(JSON.stringify(request)),
        }),
      );
    } catch (err) {
      const name = err instanceof LambdaServiceException ? err.name : ((err as Error)?.name ?? "Error");
      const retryable = RETRYABLE.has(name) || (err as { $retryable?: unknown })?.$retryable !== undefined;
      throw new DataKeyTransportError(
        `invoking ${functionName} failed: ${name}`,
        retryable ? "TRANSPORT_UNAVAILABLE" : "TRANSPORT_FAILED",
        retryable,
        {
          cause: err,
          context: { functionName, awsError: name },
        },
      );
    }
    const text = out.Payload ? new TextDecoder().decode(out.Payload) : "";
    if (out.FunctionError) {
      let errorType = "Unknown";
      try {
        errorType = String((JSON.parse(text) as { errorType?: unknown }).errorType ?? "Unknown");
      } catch {
        // not JSON
      }
      throw new DataKeyTransportError(`${functionName} failed with ${errorType}`, "FUNCTION_ERROR", false, {
        context: { functionName, functionError: out.FunctionError, errorType },
      });
    }
    try {
      const answer = JSON.parse(text) as DataKeysAnswer;
      if (typeof answer !== "object" || answer === null || typeof answer.ok !== "boolean")
        throw new Error("shape");
      return answer;
    } catch (cause) {
      throw new DataKeyTransportError(
        `${functionName} returned an unreadable answer`,
        "BAD_RESPONSE",
        false,
        {
          cause,
          context: { functionName },
        },
      );
    }
  };
  return {
    generate: (request) => invoke(options.generateFunctionName, request),
    decrypt: (request) => invoke(options.decryptFunctionName, request),
  };
}
