/**
 * The rotation state machine (Standard):
 *
 *   StartRotation -> PlanRewrap -> HasWork? --yes--> RewrapShards (Map over census shards) -> PlanRewrap
 *                                           --no---> Census -> CensusZero? --yes--> CompleteRotation -> Done
 *                                                                          --no---> Wait 10 s -> PlanRewrap
 *   (CensusZero: no record left on an old version, counted after the writer settle time since the activation)
 *   any error (after retries) -> RecordFailure -> Failed
 *
 * Work items are (old version, census shard) pairs, a few dozen at most whatever the number of documents, so the
 * payloads and the history stay small without a Distributed Map or an S3 manifest: each shard task re-wraps until
 * its time budget is used and the loop plans again from the census index (docs/decisions/0006-rotation-workflow.md).
 * The workspace always keeps an active key: StartRotation makes the new version active (once a kit carries it), and a failure leaves
 * every version usable.
 */
import { Duration } from "aws-cdk-lib";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as logs from "aws-cdk-lib/aws-logs";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import * as tasks from "aws-cdk-lib/aws-stepfunctions-tasks";
import { Construct } from "constructs";

export interface RotationWorkflowFunctions {
  readonly start: lambda.IFunction;
  readonly plan: lambda.IFunction;
  readonly rewrapShard: lambda.IFunction;
  readonly census: lambda.IFunction;
  readonly complete: lambda.IFunction;
  readonly failure: lambda.IFunction;
}

export interface RotationWorkflowProps {
  readonly functions: RotationWorkflowFunctions;
  /** Shard tasks running at once (default 8). */
  readonly shardConcurrency?: number;
  readonly logGroup?: logs.ILogGroup;
}

/** Errors worth retrying: the HSM or DynamoDB busy, lost races, Lambda throttling. */
export const RETRYABLE_ERRORS = [
  "HsmUnavailableError",
  "EventStoreUnavailableError",
  "ConcurrentUpdateError",
  "WriteWindowExpiredError",
  "SessionKeyLostError",
  "RotationNotSettledError",
  "VaultUnavailableError",
  "Lambda.TooManyRequestsException",
  "Lambda.ServiceException",
  "Lambda.SdkClientException",
];

/**
 * The Retry of the RecordFailure tasks (rotation and recovery): any error, 8 attempts from 5 s doubling up to 5 min
 * (about 20 minutes in all). Recording a failure is idempotent, and it must not be lost to a moment of trouble: an
 * unrecorded failure leaves a rotation running, or a recovery holding its lock.
 */
export const RECORD_FAILURE_RETRY: sfn.RetryProps = {
  errors: ["States.ALL"],
  interval: Duration.seconds(5),
  backoffRate: 2,
  maxAttempts: 8,
  maxDelay: Duration.minutes(5),
  jitterStrategy: sfn.JitterType.FULL,
};

export class RotationWorkflow extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: RotationWorkflowProps) {
    super(scope, id);
    const f = props.functions;
    const invoke = (name: string, fn: lambda.IFunction, payload?: sfn.TaskInput) => {
      const t = new tasks.LambdaInvoke(this, name, {
        lambdaFunction: fn,
        payload: payload ?? sfn.TaskInput.fromObject({ "workspaceId.$": "$.workspaceId" }),
        payloadResponseOnly: true,
        retryOnServiceExceptions: false,
      });
      t.addRetry({
        errors: RETRYABLE_ERRORS,
        interval: Duration.seconds(2),
        backoffRate: 2,
        maxAttempts: 6,
        maxDelay: Duration.seconds(60),
        jitterStrategy: sfn.JitterType.FULL,
      });
      return t;
    };

    const failed = new sfn.Fail(this, "Failed", {
      error: "RotationFailed",
      cause: "the rotation stopped; see RotationFailed in the workspace stream",
    });
    const recordFailureTask = new tasks.LambdaInvoke(this, "RecordFailure", {
      lambdaFunction: f.failure,
      payload: sfn.TaskInput.fromObject({ "workspaceId.$": "$.workspaceId", "error.$": "$.error" }),
      payloadResponseOnly: true,
    });
    recordFailureTask.addRetry(RECORD_FAILURE_RETRY);
    const recordFailure = recordFailureTask.next(failed);

    const start = invoke("StartRotation", f.start);
    const plan = invoke("PlanRewrap", f.plan);
    const shard = invoke(
      "RewrapShard",
      f.rewrapShard,
      sfn.TaskInput.fromObject({
        "workspaceId.$": "$.workspaceId",
        "fromKeyId.$": "$.fromKeyId",
        "shard.$": "$.shard",
      }),
    );
    const shards = new sfn.Map(this, "RewrapShards", {
      itemsPath: "$.items",
      maxConcurrency: props.shardConcurrency ?? 8,
      resultPath: sfn.JsonPath.DISCARD,
    }).itemProcessor(shard);
    const census = invoke("Census", f.census);
    const complete = invoke("CompleteRotation", f.complete);
    const done = new sfn.Succeed(this, "Done");

    const catchTo = { resultPath: "$.error" };
    for (const t of [start, plan, census, complete]) t.addCatch(recordFailure, catchTo);
    shards.addCatch(recordFailure, catchTo);

    const definition = start.next(plan).next(
      new sfn.Choice(this, "HasWork")
        .when(sfn.Condition.booleanEquals("$.hasWork", true), shards.next(plan))
        .otherwise(
          census.next(
            new sfn.Choice(this, "CensusZero")
              // Zero, counted after the writer settle time (docs/rotation.md, "Writers in flight").
              .when(
                sfn.Condition.and(
                  sfn.Condition.numberEquals("$.remaining", 0),
                  sfn.Condition.booleanEquals("$.settled", true),
                ),
                complete.next(done),
              )
              // The census index follows the streams within moments on DynamoDB: give it time, then plan again.
              .otherwise(
                new sfn.Wait(this, "LetTheIndexCatchUp", {
                  time: sfn.WaitTime.duration(Duration.seconds(10)),
                }).next(plan),
              ),
          ),
        ),
    );

    this.stateMachine = new sfn.StateMachine(this, "StateMachine", {
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      stateMachineType: sfn.StateMachineType.STANDARD,
      tracingEnabled: true,
      timeout: Duration.days(7),
      ...(props.logGroup
        ? { logs: { destination: props.logGroup, level: sfn.LogLevel.ERROR, includeExecutionData: false } }
        : {}),
    });
  }
}
