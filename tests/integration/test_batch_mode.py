"""OBJECT_MODE=batch through the real handlers and moto: one gzip NDJSON object per batch, retry
semantics all-or-nothing per object, and exactly what redelivery can and cannot duplicate."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from infra.config import PipelineConfig
from pipeline import aws_clients
from tests.conftest import Pipeline, collection
from tests.faults import fail_put_object


@pytest.fixture
def config() -> PipelineConfig:
    return PipelineConfig(OBJECT_MODE="batch")


def stored(pipeline: Pipeline) -> dict[str, list[dict[str, Any]]]:
    """Every raw object (OBJECT_PREFIX: not the late markers beside it) as its list of NDJSON envelopes, by key."""
    objects = {}
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX)
    for item in listing.get("Contents", []):
        raw = pipeline.s3.get_object(Bucket=pipeline.resources.bucket, Key=item["Key"])["Body"].read()
        objects[item["Key"]] = [json.loads(line) for line in gzip.decompress(raw).splitlines()]
    return objects


def queued(pipeline: Pipeline, n: int) -> tuple[str, list[dict[str, Any]]]:
    response = pipeline.post(collection(n))
    assert response.status == 202
    return response.body["requestId"], pipeline.receive()


def send_envelope(pipeline: Pipeline, payload_id: str, received_at: str) -> None:
    """An envelope exactly as the ingest writes it, with a chosen receivedAt (to span two hours)."""
    body = {
        "id": payload_id,
        "requestId": payload_id.rsplit("-", 1)[0],
        "receivedAt": received_at,
        "version": "1",
        "token": "t",
        "payload": {"n": payload_id},
    }
    pipeline.sqs.send_message(
        QueueUrl=pipeline.resources.queue_url, MessageBody=json.dumps(body, separators=(",", ":"))
    )


def message_ids(messages: list[dict[str, Any]], predicate: Any = lambda envelope: True) -> list[str]:
    return sorted(m["MessageId"] for m in messages if predicate(json.loads(m["Body"])))


def failures(response: dict[str, Any]) -> list[str]:
    return sorted(item["itemIdentifier"] for item in response["batchItemFailures"])


def test_a_batch_becomes_one_gzip_ndjson_object_holding_every_payload(pipeline: Pipeline) -> None:
    # Given a client POSTs 25 payloads and the worker pool receives them as one batch
    sent = collection(25)
    response = pipeline.post(sent)
    request_id = response.body["requestId"]
    messages = pipeline.receive()
    # When the batch is consumed
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    # Then there is one object, gzip NDJSON, under the same dt=/hour= layout as payload mode
    objects = stored(pipeline)
    assert len(objects) == 1
    key, envelopes = next(iter(objects.items()))
    received_at = envelopes[0]["receivedAt"]
    assert key.startswith(f"payloads/dt={received_at[:10]}/hour={received_at[11:13]}/batch-") and key.endswith(
        ".ndjson.gz"
    )
    head = pipeline.s3.head_object(Bucket=pipeline.resources.bucket, Key=key)
    assert head["ContentType"] == "application/x-ndjson"
    # And it holds each envelope exactly as queued, whose payloads equal what was sent
    assert sorted(envelopes, key=lambda e: e["id"]) == sorted(
        (json.loads(m["Body"]) for m in messages), key=lambda e: e["id"]
    )
    by_id = {envelope["id"]: envelope for envelope in envelopes}
    assert [by_id[f"{request_id}-{i}"]["payload"] for i in range(25)] == sent["data"]
    assert pipeline.queue_depth() == 0


def test_redelivery_of_the_same_batch_creates_no_second_object(pipeline: Pipeline) -> None:
    # Given a versioned bucket, where a plain overwrite would keep a second version
    pipeline.s3.put_bucket_versioning(Bucket=pipeline.resources.bucket, VersioningConfiguration={"Status": "Enabled"})
    _, messages = queued(pipeline, 10)
    # When the identical batch is delivered twice (e.g. the first invocation timed out after its PUT)
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    # Then there is one object with one version
    versions = pipeline.s3.list_object_versions(
        Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX
    ).get("Versions", [])
    assert len(versions) == 1
    assert len(next(iter(stored(pipeline).values()))) == 10


def test_a_failed_put_reports_every_record_of_that_object_and_only_those(pipeline: Pipeline) -> None:
    # Given a batch spanning two hour partitions: 2 payloads at 02h, 3 at 03h (two objects)
    for index in range(2):
        send_envelope(pipeline, f"early-{index}", f"2026-11-26T02:59:5{index}.000Z")
    for index in range(3):
        send_envelope(pipeline, f"late-{index}", f"2026-11-26T03:00:0{index}.000Z")
    messages = pipeline.receive()
    # And S3 answers 503 for the 03h object
    fail_put_object(
        aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY),
        lambda key: "/hour=03/" in key,
        code="SlowDown",
        status=503,
    )
    # When the batch is consumed
    response = pipeline.consume(messages)
    # Then all three 03h records are reported failed, and the 02h object is stored
    assert failures(response) == message_ids(messages, lambda e: e["id"].startswith("late-"))
    objects = stored(pipeline)
    assert [sorted(e["id"] for e in envelopes) for envelopes in objects.values()] == [["early-0", "early-1"]]
    assert pipeline.queue_depth() == 3  # SQS keeps exactly the failed records for redelivery


def test_a_failed_object_is_stored_once_when_its_records_come_back(pipeline: Pipeline) -> None:
    # Given every PUT fails once (S3 throttling)
    _, messages = queued(pipeline, 4)
    attempts: list[str] = []
    fail_put_object(
        aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY),
        lambda key: attempts.append(key) or len(attempts) == 1,
        code="SlowDown",
        status=503,
    )
    # When the batch fails as a whole (Powertools raises: nothing is deleted, nothing is lost)
    with pytest.raises(BatchProcessingError):
        pipeline.consume(messages)
    assert stored(pipeline) == {} and pipeline.queue_depth() == 4
    # And the same records are delivered again
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    # Then one object holds all four payloads, at the key the first attempt targeted
    objects = stored(pipeline)
    assert list(objects) == [attempts[0]] and len(objects[attempts[0]]) == 4


def test_a_poison_record_is_reported_alone_and_the_good_ones_are_stored(pipeline: Pipeline) -> None:
    # Given a batch of 3 good envelopes and one message that is not ours
    request_id, messages = queued(pipeline, 3)
    pipeline.sqs.send_message(QueueUrl=pipeline.resources.queue_url, MessageBody='{"not": "an envelope"}')
    poison = pipeline.receive()
    # When it is consumed
    response = pipeline.consume(messages + poison)
    # Then only the poison record is reported (SQS retries it, then dead-letters it)
    assert failures(response) == [poison[0]["MessageId"]]
    # And the three good payloads are stored in one object
    assert [sorted(e["id"] for e in envelopes) for envelopes in stored(pipeline).values()] == [
        [f"{request_id}-{i}" for i in range(3)]
    ]


def test_a_regrouped_redelivery_can_repeat_a_payload_that_readers_dedupe_by_id(pipeline: Pipeline) -> None:
    # Given payloads 0..2 were stored as one object, but the invocation failed after the PUT
    # (e.g. a timeout), so payloads 1 and 2 come back later alongside a new payload 3
    request_id, messages = queued(pipeline, 4)
    by_id = {json.loads(m["Body"])["id"]: m for m in messages}
    first, regrouped = [by_id[f"{request_id}-{i}"] for i in (0, 1, 2)], [by_id[f"{request_id}-{i}"] for i in (1, 2, 3)]
    pipeline.consume(first)
    pipeline.consume(regrouped)
    # Then a different set of payloads made a different object: 1 and 2 are in both
    objects = stored(pipeline)
    assert len(objects) == 2
    ids = [envelope["id"] for envelopes in objects.values() for envelope in envelopes]
    assert sorted(ids) == sorted(f"{request_id}-{i}" for i in (0, 1, 1, 2, 2, 3))
    # And deduplicating by id restores every payload exactly once, unchanged
    unique = {envelope["id"]: envelope for envelopes in objects.values() for envelope in envelopes}
    assert unique == {payload_id: json.loads(message["Body"]) for payload_id, message in by_id.items()}
