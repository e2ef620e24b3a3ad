"""METRICS_FLUSH_SECONDS: the ingest's counts, summed in the container and written as EMF every N seconds.

Read from stdout as CloudWatch reads EMF from a Lambda log stream; the clock is a fake one.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics
from aws_lambda_powertools.metrics.exceptions import SchemaValidationError

from pipeline.contract import Metric
from pipeline.observability import EmfProvider, MetricCounts, MetricsFlushError, count_blob, flush_seconds_from

NAMESPACE = "CountsTest"


class Clock:
    """Monotonic seconds; ``wall`` is the same instant as epoch seconds (EMF timestamps must be recent)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.epoch = time.time() - self.now

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.epoch + self.now


def blobs(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]


def totals(stdout: str) -> Counter[tuple[str, str | None]]:
    """Every EMF value on stdout summed by (metric, reason), checking each blob's namespace and dimensions."""
    summed: Counter[tuple[str, str | None]] = Counter()
    for blob in blobs(stdout):
        [directive] = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        dimensions = {name for names in directive["Dimensions"] for name in names}
        assert {"service", "stage"} <= dimensions and (blob["service"], blob["stage"]) == ("ingest", "dev")
        reason = blob.get("reason")
        assert ("reason" in dimensions) == (reason is not None)
        for metric in directive["Metrics"]:
            assert metric["Unit"] == "Count"
            values = blob[metric["Name"]]
            summed[(metric["Name"], reason)] += sum(values) if isinstance(values, list) else values
    return summed


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> EphemeralMetrics:
    # Powertools' Metrics objects share their metric set; an EphemeralMetrics keeps this test's to itself.
    own = EphemeralMetrics(namespace=NAMESPACE, service="ingest")
    own.set_default_dimensions(stage="dev")
    return own


def handler_counting(counts: MetricCounts, *adds: tuple[str, float, str | None]) -> Any:
    @counts.log_metrics
    def handler(event: dict[str, Any], context: Any) -> str:
        for name, value, reason in adds:
            counts.add(name, value, reason=reason)
        return "answered"

    return handler


