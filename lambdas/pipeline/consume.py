"""Consumer logic: one invocation's records -> create-only S3 objects, each outcome logged and counted.

Both object modes run one flow (pipeline/batch_objects.py): read each record's envelopes (one, or
several of one request when the ingest packs them), plan the objects (OBJECT_MODE=payload: one per
envelope, at its payload's key; batch: one gzip NDJSON object per hour partition), write them
create-only on the upload pool, UPLOAD_CONCURRENCY at once, and report each record's outcome (failed
if any of its envelopes was not stored). What the on-call engineer reads stays per mode: payload
mode logs and counts each payload, with its record's correlation id; batch mode each object; the
metrics count payloads either way. Then failed records get their short retry delay
(pipeline/redelivery.py).

Metrics and log lines are written on the invocation's thread, never from upload threads.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.metrics import MetricUnit

from pipeline import redelivery
from pipeline.aws_clients import s3_client, sqs_client
from pipeline.batch_objects import (
    BatchReport,
    ObjectResult,
    end_to_end_ms,
    plan_batch_objects,
    plan_payload_objects,
    store_objects,
)
from pipeline.contract import REQUEST_ID_ATTRIBUTE, Metric
from pipeline.envelope import EnvelopeError
from pipeline.observability import logger, metrics
from pipeline.settings import ConsumerSettings, consumer_settings
from pipeline.storage import StoreOutcome

if TYPE_CHECKING:  # annotations only
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

Record = Mapping[str, Any]  # one record of the event source mapping's event, as Lambda passes it


@lru_cache(maxsize=1)
def upload_pool() -> ThreadPoolExecutor:
    """The upload threads (UPLOAD_CONCURRENCY), kept for the execution environment's life."""
    return ThreadPoolExecutor(max_workers=consumer_settings().UPLOAD_CONCURRENCY, thread_name_prefix="upload")


def store_records(records: Sequence[Record], settings: ConsumerSettings) -> BatchReport:
    """Write the objects of this batch and log and count each outcome. The report holds each record's
    outcome for Powertools' batch processor. A record that must be retried never raises here."""
    messages = [(record["messageId"], record["body"]) for record in records]
    outcomes: BatchObjectOutcomes | PayloadOutcomes
    if settings.OBJECT_MODE == "batch":
        plan, outcomes = plan_batch_objects(messages, settings.OBJECT_PREFIX), BatchObjectOutcomes()
    else:
        plan, outcomes = plan_payload_objects(messages, settings.OBJECT_PREFIX), PayloadOutcomes(records)
    for message_id, error in plan.rejected.items():
        outcomes.rejected(message_id, error)
    results: list[ObjectResult] = []
    # Each result is reported as soon as it and those before it are in: a crash or a timeout later
    # still leaves the lines of what was stored.
    for result in store_objects(
        plan,
        settings.BUCKET_NAME,
        s3_client(settings.UPLOAD_CONCURRENCY),
        upload_pool(),
        settings.LATE_MARKER_AFTER_SECONDS,
    ):
        outcomes.stored(result)
        results.append(result)
    return BatchReport(plan, results)


class PayloadOutcomes:
    """OBJECT_MODE=payload: a line and metrics per payload. Each record's lines carry the ingest's
    correlation id (the API Gateway request id, from the message attribute), so one request id finds
    the ingest line and every stored payload's line."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._request_ids: dict[str, str | None] = {}
        for record in records:
            attribute = (record.get("messageAttributes") or {}).get(REQUEST_ID_ATTRIBUTE) or {}
            self._request_ids[record["messageId"]] = attribute.get("stringValue")

    def _as_record(self, message_id: str, write: Callable[[], None]) -> None:
        # Powertools' thread-safe keys live in a contextvar: set in a copy of the context, they are on
        # this record's lines only, never on another record's or the invocation's.
        def with_keys() -> None:
            request_id = self._request_ids.get(message_id)
            logger.thread_safe_append_keys(correlation_id=request_id, requestId=request_id, messageId=message_id)
            write()

        contextvars.copy_context().run(with_keys)

    def rejected(self, message_id: str, error: EnvelopeError) -> None:
        self._as_record(message_id, lambda: _payload_not_stored(error))

    def stored(self, result: ObjectResult) -> None:
        self._as_record(result.group.records[0].message_id, lambda: _payload_outcome(result))


def _payload_not_stored(error: Exception | None) -> None:
    metrics.add_metric(name=Metric.STORE_FAILURES, unit=MetricUnit.Count, value=1)
    logger.error("payload not stored; SQS will redeliver it", exc_info=error)


def _payload_outcome(result: ObjectResult) -> None:
    if result.outcome is None:
        _payload_not_stored(result.error)
        return
    if result.outcome is StoreOutcome.STORED:
        metrics.add_metric(name=Metric.PAYLOADS_STORED, unit=MetricUnit.Count, value=1)
        latency = end_to_end_ms(result.group, result.finished_at)
        metrics.add_metric(name=Metric.END_TO_END_LATENCY, unit=MetricUnit.Milliseconds, value=latency)
    else:
        metrics.add_metric(name=Metric.DUPLICATES_SKIPPED, unit=MetricUnit.Count, value=1)
    logger.info(
        "payload stored" if result.outcome is StoreOutcome.STORED else "payload already stored",
        extra={"payloadId": result.group.records[0].envelope.payload_id, "key": result.group.key},
    )


class BatchObjectOutcomes:
    """OBJECT_MODE=batch: a line per object, naming the request ids of its payloads; the metrics
    count payloads (and objects), and a failed object counts each of its payloads."""

    def rejected(self, message_id: str, error: EnvelopeError) -> None:
        metrics.add_metric(name=Metric.STORE_FAILURES, unit=MetricUnit.Count, value=1)
        logger.error(
            "message is not an envelope; SQS will retry then dead-letter it",
            extra={"messageId": message_id, "error": str(error)},
        )

    def stored(self, result: ObjectResult) -> None:
        group = result.group
        # The request ids make a single requestId find this line too (filter @message like "<id>").
        detail = {
            "key": group.key,
            "payloads": len(group.payload_ids),
            "messages": len({record.message_id for record in group.records}),
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
                name=Metric.END_TO_END_LATENCY,
                unit=MetricUnit.Milliseconds,
                value=end_to_end_ms(group, result.finished_at),
            )
            logger.info("batch object stored", extra=detail)
        else:
            metrics.add_metric(name=Metric.DUPLICATES_SKIPPED, unit=MetricUnit.Count, value=len(group.payload_ids))
            logger.info("batch object already stored", extra=detail)


def delay_retries(processor: BatchProcessor, settings: ConsumerSettings) -> None:
    """Give each record ``processor`` reported failed its short retry delay. Whatever happens here, the
    records stay reported as failed: at worst they come back after the queue's full visibility timeout."""
    # EventType.SQS without a model: Powertools hands each record over as an SQSRecord.
    failed = cast("list[SQSRecord]", processor.fail_messages)
    if not failed:
        return
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
