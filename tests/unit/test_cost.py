"""tools.models.cost arithmetic, checked against small cases computed by hand from tools/models/prices.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.models import cost, prices

M = 1_000_000
# Explicit, so the hand computations below do not move when the measured defaults are refreshed.
ASSUME = cost.Assumptions(
    ingest_ms=10.0, consumer_ms_payload_mode=225.0, consumer_ms_batch_mode=60.0, access_log_bytes=260
)


def _lines(workload: cost.Workload, mode: str, **overrides: object) -> dict[str, cost.Line]:
    settings: dict[str, object] = {
        "ingest_memory_mb": 512,
        "consumer_memory_mb": 1024,
        "batch_size": 100,
        "alarms": 6,
        "dashboards": 1,
        "assume": ASSUME,
    }
    settings.update(overrides)
    lines = cost.monthly_lines(workload, mode, **settings)  # type: ignore[arg-type]
    return {f"{line.service}: {line.item}": line for line in lines}


def test_tiers_charge_each_slice_at_its_own_price() -> None:
    # Given 400 M REST requests: 333 M at $3.50/M, the next 67 M at $2.80/M
    # Then
    assert cost.tiered(400 * M, prices.API_GATEWAY_REST_TIERS) == pytest.approx(333 * 3.50 + 67 * 2.80)
    # Below the first bound only the first price applies
    assert cost.tiered(1 * M, prices.API_GATEWAY_REST_TIERS) == pytest.approx(3.50)


def test_lambda_log_tiers_over_50_tb() -> None:
    # Given 60 TB of Lambda logs: 10 TB at $0.50, 20 at $0.25, 20 at $0.10, 10 at $0.05 (per GB)
    tb = 1024
    expected = 10 * tb * 0.50 + 20 * tb * 0.25 + 20 * tb * 0.10 + 10 * tb * 0.05
    assert cost.tiered(60 * tb, prices.CLOUDWATCH_LAMBDA_LOGS_TIERS_PER_GB) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("payloads", "message_bytes", "billed"),
    [
        (10, 1_269, 1),  # 12.7 KB in one call: one 64 KB chunk
        (11, 1_269, 2),  # 10 + 1
        (1, 100_000, 2),  # one 100 KB message is two chunks
        (1, 65_536, 1),  # exactly 64 KiB: one chunk...
        (1, 65_537, 2),  # ...one byte more: two
        # 300 KiB messages: 3 per call (1 MiB), so calls of 3+3+3+1; each full call is 900 KiB = 15 chunks
        (10, 300 * 1024, 3 * 15 + 5),
    ],
)
def test_sqs_send_requests_are_packed_then_billed_per_64k_chunk(payloads: int, message_bytes: int, billed: int) -> None:
    assert cost.send_requests_per_request(payloads, message_bytes) == billed


def test_lambda_duration_is_billed_per_started_millisecond() -> None:
    # 1,000 invocations of 10.2 ms at 512 MB: 11 ms billed x 0.5 GB
    assert cost.lambda_gb_seconds(1_000, 10.2, 512) == pytest.approx(1_000 * 0.011 * 0.5)


def test_small_workload_by_hand() -> None:
    # Given 1 request/min of 10 payloads: 43,200 requests and 432,000 payloads in a 30-day month
    workload = cost.Workload(requests_per_minute=1, payloads_per_request=10, message_bytes=1_000)
    assert workload.requests == 43_200
    payload_mode = _lines(workload, "payload")
    batch_mode = _lines(workload, "batch")

    # Then API Gateway: 43,200 x $3.50/M
    assert payload_mode["API Gateway: REST requests (tiered)"].usd == pytest.approx(43_200 * 3.50 / M)
    # SQS: one send, one receive and one delete per 10 payloads (all under 64 KB): 3 x 43,200 requests
    sqs = payload_mode["SQS: send + receive + delete (64 KB chunks, batched)"]
    assert sqs.quantity == pytest.approx(3 * 43_200)
    assert sqs.usd == pytest.approx(3 * 43_200 * 0.40 / M)
    # S3: a PUT per payload, or a PUT per batch of 100 (4,320 batches)
    assert payload_mode["S3: PUT (payload mode)"].usd == pytest.approx(432_000 * 0.005 / 1000)
    assert batch_mode["S3: PUT (batch mode)"].usd == pytest.approx(4_320 * 0.005 / 1000)
    # Ingest: 43,200 x 10 ms x 0.5 GB = 216 GB-s, plus $0.20/M invocations
    ingest = payload_mode["Lambda ingest: compute arm64 512 MB"]
    assert ingest.quantity == pytest.approx(216)
    assert ingest.usd == pytest.approx(216 * 0.0000133334)
    assert payload_mode["Lambda ingest: invocations"].usd == pytest.approx(43_200 * 0.20 / M)
    # Consumer (payload mode): 4,320 batches x 225 ms x 1 GB
    consumer = payload_mode["Lambda consumer: compute arm64 1024 MB"]
    assert consumer.quantity == pytest.approx(4_320 * 0.225)
    # Alarms and dashboard: 6 x $0.10 + $3
    assert payload_mode["CloudWatch: alarms"].usd + payload_mode["CloudWatch: dashboards"].usd == pytest.approx(3.60)


def test_access_logs_scale_with_requests() -> None:
    # 43,200 requests x (260 B + 26 B per event) at $0.50/GB
    workload = cost.Workload(requests_per_minute=1, payloads_per_request=10, message_bytes=1_000)
    line = _lines(workload, "payload")["CloudWatch: API Gateway access logs ingested"]
    assert line.usd == pytest.approx(43_200 * 286 / 1024**3 * 0.50)


def test_envelope_size_grows_byte_for_byte_with_the_payload() -> None:
    assert cost.sqs_message_bytes(2_024) - cost.sqs_message_bytes(1_024) == 1_000
    assert cost.sqs_message_bytes(1_024) > 1_024  # the envelope and attribute are counted too


def test_command_prints_both_object_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--rpm", "60", "--payloads", "10", "--payload-bytes", "1024"]) == 0
    printed = capsys.readouterr().out
    assert "OBJECT_MODE=payload" in printed and "OBJECT_MODE=batch" in printed
    assert "per million payloads" in printed


def test_consumer_duration_model_by_hand() -> None:
    # Payload mode, 100 records, 16 uploads in flight, 20 ms PUTs, 512 MB (CPU x 1769/512):
    # ceil(100/16) = 7 waves x 20 ms + 100 x 0.272 ms x 3.455 = 140 + 93.98
    assert cost.consumer_batch_ms("payload", 100, 16, 512, put_ms=20) == pytest.approx(140 + 100 * 0.272 * 1769 / 512)
    # Batch mode: one 50 ms PUT + 100 x 0.025 ms x 3.455
    assert cost.consumer_batch_ms("batch", 100, 16, 512, batch_put_ms=50) == pytest.approx(
        50 + 100 * 0.025 * 1769 / 512
    )
    # At 1,769 MB or more, CPU runs at full-core speed
    assert cost.cpu_scale(3008) == 1.0


def test_bench_output_feeds_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a `make bench` run: 0.8 ms of ingest CPU, consumer CPU 0.5 / 0.04 ms per record
    figures = tmp_path / "figures.jsonl"
    figures.write_text(
        "\n".join(
            json.dumps(line)
            for line in [
                {"figure": "P1", "real_us": 800.0},
                {"figure": "C1", "object_mode": "payload", "cpu_us_per_record": 500.0},
                {"figure": "C1", "object_mode": "batch", "cpu_us_per_record": 40.0},
                {"figure": "L1", "value": 1000, "lines": 3},
                {"figure": "L1", "object_mode": "payload", "value": 70000, "lines": 102},
                {"figure": "L1", "object_mode": "batch", "value": 900, "lines": 2},
            ]
        )
        + "\n"
    )
    measured = cost.load_bench(figures.read_text().splitlines())
    assert measured.ingest_cpu_ms == pytest.approx(0.8)
    assert measured.consumer_cpu_ms("batch") == pytest.approx(0.04)
    assert measured.consumer_log_bytes_per_payload == pytest.approx(700)
    # When the command reads it (default config: 512 MB, BATCH_SIZE 100, UPLOAD_CONCURRENCY 16)
    cost.main(["--rpm", "60", "--bench", str(figures), "--sqs-send-ms", "8", "--put-ms", "20", "--batch-put-ms", "50"])
    printed = capsys.readouterr().out
    # Then the durations are 0.8 x 1769/512 + 8 ms, 7 x 20 + 100 x 0.5 x 1769/512, 50 + 100 x 0.04 x 1769/512
    scale = 1769 / 512
    assert f"ingest {0.8 * scale + 8:.1f} ms/request" in printed
    assert f"consumer {140 + 50 * scale:.1f} ms (payload mode) / {50 + 4 * scale:.1f} ms (batch mode)" in printed


def test_storage_is_priced_at_steady_state_under_the_expiry() -> None:
    # Given 432,000 payloads of 1,000 B a month (0.402 GB) kept 30 days, and 432,000 PUTs of 600 B
    # access-log records kept 90 days (3 months: 0.724 GB)
    workload = cost.Workload(requests_per_minute=1, payloads_per_request=10, message_bytes=1_000)
    lines = _lines(workload, "payload", object_expiration_days=30, access_log_expiration_days=90)
    payload_gb = 432_000 * 1_000 / 1024**3
    log_gb = 432_000 * 600 * 3 / 1024**3
    # Then each is GB-month x $0.023 (first 50 TB tier)
    assert lines["S3: payload storage (30-day expiry)"].quantity == pytest.approx(payload_gb)
    assert lines["S3: payload storage (30-day expiry)"].usd == pytest.approx(payload_gb * 0.023)
    assert lines["S3: server access logs (90-day expiry)"].usd == pytest.approx(log_gb * 0.023)
    # Batch mode writes one object (and one log record) per 100 payloads
    batch = _lines(workload, "batch", object_expiration_days=30)
    assert batch["S3: server access logs (90-day expiry)"].quantity == pytest.approx(4_320 * 600 * 3 / 1024**3)


def test_storage_that_never_expires_is_priced_at_month_12() -> None:
    workload = cost.Workload(requests_per_minute=1, payloads_per_request=10, message_bytes=1_000)
    line = _lines(workload, "batch")["S3: payload storage (month 12, never expires)"]
    assert line.quantity == pytest.approx(12 * 432_000 * 1_000 / 1024**3)


def test_storage_tiers_over_500_tb() -> None:
    # 600 TB: 50 TB at $0.023, 450 TB at $0.022, 100 TB at $0.021 (per GB-month)
    tb = 1024
    expected = 50 * tb * 0.023 + 450 * tb * 0.022 + 100 * tb * 0.021
    assert cost.tiered(600 * tb, prices.S3_STANDARD_STORAGE_TIERS_PER_GB) == pytest.approx(expected)
