"""The ingest handler, driven by API Gateway REST proxy events, against moto SQS."""

from __future__ import annotations

import gzip
import json

import pytest

from pipeline import aws_clients
from tests.conftest import JSON_HEADERS, Pipeline, collection
from tests.faults import FailingSendMessageBatch


def test_valid_collection_gets_202_and_one_message_per_payload(pipeline: Pipeline) -> None:
    # Given a collection of 3 payloads
    sent = collection(3)
    # When it is posted with a known API Gateway request id
    response = pipeline.post(sent, request_id="0b6c2d8e-1111-4a2b-9c3d-000000000001")
    # Then the client gets 202 with the request id and count
    assert response.status == 202
    assert response.headers["Content-Type"] == "application/json"
    assert response.body == {"requestId": "0b6c2d8e-1111-4a2b-9c3d-000000000001", "accepted": 3}
    # And the queue holds one envelope per payload, with the request id as a message attribute
    messages = pipeline.receive()
    bodies = sorted((json.loads(m["Body"]) for m in messages), key=lambda b: b["id"])
    assert [b["id"] for b in bodies] == [f"0b6c2d8e-1111-4a2b-9c3d-000000000001-{i}" for i in range(3)]
    assert [b["payload"] for b in bodies] == sent["data"]
    assert {m["MessageAttributes"]["requestId"]["StringValue"] for m in messages} == {
        "0b6c2d8e-1111-4a2b-9c3d-000000000001"
    }
    assert all(b["receivedAt"].endswith("Z") and len(b["receivedAt"]) == 24 for b in bodies)


def test_gzip_body_is_accepted(pipeline: Pipeline) -> None:
    raw = gzip.compress(json.dumps(collection(2)).encode())
    response = pipeline.post(raw, headers={**JSON_HEADERS, "Content-Encoding": "gzip"})
    assert (response.status, response.body["accepted"]) == (202, 2)
    assert pipeline.queue_depth() == 2


def test_500_payloads_of_1_kib_are_all_enqueued(pipeline: Pipeline) -> None:
    sent = collection(0, data=[{"i": i, "pad": "x" * 1000} for i in range(500)])
    response = pipeline.post(sent)
    assert (response.status, response.body["accepted"]) == (202, 500)
    assert pipeline.queue_depth() == 500


@pytest.mark.parametrize(
    ("raw", "headers", "status", "problem"),
    [
        (b'{"version": "1", "token": "t", "data": [', None, 400, "malformed-json"),
        (json.dumps({"version": "1", "token": "t", "data": []}).encode(), None, 400, "empty-field"),
        (json.dumps(collection(501)).encode(), None, 413, "too-many-payloads"),
        (json.dumps(collection(2)).encode(), {"Content-Type": "text/plain"}, 415, "unsupported-media-type"),
        (gzip.compress(b" " * (8 * 1024 * 1024)), {**JSON_HEADERS, "Content-Encoding": "gzip"}, 413, "body-too-large"),
    ],
)
def test_bad_requests_get_problem_json_and_enqueue_nothing(
    pipeline: Pipeline, raw: bytes, headers: dict[str, str] | None, status: int, problem: str
) -> None:
    response = pipeline.post(raw, headers=headers)
    assert response.status == status
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.body["type"] == f"urn:ingest-pipeline:problem:{problem}"
    assert response.body["status"] == status and response.body["title"] and response.body["detail"]
    assert pipeline.queue_depth() == 0


def test_wrong_method_is_405_and_unknown_path_is_404(pipeline: Pipeline) -> None:
    assert pipeline.post(None, method="GET").status == 405
    response = pipeline.post(collection(1), path="/v1/nope")
    assert (response.status, response.headers["Content-Type"]) == (404, "application/problem+json")
    assert pipeline.queue_depth() == 0


def test_transient_failed_entries_are_retried_and_the_client_gets_202(pipeline: Pipeline) -> None:
    # Given SQS lists entries 1 and 2 of the first SendMessageBatch call in Failed
    faults = FailingSendMessageBatch(
        aws_clients.sqs_client(), lambda call, entry: call == 1 and entry["Id"] in ("1", "2")
    )
    # When a collection of 3 is posted
    response = pipeline.post(collection(3))
    # Then only the failed entries were retried, and all three are on the queue exactly once
    assert response.status == 202 and response.body["accepted"] == 3
    assert faults.calls == 2 and faults.failed_entries == 2
    ids = sorted(json.loads(m["Body"])["id"].rsplit("-", 1)[1] for m in pipeline.receive())
    assert ids == ["0", "1", "2"]


def test_persistently_failing_entries_get_503_with_retry_after(pipeline: Pipeline) -> None:
    # Given SQS never accepts entry 1
    faults = FailingSendMessageBatch(aws_clients.sqs_client(), lambda call, entry: entry["Id"] == "1")
    # When a collection of 3 is posted
    response = pipeline.post(collection(3))
    # Then the client is told to retry, and success is never claimed
    assert response.status == 503
    assert response.headers["Retry-After"] == str(pipeline.config.RETRY_AFTER_SECONDS)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.body["type"] == "urn:ingest-pipeline:problem:enqueue-failed"
    assert faults.calls == pipeline.config.ENQUEUE_MAX_ATTEMPTS
    # (the two accepted entries stay queued: see docs/RELIABILITY.md on client retries)
    assert pipeline.queue_depth() == 2
