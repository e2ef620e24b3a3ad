"""tools.models.capacity: each stage's arithmetic by hand, the verdict, the JSON schema and exit codes, the
scale profile as the model sizes it, and the docs in sync with the tools.

AWS figures used below (the module cites each page): API Gateway 10,000 rps per account and Region for REST
and HTTP APIs, burst 5,000 set by AWS; Lambda 1,000 concurrent executions, 10 x that in invocations/s, 100
kept unreserved, ~10 requests/s per environment; SQS ~120,000 messages in flight per standard queue, <= 10
per receive; a provisioned poller <= 10 polls/s, 1 MB/s, 10 concurrent invokes; S3 3,500 PUT/s per (fresh)
prefix; Lambda's 6 MB invoke payload.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import PROFILES, SQS_IN_FLIGHT_DEFAULT_QUOTA, PipelineConfig
from tools.models import capacity, capacity_doc, cost, prices
from tools.models.assumptions import MEASURED, Assumptions
from tools.models.capacity import cli
from tools.models.flow import COLLECTION_JSON, Load, flow_of, load_of

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "CAPACITY.md"
# Explicit durations so the hand computations do not move when the measured defaults are refreshed.
ASSUME = Assumptions(ingest_ms=10.0, consumer_ms=200.0)
SEED = ["--rpm", "1000000", "--payloads", "10", "--payload-bytes", "1024"]


def assess(rpm: float, *, payloads: int = 10, failure_rate: float = 0.0, **knobs: Any) -> capacity.Assessment:
    load = Load(rpm, payloads, 1_000, failure_rate)
    return capacity.assess(PipelineConfig(**knobs), load, ASSUME)


def stage(stage_function: Any, rpm: float, **knobs: Any) -> list[capacity.Check]:
    """One stage function's checks, alone."""
    config, load = PipelineConfig(**knobs), Load(rpm, 10, 1_000)
    return list(stage_function(config, load, flow_of(config, load, ASSUME)))


def check(checks: capacity.Assessment | list[capacity.Check], stage_name: str, starts: str) -> capacity.Check:
    rows = checks.checks if isinstance(checks, capacity.Assessment) else checks
    [found] = [c for c in rows if c.stage == stage_name and c.item.startswith(starts)]
    return found


def seed_json(capsys: pytest.CaptureFixture[str], **environ: str) -> tuple[int, dict[str, Any]]:
    code = cli.main([*SEED, "--format", "json"], environ=environ)
    return code, json.loads(capsys.readouterr().out)


def test_the_assessment_is_the_concatenation_of_the_stages() -> None:
    config, load = PipelineConfig(), Load(60_000, 10, 1_000)
    shaped = flow_of(config, load, ASSUME)
    expected = [c for stage_function in capacity.STAGES for c in stage_function(config, load, shaped)]
    assert capacity.assess(config, load, ASSUME).checks == expected


# --- HTTP contract ------------------------------------------------------------------------------------------
def test_a_request_the_ingest_refuses_is_not_carried() -> None:
    rows = stage(capacity.http_contract_checks, 60, MAX_PAYLOADS=5)
    assert check(rows, "HTTP contract", "payloads per request").status == capacity.FAIL
    assert check(rows, "HTTP contract", "request body").need == len(COLLECTION_JSON) + 10 * 1_001 - 1


# --- the front door, by kind --------------------------------------------------------------------------------
def test_rest_account_throttle_is_a_quota_and_the_key_throttle_is_config() -> None:
    # Given 1.2 M requests/min = 20,000 rps against the default key throttle of 1,000 rps
    rows = stage(capacity.front_door_checks, 1_200_000)
    account = check(rows, "API Gateway", "account throttle")
    key = check(rows, "API Gateway", "per-key")
    # Then the account's 10,000 rps needs a quota increase (to 20,000 x 1.2), the key's 1,000 is a ✗
    assert (account.need, account.limit, account.status, account.request) == (20_000, 10_000, capacity.QUOTA, 24_000)
    assert (key.need, key.limit, key.status) == (20_000, 1_000, capacity.FAIL)


