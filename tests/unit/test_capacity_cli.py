"""The capacity tool as a user runs it: one line for a bad argument, a table that keeps whole words, and
`make capacity ARGS="--format json"` that a JSON parser reads as it is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from local_pipeline.local_settings import REPO_ROOT
from tools.models import capacity
from tools.models.capacity import cli


def run_capacity(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.models.capacity", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--rpm", "1000", "--payload-bytes", "2000000"],
        ["--rpm", "1000", "--payload-bytes", "999999999"],
        ["--payload-bytes", "2000000"],  # no --rpm
    ],
)
def test_a_bad_argument_is_exit_2_and_one_line(args: list[str]) -> None:
    # Given a payload no queue message can hold (the ingest answers it 413), or a load without its rate
    # When the capacity tool is asked about it
    result = run_capacity(*args)
    # Then it exits 2 (a bad argument) with one line naming it, not a traceback (exit 1 means "not carried")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith("capacity: --"), lines[0]
    assert result.stdout == ""


def test_an_oversized_payload_names_the_argument_and_the_limit() -> None:
    # Given a 2,000,000-byte payload
    result = run_capacity("--rpm", "1000", "--payload-bytes", "2000000")
    # Then the line names the argument and SQS's message limit it exceeds
    assert "--payload-bytes 2000000" in result.stderr and "1048576" in result.stderr, result.stderr


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]+", text))


@pytest.mark.parametrize("profile", ["dev", "scale"])
def test_the_text_table_keeps_every_label_whole(capsys: pytest.CaptureFixture[str], profile: str) -> None:
    # Given the seed load on a profile whose checks carry labels longer than their columns
    # When the text report is printed
    cli.main(
        [*map(str, ("--rpm", *capacity.SEED[:1])), "--payloads", "10", "--payload-bytes", "1024"],
        environ={"PROFILE": profile},
    )
    table = capsys.readouterr().out
    # Then every word of every check's label and limit, and of every cost line, is in the table, uncut
    assessment = capacity.assess(capacity.resolve_config({"PROFILE": profile}), capacity.load_of(*capacity.SEED))
    shown = words_of(table)
    for check in assessment.checks:
        for label in (check.item, capacity._limit(check)):
            missing = words_of(label) - shown
            assert not missing, f"{label!r}: {missing} cut from the table"
    for line in assessment.lines:
        assert not words_of(line.item) - shown, line.item
    # And the columns still line up: each check's row has its label and its limit under their headings
    lines = table.splitlines()
    header = next(line for line in lines if "needs" in line and "limit" in line)
    rows = [line for line in lines if line[:1] in ("✓", "✗", "!", "·")]
    assert len(rows) == len(assessment.checks)
    for row, check in zip(rows, assessment.checks, strict=True):
        assert row[header.index("check") :].startswith(check.item.split()[0]), row
        assert row[header.index("limit") :].startswith(capacity._limit(check).split()[0]), row


def test_make_capacity_json_is_clean_json_on_stdout() -> None:
    # Given a user piping make capacity's JSON into a parser (no -s: make as typed)
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MAKE")}
    # When they run make capacity ARGS="--format json"
    result = subprocess.run(
        ["make", "--no-print-directory", "capacity", "PROFILE=scale", "ARGS=--format json"],
        cwd=REPO_ROOT,
        env={**environment, "PROFILE": "scale"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then stdout is one JSON document and nothing else (no echoed command before it)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["carried"] is True
