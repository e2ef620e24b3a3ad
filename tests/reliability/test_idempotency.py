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


def hours_of(pipeline: Pipeline) -> dict[str, int]:
    """How many raw objects each hour partition holds (``hour=10``: 4)."""
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX)
    hours: dict[str, int] = {}
    for item in listing.get("Contents", []):
        hour = item["Key"].split("/hour=")[1][:2]
        hours[f"hour={hour}"] = hours.get(f"hour={hour}", 0) + 1
    return hours


def half_queued_then_retried(pipeline: Pipeline, headers: dict[str, str]) -> tuple[HttpResult, dict[str, Any]]:
    """A keyed request received at 10:59:59.900 whose first attempt gets a 503 after 4 of 5 entries were
    queued, retried (same key, body and ``headers``) and received at 11:00:00.100, in the next hour."""
    outage = {"on": True}
    FailingSendMessageBatch(aws_clients.sqs_client(), lambda _, entry: outage["on"] and entry_index(entry) == 3)
    sent = collection(5)
    sent_headers = {**JSON_HEADERS, **headers}
    first = post(
        pipeline, sent, "late", received_at=datetime(2026, 11, 26, 10, 59, 59, 900000, UTC), headers=sent_headers
    )
    assert first.status == 503
    outage["on"] = False
    retry = post(
        pipeline, sent, "late", received_at=datetime(2026, 11, 26, 11, 0, 0, 100000, UTC), headers=sent_headers
    )
    assert retry.status == 202
    drain(pipeline)
    return retry, sent


def test_a_retry_in_another_hour_stating_its_first_attempt_lands_in_one_partition_once(pipeline: Pipeline) -> None:
    # Given a keyed request whose copies straddle an hour boundary, both stating the same first attempt (the SDK
    # stores it with the batch)
    retry, sent = half_queued_then_retried(pipeline, {"Ingest-First-Attempt": "2026-11-26T10:59:59.800Z"})
    # Then every payload is stored once, all in the first attempt's hour: nothing for another hour to dedup
    result = reconcile(expected_payloads({retry.body["requestId"]: sent}), stored_versions(pipeline))
    assert not result.lost and not result.altered and not result.duplicated and result.stored == 5
    assert hours_of(pipeline) == {"hour=10": 5}


def test_a_retry_in_another_hour_without_a_first_attempt_is_stored_under_other_ids(pipeline: Pipeline) -> None:
    # Given the same straddling retry from a client that states no first attempt (an older SDK, curl)
    retry, sent = half_queued_then_retried(pipeline, {})
    # Then each copy lands in its receive hour under ids that cover that hour: the 4 payloads the first attempt
    # queued are stored again, but no id is in two hours (one row per id; docs/GUARANTEES.md, "One row per id")
    result = reconcile(expected_payloads({retry.body["requestId"]: sent}), stored_versions(pipeline))
    assert not result.lost and not result.altered and not result.duplicated and result.stored == 9
    assert result.content_duplicates == 4
    assert hours_of(pipeline) == {"hour=10": 4, "hour=11": 5}


RECEIVED = datetime(2026, 11, 26, 11, 0, 0, 100000, UTC)
# Stated first attempt -> (the hour its payloads land in, the envelope's firstAttemptAt), received at 11:00:00.100
# with the default horizon of 24 h
STATED = {
    "2026-11-26T10:30:00Z": ("hour=10", "2026-11-26T10:30:00.000Z"),  # an hour-old first attempt: its hour
    "2026-11-25T11:00:00.100Z": ("hour=11", "2026-11-25T11:00:00.100Z"),  # exactly the horizon: its hour (the 25th)
    "2026-11-25T11:00:00.099Z": ("hour=11", None),  # just beyond the horizon: the receive hour
    "2026-11-26T11:05:00.100Z": ("hour=11", "2026-11-26T11:05:00.100Z"),  # a clock 5 minutes ahead: its hour
    "2026-11-26T11:05:00.101Z": ("hour=11", None),  # a clock further ahead: the receive hour
    "2026-11-26T12:00:00Z": ("hour=11", None),  # an hour ahead: the receive hour, not the stated one
}


@pytest.mark.parametrize("stated", STATED)
def test_a_stated_first_attempt_partitions_only_within_the_horizon(pipeline: Pipeline, stated: str) -> None:
    # When a keyed request states its first attempt
    headers = {**JSON_HEADERS, "Ingest-First-Attempt": stated}
    assert post(pipeline, collection(2), "k", received_at=RECEIVED, headers=headers).status == 202
    drain(pipeline)
    # Then its payloads land in the stated hour within [received - 24 h, received + 5 min], else the receive hour,
    # and the envelope says which moment placed it
    partition, first_attempt = STATED[stated]
    assert hours_of(pipeline) == {partition: 2}
    envelopes = list(pipeline.objects().items())
    assert all(envelope.get("firstAttemptAt") == first_attempt for _, envelope in envelopes)
    if first_attempt is not None:
        assert all(key.startswith(f"payloads/dt={first_attempt[:10]}/") for key, _ in envelopes)


def test_a_stated_first_attempt_beyond_the_horizon_keeps_the_ids_of_the_receive_hour(pipeline: Pipeline) -> None:
    # Given two copies of one keyed request stating different first attempts in other hours (a client bug), both
    # beyond the horizon, received in one hour
    body = collection(2)
    for stated in ("2026-11-20T01:00:00Z", "2026-11-21T07:00:00Z"):
        headers = {**JSON_HEADERS, "Ingest-First-Attempt": stated}
        assert post(pipeline, body, "k", received_at=RECEIVED, headers=headers).status == 202
    drain(pipeline)
    # Then both fall back to the receive hour with the same ids: stored once
    assert hours_of(pipeline) == {"hour=11": 2}


def test_different_stated_hours_never_give_one_id_two_hours(pipeline: Pipeline) -> None:
    # When one key and body come twice, stating first attempts in two different hours within the horizon
    body = collection(2)
    answers = [
        post(pipeline, body, "k", received_at=RECEIVED, headers={**JSON_HEADERS, "Ingest-First-Attempt": stated})
        for stated in ("2026-11-26T09:10:00Z", "2026-11-26T10:10:00Z")
    ]
    drain(pipeline)
    # Then each hour holds its copy under its own ids: no id is in two hours
    assert [answer.status for answer in answers] == [202, 202]
    assert answers[0].body["requestId"] != answers[1].body["requestId"]
    assert hours_of(pipeline) == {"hour=09": 2, "hour=10": 2}


def test_an_unkeyed_request_is_partitioned_by_its_receipt_whatever_it_states(pipeline: Pipeline) -> None:
    headers = {**JSON_HEADERS, "Ingest-First-Attempt": "2026-11-26T10:30:00Z"}
    assert post(pipeline, collection(2), None, received_at=RECEIVED, headers=headers).status == 202
    drain(pipeline)
    assert hours_of(pipeline) == {"hour=11": 2}


@pytest.mark.parametrize(
    "stated", ["yesterday", "2026-11-26 10:30:00Z", "2026-11-26T10:30:00+01:00", "2026-13-40T10:30:00Z"]
)
def test_a_malformed_first_attempt_gets_400_and_enqueues_nothing(pipeline: Pipeline, stated: str) -> None:
    headers = {**JSON_HEADERS, "Ingest-First-Attempt": stated}
    response = post(pipeline, collection(2), "k", received_at=RECEIVED, headers=headers)
    assert response.status == 400
    assert response.body["type"].endswith(":invalid-first-attempt")
    assert pipeline.queue_depth() == 0


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
