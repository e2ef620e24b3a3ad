"""Ctrl-C and SIGTERM while clients are posting, the second Ctrl-C, and what the summary says."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from local_pipeline.launch import process_group_alive
from tests.conftest import collection
from tests.local.conftest import port_is_free, start_local_pipeline, wait_for

KEY = {"x-api-key": "local-dev-key"}


class Clients:
    """``count`` threads POSTing back-to-back until told to stop; they count what they got."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.stopping = threading.Event()
        self.statuses: list[int | str] = []
        self.threads = [threading.Thread(target=self._post, daemon=True) for _ in range(count)]

    def _post(self) -> None:
        with requests.Session() as session:
            while not self.stopping.is_set():
                try:
                    status: int | str = session.post(self.url, json=collection(3), headers=KEY, timeout=10).status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                self.statuses.append(status)

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)


def shut_down(output: str) -> bool:
    return "shutting down" in output


@pytest.mark.parametrize("attempt", range(4))
def test_ctrl_c_or_sigterm_under_load_stops_every_time(tmp_path: Path, attempt: int) -> None:
    # Given a pipeline with 10 clients posting as fast as it answers
    run = start_local_pipeline(tmp_path, MAX_WORKERS="2", LOCAL_DRAIN_SECONDS="5")
    try:
        with Clients(f"{run.url}/v1/payloads", 10) as clients:
            wait_for(lambda: clients.statuses.count(202) >= 5, 60, "the clients' first 202s")
            # When Ctrl-C reaches its process group (as from a terminal), or SIGTERM the runner alone
            if attempt % 2 == 0:
                os.killpg(run.process.pid, signal.SIGINT)
            else:
                run.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            # Then it starts shutting down within a few seconds, without a second signal
            wait_for(lambda: shut_down(run.output()), 5, "'shutting down' after ONE signal")
            # And it drains (at most LOCAL_DRAIN_SECONDS), prints the summary and exits 0
            exit_code = run.process.wait(timeout=60)
        assert exit_code == 0, run.output()
        assert "Summary" in run.output(), run.output()
        assert time.monotonic() - signalled < 45, "the drain took far longer than LOCAL_DRAIN_SECONDS"
        # And it frees both ports and leaves no Lambda environment behind
        wait_for(lambda: not process_group_alive(run.process.pid), 15, "every runner process to exit")
        assert port_is_free(run.port) and port_is_free(run.aws_port)
    finally:
        run.kill_leftovers()


def test_a_second_ctrl_c_exits_at_once_and_says_what_was_left(tmp_path: Path) -> None:
    # Given a pipeline whose consumer fails every record and retries it at once, so a drain never ends
    run = start_local_pipeline(
        tmp_path,
        MAX_WORKERS="2",
        LOCAL_DRAIN_SECONDS="300",
        LOCAL_VISIBILITY_TIMEOUT_SECONDS="0",
        MAX_RECEIVE_COUNT="1000",
        LOCAL_FAIL_FIRST_ATTEMPTS="1000",
        BATCH_SIZE="10",
        MAX_BATCHING_WINDOW_SECONDS="0",
    )
    try:
        response = requests.post(f"{run.url}/v1/payloads", json=collection(4), headers=KEY, timeout=30)
        assert response.status_code == 202
        wait_for(lambda: "failures=" in run.output(), 30, "a failed batch")
        # When the user presses Ctrl-C, and again while it drains
        os.killpg(run.process.pid, signal.SIGINT)
        wait_for(lambda: shut_down(run.output()), 5, "'shutting down'")
        time.sleep(1)
        assert run.process.poll() is None, "the first Ctrl-C should be draining, not exiting"
        os.killpg(run.process.pid, signal.SIGINT)
        # Then it exits at once, non-zero, saying what it did not drain
        exit_code = run.process.wait(timeout=5)
        assert exit_code == 128 + signal.SIGINT, run.output()
        assert "left undrained: 4 accepted payloads not yet stored" in run.output(), run.output()
        # And its Lambda environments and ports are gone with it
        wait_for(lambda: not process_group_alive(run.process.pid), 15, "every runner process to exit")
        assert port_is_free(run.port) and port_is_free(run.aws_port)
    finally:
        run.kill_leftovers()
