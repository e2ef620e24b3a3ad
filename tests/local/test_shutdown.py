"""Ctrl-C and SIGTERM while clients are posting, the second Ctrl-C, and what the summary says."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from loadtest.reconcile import envelopes_in
from local_pipeline.launch import process_group_alive
from tests.conftest import collection
from tests.local.conftest import BUCKET, LocalRun, port_is_free, start_local_pipeline, wait_for

KEY = {"x-api-key": "local-dev-key"}


class Clients:
    """``count`` threads POSTing back-to-back until told to stop; they count what they got."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.stopping = threading.Event()
        self.statuses: list[int | str] = []
        self.accepted: list[int] = []  # the "accepted" of every 202
        self.threads = [threading.Thread(target=self._post, daemon=True) for _ in range(count)]

    def _post(self) -> None:
        with requests.Session() as session:
            while not self.stopping.is_set():
                try:
                    response = session.post(self.url, json=collection(3), headers=KEY, timeout=30)
                    status: int | str = response.status_code
                    if status == 202:
                        self.accepted.append(response.json()["accepted"])
                except requests.RequestException as exc:
                    status = type(exc).__name__
                    time.sleep(0.1)  # the front is gone (shut down): no busy loop of refused connects
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
        # And its Lambda environments and ports are gone with it, with no "leaked semaphore" warning
        wait_for(lambda: not process_group_alive(run.process.pid), 15, "every runner process to exit")
        assert port_is_free(run.port) and port_is_free(run.aws_port)
        assert "leaked semaphore" not in run.output(), run.output()[-2000:]
    finally:
        run.kill_leftovers()


def stored_payload_lines(run: LocalRun) -> list[str]:
    """The ids of every payload copy in the bucket: one per object, or one per line of a batch object."""
    s3 = run.client("s3")
    ids = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            ids += [envelope["id"] for envelope in envelopes_in(item["Key"], body)]
    return ids


@pytest.mark.parametrize("object_mode", ["payload", "batch"])
def test_the_summary_matches_the_bucket_when_a_retry_is_skipped(tmp_path: Path, object_mode: str) -> None:
    run = start_local_pipeline(tmp_path, MAX_WORKERS="2", OBJECT_MODE=object_mode)
    try:
        url = f"{run.url}/v1/payloads"
        retried = {**KEY, "Idempotency-Key": "retry-me"}
        # Given a request of 4 payloads, stored; then its retry with the same Idempotency-Key, accepted
        # again under the same ids (same keys: the consumer finds them stored, 412, and skips them)
        assert requests.post(url, json=collection(4), headers=retried, timeout=30).status_code == 202
        wait_for(lambda: len(stored_payload_lines(run)) == 4, 60, "the first 4 payloads in the bucket")
        assert requests.post(url, json=collection(4), headers=retried, timeout=30).json()["accepted"] == 4
        wait_for(lambda: "duplicates=4" in run.output(), 60, "the consumer skipping the retried payloads")
        # And another request of 5
        assert requests.post(url, json=collection(5), headers=KEY, timeout=30).status_code == 202
        wait_for(lambda: len(stored_payload_lines(run)) == 9, 60, "the next 5 payloads in the bucket")
        in_bucket = stored_payload_lines(run)
        # When the user presses Ctrl-C
        assert run.stop(signal.SIGINT) == 0, run.output()
        # Then the summary's stored figure is what the bucket holds, and the skipped retry is counted apart
        output = run.output()
        assert len(in_bucket) == len(set(in_bucket)) == 9, in_bucket
        assert "payloads accepted 13\n" in output, output
        assert "payloads stored   9 " in output and "duplicates        4 " in output, output
    finally:
        run.kill_leftovers()


MAKE_RUN = ("make", "--no-print-directory", "run")


@pytest.mark.parametrize(
    ("command", "sender"),
    [
        ((), "kill -TERM -- -PGID"),
        (MAKE_RUN, "kill -TERM -- -PGID"),  # make gets it too, and forwards it to the runner: twice
        (("timeout", "45", *MAKE_RUN), "timeout"),  # SIGTERM to make, then to the whole group
    ],
    ids=["python -m local_pipeline", "make run", "timeout 45 make run"],
)
def test_a_sigterm_to_the_process_group_drains_everything_like_ctrl_c(
    tmp_path: Path, command: tuple[str, ...], sender: str
) -> None:
    # Given a pipeline, started as a user or a supervisor would, with 10 clients posting
    run = start_local_pipeline(tmp_path, command, MAX_WORKERS="2", LOCAL_DRAIN_SECONDS="120")
    try:
        with Clients(f"{run.url}/v1/payloads", 10) as clients:
            wait_for(lambda: sum(clients.accepted) >= 60, 60, "the clients' first 60 accepted payloads")
            # When SIGTERM reaches the whole process group: the runner, its moto server and Lambda
            # environments (and make, which sends the runner a second SIGTERM)
            if sender == "kill -TERM -- -PGID":
                os.killpg(run.process.pid, signal.SIGTERM)
            wait_for(lambda: shut_down(run.output()), 60, "'shutting down' after the SIGTERM")
            exit_code = run.process.wait(timeout=180)
        # Then the runner drains as on Ctrl-C instead of exiting at once, and the helpers live until it is done:
        # every payload a client saw acknowledged is stored, nothing is left queued or dead-lettered
        output = run.output()
        acknowledged = sum(clients.accepted)
        assert "exiting now" not in output, output
        assert f"payloads accepted {acknowledged}\n" in output, (acknowledged, output[-2000:])
        assert f"payloads stored   {acknowledged} " in output, (acknowledged, output[-2000:])
        assert "in DLQ            0" in output and "still queued" not in output, output[-2000:]
        # And it exits as after Ctrl-C: 0 (make then ends by the SIGTERM it got; timeout says 124)
        expected = {(): 0, MAKE_RUN: -signal.SIGTERM}.get(command, 124)
        assert exit_code == expected, output[-2000:]
        wait_for(lambda: not process_group_alive(run.process.pid), 15, "every runner process to exit")
        assert port_is_free(run.port) and port_is_free(run.aws_port)
    finally:
        run.kill_leftovers()
