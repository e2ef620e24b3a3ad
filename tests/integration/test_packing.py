"""MESSAGE_TARGET_BYTES through the real handlers and moto: a request's payloads share as few SQS
messages as fit the target, and every payload is still stored exactly once, at the key it always had,
in both object modes, also when delivered twice, with failures contained to their own messages."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

import consumer_handler
from infra.config import PipelineConfig
from local_pipeline.events import LambdaContext, sqs_event
from pipeline import aws_clients
from tests.conftest import Pipeline, collection
from tests.faults import FailingSendMessageBatch, fail_put_object
from tests.integration import test_telemetry
from tests.integration.test_previous_release import records as previous_release_records
from tests.integration.test_previous_release import scale_config
from tests.integration.test_telemetry import LogLines, emf_metrics

TARGET = 65536  # the scale profile's MESSAGE_TARGET_BYTES (scale_config)
log_lines = test_telemetry.log_lines  # the fixture reading the Powertools log lines


PACKING = [
    pytest.param(scale_config(), id="scale-batch"),
    pytest.param(scale_config(OBJECT_MODE="payload"), id="scale-payload"),
    pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=TARGET), id="default-payload"),
]


def kib_payloads(n: int) -> dict[str, Any]:
    """A collection of n payloads of exactly 1 KiB of compact JSON each (the seed's request)."""
    data = []
    for index in range(n):
        payload = {"seq": index, "pad": ""}
        payload["pad"] = "x" * (1024 - len(json.dumps(payload, separators=(",", ":"))))
        data.append(payload)
    return {"version": "1.4.2", "token": "device-token-123", "data": data}


def stored_ids(pipeline: Pipeline) -> list[str]:
    """Every payload id in the bucket, once per stored copy."""
    ids = []
    bucket = pipeline.resources.bucket
    for item in pipeline.s3.list_objects_v2(Bucket=bucket, Prefix=pipeline.config.OBJECT_PREFIX).get("Contents", []):
        data = pipeline.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        if item["Key"].endswith(".ndjson.gz"):
            ids.extend(json.loads(line)["id"] for line in gzip.decompress(data).splitlines())
        else:
            ids.append(json.loads(data)["id"])
    return sorted(ids)


def versions(pipeline: Pipeline) -> int:
    return len(
        pipeline.s3.list_object_versions(Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX).get(
            "Versions", []
        )
    )


def ids_of(request_id: str, n: int) -> list[str]:
    return sorted(f"{request_id}-{index}" for index in range(n))


def consume_all_failing_ok(pipeline: Pipeline, messages: list[dict[str, Any]]) -> set[str]:
    """The ids the consumer reported failed (all of them when every record failed and it raised)."""
    try:
        return {item["itemIdentifier"] for item in pipeline.consume(messages)["batchItemFailures"]}
    except BatchProcessingError:
        return {message["MessageId"] for message in messages}


@pytest.mark.parametrize("config", PACKING)
def test_ten_1_kib_payloads_are_one_message_and_each_is_stored_once_also_when_delivered_twice(
    pipeline: Pipeline,
) -> None:
    # Given the scale profile's request: 10 payloads of 1 KiB
    response = pipeline.post(kib_payloads(10))
    assert response.status == 202 and response.body["accepted"] == 10
    request_id = response.body["requestId"]
    # Then SQS holds one message: the 10 envelopes, one per line, with the requestId attribute
    [message] = pipeline.receive()
    lines = message["Body"].split("\n")
    assert [json.loads(line)["id"] for line in lines] == [f"{request_id}-{i}" for i in range(10)]
    assert message["MessageAttributes"]["requestId"]["StringValue"] == request_id
    assert len(message["Body"].encode()) + len("requestId") + len("String") + len(request_id) <= TARGET

    # When the consumer gets it twice in one batch (an SQS duplicate), then again in a later batch
    assert pipeline.consume([message, message]) == {"batchItemFailures": []}
    assert pipeline.consume([message]) == {"batchItemFailures": []}

    # Then every payload is stored exactly once, unchanged, at its usual key, with one version each
    assert stored_ids(pipeline) == ids_of(request_id, 10)
    objects = 1 if pipeline.config.OBJECT_MODE == "batch" else 10
    assert versions(pipeline) == objects
    if pipeline.config.OBJECT_MODE == "payload":
        stored = pipeline.objects()
        for index, payload in enumerate(kib_payloads(10)["data"]):
            [key] = [key for key, envelope in stored.items() if envelope["id"] == f"{request_id}-{index}"]
            assert key.endswith(f"/{request_id}-{index}.json") and stored[key]["payload"] == payload
    assert pipeline.queue_depth() == 0


@pytest.mark.parametrize("config", PACKING)
def test_a_large_request_packs_into_few_messages_each_within_the_target(pipeline: Pipeline) -> None:
    # Given 300 payloads of 1 KiB (about 1.2 KiB each with their envelopes)
    response = pipeline.post(kib_payloads(300))
    assert response.status == 202 and response.body["accepted"] == 300
    # Then they travel in ceil(300 / payloads-per-64-KiB) messages, none over the target
    messages = pipeline.receive()
    per_message = [len(m["Body"].split("\n")) for m in messages]
    assert sum(per_message) == 300 and len(messages) == 6
    request_id = response.body["requestId"]
    sizes = [len(m["Body"].encode()) + len("requestIdString") + len(request_id) for m in messages]
    assert all(size <= TARGET for size in sizes)
    # And all are stored once
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    assert stored_ids(pipeline) == ids_of(request_id, 300)


@pytest.mark.parametrize("config", [pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=TARGET), id="payload")])
def test_an_envelope_larger_than_the_target_travels_alone_and_the_rest_still_pack(pipeline: Pipeline) -> None:
    # Given packing at 64 KiB and a request whose payload 2 alone is 200 KB
    big = {"seq": "big", "blob": "y" * 200_000}
    sent = collection(5)
    sent["data"].insert(2, big)
    response = pipeline.post(sent)
    assert response.status == 202 and response.body["accepted"] == 6
    # Then three messages, in payload order: 0-1, the big one alone (today's layout), 3-5
    messages = sorted(pipeline.receive(), key=lambda m: first_index(m["Body"]))
    assert [len(m["Body"].split("\n")) for m in messages] == [2, 1, 3]
    assert json.loads(messages[1]["Body"])["payload"] == big
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    assert stored_ids(pipeline) == ids_of(response.body["requestId"], 6)


