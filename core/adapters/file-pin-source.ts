/**
 * The HSM PIN from a local file (development, CI, the local story): a `PinSource` (`() => Promise<string>`) that
 * reads the file on every call and trims surrounding whitespace.
 *
 * The file must be a regular file that only its owner can access (mode 0600 or 0400): a file that group or others
 * may read (or write) is refused with `PinFileInsecureError` before its content is read. The check is made on the
 * opened file, so the file that is checked is the file that is read. Errors name the path, never the content.
 */
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { AmkError } from "../shared/errors.js";

/** Base of every error reading the PIN file; `context.path` names the file. */
export abstract class PinFileError extends AmkError {
  readonly path: string;

  constructor(message: string, path: string, context: Record<string, unknown> = {}, cause?: unknown) {
    super(message, { context: { path, ...context }, ...(cause === undefined ? {} : { cause }) });
    this.path = path;
  }
}

/** No file at that path. */
export class PinFileNotFoundError extends PinFileError {
  readonly code = "PIN_FILE_NOT_FOUND";
}

/** Group or others have access to the file: refused without reading it. `chmod 600` it. */
export class PinFileInsecureError extends PinFileError {
  readonly code = "PIN_FILE_INSECURE";
}

/** The path is not a readable regular file (a directory, a device, no read permission for this process). */
export class PinFileUnreadableError extends PinFileError {
  readonly code = "PIN_FILE_UNREADABLE";
}

/** The file is empty (or only whitespace). */
export class PinFileFormatError extends PinFileError {
  readonly code = "PIN_FILE_FORMAT";
}

const GROUP_OTHER_BITS = 0o077;
const MAX_PIN_FILE_BYTES = 4096;

export function createFilePinSource(path: string): () => Promise<string> {
  if (typeof path !== "string" || path === "") {
    throw new PinFileUnreadableError(
      "createFilePinSource: the PIN file path must be a non-empty string",
      String(path),
    );
  }
  return async (): Promise<string> => {
    let handle;
    try {
      // Non-blocking, so that a FIFO at that path fails the regular-file check instead of hanging the open.
      handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    } catch (err) {
      throw fsError(err, path);
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) {
        throw new PinFileUnreadableError(`PIN file "${path}" is not a regular file`, path);
      }
      const mode = stat.mode & 0o777;
      if (process.platform !== "win32" && (mode & GROUP_OTHER_BITS) !== 0) {
        const octal = `0${mode.toString(8).padStart(3, "0")}`;
        throw new PinFileInsecureError(
          `PIN file "${path}" is accessible by group or others (mode ${octal}); restrict it to its owner: chmod 600`,
          path,
          { mode: octal },
        );
      }
      if (stat.size > MAX_PIN_FILE_BYTES) {
        throw new PinFileFormatError(`PIN file "${path}" is larger than ${MAX_PIN_FILE_BYTES} bytes`, path, {
          size: stat.size,
        });
      }
      let pin: string;
      try {
        pin = (await handle.readFile({ encoding: "utf8" })).trim();
      } catch (err) {
        throw fsError(err, path);
      }
      if (pin === "") throw new PinFileFormatError(`PIN file "${path}" is empty`, path);
      return pin;
    } finally {
      await handle.close();
    }
  };
}

function fsError(err: unknown, path: string): PinFileError {
  const code = (err as { code?: unknown } | null)?.code;
  const facts = typeof code === "string" ? { errorCode: code } : {};
  if (code === "ENOENT")
    return new PinFileNotFoundError(`PIN file "${path}" does not exist`, path, facts, err);
  return new PinFileUnreadableError(
    `PIN file "${path}" cannot be read (${typeof code === "string" ? code : "unknown error"})`,
    path,
    facts,
    err,
  );
}
