import { timingSafeEqual } from "node:crypto";

/** Overwrites a buffer we own with zeros (best effort: JS cannot promise no copy exists elsewhere). */
export function zeroize(...buffers: (Uint8Array | undefined | null)[]): void {
  for (const b of buffers) b?.fill(0);
}

/** Compares two secrets in constant time with respect to their contents; different lengths are unequal. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    // Still spend a comparison so the length check is not the only work done.
    timingSafeEqual(Buffer.from(a), Buffer.from(a));
    return false;
  }
  return timingSafeEqual(a, b);
}

/** Runs `fn` with `secret` and zeroizes it afterwards, whatever happens. */
export async function usingSecret<T>(secret: Uint8Array, fn: (s: Uint8Array) => Promise<T> | T): Promise<T> {
  try {
    return await fn(secret);
  } finally {
    zeroize(secret);
  }
}
