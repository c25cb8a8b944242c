/**
 * The drill state machine (Standard): `RunDrill -> Passed? -> Done | DrillFailed`. Started on an EventBridge
 * schedule (default daily, one per configured workspace) or on demand with `{"workspaceId": "...",
 * "trigger": "on-demand"}`. The drill function records `DrillCompleted` and raises the alert itself; a failed drill
 * also fails the execution, so that the executions-failed alarm sees it. A drill changes no key and no record but
 * its own result, and only key ids, counts and KCVs leave the function.
 */
import { Duration } from "aws-cdk-lib";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as logs from "aws-cdk-lib/aws-logs";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import * as tasks from "aws-cdk-lib/aws-stepfunctions-tasks";
import { Construct } from "constructs";
import { RETRYABLE_ERRORS } from "./rotation-workflow.js";

export interface DrillWorkflowProps {
  readonly run: lambda.IFunction;
  /**
   * With a CloudHSM cluster: lists its backups (in its region and the copy region) from outside the VPC first, and
   * the listing goes to the drill function with the input (functions/hsm-backups).
   */
  readonly listHsmBackups?: lambda.IFunction;
  readonly logGroup?: logs.ILogGroup;
}

export class DrillWorkflow extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: DrillWorkflowProps) {
    super(scope, id);
    const run = new tasks.LambdaInvoke(this, "RunDrill", {
      lambdaFunction: props.run,
      // The execution input as it is: {"workspaceId", "trigger"?, "sampleSize"?}, checked by the function.
      payload: sfn.TaskInput.fromJsonPathAt("$"),
      outputPath: "$.Payload",
      retryOnServiceExceptions: false,
    });
    run.addRetry({
      errors: RETRYABLE_ERRORS,
      interval: Duration.seconds(5),
      backoffRate: 2,
      maxAttempts: 4,
      jitterStrategy: sfn.JitterType.FULL,
    });
    let first: sfn.IChainable & sfn.INextable = run;
    if (props.listHsmBackups) {
      const list = new tasks.LambdaInvoke(this, "ListHsmBackups", {
        lambdaFunction: props.listHsmBackups,
        payload: sfn.TaskInput.fromObject({}),
        payloadResponseOnly: true,
        retryOnServiceExceptions: false,
        resultPath: "$.hsmBackups",
      });
      list.addRetry({
        errors: ["HsmBackupCheckError", ...RETRYABLE_ERRORS],
        interval: Duration.seconds(5),
        backoffRate: 2,
        maxAttempts: 3,
        jitterStrategy: sfn.JitterType.FULL,
      });
      // A listing that cannot be made is the drill's to report (its hsm-backups check asks DescribeBackups itself).
      list.addCatch(run, { resultPath: sfn.JsonPath.DISCARD });
      first = list.next(run);
    }
    run.next(
      new sfn.Choice(this, "Passed")
        .when(sfn.Condition.booleanEquals("$.ok", true), new sfn.Succeed(this, "Done"))
        .otherwise(
          new sfn.Fail(this, "DrillFailed", {
            error: "DrillFailed",
            cause: "a drill check failed; see DrillCompleted in the workspace stream and the alert",
          }),
        ),
    );
    this.stateMachine = new sfn.StateMachine(this, "StateMachine", {
      definitionBody: sfn.DefinitionBody.fromChainable(first),
      stateMachineType: sfn.StateMachineType.STANDARD,
      tracingEnabled: true,
      timeout: Duration.hours(2),
      ...(props.logGroup
        ? { logs: { destination: props.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false } }
        : {}),
    });
  }
}