def first_index(body: str) -> int:
    """The payload index of a message's first envelope."""
    return int(json.loads(body.split("\n")[0])["id"].rsplit("-", 1)[1])


@pytest.mark.parametrize("config", [pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=TARGET), id="payload")])
def test_a_failed_store_fails_only_its_own_message_and_its_retry_stores_nothing_twice(pipeline: Pipeline) -> None:
    # Given two requests of 4 payloads each (two messages), and S3 refusing payload 2 of the first
    first = pipeline.post(collection(4)).body["requestId"]
    second = pipeline.post(collection(4)).body["requestId"]
    messages = pipeline.receive()
    assert len(messages) == 2
    fail_put_object(
        aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY), lambda key: key.endswith(f"{first}-2.json")
    )
    # When the consumer stores the batch
    failed = consume_all_failing_ok(pipeline, messages)
    # Then only the first request's message is reported failed; its other payloads and all the second's are stored
    [first_message] = [m for m in messages if m["MessageAttributes"]["requestId"]["StringValue"] == first]
    assert failed == {first_message["MessageId"]}
    assert stored_ids(pipeline) == sorted([*(f"{first}-{i}" for i in (0, 1, 3)), *ids_of(second, 4)])
    # When S3 recovers and SQS redelivers that message
    aws_clients.s3_client.cache_clear()
    assert pipeline.consume([first_message]) == {"batchItemFailures": []}
    # Then the missing payload is stored, and nothing is stored twice
    assert stored_ids(pipeline) == sorted([*ids_of(first, 4), *ids_of(second, 4)])
    assert versions(pipeline) == 8


@pytest.mark.parametrize("config", [pytest.param(scale_config(), id="scale-batch")])
def test_in_batch_mode_a_failed_object_fails_exactly_the_messages_in_it(pipeline: Pipeline) -> None:
    # Given a packed request received now, and a previous-release message of another day, in one batch
    request_id = pipeline.post(kib_payloads(10)).body["requestId"]
    packed = as_records(pipeline, pipeline.receive())
    [old] = previous_release_records()[:1]
    today = json.loads(packed[0]["body"].split("\n")[0])["receivedAt"][:10]
    # And S3 refusing the batch object of today's partition
    fail_put_object(aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY), lambda key: f"dt={today}/" in key)
    # When the consumer gets the batch
    response = consume_records([*packed, old])
    # Then only the packed message fails (its 10 payloads shared the refused object); the old one is stored
    assert response == {"batchItemFailures": [{"itemIdentifier": packed[0]["messageId"]}]}
    assert stored_ids(pipeline) == [json.loads(old["body"])["id"]]
    # And after S3 recovers, its redelivery stores the 10, once
    aws_clients.s3_client.cache_clear()
    assert consume_records(packed) == {"batchItemFailures": []}
    assert stored_ids(pipeline) == sorted([json.loads(old["body"])["id"], *ids_of(request_id, 10)])


