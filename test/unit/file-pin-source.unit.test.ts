/**
 * The file PIN source: reads a file only its owner can access, trims it, and refuses anything else with a typed
 * error that names the file and never its content.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { inspect } from "node:util";
import {
  PinFileError,
  PinFileFormatError,
  PinFileInsecureError,
  PinFileNotFoundError,
  PinFileUnreadableError,
  createFilePinSource,
} from "../../core/adapters/file-pin-source.js";

const dir = mkdtempSync(join(tmpdir(), "amk-pin-file-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const PIN = "crypto-user:File-PIN-9z";
function pinFile(name: string, content: string, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  chmodSync(path, mode);
  return path;
}

async function readError(path: string): Promise<PinFileError> {
  try {
    await createFilePinSource(path)();
  } catch (err) {
    assert.ok(err instanceof PinFileError, `expected a PinFileError, got ${inspect(err)}`);
    assert.equal(err.path, path);
    assert.equal(err.context.path, path);
    assert.ok(err.message.includes(path), "the message names the file");
    for (const text of [err.message, JSON.stringify(err), inspect(err, { depth: 8 })]) {
      assert.ok(!text.includes("File-PIN-9z"), `error text contains the PIN: ${text}`);
    }
    return err;
  }
  assert.fail(`reading ${path} did not fail`);
}

describe("file PIN source", { skip: process.platform === "win32" ? "POSIX modes" : false }, () => {
  it("reads and trims a 0600 file", async () => {
    assert.equal(await createFilePinSource(pinFile("ok-600", `${PIN}\n`, 0o600))(), PIN);
  });

  it("reads a 0400 file", async () => {
    assert.equal(await createFilePinSource(pinFile("ok-400", `  ${PIN}  `, 0o400))(), PIN);
  });

  it("reads the file again on every call", async () => {
    const path = pinFile("changes", PIN, 0o600);
    const source = createFilePinSource(path);
    assert.equal(await source(), PIN);
    writeFileSync(path, "crypto-user:Rotated");
    assert.equal(await source(), "crypto-user:Rotated");
  });

  for (const mode of [0o644, 0o640, 0o604, 0o620, 0o660, 0o606]) {
    const octal = `0${mode.toString(8)}`;
    it(`refuses a file with mode ${octal} (group or others have access)`, async () => {
      const err = await readError(pinFile(`open-${octal}`, PIN, mode));
      assert.ok(err instanceof PinFileInsecureError);
      assert.equal(err.code, "PIN_FILE_INSECURE");
      assert.equal(err.context.mode, octal);
      assert.match(err.message, new RegExp(`mode ${octal}.*chmod 600`));
    });
  }

  it("reports a missing file", async () => {
    const err = await readError(join(dir, "absent"));
    assert.ok(err instanceof PinFileNotFoundError);
    assert.equal(err.code, "PIN_FILE_NOT_FOUND");
  });

  it("refuses an empty file", async () => {
    const err = await readError(pinFile("empty", " \n", 0o600));
    assert.ok(err instanceof PinFileFormatError);
    assert.equal(err.code, "PIN_FILE_FORMAT");
  });

  it("refuses a directory", async () => {
    const path = join(dir, "a-directory");
    mkdirSync(path, { mode: 0o700 });
    const err = await readError(path);
    assert.ok(err instanceof PinFileUnreadableError);
    assert.match(err.message, /not a regular file/);
  });

  it("refuses an empty path when created", () => {
    assert.throws(() => createFilePinSource(""), PinFileUnreadableError);
  });
});
