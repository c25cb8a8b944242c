/**
 * Names the stacks (and the configuration) must agree on without referencing each other's constructs.
 *
 * The EventBridge rule lives in the stateless stack, its dead-letter queue (and that queue's KMS key) in the stateful
 * stack. The queue policy and the key policy must name the rule (`aws:SourceArn`), but a reference from the stateful
 * stack to the rule would make the two stacks depend on each other. So the rule gets a fixed name, and both stacks
 * build its ARN from that name.
 */
import { ArnFormat, Stack } from "aws-cdk-lib";
import type { AmkConfig } from "./config.js";

/** Physical name of the document-lifecycle rule: fixed, so that the stateful stack can name it in its policies. */
export function lifecycleRuleName(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-document-lifecycle`;
}

/**
 * ARN of the document-lifecycle rule, in the account and region of `stack`: `rule/<name>` on the default bus,
 * `rule/<bus>/<name>` on a custom bus (the format EventBridge uses).
 */
export function lifecycleRuleArn(
  stack: Stack,
  config: Pick<AmkConfig, "environment" | "lifecycleEventBus">,
): string {
  const name = lifecycleRuleName(config);
  return stack.formatArn({
    service: "events",
    resource: "rule",
    resourceName: config.lifecycleEventBus === "default" ? name : `${config.lifecycleEventBus}/${name}`,
    arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
  });
}

/**
 * Physical name of the vault stack's access role: fixed, so that its ARN is known before the vault stack is deployed
 * (the service side is configured with it, `amk:vaultAccessRoleArn`) and can be checked against the configuration.
 */
export function vaultAccessRoleName(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-vault-access`;
}

/**
 * Physical name of the role of the rotation's `RotationComplete` function (the one that re-issues the recovery kit):
 * fixed, so that its ARN is known before the stateless stack is deployed and can be listed in
 * `amk:vaultWriterRoleArns`, which the vault stack's access role trusts.
 */
export function rotationCompleteRoleName(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-rotation-complete`;
}

/**
 * Physical names of the roles of the other functions that use the vault through its access role, fixed for the same
 * reason as `rotationCompleteRoleName`: the vault stack's trust policy lists them (`amk:vaultWriterRoleArns` for the
 * kit re-issuing `RecoveryComplete`; `amk:unlockRoleArns` for the readers `RecoveryStart`, `RecoveryUnlock` and
 * `DrillRun`), and the stacks share no reference.
 */
export function recoveryCompleteRoleName(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-recovery-complete`;
}
export function recoveryStartRoleName(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-recovery-start`;
}
export function recoveryUnlockRoleName(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-recovery-unlock`;
}
export function drillRunRoleName(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-drill-run`;
}

/**
 * Physical names of the roles of the backup functions, fixed for the same reason: `BackupExport` signs with the
 * backup signing key in the vault and creates it on the first export (a writer: `amk:vaultWriterRoleArns`);
 * `RestorationTestRun` opens the kit through the drill slot (a reader: `amk:unlockRoleArns`).
 */
export function backupExportRoleName(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-backup-export`;
}
export function restorationTestRoleName(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-restoration-test`;
}

/**
 * Prefix of every CloudWatch alarm's name (`amk-<env>-`): the stateful stack lets CloudWatch publish to the alert
 * topic (and use its key) for alarms of these names only, without referencing the alarms in the stateless stack.
 */
export function alarmNamePrefix(config: Pick<AmkConfig, "environment">): string {
  return `amk-${config.environment}-`;
}

/** ARN pattern of this environment's alarms in the account and region of `stack`. */
export function alarmArnPattern(stack: Stack, config: Pick<AmkConfig, "environment">): string {
  return stack.formatArn({
    service: "cloudwatch",
    resource: "alarm",
    resourceName: `${alarmNamePrefix(config)}*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}
