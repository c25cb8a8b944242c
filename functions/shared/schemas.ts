/**
 * Input schemas of the functions (zod). Every function input goes through `parseInput`: first a size and depth guard
 * on the raw payload (`assertPayloadSize`), then the schema. A failed check becomes an InvalidInputError naming the
 * fields (never echoing more than a bounded preview of what was sent). docs/limits.md lists every limit.
 */
import { z } from "zod";
import { InvalidInputError } from "../../core/shared/errors.js";
import { ARTIFACTS } from "../../core/datakeys/wrap-format.js";
import { DOCUMENT_ID_PATTERN, WORKSPACE_ID_PATTERN } from "../../core/eventstore/stream-id.js";

/**
 * Largest function input accepted: the UTF-8 size of its JSON form (string escapes not counted). Above every
 * legitimate request (the largest is the unlock function's uploaded armoured kit, at most 1,000,000 characters) and
 * below Lambda's 6 MB synchronous payload.
 */
export const MAX_PAYLOAD_BYTES = 1_048_576;
/** Deepest nesting accepted (objects and arrays). Every schema here is at most three levels deep. */
export const MAX_PAYLOAD_DEPTH = 32;
/** Problems listed in an InvalidInputError, and the length of each (zod quotes unknown keys as sent). */
const MAX_PROBLEMS = 10;
const MAX_PROBLEM_LENGTH = 200;

const id = (what: string, pattern: RegExp, max: number) =>
  z.string({ error: `${what} is required` }).regex(pattern, `${what}: letters, digits, - and _ (1-${max})`);

export const WorkspaceIdSchema = id("workspaceId", WORKSPACE_ID_PATTERN, 64);
export const DocumentIdSchema = id("documentId", DOCUMENT_ID_PATTERN, 128);
/** A Step Functions execution name as the recovery uses it (the name that holds the recovery's lock). */
export const ExecutionNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,80}$/, "executionName: 1-80 letters, digits, - or _");
export const ArtifactsSchema = z
  .array(z.enum(ARTIFACTS, { error: `artifact must be one of ${ARTIFACTS.join(", ")}` }))
  .min(1, "artifacts: at least one")
  .max(5, "artifacts: at most five");

export const GenerateDataKeysRequest = z.strictObject({
  workspaceId: WorkspaceIdSchema,
  documentId: DocumentIdSchema,
  artifacts: ArtifactsSchema,
  idempotencyKey: z
    .string()
    .regex(/^[\x21-\x7e]{1,128}$/, "idempotencyKey: 1-128 printable ASCII characters"),
});

export const DecryptDataKeysRequest = z.strictObject({
  workspaceId: WorkspaceIdSchema,
  documentId: DocumentIdSchema,
  artifacts: ArtifactsSchema,
});

/** EventBridge events from the ingestion pipeline (`source` is checked by the rule; we check it again). */
export const LifecycleEvent = z.object({
  id: z.string().min(1).max(256),
  source: z.string().min(1).max(256),
  "detail-type": z.enum(["DocumentStored", "DocumentDeleted"], {
    error: "detail-type must be DocumentStored or DocumentDeleted",
  }),
  time: z.string().max(64, "time: at most 64 characters").optional(),
  detail: z.object({ workspaceId: WorkspaceIdSchema, documentId: DocumentIdSchema }),
});

/** A function input over `MAX_PAYLOAD_BYTES` or nested deeper than `MAX_PAYLOAD_DEPTH`. Nothing was read or written. */
export class PayloadTooLargeError extends InvalidInputError {}

/**
 * Refuses a payload whose JSON form is larger than `maxBytes` or nested deeper than `maxDepth`, before any schema
 * looks at it. The size counted is never more than `JSON.stringify` would give (escapes are not counted), so a payload
 * that fits is never refused; the walk stops as soon as a limit is passed, so its cost is bounded by the limits, not
 * by the input. A cycle counts as too deep.
 */
