/**
 * The contract every `SecretVault` keeps. It takes a fixture factory, so the same suite runs against the file vault,
 * the Secrets Manager vault on the protocol emulator, and the Secrets Manager vault on LocalStack (see
 * test/integration/file-vault.int.test.ts and test/integration/secrets-manager-vault.int.test.ts).
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import { InvalidInputError } from "../../core/shared/errors.js";
import {
  InvalidSecretNameError,
  InvalidSecretRequestError,
  SecretNotFoundError,
  SecretVersionNotFoundError,
  VaultConflictError,
} from "../../core/vault/errors.js";
import {
  MAX_SECRET_BYTES,
  versionIdForClientToken,
  type SecretVault,
  type SecretVersion,
} from "../../core/vault/secret-vault.js";

export interface SecretVaultContractFixture {
  readonly vault: SecretVault;
  /**
   * A fingerprint of what the backend holds (or was asked): equal before and after a refused call means that call
   * wrote nothing. Absent where the backend cannot be observed (a shared LocalStack).
   */
  readonly fingerprint?: () => Promise<string>;
  close(): Promise<void>;
}

/** Everything a log line or a response could carry about an error: message, JSON, inspection, the cause chain. */
export function errorRenderings(err: unknown): string[] {
  const out: string[] = [inspect(err, { depth: 8 })];
  let e: unknown = err;
  for (let i = 0; i < 8 && e !== undefined && e !== null; i++) {
    if (e instanceof Error) out.push(e.message, String(e.stack), JSON.stringify(e));
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

/** Fails when any rendering of `err` holds `value` as text, base64 or hex. */
export function assertNoValue(err: unknown, value: Uint8Array): void {
  const b = Buffer.from(value);
  const forms = [b.toString("utf8"), b.toString("base64"), b.toString("hex")].filter((f) => f.length >= 8);
  for (const text of errorRenderings(err)) {
    for (const form of forms) assert.ok(!text.includes(form), `an error rendering holds the value: ${text}`);
  }
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof Error);
    return err;
  }
  assert.fail("expected a rejection");
}

const text = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "utf8"));
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
const ids = (versions: readonly SecretVersion[]): string[] => versions.map((v) => v.versionId);

