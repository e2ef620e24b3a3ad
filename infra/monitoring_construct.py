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
from constructs import Construct

from infra.config import PipelineConfig
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


class PipelineMonitoring(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, resources: MonitoredResources
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._resources = resources
        self.dashboard_name = f"ingest-pipeline-{config.STAGE}"
        self.topic = self._alarm_topic()
        self.alarms = self._alarms()
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
        # Published per function because the consumer has reserved concurrency (its pool bound).
        return self._resources.consumer_function.metric(
            "ConcurrentExecutions", statistic="Maximum", period=period, label="concurrent executions (max)"
        )

    @property
    def _pool_bound(self) -> int:
        """The consumer's concurrency bound: MAX_WORKERS, or 10 x MAX_POLLERS in provisioned mode."""
        return self._config.consumer_reserved_concurrency

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
                "Errors: read the ingest log group (level ERROR). Throttles: raise the account's "
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
            "worker-pool-saturated": self._alarm(
                "WorkerPoolSaturated",
                "worker-pool-saturated",
                self._consumer_concurrency(ONE_MINUTE),
                threshold=self._pool_bound,
                comparison=at_least,
                evaluation_periods=SATURATION_MINUTES,
                what_to_do=f"The consumer has run at its bound ({pool_knob}, {self._pool_bound} concurrent) for "
                f"{SATURATION_MINUTES} minutes: the queue drains no faster. Raise {pool_knob} "
                "(and check the account's Lambda concurrency quota).",
            ),
        }

    # --- dashboard -----------------------------------------------------------------------------
    def _header(self) -> cw.TextWidget:
        r, region, account = self._resources, Aws.REGION, Aws.ACCOUNT_ID
        sqs_console = f"https://{region}.console.aws.amazon.com/sqs/v3/home?region={region}#/queues/https%3A%2F%2Fsqs.{region}.amazonaws.com%2F{account}%2F"
        runbook = self._config.RUNBOOK_URL
        runbook_link = f"[runbook]({runbook})" if runbook else f"runbook: `{RUNBOOK_PATH}` in the repository"
        markdown = (
            f"# Ingest pipeline — {self._config.STAGE}\n"
            f"API Gateway → ingest Lambda → [queue]({sqs_console}{r.queue.queue_name}) → consumer Lambda "
            f"(≤ {self._pool_bound} concurrent) → "
            f"[bucket](https://s3.console.aws.amazon.com/s3/buckets/{r.bucket.bucket_name}?region={region}) · "
            f"[DLQ]({sqs_console}{r.dead_letter_queue.queue_name}) · {runbook_link} · "
            'redrive: `make redrive ARGS="--stack <stack> --dry-run"`\n\n'
            "Is data flowing? rows 2, 3 and 6. How late is it? age of oldest message, end-to-end latency. "
            "Where is it stuck? queue, DLQ, consumer."
        )
        return cw.TextWidget(markdown=markdown, width=24, height=3)

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
                cw.GraphWidget(
                    title="Consumer concurrency vs bound",
                    width=8,
                    left_y_axis=zero,
                    left=[self._consumer_concurrency()],
                    left_annotations=[
                        cw.HorizontalAnnotation(
                            value=self._pool_bound,
                            label=f"MAX_WORKERS = {self._pool_bound}"
                            if not config.PROVISIONED_POLLERS
                            else f"10 x MAX_POLLERS = {self._pool_bound}",
                        )
                    ],
                ),
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
