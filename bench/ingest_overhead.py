"""P1: CPU cost of the real ingest handler per request vs the hand-written baseline.

Both handle the same API Gateway REST event (10 payloads of ~1 KiB) and send through the same
cached boto3 SQS client, answered in-process by botocore's Stubber: no network, no moto, so the
figure is our Python plus botocore's request building, nothing else. Timed with the process's CPU
clock (``time.process_time``), which other processes on the shared cores do not inflate.

The same run also times the parts of the real handler one by one (``breakdown_us``), so a ratio
above the goal comes with where the difference goes, and each cut made for P1 side by side with what it
replaced (``cuts_us``: Powertools' defaults vs pipeline/observability.py, and the code before each later cut
vs the code now), interleaved in the same rounds.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import QUEUE_URL, figure, interleaved, median, prepare_environment
from pipeline.contract import (
    API_KEY_HEADER,
    PAYLOADS_PATH,
    REQUEST_ID_ATTRIBUTE,
    SQS_MAX_BATCH_ENTRIES,
    SQS_MAX_MESSAGE_BYTES,
    Metric,
    format_received_at,
)

GOAL_RATIO = 1.3
PAYLOADS = 10
PAYLOAD_BYTES = 1024


def collection_body(payloads: int = PAYLOADS, payload_bytes: int = PAYLOAD_BYTES) -> bytes:
    """A collection whose payloads serialize to exactly payload_bytes of compact JSON each."""
    data = []
    for index in range(payloads):
        payload: dict[str, Any] = {"seq": index, "temp": 21.5, "tags": ["a", "b"], "pad": ""}
        filler = payload_bytes - len(json.dumps(payload, separators=(",", ":")))
        payload["pad"] = "x" * filler
        data.append(payload)
    return json.dumps({"version": "1.4.2", "token": "device-token-123", "data": data}).encode()


def _send_message_batch_response(entries: int) -> dict[str, Any]:
    return {
        "Successful": [{"Id": str(i), "MessageId": f"m-{i}", "MD5OfMessageBody": "0" * 32} for i in range(entries)],
        "Failed": [],
    }


def run(rounds: int = 31, calls_per_round: int = 40) -> dict[str, Any]:
    prepare_environment()
    from botocore.stub import Stubber

    import ingest_handler
    from bench import baseline_handler
    from local_pipeline.events import LambdaContext, api_gateway_event
    from pipeline.aws_clients import sqs_client

    sqs = sqs_client()
    event = api_gateway_event(
        "POST", PAYLOADS_PATH, collection_body(), {"Content-Type": "application/json", API_KEY_HEADER: "bench"}
    )
    context = LambdaContext(function_name="ingest")
    calls_per_request = -(-PAYLOADS // SQS_MAX_BATCH_ENTRIES)
    answer = _send_message_batch_response(min(PAYLOADS, SQS_MAX_BATCH_ENTRIES))

    def real() -> None:
        response = ingest_handler.lambda_handler(event, context)
        if response["statusCode"] != 202:
            raise RuntimeError(f"real handler answered {response['statusCode']}: {response['body']}")

    def baseline() -> None:
        response = baseline_handler.handle(event, sqs, QUEUE_URL)
        if response["statusCode"] != 202:
            raise RuntimeError(f"baseline answered {response['statusCode']}")

    with Stubber(sqs) as stubber:
        # The Stubber answers in order; queue enough answers for every call before timing.
        total_calls = (rounds * calls_per_round + 20) * 2 * calls_per_request + (rounds // 2 + 1) * calls_per_round
        for _ in range(total_calls):
            stubber.add_response("send_message_batch", answer)
        for _ in range(10):  # warm-up: first-call costs (model loading, caches) are P2's business
            real()
            baseline()
        samples = interleaved({"real": real, "baseline": baseline}, rounds, calls_per_round, clock=time.process_time)
        parts = interleaved(_parts(event, context, sqs), rounds // 2, calls_per_round, clock=time.process_time)
        baseline_parts = interleaved(_baseline_parts(event), rounds // 2, calls_per_round, clock=time.process_time)
        cuts = _cuts(event, context)
        # A call two cuts share is timed once, under the first name that holds it: logger.info is what the
        # first log-line cut gave (log_line/ours) and what info_line replaced (info_line/logger_info).
        timed_as: dict[int, str] = {}
        for name, sides in cuts.items():
            for side, run in sides.items():
                timed_as.setdefault(id(run), f"{name}/{side}")
        cut_samples = interleaved(
            {timed_as[id(run)]: run for sides in cuts.values() for run in sides.values()},
            rounds // 2,
            calls_per_round,
            clock=time.process_time,
        )

    real_s, baseline_s = median(samples["real"]), median(samples["baseline"])
    ratio = real_s / baseline_s
    return figure(
        "P1",
        "ingest handler CPU per request vs hand-written baseline (10 x 1 KiB, SQS stubbed)",
        ratio,
        "x baseline",
        f"<= {GOAL_RATIO}",
        ratio <= GOAL_RATIO,
        real_us=round(real_s * 1e6, 1),
        baseline_us=round(baseline_s * 1e6, 1),
        breakdown_us={name: round(median(values) * 1e6, 1) for name, values in parts.items()},
        baseline_breakdown_us={name: round(median(values) * 1e6, 1) for name, values in baseline_parts.items()},
        cuts_us={
            name: {side: round(median(cut_samples[timed_as[id(run)]]) * 1e6, 1) for side, run in sides.items()}
            for name, sides in cuts.items()
        },
        rounds=rounds,
        calls_per_round=calls_per_round,
        clock="process_time",
    )


def _parts(event: dict[str, Any], context: Any, sqs: Any) -> dict[str, Callable[[], None]]:
    """The real handler's steps, each on its own, with the same inputs as one request."""
    from pipeline import collection, enqueue, envelope, ingest, settings
    from pipeline.http_event import read_event
    from pipeline.observability import counts, info_line, log_request_context

    limits = ingest.limits_from(settings.ingest_settings())
    raw = collection.decode_body(event["body"], event["isBase64Encoded"], read_event(event).headers, limits)
    parsed = collection.parse_collection(raw, limits)
    request_id = event["requestContext"]["requestId"]
    messages = envelope.build_messages(parsed, request_id, 1764000000000)
    entries = [enqueue._entry(str(index), message) for index, message in enumerate(messages)]

    def count_two(_event: dict[str, Any], _context: Any) -> None:
        counts.add(Metric.REQUESTS_ACCEPTED, 1)
        counts.add(Metric.PAYLOADS_ACCEPTED, len(messages))

    metrics_add_and_flush = counts.log_metrics(count_two)  # the blob is written as the invocation ends

    return {
        # Both handlers pay this one: botocore building, signing and parsing one SendMessageBatch.
        "send_message_batch_10_entries": lambda: sqs.send_message_batch(QueueUrl=QUEUE_URL, Entries=entries),
        "validation_decode_body": lambda: collection.decode_body(
            event["body"], event["isBase64Encoded"], read_event(event).headers, limits
        ),
        "validation_parse_collection": lambda: collection.parse_collection(raw, limits),
        "envelopes_and_entries": lambda: [
            enqueue._entry(str(index), message)
            for index, message in enumerate(envelope.build_messages(parsed, request_id, 1764000000000))
        ],
        "log_line_request_accepted": lambda: info_line("request accepted", {"payloads": 10, "retriedEntries": 0}),
        "metrics_two_and_emf_flush": lambda: metrics_add_and_flush(event, context),
        "log_request_context": lambda: log_request_context(_nothing)(event, context),
    }


