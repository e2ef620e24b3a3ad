"""Consumer logic: one SQS record -> one create-only S3 object."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.contract import payload_object_key
from pipeline.envelope import parse_envelope
from pipeline.settings import ConsumerSettings
from pipeline.storage import StoreOutcome, put_create_only


@dataclass(frozen=True)
class StoreResult:
    payload_id: str
    request_id: str
    key: str
    outcome: StoreOutcome
    end_to_end_ms: float


def store_message(body: str, settings: ConsumerSettings, s3: Any) -> StoreResult:
    """Store the envelope verbatim at its deterministic key. Raises on anything SQS should retry.

    A body that is not our envelope raises EnvelopeError: it is retried and then dead-lettered,
    never dropped.
    """
    envelope = parse_envelope(body)
    key = payload_object_key(settings.OBJECT_PREFIX, envelope.payload_id, envelope.received_at)
    outcome = put_create_only(s3, settings.BUCKET_NAME, key, body.encode("utf-8"))
    latency_ms = (datetime.now(tz=UTC) - envelope.received_at).total_seconds() * 1000
    return StoreResult(envelope.payload_id, envelope.request_id, key, outcome, latency_ms)
