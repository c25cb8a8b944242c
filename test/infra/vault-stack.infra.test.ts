/**
 * Infrastructure tests of the vault stack (recovery kits and factor secrets, DESIGN.md section 4 point 7): its KMS
 * key and key policy, the access role's trust policy and permissions, its place (account/region), its separation from
 * the event store, the configuration checks, and cdk-nag.
 *
 * Templates are compared after flattening CloudFormation references to strings (`Ref` as `<Name>`, `Fn::GetAtt` as
 * `<Resource.Attribute>`, `Fn::Join` joined), so that the expected policies read like the policies.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { Validations } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { PolicyStatement } from "aws-cdk-lib/aws-iam";
import { createApp, type AmkApp } from "../../infra/bin/app.js";
import { InvalidInfraConfigError } from "../../infra/lib/config.js";
import { CDK_JSON_CONTEXT, synthAppsIn } from "../support/infra.js";

const synthApp = synthAppsIn("amk-vault-test");
/**
 * A plugin's findings that fail the synth (cdk-nag's errors); the construct annotations' warnings (no VPC in a test
 * configuration) are checked in stacks.infra.test.ts.
 */
const errorsOf = (plugin: ValidationReport["pluginReports"][number]): string[] =>
  plugin.violations.filter((v) => v.severity !== "warning").map((v) => v.ruleName);

interface ValidationReport {
  pluginReports: {
    pluginName: string;
    conclusion: string;
    violations: { ruleName: string; severity: string }[];
  }[];
}
const readReport = (outdir: string): ValidationReport =>
  JSON.parse(readFileSync(join(outdir, "validation-report.json"), "utf8")) as ValidationReport;

/** A template value with its references flattened: `{Ref: X}` → `<X>`, GetAtt → `<R.A>`, Join joined. */
function flat(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(flat);
  if (value !== null && typeof value === "object") {
    const v = value as Record<string, unknown>;
    if (Array.isArray(v["Fn::Join"])) {
      const [delimiter, items] = v["Fn::Join"] as [string, unknown[]];
      return items.map((i) => String(flat(i))).join(delimiter);
    }
    if (typeof v.Ref === "string") return `<${v.Ref}>`;
    if (Array.isArray(v["Fn::GetAtt"])) return `<${(v["Fn::GetAtt"] as string[]).join(".")}>`;
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, flat(x)]));
  }
  return value;
}
const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);

type Statement = {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource?: unknown;
  Principal?: { AWS?: unknown; Service?: unknown };
  Condition?: Record<string, Record<string, unknown>>;
};
type Resources = Record<
  string,
  {
    Type: string;
    Properties: Record<string, unknown>;
    DeletionPolicy?: string;
    UpdateReplacePolicy?: string;
    Metadata?: Record<string, unknown>;
  }
>;

/** The parts of the vault template the tests look at, flattened. */
function vaultParts(template: Template) {
  const resources = template.toJSON().Resources as Resources;
  const only = (type: string) => {
    const found = Object.entries(resources).filter(([, r]) => r.Type === type);
    assert.equal(found.length, 1, `exactly one ${type}`);
    return { id: found[0]![0], resource: found[0]![1] };
  };
  const key = only("AWS::KMS::Key");
  const role = only("AWS::IAM::Role");
  const policy = only("AWS::IAM::Policy");
  return {
    resources,
    key,
    role,
    policy,
    keyStatements: flat(
      (key.resource.Properties.KeyPolicy as { Statement: Statement[] }).Statement,
    ) as Statement[],
    trustStatements: flat(
      (role.resource.Properties.AssumeRolePolicyDocument as { Statement: Statement[] }).Statement,
    ) as Statement[],
    permissions: flat(
      (policy.resource.Properties.PolicyDocument as { Statement: Statement[] }).Statement,
    ) as Statement[],
  };
}

