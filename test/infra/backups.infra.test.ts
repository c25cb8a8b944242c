/**
 * Infrastructure tests of the backups in the stateless stack: the export function (`BackupExport`) and its daily
 * schedules, the restoration test (`RestorationTestRun`, `RestorationWorkflow/StateMachine`) and its schedules and
 * alarms, their least-privilege grants (the Scan on exactly the table, the scratch tables by their name pattern only,
 * the backup bucket under `backups/` only, the bucket key through S3 only), their configuration checks, and cdk-nag.
 *
 * Policies are compared after flattening CloudFormation references to strings (`Ref` as `<Name>`, `Fn::GetAtt` as
 * `<Resource.Attribute>`, `Fn::Join` joined, a weak cross-stack reference as the stateful stack's value), as in
 * recovery-drill.infra.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
} from "@aws-sdk/client-dynamodb";
import { Validations } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { PolicyStatement } from "aws-cdk-lib/aws-iam";
import type { IConstruct } from "constructs";
import { createApp, type AmkApp } from "../../infra/bin/app.js";
import {
  CONTEXT_KEYS,
  DEFAULT_BACKUP_SCHEDULE,
  DEFAULT_RESTORATION_SCHEDULE,
  InvalidInfraConfigError,
} from "../../infra/lib/config.js";
import {
  BACKUP_PREFIX,
  KIT_FUNCTION_ENTRIES,
  SCRATCH_TABLE_ID_LENGTH,
} from "../../infra/lib/stateless-stack.js";
import { aslFromTemplate } from "../../workflows/local-runner.js";
import {
  CDK_JSON_CONTEXT,
  NO_BUNDLING,
  validateAsl,
  synthAppsIn,
  logicalIdIn,
  actionsOf,
} from "../support/infra.js";

const synthApp = synthAppsIn("amk-backups-test");

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

/** The X-Ray statement of every function's role (asserted in operations.infra.test.ts, left out below). */
const TRACING_STATEMENT = JSON.stringify({
  Action: ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
  Effect: "Allow",
  Resource: "*",
});

interface ValidationReport {
  pluginReports: { pluginName: string; conclusion: string; violations: { ruleName: string }[] }[];
}
const readReport = (outdir: string): ValidationReport =>
  JSON.parse(readFileSync(join(outdir, "validation-report.json"), "utf8")) as ValidationReport;
function assertNagClean(outdir: string): void {
  for (const plugin of readReport(outdir).pluginReports) {
    assert.notEqual(plugin.conclusion, "failure", `${plugin.pluginName} failed`);
    // The construct annotations' warnings (no VPC configured) are checked in stacks.infra.test.ts.
    if (plugin.pluginName === "Construct Annotations") continue;
    assert.deepEqual(plugin.violations, [], `${plugin.pluginName} reported violations`);
  }
}

/** A resource pattern of IAM (`*`, `?`) as a regular expression. */
const iamPattern = (pattern: string): RegExp =>
  new RegExp(
    `^${pattern
      .split("")
      .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")))
      .join("")}$`,
  );

/** What the tests need of one synthesised app. */
function fixture(amk: AmkApp) {
  const stateless = Template.fromStack(amk.stateless);
  const stateful = Template.fromStack(amk.stateful);
  const resources = stateless.toJSON().Resources as Record<string, Resource>;
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
  const s = amk.stateless;
  const statementsOfRole = (roleId: string): Statement[] =>
    Object.values(resources)
      .filter((r) => r.Type === "AWS::IAM::Policy")
      .map((r) => r.Properties as { Roles: { Ref: string }[]; PolicyDocument: { Statement: Statement[] } })
      .filter((p) => p.Roles.some((r) => r.Ref === roleId))
      .flatMap((p) => p.PolicyDocument.Statement)
      .filter((st) => JSON.stringify(st) !== TRACING_STATEMENT);
  const roleOf = (fn: { role?: IConstruct }) => logicalIdIn(s, fn.role!);
  /** The role's statements as [Sid, sorted actions, flattened resource(s), flattened condition]. */
  const grants = (fn: { role?: IConstruct }) =>
    statementsOfRole(roleOf(fn))
      .filter((st) => st.Sid !== "WriteOwnLogs" && st.Sid !== "ReadHsmPin")
      .map((st) => [
        st.Sid,
        [...actionsOf(st)].sort(),
        flat(st.Resource),
        ...(st.Condition === undefined ? [] : [flat(st.Condition)]),
      ]);
  const propsOf = (construct: IConstruct) => resources[logicalIdIn(s, construct)]!.Properties;
  const varsOf = (fn: IConstruct) =>
    flat((propsOf(fn).Environment as { Variables: Record<string, Json> }).Variables) as Record<string, Json>;
  const alarms = Object.fromEntries(
    Object.values(resources)
      .filter((r) => r.Type === "AWS::CloudWatch::Alarm")
      .map((r) => [r.Properties.AlarmName as string, r.Properties]),
  );
  const schedulesOf = (group: string) =>
    Object.values(resources)
      .filter((r) => r.Type === "AWS::Scheduler::Schedule" && r.Properties.GroupName === group)
      .map((r) => r.Properties as { Target: Record<string, Json> } & Record<string, Json>);
  const id = (construct: IConstruct) => logicalIdIn(amk.stateful, construct);
  const imported = amk.config.backups.imported;
  return {
    stateless,
    stateful,
    resources,
    flat,
    statementsOfRole,
    roleOf,
    grants,
    propsOf,
    varsOf,
    alarms,
    schedulesOf,
    table: `<${id(amk.stateful.eventStore.table)}.Arn>`,
    tableName: `<${id(amk.stateful.eventStore.table)}>`,
    tableKey: `<${id(amk.stateful.eventStore.key as unknown as IConstruct)}.Arn>`,
    // An imported bucket and key are their ARNs (nothing of theirs is in the stateful template).
    bucket: imported?.bucketArn ?? `<${id(amk.stateful.backups.bucket)}.Arn>`,
    bucketName:
      imported === undefined
        ? `<${id(amk.stateful.backups.bucket)}>`
        : amk.stateful.backups.bucket.bucketName,
    backupKey: imported?.keyArn ?? `<${id(amk.stateful.backups.key as unknown as IConstruct)}.Arn>`,
    topic: `<${id(amk.stateful.alerts.topic)}>`,
    alertsKey: `<${id(amk.stateful.alerts.key as unknown as IConstruct)}.Arn>`,
  };
}

