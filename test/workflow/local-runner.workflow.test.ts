/**
 * Workflow tier: the local runner (workflows/local-runner.ts). The toy workflow (test/support/toy-workflow.ts) is
 * synthesised by CDK; its ASL is executed by aws-local-stepfunctions with every Task bound to the real handler
 * module (test/support/toy-handlers). Retry, Catch, Choice, Map, Wait, the Distributed Map bridge, Parallel, task
 * tokens and non-Lambda tasks, and what the runner refuses.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { CfnElement } from "aws-cdk-lib";
import {
  aslFromTemplate,
  leakedSecrets,
  LocalWorkflowError,
  runLocal,
  stateEvents,
  TaskFailure,
  type HistoryEvent,
  type Json,
  type LocalHandler,
  type LocalRun,
  type LocalWorkflow,
  type RunLocalInput,
} from "../../workflows/local-runner.js";
import * as planBatch from "../support/toy-handlers/plan-batch.js";
import * as processItem from "../support/toy-handlers/process-item.js";
import * as recordFailure from "../support/toy-handlers/record-failure.js";
import { synthToyWorkflow, TOY_FUNCTIONS, type SynthesisedToy } from "../support/toy-workflow.js";

/** The secret the process-item handler signs receipts with: it must never show in an execution. */
const RECEIPT_KEY = randomBytes(32);

let toy: SynthesisedToy;
let wf: LocalWorkflow;

before(() => {
  process.env.TOY_RECEIPT_KEY = RECEIPT_KEY.toString("hex");
  toy = synthToyWorkflow();
  wf = aslFromTemplate(toy.stack, "Toy/StateMachine");
});

after(() => {
  rmSync(toy.outdir, { recursive: true, force: true });
  delete process.env.TOY_RECEIPT_KEY;
});

const realHandlers = (): Record<string, LocalHandler> => ({
  [TOY_FUNCTIONS.planBatch]: planBatch.handler,
  [TOY_FUNCTIONS.processItem]: processItem.handler,
  [TOY_FUNCTIONS.recordFailure]: recordFailure.handler,
});

// process-item counts attempts per batch and document: every test uses its own batch.
let batchSeq = 0;
const newBatchId = (): string => `batch-${++batchSeq}-${randomBytes(3).toString("hex")}`;

/** Runs the toy workflow with the real handlers; Wait and retry pauses skipped unless `extra` says otherwise. */
function runToy(input: planBatch.PlanBatchEvent, extra: Partial<RunLocalInput> = {}): Promise<LocalRun> {
  return runLocal({
    ...wf,
    handlers: realHandlers(),
    input,
    waitTimeOverride: 0,
    retryIntervalOverride: 0,
    ...extra,
  });
}

const callsOf = (run: LocalRun, state: string) => run.invocations.filter((i) => i.state === state);

function expectedResult(batchId: string, id: string, index: number, chargedPages: number) {
  const cents = chargedPages * processItem.CENTS_PER_PAGE;
  return { id, index, cents, receipt: processItem.receiptFor(RECEIPT_KEY, batchId, id, cents) };
}

/** Top-level (not inside a Map iteration) events of one type, by state name. */
const topLevel = (run: LocalRun, type: string): HistoryEvent[] =>
  run.history.filter((e) => e.type === type && e.index === undefined);

