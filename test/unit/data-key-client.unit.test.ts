/** The pipeline client's cache logic (time and use bounds, zeroization) with a scripted transport. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DataKeyClient,
  DataKeyRequestError,
  type DataKeyTransport,
  type DataKeysAnswer,
} from "../../core/client/data-key-client.js";

function scripted(now: { t: number }) {
  const calls: string[] = [];
  let serial = 0;
  const answer = (ws: string, doc: string, artifacts: readonly string[]): DataKeysAnswer => ({
    ok: true,
    workspaceId: ws,
    documentId: doc,
    keyId: `ws-${ws}/mk/1`,
    expiresAt: new Date(now.t + 300_000).toISOString(),
    keys: artifacts.map((a) => ({ artifact: a, dek: Buffer.alloc(32, ++serial).toString("base64") })),
    record: {},
    recordVersion: 1,
  });
  const transport: DataKeyTransport = {
    generate: async (r) => (calls.push("generate"), answer(r.workspaceId, r.documentId, r.artifacts)),
    decrypt: async (r) =>
      r.documentId === "gone"
        ? { ok: false, error: { code: "DOCUMENT_DELETED", message: "deleted", retryable: false } }
        : (calls.push("decrypt"), answer(r.workspaceId, r.documentId, r.artifacts)),
  };
  return { transport, calls };
}

describe("DataKeyClient", () => {
  const ref = { workspaceId: "w", documentId: "d", artifact: "file" };

  it("serves generated keys from memory, then refetches once the time bound passes", async () => {
    const now = { t: 1_000_000 };
    const { transport, calls } = scripted(now);
    const c = new DataKeyClient({ transport, maxAgeMs: 10_000, now: () => now.t, sweepIntervalMs: 0 });
    await c.generate({ workspaceId: "w", documentId: "d", artifacts: ["file"], idempotencyKey: "i" });
    const first = await c.withDataKey(ref, (k) => k.toString("hex"));
    assert.equal(first, Buffer.alloc(32, 1).toString("hex"));
    assert.deepEqual(calls, ["generate"]);
    now.t += 10_001;
    assert.equal(c.size, 0, "expired keys are swept");
    const second = await c.withDataKey(ref, (k) => k.toString("hex"));
    assert.notEqual(second, first);
    assert.deepEqual(calls, ["generate", "decrypt"]);
    c.dispose();
  });

  it("drops a key after maxUses and zeroizes what it handed out", async () => {
    const now = { t: 0 };
    const { transport, calls } = scripted(now);
    const c = new DataKeyClient({ transport, maxUses: 2, now: () => now.t, sweepIntervalMs: 0 });
    let seen: Buffer | undefined;
    await c.withDataKey(ref, (k) => void (seen = k));
    assert.deepEqual([...seen!], Array(32).fill(0), "the buffer given to use() is zeroized after it");
    await c.withDataKey(ref, () => undefined);
    assert.equal(c.size, 0, "used up");
    await c.withDataKey(ref, () => undefined);
    assert.deepEqual(calls, ["decrypt", "decrypt"]);
    c.dispose();
  });

  it("zeroizes on forget and dispose, and refuses use after dispose", async () => {
    const now = { t: 0 };
    const { transport } = scripted(now);
    const c = new DataKeyClient({ transport, now: () => now.t, sweepIntervalMs: 0 });
    await c.generate({
      workspaceId: "w",
      documentId: "d",
      artifacts: ["file", "thumb"],
      idempotencyKey: "i",
    });
    await c.generate({ workspaceId: "w", documentId: "e", artifacts: ["file"], idempotencyKey: "j" });
    assert.equal(c.size, 3);
    c.forget("w", "d");
    assert.equal(c.size, 1);
    c.dispose();
    assert.equal(c.size, 0);
    await assert.rejects(
      c.withDataKey(ref, () => undefined),
      /disposed/,
    );
  });

  it("surfaces the service's refusal as a typed error with its code", async () => {
    const { transport } = scripted({ t: 0 });
    const c = new DataKeyClient({ transport, sweepIntervalMs: 0 });
    await assert.rejects(
      c.withDataKey({ ...ref, documentId: "gone" }, () => undefined),
      (e: unknown) =>
        e instanceof DataKeyRequestError && e.code === "DOCUMENT_DELETED" && e.retryable === false,
    );
    c.dispose();
  });

  it("never keeps a key longer than the service allows", async () => {
    const now = { t: 0 };
    const transport: DataKeyTransport = {
      generate: async () => ({ ok: false, error: { code: "X", message: "x", retryable: false } }),
      decrypt: async (r) => ({
        ok: true,
        workspaceId: r.workspaceId,
        documentId: r.documentId,
        keyId: "k",
        recordVersion: 1,
        record: {},
        expiresAt: new Date(now.t + 1000).toISOString(),
        keys: [{ artifact: "file", dek: Buffer.alloc(32, 9).toString("base64") }],
      }),
    };
    const c = new DataKeyClient({ transport, maxAgeMs: 60_000, now: () => now.t, sweepIntervalMs: 0 });
    await c.withDataKey(ref, () => undefined);
    now.t += 1001;
    assert.equal(c.size, 0);
    c.dispose();
  });
});
