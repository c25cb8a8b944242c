/**
 * SoftHSM2, the local HSM: a token directory and config private to the project (or to one test run), never the
 * system token directory. Tokens are created on demand with `softhsm2-util --init-token`.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

const LIBRARY_CANDIDATES = [
  "/usr/lib/softhsm/libsofthsm2.so",
  "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/local/lib/softhsm/libsofthsm2.so",
];

export class SoftHsmSetupError extends Error {
  override name = "SoftHsmSetupError";
}

/** Path of the SoftHSM2 PKCS#11 library (override with AMK_SOFTHSM_LIBRARY). */
export function softHsmLibraryPath(): string {
  const fromEnv = process.env.AMK_SOFTHSM_LIBRARY;
  if (fromEnv) return fromEnv;
  const found = LIBRARY_CANDIDATES.find((p) => existsSync(p));
  if (!found) {
    throw new SoftHsmSetupError(
      "SoftHSM2 library not found; install it with: apt-get install -y softhsm2 (or run `npm run setup` as root)",
    );
  }
  return found;
}

export interface SoftHsmHome {
  /** Folder holding softhsm2.conf and tokens/. */
  readonly dir: string;
  /** Value for SOFTHSM2_CONF. */
  readonly configPath: string;
  readonly libraryPath: string;
}

export interface SoftHsmToken extends SoftHsmHome {
  readonly label: string;
  /** File (mode 0600) holding the user PIN: the PIN is read from a secret, never configured in plain text. */
  readonly pinFile: string;
}

/** Creates (or reuses) a private SoftHSM2 home: `<dir>/softhsm2.conf` pointing at `<dir>/tokens`. */
export async function ensureSoftHsmHome(dir: string): Promise<SoftHsmHome> {
  const abs = resolve(dir);
  const tokens = join(abs, "tokens");
  await mkdir(tokens, { recursive: true, mode: 0o700 });
  const configPath = join(abs, "softhsm2.conf");
  if (!existsSync(configPath)) {
    await writeFile(
      configPath,
      `# Private to ArquivoMate Keys; never the system token directory.\ndirectories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
      { mode: 0o600 },
    );
  }
  return { dir: abs, configPath, libraryPath: softHsmLibraryPath() };
}

/** Lists the labels of the initialised tokens of a SoftHSM home. */
export async function listTokenLabels(home: SoftHsmHome): Promise<string[]> {
  const { stdout } = await run("softhsm2-util", ["--show-slots"], {
    env: { ...process.env, SOFTHSM2_CONF: home.configPath },
  });
  return [...stdout.matchAll(/^\s*Label:\s*(.*?)\s*$/gm)].map((m) => m[1] ?? "").filter((l) => l.length > 0);
}

/**
 * Initialises a token with a fresh random user PIN and SO PIN (stored in 0600 files beside the config), or returns
 * the existing token of that label.
 */
export async function ensureToken(home: SoftHsmHome, label: string): Promise<SoftHsmToken> {
  const pinFile = join(home.dir, `${label}.pin`);
  const soPinFile = join(home.dir, `${label}.so-pin`);
  const labels = await listTokenLabels(home);
  if (!labels.includes(label)) {
    const pin = randomBytes(12).toString("hex");
    const soPin = randomBytes(12).toString("hex");
    await run(
      "softhsm2-util",
      ["--init-token", "--free", "--label", label, "--so-pin", soPin, "--pin", pin],
      { env: { ...process.env, SOFTHSM2_CONF: home.configPath } },
    ).catch((err: unknown) => {
      throw new SoftHsmSetupError(`softhsm2-util could not initialise token "${label}"`, { cause: err });
    });
    await writeFile(pinFile, pin, { mode: 0o600 });
    await writeFile(soPinFile, soPin, { mode: 0o600 });
    await chmod(pinFile, 0o600);
  } else if (!existsSync(pinFile)) {
    throw new SoftHsmSetupError(`token "${label}" exists but its PIN file ${pinFile} is missing`);
  }
  return { ...home, label, pinFile };
}

/** Reads a PIN file (trimmed). */
export async function readPinFile(path: string): Promise<string> {
  return (await readFile(path, "utf8")).trim();
}