def test_a_burst_above_the_accounts_is_a_hard_limit_not_a_quota_to_request() -> None:
    assert check(stage(capacity.front_door_checks, 60), "API Gateway", "account burst").status == capacity.OK
    rows = stage(capacity.front_door_checks, 60, THROTTLE_BURST_LIMIT=8_000, STAGE_THROTTLE_BURST_LIMIT=8_000)
    burst = check(rows, "API Gateway", "account burst")
    assert (burst.need, burst.kind, burst.status) == (8_000, "hard", capacity.FAIL)
    assert "apigw-burst" not in capacity.QUOTAS  # AWS sets it from the rate quota; no one can request it


def test_without_api_keys_the_rest_stage_throttle_is_throttle_rate_limit() -> None:
    rows = stage(capacity.front_door_checks, 120_000, REQUIRE_API_KEY=False, THROTTLE_RATE_LIMIT=1_500)  # 2,000 rps
    stage_row = check(rows, "API Gateway", "stage throttle")
    assert (stage_row.need, stage_row.limit, stage_row.source, stage_row.status) == (
        2_000,
        1_500,
        "THROTTLE_RATE_LIMIT",
        capacity.FAIL,
    )
    assert not [c for c in rows if c.item.startswith("per-key")]


def test_the_http_api_judges_its_stage_and_route_throttles_and_shares_the_account_quota() -> None:
    knobs = dict(API_KIND="http", DEVICE_AUTH="on", THROTTLE_RATE_LIMIT=1_500, STAGE_THROTTLE_RATE_LIMIT=5_000)
    rows = stage(capacity.front_door_checks, 120_000, **knobs)  # 2,000 rps
    assert check(rows, "API Gateway", "HTTP API stage throttle").status == capacity.OK
    route = check(rows, "API Gateway", "HTTP API payloads route")
    assert (route.limit, route.source, route.status) == (1_500, "THROTTLE_RATE_LIMIT", capacity.FAIL)
    assert check(rows, "API Gateway", "account throttle (REST and HTTP APIs)").quota == "apigw-rate"
    assert not [c for c in rows if c.item.startswith("per-key")]  # no API keys on an HTTP API


# --- Lambda -------------------------------------------------------------------------------------------------
def test_ingest_concurrency_is_rate_times_duration() -> None:
    # 60,000 requests/min = 1,000 rps x 10 ms = 10 concurrent executions
    assert check(stage(capacity.ingest_checks, 60_000), "Ingest Lambda", "concurrency").need == pytest.approx(10)


def test_the_ingests_reservation_must_hold_a_slow_send_and_ten_requests_per_environment() -> None:
    # 1,000 rps; CPU (bench P1) x 1769/512; SendMessageBatch slowed to 100 ms: ~102 executions
    config, load = PipelineConfig(INGEST_RESERVED_CONCURRENCY=150), Load(60_000, 10, 1_000)
    shaped = flow_of(config, load, Assumptions(slow_sqs_send_ms=100))
    rows = capacity.ingest_checks(config, load, shaped)
    slow = check(rows, "Ingest Lambda", "reserved concurrency holds a slow")
    cpu = MEASURED.ingest_cpu_ms * 1769 / 512
    assert (slow.need, slow.limit, slow.status) == (pytest.approx(1_000 * (cpu + 100) / 1000), 150, "✓")
    assert "up to 148 ms" in slow.note  # 150 executions / 1,000 rps = 150 ms, less the CPU
    per_environment = check(rows, "Ingest Lambda", "reserved concurrency x 10")
    assert (per_environment.need, per_environment.limit) == (1_000, 1_500)
    small = capacity.ingest_checks(PipelineConfig(INGEST_RESERVED_CONCURRENCY=90), load, shaped)
    assert {c.status for c in small if "reserved" in c.item} == {capacity.FAIL}


