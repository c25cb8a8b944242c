/**
 * Toy workflow, Catch path: records why a batch failed (the caught error's name and its Lambda-style cause) and
 * returns what it recorded. Records are kept in memory for the tests to inspect.
 */
export interface RecordFailureEvent {
  readonly batchId: string;
  readonly failure: { readonly Error: string; readonly Cause: string };
}

export interface FailureRecord {
  readonly batchId: string;
  readonly errorName: string;
  readonly message: string;
}

export const recorded: FailureRecord[] = [];

export const handler = async (event: RecordFailureEvent): Promise<FailureRecord> => {
  let message = event.failure.Cause;
  try {
    const cause = JSON.parse(event.failure.Cause) as { errorMessage?: unknown };
    if (typeof cause.errorMessage === "string") message = cause.errorMessage;
  } catch {
    // A cause that is not Lambda's JSON is recorded as it is.
  }
  const record = { batchId: event.batchId, errorName: event.failure.Error, message };
  recorded.push(record);
  return record;
};
