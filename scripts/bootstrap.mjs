// Makes a fresh Debian/Ubuntu machine ready for the project, using only Node built-ins (it runs before
// `node_modules` exists). Installs what is missing when run as root; otherwise prints the exact command.
//   - system packages: softhsm2 (the local HSM), opensc (pkcs11-tool, the independent check),
//     a Java runtime (DynamoDB Local), oathtool (an independent TOTP implementation for tests)
//   - npm packages: `npm ci` when node_modules is missing or older than package-lock.json
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** What the project needs from the system: a command that proves it is there, and the Debian package. */
export const systemRequirements = [
  { command: "softhsm2-util", pkg: "softhsm2", why: "local HSM (SoftHSM2)" },
  { command: "pkcs11-tool", pkg: "opensc", why: "independent PKCS#11 checks" },
  { command: "java", pkg: "openjdk-17-jre-headless", why: "DynamoDB Local" },
  { command: "oathtool", pkg: "oathtool", why: "independent TOTP codes in tests" },
];

const log = (msg) => process.stderr.write(`[bootstrap] ${msg}\n`);

function has(command) {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

export function ensureSystemPackages() {
  const missing = systemRequirements.filter((r) => !has(r.command));
  if (missing.length === 0) return;
  const pkgs = missing.map((m) => m.pkg);
  const cmd = `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${pkgs.join(" ")}`;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot || !has("apt-get")) {
    log(`missing: ${missing.map((m) => `${m.command} (${m.why})`).join(", ")}`);
    log(`run as root:\n  ${isRoot ? "" : "sudo sh -c '"}${cmd}${isRoot ? "" : "'"}`);
    process.exit(1);
  }
  log(`installing ${pkgs.join(", ")} (${missing.map((m) => m.why).join(", ")})`);
  execFileSync("sh", ["-c", cmd], { stdio: ["ignore", "inherit", "inherit"] });
  const still = missing.filter((r) => !has(r.command));
  if (still.length > 0) {
    log(`still missing after install: ${still.map((m) => m.command).join(", ")}`);
    process.exit(1);
  }
}

export function ensureNodeModules() {
  const marker = join(root, "node_modules", ".package-lock.json");
  const lock = join(root, "package-lock.json");
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
  log("installing npm packages (npm ci)");
  execFileSync("npm", ["ci", "--no-audit", "--no-fund"], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
  });
}

export function bootstrap() {
  ensureSystemPackages();
  ensureNodeModules();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) bootstrap();
