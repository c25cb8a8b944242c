/**
 * Deployment configuration of the CDK app, read from CDK context (`cdk.json` "context", `cdk.context.json`, or
 * `cdk synth -c amk:environment=prod`) and validated with zod, so that a bad value fails at synth time with a message
 * that names the context key, instead of deploying something half-wired.
 *
 * Values are identifiers only: the HSM PIN is never configuration. `amk:pinSecret` names the Secrets Manager secret
 * that holds it (a name or a complete ARN), and a value that looks like a PIN is refused without being echoed.
 *
 * The vault (recovery kits and factor secrets, DESIGN.md section 4 point 7) has its own place: `amk:vaultAccount` and
 * `amk:vaultRegion` (default: the service's `amk:account` / `amk:region`), and the roles that may use it:
 * `amk:vaultWriterRoleArns`, `amk:unlockRoleArns` (IAM role ARNs; a JSON array in cdk.json or a comma-separated list
 * with `-c`). `amk:vaultAccessRoleArn` and `amk:vaultKeyArn` are the vault stack's outputs handed back to the service
 * side.
 *
 * The rotation schedule is off unless `amk:rotationSchedule` (an EventBridge Scheduler `cron(...)` / `rate(...)`
 * expression, at most once a day) is set; it then starts the rotation workflow for each workspace id in
 * `amk:rotationWorkspaces`. The drill schedule is on for every workspace id in `amk:drillWorkspaces`
 * (`amk:drillSchedule`, default `rate(1 day)`, at most once an hour).
 *
 * Recovery and alerts: `amk:alertEmails` (email subscriptions of the alert topic), `amk:eventBusName` (the bus the
 * token invalidation is published on, default `default`), `amk:unlockTimeoutHours` (how long a recovery waits for an
 * administrator, 1-168, default 24), `amk:tokenSigningSecret` (name or complete ARN of the existing secret holding
 * the access-token signing key; never the key), `amk:hsmClusterId` / `amk:hsmBackupCopyRegion` (the drill's CloudHSM
 * backup check; off without a cluster id).
 *
 * Production (docs/deploy.md): `amk:production` (true/false, default false) makes the network, the PKCS#11 layer and
 * the account/region mandatory. The network of the HSM functions: `amk:vpcId`, `amk:vpcSubnets` (a JSON array of
 * `{"subnetId", "availabilityZone", "routeTableId"}`), `amk:hsmSecurityGroupId` (the cluster's security group),
 * `amk:dynamoDbPrefixListId`, `amk:vpcEndpoints` (`create`, the default, or `existing` with
 * `amk:vpcEndpointSecurityGroupId`); without them the functions run outside a VPC and the synth warns.
 *
 * Alarms: `amk:unlockRefusalThreshold` (refusals of the unlock function within 15 minutes, default 5),
 * `amk:drillMissingAfterHours` (default: the drill schedule's longest interval + 2 h). Backups:
 * `amk:backupLockMode` (`GOVERNANCE`, the default, or `COMPLIANCE`), `amk:backupRetentionDays` (default 90), or an
 * existing bucket: `amk:backupBucketArn` with `amk:backupBucketKeyArn`.
 *
 * Backups and restoration tests, for the workspaces of `amk:drillWorkspaces` (one schedule per workspace each):
 * `amk:backupSchedule` (the full export, default `rate(1 day)`, at most once an hour), `amk:restorationSchedule` (the
 * restoration test, default `rate(6 days)`, at most once a day and at least every 164 h: its missing-test alarm
 * allows 4 h of slack within CloudWatch's 7-day look-back), `amk:backupPublicKeys` (pinned Ed25519 public keys of
 * the backup signing key, base64; `AMK_BACKUP_PUBLIC_KEYS` of the export and restoration functions).
 */
import type { IConstruct } from "constructs";
import { z } from "zod";
import { backupPublicKey } from "../../core/backup/signing.js";
import { AmkError } from "../../core/shared/errors.js";
import { WorkspaceIdSchema } from "../../functions/shared/schemas.js";
import { vaultAccessRoleName } from "./names.js";

/** The context keys the app reads. Any other `amk:` key is a typo and is refused. */
export const CONTEXT_KEYS = {
  environment: "amk:environment",
  pkcs11Library: "amk:pkcs11Library",
  tokenLabel: "amk:tokenLabel",
  pinSecret: "amk:pinSecret",
  pkcs11LayerArn: "amk:pkcs11LayerArn",
  lifecycleEventBus: "amk:lifecycleEventBus",
  lifecycleEventSource: "amk:lifecycleEventSource",
  dataKeyTtlSeconds: "amk:dataKeyTtlSeconds",
  account: "amk:account",
  region: "amk:region",
  vaultAccount: "amk:vaultAccount",
  vaultRegion: "amk:vaultRegion",
  vaultWriterRoleArns: "amk:vaultWriterRoleArns",
  unlockRoleArns: "amk:unlockRoleArns",
  vaultAccessRoleArn: "amk:vaultAccessRoleArn",
  vaultKeyArn: "amk:vaultKeyArn",
  rotationSchedule: "amk:rotationSchedule",
  rotationWorkspaces: "amk:rotationWorkspaces",
  drillSchedule: "amk:drillSchedule",
  drillWorkspaces: "amk:drillWorkspaces",
  alertEmails: "amk:alertEmails",
  eventBusName: "amk:eventBusName",
  unlockTimeoutHours: "amk:unlockTimeoutHours",
  tokenSigningSecret: "amk:tokenSigningSecret",
  hsmClusterId: "amk:hsmClusterId",
  hsmBackupCopyRegion: "amk:hsmBackupCopyRegion",
  production: "amk:production",
  vpcId: "amk:vpcId",
  vpcSubnets: "amk:vpcSubnets",
  hsmSecurityGroupId: "amk:hsmSecurityGroupId",
  vpcEndpoints: "amk:vpcEndpoints",
  vpcEndpointSecurityGroupId: "amk:vpcEndpointSecurityGroupId",
  dynamoDbPrefixListId: "amk:dynamoDbPrefixListId",
  unlockRefusalThreshold: "amk:unlockRefusalThreshold",
  drillMissingAfterHours: "amk:drillMissingAfterHours",
  backupLockMode: "amk:backupLockMode",
  backupRetentionDays: "amk:backupRetentionDays",
  backupBucketArn: "amk:backupBucketArn",
  backupBucketKeyArn: "amk:backupBucketKeyArn",
  backupSchedule: "amk:backupSchedule",
  restorationSchedule: "amk:restorationSchedule",
  backupPublicKeys: "amk:backupPublicKeys",
} as const;

type ConfigField = keyof typeof CONTEXT_KEYS;
/** Keys whose value is never echoed in a message: a misplaced PIN or key must not end up in a CI log. */
const SECRET_FIELDS: ReadonlySet<ConfigField> = new Set(["pinSecret", "tokenSigningSecret"]);

export const DEFAULT_ENVIRONMENT = "dev";
export const DEFAULT_PKCS11_LIBRARY = "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so";
export const DEFAULT_TOKEN_LABEL = "hsm1";
/** The event bus the ingestion pipeline publishes document lifecycle events on. */
export const DEFAULT_LIFECYCLE_EVENT_BUS = "default";
/** The `source` of the ingestion pipeline's document lifecycle events. */
export const DEFAULT_LIFECYCLE_EVENT_SOURCE = "arquivomate.ingestion";
/** Bounds of `amk:dataKeyTtlSeconds` (the `expiresAt` the data-key functions hand out; the handlers default to 300). */
export const DATA_KEY_TTL_BOUNDS = { min: 1, max: 86_400 } as const;
/** Default PIN secret name, per environment: `arquivomate-keys/<environment>/hsm-pin`. */
export const defaultPinSecretName = (environment: string): string =>
  `arquivomate-keys/${environment}/hsm-pin`;
/**
 * Default name of the access-token signing secret, per environment: next to the PIN secret, outside `amk/` (the
 * vault's prefix, on which the vault access role may create and tag secrets).
 */
export const defaultTokenSigningSecretName = (environment: string): string =>
  `arquivomate-keys/${environment}/token-signing-key`;
/** The event bus the recovery's token invalidation is published on (this account and region). */
export const DEFAULT_EVENT_BUS = "default";
/** How long a recovery waits for an administrator to unlock the kit, in hours: default and bounds. */
export const DEFAULT_UNLOCK_TIMEOUT_HOURS = 24;
export const UNLOCK_TIMEOUT_BOUNDS = { min: 1, max: 168 } as const;
/** Default drill schedule (EventBridge Scheduler, UTC) for the workspaces of `amk:drillWorkspaces`. */
export const DEFAULT_DRILL_SCHEDULE = "rate(1 day)";
/** Unlock refusals (wrong passphrase or code, locked factor, bad input ...) within 15 minutes that raise the alarm. */
export const DEFAULT_UNLOCK_REFUSAL_THRESHOLD = 5;
export const UNLOCK_REFUSAL_THRESHOLD_BOUNDS = { min: 1, max: 1000 } as const;
/**
 * The missing-drill alarm fires when no drill execution succeeded for the schedule's longest interval plus this
 * slack (a scheduled start may be delivered up to 2 h late, and a drill takes minutes): daily drills, 26 h.
 */
