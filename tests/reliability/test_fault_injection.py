"""Zero loss, no duplicates: faults injected at the botocore level while the real handlers run
unmodified against moto. Every scenario ends by reconciling the 202-acknowledged payloads against
every object *version* in S3 (the bucket is versioned here, so an overwrite would show up)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import pytest

import consumer_handler
from infra.config import PipelineConfig
from loadtest.reconcile import expected_payloads, reconcile
from local_pipeline.events import LambdaContext, sqs_event
from pipeline import aws_clients
from pipeline.time_budget import SAFETY_MARGIN_SECONDS
from tests.conftest import Pipeline, collection
from tests.faults import (
    ConsumerCrash,
    CrashAfterPuts,
    FailingBatchEntries,
    FailingSendMessageBatch,
    FlakyPutObject,
    SimultaneousConditionalPuts,
    SlowDownAnswers,
    fail_calls,
    fail_put_object,
)
from tests.reliability.drain import drain, drain_on_retry_delays, expire_visibility, stored_versions


@pytest.fixture(autouse=True)
def versioned_bucket(pipeline: Pipeline) -> None:
    pipeline.s3.put_bucket_versioning(Bucket=pipeline.resources.bucket, VersioningConfiguration={"Status": "Enabled"})


def consumer_s3(pipeline: Pipeline) -> Any:
    return aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY)


def request_id(n: int) -> str:
    return str(uuid.UUID(int=n))


def entry_index(entry: dict[str, Any]) -> int:
    return int(json.loads(entry["MessageBody"])["id"].rsplit("-", 1)[1])


def post_acknowledged(pipeline: Pipeline, sent: dict[str, Any], rid: str | None = None) -> str:
    response = pipeline.post(sent, request_id=rid)
    assert response.status == 202, response.body
    assert response.body["accepted"] == len(sent["data"])
    return response.body["requestId"]


# --- 1. SendMessageBatch lists entries in Failed -------------------------------------------------


def test_transiently_failed_entries_are_retried_and_the_request_still_gets_202(pipeline: Pipeline) -> None:
    # Given SQS fails every entry the first time it sees it (25 payloads = 3 concurrent batches)
    seen: set[str] = set()

    def first_attempt(_: int, entry: dict[str, Any]) -> bool:
        body = entry["MessageBody"]
        fresh = body not in seen
        seen.add(body)
        return fresh

    faults = FailingSendMessageBatch(aws_clients.sqs_client(), first_attempt)
    sent = collection(25)
    # When the client posts, Then it gets 202 for all 25
    rid = post_acknowledged(pipeline, sent)
    assert faults.failed_entries == 25
    # And after the worker pool drains the queue, each payload is stored exactly once
    drain(pipeline)
    result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
    assert result.clean and result.stored == 25 and not result.unacknowledged


def test_persistent_failure_gets_503_and_a_client_retry_duplicates_the_already_accepted_entries(
    pipeline: Pipeline,
) -> None:
    # Given SQS keeps refusing 2 of the 25 entries of a request
    outage = {"on": True}
    FailingSendMessageBatch(aws_clients.sqs_client(), lambda _, entry: outage["on"] and entry_index(entry) in (3, 17))
    sent = collection(25)
    # When the client posts
    first = pipeline.post(sent, request_id=request_id(1))
    # Then it is told to retry the whole request, and success is never claimed
    assert first.status == 503
    assert first.headers["Retry-After"] == str(pipeline.config.RETRY_AFTER_SECONDS)
    assert first.headers["Content-Type"] == "application/problem+json"
    assert first.body["type"] == "urn:ingest-pipeline:problem:enqueue-failed"
    # But the 23 entries SQS did accept are on the queue: there is no way to take them back
    assert pipeline.queue_depth() == 23

    # When the outage ends and the client retries the same body (API Gateway gives it a new request id)
    outage["on"] = False
    rid = post_acknowledged(pipeline, sent, request_id(2))
    drain(pipeline)

    # Then every acknowledged payload is stored exactly once (nothing lost, no id twice) ...
    result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
    assert result.clean
    # ... and the 23 entries of the refused request are stored too, under the first request's ids:
    # at-least-once across client retries. Deduplicate by content or by a client idempotency key.
    assert len(result.unacknowledged) == 23
    assert all(payload_id.startswith(request_id(1)) for payload_id in result.unacknowledged)
    assert result.content_duplicates == 23 and result.stored == 48


# --- 2. PutObject fails for about 10% of calls ---------------------------------------------------


def test_failed_uploads_are_reported_redelivered_and_stored_once(pipeline: Pipeline) -> None:
    # Given S3 answers 500 InternalError or 503 SlowDown to about 10% of PutObject calls
    def one_in_ten(key: str, attempt: int) -> bool:
        return hashlib.sha256(f"{key.rsplit('/', 1)[1]}#{attempt}".encode()).digest()[0] < 26  # 26/256

    flaky = FlakyPutObject(consumer_s3(pipeline), one_in_ten)
    acknowledged = {}
    for n in range(10):
        sent = collection(10, token=f"device-{n}")
        acknowledged[post_acknowledged(pipeline, sent, request_id(100 + n))] = sent

    # When the worker pool consumes the first delivery of all 100 messages
    messages = pipeline.receive()
    assert len(messages) == 100
    response = pipeline.consume(messages)
    # Then exactly the records whose upload failed are reported for redelivery
    failed_ids = {key.rsplit("/", 1)[1].removesuffix(".json") for key in flaky.failures}
    reported = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert reported == {m["MessageId"] for m in messages if json.loads(m["Body"])["id"] in failed_ids}
    assert 5 <= len(reported) <= 20  # about 10%

    # And once they come back, every payload is stored exactly once and nothing was dead-lettered
    expire_visibility(pipeline, [m for m in messages if m["MessageId"] in reported])
    drain(pipeline)
    result = reconcile(expected_payloads(acknowledged), stored_versions(pipeline))
    assert result.clean and result.stored == 100
    assert pipeline.queue_depth(pipeline.resources.dlq_url) == 0
    assert set(flaky.codes) == {"InternalError", "SlowDown"}


# --- 3. The consumer crashes mid-batch -----------------------------------------------------------


def test_a_crash_after_some_uploads_redelivers_the_whole_batch_and_duplicates_nothing(pipeline: Pipeline) -> None:
    # Given 20 acknowledged payloads, and a consumer that dies after its 7th stored object
    sent = collection(20)
    rid = post_acknowledged(pipeline, sent)
    crash = CrashAfterPuts(consumer_s3(pipeline), after=7)
    messages = pipeline.receive()

    # When the invocation crashes
    with pytest.raises(ConsumerCrash):
        pipeline.consume(messages)
    # Then no message was deleted, although some objects were already written
    assert pipeline.queue_depth() == 20
    assert 7 <= crash.stored <= 20

    # When the visibility timeout passes, the whole batch comes back and is consumed
    expire_visibility(pipeline, messages)
    redelivered = pipeline.receive()
    assert {m["MessageId"] for m in redelivered} == {m["MessageId"] for m in messages}
    assert pipeline.consume(redelivered) == {"batchItemFailures": []}

    # Then each payload is exactly one object version: the redelivery wrote only what was missing
    result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
    assert result.clean and result.stored == 20
    assert crash.stored == 20
    assert pipeline.queue_depth() == 0


# --- 4. The same message delivered twice -----------------------------------------------------------


def test_a_message_redelivered_after_its_visibility_timeout_is_stored_once(pipeline: Pipeline) -> None:
    # Given a batch that was processed but whose deletes never happened (the worker was too slow)
    sent = collection(5)
    rid = post_acknowledged(pipeline, sent)
    first = pipeline.receive()
    consumer_handler.lambda_handler(sqs_event(first, pipeline.resources.queue_arn), LambdaContext())
    assert len(stored_versions(pipeline)) == 5
    # When SQS delivers the same messages again
    expire_visibility(pipeline, first)
    second = pipeline.receive()
    assert {m["MessageId"] for m in second} == {m["MessageId"] for m in first}
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "2" for m in second)
    # Then the second delivery succeeds without writing anything
    assert pipeline.consume(second) == {"batchItemFailures": []}
    assert reconcile(expected_payloads({rid: sent}), stored_versions(pipeline)).clean
    assert pipeline.queue_depth() == 0


def duplicated_in_one_batch(pipeline: Pipeline) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """One acknowledged payload, delivered twice in the same batch (distinct receipts)."""
    sent = collection(1)
    rid = post_acknowledged(pipeline, sent)
    [message] = pipeline.receive()
    twin = {**message, "MessageId": str(uuid.uuid4()), "ReceiptHandle": message["ReceiptHandle"] + "-twin"}
    return rid, sent, [message, twin]


def test_two_concurrent_deliveries_of_one_message_store_one_object(pipeline: Pipeline) -> None:
    # Given both deliveries reach S3 at the same moment
    race = SimultaneousConditionalPuts(consumer_s3(pipeline), parties=2)
    rid, sent, deliveries = duplicated_in_one_batch(pipeline)
    # When they are consumed together
    response = consumer_handler.lambda_handler(sqs_event(deliveries, pipeline.resources.queue_arn), LambdaContext())
    # Then both succeed (one stored it, the other found it stored) and there is one object version
    assert response == {"batchItemFailures": []}
    assert race.arrivals == 2
    result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
    assert result.clean and result.stored == 1


def test_a_conditional_write_conflict_is_retried_and_then_found_stored(pipeline: Pipeline) -> None:
    # Given S3 answers 409 ConditionalRequestConflict to the loser of two concurrent writes
    SimultaneousConditionalPuts(consumer_s3(pipeline), parties=2, conflict_losers=True)
    rid, sent, deliveries = duplicated_in_one_batch(pipeline)
    # When both are consumed, Then the loser is reported (never dropped, never assumed stored)
    response = consumer_handler.lambda_handler(sqs_event(deliveries, pipeline.resources.queue_arn), LambdaContext())
    assert len(response["batchItemFailures"]) == 1
    # And its redelivery finds the object stored: one version, nothing lost
    [loser_id] = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    [loser] = [d for d in deliveries if d["MessageId"] == loser_id]
    retry = consumer_handler.lambda_handler(sqs_event([loser], pipeline.resources.queue_arn), LambdaContext())
    assert retry == {"batchItemFailures": []}
    result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
    assert result.clean and result.stored == 1


# --- 5. A poison message ---------------------------------------------------------------------------

POISON_BODIES = {
    "not-json": "this is not json",
    "unsafe-id": json.dumps({"id": "../../etc/passwd", "receivedAt": "2026-01-01T00:00:00.000Z", "payload": {}}),
    "no-payload": json.dumps({"id": "abc-0", "receivedAt": "2026-01-01T00:00:00.000Z"}),
}


@pytest.mark.parametrize("poison", POISON_BODIES.values(), ids=POISON_BODIES.keys())
def test_a_poison_message_is_dead_lettered_after_max_receive_count_and_its_batch_mates_are_stored(
    pipeline: Pipeline, poison: str
) -> None:
    # Given a message on the queue that is not an envelope
    pipeline.sqs.send_message(QueueUrl=pipeline.resources.queue_url, MessageBody=poison)
    acknowledged: dict[str, Any] = {}
    receives = 0
    # When, delivery after delivery, it shares each batch with fresh good payloads
    for n in range(pipeline.config.MAX_RECEIVE_COUNT + 1):
        sent = collection(3, token=f"device-{n}")
        acknowledged[post_acknowledged(pipeline, sent)] = sent
        messages = pipeline.receive()
        poisoned = [m for m in messages if m["Body"] == poison]
        receives += len(poisoned)
        response = pipeline.consume(messages)
        # Then only the poison message is ever reported; its batch mates are stored and deleted
        assert {item["itemIdentifier"] for item in response["batchItemFailures"]} == {m["MessageId"] for m in poisoned}
        expire_visibility(pipeline, poisoned)

    # And after MAX_RECEIVE_COUNT receives it is in the DLQ, unchanged, and gone from the queue
    assert receives == pipeline.config.MAX_RECEIVE_COUNT
    dead = pipeline.receive(queue_url=pipeline.resources.dlq_url)
    assert [m["Body"] for m in dead] == [poison]
    assert pipeline.queue_depth() == 0
    result = reconcile(expected_payloads(acknowledged), stored_versions(pipeline))
    assert result.clean and result.stored == 3 * (pipeline.config.MAX_RECEIVE_COUNT + 1)


# --- 6. Every record of a batch fails --------------------------------------------------------------


def test_when_every_record_fails_the_whole_batch_is_retried_and_nothing_is_lost(pipeline: Pipeline) -> None:
    # Given S3 refuses every upload (an outage)
    outage = {"on": True}
    fail_put_object(consumer_s3(pipeline), lambda _: outage["on"], code="ServiceUnavailable", status=503)
    sent = collection(12)
    rid = post_acknowledged(pipeline, sent)
    messages = pipeline.receive()
    # When the batch is consumed, Then the invocation fails as a whole (Powertools raises when every
    # record failed): the ESM retries the batch and backs off, and no message is deleted
    with pytest.raises(Exception, match="All records failed"):
        pipeline.consume(messages)
    assert pipeline.queue_depth() == 12
    assert stored_versions(pipeline) == []

    # When S3 recovers and the batch comes back, Then every payload is stored once
    outage["on"] = False
    expire_visibility(pipeline, messages)
    report = drain(pipeline)
    assert report.failed_invocations == 0
    result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
    assert result.clean and result.stored == 12
    assert pipeline.queue_depth(pipeline.resources.dlq_url) == 0


def test_a_partial_failure_never_fails_the_whole_batch(pipeline: Pipeline) -> None:
    # Given S3 refuses the upload of exactly one payload of a batch of 12
    outage = {"on": True}
    fail_put_object(consumer_s3(pipeline), lambda key: outage["on"] and key.endswith("-11.json"))
    sent = collection(12)
    rid = post_acknowledged(pipeline, sent)
    messages = pipeline.receive()
    # When the batch is consumed, Then only that record is reported; the 11 others are stored and deleted
    response = pipeline.consume(messages)
    [failed] = [m for m in messages if json.loads(m["Body"])["id"].endswith("-11")]
    assert response == {"batchItemFailures": [{"itemIdentifier": failed["MessageId"]}]}
    assert len(stored_versions(pipeline)) == 11 and pipeline.queue_depth() == 1
    # And its redelivery completes the set
    outage["on"] = False
    expire_visibility(pipeline, [failed])
    drain(pipeline)
    result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
    assert result.clean and result.stored == 12


# --- the same faults with OBJECT_MODE=batch (one gzip NDJSON object per batch) ---------------------


class TestBatchObjectMode:
    """Batch mode is all-or-nothing per object; a redelivery of the same records maps to the same
    key. In these scenarios nothing may be lost and no payload id may be stored twice."""

    @pytest.fixture
    def config(self) -> PipelineConfig:
        return PipelineConfig(OBJECT_MODE="batch")

    def test_a_failed_object_put_retries_all_its_records_and_stores_them_once(self, pipeline: Pipeline) -> None:
        # Given S3 fails the first PUT of every object (500, then 503 SlowDown)
        flaky = FlakyPutObject(consumer_s3(pipeline), lambda _, attempt: attempt == 1)
        acknowledged = {}
        for n in range(3):
            sent = collection(10, token=f"device-{n}")
            acknowledged[post_acknowledged(pipeline, sent)] = sent
        messages = pipeline.receive()
        # When the batch is consumed, Then every record of the failed object is reported
        with pytest.raises(Exception, match="All records failed"):
            pipeline.consume(messages)
        assert len(flaky.failures) == 1 and stored_versions(pipeline) == []
        # And when they come back, all 30 are stored in one object, once
        expire_visibility(pipeline, messages)
        drain(pipeline)
        result = reconcile(expected_payloads(acknowledged), stored_versions(pipeline))
        assert result.clean and result.stored == 30

    def test_a_crash_after_the_object_is_written_duplicates_nothing(self, pipeline: Pipeline) -> None:
        sent = collection(20)
        rid = post_acknowledged(pipeline, sent)
        crash = CrashAfterPuts(consumer_s3(pipeline), after=1)
        messages = pipeline.receive()
        with pytest.raises(ConsumerCrash):
            pipeline.consume(messages)
        assert pipeline.queue_depth() == 20 and crash.stored == 1
        # When the whole batch comes back, Then the same records map to the same key: 412, no new version
        expire_visibility(pipeline, messages)
        drain(pipeline)
        result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
        assert result.clean and result.stored == 20 and crash.stored == 1

    def test_a_poison_message_is_dead_lettered_and_its_batch_mates_are_stored(self, pipeline: Pipeline) -> None:
        poison = POISON_BODIES["not-json"]
        pipeline.sqs.send_message(QueueUrl=pipeline.resources.queue_url, MessageBody=poison)
        acknowledged: dict[str, Any] = {}
        for n in range(pipeline.config.MAX_RECEIVE_COUNT + 1):
            sent = collection(3, token=f"device-{n}")
            acknowledged[post_acknowledged(pipeline, sent)] = sent
            messages = pipeline.receive()
            poisoned = [m for m in messages if m["Body"] == poison]
            response = pipeline.consume(messages)
            assert {item["itemIdentifier"] for item in response["batchItemFailures"]} == {
                m["MessageId"] for m in poisoned
            }
            expire_visibility(pipeline, poisoned)
        assert [m["Body"] for m in pipeline.receive(queue_url=pipeline.resources.dlq_url)] == [poison]
        result = reconcile(expected_payloads(acknowledged), stored_versions(pipeline))
        assert result.clean and result.stored == 3 * (pipeline.config.MAX_RECEIVE_COUNT + 1)


# --- 7. Failed records come back after a short retry delay, not the visibility timeout --------------

RETRY_CONFIG = {"RETRY_BASE_SECONDS": 1, "RETRY_MAX_SECONDS": 2}  # delays of 1-2 s; the visibility timeout is 181 s
# A failed record must be receivable again within the longest retry delay (+ slack for a loaded machine).
BACK_WITHIN_SECONDS = RETRY_CONFIG["RETRY_MAX_SECONDS"] + 2.0


def with_seconds_left(seconds: float) -> LambdaContext:
    """A context whose invocation has ``seconds`` left for work before the safety margin."""
    return LambdaContext(
        function_name="consumer", deadline_ms=int((time.time() + SAFETY_MARGIN_SECONDS + seconds) * 1000)
    )


def receive_within(pipeline: Pipeline, seconds: float) -> list[dict[str, Any]]:
    """Wait up to ``seconds`` for messages to become visible again; return the first ones that do."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if messages := pipeline.receive():
            return messages
        time.sleep(0.1)
    return []


