/**
 * Infrastructure tests of the rotation workflow in the stateless stack: the state machine (found by its construct
 * path, read back as plain ASL), its role, the six functions' grants step by step, the vault access of the kit
 * re-issuing step, the optional schedule (off by default), the configuration checks, and cdk-nag.
 *
 * Policies are compared after flattening CloudFormation references to strings (`Ref` as `<Name>`, `Fn::GetAtt` as
 * `<Resource.Attribute>`, `Fn::Join` joined, a weak cross-stack reference as the stateful stack's value), so that the
 * expected policies read like the policies.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { Template } from "aws-cdk-lib/assertions";
import { PolicyStatement } from "aws-cdk-lib/aws-iam";
import { createApp, type AmkApp } from "../../infra/bin/app.js";
import { InvalidInfraConfigError, rotationScheduleProblem } from "../../infra/lib/config.js";
import { RETRYABLE_ERRORS } from "../../workflows/rotation-workflow.js";
import { aslFromTemplate, walkStates, type JsonObject } from "../../workflows/local-runner.js";
import { CDK_JSON_CONTEXT, NO_BUNDLING, synthAppsIn, logicalIdIn, actionsOf } from "../support/infra.js";

const synthApp = synthAppsIn("amk-rotation-test");

type Json = unknown;
type Statement = {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: Json;
  Condition?: Json;
  Principal?: Json;
};
type Resource = { Type: string; Properties: Record<string, Json> };

/** CloudFormation values as strings; `Fn::GetStackOutput` read through the stateful stack's outputs. */
function flattener(stateful: Template): (value: Json) => Json {
  const outputs = stateful.toJSON().Outputs as Record<string, { Value: Json }>;
  const flat = (value: Json): Json => {
    if (typeof value === "string") return value;
    if (Array.isArray(value)) return value.map(flat);
    if (value !== null && typeof value === "object") {
      const v = value as Record<string, Json>;
      if (Array.isArray(v["Fn::Join"])) {
        const [delimiter, items] = v["Fn::Join"] as [string, Json[]];
        return items.map((i) => String(flat(i))).join(delimiter);
      }
      if (typeof v.Ref === "string") return `<${v.Ref}>`;
      if (Array.isArray(v["Fn::GetAtt"])) return `<${(v["Fn::GetAtt"] as string[]).join(".")}>`;
      const ref = v["Fn::GetStackOutput"] as { OutputName: string } | undefined;
      if (ref !== undefined) {
        assert.ok(outputs[ref.OutputName], `the stateful stack publishes ${ref.OutputName}`);
        return flat(outputs[ref.OutputName]!.Value);
      }
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, flat(x)]));
    }
    return value;
  };
  return flat;
}

/** The X-Ray statement of every function's role (asserted in operations.infra.test.ts, left out below). */
const TRACING_STATEMENT = JSON.stringify({
  Action: ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
  Effect: "Allow",
  Resource: "*",
});

/** The statements of every policy attached to the role `roleLogicalId` (but a function's X-Ray statement). */
function statementsOfRole(template: Template, roleLogicalId: string): Statement[] {
  return Object.values(template.findResources("AWS::IAM::Policy"))
    .map(
      (p) =>
        (p as Resource).Properties as {
          Roles: { Ref: string }[];
          PolicyDocument: { Statement: Statement[] };
        },
    )
    .filter((p) => p.Roles.some((r) => r.Ref === roleLogicalId))
    .flatMap((p) => p.PolicyDocument.Statement)
    .filter((st) => JSON.stringify(st) !== TRACING_STATEMENT);
}

type RotationStep = "start" | "plan" | "rewrapShard" | "census" | "complete" | "failure";
const STEPS: RotationStep[] = ["start", "plan", "rewrapShard", "census", "complete", "failure"];

const APPEND = ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"];
const READ = ["dynamodb:GetItem", "dynamodb:Query"];
const KEY_WRITE = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"];
const KEY_READ = ["kms:Decrypt"];

