/**
 * The restoration test state machine (Standard): `RunRestorationTest -> Passed? -> Done | RestorationTestFailed`.
 * Started by an EventBridge schedule (default weekly, one per configured workspace) or on demand with
 * `{"workspaceId": "...", "trigger": "on-demand", "backupId"?: "...", "sampleSize"?: n}`. The function records
 * `RestorationTestCompleted` and raises the alert itself; a failed test also fails the execution, so that the
 * executions-failed alarm sees it. Only ids, counts and check names leave the function.
 */
import { Duration } from "aws-cdk-lib";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as logs from "aws-cdk-lib/aws-logs";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import * as tasks from "aws-cdk-lib/aws-stepfunctions-tasks";
import { Construct } from "constructs";
import { RETRYABLE_ERRORS } from "./rotation-workflow.js";

export interface RestorationWorkflowProps {
  readonly run: lambda.IFunction;
  readonly logGroup?: logs.ILogGroup;
}

export class RestorationWorkflow extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: RestorationWorkflowProps) {
    super(scope, id);
    const run = new tasks.LambdaInvoke(this, "RunRestorationTest", {
      lambdaFunction: props.run,
      // The execution input as it is, checked by the function.
      payload: sfn.TaskInput.fromJsonPathAt("$"),
      outputPath: "$.Payload",
      retryOnServiceExceptions: false,
    });
    run.addRetry({
      errors: RETRYABLE_ERRORS,
      interval: Duration.seconds(10),
      backoffRate: 2,
      maxAttempts: 3,
      jitterStrategy: sfn.JitterType.FULL,
    });
    const definition = run.next(
      new sfn.Choice(this, "Passed")
        .when(sfn.Condition.booleanEquals("$.ok", true), new sfn.Succeed(this, "Done"))
        .otherwise(
          new sfn.Fail(this, "RestorationTestFailed", {
            error: "RestorationTestFailed",
            cause:
              "a restoration check failed; see RestorationTestCompleted in the workspace stream and the alert",
          }),
        ),
    );
    this.stateMachine = new sfn.StateMachine(this, "StateMachine", {
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      stateMachineType: sfn.StateMachineType.STANDARD,
      tracingEnabled: true,
      timeout: Duration.hours(6),
      ...(props.logGroup
        ? { logs: { destination: props.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false } }
        : {}),
    });
  }
}
