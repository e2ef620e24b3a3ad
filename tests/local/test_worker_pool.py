"""The event source mapping emulator's delete rules, against moto's SQS with a stand-in consumer
(the real consumer cannot be made to return a malformed response; AWS's rules are what is tested)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

import pytest

from infra.config import PipelineConfig
from local_pipeline.access_log import AccessLog
from local_pipeline.lambda_runtime import FunctionError, Invocation
from local_pipeline.worker_pool import WorkerPool
from tests.conftest import Pipeline

Respond = Callable[[list[str]], dict[str, Any]]


class StandInConsumer:
    """Answers each invocation with ``respond(message ids)``; records every event it got."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.events: list[dict[str, Any]] = []

    def invoke(self, event: dict[str, Any]) -> Invocation:
        self.events.append(event)
        return Invocation(self.respond([record["messageId"] for record in event["Records"]]))


def run_pool_once(pipeline: Pipeline, respond: Respond, messages: int = 3) -> tuple[StandInConsumer, str]:
    for index in range(messages):
        pipeline.sqs.send_message(QueueUrl=pipeline.resources.queue_url, MessageBody=f"message {index}")
    consumer = StandInConsumer(respond)
    console = io.StringIO()
    config = PipelineConfig(MAX_WORKERS=2, BATCH_SIZE=10, MAX_BATCHING_WINDOW_SECONDS=0)
    pool = WorkerPool(
        sqs=pipeline.sqs,
        resources=pipeline.resources,
        config=config,
        consumer=consumer,  # type: ignore[arg-type]
        log=AccessLog(console),
        region="us-east-1",
    )
    pool.start()
    # Returns once nothing is left, or after 5 s: records a test leaves failed wait out 181 s in flight.
    pool.drain_and_stop(timeout_seconds=5)
    return consumer, console.getvalue()


def failures_in(console: str) -> int:
    """Failed records over all batch lines: the two pollers may split the 3 messages between them."""
    return sum(
        int(part.split("=", 1)[1])
        for line in console.splitlines()
        for part in line.split()
        if part.startswith("failures=")
    )


def fail_everything(ids: list[str]) -> dict[str, Any]:
    raise FunctionError("BatchProcessingError", "All records failed processing", "")


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(lambda ids: {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}, id="unknown id"),
        pytest.param(lambda ids: {"batchItemFailures": [{"itemIdentifier": ""}]}, id="empty id"),
        pytest.param(lambda ids: {"batchItemFailures": [{}]}, id="missing id"),
        pytest.param(lambda ids: "ok", id="not an object"),
        pytest.param(fail_everything, id="handler raised"),
    ],
)
def test_a_malformed_response_or_an_exception_fails_the_whole_batch(pipeline: Pipeline, respond: Respond) -> None:
    # Given 3 messages, When the consumer answers in a way AWS treats as failure of the whole batch
    consumer, console = run_pool_once(pipeline, respond)
    # Then the consumer saw all 3, and none was deleted: all wait out their visibility timeout
    assert sum(len(event["Records"]) for event in consumer.events) == 3
    assert pipeline.queue_depth() == 3
    assert failures_in(console) == 3


def test_only_records_listed_in_batch_item_failures_stay_on_the_queue(pipeline: Pipeline) -> None:
    # Given 3 messages, When the consumer reports exactly one of them as failed
    failed: list[str] = []
    choosing = threading.Lock()  # the pollers are threads: exactly one message is chosen

    def fail_one(ids: list[str]) -> dict[str, Any]:
        with choosing:
            failed.extend([] if failed else ids[:1])
        return {"batchItemFailures": [{"itemIdentifier": i} for i in ids if i in failed]}

    consumer, console = run_pool_once(pipeline, fail_one)
    # Then only that one is left (in flight, to be redelivered); the two others were deleted
    record = next(r for event in consumer.events for r in event["Records"] if r["messageId"] == failed[0])
    assert pipeline.queue_depth() == 1
    pipeline.sqs.change_message_visibility_batch(
        QueueUrl=pipeline.resources.queue_url,
        Entries=[{"Id": "0", "ReceiptHandle": record["receiptHandle"], "VisibilityTimeout": 0}],
    )
    assert [m["Body"] for m in pipeline.receive()] == [record["body"]]
    assert failures_in(console) == 1


def test_the_event_has_the_shape_the_consumer_reads(pipeline: Pipeline) -> None:
    consumer, _ = run_pool_once(pipeline, lambda ids: {"batchItemFailures": []}, messages=1)
    record = consumer.events[0]["Records"][0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == pipeline.resources.queue_arn
    assert record["body"] == "message 0" and record["receiptHandle"] and record["messageId"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert pipeline.queue_depth() == 0
