/**
 * Errors of the toy workflow's handlers. As in the real functions, `name` is the class name: Lambda reports it as
 * the `errorType`, which is what a state's Retry / Catch `ErrorEquals` matches.
 */
export class FlakyUpstreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FlakyUpstreamError";
  }
}

export class PoisonItemError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PoisonItemError";
  }
}
