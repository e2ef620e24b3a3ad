"""Fault injection at the botocore level: the product code runs unmodified against moto."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from botocore.exceptions import ClientError


class FailingSendMessageBatch:
    """Makes SQS 'not accept' chosen entries: they are removed from the request before it reaches
    moto and reported in ``Failed`` (HTTP 200), exactly what a partial SendMessageBatch failure is.

    ``should_fail(call_number, entry)`` decides per entry; call numbers start at 1.
    """

    def __init__(self, sqs_client: Any, should_fail: Callable[[int, dict[str, Any]], bool]) -> None:
        self.should_fail = should_fail
        self.calls = 0
        self.failed_entries = 0
        self._failed: list[dict[str, Any]] = []
        self._nothing_to_send = False
        events = sqs_client.meta.events
        events.register("before-parameter-build.sqs.SendMessageBatch", self._drop_entries)
        events.register("before-call.sqs.SendMessageBatch", self._skip_empty_call)
        events.register("after-call.sqs.SendMessageBatch", self._report_failed)

    def _drop_entries(self, params: dict[str, Any], **_: Any) -> None:
        self.calls += 1
        kept: list[dict[str, Any]] = []
        self._failed = []
        for entry in params["Entries"]:
            (self._failed if self.should_fail(self.calls, entry) else kept).append(entry)
        self.failed_entries += len(self._failed)
        params["Entries"] = kept
        self._nothing_to_send = not kept

    def _skip_empty_call(self, **_: Any) -> Any:
        if self._nothing_to_send:
            # Every entry failed: answer without calling SQS (it rejects an empty batch).
            return SimpleNamespace(status_code=200, headers={}, content=b""), {"Successful": [], "Failed": []}
        return None

    def _report_failed(self, parsed: dict[str, Any], **_: Any) -> None:
        parsed.setdefault("Failed", [])
        parsed["Failed"].extend(
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"} for e in self._failed
        )


def fail_put_object(s3_client: Any, should_fail: Callable[[str], bool], code: str = "InternalError",
                    status: int = 500) -> None:
    """Make PutObject raise a real botocore ClientError for chosen keys, before moto sees the call."""

    def before_build(params: dict[str, Any], **_: Any) -> None:
        if should_fail(params["Key"]):
            raise ClientError({"Error": {"Code": code, "Message": "injected"},
                               "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    s3_client.meta.events.register("before-parameter-build.s3.PutObject", before_build)
