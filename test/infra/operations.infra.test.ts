/**
 * Production infrastructure: the CloudHSM network of the HSM functions (VPC placement, security group rules, VPC
 * endpoints), the backup bucket, the alarms and the dashboard, logging and tracing of every state machine and
 * function, the ASL of every state machine checked with asl-validator, the whole app synthesised offline by the CDK
 * CLI without credentials, cdk-nag, and the configuration checks of all this.
 *
 * A production-like configuration (`amk:production`, account and region, layer, VPC with two subnets, the cluster's
 * security group, the DynamoDB prefix list, a drill schedule, a CloudHSM cluster id) is synthesised next to the
 * default one (cdk.json), without bundling (bundles.infra.test.ts and stacks.infra.test.ts bundle for real).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Validations } from "aws-cdk-lib";
import { Annotations, Match, Template } from "aws-cdk-lib/assertions";
import type { IConstruct } from "constructs";
import { createApp, type AmkApp } from "../../infra/bin/app.js";
import { CONTEXT_KEYS, InvalidInfraConfigError, scheduleIntervalMinutes } from "../../infra/lib/config.js";
import { INTERFACE_ENDPOINTS } from "../../infra/lib/network.js";
import { VPC_ENI_ACTIONS } from "../../infra/lib/stateless-stack.js";
import { aslFromTemplate, type JsonObject } from "../../workflows/local-runner.js";
import {
  CDK_JSON_CONTEXT,
  NO_BUNDLING,
  validateAsl,
  synthAppsIn,
  logicalIdIn,
  actionsOf,
} from "../support/infra.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

const ACCOUNT = "111111111111";
const REGION = "eu-central-1";
const SUBNETS = [
  {
    subnetId: "subnet-0aaaaaaaaaaaaaaa1",
    availabilityZone: "eu-central-1a",
    routeTableId: "rtb-0aaaaaaaaaaaaaaa1",
  },
  {
    subnetId: "subnet-0bbbbbbbbbbbbbbb2",
    availabilityZone: "eu-central-1b",
    routeTableId: "rtb-0bbbbbbbbbbbbbbb2",
  },
];
const HSM_SG = "sg-0cccccccccccccccc";
const ENDPOINT_SG = "sg-0dddddddddddddddd";
const PREFIX_LIST = "pl-66a5400f";
/** The network keys of a production configuration. */
const NETWORK = {
  "amk:vpcId": "vpc-0a1b2c3d4e5f60718",
  "amk:vpcSubnets": SUBNETS,
  "amk:hsmSecurityGroupId": HSM_SG,
  "amk:dynamoDbPrefixListId": PREFIX_LIST,
};
const PRODUCTION = {
  "amk:environment": "prod",
  "amk:production": true,
  "amk:account": ACCOUNT,
  "amk:region": REGION,
  "amk:pkcs11LayerArn": `arn:aws:lambda:${REGION}:${ACCOUNT}:layer:cloudhsm-pkcs11:3`,
  ...NETWORK,
  "amk:hsmClusterId": "cluster-jxhlf7644ne",
  "amk:drillWorkspaces": ["ws-1", "ws-2"],
  "amk:alertEmails": ["keys-oncall@example.com"],
  "amk:backupLockMode": "COMPLIANCE",
  "amk:backupRetentionDays": 365,
  "amk:unlockRefusalThreshold": 3,
};

/**
 * Every function by the suffix of its POWERTOOLS_SERVICE_NAME; all open the HSM but the token authorizer and the
 * backup export.
 */
const FUNCTION_NAMES = [
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
];
/** Functions that do not open the HSM: outside the VPC, no PKCS#11 layer, no PIN secret. */
const NO_HSM = ["token-authorizer", "backup-export", "rotation-failure", "recovery-failure"];
const HSM_FUNCTIONS = FUNCTION_NAMES.filter((n) => !NO_HSM.includes(n));
const TRACING_STATEMENT = {
  Action: ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
  Effect: "Allow",
  Resource: "*",
};

type Json = unknown;
type Resource = { Type: string; Properties: Record<string, Json>; DeletionPolicy?: string };
type Statement = {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: Json;
  Condition?: Json;
};

const synthApp = synthAppsIn("amk-ops-test");

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
/** JSON with the keys of every object sorted: a stable order for lists compared regardless of key order. */
const canonical = (value: Json): string =>
  JSON.stringify(value, (_k, v: Json) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, Json>).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
const byCanonical = (a: Json, b: Json) => canonical(a).localeCompare(canonical(b));

