/**
 * The drill function: runs the drill of one workspace (daily from the EventBridge schedule, or on demand when an
 * administrator starts the drill state machine with `{"workspaceId": "..."}`). A failed drill is a normal answer
 * (`ok: false`, the names of the failed checks): the drill has recorded `DrillCompleted` and raised its alert, and
 * the workflow decides what follows. Only bad input, an unprovisioned workspace or a result that could not be
 * recorded is thrown (by class name, for the state machine's Retry and Catch). The answer holds no secret.
 *
 * Environment: the key store, event store, vault and alerts as every function (functions/shared/: alerts go to the SNS
 * topic AMK_ALERT_TOPIC_ARN, else the local alert log AMK_ALERT_LOG, else log lines), AMK_DRILL_OAEP_HASH, and
 * for the CloudHSM backup check AMK_HSM_CLUSTER_ID (unset: local mode, the check is skipped; the cluster is in the
 * function's region, AWS_REGION), AMK_HSM_BACKUP_MAX_AGE_HOURS (default 26) and AMK_HSM_BACKUP_COPY_REGION (a
 * recent copy must exist there).
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { CloudHSMV2Client } from "@aws-sdk/client-cloudhsm-v2";
import { z } from "zod";
import { CloudHsmBackupSource } from "../../core/adapters/cloudhsm/cloudhsm-backups.js";
import { DataKeyService } from "../../core/datakeys/data-keys.js";
import { DrillService, MAX_SAMPLE_SIZE, type DrillServiceDeps } from "../../core/drills/drill-service.js";
import type { HsmBackup, HsmBackupPolicy, HsmBackupSource } from "../../core/drills/hsm-backups.js";
import { KitService } from "../../core/kit/kit-service.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import { eventStoreFromEnv } from "../shared/event-store.js";
import { keyStoreEnvKey, keyStoreFromEnv } from "../shared/key-store.js";
import { alertsFromEnv } from "../shared/notify.js";
import { parseInput, WorkspaceIdSchema } from "../shared/schemas.js";
import { vaultFromEnv } from "../shared/vault.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });
const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? "ArquivoMateKeys",
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys",
});

export const DEFAULT_HSM_BACKUP_MAX_AGE_HOURS = 26;

const DrillInput = z.object({
  workspaceId: WorkspaceIdSchema,
  trigger: z.enum(["schedule", "on-demand"], { error: "trigger must be schedule or on-demand" }).optional(),
  sampleSize: z
    .number({ error: "sampleSize must be a number" })
    .int("sampleSize must be an integer")
    .min(1, "sampleSize: at least 1")
    .max(MAX_SAMPLE_SIZE, `sampleSize: at most ${MAX_SAMPLE_SIZE}`)
    .optional(),
  /** The CloudHSM backup listing from the workflow's ListHsmBackups step (functions/hsm-backups), when it ran. */
  hsmBackups: z
    .object({
      clusterId: z.string().max(64).optional(),
      backups: z
        .array(
          z.object({
            backupId: z.string().max(64),
            clusterId: z.string().max(64),
            region: z.string().max(32),
            state: z.string().max(32),
            createdAt: z.iso.datetime(),
            sourceRegion: z.string().max(32).optional(),
            sourceBackupId: z.string().max(64).optional(),
          }),
        )
        .max(10_000),
    })
    .optional(),
});

/**
 * The source the drill service asks: the listing handed in by the workflow for this invocation when there is one
 * (the HSM functions in the VPC cannot reach another region's CloudHSM API), else DescribeBackups directly.
 */
class InvocationHsmBackupSource implements HsmBackupSource {
  listing: HsmBackup[] | undefined;
  constructor(private readonly direct: HsmBackupSource) {}
  async listBackups(clusterId: string): Promise<HsmBackup[]> {
    return this.listing ?? this.direct.listBackups(clusterId);
  }
}
let invocationSource: InvocationHsmBackupSource | undefined;

export interface DrillAnswer {
  readonly workspaceId: string;
  readonly drillId: string;
  readonly ok: boolean;
  /** Names of the checks that failed (their details and actions are in the DrillCompleted event and the alert). */
  readonly failed: string[];
}