def test_the_account_holds_the_ingest_the_consumers_worst_case_and_the_unreserved_100() -> None:
    # 1,000 rps x 10 ms = 10 (+20 %) + MAX_WORKERS 950 reserved + 100 unreserved = 1,062 > 1,000
    account = check(stage(capacity.lambda_account_checks, 60_000, MAX_WORKERS=950), "Lambda account", "concurrency")
    assert (account.need, account.status) == (pytest.approx(1_062), capacity.QUOTA)
    assert check(stage(capacity.lambda_account_checks, 60_000, MAX_WORKERS=800), "Lambda account", "conc").ok


def test_an_unreserved_consumer_counts_at_what_its_pollers_can_drive() -> None:
    # Given provisioned pollers and no reservation: an S3 slowdown lets the consumer take 10 x MAX_POLLERS
    knobs = dict(OBJECT_MODE="batch", PROVISIONED_POLLERS=True, MAX_POLLERS=150, RESERVED_CONCURRENCY="off")
    account = check(stage(capacity.lambda_account_checks, 60_000, **knobs), "Lambda account", "concurrency")
    # Then the account must hold 12 + 1,500 + 100, or the consumer can starve the ingest
    assert account.need == pytest.approx(12 + 1_500 + 100)
    assert "worst case 1,500 (unreserved)" in account.item
    # With the ingest reserved, its reservation counts instead of its need
    reserved = stage(capacity.lambda_account_checks, 60_000, INGEST_RESERVED_CONCURRENCY=200, **knobs)
    assert check(reserved, "Lambda account", "concurrency").need == 200 + 1_500 + 100


def test_invocation_rate_is_capped_at_ten_times_the_concurrency_quota() -> None:
    # 12,000 rps + 120,000 messages/s / 100 per batch = 13,200 invocations/s > 10 x 1,000
    invocations = check(stage(capacity.lambda_account_checks, 720_000), "Lambda account", "invocations")
    assert (invocations.need, invocations.limit) == (pytest.approx(13_200), 10_000)
    assert invocations.status == capacity.QUOTA and invocations.request >= 13_200 * 1.2 / 10


# --- SQS ----------------------------------------------------------------------------------------------------
def test_in_flight_is_judged_against_the_quota_and_the_alarm() -> None:
    # 6,000 messages/s x (0.5 + 0.2) s + 1 % failing held 10 s
    rows = capacity.sqs_checks(
        PipelineConfig(),
        load := Load(36_000, 10, 1_000, 0.01),
        flow_of(PipelineConfig(), load, ASSUME),
    )
    in_flight = check(rows, "SQS", "in flight")
    assert in_flight.need == pytest.approx(6_000 * 0.7 + 6_000 * 0.01 * 10)
    assert in_flight.limit == 120_000 and in_flight.source.startswith("SQS_IN_FLIGHT_LIMIT")
    assert check(rows, "SQS", "in-flight alarm").limit == 96_000


def test_a_failure_rate_that_overfills_the_in_flight_cap_is_not_carried() -> None:
    # 6,000 messages/s x 12 % x 181 s = 130,320 > 120,000 (a retry delay as long as the visibility timeout)
    result = assess(
        36_000, failure_rate=0.12, MAX_WORKERS=300, OBJECT_MODE="batch", MAX_QUEUE=1_000_000, RETRY_BASE_SECONDS=180
    )
    assert check(result, "SQS", "in flight").status == capacity.FAIL
    assert result.exit_code == 1


def test_a_granted_in_flight_quota_is_a_support_case() -> None:
    raised = assess(60_000, SQS_IN_FLIGHT_LIMIT=240_000)
    assert raised.quota_increases["sqs-in-flight"] == 240_000
    assert capacity.QUOTA_VIA["sqs-in-flight"] == "support-case"
    assert "sqs-in-flight" not in assess(60_000).quota_increases


# --- event source mapping and consumer ----------------------------------------------------------------------
def test_standard_mode_carries_max_workers_times_batch_over_duration() -> None:
    # 10 workers x 100 messages / 200 ms = 5,000 messages/s
    rows = stage(capacity.event_source_checks, 60_000)
    assert check(rows, "Event source mapping", "messages/s").limit == pytest.approx(5_000)


