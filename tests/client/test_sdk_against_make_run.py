"""The SDK (client/) against the real local pipeline (`make run`, started as local_pipeline.launch
starts it), not a mock: every payload that send() returned for must be in the bucket exactly once.

The pipeline is used only through its public behaviour: HTTP on its port, its embedded S3 endpoint,
"Ready" on its console, and signals. A recording proxy between the SDK and the pipeline shows what
went over the wire (keys, bodies, statuses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from ingest_client import Client, Limits

from local_pipeline import launch
from local_pipeline.launch import LocalRun, free_port
from tests.client.recording_proxy import RecordingProxy, start_proxy

BUCKET = "ingest-pipeline-local-payloads"
API_KEY = "local-dev-key"  # make run's default
PRODUCER = Path(__file__).resolve().parents[2] / "client" / "tests" / "producer.py"
STORED_TIMEOUT_SECONDS = 240  # 3,000 objects through moto on 2 busy cores


def _start(tmp_path: Path, port: int | None = None, **env: str) -> LocalRun:
    port = port or free_port()
    return launch.start_local_pipeline(tmp_path / f"console-{port}.log", port, free_port(), env)


def _stop(run: LocalRun) -> None:
    try:
        run.stop(signal.SIGTERM)
    finally:
        run.kill_leftovers()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """make run with its defaults (OBJECT_MODE=payload: one object per payload id, create-only)."""
    run = _start(tmp_path_factory.mktemp("sdk-pipeline"))
    yield run
    _stop(run)


@pytest.fixture
def proxy(pipeline: LocalRun) -> Iterator[RecordingProxy]:
    recording = start_proxy(pipeline.url)
    yield recording
    recording.close()


# Objects are written create-only and never change: each is read once per test session.
_READ: dict[tuple[int, str], dict[str, Any]] = {}


def stored_payloads(run: LocalRun, token: str) -> dict[str, list[dict[str, Any]]]:
    """The envelopes in the bucket whose token is ``token``, by object key."""
    s3 = run.client("s3")
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for item in page.get("Contents", [])
    ]
    new = [key for key in keys if (run.aws_port, key) not in _READ]

    def read(key: str) -> dict[str, Any]:
        return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    with ThreadPoolExecutor(8) as pool:
        for key, envelope in zip(new, pool.map(read, new), strict=True):
            _READ[(run.aws_port, key)] = envelope
    envelopes = {key: _READ[(run.aws_port, key)] for key in keys}
    return {key: [envelope] for key, envelope in envelopes.items() if envelope["token"] == token}


def wait_until_stored(run: LocalRun, token: str, count: int) -> dict[str, list[dict[str, Any]]]:
    """Poll the bucket until it holds at least ``count`` objects of ``token``; then a last look, a
    little later, so that a late duplicate would show."""
    deadline = time.monotonic() + STORED_TIMEOUT_SECONDS
    while len(stored := stored_payloads(run, token)) < count:
        assert time.monotonic() < deadline, f"{len(stored)} of {count} payloads of {token} stored in time"
        time.sleep(2)
    time.sleep(2)
    return stored_payloads(run, token)


def assert_stored_once(stored: dict[str, list[dict[str, Any]]], returned: set[int], field: str = "seq") -> None:
    """Every payload send() returned for is in the bucket exactly once; nothing else is there (a
    payload whose send() was cut short by the kill may be stored, once, or not at all).

    One documented exception (docs/RELIABILITY.md): a keyed retry received in another UTC hour is
    stored under the same id in that hour's partition; it is allowed only in that shape."""
    by_value: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for key, (envelope,) in stored.items():
        by_value[envelope["payload"][field]].append((key, envelope))
    missing = returned - set(by_value)
    assert not missing, f"{len(missing)} payloads send() returned for are not stored: {sorted(missing)[:10]}"
    for value, objects in by_value.items():
        assert value in returned or value == max(returned) + 1, f"payload {value} was never sent"
        ids = {envelope["id"] for _, envelope in objects}
        hours = {key.rsplit("/", 1)[0] for key, _ in objects}
        assert len(ids) == 1 and len(hours) == len(objects), f"payload {value} stored {len(objects)} times: {objects}"


