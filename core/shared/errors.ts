/**
 * Base of every domain error. Each module declares its own subclasses (in its `errors.ts`), with a stable `code`,
 * a `context` of non-secret facts (ids, versions, operation names: never key material, passphrases or codes) and
 * the original `cause` kept for operators.
 */
export interface AmkErrorOptions {
  readonly cause?: unknown;
  readonly context?: Readonly<Record<string, unknown>>;
}

export abstract class AmkError extends Error {
  /** Stable, machine-readable code, e.g. `KEY_NOT_FOUND`. */
  abstract readonly code: string;
  /** True when retrying the same call later may succeed. */
  readonly retryable: boolean = false;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(message: string, options: AmkErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.context = options.context ?? {};
  }

  /** A safe, serialisable view (no cause chain, no stack): for responses and logs. */
  toJSON(): {
    name: string;
    code: string;
    message: string;
    retryable: boolean;
    context: Record<string, unknown>;
  } {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      retryable: this.retryable,
      context: { ...this.context },
    };
  }
}

/** Input that does not meet a use case's or port's preconditions. Nothing was changed. */
export class InvalidInputError extends AmkError {
  readonly code = "INVALID_INPUT";
}
