"""Create the queue, DLQ and bucket (and with DEVICE_AUTH=on the device keyring secret) with the same settings
the stack defines (infra/config.py)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from infra.config import PipelineConfig
from pipeline.contract import SQS_MAX_MESSAGE_BYTES
from pipeline.device_auth import new_keyring_document


@dataclass(frozen=True)
class LocalResources:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    bucket: str
    device_keys_secret: str = ""  # DEVICE_AUTH=on: the keyring secret's name (python -m tools.ops.devices)


def create_resources(
    sqs: Any, s3: Any, config: PipelineConfig, name: str = "ingest-pipeline-local", secretsmanager: Any = None
) -> LocalResources:
    """Idempotent: re-running against the same endpoint reuses what exists. ``secretsmanager`` is needed
    with DEVICE_AUTH=on: the keyring secret, with one generation, as the stack creates it."""
    day = 24 * 3600
    # MaximumMessageSize as the stack sets it (infra/queue_construct.py): what the code packs, not the default.
    max_size = str(SQS_MAX_MESSAGE_BYTES)
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq",
        Attributes={"MessageRetentionPeriod": str(config.DLQ_RETENTION_DAYS * day), "MaximumMessageSize": max_size},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(config.visibility_timeout_seconds),
            "MessageRetentionPeriod": str(config.QUEUE_RETENTION_DAYS * day),
            "MaximumMessageSize": max_size,
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": config.MAX_RECEIVE_COUNT}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = f"{name}-payloads"
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    device_keys_secret = ""
    if config.DEVICE_AUTH == "on":
        if secretsmanager is None:
            raise ValueError("DEVICE_AUTH=on needs a Secrets Manager client for the device keyring")
        device_keys_secret = f"{name}-device-keys"
        try:
            secretsmanager.create_secret(
                Name=device_keys_secret, SecretString=json.dumps(new_keyring_document(secrets.token_urlsafe(48)))
            )
        except secretsmanager.exceptions.ResourceExistsException:
            pass  # keys minted against this endpoint before keep working
    return LocalResources(queue_url, queue_arn, dlq_url, dlq_arn, bucket, device_keys_secret)


def lambda_environment(config: PipelineConfig, resources: LocalResources) -> dict[str, str]:
    """Both functions' environment, exactly as the stack sets it."""
    return {
        **config.ingest_environment(resources.queue_url, resources.device_keys_secret),
        **config.consumer_environment(resources.bucket),
    }
