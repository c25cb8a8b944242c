/**
 * The README's first command, end to end: runs the local story (cli/story.ts, told with the `amk` CLI) in a state
 * folder of its own and checks what it prints: every step and check of the summary, no key material or TOTP secret
 * printed, and no engine process left running afterwards.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import { cliEnv, KEY_LIKE, processesOf } from "./cli-harness.js";

const run = promisify(execFile);

describe("local story (npm run story)", () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it("provisions, acknowledges, ingests, drills, rotates, loses the HSM, recovers with passphrase + TOTP; every document decrypts, the old token is rejected; nothing left running", async () => {
    const home = await mkdtemp(join(tmpdir(), "amk-story-"));
    dirs.push(home);
    const env = cliEnv(home, { AMK_STORY_WORKSPACE: "e2e", AMK_STORY_DOCUMENTS: "200" });
    const r = await run(process.execPath, ["--import", "tsx", "cli/story.ts"], {
      env,
      timeout: 600_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const out = r.stdout;
    for (const n of [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14]) assert.match(out, new RegExp(`\\n\\[${n}\\] `));
    assert.match(out, /\$ amk local up/);
    assert.match(out, /\$ amk workspace provision e2e --admin admin --passphrase-fd 3 .*\(secrets on fd 3\)/);
    assert.match(out, /master key\s+ws-e2e\/mk\/1 \(KCV [0-9A-F]{6}\)/);
    assert.match(out, /recovery kit\s+v1, fingerprint ([0-9A-F]{4}-){5}[0-9A-F]{4}/);
    assert.match(out, /ws-e2e\/mk\/1\s+KCV [0-9A-F]{6} proved/);
    assert.match(out, /wrapped under ws-e2e\/mk\/1\s+200 documents/);
    assert.match(out, /acknowledgements\s+passed/);
    assert.match(out, /active key\s+ws-e2e\/mk\/2/);
    assert.match(out, /documents re-wrapped\s+203/);
    assert.match(out, /a document now\s+cannot be decrypted \(KEY_NOT_FOUND, exit 5\)/);
    assert.match(out, /\$ amk recover start e2e --no-prompt/);
    assert.match(out, /\$ amk recover unlock e2e --admin admin --passphrase-fd 3 --code-fd 3/);
    assert.match(out, /unlocked ws-e2e\/mk\/2\s+KCV [0-9A-F]{6}/);
    assert.match(out, /new master key\s+ws-e2e\/mk\/3/);
    assert.match(out, /under ws-e2e\/mk\/3\s+200 documents decrypt to their content/);
    assert.match(out, /old token\s+rejected: stale-epoch \(exit 1\)/);
    assert.match(out, /new token\s+accepted \(epoch 1\)/);
    assert.match(out, /Summary\n/);
    assert.match(out, /\$ amk backup export e2e\n/);
    assert.match(out, /verified\s+signature, checksums, counts and versions/);
    assert.match(out, /\$ amk backup export e2e --base [0-9a-f-]{36}/);
    for (const check of [
      "backup-integrity",
      "restore",
      "keys-recovered",
      "kit-coverage",
      "canaries",
      "sample",
      "cleanup",
    ])
      assert.match(out, new RegExp(`\\n\\s+${check}\\s+passed`), check);
    assert.match(out, /restoration test\s+[\d.]+ s\s+7 of 7 checks passed/);
    const m = /\n {2}(\d+) of (\d+) checks passed in /.exec(out);
    assert.ok(m && m[1] === m[2] && Number(m[2]) >= 22, m?.[0]);
    assert.match(out, /Story complete/);
    assert.doesNotMatch(out, /CHECK FAILED|Story FAILED|STILL RUNNING/);

    // Nothing secret or key-like: no 32-byte value in base64 or hex, no TOTP enrollment.
    const all = r.stdout + r.stderr;
    assert.doesNotMatch(all, KEY_LIKE);
    assert.doesNotMatch(all, /otpauth:|secret=/);
    // The recovery's progress and phases reached the output (plain lines: not a terminal).
    assert.match(r.stderr, /re-wrap: \d+\/\d+ 100\.0%/);
    assert.match(r.stderr, /ingest: 200\/200 100\.0% [\d.]+\/s ETA 0:00/);

    // The engines are stopped: no DynamoDB Local (or anything else) of this home is left.
    assert.deepEqual(processesOf(home), []);
  });
});