def test_counts_are_summed_and_written_once_their_window_is_n_seconds_old(
    metrics: EphemeralMetrics, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given METRICS_FLUSH_SECONDS=10 and requests of 3 and 5 payloads, and one rejected as too large
    counts = MetricCounts(metrics, 10, clock=clock, wall_clock=clock.wall)
    accepted = [(Metric.REQUESTS_ACCEPTED, 1, None), (Metric.PAYLOADS_ACCEPTED, 3, None)]
    capsys.readouterr()
    assert handler_counting(counts, *accepted)({}, None) == "answered"
    clock.now += 4
    handler_counting(counts, (Metric.REQUESTS_ACCEPTED, 1, None), (Metric.PAYLOADS_ACCEPTED, 5, None))({}, None)
    handler_counting(counts, (Metric.REQUESTS_REJECTED, 1, "too-large"))({}, None)
    # Then nothing is written before the window is 10 s old
    assert blobs(capsys.readouterr().out) == []

    last_count = clock.wall()

    # When the next request comes 10 s after the window opened
    clock.now += 6
    handler_counting(counts, (Metric.REQUESTS_REJECTED, 1, "invalid"))({}, None)

    # Then the window's sums are written first, one value per metric, each rejection reason in a blob of its
    # own, stamped with the time of the window's last count; the new request opens the next window
    out = capsys.readouterr().out
    assert totals(out) == {
        (Metric.REQUESTS_ACCEPTED, None): 2,
        (Metric.PAYLOADS_ACCEPTED, None): 8,
        (Metric.REQUESTS_REJECTED, "too-large"): 1,
    }
    assert all(
        not isinstance(blob[m["Name"]], list) or len(blob[m["Name"]]) == 1
        for blob in blobs(out)
        for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    )
    assert {blob["_aws"]["Timestamp"] for blob in blobs(out)} == {int(last_count * 1000)}
    # And that window is written when it is 10 s old, at the end of a request
    clock.now += 10
    handler_counting(counts)({}, None)
    assert totals(capsys.readouterr().out) == {(Metric.REQUESTS_REJECTED, "invalid"): 1}


def test_nothing_is_written_twice_and_the_next_window_starts_empty(
    metrics: EphemeralMetrics, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = MetricCounts(metrics, 5, clock=clock, wall_clock=clock.wall)
    handler = handler_counting(counts, (Metric.REQUESTS_ACCEPTED, 1, None), (Metric.PAYLOADS_ACCEPTED, 2, None))
    capsys.readouterr()
    written: Counter[tuple[str, str | None]] = Counter()
    flushes = 0
    # 40 requests, one a second, then a quiet spell long enough for anything left to be written
    for _ in range(40):
        handler({}, None)
        out = capsys.readouterr().out
        written += totals(out)
        flushes += len(blobs(out))
        clock.now += 1
    clock.now += 60
    handler_counting(counts)({}, None)
    out = capsys.readouterr().out
    written += totals(out)
    flushes += len(blobs(out))
    # every count written exactly once, in 5-second windows: 8 blobs, not one per request
    assert written == {(Metric.REQUESTS_ACCEPTED, None): 40, (Metric.PAYLOADS_ACCEPTED, None): 80}
    assert flushes == 8


def test_after_an_idle_spell_the_old_window_goes_out_under_its_own_time_before_the_new_count(
    metrics: EphemeralMetrics, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = MetricCounts(metrics, 30, clock=clock, wall_clock=clock.wall)
    capsys.readouterr()
    handler_counting(counts, (Metric.REQUESTS_ACCEPTED, 1, None))({}, None)
    first = clock.wall()
    clock.now += 600  # the container sat idle for 10 minutes
    handler_counting(counts, (Metric.REQUESTS_ACCEPTED, 1, None))({}, None)
    [old] = blobs(capsys.readouterr().out)
    assert (old[Metric.REQUESTS_ACCEPTED], old["_aws"]["Timestamp"]) == ([1.0], int(first * 1000))
    clock.now += 30
    handler_counting(counts)({}, None)
    [new] = blobs(capsys.readouterr().out)
    assert new[Metric.REQUESTS_ACCEPTED] == [1.0] and new["_aws"]["Timestamp"] == int((first + 600) * 1000)


def test_zero_keeps_one_blob_per_invocation_with_one_value_per_request(
    metrics: EphemeralMetrics, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = MetricCounts(metrics, 0, clock=clock)
    handler = handler_counting(counts, (Metric.REQUESTS_ACCEPTED, 1, None), (Metric.PAYLOADS_ACCEPTED, 4, None))
    capsys.readouterr()
    handler({}, None)
    handler({}, None)
    handler_counting(counts, (Metric.REQUESTS_REJECTED, 1, "route"))({}, None)
    out = blobs(capsys.readouterr().out)
    assert [(b.get(Metric.REQUESTS_ACCEPTED), b.get(Metric.PAYLOADS_ACCEPTED)) for b in out[:2]] == [
        ([1.0], [4.0]),
        ([1.0], [4.0]),
    ]
    assert out[2]["reason"] == "route" and Metric.REQUESTS_ACCEPTED not in out[2]


def test_a_failing_handler_still_counts_and_raises(
    metrics: EphemeralMetrics, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = MetricCounts(metrics, 1, clock=clock, wall_clock=clock.wall)

    @counts.log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        counts.add(Metric.ENQUEUE_FAILURES, 3)
        clock.now += 1
        raise RuntimeError("boom")

    capsys.readouterr()
    with pytest.raises(RuntimeError):
        handler({}, None)
    assert totals(capsys.readouterr().out) == {(Metric.ENQUEUE_FAILURES, None): 3}


@pytest.mark.parametrize(("raw", "expected"), [({}, 0), ({"METRICS_FLUSH_SECONDS": "60"}, 60)])
def test_the_interval_comes_from_the_environment_the_stack_sets(raw: dict[str, str], expected: int) -> None:
    assert flush_seconds_from(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "301", "ten", "1.5"])
def test_a_malformed_interval_fails_at_cold_start_naming_the_knob(raw: str) -> None:
    with pytest.raises(MetricsFlushError, match="METRICS_FLUSH_SECONDS"):
        flush_seconds_from({"METRICS_FLUSH_SECONDS": raw})


def test_the_ingest_s_emf_provider_writes_powertools_own_blob(capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    timestamp_ms = int(time.time() * 1000)  # one instant for both: two clock reads can straddle a millisecond
    for provider in (EmfProvider(), EphemeralMetrics()):
        provider.namespace, provider.service = NAMESPACE, "ingest"
        provider.set_default_dimensions(stage="dev")
        provider.set_timestamp(timestamp_ms)
        provider.add_metric(name=Metric.REQUESTS_ACCEPTED, unit="Count", value=1)
        provider.add_metric(name=Metric.PAYLOADS_ACCEPTED, unit="Count", value=7)
        capsys.readouterr()
        provider.flush_metrics()
        lines.append(capsys.readouterr().out)
        assert not provider.metric_set  # cleared, as Powertools clears it
    assert lines[0] == lines[1] and lines[0].startswith('{"_aws"')


def powertools_blob(
    capsys: pytest.CaptureFixture[str], namespace: str, service: str, dimensions: dict[str, str], **values: Any
) -> str:
    """What Powertools writes for these counts: EphemeralMetrics' add_metric, add_dimension and flush."""
    blob = EphemeralMetrics(namespace=namespace, service=service)
    blob.set_default_dimensions(**dimensions)
    blob.set_timestamp(int(time.time() * 1000))
    for name, value in values.items():
        if name == "reason":
            blob.add_dimension(name="reason", value=value)
            continue
        for one in value if isinstance(value, list) else [value]:
            blob.add_metric(name=name, unit="Count", value=one)
    capsys.readouterr()
    blob.flush_metrics()
    return capsys.readouterr().out


SHAPES = {
    "the ingest's request": ("CountsTest", "ingest", {"stage": "dev"}),
    "no stage": ("CountsTest", "ingest", {}),
    "no service and no stage": ("CountsTest", "", {}),
    "two default dimensions": ("CountsTest", "ingest", {"stage": "dev", "team": "data"}),
    "characters JSON escapes": ('Ingest/Pipeline "ü"', 'svc "✓"', {"stage": "dév"}),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_an_invocation_s_counts_are_powertools_own_blob_byte_for_byte(
    shape: str, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the counts of one invocation: one count, one that is never an integer, and one counted twice
    namespace, service, dimensions = SHAPES[shape]
    metrics = EphemeralMetrics(namespace=namespace, service=service)
    metrics.set_default_dimensions(**dimensions)
    counts = MetricCounts(metrics, 0, clock=clock, wall_clock=clock.wall)
    adds = [
        (Metric.REQUESTS_ACCEPTED, 1, None),
        (Metric.PAYLOADS_ACCEPTED, 2.5, None),
        (Metric.ENQUEUE_RETRIES, 3, None),
    ]
    capsys.readouterr()
    # When the invocation ends
    handler_counting(counts, *adds, (Metric.ENQUEUE_RETRIES, 1, None))({}, None)
    ours = capsys.readouterr().out
    # Then the line is the one Powertools writes for them, at the same time
    clock_ms = int(clock.wall() * 1000)
    theirs = powertools_blob(
        capsys,
        namespace,
        service,
        dimensions,
        **{Metric.REQUESTS_ACCEPTED: 1, Metric.PAYLOADS_ACCEPTED: 2.5, Metric.ENQUEUE_RETRIES: [3, 1]},
    )
    assert ours == re.sub(r'"Timestamp":\d+', f'"Timestamp":{clock_ms}', theirs)
    assert ours.count("\n") == 1


def test_a_window_s_sums_are_powertools_own_blobs_byte_for_byte(
    metrics: EphemeralMetrics, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given METRICS_FLUSH_SECONDS=10, two accepted requests and a rejection in one window
    counts = MetricCounts(metrics, 10, clock=clock, wall_clock=clock.wall)
    handler_counting(counts, (Metric.REQUESTS_ACCEPTED, 1, None), (Metric.PAYLOADS_ACCEPTED, 3, None))({}, None)
    handler_counting(counts, (Metric.REQUESTS_ACCEPTED, 1, None), (Metric.PAYLOADS_ACCEPTED, 4, None))({}, None)
    handler_counting(counts, (Metric.REQUESTS_REJECTED, 1, "invalid"))({}, None)
    last_count_ms = int(clock.wall() * 1000)
    capsys.readouterr()
    # When the window is written
    counts.flush()
    ours = capsys.readouterr().out.splitlines(keepends=True)
    # Then each blob is the one Powertools writes for those sums, stamped with the window's last count
    plain = powertools_blob(
        capsys, NAMESPACE, "ingest", {"stage": "dev"}, **{Metric.REQUESTS_ACCEPTED: 2, Metric.PAYLOADS_ACCEPTED: 7}
    )
    rejected = powertools_blob(
        capsys, NAMESPACE, "ingest", {"stage": "dev"}, **{Metric.REQUESTS_REJECTED: 1, "reason": "invalid"}
    )
    stamped = [re.sub(r'"Timestamp":\d+', f'"Timestamp":{last_count_ms}', line) for line in (plain, rejected)]
    assert ours == stamped


def test_a_count_blob_needs_a_namespace_as_powertools_does() -> None:
    with pytest.raises(SchemaValidationError, match="namespace"):
        count_blob(None, {"service": "ingest"}, {Metric.REQUESTS_ACCEPTED: [1.0]}, 0)
