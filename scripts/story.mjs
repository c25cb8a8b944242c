// `npm run story` entry: prepares a fresh machine, then runs the local end-to-end story (cli/story.ts).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { bootstrap, root } from "./bootstrap.mjs";

bootstrap();
const tsx = join(root, "node_modules", ".bin", "tsx");
const r = spawnSync(tsx, [join(root, "cli", "story.ts"), ...process.argv.slice(2)], {
  cwd: root,
  stdio: "inherit",
});
process.exit(r.status ?? 1);