describe("aslFromTemplate", () => {
  it("resolves the definition to plain ASL and maps every Task, inside the Map too, to its function's id", () => {
    assert.deepEqual(wf.tasks, {
      PlanBatch: "PlanBatchFunction",
      ProcessItem: "ProcessItemFunction",
      RecordFailure: "RecordFailureFunction",
    });
    const text = JSON.stringify(wf.asl);
    assert.doesNotMatch(text, /Fn::|"Ref"/);

    const states = wf.asl.States as Record<string, Record<string, Json>>;
    const planLogicalId = toy.stack.getLogicalId(toy.workflow.planBatch.node.defaultChild as CfnElement);
    assert.equal(wf.functions.PlanBatchFunction?.logicalId, planLogicalId);
    assert.equal(wf.functions.PlanBatchFunction?.timeoutSeconds, 10);
    // lambda:invoke shape: the function in Parameters.FunctionName.
    assert.equal(states.PlanBatch?.Resource, "arn:aws:states:::lambda:invoke");
    assert.deepEqual(states.PlanBatch?.Parameters, {
      FunctionName: `arn:aws:lambda:us-east-1:123456789012:function:${planLogicalId}`,
      "Payload.$": "$",
    });
    // payloadResponseOnly shape, inside the Map's item processor: the bare function ARN.
    const processor = states.ProcessItems?.ItemProcessor as { States: Record<string, Record<string, Json>> };
    assert.equal(processor.States.ProcessItem?.Resource, wf.functions.ProcessItemFunction?.arn);
  });

  it("takes the template JSON or a logical id as well, and refuses an ambiguous or unknown state machine", () => {
    const template = toy.app.synth().getStackArtifact(toy.stack.artifactId).template as object;
    const fromJson = aslFromTemplate(template, wf.stateMachineLogicalId);
    assert.deepEqual(fromJson.asl, wf.asl);
    // Without aws:cdk:path metadata the construct id is unknown: the logical id without its hash stands in.
    assert.deepEqual(fromJson.tasks, {
      PlanBatch: "ToyPlanBatchFunction",
      ProcessItem: "ToyProcessItemFunction",
      RecordFailure: "ToyRecordFailureFunction",
    });
    assert.deepEqual(aslFromTemplate(toy.stack, wf.stateMachineLogicalId).tasks, wf.tasks);
    assert.throws(() => aslFromTemplate(toy.stack), /more than one state machine matches/);
    assert.throws(() => aslFromTemplate(toy.stack, "Nope/StateMachine"), /no state machine matches/);
  });
});

describe("runLocal: the toy workflow with the real handlers", () => {
  const batchId = newBatchId();
  const input: planBatch.PlanBatchEvent = {
    batchId,
    documents: [
      { id: "d2", pages: 3 },
      { id: "d1", pages: 0 },
      { id: "d3", pages: 2 },
    ],
  };
  let run: LocalRun;
  before(async () => {
    run = await runToy(input);
  });

  it("runs to SUCCEEDED with the output the handlers compute", () => {
    assert.equal(run.status, "SUCCEEDED", JSON.stringify(run.error));
    assert.deepEqual(run.output, {
      batchId,
      count: 3,
      results: [
        expectedResult(batchId, "d1", 0, 1), // 0 pages: charged for one
        expectedResult(batchId, "d2", 1, 3),
        expectedResult(batchId, "d3", 2, 2),
      ],
    });
  });

  it("records each state's input and output in the history", async () => {
    assert.deepEqual(
      topLevel(run, "StateEntered").map((e) => e.state?.name),
      ["PlanBatch", "HasItems", "Cooldown", "ProcessItems", "Summarise", "Done"],
    );
    for (const e of topLevel(run, "StateExited")) assert.ok(e.state?.output !== undefined, e.state?.name);

    const [planEntered] = stateEvents(run, "PlanBatch").filter((e) => e.type === "StateEntered");
    assert.deepEqual(planEntered?.state?.input, input);
    const [planExited] = stateEvents(run, "PlanBatch").filter((e) => e.type === "StateExited");
    assert.deepEqual(planExited?.state?.output, await planBatch.handler(input)); // OutputPath $.Payload

    // Inside the Map: each iteration's input is the ItemSelector's, tagged with its index.
    const itemInputs = stateEvents(run, "ProcessItem")
      .filter((e) => e.type === "StateEntered")
      .sort((a, b) => (a.index ?? 0) - (b.index ?? 0))
      .map((e) => [e.index, e.state?.input]);
    const planned = (await planBatch.handler(input)).items;
    assert.deepEqual(
      itemInputs,
      planned.map((item, index) => [index, { batchId, index, item }]),
    );
    const [succeeded] = run.history.filter((e) => e.type === "ExecutionSucceeded");
    assert.deepEqual(succeeded?.output, run.output);

    // The Lambda payloads, as the handlers saw them.
    assert.deepEqual(callsOf(run, "PlanBatch")[0]?.input, input);
    assert.deepEqual(
      callsOf(run, "ProcessItem").map((c) => c.target),
      Array(3).fill("ProcessItemFunction"),
    );
  });

  it("never shows the handlers' secret, in any encoding (and the check does find a leak)", async () => {
    assert.deepEqual(leakedSecrets(run, [RECEIPT_KEY, RECEIPT_KEY.toString("hex")]), []);

    const leaky = await runToy(
      { batchId: newBatchId(), documents: [{ id: "x", pages: 1 }] },
      {
        handlers: {
          ...realHandlers(),
          [TOY_FUNCTIONS.processItem]: async (event: processItem.ProcessItemEvent) => ({
            ...(await processItem.handler(event)),
            debug: RECEIPT_KEY.toString("base64"),
          }),
        },
      },
    );
    assert.deepEqual(leakedSecrets(leaky, [RECEIPT_KEY]), ["secret #0 as base64"]);
  });
});

