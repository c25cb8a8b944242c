import pkcs11js from "pkcs11js";
import {
  HsmOperationError,
  HsmUnavailableError,
  KeyIntegrityError,
  KeyNotFoundError,
  KeyOperationNotPermittedError,
  KeyStoreConfigError,
  KeyStoreError,
} from "../../keystore/errors.js";

/**
 * How the adapter reacts to a PKCS#11 return code:
 *  - session: the session or login is gone (closed, logged out, device removed): reopen and retry;
 *  - transient: the HSM failed or is busy: back off and retry;
 *  - stale-handle: a cached object handle no longer names an object: look the key up again and retry;
 *  - integrity / not-permitted / config / not-found / other: final, mapped to a domain error.
 */
export type CkrClass =
  "session" | "transient" | "stale-handle" | "integrity" | "not-permitted" | "config" | "not-found" | "other";

const names = new Map<number, string>();
for (const [k, v] of Object.entries(pkcs11js)) {
  if (k.startsWith("CKR_") && typeof v === "number" && !names.has(v)) names.set(v, k);
}

export function ckrName(code: number): string {
  return names.get(code) ?? `CKR_0x${code.toString(16).padStart(8, "0")}`;
}

const c = pkcs11js;
/** PKCS#11 2.40 code that pkcs11js does not export. */
const CKR_ACTION_PROHIBITED = 0x1b;
const SESSION = new Set([
  c.CKR_SESSION_HANDLE_INVALID,
  c.CKR_SESSION_CLOSED,
  c.CKR_USER_NOT_LOGGED_IN,
  c.CKR_DEVICE_REMOVED,
  c.CKR_TOKEN_NOT_PRESENT,
  c.CKR_OPERATION_ACTIVE,
  c.CKR_CRYPTOKI_NOT_INITIALIZED,
]);
const TRANSIENT = new Set([
  c.CKR_DEVICE_ERROR,
  c.CKR_DEVICE_MEMORY,
  c.CKR_FUNCTION_FAILED,
  c.CKR_FUNCTION_CANCELED,
  c.CKR_SESSION_COUNT,
  c.CKR_HOST_MEMORY,
]);
const STALE = new Set([
  c.CKR_OBJECT_HANDLE_INVALID,
  c.CKR_KEY_HANDLE_INVALID,
  c.CKR_WRAPPING_KEY_HANDLE_INVALID,
  c.CKR_UNWRAPPING_KEY_HANDLE_INVALID,
]);
const INTEGRITY = new Set([
  c.CKR_ENCRYPTED_DATA_INVALID,
  c.CKR_ENCRYPTED_DATA_LEN_RANGE,
  c.CKR_WRAPPED_KEY_INVALID,
  c.CKR_WRAPPED_KEY_LEN_RANGE,
  c.CKR_SIGNATURE_INVALID,
]);
const NOT_PERMITTED = new Set([
  c.CKR_KEY_UNEXTRACTABLE,
  c.CKR_KEY_FUNCTION_NOT_PERMITTED,
  c.CKR_KEY_NOT_WRAPPABLE,
  CKR_ACTION_PROHIBITED,
  c.CKR_ATTRIBUTE_SENSITIVE,
  c.CKR_TOKEN_WRITE_PROTECTED,
  c.CKR_SESSION_READ_ONLY,
]);
const CONFIG = new Set([
  c.CKR_PIN_INCORRECT,
  c.CKR_PIN_INVALID,
  c.CKR_PIN_LEN_RANGE,
  c.CKR_PIN_EXPIRED,
  c.CKR_PIN_LOCKED,
  c.CKR_SLOT_ID_INVALID,
  c.CKR_TOKEN_NOT_RECOGNIZED,
  c.CKR_USER_TYPE_INVALID,
  c.CKR_MECHANISM_INVALID,
]);

export interface ClassifyOptions {
  /**
   * The call decrypts or unwraps authenticated data: then CKR_GENERAL_ERROR means a failed tag check too
   * (SoftHSM answers a GCM tag mismatch with it, not with CKR_ENCRYPTED_DATA_INVALID).
   */
  readonly authenticatedDecrypt?: boolean;
}

export function pkcs11Code(err: unknown): number | undefined {
  if (
    err &&
    typeof err === "object" &&
    "code" in err &&
    typeof (err as { code: unknown }).code === "number"
  ) {
    const name = (err as { name?: unknown }).name;
    const msg = (err as { message?: unknown }).message;
    if (name === "Pkcs11Error" || (typeof msg === "string" && msg.includes("CKR_"))) {
      return (err as { code: number }).code;
    }
  }
  return undefined;
}

export function classifyCkr(code: number, opts: ClassifyOptions = {}): CkrClass {
  if (SESSION.has(code)) return "session";
  if (TRANSIENT.has(code)) return "transient";
  if (STALE.has(code)) return "stale-handle";
  if (INTEGRITY.has(code)) return "integrity";
  if (opts.authenticatedDecrypt && code === c.CKR_GENERAL_ERROR) return "integrity";
  if (NOT_PERMITTED.has(code)) return "not-permitted";
  if (CONFIG.has(code)) return "config";
  return "other";
}

/** Translates a PKCS#11 failure into the domain error for an operation. Domain errors pass through unchanged. */
export function toKeyStoreError(
  err: unknown,
  operation: string,
  context: Record<string, unknown>,
  opts: ClassifyOptions = {},
): KeyStoreError {
  if (err instanceof KeyStoreError) return err;
  const code = pkcs11Code(err);
  if (code === undefined) {
    return new HsmOperationError(`${operation} failed: ${(err as Error)?.message ?? String(err)}`, {
      cause: err,
      context: { operation, ...context },
    });
  }
  const ckr = ckrName(code);
  const ctx = { operation, ckr, ...context };
  switch (classifyCkr(code, opts)) {
    case "session":
    case "transient":
      return new HsmUnavailableError(`${operation}: the HSM is unavailable (${ckr}); retries exhausted`, {
        cause: err,
        context: ctx,
      });
    case "stale-handle":
    case "not-found":
      return new KeyNotFoundError(`${operation}: the key no longer exists in the HSM (${ckr})`, {
        cause: err,
        context: ctx,
      });
    case "integrity":
      return new KeyIntegrityError(
        `${operation}: wrong key, wrong associated data, or tampered data (${ckr})`,
        {
          cause: err,
          context: ctx,
        },
      );
    case "not-permitted":
      return new KeyOperationNotPermittedError(`${operation}: the HSM does not permit this (${ckr})`, {
        cause: err,
        context: ctx,
      });
    case "config":
      return new KeyStoreConfigError(`${operation}: check the HSM configuration, PIN and token (${ckr})`, {
        cause: err,
        context: ctx,
      });
    default:
      return new HsmOperationError(`${operation}: the HSM returned ${ckr}`, { cause: err, context: ctx });
  }
}
