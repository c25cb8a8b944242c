/** Splitting an events file into lines as it streams by, with the SHA-256 and size of every byte seen. */
import { createHash, type Hash } from "node:crypto";
import { MAX_LINE_BYTES } from "./format.js";

export type FileLine =
  | { readonly kind: "line"; readonly text: string; readonly number: number }
  /** The file ends without a line end after its last line (a cut-off file). */
  | { readonly kind: "unterminated"; readonly number: number }
  /** A line longer than `MAX_LINE_BYTES`: not an event; the rest of the file is only hashed. */
  | { readonly kind: "too-long"; readonly number: number };

/** What a file turned out to be once read to the end. */
export interface FileDigest {
  sha256: string;
  bytes: number;
}

/**
 * The lines of a blob (UTF-8, `\n`-terminated), numbered from 1. `digest` is filled in once the iteration ends.
 * After a `too-long` line nothing more is yielded, but the remaining bytes are still hashed.
 */
export async function* fileLines(
  chunks: AsyncIterable<Uint8Array>,
  digest: FileDigest,
): AsyncGenerator<FileLine> {
  const hash: Hash = createHash("sha256");
  let bytes = 0;
  let pending: Buffer = Buffer.alloc(0);
  let number = 0;
  let broken = false;
  for await (const chunk of chunks) {
    hash.update(chunk);
    bytes += chunk.byteLength;
    if (broken) continue;
    const view = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const buf = pending.length > 0 ? Buffer.concat([pending, view]) : view;
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      number += 1;
      if (nl - start > MAX_LINE_BYTES) {
        broken = true;
        yield { kind: "too-long", number };
        break;
      }
      yield { kind: "line", text: buf.toString("utf8", start, nl), number };
      start = nl + 1;
    }
    if (broken) {
      pending = Buffer.alloc(0);
      continue;
    }
    // Copy the tail: `view` may be a chunk the storage reuses.
    pending = Buffer.from(buf.subarray(start));
    if (pending.length > MAX_LINE_BYTES) {
      broken = true;
      pending = Buffer.alloc(0);
      yield { kind: "too-long", number: number + 1 };
    }
  }
  if (!broken && pending.length > 0) yield { kind: "unterminated", number: number + 1 };
  digest.sha256 = hash.digest("hex");
  digest.bytes = bytes;
}
