/**
 * Stateless resources: functions (and later workflows, schedules and alarms) that can be destroyed and redeployed at
 * any time without losing anything. They receive the stateful resources as props and are granted access per
 * function, never stack-wide.
 *
 * - `HsmHealth`: opens a session on the HSM token and reports whether it is usable.
 * - `GenerateDataKeys`, `DecryptDataKeys`: invoked synchronously (Lambda Invoke, RequestResponse) by the ingestion
 *   pipeline and by document readers.
 * - `DocumentLifecycle`: target of the `DocumentLifecycleRule` EventBridge rule (asynchronous invocation); events it
 *   refuses land, with the reason, on the stateful stack's `LifecycleFailures` queue.
 * - `RotationWorkflow`: the master-key rotation state machine (workflows/rotation-workflow.ts) and its six functions
 *   (`RotationStart`, `RotationPlan`, `RotationRewrapShard`, `RotationCensus`, `RotationComplete`, `RotationFailure`,
 *   all from functions/rotation/handlers.ts), each granted exactly the DynamoDB calls of its step; started by hand or,
 *   with `amk:rotationSchedule`, by one EventBridge Scheduler schedule per workspace of `amk:rotationWorkspaces`.
 * - `RecoveryWorkflow`: the recovery state machine (workflows/recovery-workflow.ts) and its seven functions
 *   (`RecoveryStart`, `RecoveryAwaitUnlock`, `RecoveryRotate`, `RecoveryVerify`, `RecoveryInvalidateTokens`,
 *   `RecoveryComplete`, `RecoveryFailure`, from functions/recovery/handlers.ts); the re-wrap runs on the rotation's
 *   `RotationPlan`, `RotationRewrapShard` and `RotationCensus`. `RecoveryUnlock` (functions/recovery-unlock) is not
 *   in it: administrators call it with their passphrase and second factor, and it resumes the waiting execution.
 * - `DrillWorkflow`: the drill state machine (workflows/drill-workflow.ts) and `DrillRun` (functions/drill), started
 *   by one EventBridge Scheduler schedule per workspace of `amk:drillWorkspaces` (`amk:drillSchedule`).
 * - `TokenAuthorizer`: the API Gateway Lambda authorizer of access tokens (functions/token-authorizer); no HSM.
 * - `BackupExport` (functions/backup, `exportHandler`; no HSM): exports a workspace (or the table) into the backup
 *   bucket under `backups/`, signed with the backup signing key from the vault (a writer: it creates the key on its
 *   first export); one EventBridge Scheduler schedule per workspace of `amk:drillWorkspaces` (`amk:backupSchedule`)
 *   invokes it with `{"workspaceId", "kind": "full"}`.
 * - `RestorationWorkflow`: the restoration test state machine (workflows/restoration-workflow.ts) and
 *   `RestorationTestRun` (functions/restoration), which restores the newest backup into a scratch table
 *   (`<table>-scratch-<12 hex>`, created and deleted by the function), opens the kit into scratch keys in the HSM and
 *   decrypts the canaries and a sample; started per workspace of `amk:drillWorkspaces` (`amk:restorationSchedule`).
 * Every function that raises alerts publishes them on the stateful stack's `Alerts` topic (`AMK_ALERT_TOPIC_ARN`).
 *
 * Operations: every function and state machine is traced with X-Ray (active tracing), every state machine logs at
 * level ALL without execution data. With `amk:vpcId` (infra/lib/network.ts, `HsmNetwork`) the functions that open
 * the HSM run in the CloudHSM cluster's subnets behind a security group that lets them reach the HSMs, the VPC
 * endpoints and DynamoDB only; without it they run outside any VPC and the synth says so (a warning). The alarms and
 * the dashboard are `Monitoring` (infra/lib/monitoring.ts); the restoration test's alarms (failed, and with its
 * schedule missing) are added with `addRestorationTestAlarms`. The backup bucket (`backupBucket`) is received from
 * the stateful stack (or imported) and published as an output.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  Annotations,
  Arn,
  ArnFormat,
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  Validations,
  type CfnElement,
  type CfnResource,
  type StackProps,
} from "aws-cdk-lib";
import type { Alarm } from "aws-cdk-lib/aws-cloudwatch";
import { EventBus, Rule } from "aws-cdk-lib/aws-events";
import { LambdaFunction } from "aws-cdk-lib/aws-events-targets";
import { Effect, PolicyStatement, Role, ServicePrincipal, type IRole } from "aws-cdk-lib/aws-iam";
import {
  Architecture,
  CfnFunction,
  LayerVersion,
  Runtime,
  Tracing,
  type ILayerVersion,
} from "aws-cdk-lib/aws-lambda";
import { SqsDestination } from "aws-cdk-lib/aws-lambda-destinations";
import { NodejsFunction, OutputFormat, type NodejsFunctionProps } from "aws-cdk-lib/aws-lambda-nodejs";
import { LogGroup, RetentionDays } from "aws-cdk-lib/aws-logs";
import {
  Schedule,
  ScheduleExpression,
  ScheduleGroup,
  ScheduleTargetInput,
  type IScheduleTarget,
} from "aws-cdk-lib/aws-scheduler";
import { LambdaInvoke, StepFunctionsStartExecution } from "aws-cdk-lib/aws-scheduler-targets";
import { Secret, type ISecret } from "aws-cdk-lib/aws-secretsmanager";
import { Queue, type IQueue } from "aws-cdk-lib/aws-sqs";
import {
  CfnStateMachine,
  LogLevel,
  type IStateMachine,
  type StateMachine,
} from "aws-cdk-lib/aws-stepfunctions";
import type { Construct } from "constructs";
import { EVENT_SOURCE } from "../../core/bus/event-bus.js";
import { DrillWorkflow } from "../../workflows/drill-workflow.js";
import { RecoveryWorkflow } from "../../workflows/recovery-workflow.js";
import { RestorationWorkflow } from "../../workflows/restoration-workflow.js";
import { RotationWorkflow } from "../../workflows/rotation-workflow.js";
import type { AmkConfig, ScheduleConfig } from "./config.js";
import {
  backupExportRoleName,
  drillRunRoleName,
  lifecycleRuleName,
  recoveryCompleteRoleName,
  recoveryStartRoleName,
  recoveryUnlockRoleName,
  restorationTestRoleName,
  rotationCompleteRoleName,
  vaultAccessRoleName,
} from "./names.js";
import {
  EVENT_STORE_SCHEMA,
  type AlertResources,
  type DeadLetterResources,
  type BackupResources,
  type EventStoreResources,
} from "./stateful-stack.js";
import { CALLER_TAG_KEY, CALLER_TAG_VALUES, flattenForNag } from "./vault-stack.js";
import { Monitoring, type RestorationTestAlarmOptions } from "./monitoring.js";
import { HsmNetwork } from "./network.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/**
 * Lambda runtime of every function. nodejs22.x: the current Node LTS on Lambda (nodejs20.x is deprecated), and the
 * ABI the pkcs11js native module in the PKCS#11 layer is compiled for: changing it means rebuilding that layer.
 */
export const FUNCTION_RUNTIME = Runtime.NODEJS_22_X;

/**
 * x86_64, not arm64: the CloudHSM client's PKCS#11 library (libcloudhsm_pkcs11.so) ships for x86_64 only, and a
 * function can only load a native library built for its own architecture.
 */
export const FUNCTION_ARCHITECTURE = Architecture.X86_64;

/**
 * pkcs11js is a CommonJS native module and comes from the layer (next to the CloudHSM library) rather than from the
 * bundle; the AWS SDK v3 (`@aws-sdk/*` and the `@smithy/*` packages it is built on, kept together so that their
 * versions match) comes from the Lambda runtime.
 */
export const EXTERNAL_MODULES = ["pkcs11js", "@aws-sdk/*", "@smithy/*"];

/**
 * argon2 (the kit's passphrase KDF) loads a native binary at run time that esbuild cannot bundle: the functions that
 * open or issue kits get it installed next to their bundle (`nodeModules`; the package ships prebuilt linux-x64
 * binaries, so the bundling machine needs no compiler). Keyed by entry file.
 */
export const KIT_FUNCTION_ENTRIES = [
  "rotation/handlers.ts",
  "recovery/handlers.ts",
  "recovery-unlock/handler.ts",
  "drill/handler.ts",
  "restoration/handler.ts",
];
export const NATIVE_NODE_MODULES = ["argon2"];

/**
 * The bundle is ESM (`index.mjs`), where `require` does not exist; esbuild's shim for `require("pkcs11js")` and for
 * CommonJS dependencies calls the global `require`, which this banner defines.
 */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __amkCreateRequire } from 'node:module'; " +
  "const require = __amkCreateRequire(import.meta.url);";

/**
 * DynamoDB actions on the event-store table, exactly what `DynamoDbEventStore` (core/adapters/dynamodb) sends:
 * - `readStream`: GetItem (the stream head) and Query (the events), both on the table;
 * - `appendToStream`: Query (head and projection), one TransactWriteItems whose items are all `Put`s (IAM has no
 *   TransactWriteItems action: each item is authorised as its own action, here `dynamodb:PutItem`), and after a
 *   cancelled transaction BatchGetItem (the event-id markers, to tell a replay from a conflict).
 * No `UpdateItem`, `ConditionCheckItem` or `DeleteItem` (the adapter sends none). Only the census queries use the
 * GSIs, with `Query` on the index ARN: `census-1` (`countDocumentsByKeyId`, `listDocumentsByKeyId`,
 * `listDocumentsByKeyIdInShard`) and `census-2` (`listKeyIdsInUse`); of the functions, only rotation steps make them.
 */
export const EVENT_STORE_READ_ACTIONS = ["dynamodb:GetItem", "dynamodb:Query"];
export const EVENT_STORE_APPEND_ACTIONS = [
  "dynamodb:GetItem",
  "dynamodb:Query",
  "dynamodb:BatchGetItem",
  "dynamodb:PutItem",
];
export const EVENT_STORE_INDEX_ACTIONS = ["dynamodb:Query"];
/** KMS actions on the table's customer-managed key that DynamoDB needs from a caller that reads / writes the table. */
export const EVENT_STORE_KEY_READ_ACTIONS = ["kms:Decrypt"];
export const EVENT_STORE_KEY_WRITE_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"];
/** KMS actions a producer needs to send to an SQS queue encrypted with a customer-managed key. */
export const QUEUE_KEY_SEND_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt"];

/** The event types of the document-lifecycle rule (the handler accepts exactly these). */
export const LIFECYCLE_DETAIL_TYPES = ["DocumentStored", "DocumentDeleted"];

/** Asynchronous invocation of the document-lifecycle function: 2 retries, events older than 6 h are given up. */
export const LIFECYCLE_ASYNC_RETRY_ATTEMPTS = 2;
export const LIFECYCLE_ASYNC_MAX_EVENT_AGE = Duration.hours(6);
/**
 * Delivery from EventBridge to the function: EventBridge retries only when the asynchronous invocation itself is
 * refused (throttling, a Lambda service error); 8 attempts within at most 2 h, then the rule's dead-letter queue.
 */
