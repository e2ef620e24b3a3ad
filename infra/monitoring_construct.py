"""One CloudWatch dashboard per stage and the alarms that page before data is at risk.

The dashboard answers three questions, top to bottom: is data flowing (API, ingest, accepted vs
stored), how late is it (age of the oldest message, end-to-end latency), and where is it stuck
(queue depth, DLQ, consumer errors and concurrency against its bound), then device auth, S3 and the
lake's freshness. Every alarm notifies the stack's SNS topic (and ALARM_TOPIC_ARN's) on ALARM and on OK
(dlq-new-messages on ALARM only); docs/RUNBOOK.md has one section per alarm, named like the alarm, and a table
of their thresholds that tests/infra/test_runbook_figures.py compares with the template. None pages on normal
operation and silence pages (issue 31): tests/infra/test_alarm_evaluation.py replays each on synthetic series.
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
# RequestsRejected reasons of device auth (the ingest writes them: lambdas/pipeline/device_auth.py, issue 31):
# refused devices, and the keyring that could not be read (503).
REFUSED_REASONS = ("unauthenticated", "forbidden-invalid", "forbidden-retired", "forbidden-revoked")
REASON_KEYRING_UNAVAILABLE = "keyring-unavailable"
KEYRING_REFRESH_FAILED, KEYRING_STALE_SERVED = "KeyringRefreshFailed", "KeyringStaleServed"  # ingest, Count
SCHEDULER_METRICS = (("TargetErrorCount", "target errors"), ("InvocationDroppedCount", "invocations dropped"))
# The S3 request metrics filter on the payload prefix (infra/storage_construct.py turns it on).
S3_METRICS_FILTER = "payloads"


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
        self._pager_topic = (
            sns.Topic.from_topic_arn(self, "PagerTopic", config.ALARM_TOPIC_ARN) if config.ALARM_TOPIC_ARN else None
        )
        self.alarms = {
            **self._alarms(),
            **self._compaction_alarms(),
            **self._dlq_alarms(),
            **self._flow_alarms(),
            **self._device_auth_alarms(),
        }
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
        """How old the oldest message must be, with the pool at its bound (MAX_WORKERS or MAX_POLLERS), for the
        pool to count as saturated. A pool that keeps up takes each message within its batching window (plus a
        poll), so a minute, or two windows, of waiting means messages queue for workers that cannot be added;
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
        datapoints_to_alarm: int | None = None,
        missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
        notify_ok: bool = True,
    ) -> cw.Alarm:
        """An alarm that pages on ALARM (and, unless notify_ok is false, tells on OK). By default no datapoint means
        no traffic (SQS and Lambda publish nothing for idle resources); flow-stopped and compaction-failed say
        otherwise. How CloudWatch evaluates M of N datapoints and each TreatMissingData: "Using Amazon CloudWatch
        alarms" and "Configuring how CloudWatch alarms treat missing data"
        (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html);
        tests/infra/test_alarm_evaluation.py replays each alarm on synthetic series under those rules."""
        alarm = cw.Alarm(
            self,
            construct_id,
            alarm_name=f"ingest-pipeline-{self._config.STAGE}-{slug}",
            alarm_description=f"{what_to_do} Runbook: {self._runbook(slug)}",
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm or evaluation_periods,
            treat_missing_data=missing,
        )
        for action in self._actions:
            alarm.add_alarm_action(action)
            if notify_ok:
                alarm.add_ok_action(action)
        return alarm

    @property
    def _actions(self) -> list[cw_actions.SnsAction]:
        """The stack's topic, and ALARM_TOPIC_ARN's (an existing pager integration) when it is set."""
        actions = [cw_actions.SnsAction(self.topic)]
        if self._pager_topic is not None:
            actions.append(cw_actions.SnsAction(self._pager_topic))
        return actions

    def _rate_alarm(
        self,
        construct_id: str,
        slug: str,
        *,
        metrics: dict[str, cw.IMetric],
        failed: tuple[str, ...],
        volume: tuple[str, ...],
        percent: int,
        label: str,
        what_to_do: str,
    ) -> cw.Alarm:
        """Pages when more than ``percent`` % of a 5-minute period's volume failed, in 2 of 3 periods, and only in
        periods holding at least ALARM_MIN_VOLUME (below it the expression is 0: one error in a quiet night is the
        dashboard's, not a page). ``failed`` and ``volume`` name summed counts of ``metrics``; a missing one is 0."""
        failed_sum = " + ".join(f"FILL({name}, 0)" for name in failed)
        volume_sum = " + ".join(f"FILL({name}, 0)" for name in volume)
        minimum = self._config.ALARM_MIN_VOLUME
        rate = cw.MathExpression(
            # IF keeps the division to periods with volume (>= ALARM_MIN_VOLUME >= 1), so it never divides by 0.
            expression=f"IF(({volume_sum}) >= {minimum}, 100 * ({failed_sum}) / ({volume_sum}), 0)",
            using_metrics=metrics,
            label=label,
            period=FIVE_MINUTES,
        )
        return self._alarm(
            construct_id,
            slug,
            rate,
            threshold=percent,
            comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            what_to_do=what_to_do,
        )

    def _alarms(self) -> dict[str, cw.Alarm]:
        config, r = self._config, self._resources
        above = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
        at_least = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        pool_knob = "MAX_POLLERS" if config.PROVISIONED_POLLERS else "MAX_WORKERS"
        return {
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
            # REST's 5XXError and the HTTP API's 5xx are both counts under Sum; only REST documents its Average as a
            # rate ("Amazon API Gateway dimensions and metrics", https://docs.aws.amazon.com/apigateway/latest/
            # developerguide/api-gateway-metrics-and-dimensions.html), while the HTTP API's page says "5xx: The
            # number of server-side errors captured in a given period" ("Monitor CloudWatch metrics for HTTP APIs in
            # API Gateway", https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-metrics.html).
            # So the rate is 5xx / Count for either front door.
            "api-5xx-rate": self._rate_alarm(
                "Api5xxRate",
                "api-5xx-rate",
                metrics={
                    "errors": r.api_stage.metric_server_error(statistic="Sum", period=FIVE_MINUTES),
                    "requests": r.api_stage.metric_count(statistic="Sum", period=FIVE_MINUTES),
                },
                failed=("errors",),
                volume=("requests",),
                percent=config.API_5XX_RATE_ALARM_PERCENT,
                label="5xx, % of requests (periods of at least ALARM_MIN_VOLUME requests)",
                what_to_do=f"Over {config.API_5XX_RATE_ALARM_PERCENT}% of API requests got a 5xx in 2 of the last 3 "
                f"5-minute periods (each of at least {config.ALARM_MIN_VOLUME} requests); clients retry, nothing "
                f"was enqueued for them. Check ingest errors, {Metric.ENQUEUE_FAILURES}, and "
                f"{Metric.REQUESTS_REJECTED} by reason (overloaded: MAX_QUEUE backpressure; keyring-unavailable).",
            ),
            "ingest-errors": self._rate_alarm(
                "IngestErrors",
                "ingest-errors",
                metrics={
                    "errors": r.ingest_function.metric_errors(period=FIVE_MINUTES),
                    "throttles": r.ingest_function.metric_throttles(period=FIVE_MINUTES),
                    "invocations": r.ingest_function.metric_invocations(period=FIVE_MINUTES),
                },
                failed=("errors", "throttles"),
                volume=("invocations", "throttles"),
                percent=config.ERROR_RATE_ALARM_PERCENT,
                label="ingest errors + throttles, % of invocations + throttles",
                what_to_do=f"Over {config.ERROR_RATE_ALARM_PERCENT}% of ingest invocations failed or were throttled "
                "in 2 of the last 3 5-minute periods: clients got 5xx and must retry. Errors: read the ingest log "
                "group (level ERROR, log_level ERROR, record.status timeout). Throttles: if the consumer took the "
                "executions, set INGEST_RESERVED_CONCURRENCY (or raise it if the ingest sits at it); else raise the "
                "account's Lambda concurrency quota"
                + (" or lower the usage-plan THROTTLE_* limits." if config.API_KIND == "rest" else "."),
            ),
            "consumer-errors": self._rate_alarm(
                "ConsumerErrors",
                "consumer-errors",
                metrics={
                    "errors": r.consumer_function.metric_errors(period=FIVE_MINUTES),
                    "invocations": r.consumer_function.metric_invocations(period=FIVE_MINUTES),
                },
                failed=("errors",),
                volume=("invocations",),
                percent=config.ERROR_RATE_ALARM_PERCENT,
                label="consumer errors, % of invocations",
                what_to_do=f"Over {config.ERROR_RATE_ALARM_PERCENT}% of consumer batches failed whole (crash, "
                "timeout or every record failing) in 2 of the last 3 5-minute periods; SQS retries them and, after "
                "MAX_RECEIVE_COUNT receives, dead-letters them. Read the consumer log group (level ERROR) and fix "
                "the cause before the DLQ fills.",
            ),
            "store-failures": self._rate_alarm(
                "StoreFailures",
                "store-failures",
                metrics={
                    "failed": self._custom(Metric.STORE_FAILURES, CONSUMER_SERVICE),
                    "stored": self._custom(Metric.PAYLOADS_STORED, CONSUMER_SERVICE),
                },
                failed=("failed",),
                volume=("stored", "failed"),
                percent=config.STORE_FAILURE_ALARM_PERCENT,
                label="payloads not stored, % of payloads the consumer handled",
                what_to_do=f"Over {config.STORE_FAILURE_ALARM_PERCENT}% of the payloads the consumer handled failed "
                "to store in 2 of the last 3 5-minute periods (S3 refusing or throttling: the dashboard's S3 5xx "
                "share). They are retried, then dead-lettered. Check S3 5xx (SlowDown), AccessDenied in the "
                "consumer log, AWS Health.",
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
        """Saturated is at the bound AND messages waiting (issue 31): a right-sized pool that is busy and keeps up
        sits at its bound with every message taken within its batching window. What the bound is depends on the
        mode. Standard: the mapping's maximum concurrency, so the consumer's concurrency at MAX_WORKERS.
        Provisioned: the pollers (one drives up to 10 invokes, but the consumer needs far fewer at the seed load),
        so their count at MAX_POLLERS; 10 x MAX_POLLERS concurrent executions is a bound no load near the design
        reaches. Either way the expression is the age of the oldest message while the pool is at its bound, else
        0. FILL(..., REPEAT) carries the last reading over a minute the metric missed, so one missing datapoint
        does not reset the 15-minute window (CloudWatch metric math, FILL: "REPEAT ... the most recent actual
        value")."""
        config = self._config
        if config.PROVISIONED_POLLERS:
            pool, bound, knob = self._provisioned_pollers(ONE_MINUTE), config.MAX_POLLERS, "MAX_POLLERS"
            what = f"All {config.MAX_POLLERS} event pollers (MAX_POLLERS) have run"
            fix = f"Raise MAX_POLLERS (at most {MAX_POLLERS_DEPLOYABLE:,}) after checking consumer errors, throttles."
        else:
            pool, bound, knob = self._consumer_concurrency(ONE_MINUTE), config.MAX_WORKERS, "MAX_WORKERS"
            what = f"The consumer has run at its bound (MAX_WORKERS, {config.MAX_WORKERS} concurrent)"
            fix = "Raise MAX_WORKERS (and check the account's Lambda concurrency quota)."
        backlog = self._saturated_backlog_seconds
        at_bound_age = cw.MathExpression(
            expression=f"IF(FILL(pool, REPEAT) >= {bound}, FILL(age, REPEAT), 0)",
            using_metrics={
                "pool": pool,
                "age": self._resources.queue.metric_approximate_age_of_oldest_message(
                    statistic="Maximum", period=ONE_MINUTE
                ),
            },
            label=f"age of oldest message while the pool is at {knob} (s)",
            period=ONE_MINUTE,
        )
        return self._alarm(
            "WorkerPoolSaturated",
            "worker-pool-saturated",
            at_bound_age,
            threshold=backlog,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=SATURATION_MINUTES,
            what_to_do=f"{what} for {SATURATION_MINUTES} minutes while messages waited over {backlog} s: the pool "
            f"cannot grow and the queue drains no faster. {fix}",
        )

    def _dlq_alarms(self) -> dict[str, cw.Alarm]:
        """Three views of the DLQ. dlq-not-empty holds ALARM while messages wait: an idle queue's metric gap keeps
        the state (TreatMissingData ignore), so no OK is sent with messages still in it. dlq-new-messages pages on
        each new wave, also while dlq-not-empty is still in ALARM: it notifies on ALARM only, and returns to OK
        silently 15 minutes after the DLQ last grew. dlq-messages-expiring: a standard queue keeps each message's
        original enqueue time, so a DLQ message expires DLQ_RETENTION_DAYS after it was first sent, while the DLQ's
        ApproximateAgeOfOldestMessage counts from when it moved ("Setting-up dead-letter queue retention in Amazon
        SQS", https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/
        setting-up-dead-letter-queue-retention.html); DLQ_AGE_ALARM_DAYS after the move leaves the rest."""
        config, dlq = self._config, self._resources.dead_letter_queue
        ignore = cw.TreatMissingData.IGNORE
        visible = dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=ONE_MINUTE)
        growth = cw.MathExpression(
            # REPEAT carries the count over an idle DLQ's metric gap; 0 before its first datapoint, so the first wave
            # into a DLQ that published nothing yet is growth too.
            expression="DIFF(FILL(FILL(visible, REPEAT), 0))",
            using_metrics={
                "visible": dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=FIVE_MINUTES)
            },
            label="DLQ messages added (5 min)",
            period=FIVE_MINUTES,
        )
        days = config.DLQ_AGE_ALARM_DAYS
        return {
            "dlq-not-empty": self._alarm(
                "DlqNotEmpty",
                "dlq-not-empty",
                visible,
                threshold=0,
                comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                missing=ignore,
                what_to_do="Payloads failed MAX_RECEIVE_COUNT times and wait in the DLQ (kept DLQ_RETENTION_DAYS "
                f"from when they were first sent). Find the cause in the consumer log ({Metric.STORE_FAILURES}), "
                "fix it, then `make redrive`.",
            ),
            "dlq-new-messages": self._alarm(
                "DlqNewMessages",
                "dlq-new-messages",
                growth,
                threshold=0,
                comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=1,
                notify_ok=False,
                what_to_do="A new wave of payloads reached the DLQ (it grew in the last 15 minutes), even if "
                "dlq-not-empty already fired. Same cause and cure as dlq-not-empty; this alarm sends no OK.",
            ),
            "dlq-messages-expiring": self._alarm(
                "DlqMessagesExpiring",
                "dlq-messages-expiring",
                dlq.metric_approximate_age_of_oldest_message(statistic="Maximum", period=FIVE_MINUTES),
                threshold=days * 86400,
                comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                missing=ignore,
                what_to_do=f"A DLQ message moved there over {days} days ago (DLQ_AGE_ALARM_DAYS); SQS deletes it "
                f"{config.DLQ_RETENTION_DAYS} days after it was first sent, sooner than its age here suggests. "
                "Fix the cause and `make redrive` now, or the payload is lost.",
            ),
        }

    def _flow_alarms(self) -> dict[str, cw.Alarm]:
        """flow-stopped (FLOW_ALARM_MIN_PAYLOADS > 0): silence pages. Payloads stored below the floor in 3
        5-minute periods in a row, a missing datapoint counted as breaching: every device refused, a DNS or
        certificate failure, a disabled mapping all end in nothing stored, and every other alarm stays green."""
        floor = self._config.FLOW_ALARM_MIN_PAYLOADS
        if not floor:
            return {}
        return {
            "flow-stopped": self._alarm(
                "FlowStopped",
                "flow-stopped",
                self._custom(Metric.PAYLOADS_STORED, CONSUMER_SERVICE, label="payloads stored"),
                threshold=floor,
                comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=3,
                missing=cw.TreatMissingData.BREACHING,
                what_to_do=f"Fewer than {floor:,} payloads (FLOW_ALARM_MIN_PAYLOADS) were stored in each of the "
                "last three 5-minute periods. Nothing may be arriving (DNS, certificate, every device refused: "
                "API requests and 401/403 on the dashboard) or nothing may be leaving the queue (mapping disabled: "
                "queue age).",
            )
        }

    def _rejected(self, reason: str) -> cw.Metric:
        """RequestsRejected for one reason (the ingest adds the reason to its service and stage dimensions)."""
        return cw.Metric(
            namespace=self._config.METRICS_NAMESPACE,
            metric_name=Metric.REQUESTS_REJECTED,
            statistic="Sum",
            label=reason,
            dimensions_map={"reason": reason, "service": INGEST_SERVICE, "stage": self._config.STAGE},
            period=FIVE_MINUTES,
        )

    def _device_auth_alarms(self) -> dict[str, cw.Alarm]:
        """DEVICE_AUTH=on: the keyring cannot be read (503 keyring-unavailable), and a refused share that looks
        like a bad key rotation (401 and 403 invalid/retired/revoked above REFUSED_SHARE_ALARM_PERCENT)."""
        config, r = self._config, self._resources
        if config.DEVICE_AUTH != "on":
            return {}
        unavailable = cw.MathExpression(
            expression="FILL(unavailable, 0)",
            using_metrics={"unavailable": self._rejected(REASON_KEYRING_UNAVAILABLE)},
            label="requests refused: keyring unavailable",
            period=FIVE_MINUTES,
        )
        refused = {reason.replace("-", "_"): self._rejected(reason) for reason in REFUSED_REASONS}
        return {
            "keyring-unavailable": self._alarm(
                "KeyringUnavailable",
                "keyring-unavailable",
                unavailable,
                threshold=1,
                comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=2,
                what_to_do="The ingest could not read the device keyring (Secrets Manager) in two 5-minute periods "
                "in a row and answered 503 keyring-unavailable: devices retry, nothing is accepted from those "
                "without a cached key. Check Secrets Manager (AWS Health, the secret's policy and KMS key), "
                "KeyringRefreshFailed and KeyringStaleServed on the dashboard.",
            ),
            "devices-refused": self._rate_alarm(
                "DevicesRefused",
                "devices-refused",
                metrics={**refused, "requests": r.api_stage.metric_count(statistic="Sum", period=FIVE_MINUTES)},
                failed=tuple(refused),
                volume=("requests",),
                percent=config.REFUSED_SHARE_ALARM_PERCENT,
                label="requests refused 401/403, % of requests",
                what_to_do=f"Over {config.REFUSED_SHARE_ALARM_PERCENT}% of requests were refused 401/403 "
                "(REFUSED_SHARE_ALARM_PERCENT) in 2 of the last 3 5-minute periods: a bad key rotation, a retired "
                "signing key still in use, or a mass revocation. The dashboard splits them by reason.",
            ),
        }

    def _compaction_alarms(self) -> dict[str, cw.Alarm]:
        """compaction-failed (lake): no hourly compaction succeeded in the last two clock hours. Each scheduled run
        compacts the closed hour and any hour left uncompacted, so a success means caught up, and the alarm stays
        in ALARM until one (a failure alone does not clear). No execution at all (the schedule dropped, disabled or
        refused) is missing data, counted as breaching. Two hourly datapoints: the current hour's bucket holds no
        run until the schedule's minute, so one empty partial hour never pages alone."""
        compaction = self._resources.compaction
        if compaction is None:
            return {}
        hour = Duration.hours(1)
        no_success = cw.MathExpression(
            expression="IF(FILL(succeeded, 0) >= 1, 0, 1)",
            using_metrics={"succeeded": compaction.metric_succeeded(period=hour)},
            label="hours without a successful compaction",
            period=hour,
        )
        return {
            "compaction-failed": self._alarm(
                "CompactionFailed",
                "compaction-failed",
                no_success,
                threshold=1,
                comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=2,
                missing=cw.TreatMissingData.BREACHING,
                what_to_do="No compaction run succeeded in the last two hours: payloads_compacted is falling "
                "behind (the raw lake has the data). Failed runs: the Step Functions console names the hour and "
                "the Athena error; fix, then `make compact-aws FROM=<hour> TO=<hour>`. No runs: check the "
                "schedule's TargetErrorCount and InvocationDroppedCount on the dashboard.",
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
                    left_y_axis=cw.YAxisProps(min=0),
                    width=8,
                    left=[
                        compaction.metric_succeeded(period=Duration.hours(1), label="succeeded"),
                        compaction.metric_failed(period=Duration.hours(1), label="failed"),
                        compaction.metric_timed_out(period=Duration.hours(1), label="timed out"),
                    ],
                    left_annotations=[cw.HorizontalAnnotation(value=1, label="at least 1 success an hour")],
                ),
                # freshness: the compaction-failed alarm's own series, 1 for each clock hour with no success
                cw.AlarmWidget(
                    title="Hours without a successful compaction (compaction-failed)",
                    alarm=self.alarms["compaction-failed"],
                    width=8,
                    left_y_axis=cw.YAxisProps(min=0),
                ),
                cw.GraphWidget(
                    title="Compaction schedule: target errors, dropped invocations",
                    width=8,
                    left_y_axis=cw.YAxisProps(min=0),
                    left=[self._scheduler(name, label) for name, label in SCHEDULER_METRICS],
                ),
            ]
        ]

    def _scheduler(self, name: str, label: str) -> cw.Metric:
        # "Monitoring Amazon EventBridge Scheduler with Amazon CloudWatch": namespace AWS/Scheduler, one dimension,
        # ScheduleGroup ("If you have not created any groups yet, EventBridge Scheduler associates your schedules
        # with the default group"; the compaction's schedule is in it, so other schedules there count too);
        # TargetErrorCount and InvocationDroppedCount, Sum
        # (https://docs.aws.amazon.com/scheduler/latest/UserGuide/monitoring-cloudwatch.html).
        return cw.Metric(
            namespace="AWS/Scheduler",
            metric_name=name,
            dimensions_map={"ScheduleGroup": "default"},
            statistic="Sum",
            period=Duration.hours(1),
            label=label,
        )

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

    def _accepted_vs_stored_widget(self) -> cw.GraphWidget:
        """The gap between payloads accepted and stored, per hour: with METRICS_FLUSH_SECONDS the ingest's counts
        arrive per container window, so two 5-minute sums differ by design; over an hour they must meet."""
        hour = Duration.hours(1)
        accepted = self._custom(Metric.PAYLOADS_ACCEPTED, INGEST_SERVICE).with_(period=hour)
        stored = self._custom(Metric.PAYLOADS_STORED, CONSUMER_SERVICE).with_(period=hour)
        return cw.GraphWidget(
            title="Payloads accepted but not (yet) stored, per hour; stored % of accepted",
            width=8,
            left=[
                cw.MathExpression(
                    expression="FILL(accepted, 0) - FILL(stored, 0)",
                    using_metrics={"accepted": accepted, "stored": stored},
                    label="accepted - stored (payloads)",
                    period=hour,
                )
            ],
            right=[
                cw.MathExpression(
                    expression="IF(FILL(accepted, 0) > 0, 100 * FILL(stored, 0) / accepted, 100)",
                    using_metrics={"accepted": accepted, "stored": stored},
                    label="stored, % of accepted",
                    period=hour,
                )
            ],
            right_y_axis=cw.YAxisProps(min=0),
        )

    def _s3_request_metric(self, name: str) -> cw.Metric:
        # S3 request metrics for the payload prefix's filter: AWS/S3, dimensions BucketName and FilterId, one-minute
        # datapoints, "billed at the same rate as CloudWatch custom metrics" ("Monitoring metrics with Amazon
        # CloudWatch", https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudwatch-monitoring.html;
        # "Metrics and dimensions": AllRequests, 5xxErrors, Sum).
        return cw.Metric(
            namespace="AWS/S3",
            metric_name=name,
            dimensions_map={"BucketName": self._resources.bucket.bucket_name, "FilterId": S3_METRICS_FILTER},
            statistic="Sum",
            period=FIVE_MINUTES,
        )

    def _signal_widgets(self) -> list[cw.IWidget]:
        """Device auth by reason, and S3's 5xx share on the payload prefix (SlowDown that botocore retries
        silently) beside the consumer's store-failure share, which the store-failures alarm watches."""
        zero = cw.YAxisProps(min=0)
        widgets: list[cw.IWidget] = []
        if self._config.DEVICE_AUTH == "on":
            widgets.append(
                cw.GraphWidget(
                    title="Device auth: 401, 403 by reason, keyring unavailable (503)",
                    width=12,
                    left_y_axis=zero,
                    left=[self._rejected(reason) for reason in REFUSED_REASONS],
                    right=[
                        self._rejected(REASON_KEYRING_UNAVAILABLE),
                        self._custom(KEYRING_REFRESH_FAILED, INGEST_SERVICE, label="keyring refresh failed"),
                        self._custom(KEYRING_STALE_SERVED, INGEST_SERVICE, label="keyring served stale"),
                    ],
                    right_y_axis=zero,
                )
            )
        requests, errors = self._s3_request_metric("AllRequests"), self._s3_request_metric("5xxErrors")
        stored = self._custom(Metric.PAYLOADS_STORED, CONSUMER_SERVICE)
        failures = self._custom(Metric.STORE_FAILURES, CONSUMER_SERVICE)
        widgets.append(
            cw.GraphWidget(
                title="S3 on the payload prefix: 5xx % of requests; store failures % of payloads",
                width=12 if widgets else 24,
                left_y_axis=zero,
                left=[
                    cw.MathExpression(
                        expression="IF(FILL(requests, 0) > 0, 100 * FILL(errors, 0) / requests, 0)",
                        using_metrics={"requests": requests, "errors": errors},
                        label="S3 5xx (SlowDown, 503), % of requests",
                        period=FIVE_MINUTES,
                    ),
                    cw.MathExpression(
                        expression="IF(FILL(stored, 0) + FILL(failed, 0) > 0, "
                        "100 * FILL(failed, 0) / (FILL(stored, 0) + FILL(failed, 0)), 0)",
                        using_metrics={"stored": stored, "failed": failures},
                        label="store failures, % of payloads",
                        period=FIVE_MINUTES,
                    ),
                ],
                left_annotations=[
                    cw.HorizontalAnnotation(
                        value=self._config.STORE_FAILURE_ALARM_PERCENT, label="store-failures alarm"
                    )
                ],
            )
        )
        return widgets

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
                self._accepted_vs_stored_widget(),
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
            self._signal_widgets(),
            *self._compaction_widgets(),
            [
                cw.LogQueryWidget(
                    title="Latest errors, both functions (correlation_id = the client's requestId)",
                    width=24,
                    height=6,
                    log_group_names=[ingest.log_group.log_group_name, consumer.log_group.log_group_name],
                    query_lines=[
                        "fields @timestamp, service, message, correlation_id, payloadId, messageId, @log",
                        # Powertools' own lines carry `level`; the runtime's line for an uncaught exception carries
                        # `log_level` (aws/aws-lambda-python-runtime-interface-client#202); with the JSON log format
                        # a timeout is Lambda's platform.report line with record.status "timeout" ("Configuring
                        # JSON and plain text log formats", https://docs.aws.amazon.com/lambda/latest/dg/
                        # monitoring-cloudwatchlogs-logformat.html); the text format's is "Task timed out".
                        'filter level = "ERROR" or log_level = "ERROR" or record.status = "timeout"'
                        " or @message like /Task timed out/",
                        "sort @timestamp desc",
                        "limit 20",
                    ],
                ),
            ],
        ]
