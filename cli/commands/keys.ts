/**
 * `amk keys generate|decrypt`: what the ingestion pipeline and the document readers do, through the real data-key
 * functions (in process locally, Lambda Invoke in AWS mode). DEKs never leave this process: they encrypt or decrypt
 * a file given with --in/--out, or a sample document of `amk ingest`, and are zeroized.
 */
import { randomUUID, createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { decryptContent, encryptContent } from "../../core/content/arquivomate-v2.js";
import { ARTIFACTS } from "../../core/datakeys/wrap-format.js";
import { DOCUMENT_ID_PATTERN } from "../../core/eventstore/stream-id.js";
import { zeroize } from "../../core/shared/bytes.js";
import { ProgressBar } from "../output/progress.js";
import { openRuntime, outputOf, withExamples, withExitCodes, withJson } from "../runtime/command.js";
import { CheckFailedError, NotFoundError, UsageError } from "../runtime/errors.js";
import { forEachLimit, SampleArchive } from "../runtime/samples.js";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export function parseArtifacts(value: string): string[] {
  const list = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const a of list) {
    if (!(ARTIFACTS as readonly string[]).includes(a))
      throw new UsageError(`unknown artifact "${a}": use ${ARTIFACTS.join(", ")}`);
  }
  if (list.length === 0) throw new UsageError("--artifacts: at least one");
  return [...new Set(list)];
}

function checkDocumentId(id: string): void {
  if (!DOCUMENT_ID_PATTERN.test(id)) throw new UsageError(`invalid document id ${JSON.stringify(id)}`);
}

function writeNew(path: string, data: Uint8Array): void {
  try {
    writeFileSync(path, data, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as { code?: string }).code === "EEXIST")
      throw new UsageError(`${path} exists; choose a new file`);
    throw err;
  }
}