export const LIFECYCLE_RULE_RETRY_ATTEMPTS = 8;
export const LIFECYCLE_RULE_MAX_EVENT_AGE = Duration.hours(2);

/** The census indexes by name (the event-store adapter's `CENSUS_BY_KEY_ID_INDEX` and `KEY_IDS_IN_USE_INDEX`). */
const [CENSUS_BY_KEY_ID, KEY_IDS_IN_USE] = EVENT_STORE_SCHEMA.censusIndexes.map((i) => i.indexName) as [
  string,
  string,
];

/**
 * What a function may do beyond its own logs (and, for a function that opens the HSM, the PIN secret); its grants
 * and environment are derived from this.
 */
export interface FunctionAccess {
  /** It appends events (PutItem, BatchGetItem on top of the reads); false: it only reads the event store. */
  readonly append: boolean;
  /** The census indexes it queries. */
  readonly indexes: readonly string[];
  /**
   * It uses the vault through the vault stack's access role, assumed with this session tag (`amk:vault-caller`):
   * `writer` writes kits (and reads them), `unlock` reads kits and factor secrets (the vault has no kit-only kind).
   */
  readonly vault?: "writer" | "unlock";
  /** It raises alerts: `AMK_ALERT_TOPIC_ARN`, sns:Publish on the alert topic and the topic key's data-key actions. */
  readonly alerts?: boolean;
  /** It publishes on the event bus: `AMK_EVENT_BUS_NAME`, events:PutEvents on that bus (source arquivomate.keys). */
  readonly bus?: boolean;
}

/**
 * What each rotation step does against the event store (core/rotation/rotation-service.ts through
 * DynamoDbEventStore), hence its grants: `append` = it appends events (PutItem, BatchGetItem on top of the reads);
 * `indexes` = the census indexes it queries.
 * - start: reads the workspace stream, appends MasterKeyCreated/StateChanged/RotationStarted; creates the key (HSM).
 * - plan: reads the workspace; counts documents per old version (census-1).
 * - rewrapShard: reads the workspace; lists the shard's documents (census-1); reads and appends each document's
 *   stream; re-wraps in the HSM.
 * - census: reads the workspace; counts (census-1), lists the key ids in use (census-2), samples documents on the new
 *   version (census-1) and reads their streams.
 * - complete: the census (census-1, census-2); re-issues the kit (HSM export, vault put as writer, KitIssued
 *   appended); appends the retirements and RotationCompleted.
 * - failure: reads the workspace, appends RotationFailed, raises ROTATION_FAILED (the only rotation step that
 *   alerts). Its own entry file (rotation/failure.ts): no HSM, no PIN secret, no PKCS#11 layer, not in the VPC.
 */
export const ROTATION_STEP_ACCESS = {
  start: { append: true, indexes: [] },
  plan: { append: false, indexes: [CENSUS_BY_KEY_ID] },
  rewrapShard: { append: true, indexes: [CENSUS_BY_KEY_ID] },
  census: { append: false, indexes: [CENSUS_BY_KEY_ID, KEY_IDS_IN_USE] },
  complete: { append: true, indexes: [CENSUS_BY_KEY_ID, KEY_IDS_IN_USE], vault: "writer" },
  failure: { append: true, indexes: [], alerts: true },
} as const satisfies Record<string, FunctionAccess>;

/**
 * What each recovery function does (core/recovery/recovery-service.ts through DynamoDbEventStore, the vault and the
 * HSM), hence its grants. Every one of them but failure opens the HSM when it starts (the handlers build the whole
 * recovery service), so every one of those reads the PIN secret; failure has its own entry file and records with the
 * event store and the alerts only (no HSM, no PIN secret, no PKCS#11 layer, not in the VPC), so it works while the
 * HSM is down. None but those named here reaches the vault, the topic or the bus.
 * - start (Validate): reads the workspace, appends RecoveryStarted (the lock); reads the kit from the vault (current
 *   or given version) and checks it covers every version in use: lists the key ids in use (census-2) and looks keys
 *   up in the HSM.
 * - awaitUnlock (AwaitUnlock): reads the workspace, appends RecoveryAwaitingUnlock with the task token.
 * - rotate (Rotate): reads the workspace, checks the recovered keys are in the HSM, creates a drill key if the HSM
 *   lost it (DrillKeyCreated) and the fresh master key version (RotationStarted); closing a superseded rotation
 *   appends RotationFailed and raises ROTATION_FAILED.
 * - verify (Verify): reads; counts the documents left on the recovered versions (census-1), decrypts the canaries
 *   and a sample of documents on the new version (census-1, their streams) in the HSM. Appends nothing.
 * - invalidateTokens (InvalidateTokens): reads, appends AccessTokensInvalidated (a new token epoch) and publishes it
 *   on the event bus.
 * - complete (Complete): completes the rotation (the census on census-1 and census-2; re-issues the kit: HSM export,
 *   vault put as writer, KitIssued; the retirements), counts the documents on the new key (census-1), appends
 *   RecoveryCompleted and raises RECOVERY_COMPLETED.
 * - failure (RecordFailure): reads, appends RecoveryFailed, raises RECOVERY_FAILED / RECOVERY_REJECTED.
 * - unlock (not a state: called by administrators): reads; opens the kit (the vault's kit and the administrator's
 *   factor secret: the unlock reader), counts failed attempts (UnlockAttemptFailed, ADMIN_SLOT_LOCKED alert) and
 *   successes; imports the master key versions into the HSM; checks coverage (census-2 and the HSM); appends
 *   RecoveryUnlocked; resumes the execution with states:SendTaskSuccess (granted separately).
 */
export const RECOVERY_STEP_ACCESS = {
  start: { append: true, indexes: [KEY_IDS_IN_USE], vault: "unlock" },
  awaitUnlock: { append: true, indexes: [] },
  rotate: { append: true, indexes: [], alerts: true },
  verify: { append: false, indexes: [CENSUS_BY_KEY_ID] },
  invalidateTokens: { append: true, indexes: [], bus: true },
  complete: { append: true, indexes: [CENSUS_BY_KEY_ID, KEY_IDS_IN_USE], vault: "writer", alerts: true },
  failure: { append: true, indexes: [], alerts: true },
  unlock: { append: true, indexes: [KEY_IDS_IN_USE], vault: "unlock", alerts: true },
} as const satisfies Record<string, FunctionAccess>;

/**
 * The drill (core/drills/drill-service.ts): reads the workspace; reads the kit from the vault and checks it in the
 * HSM through the drill slot; lists the key ids in use (census-2) and samples documents per version (census-1,
 * their records with BatchGetItem); decrypts the canaries; appends DrillCompleted and, when a check failed, raises
 * the alert. The CloudHSM backup check (cloudhsm:DescribeBackups) is granted only with `amk:hsmClusterId`.
 */
export const DRILL_ACCESS = {
  append: true,
  indexes: [CENSUS_BY_KEY_ID, KEY_IDS_IN_USE],
  vault: "unlock",
  alerts: true,
} as const satisfies FunctionAccess;

/** The token authorizer (core/access through DynamoDbEventStore): reads the workspace's token epoch, nothing else. */
export const TOKEN_AUTHORIZER_ACCESS = { append: false, indexes: [] } as const satisfies FunctionAccess;

/**
 * The backup export (core/backup/export.ts through DynamoDbEventStore): reads streams (`readStream`: GetItem,
 * Query); on top of `EVENT_STORE_READ_ACTIONS` it needs `EVENT_STORE_EXPORT_ACTIONS`. Appends nothing, queries no
 * index, raises no alert; the vault as `writer`: it signs with the backup signing key and creates it on the first
 * export (`amk/backup/signing-key`, infra/lib/vault-stack.ts).
 */
export const BACKUP_EXPORT_ACCESS = {
  append: false,
  indexes: [],
  vault: "writer",
} as const satisfies FunctionAccess;
/**
 * What the export adds to the event-store reads, on exactly the table: `listStreamHeads` is a strongly consistent
 * parallel Scan of the table (the one reader that sees every stream), `readEvents` a BatchGetItem of event items.
 */
export const EVENT_STORE_EXPORT_ACTIONS = ["dynamodb:BatchGetItem", "dynamodb:Scan"];

/**
 * The restoration test (core/restoration/restoration-test.ts): on the live table it reads the workspace, lists the
 * key ids in use (census-2) and samples documents (census-1, their streams), appends RestorationTestCompleted and
 * raises RESTORATION_TEST_FAILED; it reads the kit from the vault (`unlock`: the vault has no kit-only reader) and,
 * without pinned keys, the backup signing key's versions. Its scratch tables are granted apart (`SCRATCH_TABLE_*`).
 */
export const RESTORATION_TEST_ACCESS = {
  append: true,
  indexes: [CENSUS_BY_KEY_ID, KEY_IDS_IN_USE],
  vault: "unlock",
  alerts: true,
} as const satisfies FunctionAccess;

/**
 * The restoration test's scratch tables: `<event table>-scratch-<12 hex digits>` (functions/restoration/handler.ts:
 * `AMK_SCRATCH_TABLE_PREFIX` + "-" + 6 random bytes in hex), matched in IAM by `?` per digit: exactly those tables
 * (and, for `Query`, their two census indexes), never the live table, never a table or index of another name.
 */
export const SCRATCH_TABLE_SUFFIX = "-scratch";
export const SCRATCH_TABLE_ID_LENGTH = 12;
/** `createEventStoreTable` / `deleteEventStoreTable` (core/adapters/dynamodb/table.ts; the waiter is DescribeTable). */
export const SCRATCH_TABLE_MANAGE_ACTIONS = [
  "dynamodb:CreateTable",
  "dynamodb:DescribeTable",
  "dynamodb:DeleteTable",
];
/**
 * What `importBackup` and the checks send to a scratch table through DynamoDbEventStore: `isEmpty` (Scan),
 * `importEvents` (TransactWriteItems of `Put`s: PutItem; BatchGetItem and Query for the stream states), the reads
 * (GetItem, Query) and the census queries on its indexes. Scratch tables use DynamoDB's own (AWS owned) key:
 * `createEventStoreTable` sets no SSESpecification, so no KMS permission is needed for them.
 */
export const SCRATCH_TABLE_DATA_ACTIONS = [
  "dynamodb:BatchGetItem",
  "dynamodb:GetItem",
  "dynamodb:PutItem",
  "dynamodb:Query",
  "dynamodb:Scan",
];

/**
 * Where the backups are in the bucket (`AMK_BACKUP_PREFIX`): every object the functions touch is under it.
 * `s3:ListBucket` is granted on the (backups-only) bucket without an `s3:prefix` condition: S3 answers a HeadObject
 * of a missing key with 404 only to a caller allowed ListBucket in that request's context, which has no prefix; with
 * the condition, the storage's "does this blob exist" check would get 403 and every export would fail.
 */
