/**
 * Alarms and the dashboard of the service. Every alarm publishes to the stateful stack's alert topic (the one the
 * functions raise their own alerts on), is named `amk-<env>-...` (the topic's and its key's policies admit
 * CloudWatch for alarms of that prefix only, infra/lib/names.ts) and says in its description what to look at.
 *
 * | alarm | metric | fires when |
 * | --- | --- | --- |
 * | `drill-failed` | drill state machine: ExecutionsFailed + ExecutionsTimedOut | > 0 in 5 min |
 * | `drill-missing` (with a drill schedule) | drill state machine: ExecutionsSucceeded, hourly | < 1 in each of the last N hours (N = `amk:drillMissingAfterHours`, default the schedule's longest interval + 2 h); no data counts as none |
 * | `rotation-failed`, `recovery-failed` (the re-wrap jobs) | their state machines: ExecutionsFailed + ExecutionsTimedOut | > 0 in 5 min |
 * | `restoration-test-failed` (`addRestorationTestAlarms`) | the restoration state machine, as above | > 0 in 5 min |
 * | `unlock-refusals` | `ArquivoMateKeys/UnlockRefusals`: a metric filter on the unlock function's log group, one per `request refused` line (functions/shared/responses.ts) | >= `amk:unlockRefusalThreshold` in 15 min |
 * | `<queue>-not-empty` | each dead-letter queue: ApproximateNumberOfMessagesVisible (maximum) | > 0 in 5 min |
 * | `<function>-errors`, `<function>-throttles` | each function: Errors, Throttles (sum) | > 0 in 5 min |
 *
 * The dashboard `amk-<env>` shows the alarms, the re-wrap progress (the rotation functions' EMF metrics
 * `DocumentsRewrapped` and `DocumentsOnOldVersions` per workspace), the drill history (executions, and the drill
 * function's `DrillFailedChecks` per workspace), the rotation and recovery
 * executions, the unlock refusals (by error code), the functions' errors and throttles and the dead letters.
 */
import { Duration } from "aws-cdk-lib";
import {
  Alarm,
  AlarmStatusWidget,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  MathExpression,
  Metric,
  Stats,
  TextWidget,
  TreatMissingData,
  type IMetric,
} from "aws-cdk-lib/aws-cloudwatch";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import type { IFunction } from "aws-cdk-lib/aws-lambda";
import { FilterPattern, MetricFilter, type ILogGroup } from "aws-cdk-lib/aws-logs";
import type { ITopic } from "aws-cdk-lib/aws-sns";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import type { IStateMachine } from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import type { AmkConfig } from "./config.js";
import { alarmNamePrefix } from "./names.js";

/**
 * The CloudWatch namespace of the service's own metrics: the functions' EMF metrics (the default of
 * `POWERTOOLS_METRICS_NAMESPACE` in functions/rotation/handlers.ts) and the unlock refusals' metric filter.
 */
export const METRICS_NAMESPACE = "ArquivoMateKeys";
/** The unlock function's refusal line (`failure()` in functions/shared/responses.ts) and its operation field. */
export const UNLOCK_REFUSAL_MESSAGE = "request refused";
export const UNLOCK_OPERATION = "recovery-unlock";
/** The metric filter's metrics: all refusals (alarmed), and the same by `error.code` (for the dashboard). */
export const UNLOCK_REFUSALS_METRIC = "UnlockRefusals";
export const UNLOCK_REFUSALS_BY_CODE_METRIC = "UnlockRefusalsByCode";
/** The rotation functions' EMF metrics (functions/rotation/handlers.ts), dimensions `service` and `workspaceId`. */
export const REWRAP_METRICS = {
  rewrapped: "DocumentsRewrapped",
  onOldVersions: "DocumentsOnOldVersions",
} as const;
/** The drill function's EMF metric of failed checks (functions/drill/handler.ts), same dimensions. */
export const DRILL_FAILED_CHECKS_METRIC = "DrillFailedChecks";

/** The period of the failure alarms (executions, functions, queues) and of the unlock refusals. */
export const FAILURE_ALARM_PERIOD = Duration.minutes(5);
export const UNLOCK_REFUSAL_PERIOD = Duration.minutes(15);

export interface MonitoringProps {
  readonly config: AmkConfig;
  /** The alert topic every alarm publishes to. */
  readonly topic: ITopic;
  /** Every function, by the suffix of its POWERTOOLS_SERVICE_NAME (`hsm-health`, ...). */
  readonly functions: Record<string, IFunction>;
  readonly stateMachines: {
    readonly rotation: IStateMachine;
    readonly recovery: IStateMachine;
    readonly drill: IStateMachine;
  };
  /** The unlock function's log group (its refusals are counted from it). */
  readonly unlockLogGroup: ILogGroup;
  /** The dead-letter queues, by a short kebab-case name (part of the alarm's name). */
  readonly deadLetterQueues: Record<string, IQueue>;
}

