/** assessHsmBackups: the drill's rule for a CloudHSM cluster's backups and their copy in a second region. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assessHsmBackups, type HsmBackup, type HsmBackupPolicy } from "../../core/drills/hsm-backups.js";
import { InvalidInputError } from "../../core/shared/errors.js";

const CLUSTER = "cluster-igklspoyj5v";
const NOW = new Date("2026-03-10T12:00:00Z");
const hoursAgo = (h: number) => new Date(NOW.getTime() - h * 3_600_000);

const own = (id: string, ageHours: number, state = "READY"): HsmBackup => ({
  backupId: id,
  clusterId: CLUSTER,
  region: "us-east-1",
  state,
  createdAt: hoursAgo(ageHours),
});
const copyOf = (id: string, source: string, ageHours: number, state = "READY"): HsmBackup => ({
  backupId: id,
  clusterId: CLUSTER,
  region: "eu-west-1",
  state,
  createdAt: hoursAgo(ageHours),
  sourceRegion: "us-east-1",
  sourceBackupId: source,
});

const policy: HsmBackupPolicy = { clusterId: CLUSTER, maxAgeHours: 26 };
const withCopy: HsmBackupPolicy = { ...policy, copyRegion: "eu-west-1" };

describe("assessHsmBackups", () => {
  it("passes with a fresh READY backup, naming the newest one and its age", () => {
    const a = assessHsmBackups(
      [own("backup-old", 50), own("backup-new", 3.25), own("backup-mid", 27)],
      policy,
      NOW,
    );
    assert.equal(a.ok, true);
    assert.match(a.detail, /backup-new, 3\.3 h old \(limit 26 h\)/);
    assert.equal(a.action, undefined);
  });

  it("fails when the newest READY backup is older than the limit", () => {
    const a = assessHsmBackups([own("backup-a", 30), own("backup-b", 40)], policy, NOW);
    assert.equal(a.ok, false);
    assert.match(a.detail, /backup-a, 30\.0 h old \(older than the limit of 26 h\)/);
    assert.match(a.action ?? "", /daily backup/);
    assert.match(a.action ?? "", new RegExp(`describe-backups --filters clusterIds=${CLUSTER}`));
  });

  it("fails at exactly the limit (younger than, not as old as)", () => {
    assert.equal(assessHsmBackups([own("backup-a", 26)], policy, NOW).ok, false);
  });

  it("fails with no backups at all", () => {
    const a = assessHsmBackups([], policy, NOW);
    assert.equal(a.ok, false);
    assert.match(a.detail, /has no backup in its own region/);
    assert.ok(a.action);
  });

  it("fails when only non-READY backups are fresh, and lists them", () => {
    const a = assessHsmBackups(
      [own("backup-wip", 1, "CREATE_IN_PROGRESS"), own("backup-del", 2, "PENDING_DELETION")],
      policy,
      NOW,
    );
    assert.equal(a.ok, false);
    assert.match(a.detail, /no READY backup in us-east-1/);
    assert.match(a.detail, /backup-wip CREATE_IN_PROGRESS, 1\.0 h old/);
    assert.match(a.detail, /backup-del PENDING_DELETION/);
  });

  it("ignores other clusters' backups", () => {
    const other = { ...own("backup-other", 1), clusterId: "cluster-zzzzzzzzz22" };
    assert.equal(assessHsmBackups([other], policy, NOW).ok, false);
  });

  it("passes with a READY copy younger than twice the backup limit by default", () => {
    const a = assessHsmBackups(
      [own("backup-new", 2), own("backup-y", 26.5), copyOf("backup-c1", "backup-y", 50)],
      withCopy,
      NOW,
    );
    assert.equal(a.ok, true, a.detail);
    assert.match(
      a.detail,
      /newest READY copy in eu-west-1: backup-c1 \(of backup-y\), 50\.0 h old \(limit 52 h\)/,
    );
  });

  it("fails when the copy is missing, saying which backup to copy and where", () => {
    const a = assessHsmBackups(
      [own("backup-new", 2), copyOf("backup-wip", "backup-new", 2, "CREATE_IN_PROGRESS")],
      withCopy,
      NOW,
    );
    assert.equal(a.ok, false);
    assert.match(a.detail, /backup-new, 2\.0 h old/);
    assert.match(a.detail, /no READY copy of cluster-igklspoyj5v's backups in eu-west-1/);
    assert.match(
      a.action ?? "",
      /`aws cloudhsmv2 copy-backup-to-region --region us-east-1 --destination-region eu-west-1 --backup-id backup-new`/,
    );
    assert.doesNotMatch(a.action ?? "", /daily backup:/, "the cluster's own backup is fine");
  });

  it("fails when the copy is stale (with the default and with an explicit limit)", () => {
    const backups = [own("backup-new", 2), copyOf("backup-c1", "backup-x", 53)];
    const a = assessHsmBackups(backups, withCopy, NOW);
    assert.equal(a.ok, false);
    assert.match(a.detail, /backup-c1 \(of backup-x\), 53\.0 h old \(older than the limit of 52 h\)/);
    assert.match(a.action ?? "", /--backup-id backup-new/);
    assert.equal(assessHsmBackups(backups, { ...withCopy, maxCopyAgeHours: 60 }, NOW).ok, true);
    assert.equal(assessHsmBackups(backups, { ...withCopy, maxCopyAgeHours: 30 }, NOW).ok, false);
  });

  it("does not take a copy for the cluster's own backup, nor a backup in its region for a copy", () => {
    // Only a (fresh) copy: the cluster's own region has nothing.
    const onlyCopy = assessHsmBackups([copyOf("backup-c1", "backup-x", 1)], withCopy, NOW);
    assert.equal(onlyCopy.ok, false);
    assert.match(onlyCopy.detail, /has no backup in its own region/);
    assert.match(onlyCopy.detail, /newest READY copy in eu-west-1: backup-c1/);
    assert.doesNotMatch(onlyCopy.action ?? "", /copy-backup-to-region/, "the copy itself is fresh");
    // Nothing anywhere: the copy step waits for a backup.
    const nothing = assessHsmBackups([], withCopy, NOW);
    assert.match(nothing.action ?? "", /Once the cluster has a READY backup, copy it to eu-west-1/);
    // Only own backups: no copy.
    assert.equal(assessHsmBackups([own("backup-new", 1)], withCopy, NOW).ok, false);
  });

  it("reports both problems with both actions", () => {
    const a = assessHsmBackups([own("backup-old", 40), copyOf("backup-c1", "backup-old", 80)], withCopy, NOW);
    assert.equal(a.ok, false);
    assert.match(a.action ?? "", /daily backup/);
    assert.match(a.action ?? "", /--backup-id backup-old/);
  });

  it("refuses a policy without a positive age", () => {
    assert.throws(() => assessHsmBackups([], { ...policy, maxAgeHours: 0 }, NOW), InvalidInputError);
    assert.throws(() => assessHsmBackups([], { ...withCopy, maxCopyAgeHours: -1 }, NOW), InvalidInputError);
  });
});
