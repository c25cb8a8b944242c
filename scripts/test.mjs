// `npm test` entry: prepares a fresh machine (scripts/bootstrap.mjs), then hands over to test/run.ts,
// which runs the static checks and the test tiers against the real local engines.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { bootstrap, root } from "./bootstrap.mjs";

bootstrap();
const tsx = join(root, "node_modules", ".bin", "tsx");
const r = spawnSync(tsx, [join(root, "test", "run.ts"), ...process.argv.slice(2)], {
  cwd: root,
  stdio: "inherit",
});
process.exit(r.status ?? 1);
