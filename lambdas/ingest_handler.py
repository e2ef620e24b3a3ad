"""API Gateway (REST or HTTP API, Lambda proxy) -> ingest Lambda. Thin: routing and responses only.

The function serves one resource, so the route is matched here instead of by Powertools'
APIGatewayRestResolver: importing `aws_lambda_powertools.event_handler` loads every resolver the package
ships (AppSync with asyncio, Bedrock, VPC Lattice...), ~80 ms CPU of each cold start here (P2, docs/PERFORMANCE.md).
The answers are the ones that resolver gave: its REST rule (the path plus any trailing slashes, the
method upper-cased) and Powertools' own multi-value header serializer. Both payload formats (REST's 1.0,
the HTTP API's 2.0) are read by pipeline/http_event.py. With DEVICE_AUTH=on every method on the payloads
path needs a device key first (pipeline/device_auth.py, imported only then), as the REST API's key check
comes before the method's answer.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pipeline.aws_clients import sqs_client
from pipeline.contract import MAX_REQUEST_ID_CHARS, PAYLOADS_PATH, PROBLEM_CONTENT_TYPE, Metric, payload_id_prefix
from pipeline.envelope import is_safe_id
from pipeline.http_event import HttpRequest, Response, proxy_response, read_event
from pipeline.ingest import EnqueueFailed, IngestRequest, accept_payloads
from pipeline.observability import count_rejected_request, counts, info_line, log_request_context, logger, tracer
from pipeline.problems import Problem
from pipeline.settings import ingest_settings

if TYPE_CHECKING:  # annotations only: no import added to the cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from pipeline.device_auth import SecretKeyring

# APIGatewayRestResolver's rule for this path: trailing slashes are ignored.
_PAYLOADS_ROUTE = re.compile(f"^{re.escape(PAYLOADS_PATH)}/*$")
# Every other method API Gateway routes here gets a 405; an unknown method (TRACE...) a 404, as before.
_NOT_ALLOWED_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


# A client may choose API Gateway's request id: "$context.requestId: An ID for the request. Clients can override
# this request ID" (API Gateway Developer Guide, "Variables for data transformations for API Gateway"), with an
# X-Amzn-RequestId header. Payload ids derive from the request id, so two requests naming one id (a client that
# copies a response header into its next request, or one that targets another's id) would share object keys, and
# the later request's payloads would be skipped as already stored after its 202. A request that names its own id
# gets a fresh one for its payloads instead; the access log keeps the id it sent (and, on REST, the
# extendedRequestId no client can set: infra/access_logs.py).
CLIENT_REQUEST_ID_HEADER = "x-amzn-requestid"


def _request_ids(request: HttpRequest) -> tuple[str, str]:
    """(the request's id, what its payload ids start with). The id is API Gateway's own, as it is in the client's
    response header (REST ``x-amzn-RequestId``, HTTP API ``apigw-requestid``), its access log line, every
    problem+json and the logs' ``correlation_id``: one id per request wherever the client and the logs see it.
    The payload ids become S3 object keys. REST's id is a UUID, safe as it is. The HTTP API's is base64 text
    ("Ju2fPgpsiYcEMlw="): the payload ids take its URL-safe spelling (contract.payload_id_prefix). Anything else
    (a hand-made event, an id the client chose) gets a fresh UUID for both."""
    gateway_id = request.request_id
    if CLIENT_REQUEST_ID_HEADER not in request.headers and len(gateway_id) <= MAX_REQUEST_ID_CHARS:
        if is_safe_id(gateway_id):
            return gateway_id, gateway_id
        url_safe = payload_id_prefix(gateway_id)
        if is_safe_id(url_safe):
            return gateway_id, url_safe
    fresh = str(uuid.uuid4())
    return fresh, fresh


def _problem_response(request: HttpRequest, problem: Problem) -> Response:
    body = problem.body()
    if request.request_id:
        body["requestId"] = request.request_id
    return proxy_response(
        request, problem.status, PROBLEM_CONTENT_TYPE, json.dumps(body, separators=(",", ":")), problem.headers
    )


def route(event: dict[str, Any]) -> Response:
    """POST /v1/payloads accepts; another method there is a 405; anything else a 404."""
    request = read_event(event)
    try:
        if _PAYLOADS_ROUTE.match(request.path):
            device_id = authenticated_device(request)
            if request.method == "POST":
                return post_payloads(request, device_id)
            if request.method in _NOT_ALLOWED_METHODS:
                return method_not_allowed(request)
        return not_found(request)
    except Problem as problem:
        return reject(request, problem)
    except EnqueueFailed as error:
        return enqueue_failed(request, error)


def authenticated_device(request: HttpRequest) -> str | None:
    """The device the request's key proves (DEVICE_AUTH=on), None when device auth is off; Problem 401/403/503."""
    settings = ingest_settings()
    if settings.DEVICE_AUTH != "on":
        return None
    from pipeline.device_auth import DeviceKeysUnavailable, authenticate

    keyring = _keyring(
        settings.DEVICE_KEYS_SECRET, settings.DEVICE_REVOCATION_TTL_SECONDS, settings.DEVICE_KEYRING_STALE_SECONDS
    )
    try:
        return authenticate(request.authorization, keyring, settings.RETRY_AFTER_SECONDS)
    except DeviceKeysUnavailable as error:
        # Not logged per request: the keyring logs each failed read at WARNING (at most one a second), and the
        # rejection is counted with reason keyring-unavailable.
        raise error.problem from error


@lru_cache(maxsize=1)
def _keyring(secret_name: str, ttl_seconds: int, stale_seconds: int) -> SecretKeyring:
    from pipeline.device_auth import SecretKeyring
    from pipeline.observability import KeyringTelemetry

    return SecretKeyring(secret_name, ttl_seconds, stale_seconds, signals=KeyringTelemetry())


# No @tracer.capture_method here: this route is all the handler does, so its subsegment would
# duplicate "## lambda_handler" and cost a subsegment per request (P1 in docs/PERFORMANCE.md).
# The SQS call still gets its own subsegment from the patched botocore.
def post_payloads(request: HttpRequest, device_id: str | None) -> Response:
    # API Gateway's receive time (ms) when present, so receivedAt is the edge's clock, not ours.
    received_at_ms = request.received_at_ms or int(time.time() * 1000)
    request_id, payload_id_prefix = _request_ids(request)
    accepted = accept_payloads(
        IngestRequest(
            request.body,
            request.is_base64_encoded,
            request.headers,
            request_id,
            received_at_ms,
            request.api_key_id,
            device_id,
            payload_id_prefix,
        ),
        ingest_settings(),
        sqs_client,
    )
    report, request_id = accepted.report, accepted.request_id
    extra: dict[str, Any] = {"payloads": report.sent, "retriedEntries": report.retried_entries}
    if request_id != request.request_id:
        # Derived from an Idempotency-Key (or a fresh UUID): the 202, the payloads and the logs from here on carry
        # it; the accepted line also names the gateway's id (the response header's and the access log's).
        logger.set_correlation_id(request_id)
        extra["gatewayRequestId"] = request.request_id
    counts.add(Metric.REQUESTS_ACCEPTED, 1)
    counts.add(Metric.PAYLOADS_ACCEPTED, report.sent)
    if report.retried_entries:
        counts.add(Metric.ENQUEUE_RETRIES, report.retried_entries)
    if device_id is not None:
        extra["deviceId"] = device_id  # the id the key proved; the key itself is never logged
    info_line("request accepted", extra)  # logger.info's line, at less cost (pipeline/observability.py)
    return proxy_response(
        request, 202, "application/json", json.dumps({"requestId": request_id, "accepted": report.sent})
    )


# Every other method API Gateway knows is routed here too (infra/api_construct.py PAYLOAD_METHODS; the HTTP
# API's ANY route), so AWS and make run both answer 405.
def method_not_allowed(request: HttpRequest) -> Response:
    problem = Problem(
        405,
        "method-not-allowed",
        "Method Not Allowed",
        f"{request.method} is not allowed on {PAYLOADS_PATH}; use POST",
        headers={"Allow": "POST"},
    )
    response = reject(request, problem)
    if request.method == "HEAD":
        response["body"] = ""  # a HEAD answer has a GET's status and headers, never a body (RFC 9110, 9.3.2)
    return response


def not_found(request: HttpRequest) -> Response:
    return reject(
        request,
        Problem(404, "not-found", "Not Found", f"no resource at {request.path}; payloads go to POST {PAYLOADS_PATH}"),
    )


def reject(request: HttpRequest, problem: Problem) -> Response:
    count_rejected_request(problem.status, problem.slug)
    # The detail can quote client data (a key name), so only the status and reason are logged.
    logger.info("request rejected", extra={"status": problem.status, "reason": problem.slug})
    return _problem_response(request, problem)


def enqueue_failed(request: HttpRequest, error: EnqueueFailed) -> Response:
    counts.add(Metric.ENQUEUE_FAILURES, error.report.failed_entries)
    logger.error(
        "enqueue failed", extra={"failedEntries": error.report.failed_entries, "error": error.report.last_error}
    )
    return _problem_response(request, error.problem)


# requestContext.requestId in both payload formats: the correlation id until the 202's id is known.
@log_request_context
@tracer.capture_lambda_handler
@counts.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return route(event)
