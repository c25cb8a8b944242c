/**
 * The HSM backups a drill checks: in AWS, the CloudHSM cluster's backups (`DescribeBackups`), which must include one
 * newer than a configurable age and a copy of a recent one in a second region. The port lists backups; the rule that
 * judges them is here, free of any SDK.
 */
import { InvalidInputError } from "../shared/errors.js";

export interface HsmBackup {
  readonly backupId: string;
  readonly clusterId: string;
  /** The region the backup lives in. */
  readonly region: string;
  /** CREATE_IN_PROGRESS, READY, DELETED, PENDING_DELETION (CloudHSM's BackupState). */
  readonly state: string;
  readonly createdAt: Date;
  /** Set on a copy: where it was copied from. */
  readonly sourceRegion?: string;
  readonly sourceBackupId?: string;
}

export interface HsmBackupSource {
  /** Every backup of the cluster in the primary region and in the copy region (if one is configured). */
  listBackups(clusterId: string): Promise<HsmBackup[]>;
}

export interface HsmBackupPolicy {
  readonly clusterId: string;
  /** The newest READY backup in the cluster's region must be younger than this (default 26 h: daily + slack). */
  readonly maxAgeHours: number;
  /** A READY copy younger than `maxCopyAgeHours` must exist in this region. */
  readonly copyRegion?: string;
  readonly maxCopyAgeHours?: number;
}

export interface HsmBackupAssessment {
  readonly ok: boolean;
  /** Non-secret facts: backup ids, ages. */
  readonly detail: string;
  /** What to do when not ok. */
  readonly action?: string;
}

const HOUR_MS = 3_600_000;
const READY = "READY";

/**
 * Judges a cluster's backups against the policy:
 * - the newest READY backup in the cluster's own region (backups of the cluster that are not copies, outside the
 *   copy region) must be younger than `maxAgeHours`;
 * - with `copyRegion`, a READY backup of the cluster in that region must be younger than `maxCopyAgeHours` (default
 *   twice `maxAgeHours`). A copy's creation time is its source's, so its age is that of the keys it holds.
 *
 * `detail` names the backups judged and their ages in hours; `action` (when not ok) says what to do.
 */
export function assessHsmBackups(
  backups: readonly HsmBackup[],
  policy: HsmBackupPolicy,
  now: Date,
): HsmBackupAssessment {
  const { clusterId, copyRegion } = policy;
  const maxAge = policy.maxAgeHours;
  const maxCopyAge = policy.maxCopyAgeHours ?? maxAge * 2;
  if (!(maxAge > 0) || !Number.isFinite(maxAge) || !(maxCopyAge > 0) || !Number.isFinite(maxCopyAge)) {
    throw new InvalidInputError(
      "HSM backup policy: maxAgeHours and maxCopyAgeHours must be positive numbers",
      {
        context: { clusterId, maxAgeHours: maxAge, maxCopyAgeHours: maxCopyAge },
      },
    );
  }
  const ageHours = (b: HsmBackup): number => {
    const t = b.createdAt instanceof Date ? b.createdAt.getTime() : NaN;
    return Number.isNaN(t) ? Infinity : Math.max(0, (now.getTime() - t) / HOUR_MS);
  };
  const hours = (h: number): string => (Number.isFinite(h) ? `${h.toFixed(1)} h` : "unknown age");
  const newestFirst = (a: HsmBackup, b: HsmBackup): number => ageHours(a) - ageHours(b);

  const mine = backups.filter((b) => b.clusterId === clusterId);
  const own = mine.filter(
    (b) => b.sourceRegion === undefined && b.sourceBackupId === undefined && b.region !== copyRegion,
  );
  const ownReady = own.filter((b) => b.state === READY).sort(newestFirst);
  const newest = ownReady[0];
  const primaryRegion = newest?.region ?? own[0]?.region;

  const details: string[] = [];
  const actions: string[] = [];
  let ok = true;

  if (newest === undefined) {
    ok = false;
    const others = own
      .slice()
      .sort(newestFirst)
      .slice(0, 5)
      .map((b) => `${b.backupId} ${b.state}, ${hours(ageHours(b))} old`);
    details.push(
      own.length === 0
        ? `cluster ${clusterId} has no backup in its own region`
        : `cluster ${clusterId} has no READY backup in ${primaryRegion} (${own.length} other: ${others.join("; ")}` +
            `${own.length > 5 ? "; ..." : ""})`,
    );
  } else {
    const age = ageHours(newest);
    const fresh = age < maxAge;
    details.push(
      `newest READY backup of ${clusterId} in ${newest.region}: ${newest.backupId}, ${hours(age)} old ` +
        `(${fresh ? "limit" : "older than the limit of"} ${maxAge} h)`,
    );
    if (!fresh) ok = false;
  }
  if (!ok) {
    actions.push(
      `Check the cluster's daily backup: CloudHSM backs a cluster up at least every 24 hours only while it has an ` +
        `active HSM (\`aws cloudhsmv2 describe-clusters --filters clusterIds=${clusterId}\` shows its HSMs and ` +
        `state, \`aws cloudhsmv2 describe-backups --filters clusterIds=${clusterId}\` its backups).`,
    );
  }

  if (copyRegion !== undefined) {
    const copies = mine.filter((b) => b.region === copyRegion && b.state === READY).sort(newestFirst);
    const copy = copies[0];
    let copyOk = false;
    if (copy === undefined) {
      details.push(`no READY copy of ${clusterId}'s backups in ${copyRegion}`);
    } else {
      const age = ageHours(copy);
      copyOk = age < maxCopyAge;
      details.push(
        `newest READY copy in ${copyRegion}: ${copy.backupId}` +
          `${copy.sourceBackupId === undefined ? "" : ` (of ${copy.sourceBackupId})`}, ${hours(age)} old ` +
          `(${copyOk ? "limit" : "older than the limit of"} ${maxCopyAge} h)`,
      );
    }
    if (!copyOk) {
      ok = false;
      const from = primaryRegion === undefined ? "" : ` --region ${primaryRegion}`;
      actions.push(
        newest === undefined
          ? `Once the cluster has a READY backup, copy it to ${copyRegion} with \`aws cloudhsmv2 ` +
              `copy-backup-to-region${from} --destination-region ${copyRegion} --backup-id <backup-id>\`, and ` +
              "check the job that copies the daily backup."
          : `Copy the latest backup to ${copyRegion}: \`aws cloudhsmv2 copy-backup-to-region${from} ` +
              `--destination-region ${copyRegion} --backup-id ${newest.backupId}\`, and check the job that copies ` +
              "the daily backup.",
      );
    }
  }

  return ok
    ? { ok, detail: details.join("; ") }
    : { ok, detail: details.join("; "), action: actions.join(" ") };
}
