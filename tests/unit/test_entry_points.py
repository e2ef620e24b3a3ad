"""The make targets and tools as a user runs them: a bad knob is one line, exit codes as the docs say."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from local_pipeline.local_settings import REPO_ROOT


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PORT": "1", "MOTO_PORT": "2", **env}  # make run never gets far enough to bind
    for name in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):  # as from a shell, also under `make test`
        environment.pop(name, None)
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120)


def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(["make", "-s", "--no-print-directory", *args], **env)


@pytest.mark.parametrize("target", ["synth", "diff", "deploy", "run", "capacity", "preflight"])
def test_a_bad_knob_is_one_line_naming_it_from_every_make_target(target: str) -> None:
    # Given a knob out of its range, When a make target that reads the config runs
    result = make(target, MAX_WORKERS="1", SKIP_PREFLIGHT="1")
    # Then it fails with one line naming the knob and its range (besides make's own "***" line), no traceback
    output = (result.stdout + result.stderr).strip().splitlines()
    ours = [line for line in output if not re.match(r"make(\[\d+\])?: \*\*\*", line)]
    assert result.returncode == 2, output
    assert len(ours) == 1 and "MAX_WORKERS must be 2..1000" in ours[0], output


def test_app_py_under_the_cdk_cli_is_one_line_too() -> None:
    # Given a bad knob, When the CDK CLI runs the app (`cdk synth` runs `python app.py`)
    result = run([sys.executable, "app.py"], MAX_WORKERS="1")
    # Then the app says it in one line and exits 2 (cdk adds its "Subprocess exited with error 2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: MAX_WORKERS must be 2..1000 (the SQS event source maximum concurrency range)"
    ]


@pytest.mark.parametrize(
    ("args", "tool_code"),
    [
        (["RPM=1000", "PAYLOADS=501"], 1),  # more payloads per request than MAX_PAYLOADS: not carried
        (["RPM=1000", "PAYLOADS=10"], 0),
        (["RPM=0"], 2),  # bad arguments
    ],
    ids=["not carried", "carried", "bad arguments"],
)
def test_capacity_exit_codes_as_the_readme_gives_them(args: list[str], tool_code: int) -> None:
    # When the tool runs directly, Then it exits with its own code: 0 carried, 1 not, 2 bad arguments
    options = {name.lower(): value for name, value in (arg.split("=") for arg in args)}
    direct = run(
        [
            sys.executable,
            "-m",
            "tools.models.capacity",
            "--rpm",
            options["rpm"],
            "--payloads",
            options.get("payloads", "10"),
        ]
    )
    assert direct.returncode == tool_code, direct.stdout + direct.stderr
    # And through make, any failure is make's 2, with the tool's code on make's last line
    through_make = make("capacity", *args)
    assert through_make.returncode == (2 if tool_code else 0), through_make.stderr
    if tool_code:
        assert through_make.stderr.strip().splitlines()[-1].endswith(f"capacity] Error {tool_code}")
    # And the configuration reference says so
    readme = (REPO_ROOT / "docs" / "CONFIGURATION.md").read_text()
    assert "exits 0 when carried, 1 when\nnot, 2 on bad arguments" in readme
    assert "Through make, any failure exits 2 (make's own code)" in readme


def test_capacity_shows_a_small_shortfall_with_its_sign() -> None:
    # Given 501 payloads per request against MAX_PAYLOADS 500
    result = run([sys.executable, "-m", "tools.models.capacity", "--rpm", "1000", "--payloads", "501"])
    # Then the headroom reads -0.2 %, not "-0%"
    line = next(line for line in result.stdout.splitlines() if "payloads per request" in line)
    assert line.rstrip().endswith("-0.2%") and "-0%" not in result.stdout, line
