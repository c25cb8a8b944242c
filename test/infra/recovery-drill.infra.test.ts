/**
 * Infrastructure tests of the recovery and drill workflows in the stateless stack, the functions around them (the
 * unlock function, the token authorizer), the alert topic of the stateful stack, the drill schedules, their
 * configuration checks, and cdk-nag.
 *
 * State machines are found by their construct path and read back as plain ASL (workflows/local-runner.ts); policies
 * are compared after flattening CloudFormation references to strings (`Ref` as `<Name>`, `Fn::GetAtt` as
 * `<Resource.Attribute>`, `Fn::Join` joined, a weak cross-stack reference as the stateful stack's value), as in
 * rotation-workflow.infra.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { Validations } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import type { IConstruct } from "constructs";
import { createApp, type AmkApp } from "../../infra/bin/app.js";
import { drillScheduleProblem, InvalidInfraConfigError } from "../../infra/lib/config.js";
import { aslFromTemplate, walkStates, type JsonObject } from "../../workflows/local-runner.js";
import { CDK_JSON_CONTEXT, NO_BUNDLING, synthAppsIn, logicalIdIn, actionsOf } from "../support/infra.js";

const synthApp = synthAppsIn("amk-recovery-test");

type Json = unknown;
type Statement = {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: Json;
  Condition?: Json;
  Principal?: Json;
};
type Resource = { Type: string; Properties: Record<string, Json>; DeletionPolicy?: string };

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

function statesOf(asl: JsonObject): Record<string, JsonObject> {
  const states: Record<string, JsonObject> = {};
  walkStates(asl, (name, state) => {
    states[name] = state;
  });
  return states;
}

interface ValidationReport {
  pluginReports: { pluginName: string; conclusion: string; violations: { ruleName: string }[] }[];
}
function assertNagClean(outdir: string): void {
  const report = JSON.parse(readFileSync(join(outdir, "validation-report.json"), "utf8")) as ValidationReport;
  for (const plugin of report.pluginReports) {
    assert.notEqual(plugin.conclusion, "failure", `${plugin.pluginName} failed`);
    // The construct annotations' warnings (no VPC configured) are checked in stacks.infra.test.ts.
    if (plugin.pluginName === "Construct Annotations") continue;
    assert.deepEqual(plugin.violations, [], `${plugin.pluginName} reported violations`);
  }
}

const APPEND = ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"];
const READ = ["dynamodb:GetItem", "dynamodb:Query"];
const KEY_WRITE = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"];
const KEY_READ = ["kms:Decrypt"];
/** Field names and words that would mean a secret travels through a state machine. */
const SECRET_WORDS = /passphrase|"code"|totp|factor|secret/i;

type RecoveryStep =
  "start" | "awaitUnlock" | "rotate" | "verify" | "invalidateTokens" | "complete" | "failure";
const RECOVERY_STEPS: RecoveryStep[] = [
  "start",
  "awaitUnlock",
  "rotate",
  "verify",
  "invalidateTokens",
  "complete",
  "failure",
];

/** What the tests need of one synthesised app. */
function fixture(amk: AmkApp) {
  const stateless = Template.fromStack(amk.stateless);
  const stateful = Template.fromStack(amk.stateful);
  const flat = flattener(stateful);
  const s = amk.stateless;
  const fnId = (fn: IConstruct) => logicalIdIn(s, fn);
  const roleOf = (fn: { role?: IConstruct }) => logicalIdIn(s, fn.role!);
  const varsOf = (fn: IConstruct) =>
    (
      (stateless.toJSON().Resources[fnId(fn)] as Resource).Properties.Environment as {
        Variables: Record<string, Json>;
      }
    ).Variables;
  /** The role's statements as [Sid, sorted actions, flattened resource(s)] beyond its logs and the PIN secret. */
  const grants = (fn: { role?: IConstruct }) =>
    statementsOfRole(stateless, roleOf(fn))
      .filter((st) => st.Sid !== "WriteOwnLogs" && st.Sid !== "ReadHsmPin")
      .map((st) => [st.Sid, [...actionsOf(st)].sort(), flat(st.Resource)]);
  const table = `<${logicalIdIn(amk.stateful, amk.stateful.eventStore.table)}.Arn>`;
  const tableKey = `<${logicalIdIn(amk.stateful, amk.stateful.eventStore.key)}.Arn>`;
  const topic = `<${logicalIdIn(amk.stateful, amk.stateful.alerts.topic)}>`;
  const alertsKey = `<${logicalIdIn(amk.stateful, amk.stateful.alerts.key)}.Arn>`;
  /** Every function of the stateless stack by construct id. */
  const functions: Record<string, IConstruct & { role?: IConstruct }> = {
    HsmHealth: s.hsmHealth,
    GenerateDataKeys: s.generateDataKeys,
    DecryptDataKeys: s.decryptDataKeys,
    DocumentLifecycle: s.documentLifecycle,
    ...Object.fromEntries(Object.values(s.rotationFunctions).map((fn) => [fn.node.id, fn])),
    ...Object.fromEntries(Object.values(s.recoveryFunctions).map((fn) => [fn.node.id, fn])),
    RecoveryUnlock: s.recoveryUnlock,
    DrillRun: s.drillRun,
    TokenAuthorizer: s.tokenAuthorizer,
    BackupExport: s.backupExport,
    RestorationTestRun: s.restorationTestRun,
  };
  return {
    stateless,
    stateful,
    flat,
    fnId,
    roleOf,
    varsOf,
    grants,
    table,
    tableKey,
    topic,
    alertsKey,
    functions,
  };
}

