/**
 * `amk workspace provision|status`: a new workspace with its first administrator and recovery kit v1; a
 * workspace's keys, administrators, kits, rotation, recovery and drill at a glance.
 */
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { checkPassphrase } from "../../core/factors/passphrase-policy.js";
import { WeakPassphraseError } from "../../core/kit/errors.js";
import { readWorkspace } from "../../core/workspaces/workspace.js";
import { checkWorkspaceId } from "../runtime/context.js";
import {
  openRuntime,
  outputOf,
  positiveInt,
  withExamples,
  withExitCodes,
  withJson,
} from "../runtime/command.js";
import { ConflictError, UsageError } from "../runtime/errors.js";
import { addSecretOptions, interactive, readSecret, type SecretSource } from "../runtime/secrets.js";
import { documentsPerLiveKey } from "../runtime/workflows.js";

const ADMIN_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

interface ProvisionOptions {
  admin: string;
  canaries?: number;
  totpUriFile?: string;
  passphraseFd?: number;
  passphraseEnv?: string;
  json?: boolean;
}

/** Asks for a new passphrase twice (or reads it once from the automation source) and checks the policy. */
export async function newPassphrase(
  source: SecretSource,
  ids: { workspaceId: string; adminId: string },
): Promise<string> {
  const automated = source.fd !== undefined || source.env !== undefined;
  for (let attempt = 1; ; attempt++) {
    const passphrase = await readSecret({
      what: "passphrase",
      source,
      prompt: "New kit passphrase (15+ characters; several unrelated words): ",
      ...(automated ? {} : { confirm: "Repeat the passphrase: " }),
      flag: "passphrase",
    }).catch((err: unknown) => {
      if (!automated && attempt < 3 && err instanceof UsageError && /differ/.test(err.message)) {
        process.stderr.write("The two passphrases differ; try again.\n");
        return undefined;
      }
      throw err;
    });
    if (passphrase === undefined) continue;
    try {
      checkPassphrase(passphrase, ids);
      return passphrase;
    } catch (err) {
      if (automated || attempt >= 3 || !(err instanceof WeakPassphraseError)) throw err;
      process.stderr.write(`${err.message}; try again.\n`);
    }
  }
}

