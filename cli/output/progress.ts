/**
 * Progress output: a bar with rate and ETA on a terminal (redrawn in place), plain lines when not a terminal (logs,
 * CI), at most one every `everyMs`.
 */
import { ProgressTracker, type ProgressSnapshot } from "../../core/rotation/progress.js";

const duration = (s: number | undefined): string => {
  if (s === undefined || !Number.isFinite(s)) return "--:--";
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h > 0
    ? `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`
    : `${m}:${String(sec).padStart(2, "0")}`;
};

export function formatProgress(
  label: string,
  p: ProgressSnapshot,
  options: { tty: boolean; width?: number },
): string {
  const pct = p.total > 0 ? Math.min(1, p.done / p.total) : 1;
  const facts = `${p.done}/${p.total} ${(pct * 100).toFixed(1)}% ${p.rate.toFixed(1)}/s ETA ${duration(p.etaSeconds)}`;
  if (!options.tty) return `${label}: ${facts}`;
  const width = options.width ?? 30;
  const filled = Math.round(pct * width);
  return `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${facts}`;
}

export class ProgressPrinter {
  private last = Number.NEGATIVE_INFINITY;
  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly everyMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  update(p: ProgressSnapshot, force = false): void {
    const at = this.now();
    if (!force && at - this.last < this.everyMs) return;
    this.last = at;
    const tty = Boolean(this.stream.isTTY);
    const line = formatProgress(this.label, p, { tty });
    this.stream.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  finish(p: ProgressSnapshot): void {
    this.update(p, true);
    if (this.stream.isTTY) this.stream.write("\n");
  }
}

/**
 * A progress bar for one long job (ingest, re-wrap, decrypt-all): counts with a `ProgressTracker` (rate over a
 * sliding window, ETA) and prints with a `ProgressPrinter` on stderr: redrawn in place on a terminal (every 200 ms),
 * a plain line every 2 s otherwise, and one final line.
 */
export class ProgressBar {
  private readonly tracker: ProgressTracker;
  private readonly printer: ProgressPrinter;
  private finished = false;

  constructor(
    readonly label: string,
    total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.tracker = new ProgressTracker(total);
    this.printer = new ProgressPrinter(label, stream, stream.isTTY ? 200 : 2000);
  }

  add(n = 1): void {
    this.tracker.add(n);
    this.printer.update(this.tracker.snapshot());
  }

  setTotal(total: number): void {
    this.tracker.setTotal(total);
  }

  snapshot(): ProgressSnapshot {
    return this.tracker.snapshot();
  }

  /** Prints the final state once (a newline after the bar on a terminal). */
  finish(): ProgressSnapshot {
    const s = this.tracker.snapshot();
    if (!this.finished) {
      this.finished = true;
      this.printer.finish(s);
    }
    return s;
  }
}
