"""The redrive command against moto: DLQ messages go back to the queue, none is lost or duplicated.

moto (5.2.5 here) does not implement StartMessageMoveTask/ListMessageMoveTasks, so the command's
`auto` method falls back to receive -> send -> delete, and that is what these tests exercise end to
end. The move-task control flow (start or follow, poll until done) is tested at the bottom against a
small in-memory fake of those two calls, because no offline AWS here has them.
"""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from infra.config import PipelineConfig
from pipeline import aws_clients
from tests.conftest import Pipeline, collection
from tests.faults import FailingSendMessageBatch, fail_put_object
from tests.integration.test_previous_release import records as previous_release_records
from tools.ops import redrive

FAILING = ("-0.json", "-2.json", "-4.json")


def dead_letter(pipeline: Pipeline, n: int = 6) -> str:
    """POST n payloads and let the real consumer fail payloads 0, 2 and 4 until SQS dead-letters them."""
    request_id = pipeline.post(collection(n)).body["requestId"]
    fail_put_object(aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY), lambda key: key.endswith(FAILING))
    for _ in range(pipeline.config.MAX_RECEIVE_COUNT + 1):
        messages = pipeline.receive()
        if not messages:
            break
        try:
            failed = {item["itemIdentifier"] for item in pipeline.consume(messages)["batchItemFailures"]}
        except BatchProcessingError:  # every record failed: Lambda errors, the ESM retries them all
            failed = {message["MessageId"] for message in messages}
        for message in messages:
            if message["MessageId"] in failed:  # make the retry visible now instead of after the timeout
                pipeline.sqs.change_message_visibility(
                    QueueUrl=pipeline.resources.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
    return request_id


def heal_s3(pipeline: Pipeline) -> None:
    aws_clients.s3_client.cache_clear()  # a fresh client without the injected fault


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = redrive.main([*args, "--wait-seconds", "0"], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def stored_ids(pipeline: Pipeline) -> list[str]:
    return sorted(record["id"] for record in pipeline.objects().values())


def test_redrive_moves_every_dlq_message_back_and_the_consumer_stores_them_once(pipeline: Pipeline) -> None:
    # Given three payloads failed MAX_RECEIVE_COUNT times and sit in the DLQ; three are in S3
    request_id = dead_letter(pipeline)
    assert pipeline.queue_depth(pipeline.resources.dlq_url) == 3
    assert stored_ids(pipeline) == [f"{request_id}-{i}" for i in (1, 3, 5)]

    # When the cause is fixed and the operator redrives
    heal_s3(pipeline)
    code, out, err = run("--queue-url", pipeline.resources.queue_url)

    # Then all three are back on the queue (moto has no move task: the copy fallback says so)
    assert code == 0, err
    assert "copy: moved 3 message(s)" in out and "status COMPLETED" in out
    assert "no message move task API here" in err
    assert pipeline.queue_depth(pipeline.resources.dlq_url) == 0
    messages = pipeline.receive()
    assert len(messages) == 3
    # And they keep the requestId attribute, so their log lines still carry the correlation id
    assert {m["MessageAttributes"]["requestId"]["StringValue"] for m in messages} == {request_id}
    # And the consumer stores them: all six payloads are in S3, each once
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    assert stored_ids(pipeline) == [f"{request_id}-{i}" for i in range(6)]
    assert pipeline.queue_depth() == 0


def test_running_it_twice_moves_nothing_the_second_time(pipeline: Pipeline) -> None:
    dead_letter(pipeline)
    assert run("--queue-url", pipeline.resources.queue_url)[0] == 0
    code, out, _ = run("--queue-url", pipeline.resources.queue_url)
    assert code == 0 and "0 message(s) visible, 0 in flight" in out and "nothing to move" in out
    # the queue holds the three messages once, not twice
    assert pipeline.queue_depth() == 3 and pipeline.queue_depth(pipeline.resources.dlq_url) == 0


def test_limit_moves_just_that_many_to_try_a_fix(pipeline: Pipeline) -> None:
    dead_letter(pipeline)
    code, out, _ = run("--queue-url", pipeline.resources.queue_url, "--limit", "1")
    assert code == 0 and "copy: moved 1 message(s)" in out
    assert pipeline.queue_depth() == 1 and redrive.count_messages(pipeline.sqs, pipeline.resources.dlq_url) == (2, 0)


def test_large_messages_are_sent_in_batches_under_one_mib(pipeline: Pipeline) -> None:
    # Given three 400 KB messages in the DLQ: together over SendMessageBatch's 1 MiB, which SQS refuses
    for index in range(3):
        pipeline.sqs.send_message(QueueUrl=pipeline.resources.dlq_url, MessageBody=str(index) * 400_000)
    # When redrive moves them
    code, out, _ = run("--queue-url", pipeline.resources.queue_url)
    # Then all three are back on the queue and the DLQ is empty
    assert code == 0 and "copy: moved 3 message(s)" in out
    assert pipeline.queue_depth() == 3 and pipeline.queue_depth(pipeline.resources.dlq_url) == 0


def test_dry_run_counts_and_samples_without_moving_or_showing_bodies(pipeline: Pipeline) -> None:
    request_id = dead_letter(pipeline)
    code, out, _ = run("--queue-url", pipeline.resources.queue_url, "--dry-run", "--sample", "2")
    assert code == 0
    assert "3 message(s) visible" in out and "would move 3 message(s)" in out and "nothing moved" in out
    sampled = [line for line in out.splitlines() if line.startswith("  message ")]
    assert len(sampled) == 2
    assert all(f"payload {request_id}-" in line and f"request {request_id}" in line for line in sampled)
    assert "device-token-123" not in out and "temp" not in out
    # nothing moved, nothing hidden: the DLQ still shows all three as visible
    assert pipeline.queue_depth() == 0
    assert redrive.count_messages(pipeline.sqs, pipeline.resources.dlq_url) == (3, 0)


def test_queues_come_from_the_stack_outputs(pipeline: Pipeline) -> None:
    dead_letter(pipeline)
    template = {
        "Resources": {
            "Marker": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": "/test/marker", "Type": "String", "Value": "x"},
            }
        },
        "Outputs": {
            "QueueUrl": {"Value": pipeline.resources.queue_url},
            "DlqUrl": {"Value": pipeline.resources.dlq_url},
        },
    }
    boto3.client("cloudformation").create_stack(StackName="IngestPipeline-test", TemplateBody=json.dumps(template))
    code, out, err = run("--stack", "IngestPipeline-test")
    assert code == 0, err
    assert "moved 3 message(s)" in out
    assert pipeline.queue_depth() == 3 and pipeline.queue_depth(pipeline.resources.dlq_url) == 0


def test_the_dlq_is_found_from_the_queue_name_and_its_redrive_policy(pipeline: Pipeline) -> None:
    dead_letter(pipeline)
    code, out, _ = run("--queue-name", "test-pipeline", "--dry-run")
    assert code == 0 and f"DLQ {pipeline.resources.dlq_url}: 3 message(s) visible" in out


def test_a_missing_stack_is_a_clear_error(pipeline: Pipeline) -> None:
    code, _, err = run("--stack", "NoSuchStack")
    assert code == 1 and "cannot read stack NoSuchStack" in err


def test_messages_the_queue_refuses_stay_in_the_dlq_and_a_second_run_moves_them(pipeline: Pipeline) -> None:
    request_id = dead_letter(pipeline)
    sqs = boto3.client("sqs")
    queues = redrive.resolve_queues(sqs, None, queue_url=pipeline.resources.queue_url)
    # Given SendMessageBatch refuses payload 2's message on the first call (HTTP 200 with Failed)
    FailingSendMessageBatch(
        sqs, lambda call, entry: call == 1 and json.loads(entry["MessageBody"])["id"].endswith("-2")
    )
    result = redrive.move_by_copy(sqs, queues, progress=redrive.Progress(io.StringIO()), wait_seconds=0)
    # Then two moved, one reported not moved, and it is still in the DLQ (visible again at once)
    assert (result.moved, result.not_moved, result.status) == (2, 1, "INCOMPLETE")
    assert redrive.count_messages(sqs, queues.dlq_url) == (1, 0)
    # When the operator runs it again, the last one moves; nothing was lost
    again = redrive.move_by_copy(sqs, queues, progress=redrive.Progress(io.StringIO()), wait_seconds=0)
    assert (again.moved, again.not_moved) == (1, 0)
    heal_s3(pipeline)
    pipeline.consume(pipeline.receive())
    assert stored_ids(pipeline) == [f"{request_id}-{i}" for i in range(6)]


def test_an_interruption_between_send_and_delete_duplicates_nothing_in_s3(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = dead_letter(pipeline)
    sqs = boto3.client("sqs")
    queues = redrive.resolve_queues(sqs, None, queue_url=pipeline.resources.queue_url)

    # Given the process dies right after the queue accepted the messages, before the DLQ delete
    def die(**_: Any) -> None:
        raise KeyboardInterrupt

    sqs.meta.events.register("before-call.sqs.DeleteMessageBatch", die)
    # (a zero receive visibility stands for "COPY_VISIBILITY_SECONDS later": the copies reappear)
    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(redrive, "COPY_VISIBILITY_SECONDS", 0)
        redrive.move_by_copy(sqs, queues, progress=redrive.Progress(io.StringIO()), wait_seconds=0)
    sqs.meta.events.unregister("before-call.sqs.DeleteMessageBatch", die)
    assert pipeline.queue_depth() == 3  # sent to the queue...
    assert redrive.count_messages(sqs, queues.dlq_url) == (3, 0)  # ...and still in the DLQ
    # When the operator runs it again
    assert redrive.move_by_copy(sqs, queues, progress=redrive.Progress(io.StringIO()), wait_seconds=0).moved == 3
    # Then the queue has each message twice, and S3 still gets each payload exactly once
    heal_s3(pipeline)
    messages = pipeline.receive()
    assert len(messages) == 6
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    assert stored_ids(pipeline) == [f"{request_id}-{i}" for i in range(6)]
    versions = pipeline.s3.list_object_versions(
        Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX
    ).get("Versions", [])
    assert len(versions) == 6


# --- the move-task path, against a fake (moto lacks the API) ---------------------------------------


class FakeMoveTasks:
    """The two move-task calls over a moto SQS client: a task moves everything when it completes."""

    def __init__(
        self,
        sqs: Any,
        queues: redrive.Queues,
        running_first: bool = False,
        polls_until_done: int = 2,
        earlier: dict[str, Any] | None = None,
        listing_lag: int = 0,
    ) -> None:
        self._sqs, self._queues = sqs, queues
        self.started: list[dict[str, Any]] = []
        self._polls_left = polls_until_done
        self._to_move = redrive.count_messages(sqs, queues.dlq_url)[0]
        self._task: dict[str, Any] | None = (
            {"Status": "RUNNING", "TaskHandle": "existing"} if running_first else earlier
        )
        self._earlier, self._lag = earlier, listing_lag

    def start_message_move_task(self, **request: Any) -> dict[str, Any]:
        self.started.append(request)
        self._task = {"Status": "RUNNING", "TaskHandle": "new"}
        return {"TaskHandle": "new"}

    def list_message_move_tasks(self, SourceArn: str, MaxResults: int) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        assert SourceArn == self._queues.dlq_arn
        if self.started and self._lag > 0:  # eventually consistent: the new task is not listed yet
            self._lag -= 1
            return {"Results": [dict(self._earlier or {})]}
        if self._task is None:
            return {"Results": []}
        if self._task["Status"] == "RUNNING":  # each poll advances it; it completes after polls_until_done
            self._polls_left -= 1
            if self._polls_left < 0:
                moved = redrive.move_by_copy(
                    self._sqs, self._queues, progress=redrive.Progress(io.StringIO()), wait_seconds=0
                )
                self._task = {
                    "Status": "COMPLETED",
                    "ApproximateNumberOfMessagesMoved": moved.moved,
                    "ApproximateNumberOfMessagesToMove": self._to_move,
                }
            else:
                self._task = {
                    **self._task,
                    "ApproximateNumberOfMessagesMoved": 0,
                    "ApproximateNumberOfMessagesToMove": self._to_move,
                }
        return {"Results": [dict(self._task)]}


def test_the_move_task_is_started_towards_the_queue_and_followed_to_completion(pipeline: Pipeline) -> None:
    dead_letter(pipeline)
    queues = redrive.resolve_queues(pipeline.sqs, None, queue_url=pipeline.resources.queue_url)
    fake = FakeMoveTasks(pipeline.sqs, queues)
    progress = io.StringIO()
    result = redrive.move_with_task(
        fake, queues, rate=50, progress=redrive.Progress(progress), emulated=False, sleep=lambda _: None
    )
    assert fake.started == [
        {"SourceArn": queues.dlq_arn, "DestinationArn": queues.source_arn, "MaxNumberOfMessagesPerSecond": 50}
    ]
    assert (result.method, result.status, result.moved) == ("move-task", "COMPLETED", 3)
    assert "moved 0/3 message(s)" in progress.getvalue() and "moved 3/3 message(s)" in progress.getvalue()
    assert pipeline.queue_depth() == 3 and pipeline.queue_depth(queues.dlq_url) == 0


def test_a_running_move_task_is_followed_not_started_twice(pipeline: Pipeline) -> None:
    dead_letter(pipeline)
    queues = redrive.resolve_queues(pipeline.sqs, None, queue_url=pipeline.resources.queue_url)
    fake = FakeMoveTasks(pipeline.sqs, queues, running_first=True)
    progress = io.StringIO()
    result = redrive.move_with_task(
        fake, queues, rate=None, progress=redrive.Progress(progress), emulated=False, sleep=lambda _: None
    )
    assert fake.started == []
    assert "already running" in progress.getvalue()
    assert result.status == "COMPLETED" and pipeline.queue_depth() == 3


def test_an_earlier_finished_task_is_not_mistaken_for_the_new_one(pipeline: Pipeline) -> None:
    dead_letter(pipeline)
    queues = redrive.resolve_queues(pipeline.sqs, None, queue_url=pipeline.resources.queue_url)
    earlier = {
        "Status": "COMPLETED",
        "ApproximateNumberOfMessagesMoved": 7,
        "ApproximateNumberOfMessagesToMove": 7,
        "StartedTimestamp": 1,
    }
    fake = FakeMoveTasks(pipeline.sqs, queues, earlier=earlier, listing_lag=2)
    result = redrive.move_with_task(
        fake, queues, rate=None, progress=redrive.Progress(io.StringIO()), emulated=False, sleep=lambda _: None
    )
    assert len(fake.started) == 1
    assert (result.status, result.moved) == ("COMPLETED", 3)
    assert pipeline.queue_depth() == 3 and pipeline.queue_depth(queues.dlq_url) == 0


# --- both message layouts: previous-release messages and packed messages (MESSAGE_TARGET_BYTES) ------


def both_layouts_in_the_dlq(pipeline: Pipeline, previous: int = 22) -> tuple[str, list[dict[str, Any]]]:
    """The DLQ holds the previous release's one-payload messages (its first ``previous``, verbatim: body
    and requestId attribute) and this release's packed message of a request of 6 whose payload 4 S3
    kept refusing."""
    for record in previous_release_records()[:previous]:
        attribute = record["messageAttributes"]["requestId"]
        pipeline.sqs.send_message(
            QueueUrl=pipeline.resources.dlq_url,
            MessageBody=record["body"],
            MessageAttributes={
                "requestId": {"DataType": attribute["dataType"], "StringValue": attribute["stringValue"]}
            },
        )
    fail_put_object(aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY), lambda key: key.endswith("-4.json"))
    request_id = pipeline.post(collection(6)).body["requestId"]
    for _ in range(pipeline.config.MAX_RECEIVE_COUNT + 1):
        messages = pipeline.receive()
        if not messages:
            break
        try:
            pipeline.consume(messages)
        except BatchProcessingError:  # its only record failed: Lambda errors, the ESM retries it
            pass
        for message in messages:
            pipeline.sqs.change_message_visibility(
                QueueUrl=pipeline.resources.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
    dlq = sorted(
        pipeline.receive(queue_url=pipeline.resources.dlq_url), key=lambda m: (m["Body"].count("\n"), m["Body"])
    )
    for message in dlq:  # visible again for the redrive
        pipeline.sqs.change_message_visibility(
            QueueUrl=pipeline.resources.dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    assert len(dlq) == previous + 1 and dlq[-1]["Body"].count("\n") == 5  # the packed message: 6 lines
    return request_id, dlq


def layouts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """What a redrive must keep: each message's body and requestId attribute, verbatim."""
    return sorted((m["Body"], m["MessageAttributes"]["requestId"]["StringValue"]) for m in messages)


def assert_every_payload_stored_once(pipeline: Pipeline, request_id: str) -> None:
    previous = [json.loads(record["body"])["id"] for record in previous_release_records()]
    ids = sorted([*previous, *(f"{request_id}-{i}" for i in range(6))])
    assert stored_ids(pipeline) == ids
    versions = pipeline.s3.list_object_versions(
        Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX
    ).get("Versions", [])
    assert len(versions) == len(ids)


@pytest.mark.parametrize("config", [pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=65536), id="packing")])
def test_redrive_moves_both_layouts_back_verbatim_and_each_payload_is_stored_once(pipeline: Pipeline) -> None:
    # Given the DLQ holds previous-release messages and a packed message
    request_id, dead = both_layouts_in_the_dlq(pipeline)
    # When the cause is fixed and the operator redrives (moto: the copy method)
    heal_s3(pipeline)
    code, out, err = run("--queue-url", pipeline.resources.queue_url)
    assert code == 0, err
    assert "copy: moved 23 message(s)" in out
    # Then the queue holds the same 23 messages, bodies and requestId attributes unchanged
    back = pipeline.receive()
    assert layouts(back) == layouts(dead)
    # And the consumer stores every payload once (the packed message's five stored payloads are skipped)
    assert pipeline.consume(back) == {"batchItemFailures": []}
    assert_every_payload_stored_once(pipeline, request_id)


@pytest.mark.parametrize("config", [pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=65536), id="packing")])
def test_the_move_task_moves_both_layouts_back_verbatim(pipeline: Pipeline) -> None:
    # Given the same DLQ, and an endpoint with the move task API (the fake over moto)
    request_id, dead = both_layouts_in_the_dlq(pipeline)
    heal_s3(pipeline)
    queues = redrive.resolve_queues(pipeline.sqs, None, queue_url=pipeline.resources.queue_url)
    fake = FakeMoveTasks(pipeline.sqs, queues)
    # When the operator redrives
    result = redrive.move_with_task(
        fake, queues, rate=None, progress=redrive.Progress(io.StringIO()), emulated=False, sleep=lambda _: None
    )
    # Then all 23 are back, unchanged, and stored once
    assert (result.status, result.moved) == ("COMPLETED", 23)
    back = pipeline.receive()
    assert layouts(back) == layouts(dead)
    assert pipeline.consume(back) == {"batchItemFailures": []}
    assert_every_payload_stored_once(pipeline, request_id)


@pytest.mark.parametrize("config", [pytest.param(PipelineConfig(MESSAGE_TARGET_BYTES=65536), id="packing")])
def test_dry_run_samples_a_packed_message_by_its_first_payload_and_count(pipeline: Pipeline) -> None:
    request_id, _ = both_layouts_in_the_dlq(pipeline, previous=3)
    code, out, _ = run("--queue-url", pipeline.resources.queue_url, "--dry-run", "--sample", "4")
    assert code == 0 and "4 message(s) visible" in out
    [packed] = [line for line in out.splitlines() if f"request {request_id}" in line]
    assert f"payload {request_id}-0 (+5 more)" in packed
    assert sum("more)" in line for line in out.splitlines()) == 1
    assert "device-token" not in out
