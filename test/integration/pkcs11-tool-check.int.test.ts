/**
 * An independent check with OpenSC's pkcs11-tool: the master key objects the service creates are listed with the
 * attributes we claim (AES-256 secret key, labelled by KeyId, sensitive, encrypt/decrypt only), and their value
 * cannot be read in plaintext.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { masterKeyId } from "../../core/keystore/key-id.js";
import { createTestHsm, type TestHsm } from "../support/softhsm.js";

const run = promisify(execFile);

describe("pkcs11-tool sees the master keys as we claim", () => {
  let hsm: TestHsm;
  let store: Pkcs11KeyStore;
  let pin: string;
  const extractable = masterKeyId("tool-check", 1);
  const locked = masterKeyId("tool-check", 2);

  const tool = (...args: string[]) =>
    run(
      "pkcs11-tool",
      [
        "--module",
        hsm.tokens[0]!.libraryPath,
        "--token-label",
        hsm.tokens[0]!.label,
        "--login",
        "--pin",
        pin,
        ...args,
      ],
      { env: process.env },
    );

  before(async () => {
    hsm = await createTestHsm(["tool-check"]);
    pin = (await readFile(hsm.tokens[0]!.pinFile, "utf8")).trim();
    store = await Pkcs11KeyStore.open(hsm.options(hsm.tokens[0]!));
    await store.createMasterKey(extractable);
    await store.createMasterKey(locked, { extractable: false });
  });
  after(async () => {
    await store?.close();
    await hsm?.cleanup();
  });

  function objectBlock(listing: string, label: string): string {
    const blocks = listing.split(/\n(?=\S)/);
    const block = blocks.find((b) => b.includes(`label:      ${label}`));
    assert.ok(block, `pkcs11-tool lists ${label}:\n${listing}`);
    return block;
  }

  it("lists each master key version as a sensitive AES-256 secret key for encrypt/decrypt only", async () => {
    const { stdout } = await tool("--list-objects", "--type", "secrkey");
    for (const label of [extractable, locked]) {
      const block = objectBlock(stdout, label);
      assert.match(block, /^Secret Key Object; AES length 32/);
      assert.match(block, new RegExp(`ID:\\s+${Buffer.from(label).toString("hex")}`));
      assert.match(block, /Usage:\s+encrypt, decrypt\s*$/m, "no wrap, unwrap, sign, verify or derive");
      assert.match(block, /Access:.*\bsensitive\b/);
      assert.match(block, /Access:.*\balways sensitive\b/);
    }
    assert.match(objectBlock(stdout, extractable), /Access:.*(?<!never )extractable/);
    assert.match(objectBlock(stdout, locked), /Access:.*never extractable/);
  });

  it("cannot read a master key's value in plaintext", async () => {
    await assert.rejects(
      tool("--read-object", "--type", "secrkey", "--label", extractable),
      (err: { stderr?: string }) => /CKR_ATTRIBUTE_SENSITIVE/.test(err.stderr ?? ""),
    );
  });

  it("agrees with our KCV: pkcs11-tool's AES-ECB of a zero block under the key starts with it", async () => {
    const kcv = await store.keyCheckValue(extractable);
    const { stdout } = await run(
      "sh",
      [
        "-c",
        'head -c 16 /dev/zero | pkcs11-tool --module "$1" --token-label "$2" --login --pin "$3" --encrypt --mechanism AES-ECB --id "$4" | od -An -tx1 | tr -d " \\n"',
        "sh",
        hsm.tokens[0]!.libraryPath,
        hsm.tokens[0]!.label,
        pin,
        Buffer.from(extractable).toString("hex"),
      ],
      { env: process.env },
    );
    assert.equal(stdout.slice(0, 6).toUpperCase(), kcv);
  });
});
