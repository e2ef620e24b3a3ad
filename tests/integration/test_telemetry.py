"""What the on-call engineer gets from a real ingest -> consume run: EMF metrics and JSON log lines.

Metrics are read from stdout exactly as CloudWatch reads EMF from a Lambda's log stream. Log lines
are read from the Powertools handler's own stream, which is what Lambda ships to the log group.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.config import PipelineConfig
from pipeline import aws_clients
from pipeline.observability import logger
from tests.conftest import Pipeline, collection
from tests.faults import fail_put_object

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
NAMESPACE = "IngestPipelineTest"  # tests/conftest.py sets POWERTOOLS_METRICS_NAMESPACE before import


class LogLines:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def read(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    def raw(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    handler = logger.registered_handler
    assert hasattr(handler, "setStream")
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield LogLines(buffer)
    finally:
        handler.setStream(previous)


def consumer_s3(pipeline: Pipeline) -> Any:
    """The consumer's own cached S3 client, where fault injection must go."""
    return aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY)


def emf_metrics(stdout: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]:
    """Every EMF value on stdout, by (metric name, dimensions other than service)."""
    values: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = defaultdict(list)
    for line in stdout.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            dimension_names = {name for dimension_set in directive["Dimensions"] for name in dimension_set}
            assert "service" in dimension_names
            dimensions = tuple(sorted((name, blob[name]) for name in dimension_names if name != "service"))
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                values[(metric["Name"], dimensions)].extend(value if isinstance(value, list) else [value])
    return dict(values)


def test_an_ingest_and_consume_run_emits_the_pipeline_metrics(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a client POSTs 4 payloads and the worker pool stores them
    capsys.readouterr()
    assert pipeline.post(collection(4)).status == 202
    messages = pipeline.receive()
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    # And SQS redelivers the same 4 messages (the create-only write skips them)
    pipeline.consume(messages)

    # Then the ingest counted one accepted request of 4 payloads, the consumer 4 stored and 4 skipped
    metrics = emf_metrics(capsys.readouterr().out)
    assert metrics[("RequestsAccepted", ())] == [1.0]
    assert metrics[("PayloadsAccepted", ())] == [4.0]
    assert metrics[("PayloadsStored", ())] == [1.0] * 4
    assert metrics[("DuplicatesSkipped", ())] == [1.0] * 4
    # And the end-to-end latency is one value per stored payload, from receivedAt to stored
    latencies = metrics[("EndToEndLatency", ())]
    assert len(latencies) == 4 and all(0 <= value < 60_000 for value in latencies)
    # And nothing failed
    assert not any(
        name in {"StoreFailures", "EnqueueFailures", "EnqueueRetries", "RequestsRejected"} for name, _ in metrics
    )


def test_a_failing_upload_is_counted_as_a_store_failure(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    # Given S3 refuses the object of payload 1
    assert pipeline.post(collection(3)).status == 202
    fail_put_object(consumer_s3(pipeline), lambda key: key.endswith("-1.json"))
    capsys.readouterr()
    # When the consumer runs
    pipeline.consume(pipeline.receive())
    # Then two payloads are stored and one failure is counted
    metrics = emf_metrics(capsys.readouterr().out)
    assert metrics[("StoreFailures", ())] == [1.0]
    assert metrics[("PayloadsStored", ())] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("method", "path", "body", "reason"),
    [
        ("POST", "/v1/payloads", b"{not json", "invalid"),
        ("POST", "/v1/payloads", b"x" * (1024 * 1024 + 1), "too-large"),
        ("GET", "/v1/payloads", None, "route"),
        ("POST", "/v2/elsewhere", b"{}", "route"),
    ],
)
def test_rejections_are_counted_by_a_low_cardinality_reason(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], method: str, path: str, body: bytes | None, reason: str
) -> None:
    capsys.readouterr()
    response = pipeline.post(body, method=method, path=path)
    assert 400 <= response.status < 500
    metrics = emf_metrics(capsys.readouterr().out)
    # Exactly one RequestsRejected, whose only extra dimension is the reason class
    assert {key: value for key, value in metrics.items() if key[0] == "RequestsRejected"} == {
        ("RequestsRejected", (("reason", reason),)): [1.0]
    }
    assert ("RequestsAccepted", ()) not in metrics


