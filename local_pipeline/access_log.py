"""The runner's compact output: one line per HTTP request and per batch, and the totals."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TextIO


@dataclass
class Totals:
    """What the shutdown summary reports. Updated from many threads, always under ``AccessLog``'s lock."""

    requests: int = 0
    rejected_requests: int = 0  # answered 4xx/5xx
    payloads_accepted: int = 0  # as the 202 answers counted them (a retried Idempotency-Key counts again)
    batches: int = 0
    failed_batches: int = 0  # batches with at least one failed record
    record_failures: int = 0  # record deliveries that failed (they come back after the visibility timeout)
    # From the consumer's own metrics, in payloads: new objects (payload mode) or lines of new batch
    # objects written, and payloads whose object already existed (412: a retried Idempotency-Key, a
    # redelivered or redriven copy), which were not written again.
    payloads_stored: int = 0
    duplicates_skipped: int = 0

    @property
    def payloads_not_yet_stored(self) -> int:
        """Accepted payloads the consumer has not yet seen through (stored, or found already stored)."""
        return max(0, self.payloads_accepted - self.payloads_stored - self.duplicates_skipped)


@dataclass(frozen=True)
class BatchOutcome:
    """One consumer batch: records (SQS messages) in it and failed, payloads stored and skipped."""

    records: int
    failures: int
    payloads_stored: int = 0
    duplicates_skipped: int = 0


class AccessLog:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        # Reentrant: the second-Ctrl-C handler writes a line from the main thread, which may be
        # interrupted while it holds this lock (printing the banner or summary).
        self._lock = threading.RLock()
        self.totals = Totals()

    def line(self, text: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with self._lock:
            self._stream.write(f"{stamp} {text}\n")
            self._stream.flush()

    def text(self, text: str) -> None:
        """Unstamped output (banner, summary)."""
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def request(self, method: str, path: str, status: int, payloads: int, elapsed_ms: float) -> None:
        with self._lock:
            self.totals.requests += 1
            if status >= 400:
                self.totals.rejected_requests += 1
            self.totals.payloads_accepted += payloads
        self.line(f"{method} {path} {status} payloads={payloads} {elapsed_ms:.1f}ms")

    def batch(self, worker: int, outcome: BatchOutcome, elapsed_ms: float, error: str = "") -> None:
        with self._lock:
            self.totals.batches += 1
            self.totals.failed_batches += 1 if outcome.failures else 0
            self.totals.record_failures += outcome.failures
            self.totals.payloads_stored += outcome.payloads_stored
            self.totals.duplicates_skipped += outcome.duplicates_skipped
        suffix = f" error={error}" if error else ""
        self.line(
            f"batch worker={worker} records={outcome.records} failures={outcome.failures} "
            f"stored={outcome.payloads_stored} duplicates={outcome.duplicates_skipped} {elapsed_ms:.1f}ms{suffix}"
        )

    def snapshot(self) -> Totals:
        with self._lock:
            return Totals(**{f.name: getattr(self.totals, f.name) for f in fields(Totals)})
