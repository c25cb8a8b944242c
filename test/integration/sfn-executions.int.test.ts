/**
 * describeExecution with the real @aws-sdk/client-sfn (AWS JSON 1.0) against a loopback server answering with
 * recorded DescribeExecution response shapes (test/fixtures/sfn): what is sent, the statuses read, and how errors map.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { inspect } from "node:util";
import { SFNClient } from "@aws-sdk/client-sfn";
import {
  ExecutionStatusRejectedError,
  ExecutionStatusUnavailableError,
} from "../../core/adapters/sfn/errors.js";
import { describeExecution, executionArnOf } from "../../core/adapters/sfn/sfn-executions.js";
import { AmkError, InvalidInputError } from "../../core/shared/errors.js";
import {
  FAKE_CREDENTIALS,
  jsonFixture,
  startReplayServer,
  type ReplayServer,
} from "../support/aws-replay-server.js";

const MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:amk-dev-recovery";
const EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:amk-dev-recovery:recovery-7f3a";

describe("describeExecution (recorded Step Functions shapes)", () => {
  let server: ReplayServer;
  let client: SFNClient;

  before(async () => {
    server = await startReplayServer();
    client = new SFNClient({
      endpoint: server.endpoint,
      region: "us-east-1",
      credentials: FAKE_CREDENTIALS,
      maxAttempts: 1,
    });
  });
  after(async () => {
    client.destroy();
    await server.close();
  });
  beforeEach(() => {
    server.requests.length = 0;
  });

  it("builds the execution ARN from the state machine's, and refuses what is not one", () => {
    assert.equal(executionArnOf(MACHINE, "recovery-7f3a"), EXECUTION);
    assert.throws(
      () => executionArnOf("arn:aws:lambda:us-east-1:123456789012:function:x", "r"),
      InvalidInputError,
    );
    assert.throws(() => executionArnOf(MACHINE, "has space"), InvalidInputError);
    assert.throws(() => executionArnOf(MACHINE, "x".repeat(81)), InvalidInputError);
  });

  it("sends DescribeExecution with the ARN only, and reads a running execution", async () => {
    server.handler = () => jsonFixture("sfn", "describe-execution-running");
    const facts = await describeExecution(client, EXECUTION);
    assert.deepEqual(facts, { executionArn: EXECUTION, status: "RUNNING" });
    assert.equal(server.requests.length, 1);
    const req = server.requests[0]!;
    assert.equal(req.headers["x-amz-target"], "AWSStepFunctions.DescribeExecution");
    assert.deepEqual(JSON.parse(req.body), { executionArn: EXECUTION });
  });

  it("reads an ended execution with the time it stopped", async () => {
    server.handler = () => jsonFixture("sfn", "describe-execution-aborted");
    assert.deepEqual(await describeExecution(client, EXECUTION), {
      executionArn: EXECUTION,
      status: "ABORTED",
      stopDate: "2025-12-01T08:00:00.456Z",
    });
  });

  it("answers undefined for an execution that does not exist", async () => {
    server.handler = () => jsonFixture("sfn", "execution-does-not-exist");
    assert.equal(await describeExecution(client, EXECUTION), undefined);
  });

  const cases = [
    {
      file: "throttling",
      name: "ThrottlingException",
      kind: ExecutionStatusUnavailableError,
      retryable: true,
    },
    {
      file: "internal-failure",
      name: "InternalFailure",
      kind: ExecutionStatusUnavailableError,
      retryable: true,
    },
    {
      file: "access-denied",
      name: "AccessDeniedException",
      kind: ExecutionStatusRejectedError,
      retryable: false,
    },
  ] as const;
  for (const c of cases) {
    it(`maps ${c.name} to ${c.kind.name}`, async () => {
      server.handler = () => jsonFixture("sfn", c.file);
      let caught: unknown;
      await describeExecution(client, EXECUTION).catch((e: unknown) => (caught = e));
      assert.ok(caught instanceof c.kind, `expected ${c.kind.name}, got ${inspect(caught)}`);
      assert.ok(caught instanceof AmkError);
      assert.equal(caught.retryable, c.retryable);
      assert.equal(caught.context.awsErrorName, c.name);
    });
  }

  it("refuses an answer with a status it does not know", async () => {
    server.handler = () => {
      const f = jsonFixture("sfn", "describe-execution-running");
      return { ...f, body: { ...(f.body as object), status: "EXPLODED" } };
    };
    await assert.rejects(describeExecution(client, EXECUTION), ExecutionStatusRejectedError);
  });
});
