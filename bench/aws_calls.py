"""P4/P5: AWS calls per payload, counted through botocore events on the real handlers.

P4: SQS calls per payload at the ingest. Optimal is ceil(n/10)/n for small payloads (10 entries per
SendMessageBatch); for large ones the 1 MiB per-call limit decides: at most floor(1 MiB / entry
size) equal entries fit in one call. The optimum is computed here from the entry sizes the handler
actually sent, independently of the handler's packing code.
P5: S3 PutObject calls per payload at the consumer, for both OBJECT_MODEs.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

from bench.common import figure, prepare_environment
from infra.config import MAX_BODY_BYTES_CEILING, PipelineConfig
from pipeline.contract import (
    API_KEY_HEADER,
    MAX_PAYLOAD_BYTES_CEILING,
    PAYLOADS_PATH,
    SQS_MAX_BATCH_BYTES,
    SQS_MAX_BATCH_ENTRIES,
)

KIB = 1024
# (payloads, bytes each): small collections, then payloads big enough that bytes, not the 10-entry
# cap, bound a SendMessageBatch.
CASES = [
    (1, KIB),
    (9, KIB),
    (10, KIB),
    (11, KIB),
    (100, KIB),
    (500, KIB),
    (10, 300 * KIB),
    (4, 1000 * KIB),
    (6, 700 * KIB),
]
# Large cases need a bigger request than the default MAX_BODY_BYTES (1 MiB): the largest a deployment
# accepts (infra/config.py, pipeline/contract.py). Every case fits it.
BIG_LIMITS = PipelineConfig(MAX_BODY_BYTES=MAX_BODY_BYTES_CEILING, MAX_PAYLOAD_BYTES=MAX_PAYLOAD_BYTES_CEILING)
CONSUMER_BATCH = 100


def _optimal_calls(entry_sizes: list[int]) -> int:
    per_call = min(SQS_MAX_BATCH_ENTRIES, SQS_MAX_BATCH_BYTES // max(entry_sizes))
    return math.ceil(len(entry_sizes) / per_call)


def _ingest_case(payloads: int, payload_bytes: int) -> dict[str, Any]:
    import ingest_handler
    from bench.fake_aws import FakeAws
    from bench.ingest_overhead import collection_body
    from local_pipeline.events import LambdaContext, api_gateway_event
    from pipeline import aws_clients

    aws_clients.sqs_client.cache_clear()
    fake = FakeAws(aws_clients.sqs_client())
    event = api_gateway_event(
        "POST",
        PAYLOADS_PATH,
        collection_body(payloads, payload_bytes),
        {"Content-Type": "application/json", API_KEY_HEADER: "bench"},
    )
    response = ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest"))
    if response["statusCode"] != 202:
        raise RuntimeError(f"ingest answered {response['statusCode']}: {response['body']}")
    calls = sum(fake.calls.values())
    optimal = _optimal_calls(fake.entry_sizes)
    return {
        "payloads": payloads,
        "payload_bytes": payload_bytes,
        "sqs_calls": calls,
        "optimal_calls": optimal,
        "calls_per_payload": round(calls / payloads, 4),
        "optimal_per_payload": round(optimal / payloads, 4),
        "billed_64k_requests_per_payload": round(fake.billed_sqs_requests() / payloads, 4),
    }


def run_sqs() -> dict[str, Any]:
    prepare_environment()
    from pipeline import settings

    results = []
    for payloads, payload_bytes in CASES:
        # the default limits, or the largest a deployment allows
        prepare_environment(BIG_LIMITS if payload_bytes * payloads > 512 * KIB else None)
        settings.ingest_settings.cache_clear()
        results.append(_ingest_case(payloads, payload_bytes))
    prepare_environment()  # back to the default limits
    settings.ingest_settings.cache_clear()
    worst = max(r["sqs_calls"] / r["optimal_calls"] for r in results)
    return figure(
        "P4",
        "ingest: SQS calls per payload vs optimal (10 per call, 1 MiB per call)",
        worst,
        "x optimal (worst case)",
        "= 1.0 (optimal in every case)",
        worst == 1.0,
        cases=results,
    )


def _consumer_puts(object_mode: str) -> dict[str, Any]:
    import consumer_handler
    from bench.fake_aws import FakeAws, sqs_event_of
    from local_pipeline.events import LambdaContext
    from pipeline import aws_clients, settings

    prepare_environment(PipelineConfig(OBJECT_MODE=object_mode))
    settings.consumer_settings.cache_clear()
    aws_clients.s3_client.cache_clear()
    fake = FakeAws(aws_clients.s3_client(settings.consumer_settings().UPLOAD_CONCURRENCY))
    response = consumer_handler.lambda_handler(sqs_event_of(CONSUMER_BATCH), LambdaContext(function_name="consumer"))
    if response.get("batchItemFailures"):
        raise RuntimeError(f"consumer reported failures in {object_mode} mode")
    return {
        "puts": fake.calls["PutObject"],
        "payloads": CONSUMER_BATCH,
        "puts_per_payload": fake.calls["PutObject"] / CONSUMER_BATCH,
    }


def run_s3() -> list[dict[str, Any]]:
    prepare_environment()
    from pipeline import settings

    payload_mode = _consumer_puts("payload")
    batch_mode = _consumer_puts("batch")
    prepare_environment()
    settings.consumer_settings.cache_clear()
    return [
        figure(
            "P5",
            "consumer: S3 PUTs per payload, OBJECT_MODE=payload",
            payload_mode["puts_per_payload"],
            "PUTs/payload",
            "= 1.0",
            payload_mode["puts_per_payload"] == 1.0,
            **payload_mode,
        ),
        figure(
            "P5b",
            f"consumer: S3 PUTs per payload, OBJECT_MODE=batch ({CONSUMER_BATCH} records, one hour)",
            batch_mode["puts_per_payload"],
            "PUTs/payload",
            f"= 1/{CONSUMER_BATCH}",
            batch_mode["puts"] == 1,
            **batch_mode,
        ),
    ]


def _stdout_of(action: Any) -> tuple[int, int]:
    """Bytes and lines a handler writes to stdout (its CloudWatch Logs: log lines and EMF blobs)."""
    import sys
    import tempfile

    with tempfile.TemporaryFile() as capture:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(capture.fileno(), 1)
        try:
            action()
            sys.stdout.flush()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        written = capture.read()
    return len(written), written.count(b"\n")


SCALE_WINDOW_REQUESTS = 100  # requests one ingest container serves in one METRICS_FLUSH_SECONDS window here


def _ingest_log_bytes_at_scale(request: Any) -> dict[str, Any]:
    """L1 with the scale profile's telemetry (LOG_LEVEL=WARNING, METRICS_FLUSH_SECONDS > 0): what one ingest
    container writes per flush window of accepted requests, i.e. one EMF blob of summed counts and no log
    line. Set in this process the way the function's cold start would read LOG_LEVEL and the interval."""
    import logging

    from pipeline.observability import counts, logger

    level = logging.getLogger(logger.name)
    saved_level, saved_interval, saved_clock = level.level, counts.flush_seconds, counts._clock
    now = [0.0]
    level.setLevel(logging.WARNING)
    counts.flush_seconds, counts._clock = 60, lambda: now[0]

    def one_window() -> None:
        for _ in range(SCALE_WINDOW_REQUESTS):
            request()
        now[0] += 60
        counts.flush_if_due()

    try:
        window_bytes, window_lines = _stdout_of(one_window)
    finally:
        level.setLevel(saved_level)
        counts.flush_seconds, counts._clock = saved_interval, saved_clock
    # Its own name: tools.models.cost reads the default profile's ingest figure from the "L1" lines.
    return figure(
        "L1s",
        f"ingest at LOG_LEVEL=WARNING, METRICS_FLUSH_SECONDS > 0: stdout bytes per flush window "
        f"({SCALE_WINDOW_REQUESTS} accepted requests of 10 x 1 KiB)",
        window_bytes,
        "bytes/window",
        "input to tools.models.cost",
        True,
        lines=window_lines,
        requests=SCALE_WINDOW_REQUESTS,
    )


