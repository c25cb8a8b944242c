/**
 * The `amk` command line as administrators and scripts use it: the real CLI in child processes against local engines
 * started for this file (`amk local up` in a temp AMK_HOME, `amk local down` at the end). Each command's happy path,
 * its `--json` shape and exit code, and its clear errors: unknown workspace (5), bad input (2), wrong passphrase or
 * code (4), engines not running (3, naming `amk local up`), malformed and tampered kit files (2, 1). Every command's
 * `--help` (in process: one CLI start per command would cost a second each). Workflows: cli-workflows.e2e.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Command } from "commander";
import { randomUUID } from "node:crypto";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { buildProgram } from "../../cli/amk.js";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { EventTypes } from "../../core/eventstore/catalogue.js";
import { newEvent } from "../../core/eventstore/events.js";
import { workspaceStreamId } from "../../core/eventstore/stream-id.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { jsonFixture, startReplayServer } from "../support/aws-replay-server.js";
import {
  Authenticator,
  KEY_LIKE,
  runCli,
  runInTerminal,
  seedFrom,
  startCliHome,
  type CliHome,
  type CliRun,
} from "./cli-harness.js";

const PASSPHRASE = "copper lantern drifts over quiet meadows";
const WS = "cli-a";

function leaves(cmd: Command, path: string[] = []): { path: string[]; cmd: Command }[] {
  if (cmd.commands.length === 0) return [{ path, cmd }];
  return [{ path, cmd }, ...cmd.commands.flatMap((c) => leaves(c, [...path, c.name()]))];
}

describe("amk command line (real CLI, local engines of its own)", () => {
  let h: CliHome;
  let dir: string;
  let auth: Authenticator;
  const outputs: string[] = [];
  const amk = async (args: string[], options?: Parameters<CliHome["amk"]>[1]): Promise<CliRun> => {
    const r = await h.amk(args, options);
    outputs.push(r.stdout, r.stderr);
    return r;
  };

  before(async () => {
    h = await startCliHome();
    dir = await mkdtemp(join(tmpdir(), "amk-cli-files-"));
  });
  after(async () => {
    await h?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("--help: every command has one, with its options and exit codes (and `amk --help` exits 0)", async () => {
    const program = buildProgram();
    const all = leaves(program);
    assert.ok(all.length >= 30, `${all.length} commands`);
    for (const { path, cmd } of all) {
      const help = cmd.helpInformation();
      assert.match(help, /^Usage: amk/, path.join(" "));
      const isLeaf = cmd.commands.length === 0;
      if (isLeaf && path.length > 0) {
        let text = "";
        cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
        cmd.outputHelp();
        assert.match(text, /Exit codes:\n\s+0 {2}success/, `${path.join(" ")} lists its exit codes`);
      }
    }
    const names = all.map((x) => x.path.join(" "));
    for (const expected of [
      "local up",
      "local down",
      "local status",
      "workspace provision",
      "keys generate",
      "keys decrypt",
      "ingest",
      "kit show",
      "kit verify",
      "kit ack",
      "kit reissue",
      "kit export",
      "rotate start",
      "rotate status",
      "recover start",
      "recover unlock",
      "recover status",
      "recover release",
      "drill run",
      "drill history",
      "alerts",
      "token issue",
      "token verify",
    ]) {
      assert.ok(names.includes(expected), `amk ${expected} exists`);
    }
    const root = await runCli(h.home, ["--help"]);
    assert.equal(root.code, 0);
    assert.match(root.stdout, /Exit codes:/);
    assert.match(root.stdout, /never arguments/);
    const sub = await runCli(h.home, ["recover", "unlock", "--help"]);
    assert.equal(sub.code, 0);
    assert.match(sub.stdout, /--passphrase-fd <n>/);
    assert.match(sub.stdout, /--code-env <NAME>/);
    assert.doesNotMatch(sub.stdout, /--passphrase </, "no option takes the passphrase itself");
  });

  it("bad usage exits 2: an unknown command or option, a missing argument, an invalid id", async () => {
    const unknown = await amk(["frobnicate"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command/);
    const option = await amk(["ingest", WS, "--count", "3", "--colour"]);
    assert.equal(option.code, 2);
    const missing = await amk(["ingest", WS]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--count/);
    const invalid = await amk(["workspace", "status", "no/such id", "--json"]);
    assert.equal(invalid.code, 2);
    assert.equal(invalid.json.error?.code, "USAGE");
    assert.match(invalid.stderr, /invalid workspace id/);
  });

  it("local status: every engine answers (exit 0, --json shape)", async () => {
    const r = await amk(["local", "status", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.ok, true);
    const j = r.json as unknown as Record<string, { ok: boolean }>;
    for (const k of ["hsm", "dynamodb", "eventTable", "vault"]) assert.equal(j[k]?.ok, true, k);
  });

  it("workspace provision: refuses to print the enrollment into a pipe, refuses a weak passphrase, then provisions", async () => {
    const noTerminal = await amk(["workspace", "provision", WS, "--passphrase-fd", "3"], {
      fd3: [PASSPHRASE],
    });
    assert.equal(noTerminal.code, 2);
    assert.match(noTerminal.stderr, /--totp-uri-file/);
    const uriFile = join(dir, "a.totp");
    const weak = await amk(
      [
        "workspace",
        "provision",
        WS,
        "--admin",
        "ops",
        "--passphrase-fd",
        "3",
        "--totp-uri-file",
        uriFile,
        "--json",
      ],
      { fd3: ["short one"] },
    );
    assert.equal(weak.code, 2);
    assert.equal(weak.json.error?.code, "INVALID_INPUT");
    assert.match(String(weak.json.error?.message), /at least 15/);
    const noSecret = await amk(["workspace", "provision", WS, "--admin", "ops", "--totp-uri-file", uriFile]);
    assert.equal(noSecret.code, 2);
    assert.match(noSecret.stderr, /--passphrase-fd <n> or --passphrase-env <NAME>/);

    const r = await amk(
      [
        "workspace",
        "provision",
        WS,
        "--admin",
        "ops",
        "--passphrase-env",
        "ADMIN_PASS",
        "--totp-uri-file",
        uriFile,
        "--json",
      ],
      { env: { ADMIN_PASS: PASSPHRASE } },
    );
    assert.equal(r.code, 0, r.stderr);
    const j = r.json as {
      masterKey: { keyId: string; kcv: string };
      kit: { version: number; fingerprint: string };
      canaries: number;
      totpUriFile: string;
    };
    assert.equal(j.masterKey.keyId, `ws-${WS}/mk/1`);
    assert.match(j.masterKey.kcv, /^[0-9A-F]{6}$/);
    assert.equal(j.kit.version, 1);
    assert.match(j.kit.fingerprint, /^([0-9A-F]{4}-){5}[0-9A-F]{4}$/);
    assert.equal(j.canaries, 3);
    assert.equal((await stat(uriFile)).mode & 0o777, 0o600);
    assert.match(await readFile(uriFile, "utf8"), /^otpauth:\/\/totp\//);
    auth = new Authenticator(seedFrom(uriFile));

    const again = await amk(
      [
        "workspace",
        "provision",
        WS,
        "--admin",
        "ops",
        "--passphrase-fd",
        "3",
        "--totp-uri-file",
        join(dir, "b.totp"),
      ],
      { fd3: [PASSPHRASE] },
    );
    assert.equal(again.code, 6);
    assert.match(again.stderr, /already provisioned/);
  });

  it("workspace provision in a terminal: the passphrase asked twice without echo, the QR code and otpauth URI shown", async () => {
    const r = await runInTerminal(
      h.home,
      ["workspace", "provision", "cli-tty", "--admin", "alice"],
      [
        { waitFor: /New kit passphrase[^\n]*: /, text: `${PASSPHRASE}\r` },
        { waitFor: /Repeat the passphrase: /, text: `${PASSPHRASE}\r` },
      ],
    );
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /New kit passphrase/);
    assert.match(r.output, /Repeat the passphrase/);
    assert.ok(!r.output.includes(PASSPHRASE), "the passphrase is not echoed");
    assert.match(r.output, /otpauth:\/\/totp\/ArquivoMate%20Keys:cli-tty:alice\?secret=/);
    assert.match(r.output, /\u2580|\u2584|\u2588/, "a QR code drawn with block characters");
    assert.match(r.output, /Fingerprint: ([0-9A-F]{4}-){5}[0-9A-F]{4}/);
  });

  it("workspace status: the workspace at a glance; an unknown workspace exits 5 and says so", async () => {
    const r = await amk(["workspace", "status", WS, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json as {
      activeKeyId: string;
      keys: { keyId: string; state: string }[];
      kit: { version: number };
    };
    assert.equal(j.activeKeyId, `ws-${WS}/mk/1`);
    assert.equal(j.keys[0]?.state, "active");
    assert.equal(j.kit.version, 1);
    const human = await amk(["workspace", "status", WS]);
    assert.match(human.stdout, /recovery kit\s+v1, fingerprint/);

    const unknown = await amk(["workspace", "status", "no-such-ws", "--json"]);
    assert.equal(unknown.code, 5);
    assert.equal(unknown.json.error?.code, "WORKSPACE_NOT_PROVISIONED");
    assert.match(unknown.stderr, /unknown workspace "no-such-ws"/);
    assert.match(unknown.stderr, /amk workspace provision no-such-ws/);
    for (const args of [
      ["keys", "generate", "no-such-ws"],
      ["ingest", "no-such-ws", "--count", "1"],
      ["kit", "show", "no-such-ws"],
      ["rotate", "status", "no-such-ws"],
      ["drill", "history", "no-such-ws"],
    ]) {
      assert.equal((await amk(args)).code, 5, args.join(" "));
    }
  });

  it("ingest: sample documents with progress lines (done/total/rate/ETA) on stderr; --json counts", async () => {
    const r = await amk(["ingest", WS, "--count", "40", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.documents, 40);
    assert.deepEqual(r.json.byKeyId, { [`ws-${WS}/mk/1`]: 40 });
    assert.match(r.stderr, /ingest: 40\/40 100\.0% [\d.]+\/s ETA 0:00/);
  });

  it("keys generate / decrypt: a file encrypted and decrypted with a document's DEK; sample documents checked; DEKs never printed", async () => {
    const plain = join(dir, "letter.txt");
    await writeFile(plain, "Dear ArquivoMate,\nplease keep this safe.\n");
    const sealed = join(dir, "letter.amd");
    const g = await amk([
      "keys",
      "generate",
      WS,
      "--document",
      "letter-1",
      "--in",
      plain,
      "--out",
      sealed,
      "--json",
    ]);
    assert.equal(g.code, 0, g.stderr);
    assert.deepEqual(
      { keyId: g.json.keyId, recordVersion: g.json.recordVersion, artifacts: g.json.artifacts },
      {
        keyId: `ws-${WS}/mk/1`,
        recordVersion: 1,
        artifacts: ["file", "metadata", "thumb", "preview", "archive"],
      },
    );
    assert.equal((await stat(sealed)).mode & 0o777, 0o600);
    const out = join(dir, "letter.out");
    const d = await amk(["keys", "decrypt", WS, "--document", "letter-1", "--in", sealed, "--out", out]);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(await readFile(out, "utf8"), await readFile(plain, "utf8"));
    const exists = await amk(["keys", "decrypt", WS, "--document", "letter-1", "--in", sealed, "--out", out]);
    assert.equal(exists.code, 2, "never overwrites");

    const all = await amk(["keys", "decrypt", WS, "--all", "--json"]);
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.json.decrypted, 40);
    assert.deepEqual(all.json.byKeyId, { [`ws-${WS}/mk/1`]: 40 });
    assert.match(all.stderr, /decrypt: 40\/40 100\.0%/);

    const nope = await amk(["keys", "decrypt", WS, "--document", "never-stored", "--json"]);
    assert.equal(nope.code, 5);
    assert.equal(nope.json.error?.code, "DOCUMENT_KEYS_NOT_FOUND");
  });

  it("kit show / verify / export: the vault's kit, the check inside the HSM, an armoured 0600 file", async () => {
    const show = await amk(["kit", "show", WS, "--json"]);
    assert.equal(show.code, 0, show.stderr);
    const kit = show.json.kit as { kitVersion: number; fingerprint: string; slots: { type: string }[] };
    assert.equal(kit.kitVersion, 1);
    assert.deepEqual(
      kit.slots.map((s) => s.type),
      ["admin", "drill"],
    );
    assert.deepEqual(show.json.inventory, [
      { adminId: "ops", receivedKitVersion: 1, status: "never-acknowledged" },
    ]);

    const verify = await amk(["kit", "verify", WS, "--json"]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(verify.json.ok, true);
    assert.equal((verify.json.masterKeys as { ok: boolean }[])[0]?.ok, true);

    const file = join(dir, "kit.txt");
    const ex = await amk(["kit", "export", WS, "--out", file, "--json"]);
    assert.equal(ex.code, 0, ex.stderr);
    assert.equal(ex.json.fingerprint, kit.fingerprint);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const text = await readFile(file, "utf8");
    assert.match(text, /^-----BEGIN AMK RECOVERY KIT-----\nWorkspace: cli-a\n/);
    const again = await amk(["kit", "export", WS, "--out", file]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /exists/);

    // A kit file, offline (no workspace), and against what was issued.
    const offline = await amk(["kit", "verify", "--file", file, "--json"]);
    assert.equal(offline.code, 0, offline.stderr);
    assert.equal(offline.json.fingerprint, kit.fingerprint);
    const issued = await amk(["kit", "show", WS, "--file", file, "--json"]);
    assert.equal(issued.code, 0, issued.stderr);
    assert.equal(issued.json.current, true);
  });

  it("a malformed kit file exits 2, a tampered one 1, each with a clear message", async () => {
    const bad = join(dir, "not-a-kit.txt");
    await writeFile(bad, "hello, I am not a recovery kit\n");
    const malformed = await amk(["kit", "verify", "--file", bad, "--json"]);
    assert.equal(malformed.code, 2);
    assert.equal(malformed.json.error?.code, "KIT_HEADER");
    assert.match(malformed.stderr, /not a recovery kit/);
    assert.match(malformed.stderr, /BEGIN AMK RECOVERY KIT/);

    const text = await readFile(join(dir, "kit.txt"), "utf8");
    const lines = text.split("\n");
    const i = lines.findIndex((l, n) => n > 6 && l.length > 40);
    const flipped = lines[i]!.slice(0, 20) + (lines[i]![20] === "A" ? "B" : "A") + lines[i]!.slice(21);
    lines[i] = flipped;
    const tampered = join(dir, "tampered.txt");
    await writeFile(tampered, lines.join("\n"));
    const t = await amk(["kit", "verify", "--file", tampered, "--json"]);
    assert.equal(t.code, 1, t.stderr);
    assert.equal(t.json.error?.code, "KIT_INTEGRITY");
    assert.match(t.stderr, /changed or damaged/);
  });

  it("kit ack: a wrong passphrase and a replayed code exit 4 (counted), the right ones acknowledge", async () => {
    const wrong = await amk(
      ["kit", "ack", WS, "--admin", "ops", "--passphrase-fd", "3", "--code-fd", "3", "--json"],
      {
        fd3: ["this is not the passphrase at all", await auth.next()],
      },
    );
    assert.equal(wrong.code, 4, wrong.stderr);
    assert.equal(wrong.json.error?.code, "KIT_WRONG_PASSPHRASE");
    assert.match(wrong.stderr, /passphrase does not open/);

    const code = await auth.next();
    const ok = await amk(
      ["kit", "acknowledge", WS, "--admin", "ops", "--passphrase-env", "P", "--code-env", "C", "--json"],
      {
        env: { P: PASSPHRASE, C: code },
      },
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.json.kitVersion, 1);
    assert.equal((ok.json.kcvs as unknown[]).length, 1);

    const replayed = await amk(
      ["kit", "ack", WS, "--admin", "ops", "--passphrase-fd", "3", "--code-fd", "3", "--json"],
      {
        fd3: [PASSPHRASE, await auth.replay()],
      },
    );
    assert.equal(replayed.code, 4);
    assert.equal(replayed.json.error?.code, "TOTP_CODE_REPLAYED");

    const unknownAdmin = await amk(
      ["kit", "ack", WS, "--admin", "mallory", "--passphrase-fd", "3", "--code-fd", "3"],
      {
        fd3: [PASSPHRASE, "123456"],
      },
    );
    assert.equal(unknownAdmin.code, 5);
    const noTerminal = await amk(["kit", "ack", WS, "--admin", "ops"]);
    assert.equal(noTerminal.code, 2);
    assert.match(noTerminal.stderr, /no terminal to ask for the passphrase/);

    const shown = await amk(["kit", "show", WS, "--json"]);
    assert.equal((shown.json.inventory as { status: string }[])[0]?.status, "ok");
  });

  it("kit reissue: the next version in the vault, no administrator needed", async () => {
    const r = await amk(["kit", "reissue", WS, "--reason", "cli test", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.kitVersion, 2);
    const file = join(dir, "kit-v1.txt");
    const old = await amk(["kit", "export", WS, "--out", file, "--kit-version", "1"]);
    assert.equal(old.code, 0, old.stderr);
    const v = await amk(["kit", "verify", WS, "--file", file, "--json"]);
    assert.equal(v.code, 0);
    assert.equal(v.json.current, false, "v1 is an older kit now");
  });

  it("token issue / verify: a 0600 token file, accepted; a token from elsewhere rejected (exit 1)", async () => {
    const file = join(dir, "alice.jwt");
    const noTarget = await amk(["token", "issue", WS, "--subject", "alice"]);
    assert.equal(noTarget.code, 2, "the token goes to a file or, asked for, stdout");
    const r = await amk(["token", "issue", WS, "--subject", "alice", "--out", file, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.epoch, 0);
    assert.equal(r.json.token, undefined, "not printed unless --print");
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const v = await amk(["token", "verify", WS, "--token-file", file, "--json"]);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.json.subject, "alice");
    const env = await amk(["token", "verify", WS, "--token-env", "T", "--json"], {
      env: { T: (await readFile(file, "utf8")).trim() },
    });
    assert.equal(env.code, 0);
    const forged = await amk(["token", "verify", WS, "--token-fd", "3", "--json"], {
      fd3: ["eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"],
    });
    assert.equal(forged.code, 1);
    assert.equal(forged.json.rejected, true);
  });

  it("AWS mode reaches the event store through --endpoint (here: the engines' DynamoDB) and exits 3 when it cannot", async () => {
    const r = await amk([
      "workspace",
      "status",
      WS,
      "--endpoint",
      h.endpoint!,
      "--table",
      "amk-events",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.activeKeyId, `ws-${WS}/mk/1`);
    const noTable = await amk(["rotate", "status", WS, "--endpoint", h.endpoint!]);
    assert.equal(noTable.code, 2);
    assert.match(noTable.stderr, /--table/);
    const down = await amk([
      "workspace",
      "status",
      WS,
      "--endpoint",
      "http://127.0.0.1:9",
      "--table",
      "amk-events",
    ]);
    assert.equal(down.code, 3, down.stderr);
    const alerts = await amk(["alerts", "--endpoint", h.endpoint!, "--table", "amk-events"]);
    assert.equal(alerts.code, 2);
    assert.match(alerts.stderr, /SNS topic/);
  });

  it("recover release (AWS mode): refuses while Step Functions says the lock's execution runs, releases once it ended", async () => {
    const server = await startReplayServer();
    const machine = "arn:aws:states:us-east-1:123456789012:stateMachine:amk-dev-recovery";
    const client = new DynamoDBClient({
      endpoint: h.endpoint!,
      region: "us-east-1",
      credentials: { accessKeyId: "amklocal", secretAccessKey: "amklocal" },
    });
    const events = new DynamoDbEventStore({ client, tableName: "amk-events" });
    try {
      // The lock as the Validate step records it, for an execution that was then stopped by hand.
      const ws = await readWorkspace(events, WS);
      const kit = ws.kits.at(-1)!;
      const executionName = `recovery-${randomUUID().slice(0, 8)}`;
      const recoveryId = randomUUID();
      await events.appendToStream(
        workspaceStreamId(WS),
        [
          newEvent(EventTypes.RecoveryStarted, {
            WorkspaceId: WS,
            RecoveryId: recoveryId,
            KitVersion: kit.kitVersion,
            KitFingerprint: kit.fingerprint,
            RequestedBy: "ops",
            Reason: "an execution stopped by hand",
            ExecutionName: executionName,
            Resumed: false,
          }),
        ],
        { expectedVersion: ws.version },
      );
      const executionArn = `arn:aws:states:us-east-1:123456789012:execution:amk-dev-recovery:${executionName}`;
      const env = {
        AWS_ENDPOINT_URL_SFN: server.endpoint,
        AWS_REGION: "us-east-1",
        AWS_ACCESS_KEY_ID: "amklocal",
        AWS_SECRET_ACCESS_KEY: "amklocal",
        AMK_RECOVERY_STATE_MACHINE_ARN: machine,
      };
      const release = [
        "recover",
        "release",
        WS,
        "--endpoint",
        h.endpoint!,
        "--table",
        "amk-events",
        "--json",
      ];
      const lockOf = async () => (await readWorkspace(events, WS)).recovery;

      // Locally a recovery is resumed, never released.
      const local = await amk(["recover", "release", WS, "--json"]);
      assert.equal(local.code, 6, local.stderr);
      assert.equal(local.json.error?.code, "RELEASE_NOT_LOCAL");
      assert.match(local.stderr, new RegExp(`--execution-name ${executionName}`));

      server.handler = () => jsonFixture("sfn", "describe-execution-running");
      const running = await amk(release, { env });
      assert.equal(running.code, 6, running.stderr);
      assert.equal(running.json.error?.code, "EXECUTION_RUNNING");
      assert.match(running.stderr, new RegExp(`stop-execution --execution-arn ${executionArn}`));
      assert.deepEqual(JSON.parse(server.requests.at(-1)!.body), { executionArn });
      assert.equal((await lockOf())?.status, "running");

      server.handler = () => jsonFixture("sfn", "execution-does-not-exist");
      const unknown = await amk(release, { env });
      assert.equal(unknown.code, 5, unknown.stderr);
      assert.equal(unknown.json.error?.code, "EXECUTION_NOT_FOUND");
      assert.equal((await lockOf())?.status, "running");

      server.handler = () => jsonFixture("sfn", "describe-execution-aborted");
      const released = await amk(release, { env });
      assert.equal(released.code, 0, released.stderr);
      assert.equal(released.json.released, true);
      assert.equal(released.json.recoveryId, recoveryId);
      assert.equal(released.json.executionStatus, "ABORTED");
      const lock = await lockOf();
      assert.equal(lock?.status, "failed");
      assert.deepEqual(lock?.failure, { step: "released", error: "ExecutionAborted" });
      // AWS mode without a topic (AMK_ALERT_TOPIC_ARN): the alert goes to the log, on stderr.
      assert.match(released.stderr, /RECOVERY_FAILED/);
      assert.doesNotMatch(released.stdout.trim(), /RECOVERY_FAILED/, "stdout is the --json document only");

      const again = await amk(release, { env });
      assert.equal(again.code, 6, again.stderr);
      assert.equal(again.json.error?.code, "NOTHING_TO_RELEASE");
    } finally {
      client.destroy();
      await server.close();
    }
  });

  it("engines not running: every command exits 3 and names `amk local up`", async () => {
    const empty = await mkdtemp(join(tmpdir(), "amk-cli-empty-"));
    try {
      const r = await runCli(empty, ["workspace", "status", WS, "--json"]);
      assert.equal(r.code, 3);
      assert.equal(r.json.error?.code, "ENGINES_NOT_RUNNING");
      assert.match(r.stderr, /not set up/);
      assert.match(r.stderr, /amk local up/);
      const status = await runCli(empty, ["local", "status", "--json"]);
      assert.equal(status.code, 3);
      assert.equal(status.json.ok, false);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it("no secret and nothing key-like in any output", () => {
    const all = outputs.join("\n");
    assert.ok(!all.includes(PASSPHRASE));
    assert.doesNotMatch(all, KEY_LIKE);
  });
});
