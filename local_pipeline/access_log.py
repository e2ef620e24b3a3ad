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
    payloads_accepted: int = 0
    batches: int = 0
    failed_batches: int = 0  # batches with at least one failed record
    records_stored: int = 0  # payloads of the records deleted from the queue after the consumer reported success
    record_failures: int = 0  # record deliveries that failed (they come back after the visibility timeout)


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

    def batch(
        self, worker: int, records: int, failures: int, elapsed_ms: float, error: str = "", payloads: int | None = None
    ) -> None:
        """``payloads``: those the stored records carry (a packed record carries several); default one each."""
        with self._lock:
            self.totals.batches += 1
            self.totals.failed_batches += 1 if failures else 0
            self.totals.records_stored += records - failures if payloads is None else payloads
            self.totals.record_failures += failures
        suffix = f" error={error}" if error else ""
        self.line(f"batch worker={worker} records={records} failures={failures} {elapsed_ms:.1f}ms{suffix}")

    def snapshot(self) -> Totals:
        with self._lock:
            return Totals(**{f.name: getattr(self.totals, f.name) for f in fields(Totals)})
