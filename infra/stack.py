"""The stack composes the constructs and owns the cdk-nag suppressions (each with its reason)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from cdk_nag import NagSuppressions
from constructs import Construct

from infra.api_construct import IngestApi
from infra.compaction_construct import PayloadCompaction
from infra.config import PipelineConfig
from infra.device_keys_construct import DeviceKeys
from infra.http_api_construct import IngestHttpApi
from infra.lake_table import COMPACTED_TABLE_NAME
from infra.monitoring_construct import MonitoredResources, PipelineMonitoring
from infra.query_construct import PayloadQuery
from infra.queue_construct import PayloadQueue
from infra.storage_construct import PayloadStorage
from infra.worker_pool_construct import WorkerPool


class IngestPipelineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        # The public parameter of one exact Powertools release, resolved by CloudFormation at
        # deploy time: synth stays offline and the layer is pinned to requirements-dev.txt's version.
        # POWERTOOLS_SOURCE=bundle puts that release into the asset instead (infra/lambda_asset.py).
        powertools: lambda_.ILayerVersion | None = None
        if config.POWERTOOLS_SOURCE == "layer":
            layer_arn = ssm.StringParameter.value_for_string_parameter(self, config.powertools_layer_parameter)
            powertools = lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", layer_arn)

        self.storage = PayloadStorage(self, "Storage", config=config)
        self.queue = PayloadQueue(self, "Buffer", config=config)
        # DEVICE_AUTH=on: the device keyring; API_KIND picks the front door (config: http needs device auth).
        self.device_keys = DeviceKeys(self, "DeviceKeys", config=config) if config.DEVICE_AUTH == "on" else None
        front_door = IngestHttpApi if config.API_KIND == "http" else IngestApi
        self.api = front_door(
            self,
            "Api",
            config=config,
            queue=self.queue.queue,
            powertools_layer=powertools,
            device_keys=self.device_keys,
        )
        self.workers = WorkerPool(
            self,
            "Workers",
            config=config,
            queue=self.queue.queue,
            bucket=self.storage.bucket,
            powertools_layer=powertools,
        )

        CfnOutput(self, "ApiUrl", value=self.api.payloads_url, description="POST collections here")
        CfnOutput(
            self,
            "ApiBaseUrl",
            value=self.api.base_url,
            description="ApiUrl without /v1/payloads: make loadtest LOADTEST_HOST=<this> (Locust appends the path)",
        )
        if isinstance(self.api, IngestApi):
            CfnOutput(
                self,
                "ApiKeyId",
                value=self.api.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id> prints the key",
            )
        if self.device_keys is not None:
            CfnOutput(
                self,
                "DeviceKeysSecretArn",
                value=self.device_keys.secret.secret_arn,
                description="The device keyring: python -m tools.ops.devices --stack <stack> issue <device id>",
            )
        CfnOutput(self, "BucketName", value=self.storage.bucket.bucket_name)
        CfnOutput(self, "QueueUrl", value=self.queue.queue.queue_url)
        CfnOutput(self, "DlqUrl", value=self.queue.dead_letter_queue.queue_url)
        self.query = PayloadQuery(
            self, "Query", config=config, bucket=self.storage.bucket, access_log_bucket=self.storage.access_log_bucket
        )
        self.compaction: PayloadCompaction | None = None
        if config.COMPACTION == "on":
            self.compaction = PayloadCompaction(
                self,
                "Compaction",
                config=config,
                bucket=self.storage.bucket,
                results_bucket=self.query.results_bucket,
                database_name=self.query.database_name,
            )
            assert self.query.compacted_table is not None  # COMPACTION=on defines it
            self.compaction.node.add_dependency(self.query.compacted_table)
            CfnOutput(
                self,
                "CompactionStateMachineArn",
                value=self.compaction.state_machine.state_machine_arn,
                description="make compact-aws FROM=<YYYY-MM-DDTHH> TO=<...> runs it for a range of hours",
            )
        self.monitoring = PipelineMonitoring(
            self,
            "Monitoring",
            config=config,
            resources=MonitoredResources(
                api_stage=self.api.stage,
                ingest_function=self.api.function,
                consumer_function=self.workers.function,
                queue=self.queue.queue,
                dead_letter_queue=self.queue.dead_letter_queue,
                bucket=self.storage.bucket,
                event_source_mapping_id=self.workers.event_source.event_source_mapping_id,
                compaction=self.compaction.state_machine if self.compaction else None,
            ),
        )
        CfnOutput(
            self,
            "QueryTable",
            value=f"{self.query.database_name}.{self.query.table_name}",
            description="Athena: the raw lake, SELECT ... FROM <this>; <database>.payloads_dedup has one row per id",
        )
        if self.compaction:
            CfnOutput(
                self,
                "QueryCompactedTable",
                value=f"{self.query.database_name}.{COMPACTED_TABLE_NAME}",
                description="Athena: one row per payload id, Parquet, hourly (query this one first)",
            )
        CfnOutput(
            self,
            "QueryWorkGroup",
            value=self.query.workgroup.name,
            description="Athena workgroup (encrypted results, expired after 7 days)",
        )
        CfnOutput(
            self,
            "QueryReaderPolicyArn",
            value=self.query.reader_policy.managed_policy_arn,
            description="Attach to a role or user to query the payloads (read only)",
        )
        CfnOutput(self, "DashboardUrl", value=self.monitoring.dashboard_url, description="The on-call dashboard")
        CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.monitoring.topic.topic_arn,
            description="Alarms notify this SNS topic (subscribe more endpoints to it)",
        )
        self._suppress_nag_findings()

    _TRACING_OFF = (
        "TRACING=false was chosen (the default): the X-Ray SDK costs ~50 ms of every ingest cold start (bench P2, "
        "docs/PERFORMANCE.md) and at 1M requests/min X-Ray's sampling is a large bill (docs/CAPACITY.md); "
        "metrics, logs and alarms stay on."
    )
    _STAGE_NOT_TRACED = (
        "The REST stage is never traced: its X-Ray segment records each client's address (http.request.client_ip) "
        "and X-Ray keeps traces 30 days with no retention setting, which breaks the promise that no address is kept "
        "by default (docs/PRIVACY.md). The access log has the stage's status and latency."
    )

    def _suppress_nag_findings(self) -> None:
        if isinstance(self.api, IngestApi):
            self._suppress_rest_api_findings(self.api)
        else:
            self._suppress_http_api_findings(self.api)
        if self.device_keys is not None:
            NagSuppressions.add_resource_suppressions(
                self.device_keys.secret,
                [
                    {
                        "id": "AwsSolutions-SMG4",
                        "reason": "The keyring is rotated by operators (python -m tools.ops.devices rotate, then "
                        "retire), never by a schedule: every device must be re-issued a key between the two, and "
                        "the previous generation keeps verifying until then (docs/DEVICE_KEYS.md).",
                    }
                ],
            )
        NagSuppressions.add_resource_suppressions(
            self.storage.access_log_bucket,
            [
                {
                    "id": "AwsSolutions-S1",
                    "reason": "This is the server-access-log target; logging it to itself would loop.",
                }
            ],
        )
        for function in (self.api.function, self.workers.function):
            assert function.role is not None  # CDK made one: no role is passed in
            NagSuppressions.add_resource_suppressions(
                function.role,
                [
                    {
                        "id": "AwsSolutions-IAM5",
                        "reason": "X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions.",
                        "appliesTo": ["Resource::*"],
                    }
                ],
                apply_to_children=True,
            )
            NagSuppressions.add_resource_suppressions(
                function,
                [
                    {
                        "id": "Serverless-LambdaDLQ",
                        "reason": "A Lambda dead-letter target only receives failed "
                        "asynchronous invocations. API Gateway invokes the ingest synchronously; the consumer "
                        "is invoked by "
                        "the SQS event source mapping, whose failures go to the queue's own DLQ.",
                    }
                ],
            )
            if not self.config.TRACING:
                NagSuppressions.add_resource_suppressions(
                    function, [{"id": "Serverless-LambdaTracing", "reason": self._TRACING_OFF}]
                )
        NagSuppressions.add_resource_suppressions(
            self.workers.function,  # the event source mapping is its child
            [
                {
                    "id": "Serverless-LambdaEventSourceMappingDestination",
                    "reason": "An on-failure destination applies "
                    "to stream and Kafka sources; an SQS mapping fails over through the queue's redrive policy: after "
                    "MAX_RECEIVE_COUNT receives SQS moves the message to the DLQ.",
                }
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.queue.dead_letter_queue,
            [
                {
                    "id": "Serverless-SQSRedrivePolicy",
                    "reason": "This is the dead-letter queue: it needs no DLQ of its "
                    "own; its messages are inspected and moved back with make redrive (docs/RUNBOOK.md).",
                }
            ],
        )
        assert self.workers.function.role is not None  # CDK made one: no role is passed in
        NagSuppressions.add_resource_suppressions(
            self.workers.function.role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "The consumer writes one object per payload under OBJECT_PREFIX; "
                    "keys are only known at run time, so the grant is scoped to the prefix.",
                    "appliesTo": ["Action::s3:Abort*", {"regex": "/^Resource::<StoragePayloads.*\\.Arn>/.*\\*$/"}],
                }
            ],
            apply_to_children=True,
        )
        if self.compaction and not self.config.TRACING:
            NagSuppressions.add_resource_suppressions(
                self.compaction.state_machine,
                [
                    {"id": "AwsSolutions-SF2", "reason": self._TRACING_OFF},
                    {"id": "Serverless-StepFunctionStateMachineXray", "reason": self._TRACING_OFF},
                ],
            )
        if self.compaction:
            NagSuppressions.add_resource_suppressions(
                self.compaction.role,
                [
                    {
                        "id": "AwsSolutions-IAM5",
                        "reason": "Compaction reads every raw object (OBJECT_PREFIX), writes and deletes run "
                        "directories under compacted/ and query results under compaction/, with keys known only at "
                        "run time; each run's CTAS creates and drops its own compaction_<run id> scratch table. Log "
                        "delivery and X-Ray actions have no resource-level permissions.",
                        "appliesTo": [
                            {"regex": "/^Resource::<StoragePayloads.*\\.Arn>/.*\\*$/"},
                            {"regex": "/^Resource::<QueryResults.*\\.Arn>/compaction/\\*$/"},
                            {"regex": "/^Resource::arn:<AWS::Partition>:glue:.*:table/.*/compaction_\\*$/"},
                            "Resource::*",
                        ],
                    }
                ],
                apply_to_children=True,
            )
        NagSuppressions.add_resource_suppressions(
            self.query.reader_policy,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "Athena reads every object of the table (the payload prefix) and "
                    "writes query results under keys it chooses in the workgroup's results bucket; both are only known "
                    "at query time. Read-only on the payloads.",
                    "appliesTo": [
                        {"regex": "/^Resource::<StoragePayloads.*\\.Arn>/.*\\*$/"},
                        {"regex": "/^Resource::<QueryResults.*\\.Arn>/\\*$/"},
                    ],
                }
            ],
        )

    def _suppress_rest_api_findings(self, api: IngestApi) -> None:
        NagSuppressions.add_resource_suppressions(
            api.api,
            [{"id": "Serverless-APIGWXrayEnabled", "reason": self._STAGE_NOT_TRACED}],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            api.api,
            [
                {
                    "id": "AwsSolutions-APIG2",
                    "reason": "The ingest Lambda validates every body and answers RFC 9457 "
                    "problem+json; API Gateway's validator would answer in a different error format.",
                },
                {
                    "id": "AwsSolutions-APIG3",
                    "reason": "WAF is optional and billed per request; usage-plan throttling "
                    "per API key is the default protection. Attach a WebACL to the stage if you need one.",
                },
            ],
            apply_to_children=True,
        )
        for method in api.methods.values():
            NagSuppressions.add_resource_suppressions(
                method,
                [
                    {
                        "id": "AwsSolutions-APIG4",
                        "reason": "Clients are identified and throttled by an API key bound "
                        "to a usage plan (REQUIRE_API_KEY). Keys are not authentication: docs/SECURITY.md names the "
                        "options (Lambda or JWT authorizer, mTLS, WAF).",
                    },
                    {"id": "AwsSolutions-COG4", "reason": "No Cognito users: clients are devices holding API keys."},
                ],
            )
        NagSuppressions.add_resource_suppressions(
            api.api,
            [
                {
                    "id": "AwsSolutions-IAM4",
                    "reason": "API Gateway's account-level CloudWatch role uses the AWS managed "
                    "AmazonAPIGatewayPushToCloudWatchLogs policy, as AWS documents.",
                    "appliesTo": [
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                    ],
                }
            ],
            apply_to_children=True,
        )

    def _suppress_http_api_findings(self, api: IngestHttpApi) -> None:
        for route in api.api.node.find_all():
            if isinstance(route, apigwv2.HttpRoute):
                NagSuppressions.add_resource_suppressions(
                    route,
                    [
                        {
                            "id": "AwsSolutions-APIG4",
                            "reason": "Every request is authenticated by the ingest with the device's own key "
                            "(DEVICE_AUTH=on, required with API_KIND=http: HMAC against the keyring, no per-request "
                            "call), which answers 401/403 problem+json; a gateway authorizer would answer in another "
                            "format, and a Lambda authorizer would add an invocation per uncached device.",
                        }
                    ],
                )
