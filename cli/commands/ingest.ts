/**
 * `amk ingest <workspace> --count N`: sample documents as the ingestion pipeline makes them: GenerateDataKeys per
 * document (one DEK per artifact), the `file` artifact encrypted with ArquivoMate's content format 2 and kept in the
 * local sample archive, and a DocumentStored lifecycle event. `--canaries N` tops the canary documents up to N.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import type { Command } from "commander";
import { encryptContent } from "../../core/content/arquivomate-v2.js";
import { ARTIFACTS } from "../../core/datakeys/wrap-format.js";
import { zeroize } from "../../core/shared/bytes.js";
import { ProgressBar } from "../output/progress.js";
import {
  openRuntime,
  outputOf,
  positiveInt,
  withExamples,
  withExitCodes,
  withJson,
} from "../runtime/command.js";
import { forEachLimit, SampleArchive } from "../runtime/samples.js";
import { parseArtifacts } from "./keys.js";

export function register(program: Command): void {
  withExitCodes(
    withExamples(
      withJson(
        program
          .command("ingest")
          .description(
            "create sample documents as the ingestion pipeline does (data keys generated and recorded, the file " +
              "encrypted and kept in the local sample archive, DocumentStored recorded), with a progress bar",
          )
          .argument("<workspace>", "workspace id")
          .requiredOption("--count <n>", "how many documents", positiveInt("--count", 100_000))
          .option("--artifacts <list>", "artifacts per document", ARTIFACTS.join(","))
          .option("--concurrency <n>", "documents in flight", positiveInt("--concurrency", 64), 8)
          .option(
            "--canaries <n>",
            "also make sure the workspace has this many canary documents",
            positiveInt("--canaries", 100),
          ),
      ),
      ["amk ingest acme --count 300", "amk ingest acme --count 50 --artifacts file,metadata --json"],
    ),
    [0, 1, 2, 3, 5],
  ).action(
    async (
      workspaceId: string,
      opts: { count: number; artifacts: string; concurrency: number; canaries?: number; json?: boolean },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      const artifacts = parseArtifacts(opts.artifacts);
      if (!artifacts.includes("file")) artifacts.unshift("file");
      const rt = await openRuntime(cmd);
      await rt.requireWorkspace(workspaceId);
      const archive = new SampleArchive(join(rt.home, "documents"));
      const client = await rt.dataKeyClient();
      const lifecycle = rt.local
        ? (await import("../../functions/document-lifecycle/handler.js")).handler
        : undefined;
      const byKeyId: Record<string, number> = {};
      let bytes = 0;
      const bar = new ProgressBar("ingest", opts.count);
      await forEachLimit(
        Array.from({ length: opts.count }, (_, i) => i),
        opts.concurrency,
        async () => {
          const documentId = `sample-${randomUUID()}`;
          const g = await client.generate({
            workspaceId,
            documentId,
            artifacts,
            idempotencyKey: "amk-ingest",
          });
          byKeyId[g.keyId] = (byKeyId[g.keyId] ?? 0) + 1;
          const content = Buffer.concat([
            Buffer.from(`ArquivoMate sample document ${documentId}\n`),
            randomBytes(512 + Math.floor(Math.random() * 3584)),
          ]);
          try {
            const sealed = await client.withDataKey({ workspaceId, documentId, artifact: "file" }, (dek) =>
              encryptContent(dek, content),
            );
            archive.put(
              workspaceId,
              {
                documentId,
                sha256: createHash("sha256").update(content).digest("hex"),
                bytes: content.length,
                at: new Date().toISOString(),
              },
              sealed,
            );
            bytes += content.length;
          } finally {
            zeroize(content);
            client.forget(workspaceId, documentId);
          }
          await lifecycle?.({
            id: randomUUID(),
            source: "arquivomate.ingestion",
            "detail-type": "DocumentStored",
            detail: { workspaceId, documentId },
          });
          bar.add(1);
        },
      );
      const p = bar.finish();
      let canaries: number | undefined;
      if (opts.canaries) {
        const { ensureCanaries } = await import("../../core/canaries/canaries.js");
        const made = await ensureCanaries(
          { dataKeys: await rt.dataKeys(), events: rt.events() },
          workspaceId,
          opts.canaries,
        );
        canaries = made.length;
      }
      out.line(`${opts.count} sample documents ingested into ${workspaceId}.`);
      for (const [k, n] of Object.entries(byKeyId)) out.fact(`wrapped under ${k}`, n);
      out.fact("artifacts per document", artifacts.join(", "));
      out.fact("content", `${bytes} bytes encrypted (kept in ${join(rt.home, "documents", workspaceId)})`);
      out.fact("rate", `${p.rate.toFixed(1)} documents/s over ${p.elapsedSeconds.toFixed(1)} s`);
      if (canaries !== undefined) out.fact("canary documents", canaries);
      out.result({
        ok: true,
        workspaceId,
        documents: opts.count,
        byKeyId,
        artifacts,
        bytes,
        seconds: Number(p.elapsedSeconds.toFixed(2)),
        rate: Number(p.rate.toFixed(1)),
        ...(canaries !== undefined ? { canaries } : {}),
      });
    },
  );
}
