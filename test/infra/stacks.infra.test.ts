/**
 * Infrastructure tests: the resources that matter, asserted on the synthesised templates, plus cdk-nag.
 *
 * The app is synthesised once for the default shape (with real esbuild bundling, as `cdk synth` does) and once for a
 * fully configured production-like shape (layer, secret by complete ARN, account/region; bundling skipped). A third,
 * deliberately non-compliant app proves that cdk-nag really runs and fails the synth. The rotation workflow's own
 * resources (state machine, its grants per step, the schedule) are tested in rotation-workflow.infra.test.ts, the
 * recovery and drill workflows', the alert topic and the token authorizer's in recovery-drill.infra.test.ts, the
 * backup export's and the restoration test's in backups.infra.test.ts; here their functions are checked with the
 * others for what every function shares.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { Validations, type CfnElement } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import { Key } from "aws-cdk-lib/aws-kms";
import type { IConstruct } from "constructs";
import { createApp, type AmkApp } from "../../infra/bin/app.js";
import { InvalidInfraConfigError } from "../../infra/lib/config.js";
import { ESM_REQUIRE_BANNER } from "../../infra/lib/stateless-stack.js";
import { flattenForNag } from "../../infra/lib/vault-stack.js";
import { CDK_JSON_CONTEXT, NO_BUNDLING, synthAppsIn, logicalIdIn, actionsOf } from "../support/infra.js";

/** Every function by the suffix of its POWERTOOLS_SERVICE_NAME. */
const NAMES = [
  "hsm-health",
  "generate-data-keys",
  "decrypt-data-keys",
  "document-lifecycle",
  "rotation-start",
  "rotation-plan",
  "rotation-rewrap-shard",
  "rotation-census",
  "rotation-complete",
  "rotation-failure",
  "recovery-start",
  "recovery-await-unlock",
  "recovery-rotate",
  "recovery-verify",
  "recovery-invalidate-tokens",
  "recovery-complete",
  "recovery-failure",
  "recovery-unlock",
  "drill",
  "token-authorizer",
  "backup-export",
  "restoration-test",
] as const;
/** The functions that do not open the HSM (no PKCS#11 settings, layer or PIN secret). */
const NO_HSM = new Set<string>(["token-authorizer", "backup-export", "rotation-failure", "recovery-failure"]);
/** The workflows' RecordFailure functions: an entry file of their own each (functions/<workflow>/failure.ts). */
const FAILURE_STEPS = ["rotation-failure", "recovery-failure"];
/** The functions of functions/recovery/handlers.ts (one shared bundle). */
const RECOVERY_STEPS = NAMES.filter(
  (n) => n.startsWith("recovery-") && n !== "recovery-unlock" && !FAILURE_STEPS.includes(n),
);
/** The construct ids of the rotation functions (the state machine's Task -> function mapping). */
const ROTATION_IDS = [
  "RotationStart",
  "RotationPlan",
  "RotationRewrapShard",
  "RotationCensus",
  "RotationComplete",
  "RotationFailure",
];
/** The exported handler of the functions whose entry is not `<name>/handler.ts` (`handler`). */
const HANDLERS: Record<string, string> = {
  "rotation-start": "startHandler",
  "rotation-plan": "planHandler",
  "rotation-rewrap-shard": "rewrapShardHandler",
  "rotation-census": "censusHandler",
  "rotation-complete": "completeHandler",
  "rotation-failure": "failureHandler",
  "recovery-start": "startHandler",
  "recovery-await-unlock": "awaitUnlockHandler",
  "recovery-rotate": "rotateHandler",
  "recovery-verify": "verifyHandler",
  "recovery-invalidate-tokens": "invalidateTokensHandler",
  "recovery-complete": "completeHandler",
  "recovery-failure": "failureHandler",
  drill: "runDrillHandler",
  "backup-export": "exportHandler",
  "restoration-test": "runRestorationTestHandler",
};
/** The construct ids of the functions outside the rotation workflow added with the recovery and the drill. */
const RECOVERY_IDS = [
  "RecoveryStart",
  "RecoveryAwaitUnlock",
  "RecoveryRotate",
  "RecoveryVerify",
  "RecoveryInvalidateTokens",
  "RecoveryComplete",
  "RecoveryFailure",
  "RecoveryUnlock",
  "DrillRun",
  "TokenAuthorizer",
];
/** The construct ids of the backup functions (backups.infra.test.ts). */
const BACKUP_IDS = ["BackupExport", "RestorationTestRun"];

const synthApp = synthAppsIn("amk-infra-test", { bundle: true });

interface ValidationReport {
  pluginReports: {
    pluginName: string;
    conclusion: string;
    violations: { ruleName: string; severity: string }[];
  }[];
}
function readReport(outdir: string): ValidationReport {
  return JSON.parse(readFileSync(join(outdir, "validation-report.json"), "utf8")) as ValidationReport;
}
/** The warnings the construct annotations put in the report (cdk-nag's findings are the other plugin's). */
function annotationWarnings(report: ValidationReport): string[] {
  return report.pluginReports
    .filter((p) => p.pluginName === "Construct Annotations")
    .flatMap((p) => p.violations.filter((v) => v.severity === "warning").map((v) => v.ruleName))
    .sort();
}

type Statement = { Sid?: string; Action: string | string[]; Resource: unknown; Effect: string };
type PolicyResource = {
  Properties: { PolicyDocument: { Statement: Statement[] }; Roles: { Ref: string }[] };
};
function statementsOf(template: Template): Statement[] {
  return Object.values(template.findResources("AWS::IAM::Policy"))
    .flatMap((p) => (p as PolicyResource).Properties.PolicyDocument.Statement)
    .filter((st) => !isTracing(st));
}

type FunctionResource = {
  Properties: {
    Role: { "Fn::GetAtt": [string, string] };
    Environment: { Variables: Record<string, unknown> };
    Layers?: unknown;
  };
};
/** The function whose POWERTOOLS_SERVICE_NAME is `arquivomate-keys-<name>`: its logical id and resource. */
function functionOf(template: Template, name: string): { id: string; fn: FunctionResource } {
  const found = Object.entries(template.findResources("AWS::Lambda::Function")).filter(
    ([, r]) =>
      (r as FunctionResource).Properties.Environment.Variables.POWERTOOLS_SERVICE_NAME ===
      `arquivomate-keys-${name}`,
  );
  assert.equal(found.length, 1, `exactly one function ${name}`);
  const [id, fn] = found[0]!;
  return { id, fn: fn as FunctionResource };
}
/**
 * The statement CDK adds for X-Ray active tracing to every function's role; its presence on each role is asserted in
 * operations.infra.test.ts, and the helpers below leave it out.
 */
const TRACING_STATEMENT = {
  Action: ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
  Effect: "Allow",
  Resource: "*",
};
const isTracing = (st: Statement): boolean => JSON.stringify(st) === JSON.stringify(TRACING_STATEMENT);
/** Every statement of every policy attached to the role of function `name` (but the X-Ray one). */
function roleStatementsOf(template: Template, name: string): Statement[] {
  const roleId = functionOf(template, name).fn.Properties.Role["Fn::GetAtt"][0];
  return Object.values(template.findResources("AWS::IAM::Policy"))
    .map((p) => (p as PolicyResource).Properties)
    .filter((p) => p.Roles.some((r) => r.Ref === roleId))
    .flatMap((p) => p.PolicyDocument.Statement)
    .filter((st) => !isTracing(st));
}
/**
 * A value read from the stateful stack (`Fn::GetStackOutput`, CDK's weak cross-stack reference) replaced by what
 * the stateful stack publishes under that output name, e.g. `{ "Fn::GetAtt": ["EventStore...", "Arn"] }`.
 */