/** What the tests need of one synthesised app. */
function fixture(amk: AmkApp) {
  const stateless = Template.fromStack(amk.stateless);
  const stateful = Template.fromStack(amk.stateful);
  const resources = stateless.toJSON().Resources as Record<string, Resource>;
  const outputs = stateful.toJSON().Outputs as Record<string, { Value: Json }>;
  /** A weak cross-stack reference (`Fn::GetStackOutput`) replaced by the stateful stack's output value. */
  const resolve = (value: Json): Json => {
    const ref = (value as { "Fn::GetStackOutput"?: { OutputName: string } } | null)?.["Fn::GetStackOutput"];
    if (ref === undefined) return value;
    assert.ok(outputs[ref.OutputName], `the stateful stack publishes ${ref.OutputName}`);
    return outputs[ref.OutputName]!.Value;
  };
  const functionOf = (name: string): { id: string; props: Record<string, Json> } => {
    const found = Object.entries(resources).filter(
      ([, r]) =>
        r.Type === "AWS::Lambda::Function" &&
        (r.Properties.Environment as { Variables: Record<string, Json> }).Variables
          .POWERTOOLS_SERVICE_NAME === `arquivomate-keys-${name}`,
    );
    assert.equal(found.length, 1, name);
    return { id: found[0]![0], props: found[0]![1].Properties };
  };
  const roleStatements = (name: string): Statement[] => {
    const roleId = (functionOf(name).props.Role as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0];
    return Object.values(resources)
      .filter(
        (r) =>
          r.Type === "AWS::IAM::Policy" &&
          (r.Properties.Roles as { Ref: string }[]).some((x) => x.Ref === roleId),
      )
      .flatMap((r) => (r.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
  };
  const alarms = Object.fromEntries(
    Object.values(resources)
      .filter((r) => r.Type === "AWS::CloudWatch::Alarm")
      .map((r) => [r.Properties.AlarmName as string, r.Properties]),
  );
  const topicRef = { Ref: logicalIdIn(amk.stateful, amk.stateful.alerts.topic) };
  const stateMachineRef = (sm: IConstruct) => ({ Ref: logicalIdIn(amk.stateless, sm) });
  return {
    stateless,
    stateful,
    resources,
    resolve,
    functionOf,
    roleStatements,
    alarms,
    topicRef,
    stateMachineRef,
  };
}

function assertNagCleanWithoutWarnings(outdir: string): void {
  for (const plugin of readReport(outdir).pluginReports) {
    assert.notEqual(plugin.conclusion, "failure", plugin.pluginName);
    assert.deepEqual(
      plugin.violations.map((v) => `${v.ruleName} (${v.severity})`),
      [],
      `${plugin.pluginName}: nothing to report`,
    );
  }
}

describe("production configuration", () => {
  let amk: AmkApp;
  let outdir: string;
  let f: ReturnType<typeof fixture>;

  before(() => {
    ({ amk, outdir } = synthApp(PRODUCTION));
    amk.app.synth(); // throws on an unacknowledged cdk-nag finding
    f = fixture(amk);
  });

  it("passes cdk-nag with no unacknowledged finding, and without any warning", () => {
    assertNagCleanWithoutWarnings(outdir);
    assert.equal(amk.config.production, true);
  });

  it("gives every acknowledgement a reason, and acknowledges only the expected cdk-nag rules", () => {
    let count = 0;
    for (const c of amk.app.node.findAll()) {
      for (const m of c.node.metadata) {
        if (m.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [id, reason] of Object.entries(m.data as Record<string, string>)) {
          count += 1;
          assert.match(
            id,
            /^Annotation::AwsSolutions-(L1|IAM5\[Resource::.+\]|SQS3|S1)$/,
            `${c.node.path}: ${id}`,
          );
          assert.ok(reason.length >= 80, `${c.node.path} ${id}: a reason, not a word (${reason})`);
        }
      }
    }
    assert.ok(count > 40, `acknowledgements: ${count}`);
  });

  describe("network of the HSM functions", () => {
    const fnSg = () => logicalIdIn(amk.stateless, amk.stateless.network!.functionSecurityGroup);
    const endpointSg = () =>
      logicalIdIn(amk.stateless, amk.stateless.network!.endpointSecurityGroup as unknown as IConstruct);

    it("places every HSM function in the cluster's subnets with its own security group; the authorizer and the export outside", () => {
      for (const name of HSM_FUNCTIONS) {
        assert.deepEqual(
          f.functionOf(name).props.VpcConfig,
          {
            SecurityGroupIds: [{ "Fn::GetAtt": [fnSg(), "GroupId"] }],
            SubnetIds: SUBNETS.map((s) => s.subnetId),
          },
          name,
        );
      }
      for (const name of NO_HSM) assert.equal(f.functionOf(name).props.VpcConfig, undefined, name);
    });

    it("lets the functions' security group out to the HSM ports, the endpoints and DynamoDB only; no way in", () => {
      const sg = f.resources[fnSg()]!;
      assert.equal(sg.Properties.VpcId, NETWORK["amk:vpcId"]);
      assert.equal(sg.Properties.SecurityGroupIngress, undefined);
      assert.equal(sg.Properties.SecurityGroupEgress, undefined, "no inline rule (no allow-all)");
      const egress = Object.values(f.resources)
        .filter((r) => r.Type === "AWS::EC2::SecurityGroupEgress")
        .map((r) => r.Properties)
        .map(({ Description: _d, ...rest }) => rest)
        .sort(byCanonical);
      const mine = { "Fn::GetAtt": [fnSg(), "GroupId"] };
      assert.deepEqual(
        egress,
        [
          {
            GroupId: mine,
            IpProtocol: "tcp",
            FromPort: 2223,
            ToPort: 2225,
            DestinationSecurityGroupId: HSM_SG,
          },
          {
            GroupId: mine,
            IpProtocol: "tcp",
            FromPort: 443,
            ToPort: 443,
            DestinationPrefixListId: PREFIX_LIST,
          },
          {
            GroupId: mine,
            IpProtocol: "tcp",
            FromPort: 443,
            ToPort: 443,
            DestinationSecurityGroupId: { "Fn::GetAtt": [endpointSg(), "GroupId"] },
          },
        ].sort(byCanonical),
      );
      // The other ends: the cluster's group admits the functions on the HSM ports, the endpoints' group on 443.
      const ingress = Object.values(f.resources)
        .filter((r) => r.Type === "AWS::EC2::SecurityGroupIngress")
        .map((r) => [
          r.Properties.GroupId,
          r.Properties.FromPort,
          r.Properties.ToPort,
          r.Properties.SourceSecurityGroupId,
        ]);
      assert.deepEqual(
        ingress.sort(byCanonical),
        [
          [HSM_SG, 2223, 2225, mine],
          [{ "Fn::GetAtt": [endpointSg(), "GroupId"] }, 443, 443, mine],
        ].sort(byCanonical),
      );
      // Nowhere an open range, IPv4 or IPv6.
      assert.doesNotMatch(JSON.stringify(f.stateless.toJSON()), /0\.0\.0\.0\/0|::\/0/);
    });

    it("creates the DynamoDB gateway endpoint on the subnets' route tables", () => {
      f.stateless.resourcePropertiesCountIs("AWS::EC2::VPCEndpoint", { VpcEndpointType: "Gateway" }, 1);
      f.stateless.hasResourceProperties("AWS::EC2::VPCEndpoint", {
        VpcEndpointType: "Gateway",
        ServiceName: { "Fn::Join": ["", ["com.amazonaws.", { Ref: "AWS::Region" }, ".dynamodb"]] },
        RouteTableIds: SUBNETS.map((s) => s.routeTableId),
        VpcId: NETWORK["amk:vpcId"],
      });
    });

    it("creates interface endpoints with private DNS in both zones for every service the functions call", () => {
      const endpoints = Object.values(f.resources)
        .filter((r) => r.Type === "AWS::EC2::VPCEndpoint" && r.Properties.VpcEndpointType === "Interface")
        .map((r) => r.Properties);
      const services = endpoints
        .map((e) => String(e.ServiceName).replace(`com.amazonaws.${REGION}.`, ""))
        .sort();
      assert.deepEqual(services, [
        "cloudhsmv2", // with amk:hsmClusterId: the drill's backup check
        "events",
        "logs",
        "s3", // the restoration test reads the backups
        "secretsmanager",
        "sns",
        "states",
        "sts",
        "xray",
      ]);
      assert.equal(Object.keys(INTERFACE_ENDPOINTS).length, 8);
      for (const e of endpoints) {
        assert.equal(e.PrivateDnsEnabled, true);
        assert.deepEqual(
          e.SubnetIds,
          SUBNETS.map((s) => s.subnetId),
        );
        assert.deepEqual(e.SecurityGroupIds, [{ "Fn::GetAtt": [endpointSg(), "GroupId"] }]);
      }
    });

    it("lets Lambda manage the network interfaces with each HSM role, and denies them to the function's code", () => {
      for (const name of FUNCTION_NAMES) {
        const statements = f.roleStatements(name).filter((st) => st.Sid?.includes("NetworkInterfaces"));
        if (NO_HSM.includes(name)) {
          assert.deepEqual(statements, [], name);
          continue;
        }
        assert.deepEqual(
          statements.map((st) => [st.Sid, st.Effect, [...actionsOf(st)].sort(), st.Resource, st.Condition]),
          [
            ["ManageVpcNetworkInterfaces", "Allow", [...VPC_ENI_ACTIONS].sort(), "*", undefined],
            [
              "NoNetworkInterfacesFromFunctionCode",
              "Deny",
              [...VPC_ENI_ACTIONS].sort(),
              "*",
              { ArnLike: { "lambda:SourceFunctionArn": `arn:aws:lambda:${REGION}:${ACCOUNT}:function:*` } },
            ],
          ],
          name,
        );
      }
      // No managed policy (AWSLambdaVPCAccessExecutionRole would add logs:* on "*").
      for (const r of Object.values(f.resources).filter((x) => x.Type === "AWS::IAM::Role"))
        assert.equal(r.Properties.ManagedPolicyArns, undefined);
    });

    it('acknowledges the roles\' "*" with X-Ray and the network interfaces as reasons', () => {
      for (const fn of Object.values(amk.stateless.functions)) {
        const policy = fn.role!.node.findChild("DefaultPolicy").node.defaultChild!;
        const acks = policy.node.metadata
          .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
          .flatMap((m) => Object.entries(m.data as Record<string, string>));
        const backupFunction = fn === amk.stateless.backupExport || fn === amk.stateless.restorationTestRun;
        assert.deepEqual(
          acks.map(([id]) => id),
          [
            "Annotation::AwsSolutions-IAM5[Resource::*]",
            // The backup objects (an imported bucket here would be literal; this one is the stateful stack's).
            ...(backupFunction ? [acks[1]![0]] : []),
          ],
        );
        if (backupFunction) assert.match(acks[1]![0], /\/backups\/\*\]$/);
        const outsideVpc =
          fn === amk.stateless.tokenAuthorizer ||
          fn === amk.stateless.backupExport ||
          fn === amk.stateless.rotationFunctions.failure ||
          fn === amk.stateless.recoveryFunctions.failure ||
          fn.node.id === "HsmBackupList";
        if (outsideVpc) assert.doesNotMatch(acks[0]![1], /network interfaces/);
        else
          assert.match(
            acks[0]![1],
            /^X-Ray active tracing.*VPC network interfaces.*lambda:SourceFunctionArn/s,
          );
        if (fn.node.id === "HsmBackupList") assert.match(acks[0]![1], /cloudhsm:DescribeBackups/);
      }
    });
  });

  describe("backup bucket", () => {
    it("locks objects in COMPLIANCE mode for the configured 365 days, noncurrent versions 30 days longer", () => {
      const bucket = f.stateful.toJSON().Resources[
        logicalIdIn(amk.stateful, amk.stateful.backups.bucket)
      ] as Resource;
      assert.deepEqual(bucket.Properties.ObjectLockConfiguration, {
        ObjectLockEnabled: "Enabled",
        Rule: { DefaultRetention: { Days: 365, Mode: "COMPLIANCE" } },
      });
      assert.deepEqual(
        (bucket.Properties.LifecycleConfiguration as { Rules: Record<string, Json>[] }).Rules[0]!
          .NoncurrentVersionExpiration,
        { NoncurrentDays: 395 },
      );
    });
  });

  describe("alarms", () => {
    it("raises drill-missing when no drill succeeded in any of the last 26 hours (daily drills), missing data breaching", () => {
      assert.equal(amk.config.alarms.drillMissingAfterHours, 26);
      const alarm = f.alarms["amk-prod-drill-missing"]!;
      assert.ok(alarm, "drill-missing alarm");
      assert.deepEqual(
        {
          MetricName: alarm.MetricName,
          Namespace: alarm.Namespace,
          Dimensions: alarm.Dimensions,
          Statistic: alarm.Statistic,
          Period: alarm.Period,
          EvaluationPeriods: alarm.EvaluationPeriods,
          DatapointsToAlarm: alarm.DatapointsToAlarm,
          ComparisonOperator: alarm.ComparisonOperator,
          Threshold: alarm.Threshold,
          TreatMissingData: alarm.TreatMissingData,
        },
        {
          MetricName: "ExecutionsSucceeded",
          Namespace: "AWS/States",
          Dimensions: [
            { Name: "StateMachineArn", Value: f.stateMachineRef(amk.stateless.drillWorkflow.stateMachine) },
          ],
          Statistic: "Sum",
          Period: 3600,
          EvaluationPeriods: 26,
          DatapointsToAlarm: 26,
          ComparisonOperator: "LessThanThreshold",
          Threshold: 1,
          TreatMissingData: "breaching",
        },
      );
      assert.deepEqual((alarm.AlarmActions as Json[]).map(f.resolve), [f.topicRef]);
    });

    it("takes the unlock refusal threshold from amk:unlockRefusalThreshold", () => {
      assert.equal(f.alarms["amk-prod-unlock-refusals"]!.Threshold, 3);
    });
  });

  describe("ASL of every state machine (asl-validator)", () => {
    it("validates the definition of each state machine as synthesised into the template file", () => {
      const template = JSON.parse(
        readFileSync(join(outdir, `${amk.stateless.artifactId}.template.json`), "utf8"),
      ) as { Resources: Record<string, { Type: string }> };
      const machines = Object.entries(template.Resources)
        .filter(([, r]) => r.Type === "AWS::StepFunctions::StateMachine")
        .map(([id]) => id);
      assert.equal(machines.length, 4);
      for (const id of machines) {
        const { asl } = aslFromTemplate(template, id);
        const result = validateAsl(structuredClone(asl), { checkPaths: true, checkArn: true });
        assert.ok(result.isValid, `${id}: ${result.errorsText()}`);
      }
    });
  });
});

describe("default configuration (cdk.json): no VPC", () => {
  let amk: AmkApp;
  let outdir: string;
  let f: ReturnType<typeof fixture>;

  before(() => {
    ({ amk, outdir } = synthApp({ "amk:environment": "test" }));
    amk.app.synth();
    f = fixture(amk);
  });

  it("places no function in a VPC, creates no network resource, and warns about it", () => {
    for (const name of FUNCTION_NAMES) assert.equal(f.functionOf(name).props.VpcConfig, undefined, name);
    assert.equal(amk.stateless.network, undefined);
    assert.deepEqual(
      Object.values(f.resources)
        .map((r) => r.Type)
        .filter((t) => t.startsWith("AWS::EC2::")),
      [],
    );
    Annotations.fromStack(amk.stateless).hasWarning(
      "/amk-test-stateless",
      Match.stringLikeRegexp("No CloudHSM network configured.*outside any VPC"),
    );
    const warnings = readReport(outdir)
      .pluginReports.flatMap((p) => p.violations)
      .filter((v) => v.severity === "warning")
      .map((v) => v.ruleName);
    assert.deepEqual(warnings, ["Annotation::@amk/infra:no-vpc"]);
  });

  describe("tracing and logging", () => {
    it("traces every function actively, with X-Ray's two actions on its role", () => {
      for (const name of FUNCTION_NAMES) {
        assert.deepEqual(f.functionOf(name).props.TracingConfig, { Mode: "Active" }, name);
        assert.equal(
          f.roleStatements(name).filter((st) => JSON.stringify(st) === JSON.stringify(TRACING_STATEMENT))
            .length,
          1,
          name,
        );
      }
    });

    it("logs every state machine at level ALL without execution data, and traces it", () => {
      const machines = Object.values(f.resources).filter(
        (r) => r.Type === "AWS::StepFunctions::StateMachine",
      );
      assert.equal(machines.length, 4);
      for (const sm of machines) {
        const p = sm.Properties as {
          LoggingConfiguration: { Level: string; IncludeExecutionData: boolean; Destinations: unknown[] };
          TracingConfiguration: { Enabled: boolean };
        };
        assert.equal(p.LoggingConfiguration.Level, "ALL");
        assert.equal(p.LoggingConfiguration.IncludeExecutionData, false);
        assert.equal(p.LoggingConfiguration.Destinations.length, 1);
        assert.deepEqual(p.TracingConfiguration, { Enabled: true });
      }
      // No acknowledgement of AwsSolutions-SF1 (logging) or SF2 (X-Ray) is left.
      const text = JSON.stringify(f.stateless.toJSON());
      assert.doesNotMatch(text, /AwsSolutions-SF[12]/);
    });
  });

  describe("backup bucket", () => {
    const bucketId = () => logicalIdIn(amk.stateful, amk.stateful.backups.bucket);
    const keyId = () => logicalIdIn(amk.stateful, amk.stateful.backups.key as unknown as IConstruct);
    const bucket = () => f.stateful.toJSON().Resources[bucketId()] as Resource;

    it("is versioned, with object lock in GOVERNANCE mode for 90 days by default", () => {
      assert.deepEqual(bucket().Properties.VersioningConfiguration, { Status: "Enabled" });
      assert.equal(bucket().Properties.ObjectLockEnabled, true);
      assert.deepEqual(bucket().Properties.ObjectLockConfiguration, {
        ObjectLockEnabled: "Enabled",
        Rule: { DefaultRetention: { Days: 90, Mode: "GOVERNANCE" } },
      });
    });

    it("is encrypted with its own rotating customer-managed key (bucket key on)", () => {
      assert.deepEqual(bucket().Properties.BucketEncryption, {
        ServerSideEncryptionConfiguration: [
          {
            BucketKeyEnabled: true,
            ServerSideEncryptionByDefault: {
              KMSMasterKeyID: { "Fn::GetAtt": [keyId(), "Arn"] },
              SSEAlgorithm: "aws:kms",
            },
          },
        ],
      });
      const key = f.stateful.toJSON().Resources[keyId()] as Resource;
      assert.equal(key.Properties.EnableKeyRotation, true);
      assert.equal(key.DeletionPolicy, "Retain");
      f.stateful.hasResourceProperties("AWS::KMS::Alias", {
        AliasName: "alias/arquivomate-keys/test/backups",
        TargetKeyId: { "Fn::GetAtt": [keyId(), "Arn"] },
      });
      assert.notEqual(
        keyId(),
        logicalIdIn(amk.stateful, amk.stateful.eventStore.key as unknown as IConstruct),
      );
    });

    it("blocks public access, enforces the bucket owner, and denies requests without TLS (or below TLS 1.2)", () => {
      assert.deepEqual(bucket().Properties.PublicAccessBlockConfiguration, {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      assert.deepEqual(bucket().Properties.OwnershipControls, {
        Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }],
      });
      const both = [
        { "Fn::GetAtt": [bucketId(), "Arn"] },
        { "Fn::Join": ["", [{ "Fn::GetAtt": [bucketId(), "Arn"] }, "/*"]] },
      ];
      f.stateful.hasResourceProperties("AWS::S3::BucketPolicy", {
        Bucket: { Ref: bucketId() },
        PolicyDocument: {
          Statement: [
            {
              Action: "s3:*",
              Condition: { Bool: { "aws:SecureTransport": "false" } },
              Effect: "Deny",
              Principal: { AWS: "*" },
              Resource: both,
            },
            {
              Action: "s3:*",
              Condition: { NumericLessThan: { "s3:TlsVersion": 1.2 } },
              Effect: "Deny",
              Principal: { AWS: "*" },
              Resource: both,
            },
          ],
        },
      });
    });

    it("logs server access to its own log bucket (SSE-S3, TLS only, no public access), and both are retained", () => {
      const logsId = logicalIdIn(amk.stateful, amk.stateful.backups.accessLogs!);
      assert.deepEqual(bucket().Properties.LoggingConfiguration, {
        DestinationBucketName: { Ref: logsId },
        LogFilePrefix: "backup-bucket/",
      });
      const logs = f.stateful.toJSON().Resources[logsId] as Resource;
      assert.deepEqual(logs.Properties.BucketEncryption, {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }],
      });
      assert.equal(
        (logs.Properties.PublicAccessBlockConfiguration as Record<string, boolean>).RestrictPublicBuckets,
        true,
      );
      f.stateful.hasResourceProperties("AWS::S3::BucketPolicy", {
        Bucket: { Ref: logsId },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
            Match.objectLike({ Effect: "Allow", Principal: { Service: "logging.s3.amazonaws.com" } }),
          ]),
        },
      });
      assert.equal(bucket().DeletionPolicy, "Retain");
      assert.equal(logs.DeletionPolicy, "Retain");
    });

    it("expires noncurrent versions after the retention plus 30 days, and cleans up", () => {
      assert.deepEqual(bucket().Properties.LifecycleConfiguration, {
        Rules: [
          {
            Id: "expire-noncurrent-exports",
            NoncurrentVersionExpiration: { NoncurrentDays: 120 },
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
            Status: "Enabled",
          },
          { Id: "remove-expired-delete-markers", ExpiredObjectDeleteMarker: true, Status: "Enabled" },
        ],
      });
    });

    it("goes to the stateless stack (backupBucket) and out as outputs", () => {
      assert.equal(amk.stateless.backupBucket, amk.stateful.backups);
      f.stateful.hasOutput("BackupBucketName", { Value: { Ref: bucketId() } });
      f.stateful.hasOutput("BackupKeyArn", { Value: { "Fn::GetAtt": [keyId(), "Arn"] } });
      const output = (f.stateless.toJSON().Outputs as Record<string, { Value: Json }>).BackupBucketName!;
      assert.deepEqual(f.resolve(output.Value), { Ref: bucketId() });
    });

    it("keeps the event-store table's PITR, deletion protection and customer-managed key", () => {
      f.stateful.hasResourceProperties("AWS::DynamoDB::Table", {
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        DeletionProtectionEnabled: true,
        SSESpecification: {
          SSEEnabled: true,
          SSEType: "KMS",
          KMSMasterKeyId: {
            "Fn::GetAtt": [
              logicalIdIn(amk.stateful, amk.stateful.eventStore.key as unknown as IConstruct),
              "Arn",
            ],
          },
        },
      });
    });
  });

  describe("alarms", () => {
    const failureMetrics = (alarm: Record<string, Json>) =>
      (alarm.Metrics as { Id: string; Expression?: string; MetricStat?: Record<string, Json> }[]).map((m) =>
        m.Expression !== undefined
          ? [m.Id, m.Expression]
          : [
              m.Id,
              (m.MetricStat!.Metric as { MetricName: string }).MetricName,
              (m.MetricStat!.Metric as { Dimensions: Json }).Dimensions,
              m.MetricStat!.Stat,
              m.MetricStat!.Period,
            ],
      );

    it("sends every alarm to the alert topic, and names it amk-<env>-...", () => {
      const alarms = Object.entries(f.alarms);
      // drill-failed, rotation-failed, recovery-failed, unlock-refusals, restoration-test-failed, two queues, errors
      // and throttles of 22 (no schedules: no drill-missing, no restoration-test-missing).
      assert.equal(alarms.length, 5 + 2 + 2 * FUNCTION_NAMES.length);
      for (const [name, alarm] of alarms) {
        assert.match(name, /^amk-test-/);
        assert.deepEqual((alarm.AlarmActions as Json[]).map(f.resolve), [f.topicRef], name);
        assert.match(String(alarm.AlarmDescription), /^ArquivoMate Keys \(test\): /);
      }
      assert.equal(
        f.alarms["amk-test-drill-missing"],
        undefined,
        "no drill schedule, no drill-missing alarm",
      );
      assert.equal(
        f.alarms["amk-test-restoration-test-missing"],
        undefined,
        "no restoration schedule, no restoration-test-missing alarm",
      );
    });

    it("drill-failed, rotation-failed, recovery-failed: failed + timed-out executions of their state machine > 0", () => {
      for (const [name, sm] of [
        ["amk-test-drill-failed", amk.stateless.drillWorkflow.stateMachine],
        ["amk-test-rotation-failed", amk.stateless.rotationWorkflow.stateMachine],
        ["amk-test-recovery-failed", amk.stateless.recoveryWorkflow.stateMachine],
        ["amk-test-restoration-test-failed", amk.stateless.restorationWorkflow.stateMachine],
      ] as const) {
        const alarm = f.alarms[name]!;
        const dimensions = [{ Name: "StateMachineArn", Value: f.stateMachineRef(sm) }];
        assert.deepEqual(
          failureMetrics(alarm),
          [
            ["expr_1", "FILL(failed, 0) + FILL(timedOut, 0)"],
            ["failed", "ExecutionsFailed", dimensions, "Sum", 300],
            ["timedOut", "ExecutionsTimedOut", dimensions, "Sum", 300],
          ],
          name,
        );
        assert.equal(alarm.ComparisonOperator, "GreaterThanThreshold");
        assert.equal(alarm.Threshold, 0);
        assert.equal(alarm.TreatMissingData, "notBreaching");
      }
    });

    it("unlock-refusals: a metric filter on the unlock function's refusal line, >= 5 in 15 minutes", () => {
      const unlockLogs = logicalIdIn(
        amk.stateless,
        amk.stateless.recoveryUnlock.logGroup as unknown as IConstruct,
      );
      const pattern = '{ ($.message = "request refused") && ($.operation = "recovery-unlock") }';
      f.stateless.hasResourceProperties("AWS::Logs::MetricFilter", {
        LogGroupName: { Ref: unlockLogs },
        FilterPattern: pattern,
        MetricTransformations: [
          {
            MetricName: "UnlockRefusals",
            MetricNamespace: "ArquivoMateKeys",
            MetricValue: "1",
            DefaultValue: 0,
          },
        ],
      });
      f.stateless.hasResourceProperties("AWS::Logs::MetricFilter", {
        LogGroupName: { Ref: unlockLogs },
        FilterPattern: pattern,
        MetricTransformations: [
          {
            MetricName: "UnlockRefusalsByCode",
            MetricNamespace: "ArquivoMateKeys",
            MetricValue: "1",
            Dimensions: [{ Key: "ErrorCode", Value: "$.error.code" }],
          },
        ],
      });
      const alarm = f.alarms["amk-test-unlock-refusals"]!;
      assert.deepEqual(
        [alarm.Namespace, alarm.MetricName, alarm.Dimensions, alarm.Statistic, alarm.Period],
        ["ArquivoMateKeys", "UnlockRefusals", undefined, "Sum", 900],
      );
      assert.equal(alarm.ComparisonOperator, "GreaterThanOrEqualToThreshold");
      assert.equal(alarm.Threshold, 5);
    });

    it("the pattern matches the unlock function's refusal line as Powertools Logger writes it", async () => {
      // The refusal path of the unlock function (functions/recovery-unlock/handler.ts): failure(err, logger,
      // { workspaceId, operation: "recovery-unlock" }) from functions/shared/responses.ts, run here for real.
      const { Logger } = await import("@aws-lambda-powertools/logger");
      const { failure } = await import("../../functions/shared/responses.js");
      const { InvalidInputError } = await import("../../core/shared/errors.js");
      const written: string[] = [];
      const streams = [process.stdout, process.stderr];
      const originals = streams.map((stream) => stream.write);
      for (const stream of streams) {
        stream.write = ((chunk: string | Uint8Array) => {
          written.push(String(chunk));
          return true;
        }) as typeof stream.write;
      }
      try {
        // The function's own level (INFO by default); the test runner quiets loggers to ERROR through the environment.
        const logger = new Logger({ serviceName: "arquivomate-keys-recovery-unlock", logLevel: "INFO" });
        failure(new InvalidInputError("passphrase is required"), logger, {
          workspaceId: "ws-1",
          operation: "recovery-unlock",
        });
      } finally {
        streams.forEach((stream, i) => (stream.write = originals[i]!));
      }
      const lines = written
        .join("")
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, Json>);
      // The metric filter's two conditions and its dimension's field, as CloudWatch Logs reads a JSON event.
      const matching = lines.filter(
        (l) => l.message === "request refused" && l.operation === "recovery-unlock",
      );
      assert.equal(matching.length, 1, JSON.stringify(lines));
      assert.equal((matching[0]!.error as { code: string }).code, "INVALID_INPUT");
      assert.ok(!JSON.stringify(matching).includes("passphrase is required"), "the message is not logged");
    });

    it("<queue>-not-empty: the visible messages of each dead-letter queue > 0", () => {
      for (const [name, queue] of [
        ["amk-test-lifecycle-failures-not-empty", amk.stateful.deadLetters.lifecycleFailures],
        ["amk-test-lifecycle-undelivered-not-empty", amk.stateful.deadLetters.lifecycleUndelivered],
      ] as const) {
        const alarm = f.alarms[name]!;
        assert.equal(alarm.Namespace, "AWS/SQS");
        assert.equal(alarm.MetricName, "ApproximateNumberOfMessagesVisible");
        assert.equal(alarm.Statistic, "Maximum");
        assert.equal(alarm.Threshold, 0);
        assert.equal(alarm.ComparisonOperator, "GreaterThanThreshold");
        const dimension = (alarm.Dimensions as { Name: string; Value: Json }[])[0]!;
        assert.equal(dimension.Name, "QueueName");
        assert.deepEqual(f.resolve(dimension.Value), {
          "Fn::GetAtt": [logicalIdIn(amk.stateful, queue), "QueueName"],
        });
      }
    });

    it("<function>-errors and <function>-throttles for every function", () => {
      for (const name of FUNCTION_NAMES) {
        const { id } = f.functionOf(name);
        for (const [suffix, metric] of [
          ["errors", "Errors"],
          ["throttles", "Throttles"],
        ]) {
          const alarm = f.alarms[`amk-test-${name}-${suffix}`]!;
          assert.ok(alarm, `${name}-${suffix}`);
          assert.deepEqual(
            [alarm.Namespace, alarm.MetricName, alarm.Dimensions, alarm.Statistic, alarm.Threshold],
            ["AWS/Lambda", metric, [{ Name: "FunctionName", Value: { Ref: id } }], "Sum", 0],
          );
        }
      }
    });

    it("lets CloudWatch use the alert topic's key for this environment's alarms only", () => {
      const keyId = logicalIdIn(amk.stateful, amk.stateful.alerts.key as unknown as IConstruct);
      const key = f.stateful.toJSON().Resources[keyId] as Resource;
      const statement = (key.Properties.KeyPolicy as { Statement: Record<string, Json>[] }).Statement.find(
        (st) => st.Sid === "CloudWatchAlarms",
      );
      assert.deepEqual(statement, {
        Sid: "CloudWatchAlarms",
        Effect: "Allow",
        Principal: { Service: "cloudwatch.amazonaws.com" },
        Action: ["kms:Decrypt", "kms:GenerateDataKey*"],
        Resource: "*",
        Condition: {
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
      });
    });
  });

  describe("dashboard", () => {
    it("shows the alarms, the re-wrap progress, the drill history, recoveries, unlock refusals and function errors", () => {
      const dashboards = Object.values(f.resources).filter((r) => r.Type === "AWS::CloudWatch::Dashboard");
      assert.equal(dashboards.length, 1);
      const props = dashboards[0]!.Properties;
      assert.equal(props.DashboardName, "amk-test");
      const body = JSON.stringify(props.DashboardBody);
      for (const text of [
        "Re-wrap progress",
        "DocumentsRewrapped",
        "DocumentsOnOldVersions",
        "{ArquivoMateKeys,service,workspaceId}",
        "Drill history",
        "DrillFailedChecks",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "Recovery executions",
        "UnlockRefusals",
        "UnlockRefusalsByCode",
        "Function errors",
        "ApproximateNumberOfMessagesVisible",
        "Restoration tests",
      ])
        assert.ok(body.includes(text), text);
      for (const sm of [
        amk.stateless.drillWorkflow,
        amk.stateless.recoveryWorkflow,
        amk.stateless.rotationWorkflow,
        amk.stateless.restorationWorkflow,
      ])
        assert.ok(body.includes(JSON.stringify(f.stateMachineRef(sm.stateMachine))), sm.node.id);
      for (const name of FUNCTION_NAMES)
        assert.ok(body.includes(JSON.stringify({ Ref: f.functionOf(name).id })), name);
      // Every alarm is on the alarm widget.
      for (const alarm of amk.stateless.monitoring.alarms)
        assert.ok(
          body.includes(JSON.stringify({ "Fn::GetAtt": [logicalIdIn(amk.stateless, alarm), "Arn"] })),
        );
      f.stateless.hasOutput("HsmHealthFunctionName", { Value: { Ref: f.functionOf("hsm-health").id } });
      f.stateless.hasOutput("DashboardName", {
        Value: { Ref: logicalIdIn(amk.stateless, amk.stateless.monitoring.dashboard) },
      });
    });
  });

  describe("ASL of every state machine (asl-validator)", () => {
    it("validates each definition as the template holds it", () => {
      const template = JSON.parse(
        readFileSync(join(outdir, `${amk.stateless.artifactId}.template.json`), "utf8"),
      ) as { Resources: Record<string, { Type: string }> };
      const ids = Object.entries(template.Resources)
        .filter(([, r]) => r.Type === "AWS::StepFunctions::StateMachine")
        .map(([id]) => id);
      assert.deepEqual(
        ids.sort(),
        [
          amk.stateless.rotationWorkflow,
          amk.stateless.recoveryWorkflow,
          amk.stateless.drillWorkflow,
          amk.stateless.restorationWorkflow,
        ]
          .map((w) => logicalIdIn(amk.stateless, w.stateMachine))
          .sort(),
      );
      for (const id of ids) {
        const { asl } = aslFromTemplate(template, id);
        const result = validateAsl(structuredClone(asl), { checkPaths: true, checkArn: true });
        assert.ok(result.isValid, `${id}: ${result.errorsText()}`);
      }
    });

    it("refuses a broken definition (the validator really validates)", () => {
      const { asl } = aslFromTemplate(amk.stateless, "DrillWorkflow/StateMachine");
      const broken = structuredClone(asl) as JsonObject;
      broken.StartAt = "NoSuchState";
      assert.equal(validateAsl(broken).isValid, false);
      const noStates = structuredClone(asl) as JsonObject;
      delete noStates.States;
      assert.equal(validateAsl(noStates).isValid, false);
    });
  });
});