export function secretVaultContract(
  name: string,
  makeFixture: () => Promise<SecretVaultContractFixture>,
): void {
  describe(`SecretVault contract: ${name}`, () => {
    let fx: SecretVaultContractFixture;
    let vault: SecretVault;
    const ws = `ct-${randomBytes(4).toString("hex")}`;
    let n = 0;
    const fresh = (what = "kit"): string => `amk/${ws}/${what}-${++n}`;

    before(async () => {
      fx = await makeFixture();
      vault = fx.vault;
    });
    after(async () => {
      await fx?.close();
    });

    it("stores and returns binary values of every size from 1 byte to the limit, byte for byte", async () => {
      const all = new Uint8Array(256).map((_, i) => i);
      for (const value of [new Uint8Array([0]), all, randomBytes(1000), randomBytes(MAX_SECRET_BYTES)]) {
        const secret = fresh();
        const v = await vault.putSecret(secret, new Uint8Array(value));
        assert.equal(typeof v.versionId, "string");
        assert.ok(v.versionId.length > 0);
        assert.equal(new Date(v.createdAt).toISOString(), v.createdAt, "createdAt is an ISO 8601 UTC time");
        assert.deepEqual(v.labels, ["current"]);
        const got = await vault.getSecret(secret);
        assert.ok(got.value instanceof Uint8Array);
        assert.ok(same(got.value, value), `round trip of ${value.length} bytes`);
        assert.equal(got.name, secret);
        assert.equal(got.versionId, v.versionId);
        assert.equal(got.createdAt, v.createdAt);
        assert.deepEqual(got.labels, ["current"]);
      }
    });

    it("keeps a factor secret (small JSON) and a kit of one workspace apart", async () => {
      const factor = `amk/${ws}/factor/admin@example.com`;
      const kit = `amk/${ws}/kit`;
      const json = text(JSON.stringify({ type: "totp", seed: randomBytes(20).toString("base64") }));
      await vault.putSecret(factor, json, { description: "TOTP factor of admin@example.com" });
      await vault.putSecret(kit, text("AMK-KIT\n..."), { labels: ["kit-v1"] });
      assert.ok(same((await vault.getSecret(factor)).value, json));
      assert.deepEqual((await vault.getSecret(kit, { label: "kit-v1" })).labels, ["current", "kit-v1"]);
    });

    it("refuses an empty or too large value, and writes nothing", async () => {
      const secret = fresh();
      const mark = await fx.fingerprint?.();
      for (const value of [new Uint8Array(0), new Uint8Array(MAX_SECRET_BYTES + 1)]) {
        const err = await rejection(vault.putSecret(secret, value));
        assert.ok(err instanceof InvalidSecretRequestError, `got ${inspect(err)}`);
        assert.ok(err instanceof InvalidInputError);
      }
      assert.equal(await fx.fingerprint?.(), mark);
      await assert.rejects(vault.listVersions(secret), SecretNotFoundError);
    });

    it("lists versions newest first, with current and previous after three puts", async () => {
      const secret = fresh();
      const values = [text("one"), text("two"), text("three")];
      const v1 = await vault.putSecret(secret, values[0]!);
      const v2 = await vault.putSecret(secret, values[1]!);
      const v3 = await vault.putSecret(secret, values[2]!);
      assert.equal(new Set([v1.versionId, v2.versionId, v3.versionId]).size, 3);
      assert.deepEqual(v2.labels, ["current"]);
      const list = await vault.listVersions(secret);
      assert.deepEqual(ids(list), [v3.versionId, v2.versionId, v1.versionId]);
      assert.deepEqual(
        list.map((v) => v.labels),
        [["current"], ["previous"], []],
      );
      assert.ok(list[0]!.createdAt >= list[1]!.createdAt && list[1]!.createdAt >= list[2]!.createdAt);

      const current = await vault.getSecret(secret);
      assert.equal(current.versionId, v3.versionId);
      assert.ok(same(current.value, values[2]!));
      const previous = await vault.getSecret(secret, { label: "previous" });
      assert.equal(previous.versionId, v2.versionId);
      assert.deepEqual(previous.labels, ["previous"]);
      assert.ok(same(previous.value, values[1]!));
      const first = await vault.getSecret(secret, { versionId: v1.versionId });
      assert.deepEqual(first.labels, []);
      assert.equal(first.createdAt, v1.createdAt);
      assert.ok(same(first.value, values[0]!));
      assert.equal((await vault.getSecret(secret, { label: "current" })).versionId, v3.versionId);
    });

    it("moves a custom label to the version that is given it; the previous current keeps its other labels", async () => {
      const secret = fresh();
      const v1 = await vault.putSecret(secret, text("kit 1"), { labels: ["kit-v1", "stable"] });
      assert.deepEqual(v1.labels, ["current", "kit-v1", "stable"]);
      const v2 = await vault.putSecret(secret, text("kit 2"), { labels: ["kit-v2", "current"] });
      assert.deepEqual(v2.labels, ["current", "kit-v2"], "current given explicitly is the same as not given");
      const v3 = await vault.putSecret(secret, text("kit 3"), { labels: ["stable"] });
      assert.deepEqual(v3.labels, ["current", "stable"]);
      const list = await vault.listVersions(secret);
      assert.deepEqual(ids(list), [v3.versionId, v2.versionId, v1.versionId]);
      assert.deepEqual(
        list.map((v) => v.labels),
        [["current", "stable"], ["previous", "kit-v2"], ["kit-v1"]],
      );
      assert.ok(same((await vault.getSecret(secret, { label: "stable" })).value, text("kit 3")));
      assert.ok(same((await vault.getSecret(secret, { label: "kit-v1" })).value, text("kit 1")));
    });

    it("is idempotent with a client token: the same token and value return the version and change nothing", async () => {
      const secret = fresh();
      const token = `issue-kit:${ws}:3`;
      const first = await vault.putSecret(secret, text("kit v3"), { clientToken: token, labels: ["kit-v3"] });
      assert.equal(first.versionId, versionIdForClientToken(token));
      const again = await vault.putSecret(secret, text("kit v3"), { clientToken: token, labels: ["kit-v3"] });
      assert.deepEqual(again, first);
      const later = await vault.putSecret(secret, text("kit v4"));
      const late = await vault.putSecret(secret, text("kit v3"), { clientToken: token, labels: ["kit-v3"] });
      assert.equal(late.versionId, first.versionId);
      assert.deepEqual(late.labels, ["previous", "kit-v3"], "a late repeat moves no label");
      const list = await vault.listVersions(secret);
      assert.deepEqual(ids(list), [later.versionId, first.versionId]);
      assert.equal((await vault.getSecret(secret)).versionId, later.versionId);

      const uuid = randomUUID();
      const u = await vault.putSecret(fresh(), text("x"), { clientToken: uuid });
      assert.equal(u.versionId, uuid, "a UUID token is the version id as it is");
    });

    it("refuses the same client token with another value (VaultConflictError), without the value", async () => {
      const secret = fresh();
      const token = randomUUID();
      const stored = await vault.putSecret(secret, text("original value"), { clientToken: token });
      const other = text(`CONFLICTING-VALUE-${randomBytes(8).toString("hex")}`);
      const err = await rejection(vault.putSecret(secret, other, { clientToken: token }));
      assert.ok(err instanceof VaultConflictError, `got ${inspect(err)}`);
      assert.equal(err.code, "VAULT_CONFLICT");
      assert.equal(err.retryable, false);
      assert.equal(err.context.secretName, secret);
      assert.ok(err.message.includes(secret));
      assertNoValue(err, other);
      assertNoValue(err, text("original value"));
      const list = await vault.listVersions(secret);
      assert.deepEqual(ids(list), [stored.versionId]);
      assert.ok(same((await vault.getSecret(secret)).value, text("original value")));
    });

    it("reports an unknown secret and an unknown version or label with typed errors", async () => {
      const missing = fresh("missing");
      for (const call of [() => vault.getSecret(missing), () => vault.listVersions(missing)]) {
        const err = await rejection(call());
        assert.ok(err instanceof SecretNotFoundError, `got ${inspect(err)}`);
        assert.equal(err.code, "SECRET_NOT_FOUND");
        assert.equal(err.context.secretName, missing);
      }
      await assert.rejects(vault.getSecret(missing, { versionId: randomUUID() }), SecretNotFoundError);

      const secret = fresh();
      await vault.putSecret(secret, text("only"));
      const unknownId = randomUUID();
      const byId = await rejection(vault.getSecret(secret, { versionId: unknownId }));
      assert.ok(byId instanceof SecretVersionNotFoundError, `got ${inspect(byId)}`);
      assert.equal(byId.code, "SECRET_VERSION_NOT_FOUND");
      assert.equal(byId.context.secretName, secret);
      assert.equal(byId.context.versionId, unknownId);
      assert.ok(byId.message.includes(unknownId));
      await assert.rejects(vault.getSecret(secret, { label: "previous" }), SecretVersionNotFoundError);
      await assert.rejects(vault.getSecret(secret, { label: "kit-v9" }), SecretVersionNotFoundError);
    });

    it("refuses bad names, labels, tokens and options with typed errors, and writes nothing", async () => {
      const value = text(`BAD-INPUT-VALUE-${randomBytes(8).toString("hex")}`);
      const mark = await fx.fingerprint?.();
      const badNames = [
        "",
        "/amk/x/kit",
        "amk/x/kit/",
        "amk/../kit",
        "amk/x..y/kit",
        "amk//kit",
        "amk x/kit",
        "amk/ü/kit",
        "amk/x:y/kit",
        "amk\\x\\kit",
        "amk/x\0/kit",
        "a".repeat(257),
      ];
      for (const bad of badNames) {
        for (const call of [
          () => vault.putSecret(bad, value),
          () => vault.getSecret(bad),
          () => vault.listVersions(bad),
        ]) {
          const err = await rejection(call());
          assert.ok(err instanceof InvalidSecretNameError, `${JSON.stringify(bad)}: got ${inspect(err)}`);
          assert.ok(err instanceof InvalidInputError);
          assert.equal(err.code, "INVALID_INPUT");
          assertNoValue(err, value);
        }
      }
      const secret = fresh();
      const badPuts = [
        { labels: ["AWSCURRENT"] },
        { labels: ["awspending"] },
        { labels: ["previous"] },
        { labels: [""] },
        { labels: ["two words"] },
        { labels: ["x".repeat(129)] },
        { labels: Array.from({ length: 11 }, (_, i) => `l${i}`) },
        { clientToken: "" },
        { clientToken: "has space" },
        { clientToken: "t".repeat(129) },
      ];
      for (const options of badPuts) {
        const err = await rejection(vault.putSecret(secret, value, options));
        assert.ok(
          err instanceof InvalidSecretRequestError,
          `${JSON.stringify(options)}: got ${inspect(err)}`,
        );
        assertNoValue(err, value);
      }
      await assert.rejects(
        vault.getSecret(secret, { versionId: randomUUID(), label: "current" }),
        InvalidSecretRequestError,
      );
      await assert.rejects(vault.getSecret(secret, { label: "AWSCURRENT" }), InvalidSecretRequestError);
      await assert.rejects(vault.getSecret(secret, { versionId: "../index" }), InvalidSecretRequestError);
      assert.equal(await fx.fingerprint?.(), mark, "nothing was written or sent");
      await assert.rejects(vault.listVersions(secret), SecretNotFoundError);

      for (const good of [
        `amk/${ws}/factor/admin+1@example.com`,
        `amk/${ws}/a_b=c.d-e`,
        `n${ws}`.padEnd(256, "x"),
      ]) {
        await vault.putSecret(good, text("fine"));
        assert.ok(same((await vault.getSecret(good)).value, text("fine")), good);
      }
    });

    it("keeps every version when 10 puts on one new secret run at once", async () => {
      const secret = fresh();
      const values = Array.from({ length: 10 }, (_, i) => text(`concurrent value ${i} ${randomUUID()}`));
      const versions = await Promise.all(values.map((v) => vault.putSecret(secret, v)));
      assert.equal(new Set(ids(versions)).size, 10);
      const list = await vault.listVersions(secret);
      assert.deepEqual([...ids(list)].sort(), [...ids(versions)].sort());
      assert.equal(list.filter((v) => v.labels.includes("current")).length, 1);
      assert.equal(list.filter((v) => v.labels.includes("previous")).length, 1);
      assert.deepEqual(list[0]!.labels, ["current"], "the newest version is current");
      for (const [i, v] of versions.entries()) {
        assert.ok(same((await vault.getSecret(secret, { versionId: v.versionId })).value, values[i]!));
      }
    });

    it("never puts a value into an error", async () => {
      const secret = fresh();
      const value = text(`NEVER-IN-AN-ERROR-${randomBytes(8).toString("hex")}`);
      await vault.putSecret(secret, value, { clientToken: `no-leak-${ws}` });
      const errors = [
        await rejection(
          vault.putSecret(secret, text("another value entirely"), { clientToken: `no-leak-${ws}` }),
        ),
        await rejection(vault.getSecret(secret, { versionId: randomUUID() })),
        await rejection(vault.putSecret(secret, value, { labels: ["AWSPREVIOUS"] })),
        await rejection(vault.getSecret(`${secret}-absent`)),
      ];
      for (const err of errors) assertNoValue(err, value);
    });
  });
}
