/**
 * The vault: where recovery kits (`amk/<workspaceId>/kit`) and administrators' factor secrets
 * (`amk/<workspaceId>/factor/<adminId>`) are kept, in Secrets Manager, apart from the event store and its backups
 * (DESIGN.md section 4 point 7). The stack can go to another account and/or region than the service
 * (`amk:vaultAccount`, `amk:vaultRegion`); it shares nothing with the stateful and stateless stacks.
 *
 * Secrets Manager cannot hold per-workspace secrets in advance (workspaces are created at run time, and the service
 * creates their secrets with CreateSecret / PutSecretValue), so this stack defines who may create and use them:
 *
 * - `VaultKey`: customer-managed KMS key of the vault account (rotation on, retained). Its key policy lets the
 *   account root administer it, and nobody but the access role use it, and only through Secrets Manager in the
 *   vault's region for secrets under `amk/`. (No `kms:*` for the root: IAM policies in the vault account cannot hand
 *   out decryption.)
 * - `VaultAccessRole` (`amk-<env>-vault-access`): the role the service's roles assume (cross-account ready). Who is
 *   calling is carried by the session tag `amk:vault-caller` (`writer` or `unlock`), which the trust policy lets
 *   each configured role set to its own value only; every permission names that tag. Writers create and write kits
 *   and factor secrets and read kits; unlock roles read factor secrets and kits. Never `DeleteSecret`, never
 *   `UntagResource`, no resource outside `arn:<partition>:secretsmanager:<vaultRegion>:<vaultAccount>:secret:amk/`.
 *   A secret may only be created with the vault key and tagged `amk:vault` = `kits` or `factors` by its name.
 *   One more secret, by its exact name: the backup signing key `amk/backup/signing-key` (Ed25519, PKCS#8; the export
 *   function creates it on its first export, untagged, with the vault key), written by writers, read by writers (the
 *   exporter signs with it) and unlock roles (the restoration test derives the public keys of its versions from it
 *   when they are not pinned with `amk:backupPublicKeys`).
 *
 * With no configured role (`amk:vaultWriterRoleArns`, `amk:unlockRoleArns` both empty: there are no kit or unlock
 * functions yet) the role trusts only the vault account root, without `sts:TagSession`: a placeholder whose sessions
 * carry no caller tag and so reach no secret.
 */
import {
  ArnFormat,
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  Validations,
  type StackProps,
} from "aws-cdk-lib";
import {
  AccountRootPrincipal,
  ArnPrincipal,
  CompositePrincipal,
  Policy,
  PolicyDocument,
  PolicyStatement,
  Role,
} from "aws-cdk-lib/aws-iam";
import { Key } from "aws-cdk-lib/aws-kms";
import type { Construct } from "constructs";
import { BACKUP_SIGNING_KEY_SECRET } from "../../core/backup/signing.js";
import type { AmkConfig } from "./config.js";
import { vaultAccessRoleName } from "./names.js";

/** Tag every vault secret carries from its creation: what it holds. */
export const VAULT_TAG_KEY = "amk:vault";
export const VAULT_TAG_VALUES = { kits: "kits", factors: "factors" } as const;

/** Session tag naming the kind of caller of an access-role session, set by the caller when it assumes the role. */
export const CALLER_TAG_KEY = "amk:vault-caller";
export const CALLER_TAG_VALUES = { writer: "writer", unlock: "unlock" } as const;

/** What the access role may do with the vault key (through Secrets Manager only). */
export const VAULT_KEY_USE_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"];
/**
 * What the vault account root may do with the key: administer it, not use it. CDK's administrator actions, with
 * `kms:CreateAlias` instead of `kms:Create*` (which would include `kms:CreateGrant`, a way to use the key).
 */
export const VAULT_KEY_ADMIN_ACTIONS = [
  "kms:CreateAlias",
  "kms:Describe*",
  "kms:Enable*",
  "kms:List*",
  "kms:Put*",
  "kms:Update*",
  "kms:Revoke*",
  "kms:Disable*",
  "kms:Get*",
  "kms:Delete*",
  "kms:TagResource",
  "kms:UntagResource",
  "kms:ScheduleKeyDeletion",
  "kms:CancelKeyDeletion",
];