export const BACKUP_PREFIX = "backups/";
/**
 * S3 actions on `<bucket>/backups/*`. The export writes (PutObject also covers the multipart upload's
 * Create/UploadPart/Complete, and a conditional `If-None-Match` put), reads a base chain back and aborts a failed
 * multipart upload; the restoration test reads. HeadObject is authorised as `s3:GetObject` (IAM has no
 * `s3:HeadObject`). Never `s3:DeleteObject*`, `s3:PutObjectRetention` or `s3:BypassGovernanceRetention`.
 */
export const BACKUP_WRITE_ACTIONS = ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"];
export const BACKUP_READ_ACTIONS = ["s3:GetObject"];
/** KMS actions on the bucket's key, through S3 only: SSE-KMS writes (and multipart uploads) and reads. */
export const BACKUP_KEY_WRITE_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"];
export const BACKUP_KEY_READ_ACTIONS = ["kms:Decrypt"];

/** The actions a function that raises alerts gets: on the topic, and on its key (SNS encrypts with the caller's). */
export const ALERT_TOPIC_ACTIONS = ["sns:Publish"];
export const ALERT_KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"];

/**
 * What Lambda does with a function's role to attach it to a VPC (the actions of AWSLambdaVPCAccessExecutionRole
 * without its logs:*): granted to the HSM functions when they run in the VPC, and denied to their code
 * (`lambda:SourceFunctionArn` is only present when the function's own code uses the role).
 */
export const VPC_ENI_ACTIONS = [
  "ec2:CreateNetworkInterface",
  "ec2:DescribeNetworkInterfaces",
  "ec2:DescribeSubnets",
  "ec2:DeleteNetworkInterface",
  "ec2:AssignPrivateIpAddresses",
  "ec2:UnassignPrivateIpAddresses",
];

/** The rotation's shard tasks: 15 min (the Lambda maximum), of which 14 min are spent re-wrapping. */
export const REWRAP_SHARD_TIMEOUT = Duration.minutes(15);
export const REWRAP_BUDGET_MS = 840_000;
/** Delivery of a scheduled rotation start: 8 attempts within at most 2 h (then the start is dropped; see docs). */
export const ROTATION_SCHEDULE_RETRY_ATTEMPTS = 8;
export const ROTATION_SCHEDULE_MAX_EVENT_AGE = Duration.hours(2);
/** Delivery of a scheduled drill start: as for the rotation (a dropped start shows as a day without DrillCompleted). */
export const DRILL_SCHEDULE_RETRY_ATTEMPTS = 8;
export const DRILL_SCHEDULE_MAX_EVENT_AGE = Duration.hours(2);
/**
 * Delivery of a scheduled export (an asynchronous Invoke: the scheduler retries only a refused invocation; a failed
 * export is retried by Lambda's own asynchronous retries, twice within 6 h) and of a scheduled restoration test.
 */
export const BACKUP_SCHEDULE_RETRY_ATTEMPTS = 8;
export const BACKUP_SCHEDULE_MAX_EVENT_AGE = Duration.hours(2);
export const RESTORATION_SCHEDULE_RETRY_ATTEMPTS = 8;
export const RESTORATION_SCHEDULE_MAX_EVENT_AGE = Duration.hours(2);
/** The two backup functions: a full export of 100,000 documents, a restore of one into a scratch table. */
export const BACKUP_FUNCTION_MEMORY_MB = 1024;
export const BACKUP_FUNCTION_TIMEOUT = Duration.minutes(15);

export interface StatelessStackProps extends StackProps {
  readonly config: AmkConfig;
  /** The event store's table and key from the stateful stack. */
  readonly eventStore: EventStoreResources;
  /** The document-lifecycle dead-letter queues and their key from the stateful stack. */
  readonly deadLetters: DeadLetterResources;
  /** The alert topic and its key from the stateful stack. */
  readonly alerts: AlertResources;
  /**
   * The backup bucket of the event-store exports and its key (the stateful stack's, or an imported one); published as
   * the `BackupBucketName` output for the export code.
   */
  readonly backupBucket: BackupResources;
}

interface FunctionProps {
  /** Construct id of the function; its role and log group are `<id>Role` and `<id>Logs`. */
  readonly id: string;
  /**
   * Directory under functions/ holding `handler.ts` (unless `entry` says otherwise); also the suffix of
   * `POWERTOOLS_SERVICE_NAME`.
   */
  readonly name: string;
  /** Entry file relative to functions/ and the name of its exported handler; default `<name>/handler.ts`, `handler`. */
  readonly entry?: { readonly file: string; readonly handler: string };
  /** Physical name of the role; default: generated by CloudFormation. */
  readonly roleName?: string;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
  /** Environment on top of the PKCS#11 settings (for an HSM function). */
  readonly environment?: Record<string, string>;
  /** Statements of the role on top of its own logs (and, for an HSM function, the PIN secret). */
  readonly statements?: PolicyStatement[];
  /** Further function options (asynchronous invocation settings). */
  readonly options?: Pick<NodejsFunctionProps, "retryAttempts" | "maxEventAge" | "onFailure">;
  /** Why a statement of `statements` has a "*" resource (added to the cdk-nag acknowledgement of X-Ray's). */
  readonly wildcardReason?: string;
}

export class StatelessStack extends Stack {
  readonly eventStore: EventStoreResources;
  readonly deadLetters: DeadLetterResources;
  readonly hsmHealth: NodejsFunction;
  readonly generateDataKeys: NodejsFunction;
  readonly decryptDataKeys: NodejsFunction;
  readonly documentLifecycle: NodejsFunction;
  readonly documentLifecycleRule: Rule;
  readonly pinSecret: ISecret;
  /** The rotation state machine (`RotationWorkflow/StateMachine`) and its six functions. */
  readonly rotationWorkflow: RotationWorkflow;
  readonly rotationFunctions: {
    readonly start: NodejsFunction;
    readonly plan: NodejsFunction;
    readonly rewrapShard: NodejsFunction;
    readonly census: NodejsFunction;
    readonly complete: NodejsFunction;
    readonly failure: NodejsFunction;
  };
  /** The scheduled starts, one per workspace of `amk:rotationWorkspaces`; empty without `amk:rotationSchedule`. */
  readonly rotationSchedules: Schedule[];
  readonly alerts: AlertResources;
  /** The recovery state machine (`RecoveryWorkflow/StateMachine`) and its own seven functions. */
  readonly recoveryWorkflow: RecoveryWorkflow;
  readonly recoveryFunctions: {
    readonly start: NodejsFunction;
    readonly awaitUnlock: NodejsFunction;
    readonly rotate: NodejsFunction;
    readonly verify: NodejsFunction;
    readonly invalidateTokens: NodejsFunction;
    readonly complete: NodejsFunction;
    readonly failure: NodejsFunction;
  };
  /** The unlock function (`RecoveryUnlock`): called by administrators, resumes the waiting recovery. */
  readonly recoveryUnlock: NodejsFunction;
  /** The drill state machine (`DrillWorkflow/StateMachine`) and its function (`DrillRun`). */
  readonly drillWorkflow: DrillWorkflow;
  readonly drillRun: NodejsFunction;
  /** The scheduled drills, one per workspace of `amk:drillWorkspaces`; empty without workspaces. */
  readonly drillSchedules: Schedule[];
  /** The access-token authorizer (`TokenAuthorizer`); no HSM. */
  readonly tokenAuthorizer: NodejsFunction;
  /** The backup export (`BackupExport`); no HSM. */
  readonly backupExport: NodejsFunction;
  /** The scheduled full exports, one per workspace of `amk:drillWorkspaces`; empty without workspaces. */
  readonly backupSchedules: Schedule[];
  /** The restoration test state machine (`RestorationWorkflow/StateMachine`) and its function (`RestorationTestRun`). */
  readonly restorationWorkflow: RestorationWorkflow;
  readonly restorationTestRun: NodejsFunction;
  /** The scheduled restoration tests, one per workspace of `amk:drillWorkspaces`; empty without workspaces. */
  readonly restorationSchedules: Schedule[];
  /** `restoration-test-failed`, and with a restoration schedule `restoration-test-missing`. */
  readonly restorationAlarms: Alarm[];
  /** The backup bucket (from the stateful stack or imported). */
  readonly backupBucket: BackupResources;
  /** The CloudHSM network of the HSM functions; absent without `amk:vpcId` (functions outside any VPC). */
  readonly network?: HsmNetwork;
  /** The alarms and the dashboard. */
  readonly monitoring: Monitoring;
  /** Every function, by the suffix of its POWERTOOLS_SERVICE_NAME. */
  readonly functions: Record<string, NodejsFunction> = {};

  private readonly config: AmkConfig;
  private readonly pinSecretPolicyArn: string;
  private readonly pinSecretId: string;
  private readonly pkcs11Layers: ILayerVersion[];

