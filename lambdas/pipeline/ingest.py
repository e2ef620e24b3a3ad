"""Ingest logic: validate the whole request, then enqueue every payload, or refuse it all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.backpressure import refuse_if_backlogged
from pipeline.collection import Limits, decode_body, parse_collection
from pipeline.enqueue import EnqueueReport, enqueue_messages
from pipeline.envelope import build_messages
from pipeline.problems import service_unavailable
from pipeline.settings import IngestSettings


@dataclass(frozen=True)
class IngestRequest:
    body: str | None
    is_base64_encoded: bool
    headers: Mapping[str, str]
    request_id: str
    received_at_ms: int


class EnqueueFailed(Exception):
    """SQS did not accept every payload; the client must retry the whole request (503)."""

    def __init__(self, report: EnqueueReport, retry_after_seconds: int) -> None:
        super().__init__(f"{report.failed_entries} payload(s) not accepted by SQS: {report.last_error}")
        self.report = report
        self.problem = service_unavailable(
            "enqueue-failed",
            f"the queue did not accept {report.failed_entries} of {report.sent + report.failed_entries} payloads; "
            "retry the whole request",
            retry_after_seconds,
        )


def limits_from(settings: IngestSettings) -> Limits:
    return Limits(settings.max_body_bytes, settings.max_payloads, settings.max_payload_bytes, settings.max_nesting_depth)


def accept_payloads(request: IngestRequest, settings: IngestSettings, sqs: Callable[[], Any]) -> EnqueueReport:
    """Return once SQS has accepted every payload. Raises Problem (4xx) or EnqueueFailed (503).

    ``sqs`` returns the client; it is only called once the request is valid.
    """
    limits = limits_from(settings)
    raw = decode_body(request.body, request.is_base64_encoded, request.headers, limits)
    collection = parse_collection(raw, limits)
    messages = build_messages(collection, request.request_id, request.received_at_ms)
    # After validation, so a bad request still gets its 4xx; before enqueueing anything.
    refuse_if_backlogged(sqs, settings.queue_url, settings.max_queue, settings.backlog_check_seconds,
                         settings.retry_after_seconds)
    report = enqueue_messages(sqs(), settings.queue_url, messages, settings.enqueue_max_attempts)
    if report.failed_entries:
        raise EnqueueFailed(report, settings.retry_after_seconds)
    return report
