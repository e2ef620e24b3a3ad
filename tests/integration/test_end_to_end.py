"""POST event -> real queue -> SQS event from the received messages -> consumer -> objects in S3."""

from __future__ import annotations

import json

from tests.conftest import Pipeline, collection


def test_every_accepted_payload_lands_in_s3_once_and_unchanged(pipeline: Pipeline) -> None:
    # Given a client POSTs a collection of 25 payloads (three SendMessageBatch calls)
    sent = collection(25)
    response = pipeline.post(sent)
    assert response.status == 202
    request_id = response.body["requestId"]
    assert response.body == {"requestId": request_id, "accepted": 25}

    # When the worker pool consumes everything on the queue
    messages = pipeline.receive()
    assert len(messages) == 25
    assert pipeline.consume(messages) == {"batchItemFailures": []}

    # Then each payload is one object, keyed by request id + index under dt=/hour=, equal to what was sent
    objects = pipeline.objects()
    assert len(objects) == 25
    by_id = {record["id"]: (key, record) for key, record in objects.items()}
    for index, payload in enumerate(sent["data"]):
        key, record = by_id[f"{request_id}-{index}"]
        assert key.startswith("payloads/dt=") and f"/hour={record['receivedAt'][11:13]}/" in key
        assert key.endswith(f"/{request_id}-{index}.json")
        assert record["payload"] == payload
        assert (record["version"], record["token"], record["requestId"]) == (sent["version"], sent["token"], request_id)
    # And nothing is left behind
    assert pipeline.queue_depth() == 0
    assert pipeline.queue_depth(pipeline.resources.dlq_url) == 0


def test_a_rejected_request_enqueues_nothing(pipeline: Pipeline) -> None:
    # Given a collection whose last payload is not an object
    bad = collection(5)
    bad["data"].append("not an object")
    # When it is posted
    response = pipeline.post(bad)
    # Then the client gets a problem naming the index, and none of the 5 good payloads was queued
    assert response.status == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.body["pointer"] == "/data/5"
    assert pipeline.queue_depth() == 0
    assert json.loads(json.dumps(response.body))["status"] == 400