const ACCESS_ROLE = "arn:<AWS::Partition>:iam::<AWS::AccountId>:role/amk-test-vault-access";
const vault = (tag: string) => [
  ["AssumeVaultAccessRole", ["sts:AssumeRole"], ACCESS_ROLE],
  [
    tag,
    ["sts:TagSession"],
    ACCESS_ROLE,
    {
      StringEquals: {
        "aws:RequestTag/amk:vault-caller": tag === "TagVaultSessionAsWriter" ? "writer" : "unlock",
      },
      "ForAllValues:StringEquals": { "aws:TagKeys": ["amk:vault-caller"] },
    },
  ],
];
const S3_VIA = { StringEquals: { "kms:ViaService": "s3.<AWS::Region>.amazonaws.com" } };
const SCRATCH_DATA = [
  "dynamodb:BatchGetItem",
  "dynamodb:GetItem",
  "dynamodb:PutItem",
  "dynamodb:Query",
  "dynamodb:Scan",
];

describe("backups, with drill workspaces (default schedules)", () => {
  let amk: AmkApp;
  let outdir: string;
  let f: ReturnType<typeof fixture>;

  before(() => {
    ({ amk, outdir } = synthApp({ "amk:environment": "test", "amk:drillWorkspaces": ["ws-b", "ws-a"] }));
    amk.app.synth(); // throws on an unacknowledged cdk-nag finding
    f = fixture(amk);
  });

  it("passes cdk-nag with no unacknowledged finding", () => {
    assertNagClean(outdir);
  });

  describe("BackupExport", () => {
    it("is exportHandler of functions/backup/handler.ts, without the HSM, 1024 MB and 15 min, outside any VPC", () => {
      const fn = amk.stateless.backupExport;
      assert.equal(fn.node.id, "BackupExport");
      const p = f.propsOf(fn);
      assert.equal(p.Handler, "index.exportHandler");
      assert.equal(p.MemorySize, 1024);
      assert.equal(p.Timeout, 900);
      assert.equal(p.Layers, undefined);
      assert.equal(p.VpcConfig, undefined);
      assert.deepEqual(p.TracingConfig, { Mode: "Active" });
      assert.equal(amk.stateless.functions["backup-export"], fn);
    });

    it("gets the table, the vault as writer and the backup bucket in its environment; no PKCS#11, no PIN", () => {
      assert.deepEqual(f.varsOf(amk.stateless.backupExport), {
        AMK_EVENT_TABLE: f.tableName,
        AMK_VAULT_REGION: "<AWS::Region>",
        AMK_VAULT_ACCESS_ROLE_ARN: ACCESS_ROLE,
        AMK_VAULT_CALLER: "writer",
        AMK_BACKUP_BUCKET: f.bucketName,
        AMK_BACKUP_PREFIX: "backups/",
        AMK_BACKUP_KMS_KEY_ID: f.backupKey,
        POWERTOOLS_SERVICE_NAME: "arquivomate-keys-backup-export",
        NODE_OPTIONS: "--enable-source-maps",
      });
    });

    it("reads the event store and Scans exactly the table, writes under backups/ only, uses the bucket key through S3", () => {
      assert.deepEqual(f.grants(amk.stateless.backupExport), [
        ["ReadEventStore", ["dynamodb:GetItem", "dynamodb:Query"], f.table],
        ["UseEventStoreKey", ["kms:Decrypt"], f.tableKey],
        ...vault("TagVaultSessionAsWriter"),
        // The stream heads (a consistent Scan) and the events (BatchGetItem): the table, not an index, not a pattern.
        ["ExportEventStore", ["dynamodb:BatchGetItem", "dynamodb:Scan"], f.table],
        [
          "WriteBackups",
          ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
          `${f.bucket}/backups/*`,
        ],
        ["ListBackups", ["s3:ListBucket"], f.bucket],
        ["UseBackupKey", ["kms:Decrypt", "kms:GenerateDataKey"], f.backupKey, S3_VIA],
      ]);
      const actions = f.statementsOfRole(f.roleOf(amk.stateless.backupExport)).flatMap(actionsOf);
      for (const forbidden of [
        /^s3:Delete/,
        /^s3:PutObject(Retention|LegalHold)$/,
        /Bypass/,
        /^dynamodb:(Put|Update|Delete)/,
      ])
        assert.ok(!actions.some((a) => forbidden.test(a)), String(forbidden));
    });

    it("has a fixed role name and outputs it (for amk:vaultWriterRoleArns) and its function name", () => {
      const roleId = f.roleOf(amk.stateless.backupExport);
      assert.equal(f.resources[roleId]!.Properties.RoleName, "amk-test-backup-export");
      f.stateless.hasOutput("BackupExportRoleArn", { Value: { "Fn::GetAtt": [roleId, "Arn"] } });
      f.stateless.hasOutput("BackupExportFunctionName", {
        Value: { Ref: logicalIdIn(amk.stateless, amk.stateless.backupExport) },
      });
      const outputs = f.stateless.toJSON().Outputs as Record<string, { Description: string }>;
      assert.match(outputs.BackupExportRoleArn!.Description, /amk:vaultWriterRoleArns/);
      assert.match(outputs.BackupExportFunctionName!.Description, /"workspaceId".*"kind": "full"/);
    });

    it("is invoked daily per workspace with a full export, by its own scheduler role in its own group", () => {
      const fnArn = { "Fn::GetAtt": [logicalIdIn(amk.stateless, amk.stateless.backupExport), "Arn"] };
      const schedules = f.schedulesOf("amk-test-backup");
      assert.equal(amk.stateless.backupSchedules.length, 2);
      assert.deepEqual(
        schedules
          .map((s) => JSON.parse(s.Target.Input as string) as Json)
          .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
        [
          { workspaceId: "ws-a", kind: "full" },
          { workspaceId: "ws-b", kind: "full" },
        ],
      );
      const roles = new Set<string>();
      for (const s of schedules) {
        assert.equal(s.ScheduleExpression, DEFAULT_BACKUP_SCHEDULE);
        assert.equal(s.ScheduleExpressionTimezone, "Etc/UTC");
        assert.deepEqual(s.Target.Arn, fnArn);
        assert.deepEqual(s.Target.RetryPolicy, { MaximumEventAgeInSeconds: 7200, MaximumRetryAttempts: 8 });
        roles.add((s.Target.RoleArn as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0]);
      }
      assert.equal(roles.size, 1);
      const roleId = [...roles][0]!;
      const group = logicalIdIn(amk.stateless, amk.stateless.node.findChild("BackupSchedules"));
      const trust = (f.resources[roleId]!.Properties.AssumeRolePolicyDocument as { Statement: Statement[] })
        .Statement;
      assert.deepEqual(f.flat(trust), [
        {
          Action: "sts:AssumeRole",
          Effect: "Allow",
          Principal: { Service: "scheduler.amazonaws.com" },
          Condition: {
            StringEquals: { "aws:SourceAccount": "<AWS::AccountId>", "aws:SourceArn": `<${group}.Arn>` },
          },
        },
      ]);
      const fn = `<${logicalIdIn(amk.stateless, amk.stateless.backupExport)}.Arn>`;
      assert.deepEqual(
        f.statementsOfRole(roleId).map((st) => [st.Action, f.flat(st.Resource)]),
        [["lambda:InvokeFunction", [fn, `${fn}:*`]]],
      );
      // Its ":*" (versions and aliases, as grantInvoke writes it) is acknowledged on that policy, with a reason.
      const policy = amk.stateless.node.findChild("BackupSchedulerRole").node.findChild("DefaultPolicy")
        .node.defaultChild!;
      const acks = policy.node.metadata
        .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
        .flatMap((m) => Object.entries(m.data as Record<string, string>));
      assert.deepEqual(
        acks.map(([ackId]) => ackId),
        [`Annotation::AwsSolutions-IAM5[Resource::${fn}:*]`],
      );
      assert.match(acks[0]![1], /versions and aliases of the BackupExport function/);
      f.stateless.hasResource("AWS::Scheduler::ScheduleGroup", {
        Properties: { Name: "amk-test-backup" },
        DeletionPolicy: "Delete",
      });
    });
  });

  describe("RestorationTestRun", () => {
    it("is runRestorationTestHandler of functions/restoration/handler.ts: an HSM function, 1024 MB, 15 min", () => {
      const fn = amk.stateless.restorationTestRun;
      assert.equal(fn.node.id, "RestorationTestRun");
      const p = f.propsOf(fn);
      assert.equal(p.Handler, "index.runRestorationTestHandler");
      assert.equal(p.MemorySize, 1024);
      assert.equal(p.Timeout, 900);
      assert.equal(amk.stateless.functions["restoration-test"], fn);
      // It opens the kit: argon2 is installed beside its bundle.
      assert.ok(KIT_FUNCTION_ENTRIES.includes("restoration/handler.ts"));
    });

    it("gets the PKCS#11 settings, the table, the vault as unlock, the alert topic, the bucket and the scratch prefix", () => {
      assert.deepEqual(f.varsOf(amk.stateless.restorationTestRun), {
        AMK_PKCS11_LIBRARY: "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so",
        AMK_PKCS11_TOKEN_LABEL: "hsm1",
        AMK_PKCS11_PIN_SECRET_ID: "arquivomate-keys/test/hsm-pin",
        AMK_EVENT_TABLE: f.tableName,
        AMK_VAULT_REGION: "<AWS::Region>",
        AMK_VAULT_ACCESS_ROLE_ARN: ACCESS_ROLE,
        AMK_VAULT_CALLER: "unlock",
        AMK_ALERT_TOPIC_ARN: f.topic,
        AMK_BACKUP_BUCKET: f.bucketName,
        AMK_BACKUP_PREFIX: "backups/",
        AMK_BACKUP_KMS_KEY_ID: f.backupKey,
        AMK_SCRATCH_TABLE_PREFIX: `${f.tableName}-scratch`,
        POWERTOOLS_SERVICE_NAME: "arquivomate-keys-restoration-test",
        NODE_OPTIONS: "--enable-source-maps",
      });
    });

    it("appends to the live table; creates, uses and deletes its scratch tables only; reads under backups/ only", () => {
      const scratch = `arn:<AWS::Partition>:dynamodb:<AWS::Region>:<AWS::AccountId>:table/${f.tableName}-scratch-????????????`;
      assert.deepEqual(f.grants(amk.stateless.restorationTestRun), [
        [
          "AppendToEventStore",
          ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
          f.table,
        ],
        [
          "QueryCensusIndexes",
          ["dynamodb:Query"],
          [`${f.table}/index/census-1`, `${f.table}/index/census-2`],
        ],
        ["UseEventStoreKey", ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], f.tableKey],
        ...vault("TagVaultSessionAsUnlock"),
        ["PublishAlerts", ["sns:Publish"], f.topic],
        [
          "UseAlertTopicKey",
          ["kms:Decrypt", "kms:GenerateDataKey"],
          f.alertsKey,
          { StringEquals: { "kms:ViaService": "sns.<AWS::Region>.amazonaws.com" } },
        ],
        [
          "ManageScratchTables",
          ["dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:DescribeTable"],
          scratch,
        ],
        ["UseScratchTables", SCRATCH_DATA, scratch],
        [
          "QueryScratchCensusIndexes",
          ["dynamodb:Query"],
          [`${scratch}/index/census-1`, `${scratch}/index/census-2`],
        ],
        ["ReadBackups", ["s3:GetObject"], `${f.bucket}/backups/*`],
        ["ListBackups", ["s3:ListBucket"], f.bucket],
        ["UseBackupKey", ["kms:Decrypt"], f.backupKey, S3_VIA],
      ]);
      // The scratch tables use DynamoDB's own key (createEventStoreTable sets no SSESpecification): the only KMS
      // keys it uses are the live table's, the alert topic's and the bucket's.
      const kms = f
        .statementsOfRole(f.roleOf(amk.stateless.restorationTestRun))
        .filter((st) => actionsOf(st).some((a) => a.startsWith("kms:")))
        .map((st) => f.flat(st.Resource));
      assert.deepEqual(kms, [f.tableKey, f.alertsKey, f.backupKey]);
      // No Scan, CreateTable or DeleteTable on the live table or anything but the scratch pattern.
      for (const st of f.statementsOfRole(f.roleOf(amk.stateless.restorationTestRun))) {
        if (actionsOf(st).some((a) => /^dynamodb:(Scan|CreateTable|DeleteTable|DescribeTable)$/.test(a)))
          assert.equal(f.flat(st.Resource), scratch, st.Sid);
      }
    });

    it("its scratch-table pattern matches exactly the tables the handler creates (and drops), never the live table", async () => {
      const live = "amk-test-EventStore165FCE28-1A2B3C4D5E6F";
      const arn = (name: string) => `arn:aws:dynamodb:eu-central-1:123456789012:table/${name}`;
      const pattern = (sid: string) => {
        const st = f.statementsOfRole(f.roleOf(amk.stateless.restorationTestRun)).find((x) => x.Sid === sid)!;
        return ([] as Json[])
          .concat(f.flat(st.Resource))
          .map((r) =>
            iamPattern(
              String(r)
                .replace(
                  "arn:<AWS::Partition>:dynamodb:<AWS::Region>:<AWS::AccountId>:",
                  "arn:aws:dynamodb:eu-central-1:123456789012:",
                )
                .replace(f.tableName, live),
            ),
          );
      };
      const [tables] = pattern("UseScratchTables");
      const indexes = pattern("QueryScratchCensusIndexes");
      // The handler's own scratch stores, with the environment the stack gives it, against a stubbed DynamoDB.
      const { scratchStoresFromEnv } = await import("../../functions/restoration/handler.js");
      const sent: string[] = [];
      const original = DynamoDBClient.prototype.send;
      DynamoDBClient.prototype.send = async function (command: unknown) {
        const input = (command as { input: { TableName: string } }).input;
        if (command instanceof CreateTableCommand) sent.push(`create ${input.TableName}`);
        else if (command instanceof DeleteTableCommand) sent.push(`delete ${input.TableName}`);
        else if (command instanceof DescribeTableCommand) {
          sent.push(`describe ${input.TableName}`);
          return { Table: { TableName: input.TableName, TableStatus: "ACTIVE" } };
        }
        return {};
      } as typeof original;
      let created: string;
      try {
        const stores = scratchStoresFromEnv({
          AMK_EVENT_TABLE: live,
          AMK_SCRATCH_TABLE_PREFIX: `${live}-scratch`,
          AWS_REGION: "eu-central-1",
        });
        created = (await stores.create()).name;
        await stores.drop(created);
      } finally {
        DynamoDBClient.prototype.send = original;
      }
      assert.match(created, new RegExp(`^${live}-scratch-[0-9a-f]{${SCRATCH_TABLE_ID_LENGTH}}$`));
      // Every call named the scratch table, which the grant covers: create, describe (the waiter), delete.
      assert.ok(sent.length >= 3 && sent.every((c) => c.endsWith(` ${created}`)), sent.join("; "));
      assert.deepEqual(
        sent.filter((c) => !c.startsWith("describe")),
        [`create ${created}`, `delete ${created}`],
      );
      assert.match(arn(created), tables!);
      for (const index of ["census-1", "census-2"])
        assert.ok(
          indexes.some((p) => p.test(`${arn(created)}/index/${index}`)),
          index,
        );
      // Never the live table or its indexes, another table, or a scratch table's other sub-resources.
      for (const other of [
        arn(live),
        `${arn(live)}/index/census-1`,
        arn(`${live}-scratch`),
        arn(`${live}-scratch-0123456789abc`),
        `${arn(created)}/index/census-1`,
        `${arn(created)}/stream/2025-01-01T00:00:00.000`,
        arn(`other-scratch-0123456789ab`),
      ])
        assert.doesNotMatch(other, tables!, other);
      assert.ok(!indexes.some((p) => p.test(`${arn(live)}/index/census-1`)));
    });

    it("has a fixed role name and outputs it (for amk:unlockRoleArns)", () => {
      const roleId = f.roleOf(amk.stateless.restorationTestRun);
      assert.equal(f.resources[roleId]!.Properties.RoleName, "amk-test-restoration-test");
      f.stateless.hasOutput("RestorationTestRunRoleArn", { Value: { "Fn::GetAtt": [roleId, "Arn"] } });
      const outputs = f.stateless.toJSON().Outputs as Record<string, { Description: string }>;
      assert.match(outputs.RestorationTestRunRoleArn!.Description, /amk:unlockRoleArns/);
    });
  });

  describe("RestorationWorkflow", () => {
    const sm = () => amk.stateless.restorationWorkflow.stateMachine;

    it("is RestorationWorkflow/StateMachine: Standard, traced, level ALL without execution data, its own logs", () => {
      assert.equal(sm().node.path, "amk-test-stateless/RestorationWorkflow/StateMachine");
      const p = f.propsOf(sm());
      assert.equal(p.StateMachineType, "STANDARD");
      assert.deepEqual(p.TracingConfiguration, { Enabled: true });
      const logGroup = logicalIdIn(amk.stateless, amk.stateless.node.findChild("RestorationWorkflowLogs"));
      assert.deepEqual(p.LoggingConfiguration, {
        Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: { "Fn::GetAtt": [logGroup, "Arn"] } } }],
        IncludeExecutionData: false,
        Level: "ALL",
      });
      assert.equal(f.resources[logGroup]!.Properties.RetentionInDays, 90);
      assert.equal(f.resources[logGroup]!.DeletionPolicy, "Retain");
    });

    it("runs RestorationTestRun, and its ASL is valid (asl-validator)", () => {
      const { asl, tasks } = aslFromTemplate(amk.stateless, "RestorationWorkflow/StateMachine");
      assert.deepEqual(tasks, { RunRestorationTest: "RestorationTestRun" });
      assert.equal(asl.StartAt, "RunRestorationTest");
      const result = validateAsl(structuredClone(asl), { checkPaths: true, checkArn: true });
      assert.ok(result.isValid, result.errorsText());
    });

    it("gives its role lambda:InvokeFunction on RestorationTestRun only, X-Ray and logs; acknowledged one by one", () => {
      const roleId = logicalIdIn(amk.stateless, sm().role);
      const statements = f.statementsOfRole(roleId).map((st) => ({
        actions: [...actionsOf(st)].sort(),
        resources: ([] as Json[]).concat(f.flat(st.Resource)).map(String).sort(),
      }));
      const run = `<${logicalIdIn(amk.stateless, amk.stateless.restorationTestRun)}.Arn>`;
      assert.deepEqual(statements[0], { actions: ["lambda:InvokeFunction"], resources: [run, `${run}:*`] });
      assert.equal(statements.length, 2);
      assert.deepEqual(statements[1]!.resources, ["*"]);
      assert.ok(statements[1]!.actions.every((a) => a.startsWith("xray:") || a.startsWith("logs:")));
      const policy = sm().role.node.findChild("DefaultPolicy").node.defaultChild!;
      const acks = policy.node.metadata
        .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
        .flatMap((m) => Object.keys(m.data as Record<string, string>));
      assert.deepEqual(
        acks.sort(),
        [
          `Annotation::AwsSolutions-IAM5[Resource::${run}:*]`,
          "Annotation::AwsSolutions-IAM5[Resource::*]",
        ].sort(),
      );
    });

    it("is started per workspace with the schedule trigger, about weekly (rate(6 days)), in its own group", () => {
      const schedules = f.schedulesOf("amk-test-restoration");
      assert.equal(amk.stateless.restorationSchedules.length, 2);
      assert.deepEqual(
        schedules
          .map((s) => JSON.parse(s.Target.Input as string) as Json)
          .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
        [
          { workspaceId: "ws-a", trigger: "schedule" },
          { workspaceId: "ws-b", trigger: "schedule" },
        ],
      );
      for (const s of schedules) {
        assert.equal(s.ScheduleExpression, DEFAULT_RESTORATION_SCHEDULE);
        assert.deepEqual(s.Target.Arn, { Ref: logicalIdIn(amk.stateless, sm()) });
        assert.deepEqual(s.Target.RetryPolicy, { MaximumEventAgeInSeconds: 7200, MaximumRetryAttempts: 8 });
        const roleId = (s.Target.RoleArn as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0];
        assert.deepEqual(
          f.statementsOfRole(roleId).map((st) => [st.Action, st.Resource]),
          [["states:StartExecution", { Ref: logicalIdIn(amk.stateless, sm()) }]],
        );
      }
    });

    it("outputs its ARN with the input it takes", () => {
      f.stateless.hasOutput("RestorationStateMachineArn", {
        Value: { Ref: logicalIdIn(amk.stateless, sm()) },
      });
      const outputs = f.stateless.toJSON().Outputs as Record<string, { Description: string }>;
      for (const field of ['"workspaceId"', '"trigger": "on-demand"', '"backupId"', '"sampleSize"'])
        assert.ok(outputs.RestorationStateMachineArn!.Description.includes(field), field);
    });

    it("raises restoration-test-failed and restoration-test-missing (148 h: 6 days + 4 h) on the alert topic", () => {
      const dimensions = [{ Name: "StateMachineArn", Value: { Ref: logicalIdIn(amk.stateless, sm()) } }];
      const failed = f.alarms["amk-test-restoration-test-failed"]!;
      assert.ok(JSON.stringify(failed.Metrics).includes(JSON.stringify(dimensions)));
      const missing = f.alarms["amk-test-restoration-test-missing"]!;
      assert.deepEqual(
        [
          missing.MetricName,
          missing.Dimensions,
          missing.Period,
          missing.EvaluationPeriods,
          missing.DatapointsToAlarm,
        ],
        ["ExecutionsSucceeded", dimensions, 3600, 148, 148],
      );
      assert.deepEqual(
        amk.stateless.restorationAlarms.map((a) => a.node.id),
        ["RestorationTestFailed", "RestorationTestMissing"],
      );
      // And the two functions' errors and throttles, like every function's.
      for (const name of ["backup-export", "restoration-test"])
        for (const suffix of ["errors", "throttles"]) assert.ok(f.alarms[`amk-test-${name}-${suffix}`], name);
    });
  });

  it("lets no other function Scan, create or delete tables, or reach the backup bucket or its key", () => {
    const bucketText = JSON.stringify(f.bucket);
    for (const [name, fn] of Object.entries(amk.stateless.functions)) {
      if (fn === amk.stateless.backupExport || fn === amk.stateless.restorationTestRun) continue;
      const statements = f.statementsOfRole(f.roleOf(fn));
      const actions = statements.flatMap(actionsOf);
      assert.ok(!actions.some((a) => /^(s3:|dynamodb:(Scan|CreateTable|DeleteTable))/.test(a)), name);
      for (const st of statements) {
        const resource = JSON.stringify(f.flat(st.Resource));
        assert.ok(!resource.includes(f.backupKey) && !resource.includes(bucketText.slice(1, -1)), name);
      }
    }
  });
});