/** Secrets Manager actions per grant. `DeleteSecret`, `UntagResource`, `PutResourcePolicy`: never. */
export const VAULT_ACTIONS = {
  create: ["secretsmanager:CreateSecret"],
  tag: ["secretsmanager:TagResource"],
  /** Writing versions: `putSecret` of the vault adapter, and moving its labels. */
  write: [
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
    "secretsmanager:ListSecretVersionIds",
  ],
  read: [
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:ListSecretVersionIds",
  ],
} as const;

/** Secret name patterns, as matched by `secretsmanager:Name` on CreateSecret. */
export const VAULT_SECRET_NAMES = {
  all: "amk/*",
  kits: "amk/*/kit",
  factors: "amk/*/factor/*",
  /** Not a pattern: the one backup signing key (`BACKUP_SIGNING_KEY_SECRET` of core/backup). */
  backupSigningKey: BACKUP_SIGNING_KEY_SECRET,
} as const;
/** The same as the end of an existing secret's ARN, which Secrets Manager suffixes with `-` and 6 characters. */
const KIT_SECRET_ARN_SUFFIX = "amk/*/kit-??????";
const FACTOR_SECRET_ARN_SUFFIX = "amk/*/factor/*";
const BACKUP_SIGNING_KEY_ARN_SUFFIX = `${VAULT_SECRET_NAMES.backupSigningKey}-??????`;

export interface VaultStackProps extends StackProps {
  readonly config: AmkConfig;
}

export class VaultStack extends Stack {
  readonly key: Key;
  readonly accessRole: Role;