export function register(program: Command): void {
  const workspace = program.command("workspace").description("provision a workspace, or look at one");

  const provision = withJson(
    addSecretOptions(
      workspace
        .command("provision")
        .description(
          "create a workspace: master key v1 and the drill key in the HSM, the first administrator (passphrase " +
            "asked twice, policy checked; TOTP enrolled with an otpauth:// URI and a QR code), canary documents, " +
            "and recovery kit v1 in the vault (its fingerprint is printed)",
        )
        .argument("<workspace>", "workspace id: 1-64 letters, digits, - and _")
        .option("--admin <id>", "the first administrator's id", "admin")
        .option("--canaries <n>", "canary documents to create (default 3)", positiveInt("--canaries", 100))
        .option(
          "--totp-uri-file <path>",
          "write the TOTP enrollment URI to this new file (mode 0600) instead of the terminal (automation; required " +
            "when stdout is not a terminal)",
        ),
      "passphrase",
      "new passphrase",
    ),
  );
  withExitCodes(
    withExamples(provision, [
      "amk workspace provision acme --admin alice",
      "amk workspace provision acme --admin ops --passphrase-fd 3 --totp-uri-file ./ops.totp --json 3<pass.txt",
    ]),
    [0, 2, 3, 6],
  ).action(async (workspaceId: string, opts: ProvisionOptions, cmd: Command) => {
    const out = outputOf(opts);
    checkWorkspaceId(workspaceId);
    if (!ADMIN_ID.test(opts.admin)) throw new UsageError("--admin: 1-64 letters, digits, - and _");
    // Where the TOTP enrollment goes is settled before anything changes: it is a secret (the seed).
    const uriFile = opts.totpUriFile ? resolve(opts.totpUriFile) : undefined;
    if (!uriFile && (opts.json || !process.stdout.isTTY)) {
      throw new UsageError(
        "the TOTP enrollment (it holds the seed) would go to a file or log, not to a terminal",
        "run in a terminal to see the QR code, or pass --totp-uri-file <path> (written with mode 0600)",
      );
    }
    const rt = await openRuntime(cmd);
    const existing = await readWorkspace(rt.events(), workspaceId);
    if (existing.kits.length > 0) {
      throw new ConflictError(
        `workspace "${workspaceId}" is already provisioned (kit v${existing.kits.at(-1)!.kitVersion})`,
        "ALREADY_PROVISIONED",
        `see it with \`amk workspace status ${workspaceId}\``,
      );
    }
    if (!interactive() && opts.passphraseFd === undefined && opts.passphraseEnv === undefined) {
      throw new UsageError(
        "no terminal to ask for the passphrase",
        "pass --passphrase-fd <n> or --passphrase-env <NAME> (never the passphrase itself as an argument)",
      );
    }
    const passphrase = await newPassphrase(
      { fd: opts.passphraseFd, env: opts.passphraseEnv },
      { workspaceId, adminId: opts.admin },
    );
    const [{ provisionWorkspaceWithKit }, { renderKitIssued, renderTotpEnrollment }] = await Promise.all([
      import("../../core/workspaces/provision-with-kit.js"),
      import("../output/enrollment.js"),
    ]);
    const keyStore = await rt.keyStore();
    const kits = await rt.kits();
    const dataKeys = await rt.dataKeys();
    const r = await provisionWorkspaceWithKit(
      { keyStore, events: rt.events(), kits, dataKeys },
      {
        workspaceId,
        administrators: [{ adminId: opts.admin, passphrase, factor: { type: "totp" } }],
        ...(opts.canaries ? { canaries: opts.canaries } : {}),
      },
    );
    const uri = r.enrollments[0]?.totpUri;
    if (uri && uriFile) writeFileSync(uriFile, `${uri}\n`, { mode: 0o600, flag: "wx" });
    const active = r.state.keys.find((k) => k.keyId === r.state.activeKeyId)!;
    out.line(`Workspace ${workspaceId} provisioned.`);
    out.fact("master key", `${active.keyId} (KCV ${active.kcv})`);
    out.fact("drill key", `${r.state.drill?.drillKeyId} (RSA, never leaves the HSM)`);
    out.fact("administrator", `${opts.admin}: passphrase + TOTP`);
    out.fact("canary documents", r.state.canaries.length);
    out.line();
    if (uri && !uriFile) {
      out.line(await renderTotpEnrollment(uri));
      out.line();
    } else if (uriFile) {
      out.line(
        `TOTP enrollment written to ${uriFile} (mode 0600): import it into an authenticator, then delete it.`,
      );
    }
    out.line(renderKitIssued(r.kit, workspaceId));
    out.result({
      ok: true,
      workspaceId,
      masterKey: { keyId: active.keyId, kcv: active.kcv },
      drillKeyId: r.state.drill?.drillKeyId,
      administrators: [{ adminId: opts.admin, factor: "totp" }],
      canaries: r.state.canaries.length,
      kit: {
        version: r.kit.kitVersion,
        fingerprint: r.kit.fingerprint,
        vaultVersionId: r.kit.vaultVersionId,
      },
      ...(uriFile ? { totpUriFile: uriFile } : {}),
    });
  });

  withExitCodes(
    withJson(
      workspace
        .command("status")
        .alias("show")
        .description(
          "a workspace's master keys, administrators, kits, rotation, recovery, tokens and last drill",
        )
        .argument("<workspace>", "workspace id"),
    ),
    [0, 2, 3, 5],
  ).action(async (workspaceId: string, opts: { json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    const rt = await openRuntime(cmd);
    const ws = await rt.requireWorkspace(workspaceId);
    const documents = await documentsPerLiveKey(rt.events(), ws);
    const kit = ws.kits.at(-1);
    out.line(`Workspace ${workspaceId} (stream version ${ws.version})`);
    out.table(
      ["master key", "state", "KCV", "documents"],
      ws.keys.map((k) => [k.keyId, k.state, k.kcv, documents[k.keyId]]),
    );
    out.fact("active key", ws.activeKeyId);
    out.fact("drill key", ws.drill?.drillKeyId);
    out.fact(
      "administrators",
      Object.values(ws.admins)
        .map(
          (a) =>
            `${a.adminId} (${a.factorType}${a.consecutiveFailures ? `, ${a.consecutiveFailures} failed attempts` : ""}${a.lockedUntil ? `, locked until ${a.lockedUntil}` : ""})`,
        )
        .join(", "),
    );
    out.fact("recovery kit", kit ? `v${kit.kitVersion}, fingerprint ${kit.fingerprint}` : undefined);
    out.fact(
      "rotation",
      ws.rotation
        ? `${ws.rotation.status}: ${ws.rotation.fromKeyIds.join(", ")} -> ${ws.rotation.toKeyId}`
        : "never",
    );
    out.fact("recovery", ws.recovery ? `${ws.recovery.status} (${ws.recovery.recoveryId})` : "never");
    out.fact("token epoch", ws.tokenEpoch);
    out.fact("canary documents", ws.canaries.length);
    out.fact(
      "last drill",
      ws.lastDrill
        ? `${ws.lastDrill.ok ? "passed" : `FAILED (${ws.lastDrill.failed.join(", ")})`} at ${ws.lastDrill.at}`
        : "never",
    );
    out.result({
      ok: true,
      workspaceId,
      version: ws.version,
      activeKeyId: ws.activeKeyId,
      keys: ws.keys.map((k) => ({
        keyId: k.keyId,
        state: k.state,
        kcv: k.kcv,
        documents: documents[k.keyId],
      })),
      drillKeyId: ws.drill?.drillKeyId,
      administrators: Object.values(ws.admins).map((a) => ({
        adminId: a.adminId,
        factor: a.factorType,
        consecutiveFailures: a.consecutiveFailures,
        ...(a.lockedUntil ? { lockedUntil: a.lockedUntil } : {}),
      })),
      kit: kit
        ? { version: kit.kitVersion, fingerprint: kit.fingerprint, issuedAt: kit.issuedAt }
        : undefined,
      rotation: ws.rotation,
      recovery: ws.recovery
        ? {
            recoveryId: ws.recovery.recoveryId,
            status: ws.recovery.status,
            executionName: ws.recovery.executionName,
            ...(ws.recovery.failure ? { failure: ws.recovery.failure } : {}),
          }
        : undefined,
      tokenEpoch: ws.tokenEpoch,
      canaries: ws.canaries.length,
      lastDrill: ws.lastDrill,
    });
  });
}
