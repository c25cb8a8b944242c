/**
 * Captures the functions' structured log lines in this test process so a test can scan them (for secrets): import
 * it FIRST in a test file, before any handler module, so that Powertools loggers are created at DEBUG level. Lines
 * that are Powertools JSON logs are kept in `capturedLogLines` and not printed (they would drown the test output);
 * everything else passes through.
 */
process.env.POWERTOOLS_LOG_LEVEL = "DEBUG";
process.env.POWERTOOLS_DEV = "false";

export const capturedLogLines: string[] = [];

function intercept(stream: NodeJS.WriteStream): void {
  const original = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (typeof chunk === "string" && chunk.startsWith("{") && chunk.includes('"level"')) {
      capturedLogLines.push(chunk);
      const cb = rest.find((r) => typeof r === "function") as (() => void) | undefined;
      cb?.();
      return true;
    }
    return original(chunk, ...rest);
  }) as typeof stream.write;
}

intercept(process.stdout);
intercept(process.stderr);
