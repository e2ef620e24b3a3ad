"""API Gateway (REST, proxy) -> ingest Lambda. Thin: routing and responses only.

The function serves one resource, so the route is matched here instead of by Powertools'
APIGatewayRestResolver: importing `aws_lambda_powertools.event_handler` loads every resolver the package
ships (AppSync with asyncio, Bedrock, VPC Lattice...), ~80 ms CPU of each cold start here (P2, docs/PERFORMANCE.md).
The answers are the ones that resolver gave: its REST rule (the path plus any trailing slashes, the
method upper-cased) and Powertools' own multi-value header serializer. The event is read as the dict
Lambda passes: Powertools' event classes live in a package whose import loads all of its ~30 event
types (~25 ms), for the five fields read here.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.shared.headers_serializer import MultiValueHeadersSerializer

from pipeline.aws_clients import sqs_client
from pipeline.contract import PAYLOADS_PATH, PROBLEM_CONTENT_TYPE, Metric
from pipeline.envelope import is_safe_id
from pipeline.ingest import EnqueueFailed, IngestRequest, accept_payloads
from pipeline.observability import count_rejected_request, counts, log_request_context, logger, tracer
from pipeline.problems import Problem
from pipeline.settings import ingest_settings

if TYPE_CHECKING:  # annotations only: no import added to the cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

# APIGatewayRestResolver's rule for this path: trailing slashes are ignored.
_PAYLOADS_ROUTE = re.compile(f"^{re.escape(PAYLOADS_PATH)}/*$")
# Every other method API Gateway routes here gets a 405; an unknown method (TRACE...) a 404, as before.
_NOT_ALLOWED_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_HEADERS = MultiValueHeadersSerializer()  # a REST proxy answer carries multiValueHeaders

Event = dict[str, Any]  # API Gateway REST proxy event
Response = dict[str, Any]


def _response(status: int, content_type: str, body: str, headers: dict[str, str] | None = None) -> Response:
    """The Lambda proxy answer, shaped as Powertools' resolver shaped it for a REST API."""
    return {
        "statusCode": status,
        "body": body,
        "isBase64Encoded": False,
        **_HEADERS.serialize(headers={**(headers or {}), "Content-Type": content_type}, cookies=[]),
    }


def _headers(event: Event) -> dict[str, str]:
    """Request headers by lower-case name (HTTP names are case-insensitive; API Gateway keeps the client's)."""
    return {name.lower(): value for name, value in (event.get("headers") or {}).items()}


def _request_context(event: Event) -> dict[str, Any]:
    return event.get("requestContext") or {}


def _request_id(event: Event) -> str:
    # API Gateway's id is a UUID. Anything else (a hand-made event) gets a fresh one, because the id
    # becomes part of S3 object keys.
    request_id = _request_context(event).get("requestId") or ""
    return request_id if is_safe_id(request_id) else str(uuid.uuid4())


def _api_key_id(event: Event) -> str:
    # The client identity for Idempotency-Key ids; absent when the stage requires no API key.
    return (_request_context(event).get("identity") or {}).get("apiKeyId") or ""


def _problem_response(event: Event, problem: Problem) -> Response:
    request_id = _request_context(event).get("requestId")
    body = problem.body()
    if request_id:
        body["requestId"] = request_id
    return _response(problem.status, PROBLEM_CONTENT_TYPE, json.dumps(body, separators=(",", ":")), problem.headers)


def route(event: Event) -> Response:
    """POST /v1/payloads accepts; another method there is a 405; anything else a 404."""
    try:
        if _PAYLOADS_ROUTE.match(event["path"]):
            method = event["httpMethod"].upper()
            if method == "POST":
                return post_payloads(event)
            if method in _NOT_ALLOWED_METHODS:
                return method_not_allowed(event)
        return not_found(event)
    except Problem as problem:
        return reject(event, problem)
    except EnqueueFailed as error:
        return enqueue_failed(event, error)


# No @tracer.capture_method here: this route is all the handler does, so its subsegment would
# duplicate "## lambda_handler" and cost a subsegment per request (P1 in docs/PERFORMANCE.md).
# The SQS call still gets its own subsegment from the patched botocore.
def post_payloads(event: Event) -> Response:
    request_id = _request_id(event)
    # API Gateway's receive time (ms) when present, so receivedAt is the edge's clock, not ours.
    epoch_ms = _request_context(event).get("requestTimeEpoch")
    received_at_ms = epoch_ms if isinstance(epoch_ms, int) and epoch_ms > 0 else int(time.time() * 1000)
    accepted = accept_payloads(
        IngestRequest(
            event.get("body"),
            bool(event.get("isBase64Encoded")),
            _headers(event),
            request_id,
            received_at_ms,
            _api_key_id(event),
        ),
        ingest_settings(),
        sqs_client,
    )
    report, request_id = accepted.report, accepted.request_id
    logger.set_correlation_id(request_id)  # derived with an Idempotency-Key: logs follow the 202's id
    counts.add(Metric.REQUESTS_ACCEPTED, 1)
    counts.add(Metric.PAYLOADS_ACCEPTED, report.sent)
    if report.retried_entries:
        counts.add(Metric.ENQUEUE_RETRIES, report.retried_entries)
    logger.info("request accepted", extra={"payloads": report.sent, "retriedEntries": report.retried_entries})
    return _response(202, "application/json", json.dumps({"requestId": request_id, "accepted": report.sent}))


# Every other method API Gateway knows is routed here too (infra/api_construct.py PAYLOAD_METHODS), so
# AWS and make run both answer 405.
def method_not_allowed(event: Event) -> Response:
    problem = Problem(
        405,
        "method-not-allowed",
        "Method Not Allowed",
        f"{event['httpMethod']} is not allowed on {PAYLOADS_PATH}; use POST",
        headers={"Allow": "POST"},
    )
    response = reject(event, problem)
    if event["httpMethod"].upper() == "HEAD":
        response["body"] = ""  # a HEAD answer has a GET's status and headers, never a body (RFC 9110, 9.3.2)
    return response


def not_found(event: Event) -> Response:
    return reject(
        event,
        Problem(404, "not-found", "Not Found", f"no resource at {event['path']}; payloads go to POST {PAYLOADS_PATH}"),
    )


def reject(event: Event, problem: Problem) -> Response:
    count_rejected_request(problem.status)
    # The detail can quote client data (a key name), so only the status and reason are logged.
    logger.info("request rejected", extra={"status": problem.status, "reason": problem.slug})
    return _problem_response(event, problem)


def enqueue_failed(event: Event, error: EnqueueFailed) -> Response:
    counts.add(Metric.ENQUEUE_FAILURES, error.report.failed_entries)
    logger.error(
        "enqueue failed", extra={"failedEntries": error.report.failed_entries, "error": error.report.last_error}
    )
    return _problem_response(event, error.problem)


@log_request_context
@tracer.capture_lambda_handler
@counts.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return route(event)
