/**
 * Local workflow runner: executes a workflow exactly as CDK synthesises it (the state machine's ASL from the
 * template) with `aws-local-stepfunctions`, each Task state bound to the real handler module of the function it
 * invokes. No AWS call is ever made: a Task that has no local binding is refused before the execution starts.
 *
 *   const wf = aslFromTemplate(stack, "Workflow/StateMachine");
 *   const run = await runLocal({ ...wf, handlers: { GenerateDataKeys: generate.handler }, input });
 *   // run.status, run.output, run.error, run.history (the library's event log), run.invocations
 *
 * What is emulated and what is not (JSONata, task tokens, Distributed Map item readers, ...): workflows/README.md.
 */
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import type { Context as LambdaContext } from "aws-lambda";
import { CfnResource, Stack, Stage } from "aws-cdk-lib";
import {
  ExecutionAbortedError,
  ExecutionError,
  ExecutionTimeoutError,
  StateMachine,
  type StateMachineDefinition,
} from "aws-local-stepfunctions";

// aws-local-stepfunctions 3 calls Promise.withResolvers (ES2024, Node >= 22); Node 20 lacks it.
{
  const P = Promise as unknown as { withResolvers?: unknown };
  if (typeof P.withResolvers !== "function") {
    Object.defineProperty(Promise, "withResolvers", {
      configurable: true,
      writable: true,
      value: function withResolvers<T>() {
        let resolve!: (value: T | PromiseLike<T>) => void;
        let reject!: (reason?: unknown) => void;
        const promise = new Promise<T>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        return { promise, resolve, reject };
      },
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Types

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Fake but valid coordinates of every ARN the runner makes up. */
export const LOCAL_PARTITION = "aws";
export const LOCAL_REGION = "us-east-1";
export const LOCAL_ACCOUNT = "123456789012";

/** The ARN a function of the template gets in the local ASL: its logical id is its (placeholder) name. */
export const localFunctionArn = (name: string): string =>
  `arn:${LOCAL_PARTITION}:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${name}`;

export interface LocalFunction {
  /** The key handlers are bound by: the function's construct id (see `aslFromTemplate`). */
  readonly id: string;
  /** Its logical id in the template, or undefined for a function the template does not define (imported). */
  readonly logicalId?: string;
  /** Construct path, when known (from the construct tree or the `aws:cdk:path` metadata). */
  readonly path?: string;
  /** The function ARN in the local ASL. */
  readonly arn: string;
  /** The function's configured timeout (`Timeout`, default 3 s), used when `enforceFunctionTimeouts` is set. */
  readonly timeoutSeconds: number;
}

export interface LocalWorkflow {
  /** Plain ASL: every intrinsic resolved, every Lambda ARN a placeholder `localFunctionArn(<logical id>)`. */
  readonly asl: JsonObject;
  /** Task state name (at any depth: Map item processors, Parallel branches) -> function id. */
  readonly tasks: Record<string, string>;
  /** Function id -> what is known about the function. */
  readonly functions: Record<string, LocalFunction>;
  /** Logical id of the state machine in the template. */
  readonly stateMachineLogicalId: string;
}

export interface AslFromTemplateOptions {
  /**
   * Values for references the definition makes besides functions: `Ref`s by logical id or parameter name,
   * `Fn::GetAtt` as `"<logicalId>.<attribute>"`, `Fn::ImportValue` and `Fn::GetStackOutput` by export / output
   * name. Default: a placeholder (an ARN-shaped one for `Arn` attributes).
   */
  readonly refs?: Record<string, Json>;
}

/** Lambda context handed to a handler (a fake one: fixed ids, the function's configured timeout). */
export type LocalLambdaContext = LambdaContext;

/**
 * A Lambda handler as exported by a function module. `never` as the event type accepts handlers typed for their
 * own event (`(event: GenerateDataKeysEvent) => ...`).
 */
export type LocalHandler = (event: never, context: LocalLambdaContext) => unknown;

/** Handler for a Task state that does not invoke a Lambda function (or to bypass the Lambda shape): gets the
 * state's effective input (after InputPath/Parameters) and returns the task result (before ResultSelector). */
export type StateHandler = (input: Json) => unknown;

/** `.waitForTaskToken` callback: resolve = SendTaskSuccess(output), throw `TaskFailure` = SendTaskFailure. */
export type TaskTokenHandler = (call: { token: string; state: string; payload: Json }) => unknown;

/** Thrown by a `TaskTokenHandler` (or a `StateHandler`) to fail the Task with this error name and cause. */
export class TaskFailure extends Error {
  constructor(error: string, cause = "") {
    super(cause);
    this.name = error;
  }
}

/** The workflow uses something the local runner cannot execute faithfully, or a Task has no local binding. */
export class LocalWorkflowError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LocalWorkflowError";
  }
}

export interface RunLocalInput {
  readonly asl: object;
  /** Task state name -> function id (from `aslFromTemplate`). */
  readonly tasks: Record<string, string>;
  /** Function id -> its handler (the real module's export). */
  readonly handlers: Record<string, LocalHandler>;
  /** Task state name -> raw override (non-Lambda tasks such as DynamoDB or SQS integrations). Wins over `tasks`. */
  readonly stateHandlers?: Record<string, StateHandler>;
  /** Task state name -> callback completing a `.waitForTaskToken` task (required for each such task). */
  readonly taskTokens?: Record<string, TaskTokenHandler>;
  /**
   * Distributed Map bridge: Map state name -> the items its `ItemReader` would read (an array), or the JSONPath of
   * the items in that Map state's input (a string). See `inlineDistributedMaps`.
   */
  readonly distributedMapItems?: Record<string, string | readonly unknown[]>;
  /** Execution input (default `{}`). */
  readonly input?: unknown;
  /** Milliseconds every Wait state waits instead of its Seconds/Timestamp (a number), or per state name. */
  readonly waitTimeOverride?: number | Record<string, number>;
  /** Milliseconds before every retry instead of IntervalSeconds x BackoffRate^n (a number), or per state name
   * (a number, or one per retrier). Default: the intervals of the definition, really waited. */
  readonly retryIntervalOverride?: number | Record<string, number | number[]>;
  /** `$$.Execution.Name` (default: a random UUID). */
  readonly executionName?: string;
  /** `$$.StateMachine.Name` (default: `stateMachineLogicalId`, else "local"). */
  readonly stateMachineName?: string;
  /** From `aslFromTemplate`: names the state machine when `stateMachineName` is not given. */
  readonly stateMachineLogicalId?: string;
  /** Aborts the execution (status ABORTED). */
  readonly signal?: AbortSignal;
  /** Fail an invocation that runs longer than its function's timeout with `Sandbox.Timedout`, as Lambda does. */
  readonly enforceFunctionTimeouts?: boolean;
  /** `functions` from `aslFromTemplate` (for the function timeouts and ARNs). */
  readonly functions?: Record<string, LocalFunction>;
  /** Definition validation passed to aws-local-stepfunctions (default: full validation). */
  readonly validation?: { checkPaths?: boolean; checkArn?: boolean; noValidate?: boolean };
}

/** One call of a bound handler, recorded by the runner (the library's log does not show Lambda payloads). */
export interface Invocation {
  readonly seq: number;
  readonly state: string;
  /** Function id, or `state:<name>` for a `stateHandlers` override. */
  readonly target: string;
  /** What the handler received (the Lambda event: the `Payload` for `lambda:invoke`). */
  readonly input: Json;
  /** What it returned (JSON round-tripped, as Lambda serialises it). */
  readonly output?: Json;
  /** What it threw, as Lambda reports it. */
  readonly error?: { readonly errorType: string; readonly errorMessage: string };
  /** Epoch milliseconds of the call. */
  readonly startedAt: number;
  readonly durationMs: number;
}

/** An event of the library's execution log (see aws-local-stepfunctions docs/execution-event-logs.md). */
export interface HistoryEvent {
  readonly type: string;
  readonly timestamp: number;
  readonly state?: {
    readonly name: string;
    readonly type: string;
    readonly input: Json;
    readonly output?: Json;
  };
  readonly index?: number;
  readonly input?: Json;
  readonly output?: Json;
  readonly Error?: string;
  readonly Cause?: unknown;
  readonly [key: string]: unknown;
}

export type LocalRunStatus = "SUCCEEDED" | "FAILED" | "ABORTED" | "TIMED_OUT";

export interface LocalRun {
  readonly status: LocalRunStatus;
  readonly executionName: string;
  readonly output?: Json;
  readonly error?: { readonly error: string; readonly cause: string };
  /** The library's event log: ExecutionStarted, StateEntered/Exited (with input/output), StateFailed, StateRetried,
   * StateCaught, MapIteration*, ParallelBranch*, Execution{Succeeded,Failed,Aborted,Timeout}. */
  readonly history: HistoryEvent[];
  /** Every handler call, in call order. */
  readonly invocations: Invocation[];
}

// ---------------------------------------------------------------------------------------------------------------
// Template -> ASL

interface CfnResourceJson {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
  readonly Metadata?: Record<string, unknown>;
}
interface CfnTemplateJson {
  readonly Resources?: Record<string, CfnResourceJson>;
  readonly Parameters?: Record<string, { Default?: unknown }>;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function templateOf(source: object): { template: CfnTemplateJson; paths: Map<string, string>; root: string } {
  const paths = new Map<string, string>();
  if (Stack.isStack(source)) {
    const stack = source;
    const stage = Stage.of(stack);
    if (stage === undefined) throw new LocalWorkflowError(`stack ${stack.stackName} is not in an app`);
    // Cached when the app was already synthesised.
    const template = stage.synth().getStackArtifact(stack.artifactId).template as CfnTemplateJson;
    for (const c of stack.node.findAll()) {
      if (CfnResource.isCfnResource(c) && c.stack === stack) {
        paths.set(stack.resolve(c.logicalId) as string, c.node.path);
      }
    }
    return { template, paths, root: stack.node.path };
  }
  const template = source as CfnTemplateJson;
  for (const [id, r] of Object.entries(template.Resources ?? {})) {
    const p = r.Metadata?.["aws:cdk:path"];
    if (typeof p === "string") paths.set(id, p);
  }
  const first = [...paths.values()][0];
  return { template, paths, root: first === undefined ? "" : first.split("/")[0]! };
}

/** `Stack/Toy/PlanBatchFunction/Resource` -> `Toy/PlanBatchFunction` (relative to the stack, without `Resource`). */
function relativePath(path: string, root: string): string {
  let rel = root !== "" && path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path;
  if (rel.endsWith("/Resource")) rel = rel.slice(0, -"/Resource".length);
  return rel;
}

const SERVICE_OF_TYPE = (type: string): string => (type.split("::")[1] ?? "resource").toLowerCase();

class IntrinsicResolver {
  constructor(
    private readonly template: CfnTemplateJson,
    private readonly refs: Record<string, Json>,
  ) {}

  private resource(id: string): CfnResourceJson | undefined {
    return this.template.Resources?.[id];
  }

  ref(name: string): Json {
    switch (name) {
      case "AWS::Partition":
        return LOCAL_PARTITION;
      case "AWS::Region":
        return LOCAL_REGION;
      case "AWS::AccountId":
        return LOCAL_ACCOUNT;
      case "AWS::URLSuffix":
        return "amazonaws.com";
      case "AWS::StackName":
        return "local-stack";
      case "AWS::StackId":
        return `arn:${LOCAL_PARTITION}:cloudformation:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stack/local-stack/local`;
    }
    if (name in this.refs) return this.refs[name]!;
    const r = this.resource(name);
    if (r?.Type === "AWS::Lambda::Function") return name; // Ref of a function is its name: here its logical id
    if (r?.Type === "AWS::Lambda::Version" || r?.Type === "AWS::Lambda::Alias") {
      const fn = this.functionOf(r.Properties?.FunctionName);
      const qualifier = typeof r.Properties?.Name === "string" ? r.Properties.Name : name;
      return fn === undefined ? name : `${localFunctionArn(fn)}:${qualifier}`;
    }
    const param = this.template.Parameters?.[name];
    if (param !== undefined && param.Default !== undefined) return this.resolve(param.Default);
    return name;
  }

  getAtt(id: string, attribute: string): Json {
    const key = `${id}.${attribute}`;
    if (key in this.refs) return this.refs[key]!;
    const r = this.resource(id);
    if (r?.Type === "AWS::Lambda::Function" && attribute === "Arn") return localFunctionArn(id);
    if (attribute === "Arn" || attribute.endsWith("Arn")) {
      return `arn:${LOCAL_PARTITION}:${SERVICE_OF_TYPE(r?.Type ?? "")}:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${id}`;
    }
    return key;
  }

  /** The logical id of the function a `FunctionName` property refers to (Ref or GetAtt), if in the template. */
  private functionOf(value: unknown): string | undefined {
    if (!isObject(value)) return undefined;
    const ref = value.Ref;
    if (typeof ref === "string" && this.resource(ref)?.Type === "AWS::Lambda::Function") return ref;
    const att = value["Fn::GetAtt"];
    if (Array.isArray(att) && typeof att[0] === "string") return att[0];
    return undefined;
  }

  resolve(value: unknown): Json {
    if (value === null || typeof value !== "object") {
      if (value === undefined) return null;
      return value as Json;
    }
    if (Array.isArray(value)) return value.map((v) => this.resolve(v));
    const keys = Object.keys(value);
    const v = value as Record<string, unknown>;
    if (keys.length === 1) {
      const [k] = keys as [string];
      const arg = v[k];
      switch (k) {
        case "Ref":
          return this.ref(String(arg));
        case "Fn::GetAtt": {
          const [id, ...attr] = Array.isArray(arg) ? arg.map(String) : String(arg).split(".");
          return this.getAtt(id ?? "", attr.join("."));
        }
        case "Fn::Join": {
          const [sep, parts] = arg as [string, unknown];
          const list = this.resolve(parts);
          if (!Array.isArray(list)) throw new LocalWorkflowError("Fn::Join of something that is not a list");
          return list.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(sep);
        }
        case "Fn::Sub":
          return this.sub(arg);
        case "Fn::Select": {
          const [index, list] = arg as [unknown, unknown];
          const items = this.resolve(list);
          if (!Array.isArray(items))
            throw new LocalWorkflowError("Fn::Select of something that is not a list");
          return items[Number(this.resolve(index))] ?? null;
        }
        case "Fn::Split": {
          const [sep, s] = arg as [string, unknown];
          return String(this.resolve(s)).split(sep);
        }
        case "Fn::Base64":
          return Buffer.from(String(this.resolve(arg)), "utf8").toString("base64");
        case "Fn::ImportValue": {
          const name = String(this.resolve(arg));
          return name in this.refs ? this.refs[name]! : name;
        }
        case "Fn::GetStackOutput": {
          const out = arg as { OutputName?: string; StackName?: string };
          const name = String(out.OutputName);
          return name in this.refs ? this.refs[name]! : `${String(out.StackName)}.${name}`;
        }
        default:
          if (k.startsWith("Fn::") || k === "Condition") {
            throw new LocalWorkflowError(`intrinsic ${k} is not supported by the local runner`);
          }
      }
    }
    return Object.fromEntries(Object.entries(v).map(([key, val]) => [key, this.resolve(val)]));
  }

  private sub(arg: unknown): string {
    const [text, vars] = Array.isArray(arg) ? (arg as [string, Record<string, unknown>?]) : [String(arg), {}];
    const local: Record<string, Json> = Object.fromEntries(
      Object.entries(vars ?? {}).map(([k, val]) => [k, this.resolve(val)]),
    );
    return text.replace(/\$\{(!?)([^}]+)\}/g, (_m, bang: string, name: string) => {
      if (bang === "!") return `\${${name}}`;
      if (name in local) return String(local[name]);
      const dot = name.indexOf(".");
      if (dot > 0 && !name.startsWith("AWS::"))
        return String(this.getAtt(name.slice(0, dot), name.slice(dot + 1)));
      return String(this.ref(name));
    });
  }
}

type StateVisitor = (name: string, state: JsonObject) => void;

/** Visits every state, at any depth (Map item processors and iterators, Parallel branches). */
export function walkStates(asl: object, visit: StateVisitor): void {
  const states = (asl as { States?: unknown }).States;
  if (!isObject(states)) return;
  for (const [name, state] of Object.entries(states)) {
    if (!isObject(state)) continue;
    visit(name, state as JsonObject);
    if (state.Type === "Map") {
      const processor = state.ItemProcessor ?? state.Iterator;
      if (isObject(processor)) walkStates(processor, visit);
    } else if (state.Type === "Parallel" && Array.isArray(state.Branches)) {
      for (const b of state.Branches) if (isObject(b)) walkStates(b, visit);
    }
  }
}

const INVOKE = /^arn:[^:]+:states:::lambda:invoke(\.waitForTaskToken)?$/;
const FUNCTION_ARN = /^arn:[^:]+:lambda:[^:]+:[^:]+:function:([^:]+)(?::[^:]+)?$/;

interface LambdaTask {
  /** `invoke`: `arn:aws:states:::lambda:invoke` with Parameters.FunctionName; `function`: the bare function ARN. */
  readonly shape: "invoke" | "function";
  readonly waitForTaskToken: boolean;
  /** The function's name (without qualifier), when static. */
  readonly functionName?: string;
}

/** The function name in a `FunctionName` value: a name, a partial or full ARN, optionally qualified. */
function functionNameOf(value: string): string {
  const full = FUNCTION_ARN.exec(value);
  if (full) return full[1]!;
  const partial = /^(?:\d{12}:function:)?([^:]+)(?::[^:]+)?$/.exec(value);
  return partial ? partial[1]! : value;
}

function lambdaTaskOf(state: JsonObject): LambdaTask | undefined {
  if (state.Type !== "Task" || typeof state.Resource !== "string") return undefined;
  const invoke = INVOKE.exec(state.Resource);
  if (invoke) {
    const params = isObject(state.Parameters) ? state.Parameters : {};
    const fn = params.FunctionName;
    return {
      shape: "invoke",
      waitForTaskToken: invoke[1] !== undefined,
      ...(typeof fn === "string" ? { functionName: functionNameOf(fn) } : {}),
    };
  }
  const arn = FUNCTION_ARN.exec(state.Resource);
  if (arn) return { shape: "function", waitForTaskToken: false, functionName: arn[1]! };
  return undefined;
}

/**
 * Takes a synthesised CDK stack (an aws-cdk-lib `Stack`, synthesised here if it was not yet, or its template JSON)
 * and the state machine (logical id, construct path absolute or relative to the stack, e.g. "Workflow/StateMachine";
 * optional when the stack has exactly one) and returns plain ASL whose Lambda ARNs are placeholders
 * (`localFunctionArn(<logical id>)`) plus which function each Task state invokes.
 *
 * A function's id (the key handlers are bound by) is its construct id, e.g. `GenerateDataKeys`; where two functions
 * share a construct id, their paths relative to the stack. From a template JSON without `aws:cdk:path` metadata the
 * construct id is not known: the logical id without its 8-character hash is used instead.
 */
export function aslFromTemplate(
  source: object,
  stateMachine?: string,
  options: AslFromTemplateOptions = {},
): LocalWorkflow {
  const { template, paths, root } = templateOf(source);
  const resources = template.Resources ?? {};
  const machines = Object.entries(resources).filter(([, r]) => r.Type === "AWS::StepFunctions::StateMachine");
  const matches = machines.filter(([id]) => {
    if (stateMachine === undefined) return true;
    if (id === stateMachine) return true;
    const path = paths.get(id);
    if (path === undefined) return false;
    const rel = relativePath(path, root);
    return path === stateMachine || rel === stateMachine || `${root}/${rel}` === stateMachine;
  });
  if (matches.length !== 1) {
    const known = machines.map(([id]) => paths.get(id) ?? id).join(", ") || "none";
    throw new LocalWorkflowError(
      `${matches.length === 0 ? "no" : "more than one"} state machine matches ${stateMachine ?? "(any)"}; ` +
        `the template has: ${known}`,
    );
  }
  const [logicalId, machine] = matches[0]!;
  const props = machine.Properties ?? {};
  const resolver = new IntrinsicResolver(template, options.refs ?? {});

  let asl: JsonObject;
  if (props.DefinitionString !== undefined) {
    let text = resolver.resolve(props.DefinitionString);
    if (typeof text !== "string")
      throw new LocalWorkflowError("DefinitionString did not resolve to a string");
    const subs = isObject(props.DefinitionSubstitutions) ? props.DefinitionSubstitutions : {};
    for (const [k, v] of Object.entries(subs)) {
      const value = resolver.resolve(v);
      text = text.split(`\${${k}}`).join(typeof value === "string" ? value : JSON.stringify(value));
    }
    asl = JSON.parse(text) as JsonObject;
  } else if (isObject(props.Definition)) {
    asl = resolver.resolve(props.Definition) as JsonObject;
  } else {
    throw new LocalWorkflowError(
      `state machine ${logicalId} has no inline definition (DefinitionS3Location?)`,
    );
  }

  // Function ids: the construct id, or the relative path where construct ids collide.
  const fnIds = Object.entries(resources)
    .filter(([, r]) => r.Type === "AWS::Lambda::Function")
    .map(([id]) => {
      const path = paths.get(id);
      const rel = path === undefined ? undefined : relativePath(path, root);
      const short = rel === undefined ? id.replace(/^(.+?)[0-9A-F]{8}$/, "$1") : rel.split("/").pop()!;
      return { logicalId: id, path, rel, short };
    });
  const idOf = new Map<string, string>();
  for (const f of fnIds) {
    const clash = fnIds.filter((g) => g.short === f.short).length > 1;
    idOf.set(f.logicalId, clash ? (f.rel ?? f.logicalId) : f.short);
  }

  const tasks: Record<string, string> = {};
  const functions: Record<string, LocalFunction> = {};
  walkStates(asl, (name, state) => {
    const lambda = lambdaTaskOf(state);
    if (lambda?.functionName === undefined) return;
    const inTemplate = resources[lambda.functionName]?.Type === "AWS::Lambda::Function";
    const id = inTemplate ? idOf.get(lambda.functionName)! : lambda.functionName;
    const previous = tasks[name];
    if (previous !== undefined && previous !== id) {
      throw new LocalWorkflowError(`two Task states named ${name} invoke different functions`);
    }
    tasks[name] = id;
    if (functions[id] === undefined) {
      const timeout = inTemplate ? resources[lambda.functionName]!.Properties?.Timeout : undefined;
      const path = inTemplate ? paths.get(lambda.functionName) : undefined;
      functions[id] = {
        id,
        ...(inTemplate ? { logicalId: lambda.functionName } : {}),
        ...(path === undefined ? {} : { path }),
        arn: localFunctionArn(lambda.functionName),
        timeoutSeconds: typeof timeout === "number" ? timeout : 3,
      };
    }
  });
  return { asl, tasks, functions, stateMachineLogicalId: logicalId };
}

// ---------------------------------------------------------------------------------------------------------------
// Distributed Map bridge

/**
 * Turns each named Distributed Map into an inline Map over the items at the given JSONPath (the Map state's input,
 * or `$$.` the context object): `ItemReader` (S3 object, CSV/JSON/manifest, S3 listing), `ResultWriter` and the tolerated-failure
 * settings are dropped, `ProcessorConfig` becomes INLINE. Any failed item then fails the Map (no tolerance), and
 * the Map's result is the array of item results (not a ResultWriter manifest). `ItemBatcher` is refused.
 */
export function inlineDistributedMaps(asl: object, itemsPaths: Record<string, string>): JsonObject {
  const copy = structuredClone(asl) as JsonObject;
  const seen = new Set<string>();
  walkStates(copy, (name, state) => {
    if (state.Type !== "Map") return;
    const path = itemsPaths[name];
    if (path === undefined) return;
    seen.add(name);
    if (state.ItemBatcher !== undefined) {
      throw new LocalWorkflowError(`Map ${name}: ItemBatcher is not emulated by the local runner`);
    }
    for (const k of [
      "ItemReader",
      "ResultWriter",
      "ToleratedFailurePercentage",
      "ToleratedFailurePercentagePath",
      "ToleratedFailureCount",
      "ToleratedFailureCountPath",
      "Label",
    ]) {
      delete state[k];
    }
    state.ItemsPath = path;
    const processor = state.ItemProcessor;
    if (isObject(processor)) processor.ProcessorConfig = { Mode: "INLINE" };
  });
  const missing = Object.keys(itemsPaths).filter((n) => !seen.has(n));
  if (missing.length > 0) throw new LocalWorkflowError(`no Map state named ${missing.join(", ")}`);
  return copy;
}

// ---------------------------------------------------------------------------------------------------------------
// Running

const clone = (v: unknown): Json => (v === undefined ? null : (JSON.parse(JSON.stringify(v)) as Json));

const RUNNER_FILE = fileURLToPath(import.meta.url);

/**
 * Lambda's view of a thrown value: `errorType` is the error's `name` (the class name for AmkError), `trace` the
 * stack down to the handler (the runner's and the library's frames cut off).
 */
function lambdaError(e: unknown): { errorType: string; errorMessage: string; trace: string[] } {
  if (e instanceof Error) {
    const trace = typeof e.stack === "string" ? e.stack.split("\n") : [];
    const cut = trace.findIndex((l) => l.includes(RUNNER_FILE) || l.includes("aws-local-stepfunctions"));
    return {
      errorType: e.name || "Error",
      errorMessage: e.message,
      trace: cut > 0 ? trace.slice(0, cut) : trace,
    };
  }
  return { errorType: "Error", errorMessage: String(e), trace: [] };
}

/**
 * The error a failed Lambda invocation raises in the Task: `name` = Lambda's `errorType` (what Retry / Catch
 * match), `message` = the Cause Step Functions reports (Lambda's error JSON). Deliberately no `cause` chain: an
 * error's cause may hold what must not reach the execution history.
 */
class LambdaFunctionError extends Error {
  constructor(errorType: string, cause: string) {
    super(cause);
    this.name = errorType;
  }
}

function lambdaContext(fn: LocalFunction | undefined, id: string, deadline: number): LocalLambdaContext {
  const requestId = randomUUID();
  const noop = (): void => {};
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: id,
    functionVersion: "$LATEST",
    invokedFunctionArn: fn?.arn ?? localFunctionArn(id),
    memoryLimitInMB: "128",
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${id}`,
    logStreamName: `local/[$LATEST]${requestId.replace(/-/g, "")}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: noop,
    fail: noop,
    succeed: noop,
  };
}

function featureCheck(asl: object): void {
  const problems: string[] = [];
  if ((asl as { QueryLanguage?: unknown }).QueryLanguage === "JSONata") {
    problems.push(
      "the state machine uses JSONata (QueryLanguage), which aws-local-stepfunctions does not run",
    );
  }
  walkStates(asl, (name, state) => {
    if (state.QueryLanguage === "JSONata") problems.push(`state ${name} uses JSONata`);
    if (state.Assign !== undefined) problems.push(`state ${name} assigns variables (Assign), not supported`);
    if (state.Type === "Map" && state.ItemReader !== undefined) {
      problems.push(
        `Map ${name} reads its items with an ItemReader (Distributed Map): pass distributedMapItems: ` +
          `{ ${JSON.stringify(name)}: "<JSONPath of the items in its input>" }`,
      );
    }
    if (state.Type === "Map" && state.ItemBatcher !== undefined) {
      problems.push(`Map ${name} batches items (ItemBatcher), not emulated`);
    }
  });
  if (problems.length > 0) throw new LocalWorkflowError(problems.join("; "));
}

/**
 * Runs an ASL definition with aws-local-stepfunctions, every Task state bound to a local handler: Lambda tasks to
 * `handlers[tasks[state]]` (Lambda semantics: the `lambda:invoke` shape gets `Payload` and answers
 * `{ StatusCode: 200, Payload, ExecutedVersion }`; a bare function ARN gets the state input and answers the
 * handler's result; a throw fails the Task with the error's name as `Error` and Lambda's error JSON as `Cause`),
 * any other Task to `stateHandlers[state]`. Refuses (LocalWorkflowError) before starting when a Task has no
 * binding or the definition uses what is not emulated.
 */
export async function runLocal(run: RunLocalInput): Promise<LocalRun> {
  let asl = run.asl as JsonObject;
  // Items given as arrays reach the Map through the context object: ItemsPath `$$.LocalRunnerItems.m<n>`.
  const providedItems: Record<string, Json> = {};
  if (run.distributedMapItems !== undefined && Object.keys(run.distributedMapItems).length > 0) {
    const paths = Object.fromEntries(
      Object.entries(run.distributedMapItems).map(([name, items], i) => {
        if (typeof items === "string") return [name, items];
        providedItems[`m${i}`] = clone(items);
        return [name, `$$.LocalRunnerItems.m${i}`];
      }),
    );
    asl = inlineDistributedMaps(asl, paths);
  }
  featureCheck(asl);

  const executionName = run.executionName ?? randomUUID();
  const stateMachineName = run.stateMachineName ?? run.stateMachineLogicalId ?? "local";
  const taskToken = `local-task-token:${executionName}`;
  const invocations: Invocation[] = [];
  let seq = 0;

  const record = (
    state: string,
    target: string,
    input: Json,
    started: number,
    result: { output: Json } | { error: { errorType: string; errorMessage: string } },
  ): void => {
    invocations.push({
      seq: ++seq,
      state,
      target,
      input,
      ...result,
      startedAt: started,
      durationMs: Date.now() - started,
    });
  };

  const callFunction = async (state: string, functionId: string, event: Json): Promise<Json> => {
    const handler = run.handlers[functionId];
    if (handler === undefined) throw new LocalWorkflowError(`no handler for function ${functionId}`);
    const fn = run.functions?.[functionId];
    const timeoutMs = (fn?.timeoutSeconds ?? 3) * 1000;
    const started = Date.now();
    const context = lambdaContext(fn, functionId, started + timeoutMs);
    const call = (async () =>
      (handler as (e: Json, c: LocalLambdaContext) => unknown)(clone(event), context))();
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = run.enforceFunctionTimeouts
        ? await Promise.race([
            call,
            new Promise<never>((_, reject) => {
              timer = setTimeout(
                () =>
                  reject(
                    Object.assign(
                      new Error(
                        `RequestId: ${context.awsRequestId} Error: Task timed out after ` +
                          `${(timeoutMs / 1000).toFixed(2)} seconds`,
                      ),
                      { name: "Sandbox.Timedout" },
                    ),
                  ),
                timeoutMs,
              );
            }),
          ])
        : await call;
      const output = clone(result);
      record(state, functionId, event, started, { output });
      return output;
    } catch (e) {
      const err = lambdaError(e);
      record(state, functionId, event, started, {
        error: { errorType: err.errorType, errorMessage: err.errorMessage },
      });
      throw new LambdaFunctionError(err.errorType, JSON.stringify(err));
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  };

  // Bind every Task state, at any depth.
  const localHandlers: Record<string, (input: Json) => Promise<Json>> = {};
  const waitStates: string[] = [];
  const retryStates: string[] = [];
  const unbound: string[] = [];
  walkStates(asl, (name, state) => {
    if (state.Type === "Wait") waitStates.push(name);
    if (Array.isArray(state.Retry)) retryStates.push(name);
    if (state.Type !== "Task") return;
    if (localHandlers[name] !== undefined) {
      throw new LocalWorkflowError(`more than one Task state is named ${name}: overrides are by name`);
    }
    const raw = run.stateHandlers?.[name];
    if (raw !== undefined) {
      localHandlers[name] = async (input) => {
        const started = Date.now();
        try {
          const output = clone(await raw(clone(input)));
          record(name, `state:${name}`, input, started, { output });
          return output;
        } catch (e) {
          const err = lambdaError(e);
          record(name, `state:${name}`, input, started, {
            error: { errorType: err.errorType, errorMessage: err.errorMessage },
          });
          throw e instanceof TaskFailure ? e : new LambdaFunctionError(err.errorType, JSON.stringify(err));
        }
      };
      return;
    }
    const lambda = lambdaTaskOf(state);
    const functionId = run.tasks[name];
    if (lambda === undefined || functionId === undefined) {
      unbound.push(`${name} (${String(state.Resource)}): no function binding; pass stateHandlers.${name}`);
      return;
    }
    if (run.handlers[functionId] === undefined) {
      unbound.push(`${name}: no handler for function ${functionId}`);
      return;
    }
    const tokenHandler = run.taskTokens?.[name];
    if (lambda.waitForTaskToken && tokenHandler === undefined) {
      unbound.push(`${name} waits for a task token: pass taskTokens.${name}`);
      return;
    }
    if (lambda.shape === "function") {
      localHandlers[name] = (input) => callFunction(name, functionId, input);
      return;
    }
    localHandlers[name] = async (input) => {
      const params = isObject(input) ? input : {};
      const payload = params.Payload === undefined ? {} : (params.Payload as Json);
      if (lambda.waitForTaskToken) {
        await callFunction(name, functionId, payload); // its result is not the task's: the callback's is
        return clone(await tokenHandler!({ token: taskToken, state: name, payload }));
      }
      if (params.InvocationType === "Event") {
        await callFunction(name, functionId, payload).catch(() => undefined); // asynchronous: errors stay in Lambda
        return { StatusCode: 202, Payload: "" };
      }
      const result = await callFunction(name, functionId, payload);
      return { ExecutedVersion: "$LATEST", Payload: result, StatusCode: 200 };
    };
  });
  if (unbound.length > 0) {
    throw new LocalWorkflowError(`Task states without a local binding: ${unbound.join("; ")}`);
  }

  const perState = <T>(value: number | Record<string, T> | undefined, names: string[]) =>
    value === undefined
      ? undefined
      : typeof value === "number"
        ? Object.fromEntries(names.map((n) => [n, value]))
        : value;

  const machine = new StateMachine(asl as unknown as StateMachineDefinition, {
    validationOptions: run.validation ?? {},
  });
  const smArn = `arn:${LOCAL_PARTITION}:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:${stateMachineName}`;
  const waitTimeOverrides = perState(run.waitTimeOverride, waitStates);
  const retryIntervalOverrides = perState(run.retryIntervalOverride, retryStates);
  const execution = machine.run((run.input === undefined ? {} : clone(run.input)) as never, {
    overrides: {
      taskResourceLocalHandlers: localHandlers as never,
      ...(waitTimeOverrides === undefined ? {} : { waitTimeOverrides }),
      ...(retryIntervalOverrides === undefined ? {} : { retryIntervalOverrides }),
    },
    context: {
      Execution: {
        Id: `arn:${LOCAL_PARTITION}:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:execution:${stateMachineName}:${executionName}`,
        Name: executionName,
        RoleArn: `arn:${LOCAL_PARTITION}:iam::${LOCAL_ACCOUNT}:role/local`,
      },
      StateMachine: { Id: smArn, Name: stateMachineName },
      Task: { Token: taskToken },
      ...(Object.keys(providedItems).length > 0 ? { LocalRunnerItems: providedItems } : {}),
    },
  });

  const history: HistoryEvent[] = [];
  const collecting = (async () => {
    for await (const event of execution.eventLogs) history.push(event as unknown as HistoryEvent);
  })();
  const onAbort = (): void => execution.abort();
  if (run.signal?.aborted) onAbort();
  else run.signal?.addEventListener("abort", onAbort, { once: true });

  let outcome: Pick<LocalRun, "status" | "output" | "error">;
  try {
    outcome = { status: "SUCCEEDED", output: clone(await execution.result) };
  } catch (e) {
    if (e instanceof ExecutionAbortedError) outcome = { status: "ABORTED" };
    else if (e instanceof ExecutionTimeoutError) {
      outcome = { status: "TIMED_OUT", error: { error: "States.Timeout", cause: "execution timed out" } };
    } else if (e instanceof ExecutionError) {
      const cause = e.cause instanceof Error ? e.cause : e;
      outcome = { status: "FAILED", error: { error: cause.name, cause: cause.message } };
    } else throw e;
  } finally {
    run.signal?.removeEventListener("abort", onAbort);
  }
  // The log closes with the execution's last event; nested Map/Parallel events are forwarded asynchronously.
  let drainTimer: NodeJS.Timeout | undefined;
  await Promise.race([collecting, new Promise((r) => (drainTimer = setTimeout(r, 200)))]);
  clearTimeout(drainTimer);
  return { ...outcome, executionName, history, invocations };
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers for tests

/**
 * Which of `secrets` appear anywhere in `value` (a LocalRun: output, error, history, invocations), as text, hex,
 * base64 or base64url. Returns descriptions such as `secret #0 as base64`, never the secret itself.
 */
export function leakedSecrets(value: unknown, secrets: readonly (string | Uint8Array)[]): string[] {
  const text = JSON.stringify(value) ?? "";
  const found: string[] = [];
  secrets.forEach((secret, i) => {
    const bytes = typeof secret === "string" ? Buffer.from(secret, "utf8") : Buffer.from(secret);
    const forms: [string, string][] = [
      ["hex", bytes.toString("hex")],
      ["HEX", bytes.toString("hex").toUpperCase()],
      ["base64", bytes.toString("base64").replace(/=+$/, "")],
      ["base64url", bytes.toString("base64url")],
    ];
    if (typeof secret === "string") forms.unshift(["text", secret]);
    const matched = new Set<string>(); // one report per distinct string (base64url often equals base64)
    for (const [form, s] of forms) {
      if (s.length >= 6 && !matched.has(s) && text.includes(s)) {
        matched.add(s);
        found.push(`secret #${i} as ${form}`);
      }
    }
  });
  return found;
}

/** The events of a state (entered, exited, failed, retried, caught; every Map iteration), in log order. */
export function stateEvents(run: LocalRun, state: string): HistoryEvent[] {
  return run.history.filter((e) => e.state?.name === state);
}