export interface RestorationTestAlarmOptions {
  /**
   * Raise `restoration-test-missing` when no restoration test succeeded for this long (whole hours, at most
   * 7 days: CloudWatch's longest look-back); default: no missing-test alarm.
   */
  readonly missingAfter?: Duration;
}

export class Monitoring extends Construct {
  /** Every alarm, in the order created (the dashboard's alarm widget shows them all). */
  readonly alarms: Alarm[] = [];
  readonly dashboard: Dashboard;
  readonly unlockRefusals: MetricFilter;
  private readonly action: SnsAction;
  private readonly prefix: string;
  private readonly props: MonitoringProps;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    this.props = props;
    this.prefix = alarmNamePrefix(props.config);
    this.action = new SnsAction(props.topic);
    const { rotation, recovery, drill } = props.stateMachines;

    // Drills: a failed or timed-out drill, and (with a schedule) a drill that did not happen.
    this.executionFailureAlarm(
      "DrillFailed",
      "drill-failed",
      drill,
      "A drill failed or timed out: the alert from the drill function names the failed check; see " +
        "docs/runbooks/drills.md (What to do when a check failed).",
    );
    const missingAfterHours = props.config.alarms.drillMissingAfterHours;
    if (props.config.drillSchedule !== undefined && missingAfterHours !== undefined) {
      this.missingExecutionAlarm(
        "DrillMissing",
        "drill-missing",
        drill,
        missingAfterHours,
        `No drill succeeded for ${missingAfterHours} h (schedule ${props.config.drillSchedule.expression}): check ` +
          "the drill schedules (EventBridge Scheduler group amk-<env>-drill, TargetErrorCount) and the drill " +
          "executions; see docs/runbooks/drills.md.",
      );
    }

    // The re-wrap jobs: rotation, and recovery (which re-wraps too).
    this.executionFailureAlarm(
      "RotationFailed",
      "rotation-failed",
      rotation,
      "A rotation (re-wrap job) failed or timed out: RotationFailed in the workspace stream says at which step; " +
        "every key version stays usable. Fix the cause and start the rotation again (docs/rotation.md).",
    );
    this.executionFailureAlarm(
      "RecoveryFailed",
      "recovery-failed",
      recovery,
      "A recovery failed or timed out: RecoveryFailed in the workspace stream names the failed step; the old keys " +
        "are untouched. See docs/runbooks/recovery.md (When it fails).",
    );

    // Unlock refusals, from the unlock function's own refusal line.
    const refusalPattern = FilterPattern.all(
      FilterPattern.stringValue("$.message", "=", UNLOCK_REFUSAL_MESSAGE),
      FilterPattern.stringValue("$.operation", "=", UNLOCK_OPERATION),
    );
    this.unlockRefusals = new MetricFilter(this, "UnlockRefusalsFilter", {
      logGroup: props.unlockLogGroup,
      filterPattern: refusalPattern,
      metricNamespace: METRICS_NAMESPACE,
      metricName: UNLOCK_REFUSALS_METRIC,
      metricValue: "1",
      defaultValue: 0,
    });
    new MetricFilter(this, "UnlockRefusalsByCodeFilter", {
      logGroup: props.unlockLogGroup,
      filterPattern: refusalPattern,
      metricNamespace: METRICS_NAMESPACE,
      metricName: UNLOCK_REFUSALS_BY_CODE_METRIC,
      metricValue: "1",
      dimensions: { ErrorCode: "$.error.code" },
    });
    const threshold = props.config.alarms.unlockRefusalThreshold;
    this.alarm("UnlockRefusals", {
      name: "unlock-refusals",
      metric: this.unlockRefusals.metric({ period: UNLOCK_REFUSAL_PERIOD, statistic: Stats.SUM }),
      threshold,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      description:
        `The unlock function refused ${threshold} or more requests within 15 minutes (wrong passphrase or code, ` +
        "locked factor, bad input): an administrator struggling, or someone guessing. The dashboard shows the " +
        "error codes; the function's log group has the workspace and administrator of each refusal.",
    });

    for (const [name, queue] of Object.entries(props.deadLetterQueues)) {
      this.alarm(`${pascal(name)}NotEmpty`, {
        name: `${name}-not-empty`,
        metric: queue.metricApproximateNumberOfMessagesVisible({
          period: FAILURE_ALARM_PERIOD,
          statistic: Stats.MAXIMUM,
        }),
        threshold: 0,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        description:
          `The dead-letter queue ${name} holds messages: document lifecycle events that were not recorded. Read ` +
          "the reason and redrive them (docs/infrastructure.md, Document lifecycle).",
      });
    }

