/**
 * Lists the CloudHSM cluster's backups (DescribeBackups) in its region and in the copy region, for the drill's
 * `hsm-backups` check. It runs outside the VPC (no HSM, no secret): the HSM functions in the cluster's VPC have no
 * route to another region's CloudHSM API (no cross-region private endpoints), so the drill workflow calls this first
 * and hands the listing (ids, states, times: nothing secret) to the drill function.
 *
 * Environment: AMK_HSM_CLUSTER_ID, AMK_HSM_BACKUP_COPY_REGION (optional), AWS_REGION (the cluster's).
 */
import { CloudHSMV2Client } from "@aws-sdk/client-cloudhsm-v2";
import { Logger } from "@aws-lambda-powertools/logger";
import { CloudHsmBackupSource } from "../../core/adapters/cloudhsm/cloudhsm-backups.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import { instrumented } from "../shared/powertools.js";

const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys" });

export interface HsmBackupListing {
  readonly clusterId?: string;
  readonly backups: {
    readonly backupId: string;
    readonly clusterId: string;
    readonly region: string;
    readonly state: string;
    readonly createdAt: string;
    readonly sourceRegion?: string;
    readonly sourceBackupId?: string;
  }[];
}

export const listHsmBackupsHandler = instrumented(
  "listHsmBackupsHandler",
  async (): Promise<HsmBackupListing> => {
    const clusterId = process.env.AMK_HSM_CLUSTER_ID;
    if (!clusterId) return { backups: [] }; // local mode: no cluster (the drill reports the check as skipped)
    const region = process.env.AWS_REGION;
    if (!region) throw new InvalidInputError("AWS_REGION must name the CloudHSM cluster's region");
    const copyRegion = process.env.AMK_HSM_BACKUP_COPY_REGION || undefined;
    const endpoint = process.env.AMK_AWS_ENDPOINT_CLOUDHSMV2 || process.env.AWS_ENDPOINT_URL || undefined;
    const client = (r: string) => new CloudHSMV2Client({ region: r, ...(endpoint ? { endpoint } : {}) });
    const source = new CloudHsmBackupSource({
      primary: { client: client(region), region },
      ...(copyRegion ? { copy: { client: client(copyRegion), region: copyRegion } } : {}),
    });
    const backups = (await source.listBackups(clusterId)).map((b) => ({
      backupId: b.backupId,
      clusterId: b.clusterId,
      region: b.region,
      state: b.state,
      createdAt: b.createdAt.toISOString(),
      ...(b.sourceRegion ? { sourceRegion: b.sourceRegion } : {}),
      ...(b.sourceBackupId ? { sourceBackupId: b.sourceBackupId } : {}),
    }));
    logger.info("CloudHSM backups listed", { clusterId, count: backups.length });
    return { clusterId, backups };
  },
);