  constructor(scope: Construct, id: string, props: StatelessStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.config = config;
    this.eventStore = props.eventStore;
    this.deadLetters = props.deadLetters;
    this.alerts = props.alerts;
    this.backupBucket = props.backupBucket;

    if (config.network !== undefined) {
      this.network = new HsmNetwork(this, "HsmNetwork", { config, network: config.network });
    } else {
      Annotations.of(this).addWarningV2(
        "@amk/infra:no-vpc",
        "No CloudHSM network configured (amk:vpcId, amk:vpcSubnets, amk:hsmSecurityGroupId, " +
          "amk:dynamoDbPrefixListId): the HSM functions are placed outside any VPC and cannot reach a CloudHSM " +
          "cluster. Fine for local and test synths; a production environment (amk:production) must set them.",
      );
    }

    // The secret exists outside this app (created by whoever initialised the HSM cluster); reference it only.
    this.pinSecret =
      config.pinSecret.kind === "arn"
        ? Secret.fromSecretCompleteArn(this, "HsmPinSecret", config.pinSecret.arn)
        : Secret.fromSecretNameV2(this, "HsmPinSecret", config.pinSecret.name);
    // IAM resource of exactly that secret: its complete ARN, or for a name the partial ARN plus the 6-character
    // suffix Secrets Manager appends (`-??????` matches that suffix and nothing longer).
    this.pinSecretPolicyArn =
      config.pinSecret.kind === "arn" ? config.pinSecret.arn : `${this.pinSecret.secretArn}-??????`;
    this.pinSecretId = config.pinSecret.kind === "arn" ? config.pinSecret.arn : config.pinSecret.name;

    this.pkcs11Layers =
      config.pkcs11LayerArn === undefined
        ? []
        : [LayerVersion.fromLayerVersionArn(this, "Pkcs11Layer", config.pkcs11LayerArn)];

    this.hsmHealth = this.hsmFunction({
      id: "HsmHealth",
      name: "hsm-health",
      description: "Opens a session on the HSM token and reports whether it is usable",
      memorySize: 256,
      timeout: Duration.seconds(10),
    });

    const { table, key: tableKey } = this.eventStore;
    const eventStoreEnvironment: Record<string, string> = { AMK_EVENT_TABLE: table.tableName };
    const dataKeyEnvironment: Record<string, string> = {
      ...eventStoreEnvironment,
      ...(config.dataKeyTtlSeconds === undefined
        ? {}
        : { AMK_DATA_KEY_TTL_SECONDS: String(config.dataKeyTtlSeconds) }),
    };
    const appendToEventStore = (): PolicyStatement[] => [
      new PolicyStatement({
        sid: "AppendToEventStore",
        actions: EVENT_STORE_APPEND_ACTIONS,
        resources: [table.tableArn],
      }),
      new PolicyStatement({
        sid: "UseEventStoreKey",
        actions: EVENT_STORE_KEY_WRITE_ACTIONS,
        resources: [tableKey.keyArn],
      }),
    ];

    // Synchronous, on the ingestion path: about 5 HSM operations and 3 DynamoDB calls per request.
    this.generateDataKeys = this.hsmFunction({
      id: "GenerateDataKeys",
      name: "generate-data-keys",
      description:
        "Generates a document's data keys in the HSM, records them wrapped in the event store, returns them",
      memorySize: 512,
      timeout: Duration.seconds(10),
      environment: dataKeyEnvironment,
      statements: appendToEventStore(),
    });

    this.decryptDataKeys = this.hsmFunction({
      id: "DecryptDataKeys",
      name: "decrypt-data-keys",
      description: "Unwraps a document's data keys from its current wrap record in the event store",
      memorySize: 512,
      timeout: Duration.seconds(10),
      environment: dataKeyEnvironment,
      statements: [
        new PolicyStatement({
          sid: "ReadEventStore",
          actions: EVENT_STORE_READ_ACTIONS,
          resources: [table.tableArn],
        }),
        new PolicyStatement({
          sid: "UseEventStoreKey",
          actions: EVENT_STORE_KEY_READ_ACTIONS,
          resources: [tableKey.keyArn],
        }),
      ],
    });

    // The queues are passed on as imports of their ARN. Used directly, CDK would (a) add the rule's statement to the
    // dead-letter queue's policy in the stateful stack, which then references the rule here: a dependency cycle
    // between the stacks (the stateful stack writes that statement itself, from the rule's fixed name), and (b) grant
    // the function `kms:ReEncrypt*` and `kms:GenerateDataKey*` on the queue key with the destination (wildcard
    // actions); the role gets exactly the two KMS actions a sender needs instead.
    const lifecycleFailures: IQueue = Queue.fromQueueAttributes(this, "LifecycleFailuresQueue", {
      queueArn: this.deadLetters.lifecycleFailures.queueArn,
    });
    const lifecycleUndelivered: IQueue = Queue.fromQueueAttributes(this, "LifecycleUndeliveredQueue", {
      queueArn: this.deadLetters.lifecycleUndelivered.queueArn,
    });

    this.documentLifecycle = this.hsmFunction({
      id: "DocumentLifecycle",
      name: "document-lifecycle",
      description:
        "Records DocumentStored / DocumentDeleted from the ingestion pipeline; refused events go to a dead-letter queue",
      memorySize: 512,
      timeout: Duration.seconds(30),
      environment: eventStoreEnvironment,
      statements: [
        ...appendToEventStore(),
        new PolicyStatement({
          sid: "SendToDeadLetterQueue",
          actions: QUEUE_KEY_SEND_ACTIONS,
          resources: [this.deadLetters.key.keyArn],
        }),
      ],
      options: {
        retryAttempts: LIFECYCLE_ASYNC_RETRY_ATTEMPTS,
        maxEventAge: LIFECYCLE_ASYNC_MAX_EVENT_AGE,
        // The destination record carries the event (requestPayload) and the error type and message (the reason).
        onFailure: new SqsDestination(lifecycleFailures),
      },
    });

    this.documentLifecycleRule = new Rule(this, "DocumentLifecycleRule", {
      // Fixed name: the stateful stack names this rule in the policies of the dead-letter queue and its key.
      ruleName: lifecycleRuleName(config),
      description: `ArquivoMate Keys (${config.environment}): document lifecycle events to the document-lifecycle function`,
      ...(config.lifecycleEventBus === "default"
        ? {}
        : { eventBus: EventBus.fromEventBusName(this, "LifecycleEventBus", config.lifecycleEventBus) }),
      eventPattern: {
        source: [config.lifecycleEventSource],
        detailType: LIFECYCLE_DETAIL_TYPES,
      },
    });
    this.documentLifecycleRule.addTarget(
      new LambdaFunction(this.documentLifecycle, {
        retryAttempts: LIFECYCLE_RULE_RETRY_ATTEMPTS,
        maxEventAge: LIFECYCLE_RULE_MAX_EVENT_AGE,
        deadLetterQueue: lifecycleUndelivered,
      }),
    );

    const rotation = this.createRotation();
    this.rotationWorkflow = rotation.workflow;
    this.rotationFunctions = rotation.functions;
    this.rotationSchedules = rotation.schedules;

    const recovery = this.createRecovery();
    this.recoveryWorkflow = recovery.workflow;
    this.recoveryFunctions = recovery.functions;
    this.recoveryUnlock = recovery.unlock;

    const drill = this.createDrill();
    this.drillWorkflow = drill.workflow;
    this.drillRun = drill.run;
    this.drillSchedules = drill.schedules;

    this.tokenAuthorizer = this.createTokenAuthorizer();

    const backup = this.createBackupExport();
    this.backupExport = backup.fn;
    this.backupSchedules = backup.schedules;

    const restoration = this.createRestorationTest();
    this.restorationWorkflow = restoration.workflow;
    this.restorationTestRun = restoration.run;
    this.restorationSchedules = restoration.schedules;

    for (const [fn, label] of [
      [this.generateDataKeys, "GenerateDataKeys"],
      [this.decryptDataKeys, "DecryptDataKeys"],
    ] as const) {
      new CfnOutput(this, `${label}FunctionName`, {
        description: `${label}: function name for Lambda Invoke (RequestResponse)`,
        value: fn.functionName,
      });
      new CfnOutput(this, `${label}FunctionArn`, {
        description: `${label}: function ARN (for the caller's lambda:InvokeFunction permission)`,
        value: fn.functionArn,
      });
    }
    new CfnOutput(this, "DocumentLifecycleFunctionName", {
      description: "document-lifecycle: function name (to redrive a dead letter with an asynchronous Invoke)",
      value: this.documentLifecycle.functionName,
    });
    new CfnOutput(this, "HsmHealthFunctionName", {
      description:
        "hsm-health: invoke it (no payload) to check the PKCS#11 layer, the PIN secret and the HSM network",
      value: this.hsmHealth.functionName,
    });
    new CfnOutput(this, "BackupBucketName", {
      description:
        "Backup bucket of the event-store exports (the export code writes there, with its KMS key)",
      value: this.backupBucket.bucket.bucketName,
    });

    this.monitoring = new Monitoring(this, "Monitoring", {
      config,
      topic: this.alerts.topic,
      functions: this.functions,
      stateMachines: {
        rotation: this.rotationWorkflow.stateMachine,
        recovery: this.recoveryWorkflow.stateMachine,
        drill: this.drillWorkflow.stateMachine,
      },
      // The restoration test's state machine gets its alarms below (addRestorationTestAlarms); its function and the
      // export function are in `functions` (errors and throttles) like every other.
      unlockLogGroup: this.recoveryUnlock.logGroup,
      deadLetterQueues: {
        "lifecycle-failures": this.deadLetters.lifecycleFailures,
        "lifecycle-undelivered": this.deadLetters.lifecycleUndelivered,
      },
    });
    // Failed (or timed out), and with the schedule missing: no success for the schedule's longest gap + 4 h.
    const missingAfterHours = config.alarms.restorationMissingAfterHours;
    this.restorationAlarms = this.addRestorationTestAlarms(
      this.restorationWorkflow.stateMachine,
      config.restorationSchedule === undefined || missingAfterHours === undefined
        ? {}
        : { missingAfter: Duration.hours(missingAfterHours) },
    );
    new CfnOutput(this, "DashboardName", {
      description:
        "CloudWatch dashboard: alarms, re-wrap progress, drill history, recoveries, unlock refusals, restoration tests",
      value: this.monitoring.dashboard.dashboardName,
    });
  }

  /**
   * The restoration test's alarms (failed, and with `missingAfter` missing) on the alert topic, and its executions on
   * the dashboard: call it with the restoration state machine once it exists.
   */
  addRestorationTestAlarms(stateMachine: IStateMachine, options?: RestorationTestAlarmOptions) {
    return this.monitoring.addRestorationTestAlarms(stateMachine, options);
  }

