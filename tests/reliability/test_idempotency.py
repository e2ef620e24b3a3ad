"""Idempotency-Key: a client's retries are stored once (payload mode), through the real handlers,
moto, and faults injected at the botocore level. Each scenario reconciles the acknowledged payloads
against every object *version* in S3 (the bucket is versioned here, so an overwrite shows up)."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

import ingest_handler
from loadtest.reconcile import expected_payloads, reconcile
from local_pipeline.events import LambdaContext, api_gateway_event, response_headers
from pipeline import aws_clients
from pipeline.envelope import is_safe_id
from tests.conftest import JSON_HEADERS, PAYLOADS_PATH, HttpResult, Pipeline, collection
from tests.faults import FailingSendMessageBatch, SimultaneousConditionalPuts
from tests.reliability.drain import drain, stored_versions


@pytest.fixture(autouse=True)
def versioned_bucket(pipeline: Pipeline) -> None:
    pipeline.s3.put_bucket_versioning(Bucket=pipeline.resources.bucket, VersioningConfiguration={"Status": "Enabled"})


SAME_HOUR = datetime.now(UTC).replace(minute=0, second=1, microsecond=0)  # in the past, so latencies stay positive


def post(
    pipeline: Pipeline,
    body: bytes | dict[str, Any],
    key: str | None,
    *,
    api_key: str | None = "key-a",
    received_at: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResult:
    """A POST as API Gateway hands it over: a fresh API Gateway request id every time, like a real retry."""
    sent_headers = dict(JSON_HEADERS if headers is None else headers)
    if key is not None:
        sent_headers["Idempotency-Key"] = key
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    event = api_gateway_event("POST", PAYLOADS_PATH, raw, sent_headers, api_key=api_key)
    event["requestContext"]["identity"]["apiKeyId"] = api_key
    # One moment for every attempt unless a test says otherwise: retries that straddle an hour boundary
    # are the documented exception (test_a_retry_in_another_hour...), not what the other tests are about.
    moment = received_at or SAME_HOUR
    event["requestContext"]["requestTimeEpoch"] = int(moment.timestamp() * 1000)
    response = ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest"))
    return HttpResult(response["statusCode"], response_headers(response), json.loads(response["body"] or "null"))


def entry_index(entry: dict[str, Any]) -> int:
    return int(json.loads(entry["MessageBody"])["id"].rsplit("-", 1)[1])


def test_retries_after_a_partial_enqueue_store_each_payload_once(pipeline: Pipeline) -> None:
    # Given SQS keeps refusing 2 of the 25 entries of a keyed request, so the client gets a 503
    outage = {"on": True}
    FailingSendMessageBatch(aws_clients.sqs_client(), lambda _, entry: outage["on"] and entry_index(entry) in (3, 17))
    sent = collection(25)
    first = post(pipeline, sent, "order-42")
    assert first.status == 503
    assert pipeline.queue_depth() == 23  # already queued: there is no way to take them back

    # When the outage ends and the client retries with the same key and body (a new API Gateway
    # request id), and retries once more because the 202 was lost on the way
    outage["on"] = False
    retry = post(pipeline, sent, "order-42")
    again = post(pipeline, sent, "order-42")

    # Then both answers are the same 202: same requestId, same count
    assert retry.status == again.status == 202
    assert retry.body == again.body and retry.body["accepted"] == 25
    request_id = retry.body["requestId"]
    assert is_safe_id(request_id) and is_safe_id(f"{request_id}-24")
    # And after the worker pool drains 23 + 25 + 25 messages, each payload is one object version:
    # 0 duplicates by id, nothing lost, nothing stored under another request id
    drain(pipeline)
    result = reconcile(expected_payloads({request_id: sent}), stored_versions(pipeline))
    assert result.clean and result.stored == 25
    assert result.unacknowledged == [] and result.content_duplicates == 0


def test_without_a_key_the_same_retry_is_stored_twice(pipeline: Pipeline) -> None:
    # Given the same partial enqueue, but the client sends no Idempotency-Key (the behaviour is unchanged)
    outage = {"on": True}
    FailingSendMessageBatch(aws_clients.sqs_client(), lambda _, entry: outage["on"] and entry_index(entry) == 3)
    sent = collection(5)
    assert post(pipeline, sent, None).status == 503
    outage["on"] = False
    # When it retries, Then the retry gets a new request id and the 4 queued payloads are stored again
    retry = post(pipeline, sent, None)
    assert retry.status == 202
    drain(pipeline)
    result = reconcile(expected_payloads({retry.body["requestId"]: sent}), stored_versions(pipeline))
    assert result.clean and result.stored == 9 and result.content_duplicates == 4


def test_a_reused_key_with_a_different_body_is_stored_under_its_own_ids(pipeline: Pipeline) -> None:
    # Given a client that reuses one key for two different collections
    one, other = collection(3), collection(3, token="device-other")
    first = post(pipeline, one, "reused")
    second = post(pipeline, other, "reused")
    # When both are accepted, Then they get different request ids (no 422: the ingest keeps no state)
    assert first.status == second.status == 202
    assert first.body["requestId"] != second.body["requestId"]
    # And both are stored, nothing silently dropped
    drain(pipeline)
    result = reconcile(
        expected_payloads({first.body["requestId"]: one, second.body["requestId"]: other}), stored_versions(pipeline)
    )
    assert result.clean and result.stored == 6


@pytest.mark.parametrize("change", ["body", "api key", "token"])
def test_the_request_id_depends_on_client_identity_key_and_body(pipeline: Pipeline, change: str) -> None:
    # Given a keyed request and its 202, the same for a retry
    sent = collection(2)
    base = post(pipeline, sent, "k-1")
    assert post(pipeline, sent, "k-1").body == base.body
    # When one input changes (the key itself is covered by the reuse test above)
    if change == "body":
        changed = post(pipeline, collection(3), "k-1")
    elif change == "api key":
        changed = post(pipeline, sent, "k-1", api_key="key-b")
    else:
        changed = post(pipeline, {**sent, "token": "device-2"}, "k-1")
    # Then the request id differs
    assert base.status == changed.status == 202
    assert base.body["requestId"] != changed.body["requestId"]


def test_a_gzip_retry_of_the_same_json_gets_the_same_ids(pipeline: Pipeline) -> None:
    # Given a keyed request sent plain, then retried gzip-compressed: the decoded body is identical
    raw = json.dumps(collection(2)).encode()
    plain = post(pipeline, raw, "k-gzip")
    zipped = post(pipeline, gzip.compress(raw), "k-gzip", headers={**JSON_HEADERS, "Content-Encoding": "gzip"})
    # Then both are the same request
    assert plain.status == zipped.status == 202
    assert plain.body == zipped.body


def test_concurrent_identical_retries_are_stored_once(pipeline: Pipeline) -> None:
    # Given two identical keyed requests in flight at once: both accepted before either is consumed
    sent = collection(5)
    first, second = post(pipeline, sent, "burst"), post(pipeline, sent, "burst")
    assert first.status == second.status == 202 and first.body == second.body
    assert pipeline.queue_depth() == 10
    # When the twins are consumed together and all 10 writes reach S3 at the same moment
    race = SimultaneousConditionalPuts(aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY), parties=10)
    drain(pipeline)
    # Then each payload is one object version (S3's create-only write lets one twin win)
    assert race.arrivals == 10
    result = reconcile(expected_payloads({first.body["requestId"]: sent}), stored_versions(pipeline))
    assert result.clean and result.stored == 5


def test_a_retry_in_another_hour_is_the_one_exception_in_storage(pipeline: Pipeline) -> None:
    # Given a keyed request received at 10:59:59.900 that gets a 503 after 4 of 5 entries were queued
    outage = {"on": True}
    FailingSendMessageBatch(aws_clients.sqs_client(), lambda _, entry: outage["on"] and entry_index(entry) == 3)
    sent = collection(5)
    assert post(pipeline, sent, "late", received_at=datetime(2026, 11, 26, 10, 59, 59, 900000, UTC)).status == 503
    # When the retry is received in the next hour
    outage["on"] = False
    retry = post(pipeline, sent, "late", received_at=datetime(2026, 11, 26, 11, 0, 0, 100000, UTC))
    assert retry.status == 202
    drain(pipeline)
    # Then the same ids land in two hour partitions: the 4 queued payloads are stored twice, under the
    # same ids (docs/RELIABILITY.md: the dedup view `payloads_dedup` keeps one row per id)
    result = reconcile(expected_payloads({retry.body["requestId"]: sent}), stored_versions(pipeline))
    assert not result.lost and not result.altered and result.stored == 9
    assert len(result.duplicated) == 4
    keys = [item["Key"] for item in pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket)["Contents"]]
    assert sum("/hour=10/" in key for key in keys) == 4 and sum("/hour=11/" in key for key in keys) == 5


BAD_KEYS = {
    "empty": "",
    "blank": "   ",
    "too-long": "k" * 256,
    "non-ascii": "clé",
    "control": "a\x01b",
    "tab-inside": "a\tb",
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_a_malformed_key_gets_400_and_enqueues_nothing(pipeline: Pipeline, key: str) -> None:
    # When a valid collection comes with a malformed Idempotency-Key
    response = post(pipeline, collection(2), key)
    # Then it is refused whole with a problem that names the header and its rule
    assert response.status == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.body["type"] == "urn:ingest-pipeline:problem:invalid-idempotency-key"
    assert "Idempotency-Key" in response.body["detail"] and "1 to 255 printable ASCII" in response.body["detail"]
    assert pipeline.queue_depth() == 0


@pytest.mark.parametrize("key", ["k" * 255, "a b", "~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", str(uuid.uuid4())])
def test_keys_at_the_limits_are_accepted(pipeline: Pipeline, key: str) -> None:
    # When a key is exactly 255 characters, or uses any printable ASCII, Then the request is accepted
    response = post(pipeline, collection(2), key)
    assert response.status == 202
    assert pipeline.queue_depth() == 2
