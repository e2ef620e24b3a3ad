"""Move the messages of the dead-letter queue back to the payload queue.

    python -m tools.ops.redrive --stack IngestPipeline-prod --dry-run   # count and sample, move nothing
    python -m tools.ops.redrive --stack IngestPipeline-prod             # move them all back
    python -m tools.ops.redrive --queue-url URL [--dlq-url URL] [--endpoint-url http://127.0.0.1:4566]

Messages move verbatim (body and message attributes), so both layouts the consumer reads go back as
they came: one payload per message, and a request's payloads packed one per line
(MESSAGE_TARGET_BYTES).

It uses SQS's message move task (StartMessageMoveTask), as the console's "Start DLQ redrive" does,
and follows its progress. A move task already running for the DLQ is followed, not duplicated, so
running this twice is safe. Where the API does not exist (moto, and so `make run`'s local AWS) it
falls back to receive -> send to the queue -> delete from the DLQ, deleting only what the queue
accepted. An interruption between send and delete leaves a copy in both queues; the consumer's
create-only writes turn that into a skipped duplicate, never a second object.

Nothing here prints a message body: bodies hold device tokens and payloads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.contract import SQS_MAX_BATCH_ENTRIES, pack_batches
from pipeline.envelope import EnvelopeError, parse_envelopes
from tools.ops.cli import aws_problem_exit, session_options, stack_outputs

MOVE_TASK_DONE = ("COMPLETED", "CANCELLED", "FAILED")
# A received message stays hidden this long; if we die before deleting it, it reappears in the DLQ.
COPY_VISIBILITY_SECONDS = 120
_UNSUPPORTED_CODES = {
    "InvalidAction",
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "NotImplemented",
}


class RedriveError(RuntimeError):
    """The redrive cannot start or did not finish; the message says what to do."""


class MoveTaskUnsupported(RedriveError):
    """The endpoint has no message-move-task API (moto, older emulators)."""


@dataclass(frozen=True)
class Queues:
    source_url: str
    source_arn: str
    dlq_url: str
    dlq_arn: str


@dataclass(frozen=True)
class Sample:
    """What is safe to show about a DLQ message: identifiers, counts and sizes, never the body.
    ``payload_id`` is the message's first payload; ``payloads`` how many it carries (more than one
    when the ingest packed them, MESSAGE_TARGET_BYTES; 0 when the body is not our envelopes)."""

    message_id: str
    payload_id: str | None
    request_id: str | None
    received_at: str | None
    receive_count: int
    size_bytes: int
    payloads: int = 1


@dataclass
class RedriveResult:
    method: str
    moved: int = 0
    not_moved: int = 0
    status: str = "COMPLETED"
    detail: str = ""
    samples: list[Sample] = field(default_factory=list)


class Progress:
    """One line that rewrites itself on a terminal, or a line per tenth of the work otherwise."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self._tty = stream.isatty()
        self._last_tenth = -1

    def update(self, done: int, total: int | None, what: str = "moved") -> None:
        text = f"{what} {done}" + (f"/{total}" if total else "") + " message(s)"
        if self._tty:
            self.stream.write("\r" + text.ljust(40))
            self.stream.flush()
            return
        tenth = (10 * done // total) if total else done // 100
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(text + "\n")

    def finish(self) -> None:
        if self._tty:
            self.stream.write("\n")


# --- finding the queues -----------------------------------------------------------------------


def _arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def _dead_letter_url_of(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    if "RedrivePolicy" not in attributes:
        raise RedriveError(f"{queue_url} has no dead-letter queue (no RedrivePolicy); pass --dlq-url")
    dlq_arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
    _, _, _, _, account, name = dlq_arn.split(":", 5)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def stack_queue_urls(cloudformation: Any, stack_name: str) -> tuple[str, str]:
    """(QueueUrl, DlqUrl) from the stack's outputs."""
    try:
        outputs = stack_outputs(cloudformation, stack_name)
    except ClientError as exc:
        raise RedriveError(f"cannot read stack {stack_name}: {exc}") from exc
    missing = [key for key in ("QueueUrl", "DlqUrl") if key not in outputs]
    if missing:
        raise RedriveError(f"stack {stack_name} has no output {', '.join(missing)}; is it the ingest pipeline?")
    return outputs["QueueUrl"], outputs["DlqUrl"]


def resolve_queues(
    sqs: Any,
    cloudformation: Any | None,
    *,
    stack: str | None = None,
    queue_url: str | None = None,
    queue_name: str | None = None,
    dlq_url: str | None = None,
) -> Queues:
    """The source queue and its DLQ from a stack's outputs, a queue URL or a queue name; the DLQ
    comes from the queue's RedrivePolicy unless given."""
    if stack:
        if cloudformation is None:
            raise RedriveError("--stack needs CloudFormation")
        queue_url, stack_dlq = stack_queue_urls(cloudformation, stack)
        dlq_url = dlq_url or stack_dlq
    elif queue_name:
        queue_url = str(sqs.get_queue_url(QueueName=queue_name)["QueueUrl"])
    if not queue_url:
        raise RedriveError("name the queue: --stack, --queue-url or --queue-name")
    dlq_url = dlq_url or _dead_letter_url_of(sqs, queue_url)
    if dlq_url == queue_url:
        raise RedriveError("the DLQ and the destination queue are the same queue")
    return Queues(queue_url, _arn(sqs, queue_url), dlq_url, _arn(sqs, dlq_url))


# --- looking without moving -------------------------------------------------------------------


def count_messages(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue, as SQS approximates them."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _sample(message: dict[str, Any]) -> Sample:
    envelope: dict[str, Any] = {}
    payloads = 0
    try:
        # Either layout: one envelope, or a packed request's envelopes, one per line.
        envelopes = parse_envelopes(message["Body"])
        envelope, payloads = json.loads(envelopes[0][1]), len(envelopes)
    except EnvelopeError:
        pass  # not our envelope(s): a poison message; its identifiers are all we show
    attribute = (message.get("MessageAttributes") or {}).get("requestId") or {}

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    return Sample(
        message_id=message["MessageId"],
        payload_id=text(envelope.get("id")),
        request_id=text(attribute.get("StringValue")) or text(envelope.get("requestId")),
        received_at=text(envelope.get("receivedAt")),
        receive_count=int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 0)),
        size_bytes=len(message["Body"].encode("utf-8")),
        payloads=payloads,
    )


def sample_messages(sqs: Any, dlq_url: str, limit: int) -> list[Sample]:
    """Up to ``limit`` DLQ messages, received with a zero visibility timeout so none is hidden."""
    seen: dict[str, Sample] = {}
    for _ in range(max(1, limit)):
        batch = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(10, max(1, limit)),
            VisibilityTimeout=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen[message["MessageId"]] = _sample(message)
        if len(seen) >= limit:
            break
    return list(seen.values())[:limit]


# --- moving with a message move task ----------------------------------------------------------


def _is_unsupported(error: Exception, emulated: bool) -> bool:
    if isinstance(error, NotImplementedError):  # moto in-process
        return True
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # moto's server answers an unknown action with a bare HTTP 500; real SQS never does for this API.
        return code in _UNSUPPORTED_CODES or (emulated and status == 500)
    return False


def _latest_task(sqs: Any, dlq_arn: str) -> dict[str, Any] | None:
    results = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
    return results[0] if results else None


def move_with_task(
    sqs: Any,
    queues: Queues,
    *,
    rate: int | None,
    progress: Progress,
    emulated: bool,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    max_stale_polls: int = 30,
) -> RedriveResult:
    """Start a move task (or follow the one already running) and wait for it to finish."""
    try:
        previous = _latest_task(sqs, queues.dlq_arn)
        if previous and previous.get("Status") == "RUNNING":
            progress.stream.write(
                f"a move task is already running for this DLQ (started "
                f"{previous.get('StartedTimestamp')}); following it\n"
            )
            previous = None  # the running task is the one to follow
        else:
            request: dict[str, Any] = {"SourceArn": queues.dlq_arn, "DestinationArn": queues.source_arn}
            if rate:
                request["MaxNumberOfMessagesPerSecond"] = rate
            sqs.start_message_move_task(**request)
    except (NotImplementedError, ClientError) as exc:
        if _is_unsupported(exc, emulated):
            raise MoveTaskUnsupported("this endpoint has no SQS message move task API") from exc
        raise
    stale_polls = 0
    while True:
        task = _latest_task(sqs, queues.dlq_arn) or {}
        if previous is not None and task == previous:
            # The listing still shows the task before ours (it is eventually consistent): wait.
            stale_polls += 1
            if stale_polls > max_stale_polls:
                raise RedriveError("started a move task but SQS does not list it; check the SQS console")
            sleep(poll_seconds)
            continue
        previous = None
        status = str(task.get("Status", "RUNNING"))
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        total = task.get("ApproximateNumberOfMessagesToMove")
        progress.update(moved, int(total) if total is not None else None)
        if status in MOVE_TASK_DONE:
            progress.finish()
            result = RedriveResult("move-task", moved=moved, status=status, detail=str(task.get("FailureReason", "")))
            if total is not None and status != "COMPLETED":
                result.not_moved = max(0, int(total) - moved)
            return result
        sleep(poll_seconds)


# --- moving by copy (fallback) ----------------------------------------------------------------


def _entry_size(message: dict[str, Any]) -> int:
    size = len(message["Body"].encode("utf-8"))
    for name, value in (message.get("MessageAttributes") or {}).items():
        size += (
            len(name)
            + len(value.get("DataType", ""))
            + len(str(value.get("StringValue", value.get("BinaryValue", b""))))
        )
    return size


def _release(sqs: Any, dlq_url: str, messages: list[dict[str, Any]]) -> None:
    """Make messages we will not move visible again now, not after COPY_VISIBILITY_SECONDS."""
    for start in range(0, len(messages), SQS_MAX_BATCH_ENTRIES):
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(messages[start : start + SQS_MAX_BATCH_ENTRIES])
            ],
        )