def run_log_bytes() -> list[dict[str, Any]]:
    """L1: what each invocation writes to CloudWatch Logs (input to tools.models.cost, not a goal)."""
    prepare_environment()
    import consumer_handler
    import ingest_handler
    from bench.fake_aws import FakeAws, sqs_event_of
    from bench.ingest_overhead import collection_body
    from local_pipeline.events import LambdaContext, api_gateway_event
    from pipeline import aws_clients, settings

    aws_clients.sqs_client.cache_clear()
    FakeAws(aws_clients.sqs_client())
    event = api_gateway_event(
        "POST", PAYLOADS_PATH, collection_body(10, KIB), {"Content-Type": "application/json", API_KEY_HEADER: "bench"}
    )
    ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest"))  # not the cold one
    ingest_bytes, ingest_lines = _stdout_of(
        lambda: ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest"))
    )
    results = [
        figure(
            "L1",
            "ingest: stdout bytes per request (10 x 1 KiB)",
            ingest_bytes,
            "bytes/invocation",
            "input to tools.models.cost",
            True,
            lines=ingest_lines,
        ),
        _ingest_log_bytes_at_scale(lambda: ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest"))),
    ]
    for mode in ("payload", "batch"):
        prepare_environment(PipelineConfig(OBJECT_MODE=mode))
        settings.consumer_settings.cache_clear()
        aws_clients.s3_client.cache_clear()
        FakeAws(aws_clients.s3_client(settings.consumer_settings().UPLOAD_CONCURRENCY))
        batch = sqs_event_of(CONSUMER_BATCH)
        # partial, not a lambda: the call binds this iteration's batch (ruff B023).
        consumer_bytes, consumer_lines = _stdout_of(
            functools.partial(consumer_handler.lambda_handler, batch, LambdaContext(function_name="consumer"))
        )
        results.append(
            figure(
                "L1",
                f"consumer: stdout bytes per batch of {CONSUMER_BATCH}, OBJECT_MODE={mode}",
                consumer_bytes,
                "bytes/invocation",
                "input to tools.models.cost",
                True,
                lines=consumer_lines,
                object_mode=mode,
            )
        )
    prepare_environment()
    settings.consumer_settings.cache_clear()
    return results
