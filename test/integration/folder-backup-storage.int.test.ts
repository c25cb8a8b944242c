/**
 * The BackupStorage contract (test/contract/backup-storage.contract.ts) against the folder adapter on a temporary
 * folder, and against the in-memory reference adapter every other adapter is held to.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FolderBackupStorage } from "../../core/adapters/backup-folder/folder-backup-storage.js";
import { MemoryBackupStorage } from "../../core/backup/storage.js";
import { backupStorageContract } from "../contract/backup-storage.contract.js";

backupStorageContract("folder", async () => {
  const root = await mkdtemp(join(tmpdir(), "amk-backup-storage-"));
  return {
    storage: new FolderBackupStorage(join(root, "backups")),
    close: () => rm(root, { recursive: true, force: true }),
  };
});

backupStorageContract("memory (reference)", async () => ({
  storage: new MemoryBackupStorage(),
  close: async () => {},
}));
