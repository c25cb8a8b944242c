/** Bounded retries with exponential backoff and full jitter (AWS architecture blog "Exponential Backoff And Jitter"). */
export interface RetryPolicy {
  /** Total attempts including the first; at least 1. */
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/** Delay before attempt `attempt + 1`, after `attempt` failures (attempt >= 1). `random` in [0, 1). */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

export const sleep = (ms: number): Promise<void> =>
  ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));

/** `retryTransient`'s default: 5 attempts, backing off from 50 ms up to 1 s. */
export const TRANSIENT_RETRY: RetryPolicy = { maxAttempts: 5, baseDelayMs: 50, maxDelayMs: 1000 };

/**
 * Runs `fn` again while it fails with a retryable error (`retryable === true`: the HSM or the event store busy for
 * a moment), up to the policy's attempts; any other error at once. Only for idempotent work: reads, or writes that
 * are conditional or carry their own idempotency.
 */
export async function retryTransient<T>(
  fn: () => Promise<T>,
  policy: RetryPolicy = TRANSIENT_RETRY,
  /** Narrows which retryable errors are retried here (the others are thrown for the caller's own handling). */
  also: (err: unknown) => boolean = () => true,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const retryable =
        typeof err === "object" && err !== null && (err as { retryable?: unknown }).retryable === true;
      if (!retryable || !also(err) || attempt >= policy.maxAttempts) throw err;
      await sleep(backoffDelay(policy, attempt));
    }
  }
}
