"""The background sender: one thread that cuts batches from the spool, POSTs them, and reacts to
every answer. It never drops a batch: a batch leaves the spool only on a 2xx (acknowledged) or a
4xx about the batch itself (moved to rejected/ with the answer).

How each answer is handled, and why:

- Every attempt states the batch's first attempt (``Ingest-First-Attempt``, stored with the batch before
  its first send), so the pipeline puts every copy in one hour partition under one set of ids. A batch
  whose first attempt is older than ``retry_horizon`` (23 h: the pipeline's RETRY_HORIZON_HOURS, 24 by
  default, less an hour for clock error) gets a new first attempt before it is sent again: the pipeline
  would otherwise place each later copy in its own receive hour, under that hour's ids. The price, stated
  in the README's guarantees: if an earlier copy was stored and its 202 never arrived, the restamped copy is
  stored again under other ids.
- 2xx: acknowledged, removed from the spool.
- 429, 503 (and 408, 425): the server asks for time. Wait ``Retry-After`` when it is given (never
  less; a little jitter above it so clients it refused together do not come back together), else
  jittered exponential backoff; then the same batch again, same key and bytes.
- other 5xx, network errors, timeouts: backoff, then the same batch again. A request that timed out
  may have been accepted: the Idempotency-Key makes the retry store it once.
- 401, 403, 404, 405, 407 and 3xx: the endpoint URL or the credential is wrong (or the device was
  revoked), not the batch: it would be accepted once that is fixed. Retried with backoff and logged
  as an error; the spool's bound then makes send() block or raise, so the caller finds out.
- 400, 413, 422 for a batch of several payloads: split in two halves (new derived keys: a 4xx means
  nothing was enqueued), so one bad payload does not take the others with it.
- any other 4xx, or those for a single payload: moved to rejected/<batch>.json with the answer.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import random
import shutil
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from ingest_client.errors import SpoolLockedError
from ingest_client.limits import Limits
from ingest_client.spool import REJECTED, Batch, FsyncPolicy, Spool

logger = logging.getLogger("ingest_client")

# A problem document is small; a larger answer is cut here (and the connection dropped).
MAX_ANSWER_BYTES = 64 * 1024
# Retry-After is honoured up to this (the pipeline's RETRY_AFTER_SECONDS ceiling is 3600).
MAX_RETRY_AFTER_SECONDS = 3600.0
BACKOFF_BASE_SECONDS = 0.5
# How often an idle sender looks for spools of dead forked children to deliver.
ADOPT_INTERVAL_SECONDS = 10.0
RETRY_LATER = frozenset({408, 425, 429})
WRONG_ENDPOINT_OR_CREDENTIAL = frozenset({401, 403, 404, 405, 407})
SPLIT_ON = frozenset({400, 413, 422})


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date, RFC 9110 10.2.3),
    capped at MAX_RETRY_AFTER_SECONDS; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = moment.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def backoff_delay(attempt: int, cap: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half the step for sure, half at random, so retries
    never come back at once and never spread out to nothing. attempt 0 waits 0.25-0.5 s."""
    step = min(cap, BACKOFF_BASE_SECONDS * (2 ** min(attempt, 32)))
    return step / 2 + rng.uniform(0, step / 2)


def retry_after_delay(seconds: float, rng: random.Random) -> float:
    """Never sooner than the server asked; up to 20 % later, so clients refused together spread out."""
    return seconds + rng.uniform(0, seconds * 0.2)


@dataclass
class Answer:
    status: int
    body: bytes
    retry_after: Optional[str]