def one_in_three(path: str, attempt: int) -> bool:
    return hashlib.sha256(f"{path.rsplit('/', 1)[1]}#{attempt}".encode()).digest()[0] < 77  # 77/256 = 30 %


@pytest.fixture(params=["payload", "batch"])
def object_mode(request: pytest.FixtureRequest) -> str:
    return request.param


class TestRetryDelay:
    @pytest.fixture
    def config(self, object_mode: str) -> PipelineConfig:
        return PipelineConfig(OBJECT_MODE=object_mode, **RETRY_CONFIG)

    def test_with_30_percent_slowdown_every_payload_is_stored_once_without_waiting_for_the_visibility_timeout(
        self, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given S3 answers 503 SlowDown to 30 % of PutObject attempts, and each invocation has 2 s
        # for work: botocore retries in-process, and what it cannot finish in time goes back to the queue
        slow = SlowDownAnswers(consumer_s3(pipeline), one_in_three, monkeypatch)
        acknowledged = {}
        for n in range(6):
            sent = collection(10, token=f"device-{n}")
            acknowledged[post_acknowledged(pipeline, sent, request_id(700 + n))] = sent
        # When the worker pool drains the queue in batches of 10, no visibility timeout ever expired by hand
        report = drain_on_retry_delays(
            pipeline, within_seconds=BACK_WITHIN_SECONDS, batch_size=10, context=lambda: with_seconds_left(2)
        )
        # Then every payload is stored exactly once, nothing is dead-lettered
        result = reconcile(expected_payloads(acknowledged), stored_versions(pipeline))
        assert result.clean and result.stored == 60
        assert pipeline.queue_depth(pipeline.resources.dlq_url) == 0
        # And SlowDown was really answered, and retried in-process (some object needed more than one attempt)
        assert slow.slowdowns > 0 and max(slow.attempts.values()) > 1
        assert report.longest_wait_seconds < BACK_WITHIN_SECONDS

    def test_a_record_s3_keeps_refusing_comes_back_after_its_retry_delay_not_the_visibility_timeout(
        self, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given S3 answers SlowDown to every attempt (payload mode: for one payload; batch mode: the object)
        outage = {"on": True}
        batch = pipeline.config.OBJECT_MODE == "batch"
        slow = SlowDownAnswers(
            consumer_s3(pipeline), lambda path, _: outage["on"] and (batch or path.endswith("-2.json")), monkeypatch
        )
        sent = collection(5)
        rid = post_acknowledged(pipeline, sent)
        messages = pipeline.receive()
        # When the batch is consumed with little time left: under 1 s beyond the safety margin, so botocore's first
        # retry (a wait of up to 1 s) never fits, yet as much as that allows, so the other uploads still start on a
        # loaded machine (with 0.5 s they were sometimes refused by the time budget too)
        if batch:
            with pytest.raises(Exception, match="All records failed"):
                pipeline.consume(messages, with_seconds_left(0.95))
            failed_ids = {m["MessageId"] for m in messages}
        else:
            response = pipeline.consume(messages, with_seconds_left(0.95))
            failed_ids = {item["itemIdentifier"] for item in response["batchItemFailures"]}
            assert len(failed_ids) == 1
        # Then S3 saw one attempt of the refused object: no retry started that could not finish in time
        assert sorted(slow.answered.values()) == [1]
        # And the failed records are in flight, not visible at once ...
        assert pipeline.receive() == [] and pipeline.queue_depth() == len(failed_ids)
        # ... and visible again within the retry delay (the visibility timeout is 181 s), received a 2nd time
        outage["on"] = False
        back = receive_within(pipeline, BACK_WITHIN_SECONDS)
        assert {m["MessageId"] for m in back} == failed_ids
        assert {m["Attributes"]["ApproximateReceiveCount"] for m in back} == {"2"}
        # And their redelivery stores them: every payload exactly once
        assert pipeline.consume(back) == {"batchItemFailures": []}
        result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
        assert result.clean and result.stored == 5 and pipeline.queue_depth() == 0

    def test_slowdown_answered_twice_is_absorbed_in_process_and_nothing_is_reported(
        self, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given S3 answers SlowDown to the first two attempts of every PutObject
        slow = SlowDownAnswers(consumer_s3(pipeline), lambda _, attempt: attempt <= 2, monkeypatch)
        sent = collection(8)
        rid = post_acknowledged(pipeline, sent)
        # When the batch is consumed with the function's full 30 s
        response = pipeline.consume(pipeline.receive())
        # Then botocore's retries stored everything: no record goes back to the queue
        assert response == {"batchItemFailures": []}
        result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
        assert result.clean and result.stored == 8 and pipeline.queue_depth() == 0
        assert set(slow.attempts.values()) == {3}


class TestRetryDelayPayloadMode:
    @pytest.fixture
    def config(self) -> PipelineConfig:
        return PipelineConfig(MAX_RECEIVE_COUNT=3, **RETRY_CONFIG)

    def test_a_poison_message_still_reaches_the_dlq_after_max_receive_count_without_waiting_the_timeout(
        self, pipeline: Pipeline
    ) -> None:
        # Given a message that is not an envelope, and MAX_RECEIVE_COUNT=3
        poison = POISON_BODIES["not-json"]
        pipeline.sqs.send_message(QueueUrl=pipeline.resources.queue_url, MessageBody=poison)
        # When the worker pool drains the queue, no visibility timeout expired by hand
        report = drain_on_retry_delays(pipeline, within_seconds=BACK_WITHIN_SECONDS)
        # Then it was received exactly 3 times, each redelivery after a retry delay, and is in the DLQ, unchanged
        assert report.invocations == 3 and report.reported_failures == 3
        assert report.longest_wait_seconds >= 0.5  # it waited: the delay is never 0
        assert [m["Body"] for m in pipeline.receive(queue_url=pipeline.resources.dlq_url)] == [poison]

    def test_no_upload_starts_inside_the_safety_margin_and_the_records_come_back_soon(self, pipeline: Pipeline) -> None:
        # Given an invocation that is already inside its safety margin
        sent = collection(3)
        rid = post_acknowledged(pipeline, sent)
        messages = pipeline.receive()
        # When it is consumed, Then nothing is uploaded and every record fails (the invocation fails as a whole)
        with pytest.raises(Exception, match="All records failed"):
            pipeline.consume(messages, with_seconds_left(-1))
        assert stored_versions(pipeline) == []
        # And the records come back within the retry delay and are stored
        back = receive_within(pipeline, BACK_WITHIN_SECONDS)
        assert len(back) == 3 and pipeline.consume(back) == {"batchItemFailures": []}
        assert reconcile(expected_payloads({rid: sent}), stored_versions(pipeline)).clean

    @pytest.mark.parametrize("fault", ["the call fails", "one entry is listed in Failed"])
    def test_a_failing_change_message_visibility_batch_loses_nothing(self, pipeline: Pipeline, fault: str) -> None:
        # Given S3 refuses two payloads of five, and SQS refuses to set the retry delay
        outage = {"on": True}
        fail_put_object(consumer_s3(pipeline), lambda key: outage["on"] and key.endswith(("-1.json", "-3.json")))
        if fault == "the call fails":
            fail_calls(aws_clients.sqs_client(), "ChangeMessageVisibilityBatch", lambda: outage["on"])
        else:
            FailingBatchEntries(
                aws_clients.sqs_client(), lambda _, entry: entry["Id"] == "0", operation="ChangeMessageVisibilityBatch"
            )
        sent = collection(5)
        rid = post_acknowledged(pipeline, sent)
        messages = pipeline.receive()
        # When the batch is consumed, Then both records are still reported failed (never acked), the rest stored
        response = pipeline.consume(messages)
        reported = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        failed = {m["MessageId"] for m in messages if json.loads(m["Body"])["id"].endswith(("-1", "-3"))}
        assert reported == failed and len(stored_versions(pipeline)) == 3
        # And a record whose delay was not set stays in flight past the retry delay (it keeps the 181 s timeout)
        outage["on"] = False
        time.sleep(BACK_WITHIN_SECONDS)
        back = pipeline.receive()
        assert len(back) == (0 if fault == "the call fails" else 1)
        assert pipeline.queue_depth() == 2
        # When that timeout has passed, Then every payload is stored exactly once
        expire_visibility(pipeline, [m for m in messages if m["MessageId"] in failed])
        drain(pipeline)
        result = reconcile(expected_payloads({rid: sent}), stored_versions(pipeline))
        assert result.clean and result.stored == 5
