/**
 * A SoftHSM2 home private to one test file: its own token directory (in a temp folder, removed afterwards) and its
 * own tokens, so that runs never see each other's keys. SOFTHSM2_CONF is set for this process before the PKCS#11
 * library is initialised (SoftHSM reads it at C_Initialize).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureSoftHsmHome, ensureToken, readPinFile, type SoftHsmToken } from "../../cli/local/softhsm.js";
import type { Pkcs11KeyStoreOptions } from "../../core/adapters/pkcs11/pkcs11-key-store.js";

export interface TestHsm {
  readonly dir: string;
  readonly tokens: SoftHsmToken[];
  options(token: SoftHsmToken, extra?: Partial<Pkcs11KeyStoreOptions["config"]>): Pkcs11KeyStoreOptions;
  cleanup(): Promise<void>;
}

export async function createTestHsm(labels: string[]): Promise<TestHsm> {
  const dir = await mkdtemp(join(tmpdir(), "amk-hsm-"));
  const home = await ensureSoftHsmHome(dir);
  process.env.SOFTHSM2_CONF = home.configPath;
  const tokens: SoftHsmToken[] = [];
  for (const label of labels) tokens.push(await ensureToken(home, label));
  return {
    dir,
    tokens,
    options: (token, extra = {}) => ({
      config: { libraryPath: token.libraryPath, tokenLabel: token.label, poolSize: 4, ...extra },
      pin: () => readPinFile(token.pinFile),
    }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
