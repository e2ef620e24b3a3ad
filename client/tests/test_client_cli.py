"""python -m ingest_client send: exit 0 only when everything was acknowledged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Answer, FakeEndpoint, Received, accept, problem


def _cli(url: str, spool: Path, lines: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ingest_client", "send", "--endpoint", url, "--version", "1.0", "--token", "t"]
    return subprocess.run(
        [*command, "--spool-dir", str(spool), "--api-key", "k", *extra],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_line_acknowledged_exits_0(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    lines = "".join(f'{{"n": {index}}}\n' for index in range(700)) + "\n"
    result = _cli(endpoint.url, tmp_path / "spool", lines)
    assert result.returncode == 0, result.stderr
    assert "700 payloads read, 700 acknowledged, 0 rejected, 0 left" in result.stderr
    assert sorted(payload["n"] for payload in endpoint.accepted_payloads()) == list(range(700))
    assert endpoint.received[0].headers["x-api-key"] == "k"


def test_an_invalid_line_is_named_and_the_exit_status_is_1(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    result = _cli(endpoint.url, tmp_path / "spool", '{"n": 1}\nnot json\n{"a": 1, "a": 2}\n[1]\n{"n": 2}\n')
    assert result.returncode == 1
    assert "line 2: not sent" in result.stderr
    assert "line 3: not sent: an object key appears more than once" in result.stderr
    assert "line 4: not sent: a payload must be a dict" in result.stderr
    assert sorted(payload["n"] for payload in endpoint.accepted_payloads()) == [1, 2]


def test_a_rejected_payload_exits_1_and_says_where_it_is_kept(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    def refuse_bad(request: Received, index: int) -> Answer:
        if any("bad" in payload for payload in request.payloads):
            return problem(400, "too-deep", "data[0] nests deeper than 32 levels")
        return accept(request, index)

    endpoint.responder = refuse_bad
    result = _cli(endpoint.url, tmp_path / "spool", '{"n": 1}\n{"bad": 1}\n')
    assert result.returncode == 1
    assert f"1 rejected (kept in {tmp_path / 'spool' / 'rejected'})" in result.stderr
    assert endpoint.accepted_payloads() == [{"n": 1}]


def test_an_endpoint_that_stays_down_exits_1_and_the_next_run_delivers(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    endpoint.responder = lambda request, index: problem(503, "down", "down", **{"Retry-After": "30"})
    first = _cli(endpoint.url, tmp_path / "spool", '{"n": 1}\n', "--timeout", "1")
    assert first.returncode == 1
    assert "1 left in" in first.stderr
    endpoint.responder = accept
    second = _cli(endpoint.url, tmp_path / "spool", "", "--timeout", "20")
    assert second.returncode == 0, second.stderr
    assert endpoint.accepted_payloads() == [{"n": 1}]


def test_send_help_shows_the_timeout_default_and_what_stays_spooled() -> None:
    # Given a new user asking the SDK's command line what --timeout does
    # When they read `python -m ingest_client send --help`
    result = subprocess.run(
        [sys.executable, "-m", "ingest_client", "send", "--help"], capture_output=True, text=True, timeout=60
    )
    # Then the help shows its default (60 s) and that what is unacknowledged then stays in the spool
    assert result.returncode == 0, result.stderr
    timeout_help = " ".join(result.stdout.split("\n  --timeout", 1)[1].split("\n  --no-gzip", 1)[0].split())
    assert "default: 60" in timeout_help, timeout_help
    assert "stay in the spool" in timeout_help and "next run" in timeout_help, timeout_help