export const DRILL_MISSING_SLACK_HOURS = 2;
/** CloudWatch evaluates an alarm over at most 7 days: the longest window the missing-drill alarm can have. */
export const DRILL_MISSING_BOUNDS = { min: 2, max: 168 } as const;
/** Object lock of the backup bucket: default mode and retention (days), and the retention's bounds. */
export const DEFAULT_BACKUP_LOCK_MODE = "GOVERNANCE";
export const DEFAULT_BACKUP_RETENTION_DAYS = 90;
export const BACKUP_RETENTION_BOUNDS = { min: 1, max: 36_500 } as const;
/** Default schedule (UTC) of the full backup export, per workspace of `amk:drillWorkspaces`. */
export const DEFAULT_BACKUP_SCHEDULE = "rate(1 day)";
/**
 * Default schedule (UTC) of the restoration test, per workspace of `amk:drillWorkspaces`: about weekly, but 6 days
 * rather than 7, so that the gap plus `RESTORATION_MISSING_SLACK_HOURS` fits CloudWatch's 7-day look-back and the
 * missing-test alarm can exist (a weekly test leaves no room for any slack: the alarm would fire between two tests).
 */
export const DEFAULT_RESTORATION_SCHEDULE = "rate(6 days)";
/**
 * The missing-test alarm fires when no restoration test succeeded for the schedule's longest gap plus this slack: a
 * scheduled start may be delivered up to 2 h late, and a test runs up to three 15-minute attempts.
 */
export const RESTORATION_MISSING_SLACK_HOURS = 4;
/** The HSM ports of a CloudHSM cluster's ENIs (the client connects to 2223-2225). */
export const HSM_PORTS = { from: 2223, to: 2225 } as const;

/** How a Secrets Manager secret is referenced: by name (IAM resource `name-??????`) or by its complete ARN. */
export type SecretRef =
  | { readonly kind: "name"; readonly name: string }
  | { readonly kind: "arn"; readonly arn: string; readonly name: string };
/** How the HSM PIN secret is referenced. */
export type PinSecretRef = SecretRef;

export interface AmkConfig {
  /** Short environment name; part of stack names, aliases and tags. */
  readonly environment: string;
  /** Absolute path of the PKCS#11 library inside the Lambda environment (the CloudHSM client's, from the layer). */
  readonly pkcs11Library: string;
  /** PKCS#11 token label of the HSM partition/slot. */
  readonly tokenLabel: string;
  /** The Secrets Manager secret holding the HSM crypto-user PIN (`user:password`). */
  readonly pinSecret: PinSecretRef;
  /** Lambda layer carrying the CloudHSM PKCS#11 library and the pkcs11js native module; absent: no layer. */
  readonly pkcs11LayerArn?: string;
  /** Name of the event bus (in this account and region) carrying the document lifecycle events. */
  readonly lifecycleEventBus: string;
  /** `source` of the document lifecycle events the rule matches. */
  readonly lifecycleEventSource: string;
  /** `AMK_DATA_KEY_TTL_SECONDS` of the data-key functions; absent: not set (the handlers' default applies). */
  readonly dataKeyTtlSeconds?: number;
  /** Target account/region; both absent: environment-agnostic stacks. */
  readonly account?: string;
  readonly region?: string;
  /** The vault: its account and region, and the service roles that may use it. */
  readonly vault: VaultConfig;
  /** The rotation schedule; absent: no schedule (rotations are started by hand). */
  readonly rotationSchedule?: RotationScheduleConfig;
  /** The drill schedule; absent: no workspace listed (drills are started by hand). */
  readonly drillSchedule?: ScheduleConfig;
  /** The full backup export schedule (`amk:backupSchedule`, the workspaces of `amk:drillWorkspaces`); absent: none. */
  readonly backupSchedule?: ScheduleConfig;
  /** The restoration test schedule (`amk:restorationSchedule`, the same workspaces); absent: none. */
  readonly restorationSchedule?: ScheduleConfig;
  /**
   * Pinned public keys of the backup signing key (base64 Ed25519, deduplicated, in the order given):
   * `AMK_BACKUP_PUBLIC_KEYS` of the export and restoration functions; empty: not set (the restoration test reads the
   * signing key's versions from the vault).
   */
  readonly backupPublicKeys: readonly string[];
  /** Email addresses subscribed to the alert topic, deduplicated, sorted; may be empty. */
  readonly alertEmails: readonly string[];
  /** Name of the event bus (this account and region) the token invalidation is published on. */
  readonly eventBusName: string;
  /** How long a recovery waits for an administrator to unlock the kit, in whole hours (1-168). */
  readonly unlockTimeoutHours: number;
  /** The existing Secrets Manager secret holding the access-token signing key (read by the token authorizer). */
  readonly tokenSigningSecret: SecretRef;
  /** The drill's CloudHSM backup check; absent: no cluster configured, the check is skipped. */
  readonly hsmBackups?: HsmBackupsConfig;
  /**
   * A production environment (`amk:production`): synth refuses it without the CloudHSM network, the PKCS#11 layer
   * and an account and region.
   */
  readonly production: boolean;
  /** Where the HSM functions run: the CloudHSM cluster's VPC; absent: outside any VPC (local and test synths). */
  readonly network?: NetworkConfig;
  /** Alarm settings. */
  readonly alarms: AlarmConfig;
  /** The backup bucket of the event-store exports: created here, or imported. */
  readonly backups: BackupConfig;
}

/** One subnet of the CloudHSM cluster's VPC the HSM functions are placed in. */
export interface SubnetConfig {
  readonly subnetId: string;
  readonly availabilityZone: string;
  /** Its route table: the DynamoDB gateway endpoint is added to it (needed when the endpoints are created here). */
  readonly routeTableId?: string;
}

/** The network of the HSM functions (see infra/lib/network.ts). */
export interface NetworkConfig {
  readonly vpcId: string;
  /** Deduplicated by subnet id, in the order given; at least one. */
  readonly subnets: readonly SubnetConfig[];
  /** The CloudHSM cluster's security group (the HSMs' ENIs carry it). */
  readonly hsmSecurityGroupId: string;
  /**
   * `create`: the stateless stack creates the VPC endpoints the functions need; `existing`: the VPC already has them
   * (shared endpoints of the platform), reached through their security group.
   */
  readonly endpoints:
    { readonly kind: "create" } | { readonly kind: "existing"; readonly securityGroupId: string };
  /** The region's AWS-managed DynamoDB prefix list (`com.amazonaws.<region>.dynamodb`): the gateway endpoint's. */
  readonly dynamoDbPrefixListId: string;
}

export interface AlarmConfig {
  /** Unlock refusals within 15 minutes that raise the unlock alarm. */
  readonly unlockRefusalThreshold: number;
  /** With a drill schedule: hours without a successful drill after which the missing-drill alarm fires. */
  readonly drillMissingAfterHours?: number;
  /**
   * With a restoration schedule: hours without a successful restoration test after which the missing-test alarm
   * fires (the schedule's longest gap + `RESTORATION_MISSING_SLACK_HOURS`).
   */
  readonly restorationMissingAfterHours?: number;
}

export type BackupLockMode = "GOVERNANCE" | "COMPLIANCE";

/** The backup bucket (event-store exports). */
export interface BackupConfig {
  /** Object lock default retention of the bucket created here. */
  readonly lockMode: BackupLockMode;
  readonly retentionDays: number;
  /** An existing bucket (e.g. in the backup account) and its KMS key, used instead of creating one. */
  readonly imported?: { readonly bucketArn: string; readonly keyArn: string };
}

/** When a workflow is started, and for which workspaces (one schedule per workspace). */
export interface ScheduleConfig {
  /** EventBridge Scheduler expression, `cron(...)` or `rate(...)`, in UTC. */
  readonly expression: string;
  /** Workspace ids, deduplicated, sorted; at least one. */
  readonly workspaceIds: readonly string[];
}
/** The rotation schedule: fires at most once a day. */
export type RotationScheduleConfig = ScheduleConfig;

/** The CloudHSM cluster whose backups the drill checks (`AMK_HSM_CLUSTER_ID`, in the service's region). */
export interface HsmBackupsConfig {
  readonly clusterId: string;
  /** A region where a recent copy of the backups must exist too (`AMK_HSM_BACKUP_COPY_REGION`). */
  readonly copyRegion?: string;
}

/**
 * Where the vault stack goes and who may use it. `account` / `region` are the resolved values (`amk:vaultAccount` /
 * `amk:vaultRegion`, else the service's); both absent: an environment-agnostic vault stack.
 */
