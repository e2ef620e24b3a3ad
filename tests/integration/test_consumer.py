"""The consumer handler against moto: objects, partial failures, idempotent redelivery."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from pipeline import aws_clients
from tests.conftest import Pipeline, collection
from tests.faults import fail_put_object


def queued(pipeline: Pipeline, n: int) -> tuple[str, list[dict]]:
    response = pipeline.post(collection(n))
    assert response.status == 202
    return response.body["requestId"], pipeline.receive()


def test_each_record_becomes_one_object_holding_its_envelope(pipeline: Pipeline) -> None:
    request_id, messages = queued(pipeline, 4)
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    objects = pipeline.objects()
    assert sorted(record["id"] for record in objects.values()) == [f"{request_id}-{i}" for i in range(4)]
    for message in messages:  # stored verbatim: the object is the envelope the queue carried
        envelope = json.loads(message["Body"])
        key = next(k for k in objects if k.endswith(f"/{envelope['id']}.json"))
        assert objects[key] == envelope


def test_redelivery_writes_no_second_object_or_version(pipeline: Pipeline) -> None:
    # Given a versioned bucket (where a plain overwrite would keep a second version)
    pipeline.s3.put_bucket_versioning(Bucket=pipeline.resources.bucket, VersioningConfiguration={"Status": "Enabled"})
    _, messages = queued(pipeline, 3)
    # When the same batch is delivered twice
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    # Then there are still exactly three objects, one version each
    versions = pipeline.s3.list_object_versions(
        Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX
    ).get("Versions", [])
    assert len(versions) == 3 and len(pipeline.objects()) == 3


def test_one_failing_upload_reports_exactly_that_record(pipeline: Pipeline) -> None:
    request_id, messages = queued(pipeline, 5)
    # Given S3 answers 500 for payload 2 only
    failing_id = f"{request_id}-2"
    fail_put_object(
        aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY), lambda key: key.endswith(f"/{failing_id}.json")
    )
    # When the batch is consumed
    response = pipeline.consume(messages)
    # Then exactly that record is reported, and the other four are stored
    failed_message = next(m for m in messages if json.loads(m["Body"])["id"] == failing_id)
    assert response == {"batchItemFailures": [{"itemIdentifier": failed_message["MessageId"]}]}
    assert sorted(r["id"] for r in pipeline.objects().values()) == sorted(f"{request_id}-{i}" for i in (0, 1, 3, 4))


def test_a_poison_message_fails_alone(pipeline: Pipeline) -> None:
    _, messages = queued(pipeline, 2)
    pipeline.sqs.send_message(QueueUrl=pipeline.resources.queue_url, MessageBody='{"not": "an envelope"}')
    poison = [m for m in pipeline.receive() if "not" in m["Body"]]
    response = pipeline.consume(messages + poison)
    assert response == {"batchItemFailures": [{"itemIdentifier": poison[0]["MessageId"]}]}
    assert len(pipeline.objects()) == 2


def test_when_every_record_fails_the_whole_batch_is_retried_not_lost(pipeline: Pipeline) -> None:
    _, messages = queued(pipeline, 3)
    fail_put_object(
        aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY), lambda key: True, code="SlowDown", status=503
    )
    with pytest.raises(BatchProcessingError):
        pipeline.consume(messages)
    assert pipeline.objects() == {}
    assert pipeline.queue_depth() == 3  # nothing deleted: SQS redelivers all three
