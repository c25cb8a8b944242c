import pkcs11js from "pkcs11js";
import { KeyStoreConfigError } from "../../keystore/errors.js";

/**
 * One loaded and initialised PKCS#11 library per path and process, shared by every key store on it (C_Initialize
 * and C_Finalize are per process). Reference counted: the last `release()` finalizes it.
 */
export interface Pkcs11Module {
  readonly pkcs11: pkcs11js.PKCS11;
  readonly libraryPath: string;
  release(): void;
}

const loaded = new Map<string, { pkcs11: pkcs11js.PKCS11; refs: number }>();

export function acquirePkcs11Module(libraryPath: string): Pkcs11Module {
  let entry = loaded.get(libraryPath);
  if (!entry) {
    const pkcs11 = new pkcs11js.PKCS11();
    try {
      pkcs11.load(libraryPath);
    } catch (cause) {
      throw new KeyStoreConfigError(`the PKCS#11 library could not be loaded from ${libraryPath}`, {
        cause,
        context: { libraryPath },
      });
    }
    try {
      pkcs11.C_Initialize();
    } catch (cause) {
      const code = (cause as { code?: number }).code;
      if (code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        throw new KeyStoreConfigError(`the PKCS#11 library at ${libraryPath} failed to initialise`, {
          cause,
          context: { libraryPath, ckr: code },
        });
      }
    }
    entry = { pkcs11, refs: 0 };
    loaded.set(libraryPath, entry);
  }
  entry.refs += 1;
  const held = entry;
  let released = false;
  return {
    pkcs11: held.pkcs11,
    libraryPath,
    release() {
      if (released) return;
      released = true;
      held.refs -= 1;
      if (held.refs === 0) {
        loaded.delete(libraryPath);
        try {
          held.pkcs11.C_Finalize();
        } catch {
          // already finalized
        }
        try {
          held.pkcs11.close();
        } catch {
          // already closed
        }
      }
    },
  };
}