def test_provisioned_pollers_are_bounded_by_ten_polls_of_ten_messages() -> None:
    # 1,000 B messages: 1 MB/s would allow 1,000/s, 10 invokes x 100 / 200 ms = 5,000/s; 10 polls x 10 = 100/s binds
    knobs = dict(OBJECT_MODE="batch", PROVISIONED_POLLERS=True, MIN_POLLERS=2, MAX_POLLERS=10)
    esm = check(stage(capacity.event_source_checks, 60_000, **knobs), "Event source mapping", "messages/s")
    assert (esm.limit, esm.status, esm.note) == (pytest.approx(10 * 100), capacity.FAIL, "100 pollers needed")


def test_a_batch_above_6_mb_is_a_named_risk() -> None:
    # 100 KB messages take ~108.5 KB each in the event (escaped body + the record's fields): BATCH_SIZE 100 would
    # be ~10.9 MB; the mapping closes batches at 6 MB instead, 55 records
    config = PipelineConfig(MAX_PAYLOAD_BYTES=200_000, MAX_BODY_BYTES=2_000_000)
    load = Load(600, 10, 100_000)
    rows = capacity.event_source_checks(config, load, flow_of(config, load, ASSUME))
    event = check(rows, "Event source mapping", "one invocation's event")
    assert event.status == capacity.WARN and event.need > 6_000_000
    assert "batches close at 55 records" in event.note


def test_the_batch_fill_time_is_the_latency_a_payload_adds() -> None:
    rows = stage(capacity.event_source_checks, 60_000)  # standard mode: a full batch over the 1 s window
    fill = check(rows, "Event source mapping", "a batch of 100 messages")
    assert (fill.need, fill.limit, fill.kind) == (1.0, 1, "info")
    assert "waits up to 1.2 s" in fill.note  # 1 s + 200 ms


def test_consumer_concurrency_is_batches_per_second_times_duration() -> None:
    # 10,000 messages/s / 100 = 100 batches/s x 200 ms = 20 executions against MAX_WORKERS 10
    consumer = check(stage(capacity.consumer_checks, 60_000), "Consumer Lambda", "concurrency")
    assert (consumer.need, consumer.limit, consumer.status) == (pytest.approx(20), 10, capacity.FAIL)


# --- S3 and the backlog -------------------------------------------------------------------------------------
def test_payload_mode_above_a_fresh_prefix_rate_is_not_carried_and_says_use_batch_mode() -> None:
    # 30,000 requests/min x 10 = 5,000 payloads/s = 5,000 PUT/s > 3,500 in one fresh hour= prefix
    rows = stage(capacity.s3_checks, 30_000)
    payload = check(rows, "S3", "PUT/s into a fresh hour= prefix, OBJECT_MODE=payload")
    batch = check(rows, "S3", "PUT/s into a fresh hour= prefix, OBJECT_MODE=batch")
    assert (payload.need, payload.status) == (pytest.approx(5_000), capacity.FAIL)
    assert "use OBJECT_MODE=batch" in payload.note and "21,000 requests/min" in payload.note
    assert (batch.need, batch.kind) == (pytest.approx(50), "info")  # shown, not judged
    assert capacity.payload_mode_max_rpm(10) == 21_000


def test_max_queue_backlog_drains_at_the_spare_capacity() -> None:
    # batch mode, 10 workers x 100 / 200 ms = 5,000 messages/s; load 1,000/s; MAX_QUEUE 1 M plus one 5 s check
    # interval of overshoot (5,000) drains in 1,005,000 / 4,000 s
    drain = check(stage(capacity.backlog_checks, 6_000, OBJECT_MODE="batch", MAX_QUEUE=1_000_000), "Backlog", "drain")
    assert drain.need == pytest.approx(1_005_000 / 4_000)
    assert drain.limit == 4 * 86_400 and drain.status == capacity.OK


def test_without_max_queue_a_backlog_is_a_named_risk_or_a_failure() -> None:
    assert check(stage(capacity.backlog_checks, 600), "Backlog", "MAX_QUEUE off").status == capacity.WARN
    assert check(stage(capacity.backlog_checks, 600_000), "Backlog", "MAX_QUEUE off").status == capacity.FAIL


