/**
 * What commands print: facts for people on stdout, or one JSON document with `--json` (then nothing else goes to
 * stdout: progress and prompts go to stderr). Nothing here ever receives a secret to print.
 */
/** Set once a command printed its JSON result: an error after it must not print a second document. */
export const emitted = { result: false };

export class Output {
  constructor(
    readonly json: boolean,
    private readonly stdout: NodeJS.WritableStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {}

  /** A line for people (suppressed with --json). */
  line(text = ""): void {
    if (!this.json) this.stdout.write(`${text}\n`);
  }

  /** An aligned `key  value` fact (suppressed with --json). */
  fact(key: string, value: string | number | boolean | undefined): void {
    if (!this.json) this.stdout.write(`  ${key.padEnd(22)} ${value === undefined ? "-" : String(value)}\n`);
  }

  /** A table for people (suppressed with --json). */
  table(headers: readonly string[], rows: readonly (readonly (string | number | undefined)[])[]): void {
    if (this.json) return;
    const cells = rows.map((r) => r.map((c) => (c === undefined ? "-" : String(c))));
    const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? "").length)));
    const fmt = (r: readonly string[]) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd();
    this.stdout.write(`  ${fmt(headers)}\n`);
    this.stdout.write(`  ${fmt(widths.map((w) => "-".repeat(w)))}\n`);
    for (const r of cells) this.stdout.write(`  ${fmt(r)}\n`);
  }

  /** The command's result: printed as JSON with --json, else nothing (the human lines were printed already). */
  result(value: unknown): void {
    if (this.json) {
      emitted.result = true;
      this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    }
  }

  /** Progress and notes for people, on stderr (kept with --json, which owns stdout). */
  note(text: string): void {
    // On a terminal a progress bar may be drawn on the current line: start a clean one (the bar redraws below).
    this.stderr.write(this.stderr.isTTY ? `\r\x1b[K${text}\n` : `${text}\n`);
  }

  get errorStream(): NodeJS.WriteStream {
    return this.stderr;
  }
}