def _baseline_parts(event: dict[str, Any]) -> dict[str, Callable[[], None]]:
    """The baseline's own steps (bench/baseline_handler.py), the counterparts of the real handler's parts."""
    body = event["body"]
    raw = base64.b64decode(body)
    document = json.loads(raw)
    request_id = event["requestContext"]["requestId"]

    def envelopes_and_entries() -> None:
        received_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        [
            {
                "Id": str(index),
                "MessageBody": json.dumps(
                    {
                        "id": f"{request_id}-{index}",
                        "requestId": request_id,
                        "receivedAt": received_at,
                        "version": document["version"],
                        "token": document["token"],
                        "payload": payload,
                    }
                ),
                "MessageAttributes": {REQUEST_ID_ATTRIBUTE: {"DataType": "String", "StringValue": request_id}},
            }
            for index, payload in enumerate(document["data"])
        ]

    return {
        "b64decode": lambda: base64.b64decode(body),
        "json_loads": lambda: json.loads(raw),
        # The payloads' serialization is in here (json.dumps of each envelope), as it is in the real handler's
        # validation_parse_collection (each payload's compact JSON) rather than in its envelopes.
        "envelopes_and_entries": envelopes_and_entries,
    }


def _nothing(_event: dict[str, Any], _context: Any) -> None:
    return None


