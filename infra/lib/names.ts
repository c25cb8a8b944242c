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
