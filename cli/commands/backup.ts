/**
 * `amk backup export|verify|restore|test`: event-store backups in the project's signed format (docs/backup-format.md)
 * and the restoration test (restore the newest backup into a scratch table, decrypt canaries and a sample with the
 * kit through its drill slot; docs/runbooks/restoration-tests.md). Locally, backups are a folder beside the vault
 * (`<home>/backups`); in AWS the export function writes to the backup bucket.
 */
import { InvalidArgumentError, type Command } from "commander";
import type { RestorationTestCompletedData } from "../../core/eventstore/catalogue.js";
import { workspaceStreamId } from "../../core/eventstore/stream-id.js";
import {
  openRuntime,
  outputOf,
  positiveInt,
  withExamples,
  withExitCodes,
  withJson,
} from "../runtime/command.js";
import { CheckFailedError, ConflictError, UsageError } from "../runtime/errors.js";
import { runWorkflow } from "../runtime/workflows.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function backupIdArg(value: string): string {
  if (!UUID.test(value)) throw new InvalidArgumentError("a backup id is a lower-case UUID");
  return value;
}

async function storage() {
  const { backupStorageFromEnv } = await import("../../functions/backup/handler.js");
  return backupStorageFromEnv();
}

async function trustedKeys(rt: Awaited<ReturnType<typeof openRuntime>>, pinned?: string) {
  const backup = await import("../../core/backup/index.js");
  const fromFlag = backup.parseBackupPublicKeys(pinned ?? process.env.AMK_BACKUP_PUBLIC_KEYS);
  return fromFlag.length > 0 ? fromFlag : backup.backupPublicKeysFromVault(await rt.vault());
}

