/**
 * The event-store table: its fixed shape (the CDK stateful stack declares the same) and the item layout inside it.
 * See docs/decisions/0004-event-store-on-dynamodb.md.
 *
 *   item                 pk                              sk              written
 *   event                <streamId>                      e#<version:10>  once, never updated
 *   stream head          <streamId>                      head            every append (conditional check target)
 *   document projection  <doc streamId>                  projection      when an append changes the projection
 *   event-id marker      eid#<eventId>                   eid             once, with the event
 *
 * The projection of a live document with keys carries the census index keys:
 *   census-1  gsi1pk = census#<workspaceId>#<keyId>#<shard>   gsi1sk = <documentId>       count / page by KeyId
 *   census-2  gsi2pk = keys#<workspaceId>#<shard>             gsi2sk = <keyId>#<documentId>  which KeyIds are in use
 */
import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  waitUntilTableExists,
  type CreateTableCommandInput,
  type DynamoDBClient,
  type TableDescription,
} from "@aws-sdk/client-dynamodb";

export const TABLE_KEYS = { pk: "pk", sk: "sk" } as const;
export const CENSUS_BY_KEY_ID_INDEX = "census-1";
export const KEY_IDS_IN_USE_INDEX = "census-2";

/** Digits of a zero-padded version in an event's sort key (versions up to 9,999,999,999). */
export const VERSION_DIGITS = 10;
export const MAX_STREAM_VERSION = 10 ** VERSION_DIGITS - 1;

export const SK_HEAD = "head";
export const SK_PROJECTION = "projection";
export const SK_EVENT_ID_MARKER = "eid";
export const EVENT_SK_PREFIX = "e#";

export const keys = {
  event: (streamId: string, version: number) => ({
    pk: streamId,
    sk: `${EVENT_SK_PREFIX}${String(version).padStart(VERSION_DIGITS, "0")}`,
  }),
  head: (streamId: string) => ({ pk: streamId, sk: SK_HEAD }),
  projection: (documentStreamId: string) => ({ pk: documentStreamId, sk: SK_PROJECTION }),
  eventIdMarker: (eventId: string) => ({ pk: `eid#${eventId}`, sk: SK_EVENT_ID_MARKER }),
  censusByKeyId: (workspaceId: string, keyId: string, shard: number) =>
    `census#${workspaceId}#${keyId}#${shard}`,
  keyIdsInUse: (workspaceId: string, shard: number) => `keys#${workspaceId}#${shard}`,
  keyIdsInUseSort: (keyId: string, documentId: string) => `${keyId}#${documentId}`,
};

/** The table's definition: exactly the shape the CDK stack declares (on-demand, two ALL-projection GSIs). */
export function eventStoreTableDefinition(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    BillingMode: "PAY_PER_REQUEST",
    AttributeDefinitions: [
      { AttributeName: "pk", AttributeType: "S" },
      { AttributeName: "sk", AttributeType: "S" },
      { AttributeName: "gsi1pk", AttributeType: "S" },
      { AttributeName: "gsi1sk", AttributeType: "S" },
      { AttributeName: "gsi2pk", AttributeType: "S" },
      { AttributeName: "gsi2sk", AttributeType: "S" },
    ],
    KeySchema: [
      { AttributeName: "pk", KeyType: "HASH" },
      { AttributeName: "sk", KeyType: "RANGE" },
    ],
    GlobalSecondaryIndexes: [
      {
        IndexName: CENSUS_BY_KEY_ID_INDEX,
        KeySchema: [
          { AttributeName: "gsi1pk", KeyType: "HASH" },
          { AttributeName: "gsi1sk", KeyType: "RANGE" },
        ],
        Projection: { ProjectionType: "ALL" },
      },
      {
        IndexName: KEY_IDS_IN_USE_INDEX,
        KeySchema: [
          { AttributeName: "gsi2pk", KeyType: "HASH" },
          { AttributeName: "gsi2sk", KeyType: "RANGE" },
        ],
        Projection: { ProjectionType: "ALL" },
      },
    ],
  };
}

/** Creates the table (for tests and the local runner) and waits until it is active. */
export async function createEventStoreTable(
  client: DynamoDBClient,
  tableName: string,
  options: { maxWaitSeconds?: number } = {},
): Promise<TableDescription> {
  await client.send(new CreateTableCommand(eventStoreTableDefinition(tableName)));
  await waitUntilTableExists(
    { client, maxWaitTime: options.maxWaitSeconds ?? 120, minDelay: 1 },
    { TableName: tableName },
  );
  const described = await client.send(new DescribeTableCommand({ TableName: tableName }));
  if (!described.Table) throw new Error(`table ${tableName} was created but cannot be described`);
  return described.Table;
}

/** Deletes a table made by `createEventStoreTable` (tests only). Missing tables are ignored. */
export async function deleteEventStoreTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(new DeleteTableCommand({ TableName: tableName }));
  } catch (err) {
    if ((err as { name?: string }).name !== "ResourceNotFoundException") throw err;
  }
}
