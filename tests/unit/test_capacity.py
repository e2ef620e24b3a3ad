"""tools.models.capacity: each stage's arithmetic by hand, the verdict and exit codes, and docs/CAPACITY.md in sync.

AWS figures used below (the module cites each page): API Gateway 10,000 rps / 5,000 burst per account
and Region; Lambda 1,000 concurrent executions, 10 x that in invocations/s, 100 kept unreserved; SQS
~120,000 messages in flight per standard queue, <= 10 per receive; a provisioned poller <= 10 polls/s,
1 MB/s, 10 concurrent invokes; S3 3,500 PUT/s per (fresh) prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.config import PipelineConfig
from tools.models import capacity, cost

DOC = Path(__file__).resolve().parents[2] / "docs" / "CAPACITY.md"
# Explicit durations so the hand computations do not move when the measured defaults are refreshed.
ASSUME = cost.Assumptions(ingest_ms=10.0, consumer_ms_payload_mode=200.0, consumer_ms_batch_mode=50.0)


def assess(rpm: float, *, payloads: int = 10, failure_rate: float = 0.0, **knobs: Any) -> capacity.Assessment:
    load = capacity.Load(rpm, payloads, 1_000, failure_rate, message_bytes=1_000)
    return capacity.assess(PipelineConfig(**knobs), load, ASSUME)


def check(assessment: capacity.Assessment, stage: str, starts: str) -> capacity.Check:
    [found] = [c for c in assessment.checks if c.stage == stage and c.item.startswith(starts)]
    return found


# --- API Gateway ----------------------------------------------------------------------------------


def test_api_gateway_account_throttle_is_a_quota_and_the_key_throttle_is_config() -> None:
    # Given 1.2 M requests/min = 20,000 rps against the default key throttle of 1,000 rps
    result = assess(1_200_000)
    account = check(result, "API Gateway", "account throttle")
    key = check(result, "API Gateway", "per-key")
    # Then the account's 10,000 rps needs a quota increase (to 20,000 x 1.2), the key's 1,000 is a ✗
    assert (account.need, account.limit, account.status, account.request) == (20_000, 10_000, capacity.QUOTA, 24_000)
    assert (key.need, key.limit, key.status) == (20_000, 1_000, capacity.FAIL)


def test_account_burst_must_cover_the_configured_burst() -> None:
    assert check(assess(60), "API Gateway", "account burst").status == capacity.OK  # 2,000 <= 5,000
    burst = check(
        assess(60, THROTTLE_BURST_LIMIT=8_000, STAGE_THROTTLE_BURST_LIMIT=8_000), "API Gateway", "account burst"
    )
    assert (burst.need, burst.status, burst.request) == (8_000, capacity.QUOTA, 10_000)  # 8,000 x 1.2, rounded up


def test_without_api_keys_the_stage_throttle_is_judged() -> None:
    result = assess(120_000, REQUIRE_API_KEY=False, THROTTLE_RATE_LIMIT=1_500)  # 2,000 rps
    stage = check(result, "API Gateway", "stage throttle")
    assert (stage.need, stage.limit, stage.status) == (2_000, 1_500, capacity.FAIL)
    assert not [c for c in result.checks if c.item.startswith("per-key")]


# --- Lambda ---------------------------------------------------------------------------------------


def test_ingest_concurrency_is_rate_times_duration() -> None:
    # 60,000 requests/min = 1,000 rps x 10 ms = 10 concurrent executions
    assert check(assess(60_000), "Ingest Lambda", "concurrency").need == pytest.approx(10)


def test_account_concurrency_holds_ingest_reserved_and_the_unreserved_100() -> None:
    # 1,000 rps x 10 ms = 10, + MAX_WORKERS 950 reserved + 100 unreserved = 1,060 > 1,000
    account = check(assess(60_000, MAX_WORKERS=950), "Lambda account", "concurrency")
    assert account.need == pytest.approx(1_060)
    assert account.status == capacity.QUOTA
    assert check(assess(60_000, MAX_WORKERS=800), "Lambda account", "concurrency").status == capacity.OK


def test_invocation_rate_is_capped_at_ten_times_the_concurrency_quota() -> None:
    # 12,000 rps + 120,000 messages/s / 100 per batch = 13,200 invocations/s > 10 x 1,000
    invocations = check(assess(720_000), "Lambda account", "invocations")
    assert (invocations.need, invocations.limit) == (pytest.approx(13_200), 10_000)
    assert invocations.status == capacity.QUOTA
    assert invocations.request >= 13_200 / 10  # the concurrency quota that lifts it


def test_without_a_reservation_the_account_holds_the_consumers_actual_concurrency() -> None:
    load = capacity.Load(60_000, 10, 1_000, message_bytes=1_000)
    # 1,000 rps x 10 ms + 100 batches/s x 200 ms x 1.2 + 100 = 10 + 24 + 100
    off = capacity.assess(PipelineConfig(RESERVED_CONCURRENCY="off", MAX_WORKERS=950), load, ASSUME)
    assert check(off, "Lambda account", "concurrency").need == pytest.approx(134)
    on = capacity.assess(PipelineConfig(MAX_WORKERS=950), load, ASSUME)
    assert check(on, "Lambda account", "concurrency").need == pytest.approx(1_060)


def test_a_stage_throttle_knob_is_judged_with_its_name() -> None:
    load = capacity.Load(600_000, 10, 1_000, message_bytes=1_000)  # 10,000 rps
    stage = check(capacity.assess(PipelineConfig(), load, ASSUME), "API Gateway", "stage throttle")
    assert (stage.need, stage.limit, stage.source, stage.status) == (
        10_000,
        5_000,
        "STAGE_THROTTLE_RATE_LIMIT",
        capacity.FAIL,
    )


# --- SQS ------------------------------------------------------------------------------------------


def test_in_flight_is_batching_plus_processing_plus_failures_times_their_retry_delay() -> None:
    # Given 6,000 messages/s, standard mode (a batch fills for the whole 1 s window), payload mode 200 ms,
    # and 1 % failing once: a failed record is back after its first retry delay, RETRY_BASE_SECONDS = 10 s
    in_flight = check(assess(36_000, failure_rate=0.01), "SQS", "in flight")
    # Then 6,000 x (0.5 + 0.2) + 6,000 x 0.01 x 10
    assert in_flight.need == pytest.approx(6_000 * 0.7 + 6_000 * 0.01 * 10)
    assert in_flight.limit == 120_000 and in_flight.source.startswith("SQS_IN_FLIGHT_LIMIT")


def test_a_failure_rate_that_overfills_the_in_flight_cap_is_not_carried() -> None:
    # 6,000 messages/s x 12 % x 181 s = 130,320 > 120,000 (a retry delay as long as the visibility timeout)
    result = assess(
        36_000, failure_rate=0.12, MAX_WORKERS=300, OBJECT_MODE="batch", MAX_QUEUE=1_000_000, RETRY_BASE_SECONDS=180
    )
    assert check(result, "SQS", "in flight").status == capacity.FAIL
    assert result.exit_code == 1


# --- event source mapping and consumer ------------------------------------------------------------


def test_standard_mode_carries_max_workers_times_batch_over_duration() -> None:
    # batch mode: 10 workers x 100 messages / 50 ms = 20,000 messages/s
    esm = check(assess(60_000, OBJECT_MODE="batch"), "Event source mapping", "messages/s")
    assert esm.limit == pytest.approx(20_000)


def test_provisioned_pollers_are_bounded_by_ten_polls_of_ten_messages() -> None:
    # 1,000 B messages: 1 MB/s would allow 1,000/s, 10 invokes x 100 / 50 ms = 20,000/s; 10 polls x 10 = 100/s binds
    esm = check(
        assess(60_000, OBJECT_MODE="batch", PROVISIONED_POLLERS=True, MIN_POLLERS=2, MAX_POLLERS=10),
        "Event source mapping",
        "messages/s",
    )
    assert esm.limit == pytest.approx(10 * 100)
    assert esm.status == capacity.FAIL  # 10,000 messages/s need 100 pollers
    assert esm.note == "100 pollers needed"


def test_provisioned_batches_close_at_the_window_when_pollers_outnumber_the_load() -> None:
    # 3,000 messages/s over (at least) 200 pollers: 15 messages/s each, so a 1 s window closes batches of 15
    result = assess(18_000, OBJECT_MODE="batch", PROVISIONED_POLLERS=True, MIN_POLLERS=200, MAX_POLLERS=300)
    assert result.figures["batch"] == pytest.approx(15)
    assert result.figures["batches_per_s"] == pytest.approx(200)


def test_consumer_concurrency_is_batches_per_second_times_duration() -> None:
    # 10,000 messages/s / 100 = 100 batches/s x 200 ms = 20 executions against MAX_WORKERS 10
    consumer = check(assess(60_000), "Consumer Lambda", "concurrency")
    assert (consumer.need, consumer.limit, consumer.status) == (pytest.approx(20), 10, capacity.FAIL)


# --- S3 -------------------------------------------------------------------------------------------


def test_payload_mode_above_a_fresh_prefix_rate_is_not_carried_and_says_use_batch_mode() -> None:
    # 30,000 requests/min x 10 = 5,000 payloads/s = 5,000 PUT/s > 3,500 in one fresh hour= prefix
    result = assess(30_000, MAX_WORKERS=100)
    payload = check(result, "S3", "PUT/s into a fresh hour= prefix, OBJECT_MODE=payload")
    batch = check(result, "S3", "PUT/s into a fresh hour= prefix, OBJECT_MODE=batch")
    assert (payload.need, payload.status) == (pytest.approx(5_000), capacity.FAIL)
    assert "use OBJECT_MODE=batch" in payload.note and "21,000 requests/min" in payload.note
    # batch mode is shown, not judged, while payload mode is configured: 5,000 / 100 = 50 PUT/s
    assert (batch.need, batch.kind) == (pytest.approx(50), "info")


def test_payload_mode_carries_loads_below_the_prefix_rate() -> None:
    assert capacity.payload_mode_max_rpm(10) == 21_000  # 3,500 PUT/s / 10 payloads x 60
    result = assess(20_000, MAX_WORKERS=50)  # 3,333 PUT/s
    assert check(result, "S3", "PUT/s into a fresh hour= prefix, OBJECT_MODE=payload").status == capacity.OK


# --- backlog --------------------------------------------------------------------------------------


def test_max_queue_backlog_drains_at_the_spare_capacity() -> None:
    # batch mode, 10 workers: 20,000 messages/s capacity; load 10,000/s; MAX_QUEUE 1 M plus one 5 s check
    # interval of overshoot (50,000) drains in 1,050,000 / 10,000 = 105 s
    drain = check(assess(60_000, OBJECT_MODE="batch", MAX_QUEUE=1_000_000), "Backlog", "drain")
    assert drain.need == pytest.approx(105)
    assert drain.limit == 4 * 86_400 and drain.status == capacity.OK


def test_without_max_queue_a_backlog_is_a_named_risk_or_a_failure() -> None:
    backlog = check(assess(600, MAX_WORKERS=10), "Backlog", "MAX_QUEUE off")
    assert backlog.status == capacity.WARN and "set MAX_QUEUE" in backlog.note
    # a consumer slower than the load grows the backlog until payloads expire
    assert check(assess(600_000), "Backlog", "MAX_QUEUE off").status == capacity.FAIL


# --- verdict and the command ----------------------------------------------------------------------


def test_dev_profile_fails_the_seed_load_naming_the_binding_stage(capsys: pytest.CaptureFixture[str]) -> None:
    code = capacity.main(["--rpm", "1000000", "--payloads", "10", "--payload-bytes", "1024"], environ={})
    printed = capsys.readouterr().out
    assert code == 1
    assert "binding stage: S3, PUT/s into a fresh hour= prefix, OBJECT_MODE=payload" in printed
    assert "NOT carried by this configuration" in printed and "THROTTLE_RATE_LIMIT" in printed


def test_scale_profile_carries_the_seed_load_after_quota_increases(capsys: pytest.CaptureFixture[str]) -> None:
    code = capacity.main(
        ["--rpm", "1000000", "--payloads", "10", "--payload-bytes", "1024"], environ={"PROFILE": "scale"}
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "API Gateway: Throttle rate" in printed and "Lambda: Concurrent executions" in printed
    assert "monthly cost" in printed and "payload storage (30-day expiry)" in printed


def test_a_knob_overrides_the_profile_in_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    code = capacity.main(["--rpm", "1000000"], environ={"PROFILE": "scale", "OBJECT_MODE": "payload"})
    assert code == 1
    assert "use OBJECT_MODE=batch" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--rpm", "-5"], {}),
        (["--rpm", "1000", "--failure-rate", "1.5"], {}),
        (["--payloads", "10"], {}),
        (["--rpm", "1000"], {"PROFILE": "huge"}),
        (["--rpm", "1000"], {"MAX_WORKERS": "many"}),
    ],
)
def test_bad_arguments_or_knobs_exit_2(
    argv: list[str], environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert capacity.main(argv, environ=environ) == 2
    assert capsys.readouterr().err


def test_the_scale_profile_is_what_the_model_sizes_for_the_seed_load() -> None:
    # Given the seed load and the scale profile
    load = capacity.load_of(*capacity.SEED)
    result = capacity.assess(capacity.resolve_config({"PROFILE": "scale"}), load)
    # Then MAX_POLLERS is the pollers the per-poller limit needs, +20 % (within AWS's 2,000)
    needed = load.messages_per_second / result.figures["poller_receive"]
    assert result.config.MAX_POLLERS == min(2_000, round(needed * capacity.HEADROOM))
    # and MAX_QUEUE drains within an hour at the spare capacity
    assert check(result, "Backlog", "drain").need < 3_600


def test_committed_capacity_doc_is_the_tools_output() -> None:
    assert DOC.read_text() == capacity.render_markdown(), (
        "docs/CAPACITY.md is stale: python -m tools.models.capacity --markdown > docs/CAPACITY.md"
    )


def test_the_binding_stage_is_one_whose_need_grows_with_the_load() -> None:
    # At 10 rps nothing is close; the fixed 2,000 burst (of 5,000) must not be named as binding
    binding = assess(600).binding
    assert "burst" not in binding.item and binding.scales


def test_dev_carries_payload_mode_up_to_the_fresh_prefix_rate() -> None:
    # dev's 10 workers take 4,274 payloads/s, so S3's 3,500 PUT/s (21,000 requests/min x 10) binds first
    ceiling = capacity.max_carried_rpm(capacity.resolve_config({}), 10, 1024)
    assert 21_000 * 0.99 <= ceiling <= 21_000


def test_the_in_flight_alarm_must_stay_quiet_when_nothing_fails() -> None:
    # Given 1M requests/min x 10 in batch mode with provisioned pollers: ~93,000 in flight with no failures
    scale = dict(
        OBJECT_MODE="batch",
        PROVISIONED_POLLERS=True,
        MIN_POLLERS=200,
        MAX_POLLERS=2_000,
        CONSUMER_TIMEOUT_SECONDS=10,
        THROTTLE_RATE_LIMIT=20_000,
        THROTTLE_BURST_LIMIT=10_000,
        STAGE_THROTTLE_RATE_LIMIT=20_000,
        STAGE_THROTTLE_BURST_LIMIT=10_000,
        MAX_QUEUE=100_000_000,
    )
    # When the queue has the default ~120,000 quota, the alarm (80 %: 96,000) sits just above normal operation
    quiet = check(assess(1_000_000, **scale), "SQS", "in-flight alarm")
    assert (quiet.limit, quiet.status) == (96_000, capacity.OK) and quiet.need > 90_000
    # And a load 5 % higher would page in normal operation: a configuration failure, named
    louder = assess(1_050_000, **scale)
    assert check(louder, "SQS", "in-flight alarm").status == capacity.FAIL
    # Then a granted quota of 240,000 (SQS_IN_FLIGHT_LIMIT) moves the alarm and is listed as a support request
    raised = assess(1_000_000, SQS_IN_FLIGHT_LIMIT=240_000, **scale)
    assert check(raised, "SQS", "in-flight alarm").limit == 192_000
    assert raised.quota_increases["sqs-in-flight"] == 240_000
    assert "sqs-in-flight" not in assess(1_000_000, **scale).quota_increases
