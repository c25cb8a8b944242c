/**
 * The local end-to-end story (the README's first command, `npm run story`), told with the `amk` command line on the
 * embedded default: SoftHSM2, DynamoDB Local and the file vault in a state folder of its own (`<AMK_HOME or
 * .amk>/story`, fresh each run).
 *
 *  1. start the local engines                      8. lose the HSM: its token is destroyed
 *  2. provision a workspace, scripted administrator 9. recover with passphrase + TOTP (recovery state machine;
 *  3. the administrator acknowledges the kit           the unlock comes from a second `amk` process)
 *  4. ingest a few hundred documents               10. every document decrypts under the new key
 *  5. issue an access token                        11. the old access token is rejected, a new one accepted
 *  6. run a drill (drill state machine)            12. a restoration test: the backup plus an increment restored
 *  7. rotate the master key (rotation state             into a scratch table, decrypted with the kit in the HSM
 *     machine), then export a signed backup         13. stop the engines; nothing is left running
 *
 * then a summary table (steps, durations, counts, checks). The scripted administrator's passphrase and TOTP seed
 * live in this process only: the passphrase and each code reach `amk` through a pipe on file descriptor 3, never an
 * argument, and nothing here prints them or any key.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_TOTP, totpCode } from "../core/factors/totp.js";
import { pidAlive, readLocalState } from "./local/engines.js";
import { projectRoot, stateDir } from "./local/state.js";

const WORKSPACE = process.env.AMK_STORY_WORKSPACE ?? "demo";
const DOCUMENTS = Number(process.env.AMK_STORY_DOCUMENTS ?? 300);
const ADMIN = "admin";
const HOME = join(stateDir(), "story");
const AMK = join(projectRoot, "cli", "bin", "amk.js");

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly json: Record<string, unknown>;
}

interface StepRecord {
  readonly n: number;
  /** Short, for the summary table. */
  readonly name: string;
  readonly title: string;
  seconds: number;
  result: string;
  readonly checks: [string, boolean][];
}

const steps: StepRecord[] = [];
const say = (text: string) => process.stdout.write(`${text}\n`);
const fact = (k: string, v: unknown) => say(`      ${k.padEnd(26)} ${String(v)}`);

/** Runs `amk <args> --json` as a child process; `secrets` are written to its fd 3 (one per line), never argv. */
function amk(
  args: string[],
  options: { secrets?: string[]; onStderr?: (line: string) => void } = {},
): Promise<Ran> & { child: ChildProcess } {
  // The children's progress bars and notes: straight to a terminal (bars redrawn in place), else indented lines.
  const onStderr =
    options.onStderr ??
    (process.stderr.isTTY ? undefined : (l: string) => process.stderr.write(`      | ${l}\n`));
  const shown = args.join(" ");
  say(`    $ amk ${shown}${options.secrets ? "   (secrets on fd 3)" : ""}`);
  const env: NodeJS.ProcessEnv = { ...process.env, AMK_HOME: HOME };
  delete env.AWS_ENDPOINT_URL;
  delete env.AMK_DYNAMODB_ENDPOINT;
  const child = spawn(process.execPath, [AMK, ...args, "--json"], {
    cwd: projectRoot,
    env,
    stdio: ["ignore", "pipe", onStderr ? "pipe" : "inherit", options.secrets ? "pipe" : "ignore"],
  });
  if (options.secrets) {
    const fd3 = child.stdio[3] as NodeJS.WritableStream;
    fd3.on("error", () => undefined); // a command that fails before reading it closes it unread
    fd3.end(options.secrets.map((s) => `${s}\n`).join(""));
  }
  let stdout = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  if (onStderr) {
    let buf = "";
    child.stderr!.on("data", (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const l of lines) onStderr(l);
    });
  }
  const done = new Promise<Ran>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        // not JSON: reported by the caller's checks
      }
      resolve({ code: code ?? 1, stdout, json });
    });
  });
  return Object.assign(done, { child });
}

async function step<T>(
  n: number,
  name: string,
  title: string,
  body: (s: StepRecord) => Promise<T>,
): Promise<T> {
  say(`\n[${n}] ${title}`);
  const record: StepRecord = { n, name, title, seconds: 0, result: "", checks: [] };
  steps.push(record);
  const t = performance.now();
  try {
    return await body(record);
  } finally {
    record.seconds = (performance.now() - t) / 1000;
  }
}

