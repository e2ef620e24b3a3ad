"""The buffer between ingest and the worker pool, and its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import PipelineConfig
from pipeline.contract import SQS_MAX_MESSAGE_BYTES

# Set, never left to the default: the code packs up to SQS_MAX_MESSAGE_BYTES per message (pipeline/contract.py),
# and some providers still document the attribute's default as 262,144 bytes. MaximumMessageSize takes 1,024 to
# 1,048,576 bytes, the SQS maximum (Amazon SQS API Reference, CreateQueue; "Amazon SQS message quotas",
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html). The DLQ gets
# the same: a message the queue accepted must fit the queue it is moved to.


class PayloadQueue(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            max_message_size_bytes=SQS_MAX_MESSAGE_BYTES,
            # Longer than the source queue: a moved message keeps its original enqueue time.
            retention_period=Duration.days(config.DLQ_RETENTION_DAYS),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            max_message_size_bytes=SQS_MAX_MESSAGE_BYTES,
            retention_period=Duration.days(config.QUEUE_RETENTION_DAYS),
            visibility_timeout=Duration.seconds(config.visibility_timeout_seconds),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=config.MAX_RECEIVE_COUNT, queue=self.dead_letter_queue
            ),
        )