/** What the role may do, per statement: the expected policy for a vault at `secretArnPrefix` with key `keyArn`. */
function expectedPermissions(secretArnPrefix: string, keyArn: string): Statement[] {
  const callerTag = "aws:PrincipalTag/amk:vault-caller";
  const create = (sid: string, name: string, tag: string): Statement => ({
    Sid: sid,
    Effect: "Allow",
    Action: "secretsmanager:CreateSecret",
    Resource: `${secretArnPrefix}amk/*`,
    Condition: {
      StringEquals: { [callerTag]: "writer", "aws:RequestTag/amk:vault": tag },
      StringLike: { "secretsmanager:Name": name },
      ArnEquals: { "secretsmanager:KmsKeyArn": keyArn },
      "ForAllValues:StringEquals": { "aws:TagKeys": ["amk:vault"] },
    },
  });
  const tag = (sid: string, value: string): Statement => ({
    Sid: sid,
    Effect: "Allow",
    Action: "secretsmanager:TagResource",
    Resource: `${secretArnPrefix}amk/*`,
    Condition: {
      StringEquals: { [callerTag]: "writer", "aws:RequestTag/amk:vault": value },
      StringEqualsIfExists: { "aws:ResourceTag/amk:vault": value },
      "ForAllValues:StringEquals": { "aws:TagKeys": ["amk:vault"] },
    },
  });
  const use = (
    sid: string,
    actions: string[],
    resource: string,
    value: string,
    callers: unknown,
  ): Statement => ({
    Sid: sid,
    Effect: "Allow",
    Action: actions,
    Resource: `${secretArnPrefix}${resource}`,
    Condition: {
      StringEquals: { [callerTag]: callers },
      StringEqualsIfExists: { "aws:ResourceTag/amk:vault": value },
    },
  });
  // In the template's order (CDK sorts the actions of a statement).
  const write = [
    "secretsmanager:ListSecretVersionIds",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
  ];
  const read = [
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:ListSecretVersionIds",
  ];
  return [
    create("CreateKitSecrets", "amk/*/kit", "kits"),
    tag("TagKitSecrets", "kits"),
    use("WriteKitSecrets", write, "amk/*/kit-??????", "kits", "writer"),
    use("ReadKitSecrets", read, "amk/*/kit-??????", "kits", ["writer", "unlock"]),
    create("CreateFactorSecrets", "amk/*/factor/*", "factors"),
    tag("TagFactorSecrets", "factors"),
    use("WriteFactorSecrets", write, "amk/*/factor/*", "factors", "writer"),
    use("ReadFactorSecrets", read, "amk/*/factor/*", "factors", "unlock"),
    // The backup signing key, by its exact name: created untagged by the export (a writer), read by writers and
    // unlock sessions (the restoration test, when the public keys are not pinned).
    {
      Sid: "CreateBackupSigningKey",
      Effect: "Allow",
      Action: "secretsmanager:CreateSecret",
      Resource: `${secretArnPrefix}amk/*`,
      Condition: {
        StringEquals: { [callerTag]: "writer", "secretsmanager:Name": "amk/backup/signing-key" },
        ArnEquals: { "secretsmanager:KmsKeyArn": keyArn },
        Null: { "aws:TagKeys": "true" },
      },
    },
    {
      Sid: "WriteBackupSigningKey",
      Effect: "Allow",
      Action: write,
      Resource: `${secretArnPrefix}amk/backup/signing-key-??????`,
      Condition: { StringEquals: { [callerTag]: "writer" } },
    },
    {
      Sid: "ReadBackupSigningKey",
      Effect: "Allow",
      Action: read,
      Resource: `${secretArnPrefix}amk/backup/signing-key-??????`,
      Condition: { StringEquals: { [callerTag]: ["writer", "unlock"] } },
    },
  ];
}

/** Administration, not use: no kms:Encrypt/Decrypt/GenerateDataKey*, no kms:CreateGrant (sorted, as in the template). */
const ADMIN_ACTIONS = [
  "kms:CancelKeyDeletion",
  "kms:CreateAlias",
  "kms:Delete*",
  "kms:Describe*",
  "kms:Disable*",
  "kms:Enable*",
  "kms:Get*",
  "kms:List*",
  "kms:Put*",
  "kms:Revoke*",
  "kms:ScheduleKeyDeletion",
  "kms:TagResource",
  "kms:UntagResource",
  "kms:Update*",
];

/** The acknowledgements recorded under `pathPrefix`: [construct path, rule id, reason]. */
function acknowledgedUnder(amk: AmkApp, pathPrefix: string): [string, string, string][] {
  const found: [string, string, string][] = [];
  for (const c of amk.app.node.findAll()) {
    if (!c.node.path.startsWith(pathPrefix)) continue;
    for (const m of c.node.metadata) {
      if (m.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(m.data as Record<string, string>))
        found.push([c.node.path, id, reason]);
    }
  }
  return found.sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
}