function fromStateful(value: unknown, stateful: Template, statefulStackName: string): unknown {
  const ref = (value as { "Fn::GetStackOutput"?: { StackName: string; OutputName: string } })[
    "Fn::GetStackOutput"
  ];
  if (ref === undefined) return value;
  assert.equal(ref.StackName, statefulStackName);
  const outputs = stateful.toJSON().Outputs as Record<string, { Value: unknown }>;
  const output = outputs[ref.OutputName];
  assert.ok(output, `the stateful stack publishes ${ref.OutputName}`);
  return output.Value;
}
/** The logical id of the only resource of `type` matching `props` (or the only one of that type). */
function logicalIdOf(template: Template, type: string, props?: Record<string, unknown>): string {
  const ids = Object.keys(template.findResources(type, props === undefined ? {} : { Properties: props }));
  assert.equal(ids.length, 1, `exactly one ${type} matching ${JSON.stringify(props)}`);
  return ids[0]!;
}
const arnOf = (logicalId: string) => ({ "Fn::GetAtt": [logicalId, "Arn"] });

describe("default configuration (as `cdk synth` with cdk.json)", () => {
  const PIN_SECRET_NAME = "amk-test/hsm-pin";
  let amk: AmkApp;
  let outdir: string;
  let stateful: Template;
  let stateless: Template;

  before(() => {
    ({ amk, outdir } = synthApp({ "amk:environment": "test", "amk:pinSecret": PIN_SECRET_NAME }));
    amk.app.synth(); // throws if cdk-nag (or any validation plugin) reports an unacknowledged finding
    stateful = Template.fromStack(amk.stateful);
    stateless = Template.fromStack(amk.stateless);
  });

  const byAlias = (alias: string) => {
    const aliases = Object.values(
      stateful.findResources("AWS::KMS::Alias", { Properties: { AliasName: alias } }),
    );
    assert.equal(aliases.length, 1, alias);
    return (aliases[0] as { Properties: { TargetKeyId: { "Fn::GetAtt": [string, string] } } }).Properties
      .TargetKeyId["Fn::GetAtt"][0];
  };
  const eventStoreKeyId = () => byAlias("alias/arquivomate-keys/test/event-store");
  const deadLetterKeyId = () => byAlias("alias/arquivomate-keys/test/dead-letters");
  const failuresQueueId = () => logicalIdIn(amk.stateful, amk.stateful.deadLetters.lifecycleFailures);
  const undeliveredQueueId = () => logicalIdIn(amk.stateful, amk.stateful.deadLetters.lifecycleUndelivered);
  const tableId = () => logicalIdOf(stateful, "AWS::DynamoDB::Table");
  const resolve = (v: unknown) => fromStateful(v, stateful, "amk-test-stateful");

  it("passes cdk-nag AwsSolutions with no unacknowledged finding; warns only that there is no VPC", () => {
    const report = readReport(outdir);
    for (const plugin of report.pluginReports) {
      assert.notEqual(plugin.conclusion, "failure", `${plugin.pluginName} failed`);
      if (plugin.pluginName === "Construct Annotations") continue;
      assert.deepEqual(plugin.violations, [], `${plugin.pluginName} reported violations`);
    }
    assert.deepEqual(annotationWarnings(report), ["Annotation::@amk/infra:no-vpc"]);
  });

  it("acknowledges only L1 on the functions, X-Ray's IAM5 on their roles, SQS3 on the DLQs, S1 on the access log bucket, IAM5 on the state machines' roles", () => {
    const acknowledged: [string, string, string][] = [];
    for (const c of amk.app.node.findAll()) {
      // The vault stack's acknowledgements are checked in vault-stack.infra.test.ts.
      if (c.node.path.startsWith("amk-test-vault/")) continue;
      for (const m of c.node.metadata) {
        if (m.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [id, reason] of Object.entries(m.data as Record<string, string>))
          acknowledged.push([c.node.path, id, reason]);
      }
    }
    const policyOf = (workflow: string) =>
      `amk-test-stateless/${workflow}/StateMachine/Role/DefaultPolicy/Resource`;
    const stateMachinePolicy = policyOf("RotationWorkflow");
    // lambda:InvokeFunction on "<function ARN>:*" (versions and aliases), one acknowledgement per function.
    const invokeVersionsOf = (policy: string, fns: readonly IConstruct[]) =>
      fns.map((fn) => [
        policy,
        `Annotation::AwsSolutions-IAM5[Resource::<${logicalIdIn(amk.stateless, fn)}.Arn>:*]`,
      ]);
    const { plan, rewrapShard, census } = amk.stateless.rotationFunctions;
    const invokeVersions = [
      ...invokeVersionsOf(stateMachinePolicy, Object.values(amk.stateless.rotationFunctions)),
      ...invokeVersionsOf(policyOf("RecoveryWorkflow"), [
        ...Object.values(amk.stateless.recoveryFunctions),
        plan,
        rewrapShard,
        census,
      ]),
      ...invokeVersionsOf(policyOf("DrillWorkflow"), [amk.stateless.drillRun]),
      ...invokeVersionsOf(policyOf("RestorationWorkflow"), [amk.stateless.restorationTestRun]),
    ];
    // The backup objects under backups/ (one pattern per backup function), acknowledged as the template holds it:
    // the bucket's ARN read from the stateful stack.
    const backupObjects = (fn: IConstruct & { role?: IConstruct }, sid: string) => {
      const policy = fn.role!.node.findChild("DefaultPolicy").node.defaultChild as CfnElement;
      const statements = (stateless.toJSON().Resources[amk.stateless.getLogicalId(policy)] as PolicyResource)
        .Properties.PolicyDocument.Statement;
      const resource = statements.find((st) => st.Sid === sid)!.Resource;
      return [
        `${fn.node.path}Role/DefaultPolicy/Resource`,
        `Annotation::AwsSolutions-IAM5[Resource::${flattenForNag(resource)}]`,
      ];
    };
    assert.deepEqual(
      acknowledged.map(([path, id]) => [path, id]).sort(),
      [
        ["amk-test-stateful/AccessLogs/Resource", "Annotation::AwsSolutions-S1"],
        ["amk-test-stateful/LifecycleFailures/Resource", "Annotation::AwsSolutions-SQS3"],
        ["amk-test-stateful/LifecycleUndelivered/Resource", "Annotation::AwsSolutions-SQS3"],
        ["amk-test-stateless/DecryptDataKeys/Resource", "Annotation::AwsSolutions-L1"],
        ["amk-test-stateless/DocumentLifecycle/Resource", "Annotation::AwsSolutions-L1"],
        ["amk-test-stateless/GenerateDataKeys/Resource", "Annotation::AwsSolutions-L1"],
        ["amk-test-stateless/HsmHealth/Resource", "Annotation::AwsSolutions-L1"],
        ...[...ROTATION_IDS, ...RECOVERY_IDS, ...BACKUP_IDS].map((id) => [
          `amk-test-stateless/${id}/Resource`,
          "Annotation::AwsSolutions-L1",
        ]),
        // X-Ray active tracing on every function: its two actions only accept "*".
        ...[
          "HsmHealth",
          "GenerateDataKeys",
          "DecryptDataKeys",
          "DocumentLifecycle",
          ...ROTATION_IDS,
          ...RECOVERY_IDS,
          ...BACKUP_IDS,
        ].map((id) => [
          `amk-test-stateless/${id}Role/DefaultPolicy/Resource`,
          "Annotation::AwsSolutions-IAM5[Resource::*]",
        ]),
        ...["RotationWorkflow", "RecoveryWorkflow", "DrillWorkflow", "RestorationWorkflow"].map((w) => [
          policyOf(w),
          "Annotation::AwsSolutions-IAM5[Resource::*]",
        ]),
        ...invokeVersions,
        backupObjects(amk.stateless.backupExport, "WriteBackups"),
        backupObjects(amk.stateless.restorationTestRun, "ReadBackups"),
      ].sort(),
    );
    for (const [path, id, reason] of acknowledged) {
      if (
        id.endsWith("L1") &&
        /\/(TokenAuthorizer|BackupExport|RotationFailure|RecoveryFailure)\//.test(path)
      )
        assert.match(reason, /like every other function.*Node 22/s);
      else if (id.endsWith("L1")) assert.match(reason, /pkcs11js.*Node 22 ABI/);
      else if (id.endsWith("SQS3")) assert.match(reason, /itself a dead-letter queue/);
      else if (id.endsWith("S1")) assert.match(reason, /server access log bucket of the backup bucket/);
      else if (id.endsWith("[Resource::*]") && path.includes("/StateMachine/"))
        assert.match(reason, /X-Ray.*log delivery.*no resource-level/s);
      else if (id.endsWith("[Resource::*]"))
        assert.match(reason, /^X-Ray active tracing .*only accepts "\*"/);
      else if (id.endsWith("/backups/*]")) assert.match(reason, /^The backup objects under backups\//);
      else assert.match(reason, /lambda:InvokeFunction on the versions and aliases of the \w+ function/);
    }
    // The reasons travel in the templates, on the resources they are about and nothing else.
    const withMetadata = (t: Template) =>
      Object.values(
        t.toJSON().Resources as Record<string, { Type: string; Metadata?: { cdk_nag?: unknown } }>,
      )
        .filter((r) => r.Metadata?.cdk_nag !== undefined)
        .map((r) => r.Type);
    assert.deepEqual(withMetadata(stateless).sort(), [
      // the four state machines' roles and the twenty-two functions' roles
      ...Array<string>(26).fill("AWS::IAM::Policy"),
      ...Array<string>(22).fill("AWS::Lambda::Function"),
    ]);
    // The backup objects' acknowledgement (worked out at synthesis, see stateless-stack.ts) is in the template too.
    for (const fn of [amk.stateless.backupExport, amk.stateless.restorationTestRun]) {
      const policy = fn.role!.node.findChild("DefaultPolicy").node.defaultChild as CfnElement;
      const rules = (
        stateless.toJSON().Resources[amk.stateless.getLogicalId(policy)] as {
          Metadata: { cdk_nag: { rules_to_suppress: { id: string }[] } };
        }
      ).Metadata.cdk_nag.rules_to_suppress.map((r) => r.id);
      assert.equal(rules.length, 2, fn.node.id);
      assert.match(rules[1]!, /^AwsSolutions-IAM5\[Resource::.*\/backups\/\*\]$/, fn.node.id);
    }
    assert.deepEqual(withMetadata(stateful).sort(), [
      "AWS::S3::Bucket",
      ...Array<string>(2).fill("AWS::SQS::Queue"),
    ]);
    stateless.hasResource("AWS::Lambda::Function", {
      Metadata: {
        cdk_nag: { rules_to_suppress: [{ id: "AwsSolutions-L1", reason: Match.stringLikeRegexp("ABI") }] },
      },
    });
    stateful.hasResource("AWS::SQS::Queue", {
      Metadata: {
        cdk_nag: {
          rules_to_suppress: [
            { id: "AwsSolutions-SQS3", reason: Match.stringLikeRegexp("dead-letter queue") },
          ],
        },
      },
    });
  });

  it("is environment-agnostic without account/region context", () => {
    assert.equal(amk.stateful.stackName, "amk-test-stateful");
    assert.equal(amk.stateless.stackName, "amk-test-stateless");
    assert.equal(amk.stateful.environment, "aws://unknown-account/unknown-region");
    assert.ok(amk.stateless.dependencies.includes(amk.stateful));
  });

  describe("stateful stack", () => {
    it("has the event-store table: pk/sk strings, on-demand, PITR, deletion protection", () => {
      stateful.resourceCountIs("AWS::DynamoDB::Table", 1);
      stateful.hasResourceProperties("AWS::DynamoDB::Table", {
        KeySchema: [
          { AttributeName: "pk", KeyType: "HASH" },
          { AttributeName: "sk", KeyType: "RANGE" },
        ],
        AttributeDefinitions: Match.arrayWith([
          { AttributeName: "pk", AttributeType: "S" },
          { AttributeName: "sk", AttributeType: "S" },
        ]),
        BillingMode: "PAY_PER_REQUEST",
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        DeletionProtectionEnabled: true,
      });
    });

    it("has the two census GSIs projecting ALL", () => {
      stateful.hasResourceProperties("AWS::DynamoDB::Table", {
        AttributeDefinitions: Match.arrayWith([
          { AttributeName: "gsi1pk", AttributeType: "S" },
          { AttributeName: "gsi1sk", AttributeType: "S" },
          { AttributeName: "gsi2pk", AttributeType: "S" },
          { AttributeName: "gsi2sk", AttributeType: "S" },
        ]),
        GlobalSecondaryIndexes: [
          {
            IndexName: "census-1",
            KeySchema: [
              { AttributeName: "gsi1pk", KeyType: "HASH" },
              { AttributeName: "gsi1sk", KeyType: "RANGE" },
            ],
            Projection: { ProjectionType: "ALL" },
          },
          {
            IndexName: "census-2",
            KeySchema: [
              { AttributeName: "gsi2pk", KeyType: "HASH" },
              { AttributeName: "gsi2sk", KeyType: "RANGE" },
            ],
            Projection: { ProjectionType: "ALL" },
          },
        ],
      });
    });

    it("encrypts the table with the stack's rotating customer-managed key", () => {
      // the event store's, the dead-letter queues', the alerts', the backups'
      stateful.resourceCountIs("AWS::KMS::Key", 4);
      const keyId = eventStoreKeyId();
      stateful.hasResourceProperties("AWS::KMS::Key", { EnableKeyRotation: true });
      assert.equal(
        Object.keys(stateful.findResources("AWS::KMS::Key", { Properties: { EnableKeyRotation: true } }))
          .length,
        4,
      );
      stateful.hasResourceProperties("AWS::DynamoDB::Table", {
        SSESpecification: {
          SSEEnabled: true,
          SSEType: "KMS",
          KMSMasterKeyId: { "Fn::GetAtt": [keyId, "Arn"] },
        },
      });
    });

    it("retains the table, the keys, the queues, the alert topic and the buckets", () => {
      for (const type of [
        "AWS::DynamoDB::Table",
        "AWS::KMS::Key",
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::S3::Bucket",
      ]) {
        const all = Object.keys(stateful.findResources(type));
        const retained = Object.keys(
          stateful.findResources(type, { DeletionPolicy: "Retain", UpdateReplacePolicy: "Retain" }),
        );
        assert.ok(all.length > 0, `some ${type}`);
        assert.deepEqual(retained, all, `every ${type} is retained`);
      }
    });

    it("exposes the table, key, queues and queue key to the stateless stack", () => {
      assert.equal(amk.stateless.eventStore.table, amk.stateful.eventStore.table);
      assert.equal(amk.stateless.eventStore.key, amk.stateful.eventStore.key);
      assert.equal(amk.stateless.deadLetters, amk.stateful.deadLetters);
      assert.equal(amk.stateless.alerts, amk.stateful.alerts);
    });

    it("has two dead-letter queues: SSE with the rotating dead-letter key, 14 days, no DLQ of their own", () => {
      stateful.resourceCountIs("AWS::SQS::Queue", 2);
      const dlKey = deadLetterKeyId();
      assert.equal(
        (stateful.toJSON().Resources[dlKey] as { Properties: { EnableKeyRotation: boolean } }).Properties
          .EnableKeyRotation,
        true,
      );
      for (const id of [failuresQueueId(), undeliveredQueueId()]) {
        const q = stateful.toJSON().Resources[id] as { Properties: Record<string, unknown> };
        assert.deepEqual(q.Properties.KmsMasterKeyId, arnOf(dlKey));
        assert.equal(q.Properties.MessageRetentionPeriod, 14 * 24 * 3600);
        assert.equal(q.Properties.RedrivePolicy, undefined);
        assert.equal(q.Properties.SqsManagedSseEnabled, undefined);
      }
      assert.notEqual(dlKey, eventStoreKeyId(), "not the event store's key");
    });

    it("enforces SSL on both queues", () => {
      for (const id of [failuresQueueId(), undeliveredQueueId()]) {
        stateful.hasResourceProperties("AWS::SQS::QueuePolicy", {
          Queues: [{ Ref: id }],
          PolicyDocument: {
            Statement: Match.arrayWith([
              {
                Action: "sqs:*",
                Condition: { Bool: { "aws:SecureTransport": "false" } },
                Effect: "Deny",
                Principal: { AWS: "*" },
                Resource: arnOf(id),
              },
            ]),
          },
        });
      }
    });

    it("lets EventBridge write to the rule's DLQ and use its key, for the lifecycle rule only", () => {
      const ruleArn = {
        "Fn::Join": [
          "",
          [
            "arn:",
            { Ref: "AWS::Partition" },
            ":events:",
            { Ref: "AWS::Region" },
            ":",
            { Ref: "AWS::AccountId" },
            ":rule/amk-test-document-lifecycle",
          ],
        ],
      };
      stateful.hasResourceProperties("AWS::SQS::QueuePolicy", {
        Queues: [{ Ref: undeliveredQueueId() }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            {
              Sid: "EventBridgeRuleDeadLetters",
              Action: "sqs:SendMessage",
              Condition: { ArnEquals: { "aws:SourceArn": ruleArn } },
              Effect: "Allow",
              Principal: { Service: "events.amazonaws.com" },
              Resource: arnOf(undeliveredQueueId()),
            },
          ]),
        },
      });
      // The function's on-failure queue admits no service principal: Lambda sends with the function's role.
      const failuresPolicy = Object.values(
        stateful.findResources("AWS::SQS::QueuePolicy", {
          Properties: { Queues: [{ Ref: failuresQueueId() }] },
        }),
      )[0] as PolicyResource;
      assert.deepEqual(
        failuresPolicy.Properties.PolicyDocument.Statement.map((st) => st.Effect),
        ["Deny"],
      );
      const keyPolicy = (
        stateful.toJSON().Resources[deadLetterKeyId()] as {
          Properties: { KeyPolicy: { Statement: Record<string, unknown>[] } };
        }
      ).Properties.KeyPolicy.Statement;
      assert.deepEqual(
        keyPolicy.find((st) => st.Sid === "EventBridgeRuleDeadLetters"),
        {
          Sid: "EventBridgeRuleDeadLetters",
          Action: ["kms:Decrypt", "kms:GenerateDataKey"],
          Condition: { ArnEquals: { "aws:SourceArn": ruleArn } },
          Effect: "Allow",
          Principal: { Service: "events.amazonaws.com" },
          Resource: "*",
        },
      );
    });

    it("outputs the URLs of both dead-letter queues", () => {
      stateful.hasOutput("LifecycleFailuresQueueUrl", { Value: { Ref: failuresQueueId() } });
      stateful.hasOutput("LifecycleUndeliveredQueueUrl", { Value: { Ref: undeliveredQueueId() } });
    });
  });

  describe("stateless stack: every function", () => {
    it("has twenty-two nodejs22.x x86_64 functions, each logging to its own group with retention, no layer", () => {
      stateless.resourceCountIs("AWS::Lambda::Function", 22);
      stateless.resourceCountIs("AWS::Logs::LogGroup", 26); // and the four state machines'
      const logGroups = new Set<string>();
      for (const name of NAMES) {
        const { fn } = functionOf(stateless, name);
        const p = fn.Properties as unknown as Record<string, unknown>;
        assert.equal(p.Runtime, "nodejs22.x", name);
        assert.deepEqual(p.Architectures, ["x86_64"], name);
        assert.equal(p.Handler, `index.${HANDLERS[name] ?? "handler"}`, name);
        assert.equal(p.Layers, undefined, name);
        const logGroup = (p.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
        logGroups.add(logGroup);
        const group = stateless.toJSON().Resources[logGroup] as {
          Properties: { RetentionInDays: number };
          DeletionPolicy: string;
        };
        assert.equal(group.Properties.RetentionInDays, 90, `${name}: 3 months retention`);
        assert.equal(group.DeletionPolicy, "Retain", `${name}: log group retained`);
      }
      assert.equal(logGroups.size, 22, "one log group per function");
    });

    it("sizes them: hsm-health 256 MB/10 s, data keys 512 MB/10 s, lifecycle 512 MB/30 s, workflow steps", () => {
      const sizes = Object.fromEntries(
        NAMES.map((name) => {
          const p = functionOf(stateless, name).fn.Properties as unknown as Record<string, number>;
          return [name, [p.MemorySize, p.Timeout]];
        }),
      );
      assert.deepEqual(sizes, {
        "hsm-health": [256, 10],
        "generate-data-keys": [512, 10],
        "decrypt-data-keys": [512, 10],
        "document-lifecycle": [512, 30],
        "rotation-start": [512, 60],
        "rotation-plan": [512, 60],
        "rotation-rewrap-shard": [1024, 900],
        "rotation-census": [512, 60],
        "rotation-complete": [512, 120],
        "rotation-failure": [512, 60],
        "recovery-start": [512, 120],
        "recovery-await-unlock": [512, 60],
        "recovery-rotate": [512, 120],
        "recovery-verify": [512, 300],
        "recovery-invalidate-tokens": [512, 60],
        "recovery-complete": [512, 120],
        "recovery-failure": [512, 60],
        "recovery-unlock": [1024, 120],
        drill: [512, 900],
        "token-authorizer": [256, 10],
        "backup-export": [1024, 900],
        "restoration-test": [1024, 900],
      });
    });

    it("gives each HSM function the PKCS#11 settings and the PIN secret's id, never a PIN; the table name to the event-store ones", () => {
      const accessRole = {
        "Fn::Join": [
          "",
          [
            "arn:",
            { Ref: "AWS::Partition" },
            ":iam::",
            { Ref: "AWS::AccountId" },
            ":role/amk-test-vault-access",
          ],
        ],
      };
      const topic = { Ref: logicalIdIn(amk.stateful, amk.stateful.alerts.topic) };
      const bucket = logicalIdIn(amk.stateful, amk.stateful.backups.bucket);
      const backupKey = logicalIdIn(amk.stateful, amk.stateful.backups.key as unknown as IConstruct);
      // The functions that build the vault client: the workflow steps, the drill and the backup functions.
      const workflowStep = (name: string) =>
        (/^(rotation|recovery)-/.test(name) && !FAILURE_STEPS.includes(name)) ||
        ["drill", "backup-export", "restoration-test"].includes(name);
      const expected = (name: string) => ({
        ...(NO_HSM.has(name)
          ? {}
          : {
              AMK_PKCS11_LIBRARY: "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so",
              AMK_PKCS11_TOKEN_LABEL: "hsm1",
              AMK_PKCS11_PIN_SECRET_ID: PIN_SECRET_NAME,
            }),
        ...(name === "hsm-health" ? {} : { AMK_EVENT_TABLE: { Ref: tableId() } }),
        // The workflow handlers build the vault client in every step; the vault defaults to the service's region.
        ...(workflowStep(name) ? { AMK_VAULT_REGION: { Ref: "AWS::Region" } } : {}),
        ...(name === "rotation-rewrap-shard" ? { AMK_REWRAP_BUDGET_MS: "840000" } : {}),
        // Only the kit re-issues reach the vault as writers, through its access role with the writer session tag;
        // the recovery's start and unlock and the drill read it with the unlock tag.
        ...(["rotation-complete", "recovery-complete", "backup-export"].includes(name)
          ? { AMK_VAULT_ACCESS_ROLE_ARN: accessRole, AMK_VAULT_CALLER: "writer" }
          : {}),
        ...(["recovery-start", "recovery-unlock", "drill", "restoration-test"].includes(name)
          ? { AMK_VAULT_ACCESS_ROLE_ARN: accessRole, AMK_VAULT_CALLER: "unlock" }
          : {}),
        ...([
          "rotation-failure",
          "recovery-rotate",
          "recovery-complete",
          "recovery-failure",
          "recovery-unlock",
          "drill",
          "restoration-test",
        ].includes(name)
          ? { AMK_ALERT_TOPIC_ARN: topic }
          : {}),
        ...(["backup-export", "restoration-test"].includes(name)
          ? {
              AMK_BACKUP_BUCKET: { Ref: bucket },
              AMK_BACKUP_PREFIX: "backups/",
              AMK_BACKUP_KMS_KEY_ID: arnOf(backupKey),
            }
          : {}),
        ...(name === "restoration-test"
          ? { AMK_SCRATCH_TABLE_PREFIX: { "Fn::Join": ["", [{ Ref: tableId() }, "-scratch"]] } }
          : {}),
        ...(name === "recovery-await-unlock" ? { AMK_UNLOCK_TIMEOUT_SECONDS: "86400" } : {}),
        ...(name === "recovery-invalidate-tokens" ? { AMK_EVENT_BUS_NAME: "default" } : {}),
        ...(name === "token-authorizer"
          ? { AMK_TOKEN_SIGNING_SECRET_ID: "arquivomate-keys/test/token-signing-key" }
          : {}),
        POWERTOOLS_SERVICE_NAME: `arquivomate-keys-${name}`,
        NODE_OPTIONS: "--enable-source-maps",
      });
      // Weak references anywhere in a value (the scratch prefix joins the table name) read through the stateful stack.
      const deepResolve = (v: unknown): unknown =>
        Array.isArray(v)
          ? v.map(deepResolve)
          : v !== null && typeof v === "object"
            ? "Fn::GetStackOutput" in v
              ? resolve(v)
              : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deepResolve(x)]))
            : v;
      for (const name of NAMES) {
        const vars = functionOf(stateless, name).fn.Properties.Environment.Variables;
        const resolved = Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, deepResolve(v)]));
        assert.deepEqual(resolved, expected(name), name);
        for (const key of Object.keys(vars)) {
          assert.doesNotMatch(key, /PIN$|PASSWORD|PASSPHRASE/, `${name}: ${key} must not carry a secret`);
        }
      }
    });

    it("gives each its own role: no managed policy, logs on its own group, GetSecretValue on exactly the PIN secret", () => {
      stateless.resourceCountIs("AWS::IAM::Role", 26); // and the four state machines'
      const roles = new Set(NAMES.map((n) => functionOf(stateless, n).fn.Properties.Role["Fn::GetAtt"][0]));
      assert.equal(roles.size, 22, "one role per function");
      for (const roleId of roles) {
        const role = stateless.toJSON().Resources[roleId] as { Properties: Record<string, unknown> };
        assert.deepEqual(role.Properties.AssumeRolePolicyDocument, {
          Statement: [
            { Action: "sts:AssumeRole", Effect: "Allow", Principal: { Service: "lambda.amazonaws.com" } },
          ],
          Version: "2012-10-17",
        });
        assert.equal(role.Properties.ManagedPolicyArns, undefined);
      }
      const pinSecretArn = {
        "Fn::Join": [
          "",
          [
            "arn:",
            { Ref: "AWS::Partition" },
            ":secretsmanager:",
            { Ref: "AWS::Region" },
            ":",
            { Ref: "AWS::AccountId" },
            `:secret:${PIN_SECRET_NAME}-??????`,
          ],
        ],
      };
      for (const name of NAMES) {
        const statements = roleStatementsOf(stateless, name);
        const logGroup = (
          functionOf(stateless, name).fn.Properties as unknown as {
            LoggingConfig: { LogGroup: { Ref: string } };
          }
        ).LoggingConfig.LogGroup.Ref;
        assert.deepEqual(
          statements.filter((st) => actionsOf(st).some((a) => a.startsWith("logs:"))),
          [
            {
              Sid: "WriteOwnLogs",
              Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
              Effect: "Allow",
              Resource: arnOf(logGroup),
            },
          ],
          name,
        );
        if (name === "backup-export" || FAILURE_STEPS.includes(name)) {
          // No HSM and no secret of its own (the export reads the backup signing key through the vault's access role).
          assert.deepEqual(
            statements.filter((st) => actionsOf(st).some((a) => a.startsWith("secretsmanager:"))),
            [],
          );
          continue;
        }
        assert.deepEqual(
          statements.filter((st) => actionsOf(st).some((a) => a.startsWith("secretsmanager:"))),
          [
            NO_HSM.has(name)
              ? {
                  // The token authorizer: the signing secret (recovery-drill.infra.test.ts), never the PIN.
                  Sid: "ReadTokenSigningKey",
                  Action: "secretsmanager:GetSecretValue",
                  Effect: "Allow",
                  Resource: {
                    "Fn::Join": [
                      "",
                      [
                        "arn:",
                        { Ref: "AWS::Partition" },
                        ":secretsmanager:",
                        { Ref: "AWS::Region" },
                        ":",
                        { Ref: "AWS::AccountId" },
                        ":secret:arquivomate-keys/test/token-signing-key-??????",
                      ],
                    ],
                  },
                }
              : {
                  Sid: "ReadHsmPin",
                  Action: "secretsmanager:GetSecretValue",
                  Effect: "Allow",
                  Resource: pinSecretArn,
                },
          ],
          name,
        );
      }
    });

    it("grants no function a wildcard action or resource (but the backup objects under backups/)", () => {
      // The rotation state machine's role (X-Ray, log delivery: "*" only) is checked in rotation-workflow.infra.test.ts.
      for (const st of NAMES.flatMap((name) => roleStatementsOf(stateless, name))) {
        assert.equal(st.Effect, "Allow");
        if (st.Sid === "WriteBackups" || st.Sid === "ReadBackups") {
          // The backup functions' objects: "<bucket ARN>/backups/*" (backups.infra.test.ts), and nothing else.
          assert.match(
            JSON.stringify(st.Resource),
            /^\{"Fn::Join":\["",\[\{"Fn::GetStackOutput":.*\},"\/backups\/\*"\]\]\}$/,
          );
          continue;
        }
        assert.notEqual(st.Resource, "*", `no statement on Resource "*": ${JSON.stringify(st)}`);
        assert.ok(
          !JSON.stringify(st.Resource).includes("*"),
          `no wildcard resource: ${JSON.stringify(st.Resource)}`,
        );
        assert.ok(
          !actionsOf(st).some((a) => a.includes("*")),
          `no wildcard action: ${JSON.stringify(st.Action)}`,
        );
      }
    });

    it("bundles each as ESM with the createRequire banner and leaves pkcs11js and the AWS SDK external", () => {
      const assetDirs = readdirSync(outdir).filter((d) => d.startsWith("asset."));
      // One bundle per entry file: five rotation functions share functions/rotation/handlers.ts's, six recovery
      // steps functions/recovery/handlers.ts's (their `Handler` names the export); each RecordFailure has its own.
      assert.equal(assetDirs.length, 13, "one bundled asset per entry file");
      const codeKeys = (names: readonly string[]) =>
        new Set(
          names.map((n) =>
            JSON.stringify((functionOf(stateless, n).fn.Properties as unknown as { Code: unknown }).Code),
          ),
        );
      assert.equal(
        codeKeys(NAMES.filter((n) => n.startsWith("rotation-") && !FAILURE_STEPS.includes(n))).size,
        1,
      );
      assert.equal(codeKeys(RECOVERY_STEPS).size, 1);
      assert.equal(codeKeys(FAILURE_STEPS).size, 2);
      assert.equal(codeKeys(NAMES).size, 13);
      for (const assetDir of assetDirs) {
        const bundle = readFileSync(join(outdir, assetDir, "index.mjs"), "utf8");
        assert.ok(
          bundle.startsWith(ESM_REQUIRE_BANNER),
          `${assetDir}: bundle starts with the require banner`,
        );
        assert.doesNotMatch(bundle, /pkcs11\.node/, "pkcs11js's native binding is not bundled");
        assert.doesNotMatch(bundle, /class SecretsManagerServiceException/, "the AWS SDK is not bundled");
        assert.doesNotMatch(bundle, /class DynamoDBServiceException/, "the AWS SDK is not bundled");
      }
      // The RecordFailure functions have no PKCS#11 layer: their bundles must not load pkcs11js (or argon2).
      for (const name of FAILURE_STEPS) {
        const code = (functionOf(stateless, name).fn.Properties as unknown as { Code: { S3Key: unknown } })
          .Code;
        const hash = /^([0-9a-f]{64})\.zip$/.exec(String(code.S3Key))?.[1];
        assert.ok(hash, `${name}: an asset key (${JSON.stringify(code.S3Key)})`);
        const bundle = readFileSync(join(outdir, `asset.${hash}`, "index.mjs"), "utf8");
        assert.doesNotMatch(bundle, /pkcs11js|argon2/, `${name}: loads neither pkcs11js nor argon2`);
      }
    });
  });

  describe("stateless stack: IAM per function", () => {
    /** The role's statements as [Sid, actions, resource read through the cross-stack reference], in order. */
    const grants = (name: string) =>
      roleStatementsOf(stateless, name)
        .filter((st) => st.Sid !== "WriteOwnLogs" && st.Sid !== "ReadHsmPin")
        .map((st) => [st.Sid ?? "", [...actionsOf(st)].sort(), resolve(st.Resource)]);

    it("hsm-health: nothing beyond its logs and the PIN secret", () => {
      assert.deepEqual(grants("hsm-health"), []);
    });

    it("generate-data-keys: GetItem, Query, BatchGetItem, PutItem on the table; Decrypt/Encrypt/GenerateDataKey on its key", () => {
      assert.deepEqual(grants("generate-data-keys"), [
        [
          "AppendToEventStore",
          ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
          arnOf(tableId()),
        ],
        ["UseEventStoreKey", ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], arnOf(eventStoreKeyId())],
      ]);
    });

    it("decrypt-data-keys: GetItem and Query on the table; Decrypt on its key", () => {
      assert.deepEqual(grants("decrypt-data-keys"), [
        ["ReadEventStore", ["dynamodb:GetItem", "dynamodb:Query"], arnOf(tableId())],
        ["UseEventStoreKey", ["kms:Decrypt"], arnOf(eventStoreKeyId())],
      ]);
    });

    it("document-lifecycle: the writes of generate-data-keys, plus sending to its DLQ with that queue's key", () => {
      assert.deepEqual(grants("document-lifecycle"), [
        [
          "AppendToEventStore",
          ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
          arnOf(tableId()),
        ],
        ["UseEventStoreKey", ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], arnOf(eventStoreKeyId())],
        ["SendToDeadLetterQueue", ["kms:Decrypt", "kms:GenerateDataKey"], arnOf(deadLetterKeyId())],
        // Added by SqsDestination (grantSendMessages) for the on-failure destination.
        ["", ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"], arnOf(failuresQueueId())],
      ]);
    });

    it("names an index only for the workflow steps that read the census; never the table's streams", () => {
      const censusOne = [
        "rotation-plan",
        "rotation-rewrap-shard",
        "rotation-census",
        "rotation-complete",
        "recovery-verify",
        "recovery-complete",
        "drill",
        "restoration-test",
      ];
      const censusTwo = [
        "rotation-census",
        "rotation-complete",
        "recovery-start",
        "recovery-complete",
        "recovery-unlock",
        "drill",
        "restoration-test",
      ];
      for (const name of NAMES) {
        const text = JSON.stringify(roleStatementsOf(stateless, name));
        if (censusOne.includes(name)) assert.match(text, /\/index\/census-1/, name);
        else assert.doesNotMatch(text, /\/index\/census-1/, name);
        if (censusTwo.includes(name)) assert.match(text, /\/index\/census-2/, name);
        else assert.doesNotMatch(text, /\/index\/census-2/, name);
      }
      const text = JSON.stringify(stateless.toJSON());
      assert.doesNotMatch(text, /\/stream\//);
      assert.doesNotMatch(text, /dynamodb:(UpdateItem|DeleteItem|ConditionCheckItem|BatchWriteItem)/);
      // Scan: the export on exactly the table (the stream heads), the restoration test on its scratch tables only.
      const scans = NAMES.flatMap((name) =>
        roleStatementsOf(stateless, name)
          .filter((st) => actionsOf(st).includes("dynamodb:Scan"))
          .map((st) => [name, st.Sid, resolve(st.Resource)]),
      );
      assert.deepEqual(scans.slice(0, 1), [["backup-export", "ExportEventStore", arnOf(tableId())]]);
      assert.deepEqual(
        scans.slice(1).map(([name, sid]) => [name, sid]),
        [["restoration-test", "UseScratchTables"]],
      );
      assert.match(JSON.stringify(scans[1]![2]), /-scratch-\?{12}"\]\]\}$/);
    });

    it("reads the stateful resources through weak references (Fn::GetStackOutput), not exports", () => {
      const text = JSON.stringify(stateless.toJSON());
      assert.match(text, /Fn::GetStackOutput/);
      assert.doesNotMatch(text, /Fn::ImportValue/);
    });
  });

  describe("stateless stack: synchronous data-key functions", () => {
    it("have no asynchronous invocation config and no event source", () => {
      stateless.resourceCountIs("AWS::Lambda::EventInvokeConfig", 1); // the lifecycle function's only
      stateless.resourceCountIs("AWS::Lambda::EventSourceMapping", 0);
    });

    it("output their names and ARNs", () => {
      for (const [label, name] of [
        ["GenerateDataKeys", "generate-data-keys"],
        ["DecryptDataKeys", "decrypt-data-keys"],
      ] as const) {
        const { id } = functionOf(stateless, name);
        stateless.hasOutput(`${label}FunctionName`, { Value: { Ref: id } });
        stateless.hasOutput(`${label}FunctionArn`, { Value: arnOf(id) });
      }
    });
  });

  describe("stateless stack: document lifecycle", () => {
    it("has a rule on the default bus matching the ingestion source and both detail types", () => {
      stateless.resourceCountIs("AWS::Events::Rule", 1);
      stateless.hasResourceProperties("AWS::Events::Rule", {
        Name: "amk-test-document-lifecycle",
        EventBusName: Match.absent(),
        State: "ENABLED",
        EventPattern: {
          source: ["arquivomate.ingestion"],
          "detail-type": ["DocumentStored", "DocumentDeleted"],
        },
      });
    });

    it("targets the function with a bounded retry policy and its own DLQ", () => {
      const rule = Object.values(stateless.findResources("AWS::Events::Rule"))[0] as {
        Properties: { Targets: Record<string, unknown>[] };
      };
      const targets = rule.Properties.Targets;
      assert.equal(targets.length, 1);
      const target = targets[0]!;
      assert.deepEqual(target.Arn, arnOf(functionOf(stateless, "document-lifecycle").id));
      assert.deepEqual(target.RetryPolicy, { MaximumRetryAttempts: 8, MaximumEventAgeInSeconds: 7200 });
      assert.deepEqual(
        resolve((target.DeadLetterConfig as { Arn: unknown }).Arn),
        arnOf(undeliveredQueueId()),
      );
      assert.equal(
        target.RoleArn,
        undefined,
        "Lambda targets are invoked through the function's resource policy",
      );
    });

    it("lets only that rule invoke the function", () => {
      const ruleId = logicalIdOf(stateless, "AWS::Events::Rule");
      const permissions = Object.values(stateless.findResources("AWS::Lambda::Permission")).map(
        (p) => (p as { Properties: Record<string, unknown> }).Properties,
      );
      assert.deepEqual(permissions, [
        {
          Action: "lambda:InvokeFunction",
          FunctionName: arnOf(functionOf(stateless, "document-lifecycle").id),
          Principal: "events.amazonaws.com",
          SourceArn: arnOf(ruleId),
        },
      ]);
    });

    it("outputs the function name (for redriving dead letters)", () => {
      stateless.hasOutput("DocumentLifecycleFunctionName", {
        Value: { Ref: functionOf(stateless, "document-lifecycle").id },
      });
    });

    it("retries an asynchronous invocation twice, for at most 6 h, then sends it with the reason to the DLQ", () => {
      const configs = Object.values(stateless.findResources("AWS::Lambda::EventInvokeConfig")).map(
        (c) => (c as { Properties: Record<string, unknown> }).Properties,
      );
      assert.equal(configs.length, 1);
      const config = configs[0]!;
      assert.deepEqual(config.FunctionName, { Ref: functionOf(stateless, "document-lifecycle").id });
      assert.equal(config.Qualifier, "$LATEST");
      assert.equal(config.MaximumRetryAttempts, 2);
      assert.equal(config.MaximumEventAgeInSeconds, 6 * 3600);
      const destinations = config.DestinationConfig as {
        OnFailure: { Destination: unknown };
        OnSuccess?: unknown;
      };
      assert.deepEqual(resolve(destinations.OnFailure.Destination), arnOf(failuresQueueId()));
      assert.equal(destinations.OnSuccess, undefined);
    });
  });
});

