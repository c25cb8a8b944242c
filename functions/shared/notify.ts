/**
 * How functions tell people and services, built from the environment:
 * - alerts: SNS (AMK_ALERT_TOPIC_ARN), else a local alert log file (AMK_ALERT_LOG, which the CLI shows), else log
 *   lines (ALERT) through the function's logger;
 * - the event bus: EventBridge (AMK_EVENT_BUS_NAME), else a local bus log file (AMK_BUS_LOG); without either,
 *   publishing fails loudly (a recovery must not believe it told the services when it did not);
 * - task callbacks: Step Functions, or the in-process bridge of the local runner (AMK_TASK_CALLBACKS=in-process), or
 *   a folder shared with a local runner in another process (AMK_TASK_CALLBACKS=file:<dir>, the `amk` CLI).
 * AMK_AWS_ENDPOINT_<SERVICE> overrides an endpoint (LocalStack, recorded-shape tests).
 */
import type { Logger } from "@aws-lambda-powertools/logger";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { SFNClient } from "@aws-sdk/client-sfn";
import { SNSClient } from "@aws-sdk/client-sns";
import { EventBridgeBus } from "../../core/adapters/eventbridge/eventbridge-bus.js";
import { FileAlerts } from "../../core/adapters/file-alerts/file-alerts.js";
import { FileEventBus } from "../../core/adapters/file-bus/file-event-bus.js";
import { FileTaskCallbacks } from "../../core/adapters/file-task-callbacks/file-task-callbacks.js";
import { StepFunctionsTaskCallbacks } from "../../core/adapters/sfn/sfn-task-callbacks.js";
import { SnsAlerts } from "../../core/adapters/sns/sns-alerts.js";
import type { Alerts } from "../../core/alerts/alerts.js";
import { LogAlerts } from "../../core/alerts/log-alerts.js";
import { EventBusError, type EventBus } from "../../core/bus/event-bus.js";
import { inProcessTaskCallbacks, type TaskCallbacks } from "../../core/recovery/task-callbacks.js";

const endpoint = (env: NodeJS.ProcessEnv, service: string) =>
  env[`AMK_AWS_ENDPOINT_${service}`] || env.AWS_ENDPOINT_URL || undefined;

export function alertsFromEnv(logger: Logger, env: NodeJS.ProcessEnv = process.env): Alerts {
  if (env.AMK_ALERT_TOPIC_ARN) {
    const e = endpoint(env, "SNS");
    return new SnsAlerts({
      client: new SNSClient({ ...(e ? { endpoint: e } : {}) }),
      topicArn: env.AMK_ALERT_TOPIC_ARN,
    });
  }
  if (env.AMK_ALERT_LOG) return new FileAlerts(env.AMK_ALERT_LOG);
  return new LogAlerts((line) => logger.error("ALERT", { alert: line }));
}

export function eventBusFromEnv(env: NodeJS.ProcessEnv = process.env): EventBus {
  if (env.AMK_EVENT_BUS_NAME) {
    const e = endpoint(env, "EVENTBRIDGE");
    return new EventBridgeBus({
      client: new EventBridgeClient({ ...(e ? { endpoint: e } : {}) }),
      eventBusName: env.AMK_EVENT_BUS_NAME,
    });
  }
  if (env.AMK_BUS_LOG) return new FileEventBus(env.AMK_BUS_LOG);
  return {
    publish: () =>
      Promise.reject(
        new EventBusError("no event bus configured (AMK_EVENT_BUS_NAME or AMK_BUS_LOG)", {
          retryable: false,
        }),
      ),
  };
}

export function taskCallbacksFromEnv(env: NodeJS.ProcessEnv = process.env): TaskCallbacks {
  if (env.AMK_TASK_CALLBACKS === "in-process") return inProcessTaskCallbacks;
  if (env.AMK_TASK_CALLBACKS?.startsWith("file:"))
    return new FileTaskCallbacks(env.AMK_TASK_CALLBACKS.slice(5));
  const e = endpoint(env, "SFN");
  return new StepFunctionsTaskCallbacks({ client: new SFNClient({ ...(e ? { endpoint: e } : {}) }) });
}
