/**
 * Progress of a long job (re-wrap, ingest, export): done / total, rate and ETA. The rate is measured over a sliding
 * window so the ETA follows the current speed, not the average since the start.
 */
export interface ProgressSnapshot {
  readonly done: number;
  readonly total: number;
  /** Items per second over the window (0 until two samples exist). */
  readonly rate: number;
  /** Seconds left at the current rate; undefined while the rate is unknown. */
  readonly etaSeconds: number | undefined;
  readonly elapsedSeconds: number;
}

export class ProgressTracker {
  private done = 0;
  private readonly samples: { at: number; done: number }[] = [];
  private readonly started: number;

  constructor(
    private total: number,
    private readonly now: () => number = Date.now,
    private readonly windowMs = 10_000,
  ) {
    this.started = now();
    this.samples.push({ at: this.started, done: 0 });
  }

  add(n: number): void {
    this.done += n;
    const at = this.now();
    this.samples.push({ at, done: this.done });
    while (this.samples.length > 2 && at - this.samples[0]!.at > this.windowMs) this.samples.shift();
  }

  /** The total may grow (documents ingested during a rotation) or shrink (deleted ones). */
  setTotal(total: number): void {
    this.total = total;
  }

  snapshot(): ProgressSnapshot {
    const first = this.samples[0]!;
    const last = this.samples.at(-1)!;
    const span = (last.at - first.at) / 1000;
    const rate = span > 0 ? (last.done - first.done) / span : 0;
    const left = Math.max(0, this.total - this.done);
    return {
      done: this.done,
      total: this.total,
      rate,
      etaSeconds: rate > 0 ? left / rate : left === 0 ? 0 : undefined,
      elapsedSeconds: (this.now() - this.started) / 1000,
    };
  }
}