export function register(program: Command): void {
  const backup = program
    .command("backup")
    .description(
      "event-store backups (signed, verifiable) and the restoration test that proves they decrypt",
    );

  withExitCodes(
    withExamples(
      withJson(
        backup
          .command("export")
          .description(
            "export a workspace's events (or the whole table with --all) as a signed backup; incremental with --base",
          )
          .argument("[workspace]", "workspace id (omit with --all)")
          .option("--all", "the whole table")
          .option("--base <backupId>", "an incremental export after this backup", backupIdArg),
      ),
      ["amk backup export acme", "amk backup export acme --base 01a2...", "amk backup export --all --json"],
    ),
    [0, 2, 3, 5],
  ).action(
    async (
      workspaceId: string | undefined,
      opts: { all?: boolean; base?: string; json?: boolean },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      if (Boolean(workspaceId) === Boolean(opts.all))
        throw new UsageError("name a workspace, or --all (not both)");
      const rt = await openRuntime(cmd);
      if (workspaceId) await rt.requireWorkspace(workspaceId);
      const { exportHandler } = await import("../../functions/backup/handler.js");
      out.note(`Exporting ${workspaceId ?? "the whole table"}...`);
      const r = await exportHandler({
        ...(workspaceId ? { workspaceId } : {}),
        kind: opts.base ? "incremental" : "full",
        ...(opts.base ? { baseBackupId: opts.base } : {}),
      });
      out.fact("backup", r.backupId);
      out.fact("kind", r.kind);
      out.fact("events", r.events);
      out.fact("streams", r.streams);
      out.fact("files", r.files);
      out.fact("manifest SHA-256", r.manifestSha256);
      out.fact("signing key", r.keyId);
      out.fact("location", r.location);
      out.result({ ok: true, ...r });
    },
  );

  withExitCodes(
    withExamples(
      withJson(
        backup
          .command("verify")
          .description(
            "verify a backup completely (signature, checksums, counts, versions, the increment chain) without writing",
          )
          .argument("<backupId>", "backup id", backupIdArg)
          .option(
            "--public-keys <list>",
            "pinned public keys (default AMK_BACKUP_PUBLIC_KEYS, else the vault's)",
          ),
      ),
      ["amk backup verify 01a22f39-e66a-7c97-befe-812d4f9994b1"],
    ),
    [0, 1, 2, 3],
  ).action(async (backupId: string, opts: { publicKeys?: string; json?: boolean }, cmd: Command) => {
    const out = outputOf(opts);
    const rt = await openRuntime(cmd);
    const { verifyBackup } = await import("../../core/backup/index.js");
    try {
      const v = await verifyBackup({
        storage: await storage(),
        backupId,
        trustedKeys: await trustedKeys(rt, opts.publicKeys),
      });
      out.line(
        `Backup ${backupId} is intact: ${v.events} events in ${v.streams} streams, exported ${v.exportedAt}.`,
      );
      out.result({ ok: true, ...v });
    } catch (err) {
      const e = err as Error & { code?: string };
      out.result({ ok: false, backupId, error: { name: e.name, code: e.code, message: e.message } });
      throw new CheckFailedError(
        `backup ${backupId} does not verify: ${e.name}: ${e.message}`,
        e.code ?? "BACKUP",
      );
    }
  });

  withExitCodes(
    withExamples(
      withJson(
        backup
          .command("restore")
          .description(
            "restore a backup (and its increments) into a NEW, empty event-store table; refuses a table with any item",
          )
          .argument(
            "<backupId>",
            "backup id (the last increment of a chain restores the whole chain)",
            backupIdArg,
          )
          .requiredOption("--into <table>", "name of the new table (created empty)")
          .option(
            "--public-keys <list>",
            "pinned public keys (default AMK_BACKUP_PUBLIC_KEYS, else the vault's)",
          ),
      ),
      ["amk backup restore 01a22f39-e66a-7c97-befe-812d4f9994b1 --into amk-restored"],
    ),
    [0, 1, 2, 3, 6],
  ).action(
    async (backupId: string, opts: { into: string; publicKeys?: string; json?: boolean }, cmd: Command) => {
      const out = outputOf(opts);
      if (!/^[A-Za-z0-9_.-]{3,255}$/.test(opts.into)) throw new UsageError("--into: a DynamoDB table name");
      const rt = await openRuntime(cmd);
      if (opts.into === process.env.AMK_EVENT_TABLE)
        throw new ConflictError("never restore over the live table: name a new one", "RESTORE_TARGET_LIVE");
      const [{ importBackup }, { DynamoDbEventStore }, table, { dynamoDbClientFromEnv }] = await Promise.all([
        import("../../core/backup/index.js"),
        import("../../core/adapters/dynamodb/dynamodb-event-store.js"),
        import("../../core/adapters/dynamodb/table.js"),
        import("../../functions/shared/event-store.js"),
      ]);
      const client = dynamoDbClientFromEnv();
      await table.createEventStoreTable(client, opts.into).catch((err: unknown) => {
        if ((err as Error).name !== "ResourceInUseException") throw err; // exists: importBackup refuses it unless empty
      });
      const r = await importBackup({
        storage: await storage(),
        backupId,
        target: new DynamoDbEventStore({ client, tableName: opts.into }),
        trustedKeys: await trustedKeys(rt, opts.publicKeys),
        onProgress: (p) => out.note(`${p.phase}: ${p.done}/${p.total}`),
      });
      out.line(`Restored ${r.events} events in ${r.streams} streams into ${opts.into}.`);
      out.result({ ok: true, ...r });
    },
  );

  withExitCodes(
    withExamples(
      withJson(
        backup
          .command("test")
          .description(
            "run the restoration test workflow: restore the newest backup into a scratch table, open the kit " +
              "through its drill slot into scratch keys in the HSM, decrypt canaries and a sample, drop everything",
          )
          .argument("<workspace>", "workspace id")
          .option("--backup <backupId>", "a backup other than the newest", backupIdArg)
          .option(
            "--sample-size <n>",
            "documents sampled besides the canaries (default 20)",
            positiveInt("--sample-size", 10_000),
          ),
      ),
      ["amk backup test acme", "amk backup test acme --sample-size 200 --json"],
    ),
    [0, 1, 2, 3, 5],
  ).action(
    async (
      workspaceId: string,
      opts: { backup?: string; sampleSize?: number; json?: boolean },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      const rt = await openRuntime(cmd);
      await rt.requireWorkspace(workspaceId);
      out.note(`Restoration test of ${workspaceId}...`);
      const r = await runWorkflow(rt, "restoration", {
        input: {
          workspaceId,
          trigger: "on-demand",
          ...(opts.backup ? { backupId: opts.backup } : {}),
          ...(opts.sampleSize ? { sampleSize: opts.sampleSize } : {}),
        },
      });
      const { events } = await rt.events().readStream(workspaceStreamId(workspaceId));
      const last = events.filter((e) => e.type === "RestorationTestCompleted").at(-1);
      const d = last?.data as RestorationTestCompletedData | undefined;
      if (!d) {
        out.result({ ok: false, workspaceId, status: r.status, error: r.error });
        throw new CheckFailedError(
          `the restoration test did not complete (${r.status})`,
          "RESTORATION_NOT_RECORDED",
        );
      }
      out.line(
        `Restoration test ${d.TestId} of backup ${d.BackupId}: ${d.Ok ? "PASSED" : "FAILED"} (${d.DocumentsDecrypted} documents decrypted, ${d.DurationMs} ms).`,
      );
      out.table(
        ["check", "status", "detail"],
        d.Checks.map((c) => [
          c.Name,
          c.Status,
          c.Detail.length > 90 ? `${c.Detail.slice(0, 89)}…` : c.Detail,
        ]),
      );
      for (const c of d.Checks.filter((x) => x.Status === "failed" && x.Action))
        out.line(`  what to do (${c.Name}): ${c.Action}`);
      out.result({ ok: d.Ok, workspaceId, testId: d.TestId, backupId: d.BackupId, checks: d.Checks });
      if (!d.Ok)
        throw new CheckFailedError(
          `restoration test failed: ${d.Checks.filter((c) => c.Status === "failed")
            .map((c) => c.Name)
            .join(", ")}`,
          "RESTORATION_TEST_FAILED",
          "see docs/runbooks/restoration-tests.md and `amk alerts`",
        );
    },
  );
}