class HttpTransport:
    """POST over one kept-alive connection (http.client, so no dependency); reconnects after errors."""

    def __init__(self, endpoint: str, timeout: float, ssl_context: Optional[ssl.SSLContext]) -> None:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"endpoint must be an http:// or https:// URL, got {endpoint!r}")
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port
        self.path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._connection: Optional[http.client.HTTPConnection] = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.ssl_context or ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        """One POST; OSError or http.client.HTTPException when no answer came."""
        connection = self._connection or self._connect()
        self._connection = None
        try:
            connection.request("POST", self.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read(MAX_ANSWER_BYTES)
            if not response.will_close and response.isclosed():
                self._connection = connection  # fully read: the connection can carry the next request
            else:
                connection.close()
            return Answer(response.status, answer, response.getheader("Retry-After"))
        except BaseException:
            connection.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@dataclass
class Counters:
    """What stats() reports about sending (the spool reports what is waiting)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    acknowledged: int = 0
    rejected: int = 0
    last_error: Optional[str] = None


@dataclass(frozen=True)
class SenderSettings:
    limits: Limits
    compress: bool
    linger: float
    max_backoff: float
    headers: dict[str, str]
    fsync: FsyncPolicy
    max_spool_bytes: int
    segment_bytes: int
    retry_horizon: float = 23 * 3600.0  # seconds; see the module's docstring


def _problem_summary(answer: Answer) -> str:
    text = answer.body[:300].decode("utf-8", errors="replace").strip()
    return f"HTTP {answer.status}" + (f": {text}" if text else "")


class Sender(threading.Thread):
    """The one background thread of a Client. Daemon: the spool keeps whatever it has not sent, so a
    process may exit while it waits or sends (the next start resends that batch, same key)."""

    def __init__(
        self,
        spool: Spool,
        transport: HttpTransport,
        settings: SenderSettings,
        counters: Counters,
        forks_root: Path,
        rng: Optional[random.Random] = None,
    ) -> None:
        super().__init__(name=f"ingest-client-sender-{spool.directory.name}", daemon=True)
        self.spool = spool
        self.transport = transport
        self.settings = settings
        self.counters = counters
        self.forks_root = forks_root
        self.rng = rng or random.Random()
        self.adopted: list[Spool] = []
        self.flush_requested = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._attempt = 0
        self._last_logged: Optional[str] = None

    # --- control, from other threads -------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    # --- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._loop()
        finally:
            self.transport.close()
            for spool in [*self.adopted, self.spool]:
                spool.close()

    def _loop(self) -> None:
        next_sync = next_adopt = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            if self.settings.fsync.interval is not None and now >= next_sync:
                self.spool.sync()
                next_sync = now + self.settings.fsync.interval
            if now >= next_adopt:
                self._adopt_orphans()
                next_adopt = now + ADOPT_INTERVAL_SECONDS
            self._wake.clear()
            try:
                work = self._next_batch(now)
                if work is None:
                    timeout = min(next_adopt, next_sync if self.settings.fsync.interval else next_adopt) - now
                    oldest = self.spool.oldest_uncut_at
                    if oldest is not None:
                        timeout = min(timeout, oldest + self.settings.linger - now)
                    self._wake.wait(max(timeout, 0.001))
                    continue
                spool, batch = work
                self._deliver(spool, batch)
            except Exception as exc:  # a disk error (ENOSPC, EIO): keep everything, report, try again later
                self._record_error(f"spool error: {exc!r}", logging.ERROR, exc_info=True)
                self._stopping.wait(backoff_delay(self._attempt, self.settings.max_backoff, self.rng))
                self._attempt += 1

    def _next_batch(self, now: float) -> Optional[tuple[Spool, Batch]]:
        """The next batch to send: a cut one first (a retry, or one left by a crash), else a new cut."""
        for spool in [self.spool, *self.adopted]:
            batch = spool.oldest_batch()
            if batch is not None:
                return spool, batch
            own = spool is self.spool
            linger = 0.0 if (self.flush_requested or not own) else self.settings.linger
            if spool.ready_to_cut(self.settings.limits, linger, now):
                batch = spool.cut(self.settings.limits, self.settings.compress)
                if batch is not None:
                    return spool, batch
            if own:
                if self.flush_requested and spool.is_empty():
                    self.flush_requested = False
            elif spool.is_empty():
                self._release_orphan(spool)
        return None

    def _deliver(self, spool: Spool, batch: Batch) -> None:
        now_ms = int(time.time() * 1000)
        if batch.first_attempt_ms is None or now_ms - batch.first_attempt_ms > self.settings.retry_horizon * 1000:
            if batch.first_attempt_ms is not None:
                logger.warning(
                    "batch %s is older than the retry horizon (%.0f s); sent with a new first attempt: if an "
                    "earlier attempt was stored, it is stored again under other ids",
                    batch.key,
                    self.settings.retry_horizon,
                )
            batch = spool.restamp(batch, now_ms)
        assert batch.first_attempt_ms is not None  # stamped above
        headers = {
            **self.settings.headers,
            "Idempotency-Key": batch.key,
            FIRST_ATTEMPT_HEADER: format_first_attempt(batch.first_attempt_ms),
        }
        if batch.encoding == "gzip":
            headers["Content-Encoding"] = "gzip"
            # A JSON type an HTTP API front door passes byte-exact (base64) to the ingest: it hands
            # application/json over as text, which would break gzip bytes (the pipeline's docs/FRONT_DOOR.md).
            # The REST front door and the ingest accept any application/*+json alike.
            headers["Content-Type"] = GZIP_CONTENT_TYPE
        with self.counters.lock:
            self.counters.in_flight = batch.payloads
        try:
            answer: Optional[Answer] = self.transport.post(batch.body, headers)
        except (OSError, http.client.HTTPException) as exc:
            answer = None
            error = f"no answer from the endpoint: {exc!r}"
        finally:
            with self.counters.lock:
                self.counters.in_flight = 0
        if answer is None:
            self._retry_later(error, None)
            return
        status = answer.status
        if 200 <= status < 300:
            # Counted before the spool lets flush() see it gone.
            with self.counters.lock:
                self.counters.acknowledged += batch.payloads
            logger.debug("batch %s acknowledged (%d payloads)", batch.key, batch.payloads)
            spool.acknowledge(batch)
            if self._attempt:
                logger.info("the endpoint accepts batches again")
            self._attempt = 0
            self._last_logged = None
        elif status in RETRY_LATER or status >= 500:
            self._retry_later(_problem_summary(answer), parse_retry_after(answer.retry_after))
        elif status in WRONG_ENDPOINT_OR_CREDENTIAL or 300 <= status < 400 or status < 200:
            self._retry_later(
                f"{_problem_summary(answer)} (check the endpoint URL and the api_key/device_key; "
                "the batch stays spooled and is retried)",
                None,
                level=logging.ERROR,
            )
        elif status in SPLIT_ON and batch.payloads > 1:
            logger.warning(
                "batch %s (%d payloads) refused with %s; sending its halves separately to isolate the cause",
                batch.key,
                batch.payloads,
                status,
            )
            spool.split(batch)
        else:
            with self.counters.lock:
                self.counters.rejected += batch.payloads
                self.counters.last_error = f"rejected: {_problem_summary(answer)}"
            path = spool.reject(batch, status, answer.body)
            logger.error(
                "batch %s (%d payloads) rejected with %s; kept in %s",
                batch.key,
                batch.payloads,
                _problem_summary(answer),
                path,
            )

    def _retry_later(self, error: str, retry_after: Optional[float], level: int = logging.WARNING) -> None:
        if retry_after is not None:
            delay = retry_after_delay(retry_after, self.rng)
        else:
            delay = backoff_delay(self._attempt, self.settings.max_backoff, self.rng)
        self._attempt += 1
        self._record_error(f"{error}; retrying in {delay:.1f} s", level, key=error)
        self._stopping.wait(delay)

    def _record_error(self, error: str, level: int, exc_info: bool = False, key: Optional[str] = None) -> None:
        with self.counters.lock:
            self.counters.last_error = error
        # The same failure again (an outage) is logged once at its level, then at DEBUG.
        repeated = (key or error) == self._last_logged
        self._last_logged = key or error
        logger.log(logging.DEBUG if repeated else level, "%s", error, exc_info=exc_info and not repeated)

    # --- spools of dead forked children -----------------------------------------------------------
    def _adopt_orphans(self) -> None:
        """Deliver what a forked child left behind when it exited (its lock died with it)."""
        if not self.forks_root.is_dir():
            return
        held = {spool.directory for spool in [self.spool, *self.adopted]}
        for directory in sorted(self.forks_root.iterdir()):
            if directory.name.startswith(".") or directory in held or not directory.is_dir():
                continue
            try:
                orphan = Spool(
                    directory,
                    prefix=None,
                    max_bytes=self.settings.max_spool_bytes,
                    segment_bytes=self.settings.segment_bytes,
                    fsync=self.settings.fsync,
                )
            except SpoolLockedError:
                continue  # its process still runs, or another one adopted it
            except OSError as exc:
                logger.warning("could not open the forked child's spool %s: %r", directory, exc)
                continue
            logger.info("delivering what a forked child left in %s", directory)
            self.adopted.append(orphan)

    def _release_orphan(self, orphan: Spool) -> None:
        """An adopted spool is delivered: keep its rejected files, remove the rest."""
        self.adopted.remove(orphan)
        own_rejected = self.spool.directory / REJECTED
        for rejected in (orphan.directory / REJECTED).glob("*.json"):
            rejected.rename(own_rejected / f"{orphan.directory.name}-{rejected.name}")
        # Renamed while still locked, so no other process can open it under its old name meanwhile.
        gone = orphan.directory.with_name(f".gone-{orphan.directory.name}-{uuid.uuid4().hex[:8]}")
        orphan.directory.rename(gone)
        orphan.close()
        shutil.rmtree(gone, ignore_errors=True)


# A JSON media type (RFC 6839 "+json") that every front door passes to the ingest byte for byte.
GZIP_CONTENT_TYPE = "application/vnd.ingest-pipeline+json"


FIRST_ATTEMPT_HEADER = "Ingest-First-Attempt"


def format_first_attempt(epoch_ms: int) -> str:
    """``2026-11-26T02:48:09.123Z``: RFC 3339 in UTC, as the pipeline reads Ingest-First-Attempt."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + f".{epoch_ms % 1000:03d}Z"


def make_headers(api_key: Optional[str], device_key: Optional[str], user_agent: str) -> dict[str, str]:
    """The headers of every request (Idempotency-Key and Content-Encoding are added per batch)."""
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    if api_key is not None:
        headers["x-api-key"] = api_key
    if device_key is not None:
        headers["Authorization"] = f"Bearer {device_key}"
    return headers