function check(s: StepRecord, name: string, ok: boolean): boolean {
  s.checks.push([name, ok]);
  if (!ok) fact("CHECK FAILED", name);
  return ok;
}

const secretOf = (uri: string) => new URL(uri).searchParams.get("secret")!;

async function main(): Promise<boolean> {
  say("ArquivoMate Keys: the local story, told with `amk` on the embedded default");
  say(`State folder ${HOME} (fresh for this run); workspace "${WORKSPACE}", ${DOCUMENTS} documents.`);
  // A story that crashed earlier may have left its engines running: stop them, then start from nothing.
  if (existsSync(join(HOME, "local.json"))) await amk(["local", "down"]);
  rmSync(HOME, { recursive: true, force: true });
  mkdirSync(HOME, { recursive: true, mode: 0o700 });

  // The scripted administrator: a passphrase and a TOTP authenticator that live only in this process.
  const passphrase = `${randomBytes(9).toString("base64url")} story orchard lantern`;
  let seed = "";
  let lastStep = 0;
  const nextCode = async (): Promise<string> => {
    const now = Math.floor(Date.now() / 1000 / 30);
    let s = Math.max(now, lastStep + 1);
    if (s > now + 1) {
      fact("TOTP", "waiting for the next 30-second step (a code is accepted once)");
      await new Promise((r) => setTimeout(r, ((s - 1) * 30 + 1) * 1000 - Date.now()));
      s = Math.max(Math.floor(Date.now() / 1000 / 30), lastStep + 1);
    }
    lastStep = s;
    return totpCode(seed, DEFAULT_TOTP, s * 30 + 1);
  };
  let recovering: ReturnType<typeof amk> | undefined;
  let sampleDocument = "";

  try {
    await step(
      1,
      "start engines",
      "Start the local engines (SoftHSM2 token, DynamoDB Local in the background, file vault)",
      async (s) => {
        const r = await amk(["local", "up"]);
        const j = r.json as { dynamodb?: { pid?: number; endpoint?: string }; hsm?: { tokenLabel?: string } };
        fact("SoftHSM2 token", j.hsm?.tokenLabel);
        fact(
          "DynamoDB Local",
          `${j.dynamodb?.endpoint} (pid ${j.dynamodb?.pid}, database in story/dynamodb)`,
        );
        s.result = "engines up";
        check(s, "engines started", r.code === 0);
      },
    );

    await step(
      2,
      "provision workspace",
      `Provision workspace "${WORKSPACE}" with a scripted administrator (passphrase + TOTP)`,
      async (s) => {
        const uriFile = join(HOME, "enrollment.totp");
        const r = await amk(
          [
            "workspace",
            "provision",
            WORKSPACE,
            "--admin",
            ADMIN,
            "--passphrase-fd",
            "3",
            "--totp-uri-file",
            uriFile,
          ],
          { secrets: [passphrase] },
        );
        if (existsSync(uriFile)) {
          seed = secretOf(readFileSync(uriFile, "utf8").trim()); // the authenticator app "scans" it
          unlinkSync(uriFile);
        }
        const j = r.json as {
          masterKey?: { keyId: string; kcv: string };
          drillKeyId?: string;
          canaries?: number;
          kit?: { version: number; fingerprint: string };
        };
        fact("master key", `${j.masterKey?.keyId} (KCV ${j.masterKey?.kcv})`);
        fact("drill key", j.drillKeyId);
        fact("administrator", `${ADMIN}: TOTP enrolled (the QR code a person would scan is not shown here)`);
        fact("canary documents", j.canaries);
        fact("recovery kit", `v${j.kit?.version}, fingerprint ${j.kit?.fingerprint}`);
        s.result = `kit v${j.kit?.version}`;
        check(s, "workspace provisioned", r.code === 0 && j.masterKey?.keyId === `ws-${WORKSPACE}/mk/1`);
        check(s, "TOTP enrolled", seed.length > 0);
      },
    );

    await step(
      3,
      "acknowledge kit",
      "The administrator acknowledges kit v1 (opens it; every key checked in the HSM)",
      async (s) => {
        const r = await amk(
          ["kit", "ack", WORKSPACE, "--admin", ADMIN, "--passphrase-fd", "3", "--code-fd", "3"],
          {
            secrets: [passphrase, await nextCode()],
          },
        );
        const j = r.json as { kitVersion?: number; kcvs?: { KeyId: string; Kcv: string }[] };
        for (const k of j.kcvs ?? []) fact(k.KeyId, `KCV ${k.Kcv} proved`);
        s.result = `kit v${j.kitVersion} acknowledged`;
        check(s, "kit acknowledged", r.code === 0);
      },
    );

    await step(
      4,
      "ingest documents",
      `Ingest ${DOCUMENTS} documents as the pipeline does (data keys, encryption, DocumentStored)`,
      async (s) => {
        const r = await amk(["ingest", WORKSPACE, "--count", String(DOCUMENTS)]);
        const j = r.json as {
          documents?: number;
          byKeyId?: Record<string, number>;
          rate?: number;
          bytes?: number;
        };
        for (const [k, n] of Object.entries(j.byKeyId ?? {})) fact(`wrapped under ${k}`, `${n} documents`);
        fact("content", `${j.bytes} bytes encrypted, ${j.rate} documents/s`);
        s.result = `${j.documents} documents`;
        check(s, "documents ingested", r.code === 0 && j.documents === DOCUMENTS);
        const index = readFileSync(join(HOME, "documents", WORKSPACE, "index.jsonl"), "utf8").split("\n")[0]!;
        sampleDocument = (JSON.parse(index) as { documentId: string }).documentId;
      },
    );

    await step(
      5,
      "issue access token",
      "Issue an access token (its epoch: the workspace's current token epoch)",
      async (s) => {
        const r = await amk([
          "token",
          "issue",
          WORKSPACE,
          "--subject",
          "alice",
          "--out",
          join(HOME, "old.jwt"),
        ]);
        const j = r.json as { epoch?: number; tokenId?: string };
        fact("token", `${j.tokenId}, epoch ${j.epoch} (written to story/old.jwt, never printed)`);
        s.result = `epoch ${j.epoch}`;
        check(s, "token issued", r.code === 0);
      },
    );

    await step(
      6,
      "drill",
      "Drill through the drill state machine (the kit opened inside the HSM, documents decrypted)",
      async (s) => {
        const r = await amk(["drill", "run", WORKSPACE]);
        const j = r.json as { ok?: boolean; checks?: { Name: string; Status: string }[] };
        for (const c of j.checks ?? []) fact(c.Name, c.Status);
        const passed = (j.checks ?? []).filter((c) => c.Status === "passed").length;
        s.result = `${passed} of ${(j.checks ?? []).length} checks passed`;
        check(s, "drill passed", r.code === 0 && j.ok === true);
      },
    );

    await step(
      7,
      "rotate master key",
      "Rotate the master key through the rotation state machine (re-wrap inside the HSM)",
      async (s) => {
        const r = await amk(["rotate", "start", WORKSPACE]);
        const j = r.json as {
          activeKeyId?: string;
          retired?: string[];
          documentsRewrapped?: number;
          kitVersion?: number;
        };
        fact("active key", j.activeKeyId);
        fact("retired", (j.retired ?? []).join(", "));
        fact("documents re-wrapped", j.documentsRewrapped);
        fact("recovery kit", `v${j.kitVersion}`);
        s.result = `${j.documentsRewrapped} re-wrapped`;
        check(s, "rotated to mk/2", r.code === 0 && j.activeKeyId === `ws-${WORKSPACE}/mk/2`);
        check(s, "every document re-wrapped", (j.documentsRewrapped ?? 0) >= DOCUMENTS);
      },
    );

    let fullBackup = "";
    await step(8, "export backup", "Export a signed backup of the workspace's events", async (s) => {
      const r = await amk(["backup", "export", WORKSPACE]);
      const j = r.json as { backupId?: string; events?: number; streams?: number; manifestSha256?: string };
      fullBackup = j.backupId ?? "";
      fact("backup", `${j.backupId} (full): ${j.events} events in ${j.streams} streams`);
      // A prefix: the whole 64-digit hash would look like key material to anyone scanning the output.
      fact("manifest SHA-256", `${(j.manifestSha256 ?? "").slice(0, 16)}...`);
      const v = await amk(["backup", "verify", fullBackup]);
      fact("verified", v.code === 0 ? "signature, checksums, counts and versions" : "FAILED");
      s.result = `${j.events} events`;
      check(s, "backup exported", r.code === 0 && Boolean(fullBackup));
      check(s, "backup verifies", v.code === 0);
    });

    await step(
      9,
      "destroy HSM token",
      "Lose the HSM: its token is destroyed with every key in it",
      async (s) => {
        const r = await amk(["local", "destroy-hsm-token", "--yes"]);
        const j = r.json as { destroyed?: string; replacement?: string };
        fact("destroyed", `${j.destroyed} (the engines now use the empty token ${j.replacement})`);
        const refused = await amk(["keys", "decrypt", WORKSPACE, "--document", sampleDocument], {
          onStderr: () => undefined, // the expected refusal; its code is shown below
        });
        const e = refused.json as { error?: { code?: string } };
        fact("a document now", `cannot be decrypted (${e.error?.code}, exit ${refused.code})`);
        s.result = "keys gone";
        check(s, "token destroyed", r.code === 0);
        check(s, "documents unreadable without the keys", refused.code === 5);
      },
    );

    await step(
      10,
      "recover",
      "Recover with passphrase + TOTP through the recovery state machine",
      async (s) => {
        say("    (the execution waits at AwaitUnlock; the administrator unlocks from a second amk process)");
        let waiting!: () => void;
        const isWaiting = new Promise<void>((r) => (waiting = r));
        recovering = amk(["recover", "start", WORKSPACE, "--no-prompt", "--requested-by", "the story"], {
          onStderr: (line) => {
            process.stderr.write(`      | ${line}\n`);
            if (line.includes("Unlock it from another terminal")) waiting();
          },
        });
        await Promise.race([isWaiting, recovering]);
        const u = await amk(
          ["recover", "unlock", WORKSPACE, "--admin", ADMIN, "--passphrase-fd", "3", "--code-fd", "3"],
          {
            secrets: [passphrase, await nextCode()],
          },
        );
        const uj = u.json as { resumed?: boolean; masterKeys?: { keyId: string; kcv: string }[] };
        for (const m of uj.masterKeys ?? [])
          fact(`unlocked ${m.keyId}`, `KCV ${m.kcv}, imported into the new HSM token`);
        const r = await recovering;
        recovering = undefined;
        const j = r.json as {
          newKeyId?: string;
          recoveredKeyIds?: string[];
          documentsRewrapped?: number;
          tokenEpoch?: number;
          kitVersion?: number;
        };
        fact("recovered keys", (j.recoveredKeyIds ?? []).join(", "));
        fact("new master key", j.newKeyId);
        fact("documents re-wrapped", j.documentsRewrapped);
        fact("token epoch", j.tokenEpoch);
        fact("new recovery kit", `v${j.kitVersion}`);
        s.result = `${j.documentsRewrapped} re-wrapped to ${j.newKeyId}`;
        check(s, "unlocked, execution resumed", u.code === 0 && uj.resumed === true);
        check(s, "recovered to a fresh key", r.code === 0 && j.newKeyId === `ws-${WORKSPACE}/mk/3`);
      },
    );

    await step(11, "decrypt every document", "Every document decrypts under the new key", async (s) => {
      const r = await amk(["keys", "decrypt", WORKSPACE, "--all"]);
      const j = r.json as { documents?: number; decrypted?: number; byKeyId?: Record<string, number> };
      for (const [k, n] of Object.entries(j.byKeyId ?? {}))
        fact(`under ${k}`, `${n} documents decrypt to their content`);
      s.result = `${j.decrypted}/${j.documents} decrypt`;
      check(s, "every document decrypts", r.code === 0 && j.decrypted === DOCUMENTS);
      check(s, "all under the new key", j.byKeyId?.[`ws-${WORKSPACE}/mk/3`] === DOCUMENTS);
    });

    await step(
      12,
      "access tokens",
      "Access tokens: the one issued before the recovery is rejected, a new one accepted",
      async (s) => {
        const old = await amk(["token", "verify", WORKSPACE, "--token-file", join(HOME, "old.jwt")], {
          onStderr: () => undefined, // the expected rejection; its reason is shown below
        });
        const oj = old.json as { reason?: string };
        fact("old token", `rejected: ${oj.reason} (exit ${old.code})`);
        await amk(["token", "issue", WORKSPACE, "--subject", "alice", "--out", join(HOME, "new.jwt")]);
        const fresh = await amk(["token", "verify", WORKSPACE, "--token-file", join(HOME, "new.jwt")]);
        const fj = fresh.json as { epoch?: number };
        fact("new token", `accepted (epoch ${fj.epoch})`);
        s.result = "old rejected, new accepted";
        check(s, "old token rejected", old.code === 1 && oj.reason === "stale-epoch");
        check(s, "new token accepted", fresh.code === 0);
      },
    );

    await step(
      13,
      "restoration test",
      "Restoration test: the backup plus an increment into a scratch table, decrypted with the kit inside the HSM",
      async (s) => {
        // The increment holds what changed since the full backup: the recovery's re-wrapped records.
        const inc = await amk(["backup", "export", WORKSPACE, "--base", fullBackup]);
        const ij = inc.json as { backupId?: string; events?: number };
        fact("increment", `${ij.backupId}: ${ij.events} events since ${fullBackup}`);
        const r = await amk(["backup", "test", WORKSPACE, "--sample-size", "50"]);
        const j = r.json as { ok?: boolean; checks?: { Name: string; Status: string }[] };
        for (const c of j.checks ?? []) fact(c.Name, c.Status);
        const passed = (j.checks ?? []).filter((c) => c.Status === "passed").length;
        s.result = `${passed} of ${(j.checks ?? []).length} checks passed`;
        check(s, "increment exported", inc.code === 0);
        check(s, "restoration test passed", r.code === 0 && j.ok === true);
      },
    );
  } finally {
    // A recovery left waiting (a step above failed) must not outlive the story.
    if (recovering && recovering.child.exitCode === null) {
      recovering.child.kill("SIGTERM");
      await recovering.catch(() => undefined);
    }
    await step(14, "stop engines", "Stop the engines", async (s) => {
      const pid = readLocalState(HOME)?.dynamodb.running?.pid;
      const r = await amk(["local", "down"]);
      const stillRunning = pid !== undefined && pidAlive(pid);
      fact(
        "DynamoDB Local",
        pid ? `pid ${pid} ${stillRunning ? "STILL RUNNING" : "stopped"}` : "was not running",
      );
      fact("state", "kept in the story folder (`amk --home <it> local up` to look around)");
      s.result = "nothing left running";
      check(s, "engines stopped", r.code === 0 && !stillRunning);
    });
  }
  return summary();
}

