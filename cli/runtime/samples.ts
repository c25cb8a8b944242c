/**
 * The local archive of sample documents (`amk ingest`), standing in for ArquivoMate's object store: per workspace a
 * folder with each document's encrypted `file` artifact (ArquivoMate content format 2) and an index of what each
 * decrypts to (SHA-256 and size). It holds ciphertext and hashes only: the DEKs are wrap records in the event store,
 * under the HSM's master key.
 */
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface SampleEntry {
  readonly documentId: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly at: string;
}

export class SampleArchive {
  constructor(private readonly root: string) {}

  private dir(workspaceId: string): string {
    return join(this.root, workspaceId);
  }

  ciphertextPath(workspaceId: string, documentId: string): string {
    return join(this.dir(workspaceId), `${documentId}.amd`);
  }

  put(workspaceId: string, entry: SampleEntry, ciphertext: Uint8Array): void {
    mkdirSync(this.dir(workspaceId), { recursive: true, mode: 0o700 });
    writeFileSync(this.ciphertextPath(workspaceId, entry.documentId), ciphertext, { mode: 0o600 });
    appendFileSync(join(this.dir(workspaceId), "index.jsonl"), `${JSON.stringify(entry)}\n`, { mode: 0o600 });
  }

  list(workspaceId: string): SampleEntry[] {
    let text: string;
    try {
      text = readFileSync(join(this.dir(workspaceId), "index.jsonl"), "utf8");
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") return [];
      throw err;
    }
    const byId = new Map<string, SampleEntry>();
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line) as SampleEntry;
        if (typeof e.documentId === "string" && typeof e.sha256 === "string") byId.set(e.documentId, e);
      } catch {
        // a torn line: skipped
      }
    }
    return [...byId.values()];
  }

  find(workspaceId: string, documentId: string): SampleEntry | undefined {
    return this.list(workspaceId).find((e) => e.documentId === documentId);
  }

  ciphertext(workspaceId: string, documentId: string): Buffer {
    return readFileSync(this.ciphertextPath(workspaceId, documentId));
  }
}

/** Runs `fn` over `items` with at most `limit` at once. */
export async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) await fn(items[i]!, i);
    }),
  );
}
