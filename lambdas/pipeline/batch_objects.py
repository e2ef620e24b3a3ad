"""The objects the consumer writes for one batch of records: plan -> store -> report, in both modes.

OBJECT_MODE=batch: one gzip NDJSON object per hour partition of a consumer batch. At telemetry scale
S3 PUTs dominate the bill (one object per payload is ~$5 per million payloads); with BATCH_SIZE=100
this mode makes ~1 PUT per 100 payloads. OBJECT_MODE=payload is the same flow with one envelope per
object: the envelope, verbatim, at its payload's key (``plan_payload_objects``). Design
(docs/OBJECT_MODES.md):

1. Plan: parse every record of the batch into its envelopes: one, or several of one request when the
   ingest packed them (MESSAGE_TARGET_BYTES; pipeline/envelope.py parse_envelopes). A record that is
   not our envelope(s) is rejected on its own (reported failed, retried, then dead-lettered) and never
   blocks the others. The envelopes are grouped by their hour partition (StoredEnvelope.partition: the
   first attempt a keyed request stated, else receivedAt), so the
   ``dt=/hour=`` layout is the same as in payload mode; each group becomes one object.
2. Store: each object is written create-only (If-None-Match: *) at a key derived from the sorted
   payload ids it holds, so an identical redelivered group maps to the same key and is not stored
   twice (412 = already stored). Objects are written concurrently on the consumer's upload pool.
3. Report: all-or-nothing per object, and per record: a record is reported failed if any object
   holding one of its envelopes was not stored, so SQS redelivers exactly those records. Powertools'
   BatchProcessor turns the per-record outcomes into ``batchItemFailures`` (consumer_handler.py;
   pipeline/consume.py runs the three steps).

What redelivery can duplicate: a record redelivered with *different* neighbours (after a timeout or a
crash after the PUT, or an SQS at-least-once duplicate) forms a different group, hence a different
key, so its payloads can appear in two objects. Readers dedupe by the payload ``id``. What it cannot
duplicate: an identical group (same payload ids) always maps to one key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.contract import (
    BATCH_CONTENT_TYPE,
    PAYLOAD_CONTENT_TYPE,
    batch_object_key,
    encode_batch_object,
    late_marker_key,
    needs_late_marker,
    payload_object_key,
)
from pipeline.envelope import EnvelopeError, StoredEnvelope, parse_envelopes
from pipeline.storage import StoreOutcome, put_create_only

LATE_MARKER_CONTENT_TYPE = "application/octet-stream"  # zero bytes: the key is the message


class ObjectNotStoredError(RuntimeError):
    """The PUT of the object holding this record failed: every record of that object is retried."""


@dataclass(frozen=True)
class BatchRecord:
    """One envelope of a good record: the record's SQS message id, the envelope's fields, and its text
    as the message carried it (the whole body, or its line of a packed body)."""

    message_id: str
    envelope: StoredEnvelope
    text: str

    @property
    def line(self) -> bytes:
        """The envelope as one NDJSON line of a batch object."""
        return _ndjson_line(self.text)


@dataclass(frozen=True)
class ObjectGroup:
    """The envelopes that go into one object. ``records`` may hold one payload id twice (an SQS
    duplicate inside one batch); the object holds it once and both messages share its outcome.
    A payload object (OBJECT_MODE=payload) holds exactly one envelope."""

    key: str
    records: tuple[BatchRecord, ...]
    partition: datetime  # the hour partition ``key`` lies in, UTC
    payload_object: bool = False  # True: the one record's envelope, verbatim, as JSON; else gzip NDJSON

    def content(self) -> tuple[bytes, str]:
        """The object's bytes and Content-Type."""
        if self.payload_object:
            return self.records[0].text.encode("utf-8"), PAYLOAD_CONTENT_TYPE
        return encode_batch_object(
            {record.envelope.payload_id: record.line for record in self.records}
        ), BATCH_CONTENT_TYPE

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
    finished_at: datetime | None = None  # when the PUT answered: the end of the payloads' end-to-end latency


def _ndjson_line(text: str) -> bytes:
    # Envelopes are written compact by the ingest (never a raw newline); re-serialize defensively
    # so one envelope is always exactly one line.
    if "\n" in text or "\r" in text:
        text = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def _parse_records(messages: Iterable[tuple[str, str]]) -> tuple[list[BatchRecord], dict[str, EnvelopeError]]:
    """The envelopes of ``(message_id, body)`` pairs, and the poison records (message id -> why)."""
    records: list[BatchRecord] = []
    rejected: dict[str, EnvelopeError] = {}
    for message_id, body in messages:
        try:
            envelopes = parse_envelopes(body)
        except EnvelopeError as exc:
            rejected[message_id] = exc
            continue
        records.extend(BatchRecord(message_id, envelope, text) for envelope, text in envelopes)
    return records, rejected