function summary(): boolean {
  say("\nSummary");
  const rows = steps.map((s) => {
    const passed = s.checks.filter(([, ok]) => ok).length;
    return [
      String(s.n),
      s.name,
      s.seconds > 0 ? `${s.seconds.toFixed(1)} s` : "-",
      s.result,
      s.checks.length ? `${passed}/${s.checks.length}` : "-",
    ];
  });
  const headers = ["#", "step", "time", "result", "checks"];
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    `  ${r
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd()}`;
  say(line(headers));
  say(line(widths.map((w) => "-".repeat(w))));
  for (const r of rows) say(line(r));
  const all = steps.flatMap((s) => s.checks);
  const failed = all.filter(([, ok]) => !ok).map(([name]) => name);
  const total = steps.reduce((t, s) => t + s.seconds, 0);
  say(`\n  ${all.length - failed.length} of ${all.length} checks passed in ${total.toFixed(1)} s.`);
  say(
    failed.length === 0
      ? "\nStory complete: provisioned, acknowledged, ingested, drilled, rotated, lost the HSM, recovered with passphrase + TOTP; every document decrypts under the new key and the old access token is rejected."
      : `\nStory FAILED: ${failed.join("; ")}`,
  );
  return failed.length === 0;
}

main().then(
  (ok) => {
    process.exitCode = ok ? 0 : 1;
  },
  (err: unknown) => {
    const e = err as { name?: string; message?: string };
    console.error(`\nstory failed: ${e.name ?? "Error"}: ${e.message ?? String(err)}`);
    process.exitCode = 1;
  },
);
