import { AmkError, InvalidInputError } from "../shared/errors.js";

/**
 * Kit errors name the check that failed (`check`, see docs/kit-format.md section 6), so an operator knows whether a
 * kit is damaged, forged, of another version, or simply opened with the wrong secret.
 */
export abstract class KitError extends AmkError {
  readonly check: string;
  constructor(
    message: string,
    check: string,
    options: { cause?: unknown; context?: Record<string, unknown> } = {},
  ) {
    super(message, { ...options, context: { check, ...options.context } });
    this.check = check;
  }
}

/** Not a kit, or a kit whose structure, header or slot fields are malformed (`magic`, `structure`, `header`, `slot`, `armour`). */
export class KitHeaderError extends KitError {
  readonly code = "KIT_HEADER";
}

/** A kit version or algorithm this reader does not implement (`version`, `algorithms`). */
export class KitUnsupportedVersionError extends KitError {
  readonly code = "KIT_UNSUPPORTED_VERSION";
}

/** A checksum or authentication tag does not match: the kit was changed (`section-checksum`, `slot`, `body`, `body-content`, `master-key`). */
export class KitIntegrityError extends KitError {
  readonly code = "KIT_INTEGRITY";
}

/** The passphrase does not open the administrator's identity (the factor did). */
export class KitWrongPassphraseError extends KitError {
  readonly code = "KIT_WRONG_PASSPHRASE";
}

/** The second factor does not open the administrator's identity (wrong token response, or no released factor key). */
export class KitWrongFactorError extends KitError {
  readonly code = "KIT_WRONG_FACTOR";
}

/** The kit has no slot for that administrator. */
export class KitSlotNotFoundError extends KitError {
  readonly code = "KIT_SLOT_NOT_FOUND";
}

/** A passphrase that the policy refuses; the message says why (never the passphrase). */
export class WeakPassphraseError extends InvalidInputError {}

/** The workspace is not ready for what was asked (no master key or drill key yet, an administrator not enrolled). */
export class KitStateError extends AmkError {
  readonly code = "KIT_STATE";
}