describe("restoration test alarms (addRestorationTestAlarms, wired to the restoration workflow)", () => {
  it("raises restoration-test-failed and, with the schedule, restoration-test-missing on the topic and the dashboard", () => {
    const { amk } = synthApp({ "amk:environment": "test", "amk:drillWorkspaces": ["ws-1"] });
    amk.app.synth();
    const f = fixture(amk);
    assert.equal(amk.stateless.restorationAlarms.length, 2);
    const dimensions = [
      { Name: "StateMachineArn", Value: f.stateMachineRef(amk.stateless.restorationWorkflow.stateMachine) },
    ];
    const failed = f.alarms["amk-test-restoration-test-failed"]!;
    assert.ok(JSON.stringify(failed.Metrics).includes(JSON.stringify(dimensions)));
    assert.ok(JSON.stringify(failed.Metrics).includes("ExecutionsFailed"));
    const missing = f.alarms["amk-test-restoration-test-missing"]!;
    // The default schedule, rate(6 days): 144 h between tests, plus 4 h of slack.
    assert.equal(amk.config.alarms.restorationMissingAfterHours, 148);
    assert.deepEqual(
      [missing.MetricName, missing.Dimensions, missing.EvaluationPeriods, missing.TreatMissingData],
      ["ExecutionsSucceeded", dimensions, 148, "breaching"],
    );
    for (const alarm of [failed, missing])
      assert.deepEqual((alarm.AlarmActions as Json[]).map(f.resolve), [f.topicRef]);
    const body = JSON.stringify(
      Object.values(f.resources).find((r) => r.Type === "AWS::CloudWatch::Dashboard")!.Properties
        .DashboardBody,
    );
    assert.ok(body.includes("Restoration tests"));
    for (const alarm of amk.stateless.restorationAlarms)
      assert.ok(body.includes(logicalIdIn(amk.stateless, alarm)), alarm.node.id);
  });
});

