/**
 * A small workflow for the local runner's tests, built the way the real workflows are: a CDK construct with
 * `NodejsFunction`s (entries in ./toy-handlers) and `LambdaInvoke` tasks, synthesised offline. Only its ASL is used:
 * the tests execute it with workflows/local-runner.ts and bind each Task to the real handler module.
 *
 *   PlanBatch (lambda:invoke, OutputPath $.Payload)
 *     -> HasItems? (Choice: $.count > 0)
 *          no  -> EmptyBatch (Pass) -> Done (Succeed)
 *          yes -> Cooldown (Wait 30 s) -> ProcessItems (Map over $.items, MaxConcurrency 2, results at $.results)
 *                   each item: ProcessItem (bare function ARN: payloadResponseOnly),
 *                              Retry FlakyUpstreamError: 1 s, backoff 2, 3 attempts
 *                   Catch PoisonItemError -> RecordFailure (lambda:invoke) -> BatchFailed (Fail, error/cause from
 *                                                                             the caught error)
 *                 -> Summarise (Pass) -> Done
 *
 * `ToyDistributedWorkflow` (same stack) is a Distributed Map reading its items from an S3 JSON object with the same
 * ProcessItem function: the runner's ItemReader bridge replaces the reader by items the caller provides.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { App, Duration, Stack } from "aws-cdk-lib";
import { Runtime, type IFunction } from "aws-cdk-lib/aws-lambda";
import { NodejsFunction } from "aws-cdk-lib/aws-lambda-nodejs";
import { Bucket } from "aws-cdk-lib/aws-s3";
import {
  Choice,
  Condition,
  DefinitionBody,
  DistributedMap,
  Fail,
  JsonPath,
  Map as MapState,
  Pass,
  S3JsonItemReader,
  StateMachine,
  StateMachineType,
  Succeed,
  TaskInput,
  Wait,
  WaitTime,
} from "aws-cdk-lib/aws-stepfunctions";
import { LambdaInvoke } from "aws-cdk-lib/aws-stepfunctions-tasks";
import { Construct } from "constructs";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const HANDLERS = fileURLToPath(new URL("./toy-handlers/", import.meta.url));

/** Construct ids of the toy functions: the keys the runner binds handlers by. */
export const TOY_FUNCTIONS = {
  planBatch: "PlanBatchFunction",
  processItem: "ProcessItemFunction",
  recordFailure: "RecordFailureFunction",
} as const;

export class ToyWorkflow extends Construct {
  readonly planBatch: NodejsFunction;
  readonly processItem: NodejsFunction;
  readonly recordFailure: NodejsFunction;
  readonly stateMachine: StateMachine;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const fn = (fid: string, file: string): NodejsFunction =>
      new NodejsFunction(this, fid, {
        entry: join(HANDLERS, file),
        handler: "handler",
        projectRoot: REPO_ROOT,
        depsLockFilePath: join(REPO_ROOT, "package-lock.json"),
        runtime: Runtime.NODEJS_22_X,
        timeout: Duration.seconds(10),
        bundling: { forceDockerBundling: false },
      });
    this.planBatch = fn(TOY_FUNCTIONS.planBatch, "plan-batch.ts");
    this.processItem = fn(TOY_FUNCTIONS.processItem, "process-item.ts");
    this.recordFailure = fn(TOY_FUNCTIONS.recordFailure, "record-failure.ts");

    const plan = new LambdaInvoke(this, "PlanBatch", {
      lambdaFunction: this.planBatch,
      outputPath: "$.Payload",
    });

    const processItem = new LambdaInvoke(this, "ProcessItem", {
      lambdaFunction: this.processItem,
      payloadResponseOnly: true,
    }).addRetry({
      errors: ["FlakyUpstreamError"],
      interval: Duration.seconds(1),
      backoffRate: 2,
      maxAttempts: 3,
    });

