/**
 * StepFunctionsTaskCallbacks with the real @aws-sdk/client-sfn (AWS JSON 1.0) against a loopback server answering
 * with recorded SendTaskSuccess response shapes (test/fixtures/sfn): what is sent, and how errors map to the port's
 * errors without ever repeating the task token.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { inspect } from "node:util";
import { SFNClient } from "@aws-sdk/client-sfn";
import { StepFunctionsTaskCallbacks } from "../../core/adapters/sfn/sfn-task-callbacks.js";
import { TaskCallbackRejectedError } from "../../core/adapters/sfn/errors.js";
import { TaskCallbackError, TaskTokenExpiredError } from "../../core/recovery/task-callbacks.js";
import { AmkError, InvalidInputError } from "../../core/shared/errors.js";
import {
  FAKE_CREDENTIALS,
  jsonFixture,
  startReplayServer,
  type RecordedRequest,
  type ReplayServer,
} from "../support/aws-replay-server.js";

const TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAcTaskTokenSecretPart7hG2kLmN0pQ9rS8tU5vW";

/** A recorded answer; `{{taskToken}}` in its message becomes the token received (a message that quotes it). */
const recorded = (name: string) => (req: RecordedRequest) => {
  const f = jsonFixture("sfn", name);
  const token = (JSON.parse(req.body) as { taskToken?: string }).taskToken ?? "";
  return { ...f, body: JSON.stringify(f.body).replaceAll("{{taskToken}}", token) };
};

describe("StepFunctionsTaskCallbacks (recorded Step Functions shapes)", () => {
  let server: ReplayServer;
  let callbacks: StepFunctionsTaskCallbacks;

  before(async () => {
    server = await startReplayServer();
    callbacks = new StepFunctionsTaskCallbacks({
      client: new SFNClient({
        endpoint: server.endpoint,
        region: "us-east-1",
        credentials: FAKE_CREDENTIALS,
        maxAttempts: 1,
      }),
    });
  });
  after(() => server.close());
  beforeEach(() => {
    server.requests.length = 0;
    server.handler = recorded("send-task-success");
  });

  it("sends SendTaskSuccess with the token and the output as JSON, nothing else", async () => {
    const output = { workspaceId: "acme-7", keys: [{ keyId: "acme-7/v3", kcv: "a1b2c3" }] };
    await callbacks.succeed(TOKEN, output);
    assert.equal(server.requests.length, 1);
    const req = server.requests[0]!;
    assert.equal(req.method, "POST");
    assert.equal(req.headers["x-amz-target"], "AWSStepFunctions.SendTaskSuccess");
    assert.equal(req.headers["content-type"], "application/x-amz-json-1.0");
    assert.match(String(req.headers.authorization), /\/us-east-1\/states\/aws4_request/);
    const body = JSON.parse(req.body) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ["output", "taskToken"]);
    assert.equal(body.taskToken, TOKEN);
    assert.deepEqual(JSON.parse(body.output as string), output);
  });

  const cases = [
    { file: "task-timed-out", name: "TaskTimedOut", kind: TaskTokenExpiredError, retryable: false },
    { file: "task-does-not-exist", name: "TaskDoesNotExist", kind: TaskTokenExpiredError, retryable: false },
    { file: "invalid-token", name: "InvalidToken", kind: TaskTokenExpiredError, retryable: false },
    { file: "invalid-output", name: "InvalidOutput", kind: InvalidInputError, retryable: false },
    { file: "throttling", name: "ThrottlingException", kind: TaskCallbackError, retryable: true },
    { file: "internal-failure", name: "InternalFailure", kind: TaskCallbackError, retryable: true },
    {
      file: "access-denied",
      name: "AccessDeniedException",
      kind: TaskCallbackRejectedError,
      retryable: false,
    },
  ] as const;
  for (const c of cases) {
    it(`maps ${c.name} to ${c.kind.name} without repeating the token`, async () => {
      server.handler = recorded(c.file);
      let caught: unknown;
      await callbacks.succeed(TOKEN, { ok: true }).catch((e: unknown) => (caught = e));
      assert.ok(caught instanceof c.kind, `expected ${c.kind.name}, got ${inspect(caught)}`);
      assert.ok(caught instanceof AmkError);
      assert.equal(caught.retryable, c.retryable);
      assert.equal(caught.context.awsErrorName, c.name);
      assert.ok(caught.message.includes(c.name));
      for (const text of [caught.message, JSON.stringify(caught), inspect(caught, { depth: 10 })]) {
        assert.ok(!text.includes(TOKEN) && !text.includes("SecretPart"), `the token leaked: ${text}`);
      }
    });
  }

  it("refuses an empty token and output that is not JSON or too large, before calling", async () => {
    await assert.rejects(callbacks.succeed("", {}), InvalidInputError);
    await assert.rejects(callbacks.succeed(TOKEN, { n: 1n }), InvalidInputError);
    await assert.rejects(callbacks.succeed(TOKEN, { blob: "x".repeat(256 * 1024) }), (e: unknown) => {
      assert.ok(e instanceof InvalidInputError);
      assert.ok(!e.message.includes(TOKEN));
      return true;
    });
    assert.equal(server.requests.length, 0);
  });

  it("reports a refused connection as a retryable TaskCallbackError", async () => {
    const dead = await startReplayServer();
    await dead.close();
    const offline = new StepFunctionsTaskCallbacks({
      client: new SFNClient({
        endpoint: dead.endpoint,
        region: "us-east-1",
        credentials: FAKE_CREDENTIALS,
        maxAttempts: 1,
      }),
    });
    await assert.rejects(
      offline.succeed(TOKEN, {}),
      (e: unknown) =>
        e instanceof TaskCallbackError && e.retryable && !inspect(e, { depth: 10 }).includes(TOKEN),
    );
  });
});