export function register(program: Command): void {
  const keys = program
    .command("keys")
    .description("data keys of a document, as the ingestion pipeline and the readers get them");

  withExitCodes(
    withExamples(
      withJson(
        keys
          .command("generate")
          .description(
            "GenerateDataKeys for a new document: one DEK per artifact from the HSM, wrapped under the active " +
              "master key and recorded; with --in/--out the file is encrypted with the `file` DEK (ArquivoMate " +
              "content format 2). DEKs are never printed.",
          )
          .argument("<workspace>", "workspace id")
          .option("--document <id>", "document id (default: a new one)")
          .option("--artifacts <list>", "comma-separated artifacts", ARTIFACTS.join(","))
          .option("--idempotency-key <key>", "the same key returns the same keys (default: amk-<document>)")
          .option("--in <file>", "a file to encrypt with the document's `file` DEK")
          .option("--out <file>", "where the encrypted file goes (a new file, mode 0600)"),
      ),
      [
        "amk keys generate acme --document invoice-42",
        "amk keys generate acme --in scan.pdf --out scan.amd --json",
      ],
    ),
    [0, 2, 3, 5, 6],
  ).action(
    async (
      workspaceId: string,
      opts: {
        document?: string;
        artifacts: string;
        idempotencyKey?: string;
        in?: string;
        out?: string;
        json?: boolean;
      },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      const artifacts = parseArtifacts(opts.artifacts);
      const documentId = opts.document ?? `doc-${randomUUID()}`;
      checkDocumentId(documentId);
      if (Boolean(opts.in) !== Boolean(opts.out)) throw new UsageError("--in and --out go together");
      if (opts.in && !artifacts.includes("file")) throw new UsageError("--in needs the `file` artifact");
      const rt = await openRuntime(cmd);
      await rt.requireWorkspace(workspaceId);
      const client = await rt.dataKeyClient();
      const g = await client.generate({
        workspaceId,
        documentId,
        artifacts,
        idempotencyKey: opts.idempotencyKey ?? `amk-${documentId}`,
      });
      let encrypted: { in: string; out: string; bytes: number; sha256Prefix: string } | undefined;
      if (opts.in && opts.out) {
        const plain = readFileSync(opts.in);
        try {
          const sealed = await client.withDataKey({ workspaceId, documentId, artifact: "file" }, (dek) =>
            encryptContent(dek, plain),
          );
          writeNew(opts.out, sealed);
          encrypted = {
            in: opts.in,
            out: opts.out,
            bytes: sealed.length,
            sha256Prefix: sha256(plain).slice(0, 16),
          };
        } finally {
          zeroize(plain);
        }
      }
      client.forget(workspaceId, documentId);
      out.line(`Document ${documentId}: ${g.artifacts.length} data keys generated and recorded.`);
      out.fact("wrapped under", g.keyId);
      out.fact("wrap record", `DocumentEncryptionKeysAdded v${g.recordVersion}`);
      out.fact("artifacts", g.artifacts.join(", "));
      out.fact("DEKs", "32 bytes each, held in memory only, never printed");
      if (encrypted) out.fact("encrypted", `${encrypted.in} -> ${encrypted.out} (${encrypted.bytes} bytes)`);
      out.result({
        ok: true,
        workspaceId,
        documentId,
        keyId: g.keyId,
        recordVersion: g.recordVersion,
        artifacts: g.artifacts,
        ...(encrypted ? { encrypted } : {}),
      });
    },
  );

  withExitCodes(
    withExamples(
      withJson(
        keys
          .command("decrypt")
          .description(
            "DecryptDataKeys for a document: its DEKs unwrapped by the HSM under whichever master key version " +
              "wraps them; decrypts --in to --out, or checks a sample document of `amk ingest` against its hash; " +
              "--all checks every sample document of the workspace",
          )
          .argument("<workspace>", "workspace id")
          .option("--document <id>", "document id")
          .option("--all", "every sample document of `amk ingest` (progress, counts per master key)")
          .option("--artifacts <list>", "artifacts to unwrap (without --in / a sample)", "file")
          .option("--in <file>", "an encrypted file (from `keys generate --in`)")
          .option("--out <file>", "where the decrypted file goes (a new file, mode 0600)"),
      ),
      ["amk keys decrypt acme --document invoice-42", "amk keys decrypt acme --all --json"],
    ),
    [0, 1, 2, 3, 5],
  ).action(
    async (
      workspaceId: string,
      opts: {
        document?: string;
        all?: boolean;
        artifacts: string;
        in?: string;
        out?: string;
        json?: boolean;
      },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      if (Boolean(opts.all) === Boolean(opts.document)) throw new UsageError("give --document <id> or --all");
      if (Boolean(opts.in) !== Boolean(opts.out)) throw new UsageError("--in and --out go together");
      if (opts.all && opts.in) throw new UsageError("--in/--out decrypt one document: use --document");
      if (opts.document) checkDocumentId(opts.document);
      const artifacts = parseArtifacts(opts.artifacts);
      const rt = await openRuntime(cmd);
      await rt.requireWorkspace(workspaceId);
      const archive = new SampleArchive(join(rt.home, "documents"));
      const keyIds = new Map<string, string>();
      const client = await rt.dataKeyClient((s) => keyIds.set(s.documentId, s.keyId));

      if (opts.all) {
        const samples = archive.list(workspaceId);
        if (samples.length === 0) {
          throw new NotFoundError(
            `no sample documents of workspace ${workspaceId} in ${rt.home}`,
            "NO_SAMPLES",
            `create some with \`amk ingest ${workspaceId} --count 100\``,
          );
        }
        const bar = new ProgressBar("decrypt", samples.length);
        const failed: { documentId: string; problem: string }[] = [];
        await forEachLimit(samples, 8, async (s) => {
          try {
            const blob = archive.ciphertext(workspaceId, s.documentId);
            const plain = await client.withDataKey(
              { workspaceId, documentId: s.documentId, artifact: "file" },
              (dek) => decryptContent(dek, blob),
            );
            if (sha256(plain) !== s.sha256)
              failed.push({ documentId: s.documentId, problem: "content hash differs" });
            zeroize(plain);
          } catch (err) {
            failed.push({
              documentId: s.documentId,
              problem: `${(err as Error).name}: ${(err as Error).message}`,
            });
          } finally {
            client.forget(workspaceId, s.documentId);
            bar.add(1);
          }
        });
        const p = bar.finish();
        const byKeyId: Record<string, number> = {};
        for (const k of keyIds.values()) byKeyId[k] = (byKeyId[k] ?? 0) + 1;
        const ok = samples.length - failed.length;
        out.line(`${ok} of ${samples.length} sample documents decrypt to their recorded content.`);
        for (const [k, n] of Object.entries(byKeyId)) out.fact(k, `${n} documents`);
        out.fact("rate", `${p.rate.toFixed(1)} documents/s`);
        for (const f of failed.slice(0, 10)) out.line(`  FAILED ${f.documentId}: ${f.problem}`);
        out.result({
          ok: failed.length === 0,
          workspaceId,
          documents: samples.length,
          decrypted: ok,
          byKeyId,
          failed,
        });
        if (failed.length > 0) {
          throw new CheckFailedError(`${failed.length} documents did not decrypt`, "DECRYPT_FAILED");
        }
        return;
      }

      const documentId = opts.document!;
      const sample = archive.find(workspaceId, documentId);
      if (opts.in && opts.out) {
        const blob = readFileSync(opts.in);
        const plain = await client.withDataKey({ workspaceId, documentId, artifact: "file" }, (dek) =>
          decryptContent(dek, blob),
        );
        try {
          writeNew(opts.out, plain);
        } finally {
          zeroize(plain);
        }
        out.line(`Document ${documentId} decrypted: ${opts.in} -> ${opts.out} (${plain.length} bytes).`);
        out.fact("wrapped under", keyIds.get(documentId));
        out.result({ ok: true, workspaceId, documentId, keyId: keyIds.get(documentId), out: opts.out });
        return;
      }
      if (sample) {
        const blob = archive.ciphertext(workspaceId, documentId);
        const plain = await client.withDataKey({ workspaceId, documentId, artifact: "file" }, (dek) =>
          decryptContent(dek, blob),
        );
        const matches = sha256(plain) === sample.sha256;
        zeroize(plain);
        out.line(
          `Document ${documentId} ${matches ? "decrypts to its recorded content" : "does NOT match its recorded content"}.`,
        );
        out.fact("wrapped under", keyIds.get(documentId));
        out.fact("content", `${sample.bytes} bytes, sha256 ${sample.sha256.slice(0, 16)}...`);
        out.result({
          ok: matches,
          workspaceId,
          documentId,
          keyId: keyIds.get(documentId),
          contentMatches: matches,
        });
        if (!matches)
          throw new CheckFailedError(`document ${documentId} does not match its recorded content`);
        return;
      }
      // No ciphertext here: prove the DEKs unwrap (the HSM checks each one's authentication tag).
      for (const artifact of artifacts) {
        await client.withDataKey({ workspaceId, documentId, artifact }, () => undefined);
      }
      client.forget(workspaceId, documentId);
      out.line(`Document ${documentId}: ${artifacts.length} data keys unwrapped by the HSM (not printed).`);
      out.fact("wrapped under", keyIds.get(documentId));
      out.result({ ok: true, workspaceId, documentId, keyId: keyIds.get(documentId), artifacts });
    },
  );
}