describe("backups, default configuration (no workspaces)", () => {
  it("has both functions and the restoration state machine, but no schedule and no missing-test alarm", () => {
    const { amk, outdir } = synthApp({ "amk:environment": "test" });
    amk.app.synth();
    assertNagClean(outdir);
    const f = fixture(amk);
    assert.deepEqual(amk.stateless.backupSchedules, []);
    assert.deepEqual(amk.stateless.restorationSchedules, []);
    assert.equal(amk.config.backupSchedule, undefined);
    assert.equal(amk.config.restorationSchedule, undefined);
    assert.equal(amk.stateless.node.tryFindChild("BackupSchedulerRole"), undefined);
    assert.ok(f.alarms["amk-test-restoration-test-failed"]);
    assert.equal(f.alarms["amk-test-restoration-test-missing"], undefined);
    assert.deepEqual(
      amk.stateless.restorationAlarms.map((a) => a.node.id),
      ["RestorationTestFailed"],
    );
  });
});

describe("backups with an imported bucket, pinned public keys and configured schedules", () => {
  const BUCKET_ARN = "arn:aws:s3:::amk-prod-backups";
  const KEY_ARN = "arn:aws:kms:eu-central-1:333333333333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  const KEY_1 = Buffer.alloc(32, 1).toString("base64");
  const KEY_2 = Buffer.alloc(32, 2).toString("base64url");
  let amk: AmkApp;
  let outdir: string;
  let f: ReturnType<typeof fixture>;

  before(() => {
    ({ amk, outdir } = synthApp({
      "amk:environment": "prod",
      "amk:account": "111111111111",
      "amk:region": "eu-central-1",
      "amk:drillWorkspaces": "ws-1",
      "amk:backupSchedule": "cron(30 2 * * ? *)",
      "amk:restorationSchedule": "cron(0 5 ? * MON,THU *)",
      "amk:backupPublicKeys": `${KEY_2}, ${KEY_1} ${KEY_2}`,
      "amk:backupBucketArn": BUCKET_ARN,
      "amk:backupBucketKeyArn": KEY_ARN,
    }));
    amk.app.synth();
    f = fixture(amk);
  });

  it("passes cdk-nag, the literal backup objects acknowledged on both roles", () => {
    assertNagClean(outdir);
    for (const fn of [amk.stateless.backupExport, amk.stateless.restorationTestRun]) {
      const policy = fn.role!.node.findChild("DefaultPolicy").node.defaultChild!;
      const acks = policy.node.metadata
        .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
        .flatMap((m) => Object.keys(m.data as Record<string, string>));
      assert.ok(
        acks.includes(`Annotation::AwsSolutions-IAM5[Resource::${BUCKET_ARN}/backups/*]`),
        fn.node.id,
      );
    }
  });

  it("grants the imported bucket under backups/ and its key through S3 in the key's region", () => {
    const s3 = (fn: { role?: IConstruct }) =>
      f
        .grants(fn)
        .filter(([sid]) =>
          ["WriteBackups", "ReadBackups", "ListBackups", "UseBackupKey"].includes(String(sid)),
        );
    const via = { StringEquals: { "kms:ViaService": "s3.eu-central-1.amazonaws.com" } };
    const list = ["ListBackups", ["s3:ListBucket"], BUCKET_ARN];
    assert.deepEqual(s3(amk.stateless.backupExport), [
      [
        "WriteBackups",
        ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
        `${BUCKET_ARN}/backups/*`,
      ],
      list,
      ["UseBackupKey", ["kms:Decrypt", "kms:GenerateDataKey"], KEY_ARN, via],
    ]);
    assert.deepEqual(s3(amk.stateless.restorationTestRun), [
      ["ReadBackups", ["s3:GetObject"], `${BUCKET_ARN}/backups/*`],
      list,
      ["UseBackupKey", ["kms:Decrypt"], KEY_ARN, via],
    ]);
  });

  it("passes the bucket, its key and the pinned keys (deduplicated, in order) to both functions", () => {
    assert.deepEqual(amk.config.backupPublicKeys, [KEY_2, KEY_1]);
    for (const fn of [amk.stateless.backupExport, amk.stateless.restorationTestRun]) {
      const vars = f.varsOf(fn);
      assert.equal(vars.AMK_BACKUP_BUCKET, "amk-prod-backups");
      assert.equal(vars.AMK_BACKUP_PREFIX, BACKUP_PREFIX);
      assert.equal(vars.AMK_BACKUP_KMS_KEY_ID, KEY_ARN);
      assert.equal(vars.AMK_BACKUP_PUBLIC_KEYS, `${KEY_2},${KEY_1}`);
    }
  });

  it("uses the configured schedules; the missing-test window follows the restoration schedule's longest gap", () => {
    assert.deepEqual(
      f.schedulesOf("amk-prod-backup").map((s) => s.ScheduleExpression),
      ["cron(30 2 * * ? *)"],
    );
    assert.deepEqual(
      f.schedulesOf("amk-prod-restoration").map((s) => s.ScheduleExpression),
      ["cron(0 5 ? * MON,THU *)"],
    );
    // Thursday to Monday: 96 h, plus 4 h.
    assert.equal(amk.config.alarms.restorationMissingAfterHours, 100);
    assert.equal(f.alarms["amk-prod-restoration-test-missing"]!.EvaluationPeriods, 100);
  });

  it("an extra wildcard on the bucket is not covered by the acknowledgement", () => {
    const { amk: other, outdir: otherOut } = synthApp({ "amk:environment": "other" });
    other.stateless.backupExport.addToRolePolicy(
      new PolicyStatement({
        actions: ["s3:GetObject"],
        resources: [other.stateful.backups.bucket.arnForObjects("*")],
      }),
    );
    assert.throws(() => other.app.synth(), /Validation failed|AwsSolutions-IAM5/);
    const violations = readReport(otherOut)
      .pluginReports.filter((p) => p.pluginName !== "Construct Annotations")
      .flatMap((p) => p.violations.map((v) => v.ruleName));
    assert.equal(violations.length, 1, violations.join());
    assert.match(violations[0]!, /^AwsSolutions-IAM5\[Resource::.*\/\*\]$/);
    assert.doesNotMatch(violations[0]!, /\/backups\/\*\]$/);
  });
});

