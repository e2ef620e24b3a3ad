"""SendMessageBatch with the two things people get wrong: byte-aware packing and partial failures."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.contract import REQUEST_ID_ATTRIBUTE, pack_batches
from pipeline.envelope import OutgoingMessage

# Parallel SendMessageBatch calls for one large request (500 one-payload messages = 50 calls).
ENQUEUE_CONCURRENCY = 8
_BACKOFF_BASE_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 1.0
_PAYLOADS = attrgetter("payloads")  # map(attrgetter) sums 10 messages ~15 % faster than a generator


@dataclass(frozen=True)
class EnqueueReport:
    """``sent`` and ``failed_payloads`` count payloads; ``retried_entries`` and ``failed_entries`` count
    SendMessageBatch entries, i.e. messages (one payload each, unless MESSAGE_TARGET_BYTES packs them)."""

    sent: int
    retried_entries: int
    failed_entries: int
    last_error: str | None
    failed_payloads: int


def _entry(entry_id: str, message: OutgoingMessage) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "MessageBody": message.body,
        "MessageAttributes": {REQUEST_ID_ATTRIBUTE: {"DataType": "String", "StringValue": message.request_id}},
    }


def _send_batch(
    sqs: Any, queue_url: str, batch: list[OutgoingMessage], max_attempts: int, sleep: Callable[[float], None]
) -> EnqueueReport:
    pending = {str(index): message for index, message in enumerate(batch)}
    retried = 0
    last_error: str | None = None
    for attempt in range(max_attempts):
        if attempt:
            retried += len(pending)
            # Full jitter: concurrent Lambdas retrying a throttled queue should not retry in lockstep.
            sleep(random.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt)))
        try:
            response = sqs.send_message_batch(
                QueueUrl=queue_url, Entries=[_entry(entry_id, m) for entry_id, m in pending.items()]
            )
        except (ClientError, BotoCoreError) as exc:  # botocore already retried the call itself
            last_error = str(exc)
            continue
        failed = response.get("Failed") or []
        if failed:
            last_error = "; ".join(f"{f.get('Code')}: {f.get('Message', '')}" for f in failed[:3])
        pending = {f["Id"]: pending[f["Id"]] for f in failed}
        if not pending:
            break
    failed_payloads = sum(map(_PAYLOADS, pending.values())) if pending else 0
    return EnqueueReport(
        sum(map(_PAYLOADS, batch)) - failed_payloads, retried, len(pending), last_error, failed_payloads
    )


@lru_cache(maxsize=1)
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=ENQUEUE_CONCURRENCY, thread_name_prefix="enqueue")


def enqueue_messages(
    sqs: Any,
    queue_url: str,
    messages: Sequence[OutgoingMessage],
    max_attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> EnqueueReport:
    """Send every message; retry only the entries SQS lists in ``Failed``, with bounded backoff.

    The report's ``failed_entries`` is 0 only when SQS accepted every message (and every payload).
    """
    batches = pack_batches(messages, lambda message: message.size)
    if len(batches) == 1:  # the common request: its one call's report is the request's
        return _send_batch(sqs, queue_url, batches[0], max_attempts, sleep)
    reports = list(_executor().map(lambda b: _send_batch(sqs, queue_url, b, max_attempts, sleep), batches))
    return EnqueueReport(
        sent=sum(r.sent for r in reports),
        retried_entries=sum(r.retried_entries for r in reports),
        failed_entries=sum(r.failed_entries for r in reports),
        last_error=next((r.last_error for r in reports if r.last_error), None),
        failed_payloads=sum(r.failed_payloads for r in reports),
    )