describe("rotation workflow, default configuration (no schedule)", () => {
  let amk: AmkApp;
  let stateless: Template;
  let stateful: Template;
  let flat: (v: Json) => Json;
  let table: string;
  let tableKey: string;

  before(() => {
    ({ amk } = synthApp({ "amk:environment": "test" }));
    amk.app.synth(); // throws on an unacknowledged cdk-nag finding
    stateless = Template.fromStack(amk.stateless);
    stateful = Template.fromStack(amk.stateful);
    flat = flattener(stateful);
    table = `<${logicalIdIn(amk.stateful, amk.stateful.eventStore.table)}.Arn>`;
    tableKey = `<${logicalIdIn(amk.stateful, amk.stateful.eventStore.key)}.Arn>`;
  });

  const fnId = (step: RotationStep) => logicalIdIn(amk.stateless, amk.stateless.rotationFunctions[step]);
  const alertsKey = () => `<${logicalIdIn(amk.stateful, amk.stateful.alerts.key)}.Arn>`;
  const roleIdOf = (step: RotationStep) =>
    logicalIdIn(amk.stateless, amk.stateless.rotationFunctions[step].role!);
  /** The step's statements as [Sid, sorted actions, flattened resource(s)] beyond its logs and the PIN secret. */
  const grants = (step: RotationStep) =>
    statementsOfRole(stateless, roleIdOf(step))
      .filter((st) => st.Sid !== "WriteOwnLogs" && st.Sid !== "ReadHsmPin")
      .map((st) => [st.Sid, [...actionsOf(st)].sort(), flat(st.Resource)]);

  describe("state machine", () => {
    it("is the workflow's StateMachine, Standard, traced, logging every state without execution data", () => {
      stateless.resourceCountIs("AWS::StepFunctions::StateMachine", 4); // with the recovery's, the drill's and the restoration test's
      const sm = amk.stateless.rotationWorkflow.stateMachine;
      assert.equal(sm.node.path, "amk-test-stateless/RotationWorkflow/StateMachine");
      const props = (stateless.toJSON().Resources[logicalIdIn(amk.stateless, sm)] as Resource).Properties;
      assert.equal(props.StateMachineType, "STANDARD");
      assert.deepEqual(props.TracingConfiguration, { Enabled: true });
      const logGroup = logicalIdIn(amk.stateless, amk.stateless.node.findChild("RotationWorkflowLogs"));
      assert.deepEqual(props.LoggingConfiguration, {
        Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: { "Fn::GetAtt": [logGroup, "Arn"] } } }],
        IncludeExecutionData: false,
        Level: "ALL",
      });
      const group = stateless.toJSON().Resources[logGroup] as Resource & { DeletionPolicy: string };
      assert.equal(group.Properties.RetentionInDays, 90);
      assert.equal(group.DeletionPolicy, "Retain");
      stateless.hasOutput("RotationStateMachineArn", { Value: { Ref: logicalIdIn(amk.stateless, sm) } });
    });

    it("runs StartRotation, PlanRewrap, RewrapShards (Map), Census, CompleteRotation and RecordFailure", () => {
      const { asl, tasks } = aslFromTemplate(amk.stateless, "RotationWorkflow/StateMachine");
      const states: Record<string, JsonObject> = {};
      walkStates(asl, (name, state) => {
        states[name] = state;
      });
      assert.equal(asl.StartAt, "StartRotation");
      for (const name of [
        "StartRotation",
        "PlanRewrap",
        "RewrapShard",
        "Census",
        "CompleteRotation",
        "RecordFailure",
      ])
        assert.equal(states[name]?.Type, "Task", name);
      assert.equal(states.RewrapShards?.Type, "Map");
      assert.equal(states.RewrapShards?.MaxConcurrency, 8);
      assert.equal(states.RewrapShards?.ItemsPath, "$.items");
      assert.equal(states.Failed?.Type, "Fail");
      assert.equal(states.Done?.Type, "Succeed");
      // Each Task state invokes the function named after its step (construct ids).
      assert.deepEqual(tasks, {
        StartRotation: "RotationStart",
        PlanRewrap: "RotationPlan",
        RewrapShard: "RotationRewrapShard",
        Census: "RotationCensus",
        CompleteRotation: "RotationComplete",
        RecordFailure: "RotationFailure",
      });
    });

    it("retries HsmUnavailableError (and the other transient errors) on every step task; catches into RecordFailure", () => {
      const { asl } = aslFromTemplate(amk.stateless, "RotationWorkflow/StateMachine");
      const states: Record<string, JsonObject> = {};
      walkStates(asl, (name, state) => {
        states[name] = state;
      });
      for (const name of ["StartRotation", "PlanRewrap", "RewrapShard", "Census", "CompleteRotation"]) {
        const retry = states[name]?.Retry as { ErrorEquals: string[]; MaxAttempts: number }[];
        assert.ok(Array.isArray(retry), `${name} has a Retry`);
        const errors = retry.flatMap((r) => r.ErrorEquals);
        assert.ok(errors.includes("HsmUnavailableError"), `${name} retries HsmUnavailableError`);
        assert.deepEqual([...errors].sort(), [...RETRYABLE_ERRORS].sort(), name);
      }
      for (const name of ["StartRotation", "PlanRewrap", "RewrapShards", "Census", "CompleteRotation"]) {
        const c = states[name]?.Catch as { ErrorEquals: string[]; Next: string; ResultPath: string }[];
        assert.deepEqual(
          c,
          [{ ErrorEquals: ["States.ALL"], Next: "RecordFailure", ResultPath: "$.error" }],
          name,
        );
      }
      assert.equal(states.RecordFailure?.Next, "Failed");
    });

    it("has a role that may invoke the six functions (and their versions), use X-Ray and deliver logs; nothing else", () => {
      const role = amk.stateless.rotationWorkflow.stateMachine.role;
      const roleId = logicalIdIn(amk.stateless, role);
      const trust = (stateless.toJSON().Resources[roleId] as Resource).Properties.AssumeRolePolicyDocument;
      // Step Functions only, for state machines of this account (CDK's confused-deputy conditions).
      assert.deepEqual(flat(trust), {
        Statement: [
          {
            Action: "sts:AssumeRole",
            Condition: {
              ArnLike: {
                "aws:SourceArn": "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:*",
              },
              StringEquals: { "aws:SourceAccount": "<AWS::AccountId>" },
            },
            Effect: "Allow",
            Principal: { Service: "states.amazonaws.com" },
          },
        ],
        Version: "2012-10-17",
      });
      const fns = STEPS.map((s) => `<${fnId(s)}.Arn>`).sort();
      const statements = statementsOfRole(stateless, roleId).map((st) => ({
        actions: [...actionsOf(st)].sort(),
        resources: ([] as Json[]).concat(flat(st.Resource)).map(String).sort(),
        condition: st.Condition,
      }));
      assert.deepEqual(statements, [
        {
          actions: ["lambda:InvokeFunction"],
          resources: [...fns, ...fns.map((f) => `${f}:*`)].sort(),
          condition: undefined,
        },
        {
          actions: [
            "logs:CreateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:DescribeLogGroups",
            "logs:DescribeResourcePolicies",
            "logs:GetLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:UpdateLogDelivery",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
            "xray:PutTelemetryRecords",
            "xray:PutTraceSegments",
          ],
          resources: ["*"],
          condition: undefined,
        },
      ]);
    });
  });

  describe("functions", () => {
    it("are built from functions/rotation/handlers.ts (RecordFailure from failure.ts), one export each, with their timeouts and memory", () => {
      const expected: Record<RotationStep, [string, number, number]> = {
        start: ["index.startHandler", 60, 512],
        plan: ["index.planHandler", 60, 512],
        rewrapShard: ["index.rewrapShardHandler", 900, 1024],
        census: ["index.censusHandler", 60, 512],
        complete: ["index.completeHandler", 120, 512],
        failure: ["index.failureHandler", 60, 512],
      };
      for (const step of STEPS) {
        const p = (stateless.toJSON().Resources[fnId(step)] as Resource).Properties;
        assert.deepEqual([p.Handler, p.Timeout, p.MemorySize], expected[step], step);
        assert.equal(p.Runtime, "nodejs22.x");
        assert.deepEqual(p.Architectures, ["x86_64"]);
      }
      assert.deepEqual(
        STEPS.map((s) => amk.stateless.rotationFunctions[s].node.id),
        [
          "RotationStart",
          "RotationPlan",
          "RotationRewrapShard",
          "RotationCensus",
          "RotationComplete",
          "RotationFailure",
        ],
      );
    });

    it("give the shard task a 14-minute re-wrap budget within its 15 minutes", () => {
      const vars = (step: RotationStep) =>
        (
          (stateless.toJSON().Resources[fnId(step)] as Resource).Properties.Environment as {
            Variables: Record<string, Json>;
          }
        ).Variables;
      assert.equal(vars("rewrapShard").AMK_REWRAP_BUDGET_MS, "840000");
      for (const step of STEPS.filter((s) => s !== "rewrapShard"))
        assert.equal(vars(step).AMK_REWRAP_BUDGET_MS, undefined, step);
      for (const step of STEPS) {
        // RecordFailure builds no vault client (its own entry file, event store and alerts only).
        assert.equal(
          flat(vars(step).AMK_VAULT_REGION),
          step === "failure" ? undefined : "<AWS::Region>",
          step,
        );
        assert.equal(vars(step).AMK_VAULT_KMS_KEY_ID, undefined, step);
        assert.equal(vars(step).AMK_DRILL_OAEP_HASH, undefined, step);
      }
      // Nor does it open the HSM: no PKCS#11 settings, no layer.
      assert.equal(vars("failure").AMK_PKCS11_LIBRARY, undefined);
      assert.equal(vars("failure").AMK_PKCS11_PIN_SECRET_ID, undefined);
    });

    it("start: reads and appends to the event store (no index), with the table key", () => {
      assert.deepEqual(grants("start"), [
        ["AppendToEventStore", APPEND, table],
        ["UseEventStoreKey", KEY_WRITE, tableKey],
      ]);
    });

    it("plan: reads the event store and queries census-1 only", () => {
      assert.deepEqual(grants("plan"), [
        ["ReadEventStore", READ, table],
        ["QueryCensusIndexes", ["dynamodb:Query"], `${table}/index/census-1`],
        ["UseEventStoreKey", KEY_READ, tableKey],
      ]);
    });

    it("rewrapShard: reads and appends, and queries census-1", () => {
      assert.deepEqual(grants("rewrapShard"), [
        ["AppendToEventStore", APPEND, table],
        ["QueryCensusIndexes", ["dynamodb:Query"], `${table}/index/census-1`],
        ["UseEventStoreKey", KEY_WRITE, tableKey],
      ]);
    });

    it("census: reads, and queries census-1 and census-2", () => {
      assert.deepEqual(grants("census"), [
        ["ReadEventStore", READ, table],
        ["QueryCensusIndexes", ["dynamodb:Query"], [`${table}/index/census-1`, `${table}/index/census-2`]],
        ["UseEventStoreKey", KEY_READ, tableKey],
      ]);
    });

    it("complete: the census, appends, and the vault through its access role as a writer", () => {
      const accessRole = "arn:<AWS::Partition>:iam::<AWS::AccountId>:role/amk-test-vault-access";
      assert.deepEqual(grants("complete"), [
        ["AppendToEventStore", APPEND, table],
        ["QueryCensusIndexes", ["dynamodb:Query"], [`${table}/index/census-1`, `${table}/index/census-2`]],
        ["UseEventStoreKey", KEY_WRITE, tableKey],
        ["AssumeVaultAccessRole", ["sts:AssumeRole"], accessRole],
        ["TagVaultSessionAsWriter", ["sts:TagSession"], accessRole],
      ]);
      const tag = statementsOfRole(stateless, roleIdOf("complete")).find(
        (st) => st.Sid === "TagVaultSessionAsWriter",
      );
      assert.deepEqual(tag?.Condition, {
        StringEquals: { "aws:RequestTag/amk:vault-caller": "writer" },
        "ForAllValues:StringEquals": { "aws:TagKeys": ["amk:vault-caller"] },
      });
      const role = (stateless.toJSON().Resources[roleIdOf("complete")] as Resource).Properties;
      assert.equal(
        role.RoleName,
        "amk-test-rotation-complete",
        "fixed name, to list in amk:vaultWriterRoleArns",
      );
      stateless.hasOutput("RotationCompleteRoleArn", {
        Value: { "Fn::GetAtt": [roleIdOf("complete"), "Arn"] },
      });
    });

    it("failure: reads and appends (RotationFailed), no index; publishes the alert on the topic", () => {
      assert.deepEqual(grants("failure"), [
        ["AppendToEventStore", APPEND, table],
        ["UseEventStoreKey", KEY_WRITE, tableKey],
        ["PublishAlerts", ["sns:Publish"], `<${logicalIdIn(amk.stateful, amk.stateful.alerts.topic)}>`],
        ["UseAlertTopicKey", ["kms:Decrypt", "kms:GenerateDataKey"], alertsKey()],
      ]);
      const vars = (
        (stateless.toJSON().Resources[fnId("failure")] as Resource).Properties.Environment as {
          Variables: Record<string, Json>;
        }
      ).Variables;
      assert.equal(
        flat(vars.AMK_ALERT_TOPIC_ARN),
        `<${logicalIdIn(amk.stateful, amk.stateful.alerts.topic)}>`,
      );
      for (const step of STEPS.filter((s) => s !== "failure")) {
        const others = (
          (stateless.toJSON().Resources[fnId(step)] as Resource).Properties.Environment as {
            Variables: Record<string, Json>;
          }
        ).Variables;
        assert.equal(others.AMK_ALERT_TOPIC_ARN, undefined, `${step} raises no alert`);
      }
    });

    it("each: its own role, its own logs, GetSecretValue on the PIN secret (RecordFailure: none); no Secrets Manager or KMS right on the vault", () => {
      const roles = new Set(STEPS.map(roleIdOf));
      assert.equal(roles.size, 6);
      for (const step of STEPS) {
        const statements = statementsOfRole(stateless, roleIdOf(step));
        const logs = logicalIdIn(
          amk.stateless,
          amk.stateless.node.findChild(`${amk.stateless.rotationFunctions[step].node.id}Logs`),
        );
        assert.deepEqual(
          statements.filter((st) => st.Sid === "WriteOwnLogs").map((st) => flat(st.Resource)),
          [`<${logs}.Arn>`],
          step,
        );
        assert.deepEqual(
          statements
            .filter((st) => actionsOf(st).some((a) => a.startsWith("secretsmanager:")))
            .map((st) => [st.Sid, st.Action, flat(st.Resource)]),
          step === "failure"
            ? []
            : [
                [
                  "ReadHsmPin",
                  "secretsmanager:GetSecretValue",
                  "arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:arquivomate-keys/test/hsm-pin-??????",
                ],
              ],
          step,
        );
        for (const st of statements) {
          assert.ok(
            !JSON.stringify(st.Resource).includes("*"),
            `${step}: no wildcard in ${JSON.stringify(st.Resource)}`,
          );
          assert.ok(!actionsOf(st).some((a) => a.includes("*")), `${step}: no wildcard action`);
          if (actionsOf(st).some((a) => a.startsWith("kms:")))
            assert.equal(flat(st.Resource), st.Sid === "UseAlertTopicKey" ? alertsKey() : tableKey, step);
        }
      }
    });
  });

  it("has no schedule, schedule group or scheduler role", () => {
    stateless.resourceCountIs("AWS::Scheduler::Schedule", 0);
    stateless.resourceCountIs("AWS::Scheduler::ScheduleGroup", 0);
    stateless.resourceCountIs("AWS::Events::Rule", 1); // the document-lifecycle rule only
    assert.doesNotMatch(
      JSON.stringify(stateless.toJSON()),
      /scheduler\.amazonaws\.com|states:StartExecution/,
    );
    assert.deepEqual(amk.stateless.rotationSchedules, []);
  });
});