  /**
   * The rotation workflow: six functions (one per Task), each with the grants of its step only; the state machine
   * (its role: lambda:InvokeFunction on the six, X-Ray, log delivery) logging every state without execution data to
   * its own log group; and, when configured, one schedule per workspace.
   */
  private createRotation(): {
    workflow: RotationWorkflow;
    functions: StatelessStack["rotationFunctions"];
    schedules: Schedule[];
  } {
    const { config } = this;
    const step = (
      id: string,
      name: string,
      handler: string,
      access: FunctionAccess,
      p: Pick<FunctionProps, "description" | "memorySize" | "timeout"> &
        Partial<Pick<FunctionProps, "environment" | "statements" | "roleName">>,
    ) => this.accessFunction({ id, name, entry: { file: "rotation/handlers.ts", handler }, ...p }, access);

    const A = ROTATION_STEP_ACCESS;
    const functions = {
      start: step("RotationStart", "rotation-start", "startHandler", A.start, {
        description: "Rotation: creates the new master key version and makes it active (StartRotation)",
        memorySize: 512,
        timeout: Duration.seconds(60),
      }),
      plan: step("RotationPlan", "rotation-plan", "planHandler", A.plan, {
        description:
          "Rotation: plans the re-wrap from the census index, one item per old version and shard (PlanRewrap)",
        memorySize: 512,
        timeout: Duration.seconds(60),
      }),
      rewrapShard: step("RotationRewrapShard", "rotation-rewrap-shard", "rewrapShardHandler", A.rewrapShard, {
        description:
          "Rotation: re-wraps one census shard's documents to the new version in the HSM (RewrapShard)",
        memorySize: 1024,
        timeout: REWRAP_SHARD_TIMEOUT,
        environment: { AMK_REWRAP_BUDGET_MS: String(REWRAP_BUDGET_MS) },
      }),
      census: step("RotationCensus", "rotation-census", "censusHandler", A.census, {
        description: "Rotation: counts the documents left on old versions and cross-checks a sample (Census)",
        memorySize: 512,
        timeout: Duration.seconds(60),
      }),
      complete: step("RotationComplete", "rotation-complete", "completeHandler", A.complete, {
        description:
          "Rotation: with a census of zero, re-issues the recovery kit and retires the old versions",
        memorySize: 512,
        timeout: Duration.seconds(120),
        roleName: rotationCompleteRoleName(config),
      }),
      // Its own entry file, without the HSM: it records the failure while the HSM is down, and needs no PKCS#11
      // layer, PIN secret or place in the HSM's network.
      failure: this.accessFunction(
        {
          id: "RotationFailure",
          name: "rotation-failure",
          entry: { file: "rotation/failure.ts", handler: "failureHandler" },
          description:
            "Rotation: records RotationFailed in the workspace stream and raises the alert (RecordFailure)",
          memorySize: 512,
          timeout: Duration.seconds(60),
          hsm: false,
        },
        A.failure,
      ),
    };

    const logGroup = new LogGroup(this, "RotationWorkflowLogs", {
      retention: RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const workflow = new RotationWorkflow(this, "RotationWorkflow", { functions, logGroup });
    const stateMachine = workflow.stateMachine;

    // Level ALL without execution data, as the other workflows: the construct logs at ERROR, so the level is set on
    // the resource (the log group, the role's log delivery and IncludeExecutionData false stay as the construct made
    // them). Each state transition is one log event with the state's name and type, never its input or output.
    const cfnStateMachine = stateMachine.node.defaultChild as CfnStateMachine;
    const logging = cfnStateMachine.loggingConfiguration as CfnStateMachine.LoggingConfigurationProperty;
    cfnStateMachine.loggingConfiguration = { ...logging, level: LogLevel.ALL, includeExecutionData: false };
    this.acknowledgeStateMachineRole(stateMachine, "rotation", functions);

    const schedules =
      config.rotationSchedule === undefined
        ? []
        : this.schedules({
            id: "Rotation",
            target: { stateMachine },
            schedule: config.rotationSchedule,
            input: (workspaceId) => ({ workspaceId }),
            description: (workspaceId) => `rotates workspace ${workspaceId}`,
            retryAttempts: ROTATION_SCHEDULE_RETRY_ATTEMPTS,
            maxEventAge: ROTATION_SCHEDULE_MAX_EVENT_AGE,
          });

    new CfnOutput(this, "RotationStateMachineArn", {
      description: 'Rotation workflow: start an execution with input {"workspaceId": "<id>"}',
      value: stateMachine.stateMachineArn,
    });
    new CfnOutput(this, "RotationCompleteRoleArn", {
      description:
        "Role of the kit re-issuing rotation step: list it in amk:vaultWriterRoleArns so the vault access role trusts it",
      value: functions.complete.role!.roleArn,
    });
    return { workflow, functions, schedules };
  }

  /**
   * The recovery workflow: seven functions of its own (one per Task but the re-wrap, which runs on the rotation's
   * plan, shard and census functions), each with the grants of its step (`RECOVERY_STEP_ACCESS`); the unlock function
   * outside it; the state machine logging every state without execution data to its own log group.
   */
  private createRecovery(): {
    workflow: RecoveryWorkflow;
    functions: StatelessStack["recoveryFunctions"];
    unlock: NodejsFunction;
  } {
    const { config } = this;
    const unlockTimeout = Duration.hours(config.unlockTimeoutHours);
    const step = (
      id: string,
      name: string,
      handler: string,
      access: FunctionAccess,
      p: Pick<FunctionProps, "description" | "memorySize" | "timeout"> &
        Partial<Pick<FunctionProps, "environment" | "statements" | "roleName">>,
    ) => this.accessFunction({ id, name, entry: { file: "recovery/handlers.ts", handler }, ...p }, access);

    const A = RECOVERY_STEP_ACCESS;
    const functions = {
      start: step("RecoveryStart", "recovery-start", "startHandler", A.start, {
        description:
          "Recovery: checks the workspace and its kit in the vault, takes the recovery lock (Validate)",
        memorySize: 512,
        timeout: Duration.seconds(120),
        roleName: recoveryStartRoleName(config),
      }),
      awaitUnlock: step("RecoveryAwaitUnlock", "recovery-await-unlock", "awaitUnlockHandler", A.awaitUnlock, {
        description:
          "Recovery: records the task token the execution waits on until the kit is unlocked (AwaitUnlock)",
        memorySize: 512,
        timeout: Duration.seconds(60),
        // The expiry it records (RecoveryAwaitingUnlock) is the state machine's own task timeout.
        environment: { AMK_UNLOCK_TIMEOUT_SECONDS: String(unlockTimeout.toSeconds()) },
      }),
      rotate: step("RecoveryRotate", "recovery-rotate", "rotateHandler", A.rotate, {
        description: "Recovery: makes a fresh master key version active in the HSM (Rotate)",
        memorySize: 512,
        timeout: Duration.seconds(120),
      }),
      verify: step("RecoveryVerify", "recovery-verify", "verifyHandler", A.verify, {
        description:
          "Recovery: nothing left on the recovered versions, canaries and a sample decrypt in the HSM (Verify)",
        memorySize: 512,
        timeout: Duration.seconds(300),
      }),
      invalidateTokens: step(
        "RecoveryInvalidateTokens",
        "recovery-invalidate-tokens",
        "invalidateTokensHandler",
        A.invalidateTokens,
        {
          description:
            "Recovery: invalidates every access token of the workspace (new epoch) and tells the event bus (InvalidateTokens)",
          memorySize: 512,
          timeout: Duration.seconds(60),
        },
      ),
      complete: step("RecoveryComplete", "recovery-complete", "completeHandler", A.complete, {
        description:
          "Recovery: completes the rotation, re-issues the kit into the vault, records RecoveryCompleted",
        memorySize: 512,
        timeout: Duration.seconds(120),
        roleName: recoveryCompleteRoleName(config),
      }),
      // Its own entry file, without the HSM: it releases the lock while the HSM is down, and needs no PKCS#11
      // layer, PIN secret or place in the HSM's network.
      failure: this.accessFunction(
        {
          id: "RecoveryFailure",
          name: "recovery-failure",
          entry: { file: "recovery/failure.ts", handler: "failureHandler" },
          description:
            "Recovery: records RecoveryFailed with the failed step and raises the alert (RecordFailure)",
          memorySize: 512,
          timeout: Duration.seconds(60),
          hsm: false,
        },
        A.failure,
      ),
    };

    const logGroup = new LogGroup(this, "RecoveryWorkflowLogs", {
      retention: RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const { plan, rewrapShard, census } = this.rotationFunctions;
    const workflow = new RecoveryWorkflow(this, "RecoveryWorkflow", {
      functions: { ...functions, plan, rewrapShard, census },
      unlockTimeout,
      logGroup,
      logLevel: LogLevel.ALL,
    });
    const stateMachine = workflow.stateMachine;
    this.acknowledgeStateMachineRole(stateMachine, "recovery", {
      ...functions,
      rotationPlan: plan,
      rotationRewrapShard: rewrapShard,
      rotationCensus: census,
    });

    // Not a Task of the state machine: the one function that sees a passphrase and a second factor. It may resume
    // executions of the recovery state machine (SendTaskSuccess with the token RecoveryAwaitUnlock recorded), and
    // nothing else of Step Functions: no SendTaskFailure, no StartExecution.
    const unlock = this.accessFunction(
      {
        id: "RecoveryUnlock",
        name: "recovery-unlock",
        description:
          "Recovery: opens the kit with an administrator's passphrase and second factor, imports the keys into the HSM, resumes the execution",
        memorySize: 1024, // Argon2id of the kit slot: 64 MiB and more (the kit's KDF parameters)
        timeout: Duration.seconds(120),
        roleName: recoveryUnlockRoleName(config),
        statements: [
          new PolicyStatement({
            sid: "ResumeRecovery",
            actions: ["states:SendTaskSuccess"],
            resources: [stateMachine.stateMachineArn],
          }),
        ],
      },
      A.unlock,
    );

    new CfnOutput(this, "RecoveryStateMachineArn", {
      description:
        'Recovery workflow: start an execution with input {"workspaceId": "<id>", "requestedBy": "<who>", ' +
        '"reason": "<why>", "kitVaultVersionId": "<optional vault version of the kit>"}; never a passphrase or ' +
        "code (those go to the unlock function only)",
      value: stateMachine.stateMachineArn,
    });
    new CfnOutput(this, "RecoveryUnlockFunctionName", {
      description:
        'Unlock function, invoked by an administrator (amk recover unlock): {"workspaceId", "adminId", ' +
        '"passphrase", "factor": {"type": "totp", "code"}}',
      value: unlock.functionName,
    });
    new CfnOutput(this, "RecoveryUnlockFunctionArn", {
      description: "Unlock function ARN (for the administrators' lambda:InvokeFunction permission)",
      value: unlock.functionArn,
    });
    new CfnOutput(this, "RecoveryCompleteRoleArn", {
      description:
        "Role of the kit re-issuing recovery step: list it in amk:vaultWriterRoleArns so the vault access role trusts it",
      value: functions.complete.role!.roleArn,
    });
    for (const [label, fn] of [
      ["RecoveryStart", functions.start],
      ["RecoveryUnlock", unlock],
    ] as const) {
      new CfnOutput(this, `${label}RoleArn`, {
        description: `Role of ${label} (reads kits, and factor secrets, from the vault): list it in amk:unlockRoleArns`,
        value: fn.role!.roleArn,
      });
    }
    return { workflow, functions, unlock };
  }

  /** The drill workflow: its function, the state machine (level ALL, no execution data), the daily schedules. */
  private createDrill(): { workflow: DrillWorkflow; run: NodejsFunction; schedules: Schedule[] } {
    const { config } = this;
    const backups = config.hsmBackups;
    const run = this.accessFunction(
      {
        id: "DrillRun",
        name: "drill",
        entry: { file: "drill/handler.ts", handler: "runDrillHandler" },
        description:
          "Drill: checks the kit in the vault and in the HSM, canaries, a sample and HSM backups; records DrillCompleted",
        memorySize: 512,
        timeout: Duration.minutes(15), // a sample of up to 1,000 documents, each unwrapped in the HSM
        roleName: drillRunRoleName(config),
        environment:
          backups === undefined
            ? {}
            : {
                AMK_HSM_CLUSTER_ID: backups.clusterId,
                ...(backups.copyRegion === undefined
                  ? {}
                  : { AMK_HSM_BACKUP_COPY_REGION: backups.copyRegion }),
              },
      },
      DRILL_ACCESS,
    );

    // The CloudHSM backup listing runs outside the VPC (no HSM, no secret): the drill function in the VPC has no
    // route to another region's CloudHSM API. The workflow calls it first and hands the listing to the drill.
    const listHsmBackups =
      backups === undefined
        ? undefined
        : this.accessFunction(
            {
              id: "HsmBackupList",
              name: "hsm-backup-list",
              entry: { file: "hsm-backups/handler.ts", handler: "listHsmBackupsHandler" },
              description:
                "Drill: lists the CloudHSM cluster's backups in its region and the copy region (DescribeBackups)",
              memorySize: 256,
              timeout: Duration.seconds(60),
              hsm: false,
              environment: {
                AMK_HSM_CLUSTER_ID: backups.clusterId,
                ...(backups.copyRegion === undefined
                  ? {}
                  : { AMK_HSM_BACKUP_COPY_REGION: backups.copyRegion }),
              },
              statements: [
                new PolicyStatement({
                  sid: "DescribeHsmBackups",
                  actions: ["cloudhsm:DescribeBackups"],
                  resources: ["*"],
                  // The cluster's region (the function's) and the copy region only.
                  conditions: {
                    StringEquals: {
                      "aws:RequestedRegion": [
                        this.region,
                        ...(backups.copyRegion === undefined ? [] : [backups.copyRegion]),
                      ],
                    },
                  },
                }),
              ],
              wildcardReason:
                'cloudhsm:DescribeBackups has no resource-level permissions: IAM only accepts "*" for it. Limited ' +
                "to the cluster's region and the backup copy region (aws:RequestedRegion); it only lists backup " +
                "metadata.",
            },
            { append: false, indexes: [] },
          );

    const logGroup = new LogGroup(this, "DrillWorkflowLogs", {
      retention: RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const workflow = new DrillWorkflow(this, "DrillWorkflow", {
      run,
      logGroup,
      ...(listHsmBackups ? { listHsmBackups } : {}),
    });
    const stateMachine = workflow.stateMachine;
    this.acknowledgeStateMachineRole(stateMachine, "drill", {
      run,
      ...(listHsmBackups ? { listHsmBackups } : {}),
    });

    const schedules =
      config.drillSchedule === undefined
        ? []
        : this.schedules({
            id: "Drill",
            target: { stateMachine },
            schedule: config.drillSchedule,
            input: (workspaceId) => ({ workspaceId, trigger: "schedule" }),
            description: (workspaceId) => `drills workspace ${workspaceId}`,
            retryAttempts: DRILL_SCHEDULE_RETRY_ATTEMPTS,
            maxEventAge: DRILL_SCHEDULE_MAX_EVENT_AGE,
          });

    new CfnOutput(this, "DrillStateMachineArn", {
      description:
        'Drill workflow: start an execution with input {"workspaceId": "<id>", "trigger": "on-demand"}',
      value: stateMachine.stateMachineArn,
    });
    new CfnOutput(this, "DrillRunRoleArn", {
      description: "Role of the drill function (reads kits from the vault): list it in amk:unlockRoleArns",
      value: run.role!.roleArn,
    });
    return { workflow, run, schedules };
  }

  /**
   * The backup bucket's grants for a backup function: its objects under `BACKUP_PREFIX` (`actions`), listings under
   * the (backups-only) bucket (`s3:ListBucket`, no prefix condition: see BACKUP_PREFIX), and its key through S3 only (`keyActions`); and the
   * environment the backup storage reads (`AMK_BACKUP_BUCKET`, `AMK_BACKUP_PREFIX`, `AMK_BACKUP_KMS_KEY_ID`, and the
   * pinned public keys as `AMK_BACKUP_PUBLIC_KEYS` when configured).
   */
  private backupBucketAccess(
    sid: "Write" | "Read",
    actions: string[],
    keyActions: string[],
  ): { statements: PolicyStatement[]; environment: Record<string, string>; objects: string } {
    const { bucket, key } = this.backupBucket;
    const imported = this.config.backups.imported;
    // The bucket's region is its key's (SSE-KMS needs a key of the bucket's region): the imported key ARN's, or ours.
    const keyRegion =
      imported === undefined
        ? this.region
        : (Arn.split(imported.keyArn, ArnFormat.SLASH_RESOURCE_NAME).region ?? this.region);
    const objects = bucket.arnForObjects(`${BACKUP_PREFIX}*`);
    return {
      objects,
      statements: [
        new PolicyStatement({
          sid: sid === "Write" ? "WriteBackups" : "ReadBackups",
          actions,
          resources: [objects],
        }),
        new PolicyStatement({
          sid: "ListBackups",
          actions: ["s3:ListBucket"],
          resources: [bucket.bucketArn],
        }),
        new PolicyStatement({
          sid: "UseBackupKey",
          actions: keyActions,
          resources: [key.keyArn],
          conditions: { StringEquals: { "kms:ViaService": `s3.${keyRegion}.amazonaws.com` } },
        }),
      ],
      environment: {
        AMK_BACKUP_BUCKET: bucket.bucketName,
        AMK_BACKUP_PREFIX: BACKUP_PREFIX,
        AMK_BACKUP_KMS_KEY_ID: key.keyArn,
        ...(this.config.backupPublicKeys.length === 0
          ? {}
          : { AMK_BACKUP_PUBLIC_KEYS: this.config.backupPublicKeys.join(",") }),
      },
    };
  }

  /** The role policy of a function (its `DefaultPolicy`, where every statement of `createFunction` goes). */
  private policyOf(fn: NodejsFunction, what: string): CfnResource {
    const cfnPolicy = fn.role?.node.tryFindChild("DefaultPolicy")?.node.defaultChild as
      CfnResource | undefined;
    if (cfnPolicy === undefined) throw new Error(`the ${what} function's role has no default policy`);
    return cfnPolicy;
  }

  /**
   * The backup export: a function without the HSM (`exportHandler` of functions/backup/handler.ts) that reads the
   * event store (the streams, and a consistent Scan of exactly the table for the stream heads), signs with the backup
   * signing key from the vault (as `writer`: it creates the key on its first export) and writes under `backups/` in
   * the backup bucket; and, per workspace of `amk:drillWorkspaces`, a schedule invoking it with a full export.
   */
  private createBackupExport(): { fn: NodejsFunction; schedules: Schedule[] } {
    const { config } = this;
    const { table } = this.eventStore;
    const bucket = this.backupBucketAccess("Write", BACKUP_WRITE_ACTIONS, BACKUP_KEY_WRITE_ACTIONS);
    const fn = this.accessFunction(
      {
        id: "BackupExport",
        name: "backup-export",
        entry: { file: "backup/handler.ts", handler: "exportHandler" },
        description:
          "Backups: exports a workspace (or the table) into the backup bucket, signed with the backup key from the vault",
        // A full export of 100,000 documents: every stream read once, the files gathered and uploaded in parts.
        memorySize: BACKUP_FUNCTION_MEMORY_MB,
        timeout: BACKUP_FUNCTION_TIMEOUT,
        hsm: false,
        roleName: backupExportRoleName(config),
        environment: bucket.environment,
        statements: [
          new PolicyStatement({
            sid: "ExportEventStore",
            actions: EVENT_STORE_EXPORT_ACTIONS,
            // Exactly the table: neither its indexes nor any other table.
            resources: [table.tableArn],
          }),
          ...bucket.statements,
        ],
      },
      BACKUP_EXPORT_ACCESS,
    );
    this.acknowledgeWildcardAtSynth(
      this.policyOf(fn, "backup export"),
      bucket.objects,
      `The backup objects under ${BACKUP_PREFIX} in the backup bucket: every export writes new objects named by its ` +
        "backup id (<backupId>/manifest.json, <backupId>/events-<n>...), chosen at run time, so their ARNs cannot be " +
        "listed; the prefix keeps the grant off anything else in the bucket, and no delete or retention action is given.",
    );

    const schedules =
      config.backupSchedule === undefined
        ? []
        : this.schedules({
            id: "Backup",
            target: { fn },
            schedule: config.backupSchedule,
            input: (workspaceId) => ({ workspaceId, kind: "full" }),
            description: (workspaceId) => `full backup export of workspace ${workspaceId}`,
            retryAttempts: BACKUP_SCHEDULE_RETRY_ATTEMPTS,
            maxEventAge: BACKUP_SCHEDULE_MAX_EVENT_AGE,
          });

    new CfnOutput(this, "BackupExportFunctionName", {
      description:
        'Backup export: invoke with {"workspaceId": "<id>", "kind": "full"} (or without workspaceId: the whole ' +
        'table; {"kind": "incremental", "baseBackupId": "<id>"} for an increment); answers the backup id',
      value: fn.functionName,
    });
    new CfnOutput(this, "BackupExportRoleArn", {
      description:
        "Role of the backup export (creates and uses the backup signing key in the vault): list it in amk:vaultWriterRoleArns",
      value: fn.role!.roleArn,
    });
    return { fn, schedules };
  }

  /**
   * The restoration test: its function (an HSM function: `runRestorationTestHandler` of
   * functions/restoration/handler.ts) with the grants of `RESTORATION_TEST_ACCESS`, its scratch tables
   * (`<table>-scratch-<12 hex>`, created, used and deleted by it) and read access to the backups; the state machine
   * (level ALL, no execution data, traced) and the schedules.
   */
  private createRestorationTest(): {
    workflow: RestorationWorkflow;
    run: NodejsFunction;
    schedules: Schedule[];
  } {
    const { config } = this;
    const { table } = this.eventStore;
    const scratchPrefix = `${table.tableName}${SCRATCH_TABLE_SUFFIX}`;
    // `?` matches exactly one character: the random part of the name, so neither the live table nor an index ARN of
    // a scratch table (".../index/...") matches the table pattern; the indexes are named one by one.
    const scratchTables = this.formatArn({
      service: "dynamodb",
      resource: "table",
      resourceName: `${scratchPrefix}-${"?".repeat(SCRATCH_TABLE_ID_LENGTH)}`,
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
    const bucket = this.backupBucketAccess("Read", BACKUP_READ_ACTIONS, BACKUP_KEY_READ_ACTIONS);
    const run = this.accessFunction(
      {
        id: "RestorationTestRun",
        name: "restoration-test",
        entry: { file: "restoration/handler.ts", handler: "runRestorationTestHandler" },
        description:
          "Restoration test: restores the newest backup into a scratch table, decrypts canaries and a sample with the kit",
        // The restore of a workspace of 100,000 documents, then Argon2id of the kit's drill slot (64 MiB and more).
        memorySize: BACKUP_FUNCTION_MEMORY_MB,
        timeout: BACKUP_FUNCTION_TIMEOUT,
        roleName: restorationTestRoleName(config),
        environment: { ...bucket.environment, AMK_SCRATCH_TABLE_PREFIX: scratchPrefix },
        statements: [
          new PolicyStatement({
            sid: "ManageScratchTables",
            actions: SCRATCH_TABLE_MANAGE_ACTIONS,
            resources: [scratchTables],
          }),
          new PolicyStatement({
            sid: "UseScratchTables",
            actions: SCRATCH_TABLE_DATA_ACTIONS,
            resources: [scratchTables],
          }),
          new PolicyStatement({
            sid: "QueryScratchCensusIndexes",
            actions: EVENT_STORE_INDEX_ACTIONS,
            resources: EVENT_STORE_SCHEMA.censusIndexes.map((i) => `${scratchTables}/index/${i.indexName}`),
          }),
          ...bucket.statements,
        ],
      },
      RESTORATION_TEST_ACCESS,
    );
    this.acknowledgeWildcardAtSynth(
      this.policyOf(run, "restoration test"),
      bucket.objects,
      `The backup objects under ${BACKUP_PREFIX} in the backup bucket, read only (s3:GetObject): the test finds the ` +
        "newest backup of the workspace and reads its manifest and files, named by backup ids chosen at export time, " +
        "so their ARNs cannot be listed; the prefix keeps the grant off anything else in the bucket.",
    );

    const logGroup = new LogGroup(this, "RestorationWorkflowLogs", {
      retention: RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // Level ALL without execution data and X-Ray on, as the construct sets them with a log group.
    const workflow = new RestorationWorkflow(this, "RestorationWorkflow", { run, logGroup });
    const stateMachine = workflow.stateMachine;
    this.acknowledgeStateMachineRole(stateMachine, "restoration", { run });

    const schedules =
      config.restorationSchedule === undefined
        ? []
        : this.schedules({
            id: "Restoration",
            target: { stateMachine },
            schedule: config.restorationSchedule,
            input: (workspaceId) => ({ workspaceId, trigger: "schedule" }),
            description: (workspaceId) => `restoration test of workspace ${workspaceId}`,
            retryAttempts: RESTORATION_SCHEDULE_RETRY_ATTEMPTS,
            maxEventAge: RESTORATION_SCHEDULE_MAX_EVENT_AGE,
          });

    new CfnOutput(this, "RestorationStateMachineArn", {
      description:
        'Restoration test workflow: start an execution with input {"workspaceId": "<id>", "trigger": "on-demand", ' +
        '"backupId": "<optional backup id, default the newest>", "sampleSize": <optional number>}',
      value: stateMachine.stateMachineArn,
    });
    new CfnOutput(this, "RestorationTestRunRoleArn", {
      description:
        "Role of the restoration test function (reads kits, and the backup signing key, from the vault): list it in amk:unlockRoleArns",
      value: run.role!.roleArn,
    });
    return { workflow, run, schedules };
  }

  /**
   * The access-token authorizer: no HSM (a plain function: no PKCS#11 layer, settings or PIN), reads the event store
   * (the workspace's token epoch) and the signing secret, writes nothing. Nothing in this app invokes it: the API
   * that uses it adds the lambda:InvokeFunction permission for apigateway.amazonaws.com.
   */
  private createTokenAuthorizer(): NodejsFunction {
    const ref = this.config.tokenSigningSecret;
    // The secret exists outside this app, as the PIN secret does; referenced by its complete ARN or its name.
    const secretArn =
      ref.kind === "arn"
        ? ref.arn
        : this.formatArn({
            service: "secretsmanager",
            resource: "secret",
            resourceName: `${ref.name}-??????`,
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          });
    const fn = this.accessFunction(
      {
        id: "TokenAuthorizer",
        name: "token-authorizer",
        description: "API Gateway authorizer: verifies access tokens against the workspace's token epoch",
        memorySize: 256,
        timeout: Duration.seconds(10),
        hsm: false,
        environment: { AMK_TOKEN_SIGNING_SECRET_ID: ref.kind === "arn" ? ref.arn : ref.name },
        statements: [
          new PolicyStatement({
            sid: "ReadTokenSigningKey",
            actions: ["secretsmanager:GetSecretValue"],
            resources: [secretArn],
          }),
        ],
      },
      TOKEN_AUTHORIZER_ACCESS,
    );
    new CfnOutput(this, "TokenAuthorizerFunctionArn", {
      description:
        "Token authorizer (REQUEST or TOKEN type) for API Gateway: set its result cache TTL to 0 or short",
      value: fn.functionArn,
    });
    return fn;
  }

  /**
   * A function with the grants and environment of `access` (see `FunctionAccess`) on top of `p`: the event store
   * (`AMK_EVENT_TABLE`), the vault (`AMK_VAULT_REGION` always: the handlers build the vault client when they start;
   * the access role only with `access.vault`), the alert topic, the event bus.
   */
  private accessFunction(
    p: FunctionProps & { readonly hsm?: boolean },
    access: FunctionAccess,
  ): NodejsFunction {
    const { config } = this;
    const { table, key: tableKey } = this.eventStore;
    const statements: PolicyStatement[] = [
      new PolicyStatement({
        sid: access.append ? "AppendToEventStore" : "ReadEventStore",
        actions: access.append ? EVENT_STORE_APPEND_ACTIONS : EVENT_STORE_READ_ACTIONS,
        resources: [table.tableArn],
      }),
      ...(access.indexes.length === 0
        ? []
        : [
            new PolicyStatement({
              sid: "QueryCensusIndexes",
              actions: EVENT_STORE_INDEX_ACTIONS,
              resources: access.indexes.map((index) => `${table.tableArn}/index/${index}`),
            }),
          ]),
      new PolicyStatement({
        sid: "UseEventStoreKey",
        actions: access.append ? EVENT_STORE_KEY_WRITE_ACTIONS : EVENT_STORE_KEY_READ_ACTIONS,
        resources: [tableKey.keyArn],
      }),
    ];
    const environment: Record<string, string> = { AMK_EVENT_TABLE: table.tableName };
    const hsm = p.hsm ?? true;
    if (hsm || access.vault !== undefined) {
      // The handlers build the vault client in every function that opens the HSM (functions/shared/vault.ts needs
      // its region to start), and a function without the HSM that uses the vault (the export) needs it too; only
      // those with `access.vault` may call it. Default: the service's region.
      environment.AMK_VAULT_REGION = config.vault.region ?? this.region;
    }

    if (access.vault !== undefined) {
      // The vault stack's design (infra/lib/vault-stack.ts): every vault call goes through its access role, assumed
      // with the session tag amk:vault-caller=<kind>; the vault key is usable by that role only, so this role gets no
      // Secrets Manager or KMS right of its own. functions/shared/vault.ts assumes it (AMK_VAULT_ACCESS_ROLE_ARN).
      const caller = CALLER_TAG_VALUES[access.vault];
      const accessRoleArn = this.vaultAccessRoleArn();
      statements.push(
        new PolicyStatement({
          sid: "AssumeVaultAccessRole",
          actions: ["sts:AssumeRole"],
          resources: [accessRoleArn],
        }),
        new PolicyStatement({
          sid: access.vault === "writer" ? "TagVaultSessionAsWriter" : "TagVaultSessionAsUnlock",
          actions: ["sts:TagSession"],
          resources: [accessRoleArn],
          conditions: {
            StringEquals: { [`aws:RequestTag/${CALLER_TAG_KEY}`]: caller },
            "ForAllValues:StringEquals": { "aws:TagKeys": [CALLER_TAG_KEY] },
          },
        }),
      );
      environment.AMK_VAULT_ACCESS_ROLE_ARN = accessRoleArn;
      environment.AMK_VAULT_CALLER = caller;
      // The key a kit secret created on the first put must use; readers create nothing.
      if (access.vault === "writer" && config.vault.keyArn !== undefined) {
        environment.AMK_VAULT_KMS_KEY_ID = config.vault.keyArn;
      }
    }

    if (access.alerts === true) {
      const { topic, key } = this.alerts;
      statements.push(
        new PolicyStatement({
          sid: "PublishAlerts",
          actions: ALERT_TOPIC_ACTIONS,
          resources: [topic.topicArn],
        }),
        // SNS encrypts the message with the topic's key on the publisher's behalf.
        new PolicyStatement({
          sid: "UseAlertTopicKey",
          actions: ALERT_KEY_ACTIONS,
          resources: [key.keyArn],
          conditions: { StringEquals: { "kms:ViaService": `sns.${this.region}.amazonaws.com` } },
        }),
      );
      environment.AMK_ALERT_TOPIC_ARN = topic.topicArn;
    }

    if (access.bus === true) {
      statements.push(
        new PolicyStatement({
          sid: "PublishOnEventBus",
          actions: ["events:PutEvents"],
          resources: [this.eventBusArn()],
          // Only events that say they are ours (the EventBridge adapter's source).
          conditions: { StringEquals: { "events:source": EVENT_SOURCE } },
        }),
      );
      environment.AMK_EVENT_BUS_NAME = config.eventBusName;
    }

    return this.createFunction(
      {
        ...p,
        environment: { ...environment, ...p.environment },
        statements: [...statements, ...(p.statements ?? [])],
      },
      hsm,
    );
  }

  /** The vault stack's access role: `amk:vaultAccessRoleArn`, or its fixed name in the vault account. */
  private vaultAccessRoleArn(): string {
    const { config } = this;
    return (
      config.vault.accessRoleArn ??
      this.formatArn({
        service: "iam",
        region: "",
        account: config.vault.account ?? this.account,
        resource: "role",
        resourceName: vaultAccessRoleName(config),
      })
    );
  }

  /** The event bus of `amk:eventBusName` in this account and region. */
  eventBusArn(): string {
    return this.formatArn({
      service: "events",
      resource: "event-bus",
      resourceName: this.config.eventBusName,
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
  }

  /**
   * cdk-nag on the role CDK gives a state machine: lambda:InvokeFunction on its functions (and their versions, the
   * ":*" ARNs CDK adds), X-Ray, and the log-delivery actions, which IAM only grants on "*". Each acknowledged one by
   * one: any other wildcard still fails the synth.
   */
  private acknowledgeStateMachineRole(
    stateMachine: StateMachine,
    what: string,
    functions: Record<string, NodejsFunction>,
  ): void {
    const role: IRole = stateMachine.role;
    const policy = role.node.tryFindChild("DefaultPolicy");
    const cfnPolicy = policy?.node.defaultChild as CfnElement | undefined;
    if (cfnPolicy === undefined) throw new Error(`the ${what} state machine's role has no default policy`);
    Validations.of(cfnPolicy).acknowledge({
      id: "AwsSolutions-IAM5[Resource::*]",
      reason:
        "X-Ray (xray:PutTraceSegments, PutTelemetryRecords, GetSamplingRules, GetSamplingTargets) and the vended " +
        "log delivery (logs:CreateLogDelivery, ...) of the state machine: these actions have no resource-level " +
        'permissions, IAM only accepts "*" for them.',
    });
    for (const [label, fn] of Object.entries(functions)) {
      const arn = flattenForNag(this.resolve(fn.functionArn));
      Validations.of(cfnPolicy).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${arn}:*]`,
        reason:
          `lambda:InvokeFunction on the versions and aliases of the ${label} function (its ARN followed by ":*"), ` +
          `as CDK's LambdaInvoke task grants it; no other function is reachable from the ${what} state machine.`,
      });
    }
  }

  /**
   * One EventBridge Scheduler schedule per workspace, starting `target.stateMachine` or invoking `target.fn`
   * (asynchronously), in a group of their own (`amk-<env>-<id lower-cased>`): the scheduler role is trusted for
   * schedules of that group only. A state machine's role is CDK's (states:StartExecution on it); a function's is made
   * here, so that its `lambda:InvokeFunction` on "<function ARN>:*" (as `grantInvoke` writes it) can be acknowledged.
   */
  private schedules(p: {
    id: string;
    target: { readonly stateMachine: StateMachine } | { readonly fn: NodejsFunction };
    schedule: ScheduleConfig;
    input: (workspaceId: string) => Record<string, string>;
    description: (workspaceId: string) => string;
    retryAttempts: number;
    maxEventAge: Duration;
  }): Schedule[] {
    const { config } = this;
    const group = new ScheduleGroup(this, `${p.id}Schedules`, {
      scheduleGroupName: `amk-${config.environment}-${p.id.toLowerCase()}`,
      // Stateless: deleted with the stack (and its schedules with it), so that a redeploy can create it again.
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const delivery = { retryAttempts: p.retryAttempts, maxEventAge: p.maxEventAge };
    let target: (input: ScheduleTargetInput) => IScheduleTarget;
    let role: Role | undefined;
    if ("stateMachine" in p.target) {
      const { stateMachine } = p.target;
      target = (input) => new StepFunctionsStartExecution(stateMachine, { input, ...delivery });
    } else {
      const { fn } = p.target;
      const schedulerRole = new Role(this, `${p.id}SchedulerRole`, {
        description: `ArquivoMate Keys (${config.environment}): EventBridge Scheduler, schedules of ${group.scheduleGroupName}`,
        // As CDK writes it for the roles it makes: this account's schedules of this group only.
        assumedBy: new ServicePrincipal("scheduler.amazonaws.com", {
          conditions: {
            StringEquals: { "aws:SourceAccount": this.account, "aws:SourceArn": group.scheduleGroupArn },
          },
        }),
      });
      role = schedulerRole;
      target = (input) => new LambdaInvoke(fn, { input, role: schedulerRole, ...delivery });
    }
    const schedules = p.schedule.workspaceIds.map(
      (workspaceId) =>
        new Schedule(this, `${p.id}Schedule-${workspaceId}`, {
          description: `ArquivoMate Keys (${config.environment}): ${p.description(workspaceId)}`,
          schedule: ScheduleExpression.expression(p.schedule.expression),
          scheduleGroup: group,
          target: target(ScheduleTargetInput.fromObject(p.input(workspaceId))),
        }),
    );
    if (role !== undefined && "fn" in p.target) {
      const cfnPolicy = role.node.tryFindChild("DefaultPolicy")?.node.defaultChild as CfnElement | undefined;
      if (cfnPolicy === undefined) throw new Error(`the ${p.id} scheduler role has no default policy`);
      Validations.of(cfnPolicy).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${flattenForNag(this.resolve(p.target.fn.functionArn))}:*]`,
        reason:
          `lambda:InvokeFunction on the versions and aliases of the ${p.target.fn.node.id} function (its ARN ` +
          'followed by ":*"), as the scheduler\'s LambdaInvoke target grants it; the role invokes no other function.',
      });
    }
    return schedules;
  }

  /**
   * cdk-nag IAM5 for a resource pattern that holds a value of the stateful stack (the backup bucket's ARN): that
   * value only takes its final form in this stack (a weak reference, `Fn::GetStackOutput`) when the app is prepared
   * for synthesis, so the finding's id is worked out then, in the validation phase that comes before cdk-nag, and
   * acknowledged on `policy` with `reason`. For a literal resource the id is the same as at construction time.
   */
  private acknowledgeWildcardAtSynth(policy: CfnResource, resource: string, reason: string): void {
    let acknowledged = false;
    this.node.addValidation({
      validate: () => {
        if (!acknowledged) {
          acknowledged = true;
          const id = `AwsSolutions-IAM5[Resource::${flattenForNag(this.resolve(resource))}]`;
          Validations.of(policy).acknowledge({ id, reason });
          // cdk-nag copied the acknowledgements into the template's `cdk_nag` metadata earlier (an aspect): add this
          // one there too, so that its reason travels with what is deployed like the others'.
          const written = policy.getMetadata("cdk_nag") as
            { rules_to_suppress?: { id: string; reason: string }[] } | undefined;
          if (written !== undefined) {
            policy.addMetadata("cdk_nag", {
              ...written,
              rules_to_suppress: [...(written.rules_to_suppress ?? []), { id, reason }],
            });
          }
        }
        return [];
      },
    });
  }

  /** A function that opens the HSM (see `createFunction`). */
  private hsmFunction(p: FunctionProps): NodejsFunction {
    return this.createFunction(p, true);
  }

  /**
   * A function in the shape every function shares: the ESM bundle, nodejs22.x on x86_64, its own log group, and its
   * own role without managed policies (its own logs and the given statements; nothing else). A function that opens
   * the HSM (`hsm`) also gets the PKCS#11 layer when configured, the PKCS#11 settings and GetSecretValue on the PIN
   * secret; any other gets none of them.
   */
  private createFunction(p: FunctionProps, hsm: boolean): NodejsFunction {
    const { config } = this;
    const logGroup = new LogGroup(this, `${p.id}Logs`, {
      retention: RetentionDays.THREE_MONTHS,
      // Operational evidence (HSM health, data keys handed out, lifecycle events): kept if the stack is torn down.
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const role = new Role(this, `${p.id}Role`, {
      ...(p.roleName === undefined ? {} : { roleName: p.roleName }),
      assumedBy: new ServicePrincipal("lambda.amazonaws.com"),
      description: `ArquivoMate Keys (${config.environment}): ${p.name} function`,
    });
    role.addToPrincipalPolicy(
      new PolicyStatement({
        sid: "WriteOwnLogs",
        actions: ["logs:CreateLogStream", "logs:PutLogEvents"],
        // The log group's Arn attribute ends in ":*", which covers its log streams and nothing else.
        resources: [logGroup.logGroupArn],
      }),
    );
    if (hsm) {
      role.addToPrincipalPolicy(
        new PolicyStatement({
          sid: "ReadHsmPin",
          actions: ["secretsmanager:GetSecretValue"],
          resources: [this.pinSecretPolicyArn],
        }),
      );
    }
    for (const statement of p.statements ?? []) role.addToPrincipalPolicy(statement);
    // In the VPC: Lambda manages the function's network interfaces with its role (these actions have no
    // resource-level permissions); the function's own code may not use them.
    const placement = hsm ? this.network?.placement() : undefined;
    if (placement !== undefined) {
      role.addToPrincipalPolicy(
        new PolicyStatement({
          sid: "ManageVpcNetworkInterfaces",
          actions: VPC_ENI_ACTIONS,
          resources: ["*"],
        }),
      );
      role.addToPrincipalPolicy(
        new PolicyStatement({
          sid: "NoNetworkInterfacesFromFunctionCode",
          effect: Effect.DENY,
          actions: VPC_ENI_ACTIONS,
          resources: ["*"],
          conditions: {
            ArnLike: {
              "lambda:SourceFunctionArn": this.formatArn({
                service: "lambda",
                resource: "function",
                resourceName: "*",
                arnFormat: ArnFormat.COLON_RESOURCE_NAME,
              }),
            },
          },
        }),
      );
    }

    const fn = new NodejsFunction(this, p.id, {
      description: p.description,
      entry: join(REPO_ROOT, "functions", p.entry?.file ?? join(p.name, "handler.ts")),
      handler: p.entry?.handler ?? "handler",
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, "package-lock.json"),
      runtime: FUNCTION_RUNTIME,
      architecture: FUNCTION_ARCHITECTURE,
      memorySize: p.memorySize,
      timeout: p.timeout,
      role,
      logGroup,
      // X-Ray active tracing: Lambda samples and sends the invocation segments (role: PutTraceSegments,
      // PutTelemetryRecords). The handlers add their own subsegments once they use the Powertools Tracer.
      tracing: Tracing.ACTIVE,
      ...(placement ?? {}),
      layers: hsm ? this.pkcs11Layers : [],
      environment: {
        ...(hsm
          ? {
              AMK_PKCS11_LIBRARY: config.pkcs11Library,
              AMK_PKCS11_TOKEN_LABEL: config.tokenLabel,
              // The id of the secret that holds the PIN, never the PIN: the function reads it at run time.
              AMK_PKCS11_PIN_SECRET_ID: this.pinSecretId,
            }
          : {}),
        ...p.environment,
        POWERTOOLS_SERVICE_NAME: `arquivomate-keys-${p.name}`,
        NODE_OPTIONS: "--enable-source-maps",
      },
      bundling: {
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: "node22",
        platform: "node",
        mainFields: ["module", "main"],
        banner: ESM_REQUIRE_BANNER,
        externalModules: EXTERNAL_MODULES,
        ...(KIT_FUNCTION_ENTRIES.includes(p.entry?.file ?? join(p.name, "handler.ts"))
          ? { nodeModules: NATIVE_NODE_MODULES }
          : {}),
        minify: true,
        sourceMap: true,
        sourcesContent: false,
      },
      ...p.options,
    });

    this.functions[p.name] = fn;

    // On the role's policy only, one acknowledgement for every "*" of it.
    const cfnPolicy = role.node.tryFindChild("DefaultPolicy")?.node.defaultChild as CfnElement | undefined;
    if (cfnPolicy === undefined) throw new Error(`the ${p.name} function's role has no default policy`);
    Validations.of(cfnPolicy).acknowledge({
      id: "AwsSolutions-IAM5[Resource::*]",
      reason: [
        'X-Ray active tracing (xray:PutTraceSegments, xray:PutTelemetryRecords): IAM only accepts "*" for them.',
        ...(placement === undefined
          ? []
          : [
              "The VPC network interfaces Lambda manages with the function's role (ec2:CreateNetworkInterface, " +
                'DescribeNetworkInterfaces, DescribeSubnets, ...): Lambda documents them on "*", and the function\'s ' +
                "own code is denied them (lambda:SourceFunctionArn).",
            ]),
        ...(p.wildcardReason === undefined ? [] : [p.wildcardReason]),
      ].join(" "),
    });

    // On the function resource itself: the event invoke config and permissions under the construct are not L1's.
    Validations.of(fn.node.defaultChild as CfnFunction).acknowledge({
      id: "AwsSolutions-L1",
      reason: hsm
        ? "nodejs22.x is chosen on purpose: the pkcs11js native module in the PKCS#11 layer is compiled for the " +
          "Node 22 ABI and the CloudHSM client library is validated against it; moving to a newer runtime means " +
          "rebuilding and re-testing that layer first (see docs/decisions/0003-infrastructure-shape.md)."
        : "nodejs22.x like every other function of the service: the shared code (core/, functions/shared/) is " +
          "bundled for and tested on Node 22 (esbuild target node22); this function moves with the others when the " +
          "PKCS#11 layer is rebuilt for a newer runtime (see docs/decisions/0003-infrastructure-shape.md).",
    });
    return fn;
  }
}