describe("backup configuration is validated at synth time", () => {
  function configError(context: Record<string, unknown>): InvalidInfraConfigError {
    try {
      createApp({
        context: { ...CDK_JSON_CONTEXT, ...NO_BUNDLING, ...context },
        outdir: mkdtempSync(join(tmpdir(), "amk-backups-cfg-")),
      });
    } catch (e) {
      assert.ok(e instanceof InvalidInfraConfigError, `expected InvalidInfraConfigError, got ${String(e)}`);
      return e;
    }
    assert.fail("createApp accepted a bad configuration");
  }
  const WS = { "amk:drillWorkspaces": ["ws-1"] };

  it("knows the three keys", () => {
    assert.equal(CONTEXT_KEYS.backupSchedule, "amk:backupSchedule");
    assert.equal(CONTEXT_KEYS.restorationSchedule, "amk:restorationSchedule");
    assert.equal(CONTEXT_KEYS.backupPublicKeys, "amk:backupPublicKeys");
  });

  it("rejects a backup schedule more often than hourly, a malformed one, and one without workspaces", () => {
    assert.match(
      configError({ ...WS, "amk:backupSchedule": "rate(30 minutes)" }).message,
      /amk:backupSchedule: a backup export may be scheduled at most once an hour .*\(got "rate\(30 minutes\)"\)/,
    );
    assert.match(
      configError({ ...WS, "amk:backupSchedule": "cron(*/10 * * * ? *)" }).message,
      /amk:backupSchedule: the minutes of the cron expression must be a single number/,
    );
    assert.match(
      configError({ ...WS, "amk:backupSchedule": "daily" }).message,
      /amk:backupSchedule: must be an EventBridge Scheduler expression/,
    );
    assert.match(
      configError({ "amk:backupSchedule": "rate(1 day)" }).message,
      /amk:backupSchedule: needs amk:drillWorkspaces, the workspace ids to back up/,
    );
  });

  it("rejects a restoration schedule more often than daily, too rare for the missing-test alarm, or unreadable", () => {
    assert.match(
      configError({ ...WS, "amk:restorationSchedule": "rate(12 hours)" }).message,
      /amk:restorationSchedule: a restoration test may be scheduled at most once a day/,
    );
    assert.match(
      configError({ ...WS, "amk:restorationSchedule": "cron(0 * * * ? *)" }).message,
      /amk:restorationSchedule: the minutes and hours of the cron expression must be single numbers/,
    );
    // Weekly leaves no room for the alarm's slack within CloudWatch's 7 days.
    assert.match(
      configError({ ...WS, "amk:restorationSchedule": "rate(7 days)" }).message,
      /amk:restorationSchedule: restoration tests 168 h apart are too rare for the missing-test alarm .*at least every 164 h/,
    );
    assert.match(
      configError({ ...WS, "amk:restorationSchedule": "cron(0 3 L * ? *)" }).message,
      /amk:restorationSchedule: cannot tell how far apart the restoration tests/,
    );
    assert.match(
      configError({ "amk:restorationSchedule": "rate(2 days)" }).message,
      /amk:restorationSchedule: needs amk:drillWorkspaces/,
    );
  });

  it("accepts a restoration test every 164 h at most (the alarm's 168 h)", () => {
    const { amk } = synthApp({ ...WS, "amk:restorationSchedule": "rate(164 hours)" });
    assert.equal(amk.config.alarms.restorationMissingAfterHours, 168);
  });

  it("rejects malformed pinned public keys, naming each, and accepts none", () => {
    const e = configError({ "amk:backupPublicKeys": ["not-a-key", Buffer.alloc(16).toString("base64")] });
    assert.equal(e.problems.length, 2, e.message);
    assert.match(e.message, /amk:backupPublicKeys: "not-a-key" is not a backup public key/);
    const { amk } = synthApp({});
    assert.deepEqual(amk.config.backupPublicKeys, []);
    assert.equal(amk.stateless.backupExport.node.id, "BackupExport");
  });
});
