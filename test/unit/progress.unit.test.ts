import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatProgress, ProgressPrinter } from "../../cli/output/progress.js";
import { ProgressTracker } from "../../core/rotation/progress.js";

describe("progress", () => {
  it("measures the rate over a sliding window and derives the ETA", () => {
    let t = 0;
    const p = new ProgressTracker(1000, () => t, 10_000);
    assert.equal(p.snapshot().etaSeconds, undefined);
    for (let i = 0; i < 10; i++) {
      t += 1000;
      p.add(10);
    }
    let s = p.snapshot();
    assert.equal(s.done, 100);
    assert.equal(s.rate, 10);
    assert.equal(s.etaSeconds, 90);
    // It speeds up: the window forgets the slow start.
    for (let i = 0; i < 20; i++) {
      t += 1000;
      p.add(40);
    }
    s = p.snapshot();
    assert.ok(Math.abs(s.rate - 40) < 0.01, String(s.rate));
    assert.equal(s.etaSeconds, (1000 - 900) / s.rate);
    p.setTotal(900);
    assert.equal(p.snapshot().etaSeconds, 0);
  });

  it("prints a bar on a terminal and plain lines otherwise, throttled", () => {
    const snap = { done: 250, total: 1000, rate: 12.5, etaSeconds: 60, elapsedSeconds: 20 };
    assert.equal(formatProgress("re-wrap", snap, { tty: false }), "re-wrap: 250/1000 25.0% 12.5/s ETA 1:00");
    assert.equal(
      formatProgress("re-wrap", snap, { tty: true, width: 8 }),
      "re-wrap [##------] 250/1000 25.0% 12.5/s ETA 1:00",
    );
    const lines: string[] = [];
    let t = 0;
    const out = { isTTY: false, write: (s: string) => lines.push(s) } as unknown as NodeJS.WriteStream;
    const printer = new ProgressPrinter("x", out, 1000, () => t);
    printer.update(snap);
    t = 500;
    printer.update(snap);
    t = 1500;
    printer.update(snap);
    printer.finish(snap);
    assert.equal(lines.length, 3);
    assert.ok(lines.every((l) => l.endsWith("\n") && !l.includes("\r")));
  });
});