describe("vault stack, default configuration (same place as the service, no service role configured)", () => {
  const SECRET_PREFIX = "arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:";
  const ROOT_ARN = "arn:<AWS::Partition>:iam::<AWS::AccountId>:root";
  let amk: AmkApp;
  let outdir: string;
  let vault: Template;
  let parts: ReturnType<typeof vaultParts>;

  before(() => {
    ({ amk, outdir } = synthApp({ "amk:environment": "test" }));
    amk.app.synth(); // throws on an unacknowledged cdk-nag finding
    vault = Template.fromStack(amk.vault);
    parts = vaultParts(vault);
  });

  it("is the stack amk-<env>-vault, environment-agnostic like the service", () => {
    assert.equal(amk.vault.stackName, "amk-test-vault");
    assert.equal(amk.vault.environment, "aws://unknown-account/unknown-region");
    assert.deepEqual(amk.config.vault, { writerRoleArns: [], unlockRoleArns: [] });
  });

  it("holds a key, its alias, the access role and its policy: nothing else", () => {
    assert.deepEqual(
      Object.values(parts.resources)
        .map((r) => r.Type)
        .sort(),
      ["AWS::IAM::Policy", "AWS::IAM::Role", "AWS::KMS::Alias", "AWS::KMS::Key"],
    );
    vault.hasResourceProperties("AWS::KMS::Alias", {
      AliasName: "alias/arquivomate-keys/test/vault",
      TargetKeyId: { "Fn::GetAtt": [parts.key.id, "Arn"] },
    });
  });

  it("has a rotating, retained customer-managed key", () => {
    const { resource } = parts.key;
    assert.equal(resource.Properties.EnableKeyRotation, true);
    assert.equal(resource.Properties.RotationPeriodInDays, 365);
    assert.equal(resource.DeletionPolicy, "Retain");
    assert.equal(resource.UpdateReplacePolicy, "Retain");
  });

  it("key policy: the account root administers (no kms:*, no grants), only the access role uses it via Secrets Manager", () => {
    assert.deepEqual(parts.keyStatements, [
      {
        Sid: "AdministerKey",
        Effect: "Allow",
        Principal: { AWS: ROOT_ARN },
        Action: ADMIN_ACTIONS,
        Resource: "*",
      },
      {
        Sid: "UseKeyThroughSecretsManager",
        Effect: "Allow",
        Principal: { AWS: `<${parts.role.id}.Arn>` },
        Action: ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
        Resource: "*",
        Condition: {
          StringEquals: { "kms:ViaService": "secretsmanager.<AWS::Region>.amazonaws.com" },
          StringLike: { "kms:EncryptionContext:SecretARN": `${SECRET_PREFIX}amk/*` },
        },
      },
    ]);
    const principals = parts.keyStatements.flatMap((s) => asList(s.Principal?.AWS));
    assert.deepEqual(principals, [ROOT_ARN, `<${parts.role.id}.Arn>`]);
    const rootActions = parts.keyStatements
      .filter((s) => s.Principal?.AWS === ROOT_ARN)
      .flatMap((s) => asList(s.Action));
    for (const forbidden of [
      "kms:*",
      "kms:Decrypt",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:Create*",
      "kms:CreateGrant",
    ]) {
      assert.ok(!rootActions.includes(forbidden), `the root is not given ${forbidden}`);
    }
  });

  it("access role: named amk-<env>-vault-access, no managed policy, trusts only the account root (placeholder)", () => {
    const props = parts.role.resource.Properties;
    assert.equal(props.RoleName, "amk-test-vault-access");
    assert.equal(props.ManagedPolicyArns, undefined);
    assert.equal(props.Policies, undefined);
    assert.equal(props.MaxSessionDuration, 3600);
    assert.match(String(props.Description), /PLACEHOLDER/);
    assert.deepEqual(parts.trustStatements, [
      { Action: "sts:AssumeRole", Effect: "Allow", Principal: { AWS: ROOT_ARN } },
    ]);
  });

  it("permissions: exactly the eleven statements, on amk/ secrets only, never DeleteSecret", () => {
    assert.deepEqual(parts.policy.resource.Properties.Roles, [{ Ref: parts.role.id }]);
    assert.deepEqual(parts.permissions, expectedPermissions(SECRET_PREFIX, `<${parts.key.id}.Arn>`));
    const actions = parts.permissions.flatMap((s) => asList(s.Action) as string[]);
    for (const forbidden of [
      "secretsmanager:DeleteSecret",
      "secretsmanager:UntagResource",
      "secretsmanager:PutResourcePolicy",
      "secretsmanager:*",
    ]) {
      assert.ok(!actions.includes(forbidden), `no ${forbidden}`);
    }
    assert.ok(actions.every((a) => a.startsWith("secretsmanager:") && !a.includes("*")));
    for (const s of parts.permissions) {
      assert.equal(s.Effect, "Allow");
      for (const r of asList(s.Resource)) {
        assert.notEqual(r, "*");
        assert.ok(String(r).startsWith(`${SECRET_PREFIX}amk/`), `resource under amk/: ${String(r)}`);
      }
      assert.ok(
        s.Condition?.StringEquals?.["aws:PrincipalTag/amk:vault-caller"],
        `${s.Sid}: names the caller`,
      );
    }
  });

  it("factor secrets: read by unlock sessions only; kits: written by writers, read by writers and unlock", () => {
    const who = (sid: string) =>
      parts.permissions.find((s) => s.Sid === sid)?.Condition?.StringEquals?.[
        "aws:PrincipalTag/amk:vault-caller"
      ];
    assert.equal(who("ReadFactorSecrets"), "unlock");
    assert.deepEqual(who("ReadKitSecrets"), ["writer", "unlock"]);
    assert.deepEqual(who("ReadBackupSigningKey"), ["writer", "unlock"]);
    for (const sid of [
      "CreateKitSecrets",
      "TagKitSecrets",
      "WriteKitSecrets",
      "CreateFactorSecrets",
      "TagFactorSecrets",
      "WriteFactorSecrets",
      "CreateBackupSigningKey",
      "WriteBackupSigningKey",
    ]) {
      assert.equal(who(sid), "writer", sid);
    }
    const readers = parts.permissions.filter((s) =>
      asList(s.Action).includes("secretsmanager:GetSecretValue"),
    );
    assert.deepEqual(
      readers.map((s) => [s.Sid, s.Resource]),
      [
        ["ReadKitSecrets", `${SECRET_PREFIX}amk/*/kit-??????`],
        ["ReadFactorSecrets", `${SECRET_PREFIX}amk/*/factor/*`],
        ["ReadBackupSigningKey", `${SECRET_PREFIX}amk/backup/signing-key-??????`],
      ],
    );
  });

  it("backup signing key: created by its exact name only, untagged, with the vault key", () => {
    const create = parts.permissions.find((st) => st.Sid === "CreateBackupSigningKey")!;
    assert.equal(create.Condition?.StringEquals?.["secretsmanager:Name"], "amk/backup/signing-key");
    assert.deepEqual(create.Condition?.Null, { "aws:TagKeys": "true" });
    assert.deepEqual(create.Condition?.ArnEquals, { "secretsmanager:KmsKeyArn": `<${parts.key.id}.Arn>` });
    // Its ARN pattern holds no "*": nothing for cdk-nag to acknowledge, no other secret it could match.
    for (const sid of ["WriteBackupSigningKey", "ReadBackupSigningKey"]) {
      const st = parts.permissions.find((x) => x.Sid === sid)!;
      assert.doesNotMatch(String(st.Resource), /\*/, sid);
    }
  });

  it("outputs the access role ARN and the key ARN", () => {
    vault.hasOutput("VaultAccessRoleArn", { Value: { "Fn::GetAtt": [parts.role.id, "Arn"] } });
    vault.hasOutput("VaultKeyArn", { Value: { "Fn::GetAtt": [parts.key.id, "Arn"] } });
  });

  it("is apart from the event store: no table, queue or backup here, no reference either way", () => {
    const types = Object.values(parts.resources).map((r) => r.Type);
    assert.ok(!types.some((t) => /DynamoDB|Backup|SQS|S3/.test(t)), types.join());
    const vaultText = JSON.stringify(vault.toJSON());
    assert.doesNotMatch(vaultText, /Fn::GetStackOutput|Fn::ImportValue|amk-test-stateful|amk-test-stateless/);
    assert.deepEqual(amk.vault.dependencies, []);
    assert.ok(!amk.stateful.dependencies.includes(amk.vault));
    assert.ok(!amk.stateless.dependencies.includes(amk.vault));
    // ...and the stateful stack (the table, whose point-in-time backups are its backups) holds no vault secret or key.
    const stateful = Template.fromStack(amk.stateful);
    stateful.resourceCountIs("AWS::SecretsManager::Secret", 0);
    assert.doesNotMatch(JSON.stringify(stateful.toJSON()), /secretsmanager|\/vault|amk:vault/);
  });

  it("passes cdk-nag, acknowledging only the three IAM5 name patterns on the access policy, with reasons", () => {
    for (const plugin of readReport(outdir).pluginReports) {
      assert.notEqual(plugin.conclusion, "failure", plugin.pluginName);
      assert.deepEqual(errorsOf(plugin), [], plugin.pluginName);
    }
    const acks = acknowledgedUnder(amk, "amk-test-vault/");
    assert.deepEqual(
      acks.map(([path, id]) => [path, id]),
      [
        [
          "amk-test-vault/VaultAccessPolicy/Resource",
          `Annotation::AwsSolutions-IAM5[Resource::${SECRET_PREFIX}amk/*/factor/*]`,
        ],
        [
          "amk-test-vault/VaultAccessPolicy/Resource",
          `Annotation::AwsSolutions-IAM5[Resource::${SECRET_PREFIX}amk/*/kit-??????]`,
        ],
        [
          "amk-test-vault/VaultAccessPolicy/Resource",
          `Annotation::AwsSolutions-IAM5[Resource::${SECRET_PREFIX}amk/*]`,
        ],
      ],
    );
    for (const [, , reason] of acks) assert.match(reason, /created at run time/);
    // The reasons travel in the template, on the policy and nothing else.
    const withMetadata = Object.values(parts.resources).filter((r) => r.Metadata?.cdk_nag !== undefined);
    assert.deepEqual(
      withMetadata.map((r) => r.Type),
      ["AWS::IAM::Policy"],
    );
  });
});