describe("rotation workflow with a schedule", () => {
  let amk: AmkApp;
  let stateless: Template;

  before(() => {
    ({ amk } = synthApp({
      "amk:environment": "test",
      "amk:rotationSchedule": "cron(0 3 1 * ? *)",
      "amk:rotationWorkspaces": ["ws-b", "ws-a", "ws-a"],
    }));
    amk.app.synth();
    stateless = Template.fromStack(amk.stateless);
  });

  it("starts the state machine once per workspace, with the workspace id as input, in UTC", () => {
    const sm = logicalIdIn(amk.stateless, amk.stateless.rotationWorkflow.stateMachine);
    const group = logicalIdIn(amk.stateless, amk.stateless.node.findChild("RotationSchedules"));
    const schedules = Object.values(stateless.findResources("AWS::Scheduler::Schedule")).map(
      (r) => (r as Resource).Properties as { Target: Record<string, Json> } & Record<string, Json>,
    );
    assert.deepEqual(
      schedules
        .map((s) => JSON.parse(s.Target.Input as string) as unknown)
        .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [{ workspaceId: "ws-a" }, { workspaceId: "ws-b" }],
    );
    const roles = new Set<string>();
    for (const s of schedules) {
      assert.equal(s.ScheduleExpression, "cron(0 3 1 * ? *)");
      assert.equal(s.ScheduleExpressionTimezone, "Etc/UTC");
      assert.equal(s.State, "ENABLED");
      assert.equal(s.GroupName, "amk-test-rotation");
      assert.deepEqual(s.FlexibleTimeWindow, { Mode: "OFF" });
      assert.deepEqual(s.Target.Arn, { Ref: sm });
      assert.deepEqual(s.Target.RetryPolicy, { MaximumEventAgeInSeconds: 7200, MaximumRetryAttempts: 8 });
      roles.add((s.Target.RoleArn as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0]);
    }
    assert.equal(roles.size, 1, "one scheduler role for both");
    const roleId = [...roles][0]!;
    assert.deepEqual((stateless.toJSON().Resources[roleId] as Resource).Properties.AssumeRolePolicyDocument, {
      Statement: [
        {
          Action: "sts:AssumeRole",
          Condition: {
            StringEquals: {
              "aws:SourceAccount": { Ref: "AWS::AccountId" },
              "aws:SourceArn": { "Fn::GetAtt": [group, "Arn"] },
            },
          },
          Effect: "Allow",
          Principal: { Service: "scheduler.amazonaws.com" },
        },
      ],
      Version: "2012-10-17",
    });
    assert.deepEqual(
      statementsOfRole(stateless, roleId).map((st) => [st.Action, st.Resource]),
      [["states:StartExecution", { Ref: sm }]],
    );
    stateless.hasResource("AWS::Scheduler::ScheduleGroup", {
      Properties: { Name: "amk-test-rotation" },
      DeletionPolicy: "Delete",
    });
  });

  it("accepts these rotation schedule expressions", () => {
    for (const e of [
      "rate(1 day)",
      "rate(30 days)",
      "rate(24 hours)",
      "cron(0 3 ? * MON#1 *)",
      "cron(30 2 1 1,4,7,10 ? *)",
    ])
      assert.equal(rotationScheduleProblem(e), undefined, e);
  });
});

