"""The spool: payloads on disk from send() until the server acknowledged them.

Layout of a spool directory (one process at a time, enforced by ``flock`` on ``.lock``)::

    .lock                       the owner's lock (its pid inside, for the error message)
    segments/<n>.seg            append-only log: length-prefixed, CRC-checked records. Record 0 of a
                                segment is the request body's prefix ({"version":..,"token":..,"data":[)
                                shared by every payload after it; each later record is one payload.
    cursor                      "<segment> <offset>": the first record not yet cut into a batch
    batches/<n>-<offset>.batch  a cut batch: a JSON header line (Idempotency-Key, payload count,
                                encoding, the cursor after it, its first attempt) and the exact
                                request body sent
    rejected/<batch>.json       a batch the server refused (4xx), with its problem+json answer
    forks/<pid>-<id>/           the spool of a forked child (same layout), adopted when it dies

Why a log of records and not sqlite3: send() is one ``os.write`` of the framed record (the
benchmark compares it with a bare ``os.write``), a killed process cannot leave a half-applied
update behind (a torn last record fails its length or CRC and is ignored: send() had not returned
for it), and the reader never holds more than one batch in memory, whatever the spool's size.

Exactly once: a batch is cut (records -> body + a fresh Idempotency-Key) into a file renamed into
place *before* its first attempt, and only then is the cursor moved past its records. After a crash
the batch file is sent again, same key and same bytes; the cursor is the larger of the cursor file
and the ends recorded in the batch files, so no record is ever cut twice.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import gzip
import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ingest_client.errors import SpoolFullError, SpoolLockedError
from ingest_client.limits import BODY_SUFFIX, Limits, body_prefix, json_text

logger = logging.getLogger("ingest_client")

RECORD_HEADER = struct.Struct(">II")  # data length, CRC-32 of the data
LOCK_FILE = ".lock"
CURSOR_FILE = "cursor"
SEGMENTS = "segments"
BATCHES = "batches"
REJECTED = "rejected"
FORKS = "forks"
SEGMENT_SUFFIX = ".seg"
BATCH_SUFFIX = ".batch"


class SpoolCorruptError(Exception):
    """A segment's framing is broken: raised by the scan, handled by skipping the rest of it."""


@dataclass(frozen=True)
class Position:
    segment: int
    offset: int

    def __lt__(self, other: Position) -> bool:
        return (self.segment, self.offset) < (other.segment, other.offset)


@dataclass(frozen=True)
class Batch:
    """A cut batch, as stored in its file: what is sent, byte for byte, on every attempt."""

    path: Path
    key: str
    payloads: int
    encoding: str  # "gzip" or "identity"
    end: Position
    body: bytes  # the request body as sent (gzip-compressed when encoding is gzip)
    file_bytes: int
    # When the batch was cut, just before its first attempt (epoch ms, this machine's clock): sent on every
    # attempt as Ingest-First-Attempt, so the pipeline puts every copy in one hour partition. None in a batch
    # file an earlier SDK version wrote: the sender stamps it before sending (sender.py).
    first_attempt_ms: Optional[int] = None

    def decoded_body(self) -> bytes:
        return gzip.decompress(self.body) if self.encoding == "gzip" else self.body


@dataclass(frozen=True)
class FsyncPolicy:
    """When data reaches the disk itself, not only the OS's cache (which survives kill -9, not power loss)."""

    every_send: bool = False
    interval: Optional[float] = None  # seconds between fsyncs of the log by the sender thread

    @property
    def files(self) -> bool:
        """Whether batch, cursor and rejected files are fsynced (and their directories) too."""
        return self.every_send or self.interval is not None

    @classmethod
    def parse(cls, value: object) -> FsyncPolicy:
        if value in ("off", None, False):
            return cls()
        if value in ("always", True):
            return cls(every_send=True)
        if isinstance(value, (int, float)) and value > 0:
            return cls(interval=float(value))
        raise ValueError(f'fsync must be "off", "always" or a number of seconds > 0, got {value!r}')