def as_records(pipeline: Pipeline, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ReceiveMessage output as the event source mapping's records."""
    return list(sqs_event(messages, pipeline.resources.queue_arn)["Records"])


def consume_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Invoke the consumer with records as the event source mapping delivers them (nothing deleted)."""
    return consumer_handler.lambda_handler({"Records": records}, LambdaContext(function_name="consumer"))


@pytest.mark.parametrize("config", PACKING)
def test_a_record_with_a_line_that_is_not_an_envelope_is_rejected_alone(pipeline: Pipeline) -> None:
    # Given a packed message, and a hand-made message whose second line is not an envelope
    request_id = pipeline.post(kib_payloads(3)).body["requestId"]
    [good] = pipeline.receive()
    first_line = good["Body"].split("\n")[0].replace(request_id, "f00d0000-1234-4321-abcd-0123456789ab")
    pipeline.sqs.send_message(QueueUrl=pipeline.resources.queue_url, MessageBody=first_line + '\n{"id":"oops"}')
    [poison] = [m for m in pipeline.receive() if m["MessageId"] != good["MessageId"]]
    # When both are consumed in one batch
    response = pipeline.consume([good, poison])
    # Then only the poison record fails (and none of its lines is stored); the good one is stored
    assert response == {"batchItemFailures": [{"itemIdentifier": poison["MessageId"]}]}
    assert stored_ids(pipeline) == ids_of(request_id, 3)


@pytest.mark.parametrize("config", PACKING)
def test_previous_release_messages_and_packed_messages_in_one_batch_are_all_stored_once(pipeline: Pipeline) -> None:
    # Given a deploy in progress: the queue holds the previous release's messages and this release's packed one
    request_id = pipeline.post(kib_payloads(10)).body["requestId"]
    records = [*previous_release_records(), *as_records(pipeline, pipeline.receive())]
    # When one consumer batch holds each of them twice
    response = consume_records(records + records)
    # Then every record succeeds and every payload is stored once
    assert response == {"batchItemFailures": []}
    old_ids = [json.loads(record["body"])["id"] for record in previous_release_records()]
    assert stored_ids(pipeline) == sorted([*old_ids, *ids_of(request_id, 10)])


@pytest.mark.parametrize("config", [pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=TARGET), id="payload")])
def test_the_metrics_count_payloads_not_messages(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    # Given one packed message of 10 payloads, stored, then redelivered
    capsys.readouterr()
    assert pipeline.post(kib_payloads(10)).status == 202
    messages = pipeline.receive()
    assert len(messages) == 1
    pipeline.consume(messages)
    pipeline.consume(messages)
    # Then the ingest counted 10 accepted payloads, the consumer 10 stored and 10 skipped, one latency each
    metrics = emf_metrics(capsys.readouterr().out)
    assert metrics[("PayloadsAccepted", ())] == [10.0]
    assert metrics[("PayloadsStored", ())] == [1.0] * 10
    assert metrics[("DuplicatesSkipped", ())] == [1.0] * 10
    assert len(metrics[("EndToEndLatency", ())]) == 10


@pytest.mark.parametrize("config", [pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=TARGET), id="payload")])
def test_the_202_comes_only_after_sqs_accepted_every_packed_message(pipeline: Pipeline) -> None:
    # Given SQS refuses the second entry of every SendMessageBatch call, on every attempt
    refusing = FailingSendMessageBatch(aws_clients.sqs_client(), lambda _call, entry: entry["Id"] == "1")
    # When a request packs into several messages (300 x 1 KiB)
    response = pipeline.post(kib_payloads(300))
    # Then the client gets a 503, naming the payloads (not the messages) the queue did not take
    assert response.status == 503 and response.body["type"].endswith("enqueue-failed")
    queued = sum(len(m["Body"].split("\n")) for m in pipeline.receive())
    assert f"did not accept {300 - queued} of 300 payloads" in response.body["detail"]
    assert 0 < queued < 300 and refusing.calls == pipeline.config.ENQUEUE_MAX_ATTEMPTS


@pytest.mark.parametrize("config", [pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=TARGET), id="payload")])
def test_one_request_id_finds_every_stored_payloads_line_of_a_packed_message(
    pipeline: Pipeline, log_lines: LogLines
) -> None:
    # Given a packed request of 5 payloads and another request's message in the same consumer batch
    request_id = "c0ffee00-1234-4321-abcd-0123456789ab"
    assert pipeline.post(collection(5), request_id=request_id).status == 202
    other = pipeline.post(collection(2)).body["requestId"]
    # When the consumer stores them
    assert pipeline.consume(pipeline.receive()) == {"batchItemFailures": []}
    # Then each of the 5 payloads has its "payload stored" line carrying the request's correlation id
    lines = [line for line in log_lines.read() if line.get("correlation_id") == request_id]
    stored = sorted(line["payloadId"] for line in lines if line["message"] == "payload stored")
    assert stored == ids_of(request_id, 5)
    others = [line for line in log_lines.read() if line.get("payloadId", "").startswith(other)]
    assert len(others) == 2 and all(line["correlation_id"] == other for line in others)
