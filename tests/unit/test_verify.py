"""The verifier's arithmetic: percentiles and latency from second-resolution LastModified."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from loadtest.reconcile import StoredCopy
from loadtest.verify import Ack, Acks, build_report, main, percentile


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([], 50) is None


def test_latency_is_received_at_to_the_middle_of_the_stored_second() -> None:
    # Given a payload received at 10:00:00.200 whose object's LastModified reads 10:00:01 (truncated)
    received = datetime(2026, 11, 26, 10, 0, 0, 200_000, tzinfo=UTC)
    copy = StoredCopy("r-0", "k", stored_at=datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC), received_at=received)
    acks = Acks([Ack("r", 1, int(received.timestamp() * 1000), int(received.timestamp() * 1000) + 50)])
    report = build_report(acks, [copy])
    # Then its latency is 1.3 s (the stored time is somewhere in 10:00:01.000-.999)
    assert report.latency_ms["p50"] == pytest.approx(1300)
    assert report.series[0]["p50_ms"] == pytest.approx(1300)


def test_verify_before_any_load_test_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given no load-test results directory (make verify before any make loadtest)
    missing = tmp_path / "loadtest-results"
    # When the verifier runs
    status = main(["--bucket", "b", "--acks", str(missing), "--endpoint-url", "http://127.0.0.1:9", "--wait", "0"])
    # Then it exits 2 (a usage error; 1 means payloads lost) with one line saying to run the load test first
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and f"no load-test results at {missing}" in err and "make loadtest" in err, err


def test_an_http_api_202_promises_its_payloads_under_the_url_safe_spelling_of_its_id() -> None:
    # Given a 202 from an HTTP API front door, whose requestId is the gateway's base64 id as it is, and the two
    # payloads the consumer stored under the ids the ingest gave them
    moment = int(datetime(2026, 11, 26, 10, tzinfo=UTC).timestamp() * 1000)
    acks = Acks([Ack("Ju2f+gps/YcEMlw=", 2, moment, moment + 50)])
    stored = datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC)
    copies = [StoredCopy(f"Ju2f-gps_YcEMlw-{i}", f"k{i}", stored_at=stored, received_at=stored) for i in range(2)]
    # When make verify reconciles them
    report = build_report(acks, copies)
    # Then nothing is lost or duplicated
    assert (report.lost, report.duplicated) == (0, 0)
