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
 *   `amk:alertEmails`. Retained: its confirmed subscriptions are what people receive alerts by.
 */
import { CfnOutput, Duration, RemovalPolicy, Stack, Validations, type StackProps } from "aws-cdk-lib";
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
import { lifecycleRuleArn } from "./names.js";

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
