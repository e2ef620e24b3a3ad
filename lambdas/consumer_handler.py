"""SQS event source mapping -> consumer Lambda. Thin: store the batch, then report each record's outcome.

pipeline/consume.py writes the batch's objects create-only, UPLOAD_CONCURRENCY uploads at once: one
per payload (OBJECT_MODE=payload) or one gzip NDJSON object per hour partition (batch,
pipeline/batch_objects.py), and logs and counts each outcome. Powertools' BatchProcessor turns the
per-record outcomes into batchItemFailures, so SQS redelivers only the failed records, after a short
retry delay that grows with each receive (pipeline/redelivery.py), and after MAX_RECEIVE_COUNT
receives moves them to the DLQ. S3 throttling is first retried in-process, within the invocation's
time budget (pipeline/time_budget.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from pipeline.consume import delay_retries, store_records
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import consumer_settings
from pipeline.time_budget import budget

if TYPE_CHECKING:  # annotations only: no import added to the cold start
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext

processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    settings = consumer_settings()
    with budget.running(context):
        report = store_records(event.get("Records") or [], settings)
        try:
            response = process_partial_response(
                event=event, record_handler=report.record_handler(), processor=processor, context=context
            )
        except BatchProcessingError:
            # Every record failed: the invocation still fails (nothing is deleted), after the delays.
            delay_retries(processor, settings)
            raise
        delay_retries(processor, settings)
    return response