describe("recovery and drill, default configuration", () => {
  let amk: AmkApp;
  let outdir: string;
  let f: ReturnType<typeof fixture>;

  before(() => {
    ({ amk, outdir } = synthApp({ "amk:environment": "test" }));
    amk.app.synth(); // throws on an unacknowledged cdk-nag finding
    f = fixture(amk);
  });

  const accessRole = "arn:<AWS::Partition>:iam::<AWS::AccountId>:role/amk-test-vault-access";
  const recoveryFn = (step: RecoveryStep) => amk.stateless.recoveryFunctions[step];

  it("passes cdk-nag with no unacknowledged finding", () => {
    assertNagClean(outdir);
  });

  describe("state machines", () => {
    it("has the recovery and drill state machines: Standard, traced, level ALL without execution data, own logs", () => {
      // With the rotation's and the restoration test's (rotation-workflow and backups.infra.test.ts).
      f.stateless.resourceCountIs("AWS::StepFunctions::StateMachine", 4);
      for (const [workflow, sm, logs] of [
        ["RecoveryWorkflow", amk.stateless.recoveryWorkflow.stateMachine, "RecoveryWorkflowLogs"],
        ["DrillWorkflow", amk.stateless.drillWorkflow.stateMachine, "DrillWorkflowLogs"],
      ] as const) {
        assert.equal(sm.node.path, `amk-test-stateless/${workflow}/StateMachine`);
        const props = (f.stateless.toJSON().Resources[logicalIdIn(amk.stateless, sm)] as Resource).Properties;
        assert.equal(props.StateMachineType, "STANDARD", workflow);
        assert.deepEqual(props.TracingConfiguration, { Enabled: true }, workflow);
        const logGroup = logicalIdIn(amk.stateless, amk.stateless.node.findChild(logs));
        assert.deepEqual(
          props.LoggingConfiguration,
          {
            Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: { "Fn::GetAtt": [logGroup, "Arn"] } } }],
            IncludeExecutionData: false,
            Level: "ALL",
          },
          workflow,
        );
        const group = f.stateless.toJSON().Resources[logGroup] as Resource;
        assert.equal(group.Properties.RetentionInDays, 90, workflow);
        assert.equal(group.DeletionPolicy, "Retain", workflow);
      }
      f.stateless.hasOutput("RecoveryStateMachineArn", {
        Value: { Ref: logicalIdIn(amk.stateless, amk.stateless.recoveryWorkflow.stateMachine) },
      });
      f.stateless.hasOutput("DrillStateMachineArn", {
        Value: { Ref: logicalIdIn(amk.stateless, amk.stateless.drillWorkflow.stateMachine) },
      });
      const outputs = f.stateless.toJSON().Outputs as Record<string, { Description: string }>;
      for (const field of ["workspaceId", "requestedBy", "reason", "kitVaultVersionId"])
        assert.ok(outputs.RecoveryStateMachineArn!.Description.includes(`"${field}"`), field);
    });

    it("carries no passphrase, code, TOTP, factor or secret in any state machine definition", () => {
      const machines = Object.entries(f.stateless.findResources("AWS::StepFunctions::StateMachine"));
      assert.equal(machines.length, 4);
      for (const [id, r] of machines) {
        // The definition as deployed (references flattened) and as the local runner reads it.
        const text = String(f.flat((r as Resource).Properties.DefinitionString));
        assert.match(text, /"StartAt"/, `${id}: the definition is read`);
        assert.doesNotMatch(text, SECRET_WORDS, id);
        const { asl } = aslFromTemplate(amk.stateless, id);
        assert.doesNotMatch(JSON.stringify(asl), SECRET_WORDS, id);
      }
    });

    it("binds each recovery Task to its function, the re-wrap to the rotation's, never to the unlock function", () => {
      const { asl, tasks } = aslFromTemplate(amk.stateless, "RecoveryWorkflow/StateMachine");
      assert.equal(asl.StartAt, "Validate");
      assert.deepEqual(tasks, {
        Validate: "RecoveryStart",
        AwaitUnlock: "RecoveryAwaitUnlock",
        Rotate: "RecoveryRotate",
        PlanRewrap: "RotationPlan",
        RewrapShard: "RotationRewrapShard",
        Census: "RotationCensus",
        Verify: "RecoveryVerify",
        InvalidateTokens: "RecoveryInvalidateTokens",
        Complete: "RecoveryComplete",
        RecordFailure: "RecoveryFailure",
      });
      const drill = aslFromTemplate(amk.stateless, "DrillWorkflow/StateMachine");
      assert.deepEqual(drill.tasks, { RunDrill: "DrillRun" });
    });

    it("AwaitUnlock waits for the task token (lambda:invoke.waitForTaskToken, $$.Task.Token) for 24 h", () => {
      const { asl } = aslFromTemplate(amk.stateless, "RecoveryWorkflow/StateMachine");
      const awaitUnlock = statesOf(asl).AwaitUnlock!;
      assert.equal(awaitUnlock.Type, "Task");
      assert.match(String(awaitUnlock.Resource), /:states:::lambda:invoke\.waitForTaskToken$/);
      const payload = (awaitUnlock.Parameters as { Payload: Record<string, Json> }).Payload;
      assert.equal(payload["taskToken.$"], "$$.Task.Token");
      assert.equal(awaitUnlock.TimeoutSeconds, 24 * 3600);
      // The expiry the function records is the same timeout.
      assert.equal(f.varsOf(recoveryFn("awaitUnlock")).AMK_UNLOCK_TIMEOUT_SECONDS, "86400");
      // No other state waits for a token.
      const waiting = Object.entries(statesOf(asl))
        .filter(([, st]) => String(st.Resource ?? "").includes("waitForTaskToken"))
        .map(([name]) => name);
      assert.deepEqual(waiting, ["AwaitUnlock"]);
    });

    it("gives the recovery state machine's role lambda:InvokeFunction on exactly its ten functions, X-Ray and logs", () => {
      const { plan, rewrapShard, census } = amk.stateless.rotationFunctions;
      const fns = [...Object.values(amk.stateless.recoveryFunctions), plan, rewrapShard, census]
        .map((fn) => `<${f.fnId(fn)}.Arn>`)
        .sort();
      assert.equal(fns.length, 10);
      const roleId = logicalIdIn(amk.stateless, amk.stateless.recoveryWorkflow.stateMachine.role);
      const statements = statementsOfRole(f.stateless, roleId).map((st) => ({
        actions: [...actionsOf(st)].sort(),
        resources: ([] as Json[]).concat(f.flat(st.Resource)).map(String).sort(),
      }));
      assert.deepEqual(statements[0], {
        actions: ["lambda:InvokeFunction"],
        resources: [...fns, ...fns.map((fn) => `${fn}:*`)].sort(),
      });
      assert.equal(statements.length, 2);
      assert.deepEqual(statements[1]!.resources, ["*"]);
      assert.ok(statements[1]!.actions.every((a) => a.startsWith("xray:") || a.startsWith("logs:")));
      const unlock = `<${f.fnId(amk.stateless.recoveryUnlock)}.Arn>`;
      assert.ok(
        !JSON.stringify(statements).includes(unlock),
        "the state machine cannot invoke the unlock function",
      );
    });

    it("gives the drill state machine's role lambda:InvokeFunction on DrillRun only, X-Ray and logs", () => {
      const roleId = logicalIdIn(amk.stateless, amk.stateless.drillWorkflow.stateMachine.role);
      const statements = statementsOfRole(f.stateless, roleId).map((st) => ({
        actions: [...actionsOf(st)].sort(),
        resources: ([] as Json[]).concat(f.flat(st.Resource)).map(String).sort(),
      }));
      const run = `<${f.fnId(amk.stateless.drillRun)}.Arn>`;
      assert.deepEqual(statements[0], { actions: ["lambda:InvokeFunction"], resources: [run, `${run}:*`] });
      assert.equal(statements.length, 2);
      assert.deepEqual(statements[1]!.resources, ["*"]);
    });

    it("acknowledges the state machine roles' wildcards one by one, with reasons", () => {
      for (const [workflow, count] of [
        ["RecoveryWorkflow", 11],
        ["DrillWorkflow", 2],
      ] as const) {
        const policy = amk.stateless.node
          .findChild(workflow)
          .node.findChild("StateMachine")
          .node.findChild("Role")
          .node.findChild("DefaultPolicy").node.defaultChild!;
        const acks = policy.node.metadata
          .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
          .flatMap((m) => Object.entries(m.data as Record<string, string>));
        assert.equal(acks.length, count, workflow);
        for (const [id, reason] of acks) {
          assert.match(id, /^Annotation::AwsSolutions-IAM5\[Resource::/);
          if (id.endsWith("[Resource::*]")) assert.match(reason, /X-Ray.*log delivery.*no resource-level/s);
          else assert.match(reason, /lambda:InvokeFunction on the versions and aliases of the \w+ function/);
        }
      }
    });
  });

  describe("recovery functions", () => {
    it("are the exports of functions/recovery/handlers.ts with the construct ids the workflow tests bind", () => {
      const expected: Record<RecoveryStep, [string, string]> = {
        start: ["RecoveryStart", "index.startHandler"],
        awaitUnlock: ["RecoveryAwaitUnlock", "index.awaitUnlockHandler"],
        rotate: ["RecoveryRotate", "index.rotateHandler"],
        verify: ["RecoveryVerify", "index.verifyHandler"],
        invalidateTokens: ["RecoveryInvalidateTokens", "index.invalidateTokensHandler"],
        complete: ["RecoveryComplete", "index.completeHandler"],
        failure: ["RecoveryFailure", "index.failureHandler"],
      };
      for (const step of RECOVERY_STEPS) {
        const fn = recoveryFn(step);
        const p = (f.stateless.toJSON().Resources[f.fnId(fn)] as Resource).Properties;
        assert.deepEqual([fn.node.id, p.Handler], expected[step], step);
      }
      const handlerOf = (fn: IConstruct) =>
        (f.stateless.toJSON().Resources[f.fnId(fn)] as Resource).Properties.Handler;
      assert.equal(amk.stateless.recoveryUnlock.node.id, "RecoveryUnlock");
      assert.equal(handlerOf(amk.stateless.recoveryUnlock), "index.handler");
      assert.equal(amk.stateless.drillRun.node.id, "DrillRun");
      assert.equal(handlerOf(amk.stateless.drillRun), "index.runDrillHandler");
      assert.equal(amk.stateless.tokenAuthorizer.node.id, "TokenAuthorizer");
      assert.equal(handlerOf(amk.stateless.tokenAuthorizer), "index.handler");
    });

    it("each gets exactly the grants of its step (RECOVERY_STEP_ACCESS)", () => {
      const { table, tableKey, topic, alertsKey } = f;
      const c1 = `${table}/index/census-1`;
      const c2 = `${table}/index/census-2`;
      const alerts = [
        ["PublishAlerts", ["sns:Publish"], topic],
        ["UseAlertTopicKey", ["kms:Decrypt", "kms:GenerateDataKey"], alertsKey],
      ];
      const vault = (tag: string) => [
        ["AssumeVaultAccessRole", ["sts:AssumeRole"], accessRole],
        [tag, ["sts:TagSession"], accessRole],
      ];
      const append = [["AppendToEventStore", APPEND, table]];
      const writeKey = [["UseEventStoreKey", KEY_WRITE, tableKey]];
      const expected: Record<RecoveryStep, Json[]> = {
        start: [
          ...append,
          ["QueryCensusIndexes", ["dynamodb:Query"], c2],
          ...writeKey,
          ...vault("TagVaultSessionAsUnlock"),
        ],
        awaitUnlock: [...append, ...writeKey],
        rotate: [...append, ...writeKey, ...alerts],
        verify: [
          ["ReadEventStore", READ, table],
          ["QueryCensusIndexes", ["dynamodb:Query"], c1],
          ["UseEventStoreKey", KEY_READ, tableKey],
        ],
        invalidateTokens: [
          ...append,
          ...writeKey,
          [
            "PublishOnEventBus",
            ["events:PutEvents"],
            "arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:event-bus/default",
          ],
        ],
        complete: [
          ...append,
          ["QueryCensusIndexes", ["dynamodb:Query"], [c1, c2]],
          ...writeKey,
          ...vault("TagVaultSessionAsWriter"),
          ...alerts,
        ],
        failure: [...append, ...writeKey, ...alerts],
      };
      for (const step of RECOVERY_STEPS) assert.deepEqual(f.grants(recoveryFn(step)), expected[step], step);
      assert.deepEqual(f.grants(amk.stateless.drillRun), [
        ...append,
        ["QueryCensusIndexes", ["dynamodb:Query"], [c1, c2]],
        ...writeKey,
        ...vault("TagVaultSessionAsUnlock"),
        ...alerts,
      ]);
    });

    it("tags vault sessions with the caller's kind only; the vault users have fixed role names and outputs", () => {
      for (const [fn, roleName, kind, output] of [
        [recoveryFn("start"), "amk-test-recovery-start", "unlock", "RecoveryStartRoleArn"],
        [recoveryFn("complete"), "amk-test-recovery-complete", "writer", "RecoveryCompleteRoleArn"],
        [amk.stateless.recoveryUnlock, "amk-test-recovery-unlock", "unlock", "RecoveryUnlockRoleArn"],
        [amk.stateless.drillRun, "amk-test-drill-run", "unlock", "DrillRunRoleArn"],
        [amk.stateless.backupExport, "amk-test-backup-export", "writer", "BackupExportRoleArn"],
        [
          amk.stateless.restorationTestRun,
          "amk-test-restoration-test",
          "unlock",
          "RestorationTestRunRoleArn",
        ],
      ] as const) {
        const roleId = f.roleOf(fn);
        assert.equal((f.stateless.toJSON().Resources[roleId] as Resource).Properties.RoleName, roleName);
        const tag = statementsOfRole(f.stateless, roleId).find((st) =>
          actionsOf(st).includes("sts:TagSession"),
        );
        assert.deepEqual(
          tag?.Condition,
          {
            StringEquals: { "aws:RequestTag/amk:vault-caller": kind },
            "ForAllValues:StringEquals": { "aws:TagKeys": ["amk:vault-caller"] },
          },
          roleName,
        );
        const vars = f.varsOf(fn);
        assert.equal(vars.AMK_VAULT_CALLER, kind, roleName);
        assert.equal(f.flat(vars.AMK_VAULT_ACCESS_ROLE_ARN), accessRole, roleName);
        f.stateless.hasOutput(output, { Value: { "Fn::GetAtt": [roleId, "Arn"] } });
        const description = (f.stateless.toJSON().Outputs as Record<string, { Description: string }>)[output]!
          .Description;
        assert.match(description, kind === "writer" ? /amk:vaultWriterRoleArns/ : /amk:unlockRoleArns/);
      }
      // Nobody else reaches the vault.
      const users = new Set(
        [
          recoveryFn("start"),
          recoveryFn("complete"),
          amk.stateless.recoveryUnlock,
          amk.stateless.drillRun,
          amk.stateless.backupExport,
          amk.stateless.restorationTestRun,
        ].map((fn) => f.roleOf(fn)),
      );
      users.add(f.roleOf(amk.stateless.rotationFunctions.complete));
      for (const [id, fn] of Object.entries(f.functions)) {
        const text = JSON.stringify(statementsOfRole(f.stateless, f.roleOf(fn)));
        assert.equal(/sts:AssumeRole/.test(text), users.has(f.roleOf(fn)), id);
        assert.equal(f.varsOf(fn).AMK_VAULT_ACCESS_ROLE_ARN !== undefined, users.has(f.roleOf(fn)), id);
      }
    });

    it("RecoveryUnlock: outside the state machine, states:SendTaskSuccess on exactly the recovery state machine", () => {
      const sm = `<${logicalIdIn(amk.stateless, amk.stateless.recoveryWorkflow.stateMachine)}>`;
      const unlock = amk.stateless.recoveryUnlock;
      const c2 = `${f.table}/index/census-2`;
      assert.deepEqual(f.grants(unlock), [
        ["AppendToEventStore", APPEND, f.table],
        ["QueryCensusIndexes", ["dynamodb:Query"], c2],
        ["UseEventStoreKey", KEY_WRITE, f.tableKey],
        ["AssumeVaultAccessRole", ["sts:AssumeRole"], accessRole],
        ["TagVaultSessionAsUnlock", ["sts:TagSession"], accessRole],
        ["PublishAlerts", ["sns:Publish"], f.topic],
        ["UseAlertTopicKey", ["kms:Decrypt", "kms:GenerateDataKey"], f.alertsKey],
        ["ResumeRecovery", ["states:SendTaskSuccess"], sm],
      ]);
      // It opens the HSM (imports the master keys).
      assert.equal(f.varsOf(unlock).AMK_PKCS11_PIN_SECRET_ID, "arquivomate-keys/test/hsm-pin");
      // No other function may use Step Functions at all.
      for (const [id, fn] of Object.entries(f.functions)) {
        if (fn === unlock) continue;
        const actions = statementsOfRole(f.stateless, f.roleOf(fn)).flatMap(actionsOf);
        assert.ok(!actions.some((a) => a.startsWith("states:")), id);
      }
      f.stateless.hasOutput("RecoveryUnlockFunctionName", { Value: { Ref: f.fnId(unlock) } });
      f.stateless.hasOutput("RecoveryUnlockFunctionArn", {
        Value: { "Fn::GetAtt": [f.fnId(unlock), "Arn"] },
      });
      // Nothing in the stack invokes it: administrators do, with their own permission.
      assert.ok(
        !Object.values(f.stateless.findResources("AWS::Lambda::Permission")).some((p) =>
          JSON.stringify(p).includes(f.fnId(unlock)),
        ),
      );
    });

    it("InvalidateTokens: events:PutEvents on exactly the default bus, for this service's source; nobody else", () => {
      const fn = recoveryFn("invalidateTokens");
      const statement = statementsOfRole(f.stateless, f.roleOf(fn)).find((st) =>
        actionsOf(st).includes("events:PutEvents"),
      );
      assert.deepEqual(f.flat(statement), {
        Sid: "PublishOnEventBus",
        Action: "events:PutEvents",
        Effect: "Allow",
        Resource: "arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:event-bus/default",
        Condition: { StringEquals: { "events:source": "arquivomate.keys" } },
      });
      assert.equal(f.varsOf(fn).AMK_EVENT_BUS_NAME, "default");
      for (const [id, other] of Object.entries(f.functions)) {
        if (other === fn) continue;
        const text = JSON.stringify(statementsOfRole(f.stateless, f.roleOf(other)));
        assert.doesNotMatch(text, /events:/, id);
        assert.equal(f.varsOf(other).AMK_EVENT_BUS_NAME, undefined, id);
      }
    });

    it("only the functions that raise alerts publish, on the alert topic only", () => {
      const alerting = new Set([
        "RotationFailure",
        "RecoveryRotate",
        "RecoveryComplete",
        "RecoveryFailure",
        "RecoveryUnlock",
        "DrillRun",
        "RestorationTestRun",
      ]);
      for (const [id, fn] of Object.entries(f.functions)) {
        const statements = statementsOfRole(f.stateless, f.roleOf(fn));
        const publish = statements.filter((st) => actionsOf(st).some((a) => a.startsWith("sns:")));
        const vars = f.varsOf(fn);
        if (alerting.has(id)) {
          assert.deepEqual(
            publish.map((st) => [st.Action, f.flat(st.Resource)]),
            [["sns:Publish", f.topic]],
            id,
          );
          assert.equal(f.flat(vars.AMK_ALERT_TOPIC_ARN), f.topic, id);
          const key = statements.find((st) => st.Sid === "UseAlertTopicKey");
          assert.deepEqual(
            f.flat(key?.Condition),
            { StringEquals: { "kms:ViaService": "sns.<AWS::Region>.amazonaws.com" } },
            id,
          );
        } else {
          assert.deepEqual(publish, [], id);
          assert.equal(vars.AMK_ALERT_TOPIC_ARN, undefined, id);
        }
      }
    });

    it("gives no function a wildcard action or resource (without an HSM cluster; but the backup objects)", () => {
      for (const [id, fn] of Object.entries(f.functions)) {
        for (const st of statementsOfRole(f.stateless, f.roleOf(fn))) {
          // The backup functions' objects under backups/ (backups.infra.test.ts).
          if (st.Sid === "WriteBackups" || st.Sid === "ReadBackups") {
            assert.match(String(f.flat(st.Resource)), /\/backups\/\*$/, id);
            continue;
          }
          assert.ok(!JSON.stringify(st.Resource).includes("*"), `${id}: ${JSON.stringify(st.Resource)}`);
          assert.ok(!actionsOf(st).some((a) => a.includes("*")), `${id}: ${JSON.stringify(st.Action)}`);
        }
      }
    });
  });

  describe("token authorizer", () => {
    it("has no HSM: no PKCS#11 settings, no PIN, no vault, no topic", () => {
      const fn = amk.stateless.tokenAuthorizer;
      const vars = f.varsOf(fn);
      assert.deepEqual(Object.keys(vars).sort(), [
        "AMK_EVENT_TABLE",
        "AMK_TOKEN_SIGNING_SECRET_ID",
        "NODE_OPTIONS",
        "POWERTOOLS_SERVICE_NAME",
      ]);
      assert.equal(vars.AMK_TOKEN_SIGNING_SECRET_ID, "arquivomate-keys/test/token-signing-key");
      const text = JSON.stringify(statementsOfRole(f.stateless, f.roleOf(fn)));
      assert.doesNotMatch(text, /hsm-pin|ReadHsmPin|sts:|sns:|states:|events:|cloudhsm:/);
    });

    it("reads the event store and the signing secret, and writes nothing", () => {
      const fn = amk.stateless.tokenAuthorizer;
      assert.deepEqual(f.grants(fn), [
        ["ReadEventStore", READ, f.table],
        ["UseEventStoreKey", KEY_READ, f.tableKey],
        [
          "ReadTokenSigningKey",
          ["secretsmanager:GetSecretValue"],
          "arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:arquivomate-keys/test/token-signing-key-??????",
        ],
      ]);
      const actions = statementsOfRole(f.stateless, f.roleOf(fn))
        .filter((st) => st.Sid !== "WriteOwnLogs")
        .flatMap(actionsOf);
      for (const a of actions)
        assert.doesNotMatch(a, /Put|Write|Update|Delete|Batch|Encrypt|GenerateDataKey|Create/, a);
      f.stateless.hasOutput("TokenAuthorizerFunctionArn", { Value: { "Fn::GetAtt": [f.fnId(fn), "Arn"] } });
    });
  });

  describe("alerts and schedules", () => {
    it("has the alert topic in the stateful stack: its own rotating key, TLS only, CloudWatch alarms of this environment only, retained, no subscription", () => {
      const topicId = logicalIdIn(amk.stateful, amk.stateful.alerts.topic);
      const keyId = logicalIdIn(amk.stateful, amk.stateful.alerts.key);
      const topic = f.stateful.toJSON().Resources[topicId] as Resource;
      assert.equal(topic.Type, "AWS::SNS::Topic");
      assert.deepEqual(topic.Properties.KmsMasterKeyId, { "Fn::GetAtt": [keyId, "Arn"] });
      assert.equal(topic.DeletionPolicy, "Retain");
      f.stateful.hasResourceProperties("AWS::KMS::Alias", {
        AliasName: "alias/arquivomate-keys/test/alerts",
        TargetKeyId: { "Fn::GetAtt": [keyId, "Arn"] },
      });
      const key = f.stateful.toJSON().Resources[keyId] as Resource;
      assert.equal(key.Properties.EnableKeyRotation, true);
      assert.equal(key.DeletionPolicy, "Retain");
      const policies = Object.values(f.stateful.findResources("AWS::SNS::TopicPolicy")) as Resource[];
      assert.equal(policies.length, 1);
      assert.deepEqual(
        (policies[0]!.Properties.PolicyDocument as { Statement: Statement[] }).Statement.map((st) => [
          st.Effect,
          st.Condition,
        ]),
        [
          ["Deny", { Bool: { "aws:SecureTransport": "false" } }],
          [
            "Allow",
            {
              ArnLike: {
                "aws:SourceArn": {
                  "Fn::Join": [
                    "",
                    [
                      "arn:",
                      { Ref: "AWS::Partition" },
                      ":cloudwatch:",
                      { Ref: "AWS::Region" },
                      ":",
                      { Ref: "AWS::AccountId" },
                      ":alarm:amk-test-*",
                    ],
                  ],
                },
              },
              StringEquals: { "aws:SourceAccount": { Ref: "AWS::AccountId" } },
            },
          ],
        ],
      );
      f.stateful.resourceCountIs("AWS::SNS::Subscription", 0);
      f.stateful.hasOutput("AlertTopicArn", { Value: { Ref: topicId } });
    });

    it("has no drill schedule without amk:drillWorkspaces", () => {
      assert.deepEqual(amk.stateless.drillSchedules, []);
      f.stateless.resourceCountIs("AWS::Scheduler::Schedule", 0);
      f.stateless.resourceCountIs("AWS::Scheduler::ScheduleGroup", 0);
    });

    it("grants no CloudHSM call without amk:hsmClusterId", () => {
      const vars = f.varsOf(amk.stateless.drillRun);
      assert.equal(vars.AMK_HSM_CLUSTER_ID, undefined);
      assert.equal(vars.AMK_HSM_BACKUP_COPY_REGION, undefined);
      assert.doesNotMatch(JSON.stringify(f.stateless.toJSON()), /cloudhsm:/);
    });
  });
});

