"""The scale profile's telemetry knobs through the real handlers: LOG_LEVEL against Lambda's own log level,
and METRICS_FLUSH_SECONDS > 0 (counts summed in the container, written as EMF every N seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline import observability
from pipeline.contract import Metric
from tests.conftest import Pipeline, collection

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"


def fresh_interpreter(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Powertools and observability read their settings at import, as in a Lambda cold start."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_LAMBDA_LOG"))},
        "POWERTOOLS_SERVICE_NAME": "ingest",
        "POWERTOOLS_METRICS_NAMESPACE": "Ns",
        "PYTHONPATH": os.pathsep.join([str(LAMBDAS), os.environ.get("PYTHONPATH", "")]),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True, timeout=60
    )


LOG_BOTH = (
    "from pipeline.observability import logger\n"
    "logger.info('request accepted', extra={'payloads': 1})\n"
    "logger.warning('queue backlog unknown')\n"
)


@pytest.mark.parametrize(
    ("env", "messages"),
    [
        # Lambda's JSON log format sets AWS_LAMBDA_LOG_LEVEL from ApplicationLogLevel, which the stack pins at
        # INFO; Powertools alone would let it win and log every request again.
        ({"AWS_LAMBDA_LOG_LEVEL": "INFO", "POWERTOOLS_LOG_LEVEL": "WARNING"}, ["queue backlog unknown"]),
        ({"POWERTOOLS_LOG_LEVEL": "WARNING"}, ["queue backlog unknown"]),
        (
            {"AWS_LAMBDA_LOG_LEVEL": "INFO", "POWERTOOLS_LOG_LEVEL": "INFO"},
            ["request accepted", "queue backlog unknown"],
        ),
    ],
)
def test_log_level_decides_which_lines_are_written_whatever_lambda_s_level(
    env: dict[str, str], messages: list[str]
) -> None:
    result = fresh_interpreter(LOG_BOTH, **env)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["message"] for line in lines] == messages
    # And every line Lambda receives has the level key and an RFC 3339 time it can read
    assert all(line["level"] in ("INFO", "WARNING") and line["timestamp"].endswith("+00:00") for line in lines)


def test_the_flush_interval_is_read_at_cold_start_from_the_stack_s_variable() -> None:
    code = "from pipeline.observability import counts\nprint(counts.flush_seconds)\n"
    assert fresh_interpreter(code, METRICS_FLUSH_SECONDS="30").stdout.strip() == "30"
    assert fresh_interpreter(code).stdout.strip() == "0"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        import time

        return time.time() + self.now


@pytest.fixture
def counts_every_minute(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """METRICS_FLUSH_SECONDS=60 on the ingest's counts, on a clock the test moves."""
    clock = Clock()
    counts = observability.counts
    monkeypatch.setattr(counts, "flush_seconds", 60)
    monkeypatch.setattr(counts, "_clock", clock.monotonic)
    monkeypatch.setattr(counts, "_wall_clock", clock.wall)
    monkeypatch.setattr(counts, "_sums", {})
    return clock


def emf_totals(stdout: str) -> Counter[tuple[str, str | None]]:
    summed: Counter[tuple[str, str | None]] = Counter()
    for line in stdout.splitlines():
        if line.startswith('{"_aws"'):
            blob: dict[str, Any] = json.loads(line)
            for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = blob[metric["Name"]]
                summed[(metric["Name"], blob.get("reason"))] += sum(value) if isinstance(value, list) else value
    return summed


def test_with_a_flush_interval_the_ingest_writes_its_counts_summed_once_a_minute(
    pipeline: Pipeline, counts_every_minute: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three accepted requests (2, 3 and 4 payloads) and two rejected ones within one minute
    capsys.readouterr()
    for payloads in (2, 3, 4):
        assert pipeline.post(collection(payloads)).status == 202
        counts_every_minute.now += 10
    assert pipeline.post(b"{not json").status == 400
    assert pipeline.post(b"{}", path="/v2/elsewhere").status == 404
    # Then no metric is written yet
    assert emf_totals(capsys.readouterr().out) == {}
    # When a request comes a minute after the first
    counts_every_minute.now += 30
    assert pipeline.post(collection(1)).status == 202
    # Then the minute's counts are written summed, the rejections by reason
    assert emf_totals(capsys.readouterr().out) == {
        (Metric.REQUESTS_ACCEPTED, None): 3,
        (Metric.PAYLOADS_ACCEPTED, None): 9,
        (Metric.REQUESTS_REJECTED, "invalid"): 1,
        (Metric.REQUESTS_REJECTED, "route"): 1,
    }
    # And the last request's counts wait for the next minute
    counts_every_minute.now += 60
    assert pipeline.post(b"", method="GET").status == 405
    assert emf_totals(capsys.readouterr().out) == {
        (Metric.REQUESTS_ACCEPTED, None): 1,
        (Metric.PAYLOADS_ACCEPTED, None): 1,
    }
