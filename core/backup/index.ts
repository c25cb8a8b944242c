/** Event-store backups: the format, export, verification, import, the storage port and signatures. */
export * from "./errors.js";
export * from "./export.js";
export * from "./format.js";
export * from "./import.js";
export * from "./ports.js";
export * from "./signing.js";
export * from "./storage.js";
export {
  chainPositions,
  checkTrustedKeys,
  loadChain,
  loadManifest,
  verifyBackup,
  type BackupProgress,
  type LoadedManifest,
  type ProgressCallback,
  type VerifiedBackup,
  type VerifiedLink,
  type VerifyBackupOptions,
} from "./verify.js";
