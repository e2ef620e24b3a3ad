"""The Client: send() spools a payload durably; one background thread delivers it exactly once."""

from __future__ import annotations

import atexit
import logging
import os
import platform
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from ingest_client.errors import ClientClosedError
from ingest_client.limits import BODY_SUFFIX, Limits, body_prefix, encode_payload
from ingest_client.sender import Counters, HttpTransport, Sender, SenderSettings, make_headers
from ingest_client.spool import FORKS, FsyncPolicy, Spool, frame

__version__ = "0.2.0"
logger = logging.getLogger("ingest_client")

DEFAULT_MAX_SPOOL_BYTES = 128 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024
STOP_GRACE_SECONDS = 0.5


@dataclass(frozen=True)
class Stats:
    """A snapshot of a Client. Counts are payloads."""

    spooled: int  # in this client's spool, not yet acknowledged or rejected (in flight included)
    in_flight: int  # in the request being sent now
    acknowledged: int  # acknowledged (2xx) since this Client started
    rejected: int  # moved to rejected/ since this Client started
    spooled_bytes: int  # counted against max_spool_bytes
    last_error: Optional[str]  # the last failed attempt or rejection, None if there was none


@dataclass
class _Running:
    spool: Spool
    sender: Sender


class Client:
    """Sends JSON payloads to the pipeline's ``POST /v1/payloads`` from an endpoint.

    ``send()`` returns once the payload is in a spool file under ``spool_dir`` (in the OS's cache:
    it survives the process being killed; use ``fsync`` to survive power loss too). A background
    thread cuts the spool into batches within ``limits``, each with an Idempotency-Key chosen
    when it is cut and saved with it, and sends each until the server acknowledges it (2xx) or
    refuses it for good (4xx: kept in ``spool_dir/rejected/`` with the answer). See README.md.

    Only one process (and one Client) may use a spool_dir at a time (SpoolLockedError). After
    ``os.fork()`` the child's sends go to a spool of its own under ``spool_dir/forks/``, with its
    own sender thread; what a child leaves when it exits is delivered by whichever process owns the
    spool_dir or a sibling fork.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        version: str,
        token: str,
        spool_dir: Union[str, os.PathLike[str]],
        api_key: Optional[str] = None,
        device_key: Optional[str] = None,
        limits: Optional[Limits] = None,
        gzip: bool = True,
        max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
        full_timeout: float = 30.0,
        fsync: Union[str, float] = "off",
        linger: float = 0.5,
        timeout: float = 30.0,
        max_backoff: float = 60.0,
        exit_timeout: float = 2.0,
        ssl_context: Optional[ssl.SSLContext] = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        retry_horizon: float = 23 * 3600.0,
    ) -> None:
        """Open (or create) ``spool_dir``, take its lock, and start the sender thread.

        ``full_timeout``: how long send() waits for room when the spool holds ``max_spool_bytes``
        (0: raise SpoolFullError at once). ``fsync``: "off" (survives kill -9), "always" (every
        send() reaches the disk: survives power loss) or seconds between fsyncs by the sender.
        ``linger``: how long a payload may wait for others to fill its batch. ``exit_timeout``: how
        long the interpreter's exit waits for delivery (the rest stays spooled for the next start).
        ``retry_horizon``: seconds after its first attempt that a batch is still sent as the same request;
        keep it at most the pipeline's RETRY_HORIZON_HOURS less your clocks' error (README: guarantees).
        """
        self.limits = limits or Limits()
        self._prefix = body_prefix(version, token)
        room = self.limits.max_body_bytes - len(self._prefix) - len(BODY_SUFFIX)
        if room < self.limits.max_payload_bytes:
            raise ValueError(
                f"a payload of max_payload_bytes ({self.limits.max_payload_bytes}) would not fit in a body of "
                f"max_body_bytes ({self.limits.max_body_bytes}) with this version and token"
            )
        for name, key in (("api_key", api_key), ("device_key", device_key)):
            if key is not None and (not key or not key.isprintable() or not key.isascii()):
                raise ValueError(f"{name} must be a non-empty string of printable ASCII characters")
        if max_spool_bytes < self.limits.max_body_bytes:
            raise ValueError("max_spool_bytes must be at least limits.max_body_bytes")
        for name, value in (("full_timeout", full_timeout), ("linger", linger), ("exit_timeout", exit_timeout)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0")
        if timeout <= 0 or max_backoff <= 0 or retry_horizon <= 0:
            raise ValueError("timeout, max_backoff and retry_horizon must be > 0")
        self.endpoint = endpoint
        self._transport_args = (endpoint, timeout, ssl_context)
        HttpTransport(*self._transport_args)  # validates the URL now, not in the thread
        user_agent = f"ingest-client/{__version__} python/{platform.python_version()}"
        self._settings = SenderSettings(
            limits=self.limits,
            compress=gzip,
            linger=linger,
            max_backoff=max_backoff,
            headers=make_headers(api_key, device_key, user_agent),
            fsync=FsyncPolicy.parse(fsync),
            max_spool_bytes=max_spool_bytes,
            segment_bytes=max(min(segment_bytes, max_spool_bytes // 4), self.limits.max_body_bytes),
            retry_horizon=retry_horizon,
        )
        self.full_timeout = full_timeout
        self.exit_timeout = exit_timeout
        self.root = Path(spool_dir)
        if self.root.parent.name == FORKS:
            raise ValueError(f"{self.root} is a forked child's spool; give this Client a spool_dir of its own")
        self._lifecycle = threading.Lock()
        self._closed = False
        self._counters = Counters()
        self._running: Optional[_Running] = self._start(self.root)
        _CLIENTS.add(self)

    def _start(self, directory: Path) -> _Running:
        directory.mkdir(parents=True, exist_ok=True)
        spool = Spool(
            directory,
            prefix=self._prefix,
            max_bytes=self._settings.max_spool_bytes,
            segment_bytes=self._settings.segment_bytes,
            fsync=self._settings.fsync,
        )
        sender = Sender(spool, HttpTransport(*self._transport_args), self._settings, self._counters, self.root / FORKS)
        sender.start()
        return _Running(spool, sender)

    def _running_for_send(self) -> _Running:
        running = self._running
        if running is not None:
            return running
        with self._lifecycle:
            if self._closed:
                raise ClientClosedError("send() after close()")
            if self._running is None:  # a forked child's first send: a spool and a sender of its own
                child = self.root / FORKS / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
                self._running = self._start(child)
                logger.info("forked child %d spools to %s", os.getpid(), child)
            return self._running

    def send(self, payload: Mapping[str, Any]) -> None:
        """Spool one payload (a dict that is a JSON object). Returns once it is durable (see fsync).

        ValueError when the payload cannot be accepted by the server (not a dict, not
        JSON-serialisable, NaN/Infinity, a lone surrogate, over ``limits.max_payload_bytes``):
        nothing is spooled then. SpoolFullError when the spool stayed full for ``full_timeout``.
        ClientClosedError after close(). OSError when the disk refuses the write (nothing spooled).
        """
        record = frame(encode_payload(payload, self.limits.max_payload_bytes))
        if self._closed:
            raise ClientClosedError("send() after close()")
        running = self._running_for_send()
        running.spool.append(record, self.full_timeout)
        spool = running.spool
        if spool.uncut_payloads >= self.limits.max_payloads or spool.uncut_bytes >= self.limits.max_body_bytes:
            running.sender.wake()  # a full batch is waiting: no need to linger

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send what is spooled now, without lingering; wait up to ``timeout`` seconds (None: no limit).

        True when the spool is empty and nothing was rejected since this Client started, i.e.
        everything sent so far is acknowledged. False otherwise: what is left stays spooled."""
        running = self._running
        if running is None:
            return self._counters.rejected == 0
        deadline = None if timeout is None else time.monotonic() + timeout
        running.sender.flush_requested = True
        running.sender.wake()
        spool = running.spool
        with spool.space:
            while spool.uncut_payloads or spool.batch_payloads:
                if not running.sender.is_alive():
                    break
                remaining = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if remaining <= 0:
                    break
                spool.space.wait(remaining)
            empty = not (spool.uncut_payloads or spool.batch_payloads)
        return empty and self._counters.rejected == 0

    def close(self, timeout: Optional[float] = None) -> bool:
        """flush(timeout), then stop the sender thread; what is left stays spooled for the next start.
        Returns flush's answer. send() raises ClientClosedError afterwards. Idempotent."""
        with self._lifecycle:
            if self._closed:
                return False
            self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        delivered = self.flush(timeout)
        running = self._running
        if running is not None:
            running.sender.stop()
            # The thread closes the spool (and so releases its lock) when it ends: a request in flight
            # finishes first, within the client's timeout, or dies with the process.
            # A sender between requests stops at once: a short grace even with timeout=0, so that the
            # spool_dir is free again when close() returns.
            running.sender.join(None if deadline is None else max(STOP_GRACE_SECONDS, deadline - time.monotonic()))
            if running.sender.is_alive():
                logger.info("the sender is still finishing a request; the spool stays locked until it ends")
        _CLIENTS.discard(self)
        return delivered

    def stats(self) -> Stats:
        """Counts of payloads: spooled, in flight, acknowledged, rejected; and the last error."""
        running = self._running
        spooled = spooled_bytes = 0
        if running is not None:
            with running.spool.lock:
                spooled = running.spool.uncut_payloads + running.spool.batch_payloads
                spooled_bytes = running.spool.uncut_bytes + running.spool.batch_bytes
        with self._counters.lock:
            return Stats(
                spooled=spooled,
                in_flight=self._counters.in_flight,
                acknowledged=self._counters.acknowledged,
                rejected=self._counters.rejected,
                spooled_bytes=spooled_bytes,
                last_error=self._counters.last_error,
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(self.exit_timeout)

    def _after_fork_in_child(self) -> None:
        """The child has none of the parent's threads, and must never send the parent's batches:
        drop the parent's spool (descriptors only) and start over on the child's first send()."""
        self._lifecycle = threading.Lock()
        self._counters = Counters()
        running, self._running = self._running, None
        if running is not None:
            for spool in [running.spool, *running.sender.adopted]:
                spool.abandon_after_fork()


# Open clients, held strongly: a Client the program dropped without close() still has its sender
# running and is still flushed at exit.
_CLIENTS: set[Client] = set()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._after_fork_in_child()


def _close_at_exit() -> None:
    for client in list(_CLIENTS):
        client.close(client.exit_timeout)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
