"""Ingest logic: validate the whole request, then enqueue every payload, or refuse it all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.backpressure import refuse_if_backlogged
from pipeline.collection import Limits, decode_body, parse_collection
from pipeline.enqueue import EnqueueReport, enqueue_messages
from pipeline.envelope import build_messages
from pipeline.idempotency import first_attempt_from, idempotency_key_from, idempotent_request_id, partition_hour_text
from pipeline.problems import service_unavailable
from pipeline.settings import IngestSettings


@dataclass(frozen=True)
class IngestRequest:
    body: str | None
    is_base64_encoded: bool
    headers: Mapping[str, str]
    request_id: str
    received_at_ms: int
    # API Gateway's API key id (requestContext.identity.apiKeyId); empty when the stage needs no key.
    api_key_id: str = ""
    # The device its key proved (DEVICE_AUTH=on, pipeline/device_auth.py); None when device auth is off.
    device_id: str | None = None
    # What payload ids start with when request_id is not a safe object name (an HTTP API's base64 id: its
    # URL-safe spelling, ingest_handler._request_ids); "": request_id itself.
    payload_id_prefix: str = ""

    @property
    def client_identity(self) -> str:
        """Who sent it, for Idempotency-Key ids: the authenticated device when there is one, else the API key id
        (prefixed, so a device id can never collide with an API key id)."""
        return f"device:{self.device_id}" if self.device_id is not None else self.api_key_id


@dataclass(frozen=True)
class AcceptedRequest:
    """What the 202 says: ``request_id`` is derived from the Idempotency-Key when one was sent."""

    request_id: str
    report: EnqueueReport


class EnqueueFailed(Exception):
    """SQS did not accept every payload; the client must retry the whole request (503)."""

    def __init__(self, report: EnqueueReport, retry_after_seconds: int) -> None:
        super().__init__(
            f"{report.failed_payloads} payload(s) in {report.failed_entries} message(s) not accepted by SQS: "
            f"{report.last_error}"
        )
        self.report = report
        self.problem = service_unavailable(
            "enqueue-failed",
            f"the queue did not accept {report.failed_payloads} of {report.sent + report.failed_payloads} payloads; "
            "retry the whole request",
            retry_after_seconds,
        )


def limits_from(settings: IngestSettings) -> Limits:
    return Limits(
        settings.MAX_BODY_BYTES, settings.MAX_PAYLOADS, settings.MAX_PAYLOAD_BYTES, settings.MAX_NESTING_DEPTH
    )


def accept_payloads(request: IngestRequest, settings: IngestSettings, sqs: Callable[[], Any]) -> AcceptedRequest:
    """Return once SQS has accepted every payload. Raises Problem (4xx) or EnqueueFailed (503).

    With an Idempotency-Key the request id is derived (pipeline/idempotency.py), so a retry
    enqueues the same ids, into the hour partition of the first attempt it states. ``sqs`` returns the
    client; it is only called once the request is valid.
    """
    limits = limits_from(settings)
    key = idempotency_key_from(request.headers)
    raw = decode_body(request.body, request.is_base64_encoded, request.headers, limits)
    collection = parse_collection(raw, limits)
    request_id = request.request_id
    id_prefix = request.payload_id_prefix or request_id
    first_attempt_ms = None
    if key is not None:  # only a keyed request is retried as itself: only its stated first attempt is read
        first_attempt_ms = first_attempt_from(request.headers, request.received_at_ms, settings.RETRY_HORIZON_HOURS)
        partition_hour = partition_hour_text(request.received_at_ms if first_attempt_ms is None else first_attempt_ms)
        request_id = id_prefix = idempotent_request_id(
            request.client_identity, collection.token, key, raw, partition_hour
        )
    messages = build_messages(
        collection,
        request_id,
        request.received_at_ms,
        settings.MESSAGE_TARGET_BYTES,
        device_id=request.device_id,
        first_attempt_ms=first_attempt_ms,
        id_prefix=id_prefix,
    )
    # After validation, so a bad request still gets its 4xx; before enqueueing anything.
    refuse_if_backlogged(
        sqs, settings.QUEUE_URL, settings.MAX_QUEUE, settings.BACKLOG_CHECK_SECONDS, settings.RETRY_AFTER_SECONDS
    )
    report = enqueue_messages(sqs(), settings.QUEUE_URL, messages, settings.ENQUEUE_MAX_ATTEMPTS)
    if report.failed_entries:
        raise EnqueueFailed(report, settings.RETRY_AFTER_SECONDS)
    return AcceptedRequest(request_id, report)