describe("recovery and drill, configured (drill workspaces, alert emails, bus, unlock timeout, secret ARN, cluster)", () => {
  const SIGNING_SECRET = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:amk-prod/token-key-AbC123";
  let amk: AmkApp;
  let outdir: string;
  let f: ReturnType<typeof fixture>;

  before(() => {
    ({ amk, outdir } = synthApp({
      "amk:environment": "prod",
      "amk:account": "123456789012",
      "amk:region": "eu-central-1",
      "amk:drillWorkspaces": ["ws-b", "ws-a", "ws-a"],
      "amk:drillSchedule": "cron(15 4 * * ? *)",
      "amk:alertEmails": "keys-oncall@example.com, security@example.org",
      "amk:eventBusName": "arquivomate-keys",
      "amk:unlockTimeoutHours": "48",
      "amk:tokenSigningSecret": SIGNING_SECRET,
      "amk:hsmClusterId": "cluster-jxhlf7644ne",
      "amk:hsmBackupCopyRegion": "eu-west-1",
    }));
    amk.app.synth();
    f = fixture(amk);
  });

  it('passes cdk-nag, DescribeBackups\' "*" acknowledged on the backup-listing role with a reason', () => {
    assertNagClean(outdir);
    const lister = Object.values(amk.stateless.functions).find((fn) => fn.node.id === "HsmBackupList")!;
    const policy = lister.role!.node.findChild("DefaultPolicy").node.defaultChild!;
    const acks = policy.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, string>));
    assert.deepEqual(
      acks.map(([id]) => id),
      ["Annotation::AwsSolutions-IAM5[Resource::*]"],
    );
    assert.match(
      acks[0]![1],
      /^X-Ray active tracing .*cloudhsm:DescribeBackups has no resource-level permissions/s,
    );
  });

  it("starts the drill state machine once per workspace, with the schedule trigger, in its own group", () => {
    const sm = logicalIdIn(amk.stateless, amk.stateless.drillWorkflow.stateMachine);
    const group = logicalIdIn(amk.stateless, amk.stateless.node.findChild("DrillSchedules"));
    // The drill's schedules (the same workspaces also get backup and restoration schedules: backups.infra.test.ts).
    const schedules = Object.values(
      f.stateless.findResources("AWS::Scheduler::Schedule", { Properties: { GroupName: "amk-prod-drill" } }),
    ).map((r) => (r as Resource).Properties as { Target: Record<string, Json> } & Record<string, Json>);
    assert.deepEqual(
      schedules
        .map((s) => JSON.parse(s.Target.Input as string) as unknown)
        .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [
        { workspaceId: "ws-a", trigger: "schedule" },
        { workspaceId: "ws-b", trigger: "schedule" },
      ],
    );
    assert.equal(amk.stateless.drillSchedules.length, 2);
    const roles = new Set<string>();
    for (const s of schedules) {
      assert.equal(s.ScheduleExpression, "cron(15 4 * * ? *)");
      assert.equal(s.ScheduleExpressionTimezone, "Etc/UTC");
      assert.equal(s.State, "ENABLED");
      assert.equal(s.GroupName, "amk-prod-drill");
      assert.deepEqual(s.Target.Arn, { Ref: sm });
      assert.deepEqual(s.Target.RetryPolicy, { MaximumEventAgeInSeconds: 7200, MaximumRetryAttempts: 8 });
      roles.add((s.Target.RoleArn as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0]);
    }
    assert.equal(roles.size, 1);
    const roleId = [...roles][0]!;
    assert.deepEqual(
      statementsOfRole(f.stateless, roleId).map((st) => [st.Action, st.Resource]),
      [["states:StartExecution", { Ref: sm }]],
    );
    const trust = (f.stateless.toJSON().Resources[roleId] as Resource).Properties
      .AssumeRolePolicyDocument as {
      Statement: Statement[];
    };
    assert.deepEqual(
      (trust.Statement[0]!.Condition as { StringEquals: Record<string, Json> }).StringEquals["aws:SourceArn"],
      { "Fn::GetAtt": [group, "Arn"] },
    );
    f.stateless.hasResource("AWS::Scheduler::ScheduleGroup", {
      Properties: { Name: "amk-prod-drill" },
      DeletionPolicy: "Delete",
    });
  });

  it("uses the default drill schedule, rate(1 day), when only the workspaces are given", () => {
    const { amk: other } = synthApp({ "amk:drillWorkspaces": "ws-1" });
    const schedules = Object.values(
      Template.fromStack(other.stateless).findResources("AWS::Scheduler::Schedule", {
        Properties: { GroupName: "amk-dev-drill" },
      }),
    );
    assert.deepEqual(
      schedules.map((r) => (r as Resource).Properties.ScheduleExpression),
      ["rate(1 day)"],
    );
  });

  it("subscribes each configured email address to the alert topic", () => {
    const topicId = logicalIdIn(amk.stateful, amk.stateful.alerts.topic);
    const subs = Object.values(f.stateful.findResources("AWS::SNS::Subscription")).map(
      (r) => (r as Resource).Properties,
    );
    assert.deepEqual(subs.map((p) => [p.Protocol, p.Endpoint, p.TopicArn]).sort(), [
      ["email", "keys-oncall@example.com", { Ref: topicId }],
      ["email", "security@example.org", { Ref: topicId }],
    ]);
  });

  it("waits amk:unlockTimeoutHours for the unlock, in the state machine and in the recorded expiry", () => {
    const { asl } = aslFromTemplate(amk.stateless, "RecoveryWorkflow/StateMachine");
    assert.equal(statesOf(asl).AwaitUnlock!.TimeoutSeconds, 48 * 3600);
    assert.equal(f.varsOf(amk.stateless.recoveryFunctions.awaitUnlock).AMK_UNLOCK_TIMEOUT_SECONDS, "172800");
  });

  it("publishes the token invalidation on exactly the configured bus", () => {
    const fn = amk.stateless.recoveryFunctions.invalidateTokens;
    assert.equal(f.varsOf(fn).AMK_EVENT_BUS_NAME, "arquivomate-keys");
    const statements = statementsOfRole(f.stateless, f.roleOf(fn)).filter((st) =>
      actionsOf(st).includes("events:PutEvents"),
    );
    assert.deepEqual(
      statements.map((st) => [st.Action, st.Resource]),
      [["events:PutEvents", "arn:aws:events:eu-central-1:123456789012:event-bus/arquivomate-keys"]],
    );
  });

  it("gives the token authorizer exactly the configured signing secret, and no layer", () => {
    const fn = amk.stateless.tokenAuthorizer;
    assert.equal(f.varsOf(fn).AMK_TOKEN_SIGNING_SECRET_ID, SIGNING_SECRET);
    const secrets = statementsOfRole(f.stateless, f.roleOf(fn)).filter((st) =>
      actionsOf(st).some((a) => a.startsWith("secretsmanager:")),
    );
    assert.deepEqual(
      secrets.map((st) => [st.Sid, st.Action, st.Resource]),
      [["ReadTokenSigningKey", "secretsmanager:GetSecretValue", SIGNING_SECRET]],
    );
  });

  it("lists CloudHSM backups in the cluster's and the copy region only, outside the VPC, before the drill", () => {
    const vars = f.varsOf(amk.stateless.drillRun);
    assert.equal(vars.AMK_HSM_CLUSTER_ID, "cluster-jxhlf7644ne");
    assert.equal(vars.AMK_HSM_BACKUP_COPY_REGION, "eu-west-1");
    const lister = Object.values(amk.stateless.functions).find((fn) => fn.node.id === "HsmBackupList")!;
    assert.equal(f.varsOf(lister).AMK_HSM_BACKUP_COPY_REGION, "eu-west-1");
    // The drill function itself may not describe backups; the workflow's first state lists them.
    assert.deepEqual(
      statementsOfRole(f.stateless, f.roleOf(amk.stateless.drillRun)).filter((st) =>
        actionsOf(st).some((a) => a.startsWith("cloudhsm:")),
      ),
      [],
    );
    const asl = JSON.stringify(
      f.stateless.toJSON().Resources[logicalIdIn(amk.stateless, amk.stateless.drillWorkflow.stateMachine)],
    );
    assert.match(asl, /ListHsmBackups/);
    const statements = statementsOfRole(f.stateless, f.roleOf(lister)).filter((st) =>
      actionsOf(st).some((a) => a.startsWith("cloudhsm:")),
    );
    assert.deepEqual(statements, [
      {
        Sid: "DescribeHsmBackups",
        Action: "cloudhsm:DescribeBackups",
        Effect: "Allow",
        Resource: "*",
        Condition: { StringEquals: { "aws:RequestedRegion": ["eu-central-1", "eu-west-1"] } },
      },
    ]);
    // The only "*" resource of any function role (the backup objects' "<bucket>/backups/*" is a pattern, not "*").
    for (const [id, fn] of Object.entries(f.functions)) {
      for (const st of statementsOfRole(f.stateless, f.roleOf(fn))) {
        if (st.Sid === "DescribeHsmBackups") continue;
        if (st.Sid === "WriteBackups" || st.Sid === "ReadBackups") {
          assert.match(String(f.flat(st.Resource)), /\/backups\/\*$/, id);
          continue;
        }
        assert.ok(!JSON.stringify(st.Resource).includes("*"), `${id}: ${JSON.stringify(st.Resource)}`);
      }
    }
  });
});