describe("rotation workflow, vault configured (another account and region, its outputs given back)", () => {
  const ACCESS_ROLE = "arn:aws:iam::222222222222:role/amk-prod-vault-access";
  const VAULT_KEY = "arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab";

  it("assumes the configured access role and passes the vault's region and key to the complete step only", () => {
    const { amk } = synthApp({
      "amk:environment": "prod",
      "amk:account": "111111111111",
      "amk:region": "eu-central-1",
      "amk:vaultAccount": "222222222222",
      "amk:vaultRegion": "eu-west-1",
      "amk:vaultAccessRoleArn": ACCESS_ROLE,
      "amk:vaultKeyArn": VAULT_KEY,
    });
    amk.app.synth();
    const stateless = Template.fromStack(amk.stateless);
    const vars = (step: RotationStep) =>
      (
        (
          stateless.toJSON().Resources[
            logicalIdIn(amk.stateless, amk.stateless.rotationFunctions[step])
          ] as Resource
        ).Properties.Environment as { Variables: Record<string, Json> }
      ).Variables;
    for (const step of STEPS) {
      assert.equal(vars(step).AMK_VAULT_REGION, step === "failure" ? undefined : "eu-west-1", step);
      assert.equal(vars(step).AMK_VAULT_KMS_KEY_ID, step === "complete" ? VAULT_KEY : undefined, step);
    }
    const roleId = logicalIdIn(amk.stateless, amk.stateless.rotationFunctions.complete.role!);
    const vault = statementsOfRole(stateless, roleId).filter((st) =>
      actionsOf(st).some((a) => a.startsWith("sts:")),
    );
    assert.deepEqual(
      vault.map((st) => [st.Sid, st.Action, st.Resource]),
      [
        ["AssumeVaultAccessRole", "sts:AssumeRole", ACCESS_ROLE],
        ["TagVaultSessionAsWriter", "sts:TagSession", ACCESS_ROLE],
      ],
    );
  });

  it("derives the access role's ARN from the vault account when amk:vaultAccessRoleArn is not given", () => {
    const { amk } = synthApp({
      "amk:environment": "prod",
      "amk:account": "111111111111",
      "amk:region": "eu-central-1",
      "amk:vaultAccount": "222222222222",
      "amk:vaultRegion": "eu-west-1",
    });
    const stateless = Template.fromStack(amk.stateless);
    const roleId = logicalIdIn(amk.stateless, amk.stateless.rotationFunctions.complete.role!);
    const assume = statementsOfRole(stateless, roleId).find((st) => st.Sid === "AssumeVaultAccessRole");
    assert.equal(assume?.Resource, ACCESS_ROLE);
  });
});