describe("existing VPC endpoints and an imported backup bucket", () => {
  const BUCKET_ARN = "arn:aws:s3:::amk-prod-backups";
  const KEY_ARN = "arn:aws:kms:eu-central-1:333333333333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  let amk: AmkApp;
  let outdir: string;
  let f: ReturnType<typeof fixture>;

  before(() => {
    ({ amk, outdir } = synthApp({
      ...PRODUCTION,
      "amk:vpcSubnets": SUBNETS.map(({ routeTableId: _r, ...s }) => s),
      "amk:vpcEndpoints": "existing",
      "amk:vpcEndpointSecurityGroupId": ENDPOINT_SG,
      "amk:backupBucketArn": BUCKET_ARN,
      "amk:backupBucketKeyArn": KEY_ARN,
    }));
    amk.app.synth();
    f = fixture(amk);
  });

  it("creates no endpoint, reaches the existing ones through their security group (which admits the functions)", () => {
    assertNagCleanWithoutWarnings(outdir);
    f.stateless.resourceCountIs("AWS::EC2::VPCEndpoint", 0);
    f.stateless.resourceCountIs("AWS::EC2::SecurityGroup", 1);
    const fnSg = {
      "Fn::GetAtt": [logicalIdIn(amk.stateless, amk.stateless.network!.functionSecurityGroup), "GroupId"],
    };
    f.stateless.hasResourceProperties("AWS::EC2::SecurityGroupEgress", {
      GroupId: fnSg,
      DestinationSecurityGroupId: ENDPOINT_SG,
      FromPort: 443,
      ToPort: 443,
    });
    f.stateless.hasResourceProperties("AWS::EC2::SecurityGroupIngress", {
      GroupId: ENDPOINT_SG,
      SourceSecurityGroupId: fnSg,
      FromPort: 443,
      ToPort: 443,
    });
    f.stateless.hasResourceProperties("AWS::EC2::SecurityGroupEgress", {
      GroupId: fnSg,
      DestinationPrefixListId: PREFIX_LIST,
    });
  });

  it("imports the backup bucket and its key instead of creating them", () => {
    f.stateful.resourceCountIs("AWS::S3::Bucket", 0);
    assert.equal(amk.stateful.backups.bucket.bucketArn, BUCKET_ARN);
    assert.equal(amk.stateful.backups.key.keyArn, KEY_ARN);
    f.stateful.hasOutput("BackupBucketName", { Value: "amk-prod-backups" });
    f.stateless.hasOutput("BackupBucketName", { Value: "amk-prod-backups" });
  });
});

