/**
 * The CDK app: `npx cdk synth` runs this file (see cdk.json). It reads the configuration from context, builds the
 * stateful stack (table, backup bucket, dead-letter queues, alert topic, keys) and the stateless stack (functions,
 * rule, workflows, schedules, network, alarms, dashboard) that receives the stateful resources, and the vault stack (kits and factor secrets: key and access role) in the vault's own account
 * and region, and applies the cdk-nag AwsSolutions checks: an unacknowledged finding fails the synth.
 *
 * `createApp` is exported for the infra tests, which build the same app with their own context.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { App, Tags, Validations, type Environment } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { loadConfig, type AmkConfig } from "../lib/config.js";
import { StatefulStack } from "../lib/stateful-stack.js";
import { StatelessStack } from "../lib/stateless-stack.js";
import { VaultStack } from "../lib/vault-stack.js";

export interface CreateAppOptions {
  /** CDK context (as in cdk.json "context"); when run by the CDK CLI the App reads it from the environment. */
  readonly context?: Record<string, unknown>;
  /** Cloud assembly directory; default: the CLI's, or a temporary directory. */
  readonly outdir?: string;
}

export interface AmkApp {
  readonly app: App;
  readonly config: AmkConfig;
  readonly stateful: StatefulStack;
  readonly stateless: StatelessStack;
  readonly vault: VaultStack;
}

export function createApp(options: CreateAppOptions = {}): AmkApp {
  const app = new App({
    ...(options.context === undefined ? {} : { context: options.context }),
    ...(options.outdir === undefined ? {} : { outdir: options.outdir }),
  });
  const config = loadConfig(app);
  // Environment-agnostic unless both account and region are configured.
  const env: Environment | undefined =
    config.account !== undefined && config.region !== undefined
      ? { account: config.account, region: config.region }
      : undefined;
  const prefix = `amk-${config.environment}`;

  const stateful = new StatefulStack(app, `${prefix}-stateful`, {
    env,
    config,
    description: `ArquivoMate Keys (${config.environment}): retained state (event-store table, backup bucket, dead-letter queues, alert topic, their KMS keys)`,
  });
  const stateless = new StatelessStack(app, `${prefix}-stateless`, {
    env,
    config,
    eventStore: stateful.eventStore,
    deadLetters: stateful.deadLetters,
    alerts: stateful.alerts,
    backupBucket: stateful.backups,
    description: `ArquivoMate Keys (${config.environment}): functions, workflows (rotation, recovery, drill, restoration test), backup export, alarms and dashboard`,
  });
  // Implied by the references to the table, key and queues; stated so that it holds whatever the functions use.
  stateless.addStackDependency(stateful, "functions use the event store held by the stateful stack");

  // The vault: its own account and region (default: the service's), deployed on its own with that account's
  // credentials. No reference to or from the other stacks: kits never sit next to the event store or its backups.
  const vaultEnv: Environment | undefined =
    config.vault.account !== undefined && config.vault.region !== undefined
      ? { account: config.vault.account, region: config.vault.region }
      : undefined;
  const vault = new VaultStack(app, `${prefix}-vault`, {
    env: vaultEnv,
    config,
    description: `ArquivoMate Keys (${config.environment}): vault for recovery kits and factor secrets (KMS key, access role)`,
  });

  Tags.of(app).add("project", "arquivomate-keys");
  Tags.of(app).add("amk:environment", config.environment);

  // Acknowledged findings are also written into the templates' resource Metadata (`cdk_nag.rules_to_suppress`), so
  // the reason travels with what is deployed.
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
  return { app, config, stateful, stateless, vault };
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  createApp().app.synth();
}
