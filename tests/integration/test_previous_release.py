"""Upgrade safety: the previous release's messages (tests/fixtures/previous_release/, captured from
release b5bce11's own ingest) are stored exactly once by this release's consumer, byte-identical to
what that release stored, in both object modes, with and without packing, also when delivered twice.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

import consumer_handler
import ingest_handler
from infra.config import PipelineConfig
from local_pipeline.events import LambdaContext, api_gateway_event
from pipeline.contract import PAYLOADS_PATH, batch_object_key, parse_object_key
from pipeline.idempotency import idempotent_request_id, partition_hour_text
from tests.conftest import Pipeline

RELEASE = "b5bce11"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "previous_release"
MESSAGES = json.loads((FIXTURES / f"messages-{RELEASE}.json").read_text(encoding="utf-8"))
OBJECTS = json.loads((FIXTURES / f"objects-{RELEASE}.json").read_text(encoding="utf-8"))
PAYLOAD_IDS = sorted(json.loads(record["body"])["id"] for record in MESSAGES["records"])


def scale_config(**knobs: str) -> PipelineConfig:
    """PROFILE=scale as a deployment resolves it (batch objects), packing at 64 KiB, behind the REST front door
    without device keys: these tests are about the queue and the consumer; the scale profile's HTTP API with
    device keys has its own (tests/unit/test_device_auth.py, tests/local/test_device_keys_make_run.py)."""
    return PipelineConfig.resolve(
        {},
        environ={
            "PROFILE": "scale",
            "API_KIND": "rest",
            "DEVICE_AUTH": "off",
            "MESSAGE_TARGET_BYTES": "65536",
            **knobs,
        },
    )


CONFIGS = [
    pytest.param(PipelineConfig(), id="default-payload"),
    pytest.param(PipelineConfig(OBJECT_MODE="batch"), id="default-batch"),
    pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=65536), id="packing-payload"),
    pytest.param(scale_config(), id="scale-batch"),
]


def records() -> list[dict[str, Any]]:
    """The previous release's records, fresh (a test may not alter another's copy)."""
    return copy.deepcopy(MESSAGES["records"])


def consume_records(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Invoke this release's consumer with records as the event source mapping delivers them."""
    return consumer_handler.lambda_handler({"Records": batch}, LambdaContext(function_name="consumer"))


def stored_bytes(pipeline: Pipeline) -> dict[str, tuple[str, bytes]]:
    """Every object in the bucket: key -> (Content-Type, bytes as stored)."""
    objects = {}
    for item in pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX).get(
        "Contents", []
    ):
        stored = pipeline.s3.get_object(Bucket=pipeline.resources.bucket, Key=item["Key"])
        objects[item["Key"]] = (stored["ContentType"], stored["Body"].read())
    return objects


def assert_stored_as_the_previous_release_did(
    pipeline: Pipeline, expected_objects: dict[str, dict[str, dict[str, str]]] = OBJECTS
) -> None:
    """The objects are the previous release's: the same keys, Content-Types and bytes (a batch object's
    gzip stream is compared as this machine's zlib writes the previous release's NDJSON: gzip level 6,
    mtime 0; the deflate bytes of one input may differ between zlib builds), and one version each."""
    mode = pipeline.config.OBJECT_MODE
    expected = expected_objects[mode]
    stored = stored_bytes(pipeline)
    assert sorted(stored) == sorted(expected)
    for key, (content_type, data) in stored.items():
        assert content_type == expected[key]["contentType"]
        if mode == "payload":
            assert data == expected[key]["body"].encode("utf-8")
        else:
            ndjson = expected[key]["ndjson"].encode("utf-8")
            assert gzip.decompress(data) == ndjson
            assert data == gzip.compress(ndjson, compresslevel=6, mtime=0)
    versions = pipeline.s3.list_object_versions(
        Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX
    ).get("Versions", [])
    assert len(versions) == len(expected)  # nothing written twice


def stored_payload_ids(pipeline: Pipeline) -> list[str]:
    """Every payload id in the bucket, once per copy stored."""
    ids = []
    for content_type, data in stored_bytes(pipeline).values():
        if content_type == "application/json":
            ids.append(json.loads(data)["id"])
        else:
            ids.extend(json.loads(line)["id"] for line in gzip.decompress(data).splitlines())
    return sorted(ids)


@pytest.mark.parametrize("config", CONFIGS)
def test_the_previous_releases_messages_are_stored_once_and_byte_identical(pipeline: Pipeline) -> None:
    # Given the 22 messages the previous release queued (one payload each)
    # When this release's consumer receives them as one batch
    response = consume_records(records())
    # Then every record succeeds, and the bucket holds exactly what the previous release stored
    assert response == {"batchItemFailures": []}
    assert_stored_as_the_previous_release_did(pipeline)
    assert stored_payload_ids(pipeline) == PAYLOAD_IDS


