"""TRACING: off, the ingest never loads the X-Ray SDK (cold start, docs/PERFORMANCE.md); on, it still
sends its subsegments to the X-Ray daemon, as in Lambda with active tracing.

Each case is a fresh Python process with Lambda's environment (the stack's variables,
LAMBDA_TASK_ROOT, a sampled _X_AMZN_TRACE_ID), because the choice is made once, at import.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cold_start import TRACE_HEADER, _event_file, child_environment, sqs_endpoint, stage_asset

_CHILD = """
import json, sys
import ingest_handler

class Context:
    function_name = "ingest"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"
    aws_request_id = "6f1f5a1a-0000-4000-8000-000000000000"

with open(sys.argv[1]) as file:
    response = ingest_handler.lambda_handler(json.load(file), Context())
print(json.dumps({"status": response["statusCode"], "xray_sdk_loaded": "aws_xray_sdk" in sys.modules}))
"""


@pytest.fixture
def xray_daemon() -> Iterator[socket.socket]:
    """A UDP socket where the X-Ray SDK sends what the daemon would forward to X-Ray."""
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(5)
    try:
        yield daemon
    finally:
        daemon.close()


def ingest_one_request(tmp_path: Path, tracing: bool, daemon: socket.socket) -> dict[str, Any]:
    asset = stage_asset(tmp_path / "asset")
    with sqs_endpoint() as endpoint:
        env = child_environment(asset, endpoint, tracing)
        env["AWS_XRAY_DAEMON_ADDRESS"] = "127.0.0.1:%d" % daemon.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, str(_event_file(tmp_path))],
            env=env,
            cwd=asset,
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def sent_documents(daemon: socket.socket) -> list[dict[str, Any]]:
    daemon.settimeout(0.5)
    documents = []
    try:
        while True:
            datagram = daemon.recv(65536).decode()
            documents.append(json.loads(datagram.split("\n", 1)[1]))  # a header line, then the document
    except TimeoutError:
        return documents


def test_with_tracing_off_the_ingest_answers_without_loading_the_xray_sdk(
    tmp_path: Path, xray_daemon: socket.socket
) -> None:
    # Given TRACING=false (POWERTOOLS_TRACE_DISABLED=true) in a Lambda environment
    # When a fresh ingest container serves a request
    outcome = ingest_one_request(tmp_path, tracing=False, daemon=xray_daemon)
    # Then it is accepted, the X-Ray SDK was never imported, and nothing went to the daemon
    assert outcome == {"status": 202, "xray_sdk_loaded": False}
    assert sent_documents(xray_daemon) == []


def test_with_tracing_on_the_handler_and_its_sqs_call_reach_the_xray_daemon(
    tmp_path: Path, xray_daemon: socket.socket
) -> None:
    # Given TRACING=true in a Lambda environment whose invocation is sampled
    # When a fresh ingest container serves a request
    outcome = ingest_one_request(tmp_path, tracing=True, daemon=xray_daemon)
    # Then it is accepted, and the daemon got the handler's subsegment and, under it, the SendMessageBatch call
    assert outcome == {"status": 202, "xray_sdk_loaded": True}
    documents = sent_documents(xray_daemon)
    handler = [doc for doc in documents if doc.get("name") == "## lambda_handler"]
    assert len(handler) == 1
    assert handler[0]["trace_id"] == TRACE_HEADER.split(";")[0].removeprefix("Root=")
    calls = [doc for doc in documents if doc.get("namespace") == "aws"]
    assert [(call["parent_id"], call["aws"]["operation"], call["aws"]["successful_count"]) for call in calls] == [
        (handler[0]["id"], "SendMessageBatch", 10)
    ]


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({"POWERTOOLS_TRACE_DISABLED": "false"}, False),  # outside Lambda there is no daemon: Powertools' rule
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
    ],
)
def test_tracing_follows_powertools_rule_for_the_stack_setting(env: dict[str, str], enabled: bool) -> None:
    from pipeline.observability import tracing_enabled

    # Given the environment a function runs in, when the handler module decides, then it matches Powertools
    assert tracing_enabled(env) is enabled