    const recordFailure = new LambdaInvoke(this, "RecordFailure", {
      lambdaFunction: this.recordFailure,
      payload: TaskInput.fromObject({
        batchId: JsonPath.stringAt("$.batchId"),
        failure: JsonPath.objectAt("$.failure"),
      }),
      resultSelector: { errorName: JsonPath.stringAt("$.Payload.errorName") },
      resultPath: "$.recorded",
    });
    const batchFailed = new Fail(this, "BatchFailed", {
      errorPath: "$.failure.Error",
      causePath: "$.failure.Cause",
    });

    const items = new MapState(this, "ProcessItems", {
      itemsPath: "$.items",
      maxConcurrency: 2,
      itemSelector: {
        batchId: JsonPath.stringAt("$.batchId"),
        index: JsonPath.numberAt("$$.Map.Item.Index"),
        item: JsonPath.objectAt("$$.Map.Item.Value"),
      },
      resultPath: "$.results",
    });
    items.itemProcessor(processItem);
    items.addCatch(recordFailure.next(batchFailed), { errors: ["PoisonItemError"], resultPath: "$.failure" });

    const done = new Succeed(this, "Done");
    const summarise = new Pass(this, "Summarise", {
      parameters: {
        batchId: JsonPath.stringAt("$.batchId"),
        count: JsonPath.numberAt("$.count"),
        results: JsonPath.listAt("$.results"),
      },
    });
    const empty = new Pass(this, "EmptyBatch", {
      parameters: { batchId: JsonPath.stringAt("$.batchId"), count: 0, results: [] },
    });
    const cooldown = new Wait(this, "Cooldown", { time: WaitTime.duration(Duration.seconds(30)) });

    const definition = plan.next(
      new Choice(this, "HasItems")
        .when(Condition.numberGreaterThan("$.count", 0), cooldown.next(items).next(summarise).next(done))
        .otherwise(empty.next(done)),
    );

    this.stateMachine = new StateMachine(this, "StateMachine", {
      stateMachineType: StateMachineType.STANDARD,
      definitionBody: DefinitionBody.fromChainable(definition),
    });
  }
}

/** StartAt ProcessAll: a Distributed Map over the items of s3://amk-toy-items/<$.key>, then End. */
export class ToyDistributedWorkflow extends Construct {
  readonly stateMachine: StateMachine;

  constructor(scope: Construct, id: string, props: { processItem: IFunction }) {
    super(scope, id);
    const bucket = Bucket.fromBucketName(this, "Items", "amk-toy-items");
    const all = new DistributedMap(this, "ProcessAll", {
      itemReader: new S3JsonItemReader({ bucket, key: "batch.json" }),
      maxConcurrency: 2,
      itemSelector: {
        batchId: JsonPath.stringAt("$.batchId"),
        index: JsonPath.numberAt("$$.Map.Item.Index"),
        item: JsonPath.objectAt("$$.Map.Item.Value"),
      },
      toleratedFailurePercentage: 0,
    });
    all.itemProcessor(
      new LambdaInvoke(this, "PriceItem", { lambdaFunction: props.processItem, payloadResponseOnly: true }),
    );
    this.stateMachine = new StateMachine(this, "StateMachine", {
      definitionBody: DefinitionBody.fromChainable(all),
    });
  }
}

export interface SynthesisedToy {
  readonly app: App;
  readonly stack: Stack;
  readonly workflow: ToyWorkflow;
  readonly distributed: ToyDistributedWorkflow;
  /** The app's output directory (remove it when done). */
  readonly outdir: string;
}

/**
 * Builds the toy stack in its own app, offline and without bundling (`aws:cdk:bundling-stacks: []`, as the infra
 * tests do for their second app): only the state machine definition matters here.
 */
export function synthToyWorkflow(): SynthesisedToy {
  const outdir = mkdtempSync(join(tmpdir(), "amk-toy-workflow-"));
  const app = new App({ outdir, context: { "aws:cdk:bundling-stacks": [] } });
  const stack = new Stack(app, "amk-toy-workflow");
  const workflow = new ToyWorkflow(stack, "Toy");
  const distributed = new ToyDistributedWorkflow(stack, "ToyDistributed", {
    processItem: workflow.processItem,
  });
  app.synth();
  return { app, stack, workflow, distributed, outdir };
}
