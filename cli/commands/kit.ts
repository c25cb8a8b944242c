/**
 * `amk kit show|verify|ack|reissue|export`: the workspace's recovery kit (docs/kit-format.md,
 * docs/recovery-kit.md). `show` and `verify` also take a kit file (`--file`): without a workspace they run the
 * keyless checks offline, with one they also compare it with what was issued.
 */
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { armour, readKit, type ParsedKit } from "../../core/kit/format.js";
import { KitIntegrityError } from "../../core/kit/errors.js";
import type { WorkspaceState } from "../../core/workspaces/workspace.js";
import {
  openRuntime,
  outputOf,
  positiveInt,
  withExamples,
  withExitCodes,
  withJson,
} from "../runtime/command.js";
import { checkWorkspaceId, type Runtime } from "../runtime/context.js";
import { CheckFailedError, NotFoundError, UsageError } from "../runtime/errors.js";
import type { Output } from "../runtime/output.js";
import { addSecretOptions, readCode, readPassphrase } from "../runtime/secrets.js";

function readKitFile(path: string): ParsedKit {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new UsageError(`cannot read the kit file ${path}: ${(err as { code?: string }).code ?? "error"}`);
  }
  return readKit(bytes);
}

function describeKit(kit: ParsedKit) {
  const h = kit.header;
  return {
    workspaceId: h.workspaceId,
    kitId: h.kitId,
    kitVersion: h.kitVersion,
    issuedAt: h.issuedAt,
    fingerprint: kit.fingerprint,
    formatVersion: h.version,
    eventStorePosition: h.eventStorePosition,
    algorithms: h.algorithms,
    slots: kit.slots.map((s) =>
      s.type === "admin"
        ? {
            type: "admin" as const,
            adminId: s.adminId,
            factor: s.identity.factor.type,
            kdf: `${s.identity.kdf.algorithm} m=${s.identity.kdf.memoryKiB}KiB t=${s.identity.kdf.iterations} p=${s.identity.kdf.parallelism}`,
          }
        : { type: "drill" as const, drillKeyId: s.drillKeyId, oaepHash: s.oaepHash },
    ),
  };
}

function printKit(out: Output, d: ReturnType<typeof describeKit>): void {
  out.fact("workspace", d.workspaceId);
  out.fact("kit", `${d.kitId} v${d.kitVersion} (format ${d.formatVersion})`);
  out.fact("issued", d.issuedAt);
  out.fact("fingerprint", d.fingerprint);
  out.fact("event-store position", `${d.eventStorePosition.streamId} v${d.eventStorePosition.version}`);
  for (const s of d.slots) {
    if (s.type === "admin") out.fact("admin slot", `${s.adminId}: passphrase (${s.kdf}) + ${s.factor}`);
    else out.fact("drill slot", `${s.drillKeyId} (RSA-OAEP ${s.oaepHash}, opened inside the HSM)`);
  }
}

/** How a kit file relates to the kits issued for its workspace. */
function matchIssued(
  kit: ParsedKit,
  ws: WorkspaceState,
): { issued: boolean; current: boolean; note: string } {
  const record = ws.kits.find((k) => k.kitVersion === kit.header.kitVersion);
  const latest = ws.kits.at(-1);
  if (!record) return { issued: false, current: false, note: `no kit v${kit.header.kitVersion} was issued` };
  if (record.fingerprint !== kit.fingerprint) {
    return {
      issued: false,
      current: false,
      note: `kit v${record.kitVersion} was issued with fingerprint ${record.fingerprint}`,
    };
  }
  const current = latest?.kitVersion === record.kitVersion;
  return {
    issued: true,
    current,
    note: current
      ? "the current kit, as issued"
      : `an older kit, as issued (current: v${latest?.kitVersion})`,
  };
}

async function withWorkspace(
  cmd: Command,
  workspaceId: string,
): Promise<{ rt: Runtime; ws: WorkspaceState }> {
  const rt = await openRuntime(cmd);
  const ws = await rt.requireWorkspace(workspaceId);
  return { rt, ws };
}

