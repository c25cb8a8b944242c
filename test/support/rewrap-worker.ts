/**
 * A re-wrap worker process for the crash tests: runs the rotation's plan -> shards loop to the end, configured by
 * the environment (the same SoftHSM2 token and DynamoDB table as the test). The test kills it with SIGKILL at
 * random moments; nothing here cooperates with that.
 */
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDbEventStore } from "../../core/adapters/dynamodb/dynamodb-event-store.js";
import { FileSecretVault } from "../../core/adapters/file-vault/file-vault.js";
import { Pkcs11KeyStore } from "../../core/adapters/pkcs11/pkcs11-key-store.js";
import { RecordingAlerts } from "../../core/alerts/alerts.js";
import { KitService } from "../../core/kit/kit-service.js";
import { RotationService } from "../../core/rotation/rotation-service.js";
import { ProgressTracker } from "../../core/rotation/progress.js";
import { ProgressPrinter } from "../../cli/output/progress.js";
import { readPinFile } from "../../cli/local/softhsm.js";

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const workspaceId = env("WORKER_WORKSPACE");
const keyStore = await Pkcs11KeyStore.open({
  config: { libraryPath: env("AMK_PKCS11_LIBRARY"), tokenLabel: env("AMK_PKCS11_TOKEN_LABEL"), poolSize: 6 },
  pin: () => readPinFile(env("AMK_PKCS11_PIN_FILE")),
});
const client = new DynamoDBClient({
  endpoint: env("AMK_DYNAMODB_ENDPOINT"),
  region: "us-east-1",
  credentials: { accessKeyId: "local", secretAccessKey: "local" },
});
const events = new DynamoDbEventStore({ client, tableName: env("AMK_EVENT_TABLE") });
const alerts = new RecordingAlerts();
const kits = new KitService({
  keyStore,
  events,
  vault: await FileSecretVault.open(env("AMK_VAULT_DIR")),
  alerts,
});
const rotations = new RotationService({ keyStore, events, kits, alerts, writerSettleMs: 0 });
let moved = 0;
const progress = new ProgressTracker((await rotations.planRewrap(workspaceId)).remaining);
const printer = new ProgressPrinter("re-wrap");
for (;;) {
  const plan = await rotations.planRewrap(workspaceId);
  if (plan.items.length === 0) break;
  const results = await Promise.all(
    plan.items.map((it) =>
      rotations.rewrapShard({
        workspaceId,
        ...it,
        maxDocuments: 5,
        onMoved: (n) => {
          progress.add(n);
          printer.update(progress.snapshot());
        },
      }),
    ),
  );
  moved += results.reduce((a, r) => a + r.moved, 0);
  process.stdout.write(`moved ${moved}\n`);
}
printer.finish(progress.snapshot());
process.stdout.write("done\n");
await keyStore.close();
client.destroy();
