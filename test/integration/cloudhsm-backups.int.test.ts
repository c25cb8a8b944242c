/**
 * CloudHsmBackupSource with the real @aws-sdk/client-cloudhsm-v2 (3.332.0, AWS JSON 1.1) against two loopback
 * servers, one per region, answering with recorded DescribeBackups response shapes (test/fixtures/cloudhsm): the
 * requests (filter, pagination), the mapping to HsmBackup, the drill's judgement of them, and error mapping.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { CloudHSMV2Client } from "@aws-sdk/client-cloudhsm-v2";
import { CloudHsmBackupSource } from "../../core/adapters/cloudhsm/cloudhsm-backups.js";
import { HsmBackupCheckError } from "../../core/adapters/cloudhsm/errors.js";
import { assessHsmBackups, type HsmBackup } from "../../core/drills/hsm-backups.js";
import { InvalidInputError } from "../../core/shared/errors.js";
import {
  FAKE_CREDENTIALS,
  jsonFixture,
  startReplayServer,
  type ReplayServer,
} from "../support/aws-replay-server.js";

const CLUSTER = "cluster-igklspoyj5v";
const recorded = (name: string) => () => jsonFixture("cloudhsm", name);
const bodies = (s: ReplayServer) => s.requests.map((r) => JSON.parse(r.body) as Record<string, unknown>);

describe("CloudHsmBackupSource (recorded CloudHSM shapes)", () => {
  let primary: ReplayServer;
  let copy: ReplayServer;
  const client = (server: ReplayServer, region: string) =>
    new CloudHSMV2Client({
      endpoint: server.endpoint,
      region,
      credentials: FAKE_CREDENTIALS,
      maxAttempts: 1,
    });
  let source: CloudHsmBackupSource;

  before(async () => {
    primary = await startReplayServer();
    copy = await startReplayServer();
    source = new CloudHsmBackupSource({
      primary: { client: client(primary, "us-east-1"), region: "us-east-1" },
      copy: { client: client(copy, "eu-west-1"), region: "eu-west-1" },
    });
  });
  after(async () => {
    await primary.close();
    await copy.close();
  });
  beforeEach(() => {
    primary.requests.length = 0;
    copy.requests.length = 0;
    primary.handler = (_req, i) =>
      i === 0 ? recorded("describe-backups-page-1")() : recorded("describe-backups-page-2")();
    copy.handler = recorded("describe-backups-copy-region");
  });

  it("lists every page in the cluster's region and the cluster's copies in the copy region", async () => {
    const backups = await source.listBackups(CLUSTER);

    for (const [server, region] of [
      [primary, "us-east-1"],
      [copy, "eu-west-1"],
    ] as const) {
      for (const r of server.requests) {
        assert.equal(r.headers["x-amz-target"], "BaldrApiService.DescribeBackups");
        assert.equal(r.headers["content-type"], "application/x-amz-json-1.1");
        assert.match(String(r.headers.authorization), new RegExp(`/${region}/cloudhsm/aws4_request`));
      }
    }
    assert.deepEqual(bodies(primary), [
      { Filters: { clusterIds: [CLUSTER] } },
      {
        Filters: { clusterIds: [CLUSTER] },
        NextToken: "eyJDbHVzdGVySWQiOiJjbHVzdGVyLWlna2xzcG95ajV2IiwiT2Zmc2V0IjoyfQ==",
      },
    ]);
    assert.deepEqual(
      bodies(copy),
      [{}],
      "the copy region is listed without a filter (none matches a source cluster)",
    );

    const expected: HsmBackup[] = [
      {
        backupId: "backup-rtq2dwi2gq6",
        clusterId: CLUSTER,
        region: "us-east-1",
        state: "READY",
        createdAt: new Date("2026-03-10T02:00:04.318Z"),
      },
      {
        backupId: "backup-uvwxyzabcd2",
        clusterId: CLUSTER,
        region: "us-east-1",
        state: "CREATE_IN_PROGRESS",
        createdAt: new Date("2026-03-10T11:30:00.500Z"),
      },
      {
        backupId: "backup-lmnopqrst34",
        clusterId: CLUSTER,
        region: "us-east-1",
        state: "READY",
        createdAt: new Date("2026-03-09T02:00:07.042Z"),
      },
      {
        backupId: "backup-efghijklm56",
        clusterId: CLUSTER,
        region: "us-east-1",
        state: "PENDING_DELETION",
        createdAt: new Date("2026-01-20T02:00:02.900Z"),
      },
      {
        backupId: "backup-copy2abcdef7",
        clusterId: CLUSTER,
        region: "eu-west-1",
        state: "READY",
        createdAt: new Date("2026-03-09T02:00:07.042Z"),
        sourceRegion: "us-east-1",
        sourceBackupId: "backup-lmnopqrst34",
      },
    ];
    assert.deepEqual(backups, expected);
  });

  it("feeds the drill's judgement: fresh backup and copy pass, a stricter copy age fails with the copy command", async () => {
    const backups = await source.listBackups(CLUSTER);
    const now = new Date("2026-03-10T12:00:00Z");
    const ok = assessHsmBackups(
      backups,
      { clusterId: CLUSTER, maxAgeHours: 26, copyRegion: "eu-west-1" },
      now,
    );
    assert.equal(ok.ok, true, ok.detail);
    assert.match(ok.detail, /backup-rtq2dwi2gq6, 10\.0 h old/);
    assert.match(ok.detail, /backup-copy2abcdef7 \(of backup-lmnopqrst34\), 34\.0 h old/);

    const stale = assessHsmBackups(
      backups,
      { clusterId: CLUSTER, maxAgeHours: 26, copyRegion: "eu-west-1", maxCopyAgeHours: 24 },
      now,
    );
    assert.equal(stale.ok, false);
    assert.match(
      stale.action ?? "",
      /aws cloudhsmv2 copy-backup-to-region --region us-east-1 --destination-region eu-west-1 --backup-id backup-rtq2dwi2gq6/,
    );
  });

  it("asks only the primary region without a copy region", async () => {
    const only = new CloudHsmBackupSource({
      primary: { client: client(primary, "us-east-1"), region: "us-east-1" },
    });
    const backups = await only.listBackups(CLUSTER);
    assert.equal(backups.length, 4);
    assert.equal(copy.requests.length, 0);
  });

  const errors = [
    { file: "access-denied", name: "CloudHsmAccessDeniedException", status: 400, reason: "access-denied" },
    {
      file: "resource-not-found",
      name: "CloudHsmResourceNotFoundException",
      status: 400,
      reason: "not-found",
    },
    { file: "invalid-request", name: "CloudHsmInvalidRequestException", status: 400, reason: "rejected" },
    {
      file: "internal-failure",
      name: "CloudHsmInternalFailureException",
      status: 500,
      reason: "unavailable",
    },
    { file: "throttling", name: "ThrottlingException", status: 400, reason: "unavailable" },
  ] as const;
  for (const c of errors) {
    it(`maps ${c.name} to HsmBackupCheckError ${c.reason}, naming the region`, async () => {
      copy.handler = recorded(c.file);
      let caught: unknown;
      await source.listBackups(CLUSTER).catch((e: unknown) => (caught = e));
      assert.ok(caught instanceof HsmBackupCheckError, String(caught));
      assert.equal(caught.code, "HSM_BACKUP_CHECK");
      assert.equal(caught.reason, c.reason);
      assert.equal(caught.retryable, c.reason === "unavailable");
      assert.equal(caught.context.awsErrorName, c.name);
      assert.equal(caught.context.httpStatusCode, c.status);
      assert.equal(caught.context.region, "eu-west-1");
      assert.equal(caught.context.clusterId, CLUSTER);
      assert.match(caught.message, /eu-west-1/);
    });
  }

  it("stops on a NextToken that repeats, and refuses a malformed cluster id before calling", async () => {
    primary.handler = recorded("describe-backups-page-1");
    await assert.rejects(
      source.listBackups(CLUSTER),
      (e: unknown) => e instanceof HsmBackupCheckError && /same NextToken/.test(e.message),
    );
    assert.equal(primary.requests.length, 2);
    primary.requests.length = 0;
    await assert.rejects(source.listBackups("my-cluster"), InvalidInputError);
    assert.equal(primary.requests.length, 0);
  });
});
