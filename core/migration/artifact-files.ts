/**
 * ArquivoMate's encrypted artifact files, for the optional check that migrated keys really open the content. A folder
 * holds `*.enc` files named either
 *   - `<documentId>.<artifact>.enc` (flat), or
 *   - `<documentId>/<artifact>.enc` (one sub-folder per document),
 * where `documentId` is the document's GUID (ArquivoMate's stream id) and `artifact` one of file, metadata, thumb,
 * preview, archive. Each file is content format 2 (docs: design brief section 3): `0x02 || IV || AES-256-CBC ||
 * HMAC-SHA256`. Other files are ignored; symbolic links are not followed.
 */
import { lstat, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isArtifact, type Artifact } from "../datakeys/wrap-format.js";

export interface ArtifactFile {
  readonly documentId: string;
  readonly artifact: Artifact;
  /** Relative to the folder, with `/`. */
  readonly path: string;
  readonly size: number;
}

export interface ArtifactCheck {
  readonly documentId: string;
  readonly artifact: string;
  readonly path: string;
  readonly ok: boolean;
  /** The master key version that unwrapped the DEK (real run). */
  readonly keyId?: string;
  /** Why it failed: an error name and message, never key material. */
  readonly problem?: string;
}

const GUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
const FLAT = new RegExp(`^(${GUID})\\.([a-z]+)\\.enc$`);
const NESTED_DIR = new RegExp(`^(${GUID})$`);
const NESTED_FILE = /^([a-z]+)\.enc$/;

/** Lists the folder's artifact files (both conventions), sorted by document id then artifact. */
export async function listArtifactFiles(dir: string): Promise<{ files: ArtifactFile[]; ignored: number }> {
  const files: ArtifactFile[] = [];
  let ignored = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isFile()) {
      const m = FLAT.exec(e.name);
      if (m && isArtifact(m[2])) {
        const st = await lstat(join(dir, e.name));
        files.push({ documentId: m[1]!.toLowerCase(), artifact: m[2], path: e.name, size: st.size });
      } else ignored += 1;
    } else if (e.isDirectory() && NESTED_DIR.test(e.name)) {
      for (const f of await readdir(join(dir, e.name), { withFileTypes: true })) {
        const m = NESTED_FILE.exec(f.name);
        if (f.isFile() && m && isArtifact(m[1])) {
          const st = await lstat(join(dir, e.name, f.name));
          files.push({
            documentId: e.name.toLowerCase(),
            artifact: m[1],
            path: `${e.name}/${f.name}`,
            size: st.size,
          });
        } else ignored += 1;
      }
    } else ignored += 1;
  }
  files.sort((a, b) =>
    a.documentId === b.documentId
      ? a.artifact.localeCompare(b.artifact)
      : a.documentId < b.documentId
        ? -1
        : 1,
  );
  return { files, ignored };
}

/** `n` files spread evenly over the sorted list (all of them when there are no more than `n`): reproducible. */
export function sampleFiles<T>(files: readonly T[], n: number): T[] {
  if (n <= 0) return [];
  if (files.length <= n) return [...files];
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(files[Math.floor((i * files.length) / n)]!);
  return out;
}

export async function readArtifactFile(dir: string, file: ArtifactFile, maxBytes: number): Promise<Buffer> {
  if (file.size > maxBytes) {
    throw new RangeError(`${file.path} is ${file.size} bytes; files above ${maxBytes} bytes are not sampled`);
  }
  return readFile(join(dir, file.path));
}
