/**
 * The recovery state machine (Standard), started from the console or `amk recover start` with non-secret input
 * only: `{"workspaceId", "requestedBy", "reason", "kitVaultVersionId"?}`.
 *
 *   Validate -> Unlocked? --no--> AwaitUnlock (task token; the unlock function resumes it) --+
 *                         --yes (a resumed recovery)----------------------------------------+-> Rotate
 *   Rotate -> PlanRewrap -> HasWork? --yes--> RewrapShards (Map) -> PlanRewrap
 *                                    --no---> Census -> CensusZero? --no--> Wait -> PlanRewrap
 *                                                                   --yes-> Verify -> InvalidateTokens -> Complete
 *   any error (after retries) -> Failed<Step> (names the step) -> RecordFailure -> Failed
 *
 * The re-wrap reuses the rotation workflow's functions (plan, shard, census). The passphrase and the second factor
 * never enter the execution: AwaitUnlock hands its task token to the waiting function, and the unlock function,
 * called by the administrator, resumes the execution with key ids and KCVs only.
 */
import { Duration } from "aws-cdk-lib";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as logs from "aws-cdk-lib/aws-logs";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import * as tasks from "aws-cdk-lib/aws-stepfunctions-tasks";
import { Construct } from "constructs";
import { RECORD_FAILURE_RETRY, RETRYABLE_ERRORS } from "./rotation-workflow.js";

export interface RecoveryWorkflowFunctions {
  readonly start: lambda.IFunction;
  readonly awaitUnlock: lambda.IFunction;
  readonly rotate: lambda.IFunction;
  readonly plan: lambda.IFunction;
  readonly rewrapShard: lambda.IFunction;
  readonly census: lambda.IFunction;
  readonly verify: lambda.IFunction;
  readonly invalidateTokens: lambda.IFunction;
  readonly complete: lambda.IFunction;
  readonly failure: lambda.IFunction;
}

export interface RecoveryWorkflowProps {
  readonly functions: RecoveryWorkflowFunctions;
  /** How long the execution waits for an administrator to unlock the kit (default 24 h). */
  readonly unlockTimeout?: Duration;
  readonly shardConcurrency?: number;
  readonly logGroup?: logs.ILogGroup;
  readonly logLevel?: sfn.LogLevel;
}