@pytest.mark.parametrize("config", CONFIGS)
def test_each_record_delivered_twice_in_one_batch_is_stored_once(pipeline: Pipeline) -> None:
    # Given every record of the previous release twice in one batch (an SQS at-least-once duplicate)
    twice = records() + records()
    for duplicate in twice[len(twice) // 2 :]:
        duplicate["attributes"]["ApproximateReceiveCount"] = "2"
    # When this release's consumer receives the batch
    response = consume_records(twice)
    # Then both deliveries succeed and each payload is stored once, as the previous release stored it
    assert response == {"batchItemFailures": []}
    assert_stored_as_the_previous_release_did(pipeline)
    assert stored_payload_ids(pipeline) == PAYLOAD_IDS


@pytest.mark.parametrize("config", CONFIGS)
def test_each_record_delivered_again_in_a_later_batch_is_stored_once(pipeline: Pipeline) -> None:
    # Given the previous release's records were stored once
    assert consume_records(records()) == {"batchItemFailures": []}
    # When the same records are delivered again, in another batch, in another order
    again = records()[::-1]
    for record in again:
        record["attributes"]["ApproximateReceiveCount"] = "2"
    response = consume_records(again)
    # Then the redelivery succeeds (already stored) and nothing is written twice
    assert response == {"batchItemFailures": []}
    assert_stored_as_the_previous_release_did(pipeline)
    assert stored_payload_ids(pipeline) == PAYLOAD_IDS


# The one keyed request: this release's id for it also covers its partition hour (pipeline/idempotency.py,
# issue 26 item 8), so it differs from the previous release's; everything else it stores is the same.
KEYED = next(request for request in MESSAGES["requests"] if "Idempotency-Key" in request["headers"])


def this_releases_id(request: dict[str, Any]) -> str:
    body = request["body"].encode("utf-8")
    key = request["headers"]["Idempotency-Key"]
    hour = partition_hour_text(request["requestTimeEpoch"])
    return idempotent_request_id(request["apiKeyId"], json.loads(body)["token"], key, body, hour)


def objects_with_request_id(old: str, new: str) -> dict[str, dict[str, dict[str, str]]]:
    """The previous release's objects as they are with request id ``old`` replaced by ``new``: payload
    objects renamed, batch objects' lines re-sorted by id under the key their new ids give."""
    payload = {
        key.replace(old, new): {**item, "body": item["body"].replace(old, new)}
        for key, item in OBJECTS["payload"].items()
    }
    batch = {}
    for key, item in OBJECTS["batch"].items():
        parsed = parse_object_key(key)
        assert parsed is not None
        lines = sorted(
            [line + "\n" for line in item["ndjson"].replace(old, new).split("\n") if line],
            key=lambda line: json.loads(line)["id"],
        )
        ids = [json.loads(line)["id"] for line in lines]
        batch[batch_object_key(parsed.prefix, parsed.partition, ids)] = {**item, "ndjson": "".join(lines)}
    return {"payload": payload, "batch": batch}


def replay_request(pipeline: Pipeline, request: dict[str, Any]) -> dict[str, Any]:
    """Post one of the fixture's requests to this release's ingest with its original request id,
    receive time and API key id, as API Gateway would have passed it."""
    event = api_gateway_event(
        "POST",
        PAYLOADS_PATH,
        request["body"].encode("utf-8"),
        request["headers"],
        request_id=request["requestId"],
        api_key="fixture",
    )
    event["requestContext"]["requestTimeEpoch"] = request["requestTimeEpoch"]
    event["requestContext"]["identity"]["apiKeyId"] = request["apiKeyId"]
    response = ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest"))
    return {"status": response["statusCode"], "body": json.loads(response["body"])}


@pytest.mark.parametrize("config", CONFIGS)
def test_this_release_stores_the_same_requests_exactly_as_the_previous_release(pipeline: Pipeline) -> None:
    # Given this release's ingest accepts the same five requests (same ids, times and key)
    keyed_id = this_releases_id(KEYED)
    assert keyed_id != KEYED["response"]["requestId"]
    for request in MESSAGES["requests"]:
        answer = replay_request(pipeline, request)
        # Then its 202 is the previous release's, payload ids included, but for the keyed request's id
        expected = {**request["response"], "requestId": keyed_id} if request is KEYED else request["response"]
        assert answer == {"status": 202, "body": expected}
    # When its consumer stores what it queued (a message per payload; packed: a message per request), as one batch
    messages = pipeline.receive()
    packing = pipeline.config.MESSAGE_TARGET_BYTES > 0
    assert len(messages) == (len(MESSAGES["requests"]) if packing else len(MESSAGES["records"]))
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    # Then the objects are byte-identical to what the previous release stored, but for the keyed request's id
    expected = objects_with_request_id(KEYED["response"]["requestId"], keyed_id)
    assert_stored_as_the_previous_release_did(pipeline, expected)


@pytest.mark.parametrize("config", CONFIGS)
def test_the_previous_releases_payloads_compact_to_one_row_each(pipeline: Pipeline, tmp_path: Path) -> None:
    from tests.integration.test_compaction_local import check_exactly_once, compact_lake

    # Given the previous release's records stored by this release's consumer, each delivered twice
    assert consume_records(records() + records()) == {"batchItemFailures": []}
    # When make compact runs (the SQL the deployed compaction runs: each hour on its own)
    compact_lake(pipeline, tmp_path)
    # Then payloads_compacted holds each of their payloads exactly once
    check_exactly_once(pipeline, tmp_path, set(PAYLOAD_IDS))
