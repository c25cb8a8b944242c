/**
 * The project-local state folder of the embedded default (`.amk/`, git-ignored): SoftHSM token, DynamoDB Local's
 * database, vault, logs (cli/local/engines.ts). `AMK_HOME` (or the older `AMK_STATE_DIR`) moves it; `amk --home`
 * overrides both.
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const projectRoot = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..");

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.AMK_HOME || env.AMK_STATE_DIR || join(projectRoot, ".amk"));
}

export const LOCAL_TOKEN_LABEL = "amk-local";
