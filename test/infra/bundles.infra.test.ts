/**
 * The Lambda bundles as CDK builds them for a deployment (real esbuild bundling, no Docker) must load: every asset's
 * `index.mjs` is imported under Node with only what Lambda provides next to it (the AWS SDK from the runtime,
 * pkcs11js from the PKCS#11 layer; here: the project's node_modules without argon2). A native module that is neither
 * bundled nor installed beside the bundle (argon2, the kit's KDF) fails the import, as it would on cold start.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, describe, it } from "node:test";
import { createApp } from "../../infra/bin/app.js";
import { NATIVE_NODE_MODULES } from "../../infra/lib/stateless-stack.js";

const ROOT = process.cwd();
// Lambda always sets it; some SDK clients are built when a module loads.
process.env.AWS_REGION ??= "us-east-1";

describe("Lambda bundles (real bundling)", () => {
  const outdir = mkdtempSync(join(tmpdir(), "amk-bundles-"));
  after(() => rmSync(outdir, { recursive: true, force: true }));

  it("every function bundle loads; the kit functions carry argon2 beside the bundle", async () => {
    const cdkJson = JSON.parse(readFileSync(join(ROOT, "cdk.json"), "utf8")) as { context?: object };
    createApp({ context: { ...cdkJson.context }, outdir }).app.synth();
    // What the runtime and the layer provide: every package of the project except the native ones we ship.
    mkdirSync(join(outdir, "node_modules"));
    for (const name of readdirSync(join(ROOT, "node_modules"))) {
      if (NATIVE_NODE_MODULES.includes(name) || name.startsWith(".")) continue;
      symlinkSync(join(ROOT, "node_modules", name), join(outdir, "node_modules", name));
    }
    const assets = readdirSync(outdir).filter(
      (d) => d.startsWith("asset.") && existsSync(join(outdir, d, "index.mjs")),
    );
    assert.ok(assets.length >= 6, `bundles found: ${assets.length}`);
    const failures: string[] = [];
    let withArgon2 = 0;
    for (const a of assets) {
      if (existsSync(join(outdir, a, "node_modules", "argon2"))) withArgon2 += 1;
      try {
        await import(pathToFileURL(join(outdir, a, "index.mjs")).href);
      } catch (err) {
        failures.push(`${a}: ${(err as Error).message.slice(0, 200)}`);
      }
    }
    assert.deepEqual(failures, []);
    assert.ok(withArgon2 >= 4, `bundles with argon2: ${withArgon2}`);
  });
});
