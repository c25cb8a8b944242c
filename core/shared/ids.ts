import { createHash } from "node:crypto";

/**
 * A UUID derived from a name (SHA-256, RFC 9562 version 8 layout): the same name always gives the same id. Used for
 * event ids of idempotent operations, so that a retry appends the same event id and the store recognises it.
 */
export function uuidFromName(...parts: string[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(`${p.length}:${p};`);
  const b = h.digest().subarray(0, 16);
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x80; // version 8
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80; // variant 10
  const hex = b.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