def move_by_copy(
    sqs: Any, queues: Queues, *, progress: Progress, limit: int | None = None, wait_seconds: int = 1
) -> RedriveResult:
    """Receive from the DLQ, send to the queue, delete from the DLQ only what the queue accepted."""
    visible, in_flight = count_messages(sqs, queues.dlq_url)
    total = visible + in_flight
    result = RedriveResult("copy")
    refused_all: list[dict[str, Any]] = []
    while limit is None or result.moved < limit:
        want = SQS_MAX_BATCH_ENTRIES if limit is None else min(SQS_MAX_BATCH_ENTRIES, limit - result.moved)
        received = sqs.receive_message(
            QueueUrl=queues.dlq_url,
            MaxNumberOfMessages=want,
            VisibilityTimeout=COPY_VISIBILITY_SECONDS,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            break  # empty; what we could not send is hidden for COPY_VISIBILITY_SECONDS, so this ends
        for batch in pack_batches(received, _entry_size):  # DLQ messages can be up to 1 MiB each
            try:
                response = sqs.send_message_batch(
                    QueueUrl=queues.source_url,
                    Entries=[
                        {"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": m.get("MessageAttributes") or {}}
                        for i, m in enumerate(batch)
                    ],
                )
            except (ClientError, BotoCoreError):
                _release(sqs, queues.dlq_url, batch)
                raise
            accepted = {entry["Id"] for entry in response.get("Successful", [])}
            sent = [m for i, m in enumerate(batch) if str(i) in accepted]
            refused = [m for i, m in enumerate(batch) if str(i) not in accepted]
            if sent:
                deleted = sqs.delete_message_batch(
                    QueueUrl=queues.dlq_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(sent)],
                )
                # A failed delete leaves a copy in the DLQ; the consumer will skip it as a duplicate.
                result.not_moved += len(deleted.get("Failed", []))
            result.moved += len(sent)
            result.not_moved += len(refused)
            refused_all.extend(refused)
            if refused:
                result.detail = "; ".join(
                    f"{f.get('Code')}: {f.get('Message', '')}" for f in response.get("Failed", [])[:3]
                )
            progress.update(result.moved, max(total, result.moved))
    progress.finish()
    # Refused messages stayed hidden until the loop ended (so it could not spin on them); a second
    # run can pick them up right away.
    _release(sqs, queues.dlq_url, refused_all)
    if result.not_moved:
        result.status = "INCOMPLETE"
    return result