def test_one_request_id_finds_the_ingest_line_and_every_stored_payloads_line(
    pipeline: Pipeline, log_lines: LogLines
) -> None:
    # Given API Gateway assigned this request id to a POST of 3 payloads
    request_id = "c0ffee00-1234-4321-abcd-0123456789ab"
    sent = collection(3)
    assert pipeline.post(sent, request_id=request_id).status == 202
    # And another client's request is in the same consumer batch
    other = pipeline.post(collection(2)).body["requestId"]
    # When the consumer stores them
    assert pipeline.consume(pipeline.receive()) == {"batchItemFailures": []}

    # Then filtering both log groups on correlation_id finds the ingest line and one line per payload
    lines = [line for line in log_lines.read() if line.get("correlation_id") == request_id]
    ingest = [line for line in lines if line["message"] == "request accepted"]
    stored = [line for line in lines if line["message"] == "payload stored"]
    assert len(ingest) == 1 and ingest[0]["payloads"] == 3
    assert sorted(line["payloadId"] for line in stored) == [f"{request_id}-{i}" for i in range(3)]
    assert all(line["requestId"] == request_id and line["key"].endswith(f"{line['payloadId']}.json") for line in stored)
    # And the other request's lines carry its own id, never this one (records run concurrently)
    other_lines = [line for line in log_lines.read() if line.get("payloadId", "").startswith(other)]
    assert len(other_lines) == 2 and all(line["correlation_id"] == other for line in other_lines)
    # And no token and no payload body is in any log line
    assert sent["token"] not in log_lines.raw()
    assert '"temp"' not in log_lines.raw()


def test_a_failed_record_logs_its_correlation_id_without_the_body(pipeline: Pipeline, log_lines: LogLines) -> None:
    request_id = "feed0000-1234-4321-abcd-0123456789ab"
    # Given S3 refuses payload 0 of a request of 2 (a batch where every record fails is raised instead)
    assert pipeline.post(collection(2), request_id=request_id).status == 202
    fail_put_object(consumer_s3(pipeline), lambda key: key.endswith("-0.json"))
    # When the consumer runs, then that record's error line carries the request's correlation id
    assert len(pipeline.consume(pipeline.receive())["batchItemFailures"]) == 1
    failures = [line for line in log_lines.read() if line["message"].startswith("payload not stored")]
    assert len(failures) == 1
    assert failures[0]["correlation_id"] == request_id and failures[0]["level"] == "ERROR"
    assert "device-token-123" not in log_lines.raw()


class TestBatchObjectMode:
    @pytest.fixture
    def config(self) -> PipelineConfig:
        return PipelineConfig(OBJECT_MODE="batch")

    def test_a_request_id_finds_the_batch_object_line_that_holds_its_payloads(
        self, pipeline: Pipeline, log_lines: LogLines, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # Given two requests whose payloads the consumer writes into one batch object
        request_id = "0b1ec700-1234-4321-abcd-0123456789ab"
        assert pipeline.post(collection(3), request_id=request_id).status == 202
        other = pipeline.post(collection(2)).body["requestId"]
        capsys.readouterr()
        # When the consumer stores them
        assert pipeline.consume(pipeline.receive()) == {"batchItemFailures": []}
        # Then the object's log line names both request ids, so searching either finds it
        stored = [line for line in log_lines.read() if line["message"] == "batch object stored"]
        assert sum(line["payloads"] for line in stored) == 5
        assert any(request_id in line["requestIds"] and other in line["requestIds"] for line in stored)
        # And the metrics count payloads, not objects
        assert sum(emf_metrics(capsys.readouterr().out)[("PayloadsStored", ())]) == 5.0


def test_the_stage_is_a_dimension_of_every_metric_when_the_stack_sets_it() -> None:
    # Powertools reads its settings at import, as in a Lambda cold start: so a fresh interpreter.
    code = (
        "from pipeline.observability import count_rejected_request, metrics\n"
        "from aws_lambda_powertools.metrics import MetricUnit\n"
        "count_rejected_request(413)\n"
        "metrics.add_metric(name='PayloadsStored', unit=MetricUnit.Count, value=1)\n"
        "metrics.flush_metrics()\n"
    )
    env = {
        **os.environ,
        "STAGE": "dev",
        "POWERTOOLS_SERVICE_NAME": "consumer",
        "POWERTOOLS_METRICS_NAMESPACE": "Ns",
        "PYTHONPATH": os.pathsep.join([str(LAMBDAS), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    blobs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"_aws"')]
    assert [(b["stage"], b["service"], b["_aws"]["CloudWatchMetrics"][0]["Namespace"]) for b in blobs] == [
        ("dev", "consumer", "Ns"),
        ("dev", "consumer", "Ns"),
    ]
    assert blobs[0]["reason"] == "too-large" and "reason" not in blobs[1]
