"""The consumer invocation's time budget: S3 retries in-process until the function nears its timeout.

botocore already retries S3's throttling answer (503 SlowDown) and 5xx in standard retry mode, with
full-jitter exponential backoff (at most min(20 s, 2^(attempt-1) s) before the next attempt; boto3
guide "Retries", https://docs.aws.amazon.com/boto3/latest/guide/retries.html). It does not know the
Lambda deadline, so two checks stop it in time:

- before botocore sleeps for a retry, ``stop_retries_near_deadline``'s hook ends the call with the
  error botocore would have raised, if that sleep could run into the safety margin;
- ``ensure_time_left`` refuses to start an upload inside the margin.

Either way the record is reported failed and comes back through the queue after its short retry
delay (pipeline/redelivery.py), instead of the whole invocation timing out (which would redeliver
the whole batch after the full visibility timeout).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

# Left for what follows the last upload: reporting, ChangeMessageVisibilityBatch, metrics.
SAFETY_MARGIN_SECONDS = 3.0
# botocore standard mode: the wait before attempt n+1 is at most min(20 s, 2^(n-1) s) (boto3 guide).
BOTOCORE_MAX_BACKOFF_SECONDS = 20.0


class OutOfTimeError(RuntimeError):
    """Too close to the function's timeout to start an upload: the record is retried via the queue."""


class TimeBudget:
    """The running invocation's deadline. One per execution environment: Lambda runs one invocation
    at a time in it. Unset (outside an invocation) it never stops anything."""

    def __init__(self) -> None:
        self._deadline: float | None = None

    @contextmanager
    def running(self, context: Any) -> Iterator[None]:
        """The budget of one invocation, from the Lambda context's remaining time (a context without
        it, e.g. a bare test double, leaves it unbounded). Outside, nothing is bounded."""
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        self._deadline = None if remaining_ms is None else time.monotonic() + remaining_ms() / 1000
        try:
            yield
        finally:
            self._deadline = None

    def seconds_to_deadline(self) -> float:
        """Seconds left before the function times out (may be negative)."""
        return math.inf if self._deadline is None else self._deadline - time.monotonic()

    def remaining_seconds(self) -> float:
        """Seconds left for uploads: before the safety margin begins (may be negative)."""
        return self.seconds_to_deadline() - SAFETY_MARGIN_SECONDS

    def allows(self, seconds: float) -> bool:
        return self.remaining_seconds() >= seconds


budget = TimeBudget()


def ensure_time_left() -> None:
    """Raise OutOfTimeError when the invocation is already inside its safety margin."""
    if not budget.allows(0):
        raise OutOfTimeError(f"less than {SAFETY_MARGIN_SECONDS:g} s left before the function times out")


def _longest_next_wait(attempts: int) -> float:
    return min(BOTOCORE_MAX_BACKOFF_SECONDS, 2.0 ** max(attempts - 1, 0))


def _stop_if_no_time_for_a_retry(
    attempts: int, response: Any, caught_exception: Exception | None, operation: Any, **_: Any
) -> None:
    if budget.allows(_longest_next_wait(attempts)):
        return  # botocore decides, as always
    if caught_exception is not None:  # connection error, read timeout
        raise caught_exception
    if response is not None and response[0].status_code >= 300:
        # Exactly what the client raises when it gives up on an error answer.
        raise ClientError(response[1], operation.name)


def stop_retries_near_deadline(client: Any) -> None:
    """Make ``client``'s built-in retries stop when a retry's wait would eat into the safety margin.

    The hook runs first on the ``needs-retry`` event, before botocore's own retry handler, and only
    ever ends the call early, with the error the call would have raised; a success is untouched."""
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(f"needs-retry.{service}", _stop_if_no_time_for_a_retry)