describe("runLocal: Map, Retry, Catch, Choice, Wait", () => {
  it("runs every item of the Map, at most two at a time", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const batchId = newBatchId();
    const ids = ["a", "b", "c", "d", "e"];
    const run = await runToy(
      { batchId, documents: ids.map((id) => ({ id, pages: 1 })) },
      {
        handlers: {
          ...realHandlers(),
          [TOY_FUNCTIONS.processItem]: async (event: processItem.ProcessItemEvent) => {
            maxInFlight = Math.max(maxInFlight, ++inFlight);
            await new Promise((r) => setTimeout(r, 25));
            inFlight--;
            return processItem.handler(event);
          },
        },
      },
    );
    assert.equal(run.status, "SUCCEEDED");
    assert.deepEqual(
      callsOf(run, "ProcessItem")
        .map((c) => (c.input as { item: { id: string } }).item.id)
        .sort(),
      ids,
    );
    assert.equal(maxInFlight, 2, "MaxConcurrency 2");
    assert.deepEqual(
      (run.output as { results: unknown[] }).results,
      ids.map((id, i) => expectedResult(batchId, id, i, 1)),
    );
    const iterations = run.history.filter((e) => e.type === "MapIterationSucceeded").map((e) => e.index);
    assert.deepEqual(iterations.sort(), [0, 1, 2, 3, 4]);
  });

  it("retries a FlakyUpstreamError twice with the defined backoff (1 s, then 2 s), then succeeds", async () => {
    const batchId = newBatchId();
    const run = await runToy(
      { batchId, documents: [{ id: "f", pages: 2, flakyFailures: 2 }] },
      { retryIntervalOverride: undefined }, // the definition's intervals, really waited
    );
    assert.equal(run.status, "SUCCEEDED", JSON.stringify(run.error));
    const calls = callsOf(run, "ProcessItem");
    assert.equal(calls.length, 3);
    assert.deepEqual(
      calls.map((c) => c.error?.errorType ?? "ok"),
      ["FlakyUpstreamError", "FlakyUpstreamError", "ok"],
    );
    const [c0, c1, c2] = calls as [(typeof calls)[0], (typeof calls)[0], (typeof calls)[0]];
    assert.ok(c1.startedAt - c0.startedAt >= 950, `first retry after ${c1.startedAt - c0.startedAt} ms`);
    assert.ok(c2.startedAt - c1.startedAt >= 1950, `second retry after ${c2.startedAt - c1.startedAt} ms`);
    assert.equal(stateEvents(run, "ProcessItem").filter((e) => e.type === "StateRetried").length, 2);
    assert.deepEqual((run.output as { results: unknown[] }).results, [expectedResult(batchId, "f", 0, 2)]);
  });

  it("gives up after MaxAttempts: FAILED with the error's name (the Catch is for PoisonItemError only)", async () => {
    const run = await runToy({ batchId: newBatchId(), documents: [{ id: "f", pages: 1, flakyFailures: 9 }] });
    assert.equal(callsOf(run, "ProcessItem").length, 4, "the call and 3 retries");
    assert.equal(run.status, "FAILED");
    assert.equal(run.error?.error, "FlakyUpstreamError");
    const cause = JSON.parse(run.error?.cause ?? "{}") as { errorType: string; errorMessage: string };
    assert.equal(cause.errorType, "FlakyUpstreamError");
    assert.equal(cause.errorMessage, "upstream busy for document f (attempt 4)");
    assert.equal(callsOf(run, "RecordFailure").length, 0);
  });

  it("does not retry a PoisonItemError: the Catch records it and the Fail state fails with its name", async () => {
    const batchId = newBatchId();
    const run = await runToy({
      batchId,
      documents: [
        { id: "ok", pages: 1 },
        { id: "p", pages: 1, poison: true },
      ],
    });
    const poisonCalls = callsOf(run, "ProcessItem").filter(
      (c) => (c.input as { item: { id: string } }).item.id === "p",
    );
    assert.equal(poisonCalls.length, 1);

    const [caught] = stateEvents(run, "ProcessItems").filter((e) => e.type === "StateCaught");
    assert.ok(caught, "the Map's Catch caught the iteration's error");
    const [record] = callsOf(run, "RecordFailure");
    assert.equal((record?.input as { failure: { Error: string } }).failure.Error, "PoisonItemError");
    assert.deepEqual(record?.output, {
      batchId,
      errorName: "PoisonItemError",
      message: "document p cannot be processed",
    });
    assert.ok(recordFailure.recorded.some((r) => r.batchId === batchId));

    assert.equal(run.status, "FAILED");
    assert.equal(run.error?.error, "PoisonItemError"); // BatchFailed: ErrorPath $.failure.Error
    assert.equal(
      (JSON.parse(run.error?.cause ?? "{}") as { errorMessage: string }).errorMessage,
      "document p cannot be processed",
    );
    assert.equal(stateEvents(run, "BatchFailed")[0]?.type, "StateEntered");
    assert.equal(run.history.at(-1)?.type, "ExecutionFailed");
    assert.equal(run.history.at(-1)?.Error, "PoisonItemError");
  });

  it("fails a lambda:invoke Task with the thrown error's name and Lambda's error JSON as cause", async () => {
    const run = await runToy({
      batchId: newBatchId(),
      documents: [
        { id: "d1", pages: 1 },
        { id: "d1", pages: 2 },
      ],
    });
    assert.equal(run.status, "FAILED");
    assert.equal(run.error?.error, "RangeError");
    const cause = JSON.parse(run.error?.cause ?? "{}") as { errorType: string; errorMessage: string };
    assert.deepEqual(
      [cause.errorType, cause.errorMessage],
      ["RangeError", "document d1 appears twice in the batch"],
    );
    assert.equal(stateEvents(run, "PlanBatch").find((e) => e.type === "StateFailed")?.Error, "RangeError");
  });

  it("takes the Choice's other branch for an empty batch", async () => {
    const batchId = newBatchId();
    const run = await runToy({ batchId, documents: [] });
    assert.equal(run.status, "SUCCEEDED");
    assert.deepEqual(run.output, { batchId, count: 0, results: [] });
    assert.deepEqual(
      topLevel(run, "StateEntered").map((e) => e.state?.name),
      ["PlanBatch", "HasItems", "EmptyBatch", "Done"],
    );
    assert.equal(callsOf(run, "ProcessItem").length, 0);
  });

  it("waits as the Wait state says unless overridden; an aborted execution is ABORTED", async () => {
    const controller = new AbortController();
    const started = Date.now();
    const run = await runToy(
      { batchId: newBatchId(), documents: [{ id: "w", pages: 1 }] },
      {
        waitTimeOverride: undefined, // Cooldown: 30 s
        signal: controller.signal,
        handlers: {
          ...realHandlers(),
          [TOY_FUNCTIONS.planBatch]: async (event: planBatch.PlanBatchEvent) => {
            setTimeout(() => controller.abort(), 100);
            return planBatch.handler(event);
          },
        },
      },
    );
    assert.equal(run.status, "ABORTED");
    assert.ok(Date.now() - started < 5000);
    assert.equal(stateEvents(run, "Cooldown")[0]?.type, "StateEntered");
    assert.equal(callsOf(run, "ProcessItem").length, 0);
  });
});

