/** Input schemas of the functions (zod). A failed parse becomes an InvalidInputError naming every field. */
import { z } from "zod";
import { InvalidInputError } from "../../core/shared/errors.js";
import { ARTIFACTS } from "../../core/datakeys/wrap-format.js";
import { DOCUMENT_ID_PATTERN, WORKSPACE_ID_PATTERN } from "../../core/eventstore/stream-id.js";

const id = (what: string, pattern: RegExp, max: number) =>
  z.string({ error: `${what} is required` }).regex(pattern, `${what}: letters, digits, - and _ (1-${max})`);

export const WorkspaceIdSchema = id("workspaceId", WORKSPACE_ID_PATTERN, 64);
export const DocumentIdSchema = id("documentId", DOCUMENT_ID_PATTERN, 128);
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
  source: z.string().min(1),
  "detail-type": z.enum(["DocumentStored", "DocumentDeleted"], {
    error: "detail-type must be DocumentStored or DocumentDeleted",
  }),
  time: z.string().optional(),
  detail: z.object({ workspaceId: WorkspaceIdSchema, documentId: DocumentIdSchema }),
});

export function parseInput<T>(schema: z.ZodType<T>, input: unknown): T {
  const r = schema.safeParse(input);
  if (!r.success) {
    const problems = r.error.issues.map((i) =>
      i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message,
    );
    throw new InvalidInputError(`invalid request: ${problems.join("; ")}`, { context: { problems } });
  }
  return r.data;
}