describe("fully configured (layer, secret by complete ARN, custom bus and source, TTL, account and region)", () => {
  const SECRET_ARN = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:amk/prod/hsm-pin-AbC123";
  const LAYER_ARN = "arn:aws:lambda:eu-central-1:123456789012:layer:cloudhsm-pkcs11:7";
  const RULE_ARN = "arn:aws:events:eu-central-1:123456789012:rule/ingestion-bus/amk-prod-document-lifecycle";
  let amk: AmkApp;
  let stateful: Template;
  let stateless: Template;

  before(() => {
    ({ amk } = synthApp({
      ...NO_BUNDLING,
      "amk:environment": "prod",
      "amk:pinSecret": SECRET_ARN,
      "amk:pkcs11LayerArn": LAYER_ARN,
      "amk:pkcs11Library": "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so.5",
      "amk:tokenLabel": "partition-a",
      "amk:lifecycleEventBus": "ingestion-bus",
      "amk:lifecycleEventSource": "arquivomate.ingestion.prod",
      "amk:dataKeyTtlSeconds": "120",
      "amk:account": "123456789012",
      "amk:region": "eu-central-1",
    }));
    amk.app.synth();
    stateful = Template.fromStack(amk.stateful);
    stateless = Template.fromStack(amk.stateless);
  });

  it("targets the configured account and region", () => {
    assert.equal(amk.stateful.environment, "aws://123456789012/eu-central-1");
    assert.equal(amk.stateless.stackName, "amk-prod-stateless");
  });

  it("adds the PKCS#11 layer to every HSM function and passes the configured settings", () => {
    const fns = (
      Object.values(stateless.findResources("AWS::Lambda::Function")) as FunctionResource[]
    ).filter(
      (fn) =>
        !NO_HSM.has(
          String(fn.Properties.Environment.Variables.POWERTOOLS_SERVICE_NAME).replace(
            /^arquivomate-keys-/,
            "",
          ),
        ),
    );
    assert.equal(fns.length, 18);
    assert.equal(functionOf(stateless, "token-authorizer").fn.Properties.Layers, undefined);
    for (const fn of fns) {
      assert.deepEqual(fn.Properties.Layers, [LAYER_ARN]);
      const vars = fn.Properties.Environment.Variables;
      assert.equal(vars.AMK_PKCS11_LIBRARY, "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so.5");
      assert.equal(vars.AMK_PKCS11_TOKEN_LABEL, "partition-a");
      assert.equal(vars.AMK_PKCS11_PIN_SECRET_ID, SECRET_ARN);
    }
  });

  it("passes the data-key TTL to the two data-key functions only", () => {
    const ttl = (name: string) =>
      functionOf(stateless, name).fn.Properties.Environment.Variables.AMK_DATA_KEY_TTL_SECONDS;
    assert.equal(ttl("generate-data-keys"), "120");
    assert.equal(ttl("decrypt-data-keys"), "120");
    assert.equal(ttl("document-lifecycle"), undefined);
    assert.equal(ttl("hsm-health"), undefined);
  });

  it("grants GetSecretValue on exactly the complete secret ARN, once per HSM function", () => {
    const secretStatements = statementsOf(stateless).filter(
      (s) => actionsOf(s).some((a) => a.startsWith("secretsmanager:")) && s.Sid === "ReadHsmPin",
    );
    assert.deepEqual(
      secretStatements.map((s) => [actionsOf(s), s.Resource]),
      Array(18).fill([["secretsmanager:GetSecretValue"], SECRET_ARN]),
    );
    // The only other secret: the token authorizer's signing key.
    assert.deepEqual(
      statementsOf(stateless)
        .filter((s) => actionsOf(s).some((a) => a.startsWith("secretsmanager:")) && s.Sid !== "ReadHsmPin")
        .map((s) => s.Sid),
      ["ReadTokenSigningKey"],
    );
  });

  it("puts the rule on the configured bus with the configured source", () => {
    stateless.hasResourceProperties("AWS::Events::Rule", {
      Name: "amk-prod-document-lifecycle",
      EventBusName: "ingestion-bus",
      EventPattern: {
        source: ["arquivomate.ingestion.prod"],
        "detail-type": ["DocumentStored", "DocumentDeleted"],
      },
    });
  });

  it("names that rule (on that bus) in the DLQ's policy and in the DLQ key's policy", () => {
    const condition = { ArnEquals: { "aws:SourceArn": RULE_ARN } };
    stateful.hasResourceProperties("AWS::SQS::QueuePolicy", {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Sid: "EventBridgeRuleDeadLetters", Condition: condition }),
        ]),
      },
    });
    stateful.hasResourceProperties("AWS::KMS::Key", {
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({ Sid: "EventBridgeRuleDeadLetters", Condition: condition }),
        ]),
      },
    });
  });
});