describe("rotation configuration is validated at synth time", () => {
  function configError(context: Record<string, unknown>): InvalidInfraConfigError {
    try {
      createApp({
        context: { ...CDK_JSON_CONTEXT, ...NO_BUNDLING, ...context },
        outdir: mkdtempSync(join(tmpdir(), "amk-cfg-")),
      });
    } catch (e) {
      assert.ok(e instanceof InvalidInfraConfigError, `expected InvalidInfraConfigError, got ${String(e)}`);
      return e;
    }
    assert.fail("createApp accepted a bad configuration");
  }
  const ws = { "amk:rotationWorkspaces": "ws-1" };

  it("rejects a schedule expression that is not cron(...) or rate(...)", () => {
    for (const expression of [
      "daily",
      "at(2027-01-01T00:00:00)",
      "cron(0 3 * *)",
      "rate(1 days)",
      "rate(2 day)",
    ]) {
      const e = configError({ ...ws, "amk:rotationSchedule": expression });
      assert.equal(e.problems.length, 1, e.message);
      assert.match(e.message, /amk:rotationSchedule: /);
      assert.ok(e.message.includes(`(got "${expression}")`), e.message);
    }
  });

  it("rejects a schedule that fires more than once a day", () => {
    for (const expression of [
      "rate(1 hour)",
      "rate(5 minutes)",
      "rate(1439 minutes)",
      "cron(*/5 * * * ? *)",
      "cron(0 */6 * * ? *)",
      "cron(0 1,13 * * ? *)",
    ]) {
      const e = configError({ ...ws, "amk:rotationSchedule": expression });
      assert.match(e.message, /amk:rotationSchedule: .*at most once a day/, expression);
    }
  });

  it("rejects a cron expression with both or neither day field as ?", () => {
    assert.match(
      configError({ ...ws, "amk:rotationSchedule": "cron(0 3 * * * *)" }).message,
      /exactly one of day-of-month and day-of-week must be \?/,
    );
    assert.match(
      configError({ ...ws, "amk:rotationSchedule": "cron(0 3 ? * ? *)" }).message,
      /exactly one of day-of-month and day-of-week must be \?/,
    );
  });

  it("rejects a schedule without workspaces, workspaces without a schedule, and bad workspace ids", () => {
    assert.match(
      configError({ "amk:rotationSchedule": "rate(30 days)" }).message,
      /amk:rotationSchedule: needs amk:rotationWorkspaces/,
    );
    assert.match(
      configError({ "amk:rotationWorkspaces": ["ws-1"] }).message,
      /amk:rotationWorkspaces: is set but amk:rotationSchedule is not/,
    );
    const e = configError({
      "amk:rotationSchedule": "rate(30 days)",
      "amk:rotationWorkspaces": ["ok-1", "-bad", 7],
    });
    assert.equal(e.problems.length, 2, e.message);
    assert.match(e.message, /amk:rotationWorkspaces: "-bad" is not a workspace id/);
    assert.match(e.message, /amk:rotationWorkspaces: number is not a workspace id/);
  });

  it("rejects a vault key ARN that is an alias or lies outside the vault's account or region", () => {
    assert.match(
      configError({ "amk:vaultKeyArn": "arn:aws:kms:eu-west-1:222222222222:alias/amk" }).message,
      /amk:vaultKeyArn: must be a KMS key ARN/,
    );
    const e = configError({
      "amk:vaultAccount": "222222222222",
      "amk:vaultRegion": "eu-west-1",
      "amk:vaultKeyArn": "arn:aws:kms:eu-central-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    });
    assert.equal(e.problems.length, 2, e.message);
    assert.match(
      e.message,
      /amk:vaultKeyArn: the key is in region eu-central-1, but the vault is in region eu-west-1/,
    );
    assert.match(
      e.message,
      /amk:vaultKeyArn: the key is in account 111111111111, but the vault is in account 2{12}/,
    );
  });
});

describe("cdk-nag on the rotation workflow", () => {
  it("acknowledges the state machine role's wildcards one by one: another one fails the synth", () => {
    const { amk, outdir } = synthApp({});
    amk.stateless.rotationWorkflow.stateMachine.addToRolePolicy(
      new PolicyStatement({
        actions: ["lambda:InvokeFunction"],
        resources: ["arn:aws:lambda:eu-central-1:123456789012:function:amk-*"],
      }),
    );
    assert.throws(() => amk.app.synth(), /Validation failed/);
    const report = JSON.parse(readFileSync(join(outdir, "validation-report.json"), "utf8")) as {
      pluginReports: { violations: { ruleName: string; severity: string }[] }[];
    };
    assert.deepEqual(
      report.pluginReports.flatMap((p) =>
        p.violations.filter((v) => v.severity === "error").map((v) => v.ruleName),
      ),
      ["AwsSolutions-IAM5[Resource::arn:aws:lambda:eu-central-1:123456789012:function:amk-*]"],
    );
  });
});
