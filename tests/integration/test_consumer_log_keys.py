"""Per-record log keys in OBJECT_MODE=payload stay on that record's lines: the invocation's own lines
after the records (the retry-delay line) carry no record's keys. (Its correlation_id key is not checked:
in this one process the ingest handler sets the shared logger's correlation id; in AWS they are two
functions.)"""

from __future__ import annotations

import io
import json
from typing import Any

from pipeline import aws_clients
from tests.conftest import Pipeline, collection
from tests.faults import fail_put_object


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_the_retry_delay_line_carries_no_records_keys(pipeline: Pipeline, log_lines: io.StringIO) -> None:
    # Given a request of 3 payloads, and S3 refuses the last one
    request_id = "5eed0000-1234-4321-abcd-0123456789ab"
    assert pipeline.post(collection(3), request_id=request_id).status == 202
    fail_put_object(aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY), lambda key: key.endswith("-2.json"))
    # When the consumer stores them
    assert len(pipeline.consume(pipeline.receive())["batchItemFailures"]) == 1
    # Then each payload's line carries the request's id and its own message id
    logged = lines(log_lines)
    payload_lines = [line for line in logged if line["message"].startswith(("payload stored", "payload not stored"))]
    assert len(payload_lines) == 3
    assert all(line["correlation_id"] == request_id and line["messageId"] for line in payload_lines)
    assert len({line["messageId"] for line in payload_lines}) == 3
    # And the invocation's retry-delay line, written after the records, carries none of them
    [retry_line] = [line for line in logged if line["message"] == "failed records come back after their retry delay"]
    assert not {"requestId", "messageId"} & set(retry_line)
