/**
 * Where a command's services come from. Two modes:
 *
 * - **local** (default): the engines of `amk local up` in the state folder (`--home`, AMK_HOME, else `.amk/`).
 *   local.json names them; the functions' environment (AMK_PKCS11_*, AMK_EVENT_TABLE, AMK_DYNAMODB_ENDPOINT,
 *   AMK_VAULT_DIR, AMK_ALERT_LOG, AMK_BUS_LOG, AMK_TASK_CALLBACKS=file:...) is set from it before any function
 *   module builds its adapters, so the CLI runs the same handlers Lambda runs.
 * - **aws**: `--endpoint <url>` / AWS_ENDPOINT_URL (LocalStack) or `--profile <name>` (real AWS, with `--region`).
 *   The event store (`--table` / AMK_EVENT_TABLE) and the vault (AMK_VAULT_REGION, Secrets Manager) are reached
 *   with the SDK; workflows are started with StartExecution, the unlock and data-key functions invoked with Lambda
 *   Invoke (ARNs and names from AMK_* variables, docs/cli.md). The HSM is reached only from a host that has the
 *   CloudHSM client and AMK_PKCS11_* set.
 *
 * Services are built on first use; `close()` releases the HSM sessions.
 */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import type { AccessTokenService } from "../../core/access/access-tokens.js";
import type { Alerts } from "../../core/alerts/alerts.js";
import type { DataKeyClient, DataKeysAnswer, DataKeyTransport } from "../../core/client/data-key-client.js";
import type { DataKeyService } from "../../core/datakeys/data-keys.js";
import type { EventStore } from "../../core/eventstore/event-store.js";
import { WORKSPACE_ID_PATTERN } from "../../core/keystore/key-id.js";
import type { KitService } from "../../core/kit/kit-service.js";
import type { KeyStore } from "../../core/keystore/key-store.js";
import type { SecretVault } from "../../core/vault/secret-vault.js";
import type { WorkspaceState } from "../../core/workspaces/workspace.js";
import { requireRunning, type LocalState } from "../local/engines.js";
import { stateDir } from "../local/state.js";
import { NotFoundError, UsageError } from "./errors.js";

// The SDK clients, the HSM binding and the handlers load when a command first needs them (a command starts faster).
const load = {
  eventStore: () => import("../../functions/shared/event-store.js"),
  keyStore: () => import("../../functions/shared/key-store.js"),
  vault: () => import("../../functions/shared/vault.js"),
};

export interface GlobalOptions {
  readonly home?: string;
  readonly endpoint?: string;
  readonly profile?: string;
  readonly region?: string;
  readonly table?: string;
}

export type Mode = "local" | "aws";