describe("docs/deploy.md", () => {
  const deployDoc = readFileSync(join(ROOT, "docs/deploy.md"), "utf8");

  it("its example production configuration synthesises, cdk-nag clean and without a warning", () => {
    const example = /```json\n([\s\S]*?)```/.exec(deployDoc);
    assert.ok(example, "deploy.md has a JSON example");
    const context = JSON.parse(example[1]!) as Record<string, unknown>;
    const { amk, outdir } = synthApp(context);
    amk.app.synth();
    assertNagCleanWithoutWarnings(outdir);
    assert.equal(amk.config.production, true);
    assert.ok(amk.config.network !== undefined);
  });

  it("names every amk: context key, as does infrastructure.md", () => {
    const infraDoc = readFileSync(join(ROOT, "docs/infrastructure.md"), "utf8");
    for (const key of Object.values(CONTEXT_KEYS)) {
      assert.ok(deployDoc.includes(`"${key}"`) || deployDoc.includes(`\`${key}\``), `deploy.md: ${key}`);
      assert.ok(infraDoc.includes(`\`${key}\``), `infrastructure.md: ${key}`);
    }
  });
});

describe("the whole app synthesises offline, without credentials (the CDK CLI)", () => {
  it("writes the three stacks' templates with `cdk synth` and no AWS configuration at all", async (t) => {
    const home = mkdtempSync(join(tmpdir(), "amk-offline-"));
    t.after(() => rmSync(home, { recursive: true, force: true }));
    const out = join(home, "cdk.out");
    // No AWS credentials, profiles or instance metadata; any HTTP(S) a tool might try goes to a closed port.
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      AWS_CONFIG_FILE: join(home, "no-config"),
      AWS_SHARED_CREDENTIALS_FILE: join(home, "no-credentials"),
      AWS_EC2_METADATA_DISABLED: "true",
      HTTP_PROXY: "http://127.0.0.1:9",
      HTTPS_PROXY: "http://127.0.0.1:9",
      npm_config_offline: "true",
      npm_config_update_notifier: "false",
      CDK_DISABLE_VERSION_CHECK: "1",
    };
    // Bundling is left to stacks.infra.test.ts and bundles.infra.test.ts: only the stateful stack's assets (none)
    // are built, but the app (all three stacks) is synthesised and validated (cdk-nag) as a whole.
    await promisify(execFile)(
      process.execPath,
      [
        join(ROOT, "node_modules/aws-cdk/bin/cdk"),
        "synth",
        "--quiet",
        "--exclusively",
        "amk-offline-stateful",
        "-c",
        "amk:environment=offline",
        "-o",
        out,
      ],
      { cwd: ROOT, env, timeout: 180_000 },
    );
    for (const stack of ["amk-offline-stateful", "amk-offline-stateless", "amk-offline-vault"]) {
      assert.ok(existsSync(join(out, `${stack}.template.json`)), stack);
    }
    const report = JSON.parse(readFileSync(join(out, "validation-report.json"), "utf8")) as ValidationReport;
    for (const plugin of report.pluginReports)
      assert.notEqual(plugin.conclusion, "failure", plugin.pluginName);
  });
});

