"""Start `python -m local_pipeline` (what `make run` runs) as a subprocess and wait until it is Ready.

For whatever drives the runner from outside, as a user would (tests/local, the throughput bench in
bench/local_pipeline_throughput.py): the handle says where it listens and stops it like Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from local_pipeline.local_settings import REPO_ROOT

START_TIMEOUT_SECONDS = 60
# The banner's last line: printed once the HTTP front and the pollers run.
READY_LINE = "Ready."


class LaunchError(RuntimeError):
    """The runner exited, or did not print Ready in time; the message carries its console."""


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice), for a runner started next."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class LocalRun:
    """A started runner: its process (leader of its own process group), ports and console file."""

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

    def client(self, service: str, **config: Any) -> Any:
        """A boto3 client of the embedded AWS endpoint (moto takes any credentials)."""
        return boto3.client(
            service,
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            **config,
        )

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> int:
        """Signal the runner only (not its group), as Ctrl-C / kill would, and wait for its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)

    def kill_leftovers(self) -> None:
        """SIGKILL whatever of its process group still runs (moto, Lambda environments)."""
        if process_group_alive(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_local_pipeline(
    console: Path,
    port: int,
    aws_port: int,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT_SECONDS,
    command: Sequence[str] = (sys.executable, "-m", "local_pipeline"),
) -> LocalRun:
    """Start the runner on ``port`` (HTTP) and ``aws_port`` (embedded moto, never AWS_ENDPOINT_URL)
    with ``env`` on top of this process's environment, writing its console to ``console``; return
    once it prints Ready. LaunchError if it exits or times out first (nothing of it is left running).
    ``command`` may wrap the runner as a user would (``make run``, ``timeout 30 make run``): the
    handle's process is then the wrapper, leader of the group."""
    environment = {**os.environ, "PORT": str(port), "MOTO_PORT": str(aws_port), "PYTHONUNBUFFERED": "1", **(env or {})}
    environment.pop("AWS_ENDPOINT_URL", None)
    with console.open("wb") as sink:
        process = subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill_leftovers reaches every child
        )
    run = LocalRun(process, port, aws_port, console)
    deadline = time.monotonic() + timeout
    while READY_LINE not in run.output():
        if process.poll() is not None:
            run.kill_leftovers()
            raise LaunchError(f"the local pipeline exited with {process.returncode}:\n{run.output()}")
        if time.monotonic() > deadline:
            run.kill_leftovers()
            raise LaunchError(f"the local pipeline did not print {READY_LINE} within {timeout} s:\n{run.output()}")
        time.sleep(0.2)
    return run
