"""Durability: kill -9, torn records, a crash between the batch file and the cursor, the lock,
a full spool, and fork()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import Answer, FakeEndpoint, Received, accept, problem

import ingest_client.sender
from ingest_client import Client, Limits, SpoolFullError, SpoolLockedError
from ingest_client.spool import CURSOR_FILE, FsyncPolicy, Spool, frame

PRODUCER = Path(__file__).with_name("producer.py")


def _producer(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(PRODUCER), *arguments], stdout=subprocess.PIPE, text=True)


def test_kill_9_mid_request_the_next_process_resends_the_same_key_and_bytes(
    endpoint: FakeEndpoint, tmp_path: Path
) -> None:
    # Given an endpoint that takes the first request (as the pipeline would enqueue it) but never answers
    answered = threading.Event()

    def hold_first(request: Received, index: int) -> Answer:
        if index == 0:
            answered.wait(30)
        return accept(request, index)

    endpoint.responder = hold_first
    spool = str(tmp_path / "spool")
    producer = _producer(endpoint.url, spool, "100")
    assert producer.stdout is not None
    sent = [line for line in producer.stdout if line.startswith("sent")]
    endpoint.wait_for(lambda: len(endpoint.received) == 1)
    # When the producer is killed while that request waits for its answer
    producer.send_signal(signal.SIGKILL)
    producer.wait()
    answered.set()
    # Then a new process on the same spool sends that batch again, same key, same bytes
    again = _producer(endpoint.url, spool, "0", "--deliver", "20")
    assert again.wait(60) == 0
    first = endpoint.received[0]
    resent = [request for request in endpoint.received[1:] if request.key == first.key]
    assert resent and resent[0].raw == first.raw
    # And every payload send() returned for arrived once (the pipeline dedupes on the key)
    assert len(sent) == 100
    assert sorted(payload["seq"] for payload in endpoint.accepted_payloads()) == list(range(100))


def test_a_torn_last_record_is_ignored_and_the_rest_is_delivered(
    endpoint: FakeEndpoint, tmp_path: Path, make_client: Callable[..., Client]
) -> None:
    # Given a spool left by a process killed in the middle of a write
    first = make_client("http://127.0.0.1:9/v1/payloads", max_backoff=0.2)
    for index in range(10):
        first.send({"n": index})
    first.close(0)
    (segment,) = (tmp_path / "spool" / "segments").glob("*.seg")
    with open(segment, "ab") as file:
        file.write(b"\x00\x00\x01\x00\x12\x34")  # a header cut short
    # When the next process opens it, everything send() returned for is delivered
    again = make_client(endpoint.url)
    assert again.flush(20)
    assert sorted(payload["n"] for payload in endpoint.accepted_payloads()) == list(range(10))


def test_a_crash_between_batch_file_and_cursor_never_cuts_a_record_twice(
    endpoint: FakeEndpoint, tmp_path: Path
) -> None:
    # Given a batch cut and saved, and a crash before the cursor file was updated
    directory = tmp_path / "spool"
    spool = Spool(directory, prefix=b'{"version":"1.0","token":"device-1","data":[', max_bytes=1 << 24,
                  segment_bytes=1 << 20, fsync=FsyncPolicy())  # fmt: skip
    for index in range(5):
        spool.append(frame(f'{{"n":{index}}}'.encode()), 1)
    stale_cursor = (directory / CURSOR_FILE).read_bytes()
    batch = spool.cut(Limits(), compress=True)
    assert batch is not None and batch.payloads == 5
    spool.close()
    (directory / CURSOR_FILE).write_bytes(stale_cursor)
    # When a client starts on it
    client = Client(endpoint.url, version="1.0", token="device-1", spool_dir=directory, linger=0.05)
    try:
        assert client.flush(20)
    finally:
        client.close(1)
    # Then the five payloads went out once, in that batch, with its key
    assert [request.key for request in endpoint.received] == [batch.key]
    assert sorted(payload["n"] for payload in endpoint.accepted_payloads()) == list(range(5))


def test_two_clients_on_one_spool_dir_get_a_clear_error(tmp_path: Path, make_client: Callable[..., Client]) -> None:
    make_client("http://127.0.0.1:9/v1/payloads")
    with pytest.raises(SpoolLockedError, match=f"in use by process {os.getpid()}"):
        make_client("http://127.0.0.1:9/v1/payloads")
    other = subprocess.run(
        [sys.executable, "-c", f"from ingest_client import Client; Client('http://127.0.0.1:9/', version='1', "
         f"token='t', spool_dir={str(tmp_path / 'spool')!r})"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert other.returncode == 1
    assert f"SpoolLockedError: spool_dir {tmp_path / 'spool'} is in use by process {os.getpid()}" in other.stderr


def test_a_full_spool_blocks_then_raises_and_never_drops(
    endpoint: FakeEndpoint, make_client: Callable[..., Client]
) -> None:
    # Given an endpoint that is down (503), and a spool of 8 KiB
    down = threading.Event()
    down.set()

    def down_or_accept(request: Received, index: int) -> Answer:
        return problem(503, "down", "down") if down.is_set() else accept(request, index)

    endpoint.responder = down_or_accept
    limits = Limits(max_payloads=10, max_body_bytes=2048, max_payload_bytes=512)
    # Uncompressed: a cut batch then takes no less room than its records (gzip would free some).
    client = make_client(endpoint.url, limits=limits, max_spool_bytes=8192, full_timeout=0, max_backoff=0.3, gzip=False)
    sent = 0
    with pytest.raises(SpoolFullError, match="nothing was spooled"):
        while True:
            client.send({"n": sent, "pad": "p" * 200})
            sent += 1
    # When send() may wait, it waits that long, then raises: the payload is still the caller's
    client.full_timeout = 0.5
    started = time.monotonic()
    with pytest.raises(SpoolFullError):
        client.send({"n": sent, "pad": "p" * 200})
    assert time.monotonic() - started >= 0.5
    # And a send() blocked on a full spool returns once the endpoint is back
    client.full_timeout = 30
    blocked = threading.Thread(target=client.send, args=({"n": sent, "pad": "p" * 200},))
    blocked.start()
    time.sleep(0.3)
    assert blocked.is_alive()
    down.clear()
    blocked.join(30)
    assert not blocked.is_alive()
    assert client.flush(30)
    assert sorted(payload["n"] for payload in endpoint.accepted_payloads()) == list(range(sent + 1))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_a_forked_child_sends_through_its_own_sender_and_never_the_parents_batches(
    endpoint: FakeEndpoint, make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ingest_client.sender, "ADOPT_INTERVAL_SECONDS", 0.2)
    client = make_client(endpoint.url)
    for index in range(10):
        client.send({"who": "parent", "n": index})
    # A child that flushes, and a child that exits at once (os._exit skips atexit) with unsent payloads
    children = []
    for name, flush in (("child-flushed", True), ("child-exited", False)):
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                for index in range(10):
                    client.send({"who": name, "n": index})
                if flush:
                    code = 0 if client.flush(20) else 3
            except BaseException:
                code = 4
            os._exit(code)
        children.append(pid)
    for pid in children:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    for index in range(10, 20):
        client.send({"who": "parent", "n": index})
    # Then everything arrives exactly once: the parent's, the child's, and what the dead child left
    endpoint.wait_for(lambda: len(endpoint.accepted_payloads()) >= 40, timeout=30)
    assert client.flush(20)
    delivered = sorted((payload["who"], payload["n"]) for payload in endpoint.accepted_payloads())
    expected = [("child-exited", n) for n in range(10)] + [("child-flushed", n) for n in range(10)]
    assert delivered == sorted(expected + [("parent", n) for n in range(20)])
    # No request mixed a child's payloads with the parent's, and the dead child's spool is gone
    for request in endpoint.received:
        assert len({payload["who"] for payload in request.payloads}) == 1
    endpoint.wait_for(lambda: not list((tmp_path / "spool" / "forks").iterdir()), timeout=10)