# --- the command ------------------------------------------------------------------------------


def redrive(
    sqs: Any,
    queues: Queues,
    *,
    method: str = "auto",
    rate: int | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    emulated: bool = False,
    wait_seconds: int = 1,
    poll_seconds: float = 2.0,
) -> RedriveResult:
    """Move every DLQ message back to the source queue. ``method``: auto, move-task or copy."""
    progress = progress or Progress()
    if method in ("auto", "move-task") and limit is None:
        try:
            return move_with_task(
                sqs, queues, rate=rate, progress=progress, emulated=emulated, poll_seconds=poll_seconds
            )
        except MoveTaskUnsupported:
            if method == "move-task":
                raise
            progress.stream.write("no message move task API here: moving by receive -> send -> delete\n")
    return move_by_copy(sqs, queues, progress=progress, limit=limit, wait_seconds=wait_seconds)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ops.redrive", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="read QueueUrl and DlqUrl from this CloudFormation stack's outputs")
    where.add_argument("--queue-url", help="the queue to move messages back to")
    where.add_argument("--queue-name", help="the queue to move messages back to, by name")
    parser.add_argument("--dlq-url", help="the dead-letter queue (default: from the queue's RedrivePolicy)")
    parser.add_argument("--dry-run", action="store_true", help="count and sample the DLQ, move nothing")
    parser.add_argument("--sample", type=int, default=5, help="messages to sample with --dry-run (default 5)")
    parser.add_argument(
        "--method",
        choices=("auto", "move-task", "copy"),
        default="auto",
        help="auto: the move task, or copy where the endpoint lacks it (default)",
    )
    parser.add_argument("--rate", type=int, help="move task: at most this many messages per second")
    parser.add_argument("--limit", type=int, help="move at most this many messages (uses the copy method)")
    parser.add_argument(
        "--endpoint-url", help="an AWS endpoint such as http://127.0.0.1:4566 (default: AWS_ENDPOINT_URL, else AWS)"
    )
    parser.add_argument("--region", help="AWS region (default: your profile's)")
    parser.add_argument("--wait-seconds", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--poll-seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    return parser


def aws_session(endpoint_url: str | None, region: str | None) -> boto3.Session:
    return boto3.Session(**session_options(endpoint_url, region))


def _print_samples(samples: Sequence[Sample], out: TextIO) -> None:
    if not samples:
        return
    out.write("sample (identifiers only; bodies hold tokens and payloads):\n")
    for s in samples:
        out.write(
            f"  message {s.message_id}  payload {s.payload_id or '-'}"
            + (f" (+{s.payloads - 1} more)" if s.payloads > 1 else "")
            + f"  request {s.request_id or '-'}  receivedAt {s.received_at or '-'}  receives {s.receive_count}  "
            f"{s.size_bytes} bytes\n"
        )


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    if args.rate is not None and not 1 <= args.rate <= 500:
        err.write("--rate must be 1..500 (the SQS limit)\n")
        return 2
    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    try:
        session = aws_session(endpoint, args.region)
        sqs = session.client("sqs", endpoint_url=endpoint)
        cloudformation = session.client("cloudformation", endpoint_url=endpoint) if args.stack else None
        queues = resolve_queues(
            sqs,
            cloudformation,
            stack=args.stack,
            queue_url=args.queue_url,
            queue_name=args.queue_name,
            dlq_url=args.dlq_url,
        )
        visible, in_flight = count_messages(sqs, queues.dlq_url)
        out.write(f"DLQ {queues.dlq_url}: {visible} message(s) visible, {in_flight} in flight\n")
        if not args.dry_run and visible + in_flight == 0:
            out.write("nothing to move\n")
            return 0
        if args.dry_run:
            _print_samples(sample_messages(sqs, queues.dlq_url, args.sample) if visible else [], out)
            out.write(f"dry run: would move {visible} message(s) to {queues.source_url}; nothing moved\n")
            return 0
        result = redrive(
            sqs,
            queues,
            method=args.method,
            rate=args.rate,
            limit=args.limit,
            progress=Progress(err),
            emulated=endpoint is not None,
            wait_seconds=args.wait_seconds,
            poll_seconds=args.poll_seconds,
        )
    except RedriveError as exc:
        err.write(f"redrive: {exc}\n")
        return 1
    except (ClientError, BotoCoreError) as exc:  # "AWS refused" only when it answered (describe_aws_problem)
        return aws_problem_exit("redrive", exc, err, endpoint)
    out.write(
        f"{result.method}: moved {result.moved} message(s) to {queues.source_url}; status {result.status}"
        + (f"; {result.not_moved} not moved ({result.detail or 'run again'})" if result.not_moved else "")
        + "\n"
    )
    return 0 if result.status == "COMPLETED" and not result.not_moved else 1


if __name__ == "__main__":
    sys.exit(main())
