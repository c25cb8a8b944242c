/**
 * What the infra tests share: the CDK app synthesised with cdk.json's context (temporary outdirs removed after the
 * file), the ASL validator, and small template helpers.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import type { CfnElement, Stack } from "aws-cdk-lib";
import type { IConstruct } from "constructs";
import { createApp, type AmkApp } from "../../infra/bin/app.js";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The context of cdk.json, as `cdk synth` would apply it. */
export const CDK_JSON_CONTEXT = (
  JSON.parse(readFileSync(join(ROOT, "cdk.json"), "utf8")) as { context: Record<string, unknown> }
).context;

/** No function bundling: for tests about the resources (bundles.infra and stacks.infra bundle for real). */
export const NO_BUNDLING = { "aws:cdk:bundling-stacks": [] };

const require = createRequire(import.meta.url);
/** asl-validator 4 (CommonJS, no types): the definition and options in, the errors out. */
export const validateAsl = require("asl-validator") as (
  definition: object,
  options?: { checkPaths?: boolean; checkArn?: boolean },
) => { isValid: boolean; errors: unknown[]; errorsText: (separator?: string) => string };

/**
 * A `synthApp(context)` for one test file: the app with cdk.json's context (plus `NO_BUNDLING` unless `bundle`) and
 * the given one, in a temporary outdir that is removed after the file's tests.
 */
export function synthAppsIn(
  prefix: string,
  options: { bundle?: boolean } = {},
): (context: Record<string, unknown>) => { amk: AmkApp; outdir: string } {
  const outdirs: string[] = [];
  after(() => {
    for (const d of outdirs) rmSync(d, { recursive: true, force: true });
  });
  return (context) => {
    const outdir = mkdtempSync(join(tmpdir(), `${prefix}-`));
    outdirs.push(outdir);
    const base = options.bundle ? CDK_JSON_CONTEXT : { ...CDK_JSON_CONTEXT, ...NO_BUNDLING };
    return { amk: createApp({ context: { ...base, ...context }, outdir }), outdir };
  };
}

/** The logical id of the CloudFormation resource behind an L2 construct. */
export const logicalIdIn = (stack: Stack, construct: IConstruct): string =>
  stack.getLogicalId(construct.node.defaultChild as CfnElement);

/** A policy statement's actions as a list. */
export const actionsOf = (s: { Action: string | string[] }): string[] =>
  Array.isArray(s.Action) ? s.Action : [s.Action];