export function assertPayloadSize(
  input: unknown,
  maxBytes: number = MAX_PAYLOAD_BYTES,
  maxDepth: number = MAX_PAYLOAD_DEPTH,
): void {
  const tooLarge = (why: string, context: Record<string, unknown>): never => {
    throw new PayloadTooLargeError(`invalid request: ${why}`, {
      context: { ...context, maxBytes, maxDepth },
    });
  };
  let bytes = 0;
  // `prepaid`: the one byte every array element and object value takes at least, counted with its container, so
  // that a container too large to fit is refused before its members are even looked at.
  const stack: { value: unknown; depth: number; prepaid: number }[] = [
    { value: input, depth: 0, prepaid: 0 },
  ];
  const check = () => {
    if (bytes > maxBytes) tooLarge(`the payload is larger than ${maxBytes} bytes`, { atLeastBytes: bytes });
  };
  try {
    while (stack.length > 0) {
      const { value, depth, prepaid } = stack.pop()!;
      bytes -= prepaid;
      if (typeof value === "string") {
        // A UTF-16 unit is at least one UTF-8 byte: a string longer than the limit is not measured at all.
        bytes += (value.length > maxBytes ? value.length : Buffer.byteLength(value, "utf8")) + 2;
      } else if (value === null || typeof value !== "object") {
        bytes += Math.max(1, String(value).length);
      } else {
        if (depth >= maxDepth) tooLarge(`nested deeper than ${maxDepth} levels`, { depth: depth + 1 });
        if (Array.isArray(value)) {
          bytes += 1 + Math.max(1, value.length) + value.length;
          check();
          for (const v of value) stack.push({ value: v, depth: depth + 1, prepaid: 1 });
        } else {
          const keys = Object.keys(value);
          bytes += 1 + Math.max(1, keys.length) + keys.length;
          check();
          for (const k of keys) {
            bytes += (k.length > maxBytes ? k.length : Buffer.byteLength(k, "utf8")) + 3;
            check();
            stack.push({ value: (value as Record<string, unknown>)[k], depth: depth + 1, prepaid: 1 });
          }
        }
      }
      check();
    }
  } catch (err) {
    if (err instanceof PayloadTooLargeError) throw err;
    // Only a non-JSON value (a throwing getter, a revoked proxy) gets here: never a Lambda payload.
    throw new InvalidInputError("invalid request: the payload is not a JSON value", {
      context: { error: (err as Error)?.name ?? typeof err },
    });
  }
}

export function parseInput<T>(
  schema: z.ZodType<T>,
  input: unknown,
  limits: { readonly maxBytes?: number; readonly maxDepth?: number } = {},
): T {
  assertPayloadSize(input, limits.maxBytes, limits.maxDepth);
  const r = schema.safeParse(input);
  if (!r.success) {
    const problems = r.error.issues.slice(0, MAX_PROBLEMS).map((i) => {
      const text = i.path.length ? `${i.path.map(String).join(".")}: ${i.message}` : i.message;
      return text.length > MAX_PROBLEM_LENGTH ? `${text.slice(0, MAX_PROBLEM_LENGTH)}...` : text;
    });
    if (r.error.issues.length > MAX_PROBLEMS)
      problems.push(`and ${r.error.issues.length - MAX_PROBLEMS} more`);
    throw new InvalidInputError(`invalid request: ${problems.join("; ")}`, { context: { problems } });
  }
  return r.data;
}

/** The `error` a state machine's Catch hands to its RecordFailure task (`ResultPath`): Step Functions' Error and Cause. */
export const CaughtErrorSchema = z
  .object({ Error: z.string().max(200).optional(), Cause: z.string().max(32_768).optional() })
  .optional();

/**
 * The message of a caught error's `Cause`: the `errorMessage` of a Lambda-style cause (JSON), else the cause itself
 * (Step Functions' own errors, e.g. `States.Timeout`), cut to 500 characters.
 */
export function causeMessageOf(cause: string | undefined): string {
  if (!cause) return "";
  try {
    return String((JSON.parse(cause) as { errorMessage?: unknown }).errorMessage ?? "").slice(0, 500);
  } catch {
    return cause.slice(0, 500);
  }
}
