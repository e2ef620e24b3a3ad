"""In-process AWS answers for the benchmarks: botocore event hooks that count calls and reply
without any network (optionally after a delay), and SQS events built from real envelopes."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

SQS_CHUNK_BYTES = 64 * 1024  # SQS bills each request per 64 KB chunk of its payload


def _ok() -> Any:
    return SimpleNamespace(status_code=200, headers={}, content=b"")


class FakeAws:
    """Answers every call of ``client`` in-process and counts them per operation.

    SendMessageBatch answers every entry as Successful and records each call's payload bytes
    (bodies + attributes, what SQS bills in 64 KB chunks); PutObject sleeps ``put_delay_s`` first,
    like a real upload's round trip, in whichever thread called it.
    """

    def __init__(self, client: Any, put_delay_s: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.request_bytes: list[int] = []
        self.entry_sizes: list[int] = []
        self.put_delay_s = put_delay_s
        self._entries: list[dict[str, Any]] = []
        service = client.meta.service_model.service_name  # "sqs" or "s3"
        client.meta.events.register(f"before-parameter-build.{service}", self._capture)
        client.meta.events.register(f"before-call.{service}", self._answer)

    def _capture(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "SendMessageBatch":
            self._entries = params["Entries"]
            sizes = [entry_size(entry) for entry in params["Entries"]]
            self.entry_sizes.extend(sizes)
            self.request_bytes.append(sum(sizes))

    def _answer(self, model: Any, **_: Any) -> Any:
        self.calls[model.name] += 1
        if model.name == "SendMessageBatch":
            return _ok(), {
                "Successful": [
                    {"Id": e["Id"], "MessageId": str(uuid.uuid4()), "MD5OfMessageBody": "0" * 32} for e in self._entries
                ],
                "Failed": [],
            }
        if model.name == "PutObject":
            if self.put_delay_s:
                time.sleep(self.put_delay_s)
            return _ok(), {"ETag": '"bench"'}
        if model.name == "GetQueueAttributes":
            return _ok(), {"Attributes": {"ApproximateNumberOfMessages": "0"}}
        raise NotImplementedError(f"the benchmark does not expect {model.name}")

    def billed_sqs_requests(self) -> int:
        """SendMessageBatch requests as SQS bills them: one per started 64 KB chunk of each call."""
        return sum(-(-size // SQS_CHUNK_BYTES) for size in self.request_bytes)


def entry_size(entry: dict[str, Any]) -> int:
    """Bytes SQS counts for one entry: the body plus each attribute's name, type and value."""
    size = len(entry["MessageBody"].encode("utf-8"))
    for name, attribute in (entry.get("MessageAttributes") or {}).items():
        size += len(name) + len(attribute["DataType"]) + len(attribute.get("StringValue", "").encode("utf-8"))
    return size


def sqs_event_of(n: int, payload_bytes: int = 1024) -> dict[str, Any]:
    """An ESM event of n records carrying real envelopes (as the ingest writes them), all received
    in the same hour, as one consumer batch would be."""
    from local_pipeline.events import sqs_event
    from pipeline.collection import PayloadCollection
    from pipeline.contract import REQUEST_ID_ATTRIBUTE
    from pipeline.envelope import build_messages

    payload = json.dumps({"seq": 0, "pad": "x" * max(0, payload_bytes - 20)}, separators=(",", ":"))
    request_id = str(uuid.uuid4())
    envelopes = build_messages(
        PayloadCollection("1.4.2", "device-token-123", [payload] * n), request_id, int(time.time() * 1000)
    )
    messages = [
        {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": f"rh-{index}",
            "Body": message.body,
            "MD5OfBody": hashlib.md5(message.body.encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
            "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
            "MessageAttributes": {REQUEST_ID_ATTRIBUTE: {"DataType": "String", "StringValue": request_id}},
        }
        for index, message in enumerate(envelopes)
    ]
    return sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:bench-queue")
