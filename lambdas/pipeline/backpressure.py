"""MAX_QUEUE: refuse new work (503 + Retry-After) while the queue's backlog is above a bound.

The Go original bounded its in-memory job queue; here the buffer is SQS, which never fills up, so a
stalled worker pool would otherwise let the backlog grow for QUEUE_RETENTION_DAYS and then expire.
The backlog is ``ApproximateNumberOfMessages``: messages waiting for a worker (the Go original's
buffered jobs). Messages in flight are already with a worker, so they do not count. It counts
messages, not payloads: with MESSAGE_TARGET_BYTES a message carries several payloads of one request.

Reading the backlog costs a GetQueueAttributes call, so each container reads it at most once per
BACKLOG_CHECK_SECONDS and answers from that reading in between (SQS's own figure is approximate and
lags by about a minute anyway).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.observability import logger
from pipeline.problems import service_unavailable

BACKLOG_ATTRIBUTE = "ApproximateNumberOfMessages"


class BacklogGauge:
    """The queue's backlog, read through ``sqs`` at most once per ``check_seconds`` of ``clock``."""

    def __init__(self, queue_url: str, check_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.queue_url = queue_url
        self.check_seconds = check_seconds
        self.clock = clock
        self._backlog: int | None = None
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def backlog(self, sqs: Callable[[], Any]) -> int | None:
        """The last reading, refreshed when it is older than check_seconds. None: unknown."""
        with self._lock:
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self.check_seconds:
                # Set before the call: a failing read is also retried only after check_seconds.
                self._read_at = now
                self._backlog = self._read(sqs)
            return self._backlog

    def _read(self, sqs: Callable[[], Any]) -> int | None:
        try:
            attributes = sqs().get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[BACKLOG_ATTRIBUTE])
            return int(attributes["Attributes"][BACKLOG_ATTRIBUTE])
        except (ClientError, BotoCoreError, KeyError, ValueError) as exc:
            # Fail open: the gauge protects the workers, it must not turn a metadata hiccup into
            # refused requests. If SQS itself is down, the enqueue fails and answers 503 anyway.
            logger.warning("queue backlog unknown; not applying MAX_QUEUE", extra={"error": str(exc)})
            return None


@lru_cache(maxsize=4)
def backlog_gauge(queue_url: str, check_seconds: int) -> BacklogGauge:
    """One gauge per container (per queue), so the reading is shared by every request it serves."""
    return BacklogGauge(queue_url, check_seconds)


def refuse_if_backlogged(
    sqs: Callable[[], Any], queue_url: str, max_queue: int, check_seconds: int, retry_after_seconds: int
) -> None:
    """Raise a 503 Problem when the backlog exceeds ``max_queue``. ``max_queue=0`` turns the check off."""
    if max_queue <= 0:
        return
    backlog = backlog_gauge(queue_url, check_seconds).backlog(sqs)
    if backlog is None or backlog <= max_queue:
        return
    # The reading cannot change for check_seconds, so a retry sooner would be refused again.
    raise service_unavailable(
        "backlog-full",
        f"the queue holds about {backlog} messages waiting for a worker (MAX_QUEUE is {max_queue}); "
        "retry the whole request later",
        max(retry_after_seconds, check_seconds),
    )
