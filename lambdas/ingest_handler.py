"""API Gateway (REST, proxy) -> ingest Lambda. Thin: routing and responses only."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from pipeline.aws_clients import sqs_client
from pipeline.envelope import is_safe_id
from pipeline.ingest import EnqueueFailed, IngestRequest, accept_payloads
from pipeline.observability import count_rejected_request, logger, metrics, tracer
from pipeline.problems import PROBLEM_CONTENT_TYPE, Problem
from pipeline.settings import ingest_settings

PAYLOADS_PATH = "/v1/payloads"
app = APIGatewayRestResolver()


def _request_id() -> str:
    # API Gateway's id is a UUID. Anything else (a hand-made event) gets a fresh one, because the id
    # becomes part of S3 object keys.
    request_id = app.current_event.request_context.request_id or ""
    return request_id if is_safe_id(request_id) else str(uuid.uuid4())


def _api_key_id() -> str:
    # The client identity for Idempotency-Key ids; absent when the stage requires no API key.
    return app.current_event.request_context.identity.api_key_id or ""


def _problem_response(problem: Problem) -> Response:
    request_id = app.current_event.request_context.request_id
    body = problem.body()
    if request_id:
        body["requestId"] = request_id
    return Response(
        status_code=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=json.dumps(body, separators=(",", ":")),
        headers=problem.headers,
    )


# No @tracer.capture_method here: this route is all the handler does, so its subsegment would
# duplicate "## lambda_handler" and cost a subsegment per request (P1 in docs/PERFORMANCE.md).
# The SQS call still gets its own subsegment from the patched botocore.
@app.post(PAYLOADS_PATH)
def post_payloads() -> Response:
    event = app.current_event
    request_id = _request_id()
    # API Gateway's receive time (ms) when present, so receivedAt is the edge's clock, not ours.
    epoch_ms = event.get("requestContext", {}).get("requestTimeEpoch")
    received_at_ms = epoch_ms if isinstance(epoch_ms, int) and epoch_ms > 0 else int(time.time() * 1000)
    accepted = accept_payloads(
        IngestRequest(event.body, event.is_base64_encoded, event.headers, request_id, received_at_ms, _api_key_id()),
        ingest_settings(),
        sqs_client,
    )
    report, request_id = accepted.report, accepted.request_id
    logger.set_correlation_id(request_id)  # derived with an Idempotency-Key: logs follow the 202's id
    metrics.add_metric(name="RequestsAccepted", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="PayloadsAccepted", unit=MetricUnit.Count, value=report.sent)
    if report.retried_entries:
        metrics.add_metric(name="EnqueueRetries", unit=MetricUnit.Count, value=report.retried_entries)
    logger.info("request accepted", extra={"payloads": report.sent, "retriedEntries": report.retried_entries})
    return Response(
        status_code=202,
        content_type="application/json",
        body=json.dumps({"requestId": request_id, "accepted": report.sent}),
    )


# Every other method API Gateway knows is routed here too (infra/api_construct.py PAYLOAD_METHODS), so
# AWS and make run both answer 405. APIGatewayRestResolver also matches /v1/payloads/ (trailing slash).
@app.route(PAYLOADS_PATH, method=["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def method_not_allowed() -> Response:
    problem = Problem(405, "method-not-allowed", "Method Not Allowed",
                      f"{app.current_event.http_method} is not allowed on {PAYLOADS_PATH}; use POST",
                      headers={"Allow": "POST"})
    response = reject(problem)
    if app.current_event.http_method == "HEAD":
        response.body = ""  # a HEAD answer has a GET's status and headers, never a body (RFC 9110, 9.3.2)
    return response


@app.not_found
def not_found(_: Exception) -> Response:
    return reject(Problem(404, "not-found", "Not Found", f"no resource at {app.current_event.path}; "
                          f"payloads go to POST {PAYLOADS_PATH}"))


@app.exception_handler(Problem)
def reject(problem: Problem) -> Response:
    count_rejected_request(problem.status)
    # The detail can quote client data (a key name), so only the status and reason are logged.
    logger.info("request rejected", extra={"status": problem.status, "reason": problem.slug})
    return _problem_response(problem)


@app.exception_handler(EnqueueFailed)
def enqueue_failed(error: EnqueueFailed) -> Response:
    metrics.add_metric(name="EnqueueFailures", unit=MetricUnit.Count, value=error.report.failed_entries)
    logger.error("enqueue failed", extra={"failedEntries": error.report.failed_entries, "error": error.report.last_error})
    return _problem_response(error.problem)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
