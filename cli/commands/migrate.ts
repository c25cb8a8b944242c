/**
 * `amk migrate arquivomate`: moves an ArquivoMate installation (one static master key from its configuration) into
 * an HSM-held workspace key (core/migration; docs/runbooks/migration.md). The backup ZIP's checksum, shape and counts
 * and every DEK (unwrapped with the legacy key) are checked before anything is written; `--dry-run` stops there.
 * The legacy key is read from a file (never an argument); the first administrator's passphrase from a prompt or an
 * explicitly flagged fd/env.
 */
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { checkWorkspaceId } from "../runtime/context.js";
import {
  openRuntime,
  outputOf,
  positiveInt,
  withExamples,
  withExitCodes,
  withJson,
} from "../runtime/command.js";
import { CheckFailedError, UsageError } from "../runtime/errors.js";
import { addSecretOptions, interactive } from "../runtime/secrets.js";
import { newPassphrase } from "./workspace.js";
import { writerTimingFromEnv } from "../../functions/shared/services.js";

interface MigrateOptions {
  backup: string;
  masterKeyFile: string;
  workspace: string;
  dryRun?: boolean;
  artifacts?: string;
  sample?: number;
  admin: string;
  totpUriFile?: string;
  passphraseFd?: number;
  passphraseEnv?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const migrate = program
    .command("migrate")
    .description("bring an existing installation's keys under this service");

  const cmd = withJson(
    addSecretOptions(
      migrate
        .command("arquivomate")
        .description(
          "migrate an ArquivoMate key backup (ZIP) wrapped under its static master key into a workspace: verify " +
            "everything first, import the legacy key as a decrypt-only version, re-wrap every DEK under a fresh " +
            "HSM key, issue the kit, prove with a census that the legacy key is no longer needed",
        )
        .requiredOption("--backup <file>", "ArquivoMate's key-backup ZIP")
        .requiredOption("--master-key-file <file>", "the legacy Encryption:MasterKeyBase64 value (mode 0600)")
        .requiredOption(
          "--workspace <id>",
          "the target workspace (new, or the one an interrupted run started)",
        )
        .option("--dry-run", "check everything, unwrap every DEK with the legacy key, write nothing")
        .option(
          "--artifacts <dir>",
          "a folder of ArquivoMate's .enc files: decrypt a sample and check each HMAC",
        )
        .option("--sample <n>", "artifact files decrypted (default 20)", positiveInt("--sample", 10_000))
        .option("--admin <id>", "the first administrator (enrolled with passphrase + TOTP)", "admin")
        .option(
          "--totp-uri-file <path>",
          "write the TOTP enrollment URI to this new 0600 file instead of the terminal",
        ),
      "passphrase",
      "new passphrase of the administrator",
    ),
  );
  withExitCodes(
    withExamples(cmd, [
      "amk migrate arquivomate --backup keys.zip --master-key-file legacy.key --workspace acme --dry-run",
      "amk migrate arquivomate --backup keys.zip --master-key-file legacy.key --workspace acme --admin alice",
    ]),
    [0, 1, 2, 3, 6],
  ).action(async (opts: MigrateOptions, command: Command) => {
    const out = outputOf(opts);
    checkWorkspaceId(opts.workspace);
    const uriFile = opts.totpUriFile ? resolve(opts.totpUriFile) : undefined;
    if (!opts.dryRun && !uriFile && (opts.json || !process.stdout.isTTY)) {
      throw new UsageError(
        "the TOTP enrollment (it holds the seed) would go to a file or log, not to a terminal",
        "run in a terminal, or pass --totp-uri-file <path> (written with mode 0600)",
      );
    }
    const rt = await openRuntime(command);
    const [{ migrateArquivoMate, formatMigrationReport }, { RotationService }, { readWorkspace }] =
      await Promise.all([
        import("../../core/migration/command.js"),
        import("../../core/rotation/rotation-service.js"),
        import("../../core/workspaces/workspace.js"),
      ]);
    const existing = await readWorkspace(rt.events(), opts.workspace);
    let administrators: { adminId: string; passphrase: string; factor: { type: "totp" } }[] = [];
    if (!opts.dryRun && existing.kits.length === 0) {
      if (!interactive() && opts.passphraseFd === undefined && opts.passphraseEnv === undefined) {
        throw new UsageError(
          "no terminal to ask for the administrator's passphrase",
          "pass --passphrase-fd <n> or --passphrase-env <NAME>",
        );
      }
      const passphrase = await newPassphrase(
        { fd: opts.passphraseFd, env: opts.passphraseEnv },
        { workspaceId: opts.workspace, adminId: opts.admin },
      );
      administrators = [{ adminId: opts.admin, passphrase, factor: { type: "totp" } }];
    }
    const keyStore = await rt.keyStore();
    const kits = await rt.kits();
    const alerts = await rt.alerts();
    const events = rt.events();
    let enrollmentUri: string | undefined;
    const result = await migrateArquivoMate(
      {
        keyStore,
        events,
        kits,
        rotation: new RotationService({ keyStore, events, kits, alerts, ...writerTimingFromEnv() }),
        dataKeys: await rt.dataKeys(),
      },
      {
        backupFile: opts.backup,
        masterKeyFile: opts.masterKeyFile,
        workspace: opts.workspace,
        ...(opts.dryRun ? { dryRun: true } : {}),
        ...(opts.artifacts ? { artifactsDir: opts.artifacts } : {}),
        ...(opts.sample ? { sampleSize: opts.sample } : {}),
        administrators,
        onPhase: (phase, event, ms) => {
          if (event === "end")
            out.note(`${phase}: done${ms !== undefined ? ` in ${Math.round(ms)} ms` : ""}`);
        },
        onEnrollment: (e) => {
          enrollmentUri = e.totpUri;
        },
      },
    );
    if (enrollmentUri) {
      if (uriFile) {
        writeFileSync(uriFile, `${enrollmentUri}\n`, { mode: 0o600, flag: "wx" });
        out.line(
          `TOTP enrollment written to ${uriFile} (mode 0600): import it into an authenticator, then delete it.`,
        );
      } else {
        const { renderTotpEnrollment } = await import("../output/enrollment.js");
        out.line(await renderTotpEnrollment(enrollmentUri));
      }
    }
    out.line(formatMigrationReport(result.report));
    out.result({ ok: result.report.failures.length === 0, report: result.report });
    if (result.report.failures.length > 0) {
      throw new CheckFailedError(
        `${result.report.failures.length} document(s) could not be migrated`,
        "MIGRATION_FAILURES",
        "see the report; keep the legacy key until they are resolved (docs/runbooks/migration.md)",
      );
    }
  });
}