  constructor(scope: Construct, id: string, props: VaultStackProps) {
    super(scope, id, props);
    const { environment, vault } = props.config;
    const writers = vault.writerRoleArns;
    const unlockers = vault.unlockRoleArns;
    const callers = [...new Set([...writers, ...unlockers])].sort();

    const secretArn = (suffix: string): string =>
      this.formatArn({
        service: "secretsmanager",
        resource: "secret",
        resourceName: suffix,
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      });
    const anyVaultSecret = secretArn(VAULT_SECRET_NAMES.all);
    const kitSecrets = secretArn(KIT_SECRET_ARN_SUFFIX);
    const factorSecrets = secretArn(FACTOR_SECRET_ARN_SUFFIX);
    const backupSigningKey = secretArn(BACKUP_SIGNING_KEY_ARN_SUFFIX);

    this.accessRole = new Role(this, "VaultAccessRole", {
      roleName: vaultAccessRoleName(props.config),
      description:
        callers.length === 0
          ? `ArquivoMate Keys (${environment}): vault access. PLACEHOLDER: no service role configured ` +
            "(amk:vaultWriterRoleArns, amk:unlockRoleArns); trusts the vault account root only, and its sessions " +
            "carry no caller tag, so they reach no secret"
          : `ArquivoMate Keys (${environment}): vault access for the kit (writer) and unlock roles of the service`,
      assumedBy:
        callers.length === 0
          ? new AccountRootPrincipal()
          : new CompositePrincipal(...callers.map((arn) => new ArnPrincipal(arn))),
      maxSessionDuration: Duration.hours(1),
    });
    // Each configured role may tag its session with its own kind only (a role in both lists: with either).
    // Without the tag a session can do nothing, so sts:AssumeRole itself needs no condition.
    for (const [sid, roles, value] of [
      ["TagSessionAsWriter", writers, CALLER_TAG_VALUES.writer],
      ["TagSessionAsUnlock", unlockers, CALLER_TAG_VALUES.unlock],
    ] as const) {
      if (roles.length === 0) continue;
      this.accessRole.assumeRolePolicy?.addStatements(
        new PolicyStatement({
          sid,
          principals: roles.map((arn) => new ArnPrincipal(arn)),
          actions: ["sts:TagSession"],
          conditions: {
            StringEquals: { [`aws:RequestTag/${CALLER_TAG_KEY}`]: value },
            "ForAllValues:StringEquals": { "aws:TagKeys": [CALLER_TAG_KEY] },
          },
        }),
      );
    }

    this.key = new Key(this, "VaultKey", {
      description: `ArquivoMate Keys (${environment}): encryption of the vault's recovery kits and factor secrets`,
      alias: `alias/arquivomate-keys/${environment}/vault`,
      enableKeyRotation: true,
      rotationPeriod: Duration.days(365),
      // Deleting it makes every kit and factor secret unreadable: never delete it with the stack.
      removalPolicy: RemovalPolicy.RETAIN,
      // The whole key policy (it replaces CDK's default, which would give the root kms:*).
      policy: new PolicyDocument({
        statements: [
          new PolicyStatement({
            sid: "AdministerKey",
            principals: [new AccountRootPrincipal()],
            actions: VAULT_KEY_ADMIN_ACTIONS,
            resources: ["*"], // in a key policy "*" is this key
          }),
          new PolicyStatement({
            sid: "UseKeyThroughSecretsManager",
            principals: [this.accessRole],
            actions: VAULT_KEY_USE_ACTIONS,
            resources: ["*"],
            conditions: {
              // As CDK writes it for its own Secrets Manager grants.
              StringEquals: { "kms:ViaService": `secretsmanager.${this.region}.amazonaws.com` },
              // Secrets Manager puts the secret's ARN in the encryption context of every KMS request it makes.
              StringLike: { "kms:EncryptionContext:SecretARN": anyVaultSecret },
            },
          }),
        ],
      }),
    });

    const caller = (...kinds: string[]) => ({
      [`aws:PrincipalTag/${CALLER_TAG_KEY}`]: kinds.length === 1 ? kinds[0] : kinds,
    });
    const createStatement = (sid: string, namePattern: string, tagValue: string) =>
      new PolicyStatement({
        sid,
        actions: [...VAULT_ACTIONS.create],
        // The ARN of a secret being created is matched by `amk/*` and its name by the condition.
        resources: [anyVaultSecret],
        conditions: {
          StringEquals: {
            ...caller(CALLER_TAG_VALUES.writer),
            [`aws:RequestTag/${VAULT_TAG_KEY}`]: tagValue,
          },
          StringLike: { "secretsmanager:Name": namePattern },
          ArnEquals: { "secretsmanager:KmsKeyArn": this.key.keyArn },
          "ForAllValues:StringEquals": { "aws:TagKeys": [VAULT_TAG_KEY] },
        },
      });
    // TagResource is authorised for the tags of a CreateSecret too (before the secret has tags); afterwards a
    // secret can only be tagged with the class it already has.
    const tagStatement = (sid: string, tagValue: string) =>
      new PolicyStatement({
        sid,
        actions: [...VAULT_ACTIONS.tag],
        resources: [anyVaultSecret],
        conditions: {
          StringEquals: {
            ...caller(CALLER_TAG_VALUES.writer),
            [`aws:RequestTag/${VAULT_TAG_KEY}`]: tagValue,
          },
          StringEqualsIfExists: { [`aws:ResourceTag/${VAULT_TAG_KEY}`]: tagValue },
          "ForAllValues:StringEquals": { "aws:TagKeys": [VAULT_TAG_KEY] },
        },
      });
    // `...IfExists` on the resource tag: a secret that does not exist yet has no tags, and the vault adapter relies
    // on ResourceNotFoundException (not AccessDenied) to create it on the first put and to tell a missing secret.
    const useStatement = (
      sid: string,
      actions: readonly string[],
      resource: string,
      tagValue: string,
      ...kinds: string[]
    ) =>
      new PolicyStatement({
        sid,
        actions: [...actions],
        resources: [resource],
        conditions: {
          StringEquals: caller(...kinds),
          StringEqualsIfExists: { [`aws:ResourceTag/${VAULT_TAG_KEY}`]: tagValue },
        },
      });

    const { writer, unlock } = CALLER_TAG_VALUES;
    const { kits, factors } = VAULT_TAG_VALUES;
    const policy = new Policy(this, "VaultAccessPolicy", {
      roles: [this.accessRole],
      statements: [
        // Kits: written by the writers, read by writers and unlock roles.
        createStatement("CreateKitSecrets", VAULT_SECRET_NAMES.kits, kits),
        tagStatement("TagKitSecrets", kits),
        useStatement("WriteKitSecrets", VAULT_ACTIONS.write, kitSecrets, kits, writer),
        useStatement("ReadKitSecrets", VAULT_ACTIONS.read, kitSecrets, kits, writer, unlock),
        // Factor secrets: written (at enrollment) by the writers, read by the unlock roles only.
        createStatement("CreateFactorSecrets", VAULT_SECRET_NAMES.factors, factors),
        tagStatement("TagFactorSecrets", factors),
        useStatement("WriteFactorSecrets", VAULT_ACTIONS.write, factorSecrets, factors, writer),
        useStatement("ReadFactorSecrets", VAULT_ACTIONS.read, factorSecrets, factors, unlock),
        // The backup signing key: one secret by its exact name, created untagged on the first export (the vault
        // adapter tags kits and factor secrets only), never deleted; no other secret can match these statements.
        new PolicyStatement({
          sid: "CreateBackupSigningKey",
          actions: [...VAULT_ACTIONS.create],
          resources: [anyVaultSecret],
          conditions: {
            StringEquals: {
              ...caller(writer),
              "secretsmanager:Name": VAULT_SECRET_NAMES.backupSigningKey,
            },
            ArnEquals: { "secretsmanager:KmsKeyArn": this.key.keyArn },
            // Created without tags: no amk:vault class can be claimed for it.
            Null: { "aws:TagKeys": "true" },
          },
        }),
        new PolicyStatement({
          sid: "WriteBackupSigningKey",
          actions: [...VAULT_ACTIONS.write],
          resources: [backupSigningKey],
          conditions: { StringEquals: caller(writer) },
        }),
        new PolicyStatement({
          sid: "ReadBackupSigningKey",
          actions: [...VAULT_ACTIONS.read],
          resources: [backupSigningKey],
          conditions: { StringEquals: caller(writer, unlock) },
        }),
      ],
    });

    // cdk-nag AwsSolutions-IAM5: the resources are name patterns. Acknowledged one by one, on the policy only.
    const reasons: Record<string, string> = {
      [anyVaultSecret]:
        "CreateSecret/TagResource on the vault's amk/ prefix: per-workspace secrets are created at run time, so " +
        "their ARNs (with the 6 random characters Secrets Manager appends) cannot be listed; the conditions pin " +
        "the name (secretsmanager:Name amk/*/kit or amk/*/factor/*), the vault key (secretsmanager:KmsKeyArn), " +
        "the amk:vault tag and the caller's session tag.",
      [kitSecrets]:
        "Recovery kits of all workspaces (amk/<workspaceId>/kit plus the 6-character suffix): workspaces are " +
        "created at run time; limited to the writer/unlock session tags and to secrets tagged amk:vault=kits.",
      [factorSecrets]:
        "Factor secrets of all workspaces' administrators (amk/<workspaceId>/factor/<adminId> plus the suffix): " +
        "created at run time, at enrollment; reads limited to the unlock session tag, writes to the writer tag, " +
        "secrets tagged amk:vault=factors.",
    };
    for (const [arn, reason] of Object.entries(reasons)) {
      Validations.of(policy.node.defaultChild as Construct).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${flattenForNag(this.resolve(arn))}]`,
        reason,
      });
    }

    new CfnOutput(this, "VaultAccessRoleArn", {
      description:
        "Role the service assumes for the vault (session tag amk:vault-caller=writer|unlock); configure the " +
        "service with it: amk:vaultAccessRoleArn",
      value: this.accessRole.roleArn,
    });
    new CfnOutput(this, "VaultKeyArn", {
      description: "KMS key every vault secret must be created with (CreateSecret KmsKeyId = this ARN)",
      value: this.key.keyArn,
    });
  }
}

/**
 * A resolved CloudFormation value as cdk-nag writes it in a finding id (its `flattenCfnReference`): strings as they
 * are, `Fn::Join` joined, `Ref` as `<Name>`, `Fn::GetAtt` as `<Resource.Attribute>`.
 */
export function flattenForNag(value: unknown): string {
  if (typeof value === "string") return value.replace(/\$\{/g, "<").replace(/\}/g, ">");
  if (value !== null && typeof value === "object") {
    const v = value as Record<string, unknown>;
    if (Array.isArray(v["Fn::Join"])) {
      const [delimiter, items] = v["Fn::Join"] as [string, unknown[]];
      return items.map(flattenForNag).join(delimiter);
    }
    if (v.Ref !== undefined) return `<${flattenForNag(v.Ref)}>`;
    if (Array.isArray(v["Fn::GetAtt"])) {
      const [resource, attribute] = v["Fn::GetAtt"] as [unknown, unknown];
      return `<${flattenForNag(resource)}.${flattenForNag(attribute)}>`;
    }
  }
  return JSON.stringify(value);
}