def frame(data: bytes) -> bytes:
    """One log record: length, CRC-32, data."""
    return RECORD_HEADER.pack(len(data), zlib.crc32(data)) + data


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, durable: bool) -> None:
    """Write ``path`` so that it either does not exist or holds all of ``data``, even after kill -9
    (and after power loss when ``durable``)."""
    temporary = path.with_name(f".tmp-{path.name}")
    with open(temporary, "wb") as file:
        file.write(data)
        if durable:
            file.flush()
            os.fsync(file.fileno())
    os.replace(temporary, path)
    if durable:
        _fsync_dir(path.parent)


def _lock(directory: Path) -> int:
    """Take the spool's lock or raise SpoolLockedError naming the owner. flock: held until every
    descriptor of this open file is closed, so it dies with the process (even with kill -9)."""
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise SpoolLockedError(
                f"spool_dir {directory} is in use by process {owner}; give every process (and every Client) "
                "a spool_dir of its own"
            ) from exc
        raise
    # The lock may have been taken on a file that a remover unlinked meanwhile (an adopted fork spool).
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        raise SpoolLockedError(f"spool_dir {directory} was removed while it was being opened")
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _segment_number(path: Path) -> int:
    return int(path.name[: -len(SEGMENT_SUFFIX)])


class Spool:
    """One spool directory, owned by this process while the object is open.

    ``append`` is called by send() (any thread); the cut/acknowledge/reject methods by the one sender
    thread. ``lock`` guards the counters and the log's end; file reads and writes of the sender happen
    outside it, so send() never waits for the network or for a batch being written."""

    def __init__(
        self,
        directory: Path,
        *,
        prefix: Optional[bytes],
        max_bytes: int,
        segment_bytes: int,
        fsync: FsyncPolicy,
    ) -> None:
        """Open (creating) ``directory``, take its lock and recover its state. ``prefix`` is the body
        prefix of what this process appends; None opens it only to deliver what it holds (a dead
        fork's spool)."""
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        for name in (SEGMENTS, BATCHES, REJECTED):
            (directory / name).mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(directory)
        self.lock = threading.Lock()
        self.space = threading.Condition(self.lock)
        self.closed = False
        # Counters (under lock). uncut_*: records in the log after the cursor; batch_*: cut batches.
        self.uncut_payloads = 0
        self.uncut_bytes = 0
        self.batch_payloads = 0
        self.batch_bytes = 0
        self.oldest_uncut_at: Optional[float] = None  # monotonic time; None when nothing is uncut
        self._prefixes: dict[int, bytes] = {}
        self._ends: dict[int, int] = {}  # valid end of every closed segment
        self._read_fds: dict[int, int] = {}
        try:
            self._recover()
            self._active = 0
            self._active_end = 0
            self._header_end = 0
            self._fd = -1
            self._prefix = prefix
            self._dirty = False
            if prefix is not None:
                self._open_segment(max([*self._segment_numbers(), self.cursor.segment]) + 1)
        except BaseException:
            os.close(self._lock_fd)
            raise

    # --- recovery -------------------------------------------------------------------------------
    def _segment_numbers(self) -> list[int]:
        return sorted(_segment_number(path) for path in (self.directory / SEGMENTS).glob(f"*{SEGMENT_SUFFIX}"))

    def _segment_path(self, number: int) -> Path:
        return self.directory / SEGMENTS / f"{number:012d}{SEGMENT_SUFFIX}"

    def _recover(self) -> None:
        """Cursor = the furthest of the cursor file and the ends of the batch files; count what is
        left in the log after it (reading it once, in chunks: memory stays flat)."""
        cursor = Position(0, 0)
        try:
            segment, offset = (self.directory / CURSOR_FILE).read_text().split()
            cursor = Position(int(segment), int(offset))
        except FileNotFoundError:
            pass
        for temporary in (self.directory / BATCHES).glob(".tmp-*"):
            temporary.unlink()  # a batch file never renamed into place: its records are still uncut
        for path in sorted((self.directory / BATCHES).glob(f"*{BATCH_SUFFIX}")):
            batch = self.read_batch(path)
            if batch is None:
                continue
            cursor = max(cursor, batch.end)
            self.batch_payloads += batch.payloads
            self.batch_bytes += batch.file_bytes
        self.cursor = cursor
        for number in self._segment_numbers():
            if number < cursor.segment:
                self._segment_path(number).unlink()  # fully cut: its payloads are in batch files
                continue
            payloads, size, end = self._scan(number, cursor.offset if number == cursor.segment else 0)
            self._ends[number] = end
            self.uncut_payloads += payloads
            self.uncut_bytes += size
        if self.uncut_payloads:
            self.oldest_uncut_at = 0.0  # due at once: it has waited for a whole restart
        self._write_cursor()

    def _scan(self, number: int, start: int) -> tuple[int, int, int]:
        """(payloads, framed bytes, valid end) of segment ``number`` from ``start``. A torn or corrupt
        record ends the segment there: a killed send() never returned for it; power loss may leave
        worse, which is logged."""
        path = self._segment_path(number)
        payloads = size = 0
        with open(path, "rb", buffering=1024 * 1024) as file:
            try:
                prefix, end = self._read_record(file, 0, number)
            except SpoolCorruptError:
                logger.error(
                    "spool segment %s has no valid header; its %d bytes are skipped", path, path.stat().st_size
                )
                return 0, 0, 0
            self._prefixes[number] = prefix
            position = max(start, end)
            while True:
                try:
                    data, next_position = self._read_record(file, position, number)
                except SpoolCorruptError as exc:
                    rest = path.stat().st_size - position
                    if rest:
                        # A record cut short by kill -9 is normal (send() had not returned for it).
                        level = logging.ERROR if rest > RECORD_HEADER.size + exc.args[0] else logging.INFO
                        logger.log(
                            level,
                            "spool segment %s: %d bytes after offset %d ignored (%s)",
                            path,
                            rest,
                            position,
                            exc.args[1],
                        )
                    return payloads, size, position
                payloads += 1
                size += next_position - position
                position = next_position

    @staticmethod
    def _read_record(file: Any, position: int, number: int) -> tuple[bytes, int]:
        file.seek(position)
        header = file.read(RECORD_HEADER.size)
        if len(header) < RECORD_HEADER.size:
            raise SpoolCorruptError(0, "end of segment" if not header else "torn record header")
        length, crc = RECORD_HEADER.unpack(header)
        data = file.read(length)
        if len(data) < length:
            raise SpoolCorruptError(len(data), "torn record")
        if zlib.crc32(data) != crc:
            raise SpoolCorruptError(len(data), "CRC mismatch")
        return data, position + RECORD_HEADER.size + length

    # --- the writer (send) ----------------------------------------------------------------------
    def _open_segment(self, number: int) -> None:
        assert self._prefix is not None
        path = self._segment_path(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        header = frame(self._prefix)
        os.write(fd, header)
        if self.fsync.files:
            os.fsync(fd)
            _fsync_dir(path.parent)
        if self._fd >= 0:
            if self.fsync.files:
                os.fsync(self._fd)
            os.close(self._fd)
            self._ends[self._active] = self._active_end
        self._fd, self._active, self._active_end = fd, number, len(header)
        self._header_end = len(header)
        self._prefixes[number] = self._prefix

    def append(self, record: bytes, timeout: float) -> None:
        """Append one framed payload record; return once it is in the OS (or on disk, with
        fsync="always"). Waits up to ``timeout`` seconds while the spool is full, then SpoolFullError."""
        size = len(record)
        with self.lock:
            if self.uncut_bytes + self.batch_bytes + size > self.max_bytes:
                deadline = time.monotonic() + timeout
                while self.uncut_bytes + self.batch_bytes + size > self.max_bytes:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self.closed:
                        raise SpoolFullError(
                            f"the spool in {self.directory} holds {self.uncut_bytes + self.batch_bytes} bytes not yet "
                            f"acknowledged (max_spool_bytes={self.max_bytes}); nothing was spooled for this payload"
                        )
                    self.space.wait(remaining)
            if self.closed:
                raise SpoolFullError(f"the spool in {self.directory} is closed")
            if self._active_end + size > self.segment_bytes and self._active_end > self._header_end:
                self._open_segment(self._active + 1)
            written = 0
            try:
                while written < size:  # a regular file takes it in one write, unless the disk is full
                    written += os.write(self._fd, record[written:] if written else record)
            except BaseException:
                if written:
                    os.ftruncate(self._fd, self._active_end)  # no torn record left behind
                raise
            if self.fsync.every_send:
                os.fsync(self._fd)
            else:
                self._dirty = True
            self._active_end += size
            self.uncut_bytes += size
            self.uncut_payloads += 1
            if self.oldest_uncut_at is None:
                self.oldest_uncut_at = time.monotonic()

    def sync(self) -> None:
        """fsync the log if anything was appended since the last sync (the fsync interval's tick)."""
        with self.lock:
            if not self._dirty or self._fd < 0:
                return
            self._dirty = False
            fd = os.dup(self._fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- the reader (the sender thread) ---------------------------------------------------------
    def oldest_batch(self) -> Optional[Batch]:
        """The cut batch to send next (normally the only one), None when there is none."""
        for path in sorted((self.directory / BATCHES).glob(f"*{BATCH_SUFFIX}")):
            batch = self.read_batch(path)
            if batch is not None:
                return batch
        return None

    def read_batch(self, path: Path) -> Optional[Batch]:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        header_line, _, body = raw.partition(b"\n")
        try:
            header = json.loads(header_line)
            return Batch(
                path=path,
                key=str(header["key"]),
                payloads=int(header["payloads"]),
                encoding=str(header["encoding"]),
                end=Position(*header["end"]),
                body=body,
                file_bytes=len(raw),
                first_attempt_ms=None if header.get("firstAttemptMs") is None else int(header["firstAttemptMs"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            # Only a batch file renamed into place is read, so this is damage from outside (or power loss).
            damaged = path.with_suffix(".damaged")
            os.replace(path, damaged)
            logger.error("spool batch file %s is damaged (%s); moved to %s, not sent", path, exc, damaged)
            return None

    def _read_fd(self, number: int) -> int:
        fd = self._read_fds.get(number)
        if fd is None:
            fd = self._read_fds[number] = os.open(self._segment_path(number), os.O_RDONLY)
        return fd

    def _forget_segment(self, number: int) -> None:
        fd = self._read_fds.pop(number, None)
        if fd is not None:
            os.close(fd)
        self._ends.pop(number, None)
        self._prefixes.pop(number, None)

    def ready_to_cut(self, limits: Limits, linger: float, now: float) -> bool:
        """Whether a batch should be cut now: a full batch's worth is waiting, or the oldest uncut
        payload has waited ``linger`` seconds."""
        with self.lock:
            if not self.uncut_payloads:
                return False
            if self.uncut_payloads >= limits.max_payloads or self.uncut_bytes >= limits.max_body_bytes:
                return True
            return self.oldest_uncut_at is not None and now - self.oldest_uncut_at >= linger

    def cut(self, limits: Limits, compress: bool) -> Optional[Batch]:
        """Cut the next batch from the log (within ``limits``), persist it with a fresh
        Idempotency-Key, then move the cursor past it. None when nothing is uncut."""
        with self.lock:
            if not self.uncut_payloads:
                return None
            active = self._active if self._fd >= 0 else 0
            active_end = self._active_end
        position = self.cursor
        prefix: Optional[bytes] = None
        payloads: list[bytes] = []
        framed = 0
        body_size = 0
        # A record that could still join the batch lies wholly within this many bytes of it.
        chunk_limit = limits.max_body_bytes + RECORD_HEADER.size * (limits.max_payloads + 1)
        full = False
        while not full:
            number = position.segment
            end = active_end if number == active else self._ends.get(number)
            if not end:  # deleted, never written, or without a valid header: nothing to read there
                if number >= max(active, max(self._ends, default=0)):
                    break
                position = Position(number + 1, 0)
                continue
            segment_prefix = self._prefixes[number]
            if position.offset == 0:
                position = Position(number, len(frame(segment_prefix)))
            if not payloads:
                prefix = segment_prefix
                body_size = len(prefix) + len(BODY_SUFFIX)
            elif segment_prefix != prefix and position.offset < end:
                break  # another version or token: it starts a batch of its own
            if position.offset >= end:
                if number == active:
                    break
                position = Position(number + 1, 0)
                continue
            fd = self._read_fd(number)
            chunk = os.pread(fd, min(end - position.offset, chunk_limit), position.offset)
            if not payloads and len(chunk) >= RECORD_HEADER.size:
                # A batch always takes its first record, even one larger than today's limits allow
                # (spooled under larger ones): the server then says what it thinks of it.
                first = RECORD_HEADER.size + RECORD_HEADER.unpack_from(chunk)[0]
                if first > len(chunk):
                    chunk = os.pread(fd, first, position.offset)
            consumed = 0
            while consumed + RECORD_HEADER.size <= len(chunk):
                length, _ = RECORD_HEADER.unpack_from(chunk, consumed)
                if consumed + RECORD_HEADER.size + length > len(chunk):
                    break  # continues in the next chunk
                added = length + (1 if payloads else 0)
                if payloads and body_size + added > limits.max_body_bytes:
                    full = True
                    break
                start = consumed + RECORD_HEADER.size
                payloads.append(chunk[start : start + length])
                body_size += added
                consumed = start + length
                framed += RECORD_HEADER.size + length
                if len(payloads) >= limits.max_payloads:
                    full = True
                    break
            position = Position(number, position.offset + consumed)
            if not consumed and not full:
                break  # defensive: a record larger than a chunk cannot be in a valid log
        if not payloads or prefix is None:
            return None
        body = prefix + b",".join(payloads) + BODY_SUFFIX
        name = f"{position.segment:012d}-{position.offset:012d}"
        batch = self._write_batch(
            name, str(uuid.uuid4()), len(payloads), body, compress, position, int(time.time() * 1000)
        )
        self.cursor = position
        self._write_cursor()
        with self.lock:
            self.uncut_payloads -= len(payloads)
            self.uncut_bytes -= framed
            self.batch_payloads += batch.payloads
            self.batch_bytes += batch.file_bytes
            self.oldest_uncut_at = time.monotonic() if self.uncut_payloads else None
            self.space.notify_all()
        for number in [number for number in self._ends if number < position.segment]:
            self._forget_segment(number)
            self._segment_path(number).unlink()
        return batch

    def _write_batch(
        self, name: str, key: str, count: int, body: bytes, compress: bool, end: Position, first_attempt_ms: int
    ) -> Batch:
        wire = gzip.compress(body, compresslevel=6, mtime=0) if compress else body
        encoding = "gzip" if compress else "identity"
        path = self.directory / BATCHES / f"{name}{BATCH_SUFFIX}"
        return self._write_batch_file(Batch(path, key, count, encoding, end, wire, 0, first_attempt_ms))

    def _write_batch_file(self, batch: Batch) -> Batch:
        header = {"key": batch.key, "payloads": batch.payloads, "encoding": batch.encoding}
        header.update(end=[batch.end.segment, batch.end.offset], firstAttemptMs=batch.first_attempt_ms)
        raw = json_text(header).encode() + b"\n" + batch.body
        write_atomically(batch.path, raw, self.fsync.files)
        return dataclasses.replace(batch, file_bytes=len(raw))

    def restamp(self, batch: Batch, first_attempt_ms: int) -> Batch:
        """The batch with a new first attempt, rewritten in place (same key and bytes): for a batch older than
        the sender's retry horizon, or written by an SDK version that stamped none."""
        stamped = self._write_batch_file(dataclasses.replace(batch, first_attempt_ms=first_attempt_ms))
        with self.lock:
            self.batch_bytes += stamped.file_bytes - batch.file_bytes
        return stamped

    def _write_cursor(self) -> None:
        write_atomically(
            self.directory / CURSOR_FILE, f"{self.cursor.segment} {self.cursor.offset}\n".encode(), self.fsync.files
        )

    def _release(self, batch: Batch) -> None:
        batch.path.unlink()
        if self.fsync.files:
            _fsync_dir(batch.path.parent)
        with self.lock:
            self.batch_payloads -= batch.payloads
            self.batch_bytes -= batch.file_bytes
            self.space.notify_all()

    def acknowledge(self, batch: Batch) -> None:
        """The server accepted the batch (2xx): it leaves the spool."""
        self._release(batch)

    def reject(self, batch: Batch, status: int, answer: bytes) -> Path:
        """The server refused the batch for good: keep it, with the answer, in rejected/."""
        try:
            problem: object = json.loads(answer)
        except ValueError:
            problem = answer.decode("utf-8", errors="replace")
        document = {
            "status": status,
            "problem": problem,
            "idempotencyKey": batch.key,
            "rejectedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "request": json.loads(batch.decoded_body()),
        }
        path = self.directory / REJECTED / (batch.path.name[: -len(BATCH_SUFFIX)] + ".json")
        write_atomically(path, (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode(), self.fsync.files)
        self._release(batch)
        return path

    def split(self, batch: Batch) -> None:
        """Replace a refused batch of several payloads by its two halves, so one bad payload does not
        take the others to rejected/. A 4xx means nothing of the request was enqueued, so new keys are
        safe; the halves are derived from the batch alone (keys ``<key>.0``/``<key>.1``, same bytes),
        so a crash mid-split writes the same files again."""
        document = json.loads(batch.decoded_body())
        data = document["data"]
        prefix = body_prefix(document["version"], document["token"])
        half = len(data) // 2
        stem = batch.path.name[: -len(BATCH_SUFFIX)]
        written = []
        for index, part in enumerate((data[:half], data[half:])):
            body = prefix + b",".join(json_text(payload).encode() for payload in part) + BODY_SUFFIX
            written.append(
                self._write_batch(
                    f"{stem}.{index}",
                    f"{batch.key}.{index}",
                    len(part),
                    body,
                    batch.encoding == "gzip",
                    batch.end,
                    batch.first_attempt_ms if batch.first_attempt_ms is not None else int(time.time() * 1000),
                )
            )
        batch.path.unlink()
        with self.lock:
            self.batch_bytes += sum(child.file_bytes for child in written) - batch.file_bytes
            self.space.notify_all()

    # --- state ----------------------------------------------------------------------------------
    def is_empty(self) -> bool:
        with self.lock:
            return not (self.uncut_payloads or self.batch_payloads)

    def close(self) -> None:
        """Release the lock and every descriptor; what is spooled stays for the next owner."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.space.notify_all()
            if self._fd >= 0:
                if self.fsync.files:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
        for number in list(self._read_fds):
            os.close(self._read_fds.pop(number))
        os.close(self._lock_fd)

    def abandon_after_fork(self) -> None:
        """In a forked child: drop the parent's descriptors without touching its files or its lock
        (closing the child's copy of the lock descriptor leaves the parent's flock in place)."""
        for fd in [self._fd, self._lock_fd, *self._read_fds.values()]:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._read_fds.clear()
        self._fd = -1
        self.closed = True