    for (const [name, fn] of Object.entries(props.functions)) {
      this.alarm(`${pascal(name)}Errors`, {
        name: `${name}-errors`,
        metric: fn.metricErrors({ period: FAILURE_ALARM_PERIOD, statistic: Stats.SUM }),
        threshold: 0,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        description:
          `The ${name} function failed (an uncaught error, a timeout, or an error thrown for a workflow retry): ` +
          "see its log group.",
      });
      this.alarm(`${pascal(name)}Throttles`, {
        name: `${name}-throttles`,
        metric: fn.metricThrottles({ period: FAILURE_ALARM_PERIOD, statistic: Stats.SUM }),
        threshold: 0,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        description: `Invocations of the ${name} function were throttled (account or reserved concurrency).`,
      });
    }

    this.dashboard = this.createDashboard();
  }

  /**
   * The restoration test's alarms (DESIGN.md section 5), for the state machine that restores the latest backup into
   * a scratch table and decrypts the canaries: `restoration-test-failed` (failed or timed out), and with
   * `missingAfter` also `restoration-test-missing`; both go to the alert topic and appear on the dashboard.
   */
  addRestorationTestAlarms(stateMachine: IStateMachine, options: RestorationTestAlarmOptions = {}): Alarm[] {
    const alarms = [
      this.executionFailureAlarm(
        "RestorationTestFailed",
        "restoration-test-failed",
        stateMachine,
        "A restoration test failed or timed out: the latest backup and the kit did not decrypt the canary " +
          "documents. Treat it as a failed drill: the backups or the kit may not be usable for a restore.",
      ),
    ];
    if (options.missingAfter !== undefined) {
      const hours = options.missingAfter.toHours();
      alarms.push(
        this.missingExecutionAlarm(
          "RestorationTestMissing",
          "restoration-test-missing",
          stateMachine,
          hours,
          `No restoration test succeeded for ${hours} h: check its schedule and executions.`,
        ),
      );
    }
    this.dashboard.addWidgets(
      this.executionsGraph("Restoration tests (per day, 30 days)", stateMachine, Duration.days(1), "-P30D"),
    );
    return alarms;
  }

  /** `<name>`: a state machine's failed and timed-out executions, > 0 in 5 minutes. */
  private executionFailureAlarm(
    id: string,
    name: string,
    stateMachine: IStateMachine,
    description: string,
  ): Alarm {
    const period = FAILURE_ALARM_PERIOD;
    return this.alarm(id, {
      name,
      metric: new MathExpression({
        expression: "FILL(failed, 0) + FILL(timedOut, 0)",
        usingMetrics: {
          failed: stateMachine.metricFailed({ period, statistic: Stats.SUM }),
          timedOut: stateMachine.metricTimedOut({ period, statistic: Stats.SUM }),
        },
        label: "failed or timed-out executions",
        period,
      }),
      threshold: 0,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      description,
    });
  }

  /**
   * `<name>`: no succeeded execution in any of the last `hours` hours. Hourly sums, every one of them must breach
   * (M = N): one success in the window keeps the alarm quiet; no data at all counts as breaching.
   */
  private missingExecutionAlarm(
    id: string,
    name: string,
    stateMachine: IStateMachine,
    hours: number,
    description: string,
  ): Alarm {
    if (!Number.isInteger(hours) || hours < 1 || hours > 168) {
      throw new Error(
        `${name}: the window must be 1-168 whole hours (CloudWatch looks back 7 days), got ${hours}`,
      );
    }
    return this.alarm(id, {
      name,
      metric: stateMachine.metricSucceeded({ period: Duration.hours(1), statistic: Stats.SUM }),
      threshold: 1,
      comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: hours,
      datapointsToAlarm: hours,
      treatMissingData: TreatMissingData.BREACHING,
      description,
    });
  }

  private alarm(
    id: string,
    p: {
      name: string;
      metric: IMetric;
      threshold: number;
      comparisonOperator: ComparisonOperator;
      description: string;
      evaluationPeriods?: number;
      datapointsToAlarm?: number;
      treatMissingData?: TreatMissingData;
    },
  ): Alarm {
    const alarm = new Alarm(this, id, {
      alarmName: `${this.prefix}${p.name}`,
      alarmDescription: `ArquivoMate Keys (${this.props.config.environment}): ${p.description}`,
      metric: p.metric,
      threshold: p.threshold,
      comparisonOperator: p.comparisonOperator,
      evaluationPeriods: p.evaluationPeriods ?? 1,
      datapointsToAlarm: p.datapointsToAlarm ?? 1,
      treatMissingData: p.treatMissingData ?? TreatMissingData.NOT_BREACHING,
    });
    alarm.addAlarmAction(this.action);
    this.alarms.push(alarm);
    return alarm;
  }

  private executionsGraph(title: string, stateMachine: IStateMachine, period: Duration, start?: string) {
    const s = { period, statistic: Stats.SUM };
    return new GraphWidget({
      title,
      width: 12,
      ...(start === undefined ? {} : { start }),
      left: [
        stateMachine.metricStarted({ ...s, label: "started" }),
        stateMachine.metricSucceeded({ ...s, label: "succeeded" }),
        stateMachine.metricFailed({ ...s, label: "failed" }),
        stateMachine.metricTimedOut({ ...s, label: "timed out" }),
        stateMachine.metricAborted({ ...s, label: "aborted" }),
      ],
    });
  }

  private createDashboard(): Dashboard {
    const { config, stateMachines, functions, deadLetterQueues } = this.props;
    const fiveMinutes = Duration.minutes(5);
    // One line per dimension value (workspace, error code): SEARCH, which a graph may use and an alarm may not.
    const search = (metricName: string, statistic: string, dimensions: string) =>
      new MathExpression({
        expression: `SEARCH('{${METRICS_NAMESPACE},${dimensions}} MetricName="${metricName}"', '${statistic}', 300)`,
        usingMetrics: {},
        period: fiveMinutes,
      });
    const dashboard = new Dashboard(this, "Dashboard", {
      dashboardName: `amk-${config.environment}`,
      defaultInterval: Duration.days(7),
    });
    dashboard.addWidgets(
      new TextWidget({
        width: 24,
        height: 2,
        markdown:
          `# ArquivoMate Keys (${config.environment})\n` +
          "Alarms go to the alert topic. Runbooks: docs/runbooks/drills.md, docs/runbooks/recovery.md; " +
          "deployment and checks: docs/deploy.md.",
      }),
    );
    dashboard.addWidgets(
      new AlarmStatusWidget({ title: "Alarms", alarms: this.alarms, width: 24, height: 6 }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: "Re-wrap progress: documents re-wrapped (per workspace, 5 min)",
        width: 12,
        left: [search(REWRAP_METRICS.rewrapped, "Sum", "service,workspaceId")],
      }),
      new GraphWidget({
        title: "Re-wrap progress: documents still on old versions (census, per workspace)",
        width: 12,
        left: [search(REWRAP_METRICS.onOldVersions, "Minimum", "service,workspaceId")],
      }),
    );
    dashboard.addWidgets(
      this.executionsGraph(
        "Drill history (per day, 30 days)",
        stateMachines.drill,
        Duration.days(1),
        "-P30D",
      ),
      new GraphWidget({
        title: "Drill history: failed checks per workspace (30 days)",
        width: 12,
        start: "-P30D",
        left: [search(DRILL_FAILED_CHECKS_METRIC, "Maximum", "service,workspaceId")],
      }),
    );
    dashboard.addWidgets(
      this.executionsGraph("Recovery executions (per hour)", stateMachines.recovery, Duration.hours(1)),
      this.executionsGraph("Rotation executions (per hour)", stateMachines.rotation, Duration.hours(1)),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: "Unlock refusals (15 min), by error code",
        width: 12,
        left: [
          this.unlockRefusals.metric({
            period: UNLOCK_REFUSAL_PERIOD,
            statistic: Stats.SUM,
            label: "all refusals",
          }),
          search(UNLOCK_REFUSALS_BY_CODE_METRIC, "Sum", "ErrorCode"),
        ],
        leftAnnotations: [{ value: config.alarms.unlockRefusalThreshold, label: "alarm threshold" }],
      }),
    );
    const perFunction = (metric: (fn: IFunction) => Metric) =>
      Object.entries(functions).map(([name, fn]) =>
        metric(fn).with({ label: name, period: fiveMinutes, statistic: Stats.SUM }),
      );
    dashboard.addWidgets(
      new GraphWidget({
        title: "Function errors (5 min)",
        width: 12,
        left: perFunction((fn) => fn.metricErrors()),
      }),
      new GraphWidget({
        title: "Function throttles (5 min)",
        width: 12,
        left: perFunction((fn) => fn.metricThrottles()),
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: "Dead letters (messages visible)",
        width: 12,
        left: Object.entries(deadLetterQueues).map(([name, queue]) =>
          queue.metricApproximateNumberOfMessagesVisible({
            period: fiveMinutes,
            statistic: Stats.MAXIMUM,
            label: name,
          }),
        ),
      }),
    );
    return dashboard;
  }
}

/** `rotation-rewrap-shard` -> `RotationRewrapShard`. */
function pascal(name: string): string {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter((p) => p !== "")
    .map((p) => p[0]!.toUpperCase() + p.slice(1))
    .join("");
}