export function globalsOf(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

export function homeOf(g: GlobalOptions): string {
  return resolve(g.home ?? stateDir());
}

export function modeOf(g: GlobalOptions): Mode {
  return g.endpoint || g.profile || process.env.AWS_ENDPOINT_URL ? "aws" : "local";
}

/** The environment the functions read, for the local engines (and nothing that would divert them elsewhere). */
export function applyLocalEnv(state: LocalState & { dynamodb: { running: { endpoint: string } } }): void {
  const env = process.env;
  for (const k of [
    "AMK_PKCS11_PIN_SECRET_ID",
    "AMK_VAULT_REGION",
    "AMK_VAULT_ACCESS_ROLE_ARN",
    "AMK_ALERT_TOPIC_ARN",
    "AMK_EVENT_BUS_NAME",
    "AMK_HSM_CLUSTER_ID",
    "AMK_BACKUP_BUCKET",
    "AWS_ENDPOINT_URL",
  ]) {
    delete env[k];
  }
  Object.assign(env, {
    SOFTHSM2_CONF: state.hsm.configPath,
    AMK_PKCS11_LIBRARY: state.hsm.libraryPath,
    AMK_PKCS11_TOKEN_LABEL: state.hsm.tokenLabel,
    AMK_PKCS11_PIN_FILE: state.hsm.pinFile,
    AMK_EVENT_TABLE: state.eventTable,
    AMK_DYNAMODB_ENDPOINT: state.dynamodb.running.endpoint,
    AMK_VAULT_DIR: state.vaultDir,
    AMK_ALERT_LOG: state.alertLog,
    AMK_BUS_LOG: state.busLog,
    AMK_TASK_CALLBACKS: `file:${state.callbacksDir}`,
    // Backups of the local story and `amk backup`: a folder beside the vault (S3 in AWS).
    AMK_BACKUP_DIR: join(dirname(state.vaultDir), "backups"),
  });
  // Writers in flight (docs/rotation.md): locally every writer is an `amk` process on this machine, appending to a
  // local store, so a short window and settle time do (AWS: 5 s and 60 s).
  env.AMK_DATAKEY_WRITE_WINDOW_MS ??= "2000";
  env.AMK_WRITER_SETTLE_MS ??= "3000";
  env.AWS_REGION ??= "us-east-1";
}

function applyAwsEnv(g: GlobalOptions): void {
  const env = process.env;
  if (g.endpoint) env.AWS_ENDPOINT_URL = g.endpoint;
  if (g.profile) env.AWS_PROFILE = g.profile;
  if (g.region) env.AWS_REGION = g.region;
  if (g.table) env.AMK_EVENT_TABLE = g.table;
  if (env.AWS_ENDPOINT_URL) {
    env.AMK_DYNAMODB_ENDPOINT = env.AWS_ENDPOINT_URL;
    env.AMK_VAULT_ENDPOINT ??= env.AWS_ENDPOINT_URL;
    env.AWS_REGION ??= "us-east-1";
  } else {
    delete env.AMK_DYNAMODB_ENDPOINT;
  }
  for (const k of ["AMK_VAULT_DIR", "AMK_ALERT_LOG", "AMK_BUS_LOG", "AMK_TASK_CALLBACKS", "AMK_BACKUP_DIR"])
    delete env[k];
}

export class Runtime {
  private eventStoreModule: Awaited<ReturnType<typeof load.eventStore>> | undefined;
  private keyStoreOpened: Promise<KeyStore> | undefined;
  private kitService: Promise<KitService> | undefined;
  private signingKey: Uint8Array | undefined;
  private clients: DataKeyClient[] = [];

  private constructor(
    readonly mode: Mode,
    readonly home: string,
    readonly local: (LocalState & { dynamodb: { running: { endpoint: string; pid: number } } }) | undefined,
  ) {}

  /** The runtime of a command: local engines (checked: exit 3 when they are not running) or AWS. */
  static async open(g: GlobalOptions): Promise<Runtime> {
    const home = homeOf(g);
    let rt: Runtime;
    if (modeOf(g) === "aws") {
      applyAwsEnv(g);
      rt = new Runtime("aws", home, undefined);
    } else {
      const state = await requireRunning(home);
      applyLocalEnv(state);
      rt = new Runtime("local", home, state);
    }
    rt.eventStoreModule = await load.eventStore(); // every command reads the event store
    return rt;
  }

  /** The local state (local mode only; `what` names the command for the error). */
  requireLocal(what: string): NonNullable<Runtime["local"]> {
    if (!this.local) {
      throw new UsageError(
        `${what} works on the local engines only`,
        "drop --endpoint/--profile (docs/cli.md)",
      );
    }
    return this.local;
  }

  events(): EventStore {
    if (!process.env.AMK_EVENT_TABLE) {
      throw new UsageError(
        "AWS mode needs the event-store table",
        "pass --table <name> or set AMK_EVENT_TABLE",
      );
    }
    return this.eventStoreModule!.eventStoreFromEnv();
  }

  keyStore(): Promise<KeyStore> {
    if (this.mode === "aws" && !process.env.AMK_PKCS11_LIBRARY) {
      return Promise.reject(
        new UsageError(
          "this command needs the HSM, which AWS mode reaches only from a host with the CloudHSM client",
          "set AMK_PKCS11_LIBRARY, AMK_PKCS11_TOKEN_LABEL and AMK_PKCS11_PIN_SECRET_ID there, or use the deployed functions (docs/cli.md)",
        ),
      );
    }
    this.keyStoreOpened ??= load.keyStore().then((m) => m.keyStoreFromEnv());
    return this.keyStoreOpened;
  }

  async vault(): Promise<SecretVault> {
    return (await load.vault()).vaultFromEnv();
  }

  async alerts(): Promise<Alerts> {
    if (this.local) {
      const { FileAlerts } = await import("../../core/adapters/file-alerts/file-alerts.js");
      return new FileAlerts(this.local.alertLog);
    }
    const [{ alertsFromEnv }, { Logger }] = await Promise.all([
      import("../../functions/shared/notify.js"),
      import("@aws-lambda-powertools/logger"),
    ]);
    return alertsFromEnv(new Logger({ serviceName: "amk-cli", logLevel: "ERROR" }));
  }

  kits(): Promise<KitService> {
    this.kitService ??= (async () => {
      const { KitService } = await import("../../core/kit/kit-service.js");
      return new KitService({
        keyStore: await this.keyStore(),
        events: this.events(),
        vault: await this.vault(),
        alerts: await this.alerts(),
        oaepHash: process.env.AMK_DRILL_OAEP_HASH === "SHA-256" ? "SHA-256" : "SHA-1",
      });
    })();
    return this.kitService;
  }

  async dataKeys(): Promise<DataKeyService> {
    const { DataKeyService } = await import("../../core/datakeys/data-keys.js");
    const { writerTimingFromEnv } = await import("../../functions/shared/services.js");
    const { writeWindowMs } = writerTimingFromEnv();
    return new DataKeyService({
      keyStore: await this.keyStore(),
      events: this.events(),
      ...(writeWindowMs !== undefined ? { writeWindowMs } : {}),
    });
  }

  /**
   * The pipeline's client: the real data-key handlers in process (local), or Lambda Invoke (AWS). `observe` sees
   * which master key version answered each request (never the keys).
   */
  async dataKeyClient(
    observe?: (seen: { documentId: string; keyId: string }) => void,
  ): Promise<DataKeyClient> {
    const { DataKeyClient } = await import("../../core/client/data-key-client.js");
    let transport: DataKeyTransport;
    if (this.local) {
      transport = (await import("../local/in-process-transport.js")).inProcessTransport;
    } else {
      const generate = process.env.AMK_GENERATE_FUNCTION_NAME;
      const decrypt = process.env.AMK_DECRYPT_FUNCTION_NAME;
      if (!generate || !decrypt) {
        throw new UsageError(
          "AWS mode needs the data-key functions",
          "set AMK_GENERATE_FUNCTION_NAME and AMK_DECRYPT_FUNCTION_NAME (outputs GenerateDataKeysFunctionName, DecryptDataKeysFunctionName)",
        );
      }
      const { createLambdaDataKeyTransport } =
        await import("../../core/adapters/lambda/lambda-data-key-transport.js");
      transport = createLambdaDataKeyTransport({
        generateFunctionName: generate,
        decryptFunctionName: decrypt,
      });
    }
    const watched: DataKeyTransport = observe
      ? {
          generate: async (r) => tell(await transport.generate(r)),
          decrypt: async (r) => tell(await transport.decrypt(r)),
        }
      : transport;
    function tell(a: DataKeysAnswer): DataKeysAnswer {
      if (a.ok) observe?.({ documentId: a.documentId, keyId: a.keyId });
      return a;
    }
    const client = new DataKeyClient({ transport: watched, sweepIntervalMs: 0 });
    this.clients.push(client);
    return client;
  }

  /** Access tokens: the local signing key file, or the signing secret of AMK_TOKEN_SIGNING_SECRET_ID (AWS). */
  async tokens(): Promise<AccessTokenService> {
    const { AccessTokenService } = await import("../../core/access/access-tokens.js");
    const local = this.local;
    const signingKey = local
      ? async () => {
          if (!this.signingKey) {
            const text = readFileSync(local.tokenSigningKeyFile, "utf8").trim();
            this.signingKey = new Uint8Array(Buffer.from(text, "base64"));
          }
          return this.signingKey;
        }
      : (await import("../../functions/shared/token-key.js")).tokenSigningKeyFromEnv();
    return new AccessTokenService({ events: this.events(), signingKey });
  }

  /** The workspace's state; `NotFoundError` (exit 5) for an id that was never provisioned. */
  async requireWorkspace(workspaceId: string): Promise<WorkspaceState> {
    checkWorkspaceId(workspaceId);
    const { readWorkspace } = await import("../../core/workspaces/workspace.js");
    const ws = await readWorkspace(this.events(), workspaceId);
    if (ws.keys.length === 0) {
      throw new NotFoundError(
        `unknown workspace "${workspaceId}": it has no master key`,
        "WORKSPACE_NOT_PROVISIONED",
        `check the id, or provision it with \`amk workspace provision ${workspaceId}\``,
      );
    }
    return ws;
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.dispose();
    this.signingKey?.fill(0);
    const ks = await this.keyStoreOpened?.catch(() => undefined);
    await ks?.close().catch(() => undefined);
  }
}

export function checkWorkspaceId(workspaceId: string): void {
  if (!WORKSPACE_ID_PATTERN.test(workspaceId)) {
    throw new UsageError(
      `invalid workspace id ${JSON.stringify(workspaceId)}: 1-64 letters, digits, - and _`,
    );
  }
}