describe("vault stack in its own account and region, with writer and unlock roles", () => {
  const WRITER = "arn:aws:iam::111111111111:role/amk-prod-kit";
  const UNLOCK = "arn:aws:iam::111111111111:role/service/amk-prod-unlock";
  const BOTH = "arn:aws:iam::111111111111:role/amk-prod-admin-tools";
  // With the region known, CDK writes the partition as a literal (@aws-cdk/core:enablePartitionLiterals).
  const SECRET_PREFIX = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:";
  let amk: AmkApp;
  let outdir: string;
  let parts: ReturnType<typeof vaultParts>;

  before(() => {
    ({ amk, outdir } = synthApp({
      "amk:environment": "prod",
      "amk:account": "111111111111",
      "amk:region": "eu-central-1",
      "amk:vaultAccount": "222222222222",
      "amk:vaultRegion": "eu-west-1",
      // A JSON array as in cdk.json, and a comma-separated string as with -c (duplicates collapse).
      "amk:vaultWriterRoleArns": [WRITER, BOTH, WRITER],
      "amk:unlockRoleArns": `${UNLOCK}, ${BOTH}`,
      "amk:vaultAccessRoleArn": "arn:aws:iam::222222222222:role/amk-prod-vault-access",
    }));
    amk.app.synth();
    parts = vaultParts(Template.fromStack(amk.vault));
  });

  it("targets the vault account and region; the service stacks stay in theirs", () => {
    assert.equal(amk.vault.environment, "aws://222222222222/eu-west-1");
    assert.equal(amk.vault.account, "222222222222");
    assert.equal(amk.vault.region, "eu-west-1");
    assert.equal(amk.stateful.environment, "aws://111111111111/eu-central-1");
    assert.equal(amk.stateless.environment, "aws://111111111111/eu-central-1");
    assert.deepEqual(amk.config.vault, {
      account: "222222222222",
      region: "eu-west-1",
      writerRoleArns: [BOTH, WRITER],
      unlockRoleArns: [BOTH, UNLOCK],
      accessRoleArn: "arn:aws:iam::222222222222:role/amk-prod-vault-access",
    });
  });

  it("passes cdk-nag there too", () => {
    for (const plugin of readReport(outdir).pluginReports)
      assert.deepEqual(errorsOf(plugin), [], plugin.pluginName);
    assert.equal(acknowledgedUnder(amk, "amk-prod-vault/").length, 3);
  });

  it("trust policy: only the configured roles, each tagging its session with its own kind only", () => {
    const assume = parts.trustStatements.filter((s) => s.Action === "sts:AssumeRole");
    assert.deepEqual(assume.flatMap((s) => asList(s.Principal?.AWS)).sort(), [BOTH, WRITER, UNLOCK].sort());
    for (const s of assume) assert.deepEqual(Object.keys(s).sort(), ["Action", "Effect", "Principal"]);
    const tagSession = parts.trustStatements.filter((s) => s.Action === "sts:TagSession");
    assert.deepEqual(tagSession, [
      {
        Sid: "TagSessionAsWriter",
        Effect: "Allow",
        Action: "sts:TagSession",
        Principal: { AWS: [BOTH, WRITER] },
        Condition: {
          StringEquals: { "aws:RequestTag/amk:vault-caller": "writer" },
          "ForAllValues:StringEquals": { "aws:TagKeys": ["amk:vault-caller"] },
        },
      },
      {
        Sid: "TagSessionAsUnlock",
        Effect: "Allow",
        Action: "sts:TagSession",
        Principal: { AWS: [BOTH, UNLOCK] },
        Condition: {
          StringEquals: { "aws:RequestTag/amk:vault-caller": "unlock" },
          "ForAllValues:StringEquals": { "aws:TagKeys": ["amk:vault-caller"] },
        },
      },
    ]);
    assert.equal(parts.trustStatements.length, assume.length + tagSession.length);
    assert.doesNotMatch(JSON.stringify(parts.trustStatements), /:root/);
  });

  it("key policy: the vault account's root and the access role; Secrets Manager of the vault region only", () => {
    assert.deepEqual(
      parts.keyStatements.map((s) => [s.Sid, s.Principal?.AWS]),
      [
        ["AdministerKey", "arn:aws:iam::222222222222:root"],
        ["UseKeyThroughSecretsManager", `<${parts.role.id}.Arn>`],
      ],
    );
    assert.deepEqual(parts.keyStatements[1]!.Condition, {
      StringEquals: { "kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com" },
      StringLike: { "kms:EncryptionContext:SecretARN": `${SECRET_PREFIX}amk/*` },
    });
  });

  it("permissions: the same eleven statements, on the vault account's and region's amk/ secrets", () => {
    assert.deepEqual(parts.permissions, expectedPermissions(SECRET_PREFIX, `<${parts.key.id}.Arn>`));
  });

  it("an extra wildcard grant on the access role is not covered by the acknowledgements", () => {
    const { amk: other, outdir: otherOut } = synthApp({
      "amk:vaultAccount": "222222222222",
      "amk:vaultRegion": "eu-west-1",
    });
    other.vault.accessRole.addToPrincipalPolicy(
      new PolicyStatement({ actions: ["secretsmanager:GetSecretValue"], resources: ["*"] }),
    );
    assert.throws(() => other.app.synth(), /Validation failed/);
    const violations = readReport(otherOut).pluginReports.flatMap((p) => errorsOf(p));
    assert.deepEqual(violations, ["AwsSolutions-IAM5[Resource::*]"]);
  });
});