export class RecoveryWorkflow extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: RecoveryWorkflowProps) {
    super(scope, id);
    const f = props.functions;
    const step = (recoveryId: boolean) =>
      sfn.TaskInput.fromObject({
        "workspaceId.$": "$.workspaceId",
        ...(recoveryId ? { "recoveryId.$": "$.recovery.recoveryId" } : {}),
      });
    const invoke = (name: string, fn: lambda.IFunction, payload: sfn.TaskInput, resultPath: string) => {
      const t = new tasks.LambdaInvoke(this, name, {
        lambdaFunction: fn,
        payload,
        payloadResponseOnly: true,
        retryOnServiceExceptions: false,
        resultPath,
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
      error: "RecoveryFailed",
      cause: "the recovery stopped; see RecoveryFailed in the workspace stream (old keys are untouched)",
    });
    const recordFailureTask = new tasks.LambdaInvoke(this, "RecordFailure", {
      lambdaFunction: f.failure,
      payload: sfn.TaskInput.fromObject({
        "workspaceId.$": "$.workspaceId",
        "executionName.$": "$$.Execution.Name",
        "step.$": "$.failedStep",
        "error.$": "$.error",
      }),
      payloadResponseOnly: true,
      resultPath: sfn.JsonPath.DISCARD,
    });
    // Releasing the lock must not be lost to a moment of trouble (the HSM or the store busy at the function's
    // start): any error is retried for about 20 minutes; recording is idempotent (only a running recovery of this
    // execution is closed).
    recordFailureTask.addRetry(RECORD_FAILURE_RETRY);
    const recordFailure = recordFailureTask.next(failed);
    const marks = new Map<string, sfn.Pass>();
    const catchAs = (state: sfn.TaskStateBase | sfn.Map, stepName: string) => {
      let mark = marks.get(stepName);
      if (!mark) {
        mark = new sfn.Pass(this, `Failed-${stepName}`, {
          result: sfn.Result.fromString(stepName),
          resultPath: "$.failedStep",
        });
        mark.next(recordFailure);
        marks.set(stepName, mark);
      }
      state.addCatch(mark, { resultPath: "$.error" });
    };

    const validate = invoke(
      "Validate",
      f.start,
      sfn.TaskInput.fromObject({ "request.$": "$", "executionName.$": "$$.Execution.Name" }),
      "$.recovery",
    );
    catchAs(validate, "validate");

    const awaitUnlock = new tasks.LambdaInvoke(this, "AwaitUnlock", {
      lambdaFunction: f.awaitUnlock,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: sfn.TaskInput.fromObject({
        "workspaceId.$": "$.workspaceId",
        "recoveryId.$": "$.recovery.recoveryId",
        taskToken: sfn.JsonPath.taskToken,
      }),
      resultPath: "$.unlock",
      taskTimeout: sfn.Timeout.duration(props.unlockTimeout ?? Duration.hours(24)),
    });
    // The function only records the wait (a retry records it again with the new token): transient HSM and store
    // errors are retried like Lambda's own.
    awaitUnlock.addRetry({
      errors: RETRYABLE_ERRORS,
      interval: Duration.seconds(2),
      backoffRate: 2,
      maxAttempts: 4,
    });
    catchAs(awaitUnlock, "await-unlock");

    const rotate = invoke("Rotate", f.rotate, step(true), "$.rotation");
    catchAs(rotate, "rotate");
    const plan = invoke("PlanRewrap", f.plan, step(false), "$.plan");
    catchAs(plan, "rewrap");
    const shard = new tasks.LambdaInvoke(this, "RewrapShard", {
      lambdaFunction: f.rewrapShard,
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      payload: sfn.TaskInput.fromObject({
        "workspaceId.$": "$.workspaceId",
        "fromKeyId.$": "$.fromKeyId",
        "shard.$": "$.shard",
      }),
    });
    shard.addRetry({
      errors: RETRYABLE_ERRORS,
      interval: Duration.seconds(2),
      backoffRate: 2,
      maxAttempts: 6,
      maxDelay: Duration.seconds(60),
      jitterStrategy: sfn.JitterType.FULL,
    });
    const shards = new sfn.Map(this, "RewrapShards", {
      itemsPath: "$.plan.items",
      maxConcurrency: props.shardConcurrency ?? 8,
      resultPath: sfn.JsonPath.DISCARD,
    }).itemProcessor(shard);
    catchAs(shards, "rewrap");
    const census = invoke("Census", f.census, step(false), "$.census");
    catchAs(census, "census");
    const verify = invoke("Verify", f.verify, step(true), "$.verify");
    catchAs(verify, "verify");
    const invalidate = invoke("InvalidateTokens", f.invalidateTokens, step(true), "$.tokens");
    catchAs(invalidate, "invalidate-tokens");
    const complete = invoke("Complete", f.complete, step(true), "$.result");
    catchAs(complete, "complete");
    const done = new sfn.Succeed(this, "Done", { outputPath: "$.result" });

    rotate.next(plan);
    plan.next(
      new sfn.Choice(this, "HasWork")
        .when(sfn.Condition.booleanEquals("$.plan.hasWork", true), shards.next(plan))
        .otherwise(
          census.next(
            new sfn.Choice(this, "CensusZero")
              // Zero, counted after the writer settle time (docs/rotation.md, "Writers in flight").
              .when(
                sfn.Condition.and(
                  sfn.Condition.numberEquals("$.census.remaining", 0),
                  sfn.Condition.booleanEquals("$.census.settled", true),
                ),
                verify.next(invalidate).next(complete).next(done),
              )
              .otherwise(
                new sfn.Wait(this, "LetTheIndexCatchUp", {
                  time: sfn.WaitTime.duration(Duration.seconds(10)),
                }).next(plan),
              ),
          ),
        ),
    );
    const definition = validate.next(
      new sfn.Choice(this, "Unlocked")
        .when(sfn.Condition.booleanEquals("$.recovery.unlocked", true), rotate)
        .otherwise(awaitUnlock.next(rotate)),
    );

    this.stateMachine = new sfn.StateMachine(this, "StateMachine", {
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      stateMachineType: sfn.StateMachineType.STANDARD,
      tracingEnabled: true,
      timeout: Duration.days(14),
      ...(props.logGroup
        ? {
            logs: {
              destination: props.logGroup,
              level: props.logLevel ?? sfn.LogLevel.ALL,
              includeExecutionData: false,
            },
          }
        : {}),
    });
  }
}