def _producer(url: str, spool: Path, count: int, token: str, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, str(PRODUCER), url, str(spool), str(count), "--api-key", API_KEY, "--token", token]
    return subprocess.Popen([*command, *extra], stdout=subprocess.PIPE, text=True)


def _read_sent(producer: subprocess.Popen[str], until: Callable[[int], bool]) -> list[int]:
    assert producer.stdout is not None
    sent: list[int] = []
    for line in producer.stdout:
        if line.startswith("sent "):
            sent.append(int(line.split()[1]))
            if until(len(sent)):
                break
    return sent


def test_kill_9_mid_run_the_next_process_delivers_the_rest_exactly_once(
    pipeline: LocalRun, proxy: RecordingProxy, tmp_path: Path
) -> None:
    # Given a producer sending 3,000 payloads through the SDK, whose first request the pipeline accepts but
    # whose answer never reaches it (held from the start: waiting for a later request to hold could let a
    # loaded machine's producer finish all 3,000 before the kill)
    proxy.hold_next = True
    producer = _producer(proxy.url, tmp_path / "spool", 3000, "kill-9", "--pace", "0.003")
    assert proxy.holding.wait(120), "no request reached the pipeline"
    sent = _read_sent(producer, lambda count: count >= 1500)
    # When it is killed with SIGKILL, halfway
    producer.send_signal(signal.SIGKILL)
    producer.wait()
    assert producer.stdout is not None
    sent += [int(line.split()[1]) for line in producer.stdout.read().splitlines() if line.startswith("sent ")]
    held = proxy.held
    assert held is not None and held.status == 202
    proxy.release.set()
    # And a new process on the same spool_dir delivers the rest
    again = _producer(proxy.url, tmp_path / "spool", 0, "kill-9", "--deliver", "180")
    assert again.wait(240) == 0
    # Then the batch the first process never heard about went again, same key and bytes
    assert any(e.key == held.key and e.body_sha256 == held.body_sha256 for e in proxy.exchanges if e is not held)
    # And every payload send() returned for is in the bucket exactly once
    assert 1500 <= len(sent) < 3000
    assert_stored_once(wait_until_stored(pipeline, "kill-9", len(sent)), set(sent))


def test_sigterm_while_sending_loses_nothing(pipeline: LocalRun, proxy: RecordingProxy, tmp_path: Path) -> None:
    # Given a program that exits on SIGTERM (its atexit flushes what it can for up to 10 s)
    producer = _producer(proxy.url, tmp_path / "spool", 800, "sigterm", "--pace", "0.002", "--exit-on-sigterm")
    sent = _read_sent(producer, lambda count: count >= 400)
    # When it gets SIGTERM halfway
    producer.send_signal(signal.SIGTERM)
    assert producer.wait(60) == 143
    assert producer.stdout is not None
    sent += [int(line.split()[1]) for line in producer.stdout.read().splitlines() if line.startswith("sent ")]
    # Then what it did not deliver is still spooled, and the next process delivers it
    again = _producer(proxy.url, tmp_path / "spool", 0, "sigterm", "--deliver", "120")
    assert again.wait(180) == 0
    assert_stored_once(wait_until_stored(pipeline, "sigterm", len(sent)), set(sent))


def test_a_payload_the_pipeline_refuses_lands_in_rejected_with_its_reason_alone(
    pipeline: LocalRun, tmp_path: Path
) -> None:
    # Given a batch with one payload nested deeper than MAX_NESTING_DEPTH (32), which only the
    # server checks
    deep: dict[str, Any] = {"seq": 99}
    node = deep
    for _ in range(40):
        node["child"] = {}
        node = node["child"]
    client = Client(
        pipeline.url + "/v1/payloads", version="1.0", token="rejects", api_key=API_KEY, spool_dir=tmp_path / "spool"
    )
    try:
        for seq in range(10):
            client.send(deep if seq == 5 else {"seq": seq})
        # When it is delivered: flush says not everything was acknowledged
        assert not client.flush(120)
        stats = client.stats()
    finally:
        client.close(5)
    # Then the deep payload alone is in rejected/, with the pipeline's problem+json
    (rejected,) = (tmp_path / "spool" / "rejected").glob("*.json")
    document = json.loads(rejected.read_text())
    assert document["status"] == 400
    assert document["problem"]["type"] == "urn:ingest-pipeline:problem:too-deep"
    assert [payload["seq"] for payload in document["request"]["data"]] == [99]
    assert (stats.acknowledged, stats.rejected, stats.spooled) == (9, 1, 0)
    # And the nine others are stored once
    assert_stored_once(wait_until_stored(pipeline, "rejects", 9), {seq for seq in range(10) if seq != 5})