describe("configuration of the production infrastructure is validated at synth time", () => {
  function configError(context: Record<string, unknown>): InvalidInfraConfigError {
    try {
      createApp({
        context: { ...CDK_JSON_CONTEXT, ...NO_BUNDLING, ...context },
        outdir: mkdtempSync(join(tmpdir(), "amk-ops-cfg-")),
      });
    } catch (e) {
      assert.ok(e instanceof InvalidInfraConfigError, `expected InvalidInfraConfigError, got ${String(e)}`);
      return e;
    }
    assert.fail("createApp accepted a bad configuration");
  }

  it("refuses a production environment without the CloudHSM network, layer, account and region", () => {
    const e = configError({ "amk:production": true });
    assert.equal(e.problems.length, 3, e.message);
    assert.match(
      e.message,
      /amk:production: a production environment runs its HSM functions in the CloudHSM cluster's VPC: set amk:vpcId, amk:vpcSubnets, amk:hsmSecurityGroupId and amk:dynamoDbPrefixListId/,
    );
    assert.match(e.message, /amk:production: a production environment needs amk:pkcs11LayerArn/);
    assert.match(e.message, /amk:production: a production environment needs amk:account and amk:region/);
    const { "amk:vpcId": _v, ...withoutVpc } = PRODUCTION;
    assert.match(
      configError(withoutVpc).message,
      /amk:vpcId: missing; the network of the HSM functions needs all of/,
    );
    assert.match(configError({ "amk:production": "yes" }).message, /amk:production: must be true or false/);
  });

  it("refuses half a network, bad ids and subnets, and endpoint settings that do not fit together", () => {
    const e = configError({
      "amk:vpcId": "vpc-123",
      "amk:vpcSubnets": [
        { subnetId: "subnet-0aaaaaaaaaaaaaaa1", availabilityZone: "eu-central-1a" },
        { subnetId: "subnet-x", availabilityZone: "eu-central-1", routeTable: "rtb-1" },
      ],
      "amk:hsmSecurityGroupId": "cluster-sg",
    });
    assert.match(e.message, /amk:vpcId: must be a VPC id such as vpc-0123456789abcdef0 \(got "vpc-123"\)/);
    assert.match(e.message, /amk:hsmSecurityGroupId: must be a security group id/);
    assert.match(e.message, /amk:vpcSubnets\[1\]: unknown field\(s\) routeTable/);
    assert.match(e.message, /amk:vpcSubnets\[1\]\.subnetId: must be a subnet id/);
    assert.match(e.message, /amk:vpcSubnets\[1\]\.availabilityZone: must be an availability zone name/);
    const noRoutes = configError({
      ...NETWORK,
      "amk:vpcSubnets": [{ subnetId: "subnet-0aaaaaaaaaaaaaaa1", availabilityZone: "eu-central-1a" }],
    });
    assert.match(
      noRoutes.message,
      /subnet-0aaaaaaaaaaaaaaa1 without routeTableId; the DynamoDB gateway endpoint/,
    );
    assert.match(
      configError({ ...NETWORK, "amk:vpcEndpoints": "existing" }).message,
      /amk:vpcEndpointSecurityGroupId: needed with amk:vpcEndpoints=existing/,
    );
    assert.match(
      configError({ ...NETWORK, "amk:vpcEndpointSecurityGroupId": ENDPOINT_SG }).message,
      /amk:vpcEndpointSecurityGroupId: only with amk:vpcEndpoints=existing/,
    );
    assert.match(
      configError({ ...NETWORK, "amk:vpcEndpoints": "shared" }).message,
      /amk:vpcEndpoints: must be "create" .* or "existing"/,
    );
    assert.match(
      configError({ ...NETWORK, "amk:vpcSubnets": "subnet-0aaaaaaaaaaaaaaa1" }).message,
      /amk:vpcSubnets: is not a JSON array of subnets/,
    );
    assert.match(
      configError({ ...NETWORK, "amk:account": ACCOUNT, "amk:region": "eu-west-1" }).message,
      /amk:vpcSubnets: subnet-0aaaaaaaaaaaaaaa1 \(eu-central-1a\), subnet-0bbbbbbbbbbbbbbb2 \(eu-central-1b\) not in amk:region eu-west-1/,
    );
  });

  it("refuses a vault in another region for functions in the VPC (a backup copy region is fine: listed outside it)", () => {
    const e = configError({
      ...PRODUCTION,
      "amk:vaultAccount": "222222222222",
      "amk:vaultRegion": "eu-west-1",
      "amk:hsmBackupCopyRegion": "eu-west-1",
    });
    assert.equal(e.problems.length, 1, e.message);
    assert.match(
      e.message,
      /amk:vaultRegion: .*the vault must be in that region \(eu-central-1; another account is fine\), got eu-west-1/,
    );
    assert.doesNotMatch(e.message, /amk:hsmBackupCopyRegion/);
    // Another account in the same region is fine.
    assert.doesNotThrow(() =>
      createApp({
        context: { ...CDK_JSON_CONTEXT, ...NO_BUNDLING, ...PRODUCTION, "amk:vaultAccount": "222222222222" },
        outdir: mkdtempSync(join(tmpdir(), "amk-ops-cfg-")),
      }),
    );
  });

  it("checks the alarm and backup settings", () => {
    const e = configError({
      "amk:unlockRefusalThreshold": 0,
      "amk:backupLockMode": "governance",
      "amk:backupRetentionDays": "90d",
      "amk:backupBucketArn": "arn:aws:s3:::amk-prod-backups",
      "amk:drillMissingAfterHours": 30,
    });
    assert.match(e.message, /amk:unlockRefusalThreshold: must be a whole number from 1 to 1000/);
    assert.match(e.message, /amk:backupLockMode: must be "GOVERNANCE" or "COMPLIANCE"/);
    assert.match(e.message, /amk:backupRetentionDays: must be a whole number of days from 1 to 36500/);
    assert.match(
      configError({ "amk:backupBucketArn": "arn:aws:s3:::amk-prod-backups" }).message,
      /amk:backupBucketArn \/ amk:backupBucketKeyArn: an existing backup bucket needs both/,
    );
    assert.match(
      configError({ "amk:drillMissingAfterHours": 30 }).message,
      /amk:drillMissingAfterHours: needs a drill schedule/,
    );
    assert.match(
      configError({ "amk:drillWorkspaces": ["ws-1"], "amk:drillMissingAfterHours": 20 }).message,
      /amk:drillMissingAfterHours: 20 h is not longer than the drill schedule's interval \(24 h\)/,
    );
    assert.match(
      configError({ "amk:drillWorkspaces": ["ws-1"], "amk:drillSchedule": "rate(7 days)" }).message,
      /amk:drillSchedule: drills 168 h apart are too rare for the missing-drill alarm/,
    );
    assert.match(
      configError({ "amk:drillWorkspaces": ["ws-1"], "amk:drillSchedule": "cron(0 3 L * ? *)" }).message,
      /amk:drillSchedule: cannot tell how far apart the drills .* set amk:drillMissingAfterHours/,
    );
  });

  it("works out the longest gap between scheduled drills", () => {
    assert.equal(scheduleIntervalMinutes("rate(1 day)"), 1440);
    assert.equal(scheduleIntervalMinutes("rate(6 hours)"), 360);
    assert.equal(scheduleIntervalMinutes("cron(15 4 * * ? *)"), 1440);
    assert.equal(scheduleIntervalMinutes("cron(0 1,13 * * ? *)"), 720);
    assert.equal(scheduleIntervalMinutes("cron(0 0/6 * * ? *)"), 360);
    assert.equal(scheduleIntervalMinutes("cron(0 3 ? * MON-FRI *)"), 3 * 1440); // Friday to Monday
    assert.equal(scheduleIntervalMinutes("cron(0 3 L * ? *)"), undefined);
    assert.equal(scheduleIntervalMinutes("cron(0 3 * * ? 2027)"), undefined);
  });
});
