import { AmkError } from "../shared/errors.js";

/** Base of every key-store error. */
export abstract class KeyStoreError extends AmkError {}

/** The master key version (or transport key) does not exist in the HSM. */
export class KeyNotFoundError extends KeyStoreError {
  readonly code: string = "KEY_NOT_FOUND";
}

/**
 * A session object (a transport key, a scratch or drill-slot key) went with the HSM session that held it (the
 * session was dropped or the HSM logged the application out). The object is gone, nothing else: loading it again
 * (a new transport key, the operation run again from its start) works, so it is retryable.
 */
export class SessionKeyLostError extends KeyNotFoundError {
  override readonly code: string = "SESSION_KEY_LOST";
  override readonly retryable = true;
}

/** A master key version with that id already exists; nothing was created. */
export class KeyAlreadyExistsError extends KeyStoreError {
  readonly code = "KEY_ALREADY_EXISTS";
}

/**
 * Authenticated decryption or unwrap failed: wrong key version, wrong associated data, or tampered data. The HSMs
 * cannot tell these apart, and neither do we; no plaintext was produced.
 */
export class KeyIntegrityError extends KeyStoreError {
  readonly code = "WRONG_KEY_OR_TAMPERED";
}

/** The HSM refused the operation by policy (non-extractable key, key not allowed for that use, not logged in). */
export class KeyOperationNotPermittedError extends KeyStoreError {
  readonly code = "NOT_PERMITTED";
}

/** The HSM is unreachable, busy or failed transiently; retrying later may succeed. */
export class HsmUnavailableError extends KeyStoreError {
  readonly code = "HSM_UNAVAILABLE";
  override readonly retryable = true;
}

/** The key store is misconfigured: library path, token label or PIN. Fix the configuration; retrying won't help. */
export class KeyStoreConfigError extends KeyStoreError {
  readonly code = "KEY_STORE_CONFIG";
}

/** The key store was closed; no further operations are accepted. */
export class KeyStoreClosedError extends KeyStoreError {
  readonly code = "KEY_STORE_CLOSED";
}

/** An HSM failure that fits no other category (carries the PKCS#11 return code in its context). */
export class HsmOperationError extends KeyStoreError {
  readonly code = "HSM_OPERATION_FAILED";
}
