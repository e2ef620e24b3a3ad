"""The docs' tool commands against `make run`'s embedded AWS, from a shell with no AWS set-up at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local_pipeline.launch import free_port
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
    # When docs/OPERATING.md's local redrive command runs against make run's endpoint
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


def test_make_query_and_verify_follow_moto_port(local_run: LocalRun, tmp_path: Path) -> None:
    # Given make run started on another AWS port (MOTO_PORT), and a user with no AWS set-up
    environment = bare_environment(tmp_path, MOTO_PORT=str(local_run.aws_port))
    # When they query it through make, naming only MOTO_PORT
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "query", "SQL=select count(*) as n from payloads", "QUERY_FORMAT=csv"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then the query reads make run's bucket on that port
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "n", result.stdout
    # And make verify defaults to the same endpoint
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "verify"], cwd=REPO_ROOT, env=environment, capture_output=True, text=True
    )
    assert f"--endpoint-url http://127.0.0.1:{local_run.aws_port} " in dry.stdout, dry.stdout


def unreachable_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("module", ["tools.ops.query", "loadtest.verify"])
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nothing on the port", "nothing answers at http://127.0.0.1:"),
        ("no such bucket", "no bucket 'nobucket' at http://127.0.0.1:"),
        ("no credentials", "no AWS credentials"),
    ],
)
def test_query_and_verify_say_what_is_wrong_in_one_line(
    local_run: LocalRun, tmp_path: Path, module: str, case: str, expected: str
) -> None:
    # Given a user with no AWS set-up, and an endpoint where nothing answers, a bucket that does not
    # exist, or AWS itself without credentials
    endpoint = {"nothing on the port": unreachable_endpoint(), "no such bucket": local_run.aws_url}.get(case)
    bucket = "nobucket" if case == "no such bucket" else BUCKET
    where = ["--endpoint-url", endpoint] if endpoint else ["--region", "eu-west-1"]
    args = (
        ["--bucket", bucket, *where, "--cache", str(tmp_path), "select 1"]
        if module == "tools.ops.query"
        else ["--bucket", bucket, *where, "--acks", str(one_acknowledgement(tmp_path)), "--wait", "0"]
    )
    # When the tool runs
    result = run_tool(module, args, bare_environment(tmp_path))
    # Then it exits 2 with one line naming the problem and what to do, not a traceback
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 1 and expected in lines[0], result.stderr
    if case == "nothing on the port":
        assert "make run" in lines[0] and "MOTO_PORT" in lines[0], lines[0]


def test_redrive_says_nothing_answered_rather_than_aws_refused(tmp_path: Path) -> None:
    # Given an endpoint where nothing listens
    result = run_tool(
        "tools.ops.redrive",
        ["--endpoint-url", unreachable_endpoint(), "--queue-name", QUEUE, "--dry-run"],
        bare_environment(tmp_path),
    )
    # Then it does not call that a refusal, and exits as every tool does when nothing answers
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nothing answers at" in result.stderr and "refused" not in result.stderr, result.stderr


def test_make_compact_says_nothing_answered_in_one_line(tmp_path: Path) -> None:
    # Given make run is not running where make compact looks
    result = run_tool(
        "tools.ops.compact",
        ["local", "--bucket", BUCKET, "--endpoint-url", unreachable_endpoint(), "--cache", str(tmp_path)],
        bare_environment(tmp_path),
    )
    # Then it says so in one line naming what to do, not a traceback
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith("compact: nothing answers at http://127.0.0.1:") and "make run" in lines[0], lines[0]


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("tools.ops.query", ["--bucket", BUCKET, "select 1"]),
        ("tools.ops.compact", ["local", "--bucket", BUCKET]),
        ("loadtest.verify", ["--bucket", BUCKET, "--wait", "0"]),
        ("tools.ops.devices", ["issue", "device-1"]),
    ],
)
def test_nothing_answering_is_one_exit_status_and_names_the_port_tried(
    tmp_path: Path, module: str, args: list[str]
) -> None:
    # Given make run is not running on the port a tool looks at
    endpoint = unreachable_endpoint()
    port = endpoint.rsplit(":", 1)[1]
    extra = {
        "tools.ops.query": ["--cache", str(tmp_path)],
        "tools.ops.compact": ["--cache", str(tmp_path)],
        "loadtest.verify": ["--acks", str(one_acknowledgement(tmp_path))],
        "tools.ops.devices": [],
    }[module]
    where = ["--endpoint-url", endpoint]
    command = [*where, *args, *extra] if module == "tools.ops.devices" else [*args, *where, *extra]
    if module == "tools.ops.compact":
        command = ["local", "--bucket", BUCKET, *where, *extra]
    # When the tool runs (query, compact, verify and device-key, as make runs them)
    result = run_tool(module, command, bare_environment(tmp_path))
    # Then every tool exits 2 for this one condition, with one line naming the port it tried
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert f"nothing answers at {endpoint} (port {port}, tried)" in lines[0], lines[0]
    # And it says how to point the tool at the port make run printed, not to start make run on the failed port
    assert "MOTO_PORT=<port>" in lines[0] and f"MOTO_PORT={port}" not in lines[0], lines[0]