def test_the_binding_stage_is_one_whose_need_grows_with_the_load() -> None:
    binding = assess(600).binding
    assert "burst" not in binding.item and binding.scales


# --- the command: text, JSON, markdown, exit codes ----------------------------------------------------------
def test_dev_profile_fails_the_seed_load_naming_the_binding_stage(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(SEED, environ={})
    printed = capsys.readouterr().out
    assert code == 1
    assert "binding stage: S3, PUT/s into a fresh hour= prefix, OBJECT_MODE=payload" in printed
    assert "NOT carried by this configuration" in printed and "THROTTLE_RATE_LIMIT" in printed


def test_the_seed_load_on_the_scale_profile_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    # issue 18's "done when": carried, no support case, a priced pollers line, <= $0.20 per million (HTTP API)
    code, document = seed_json(capsys, PROFILE="scale")
    assert code == 0 and document["carried"] is True and document["exit_code"] == 0
    assert document["api_kind"] == "http" and document["profile"] == "scale"
    assert [q["via"] for q in document["quota_increases"]] == ["service-quotas", "service-quotas"]
    assert {q["quota"]: q["figure"] for q in document["quota_increases"]} == {
        "apigw-rate": 20_000,
        "lambda-concurrency": 5_000,
    }
    [pollers] = [line for line in document["cost"]["lines"] if line["service"] == "Lambda pollers"]
    assert pollers["usd_per_month"] > 1_000
    assert document["usd_per_million_payloads"] <= 0.20
    assert round(document["usd_per_million_payloads"], 3) == 0.192  # drifts only with a model or price change


@pytest.mark.parametrize("device_auth", ["off", "on"])
def test_the_seed_load_with_the_rest_front_door(capsys: pytest.CaptureFixture[str], device_auth: str) -> None:
    code, document = seed_json(capsys, PROFILE="scale", API_KIND="rest", DEVICE_AUTH=device_auth)
    assert code == 0 and document["carried"] is True
    assert "support-case" not in [q["via"] for q in document["quota_increases"]]
    assert document["usd_per_million_payloads"] <= 0.30
    assert round(document["usd_per_million_payloads"], 2) == 0.30  # 0.296 and 0.297: drifts only with a change


def test_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    _, document = seed_json(capsys, PROFILE="scale")
    assert set(document) == {
        "schema",
        "profile",
        "api_kind",
        "object_mode",
        "load",
        "carried",
        "exit_code",
        "binding",
        "binding_check",
        "checks",
        "quota_increases",
        "cost",
        "payloads_per_month",
        "usd_per_million_payloads",
        "flow",
        "lake",
    }
    assert document["schema"] == 1
    assert document["binding"] == document["binding_check"]["stage"] == "Lambda account"
    check_fields = {"stage", "item", "status", "kind", "need", "limit", "unit", "source", "quota", "note"}
    assert all(set(row) == check_fields for row in document["checks"])
    assert {row["kind"] for row in document["checks"]} <= {"config", "quota", "hard", "info"}
    assert all(set(q) == {"quota", "name", "figure", "via"} for q in document["quota_increases"])
    line_fields = {"service", "item", "quantity", "unit", "usd_per_month"}
    assert all(set(line) == line_fields for line in document["cost"]["lines"])
    total = sum(line["usd_per_month"] for line in document["cost"]["lines"])
    assert document["cost"]["total_usd_per_month"] == pytest.approx(total)
    assert document["payloads_per_month"] == pytest.approx(432_000_000_000)
    assert document["usd_per_million_payloads"] == pytest.approx(total / 432_000)
    # JSON has no infinity: an unbounded limit is null
    assert None in [row["limit"] for row in document["checks"]]
    assert set(document["lake"]) == {
        "compaction_usd_per_month",
        "compacted_objects_per_hour",
        "athena_tb_per_run",
        "query_usd",
    }
    assert set(document["flow"]) >= {"messages_per_request", "pollers", "batch_payloads", "in_flight", "latency_s"}


def test_a_knob_overrides_the_profile_in_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--rpm", "1000000"], environ={"PROFILE": "scale", "OBJECT_MODE": "payload"})
    assert code == 1
    assert "use OBJECT_MODE=batch" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--rpm", "-5"], {}),
        (["--rpm", "nan"], {}),
        (["--rpm", "1000", "--payload-bytes", "1"], {}),
        (["--rpm", "inf"], {}),
        (["--rpm", "1000", "--failure-rate", "1.5"], {}),
        (["--payloads", "10"], {}),
        (["--rpm", "1000", "--format", "yaml"], {}),
        (["--rpm", "1000"], {"PROFILE": "huge"}),
        (["--rpm", "1000"], {"MAX_WORKERS": "many"}),
    ],
)
def test_bad_arguments_or_knobs_exit_2(
    argv: list[str], environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv, environ=environ) == 2
    captured = capsys.readouterr()
    assert captured.err and not captured.out