def test_the_cli_exits_0_once_everything_is_acknowledged(pipeline: LocalRun, tmp_path: Path) -> None:
    lines = "".join(json.dumps({"seq": seq}) + "\n" for seq in range(120))
    result = subprocess.run(
        [sys.executable, "-m", "ingest_client", "send", "--endpoint", pipeline.url + "/v1/payloads",
         "--version", "1.0", "--token", "cli", "--spool-dir", str(tmp_path / "spool"), "--timeout", "120"],
        input=lines, capture_output=True, text=True, timeout=180, env={**os.environ, "INGEST_API_KEY": API_KEY},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "120 acknowledged" in result.stderr
    assert_stored_once(wait_until_stored(pipeline, "cli", 120), set(range(120)))


def test_the_pipeline_down_payloads_stay_spooled_and_are_delivered_once_it_is_back(tmp_path: Path) -> None:
    # Given a client whose endpoint does not answer yet
    port = free_port()
    client = Client(
        f"http://127.0.0.1:{port}/v1/payloads", version="1.0", token="down", api_key=API_KEY,
        spool_dir=tmp_path / "spool", max_backoff=2,
    )  # fmt: skip
    run = None
    try:
        for seq in range(200):
            client.send({"seq": seq})
        assert not client.flush(2)
        stats = client.stats()
        assert (stats.spooled, stats.acknowledged) == (200, 0)
        assert "no answer from the endpoint" in (stats.last_error or "")
        # When the pipeline comes up on that port
        run = _start(tmp_path, port)
        # Then everything is delivered and stored once
        assert client.flush(120)
        assert_stored_once(wait_until_stored(run, "down", 200), set(range(200)))
    finally:
        client.close(5)
        if run is not None:
            _stop(run)


def test_overload_503_retry_after_is_honoured_without_a_busy_loop(tmp_path: Path) -> None:
    # Given a pipeline that refuses work (503 backlog-full + Retry-After) while more than one message
    # waits for its two workers
    run = _start(tmp_path, MAX_QUEUE="1", BACKLOG_CHECK_SECONDS="1", MAX_WORKERS="2")
    proxy = start_proxy(run.url)
    client = Client(
        proxy.url, version="1.0", token="overload", api_key=API_KEY, spool_dir=tmp_path / "spool",
        limits=Limits(max_payloads=50),
    )  # fmt: skip
    try:
        # When payloads keep coming, 50 at a time, until the pipeline has refused a batch (a backlog read
        # once a second sees the two workers behind only some of the time on a loaded machine, so a fixed
        # number of payloads may never meet a 503), for at most a minute
        started = time.monotonic()
        sent = 0
        while 503 not in proxy.statuses() and time.monotonic() - started < 60:
            for _ in range(50):
                client.send({"seq": sent})
                sent += 1
            time.sleep(0.05)
        assert client.flush(240)
        elapsed = time.monotonic() - started
        stored = wait_until_stored(run, "overload", sent)
    finally:
        client.close(5)
        proxy.close()
        _stop(run)
    # Then the pipeline did refuse with 503 + Retry-After, and every retry waited at least that long
    refusals = [(earlier, later) for earlier, later in pairwise(proxy.exchanges) if earlier.status == 503]
    assert refusals, f"the pipeline never answered 503 in 60 s of load: {proxy.statuses()}"
    for earlier, later in refusals:
        assert earlier.retry_after is not None
        assert later.arrived_at - earlier.answered_at >= float(earlier.retry_after)
    # No busy loop: at most one request per Retry-After second, besides one per batch
    batches = len({exchange.key for exchange in proxy.exchanges})
    assert len(proxy.exchanges) <= batches + elapsed + 1
    assert_stored_once(stored, set(range(sent)))
