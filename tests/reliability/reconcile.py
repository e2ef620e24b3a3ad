"""Reconcile what the ingest acknowledged (202) against what landed in S3, and drain a queue the
way the event source mapping would (failed records come back after their visibility timeout)."""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

BATCH_OBJECT_SUFFIX = ".ndjson.gz"  # OBJECT_MODE=batch (docs/OBJECT_MODES.md)

if TYPE_CHECKING:  # the soak imports this module outside pytest, without the test fixtures
    from tests.conftest import Pipeline


@dataclass
class Reconciliation:
    acknowledged: int
    stored: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)  # ids stored in more than one object or version
    altered: list[str] = field(default_factory=list)  # stored payload differs from what was sent
    unacknowledged: list[str] = field(default_factory=list)  # stored ids of requests that got no 202
    content_duplicates: int = 0  # extra copies of the same (token, payload) under different ids

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.altered)


def content_key(record: Mapping[str, Any]) -> str:
    return json.dumps([record["token"], record["payload"]], sort_keys=True)


def reconcile(acknowledged: Mapping[str, Mapping[str, Any]], stored: Iterable[Mapping[str, Any]]) -> Reconciliation:
    """``acknowledged``: request id -> the collection sent in that 202-acknowledged request.
    ``stored``: every stored envelope, one per object *version* (so an overwrite shows up)."""
    expected = {
        f"{request_id}-{index}": (sent["token"], payload)
        for request_id, sent in acknowledged.items()
        for index, payload in enumerate(sent["data"])
    }
    records = list(stored)
    copies = Counter(record["id"] for record in records)
    result = Reconciliation(acknowledged=len(expected), stored=len(records))
    result.lost = sorted(set(expected) - set(copies))
    result.duplicated = sorted(payload_id for payload_id, n in copies.items() if n > 1)
    result.unacknowledged = sorted(set(copies) - set(expected))
    result.altered = sorted(
        record["id"]
        for record in records
        if record["id"] in expected and (record["token"], record["payload"]) != expected[record["id"]]
    )
    by_content = Counter(content_key(record) for record in records)
    result.content_duplicates = sum(n - 1 for n in by_content.values())
    return result


def envelopes_in(key: str, body: bytes) -> list[dict[str, Any]]:
    """The envelopes one object holds: one (OBJECT_MODE=payload) or a gzip NDJSON batch (batch)."""
    if key.endswith(BATCH_OBJECT_SUFFIX):
        return [json.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]
    return [json.loads(body)]


def stored_versions(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every envelope in every version of every object (the reliability tests version the bucket,
    so an overwrite shows up as a second copy)."""
    bucket = pipeline.resources.bucket
    records = []
    for page in pipeline.s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            body = pipeline.s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])[
                "Body"
            ].read()
            records.extend(envelopes_in(version["Key"], body))
    return records


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