def test_markdown_is_the_committed_doc_and_the_old_flag_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--format", "markdown"]) == 0
    by_format = capsys.readouterr().out
    assert cli.main(["--markdown"]) == 0
    assert capsys.readouterr().out == by_format
    assert DOC.read_text() == by_format == capacity_doc.render_markdown(), (
        "docs/CAPACITY.md is stale: python -m tools.models.capacity --format markdown > docs/CAPACITY.md"
    )


# --- the scale profile, as the model sizes it ---------------------------------------------------------------
@pytest.fixture(scope="module")
def scale() -> capacity.Assessment:
    return capacity.assess(capacity.resolve_config({"PROFILE": "scale"}), load_of(*capacity.SEED))


def test_the_scale_profile_packs_pollers_and_reservations_as_the_model_sizes_them(scale: capacity.Assessment) -> None:
    config, shaped = scale.config, scale.flow
    assert config.MESSAGE_TARGET_BYTES == 65_536 and shaped.layout.messages_per_request == 1
    assert config.MAX_POLLERS == capacity.pollers_for(shaped) <= 2_000  # what CloudFormation deploys
    assert config.INGEST_RESERVED_CONCURRENCY == capacity.ingest_reservation_for(shaped)
    assert config.RESERVED_CONCURRENCY == "on" and config.consumer_reserved_concurrency == 10 * config.MAX_POLLERS


def test_the_scale_profiles_batch_objects_are_sized_for_s3(scale: capacity.Assessment) -> None:
    shaped = scale.flow
    assert shaped.payloads_per_object >= 1_000  # issue 18 §2
    [put] = [line for line in scale.lines if line.service == "S3" and line.item.startswith("PUT")]
    assert put.usd <= 2_500
    assert scale.config.BATCH_SIZE * shaped.record_bytes <= 6_000_000  # one invocation's event, records counted
    assert shaped.fill_s < scale.config.MAX_BATCHING_WINDOW_SECONDS  # batches close full at the seed load


def test_the_scale_profile_stays_under_the_in_flight_alarm_of_the_default_quota(scale: capacity.Assessment) -> None:
    assert scale.config.SQS_IN_FLIGHT_LIMIT == SQS_IN_FLIGHT_DEFAULT_QUOTA
    assert "SQS_IN_FLIGHT_LIMIT" not in PROFILES["scale"]
    assert scale.flow.in_flight_ok < scale.config.in_flight_alarm_threshold
    assert "sqs-in-flight" not in scale.quota_increases


def test_the_scale_profile_keeps_the_ingest_safe_from_the_consumer(scale: capacity.Assessment) -> None:
    # the quota requested holds the ingest's reservation, the consumer's worst case and the 100 unreserved
    config = scale.config
    assert scale.quota_increases["lambda-concurrency"] >= (
        config.INGEST_RESERVED_CONCURRENCY + 10 * config.MAX_POLLERS + 100
    )
    assert check(scale, "Ingest Lambda", "reserved concurrency holds a slow").ok


