/**
 * `amk token issue|verify`: access tokens of a workspace (core/access): HS256 JWTs carrying the workspace's token
 * epoch; a recovery raises the epoch, and every token issued before is rejected. The token is a credential: `issue`
 * writes it to a file (mode 0600) or, on request, to stdout; `verify` reads it like a secret (prompt, fd, env or
 * file), never as an argument.
 */
import { readFileSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { AccessTokenRejectedError } from "../../core/access/errors.js";
import {
  openRuntime,
  outputOf,
  positiveInt,
  withExamples,
  withExitCodes,
  withJson,
} from "../runtime/command.js";
import { CheckFailedError, UsageError } from "../runtime/errors.js";
import { addSecretOptions, readSecret } from "../runtime/secrets.js";

export function register(program: Command): void {
  const token = program.command("token").description("issue and verify a workspace's access tokens");

  withExitCodes(
    withExamples(
      withJson(
        token
          .command("issue")
          .description("issue an access token carrying the workspace's current token epoch")
          .argument("<workspace>", "workspace id")
          .requiredOption("--subject <id>", "who the token is for (a user or service id)")
          .option("--ttl <seconds>", "lifetime (default 900, at most 43200)", positiveInt("--ttl", 43_200))
          .option("--scope <scope...>", "scopes")
          .option("--out <file>", "write the token to this new file (mode 0600)")
          .option(
            "--print",
            "print the token on stdout (it is a credential: mind your terminal's scrollback)",
          ),
      ),
      [
        "amk token issue acme --subject alice --out alice.jwt",
        "amk token issue acme --subject svc --print --json",
      ],
    ),
    [0, 2, 3, 5],
  ).action(
    async (
      workspaceId: string,
      opts: {
        subject: string;
        ttl?: number;
        scope?: string[];
        out?: string;
        print?: boolean;
        json?: boolean;
      },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      if (!opts.out && !opts.print) throw new UsageError("say where the token goes: --out <file> or --print");
      const rt = await openRuntime(cmd);
      await rt.requireWorkspace(workspaceId);
      const issued = await (
        await rt.tokens()
      ).issue({
        workspaceId,
        subject: opts.subject,
        ...(opts.ttl ? { ttlSeconds: opts.ttl } : {}),
        ...(opts.scope ? { scopes: opts.scope } : {}),
      });
      if (opts.out) {
        try {
          writeFileSync(opts.out, `${issued.token}\n`, { mode: 0o600, flag: "wx" });
        } catch (err) {
          if ((err as { code?: string }).code === "EEXIST")
            throw new UsageError(`${opts.out} exists; choose a new file`);
          throw err;
        }
      }
      out.line(
        `Access token for ${opts.subject} on ${workspaceId} issued${opts.out ? `, written to ${opts.out} (mode 0600)` : ""}.`,
      );
      out.fact("token id", issued.tokenId);
      out.fact("token epoch", issued.epoch);
      out.fact("expires", issued.expiresAt);
      if (opts.print && !opts.json) out.line(issued.token);
      out.result({
        ok: true,
        workspaceId,
        subject: opts.subject,
        tokenId: issued.tokenId,
        epoch: issued.epoch,
        expiresAt: issued.expiresAt,
        ...(opts.out ? { file: opts.out } : {}),
        ...(opts.print ? { token: issued.token } : {}),
      });
    },
  );

  withExitCodes(
    withExamples(
      withJson(
        addSecretOptions(
          token
            .command("verify")
            .description(
              "verify an access token for a workspace: signature, lifetime, audience, workspace, and that its epoch " +
                "is current (tokens issued before a recovery are rejected)",
            )
            .argument("<workspace>", "workspace id")
            .option("--token-file <file>", "read the token from a file"),
          "token",
          "access token",
        ),
      ),
      ["amk token verify acme --token-file alice.jwt", "amk token verify acme --token-env TOKEN --json"],
    ),
    [0, 1, 2, 3],
  ).action(
    async (
      workspaceId: string,
      opts: { tokenFile?: string; tokenFd?: number; tokenEnv?: string; json?: boolean },
      cmd: Command,
    ) => {
      const out = outputOf(opts);
      const text = opts.tokenFile
        ? readFileSync(opts.tokenFile, "utf8").trim()
        : (
            await readSecret({
              what: "access token",
              source: { fd: opts.tokenFd, env: opts.tokenEnv },
              prompt: "Access token: ",
              flag: "token",
            })
          ).trim();
      const rt = await openRuntime(cmd);
      try {
        const claims = await (await rt.tokens()).verify(text, { workspaceId });
        out.line(
          `Token accepted: ${claims.sub} on ${claims.ws}, epoch ${claims.ep}, expires ${new Date(claims.exp * 1000).toISOString()}.`,
        );
        out.result({
          ok: true,
          workspaceId,
          subject: claims.sub,
          epoch: claims.ep,
          tokenId: claims.jti,
          expiresAt: new Date(claims.exp * 1000).toISOString(),
        });
      } catch (err) {
        if (!(err instanceof AccessTokenRejectedError)) throw err;
        out.line(`Token REJECTED: ${err.reason} (${err.message}).`);
        out.result({ ok: false, workspaceId, rejected: true, reason: err.reason, message: err.message });
        throw new CheckFailedError(`access token rejected: ${err.reason}`, "ACCESS_TOKEN_REJECTED");
      }
    },
  );
}