export interface VaultConfig {
  readonly account?: string;
  readonly region?: string;
  /** Roles that write kits and factor secrets and read kits (the kit functions' roles), deduplicated, sorted. */
  readonly writerRoleArns: readonly string[];
  /** Roles that read factor secrets and kits (the unlock function's roles), deduplicated, sorted. */
  readonly unlockRoleArns: readonly string[];
  /** The deployed vault stack's `VaultAccessRoleArn` output, for the service side; absent: not wired yet. */
  readonly accessRoleArn?: string;
  /** The deployed vault stack's `VaultKeyArn` output (`AMK_VAULT_KMS_KEY_ID` of the kit writers); absent: not set. */
  readonly keyArn?: string;
}

/** Synth-time configuration error: every problem found, one line each, naming the context key. */
export class InvalidInfraConfigError extends AmkError {
  readonly code = "INVALID_INFRA_CONFIG";
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(
      'Invalid ArquivoMate Keys configuration in CDK context (set it in cdk.json "context" or with ' +
        "`cdk synth -c <key>=<value>`):\n" +
        problems.map((p) => `  - ${p}`).join("\n"),
      { context: { problems: [...problems] } },
    );
    this.problems = problems;
  }
}

const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const SECRET_COMPLETE_ARN =
  /^arn:aws[a-z-]*:secretsmanager:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:secret:([A-Za-z0-9/_+=.@-]+)-[A-Za-z0-9]{6}$/;
