/**
 * `HsmBackupSource` over AWS CloudHSM v2 `DescribeBackups`, in the cluster's region and, optionally, the region that
 * holds copies of its backups.
 *
 * - Primary region: `Filters: { clusterIds: [clusterId] }`, every page (`NextToken`).
 * - Copy region: the API has no filter on the source cluster (its filters are `backupIds`, `sourceBackupIds`,
 *   `clusterIds`, `states`, `neverExpires`), and the docs only promise that a copied backup carries `SourceRegion`,
 *   `SourceBackup` and `SourceCluster`. So the copy region is listed without a filter, every page, and a backup is
 *   kept when its `SourceCluster` (or `ClusterId`) is the cluster. A copy's `CreateTimestamp` is its source's
 *   (CopyBackupToRegion), so its age is the age of the key material it holds.
 *
 * SDK errors become `HsmBackupCheckError` (./errors.ts).
 */
import {
  DescribeBackupsCommand,
  type Backup,
  type CloudHSMV2Client,
  type DescribeBackupsRequest,
} from "@aws-sdk/client-cloudhsm-v2";
import type { HsmBackup, HsmBackupSource } from "../../drills/hsm-backups.js";
import { InvalidInputError } from "../../shared/errors.js";
import { awsErrorContext, awsErrorFacts, describeAwsError, isTransient } from "../aws-service-error.js";
import { HsmBackupCheckError, type HsmBackupCheckFailure } from "./errors.js";

export interface CloudHsmRegionClient {
  readonly client: CloudHSMV2Client;
  /** The client's region: recorded on each backup it lists. */
  readonly region: string;
}

export interface CloudHsmBackupSourceOptions {
  /** The cluster's own region. */
  readonly primary: CloudHsmRegionClient;
  /** The region that holds copies of the cluster's backups (CopyBackupToRegion). */
  readonly copy?: CloudHsmRegionClient;
  /** A guard against a service that never stops paginating; default 100 pages per region. */
  readonly maxPages?: number;
}

const CLUSTER_ID = /^cluster-[2-7a-zA-Z]{11,16}$/;

const ACCESS_DENIED = new Set([
  "CloudHsmAccessDeniedException",
  "AccessDeniedException",
  "UnrecognizedClientException",
  "InvalidClientTokenId",
  "InvalidSignatureException",
  "SignatureDoesNotMatch",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "ExpiredTokenException",
  "ExpiredToken",
]);
const NOT_FOUND = new Set(["CloudHsmResourceNotFoundException", "ResourceNotFoundException"]);
const TRANSIENT = new Set(["CloudHsmInternalFailureException", "CloudHsmThrottlingException"]);

export class CloudHsmBackupSource implements HsmBackupSource {
  private readonly primary: CloudHsmRegionClient;
  private readonly copy: CloudHsmRegionClient | undefined;
  private readonly maxPages: number;

  constructor(options: CloudHsmBackupSourceOptions) {
    for (const [which, r] of [
      ["primary", options.primary],
      ["copy", options.copy],
    ] as const) {
      if (r !== undefined && (typeof r.region !== "string" || r.region === "")) {
        throw new InvalidInputError(`CloudHsmBackupSource: ${which}.region must be a region name`);
      }
    }
    if (options.copy !== undefined && options.copy.region === options.primary.region) {
      throw new InvalidInputError(
        "CloudHsmBackupSource: the copy region must differ from the primary region",
        {
          context: { region: options.primary.region },
        },
      );
    }
    this.primary = options.primary;
    this.copy = options.copy;
    this.maxPages = options.maxPages ?? 100;
  }