describe("vault placement defaults", () => {
  it("takes the service's account and region when only one of them is overridden", () => {
    const { amk } = synthApp({
      "amk:account": "111111111111",
      "amk:region": "eu-central-1",
      "amk:vaultRegion": "eu-north-1",
    });
    assert.equal(amk.vault.environment, "aws://111111111111/eu-north-1");
    const { amk: sameAccount } = synthApp({ "amk:account": "111111111111", "amk:region": "eu-central-1" });
    assert.equal(sameAccount.vault.environment, "aws://111111111111/eu-central-1");
  });

  it("can be environment-specific while the service stacks are environment-agnostic", () => {
    const { amk } = synthApp({ "amk:vaultAccount": "222222222222", "amk:vaultRegion": "eu-west-1" });
    assert.equal(amk.vault.environment, "aws://222222222222/eu-west-1");
    assert.equal(amk.stateful.environment, "aws://unknown-account/unknown-region");
  });
});

describe("vault configuration is validated at synth time", () => {
  function configError(context: Record<string, unknown>): InvalidInfraConfigError {
    try {
      createApp({
        context: { ...CDK_JSON_CONTEXT, ...context },
        outdir: mkdtempSync(join(tmpdir(), "amk-vault-cfg-")),
      });
    } catch (e) {
      assert.ok(e instanceof InvalidInfraConfigError, `expected InvalidInfraConfigError, got ${String(e)}`);
      return e;
    }
    assert.fail("createApp accepted a bad configuration");
  }

  it("rejects a malformed vault account and region, naming the key and the value", () => {
    const e = configError({ "amk:vaultAccount": "2222-2222-2222", "amk:vaultRegion": "Europe" });
    assert.equal(e.problems.length, 2, e.message);
    assert.match(e.message, /amk:vaultAccount: must be a 12-digit AWS account id \(got "2222-2222-2222"\)/);
    assert.match(e.message, /amk:vaultRegion: must be an AWS region such as eu-central-1 \(got "Europe"\)/);
  });

  it("rejects malformed role ARNs, one line each, with the value", () => {
    const e = configError({
      "amk:vaultWriterRoleArns": ["arn:aws:iam::12345:role/kit", "arn:aws:iam::111111111111:role/*"],
      "amk:unlockRoleArns": "arn:aws:sts::111111111111:assumed-role/unlock/session",
    });
    assert.equal(e.problems.length, 3, e.message);
    assert.match(e.message, /amk:vaultWriterRoleArns: "arn:aws:iam::12345:role\/kit" is not an IAM role ARN/);
    assert.match(
      e.message,
      /amk:vaultWriterRoleArns: "arn:aws:iam::111111111111:role\/\*" is not an IAM role ARN .*no wildcards/,
    );
    assert.match(
      e.message,
      /amk:unlockRoleArns: "arn:aws:sts::111111111111:assumed-role\/unlock\/session" is not an IAM role ARN/,
    );
  });

  it("rejects a role list of the wrong type and a broken JSON array", () => {
    assert.match(
      configError({ "amk:unlockRoleArns": 42 }).message,
      /amk:unlockRoleArns: must be a list of IAM role ARNs/,
    );
    assert.match(
      configError({ "amk:vaultWriterRoleArns": '["arn:aws:iam::111111111111:role/kit"' }).message,
      /amk:vaultWriterRoleArns: is not a valid JSON array/,
    );
  });

  it("rejects a vault region without any account (and the reverse)", () => {
    assert.match(
      configError({ "amk:vaultRegion": "eu-west-1" }).message,
      /amk:vaultAccount \/ amk:vaultRegion: the vault stack needs both an account and a region or neither .*region eu-west-1 without an account/,
    );
    assert.match(
      configError({ "amk:vaultAccount": "222222222222" }).message,
      /account 222222222222 without a region/,
    );
  });

  it("rejects an access role ARN that is not the vault stack's role or not in the vault account", () => {
    assert.match(
      configError({ "amk:vaultAccessRoleArn": "arn:aws:iam::222222222222:role/some-role" }).message,
      /amk:vaultAccessRoleArn: must be the vault stack's role amk-dev-vault-access/,
    );
    assert.match(
      configError({
        "amk:vaultAccount": "222222222222",
        "amk:vaultRegion": "eu-west-1",
        "amk:vaultAccessRoleArn": "arn:aws:iam::333333333333:role/amk-dev-vault-access",
      }).message,
      /amk:vaultAccessRoleArn: the role is in account 333333333333, but the vault is in account 222222222222/,
    );
    assert.match(
      configError({ "amk:vaultAccessRoleArn": "amk-dev-vault-access" }).message,
      /amk:vaultAccessRoleArn: must be an IAM role ARN/,
    );
  });

  it("rejects a misspelt vault key", () => {
    assert.match(
      configError({ "amk:vaultWriterRoles": ["arn:aws:iam::111111111111:role/kit"] }).message,
      /amk:vaultWriterRoles: unknown context key/,
    );
  });
});
