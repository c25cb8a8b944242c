/**
 * Stateful resources: what must outlive every deployment of the functions. Everything here is retained when the
 * stack or the resource is removed, because losing it loses wrap records, and without wrap records no document can
 * be decrypted again.
 *
 * - `EventStoreKey`: customer-managed KMS key (rotation on) that encrypts the event-store table at rest.
 * - `EventStore`: the DynamoDB table the event store is built on. Streams are partitions (`pk`), versions sort keys
 *   (`sk`); `census-1` / `census-2` are the sharded census index by key id (which wrap records use which MK version).
 * - `DeadLetterKey`, `LifecycleFailures`, `LifecycleUndelivered`: the dead-letter queues of the document-lifecycle
 *   function (events it refused or could not handle, with the reason) and of its EventBridge rule (events that could
 *   not be delivered to the function), encrypted with their own customer-managed key. Retained: they hold the only
 *   copy of events that still have to be dealt with.
 * - `AlertsKey`, `Alerts`: the SNS topic the functions raise alerts on (recovery, drills, rotation failures, admin
 *   lockouts), encrypted with its own customer-managed key, TLS only, with the email subscriptions of
 *   `amk:alertEmails`. Retained: its confirmed subscriptions are what people receive alerts by. The topic policy and
 *   the key policy also let CloudWatch publish, for this environment's alarms only (`amk-<env>-*`, the stateless
 *   stack's alarms).
 * - `BackupKey`, `BackupBucket`, `AccessLogs`: the bucket for event-store exports (written by the export code), with
 *   its own customer-managed key, versioning, object lock (default retention `amk:backupRetentionDays` days in
 *   `amk:backupLockMode`), TLS only, no public access, noncurrent versions expiring after the retention, and server
 *   access logs to `AccessLogs`. Retained. With `amk:backupBucketArn` and `amk:backupBucketKeyArn` (a bucket in the
 *   backup account, say) none of the three is created: the existing bucket and key are imported instead.
 */