/** An IAM role ARN: no wildcard, no assumed-role session, a path allowed. */
const ROLE_ARN = /^arn:aws[a-z-]*:iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;
const ROLE_ARN_EXAMPLE = "arn:aws:iam::123456789012:role/amk-prod-kit";
/** A KMS key ARN (not an alias): a key id (UUID) or a multi-Region key id. */
const KMS_KEY_ARN =
  /^arn:aws[a-z-]*:kms:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):key\/(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$/;
const LAYER_VERSION_ARN =
  /^arn:aws[a-z-]*:lambda:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:layer:[A-Za-z0-9_-]{1,140}:\d+$/;

/** A context value: absent (`undefined`/`null`) means "use the default"; otherwise a string, checked per key. */
const optionalText = z
  .union([z.string(), z.null(), z.undefined()], { error: "must be a string (quote it in cdk.json)" })
  .transform((v) => (v === null ? undefined : v));

const ACCOUNT_ID = z.string().regex(/^\d{12}$/, "must be a 12-digit AWS account id");
/** An email address as SNS takes it for an email subscription (no display name, no comments). */
const EMAIL =
  /^(?=.{3,254}$)[A-Za-z0-9.!#$%&'*+=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;
const CLUSTER_ID = /^cluster-[a-z0-9]{11}$/;
/** EC2 resource ids: the prefix and 8 or 17 hexadecimal digits. */
const ec2Id = (prefix: string) => new RegExp(`^${prefix}-(?:[0-9a-f]{8}|[0-9a-f]{17})$`);
const VPC_ID = ec2Id("vpc");
const SUBNET_ID = ec2Id("subnet");
const SECURITY_GROUP_ID = ec2Id("sg");
const ROUTE_TABLE_ID = ec2Id("rtb");
const PREFIX_LIST_ID = ec2Id("pl");
const AVAILABILITY_ZONE = /^[a-z]{2}(?:-[a-z]+)+-\d[a-z]$/;
const S3_BUCKET_ARN = /^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const SECURITY_GROUP_MESSAGE = "must be a security group id such as sg-0123456789abcdef0";
const EVENT_BUS_NAME = z
  .string()
  .regex(
    /^[A-Za-z0-9._-]{1,256}$/,
    'must be the name (not the ARN) of an event bus in the target account and region, e.g. "default"',
  );
const REGION = z.string().regex(/^[a-z]{2}(?:-[a-z]+)+-\d$/, "must be an AWS region such as eu-central-1");

const TTL_MESSAGE = `must be a whole number of seconds from ${DATA_KEY_TTL_BOUNDS.min} to ${DATA_KEY_TTL_BOUNDS.max}`;
const UNLOCK_TIMEOUT_MESSAGE =
  `must be a whole number of hours from ${UNLOCK_TIMEOUT_BOUNDS.min} to ${UNLOCK_TIMEOUT_BOUNDS.max} ` +
  "(how long a recovery waits for an administrator to unlock the kit)";

const PRODUCTION_MESSAGE = 'must be true or false (a JSON boolean in cdk.json, or "true"/"false" with -c)';
const UNLOCK_REFUSAL_MESSAGE =
  `must be a whole number from ${UNLOCK_REFUSAL_THRESHOLD_BOUNDS.min} to ${UNLOCK_REFUSAL_THRESHOLD_BOUNDS.max} ` +
  "(refusals of the unlock function within 15 minutes that raise the alarm)";
const DRILL_MISSING_MESSAGE =
  `must be a whole number of hours from ${DRILL_MISSING_BOUNDS.min} to ${DRILL_MISSING_BOUNDS.max} ` +
  "(hours without a successful drill before the missing-drill alarm; CloudWatch looks back at most 7 days)";
const BACKUP_RETENTION_MESSAGE =
  `must be a whole number of days from ${BACKUP_RETENTION_BOUNDS.min} to ${BACKUP_RETENTION_BOUNDS.max} ` +
  "(the object lock default retention of the backup bucket)";

/** A boolean from context (a JSON boolean, or "true"/"false" with `-c`); absent: false. */
const optionalBoolean = (message: string) =>
  z.union([z.boolean(), z.string(), z.null(), z.undefined()], { error: message }).transform((v, ctx) => {
    if (v === null || v === undefined) return false;
    if (typeof v === "boolean") return v;
    if (v.trim() === "true") return true;
    if (v.trim() === "false") return false;
    ctx.addIssue({ code: "custom", message });
    return z.NEVER;
  });

/** A whole number from context (a number, or a string with `-c`); absent: undefined. */
const optionalWholeNumber = (message: string, min: number, max: number) =>
  z
    .union([z.string(), z.number(), z.null(), z.undefined()], { error: message })
    .transform((v) =>
      v === null || v === undefined
        ? undefined
        : typeof v === "string"
          ? v.trim() === ""
            ? NaN
            : Number(v)
          : v,
    )
    .pipe(z.number({ error: message }).int(message).min(min, message).max(max, message).optional());

const schema = z.object({
  environment: optionalText
    .transform((v) => v ?? DEFAULT_ENVIRONMENT)
    .pipe(
      z
        .string()
        .regex(
          /^[a-z][a-z0-9-]{0,19}$/,
          "must be 1-20 lower-case letters, digits or hyphens starting with a letter (it becomes part of stack names)",
        ),
    ),
  pkcs11Library: optionalText
    .transform((v) => v ?? DEFAULT_PKCS11_LIBRARY)
    .pipe(
      z
        .string()
        .regex(
          /^\/[^\0\s]*\.so(?:\.\d+)*$/,
          `must be the absolute path of a shared library (.so) inside the Lambda environment, e.g. ${DEFAULT_PKCS11_LIBRARY}`,
        ),
    ),
  tokenLabel: optionalText
    .transform((v) => v ?? DEFAULT_TOKEN_LABEL)
    .pipe(
      z
        .string()
        .refine(
          (v) => v.length > 0 && v.trim() === v && Buffer.byteLength(v, "utf8") <= 32,
          "must be a PKCS#11 token label: 1-32 bytes without leading or trailing blanks",
        ),
    ),
  // The value of this key is never echoed in messages: a misplaced PIN must not end up in a CI log.
  pinSecret: optionalText,
  pkcs11LayerArn: optionalText.pipe(
    z
      .string()
      .regex(
        LAYER_VERSION_ARN,
        "must be a Lambda layer version ARN such as arn:aws:lambda:eu-central-1:123456789012:layer:cloudhsm-pkcs11:3",
      )
      .optional(),
  ),
  lifecycleEventBus: optionalText.transform((v) => v ?? DEFAULT_LIFECYCLE_EVENT_BUS).pipe(EVENT_BUS_NAME),
  lifecycleEventSource: optionalText
    .transform((v) => v ?? DEFAULT_LIFECYCLE_EVENT_SOURCE)
    .pipe(
      z
        .string()
        .regex(
          /^(?!aws\.)[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$/,
          `must be an EventBridge event source such as ${DEFAULT_LIFECYCLE_EVENT_SOURCE} (not starting with "aws.")`,
        ),
    ),
  dataKeyTtlSeconds: optionalWholeNumber(TTL_MESSAGE, DATA_KEY_TTL_BOUNDS.min, DATA_KEY_TTL_BOUNDS.max),
  account: optionalText.pipe(ACCOUNT_ID.optional()),
  region: optionalText.pipe(REGION.optional()),
  vaultAccount: optionalText.pipe(ACCOUNT_ID.optional()),
  vaultRegion: optionalText.pipe(REGION.optional()),
  vaultAccessRoleArn: optionalText.pipe(
    z.string().regex(ROLE_ARN, `must be an IAM role ARN such as ${ROLE_ARN_EXAMPLE}`).optional(),
  ),
  vaultKeyArn: optionalText.pipe(
    z
      .string()
      .regex(
        KMS_KEY_ARN,
        "must be a KMS key ARN (the vault stack's VaultKeyArn output) such as " +
          "arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab",
      )
      .optional(),
  ),
  rotationSchedule: optionalText,
  drillSchedule: optionalText,
  backupSchedule: optionalText,
  restorationSchedule: optionalText,
  eventBusName: optionalText.transform((v) => v ?? DEFAULT_EVENT_BUS).pipe(EVENT_BUS_NAME),
  unlockTimeoutHours: optionalWholeNumber(
    UNLOCK_TIMEOUT_MESSAGE,
    UNLOCK_TIMEOUT_BOUNDS.min,
    UNLOCK_TIMEOUT_BOUNDS.max,
  ).transform((v) => v ?? DEFAULT_UNLOCK_TIMEOUT_HOURS),
  // Never echoed either: a misplaced signing key must not end up in a CI log.
  tokenSigningSecret: optionalText,
  hsmClusterId: optionalText.pipe(
    z.string().regex(CLUSTER_ID, "must be a CloudHSM cluster id such as cluster-jxhlf7644ne").optional(),
  ),
  hsmBackupCopyRegion: optionalText.pipe(REGION.optional()),
  production: optionalBoolean(PRODUCTION_MESSAGE),
  vpcId: optionalText.pipe(
    z.string().regex(VPC_ID, "must be a VPC id such as vpc-0123456789abcdef0").optional(),
  ),
  hsmSecurityGroupId: optionalText.pipe(
    z.string().regex(SECURITY_GROUP_ID, `${SECURITY_GROUP_MESSAGE} (the CloudHSM cluster's)`).optional(),
  ),
  vpcEndpoints: optionalText.pipe(
    z
      .enum(["create", "existing"], {
        error:
          'must be "create" (the stack creates the VPC endpoints) or "existing" (the VPC has them already, ' +
          "reached through amk:vpcEndpointSecurityGroupId)",
      })
      .optional(),
  ),
  vpcEndpointSecurityGroupId: optionalText.pipe(
    z.string().regex(SECURITY_GROUP_ID, `${SECURITY_GROUP_MESSAGE} (the existing VPC endpoints')`).optional(),
  ),
  dynamoDbPrefixListId: optionalText.pipe(
    z
      .string()
      .regex(
        PREFIX_LIST_ID,
        "must be the region's DynamoDB prefix list id such as pl-66a5400f (aws ec2 describe-managed-prefix-lists " +
          "--filters Name=prefix-list-name,Values=com.amazonaws.<region>.dynamodb)",
      )
      .optional(),
  ),
  unlockRefusalThreshold: optionalWholeNumber(
    UNLOCK_REFUSAL_MESSAGE,
    UNLOCK_REFUSAL_THRESHOLD_BOUNDS.min,
    UNLOCK_REFUSAL_THRESHOLD_BOUNDS.max,
  ).transform((v) => v ?? DEFAULT_UNLOCK_REFUSAL_THRESHOLD),
  drillMissingAfterHours: optionalWholeNumber(
    DRILL_MISSING_MESSAGE,
    DRILL_MISSING_BOUNDS.min,
    DRILL_MISSING_BOUNDS.max,
  ),
  backupLockMode: optionalText
    .transform((v) => v ?? DEFAULT_BACKUP_LOCK_MODE)
    .pipe(
      z.enum(["GOVERNANCE", "COMPLIANCE"], {
        error: 'must be "GOVERNANCE" or "COMPLIANCE" (the object lock mode of the backup bucket)',
      }),
    ),
  backupRetentionDays: optionalWholeNumber(
    BACKUP_RETENTION_MESSAGE,
    BACKUP_RETENTION_BOUNDS.min,
    BACKUP_RETENTION_BOUNDS.max,
  ).transform((v) => v ?? DEFAULT_BACKUP_RETENTION_DAYS),
  backupBucketArn: optionalText.pipe(
    z
      .string()
      .regex(S3_BUCKET_ARN, "must be an S3 bucket ARN such as arn:aws:s3:::amk-prod-backups")
      .optional(),
  ),
  backupBucketKeyArn: optionalText.pipe(
    z
      .string()
      .regex(
        KMS_KEY_ARN,
        "must be the ARN of the backup bucket's KMS key such as " +
          "arn:aws:kms:eu-central-1:333333333333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
      )
      .optional(),
  ),
});

/** Bound of the rotation schedule: every run creates a master key version and re-wraps every document. */
export const ROTATION_SCHEDULE_MIN_INTERVAL_MINUTES = 24 * 60;
/** Bound of the drill schedule: a drill reads the kit and decrypts a sample in the HSM, at most once an hour. */
export const DRILL_SCHEDULE_MIN_INTERVAL_MINUTES = 60;
/** Bound of the backup schedule: a full export reads the whole workspace, at most once an hour (as the drill). */
export const BACKUP_SCHEDULE_MIN_INTERVAL_MINUTES = 60;
/** Bound of the restoration schedule: a test restores into a scratch table and opens the kit, at most once a day. */
export const RESTORATION_SCHEDULE_MIN_INTERVAL_MINUTES = 24 * 60;
const RATE = /^rate\((\d{1,6}) (minute|minutes|hour|hours|day|days)\)$/;
const CRON = /^cron\(([^()]*)\)$/;
const CRON_FIELD = /^[0-9A-Za-z*?,/#L-]+$/;
const MINUTES_PER_UNIT: Record<string, number> = { minute: 1, hour: 60, day: 1440 };

/** What each schedule starts, and how often it may: `daily` = at most once a day, otherwise at most once an hour. */
const SCHEDULE_KINDS = {
  rotation: { label: "a rotation", daily: true, minInterval: ROTATION_SCHEDULE_MIN_INTERVAL_MINUTES },
  drill: { label: "a drill", daily: false, minInterval: DRILL_SCHEDULE_MIN_INTERVAL_MINUTES },
  backup: { label: "a backup export", daily: false, minInterval: BACKUP_SCHEDULE_MIN_INTERVAL_MINUTES },
  restoration: {
    label: "a restoration test",
    daily: true,
    minInterval: RESTORATION_SCHEDULE_MIN_INTERVAL_MINUTES,
  },
} as const;
type ScheduleKind = keyof typeof SCHEDULE_KINDS;

/**
 * Checks an EventBridge Scheduler expression for the rotation: `rate(<n> <unit>)` of at least a day, or a six-field
 * `cron(...)` whose minute and hour are single numbers (so it fires at most once a day). Returns the problem, if any.
 */
export function rotationScheduleProblem(expression: string): string | undefined {
  return scheduleProblem(expression, "rotation");
}

/**
 * Checks an EventBridge Scheduler expression for the drill: `rate(<n> <unit>)` of at least an hour, or a six-field
 * `cron(...)` whose minute is a single number (so it fires at most once an hour). Returns the problem, if any.
 */
export function drillScheduleProblem(expression: string): string | undefined {
  return scheduleProblem(expression, "drill");
}

/** Checks an EventBridge Scheduler expression for the backup export: as for the drill, at most once an hour. */
export function backupScheduleProblem(expression: string): string | undefined {
  return scheduleProblem(expression, "backup");
}

/**
 * Checks an EventBridge Scheduler expression for the restoration test: as for the rotation, at most once a day (its
 * longest gap is checked against the missing-test alarm's window in `loadConfig`).
 */
export function restorationScheduleProblem(expression: string): string | undefined {
  return scheduleProblem(expression, "restoration");
}

function scheduleProblem(expression: string, what: ScheduleKind): string | undefined {
  const { label, daily, minInterval } = SCHEDULE_KINDS[what];
  const rate = RATE.exec(expression);
  if (rate !== null) {
    const n = Number(rate[1]);
    const unit = rate[2]!;
    if (n < 1) return "a rate must be at least 1";
    if ((n === 1) !== !unit.endsWith("s")) {
      return `the unit must be singular for 1 and plural otherwise (e.g. "rate(1 day)", "rate(30 days)")`;
    }
    if (n * MINUTES_PER_UNIT[unit.replace(/s$/, "")]! < minInterval) {
      return daily
        ? `${label} may be scheduled at most once a day (rate of at least 1 day)`
        : `${label} may be scheduled at most once an hour (rate of at least 1 hour)`;
    }
    return undefined;
  }
  const cron = CRON.exec(expression);
  if (cron !== null) {
    const fields = cron[1]!.trim().split(/\s+/);
    if (fields.length !== 6 || !fields.every((f) => CRON_FIELD.test(f))) {
      return "a cron expression has six fields: cron(minutes hours day-of-month month day-of-week year)";
    }
    const [minutes, hours, dayOfMonth, , dayOfWeek] = fields as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const single = (field: string, max: number) => /^\d{1,2}$/.test(field) && Number(field) <= max;
    if (daily && (!single(minutes, 59) || !single(hours, 23))) {
      return (
        `the minutes and hours of the cron expression must be single numbers (0-59, 0-23): ${label} may be ` +
        "scheduled at most once a day"
      );
    }
    if (!daily && !single(minutes, 59)) {
      return `the minutes of the cron expression must be a single number (0-59): ${label} may be scheduled at most once an hour`;
    }
    if ((dayOfMonth === "?") === (dayOfWeek === "?")) {
      return "exactly one of day-of-month and day-of-week must be ? (e.g. cron(0 3 1 * ? *))";
    }
    return undefined;
  }
  return daily
    ? 'must be an EventBridge Scheduler expression: "rate(<n> days)" or "cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)"'
    : 'must be an EventBridge Scheduler expression: "rate(<n> hours)", "rate(<n> days)" or "cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)"';
}

/**
 * A list from context: absent, a JSON array of strings (cdk.json), or a string (`-c key=a,b`) holding a comma- or
 * blank-separated list or a JSON array. Returns the items (deduplicated, sorted unless `keepOrder`) or the problems,
 * one per bad entry.
 */
function parseList(
  key: string,
  value: unknown,
  what: { plural: string; isValid: (item: string) => boolean; hint: string; keepOrder?: boolean },
): { items: string[] } | { problems: string[] } {
  let items: unknown[];
  if (value === undefined || value === null) items = [];
  else if (Array.isArray(value)) items = value;
  else if (typeof value === "string" && value.trim().startsWith("[")) {
    try {
      const parsed: unknown = JSON.parse(value);
      if (!Array.isArray(parsed)) throw new Error("not an array");
      items = parsed;
    } catch {
      return { problems: [`${key}: is not a valid JSON array of ${what.plural}`] };
    }
  } else if (typeof value === "string") items = value.split(/[\s,]+/).filter((v) => v !== "");
  else {
    return {
      problems: [
        `${key}: must be a list of ${what.plural} (a JSON array in cdk.json, or comma-separated with -c)`,
      ],
    };
  }
  const problems: string[] = [];
  const found = new Set<string>();
  for (const item of items) {
    if (typeof item === "string" && what.isValid(item)) found.add(item);
    else {
      const shown = typeof item === "string" ? `"${item.slice(0, 200)}"` : typeof item;
      problems.push(`${key}: ${shown} ${what.hint}`);
    }
  }
  if (problems.length > 0) return { problems };
  return { items: what.keepOrder === true ? [...found] : [...found].sort() };
}

/** A list of role ARNs from context (see `parseList`). */
function parseRoleArnList(key: string, value: unknown): { arns: string[] } | { problems: string[] } {
  const list = parseList(key, value, {
    plural: "IAM role ARNs",
    isValid: (item) => ROLE_ARN.test(item),
    hint: `is not an IAM role ARN (e.g. ${ROLE_ARN_EXAMPLE}; no wildcards)`,
  });
  return "problems" in list ? list : { arns: list.items };
}

/**
 * A secret reference from context: absent (the default name), a complete ARN, or a name. `looksLikeTheSecret` tells
 * a value that is probably the secret itself (refused, and never echoed).
 */
function parseSecretRef(
  value: string | undefined,
  defaultName: string,
  looksLikeTheSecret: (value: string) => string | undefined,
): SecretRef | string {
  if (value === undefined) return { kind: "name", name: defaultName };
  if (value.startsWith("arn:")) {
    const m = SECRET_COMPLETE_ARN.exec(value);
    if (m?.[1] === undefined) {
      return (
        "must be a secret name or a complete Secrets Manager secret ARN " +
        "(arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>); partial ARNs are not accepted"
      );
    }
    return { kind: "arn", arn: value, name: m[1] };
  }
  const secret = looksLikeTheSecret(value);
  if (secret !== undefined) return secret;
  if (!SECRET_NAME.test(value)) {
    return "must be a Secrets Manager secret name: 1-512 characters from A-Z a-z 0-9 / _ + = . @ -";
  }
  return { kind: "name", name: value };
}

function parsePinSecret(value: string | undefined, environment: string): PinSecretRef | string {
  return parseSecretRef(value, defaultPinSecretName(environment), (v) =>
    v.includes(":")
      ? "is neither a secret name nor an ARN (secret names contain no ':'). It looks like a PIN: " +
        "configure the name or ARN of the secret that holds the PIN, never the PIN itself"
      : undefined,
  );
}

/**
 * Standard base64 of at least 32 bytes, mixing upper case, lower case and digits, without a `-`, `_` or `.`: more
 * likely a pasted signing key than a secret's name (names such as `arquivomate-keys/prod/token-signing-key` pass).
 */
const LOOKS_LIKE_KEY = /^(?=.*[A-Z])(?=.*[a-z])(?=.*\d)[A-Za-z0-9+/]{42,}={0,2}$/;

function parseTokenSigningSecret(value: string | undefined, environment: string): SecretRef | string {
  return parseSecretRef(value, defaultTokenSigningSecretName(environment), (v) => {
    if (v.includes(":")) return "is neither a secret name nor an ARN (secret names contain no ':')";
    if (LOOKS_LIKE_KEY.test(v)) {
      return (
        "looks like a key rather than a secret name: configure the name or ARN of the secret that holds the " +
        "signing key, never the key itself"
      );
    }
    return undefined;
  });
}

/** Reads and validates the configuration from the context of `scope` (usually the App). Throws on any problem. */
export function loadConfig(scope: IConstruct): AmkConfig {
  const raw = Object.fromEntries(
    Object.entries(CONTEXT_KEYS).map(([field, key]) => [field, scope.node.tryGetContext(key) as unknown]),
  ) as Record<ConfigField, unknown>;
  const problems: string[] = [];

  const known = new Set<string>(Object.values(CONTEXT_KEYS));
  for (const key of Object.keys(scope.node.getAllContext())) {
    if (key.startsWith("amk:") && !known.has(key)) {
      problems.push(`${key}: unknown context key (known keys: ${[...known].join(", ")})`);
    }
  }

  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = issue.path[0] as ConfigField;
      const key = CONTEXT_KEYS[field] ?? String(field);
      const shown =
        SECRET_FIELDS.has(field) || typeof raw[field] !== "string" ? "" : ` (got "${String(raw[field])}")`;
      problems.push(`${key}: ${issue.message}${shown}`);
    }
  }
  const environment = parsed.success ? parsed.data.environment : DEFAULT_ENVIRONMENT;
  let pinSecret: PinSecretRef | undefined;
  if (raw.pinSecret === undefined || raw.pinSecret === null || typeof raw.pinSecret === "string") {
    const ref = parsePinSecret(raw.pinSecret ?? undefined, environment);
    if (typeof ref === "string") problems.push(`${CONTEXT_KEYS.pinSecret}: ${ref}`);
    else pinSecret = ref;
  }
  let tokenSigningSecret: SecretRef | undefined;
  if (
    raw.tokenSigningSecret === undefined ||
    raw.tokenSigningSecret === null ||
    typeof raw.tokenSigningSecret === "string"
  ) {
    const ref = parseTokenSigningSecret(raw.tokenSigningSecret ?? undefined, environment);
    if (typeof ref === "string") problems.push(`${CONTEXT_KEYS.tokenSigningSecret}: ${ref}`);
    else tokenSigningSecret = ref;
  }
  if (parsed.success && (parsed.data.account === undefined) !== (parsed.data.region === undefined)) {
    problems.push(
      `${CONTEXT_KEYS.account} / ${CONTEXT_KEYS.region}: give both (environment-specific stacks) or neither ` +
        "(environment-agnostic stacks)",
    );
  }

  const writers = parseRoleArnList(CONTEXT_KEYS.vaultWriterRoleArns, raw.vaultWriterRoleArns);
  const unlockers = parseRoleArnList(CONTEXT_KEYS.unlockRoleArns, raw.unlockRoleArns);
  for (const list of [writers, unlockers]) if ("problems" in list) problems.push(...list.problems);
  const rotationWorkspaces = parseList(CONTEXT_KEYS.rotationWorkspaces, raw.rotationWorkspaces, {
    plural: "workspace ids",
    isValid: (item) => WorkspaceIdSchema.safeParse(item).success,
    hint: "is not a workspace id (letters, digits, - and _, 1-64, starting with a letter or digit)",
  });
  if ("problems" in rotationWorkspaces) problems.push(...rotationWorkspaces.problems);
  const drillWorkspaces = parseList(CONTEXT_KEYS.drillWorkspaces, raw.drillWorkspaces, {
    plural: "workspace ids",
    isValid: (item) => WorkspaceIdSchema.safeParse(item).success,
    hint: "is not a workspace id (letters, digits, - and _, 1-64, starting with a letter or digit)",
  });
  if ("problems" in drillWorkspaces) problems.push(...drillWorkspaces.problems);
  const alertEmails = parseList(CONTEXT_KEYS.alertEmails, raw.alertEmails, {
    plural: "email addresses",
    isValid: (item) => EMAIL.test(item),
    hint: "is not an email address (e.g. keys-oncall@example.com; no display name)",
  });
  if ("problems" in alertEmails) problems.push(...alertEmails.problems);
  const backupPublicKeys = parseList(CONTEXT_KEYS.backupPublicKeys, raw.backupPublicKeys, {
    plural: "backup public keys",
    isValid: (item) => {
      try {
        backupPublicKey(item);
        return true;
      } catch {
        return false;
      }
    },
    hint: "is not a backup public key (an Ed25519 public key: 32 bytes as base64 or base64url)",
    keepOrder: true,
  });
  if ("problems" in backupPublicKeys) problems.push(...backupPublicKeys.problems);

  let vaultAccount: string | undefined;
  let vaultRegion: string | undefined;
  if (parsed.success) {
    vaultAccount = parsed.data.vaultAccount ?? parsed.data.account;
    vaultRegion = parsed.data.vaultRegion ?? parsed.data.region;
    const vaultGiven = parsed.data.vaultAccount !== undefined || parsed.data.vaultRegion !== undefined;
    // Without amk:vaultAccount / amk:vaultRegion, an account without a region is already reported above.
    if (vaultGiven && (vaultAccount === undefined) !== (vaultRegion === undefined)) {
      problems.push(
        `${CONTEXT_KEYS.vaultAccount} / ${CONTEXT_KEYS.vaultRegion}: the vault stack needs both an account and a ` +
          `region or neither (each defaults to ${CONTEXT_KEYS.account} / ${CONTEXT_KEYS.region}); got ` +
          (vaultAccount === undefined
            ? `region ${vaultRegion} without an account`
            : `account ${vaultAccount} without a region`),
      );
    }
    const accessRole = parsed.data.vaultAccessRoleArn;
    const m = accessRole === undefined ? null : ROLE_ARN.exec(accessRole);
    if (m !== null) {
      const expectedName = vaultAccessRoleName({ environment: parsed.data.environment });
      if (m[2] !== expectedName) {
        problems.push(
          `${CONTEXT_KEYS.vaultAccessRoleArn}: must be the vault stack's role ${expectedName} (its VaultAccessRoleArn ` +
            `output), got "${accessRole}"`,
        );
      } else if (vaultAccount !== undefined && m[1] !== vaultAccount) {
        problems.push(
          `${CONTEXT_KEYS.vaultAccessRoleArn}: the role is in account ${m[1]}, but the vault is in account ` +
            `${vaultAccount} (${CONTEXT_KEYS.vaultAccount}, default ${CONTEXT_KEYS.account})`,
        );
      }
    }
    const keyArn = parsed.data.vaultKeyArn;
    const k = keyArn === undefined ? null : KMS_KEY_ARN.exec(keyArn);
    if (k !== null && (vaultRegion ?? k[1]) !== k[1]) {
      problems.push(
        `${CONTEXT_KEYS.vaultKeyArn}: the key is in region ${k[1]}, but the vault is in region ${vaultRegion} ` +
          `(${CONTEXT_KEYS.vaultRegion}, default ${CONTEXT_KEYS.region})`,
      );
    }
    if (k !== null && (vaultAccount ?? k[2]) !== k[2]) {
      problems.push(
        `${CONTEXT_KEYS.vaultKeyArn}: the key is in account ${k[2]}, but the vault is in account ${vaultAccount} ` +
          `(${CONTEXT_KEYS.vaultAccount}, default ${CONTEXT_KEYS.account})`,
      );
    }
  }

  let rotationSchedule: RotationScheduleConfig | undefined;
  if (parsed.success && "items" in rotationWorkspaces) {
    const expression = parsed.data.rotationSchedule;
    const workspaceIds = rotationWorkspaces.items;
    if (expression === undefined) {
      if (workspaceIds.length > 0) {
        problems.push(
          `${CONTEXT_KEYS.rotationWorkspaces}: is set but ${CONTEXT_KEYS.rotationSchedule} is not; set both to ` +
            "schedule rotations, or neither",
        );
      }
    } else {
      const problem = rotationScheduleProblem(expression);
      if (problem !== undefined) {
        problems.push(`${CONTEXT_KEYS.rotationSchedule}: ${problem} (got "${expression.slice(0, 200)}")`);
      } else if (workspaceIds.length === 0) {
        problems.push(
          `${CONTEXT_KEYS.rotationSchedule}: needs ${CONTEXT_KEYS.rotationWorkspaces}, the workspace ids to rotate ` +
            "(a JSON array in cdk.json, or comma-separated with -c)",
        );
      } else rotationSchedule = { expression, workspaceIds };
    }
  }

  let drillSchedule: ScheduleConfig | undefined;
  if (parsed.success && "items" in drillWorkspaces) {
    const given = parsed.data.drillSchedule;
    const expression = given ?? DEFAULT_DRILL_SCHEDULE;
    const workspaceIds = drillWorkspaces.items;
    const problem = drillScheduleProblem(expression);
    if (problem !== undefined) {
      problems.push(`${CONTEXT_KEYS.drillSchedule}: ${problem} (got "${expression.slice(0, 200)}")`);
    } else if (workspaceIds.length > 0) drillSchedule = { expression, workspaceIds };
    else if (given !== undefined) {
      problems.push(
        `${CONTEXT_KEYS.drillSchedule}: needs ${CONTEXT_KEYS.drillWorkspaces}, the workspace ids to drill ` +
          "(a JSON array in cdk.json, or comma-separated with -c)",
      );
    }
  }

  // Backups and restoration tests: the workspaces of amk:drillWorkspaces, each schedule on by default.
  const workspaceSchedule = (
    key: string,
    given: string | undefined,
    fallback: string,
    problemOf: (expression: string) => string | undefined,
    what: string,
  ): ScheduleConfig | undefined => {
    if (!("items" in drillWorkspaces)) return undefined;
    const expression = given ?? fallback;
    const problem = problemOf(expression);
    if (problem !== undefined) {
      problems.push(`${key}: ${problem} (got "${expression.slice(0, 200)}")`);
      return undefined;
    }
    if (drillWorkspaces.items.length > 0) return { expression, workspaceIds: drillWorkspaces.items };
    if (given !== undefined) {
      problems.push(
        `${key}: needs ${CONTEXT_KEYS.drillWorkspaces}, the workspace ids to ${what} (a JSON array in cdk.json, ` +
          "or comma-separated with -c)",
      );
    }
    return undefined;
  };
  let backupSchedule: ScheduleConfig | undefined;
  let restorationSchedule: ScheduleConfig | undefined;
  let restorationMissingAfterHours: number | undefined;
  if (parsed.success) {
    backupSchedule = workspaceSchedule(
      CONTEXT_KEYS.backupSchedule,
      parsed.data.backupSchedule,
      DEFAULT_BACKUP_SCHEDULE,
      backupScheduleProblem,
      "back up",
    );
    restorationSchedule = workspaceSchedule(
      CONTEXT_KEYS.restorationSchedule,
      parsed.data.restorationSchedule,
      DEFAULT_RESTORATION_SCHEDULE,
      restorationScheduleProblem,
      "restoration-test",
    );
    if (restorationSchedule !== undefined) {
      const interval = scheduleIntervalMinutes(restorationSchedule.expression);
      const hours = interval === undefined ? undefined : Math.ceil(interval / 60);
      const maxGap = DRILL_MISSING_BOUNDS.max - RESTORATION_MISSING_SLACK_HOURS;
      if (hours === undefined) {
        problems.push(
          `${CONTEXT_KEYS.restorationSchedule}: cannot tell how far apart the restoration tests of ` +
            `"${restorationSchedule.expression}" are (L, W, # or a year), which the missing-test alarm needs: use ` +
            "rate(...) or a cron expression without them",
        );
      } else if (hours > maxGap) {
        problems.push(
          `${CONTEXT_KEYS.restorationSchedule}: restoration tests ${hours} h apart are too rare for the missing-test ` +
            `alarm (CloudWatch looks back at most ${DRILL_MISSING_BOUNDS.max} h, and the alarm allows ` +
            `${RESTORATION_MISSING_SLACK_HOURS} h of slack): schedule a test at least every ${maxGap} h, e.g. ` +
            `"${DEFAULT_RESTORATION_SCHEDULE}"`,
        );
      } else restorationMissingAfterHours = hours + RESTORATION_MISSING_SLACK_HOURS;
    }
  }

  let hsmBackups: HsmBackupsConfig | undefined;
  if (parsed.success) {
    const { hsmClusterId, hsmBackupCopyRegion, region } = parsed.data;
    if (hsmClusterId !== undefined) {
      if (hsmBackupCopyRegion !== undefined && hsmBackupCopyRegion === region) {
        problems.push(
          `${CONTEXT_KEYS.hsmBackupCopyRegion}: must be another region than the cluster's (${CONTEXT_KEYS.region}, ` +
            `${region}): the copy is what survives the loss of that region`,
        );
      }
      hsmBackups = {
        clusterId: hsmClusterId,
        ...(hsmBackupCopyRegion === undefined ? {} : { copyRegion: hsmBackupCopyRegion }),
      };
    } else if (hsmBackupCopyRegion !== undefined) {
      problems.push(
        `${CONTEXT_KEYS.hsmBackupCopyRegion}: needs ${CONTEXT_KEYS.hsmClusterId}, the cluster whose backups are copied`,
      );
    }
  }

  const subnets = parseSubnets(CONTEXT_KEYS.vpcSubnets, raw.vpcSubnets);
  if ("problems" in subnets) problems.push(...subnets.problems);
  let network: NetworkConfig | undefined;
  if (parsed.success && "subnets" in subnets) {
    const result = networkFrom(parsed.data, subnets.subnets, raw.vpcEndpoints !== undefined);
    problems.push(...result.problems);
    network = result.network;
    const d = parsed.data;
    if (network !== undefined) {
      // The functions reach AWS through VPC endpoints of their own region only (Secrets Manager, STS and CloudHSM
      // have no cross-region PrivateLink), and have no other way out.
      if (vaultRegion !== undefined && vaultRegion !== d.region) {
        problems.push(
          `${CONTEXT_KEYS.vaultRegion}: the HSM functions run in the VPC (${CONTEXT_KEYS.vpcId}) without internet ` +
            `egress and reach Secrets Manager and STS through endpoints of the service's region only, so the vault ` +
            `must be in that region (${d.region ?? `set ${CONTEXT_KEYS.region}`}; another account is fine), got ` +
            `${vaultRegion}`,
        );
      }
    }
    if (d.production) {
      if (network === undefined && result.problems.length === 0) {
        problems.push(
          `${CONTEXT_KEYS.production}: a production environment runs its HSM functions in the CloudHSM cluster's ` +
            `VPC: set ${CONTEXT_KEYS.vpcId}, ${CONTEXT_KEYS.vpcSubnets}, ${CONTEXT_KEYS.hsmSecurityGroupId} and ` +
            `${CONTEXT_KEYS.dynamoDbPrefixListId} (see docs/deploy.md)`,
        );
      }
      if (d.pkcs11LayerArn === undefined) {
        problems.push(
          `${CONTEXT_KEYS.production}: a production environment needs ${CONTEXT_KEYS.pkcs11LayerArn}, the layer ` +
            "with the CloudHSM PKCS#11 library and pkcs11js (see docs/deploy.md)",
        );
      }
      if (d.account === undefined || d.region === undefined) {
        problems.push(
          `${CONTEXT_KEYS.production}: a production environment needs ${CONTEXT_KEYS.account} and ` +
            `${CONTEXT_KEYS.region} (no environment-agnostic stacks)`,
        );
      }
    }
  }

  let drillMissingAfterHours: number | undefined;
  if (parsed.success) {
    const given = parsed.data.drillMissingAfterHours;
    if (drillSchedule === undefined) {
      if (given !== undefined) {
        problems.push(
          `${CONTEXT_KEYS.drillMissingAfterHours}: needs a drill schedule (${CONTEXT_KEYS.drillWorkspaces}); ` +
            "without scheduled drills there is no missing-drill alarm",
        );
      }
    } else {
      const interval = scheduleIntervalMinutes(drillSchedule.expression);
      const intervalHours = interval === undefined ? undefined : Math.ceil(interval / 60);
      if (given !== undefined) {
        if (intervalHours !== undefined && given <= intervalHours) {
          problems.push(
            `${CONTEXT_KEYS.drillMissingAfterHours}: ${given} h is not longer than the drill schedule's interval ` +
              `(${intervalHours} h): the alarm would fire between two drills`,
          );
        } else drillMissingAfterHours = given;
      } else if (intervalHours === undefined) {
        problems.push(
          `${CONTEXT_KEYS.drillSchedule}: cannot tell how far apart the drills of "${drillSchedule.expression}" are ` +
            `(L, W, # or a year): set ${CONTEXT_KEYS.drillMissingAfterHours}, the hours without a successful drill ` +
            "after which the missing-drill alarm fires",
        );
      } else if (intervalHours + DRILL_MISSING_SLACK_HOURS > DRILL_MISSING_BOUNDS.max) {
        problems.push(
          `${CONTEXT_KEYS.drillSchedule}: drills ${intervalHours} h apart are too rare for the missing-drill alarm ` +
            `(CloudWatch looks back at most ${DRILL_MISSING_BOUNDS.max} h, and the alarm allows ` +
            `${DRILL_MISSING_SLACK_HOURS} h of slack): schedule a drill at least every ` +
            `${DRILL_MISSING_BOUNDS.max - DRILL_MISSING_SLACK_HOURS} h`,
        );
      } else drillMissingAfterHours = intervalHours + DRILL_MISSING_SLACK_HOURS;
    }
  }

  let backups: BackupConfig | undefined;
  if (parsed.success) {
    const { backupBucketArn, backupBucketKeyArn, backupLockMode, backupRetentionDays } = parsed.data;
    if ((backupBucketArn === undefined) !== (backupBucketKeyArn === undefined)) {
      problems.push(
        `${CONTEXT_KEYS.backupBucketArn} / ${CONTEXT_KEYS.backupBucketKeyArn}: an existing backup bucket needs both ` +
          "its ARN and the ARN of its KMS key (or neither: the stateful stack creates the bucket)",
      );
    }
    backups = {
      lockMode: backupLockMode,
      retentionDays: backupRetentionDays,
      ...(backupBucketArn !== undefined && backupBucketKeyArn !== undefined
        ? { imported: { bucketArn: backupBucketArn, keyArn: backupBucketKeyArn } }
        : {}),
    };
  }

  if (
    problems.length > 0 ||
    !parsed.success ||
    pinSecret === undefined ||
    tokenSigningSecret === undefined ||
    "problems" in writers ||
    "problems" in unlockers ||
    "problems" in rotationWorkspaces ||
    "problems" in drillWorkspaces ||
    "problems" in alertEmails ||
    "problems" in backupPublicKeys ||
    "problems" in subnets ||
    backups === undefined
  ) {
    throw new InvalidInfraConfigError(problems);
  }
  const d = parsed.data;
  return {
    environment: d.environment,
    pkcs11Library: d.pkcs11Library,
    tokenLabel: d.tokenLabel,
    pinSecret,
    ...(d.pkcs11LayerArn === undefined ? {} : { pkcs11LayerArn: d.pkcs11LayerArn }),
    lifecycleEventBus: d.lifecycleEventBus,
    lifecycleEventSource: d.lifecycleEventSource,
    ...(d.dataKeyTtlSeconds === undefined ? {} : { dataKeyTtlSeconds: d.dataKeyTtlSeconds }),
    ...(d.account === undefined ? {} : { account: d.account }),
    ...(d.region === undefined ? {} : { region: d.region }),
    vault: {
      ...(vaultAccount === undefined ? {} : { account: vaultAccount }),
      ...(vaultRegion === undefined ? {} : { region: vaultRegion }),
      writerRoleArns: writers.arns,
      unlockRoleArns: unlockers.arns,
      ...(d.vaultAccessRoleArn === undefined ? {} : { accessRoleArn: d.vaultAccessRoleArn }),
      ...(d.vaultKeyArn === undefined ? {} : { keyArn: d.vaultKeyArn }),
    },
    ...(rotationSchedule === undefined ? {} : { rotationSchedule }),
    ...(drillSchedule === undefined ? {} : { drillSchedule }),
    ...(backupSchedule === undefined ? {} : { backupSchedule }),
    ...(restorationSchedule === undefined ? {} : { restorationSchedule }),
    backupPublicKeys: backupPublicKeys.items,
    alertEmails: alertEmails.items,
    eventBusName: d.eventBusName,
    unlockTimeoutHours: d.unlockTimeoutHours,
    tokenSigningSecret,
    ...(hsmBackups === undefined ? {} : { hsmBackups }),
    production: d.production,
    ...(network === undefined ? {} : { network }),
    alarms: {
      unlockRefusalThreshold: d.unlockRefusalThreshold,
      ...(drillMissingAfterHours === undefined ? {} : { drillMissingAfterHours }),
      ...(restorationMissingAfterHours === undefined ? {} : { restorationMissingAfterHours }),
    },
    backups,
  };
}

/**
 * The subnets from context: absent, or a JSON array (cdk.json, or a string with `-c`) of objects
 * `{"subnetId", "availabilityZone", "routeTableId"?}`. Returns them (deduplicated by id) or the problems.
 */
function parseSubnets(key: string, value: unknown): { subnets: SubnetConfig[] } | { problems: string[] } {
  const example =
    '[{"subnetId": "subnet-0123456789abcdef0", "availabilityZone": "eu-central-1a", "routeTableId": "rtb-0123456789abcdef0"}]';
  let items: unknown;
  if (value === undefined || value === null) return { subnets: [] };
  if (typeof value === "string") {
    try {
      items = JSON.parse(value);
    } catch {
      return { problems: [`${key}: is not a JSON array of subnets such as ${example}`] };
    }
  } else items = value;
  if (!Array.isArray(items))
    return { problems: [`${key}: must be a JSON array of subnets such as ${example}`] };
  const problems: string[] = [];
  const subnets = new Map<string, SubnetConfig>();
  items.forEach((item: unknown, i) => {
    const at = `${key}[${i}]`;
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      problems.push(`${at}: must be an object such as ${example.slice(1, -1)}`);
      return;
    }
    const o = item as Record<string, unknown>;
    const unknownKeys = Object.keys(o).filter(
      (k) => !["subnetId", "availabilityZone", "routeTableId"].includes(k),
    );
    if (unknownKeys.length > 0) {
      problems.push(
        `${at}: unknown field(s) ${unknownKeys.join(", ")} (known: subnetId, availabilityZone, routeTableId)`,
      );
    }
    const text = (v: unknown) => (typeof v === "string" ? `"${v.slice(0, 100)}"` : typeof v);
    if (typeof o.subnetId !== "string" || !SUBNET_ID.test(o.subnetId)) {
      problems.push(
        `${at}.subnetId: must be a subnet id such as subnet-0123456789abcdef0 (got ${text(o.subnetId)})`,
      );
    }
    if (typeof o.availabilityZone !== "string" || !AVAILABILITY_ZONE.test(o.availabilityZone)) {
      problems.push(
        `${at}.availabilityZone: must be an availability zone name such as eu-central-1a (got ${text(o.availabilityZone)})`,
      );
    }
    if (
      o.routeTableId !== undefined &&
      (typeof o.routeTableId !== "string" || !ROUTE_TABLE_ID.test(o.routeTableId))
    ) {
      problems.push(
        `${at}.routeTableId: must be a route table id such as rtb-0123456789abcdef0 (got ${text(o.routeTableId)})`,
      );
    }
    if (problems.length === 0 && typeof o.subnetId === "string" && typeof o.availabilityZone === "string") {
      const known = subnets.get(o.subnetId);
      if (known !== undefined && known.availabilityZone !== o.availabilityZone) {
        problems.push(`${at}: ${o.subnetId} is listed twice with different availability zones`);
      }
      subnets.set(o.subnetId, {
        subnetId: o.subnetId,
        availabilityZone: o.availabilityZone,
        ...(typeof o.routeTableId === "string" ? { routeTableId: o.routeTableId } : {}),
      });
    }
  });
  return problems.length > 0 ? { problems } : { subnets: [...subnets.values()] };
}

/** The network of the HSM functions from the parsed context: all of it or none of it. */
function networkFrom(
  d: {
    vpcId?: string | undefined;
    hsmSecurityGroupId?: string | undefined;
    vpcEndpoints?: "create" | "existing" | undefined;
    vpcEndpointSecurityGroupId?: string | undefined;
    dynamoDbPrefixListId?: string | undefined;
    region?: string | undefined;
  },
  subnets: readonly SubnetConfig[],
  endpointsGiven: boolean,
): { network?: NetworkConfig; problems: string[] } {
  const given =
    d.vpcId !== undefined ||
    subnets.length > 0 ||
    d.hsmSecurityGroupId !== undefined ||
    d.vpcEndpointSecurityGroupId !== undefined ||
    d.dynamoDbPrefixListId !== undefined ||
    endpointsGiven;
  if (!given) return { problems: [] };
  const problems: string[] = [];
  const missing = [
    d.vpcId === undefined ? CONTEXT_KEYS.vpcId : undefined,
    subnets.length === 0 ? CONTEXT_KEYS.vpcSubnets : undefined,
    d.hsmSecurityGroupId === undefined ? CONTEXT_KEYS.hsmSecurityGroupId : undefined,
    d.dynamoDbPrefixListId === undefined ? CONTEXT_KEYS.dynamoDbPrefixListId : undefined,
  ].filter((k): k is NonNullable<typeof k> => k !== undefined);
  if (missing.length > 0) {
    problems.push(
      `${missing.join(", ")}: missing; the network of the HSM functions needs all of ${CONTEXT_KEYS.vpcId}, ` +
        `${CONTEXT_KEYS.vpcSubnets}, ${CONTEXT_KEYS.hsmSecurityGroupId} and ${CONTEXT_KEYS.dynamoDbPrefixListId} ` +
        "(or none of the network keys: functions outside a VPC, for local and test synths only)",
    );
  }
  const kind = d.vpcEndpoints ?? "create";
  if (kind === "create") {
    if (d.vpcEndpointSecurityGroupId !== undefined) {
      problems.push(
        `${CONTEXT_KEYS.vpcEndpointSecurityGroupId}: only with ${CONTEXT_KEYS.vpcEndpoints}=existing (with "create", ` +
          "the stack creates the endpoints and their security group)",
      );
    }
    const withoutRouteTable = subnets.filter((s) => s.routeTableId === undefined).map((s) => s.subnetId);
    if (withoutRouteTable.length > 0) {
      problems.push(
        `${CONTEXT_KEYS.vpcSubnets}: ${withoutRouteTable.join(", ")} without routeTableId; the DynamoDB gateway ` +
          `endpoint the stack creates (${CONTEXT_KEYS.vpcEndpoints}=create) is added to the subnets' route tables`,
      );
    }
  } else if (d.vpcEndpointSecurityGroupId === undefined) {
    problems.push(
      `${CONTEXT_KEYS.vpcEndpointSecurityGroupId}: needed with ${CONTEXT_KEYS.vpcEndpoints}=existing, the security ` +
        "group of the VPC's interface endpoints (the functions may reach them on 443 only)",
    );
  }
  if (d.region !== undefined) {
    const elsewhere = subnets.filter((s) => !s.availabilityZone.startsWith(d.region!));
    if (elsewhere.length > 0) {
      problems.push(
        `${CONTEXT_KEYS.vpcSubnets}: ${elsewhere.map((s) => `${s.subnetId} (${s.availabilityZone})`).join(", ")} ` +
          `not in ${CONTEXT_KEYS.region} ${d.region}`,
      );
    }
  }
  if (problems.length > 0 || missing.length > 0) return { problems };
  return {
    network: {
      vpcId: d.vpcId!,
      subnets,
      hsmSecurityGroupId: d.hsmSecurityGroupId!,
      endpoints:
        kind === "create"
          ? { kind: "create" }
          : { kind: "existing", securityGroupId: d.vpcEndpointSecurityGroupId! },
      dynamoDbPrefixListId: d.dynamoDbPrefixListId!,
    },
    problems,
  };
}

const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/**
 * The values of one cron field (`*`, `?`, numbers or names, lists, ranges, `/` steps) between `min` and `max`, or
 * undefined for what this does not follow (`L`, `W`, `#`).
 */
function cronFieldValues(
  field: string,
  min: number,
  max: number,
  names: string[] = [],
): Set<number> | undefined {
  const value = (token: string): number | undefined => {
    const i = names.indexOf(token.toUpperCase());
    if (i >= 0) return i + min;
    return /^\d{1,2}$/.test(token) ? Number(token) : undefined;
  };
  const out = new Set<number>();
  for (const part of field.split(",")) {
    const [range, stepText] = part.split("/") as [string, string | undefined];
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) return undefined;
    let from: number | undefined;
    let to: number | undefined;
    if (range === "*" || range === "?") [from, to] = [min, max];
    else if (range.includes("-")) {
      const [a, b] = range.split("-") as [string, string];
      [from, to] = [value(a), value(b)];
    } else {
      from = value(range);
      to = stepText === undefined ? from : max;
    }
    if (from === undefined || to === undefined || from < min || to > max || from > to) return undefined;
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

/**
 * The longest time between two firings of an EventBridge Scheduler expression, in minutes: exact for `rate(...)`;
 * for `cron(...)` (UTC) found by walking two years of firings. Undefined when it cannot tell (`L`, `W`, `#`, a
 * year, or no firing at all).
 */
export function scheduleIntervalMinutes(expression: string): number | undefined {
  const rate = RATE.exec(expression);
  if (rate !== null) return Number(rate[1]) * MINUTES_PER_UNIT[rate[2]!.replace(/s$/, "")]!;
  const cron = CRON.exec(expression);
  if (cron === null) return undefined;
  const fields = cron[1]!.trim().split(/\s+/);
  if (fields.length !== 6) return undefined;
  const [minutesField, hoursField, domField, monthField, dowField, yearField] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if (yearField !== "*") return undefined;
  const minutes = cronFieldValues(minutesField, 0, 59);
  const hours = cronFieldValues(hoursField, 0, 23);
  const months = cronFieldValues(monthField, 1, 12, MONTHS);
  const byWeekday = domField === "?";
  const days = byWeekday ? cronFieldValues(dowField, 1, 7, WEEKDAYS) : cronFieldValues(domField, 1, 31);
  if (minutes === undefined || hours === undefined || months === undefined || days === undefined)
    return undefined;
  const times: number[] = [];
  const start = Date.UTC(2024, 0, 1);
  for (let d = 0; d < 731; d += 1) {
    const day = new Date(start + d * 86_400_000);
    if (!months.has(day.getUTCMonth() + 1)) continue;
    if (!days.has(byWeekday ? day.getUTCDay() + 1 : day.getUTCDate())) continue;
    const base = (start + d * 86_400_000) / 60_000;
    for (const h of [...hours].sort((a, b) => a - b)) {
      for (const m of [...minutes].sort((a, b) => a - b)) times.push(base + h * 60 + m);
    }
  }
  if (times.length < 2) return undefined;
  let longest = 0;
  for (let i = 1; i < times.length; i += 1) longest = Math.max(longest, times[i]! - times[i - 1]!);
  return longest;
}
