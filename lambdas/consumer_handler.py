"""SQS event source mapping -> consumer Lambda. One object per record, uploads run concurrently.

With OBJECT_MODE=batch, one gzip NDJSON object per hour partition of the batch instead
(pipeline/batch_objects.py); a synchronous BatchProcessor reports the per-record outcomes.

Powertools' AsyncBatchProcessor gathers the records; each upload runs on a bounded thread pool
(UPLOAD_CONCURRENCY). Failed records are reported in batchItemFailures, so SQS redelivers only
those, after a short retry delay that grows with each receive (pipeline/redelivery.py), and after
MAX_RECEIVE_COUNT receives moves them to the DLQ. S3 throttling is first retried in-process, within
the invocation's time budget (pipeline/time_budget.py).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    BatchProcessor,
    EventType,
    async_process_partial_response,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from pipeline import batch_objects, redelivery
from pipeline.aws_clients import s3_client, sqs_client
from pipeline.consume import store_message
from pipeline.contract import REQUEST_ID_ATTRIBUTE, Metric
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import consumer_settings
from pipeline.storage import StoreOutcome
from pipeline.time_budget import budget

if TYPE_CHECKING:  # annotations only: the handler imports nothing more than before
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext

processor = AsyncBatchProcessor(event_type=EventType.SQS)
batch_object_processor = BatchProcessor(event_type=EventType.SQS)


@lru_cache(maxsize=1)
def _upload_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=consumer_settings().UPLOAD_CONCURRENCY, thread_name_prefix="upload")


def _store(record: SQSRecord) -> Any:
    settings = consumer_settings()
    return store_message(record.body, settings, s3_client(settings.UPLOAD_CONCURRENCY))


async def record_handler(record: SQSRecord) -> str:
    attribute = (record.raw_event.get("messageAttributes") or {}).get(REQUEST_ID_ATTRIBUTE) or {}
    request_id = attribute.get("stringValue")
    # The ingest's correlation id (the API Gateway request id) on every line of this record. The
    # batch processor runs each record in its own asyncio task, and Powertools' thread-safe keys
    # live in a contextvar that each task copies, so records never see each other's keys.
    logger.thread_safe_append_keys(correlation_id=request_id, requestId=request_id, messageId=record.message_id)
    try:
        result = await asyncio.get_running_loop().run_in_executor(_upload_pool(), _store, record)
    except Exception:
        # Metrics and logs are written here, on the event loop thread, never from upload threads.
        metrics.add_metric(name=Metric.STORE_FAILURES, unit=MetricUnit.Count, value=1)
        logger.exception("payload not stored; SQS will redeliver it")
        raise
    if result.outcome is StoreOutcome.STORED:
        metrics.add_metric(name=Metric.PAYLOADS_STORED, unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=Metric.END_TO_END_LATENCY, unit=MetricUnit.Milliseconds, value=result.end_to_end_ms)
    else:
        metrics.add_metric(name=Metric.DUPLICATES_SKIPPED, unit=MetricUnit.Count, value=1)
    logger.info(
        "payload stored" if result.outcome is StoreOutcome.STORED else "payload already stored",
        extra={"payloadId": result.payload_id, "key": result.key},
    )
    return result.outcome.value


def _record_batch_outcomes(plan: batch_objects.BatchPlan, results: list[batch_objects.ObjectResult]) -> None:
    for message_id, error in plan.rejected.items():
        metrics.add_metric(name=Metric.STORE_FAILURES, unit=MetricUnit.Count, value=1)
        logger.error(
            "message is not an envelope; SQS will retry then dead-letter it",
            extra={"messageId": message_id, "error": str(error)},
        )
    for result in results:
        group = result.group
        # The request ids make a single requestId find this line too (filter @message like "<id>").
        detail = {
            "key": group.key,
            "payloads": len(group.payload_ids),
            "messages": len(group.records),
            "requestIds": sorted({record.envelope.request_id for record in group.records}),
        }
        if result.outcome is None:
            metrics.add_metric(name=Metric.STORE_FAILURES, unit=MetricUnit.Count, value=len(group.records))
            logger.error(
                "batch object not stored; SQS will redeliver all its records", extra=detail, exc_info=result.error
            )
        elif result.outcome is StoreOutcome.STORED:
            metrics.add_metric(name=Metric.OBJECTS_STORED, unit=MetricUnit.Count, value=1)
            metrics.add_metric(name=Metric.PAYLOADS_STORED, unit=MetricUnit.Count, value=len(group.payload_ids))
            metrics.add_metric(
                name=Metric.END_TO_END_LATENCY, unit=MetricUnit.Milliseconds, value=batch_objects.end_to_end_ms(group)
            )
            logger.info("batch object stored", extra=detail)
        else:
            metrics.add_metric(name=Metric.DUPLICATES_SKIPPED, unit=MetricUnit.Count, value=len(group.payload_ids))
            logger.info("batch object already stored", extra=detail)


def process_batch_mode(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """OBJECT_MODE=batch: plan and write the objects first, then let Powertools report each record
    from their outcomes (all-or-nothing per object; poison records fail on their own)."""
    settings = consumer_settings()
    messages = [(record["messageId"], record["body"]) for record in event.get("Records") or []]
    plan = batch_objects.plan_batch_objects(messages, settings.OBJECT_PREFIX)
    results = batch_objects.store_batch_objects(
        plan, settings.BUCKET_NAME, s3_client(settings.UPLOAD_CONCURRENCY), _upload_pool()
    )
    _record_batch_outcomes(plan, results)
    report = batch_objects.BatchReport(plan, results)
    return process_partial_response(
        event=event, record_handler=report.record_handler(), processor=batch_object_processor, context=context
    )


def _set_retry_delays(used: BatchProcessor | AsyncBatchProcessor) -> None:
    """Give each failed record its short retry delay. Whatever happens here, the records stay
    reported as failed: at worst they come back after the queue's full visibility timeout."""
    # EventType.SQS without a model: Powertools hands each record over as an SQSRecord.
    failed = cast(list[SQSRecord], used.fail_messages)
    if not failed:
        return
    settings = consumer_settings()
    records = [redelivery.FailedRecord.from_event_record(record.raw_event) for record in failed]
    try:
        schedule = redelivery.schedule_retries(
            records, settings.QUEUE_URL, settings.RETRY_BASE_SECONDS, settings.RETRY_MAX_SECONDS, sqs_client()
        )
    except Exception:  # noqa: BLE001 - a retry delay must never change what the invocation reports
        logger.exception("retry delays not set; the failed records come back after the visibility timeout")
        return
    if schedule.delays:
        metrics.add_metric(name=Metric.RETRIES_SCHEDULED, unit=MetricUnit.Count, value=len(schedule.delays))
        logger.info("failed records come back after their retry delay", extra={"retryDelays": schedule.delays})
    if schedule.not_scheduled:
        logger.warning(
            "retry delay not set; these records come back after the visibility timeout",
            extra={"notScheduled": schedule.not_scheduled},
        )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    used: BatchProcessor | AsyncBatchProcessor
    run: Callable[[], PartialItemFailureResponse]
    if consumer_settings().OBJECT_MODE == "batch":
        used, run = batch_object_processor, lambda: process_batch_mode(event, context)
    else:
        used, run = (
            processor,
            lambda: async_process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            ),
        )
    with budget.running(context):
        try:
            response = run()
        except BatchProcessingError:
            _set_retry_delays(used)  # every record failed: the invocation still fails, as before
            raise
        _set_retry_delays(used)
    return response
