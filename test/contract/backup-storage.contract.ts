/**
 * The contract every `BackupStorage` keeps (core/backup/storage.ts): blobs written once, invisible until `close`,
 * never overwritten (not even by a racing writer), `abort` leaves the name free, bad names refused, missing blobs
 * reported, `list` by prefix and sorted. It takes a fixture factory, so the same suite runs against the in-memory
 * reference and the folder adapter (test/integration/folder-backup-storage.int.test.ts) and the S3 adapter on the S3
 * emulator (test/integration/s3-backup-storage.int.test.ts).
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  BackupExistsError,
  BackupFileMissingError,
  InvalidBackupRequestError,
} from "../../core/backup/errors.js";
import { readBlob, type BackupStorage } from "../../core/backup/storage.js";

export interface BackupStorageContractFixture {
  readonly storage: BackupStorage;
  close(): Promise<void>;
}

const BAD_NAMES: unknown[] = [
  "",
  ".",
  "..",
  "../x",
  "a/..",
  "a/b/c",
  "/a",
  "a/",
  "a//b",
  "a\\b",
  "a b/c",
  "ü/x",
  "x".repeat(129),
  `a/${"x".repeat(129)}`,
  undefined,
  42,
];

export function backupStorageContract(
  label: string,
  open: () => Promise<BackupStorageContractFixture>,
): void {
  describe(`BackupStorage contract: ${label}`, () => {
    let fixture: BackupStorageContractFixture;
    let storage: BackupStorage;
    before(async () => {
      fixture = await open();
      storage = fixture.storage;
    });
    after(async () => {
      await fixture?.close();
    });

    const id = (): string => randomUUID();
    const names = async (prefix: string): Promise<string[]> =>
      (await storage.list(prefix)).map((b) => b.name);

    it("has a location for messages", () => {
      assert.equal(typeof storage.location, "string");
      assert.ok(storage.location.length > 0);
    });

    it("stores a blob with put and returns its bytes, size and listing", async () => {
      const b = id();
      const data = randomBytes(70_000);
      await storage.put(`${b}/manifest.json`, data);
      assert.deepEqual(await readBlob(storage, `${b}/manifest.json`), data);
      assert.deepEqual(await storage.stat(`${b}/manifest.json`), {
        name: `${b}/manifest.json`,
        bytes: data.length,
      });
      assert.deepEqual(await storage.list(`${b}/`), [{ name: `${b}/manifest.json`, bytes: data.length }]);
    });

    it("writes a blob in chunks; the bytes come back in Uint8Array chunks, equal", async () => {
      const b = id();
      const chunks = [
        randomBytes(1),
        randomBytes(65_537),
        Buffer.alloc(0),
        randomBytes(300_001),
        randomBytes(7),
      ];
      const w = await storage.create(`${b}/events-0001.jsonl`);
      for (const c of chunks) await w.write(c);
      await w.close();
      const got: Buffer[] = [];
      for await (const c of storage.get(`${b}/events-0001.jsonl`)) {
        assert.ok(c instanceof Uint8Array);
        got.push(Buffer.from(c));
      }
      assert.deepEqual(Buffer.concat(got), Buffer.concat(chunks));
    });

    it("keeps what was written, not the caller's buffer changed afterwards", async () => {
      const b = id();
      const chunk = Buffer.from("original bytes\n");
      const w = await storage.create(`${b}/events-0001.jsonl`);
      await w.write(chunk);
      chunk.fill(0x21);
      await w.close();
      assert.equal((await readBlob(storage, `${b}/events-0001.jsonl`)).toString(), "original bytes\n");
    });

    it("stores an empty blob", async () => {
      const b = id();
      const w = await storage.create(`${b}/empty.json`);
      await w.close();
      assert.deepEqual(await storage.stat(`${b}/empty.json`), { name: `${b}/empty.json`, bytes: 0 });
      assert.equal((await readBlob(storage, `${b}/empty.json`)).length, 0);
    });

    it("shows nothing under the name until close succeeds", async () => {
      const b = id();
      const w = await storage.create(`${b}/events-0001.jsonl`);
      await w.write(Buffer.from("a line\n"));
      assert.equal(await storage.stat(`${b}/events-0001.jsonl`), undefined);
      assert.deepEqual(await storage.list(`${b}/`), []);
      await assert.rejects(readBlob(storage, `${b}/events-0001.jsonl`), BackupFileMissingError);
      await w.close();
      assert.equal((await storage.stat(`${b}/events-0001.jsonl`))?.bytes, 7);
      await w.close(); // a second close changes nothing
      assert.equal((await readBlob(storage, `${b}/events-0001.jsonl`)).toString(), "a line\n");
    });

    it("refuses to create or put an existing name, and keeps the blob as it was", async () => {
      const b = id();
      await storage.put(`${b}/manifest.json`, Buffer.from("first"));
      await assert.rejects(storage.create(`${b}/manifest.json`), BackupExistsError);
      await assert.rejects(storage.put(`${b}/manifest.json`, Buffer.from("second")), BackupExistsError);
      assert.equal((await readBlob(storage, `${b}/manifest.json`)).toString(), "first");
    });

    it("lets only the first of two racing writers have the name; the second close fails with BackupExistsError", async () => {
      const b = id();
      const [w1, w2] = [
        await storage.create(`${b}/manifest.json`),
        await storage.create(`${b}/manifest.json`),
      ];
      await w1.write(Buffer.from("writer one"));
      await w2.write(Buffer.from("writer two"));
      await w1.close();
      await assert.rejects(w2.close(), BackupExistsError);
      await w2.abort(); // safe after a failure
      assert.equal((await readBlob(storage, `${b}/manifest.json`)).toString(), "writer one");
      assert.deepEqual(await names(`${b}/`), [`${b}/manifest.json`]);
    });

    it("abort drops what was written and leaves the name free", async () => {
      const b = id();
      const w = await storage.create(`${b}/events-0001.jsonl`);
      await w.write(randomBytes(1000));
      await w.abort();
      await w.abort(); // twice is fine
      assert.equal(await storage.stat(`${b}/events-0001.jsonl`), undefined);
      assert.deepEqual(await storage.list(`${b}/`), []);
      await assert.rejects(w.write(Buffer.from("late")));
      await storage.put(`${b}/events-0001.jsonl`, Buffer.from("again"));
      assert.equal((await readBlob(storage, `${b}/events-0001.jsonl`)).toString(), "again");
    });

    it("refuses a write after close, and the blob stays as it was closed", async () => {
      const b = id();
      const w = await storage.create(`${b}/manifest.json`);
      await w.write(Buffer.from("closed"));
      await w.close();
      await assert.rejects(w.write(Buffer.from(" more")));
      assert.equal((await readBlob(storage, `${b}/manifest.json`)).toString(), "closed");
    });

    it("reports a missing blob: get BackupFileMissingError, stat undefined", async () => {
      const b = id();
      await assert.rejects(readBlob(storage, `${b}/manifest.json`), BackupFileMissingError);
      assert.equal(await storage.stat(`${b}/manifest.json`), undefined);
      assert.deepEqual(await storage.list(`${b}/`), []);
    });

    it("refuses bad names everywhere with InvalidBackupRequestError", async () => {
      for (const bad of BAD_NAMES) {
        const name = bad as string;
        const what = JSON.stringify(bad) ?? String(bad);
        await assert.rejects(storage.create(name), InvalidBackupRequestError, `create ${what}`);
        await assert.rejects(storage.put(name, Buffer.from("x")), InvalidBackupRequestError, `put ${what}`);
        await assert.rejects(storage.stat(name), InvalidBackupRequestError, `stat ${what}`);
        await assert.rejects(readBlob(storage, name), InvalidBackupRequestError, `get ${what}`);
      }
    });

    it("lists by prefix: a backup's blobs, or every backup whose id starts with the prefix; sorted by name", async () => {
      const stem = `ls${randomBytes(4).toString("hex")}`;
      const [a, ab, c] = [`${stem}-a`, `${stem}-ab`, `${stem}-c`];
      const files = ["manifest.json", "events-0002.jsonl", "events-0010.jsonl", "events-0001.jsonl"];
      for (const f of files) await storage.put(`${ab}/${f}`, Buffer.from(f));
      await storage.put(`${a}/manifest.json`, Buffer.from("a"));
      await storage.put(`${c}/manifest.json`, Buffer.from("c"));
      assert.deepEqual(
        await names(`${ab}/`),
        [...files].sort().map((f) => `${ab}/${f}`),
      );
      assert.deepEqual(
        await names(`${ab}/events-`),
        ["0001", "0002", "0010"].map((n) => `${ab}/events-${n}.jsonl`),
      );
      assert.deepEqual(
        await names(`${a}/`),
        [`${a}/manifest.json`],
        "not the blobs of a backup whose id extends it",
      );
      assert.deepEqual(await names(`${stem}-a`), [
        `${a}/manifest.json`,
        ...[...files].sort().map((f) => `${ab}/${f}`),
      ]);
      const all = await storage.list(stem);
      assert.equal(all.length, files.length + 2);
      assert.deepEqual(
        all.map((x) => x.name),
        [...all.map((x) => x.name)].sort(),
      );
      assert.deepEqual(
        all.find((x) => x.name === `${ab}/events-0010.jsonl`),
        { name: `${ab}/events-0010.jsonl`, bytes: "events-0010.jsonl".length },
      );
      assert.deepEqual(await storage.list(`${stem}-zzz/`), []);
    });
  });
}