  async listBackups(clusterId: string): Promise<HsmBackup[]> {
    if (typeof clusterId !== "string" || !CLUSTER_ID.test(clusterId)) {
      throw new InvalidInputError(
        "CloudHsmBackupSource: clusterId must be a CloudHSM cluster id (cluster-...)",
        {
          context: { clusterId: String(clusterId).slice(0, 64) },
        },
      );
    }
    const own = await this.describeAll(this.primary, clusterId, { clusterIds: [clusterId] });
    const backups = own.map((b) => toHsmBackup(b, this.primary.region, b.ClusterId ?? clusterId));
    if (this.copy !== undefined) {
      const copies = await this.describeAll(this.copy, clusterId, undefined);
      for (const b of copies) {
        if (b.SourceCluster === clusterId || (b.SourceCluster === undefined && b.ClusterId === clusterId)) {
          backups.push(toHsmBackup(b, this.copy.region, clusterId));
        }
      }
    }
    return backups;
  }

  private async describeAll(
    at: CloudHsmRegionClient,
    clusterId: string,
    filters: Record<string, string[]> | undefined,
  ): Promise<Backup[]> {
    const out: Backup[] = [];
    let nextToken: string | undefined;
    const seen = new Set<string>();
    for (let page = 0; ; page++) {
      if (page >= this.maxPages) {
        throw new HsmBackupCheckError(
          `DescribeBackups in ${at.region} returned more than ${this.maxPages} pages for cluster ${clusterId}`,
          "unavailable",
          { context: { clusterId, region: at.region, pages: page } },
        );
      }
      const request: DescribeBackupsRequest = {
        ...(filters === undefined ? {} : { Filters: filters }),
        ...(nextToken === undefined ? {} : { NextToken: nextToken }),
      };
      let response;
      try {
        response = await at.client.send(new DescribeBackupsCommand(request));
      } catch (err) {
        throw translate(err, clusterId, at.region);
      }
      out.push(...(response.Backups ?? []));
      nextToken = response.NextToken === "" ? undefined : response.NextToken;
      if (nextToken === undefined) return out;
      if (seen.has(nextToken)) {
        throw new HsmBackupCheckError(
          `DescribeBackups in ${at.region} returned the same NextToken twice for cluster ${clusterId}`,
          "unavailable",
          { context: { clusterId, region: at.region, pages: page + 1 } },
        );
      }
      seen.add(nextToken);
    }
  }
}

function toHsmBackup(b: Backup, region: string, clusterId: string): HsmBackup {
  return {
    backupId: b.BackupId ?? "",
    clusterId,
    region,
    state: b.BackupState ?? "UNKNOWN",
    // A backup without a creation time sorts as the oldest possible: it never counts as fresh.
    createdAt: b.CreateTimestamp ?? new Date(0),
    ...(b.SourceRegion === undefined ? {} : { sourceRegion: b.SourceRegion }),
    ...(b.SourceBackup === undefined ? {} : { sourceBackupId: b.SourceBackup }),
  };
}

function translate(err: unknown, clusterId: string, region: string): HsmBackupCheckError {
  const facts = awsErrorFacts(err);
  const reason: HsmBackupCheckFailure = !facts.answered
    ? isTransient(facts)
      ? "unavailable"
      : "rejected"
    : ACCESS_DENIED.has(facts.name)
      ? "access-denied"
      : NOT_FOUND.has(facts.name)
        ? "not-found"
        : isTransient(facts, TRANSIENT)
          ? "unavailable"
          : "rejected";
  const hint: Record<HsmBackupCheckFailure, string> = {
    "access-denied": `the caller needs cloudhsm:DescribeBackups in ${region}`,
    "not-found": "check the cluster id and region",
    rejected: "CloudHSM refused the request",
    unavailable: "retry later",
  };
  return new HsmBackupCheckError(
    `Could not list the backups of cluster ${clusterId} in ${region} (${describeAwsError(facts)}): ${hint[reason]}`,
    reason,
    {
      cause: err,
      context: {
        clusterId,
        region,
        ...awsErrorContext(facts),
        ...(facts.awsMessage === undefined ? {} : { awsMessage: facts.awsMessage }),
      },
    },
  );
}
