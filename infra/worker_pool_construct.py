"""The consumer Lambda fed by an SQS event source mapping: the Go original's MAX_WORKERS pool."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import PipelineConfig
from infra.functions import pipeline_function
from pipeline.contract import LATE_MARKER_PREFIX


def _scaling(config: PipelineConfig) -> dict[str, Any]:
    if config.PROVISIONED_POLLERS:
        return {
            "provisioned_poller_config": lambda_.ProvisionedPollerConfig(
                minimum_pollers=config.MIN_POLLERS, maximum_pollers=config.MAX_POLLERS
            )
        }
    return {"max_concurrency": config.MAX_WORKERS}


class WorkerPool(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        queue: sqs.IQueue,
        bucket: s3.IBucket,
        powertools_layer: lambda_.ILayerVersion | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = pipeline_function(
            self,
            "Consumer",
            config=config,
            handler="consumer_handler.lambda_handler",
            environment=config.consumer_environment(bucket.bucket_name, queue.queue_url),
            timeout_seconds=config.CONSUMER_TIMEOUT_SECONDS,
            memory_mb=config.CONSUMER_MEMORY_MB,
            powertools_layer=powertools_layer,
            # Never below the mapping's maximum concurrency, or the mapping over-pulls, gets
            # throttled, and good messages drift into the DLQ (MAX_WORKERS, or 10 x MAX_POLLERS).
            # RESERVED_CONCURRENCY=off reserves nothing: the mapping's bound alone limits the pool.
            reserved_concurrency=config.consumer_reservation,
        )
        bucket.grant_put(self.function, objects_key_pattern=f"{config.OBJECT_PREFIX}*")
        # The late markers of objects stored into closed hours (pipeline/contract.py LATE_MARKER_PREFIX): PutObject
        # there only, never the compacted lake's prefix beside it.
        bucket.grant_put(self.function, objects_key_pattern=f"{LATE_MARKER_PREFIX}*")
        self.event_source = event_sources.SqsEventSource(
            queue,
            batch_size=config.BATCH_SIZE,
            max_batching_window=Duration.seconds(config.MAX_BATCHING_WINDOW_SECONDS),
            report_batch_item_failures=True,
            # AWS rejects maximum concurrency together with provisioned pollers: exactly one bounds the pool.
            **_scaling(config),
        )
        # Also grants consume on the queue only: ReceiveMessage, DeleteMessage, GetQueueAttributes,
        # GetQueueUrl and ChangeMessageVisibility. The latter also covers ChangeMessageVisibilityBatch
        # (SQS API reference, AddPermission: a permission for an action grants its batch version), the
        # call that sets a failed record's retry delay (pipeline/redelivery.py).
        self.function.add_event_source(self.event_source)
