"""One CloudWatch dashboard per stage and the alarms that page before data is at risk.

The dashboard answers three questions, top to bottom: is data flowing (API, ingest, accepted vs
stored), how late is it (age of the oldest message, end-to-end latency), and where is it stuck
(queue depth, DLQ, consumer errors and concurrency against its bound). Every alarm notifies one
SNS topic on ALARM and on OK; docs/RUNBOOK.md has one section per alarm, named like the alarm.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import MAX_POLLERS_DEPLOYABLE, PipelineConfig
from pipeline.contract import CONSUMER_SERVICE, INGEST_SERVICE, Metric

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
SATURATION_MINUTES = 15
RUNBOOK_PATH = "docs/RUNBOOK.md"


@dataclass(frozen=True)
class MonitoredResources:
    """What the dashboard and alarms watch (the other constructs' resources)."""

    api_stage: apigw.Stage | apigwv2.HttpStage  # either front door's stage (API_KIND): the same four metrics
    ingest_function: lambda_.Function  # Function, not IFunction: the dashboard reads its log group
    consumer_function: lambda_.Function
    queue: sqs.IQueue
    dead_letter_queue: sqs.IQueue
    bucket: s3.IBucket
    event_source_mapping_id: str  # the consumer's SQS mapping (its UUID): provisioned mode's pollers metric
    compaction: sfn.StateMachine | None = None  # COMPACTION=on: the hourly compaction (lake)


class PipelineMonitoring(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, resources: MonitoredResources
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._resources = resources
        self.dashboard_name = f"ingest-pipeline-{config.STAGE}"
        self.topic = self._alarm_topic()
        self.alarms = {**self._alarms(), **self._compaction_alarms()}
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=self.dashboard_name,
            default_interval=Duration.hours(3),
            widgets=self._widget_rows(),
        )
        self.dashboard_url = (
            f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
            f"#dashboards:name={self.dashboard_name}"
        )

    # --- metrics -------------------------------------------------------------------------------
    def _custom(self, name: str, service: str, statistic: str = "Sum", label: str | None = None) -> cw.Metric:
        # Powertools adds the `service` dimension; pipeline/observability.py adds `stage`.
        return cw.Metric(
            namespace=self._config.METRICS_NAMESPACE,
            metric_name=name,
            statistic=statistic,
            label=label or name,
            dimensions_map={"service": service, "stage": self._config.STAGE},
            period=FIVE_MINUTES,
        )

    def _consumer_concurrency(self, period: Duration = FIVE_MINUTES) -> cw.Metric:
        # Lambda reports ConcurrentExecutions "across a function, version, alias, or AWS Region", reserved
        # or not ("Types of metrics for Lambda functions", Concurrency metrics:
        # https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html), so also with
        # RESERVED_CONCURRENCY=off.
        return self._resources.consumer_function.metric(
            "ConcurrentExecutions", statistic="Maximum", period=period, label="concurrent executions (max)"
        )

    def _provisioned_pollers(self, period: Duration = FIVE_MINUTES) -> cw.Metric:
        # "ProvisionedPollers – For event source mappings in provisioned mode, the number of event pollers that
        # are actively running. View this metric using the MAX math." ("Types of metrics for Lambda functions",
        # Event source mapping metrics, same page as above: listed apart from the metric groups a mapping must
        # opt in to with MetricsConfig.) Event source mapping metrics carry the mapping's UUID as their
        # dimension ("Viewing metrics for Lambda functions": by "event source mapping UUID",
        # https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-view.html).
        return cw.Metric(
            namespace="AWS/Lambda",
            metric_name="ProvisionedPollers",
            dimensions_map={"EventSourceMappingUUID": self._resources.event_source_mapping_id},
            statistic="Maximum",
            period=period,
            label="event pollers (max)",
        )

    @property
    def _pool_description(self) -> str:
        config = self._config
        if config.PROVISIONED_POLLERS:
            return f"{config.MIN_POLLERS}–{config.MAX_POLLERS} event pollers, ≤ 10 invokes each"
        return f"≤ {config.MAX_WORKERS} concurrent"

    @property
    def _saturated_backlog_seconds(self) -> int:
        """Provisioned mode: how old the oldest message must be, with the pollers at MAX_POLLERS, for the pool
        to count as saturated. A pool that keeps up takes each message within its batching window (plus a
        poll), so a minute, or two windows, of waiting means messages queue for pollers that cannot be added;
        never later than the oldest-message-age alarm."""
        config = self._config
        return min(max(60, 2 * config.MAX_BATCHING_WINDOW_SECONDS), config.OLDEST_MESSAGE_AGE_ALARM_SECONDS)

    @property
    def _in_flight_threshold(self) -> int:
        # Past SQS_IN_FLIGHT_LIMIT receives return nothing and the mapping stalls for every message
        # (infra/config.py); 80 % of it leaves time to act.
        return self._config.in_flight_alarm_threshold

    def _runbook(self, anchor: str) -> str:
        base = self._config.RUNBOOK_URL or RUNBOOK_PATH
        return f"{base}#{anchor}"

    # --- alarms --------------------------------------------------------------------------------
    def _alarm_topic(self) -> sns.Topic:
        # CloudWatch cannot publish to a topic encrypted with the AWS managed aws/sns key, so the
        # topic gets its own key that the CloudWatch service principal may use.
        key = kms.Key(
            self,
            "AlarmTopicKey",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            description=f"Encrypts the ingest-pipeline-{self._config.STAGE} alarm topic",
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
            )
        )
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"ingest-pipeline-{self._config.STAGE} alarms",
            enforce_ssl=True,
            master_key=key,
        )
        # enforce_ssl replaces the default topic policy, so CloudWatch's publish right is explicit.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
                    }
                },
            )
        )
        if self._config.ALARM_EMAIL:
            topic.add_subscription(subscriptions.EmailSubscription(self._config.ALARM_EMAIL))
        return topic

    def _alarm(
        self,
        construct_id: str,
        slug: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        comparison: cw.ComparisonOperator,
        evaluation_periods: int,
        what_to_do: str,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            construct_id,
            alarm_name=f"ingest-pipeline-{self._config.STAGE}-{slug}",
            alarm_description=f"{what_to_do} Runbook: {self._runbook(slug)}",
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=evaluation_periods,
            # No datapoint means no traffic (SQS and Lambda publish nothing for idle resources).
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return alarm

    def _alarms(self) -> dict[str, cw.Alarm]:
        config, r = self._config, self._resources
        above = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
        at_least = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        ingest_failures = cw.MathExpression(
            expression="FILL(errors, 0) + FILL(throttles, 0)",
            using_metrics={
                "errors": r.ingest_function.metric_errors(period=FIVE_MINUTES),
                "throttles": r.ingest_function.metric_throttles(period=FIVE_MINUTES),
            },
            label="ingest errors + throttles",
            period=FIVE_MINUTES,
        )
        pool_knob = "MAX_POLLERS" if config.PROVISIONED_POLLERS else "MAX_WORKERS"
        return {
            "dlq-not-empty": self._alarm(
                "DlqNotEmpty",
                "dlq-not-empty",
                r.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=ONE_MINUTE
                ),
                threshold=0,
                comparison=above,
                evaluation_periods=1,
                what_to_do="Payloads failed MAX_RECEIVE_COUNT times and wait in the DLQ (kept DLQ_RETENTION_DAYS). "
                f"Find the cause in the consumer log ({Metric.STORE_FAILURES}), fix it, then `make redrive`.",
            ),
            "oldest-message-age": self._alarm(
                "OldestMessageAge",
                "oldest-message-age",
                r.queue.metric_approximate_age_of_oldest_message(statistic="Maximum", period=ONE_MINUTE),
                threshold=config.OLDEST_MESSAGE_AGE_ALARM_SECONDS,
                comparison=above,
                evaluation_periods=2,
                what_to_do=f"A payload has waited over {config.OLDEST_MESSAGE_AGE_ALARM_SECONDS} s "
                "for the worker pool; "
                f"messages expire after {config.QUEUE_RETENTION_DAYS} days. Check consumer errors, throttles "
                f"and concurrency on the dashboard; if the pool is saturated raise {pool_knob}.",
            ),
            "api-5xx-rate": self._alarm(
                "Api5xxRate",
                "api-5xx-rate",
                r.api_stage.metric_server_error(
                    statistic="Average", period=FIVE_MINUTES, label="5xx rate (fraction of requests)"
                ),
                threshold=config.API_5XX_RATE_ALARM_PERCENT / 100,
                comparison=above,
                evaluation_periods=1,
                what_to_do=f"Over {config.API_5XX_RATE_ALARM_PERCENT}% of API requests got a 5xx; clients retry, "
                f"nothing was enqueued for them. Check ingest errors, {Metric.ENQUEUE_FAILURES} and "
                f"{Metric.REQUESTS_REJECTED} reason=overloaded (MAX_QUEUE backpressure).",
            ),
            "ingest-errors": self._alarm(
                "IngestErrors",
                "ingest-errors",
                ingest_failures,
                threshold=1,
                comparison=at_least,
                evaluation_periods=1,
                what_to_do="The ingest function failed or was throttled: clients got 502/429 and must retry. "
                "Errors: read the ingest log group (level ERROR). Throttles: if the consumer took the executions, "
                "set INGEST_RESERVED_CONCURRENCY (or raise it if the ingest sits at it); else raise the account's "
                "Lambda concurrency or lower the usage-plan THROTTLE_* limits.",
            ),
            "consumer-errors": self._alarm(
                "ConsumerErrors",
                "consumer-errors",
                r.consumer_function.metric_errors(period=FIVE_MINUTES),
                threshold=1,
                comparison=at_least,
                evaluation_periods=1,
                what_to_do="A whole consumer batch failed (crash, timeout or every record failing); SQS retries it "
                "and, after MAX_RECEIVE_COUNT receives, dead-letters it. Read the consumer log group "
                "(level ERROR) and fix the cause before the DLQ fills.",
            ),
            "in-flight-near-cap": self._alarm(
                "InFlightNearCap",
                "in-flight-near-cap",
                r.queue.metric_approximate_number_of_messages_not_visible(statistic="Maximum", period=ONE_MINUTE),
                threshold=self._in_flight_threshold,
                comparison=at_least,
                evaluation_periods=2,
                what_to_do=f"Over {self._in_flight_threshold:,} messages are in flight (received, not deleted), near "
                "the queue's in-flight quota (SQS_IN_FLIGHT_LIMIT="
                f"{self._config.SQS_IN_FLIGHT_LIMIT:,}), past which the whole consumer stalls. "
                f"Usually failing records waiting out their retry delay: check {Metric.STORE_FAILURES} and the "
                "consumer log, fix the cause; lower RETRY_MAX_SECONDS to bring them back sooner.",
            ),
            "worker-pool-saturated": self._worker_pool_saturated(),
        }

    def _worker_pool_saturated(self) -> cw.Alarm:
        """What saturates depends on the worker-pool mode. Standard mode: the mapping's maximum concurrency, so
        the consumer's concurrency sits at MAX_WORKERS. Provisioned mode: the pollers (one drives up to 10
        invokes, but the consumer needs far fewer at the seed load), so their count sits at MAX_POLLERS while
        messages wait. 10 x MAX_POLLERS concurrent executions is a bound no load near the design reaches."""
        config = self._config
        if not config.PROVISIONED_POLLERS:
            return self._alarm(
                "WorkerPoolSaturated",
                "worker-pool-saturated",
                self._consumer_concurrency(ONE_MINUTE),
                threshold=config.MAX_WORKERS,
                comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=SATURATION_MINUTES,
                what_to_do=f"The consumer has run at its bound (MAX_WORKERS, {config.MAX_WORKERS} concurrent) for "
                f"{SATURATION_MINUTES} minutes: the queue drains no faster. Raise MAX_WORKERS "
                "(and check the account's Lambda concurrency quota).",
            )
        backlog = self._saturated_backlog_seconds
        # FLOOR(pollers / MAX_POLLERS) is 1 with every poller running and 0 below (the mapping never runs more),
        # so the expression is the age of the oldest message while the pool is at its bound, else 0. The pool
        # alone at its bound is no page (MIN_POLLERS may equal MAX_POLLERS); messages waiting on top of it are.
        at_bound_age = cw.MathExpression(
            expression=f"FLOOR(pollers / {config.MAX_POLLERS}) * age",
            using_metrics={
                "pollers": self._provisioned_pollers(ONE_MINUTE),
                "age": self._resources.queue.metric_approximate_age_of_oldest_message(
                    statistic="Maximum", period=ONE_MINUTE
                ),
            },
            label="age of oldest message while the pollers are at MAX_POLLERS (s)",
            period=ONE_MINUTE,
        )
        return self._alarm(
            "WorkerPoolSaturated",
            "worker-pool-saturated",
            at_bound_age,
            threshold=backlog,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=SATURATION_MINUTES,
            what_to_do=f"All {config.MAX_POLLERS} event pollers (MAX_POLLERS) have run for {SATURATION_MINUTES} "
            f"minutes while messages waited over {backlog} s: the pool cannot grow and the queue drains no "
            f"faster. Raise MAX_POLLERS (at most {MAX_POLLERS_DEPLOYABLE:,}) after checking consumer errors and "
            "throttles.",
        )

    def _compaction_alarms(self) -> dict[str, cw.Alarm]:
        """compaction-failed (lake): an hourly compaction failed after the state machine's own retries."""
        compaction = self._resources.compaction
        if compaction is None:
            return {}
        failures = cw.MathExpression(
            expression="FILL(failed, 0) + FILL(timedout, 0) + FILL(aborted, 0)",
            using_metrics={
                "failed": compaction.metric_failed(period=FIVE_MINUTES),
                "timedout": compaction.metric_timed_out(period=FIVE_MINUTES),
                "aborted": compaction.metric_aborted(period=FIVE_MINUTES),
            },
            label="compaction runs failed, timed out or aborted",
            period=FIVE_MINUTES,
        )
        return {
            "compaction-failed": self._alarm(
                "CompactionFailed",
                "compaction-failed",
                failures,
                threshold=1,
                comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                what_to_do="An hour of payloads_compacted was not (re)written; the raw lake has the data. Find the "
                "hour in the failed execution's input (Step Functions console), fix the cause, then "
                "`make compact-aws FROM=<hour> TO=<hour>`.",
            )
        }

    def _compaction_widgets(self) -> list[list[cw.IWidget]]:
        compaction = self._resources.compaction
        if compaction is None:
            return []
        return [
            [
                cw.GraphWidget(
                    title="Hourly compaction into payloads_compacted: runs",
                    width=24,
                    left_y_axis=cw.YAxisProps(min=0),
                    left=[
                        compaction.metric_succeeded(period=Duration.hours(1), label="succeeded"),
                        compaction.metric_failed(period=Duration.hours(1), label="failed"),
                        compaction.metric_timed_out(period=Duration.hours(1), label="timed out"),
                    ],
                )
            ]
        ]

    # --- dashboard -----------------------------------------------------------------------------
    def _header(self) -> cw.TextWidget:
        r, region, account = self._resources, Aws.REGION, Aws.ACCOUNT_ID
        sqs_console = f"https://{region}.console.aws.amazon.com/sqs/v3/home?region={region}#/queues/https%3A%2F%2Fsqs.{region}.amazonaws.com%2F{account}%2F"
        runbook = self._config.RUNBOOK_URL
        runbook_link = f"[runbook]({runbook})" if runbook else f"runbook: `{RUNBOOK_PATH}` in the repository"
        markdown = (
            f"# Ingest pipeline — {self._config.STAGE}\n"
            f"API Gateway → ingest Lambda → [queue]({sqs_console}{r.queue.queue_name}) → consumer Lambda "
            f"({self._pool_description}) → "
            f"[bucket](https://s3.console.aws.amazon.com/s3/buckets/{r.bucket.bucket_name}?region={region}) · "
            f"[DLQ]({sqs_console}{r.dead_letter_queue.queue_name}) · {runbook_link} · "
            'redrive: `make redrive ARGS="--stack <stack> --dry-run"`\n\n'
            "Is data flowing? rows 2, 3 and 6. How late is it? age of oldest message, end-to-end latency. "
            "Where is it stuck? queue, DLQ, consumer."
        )
        return cw.TextWidget(markdown=markdown, width=24, height=3)

    def _pool_widget(self) -> cw.GraphWidget:
        """The worker pool against the bound that saturates (the worker-pool-saturated alarm's)."""
        config, zero = self._config, cw.YAxisProps(min=0)
        if not config.PROVISIONED_POLLERS:
            return cw.GraphWidget(
                title="Consumer concurrency vs bound",
                width=8,
                left_y_axis=zero,
                left=[self._consumer_concurrency()],
                left_annotations=[
                    cw.HorizontalAnnotation(value=config.MAX_WORKERS, label=f"MAX_WORKERS = {config.MAX_WORKERS}")
                ],
            )
        return cw.GraphWidget(
            title="Event pollers vs bound; consumer concurrency",
            width=8,
            left_y_axis=zero,
            left=[self._provisioned_pollers()],
            left_annotations=[
                cw.HorizontalAnnotation(value=config.MAX_POLLERS, label=f"MAX_POLLERS = {config.MAX_POLLERS}")
            ],
            right_y_axis=zero,
            right=[self._consumer_concurrency()],
        )

    def _widget_rows(self) -> list[list[cw.IWidget]]:
        config, r = self._config, self._resources
        stage = r.api_stage
        ingest, consumer = r.ingest_function, r.consumer_function
        zero = cw.YAxisProps(min=0)
        return [
            [self._header()],
            [cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24, height=2)],
            [
                cw.GraphWidget(
                    title="API requests, 4xx, 5xx",
                    width=12,
                    left_y_axis=zero,
                    left=[
                        stage.metric_count(statistic="Sum", label="requests"),
                        stage.metric_client_error(statistic="Sum", label="4xx"),
                        stage.metric_server_error(statistic="Sum", label="5xx"),
                    ],
                ),
                cw.GraphWidget(
                    title="API latency (ms)",
                    width=12,
                    left_y_axis=zero,
                    left=[
                        stage.metric_latency(statistic="p50", label="p50"),
                        stage.metric_latency(statistic="p99", label="p99"),
                    ],
                ),
            ],
            [
                cw.GraphWidget(
                    title="Ingest function",
                    width=12,
                    left_y_axis=zero,
                    left=[
                        ingest.metric_invocations(label="invocations"),
                        ingest.metric_errors(label="errors"),
                        ingest.metric_throttles(label="throttles"),
                    ],
                ),
                cw.GraphWidget(
                    title="Ingest duration p99 (ms)",
                    width=12,
                    left_y_axis=zero,
                    left=[ingest.metric_duration(statistic="p99", label="p99")],
                ),
            ],
            [
                cw.GraphWidget(
                    title="Queue: sent, visible and in flight",
                    width=8,
                    left_y_axis=zero,
                    left=[
                        r.queue.metric_number_of_messages_sent(label="messages sent"),
                        r.queue.metric_approximate_number_of_messages_visible(
                            statistic="Maximum", label="messages visible"
                        ),
                        r.queue.metric_approximate_number_of_messages_not_visible(
                            statistic="Maximum", label=f"in flight (alarm at {self._in_flight_threshold:,})"
                        ),
                    ],
                ),
                cw.GraphWidget(
                    title="Queue: age of oldest message (s)",
                    width=8,
                    left_y_axis=zero,
                    left=[r.queue.metric_approximate_age_of_oldest_message(statistic="Maximum", label="age of oldest")],
                    left_annotations=[
                        cw.HorizontalAnnotation(value=config.OLDEST_MESSAGE_AGE_ALARM_SECONDS, label="alarm")
                    ],
                ),
                cw.GraphWidget(
                    title="DLQ: messages visible",
                    width=8,
                    left_y_axis=zero,
                    left=[
                        r.dead_letter_queue.metric_approximate_number_of_messages_visible(
                            statistic="Maximum", label="DLQ visible"
                        ),
                    ],
                ),
            ],
            [
                self._pool_widget(),
                cw.GraphWidget(
                    title="Consumer errors and throttles",
                    width=8,
                    left_y_axis=zero,
                    left=[
                        consumer.metric_errors(label="errors (whole batch)"),
                        consumer.metric_throttles(label="throttles"),
                        self._custom(Metric.STORE_FAILURES, CONSUMER_SERVICE, label="store failures (records)"),
                        self._custom(Metric.RETRIES_SCHEDULED, CONSUMER_SERVICE, label="retries scheduled (records)"),
                    ],
                ),
                cw.GraphWidget(
                    title="Consumer duration p99 (ms)",
                    width=8,
                    left_y_axis=zero,
                    left=[consumer.metric_duration(statistic="p99", label="p99")],
                ),
            ],
            [
                cw.GraphWidget(
                    title="Payloads accepted vs stored",
                    width=8,
                    left_y_axis=zero,
                    left=[
                        self._custom(Metric.PAYLOADS_ACCEPTED, INGEST_SERVICE, label="accepted"),
                        self._custom(Metric.PAYLOADS_STORED, CONSUMER_SERVICE, label="stored"),
                        self._custom(Metric.DUPLICATES_SKIPPED, CONSUMER_SERVICE, label="duplicates skipped"),
                    ],
                ),
                cw.GraphWidget(
                    title="End-to-end latency (ms, receivedAt to stored)",
                    width=8,
                    left_y_axis=zero,
                    left=[
                        self._custom(Metric.END_TO_END_LATENCY, CONSUMER_SERVICE, statistic="p50", label="p50"),
                        self._custom(Metric.END_TO_END_LATENCY, CONSUMER_SERVICE, statistic="p99", label="p99"),
                    ],
                ),
                cw.GraphWidget(
                    title="Requests rejected by reason; enqueue trouble",
                    width=8,
                    left_y_axis=zero,
                    left=[
                        cw.MathExpression(
                            # One line per reason class (a handful, see pipeline/observability.py).
                            expression=(
                                f'SEARCH(\'{{"{config.METRICS_NAMESPACE}",reason,service,stage}} '
                                f'MetricName="{Metric.REQUESTS_REJECTED}" stage="{config.STAGE}"\', \'Sum\', 300)'
                            ),
                            using_metrics={},
                            label="rejected: ${PROP('Dim.reason')}",
                            period=FIVE_MINUTES,
                        ),
                        self._custom(Metric.ENQUEUE_RETRIES, INGEST_SERVICE, label="enqueue retries"),
                        self._custom(Metric.ENQUEUE_FAILURES, INGEST_SERVICE, label="enqueue failures"),
                    ],
                ),
            ],
            *self._compaction_widgets(),
            [
                cw.LogQueryWidget(
                    title="Latest errors, both functions (correlation_id = the client's requestId)",
                    width=24,
                    height=6,
                    log_group_names=[ingest.log_group.log_group_name, consumer.log_group.log_group_name],
                    query_lines=[
                        "fields @timestamp, service, message, correlation_id, payloadId, messageId, @log",
                        'filter level = "ERROR" or @message like /Task timed out/',
                        "sort @timestamp desc",
                        "limit 20",
                    ],
                ),
            ],
        ]
