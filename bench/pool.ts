import { performance } from "node:perf_hooks";

/** Runs `fn` over 0..n-1 with `concurrency` workers; returns the wall-clock seconds. */
export async function pool(
  n: number,
  concurrency: number,
  fn: (i: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      for (let i = next++; i < n; i = next++) await fn(i);
    }),
  );
  return (performance.now() - t0) / 1000;
}