describe("cdk-nag is enforced", () => {
  it("fails the synth on an unacknowledged finding and names the rule in the report", () => {
    const { amk, outdir } = synthApp({ ...NO_BUNDLING });
    new Key(amk.stateful, "UnrotatedKey"); // AwsSolutions-KMS5: no automatic rotation
    assert.throws(() => amk.app.synth(), /Validation failed/);
    const violations = readReport(outdir).pluginReports.flatMap((p) => p.violations);
    assert.deepEqual(
      violations.filter((v) => v.severity === "error").map((v) => [v.ruleName, v.severity]),
      [["AwsSolutions-KMS5", "error"]],
    );
  });
});

describe("configuration is validated at synth time", () => {
  function configError(context: Record<string, unknown>): InvalidInfraConfigError {
    try {
      createApp({
        context: { ...CDK_JSON_CONTEXT, ...context },
        outdir: mkdtempSync(join(tmpdir(), "amk-cfg-")),
      });
    } catch (e) {
      assert.ok(e instanceof InvalidInfraConfigError, `expected InvalidInfraConfigError, got ${String(e)}`);
      return e;
    }
    assert.fail("createApp accepted a bad configuration");
  }

  it("rejects a bad environment name, naming the key and the value", () => {
    const e = configError({ "amk:environment": "Prod_1" });
    assert.equal(e.code, "INVALID_INFRA_CONFIG");
    assert.match(e.message, /amk:environment: must be 1-20 lower-case letters.*\(got "Prod_1"\)/);
  });

  it("refuses a PIN given as the secret reference, without echoing it", () => {
    const e = configError({ "amk:pinSecret": "crypto-user:Sup3r-Secret-PIN" });
    assert.match(e.message, /amk:pinSecret: .*looks like a PIN/);
    assert.ok(!e.message.includes("Sup3r-Secret-PIN"));
    assert.ok(!JSON.stringify(e).includes("Sup3r-Secret-PIN"));
  });

  it("rejects a partial secret ARN and a layer ARN without version", () => {
    const e = configError({
      "amk:pinSecret": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:amk/prod/hsm-pin",
      "amk:pkcs11LayerArn": "arn:aws:lambda:eu-central-1:123456789012:layer:cloudhsm-pkcs11",
    });
    assert.equal(e.problems.length, 2, e.message);
    assert.match(e.message, /amk:pinSecret: must be a secret name or a complete Secrets Manager secret ARN/);
    assert.match(e.message, /amk:pkcs11LayerArn: must be a Lambda layer version ARN/);
  });

  it("rejects a relative library path, an over-long token label and a non-string value", () => {
    const e = configError({
      "amk:pkcs11Library": "libcloudhsm_pkcs11.so",
      "amk:tokenLabel": "x".repeat(33),
      "amk:account": 123456789012,
    });
    assert.match(e.message, /amk:pkcs11Library: must be the absolute path/);
    assert.match(e.message, /amk:tokenLabel: must be a PKCS#11 token label/);
    assert.match(e.message, /amk:account: must be a string/);
  });

  it("rejects an event bus ARN, an aws. event source and a data-key TTL out of range", () => {
    const e = configError({
      "amk:lifecycleEventBus": "arn:aws:events:eu-central-1:123456789012:event-bus/ingestion",
      "amk:lifecycleEventSource": "aws.s3",
      "amk:dataKeyTtlSeconds": "0",
    });
    assert.equal(e.problems.length, 3, e.message);
    assert.match(e.message, /amk:lifecycleEventBus: must be the name \(not the ARN\) of an event bus/);
    assert.match(
      e.message,
      /amk:lifecycleEventSource: must be an EventBridge event source .*not starting with "aws\."/,
    );
    assert.match(e.message, /amk:dataKeyTtlSeconds: must be a whole number of seconds from 1 to 86400/);
    assert.match(
      configError({ "amk:dataKeyTtlSeconds": "5m" }).message,
      /amk:dataKeyTtlSeconds: must be a whole number/,
    );
  });

  it("rejects an unknown amk: key (a typo) and an account without a region", () => {
    const e = configError({ "amk:tokenlabel": "hsm1", "amk:account": "123456789012" });
    assert.match(e.message, /amk:tokenlabel: unknown context key/);
    assert.match(e.message, /amk:account \/ amk:region: give both/);
  });
});
