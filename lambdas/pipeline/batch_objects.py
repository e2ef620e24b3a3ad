"""OBJECT_MODE=batch: one gzip NDJSON object per hour partition of a consumer batch.

At telemetry scale S3 PUTs dominate the bill (one object per payload is ~$5 per million payloads);
with BATCH_SIZE=100 this mode makes ~1 PUT per 100 payloads. Design (docs/OBJECT_MODES.md):

1. Plan: parse every record of the batch. A record that is not our envelope is rejected on its own
   (reported failed, retried, then dead-lettered) and never blocks the others. The good ones are
   grouped by the hour partition of their receivedAt, so the ``dt=/hour=`` layout is the same as in
   payload mode; each group becomes one object.
2. Store: each object is written create-only (If-None-Match: *) at a key derived from the sorted
   payload ids it holds, so an identical redelivered group maps to the same key and is not stored
   twice (412 = already stored).
3. Report: all-or-nothing per object. If its PUT fails, every record in it is reported failed, so
   SQS redelivers exactly those. Powertools' BatchProcessor turns the per-record outcomes into
   ``batchItemFailures`` (see consumer_handler.py).

What redelivery can duplicate: a record redelivered with *different* neighbours (after a timeout or a
crash after the PUT, or an SQS at-least-once duplicate) forms a different group, hence a different
key, so that payload can appear in two objects. Readers dedupe by the payload ``id``. What it cannot
duplicate: an identical group (same payload ids) always maps to one key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.contract import BATCH_CONTENT_TYPE, batch_object_key, encode_batch_object
from pipeline.envelope import EnvelopeError, StoredEnvelope, parse_envelope
from pipeline.storage import StoreOutcome, put_create_only


class ObjectNotStoredError(RuntimeError):
    """The PUT of the object holding this record failed: every record of that object is retried."""


@dataclass(frozen=True)
class BatchRecord:
    """One good record of the batch: its SQS message id, envelope fields and NDJSON line."""

    message_id: str
    envelope: StoredEnvelope
    line: bytes


@dataclass(frozen=True)
class ObjectGroup:
    """The records that go into one object. ``records`` may hold one payload id twice (an SQS
    duplicate inside one batch); the object holds it once and both messages share its outcome."""

    key: str
    records: tuple[BatchRecord, ...]

    @property
    def payload_ids(self) -> list[str]:
        return sorted({record.envelope.payload_id for record in self.records})

    @property
    def oldest_received_at(self) -> datetime:
        return min(record.envelope.received_at for record in self.records)


@dataclass(frozen=True)
class BatchPlan:
    groups: list[ObjectGroup]
    rejected: dict[str, EnvelopeError] = field(default_factory=dict)  # message id -> why


@dataclass(frozen=True)
class ObjectResult:
    group: ObjectGroup
    outcome: StoreOutcome | None  # None: the PUT failed with ``error``
    error: Exception | None = None


def _ndjson_line(body: str) -> bytes:
    # Envelopes are written compact by the ingest (never a raw newline); re-serialize defensively
    # so one record is always exactly one line.
    if "\n" in body or "\r" in body:
        body = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))
    return body.encode("utf-8") + b"\n"


def plan_batch_objects(messages: Iterable[tuple[str, str]], prefix: str) -> BatchPlan:
    """Group ``(message_id, body)`` pairs into objects, one per hour partition; reject poison records."""
    rejected: dict[str, EnvelopeError] = {}
    partitions: dict[datetime, list[BatchRecord]] = {}
    for message_id, body in messages:
        try:
            envelope = parse_envelope(body)
            line = _ndjson_line(body)
        except EnvelopeError as exc:
            rejected[message_id] = exc
            continue
        hour = envelope.received_at.replace(minute=0, second=0, microsecond=0)
        partitions.setdefault(hour, []).append(BatchRecord(message_id, envelope, line))
    groups = [
        ObjectGroup(batch_object_key(prefix, hour, (r.envelope.payload_id for r in records)), tuple(records))
        for hour, records in sorted(partitions.items())
    ]
    return BatchPlan(groups, rejected)


def store_batch_objects(plan: BatchPlan, bucket: str, s3: Any, executor: Executor) -> list[ObjectResult]:
    """Write each planned object create-only; a failed PUT is captured in its result, never raised,
    so one failing object cannot hide the outcome of the others."""

    def store(group: ObjectGroup) -> ObjectResult:
        try:
            outcome = put_create_only(
                s3,
                bucket,
                group.key,
                encode_batch_object({record.envelope.payload_id: record.line for record in group.records}),
                content_type=BATCH_CONTENT_TYPE,
            )
        except Exception as exc:  # noqa: BLE001 - any failure means: retry every record of this object
            return ObjectResult(group, None, exc)
        return ObjectResult(group, outcome)

    return list(executor.map(store, plan.groups))


@dataclass(frozen=True)
class BatchReport:
    """Per-record outcomes for Powertools' batch processor: ``outcome_for`` returns the stored
    outcome, or raises the reason a record must be retried."""

    plan: BatchPlan
    results: list[ObjectResult]
    _by_message: dict[str, ObjectResult] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_message = {record.message_id: result for result in self.results for record in result.group.records}
        object.__setattr__(self, "_by_message", by_message)

    def outcome_for(self, message_id: str) -> str:
        if message_id in self.plan.rejected:
            raise self.plan.rejected[message_id]
        result = self._by_message.get(message_id)
        if result is None:  # cannot happen: every record is either rejected or in a group
            raise ObjectNotStoredError(f"message {message_id} was not part of any object")
        if result.outcome is None:
            raise ObjectNotStoredError(
                f"object {result.group.key} ({len(result.group.payload_ids)} payloads) was not stored: {result.error!r}"
            ) from result.error
        return result.outcome.value

    def record_handler(self) -> Callable[[Any], str]:
        """A Powertools record handler (it receives an SQSRecord) backed by these outcomes."""
        return lambda record: self.outcome_for(record.message_id)


def end_to_end_ms(group: ObjectGroup, now: datetime | None = None) -> float:
    """Latency of the oldest payload in the object: receivedAt -> stored."""
    return ((now or datetime.now(tz=UTC)) - group.oldest_received_at).total_seconds() * 1000
