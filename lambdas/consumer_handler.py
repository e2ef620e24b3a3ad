"""SQS event source mapping -> consumer Lambda. One object per record, uploads run concurrently.

Powertools' AsyncBatchProcessor gathers the records; each upload runs on a bounded thread pool
(UPLOAD_CONCURRENCY). Failed records are reported in batchItemFailures, so SQS redelivers only
those and, after MAX_RECEIVE_COUNT receives, moves them to the DLQ.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from pipeline.aws_clients import s3_client
from pipeline.consume import store_message
from pipeline.envelope import REQUEST_ID_ATTRIBUTE
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import consumer_settings
from pipeline.storage import StoreOutcome

processor = AsyncBatchProcessor(event_type=EventType.SQS)


@lru_cache(maxsize=1)
def _upload_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=consumer_settings().upload_concurrency, thread_name_prefix="upload")


def _store(record: SQSRecord) -> Any:
    settings = consumer_settings()
    return store_message(record.body, settings, s3_client(settings.upload_concurrency))


async def record_handler(record: SQSRecord) -> str:
    attribute = (record.raw_event.get("messageAttributes") or {}).get(REQUEST_ID_ATTRIBUTE) or {}
    correlation = {"requestId": attribute.get("stringValue"), "messageId": record.message_id}
    try:
        result = await asyncio.get_running_loop().run_in_executor(_upload_pool(), _store, record)
    except Exception:
        # Metrics and logs are written here, on the event loop thread, never from upload threads.
        metrics.add_metric(name="StoreFailures", unit=MetricUnit.Count, value=1)
        logger.exception("payload not stored; SQS will redeliver it", extra=correlation)
        raise
    if result.outcome is StoreOutcome.STORED:
        metrics.add_metric(name="PayloadsStored", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="EndToEndLatency", unit=MetricUnit.Milliseconds, value=result.end_to_end_ms)
    else:
        metrics.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=1)
    logger.info(
        "payload stored" if result.outcome is StoreOutcome.STORED else "payload already stored",
        extra={**correlation, "requestId": result.request_id, "payloadId": result.payload_id, "key": result.key},
    )
    return result.outcome.value


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return async_process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
