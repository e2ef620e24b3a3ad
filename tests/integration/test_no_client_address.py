"""No client address kept (docs/PRIVACY.md; issue 28 section 1): requests from distinct source addresses, with
distinct X-Forwarded-For values and user agents, through both front doors' events and the real handlers; none
of those values appears in any log line (ours at DEBUG, Lambda's stdout and stderr, the EMF metric blobs and so
their dimensions), queued message, stored object, or X-Ray document the ingest sends with TRACING=true.

The deployed access-log formats are checked in tests/infra/test_privacy.py, make run in
tests/local/test_no_client_address_make_run.py."""

from __future__ import annotations

import copy
import json
import logging
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import consumer_handler
import ingest_handler
from bench.cold_start import child_environment, sqs_endpoint, stage_asset
from local_pipeline.events import LambdaContext, api_gateway_event, http_api_request_id
from pipeline.contract import API_KEY_HEADER, PAYLOADS_PATH
from tests.conftest import Pipeline, collection
from tests.infra.test_security import every_log_line
from tests.integration.test_http_api_events import documented_event
from tests.integration.test_tracing import _CHILD, sent_documents, xray_daemon  # noqa: F401  # a fixture

# (source address, X-Forwarded-For, User-Agent): IPv4 and IPv6, a chain of proxies, each value once.
CLIENTS = [
    ("203.0.113.45", "192.0.2.201, 198.51.100.7", "canary-agent/1.0 (device 7f3a)"),
    ("2001:db8:85a3::8a2e:370:7334", "2001:db8:feed::17", "canary-agent/2.0 (device 91c2)"),
    ("198.51.100.213", "192.0.2.99", "canary-agent/3.0 (device 0b5e)"),
]
ADDRESSES = [value for source, forwarded, _ in CLIENTS for value in (source, *forwarded.split(", "))]
AGENTS = [agent for _, _, agent in CLIENTS]


def rest_event(method: str, path: str, body: bytes | None, client: tuple[str, str, str]) -> dict[str, Any]:
    source, forwarded, agent = client
    headers = {
        "Content-Type": "application/json",
        API_KEY_HEADER: "test-key",
        "X-Forwarded-For": forwarded,
        "User-Agent": agent,
    }
    return api_gateway_event(method, path, body, headers, source_ip=source, api_key="test-key")


def http_api_event(method: str, path: str, body: bytes | None, client: tuple[str, str, str]) -> dict[str, Any]:
    """AWS's documented 2.0 example with this client's address, forwarded chain and user agent."""
    source, forwarded, agent = client
    event = copy.deepcopy(documented_event())
    event.update(
        rawPath=path,
        headers={"content-type": "application/json", "x-forwarded-for": forwarded, "user-agent": agent},
        body=None if body is None else body.decode(),
        isBase64Encoded=False,
    )
    event["requestContext"]["http"].update(method=method, path=path, sourceIp=source, userAgent=agent)
    event["requestContext"]["requestId"] = http_api_request_id()  # the example's own id, once per request
    return event


def documented_1_0_event(method: str, path: str, body: bytes | None, client: tuple[str, str, str]) -> dict[str, Any]:
    """AWS's documented 1.0 example (read as the REST shape) with this client's address and headers."""
    source, forwarded, agent = client
    event = copy.deepcopy(documented_event("http-api-payload-1.0.json"))
    headers = {"Content-Type": "application/json", "X-Forwarded-For": forwarded, "User-Agent": agent}
    event.update(
        httpMethod=method,
        path=path,
        headers=headers,
        multiValueHeaders={name: [value] for name, value in headers.items()},
        body=None if body is None else body.decode(),
        isBase64Encoded=False,
    )
    event["requestContext"]["identity"].update(sourceIp=source, userAgent=agent)
    event["requestContext"]["requestId"] = str(uuid.uuid4())  # the example's own id, once per request
    return event


FRONT_DOORS = {"rest": rest_event, "http-api-2.0": http_api_event, "documented-1.0": documented_1_0_event}


def leaks(text: str) -> list[str]:
    return [value for value in (*ADDRESSES, *AGENTS) if value in text]


@pytest.mark.parametrize("front_door", list(FRONT_DOORS))
def test_no_address_forwarded_chain_or_user_agent_reaches_a_log_metric_message_or_object(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], front_door: str
) -> None:
    # Given our loggers at DEBUG (stricter than the shipped INFO) and each client's requests: accepted, invalid
    # (400), an unknown path (404) and another method (405)
    for name in {ingest_handler.logger.name, consumer_handler.logger.name}:
        caplog.set_level(logging.DEBUG, logger=name)
    build = FRONT_DOORS[front_door]
    statuses = []
    for client in CLIENTS:
        for method, path, body in (
            ("POST", PAYLOADS_PATH, json.dumps(collection(3)).encode()),
            ("POST", PAYLOADS_PATH, b'{"version": "1", "data": [}'),
            ("POST", "/v1/elsewhere", b"{}"),
            ("GET", PAYLOADS_PATH, None),
        ):
            response = ingest_handler.lambda_handler(build(method, path, body, client), LambdaContext("ingest"))
            statuses.append(response["statusCode"])
    # When the queue is drained through the consumer
    messages = pipeline.receive()
    queued = json.dumps(messages)
    pipeline.consume(messages)

    # Then every request was served as usual, and every accepted payload stored
    assert statuses == [202, 400, 404, 405] * len(CLIENTS)
    stored = {
        key: pipeline.s3.get_object(Bucket=pipeline.resources.bucket, Key=key)["Body"].read().decode()
        for key in pipeline.objects()
    }
    assert len(stored) == 3 * len(CLIENTS) and pipeline.queue_depth() == 0
    # And none of the addresses, forwarded values or user agents is in a log line, a metric, a message or an object
    logged = every_log_line(caplog) + "\n".join(capfd.readouterr())
    assert "request accepted" in logged and "request rejected" in logged and '"_aws"' in logged  # it was all captured
    assert leaks(logged) == []
    assert leaks(queued) == []
    assert leaks("\n".join(stored.values())) == []


def test_with_tracing_on_no_address_reaches_an_xray_document_or_the_functions_output(
    tmp_path: Path,
    xray_daemon: socket.socket,  # noqa: F811  # the fixture imported above
) -> None:
    # Given TRACING=true in a Lambda environment whose invocation is sampled, and a request from a client whose
    # address, forwarded chain and user agent are known
    asset = stage_asset(tmp_path / "asset")
    event_file = tmp_path / "event.json"
    body = json.dumps(collection(3)).encode()
    event_file.write_text(json.dumps(rest_event("POST", PAYLOADS_PATH, body, CLIENTS[0])))
    # When a fresh ingest container serves it
    with sqs_endpoint() as endpoint:
        env = child_environment(asset, endpoint, tracing=True)
        env["AWS_XRAY_DAEMON_ADDRESS"] = "127.0.0.1:%d" % xray_daemon.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, str(event_file)],
            env=env,
            cwd=asset,
            capture_output=True,
            text=True,
            check=True,
        )
    # Then it was accepted and traced, and neither the segments the daemon got nor the process's output hold them
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"status": 202, "xray_sdk_loaded": True}
    documents = json.dumps(sent_documents(xray_daemon))
    assert "## lambda_handler" in documents
    assert leaks(documents) == []
    assert leaks(result.stdout + result.stderr) == []
