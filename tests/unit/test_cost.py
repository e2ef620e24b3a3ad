"""tools.models.cost: each service's lines checked against small cases computed by hand from
tools/models/prices.py, and the command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import PipelineConfig
from tools.models import cost, prices
from tools.models.assumptions import MEASURED, Assumptions, load_bench, log_compression
from tools.models.flow import REQUEST_ID_ATTRIBUTE_BYTES, SECONDS_PER_MONTH, Load, flow_of, one_message_bytes

M = 1_000_000
GB = 1024**3
# Explicit durations, so the hand computations below do not move when the measured defaults are refreshed.
ASSUME = Assumptions(ingest_ms=10.0, consumer_ms=60.0)
# 1 request/min of 10 payloads of 1,000 B: 43,200 requests and 432,000 payloads a month, each payload's envelope
# 1,194 B (the ingest's own: pipeline.envelope), 1,245 B as a message with its requestId attribute
ENVELOPE = 1_194
SMALL = Load(requests_per_minute=1, payloads_per_request=10, payload_bytes=1_000)


def lines(config: PipelineConfig, load: Load = SMALL, assume: Assumptions = ASSUME) -> dict[str, cost.Line]:
    return {f"{line.service}: {line.item}": line for line in cost.monthly_lines(config, load, assume)}


def line(found: dict[str, cost.Line], starts: str) -> cost.Line:
    [match] = [value for key, value in found.items() if key.startswith(starts)]
    return match


def test_tiers_charge_each_slice_at_its_own_price() -> None:
    # Given 400 M REST requests: 333 M at $3.50/M, the next 67 M at $2.80/M
    assert cost.tiered(400 * M, prices.API_GATEWAY_REST_TIERS) == pytest.approx(333 * 3.50 + 67 * 2.80)
    assert cost.tiered(1 * M, prices.API_GATEWAY_REST_TIERS) == pytest.approx(3.50)
    # HTTP API: $1.00/M for 300 M, then $0.90/M
    assert cost.tiered(1_000 * M, prices.API_GATEWAY_HTTP_TIERS) == pytest.approx(300 * 1.00 + 700 * 0.90)


def test_lambda_log_tiers_over_50_tb() -> None:
    tb = 1024
    expected = 10 * tb * 0.50 + 20 * tb * 0.25 + 20 * tb * 0.10 + 10 * tb * 0.05
    assert cost.tiered(60 * tb, prices.CLOUDWATCH_LAMBDA_LOGS_TIERS_PER_GB) == pytest.approx(expected)


def test_storage_tiers_over_500_tb() -> None:
    tb = 1024
    expected = 50 * tb * 0.023 + 450 * tb * 0.022 + 100 * tb * 0.021
    assert cost.tiered(600 * tb, prices.S3_STANDARD_STORAGE_TIERS_PER_GB) == pytest.approx(expected)


def test_the_month_is_the_concatenation_of_the_stages() -> None:
    config = PipelineConfig()
    shaped = flow_of(config, SMALL, ASSUME)
    expected = [item for stage in cost.COST_STAGES for item in stage(config, shaped)]
    assert cost.monthly_lines(config, SMALL, ASSUME) == expected


# --- the front door -----------------------------------------------------------------------------------------
def test_rest_api_is_priced_per_request_in_tiers() -> None:
    assert line(lines(PipelineConfig()), "API Gateway: REST").usd == pytest.approx(43_200 * 3.50 / M)


def test_http_api_is_priced_per_512_kb_of_request() -> None:
    config = PipelineConfig(API_KIND="http", DEVICE_AUTH="on")
    assert line(lines(config), "API Gateway: HTTP").usd == pytest.approx(43_200 * 1.00 / M)
    # Given 2 payloads of 300 KB: a 600 KB body is metered as two requests
    big = Load(1, 2, 300_000)
    metered = line(lines(dataclasses.replace(config, MAX_BODY_BYTES=700_000, MAX_PAYLOAD_BYTES=300_000), big), "API")
    assert metered.quantity == 2 * 43_200


def test_answers_to_clients_are_data_transferred_out() -> None:
    transfer = line(lines(PipelineConfig()), "Data transfer")
    assert transfer.quantity == pytest.approx(43_200 * ASSUME.response_bytes / GB)
    assert transfer.usd == pytest.approx(transfer.quantity * 0.09)


def test_device_keys_read_the_secret_once_per_ttl_per_warm_ingest() -> None:
    # 1,000 rps x 10 ms = 10 concurrent, +20 % = 12 warm ingests; each reads every 60 s and once per 2 h cold start
    found = lines(PipelineConfig(DEVICE_AUTH="on"), Load(60_000, 10, 1_000))
    reads = line(found, "Secrets Manager: GetSecretValue")
    assert reads.quantity == pytest.approx(12 * (SECONDS_PER_MONTH / 60 + 720 / 2))
    assert reads.usd == pytest.approx(reads.quantity * 0.05 / 10_000)
    assert line(found, "Secrets Manager: the device-key").usd == 0.40
    assert not [key for key in lines(PipelineConfig()) if key.startswith("Secrets Manager")]


# --- compute ------------------------------------------------------------------------------------------------
def test_lambda_compute_and_invocations_by_hand() -> None:
    found = lines(PipelineConfig())
    # Ingest: 43,200 x 10 ms x 0.5 GB = 216 GB-s, plus $0.20/M invocations
    ingest = line(found, "Lambda ingest: compute")
    assert (ingest.quantity, ingest.usd) == (pytest.approx(216), pytest.approx(216 * 0.0000133334))
    assert line(found, "Lambda ingest: invocations").usd == pytest.approx(43_200 * 0.20 / M)
    # Consumer: 432,000 messages / batches of 100 = 4,320 x 60 ms x 0.5 GB
    assert line(found, "Lambda consumer: compute").quantity == pytest.approx(4_320 * 0.060 * 0.5)


def test_lambda_duration_is_billed_per_started_millisecond() -> None:
    assert cost.lambda_gb_seconds(1_000, 10.2, 512) == pytest.approx(1_000 * 0.011 * 0.5)


def test_provisioned_pollers_are_billed_per_epu_hour() -> None:
    config = PipelineConfig(OBJECT_MODE="batch", PROVISIONED_POLLERS=True, MIN_POLLERS=20, MAX_POLLERS=40)
    pollers = line(lines(config), "Lambda pollers")
    assert pollers.quantity == 20 * 720  # the floor: the load needs fewer
    assert pollers.usd == pytest.approx(20 * 720 * 0.00925)
    assert not [key for key in lines(PipelineConfig()) if key.startswith("Lambda pollers")]


# --- the queue ----------------------------------------------------------------------------------------------
def test_sqs_send_receive_delete_by_hand() -> None:
    found = lines(PipelineConfig())
    # one send per request (10 x 1,000 B in one 64 KB chunk), a receive and a delete per 10 messages
    assert line(found, "SQS: SendMessageBatch").quantity == 43_200
    assert line(found, "SQS: ReceiveMessage").quantity == pytest.approx(43_200)
    assert line(found, "SQS: DeleteMessageBatch").quantity == pytest.approx(43_200)
    assert sum(v.usd for k, v in found.items() if k.startswith("SQS")) == pytest.approx(3 * 43_200 * 0.40 / M)


def test_packing_bills_a_tenth_of_the_receives_and_deletes() -> None:
    load = Load(60_000, 10, 1_000)
    one = lines(PipelineConfig(OBJECT_MODE="batch"), load)
    packed = lines(PipelineConfig(OBJECT_MODE="batch", MESSAGE_TARGET_BYTES=65_536), load)
    assert line(packed, "SQS: DeleteMessageBatch").quantity == pytest.approx(
        line(one, "SQS: DeleteMessageBatch").quantity / 10
    )
    assert line(packed, "SQS: SendMessageBatch").quantity == line(one, "SQS: SendMessageBatch").quantity


def test_the_backlog_check_is_billed_when_max_queue_is_set() -> None:
    found = lines(PipelineConfig(MAX_QUEUE=1_000), Load(60_000, 10, 1_000))
    # 12 warm ingests (see above) each read the queue's depth every 5 s
    assert line(found, "SQS: GetQueueAttributes").quantity == pytest.approx(12 * SECONDS_PER_MONTH / 5)


# --- storage and the lake -----------------------------------------------------------------------------------
def test_s3_puts_per_object() -> None:
    assert line(lines(PipelineConfig()), "S3: PUT").usd == pytest.approx(432_000 * 0.005 / 1000)
    # batch mode, standard mode: 100 messages a batch over a 1 s window (+ 1 s / 1 h spanning two hours)
    batch = line(lines(PipelineConfig(OBJECT_MODE="batch")), "S3: PUT")
    assert batch.quantity == pytest.approx(4_320 * (1 + 1 / 3600))


def test_raw_storage_is_priced_at_the_stored_size_for_its_retention() -> None:
    # batch mode stores each envelope gzip'd (bench S1's ratio), kept 15 days; compacted Parquet 30 days
    assert ENVELOPE == one_message_bytes(1_000) - REQUEST_ID_ATTRIBUTE_BYTES  # the ingest's own envelope
    config = PipelineConfig(OBJECT_MODE="batch", RAW_RETENTION_DAYS=15, COMPACTED_RETENTION_DAYS=30)
    found = lines(config)
    raw = line(found, "S3: raw payloads, gzip NDJSON (15-day expiry)")
    assert raw.quantity == pytest.approx(432_000 * ENVELOPE / MEASURED.stored_compression * 15 / 30 / GB)
    assert raw.usd == pytest.approx(raw.quantity * 0.023)
    compacted = line(found, "S3: compacted Parquet (30-day expiry)")
    assert compacted.quantity == pytest.approx(432_000 * ENVELOPE / MEASURED.compacted_compression / GB)
    # payload mode stores the envelope verbatim; nothing expiring is priced at month 12
    kept = line(lines(PipelineConfig(COMPACTION="off")), "S3: raw payloads, JSON (month 12")
    assert kept.quantity == pytest.approx(12 * 432_000 * ENVELOPE / GB)
    assert not [key for key in lines(PipelineConfig(COMPACTION="off")) if "compacted" in key]


def test_server_access_logs_record_every_put_and_compaction_request() -> None:
    found = lines(PipelineConfig(COMPACTION="off"))
    assert line(found, "S3: server access logs").quantity == pytest.approx(432_000 * 600 * 3 / GB)


def test_compaction_scans_the_raw_hour_only() -> None:
    # 600 payloads an hour: the raw gzip lines, and no compacted hour's ids whatever the lookback (issue 26 item 8)
    config = PipelineConfig(OBJECT_MODE="batch", COMPACTION_LOOKBACK_HOURS=24)
    shaped = flow_of(config, SMALL, ASSUME)
    raw = 600 * ENVELOPE / MEASURED.stored_compression
    assert cost.athena_bytes_per_compaction(config, shaped) == prices.ATHENA_MINIMUM_BYTES  # the 10 MB minimum
    big = Load(60_000, 10, 1_000)  # 36 M payloads an hour
    scanned = cost.athena_bytes_per_compaction(config, flow_of(config, big, ASSUME))
    assert scanned == pytest.approx(60_000 * raw)
    athena = line(lines(config, big), "Athena")
    assert athena.usd == pytest.approx(720 * scanned / 1024**4 * 5.00)
    assert line(lines(config), "Step Functions").quantity == 720 * ASSUME.compaction_transitions == 720 * 26
    assert not [key for key in lines(PipelineConfig(COMPACTION="off")) if key.startswith(("Athena", "Step"))]


# --- telemetry ----------------------------------------------------------------------------------------------
def test_log_levels_price_what_the_functions_still_write() -> None:
    load = Load(60_000, 10, 1_000)  # 1,000 rps; 100 batches/s in payload mode
    requests, batches = 60_000 * 43_200, 100 * SECONDS_PER_MONTH
    platform = 390 + 3 * 26
    quiet = PipelineConfig(LOG_LEVEL="WARNING", SYSTEM_LOG_LEVEL="WARN", METRICS_FLUSH_SECONDS=60)
    ingest, consumer = cost.lambda_log_bytes(quiet, flow_of(quiet, load, ASSUME))
    # no request line, no START/END/REPORT: an EMF blob per warm ingest (12) a minute, one per batch
    assert ingest == pytest.approx(12 * SECONDS_PER_MONTH / 60 * (MEASURED.ingest_window_emf_bytes + 26))
    assert consumer == pytest.approx(batches * (MEASURED.consumer_emf_bytes + 26))
    loud = PipelineConfig()  # INFO, INFO, EMF every request
    ingest, _ = cost.lambda_log_bytes(loud, flow_of(loud, load, ASSUME))
    assert ingest == pytest.approx(requests * (MEASURED.ingest_log_bytes + 2 * 26 + platform))


def test_access_logs_are_priced_by_their_class_and_stored_compressed() -> None:
    # the access-log format's own line (infra/access_logs.py), 144 B on REST, and its newline
    assert cost.access_log_bytes(PipelineConfig(), flow_of(PipelineConfig(), SMALL, ASSUME)) == 145
    per_gb = 43_200 * (145 + 26) / GB
    standard = lines(PipelineConfig())
    assert line(standard, "CloudWatch: access logs ingested").usd == pytest.approx(per_gb * 0.50)
    infrequent = lines(PipelineConfig(ACCESS_LOG_CLASS="INFREQUENT_ACCESS"))
    assert line(infrequent, "CloudWatch: access logs ingested").usd == pytest.approx(per_gb * 0.25)
    stored = line(infrequent, "CloudWatch: access logs stored")
    assert stored.quantity == pytest.approx(per_gb / log_compression())  # 30 days kept, compressed
    assert 3 < log_compression() < 15
    # the HTTP API's line is shorter (no extendedRequestId); --access-log-bytes prices another
    http = PipelineConfig(API_KIND="http", DEVICE_AUTH="on")
    assert cost.access_log_bytes(http, flow_of(http, SMALL, ASSUME)) == 86
    assert line(lines(http, assume=Assumptions(access_log_bytes=300)), "CloudWatch: access logs ingested").quantity == (
        pytest.approx(43_200 * (300 + 26) / GB)
    )


def test_access_logs_with_client_addresses_are_longer_and_kept_their_own_days() -> None:
    # Given ACCESS_LOG_CLIENT_IP=on: each line also holds the address and user agent (214 B on REST)
    with_ip = PipelineConfig(ACCESS_LOG_CLIENT_IP="on")
    assert cost.access_log_bytes(with_ip, flow_of(with_ip, SMALL, ASSUME)) == 215
    per_gb = 43_200 * (215 + 26) / GB
    # Then the lines are priced at that size and stored ACCESS_LOG_CLIENT_IP_RETENTION_DAYS (7), not 30 days
    assert line(lines(with_ip), "CloudWatch: access logs ingested").usd == pytest.approx(per_gb * 0.50)
    stored = line(lines(with_ip), "CloudWatch: access logs stored")
    assert stored.quantity == pytest.approx(per_gb * 7 / 30 / log_compression())
    assert stored.item == "access logs stored (7 days)"


def test_tracing_is_priced_only_when_on() -> None:
    assert line(lines(PipelineConfig(TRACING=True)), "X-Ray").quantity == pytest.approx((43_200 + 4_320) * 0.05)
    assert not [key for key in lines(PipelineConfig()) if key.startswith("X-Ray")]


# --- the command --------------------------------------------------------------------------------------------
def test_command_prints_both_object_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--rpm", "60", "--payloads", "10", "--payload-bytes", "1024"]) == 0
    printed = capsys.readouterr().out
    assert "OBJECT_MODE=payload" in printed and "OBJECT_MODE=batch" in printed
    assert "per million payloads" in printed


@pytest.mark.parametrize("rpm", ["0", "-1", "nan", "inf"])
def test_a_load_that_is_not_a_positive_number_exits_2(rpm: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cost.main(["--rpm", rpm])
    assert exited.value.code == 2 and "--rpm must be a positive number" in capsys.readouterr().err


def test_a_refused_knob_or_payload_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a front door the stack refuses (an HTTP API without device keys)
    monkeypatch.setenv("API_KIND", "http")
    monkeypatch.setenv("DEVICE_AUTH", "off")
    # Then the command says so in one line and exits 2, no traceback
    assert cost.main(["--rpm", "60"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "cost: API_KIND=http needs DEVICE_AUTH=on: an HTTP API has no API keys, so devices authenticate with their "
        "own keys"
    ]
    # And a payload no queue message holds is a bad argument too
    monkeypatch.delenv("API_KIND")
    monkeypatch.delenv("DEVICE_AUTH")
    assert cost.main(["--rpm", "60", "--payload-bytes", "2000000"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("cost: --payload-bytes 2000000: ") and line.endswith("(the ingest answers 413)")


def test_bench_output_feeds_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a `make bench` run: 0.8 ms of ingest CPU, consumer CPU 0.5 / 0.04 ms per record, S1 4x, S2 5x
    figures: list[dict[str, Any]] = [
        {"figure": "P1", "real_us": 800.0},
        {"figure": "C1", "object_mode": "payload", "cpu_us_per_record": 500.0},
        {"figure": "C1", "object_mode": "batch", "cpu_us_per_record": 40.0},
        {"figure": "L1", "value": 1000, "lines": 3},
        {"figure": "L1", "object_mode": "payload", "value": 70000, "lines": 102},
        {"figure": "L1", "object_mode": "batch", "value": 900, "lines": 2},
        {"figure": "S1", "value": 4.0},
        {"figure": "D1", "value": 12.0},
        {"figure": "S2", "ratio_to_envelope": 5.0, "column_bytes_per_payload": {"id": 3.5, "token": 2.5}},
    ]
    bench = tmp_path / "figures.jsonl"
    bench.write_text("\n".join(json.dumps(figure) for figure in figures) + "\n")
    measured = load_bench(bench.read_text().splitlines())
    assert (measured.ingest_cpu_ms, measured.consumer_cpu_ms("batch")) == (pytest.approx(0.8), pytest.approx(0.04))
    assert measured.consumer_log_bytes_per_payload == pytest.approx(700)
    assert (measured.stored_compression, measured.compacted_column_bytes["id"]) == (4.0, 3.5)
    assert measured.device_auth_cpu_ms == pytest.approx(0.012)
    # When the command reads it (default config: 512 MB, BATCH_SIZE 100, UPLOAD_CONCURRENCY 16)
    cost.main(["--rpm", "60", "--bench", str(bench), "--sqs-send-ms", "8", "--put-ms", "20", "--batch-put-ms", "50"])
    printed = capsys.readouterr().out
    # Then the durations are 0.8 x 1769/512 + 8 ms, 7 x 20 + 100 x 0.5 x 1769/512, 50 + 100 x 0.04 x 1769/512
    scale = 1769 / 512
    assert f"ingest {0.8 * scale + 8:.1f} ms/request" in printed
    assert f"{140 + 50 * scale:.1f} ms (payload mode) / {50 + 4 * scale:.1f} ms (batch mode)" in printed