/** The CloudHSM backup policy from the environment; undefined when no cluster is configured (local mode). */
export function hsmBackupPolicyFromEnv(env: NodeJS.ProcessEnv = process.env): HsmBackupPolicy | undefined {
  const clusterId = env.AMK_HSM_CLUSTER_ID;
  if (!clusterId) return undefined;
  const raw = env.AMK_HSM_BACKUP_MAX_AGE_HOURS;
  const maxAgeHours = raw ? Number(raw) : DEFAULT_HSM_BACKUP_MAX_AGE_HOURS;
  if (!Number.isFinite(maxAgeHours) || maxAgeHours <= 0) {
    throw new InvalidInputError("AMK_HSM_BACKUP_MAX_AGE_HOURS must be a positive number of hours");
  }
  const copyRegion = env.AMK_HSM_BACKUP_COPY_REGION || undefined;
  return { clusterId, maxAgeHours, ...(copyRegion ? { copyRegion } : {}) };
}

/** DescribeBackups in the function's region (the cluster's) and, with a copy region, there too. */
function hsmBackupSourceFromEnv(
  policy: HsmBackupPolicy,
  env: NodeJS.ProcessEnv = process.env,
): HsmBackupSource {
  const region = env.AWS_REGION;
  if (!region) throw new InvalidInputError("AWS_REGION must name the CloudHSM cluster's region");
  const endpoint = env.AMK_AWS_ENDPOINT_CLOUDHSMV2 || env.AWS_ENDPOINT_URL || undefined;
  const client = (r: string) => new CloudHSMV2Client({ region: r, ...(endpoint ? { endpoint } : {}) });
  return new CloudHsmBackupSource({
    primary: { client: client(region), region },
    ...(policy.copyRegion ? { copy: { client: client(policy.copyRegion), region: policy.copyRegion } } : {}),
  });
}

let cached: { key: string; service: Promise<DrillService> } | undefined;

function service(): Promise<DrillService> {
  const env = process.env;
  const key = [
    keyStoreEnvKey(),
    env.AMK_EVENT_TABLE,
    env.AMK_ALERT_TOPIC_ARN,
    env.AMK_ALERT_LOG,
    env.AMK_HSM_CLUSTER_ID,
    env.AMK_HSM_BACKUP_MAX_AGE_HOURS,
    env.AMK_HSM_BACKUP_COPY_REGION,
  ].join("|");
  if (cached?.key !== key) cached = { key, service: build() };
  const current = cached;
  return current.service.catch((err: unknown) => {
    if (cached === current) cached = undefined; // the next invocation builds again
    throw err;
  });
}

async function build(): Promise<DrillService> {
  const policy = hsmBackupPolicyFromEnv();
  const keyStore = await keyStoreFromEnv(logger);
  const events = eventStoreFromEnv();
  const alerts = alertsFromEnv(logger);
  const kits = new KitService({
    keyStore,
    events,
    vault: await vaultFromEnv(),
    alerts,
    oaepHash: process.env.AMK_DRILL_OAEP_HASH === "SHA-256" ? "SHA-256" : "SHA-1",
  });
  const deps: DrillServiceDeps = {
    keyStore,
    events,
    kits,
    dataKeys: new DataKeyService({ keyStore, events }),
    alerts,
  };
  invocationSource = policy ? new InvocationHsmBackupSource(hsmBackupSourceFromEnv(policy)) : undefined;
  return new DrillService(
    policy && invocationSource ? { ...deps, hsmBackups: { source: invocationSource, policy } } : deps,
  );
}

export const runDrillHandler = instrumented(
  "runDrillHandler",
  async (event: unknown): Promise<DrillAnswer> => {
    const input = parseInput(DrillInput, event);
    const drills = await service();
    if (invocationSource) {
      invocationSource.listing = input.hsmBackups?.backups.map((b) => ({
        ...b,
        createdAt: new Date(b.createdAt),
      }));
    }
    let r;
    try {
      r = await drills.runDrill(input.workspaceId, {
        trigger: input.trigger ?? "on-demand",
        ...(input.sampleSize !== undefined ? { sampleSize: input.sampleSize } : {}),
      });
    } finally {
      if (invocationSource) invocationSource.listing = undefined;
    }
    const failed = r.checks.filter((c) => c.Status === "failed").map((c) => c.Name);
    const skipped = r.checks.filter((c) => c.Status === "skipped").map((c) => c.Name);
    const facts = { workspaceId: input.workspaceId, drillId: r.drillId, ok: r.ok, failed, skipped };
    if (r.ok) logger.info("drill passed", { ...facts, durationMs: r.durationMs });
    else logger.warn("drill failed", { ...facts, durationMs: r.durationMs });
    metrics.addDimension("workspaceId", input.workspaceId);
    metrics.addMetric("DrillFailedChecks", MetricUnit.Count, failed.length);
    metrics.addMetric("DrillDuration", MetricUnit.Milliseconds, r.durationMs);
    metrics.publishStoredMetrics();
    return { workspaceId: input.workspaceId, drillId: r.drillId, ok: r.ok, failed };
  },
);
