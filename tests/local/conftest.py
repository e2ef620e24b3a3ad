"""Start `python -m local_pipeline` (what `make run` runs) as a subprocess on free ports, and talk to
it only as a user would: HTTP on its port, boto3 against its embedded AWS endpoint, its console."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUCKET = "ingest-pipeline-local-payloads"
QUEUE = "ingest-pipeline-local"
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class LocalRun:
    process: subprocess.Popen[bytes]
    port: int
    aws_port: int
    console: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def aws_url(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    def output(self) -> str:
        return self.console.read_text(errors="replace")

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def objects(self) -> dict[str, dict[str, Any]]:
        s3 = self.client("s3")
        stored = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                stored[item["Key"]] = json.loads(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
        return stored

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> int:
        """Signal the runner only (not its group), as Ctrl-C / kill would, and wait for its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)

    def kill_leftovers(self) -> None:
        if process_group_alive(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_local_pipeline(tmp_path: Path, **env: str) -> LocalRun:
    """Start the runner with ``env`` on top of the test's environment; return once it prints Ready."""
    port, aws_port = free_port(), free_port()
    console = tmp_path / f"console-{port}.log"
    environment = {**os.environ, "PORT": str(port), "MOTO_PORT": str(aws_port), "PYTHONUNBUFFERED": "1", **env}
    environment.pop("AWS_ENDPOINT_URL", None)  # always the embedded moto here
    with console.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "local_pipeline"],
            cwd=REPO_ROOT,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = LocalRun(process, port, aws_port, console)
    try:
        wait_for(lambda: "Ready." in run.output() or process.poll() is not None, START_TIMEOUT_SECONDS, "Ready.")
    except AssertionError:
        run.kill_leftovers()
        raise
    if process.poll() is not None:
        raise AssertionError(f"the local pipeline exited with {process.returncode}:\n{run.output()}")
    return run


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
