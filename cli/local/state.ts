/** The project-local state folder of the embedded default (`.amk/`, git-ignored): SoftHSM token, vault, etc. */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const projectRoot = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..");

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.AMK_STATE_DIR ?? join(projectRoot, ".amk");
}

export const LOCAL_TOKEN_LABEL = "amk-local";
