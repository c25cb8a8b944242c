/**
 * The README's first command, end to end: runs the local story in a state folder of its own and checks what it
 * prints, including that no key material is printed.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";

const run = promisify(execFile);

describe("local story (npm run story)", () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it("provisions a workspace, keys a document, reads the keys back, refuses tampering and deleted documents", async () => {
    const state = await mkdtemp(join(tmpdir(), "amk-story-"));
    dirs.push(state);
    const env = { ...process.env, AMK_STATE_DIR: state, AMK_STORY_WORKSPACE: "e2e" };
    const first = await run("npx", ["tsx", "cli/story.ts"], { env, timeout: 180_000 });
    const out = first.stdout;
    assert.match(out, /active master key\s+ws-e2e\/mk\/1/);
    assert.match(out, /key check value \(KCV\)\s+[0-9A-F]{6}/);
    assert.match(out, /drill key\s+ws-e2e\/drill\/1/);
    assert.match(
      out,
      /recovery kit\s+v1 in the vault \(\.amk\/vault\), fingerprint ([0-9A-F]{4}-){5}[0-9A-F]{4}/,
    );
    assert.match(out, /drill result\s+kit intact, covers every master key/);
    assert.match(out, /ws-e2e\/mk\/1\s+imported into amk-local-spare, KCV [0-9A-F]{6}/);
    assert.match(out, /recovered keys\s+match the recorded KCVs/);
    assert.match(out, /wrap record\s+DocumentEncryptionKeysAdded v1, AMK-GCM-V1/);
    assert.match(out, /retry, same request\s+same record, same keys/);
    assert.match(out, /DocumentStored event\s+recorded/);
    assert.match(out, /document stream\s+v1 DocumentEncryptionKeysAdded, v2 DocumentStored/);
    assert.match(out, /decrypted\s+1280 bytes, sha256 [0-9a-f]{16}\.\.\. \(matches\)/);
    assert.match(out, /moved to another document refused: KeyIntegrityError/);
    assert.match(out, /flipped ciphertext bit\s+refused: KeyIntegrityError/);
    assert.match(out, /DecryptDataKeys\s+refused: DOCUMENT_DELETED/);
    assert.match(out, /census\s+0 live documents on ws-e2e\/mk\/1/);
    assert.match(out, /Story complete/);
    assert.doesNotMatch(out, /ACCEPTED|ANSWERED|FAILED|MISMATCH|DIFFERENT/);
    // Nothing that looks like a 32-byte key in base64 or hex is printed.
    assert.doesNotMatch(out + first.stderr, /[A-Za-z0-9+/]{43}=|[0-9a-f]{64}/);

    // The HSM token persists in the state folder; the event store (in memory) starts empty and re-records the key.
    const second = await run("npx", ["tsx", "cli/story.ts"], { env, timeout: 180_000 });
    const kcv = (s: string) => /KCV\)\s+([0-9A-F]{6})/.exec(s)?.[1];
    assert.equal(kcv(second.stdout), kcv(out));
    assert.match(second.stdout, /Story complete/);
    assert.match(second.stdout, /ws-e2e\/mk\/1\s+already in amk-local-spare/);
  });
});
