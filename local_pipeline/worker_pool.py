"""Emulates the SQS event source mapping (ESM) that feeds the consumer Lambda.

Each of MAX_WORKERS pollers long-polls the queue, gathers up to BATCH_SIZE records within
MAX_BATCHING_WINDOW_SECONDS, invokes the real consumer handler with an SQS event of the real shape,
and deletes only the records the handler did not list in ``batchItemFailures``. As AWS does, an
exception or a malformed ``batchItemFailures`` fails the whole batch. Failed records are simply not
deleted: SQS makes them visible again after the visibility timeout, and moves them to the DLQ after
``maxReceiveCount`` receives.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.config import PipelineConfig
from local_pipeline.access_log import AccessLog, BatchOutcome
from local_pipeline.events import sqs_event
from local_pipeline.lambda_runtime import FunctionError, FunctionPool
from local_pipeline.resources import LocalResources
from pipeline.contract import SQS_MAX_BATCH_ENTRIES, Metric

# One invocation's payload is limited to 6 MB (AWS); a batch stops growing before that.
MAX_INVOCATION_BYTES = 6 * 1000 * 1000
# Short-polling, an idle poller looks again after 50 ms, backing off to 1 s while the queue stays
# empty. (The ESM long-polls, as the pool does against AWS_ENDPOINT_URL; see _receive.)
IDLE_POLL_SECONDS = (0.05, 1.0)
DRAIN_RECHECK_SECONDS = 0.5  # while draining, how often a poller looks again for records in their retry delay
# While a batching window is open and the queue is momentarily empty, look again this often.
WINDOW_POLL_SECONDS = 0.2


class MalformedResponse(ValueError):
    """A consumer response AWS would treat as failure of the whole batch."""


def failed_ids(response: Any, batch_ids: set[str]) -> set[str]:
    """The ids listed in ``batchItemFailures``; raises MalformedResponse where AWS fails the whole batch."""
    if not isinstance(response, dict):
        raise MalformedResponse(f"response is {type(response).__name__}, not an object")
    items = response.get("batchItemFailures") or []
    if not isinstance(items, list):
        raise MalformedResponse("batchItemFailures is not a list")
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier:
            raise MalformedResponse(f"empty or missing itemIdentifier in {item!r}")
        if identifier not in batch_ids:
            raise MalformedResponse(f"itemIdentifier {identifier!r} is not in the batch")
        failed.add(identifier)
    return failed


def batch_error(exc: Exception) -> str:
    """One line for a failed batch. When every record failed, Powertools raises BatchProcessingError
    ("... N individual errors logged separately below") with the records' tracebacks in the same
    message, which the log line cuts off: show their distinct final lines instead."""
    lines = str(exc).splitlines()
    first = lines[0] if lines else type(exc).__name__
    if "logged separately below" not in first:
        return first[:200]
    causes: dict[str, int] = {}
    for line in lines[1:]:  # a traceback's last line is the only one at column 0 after "Traceback"
        if line and not line[0].isspace() and not line.startswith(("Traceback", "During handling", "The above")):
            causes[line] = causes.get(line, 0) + 1
    shown = "; ".join(f"{cause[:160]}" + (f" (x{count})" if count > 1 else "") for cause, count in causes.items())
    return f"every record failed: {shown or first[:200]}"


class WorkerPool:
    """MAX_WORKERS poller threads in front of a pool of consumer environments."""

    def __init__(
        self,
        *,
        sqs: Any,
        resources: LocalResources,
        config: PipelineConfig,
        consumer: FunctionPool,
        log: AccessLog,
        region: str,
        long_poll_seconds: int = 0,
    ) -> None:
        """``long_poll_seconds`` > 0 long-polls like the ESM; keep 0 for the embedded moto (see _receive)."""
        self._long_poll_seconds = long_poll_seconds
        self._sqs = sqs
        self._resources = resources
        self._config = config
        self._consumer = consumer
        self._log = log
        self._region = region
        self._draining = threading.Event()
        self._drain_deadline = 0.0
        self._threads = [
            threading.Thread(target=self._poll, args=(number,), name=f"poller-{number}", daemon=True)
            for number in range(1, config.MAX_WORKERS + 1)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def drain_and_stop(self, timeout_seconds: float) -> None:
        """Keep consuming until the queue has no message left, visible or in flight (a failed record
        waits out its short retry delay, then comes back), or until the timeout; finish in-flight
        batches, then stop."""
        self._drain_deadline = time.monotonic() + timeout_seconds
        self._draining.set()
        for thread in self._threads:
            while thread.is_alive():  # short joins: the main thread stays free to run a second Ctrl-C
                thread.join(0.2)

    # --- one poller --------------------------------------------------------------------------------
    def _poll(self, number: int) -> None:
        carry: list[dict[str, Any]] = []
        idle_seconds = IDLE_POLL_SECONDS[0]
        while True:
            if self._draining.is_set() and time.monotonic() >= self._drain_deadline:
                return
            try:
                batch, carry = self._gather(carry)
            except (BotoCoreError, ClientError) as exc:
                if self._draining.is_set():
                    return  # nothing can be drained from an endpoint that does not answer
                # The endpoint is unreachable or refused: like the ESM, back off and poll again.
                self._log.line(f"poller {number}: receive failed ({exc}); retrying in 1 s")
                time.sleep(1)
                continue
            if batch:
                idle_seconds = IDLE_POLL_SECONDS[0]
                self._process(number, batch)
            elif self._draining.is_set():
                if not self._in_flight():
                    return  # drained: nothing is left
                time.sleep(DRAIN_RECHECK_SECONDS)  # failed records come back after their retry delay
            elif not self._long_poll_seconds:
                time.sleep(idle_seconds)
                idle_seconds = min(IDLE_POLL_SECONDS[1], idle_seconds * 2)

    def _in_flight(self) -> int:
        """Messages received but not deleted; 0 when the endpoint does not answer (nothing to drain from)."""
        try:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._resources.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
            )
        except (BotoCoreError, ClientError):
            return 0
        return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"])

    def _receive(self, limit: int, wait_seconds: int = 0) -> list[dict[str, Any]]:
        # Against the embedded moto, short polls only: it answers one request at a time (see
        # moto_endpoint.py), so a long poll would hold up every other call.
        return self._sqs.receive_message(
            QueueUrl=self._resources.queue_url,
            MaxNumberOfMessages=min(SQS_MAX_BATCH_ENTRIES, limit),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    def _gather(self, carry: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """A batch as the ESM builds it: full, or the window closed, or the next record would pass 6 MB.
        Records that did not fit are carried into the next batch (they stay in flight meanwhile)."""
        batch_size = self._config.BATCH_SIZE
        pending = carry or self._receive(batch_size, 0 if self._draining.is_set() else self._long_poll_seconds)
        if not pending:
            return [], []
        window_closes = time.monotonic() + self._config.MAX_BATCHING_WINDOW_SECONDS
        batch: list[dict[str, Any]] = []
        size = 0
        while True:
            while pending:
                record_size = len(pending[0]["Body"].encode("utf-8"))
                if len(batch) >= batch_size or (batch and size + record_size > MAX_INVOCATION_BYTES):
                    return batch, pending
                batch.append(pending.pop(0))
                size += record_size
            remaining = window_closes - time.monotonic()
            if len(batch) >= batch_size or remaining <= 0:
                return batch, []
            pending = self._receive(batch_size - len(batch))
            if not pending:
                time.sleep(min(WINDOW_POLL_SECONDS, remaining))

    def _process(self, number: int, batch: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        ids = {message["MessageId"] for message in batch}
        error = ""
        try:
            invocation = self._consumer.invoke(sqs_event(batch, self._resources.queue_arn, self._region))
            metrics = invocation.metrics
            failed = failed_ids(invocation.response, ids)
        except FunctionError as exc:
            failed, error, metrics = ids, batch_error(exc), exc.metrics
        except MalformedResponse as exc:
            failed, error = ids, batch_error(exc)
        succeeded = [message for message in batch if message["MessageId"] not in failed]
        try:
            self._delete(succeeded)
        except (BotoCoreError, ClientError) as exc:
            error = f"delete failed: {exc}"  # the records come back and are found already stored
        # What the consumer wrote, in payloads (however many a message carries): its own metrics.
        outcome = BatchOutcome(
            records=len(batch),
            failures=len(failed),
            payloads_stored=int(metrics.get(Metric.PAYLOADS_STORED, 0)),
            duplicates_skipped=int(metrics.get(Metric.DUPLICATES_SKIPPED, 0)),
        )
        self._log.batch(number, outcome, (time.perf_counter() - started) * 1000, error)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), SQS_MAX_BATCH_ENTRIES):
            chunk = messages[start : start + SQS_MAX_BATCH_ENTRIES]
            result = self._sqs.delete_message_batch(
                QueueUrl=self._resources.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in result.get("Failed", []):
                # Not lost: the record reappears and its create-only write finds the object already stored.
                self._log.line(f"delete failed ({failure.get('Code')}); the record will be redelivered")