export function register(program: Command): void {
  const kit = program
    .command("kit")
    .description("the workspace's recovery kit: show, verify, acknowledge, re-issue, export");

  withExitCodes(
    withExamples(
      withJson(
        kit
          .command("show")
          .description(
            "the current kit in the vault (header, slots, master keys, who acknowledged it), or a kit file",
          )
          .argument("[workspace]", "workspace id (optional with --file)")
          .option("--file <path>", "a kit file (armoured or binary) instead of the vault's"),
      ),
      ["amk kit show acme", "amk kit show --file acme-kit.txt"],
    ),
    [0, 1, 2, 3, 5],
  ).action(async (workspaceId: string | undefined, opts: { file?: string; json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    if (!workspaceId && !opts.file) throw new UsageError("give a workspace id, or --file <kit>");
    if (workspaceId) checkWorkspaceId(workspaceId);
    const fileKit = opts.file ? readKitFile(opts.file) : undefined;
    if (fileKit && !workspaceId) {
      const d = describeKit(fileKit);
      out.line(`Kit file ${opts.file}: structure and section checksums intact.`);
      printKit(out, d);
      out.result({ ok: true, file: opts.file, kit: d });
      return;
    }
    const { rt, ws } = await withWorkspace(cmd, workspaceId!);
    if (fileKit) {
      if (fileKit.header.workspaceId !== workspaceId)
        throw new UsageError(`that kit belongs to workspace ${fileKit.header.workspaceId}`);
      const m = matchIssued(fileKit, ws);
      out.line(`Kit file ${opts.file}: ${m.note}.`);
      printKit(out, describeKit(fileKit));
      out.result({
        ok: m.issued,
        file: opts.file,
        issued: m.issued,
        current: m.current,
        kit: describeKit(fileKit),
      });
      if (!m.issued)
        throw new CheckFailedError(
          `the kit file is not a kit issued for ${workspaceId}: ${m.note}`,
          "KIT_NOT_ISSUED",
        );
      return;
    }
    const kits = await rt.kits();
    const current = await kits.currentKit(workspaceId!, ws);
    const record = ws.kits.find((k) => k.kitVersion === current.header.kitVersion)!;
    const inventory = await kits.inventory(workspaceId!);
    const d = describeKit(current);
    out.line(`Recovery kit of ${workspaceId} in the vault (matches the fingerprint recorded at issuance):`);
    printKit(out, d);
    out.table(
      ["master key", "state", "KCV"],
      record.masterKeys.map((m) => [m.keyId, m.state, m.kcv]),
    );
    out.table(
      ["administrator", "received", "acknowledged", "status"],
      inventory.administrators.map((a) => [
        a.adminId,
        a.receivedKitVersion ? `v${a.receivedKitVersion}` : undefined,
        a.lastAcknowledgedVersion ? `v${a.lastAcknowledgedVersion} at ${a.lastAcknowledgedAt}` : "never",
        a.status,
      ]),
    );
    out.result({
      ok: true,
      kit: d,
      vaultVersionId: record.vaultVersionId,
      masterKeys: record.masterKeys,
      inventory: inventory.administrators,
      versionsIssued: ws.kits.map((k) => ({
        version: k.kitVersion,
        fingerprint: k.fingerprint,
        issuedAt: k.issuedAt,
      })),
    });
  });

  withExitCodes(
    withExamples(
      withJson(
        kit
          .command("verify")
          .description(
            "check the current kit inside the HSM through its drill slot (every master key unwrapped there, KCVs " +
              "compared with the kit's and the live keys', coverage of every live version); with --file, the " +
              "keyless checks of a kit file (offline without a workspace)",
          )
          .argument("[workspace]", "workspace id (optional with --file)")
          .option("--file <path>", "a kit file (armoured or binary)"),
      ),
      [
        "amk kit verify acme",
        "amk kit verify --file acme-kit.txt",
        "amk kit verify acme --file acme-kit.txt",
      ],
    ),
    [0, 1, 2, 3, 5],
  ).action(async (workspaceId: string | undefined, opts: { file?: string; json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    if (!workspaceId && !opts.file) throw new UsageError("give a workspace id, or --file <kit>");
    if (workspaceId) checkWorkspaceId(workspaceId);
    if (opts.file) {
      const fileKit = readKitFile(opts.file);
      const checks = [
        "magic and format version",
        "header and slot sections",
        "section checksums",
        "armour headers",
      ];
      if (!workspaceId) {
        out.line(`Kit file ${opts.file}: intact (${checks.join(", ")}).`);
        out.fact("kit", `${fileKit.header.workspaceId} v${fileKit.header.kitVersion}`);
        out.fact("fingerprint", fileKit.fingerprint);
        out.line(
          "The body opens only with a passphrase + second factor (`amk kit ack`) or the drill key in the HSM.",
        );
        out.result({
          ok: true,
          file: opts.file,
          fingerprint: fileKit.fingerprint,
          kitVersion: fileKit.header.kitVersion,
          checks,
        });
        return;
      }
      const { ws } = await withWorkspace(cmd, workspaceId);
      if (fileKit.header.workspaceId !== workspaceId)
        throw new UsageError(`that kit belongs to workspace ${fileKit.header.workspaceId}`);
      const m = matchIssued(fileKit, ws);
      out.line(`Kit file ${opts.file}: intact; ${m.note}.`);
      out.fact("fingerprint", fileKit.fingerprint);
      out.result({
        ok: m.issued,
        file: opts.file,
        issued: m.issued,
        current: m.current,
        fingerprint: fileKit.fingerprint,
      });
      if (!m.issued)
        throw new CheckFailedError(
          `the kit file is not a kit issued for ${workspaceId}: ${m.note}`,
          "KIT_NOT_ISSUED",
        );
      return;
    }
    const { rt } = await withWorkspace(cmd, workspaceId!);
    const check = await (await rt.kits()).drillCheckKit(workspaceId!);
    out.line(
      `Kit v${check.kitVersion} (${check.fingerprint}) ${check.ok ? "opens inside the HSM and covers every live master key" : "FAILED its check"}.`,
    );
    out.table(
      ["master key", "kit KCV", "unwrapped in HSM", "live KCV", "ok"],
      check.masterKeys.map((m) => [
        m.keyId,
        m.kitKcv,
        m.hsmKcv || "(failed)",
        m.liveKcv,
        m.ok ? "yes" : "NO",
      ]),
    );
    for (const p of check.problems) out.line(`  problem: ${p}`);
    out.result({ ...check, workspaceId });
    if (!check.ok)
      throw new CheckFailedError(`kit check failed: ${check.problems.join("; ")}`, "KIT_CHECK_FAILED");
  });

  withExitCodes(
    withExamples(
      withJson(
        addSecretOptions(
          addSecretOptions(
            kit
              .command("ack")
              .alias("acknowledge")
              .description(
                "acknowledge the current kit: open it with your passphrase and TOTP code, every master key is " +
                  "unwrapped inside the HSM and its KCV checked, and the proof is recorded (drills require it)",
              )
              .argument("<workspace>", "workspace id")
              .requiredOption("--admin <id>", "your administrator id"),
            "passphrase",
            "passphrase",
          ),
          "code",
          "TOTP code",
        ),
      ),
      [
        "amk kit ack acme --admin alice",
        "amk kit ack acme --admin ops --passphrase-fd 3 --code-fd 3 3<secrets",
      ],
    ),
    [0, 2, 3, 4, 5],
  ).action(
    async (
      workspaceId: string,
      opts: {
        admin: string;
        passphraseFd?: number;
        passphraseEnv?: string;
        codeFd?: number;
        codeEnv?: string;
        json?: boolean;
      },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      const { rt, ws } = await withWorkspace(cmd, workspaceId);
      const admin = ws.admins[opts.admin];
      if (!admin) {
        throw new NotFoundError(
          `administrator ${opts.admin} is not enrolled in ${workspaceId}`,
          "ADMIN_NOT_FOUND",
        );
      }
      if (admin.factorType !== "totp") {
        throw new UsageError(
          `${opts.admin}'s second factor is a hardware token, which this CLI does not drive yet`,
        );
      }
      const passphrase = await readPassphrase({ fd: opts.passphraseFd, env: opts.passphraseEnv });
      const code = await readCode({ fd: opts.codeFd, env: opts.codeEnv });
      const ack = await (
        await rt.kits()
      ).acknowledgeKit({
        workspaceId,
        adminId: opts.admin,
        passphrase,
        factor: { type: "totp", code },
      });
      out.line(
        `${opts.admin} acknowledged kit v${ack.KitVersion} (${ack.Fingerprint}): it opens, and every master key in it checks out in the HSM.`,
      );
      for (const k of ack.Kcvs) out.fact(k.KeyId, `KCV ${k.Kcv}`);
      out.result({
        ok: true,
        workspaceId,
        adminId: opts.admin,
        kitVersion: ack.KitVersion,
        fingerprint: ack.Fingerprint,
        kcvs: ack.Kcvs,
      });
    },
  );

  withExitCodes(
    withJson(
      kit
        .command("reissue")
        .description(
          "issue the next kit version for every live master key to the current kit's administrators and the " +
            "drill slot (no administrator needs to be present); it goes into the vault",
        )
        .argument("<workspace>", "workspace id")
        .option("--reason <text>", "recorded with the kit", "re-issued with amk"),
    ),
    [0, 2, 3, 5, 6],
  ).action(async (workspaceId: string, opts: { reason: string; json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    const { rt } = await withWorkspace(cmd, workspaceId);
    const issued = await (await rt.kits()).issueKit(workspaceId, { reason: opts.reason });
    out.line(`Recovery kit v${issued.kitVersion} of ${workspaceId} is in the vault.`);
    out.fact("fingerprint", issued.fingerprint);
    out.line("Every administrator acknowledges it (`amk kit ack`) so that drills pass.");
    out.result({
      ok: true,
      workspaceId,
      kitVersion: issued.kitVersion,
      fingerprint: issued.fingerprint,
      vaultVersionId: issued.vaultVersionId,
    });
  });

  withExitCodes(
    withExamples(
      withJson(
        kit
          .command("export")
          .description("write the armoured kit to a new file with mode 0600 (to print or store offline)")
          .argument("<workspace>", "workspace id")
          .requiredOption("--out <file>", "the file to write (must not exist unless --force)")
          .option(
            "--kit-version <n>",
            "an older issued version (default: the current kit)",
            positiveInt("--kit-version"),
          )
          .option("--force", "overwrite an existing file"),
      ),
      ["amk kit export acme --out acme-kit.txt"],
    ),
    [0, 1, 2, 3, 5],
  ).action(
    async (
      workspaceId: string,
      opts: { out: string; kitVersion?: number; force?: boolean; json?: boolean },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      const { rt, ws } = await withWorkspace(cmd, workspaceId);
      const kits = await rt.kits();
      let parsed: ParsedKit;
      if (opts.kitVersion === undefined || opts.kitVersion === ws.kits.at(-1)?.kitVersion) {
        parsed = await kits.currentKit(workspaceId, ws);
      } else {
        const record = ws.kits.find((k) => k.kitVersion === opts.kitVersion);
        if (!record)
          throw new NotFoundError(
            `no kit v${opts.kitVersion} was issued for ${workspaceId}`,
            "KIT_NOT_FOUND",
          );
        parsed = await kits.kitAtVaultVersion(workspaceId, record.vaultVersionId);
        if (parsed.fingerprint !== record.fingerprint)
          throw new KitIntegrityError(
            `the vault's kit v${opts.kitVersion} is not the one recorded at issuance`,
            "fingerprint",
          );
      }
      const path = resolve(opts.out);
      const text = armour(parsed.bytes);
      try {
        writeFileSync(path, text, { mode: 0o600, flag: opts.force ? "w" : "wx" });
      } catch (err) {
        if ((err as { code?: string }).code === "EEXIST")
          throw new UsageError(`${path} exists`, "choose a new file, or pass --force");
        throw err;
      }
      chmodSync(path, 0o600);
      out.line(`Kit v${parsed.header.kitVersion} of ${workspaceId} written to ${path} (mode 0600).`);
      out.fact("fingerprint", parsed.fingerprint);
      out.line("Compare the fingerprint with the one noted at issuance; keep the file offline.");
      out.result({
        ok: true,
        workspaceId,
        kitVersion: parsed.header.kitVersion,
        fingerprint: parsed.fingerprint,
        file: path,
        mode: "0600",
      });
    },
  );
}