describe("recovery, drill and alert configuration is validated at synth time", () => {
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

  it("rejects bad alert email addresses, naming each", () => {
    const e = configError({
      "amk:alertEmails": ["ok@example.com", "not-an-email", "Ops <ops@example.com>", 7],
    });
    assert.equal(e.problems.length, 3, e.message);
    assert.match(e.message, /amk:alertEmails: "not-an-email" is not an email address/);
    assert.match(e.message, /amk:alertEmails: "Ops <ops@example\.com>" is not an email address/);
    assert.match(e.message, /amk:alertEmails: number is not an email address/);
    assert.match(
      configError({ "amk:alertEmails": 5 }).message,
      /amk:alertEmails: must be a list of email addresses/,
    );
  });

  it("rejects an unlock timeout that is not a whole number of hours from 1 to 168", () => {
    for (const value of ["0", "169", "1.5", "soon", 0, -3, 200, ""]) {
      const e = configError({ "amk:unlockTimeoutHours": value });
      assert.equal(e.problems.length, 1, e.message);
      assert.match(
        e.message,
        /amk:unlockTimeoutHours: must be a whole number of hours from 1 to 168 \(how long a recovery waits/,
        String(value),
      );
    }
  });

  it("accepts an unlock timeout of 1 and of 168 hours, as numbers or strings", () => {
    for (const value of [1, "168"]) {
      const { amk } = synthApp({ "amk:unlockTimeoutHours": value });
      assert.equal(amk.config.unlockTimeoutHours, Number(value));
    }
    assert.equal(synthApp({}).amk.config.unlockTimeoutHours, 24);
  });

  it("rejects a bad drill schedule, one firing more than hourly, and one without workspaces", () => {
    const ws = { "amk:drillWorkspaces": ["ws-1"] };
    for (const expression of ["daily", "rate(30 minutes)", "cron(*/10 * * * ? *)", "rate(2 day)"]) {
      const e = configError({ ...ws, "amk:drillSchedule": expression });
      assert.equal(e.problems.length, 1, e.message);
      assert.match(e.message, /amk:drillSchedule: /);
      assert.ok(e.message.includes(`(got "${expression}")`), e.message);
    }
    assert.match(
      configError({ ...ws, "amk:drillSchedule": "rate(5 minutes)" }).message,
      /at most once an hour/,
    );
    assert.match(
      configError({ "amk:drillSchedule": "rate(1 day)" }).message,
      /amk:drillSchedule: needs amk:drillWorkspaces/,
    );
    assert.match(
      configError({ "amk:drillWorkspaces": ["ok", "-bad"] }).message,
      /amk:drillWorkspaces: "-bad" is not a workspace id/,
    );
    for (const e of [
      "rate(1 day)",
      "rate(6 hours)",
      "rate(1 hour)",
      "cron(0 */4 * * ? *)",
      "cron(30 2 ? * MON-FRI *)",
    ])
      assert.equal(drillScheduleProblem(e), undefined, e);
  });

  it("refuses a signing key given as the signing secret's name, without echoing it", () => {
    const key = "q2XvB8mJ0tA9cR4pLw7zE1nYk3sH6uFdG5oKiVbNx0Q=";
    const e = configError({ "amk:tokenSigningSecret": key });
    assert.match(e.message, /amk:tokenSigningSecret: looks like a key rather than a secret name/);
    assert.ok(!e.message.includes(key));
    assert.ok(!JSON.stringify(e).includes(key));
    // A long name is still a name.
    const name = "arquivomate-keys/production-eu/access-token-signing-key-2026";
    assert.deepEqual(synthApp({ "amk:tokenSigningSecret": name }).amk.config.tokenSigningSecret, {
      kind: "name",
      name,
    });
    assert.match(
      configError({
        "amk:tokenSigningSecret": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:amk/token",
      }).message,
      /amk:tokenSigningSecret: must be a secret name or a complete Secrets Manager secret ARN/,
    );
  });

  it("rejects a bad cluster id, a copy region without a cluster, and an event bus ARN", () => {
    const e = configError({
      "amk:hsmClusterId": "jxhlf7644ne",
      "amk:eventBusName": "arn:aws:events:eu-central-1:123456789012:event-bus/default",
    });
    assert.equal(e.problems.length, 2, e.message);
    assert.match(e.message, /amk:hsmClusterId: must be a CloudHSM cluster id such as cluster-/);
    assert.match(e.message, /amk:eventBusName: must be the name \(not the ARN\) of an event bus/);
    assert.match(
      configError({ "amk:hsmBackupCopyRegion": "eu-west-1" }).message,
      /amk:hsmBackupCopyRegion: needs amk:hsmClusterId/,
    );
    assert.match(
      configError({
        "amk:account": "123456789012",
        "amk:region": "eu-west-1",
        "amk:hsmClusterId": "cluster-jxhlf7644ne",
        "amk:hsmBackupCopyRegion": "eu-west-1",
      }).message,
      /amk:hsmBackupCopyRegion: must be another region than the cluster's/,
    );
  });
});
