/**
 * How the CLI reads secrets (passphrases, TOTP codes, access tokens): from a prompt without echo on a terminal, or,
 * for automation and only when a flag names the source, from a file descriptor (`--passphrase-fd 3`, one line per
 * secret, in the order the command asks) or an environment variable (`--passphrase-env NAME`; the variable is
 * removed from this process's environment once read, so no child inherits it). Never from a plain argument: it
 * would land in the shell history and the process list.
 *
 * Bytes the CLI reads are zeroized once decoded. The use cases take strings, which JavaScript cannot wipe: a
 * secret string lives until the garbage collector reclaims it, in this short-lived process only.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { zeroize } from "../../core/shared/bytes.js";
import { InterruptedError, UsageError } from "./errors.js";

export interface SecretSource {
  /** A file descriptor to read a line from (`--x-fd`). */
  readonly fd?: number | undefined;
  /** An environment variable to read (`--x-env`). */
  readonly env?: string | undefined;
}

/** Lines read from each file descriptor, handed out in order (a descriptor is read to its end once). */
const fdLines = new Map<number, string[]>();

function parseFd(value: string): number {
  if (!/^\d{1,4}$/.test(value))
    throw new UsageError(`not a file descriptor number: ${JSON.stringify(value)}`);
  const fd = Number(value);
  if (fd === 1 || fd === 2) throw new UsageError("file descriptors 1 and 2 are outputs; use 0 (stdin) or 3+");
  return fd;
}

function parseEnvName(value: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(value))
    throw new UsageError(`not an environment variable name: ${JSON.stringify(value)}`);
  return value;
}

/** Adds `--<name>-fd <n>` and `--<name>-env <NAME>` to a command. */
export function addSecretOptions(cmd: Command, name: string, what: string): Command {
  return cmd
    .option(
      `--${name}-fd <n>`,
      `automation: read the ${what} from file descriptor <n> (a line; 0 = stdin)`,
      parseFd,
    )
    .option(
      `--${name}-env <NAME>`,
      `automation: read the ${what} from environment variable NAME (removed once read)`,
      parseEnvName,
    );
}

function readFdLine(fd: number, what: string): string {
  let lines = fdLines.get(fd);
  if (!lines) {
    let buf: Buffer;
    try {
      buf = readFileSync(fd);
    } catch (err) {
      throw new UsageError(
        `cannot read the ${what} from file descriptor ${fd}: ${(err as { code?: string }).code ?? "error"}`,
        'open it in the shell, e.g. `3< file` or `3<<<"$VALUE"`',
      );
    }
    try {
      lines = buf.toString("utf8").split(/\r?\n/);
    } finally {
      zeroize(buf);
    }
    fdLines.set(fd, lines);
  }
  const line = lines.shift();
  if (line === undefined || (line === "" && lines.every((l) => l === ""))) {
    throw new UsageError(`file descriptor ${fd} has no line left for the ${what}`);
  }
  return line;
}

function readEnv(name: string, what: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new UsageError(`environment variable ${name} (the ${what}) is not set`);
  }
  delete process.env[name];
  return value.replace(/\r?\n$/, "");
}

export function interactive(): boolean {
  return Boolean(process.stdin.isTTY);
}

/**
 * Reads one line from the terminal without echo. Backspace edits, Enter ends, Ctrl-C interrupts (exit 130), Ctrl-D
 * on an empty line ends the input. `signal` cancels the prompt (resolves undefined).
 */
export function promptHidden(question: string, signal?: AbortSignal): Promise<string | undefined> {
  const input = process.stdin;
  const out = process.stderr;
  if (!input.isTTY) {
    return Promise.reject(new UsageError("no terminal to prompt on"));
  }
  return new Promise((resolvePrompt, reject) => {
    let buf = Buffer.alloc(256);
    let len = 0;
    out.write(question);
    input.setRawMode(true);
    input.resume();
    const done = (value: string | undefined, err?: Error): void => {
      input.off("data", onData);
      signal?.removeEventListener("abort", onAbort);
      input.setRawMode(false);
      input.pause();
      out.write("\n");
      zeroize(buf);
      if (err) reject(err);
      else resolvePrompt(value);
    };
    const onAbort = (): void => done(undefined);
    const onData = (chunk: Buffer): void => {
      try {
        for (const b of chunk) {
          if (b === 0x0d || b === 0x0a) {
            const text = buf.subarray(0, len).toString("utf8");
            done(text);
            return;
          }
          if (b === 0x03) {
            done(undefined, new InterruptedError());
            return;
          }
          if (b === 0x04) {
            if (len === 0) {
              done(undefined, new UsageError("no input"));
              return;
            }
            continue;
          }
          if (b === 0x7f || b === 0x08) {
            // Remove one UTF-8 character: continuation bytes (10xxxxxx), then the lead byte.
            while (len > 0 && (buf[len - 1]! & 0xc0) === 0x80) len -= 1;
            if (len > 0) len -= 1;
            continue;
          }
          if (b < 0x20) continue; // other control keys
          if (len === buf.length) {
            const bigger = Buffer.alloc(buf.length * 2);
            buf.copy(bigger, 0, 0, len);
            zeroize(buf);
            buf = bigger;
          }
          buf[len++] = b;
        }
      } finally {
        zeroize(chunk);
      }
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    input.on("data", onData);
  });
}

/**
 * Reads a secret from the source its flags name, else from a prompt (a terminal is required). With `confirm`, the
 * prompt asks twice and both must match (not for the fd/env sources: automation gives it once).
 */
export async function readSecret(options: {
  what: string;
  source: SecretSource;
  prompt: string;
  confirm?: string;
  flag: string;
  signal?: AbortSignal;
}): Promise<string> {
  const { what, source } = options;
  if (source.fd !== undefined && source.env !== undefined) {
    throw new UsageError(`give the ${what} by one way only: --${options.flag}-fd or --${options.flag}-env`);
  }
  if (source.fd !== undefined) return readFdLine(source.fd, what);
  if (source.env !== undefined) return readEnv(source.env, what);
  if (!interactive()) {
    throw new UsageError(
      `no terminal to ask for the ${what}`,
      `pass --${options.flag}-fd <n> or --${options.flag}-env <NAME> (never the ${what} itself as an argument)`,
    );
  }
  const first = await promptHidden(options.prompt, options.signal);
  if (first === undefined) throw new InterruptedError();
  if (options.confirm) {
    const second = await promptHidden(options.confirm, options.signal);
    if (second !== first) throw new UsageError(`the two ${what}s differ`);
  }
  return first;
}

/** A TOTP code: 6-8 digits (spaces removed). */
export async function readCode(source: SecretSource, signal?: AbortSignal): Promise<string> {
  const raw = await readSecret({
    what: "TOTP code",
    source,
    prompt: "TOTP code (from your authenticator): ",
    flag: "code",
    ...(signal ? { signal } : {}),
  });
  const code = raw.replace(/\s+/g, "");
  if (!/^\d{6,8}$/.test(code)) throw new UsageError("a TOTP code is 6 to 8 digits");
  return code;
}

export async function readPassphrase(source: SecretSource, signal?: AbortSignal): Promise<string> {
  return readSecret({
    what: "passphrase",
    source,
    prompt: "Kit passphrase: ",
    flag: "passphrase",
    ...(signal ? { signal } : {}),
  });
}
