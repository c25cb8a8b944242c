/**
 * The status of a Step Functions execution (`DescribeExecution`). `amk recover release` uses it: a recovery's lock
 * may be released by hand only once the execution that holds it has ended (stopped by an operator, timed out, or
 * failed without its RecordFailure having run).
 *
 * Errors:
 * - `ExecutionDoesNotExist`: `undefined` (the name is not an execution of that state machine);
 * - throttling, service-side failures and network errors: `ExecutionStatusUnavailableError` (retryable);
 * - anything else (access denied, an invalid ARN): `ExecutionStatusRejectedError`.
 * The execution's input and output are never read or returned (they are ids only, but nothing here needs them).
 */
import { DescribeExecutionCommand, type SFNClient } from "@aws-sdk/client-sfn";
import { InvalidInputError } from "../../shared/errors.js";
import {
  awsErrorContext,
  awsErrorFacts,
  describeAwsError,
  isTransient,
  safeCause,
} from "../aws-service-error.js";
import { ExecutionStatusRejectedError, ExecutionStatusUnavailableError } from "./errors.js";

export type ExecutionStatus =
  "RUNNING" | "SUCCEEDED" | "FAILED" | "TIMED_OUT" | "ABORTED" | "PENDING_REDRIVE";
const STATUSES = new Set<string>([
  "RUNNING",
  "SUCCEEDED",
  "FAILED",
  "TIMED_OUT",
  "ABORTED",
  "PENDING_REDRIVE",
]);

export interface ExecutionFacts {
  readonly executionArn: string;
  readonly status: ExecutionStatus;
  /** When it ended (ISO 8601); undefined while it runs. */
  readonly stopDate?: string;
}

const STATE_MACHINE_ARN = /^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$/;
const EXECUTION_NAME = /^[A-Za-z0-9_-]{1,80}$/;

/** The ARN of the execution `name` of a Standard state machine. */
export function executionArnOf(stateMachineArn: string, name: string): string {
  if (!STATE_MACHINE_ARN.test(stateMachineArn)) {
    throw new InvalidInputError(
      "not a Step Functions state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)",
    );
  }
  if (!EXECUTION_NAME.test(name))
    throw new InvalidInputError("an execution name is 1-80 letters, digits, - or _");
  return `${stateMachineArn.replace(":stateMachine:", ":execution:")}:${name}`;
}

/** The execution's status, or undefined when no such execution exists. */
export async function describeExecution(
  client: SFNClient,
  executionArn: string,
): Promise<ExecutionFacts | undefined> {
  let out;
  try {
    out = await client.send(new DescribeExecutionCommand({ executionArn }));
  } catch (err) {
    const facts = awsErrorFacts(err);
    if (facts.answered && facts.name === "ExecutionDoesNotExist") return undefined;
    const context = { operation: "DescribeExecution", executionArn, ...awsErrorContext(facts) };
    const cause = safeCause(facts, "DescribeExecution");
    const detail = describeAwsError(facts);
    if (isTransient(facts)) {
      throw new ExecutionStatusUnavailableError(`DescribeExecution failed for now (${detail}); retry later`, {
        context,
        cause,
      });
    }
    throw new ExecutionStatusRejectedError(`Step Functions refused DescribeExecution (${detail})`, {
      context,
      cause,
    });
  }
  const status = String(out.status);
  if (!STATUSES.has(status)) {
    throw new ExecutionStatusRejectedError(
      `DescribeExecution answered an unknown status ${status.slice(0, 40)}`,
      {
        context: { operation: "DescribeExecution", executionArn },
      },
    );
  }
  return {
    executionArn,
    status: status as ExecutionStatus,
    ...(out.stopDate ? { stopDate: new Date(out.stopDate).toISOString() } : {}),
  };
}
