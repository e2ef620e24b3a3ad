"""The scale profile's telemetry knobs through the real handlers: LOG_LEVEL against Lambda's own log level."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"


def fresh_interpreter(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Powertools and observability read their settings at import, as in a Lambda cold start."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_LAMBDA_LOG"))},
        "POWERTOOLS_SERVICE_NAME": "ingest",
        "POWERTOOLS_METRICS_NAMESPACE": "Ns",
        "PYTHONPATH": os.pathsep.join([str(LAMBDAS), os.environ.get("PYTHONPATH", "")]),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True, timeout=60
    )


LOG_BOTH = (
    "from pipeline.observability import logger\n"
    "logger.info('request accepted', extra={'payloads': 1})\n"
    "logger.warning('queue backlog unknown')\n"
)


@pytest.mark.parametrize(
    ("env", "messages"),
    [
        # Lambda's JSON log format sets AWS_LAMBDA_LOG_LEVEL from ApplicationLogLevel, which the stack pins at
        # INFO; Powertools alone would let it win and log every request again.
        ({"AWS_LAMBDA_LOG_LEVEL": "INFO", "POWERTOOLS_LOG_LEVEL": "WARNING"}, ["queue backlog unknown"]),
        ({"POWERTOOLS_LOG_LEVEL": "WARNING"}, ["queue backlog unknown"]),
        (
            {"AWS_LAMBDA_LOG_LEVEL": "INFO", "POWERTOOLS_LOG_LEVEL": "INFO"},
            ["request accepted", "queue backlog unknown"],
        ),
    ],
)
def test_log_level_decides_which_lines_are_written_whatever_lambda_s_level(
    env: dict[str, str], messages: list[str]
) -> None:
    result = fresh_interpreter(LOG_BOTH, **env)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["message"] for line in lines] == messages
    # And every line Lambda receives has the level key Lambda files it under
    assert all(line["level"] in ("INFO", "WARNING") for line in lines)
