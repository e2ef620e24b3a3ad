"""P1: CPU cost of the real ingest handler per request vs the hand-written baseline.

Both handle the same API Gateway REST event (10 payloads of ~1 KiB) and send through the same
cached boto3 SQS client, answered in-process by botocore's Stubber: no network, no moto, so the
figure is our Python plus botocore's request building, nothing else.
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import QUEUE_URL, figure, interleaved, median, prepare_environment

GOAL_RATIO = 1.5
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
    event = api_gateway_event("POST", "/v1/payloads", collection_body(),
                              {"Content-Type": "application/json", "x-api-key": "bench"})
    context = LambdaContext(function_name="ingest")
    calls_per_request = -(-PAYLOADS // 10)
    answer = _send_message_batch_response(min(PAYLOADS, 10))

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
        total_calls = (rounds * calls_per_round + 20) * 2 * calls_per_request
        for _ in range(total_calls):
            stubber.add_response("send_message_batch", answer)
        for _ in range(10):  # warm-up: first-call costs (model loading, caches) are P2's business
            real(), baseline()
        samples = interleaved({"real": real, "baseline": baseline}, rounds, calls_per_round)

    real_s, baseline_s = median(samples["real"]), median(samples["baseline"])
    ratio = real_s / baseline_s
    return figure(
        "P1", "ingest handler CPU per request vs hand-written baseline (10 x 1 KiB, SQS stubbed)",
        ratio, "x baseline", f"<= {GOAL_RATIO}", ratio <= GOAL_RATIO,
        real_us=round(real_s * 1e6, 1), baseline_us=round(baseline_s * 1e6, 1),
        rounds=rounds, calls_per_round=calls_per_round,
    )