import { CfnOutput, Duration, RemovalPolicy, Stack, Validations, type StackProps } from "aws-cdk-lib";
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  CfnBucket,
  ObjectLockRetention,
  ObjectOwnership,
  type IBucket,
} from "aws-cdk-lib/aws-s3";
import {
  AttributeType,
  BillingMode,
  ProjectionType,
  Table,
  TableEncryption,
  type ITable,
} from "aws-cdk-lib/aws-dynamodb";
import { PolicyStatement, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { Key, type IKey } from "aws-cdk-lib/aws-kms";
import { Topic, type ITopic } from "aws-cdk-lib/aws-sns";
import { EmailSubscription } from "aws-cdk-lib/aws-sns-subscriptions";
import { CfnQueue, Queue, QueueEncryption, type IQueue } from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import type { AmkConfig } from "./config.js";
import { alarmArnPattern, lifecycleRuleArn } from "./names.js";

/** What the stateless stack receives from this one. */
export interface EventStoreResources {
  readonly table: ITable;
  readonly key: IKey;
}

/** The dead-letter queues of the document-lifecycle path and the key that encrypts them. */
export interface DeadLetterResources {
  /**
   * On-failure destination of the document-lifecycle function's asynchronous invocations: one record per event that
   * failed after the retries (or grew too old), with the event and the error type and message.
   */
  readonly lifecycleFailures: IQueue;
  /** Dead-letter queue of the EventBridge rule's target: events EventBridge could not deliver to the function. */
  readonly lifecycleUndelivered: IQueue;
  /** Customer-managed key of both queues. */
  readonly key: IKey;
}

/** The alert topic and the key that encrypts it. */
export interface AlertResources {
  /** SNS topic of the alerts (`AMK_ALERT_TOPIC_ARN` of the functions that raise them). */
  readonly topic: ITopic;
  /** Its customer-managed key: a publisher needs kms:GenerateDataKey and kms:Decrypt on it. */
  readonly key: IKey;
}

/** The backup bucket of the event-store exports and its key (created here, or imported by configuration). */
export interface BackupResources {
  readonly bucket: IBucket;
  /** Its customer-managed key: a writer needs kms:GenerateDataKey (and kms:Decrypt for multipart uploads). */
  readonly key: IKey;
  /** The server access log bucket (absent for an imported bucket: its logging is its owner's business). */
  readonly accessLogs?: IBucket;
}

/** Server access logs of the backup bucket are kept for a year. */
export const ACCESS_LOG_RETENTION = Duration.days(365);
/** Noncurrent versions of exports outlive the object lock by this much before the lifecycle rule expires them. */
export const NONCURRENT_GRACE = Duration.days(30);

/** How long a dead letter is kept: the SQS maximum, so that a failure over a long weekend is still there. */
export const DEAD_LETTER_RETENTION = Duration.days(14);

export interface StatefulStackProps extends StackProps {
  readonly config: AmkConfig;
}

/** Names of the event-store table's key attributes and indexes: the event-store adapter's contract with the table. */
export const EVENT_STORE_SCHEMA = {
  partitionKey: "pk",
  sortKey: "sk",
  censusIndexes: [
    { indexName: "census-1", partitionKey: "gsi1pk", sortKey: "gsi1sk" },
    { indexName: "census-2", partitionKey: "gsi2pk", sortKey: "gsi2sk" },
  ],
} as const;

export class StatefulStack extends Stack {
  readonly eventStore: EventStoreResources;
  readonly deadLetters: DeadLetterResources;
  readonly alerts: AlertResources;
  readonly backups: BackupResources;

  constructor(scope: Construct, id: string, props: StatefulStackProps) {
    super(scope, id, props);
    const { environment } = props.config;

    const key = new Key(this, "EventStoreKey", {
      description: `ArquivoMate Keys (${environment}): encryption at rest of the event-store table (wrap records)`,
      alias: `alias/arquivomate-keys/${environment}/event-store`,
      enableKeyRotation: true,
      rotationPeriod: Duration.days(365),
      // A deleted key makes every backup of the table unreadable: never delete it with the stack.
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const table = new Table(this, "EventStore", {
      partitionKey: { name: EVENT_STORE_SCHEMA.partitionKey, type: AttributeType.STRING },
      sortKey: { name: EVENT_STORE_SCHEMA.sortKey, type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      encryption: TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    for (const gsi of EVENT_STORE_SCHEMA.censusIndexes) {
      table.addGlobalSecondaryIndex({
        indexName: gsi.indexName,
        partitionKey: { name: gsi.partitionKey, type: AttributeType.STRING },
        sortKey: { name: gsi.sortKey, type: AttributeType.STRING },
        projectionType: ProjectionType.ALL,
      });
    }

    this.eventStore = { table, key };
    this.deadLetters = this.createDeadLetters(props.config);
    this.alerts = this.createAlerts(props.config);
    this.backups = this.createBackups(props.config);
  }

  private createBackups(config: AmkConfig): BackupResources {
    const { environment, backups } = config;
    if (backups.imported !== undefined) {
      // A bucket that lives elsewhere (e.g. in the backup account): its versioning, lock, encryption and policy are
      // its owner's; this app only names it (and the export code gets its grants on it).
      const key = Key.fromKeyArn(this, "BackupKey", backups.imported.keyArn);
      const bucket = Bucket.fromBucketAttributes(this, "BackupBucket", {
        bucketArn: backups.imported.bucketArn,
        encryptionKey: key,
      });
      new CfnOutput(this, "BackupBucketName", {
        description: "Backup bucket of the event-store exports (imported: amk:backupBucketArn)",
        value: bucket.bucketName,
      });
      return { bucket, key };
    }

    const key = new Key(this, "BackupKey", {
      description: `ArquivoMate Keys (${environment}): encryption at rest of the event-store backups (exports)`,
      alias: `alias/arquivomate-keys/${environment}/backups`,
      enableKeyRotation: true,
      rotationPeriod: Duration.days(365),
      // Without it no backup can be read: retained like the bucket.
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // S3 server access logs cannot be written to an SSE-KMS bucket: this one uses SSE-S3.
    const accessLogs = new Bucket(this, "AccessLogs", {
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      lifecycleRules: [
        {
          id: "expire-access-logs",
          expiration: ACCESS_LOG_RETENTION,
          noncurrentVersionExpiration: Duration.days(1),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(accessLogs.node.defaultChild as CfnBucket).acknowledge({
      id: "AwsSolutions-S1",
      reason:
        "This is the server access log bucket of the backup bucket: logging it into itself (or into a further log " +
        "bucket) would only log the log deliveries. Versioned, TLS only, no public access, kept for a year.",
    });

    const retention = Duration.days(backups.retentionDays);
    const bucket = new Bucket(this, "BackupBucket", {
      versioned: true,
      objectLockEnabled: true,
      objectLockDefaultRetention:
        backups.lockMode === "COMPLIANCE"
          ? ObjectLockRetention.compliance(retention)
          : ObjectLockRetention.governance(retention),
      encryption: BucketEncryption.KMS,
      encryptionKey: key,
      // One data key per bucket and period instead of one KMS call per object.
      bucketKeyEnabled: true,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: "backup-bucket/",
      lifecycleRules: [
        {
          // An export overwritten or deleted stays readable (and locked) for the retention period, then goes.
          id: "expire-noncurrent-exports",
          noncurrentVersionExpiration: retention.plus(NONCURRENT_GRACE),
          abortIncompleteMultipartUploadAfter: Duration.days(7),
        },
        { id: "remove-expired-delete-markers", expiredObjectDeleteMarker: true },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    new CfnOutput(this, "BackupBucketName", {
      description:
        `Backup bucket of the event-store exports: versioned, object lock ${backups.lockMode} ` +
        `${backups.retentionDays} days, SSE-KMS with BackupKeyArn`,
      value: bucket.bucketName,
    });
    new CfnOutput(this, "BackupKeyArn", {
      description: "KMS key of the backup bucket",
      value: key.keyArn,
    });
    return { bucket, key, accessLogs };
  }

  private createAlerts(config: AmkConfig): AlertResources {
    const { environment } = config;
    // Its own key (not the AWS managed alias/aws/sns): a later CloudWatch alarm or EventBridge rule can only publish
    // to an encrypted topic if the key policy lets that service use the key, which a managed key's policy never does.
    // The default key policy defers to IAM: the publishers get GenerateDataKey/Decrypt in their own policies.
    const key = new Key(this, "AlertsKey", {
      description: `ArquivoMate Keys (${environment}): encryption at rest of the alert topic`,
      alias: `alias/arquivomate-keys/${environment}/alerts`,
      enableKeyRotation: true,
      rotationPeriod: Duration.days(365),
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const topic = new Topic(this, "Alerts", {
      displayName: `ArquivoMate Keys (${environment}) alerts`,
      masterKey: key,
      // A topic policy denying every call without TLS (aws:SecureTransport false).
      enforceSSL: true,
    });
    topic.applyRemovalPolicy(RemovalPolicy.RETAIN);
    // CloudWatch alarms publish as the service, which needs the topic policy and the key policy to admit it. Only for
    // this environment's alarms in this account (the stateless stack names every alarm amk-<env>-...).
    const fromOurAlarms = {
      ArnLike: { "aws:SourceArn": alarmArnPattern(this, config) },
      StringEquals: { "aws:SourceAccount": this.account },
    };
    topic.addToResourcePolicy(
      new PolicyStatement({
        sid: "CloudWatchAlarms",
        principals: [new ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["sns:Publish"],
        resources: [topic.topicArn],
        conditions: fromOurAlarms,
      }),
    );
    key.addToResourcePolicy(
      new PolicyStatement({
        sid: "CloudWatchAlarms",
        principals: [new ServicePrincipal("cloudwatch.amazonaws.com")],
        // As the SNS documentation gives them for event sources publishing to an encrypted topic.
        actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
        resources: ["*"], // in a key policy "*" is this key
        conditions: fromOurAlarms,
      }),
    );
    for (const email of config.alertEmails) {
      // Each address confirms its subscription from the email SNS sends it; until then it receives nothing.
      topic.addSubscription(new EmailSubscription(email));
    }

    new CfnOutput(this, "AlertTopicArn", {
      description:
        "SNS topic of the alerts (recovery, drills, rotation failures, administrator lockouts); subscribe with amk:alertEmails or directly",
      value: topic.topicArn,
    });
    return { topic, key };
  }

  private createDeadLetters(config: AmkConfig): DeadLetterResources {
    const { environment } = config;
    const ruleArn = lifecycleRuleArn(this, config);

    // Its own key, not the event store's: whoever reads dead letters (operations) needs kms:Decrypt on this key and
    // must not thereby be able to read the wrap records.
    const key = new Key(this, "DeadLetterKey", {
      description: `ArquivoMate Keys (${environment}): encryption at rest of the document-lifecycle dead-letter queues`,
      alias: `alias/arquivomate-keys/${environment}/dead-letters`,
      enableKeyRotation: true,
      rotationPeriod: Duration.days(365),
      // Messages still on the queues are unreadable without it.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // EventBridge writes to the rule's dead-letter queue as itself (not with a role of ours): the key policy must let
    // it use the key, for this one rule only. The function's on-failure destination needs nothing here: Lambda sends
    // with the function's role, which gets the key in its IAM policy.
    key.addToResourcePolicy(
      new PolicyStatement({
        sid: "EventBridgeRuleDeadLetters",
        principals: [new ServicePrincipal("events.amazonaws.com")],
        actions: ["kms:GenerateDataKey", "kms:Decrypt"],
        resources: ["*"], // in a key policy "*" is this key
        conditions: { ArnEquals: { "aws:SourceArn": ruleArn } },
      }),
    );

    const queueProps = {
      encryption: QueueEncryption.KMS,
      encryptionMasterKey: key,
      // Reuse a data key for 5 minutes (the default): dead letters are rare, KMS calls stay few.
      dataKeyReuse: Duration.minutes(5),
      enforceSSL: true,
      retentionPeriod: DEAD_LETTER_RETENTION,
      removalPolicy: RemovalPolicy.RETAIN,
    };
    const lifecycleFailures = new Queue(this, "LifecycleFailures", queueProps);
    const lifecycleUndelivered = new Queue(this, "LifecycleUndelivered", queueProps);
    lifecycleUndelivered.addToResourcePolicy(
      new PolicyStatement({
        sid: "EventBridgeRuleDeadLetters",
        principals: [new ServicePrincipal("events.amazonaws.com")],
        actions: ["sqs:SendMessage"],
        resources: [lifecycleUndelivered.queueArn],
        conditions: { ArnEquals: { "aws:SourceArn": ruleArn } },
      }),
    );

    for (const [queue, what] of [
      [lifecycleFailures, "the document-lifecycle function's on-failure destination"],
      [lifecycleUndelivered, "the document-lifecycle rule's dead-letter queue"],
    ] as const) {
      // On the queue resource itself, not the construct: its queue policy must not carry the acknowledgement.
      Validations.of(queue.node.defaultChild as CfnQueue).acknowledge({
        id: "AwsSolutions-SQS3",
        reason:
          `This queue is itself a dead-letter queue (${what}): its messages are read and redriven by an operator ` +
          "(see docs/infrastructure.md); a dead-letter queue behind it would only move unread failures further away.",
      });
    }

    new CfnOutput(this, "LifecycleFailuresQueueUrl", {
      description:
        "Dead-letter queue of the document-lifecycle function: refused or failed events with the error (the reason)",
      value: lifecycleFailures.queueUrl,
    });
    new CfnOutput(this, "LifecycleUndeliveredQueueUrl", {
      description: "Dead-letter queue of the document-lifecycle rule: events EventBridge could not deliver",
      value: lifecycleUndelivered.queueUrl,
    });

    return { lifecycleFailures, lifecycleUndelivered, key };
  }
}
