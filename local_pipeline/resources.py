"""Create the queue, DLQ and bucket with the same settings the stack defines (infra/config.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infra.config import PipelineConfig


@dataclass(frozen=True)
class LocalResources:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    bucket: str


def create_resources(sqs: Any, s3: Any, config: PipelineConfig, name: str = "ingest-pipeline-local") -> LocalResources:
    """Idempotent: re-running against the same endpoint reuses what exists."""
    day = 24 * 3600
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": str(config.DLQ_RETENTION_DAYS * day)}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(config.visibility_timeout_seconds),
            "MessageRetentionPeriod": str(config.QUEUE_RETENTION_DAYS * day),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": config.MAX_RECEIVE_COUNT}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = f"{name}-payloads"
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return LocalResources(queue_url, queue_arn, dlq_url, dlq_arn, bucket)


def lambda_environment(config: PipelineConfig, resources: LocalResources) -> dict[str, str]:
    """Both functions' environment, exactly as the stack sets it."""
    return {**config.ingest_environment(resources.queue_url), **config.consumer_environment(resources.bucket)}
