"""Fault injection at the botocore level: the product code runs unmodified against moto."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError


class FailingBatchEntries:
    """Makes SQS 'not accept' chosen entries of a batch call (SendMessageBatch,
    ChangeMessageVisibilityBatch...): they are removed from the request before it reaches moto and
    reported in ``Failed`` (HTTP 200), exactly what a partial batch failure is.

    ``should_fail(call_number, entry)`` decides per entry; call numbers start at 1.
    """

    def __init__(
        self, sqs_client: Any, should_fail: Callable[[int, dict[str, Any]], bool], operation: str = "SendMessageBatch"
    ) -> None:
        self.should_fail = should_fail
        self.calls = 0
        self.failed_entries = 0
        # The ingest sends batches from a thread pool: one call's state must stay on its thread.
        self._lock = threading.Lock()
        self._call = threading.local()
        events = sqs_client.meta.events
        events.register(f"before-parameter-build.sqs.{operation}", self._drop_entries)
        events.register(f"before-call.sqs.{operation}", self._skip_empty_call)
        events.register(f"after-call.sqs.{operation}", self._report_failed)

    def _drop_entries(self, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.calls += 1
            call_number = self.calls
            kept: list[dict[str, Any]] = []
            failed: list[dict[str, Any]] = []
            for entry in params["Entries"]:
                (failed if self.should_fail(call_number, entry) else kept).append(entry)
            self.failed_entries += len(failed)
        params["Entries"] = kept
        self._call.failed = failed
        self._call.nothing_to_send = not kept

    def _skip_empty_call(self, **_: Any) -> Any:
        if getattr(self._call, "nothing_to_send", False):
            # Every entry failed: answer without calling SQS (it rejects an empty batch).
            return SimpleNamespace(status_code=200, headers={}, content=b""), {"Successful": [], "Failed": []}
        return None

    def _report_failed(self, parsed: dict[str, Any], **_: Any) -> None:
        parsed.setdefault("Failed", [])
        parsed["Failed"].extend(
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for e in getattr(self._call, "failed", [])
        )


class FailingSendMessageBatch(FailingBatchEntries):
    """FailingBatchEntries for SendMessageBatch (the ingest's enqueue)."""


def fail_calls(
    client: Any, operation: str, should_fail: Callable[[], bool], code: str = "InternalError", status: int = 500
) -> None:
    """Make every call of ``operation`` raise a real botocore ClientError while ``should_fail()``."""
    service = client.meta.service_model.service_id.hyphenize()

    def before_build(**_: Any) -> None:
        if should_fail():
            raise ClientError(
                {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                operation,
            )

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", before_build)


SLOW_DOWN = (
    503,
    {"Content-Type": "application/xml"},
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>injected</RequestId></Error>",
)
FAULT_HEADER = "x-injected-fault"


class SlowDownAnswers:
    """S3 answers chosen PutObject attempts of one client with ``503 SlowDown``, on the wire: botocore
    parses the answer and its own retry logic (standard mode, jittered backoff, retry quota) runs
    exactly as against S3, so each of its retries is a new attempt here. Nothing is stored for such
    an attempt.

    The client's ``before-send`` hook picks the attempts and marks them; moto's request dispatcher
    (which answers every call under ``mock_aws``) answers marked requests with the SlowDown instead
    of passing them to its S3 backend. ``should_fail(path, attempt)``: ``path`` is the request's URL
    path (it ends with the key), ``attempt`` counts that path's PutObject attempts from 1.
    """

    def __init__(self, s3_client: Any, should_fail: Callable[[str, int], bool], monkeypatch: Any) -> None:
        from moto.core.models import botocore_stubber

        self.should_fail = should_fail
        self.attempts: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()  # SlowDown answers per path
        self._lock = threading.Lock()
        s3_client.meta.events.register("before-send.s3.PutObject", self._choose)
        dispatch = botocore_stubber.process_request

        def answer(request: Any) -> Any:
            return SLOW_DOWN if request.headers.get(FAULT_HEADER) == "SlowDown" else dispatch(request)

        monkeypatch.setattr(botocore_stubber, "process_request", answer)

    def _choose(self, request: Any, **_: Any) -> None:
        path = urlsplit(request.url).path
        with self._lock:
            self.attempts[path] += 1
            fail = self.should_fail(path, self.attempts[path])
            if fail:
                self.answered[path] += 1
        if FAULT_HEADER in request.headers:
            del request.headers[FAULT_HEADER]  # a retry reuses the request: decide afresh
        if fail:
            request.headers[FAULT_HEADER] = "SlowDown"

    @property
    def slowdowns(self) -> int:
        return sum(self.answered.values())


def fail_put_object(
    s3_client: Any, should_fail: Callable[[str], bool], code: str = "InternalError", status: int = 500
) -> None:
    """Make PutObject raise a real botocore ClientError for chosen keys, before moto sees the call."""

    def before_build(params: dict[str, Any], **_: Any) -> None:
        if should_fail(params["Key"]):
            raise ClientError(
                {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                "PutObject",
            )

    s3_client.meta.events.register("before-parameter-build.s3.PutObject", before_build)


class FlakyPutObject:
    """PutObject fails for chosen (key, attempt) pairs with a real ClientError, alternating
    500 InternalError and 503 SlowDown. It fails before the request is built, so botocore's own
    retries are bypassed: each injected failure is one the consumer sees after botocore gave up.

    ``should_fail(key, attempt)``: attempt counts this key's PutObject calls, from 1.
    """

    def __init__(self, s3_client: Any, should_fail: Callable[[str, int], bool]) -> None:
        self.should_fail = should_fail
        self.attempts: Counter[str] = Counter()
        self.failures: list[str] = []
        self.codes: Counter[str] = Counter()
        self._lock = threading.Lock()
        s3_client.meta.events.register("before-parameter-build.s3.PutObject", self._maybe_fail)

    def _maybe_fail(self, params: dict[str, Any], **_: Any) -> None:
        key = params["Key"]
        with self._lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
            fail = self.should_fail(key, attempt)
            if fail:
                self.failures.append(key)
            code, status = ("SlowDown", 503) if len(self.failures) % 2 == 0 else ("InternalError", 500)
            if fail:
                self.codes[code] += 1
        if fail:
            raise ClientError(
                {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                "PutObject",
            )


class ConsumerCrash(BaseException):
    """Not an Exception: like a runtime kill (timeout, OOM), no record handler can catch it."""


class CrashAfterPuts:
    """The consumer 'crashes' right after its ``after``-th successful PutObject (that object IS
    stored): the invocation fails and, as with a real crash, no message of the batch is deleted."""

    def __init__(self, s3_client: Any, after: int) -> None:
        self.after = after
        self.stored = 0
        self._lock = threading.Lock()
        s3_client.meta.events.register("after-call.s3.PutObject", self._count)

    def _count(self, http_response: Any, **_: Any) -> None:
        if http_response.status_code != 200:
            return
        with self._lock:
            self.stored += 1
            crash = self.stored == self.after
        if crash:
            raise ConsumerCrash(f"injected crash after {self.after} stored objects")


class CallCounter:
    """Counts the calls a client makes to one operation (e.g. "sqs", "GetQueueAttributes")."""

    def __init__(self, client: Any, service: str, operation: str) -> None:
        self.calls = 0
        client.meta.events.register(f"before-call.{service}.{operation}", self._count)

    def _count(self, **_: Any) -> None:
        self.calls += 1


class SimultaneousConditionalPuts:
    """Holds each PutObject until ``parties`` of them are in flight, then lets them reach S3 one at
    a time: S3's conditional write is atomic, moto's check-then-put is not, so moto is serialized
    here the way S3 serializes it. ``conflict_losers`` answers the later ones 409
    ConditionalRequestConflict, which S3 may return while a competing conditional write is in progress."""

    def __init__(self, s3_client: Any, parties: int = 2, conflict_losers: bool = False) -> None:
        self.parties = parties
        self.barrier = threading.Barrier(parties, timeout=10)
        self.conflict_losers = conflict_losers
        self.arrivals = 0
        self._s3 = threading.Lock()
        self._count = threading.Lock()
        s3_client.meta.events.register("before-call.s3.PutObject", self._enter)
        s3_client.meta.events.register("after-call.s3.PutObject", self._leave)

    def _enter(self, **_: Any) -> None:
        with self._count:
            self.arrivals += 1
            arrival = self.arrivals
        if arrival <= self.parties:  # later calls (redeliveries) go straight through
            self.barrier.wait()
            if self.conflict_losers and arrival > 1:
                raise ClientError(
                    {
                        "Error": {"Code": "ConditionalRequestConflict", "Message": "injected"},
                        "ResponseMetadata": {"HTTPStatusCode": 409},
                    },
                    "PutObject",
                )
        self._s3.acquire()

    def _leave(self, **_: Any) -> None:
        self._s3.release()