describe("runLocal: what it refuses before starting", () => {
  it("a Task whose function has no handler", async () => {
    let planned = 0;
    await assert.rejects(
      runLocal({
        ...wf,
        handlers: {
          [TOY_FUNCTIONS.planBatch]: async (e: planBatch.PlanBatchEvent) => {
            planned++;
            return planBatch.handler(e);
          },
          [TOY_FUNCTIONS.processItem]: processItem.handler,
        },
        input: { batchId: "b", documents: [] },
      }),
      (e: unknown) =>
        e instanceof LocalWorkflowError &&
        /RecordFailure: no handler for function RecordFailureFunction/.test(e.message),
    );
    assert.equal(planned, 0);
  });

  it("JSONata, and a Distributed Map's ItemReader without items", async () => {
    await assert.rejects(
      runLocal({ ...wf, asl: { ...wf.asl, QueryLanguage: "JSONata" }, handlers: realHandlers() }),
      /JSONata/,
    );
    const distributed = aslFromTemplate(toy.stack, "ToyDistributed/StateMachine");
    await assert.rejects(
      runLocal({ ...distributed, handlers: realHandlers() }),
      /Map ProcessAll reads its items with an ItemReader .*distributedMapItems/,
    );
  });
});

describe("runLocal: Distributed Map bridge", () => {
  it("runs a Map with an S3 ItemReader over items the caller provides (an array, or a path in the input)", async () => {
    const distributed = aslFromTemplate(toy.stack, "ToyDistributed/StateMachine");
    assert.deepEqual(distributed.tasks, { PriceItem: "ProcessItemFunction" });
    const items = [
      { id: "s1", pages: 2, chargedPages: 2 },
      { id: "s2", pages: 1, chargedPages: 1 },
      { id: "s3", pages: 4, chargedPages: 4 },
    ];
    const expected = (batchId: string) =>
      items.map((it, i) => expectedResult(batchId, it.id, i, it.chargedPages));

    const b1 = newBatchId();
    const fromArray = await runLocal({
      ...distributed,
      handlers: realHandlers(),
      input: { batchId: b1 },
      distributedMapItems: { ProcessAll: items },
    });
    assert.equal(fromArray.status, "SUCCEEDED", JSON.stringify(fromArray.error));
    assert.deepEqual(fromArray.output, expected(b1));

    const b2 = newBatchId();
    const fromPath = await runLocal({
      ...distributed,
      handlers: realHandlers(),
      input: { batchId: b2, staged: items },
      distributedMapItems: { ProcessAll: "$.staged" },
    });
    assert.deepEqual(fromPath.output, expected(b2));
  });
});