def plan_batch_objects(messages: Iterable[tuple[str, str]], prefix: str) -> BatchPlan:
    """Group the envelopes of ``(message_id, body)`` pairs into objects, one per hour partition;
    reject poison records."""
    records, rejected = _parse_records(messages)
    partitions: dict[datetime, list[BatchRecord]] = {}
    for record in records:
        partitions.setdefault(record.envelope.partition, []).append(record)
    groups = [
        ObjectGroup(batch_object_key(prefix, hour, (r.envelope.payload_id for r in members)), tuple(members), hour)
        for hour, members in sorted(partitions.items())
    ]
    return BatchPlan(groups, rejected)


def plan_payload_objects(messages: Iterable[tuple[str, str]], prefix: str) -> BatchPlan:
    """OBJECT_MODE=payload: one object per envelope of the ``(message_id, body)`` pairs, at its
    payload's key; poison records are rejected as in batch mode. Two deliveries of one payload are two
    objects at one key: the create-only write stores it once."""
    records, rejected = _parse_records(messages)
    groups = [
        ObjectGroup(
            payload_object_key(prefix, r.envelope.payload_id, r.envelope.partition),
            (r,),
            r.envelope.partition,
            payload_object=True,
        )
        for r in records
    ]
    return BatchPlan(groups, rejected)


def store_objects(
    plan: BatchPlan, bucket: str, s3: Any, executor: Executor, late_after_seconds: int = 0
) -> Iterator[ObjectResult]:
    """Write each planned object create-only, concurrently on ``executor``; yield the results in plan
    order as they come in. A failed PUT is captured in its result, never raised, so one failing object
    cannot hide the outcome of the others.

    An object stored ``late_after_seconds`` or more after its hour closed also gets its late marker
    (pipeline/contract.py late_marker_key), after the object is stored: a marker without data is harmless,
    data without a marker would be missed by that hour's compaction. It is written on a redelivery too (the
    object then answers 412), since the delivery that stored the object may have failed before its marker;
    a marker that cannot be written fails the object's records, so SQS brings them back for it."""

    def store(group: ObjectGroup) -> ObjectResult:
        try:
            body, content_type = group.content()
            outcome = put_create_only(s3, bucket, group.key, body, content_type=content_type)
            finished_at = datetime.now(tz=UTC)
            if needs_late_marker(group.partition, finished_at, late_after_seconds):
                put_create_only(s3, bucket, late_marker_key(group.partition, group.key), b"", LATE_MARKER_CONTENT_TYPE)
        except Exception as exc:  # noqa: BLE001 - any failure means: retry every record of this object
            return ObjectResult(group, None, exc)
        return ObjectResult(group, outcome, finished_at=finished_at)

    return executor.map(store, plan.groups)


@dataclass(frozen=True)
class BatchReport:
    """Per-record outcomes for Powertools' batch processor: ``outcome_for`` returns the stored
    outcome, or raises the reason a record must be retried."""

    plan: BatchPlan
    results: list[ObjectResult]
    _by_message: dict[str, list[ObjectResult]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_message: dict[str, list[ObjectResult]] = {}
        for result in self.results:
            for record in result.group.records:
                results = by_message.setdefault(record.message_id, [])
                if all(known is not result for known in results):  # a packed record's envelopes can share one
                    results.append(result)
        object.__setattr__(self, "_by_message", by_message)

    def outcome_for(self, message_id: str) -> str:
        """A record succeeds only when every object holding one of its envelopes was stored (or was
        already stored); else it raises the reason, and SQS redelivers the whole record."""
        if message_id in self.plan.rejected:
            raise self.plan.rejected[message_id]
        results = self._by_message.get(message_id)
        if not results:  # cannot happen: every record is either rejected or in a group
            raise ObjectNotStoredError(f"message {message_id} was not part of any object")
        failed = [result for result in results if result.outcome is None]
        if failed:
            first = failed[0]
            if len(results) == 1 and first.group.payload_object and first.error is not None:
                raise first.error  # the record's own object: its own error, as a single upload reports it
            more = f" (and {len(failed) - 1} more of this record's objects)" if len(failed) > 1 else ""
            raise ObjectNotStoredError(
                f"object {first.group.key} ({len(first.group.payload_ids)} payloads) was not stored{more}: "
                f"{first.error!r}"
            ) from first.error
        stored = any(result.outcome is StoreOutcome.STORED for result in results)
        return (StoreOutcome.STORED if stored else StoreOutcome.ALREADY_STORED).value

    def record_handler(self) -> Callable[[Any], str]:
        """A Powertools record handler (it receives an SQSRecord) backed by these outcomes."""
        return lambda record: self.outcome_for(record.message_id)


def end_to_end_ms(group: ObjectGroup, now: datetime | None = None) -> float:
    """Latency of the oldest payload in the object: receivedAt -> stored (``now``, else the current time)."""
    return ((now or datetime.now(tz=UTC)) - group.oldest_received_at).total_seconds() * 1000