def test_the_dev_profile_is_unchanged_by_the_scale_work() -> None:
    assert PROFILES["dev"] == {}
    dev = capacity.resolve_config({"PROFILE": "dev"})
    assert (dev.MESSAGE_TARGET_BYTES, dev.API_KIND, dev.OBJECT_MODE, dev.LOG_LEVEL) == (0, "rest", "payload", "INFO")


def test_dev_carries_payload_mode_up_to_the_fresh_prefix_rate() -> None:
    ceiling = capacity.max_carried_rpm(capacity.resolve_config({}), 10, 1024)
    assert 21_000 * 0.97 <= ceiling <= 21_000


# --- the docs quote the tools -------------------------------------------------------------------------------
def _cost_per_million(environ: dict[str, str], object_mode: str) -> float:
    config = PipelineConfig.resolve({}, environ={**environ, "OBJECT_MODE": object_mode})
    load = load_of(*capacity.SEED)
    lines = cost.monthly_lines(config, load)
    return cost.total(lines) / load.payloads_per_month * 1e6


@pytest.mark.parametrize("doc", ["docs/PERFORMANCE.md", "docs/HOW_IT_WORKS.md"])
def test_the_cost_figures_in_the_docs_are_the_tools(doc: str) -> None:
    text = (ROOT / doc).read_text()
    rest = {"PROFILE": "scale", "API_KIND": "rest", "DEVICE_AUTH": "off"}
    figures = {  # per million payloads at the seed load: the scale profile to the tenth of a cent
        "scale, HTTP API": f"${_cost_per_million({'PROFILE': 'scale'}, 'batch'):.3f}",
        "scale, REST": f"${_cost_per_million(rest, 'batch'):.3f}",
        "dev, payload mode": f"${_cost_per_million({}, 'payload'):.2f}",
        "dev, batch mode": f"${_cost_per_million({}, 'batch'):.2f}",
    }
    for name, quoted in figures.items():
        assert quoted in text, f"{doc} should quote {name}: {quoted} per million payloads"


# --- one compaction run (issue 26, item 8) -------------------------------------------------------------------------
def test_a_compaction_run_at_the_seed_load_ranks_its_hour_and_joins_no_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the seed load on PROFILE=scale
    code, document = seed_json(capsys, PROFILE="scale")
    rows = {check["item"]: check for check in document["checks"] if check["stage"] == "Compaction run"}
    # Then one run ranks the hour's 600 M payloads, scans the raw hour only and joins no other hour's ids
    # (the lookback join it replaced held 28.8 billion)
    assert rows["rows ranked by id in one run"]["need"] == pytest.approx(600_000_000)
    assert rows["ids joined from other hours (own hour only)"]["need"] == 0
    assert "28,800,000,000 ids" in rows["ids joined from other hours (own hour only)"]["note"]
    config = capacity.resolve_config({"PROFILE": "scale"})
    flow = flow_of(config, Load(1_000_000, 10, 1024), Assumptions())
    scanned_gb = cost.athena_bytes_per_compaction(config, flow) / prices.GB
    assert rows["raw hour scanned by one run (GB)"]["need"] == pytest.approx(scanned_gb)
    # And its run time, an estimate at an assumed rate, warns against Athena's 30-minute DML timeout without
    # failing the verdict or becoming the binding stage
    [run_time] = [check for item, check in rows.items() if item.startswith("run time")]
    assert run_time["status"] == capacity.WARN and run_time["limit"] == 30
    assert "no AWS source" in run_time["note"]
    assert code == 0 and "Compaction run" not in document["binding"]


def test_the_run_time_estimate_warns_only_past_half_the_timeout() -> None:
    # At 1/20 of the seed load an hour is 30 M payloads: ~5 minutes at the assumed rate, no warning
    [run_time] = [c for c in stage(capacity.compaction_run_checks, 50_000) if c.item.startswith("run time")]
    assert run_time.need < 15 and run_time.status == capacity.OK
    assert stage(capacity.compaction_run_checks, 50_000, COMPACTION="off") == []
