"""A failed record comes back after a short delay that grows with its receive count, not after the
queue's full visibility timeout.

Why: the event source mapping leaves a record reported in ``batchItemFailures`` in flight until the
queue's visibility timeout ends (181 s by default; Lambda guide, "Handling errors for an SQS event
source": https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html). A standard
queue holds only about 120,000 messages in flight (SQS guide, "Amazon SQS standard queue quotas"),
so at 166k messages/s a failure rate of ~0.4 % x 181 s would stall the whole consumer.

How: before the consumer returns, it sets each failed record's visibility timeout to its retry delay
with ChangeMessageVisibilityBatch. The new timeout counts from that call (SQS API reference,
ChangeMessageVisibility). The mapping then simply leaves the record on the queue, as it does for
any reported failure, and SQS offers it again after the delay; AWS's own Lambda messaging library
does the same for partial batch failures (aws/aws-dotnet-messaging#151). Every receive still counts
towards the redrive policy, so after MAX_RECEIVE_COUNT receives the record moves to the DLQ as before.

Delay for the n-th receive: ``min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS x 2^(n-1))`` with equal
jitter (a whole number of seconds between half of it and all of it), so records that failed together
do not all come back at the same second.

Failure of the call itself never changes what the consumer reports: the record is in
``batchItemFailures`` either way, it just comes back after the full visibility timeout.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.contract import SQS_MAX_BATCH_ENTRIES
from pipeline.time_budget import budget

# No ChangeMessageVisibilityBatch call starts later than this before the function's deadline.
LAST_CALL_SECONDS = 1.0
# Only 31 doublings are ever needed (2^31 s is beyond any cap); bounds the arithmetic.
MAX_DOUBLINGS = 31


def retry_delay_seconds(receive_count: int, base_seconds: int, max_seconds: int) -> int:
    """The visibility timeout to give a record that failed on its ``receive_count``-th receive."""
    ceiling = min(max_seconds, base_seconds * 2 ** min(max(receive_count, 1) - 1, MAX_DOUBLINGS))
    return random.randint(max(1, (ceiling + 1) // 2), max(1, ceiling))


@dataclass(frozen=True)
class FailedRecord:
    message_id: str
    receipt_handle: str
    receive_count: int

    @classmethod
    def from_event_record(cls, record: Mapping[str, Any]) -> FailedRecord:
        """From one record of the mapping's event (``attributes.ApproximateReceiveCount``)."""
        raw_count = (record.get("attributes") or {}).get("ApproximateReceiveCount", "1")
        try:
            receive_count = int(raw_count)
        except (TypeError, ValueError):
            receive_count = 1
        return cls(record["messageId"], record["receiptHandle"], receive_count)


@dataclass
class RetrySchedule:
    """What happened to each failed record: a delay set, or why it keeps the full visibility timeout."""

    delays: dict[str, int] = field(default_factory=dict)  # message id -> seconds
    not_scheduled: dict[str, str] = field(default_factory=dict)  # message id -> why


def schedule_retries(
    records: Iterable[FailedRecord], queue_url: str, base_seconds: int, max_seconds: int, sqs: Any
) -> RetrySchedule:
    """Set each record's visibility timeout to its retry delay. Never raises for an SQS problem:
    a record whose delay could not be set is listed in ``not_scheduled`` (it returns after the
    queue's visibility timeout instead)."""
    schedule = RetrySchedule()
    pending = list(records)
    for start in range(0, len(pending), SQS_MAX_BATCH_ENTRIES):
        chunk = {str(index): record for index, record in enumerate(pending[start : start + SQS_MAX_BATCH_ENTRIES])}
        # The safety margin is kept for this; only the last second before the deadline is not used.
        if budget.seconds_to_deadline() < LAST_CALL_SECONDS:
            schedule.not_scheduled.update((r.message_id, "no time left in the invocation") for r in chunk.values())
            continue
        delays = {
            entry_id: retry_delay_seconds(r.receive_count, base_seconds, max_seconds) for entry_id, r in chunk.items()
        }
        try:
            answer = sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": entry_id, "ReceiptHandle": r.receipt_handle, "VisibilityTimeout": delays[entry_id]}
                    for entry_id, r in chunk.items()
                ],
            )
        except (ClientError, BotoCoreError) as exc:
            schedule.not_scheduled.update(
                (r.message_id, f"ChangeMessageVisibilityBatch failed: {exc}") for r in chunk.values()
            )
            continue
        # The call can answer 200 and still list entries in Failed: only Successful ones got their delay.
        for entry in answer.get("Successful", []):
            schedule.delays[chunk[entry["Id"]].message_id] = delays[entry["Id"]]
        for entry in answer.get("Failed", []):
            schedule.not_scheduled[chunk[entry["Id"]].message_id] = f"{entry.get('Code')}: {entry.get('Message', '')}"
        for r in chunk.values():
            if r.message_id not in schedule.delays:
                schedule.not_scheduled.setdefault(r.message_id, "not in the ChangeMessageVisibilityBatch answer")
    return schedule
