"""Start `python -m local_pipeline` (what `make run` runs) as a subprocess on free ports, and talk to
it only as a user would: HTTP on its port, boto3 against its embedded AWS endpoint, its console."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from local_pipeline import launch
from local_pipeline.launch import free_port

BUCKET = "ingest-pipeline-local-payloads"
QUEUE = "ingest-pipeline-local"


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def port_is_free(port: int) -> bool:
    """Nothing listens there, and a server can bind it again (as `make run` does, with SO_REUSEADDR:
    connections the runner closed may sit in TIME_WAIT for a minute, which does not block a restart)."""
    with socket.socket() as client:
        if client.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class LocalRun(launch.LocalRun):
    """The runner's handle (local_pipeline/launch.py), plus what the tests read back from it."""

    def objects(self) -> dict[str, dict[str, Any]]:
        s3 = self.client("s3")
        stored = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                stored[item["Key"]] = json.loads(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
        return stored


def start_local_pipeline(tmp_path: Path, command: Sequence[str] = (), **env: str) -> LocalRun:
    """Start the runner with ``env`` on top of the test's environment (through ``command``, e.g.
    ``make run``, when given); return once it prints Ready."""
    port, aws_port = free_port(), free_port()
    run = launch.start_local_pipeline(
        tmp_path / f"console-{port}.log", port, aws_port, env, **({"command": command} if command else {})
    )
    return LocalRun(run.process, run.port, run.aws_port, run.console)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """One runner for the module. Failed records come back after 3 s (above the 1 s batching window
    plus an invocation, else a record still being stored would be delivered again) and reach the DLQ
    after 2 receives; records containing "flaky-record" fail their first delivery (test-only hooks)."""
    run = start_local_pipeline(
        tmp_path_factory.mktemp("local"),
        MAX_WORKERS="3",
        MAX_RECEIVE_COUNT="2",
        LOCAL_VISIBILITY_TIMEOUT_SECONDS="3",
        LOCAL_FAIL_FIRST_ATTEMPTS="1",
        LOCAL_FAIL_MATCH="flaky-record",
    )
    yield run
    try:
        assert run.stop(signal.SIGTERM) == 0, run.output()
    finally:
        run.kill_leftovers()
