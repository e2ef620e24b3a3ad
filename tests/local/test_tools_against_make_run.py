"""The README's tool commands against `make run`'s embedded AWS, from a shell with no AWS set-up at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local_pipeline.local_settings import REPO_ROOT
from tests.local.conftest import BUCKET, QUEUE, LocalRun


def bare_environment(home: Path, **extra: str) -> dict[str, str]:
    """A new user's shell: no AWS variables, no ~/.aws, no instance metadata to fall back on."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(home / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
    return environment


def run_tool(module: str, args: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_readmes_local_redrive_command_works_with_no_aws_setup(local_run: LocalRun, tmp_path: Path) -> None:
    # Given a shell with no region and no credentials
    # When the README's local redrive command runs against make run's endpoint
    result = run_tool(
        "tools.ops.redrive",
        ["--endpoint-url", local_run.aws_url, "--queue-name", QUEUE, "--dry-run"],
        bare_environment(tmp_path),
    )
    # Then it reports the DLQ (region and fake credentials defaulted as the banner's AWS CLI line does)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{QUEUE}-dlq" in result.stdout and "dry run" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr


def one_acknowledgement(tmp_path: Path) -> Path:
    """An acks file as the load test writes it: one 202 whose payload was never stored."""
    acks = tmp_path / "acks-1.jsonl"
    ack = {
        "requestId": "00000000-0000-4000-8000-000000000000",
        "accepted": 1,
        "sentAt": 1_700_000_000_000,
        "ackAt": 1_700_000_000_100,
        "status": 202,
    }
    acks.write_text(json.dumps(ack) + "\n")
    return acks


def test_verify_works_against_make_run_with_no_aws_setup(local_run: LocalRun, tmp_path: Path) -> None:
    # Given one acknowledgement file (its payload was never stored) and no AWS set-up
    acks = one_acknowledgement(tmp_path)
    # When verify reads make run's bucket
    result = run_tool(
        "loadtest.verify",
        ["--bucket", BUCKET, "--endpoint-url", local_run.aws_url, "--acks", str(acks), "--wait", "0"],
        bare_environment(tmp_path),
    )
    # Then it reconciles (and finds the payload lost) instead of failing on region or credentials
    assert "lost       1" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    # And the rate it derives from the acks is called what it is: sent (achieved), not offered
    assert "sent 10.0 req/s" in result.stdout and "offered" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("module", "args", "missing"),
    [
        ("tools.ops.redrive", ["--queue-name", QUEUE, "--dry-run"], "no AWS region"),
        ("tools.ops.redrive", ["--queue-name", QUEUE, "--dry-run", "--region", "eu-west-1"], "no AWS credentials"),
        ("loadtest.verify", ["--bucket", BUCKET, "--wait", "0", "--region", "eu-west-1"], "no AWS credentials"),
    ],
)
def test_missing_region_or_credentials_is_one_line_naming_what_to_set(
    tmp_path: Path, module: str, args: list[str], missing: str
) -> None:
    # Given no AWS set-up and a real (not local) AWS endpoint
    acks = one_acknowledgement(tmp_path)
    if module == "loadtest.verify":
        args = [*args, "--acks", str(acks)]
    # When the tool runs
    result = run_tool(module, args, bare_environment(tmp_path))
    # Then it fails with one line saying what to set, not a traceback
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and missing in lines[0], result.stderr
    assert ("AWS_REGION" in lines[0]) if missing == "no AWS region" else ("AWS_PROFILE" in lines[0]), lines[0]
