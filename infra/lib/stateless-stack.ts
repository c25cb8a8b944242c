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
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  Validations,
  type CfnElement,
  type StackProps,
} from "aws-cdk-lib";
import { EventBus, Rule } from "aws-cdk-lib/aws-events";
import { LambdaFunction } from "aws-cdk-lib/aws-events-targets";
import { PolicyStatement, Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { Architecture, CfnFunction, LayerVersion, Runtime, type ILayerVersion } from "aws-cdk-lib/aws-lambda";
import { SqsDestination } from "aws-cdk-lib/aws-lambda-destinations";
import { NodejsFunction, OutputFormat, type NodejsFunctionProps } from "aws-cdk-lib/aws-lambda-nodejs";
import { LogGroup, RetentionDays } from "aws-cdk-lib/aws-logs";
import { Schedule, ScheduleExpression, ScheduleGroup, ScheduleTargetInput } from "aws-cdk-lib/aws-scheduler";
import { StepFunctionsStartExecution } from "aws-cdk-lib/aws-scheduler-targets";
import { Secret, type ISecret } from "aws-cdk-lib/aws-secretsmanager";
import { Queue, type IQueue } from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { RotationWorkflow } from "../../workflows/rotation-workflow.js";
import type { AmkConfig } from "./config.js";
import { lifecycleRuleName, rotationCompleteRoleName, vaultAccessRoleName } from "./names.js";
import { EVENT_STORE_SCHEMA, type DeadLetterResources, type EventStoreResources } from "./stateful-stack.js";
import { CALLER_TAG_KEY, CALLER_TAG_VALUES, flattenForNag } from "./vault-stack.js";

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
 * What each rotation step does against the event store (core/rotation/rotation-service.ts through
 * DynamoDbEventStore), hence its grants: `append` = it appends events (PutItem, BatchGetItem on top of the reads);
 * `indexes` = the census indexes it queries.
 * - start: reads the workspace stream, appends MasterKeyCreated/StateChanged/RotationStarted; creates the key (HSM).
 * - plan: reads the workspace; counts documents per old version (census-1).
 * - rewrapShard: reads the workspace; lists the shard's documents (census-1); reads and appends each document's
 *   stream; re-wraps in the HSM.
 * - census: reads the workspace; counts (census-1), lists the key ids in use (census-2), samples documents on the new
 *   version (census-1) and reads their streams.
 * - complete: the census (census-1, census-2); re-issues the kit (HSM export, vault put, KitIssued appended);
 *   appends the retirements and RotationCompleted.
 * - failure: reads the workspace, appends RotationFailed.
 */
export const ROTATION_STEP_ACCESS = {
  start: { append: true, indexes: [] },
  plan: { append: false, indexes: [CENSUS_BY_KEY_ID] },
  rewrapShard: { append: true, indexes: [CENSUS_BY_KEY_ID] },
  census: { append: false, indexes: [CENSUS_BY_KEY_ID, KEY_IDS_IN_USE] },
  complete: { append: true, indexes: [CENSUS_BY_KEY_ID, KEY_IDS_IN_USE] },
  failure: { append: true, indexes: [] },
} as const satisfies Record<string, { append: boolean; indexes: readonly string[] }>;

/** The rotation's shard tasks: 15 min (the Lambda maximum), of which 14 min are spent re-wrapping. */
export const REWRAP_SHARD_TIMEOUT = Duration.minutes(15);
export const REWRAP_BUDGET_MS = 840_000;
/** Delivery of a scheduled rotation start: 8 attempts within at most 2 h (then the start is dropped; see docs). */
export const ROTATION_SCHEDULE_RETRY_ATTEMPTS = 8;
export const ROTATION_SCHEDULE_MAX_EVENT_AGE = Duration.hours(2);

export interface StatelessStackProps extends StackProps {
  readonly config: AmkConfig;
  /** The event store's table and key from the stateful stack. */
  readonly eventStore: EventStoreResources;
  /** The document-lifecycle dead-letter queues and their key from the stateful stack. */
  readonly deadLetters: DeadLetterResources;
}

interface HsmFunctionProps {
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
  /** Environment on top of the PKCS#11 settings. */
  readonly environment?: Record<string, string>;
  /** Statements of the role on top of its own logs and the PIN secret. */
  readonly statements?: PolicyStatement[];
  /** Further function options (asynchronous invocation settings). */
  readonly options?: Pick<NodejsFunctionProps, "retryAttempts" | "maxEventAge" | "onFailure">;
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
  }

  /**
   * The rotation workflow: six functions (one per Task), each with the grants of its step only; the state machine
   * (its role: lambda:InvokeFunction on the six, X-Ray, log delivery) logging errors without execution data to its
   * own log group; and, when configured, one schedule per workspace.
   */
  private createRotation(): {
    workflow: RotationWorkflow;
    functions: StatelessStack["rotationFunctions"];
    schedules: Schedule[];
  } {
    const { config } = this;
    const { table, key: tableKey } = this.eventStore;
    // The handlers build the vault client in every step (functions/shared/vault.ts needs its region to start); only
    // RotationComplete calls it. Default: the service's region, as for the vault stack.
    const vaultRegion = config.vault.region ?? this.region;
    const environment: Record<string, string> = {
      AMK_EVENT_TABLE: table.tableName,
      AMK_VAULT_REGION: vaultRegion,
    };

    const eventStoreStatements = (access: { append: boolean; indexes: readonly string[] }) => [
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

    // The vault stack's design (infra/lib/vault-stack.ts): every vault call goes through its access role, assumed
    // with the session tag amk:vault-caller=writer; the vault key is usable by that role only, so this role gets no
    // Secrets Manager or KMS right of its own. functions/shared/vault.ts assumes it (AMK_VAULT_ACCESS_ROLE_ARN).
    const vaultAccessRoleArn =
      config.vault.accessRoleArn ??
      this.formatArn({
        service: "iam",
        region: "",
        account: config.vault.account ?? this.account,
        resource: "role",
        resourceName: vaultAccessRoleName(config),
      });
    const vaultWriterStatements = [
      new PolicyStatement({
        sid: "AssumeVaultAccessRole",
        actions: ["sts:AssumeRole"],
        resources: [vaultAccessRoleArn],
      }),
      new PolicyStatement({
        sid: "TagVaultSessionAsWriter",
        actions: ["sts:TagSession"],
        resources: [vaultAccessRoleArn],
        conditions: {
          StringEquals: { [`aws:RequestTag/${CALLER_TAG_KEY}`]: CALLER_TAG_VALUES.writer },
          "ForAllValues:StringEquals": { "aws:TagKeys": [CALLER_TAG_KEY] },
        },
      }),
    ];

    const step = (
      id: string,
      name: string,
      handler: string,
      access: { append: boolean; indexes: readonly string[] },
      p: Pick<HsmFunctionProps, "description" | "memorySize" | "timeout"> &
        Partial<Pick<HsmFunctionProps, "environment" | "statements" | "roleName">>,
    ) =>
      this.hsmFunction({
        id,
        name,
        entry: { file: "rotation/handlers.ts", handler },
        ...p,
        environment: { ...environment, ...p.environment },
        statements: [...eventStoreStatements(access), ...(p.statements ?? [])],
      });

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
        environment: {
          AMK_VAULT_ACCESS_ROLE_ARN: vaultAccessRoleArn,
          AMK_VAULT_CALLER: CALLER_TAG_VALUES.writer,
          ...(config.vault.keyArn === undefined ? {} : { AMK_VAULT_KMS_KEY_ID: config.vault.keyArn }),
        },
        statements: vaultWriterStatements,
      }),
      failure: step("RotationFailure", "rotation-failure", "failureHandler", A.failure, {
        description:
          "Rotation: records RotationFailed in the workspace stream and raises the alert (RecordFailure)",
        memorySize: 512,
        timeout: Duration.seconds(60),
      }),
    };

    const logGroup = new LogGroup(this, "RotationWorkflowLogs", {
      retention: RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const workflow = new RotationWorkflow(this, "RotationWorkflow", { functions, logGroup });
    const stateMachine = workflow.stateMachine;

    Validations.of(stateMachine.node.defaultChild as CfnElement).acknowledge({
      id: "AwsSolutions-SF1",
      reason:
        "Logs at level ERROR without execution data, on purpose: every failed state and execution is logged, and " +
        "the step-by-step history (90 days) is in Step Functions itself; level ALL would add a log event per state " +
        "transition of every shard loop without telling more.",
    });
    // The role CDK gives the state machine: lambda:InvokeFunction on the six functions (and their versions, the
    // ":*" ARNs CDK adds), X-Ray, and the log-delivery actions, which IAM only grants on "*".
    const policy = stateMachine.role.node.tryFindChild("DefaultPolicy");
    const cfnPolicy = policy?.node.defaultChild as CfnElement | undefined;
    if (cfnPolicy === undefined) throw new Error("the rotation state machine's role has no default policy");
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
          "as CDK's LambdaInvoke task grants it; no other function is reachable.",
      });
    }

    const schedules: Schedule[] = [];
    const scheduleConfig = config.rotationSchedule;
    if (scheduleConfig !== undefined) {
      // A group of their own: the scheduler role's trust policy is limited to schedules of this group.
      const group = new ScheduleGroup(this, "RotationSchedules", {
        scheduleGroupName: `amk-${config.environment}-rotation`,
        // Stateless: deleted with the stack (and its schedules with it), so that a redeploy can create it again.
        removalPolicy: RemovalPolicy.DESTROY,
      });
      for (const workspaceId of scheduleConfig.workspaceIds) {
        schedules.push(
          new Schedule(this, `RotationSchedule-${workspaceId}`, {
            description: `ArquivoMate Keys (${config.environment}): rotates workspace ${workspaceId}`,
            schedule: ScheduleExpression.expression(scheduleConfig.expression),
            scheduleGroup: group,
            target: new StepFunctionsStartExecution(stateMachine, {
              input: ScheduleTargetInput.fromObject({ workspaceId }),
              retryAttempts: ROTATION_SCHEDULE_RETRY_ATTEMPTS,
              maxEventAge: ROTATION_SCHEDULE_MAX_EVENT_AGE,
            }),
          }),
        );
      }
    }

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
   * A function that opens the HSM, in the shape every such function shares: the ESM bundle, nodejs22.x on x86_64,
   * the PKCS#11 layer when configured, its own log group, and its own role without managed policies (its own logs,
   * the PIN secret, and the given statements; nothing else).
   */
  private hsmFunction(p: HsmFunctionProps): NodejsFunction {
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
    role.addToPrincipalPolicy(
      new PolicyStatement({
        sid: "ReadHsmPin",
        actions: ["secretsmanager:GetSecretValue"],
        resources: [this.pinSecretPolicyArn],
      }),
    );
    for (const statement of p.statements ?? []) role.addToPrincipalPolicy(statement);

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
      layers: this.pkcs11Layers,
      environment: {
        AMK_PKCS11_LIBRARY: config.pkcs11Library,
        AMK_PKCS11_TOKEN_LABEL: config.tokenLabel,
        // The id of the secret that holds the PIN, never the PIN: the function reads it at run time.
        AMK_PKCS11_PIN_SECRET_ID: this.pinSecretId,
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
        minify: true,
        sourceMap: true,
        sourcesContent: false,
      },
      ...p.options,
    });

    // On the function resource itself: the event invoke config and permissions under the construct are not L1's.
    Validations.of(fn.node.defaultChild as CfnFunction).acknowledge({
      id: "AwsSolutions-L1",
      reason:
        "nodejs22.x is chosen on purpose: the pkcs11js native module in the PKCS#11 layer is compiled for the " +
        "Node 22 ABI and the CloudHSM client library is validated against it; moving to a newer runtime means " +
        "rebuilding and re-testing that layer first (see docs/decisions/0003-infrastructure-shape.md).",
    });
    return fn;
  }
}