def _cuts(event: dict[str, Any], context: Any) -> dict[str, dict[str, Callable[[], None]]]:
    """Each P1 cut as what the handler ran before ("powertools", or the name of the code replaced) and "ours",
    on the same inputs."""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging import correlation_paths
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    from pipeline import collection, envelope, ingest, settings
    from pipeline.http_event import read_event
    from pipeline.observability import EmfProvider, counts, info_line, log_request_context, logger, metrics

    # Powertools' Logger as the handler had it: default settings, inject_lambda_context's keys, and the
    # stdlib's caller lookup (pipeline/observability.py turns it off process-wide, so it is on for this call).
    defaults = Logger(service="p1-powertools-defaults")
    defaults.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)(_nothing)(event, context)
    caller_lookup = os.path.normcase(logging.addLevelName.__code__.co_filename)

    def powertools_line() -> None:
        logging._srcfile = caller_lookup
        try:
            defaults.info("request accepted", extra={"payloads": 10, "retriedEntries": 0})
        finally:
            logging._srcfile = None

    limits = ingest.limits_from(settings.ingest_settings())
    raw = collection.decode_body(event["body"], event["isBase64Encoded"], read_event(event).headers, limits)
    parsed = collection.parse_collection(raw, limits)
    document = json.loads(raw)
    # The payload encoder as it was: the same options, with JSONEncoder's default cycle check.
    circular_checking = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def two_counts(_event: dict[str, Any], _context: Any) -> None:
        counts.add(Metric.REQUESTS_ACCEPTED, 1)
        counts.add(Metric.PAYLOADS_ACCEPTED, PAYLOADS)

    def two_counts_powertools(_event: dict[str, Any], _context: Any) -> None:
        metrics.add_metric(name=Metric.REQUESTS_ACCEPTED, unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=Metric.PAYLOADS_ACCEPTED, unit=MetricUnit.Count, value=PAYLOADS)

    def emf(provider: EphemeralMetrics) -> Callable[[], None]:
        provider.namespace, provider.service = metrics.namespace, metrics.service
        provider.set_default_dimensions(**metrics.default_dimensions)

        def add_two_and_flush() -> None:
            provider.add_metric(name=Metric.REQUESTS_ACCEPTED, unit=MetricUnit.Count, value=1)
            provider.add_metric(name=Metric.PAYLOADS_ACCEPTED, unit=MetricUnit.Count, value=PAYLOADS)
            provider.flush_metrics()

        return add_two_and_flush

    def logger_info() -> None:
        logger.info("request accepted", extra={"payloads": 10, "retriedEntries": 0})

    return {
        "log_line": {"powertools": powertools_line, "ours": logger_info},
        # The per-request line: through logging (logger.info) vs written by info_line, the same line byte for byte.
        "info_line": {
            "logger_info": logger_info,
            "ours": lambda: info_line("request accepted", {"payloads": 10, "retriedEntries": 0}),
        },
        "request_context": {
            "powertools": lambda: defaults.inject_lambda_context(
                correlation_id_path=correlation_paths.API_GATEWAY_REST
            )(_nothing)(event, context),
            "ours": lambda: log_request_context(_nothing)(event, context),
        },
        "emf_flush": {"powertools": emf(EphemeralMetrics()), "ours": emf(EmfProvider())},
        # The ingest's two counts: Powertools' Metrics (add_metric, then log_metrics' flush through EmfProvider)
        # vs MetricCounts writing the same blob itself (observability.count_blob).
        "count_blob": {
            "emf_provider": lambda: metrics.log_metrics(two_counts_powertools)(event, context),
            "ours": lambda: counts.log_metrics(two_counts)(event, context),
        },
        # The body's parse: json.loads with the hooks (a new decoder and scanner per call) vs one decoder.
        "json_decoder": {
            "json_loads": lambda: json.loads(
                raw.decode("utf-8"),
                object_pairs_hook=collection._object_without_duplicate_keys,
                parse_constant=collection._reject_constant,
            ),
            "ours": lambda: collection._parse_json(raw),
        },
        # Each payload's compact re-serialization: the encoder with and without its cycle check.
        "payload_encoder": {
            "check_circular": lambda: [circular_checking.encode(payload) for payload in document["data"]],
            "ours": lambda: [collection._COMPACT_JSON.encode(payload) for payload in document["data"]],
        },
        # The envelopes: built as before (concatenated bodies, a frozen dataclass each) vs build_messages now.
        "envelopes": {
            "concatenated_frozen": lambda: _envelopes_before(parsed, REQUEST_ID, RECEIVED_AT_MS),
            "ours": lambda: envelope.build_messages(parsed, REQUEST_ID, RECEIVED_AT_MS),
        },
    }


REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
RECEIVED_AT_MS = 1764000000000


@dataclass(frozen=True)
class _FrozenMessage:
    """pipeline.envelope.OutgoingMessage as it was before its P1 cut."""

    body: str
    request_id: str
    size: int
    payloads: int = 1


def _envelopes_before(collection: Any, request_id: str, received_at_ms: int) -> list[_FrozenMessage]:
    """pipeline.envelope.build_messages (one envelope per message) as it was before its P1 cut."""
    head = (
        ',"requestId":'
        + json.dumps(request_id)
        + ',"receivedAt":"'
        + format_received_at(received_at_ms)
        + '"'
        + ',"version":'
        + json.dumps(collection.version)
        + ',"token":'
        + json.dumps(collection.token)
        + ',"payload":'
    )
    attribute_size = len(REQUEST_ID_ATTRIBUTE) + len("String") + len(request_id.encode())
    messages = []
    for index, payload in enumerate(collection.payloads):
        body = '{"id":"' + request_id + "-" + str(index) + '"' + head + payload + "}"
        size = len(body.encode("utf-8")) + attribute_size
        if size > SQS_MAX_MESSAGE_BYTES:
            raise ValueError(f"data[{index}] does not fit one queue message")
        messages.append(_FrozenMessage(body, request_id, size))
    return messages