describe("runLocal: hand-written ASL (Parallel, non-Lambda task, task token)", () => {
  const asl = {
    StartAt: "Fan",
    States: {
      Fan: {
        Type: "Parallel",
        Next: "Done",
        Branches: [
          {
            StartAt: "Double",
            States: {
              Double: {
                Type: "Task",
                Resource: "arn:aws:states:::lambda:invoke",
                Parameters: {
                  FunctionName: "arn:aws:lambda:us-east-1:123456789012:function:Doubler",
                  Payload: { "n.$": "$.n" },
                },
                ResultSelector: { "v.$": "$.Payload" },
                End: true,
              },
            },
          },
          {
            StartAt: "Store",
            States: {
              Store: {
                Type: "Task",
                Resource: "arn:aws:states:::dynamodb:putItem",
                Parameters: { TableName: "t", Item: { pk: { "S.$": "$.id" } } },
                ResultPath: null,
                End: true,
              },
            },
          },
          {
            StartAt: "Approve",
            States: {
              Approve: {
                Type: "Task",
                Resource: "arn:aws:states:::lambda:invoke.waitForTaskToken",
                Parameters: {
                  FunctionName: "Notifier",
                  Payload: { "token.$": "$$.Task.Token", "id.$": "$.id" },
                },
                End: true,
              },
            },
          },
        ],
      },
      Done: { Type: "Succeed" },
    },
  };
  const tasks = { Double: "Doubler", Approve: "Notifier" };
  const handlers = {
    Doubler: async (e: { n: number }) => e.n * 2,
    Notifier: async () => ({ sent: true }),
  };

  it("binds Tasks in every branch; the token callback's answer is the task's result", async () => {
    const stored: unknown[] = [];
    const run = await runLocal({
      asl,
      tasks,
      handlers,
      stateHandlers: { Store: (item) => (stored.push(item), {}) },
      taskTokens: {
        Approve: ({ token, payload }) => {
          assert.deepEqual(payload, { token, id: "k" });
          return { approved: true };
        },
      },
      input: { id: "k", n: 21 },
      executionName: "exec-1",
    });
    assert.equal(run.status, "SUCCEEDED", JSON.stringify(run.error));
    assert.deepEqual(run.output, [{ v: 42 }, { id: "k", n: 21 }, { approved: true }]);
    assert.deepEqual(stored, [{ TableName: "t", Item: { pk: { S: "k" } } }]);
    assert.deepEqual(run.invocations.map((i) => [i.state, i.target]).sort(), [
      ["Approve", "Notifier"],
      ["Double", "Doubler"],
      ["Store", "state:Store"],
    ]);
  });

  it("a TaskFailure from the token callback fails the task (SendTaskFailure)", async () => {
    const run = await runLocal({
      asl,
      tasks,
      handlers,
      stateHandlers: { Store: () => ({}) },
      taskTokens: {
        Approve: () => {
          throw new TaskFailure("Rejected", "not approved");
        },
      },
      input: { id: "k", n: 1 },
    });
    assert.equal(run.status, "FAILED");
    assert.deepEqual(run.error, { error: "Rejected", cause: "not approved" });
  });

  it("refuses a non-Lambda task without a state handler and a token task without a callback", async () => {
    await assert.rejects(
      runLocal({ asl, tasks, handlers, input: {} }),
      (e: unknown) =>
        e instanceof LocalWorkflowError &&
        /Store \(arn:aws:states:::dynamodb:putItem\): no function binding/.test(e.message) &&
        /Approve waits for a task token: pass taskTokens.Approve/.test(e.message),
    );
  });
});
