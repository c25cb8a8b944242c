/**
 * DynamoDB for a test file: the runner's DynamoDB Local (AMK_DYNAMODB_ENDPOINT), LocalStack (AWS_ENDPOINT_URL), or
 * one started here when the file runs alone. Each test gets its own table.
 */
import { randomBytes } from "node:crypto";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { startDynamoDbLocal, type RunningDynamoDbLocal } from "../../cli/local/dynamodb-local.js";
import { createEventStoreTable, deleteEventStoreTable } from "../../core/adapters/dynamodb/table.js";

export interface TestDynamoDb {
  readonly endpoint: string;
  readonly client: DynamoDBClient;
  /** Creates a fresh event-store table and returns its name. */
  newTable(prefix?: string): Promise<string>;
  cleanup(): Promise<void>;
}

export async function useTestDynamoDb(): Promise<TestDynamoDb> {
  let own: RunningDynamoDbLocal | undefined;
  let endpoint = process.env.AMK_DYNAMODB_ENDPOINT || process.env.AWS_ENDPOINT_URL;
  if (!endpoint) {
    own = await startDynamoDbLocal();
    endpoint = own.endpoint;
  }
  const client = new DynamoDBClient({
    endpoint,
    region: process.env.AWS_REGION ?? "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  const tables: string[] = [];
  return {
    endpoint,
    client,
    async newTable(prefix = "amk-test") {
      const name = `${prefix}-${randomBytes(5).toString("hex")}`;
      await createEventStoreTable(client, name);
      tables.push(name);
      return name;
    },
    async cleanup() {
      for (const t of tables) await deleteEventStoreTable(client, t).catch(() => undefined);
      client.destroy();
      await own?.stop();
    },
  };
}
