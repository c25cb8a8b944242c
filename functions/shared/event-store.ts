/**
 * The event store a Lambda function uses, built once per execution environment from AMK_EVENT_TABLE (and, locally,
 * AMK_DYNAMODB_ENDPOINT or AWS_ENDPOINT_URL for DynamoDB Local / LocalStack).
 */
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { EventStoreConfigError } from "../../core/eventstore/errors.js";
import type { EventStore } from "../../core/eventstore/event-store.js";

let cached: { key: string; store: EventStore } | undefined;

/**
 * TEST-ONLY hook (the reliability suite's fault layer, test/support/faults.ts): a wrapper applied to every event
 * store built here, around the real DynamoDB adapter, never instead of it. Default: none. Production code never
 * sets it.
 */
export type EventStoreDecorator = (store: EventStore) => EventStore;

let decorator: EventStoreDecorator | undefined;
/** Bumped by each `setEventStoreDecorator`: part of the cache key, so that stores built before are not reused. */
let decoratorGeneration = 0;

/** TEST-ONLY: see `EventStoreDecorator`. `undefined` removes it. */
export function setEventStoreDecorator(next: EventStoreDecorator | undefined): void {
  decorator = next;
  decoratorGeneration += 1;
}

export function dynamoDbClientFromEnv(env: NodeJS.ProcessEnv = process.env): DynamoDBClient {
  const endpoint = env.AMK_DYNAMODB_ENDPOINT || env.AWS_ENDPOINT_URL || undefined;
  return new DynamoDBClient({
    ...(endpoint ? { endpoint } : {}),
    region: env.AWS_REGION ?? (endpoint ? "us-east-1" : undefined),
    // DynamoDB Local accepts any credentials; in AWS the function's role provides them.
    ...(endpoint && !env.AWS_ACCESS_KEY_ID
      ? { credentials: { accessKeyId: "local", secretAccessKey: "local" } }
      : {}),
  });
}

export function eventStoreFromEnv(env: NodeJS.ProcessEnv = process.env): EventStore {
  const tableName = env.AMK_EVENT_TABLE;
  if (!tableName) throw new EventStoreConfigError("AMK_EVENT_TABLE is not set");
  const key = `${tableName}|${env.AMK_DYNAMODB_ENDPOINT ?? ""}|${env.AWS_ENDPOINT_URL ?? ""}|${decoratorGeneration}`;
  if (cached?.key !== key) {
    const store = new DynamoDbEventStore({ client: dynamoDbClientFromEnv(env), tableName });
    cached = { key, store: decorator ? decorator(store) : store };
  }
  return cached.store;
}
