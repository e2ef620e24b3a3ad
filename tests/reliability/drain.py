"""Deliver a queue the way the event source mapping would (failed records come back after their
visibility timeout, or after the retry delay the consumer set), and read back what was stored.
Judging what was stored is loadtest/reconcile.py's job, the one reconciler."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loadtest.reconcile import StoredCopy, bucket_copies

if TYPE_CHECKING:
    from tests.conftest import Pipeline


def stored_versions(pipeline: Pipeline) -> list[StoredCopy]:
    """Every payload in every version of every object (the reliability tests version the bucket,
    so an overwrite shows up as a second copy)."""
    return bucket_copies(pipeline.s3, pipeline.resources.bucket, readers=1)


def expire_visibility(pipeline: Pipeline, messages: Iterable[Mapping[str, Any]]) -> None:
    """What the visibility timeout does, without waiting for it: the messages become receivable."""
    for message in messages:
        pipeline.sqs.change_message_visibility(
            QueueUrl=pipeline.resources.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )


@dataclass
class DrainReport:
    invocations: int = 0
    failed_invocations: int = 0
    reported_failures: int = 0


def drain(pipeline: Pipeline, max_rounds: int = 20) -> DrainReport:
    """Deliver until the queue is empty. Reported records and whole failed invocations are
    redelivered (as the ESM does); moto moves a message to the DLQ after MAX_RECEIVE_COUNT receives."""
    report = DrainReport()
    for _ in range(max_rounds):
        messages = pipeline.receive()
        if not messages:
            return report
        report.invocations += 1
        try:
            response = pipeline.consume(messages)
        except Exception:  # noqa: BLE001 - a failed invocation: the ESM retries the whole batch
            report.failed_invocations += 1
            expire_visibility(pipeline, messages)
            continue
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        report.reported_failures += len(failed)
        expire_visibility(pipeline, [m for m in messages if m["MessageId"] in failed])
    raise AssertionError(f"queue not drained after {max_rounds} deliveries")


@dataclass
class RetryDrainReport:
    invocations: int = 0
    reported_failures: int = 0
    longest_wait_seconds: float = 0.0  # longest time the queue had nothing visible while records were in flight


def drain_on_retry_delays(
    pipeline: Pipeline,
    within_seconds: float,
    batch_size: int = 100,
    context: Callable[[], Any] | None = None,
    max_invocations: int = 50,
) -> RetryDrainReport:
    """Deliver until the queue is empty, like the event source mapping, but *never* expire a
    visibility timeout by hand: a failed record must come back on its own, through the retry delay
    the consumer set. Fails if records stay in flight for ``within_seconds`` with nothing visible
    (the queue's visibility timeout is minutes: only the retry delay can bring them back sooner)."""
    report = RetryDrainReport()
    idle_since: float | None = None
    while report.invocations < max_invocations:
        messages = pipeline.receive()
        if not messages:
            if pipeline.queue_depth() == 0:
                return report
            now = time.monotonic()
            idle_since = idle_since or now
            report.longest_wait_seconds = max(report.longest_wait_seconds, now - idle_since)
            if now - idle_since > within_seconds:
                raise AssertionError(f"{pipeline.queue_depth()} records still in flight after {within_seconds} s")
            time.sleep(0.1)
            continue
        idle_since = None
        for start in range(0, len(messages), batch_size):
            batch = messages[start : start + batch_size]
            report.invocations += 1
            try:
                response = pipeline.consume(batch, context() if context else None)
            except Exception:  # noqa: BLE001 - every record failed: the invocation fails, nothing is deleted
                report.reported_failures += len(batch)
                continue
            report.reported_failures += len(response["batchItemFailures"])
    raise AssertionError(f"queue not drained after {max_invocations} invocations")
