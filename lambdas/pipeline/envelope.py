"""The envelope: what travels on the queue and what lands in S3, one per payload.

    {"id": "<requestId>-<index>", "requestId": "...", "receivedAt": "2026-11-26T02:48:09.123Z",
     "version": "...", "token": "...", "deviceId": "...", "payload": {...the client's object, unchanged...}}

``deviceId`` is there only when DEVICE_AUTH authenticated the request (pipeline/device_auth.py).

The id is deterministic (request id + index), so every redelivery of a message maps to one object key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from pipeline.collection import PayloadCollection
from pipeline.contract import (
    MAX_REQUEST_ID_CHARS,
    REQUEST_ID_ATTRIBUTE,
    SQS_MAX_MESSAGE_BYTES,
    format_received_at,
    parse_received_at,
)
from pipeline.problems import too_large

_SAFE_ID = re.compile(f"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_REQUEST_ID_CHARS - 1}}}")


class EnvelopeError(ValueError):
    """A queue message that is not an envelope we wrote (a poison message)."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One SendMessageBatch entry; ``size`` is what SQS counts against the 1 MiB limits."""

    payload_id: str
    body: str
    request_id: str
    size: int


@dataclass(frozen=True)
class StoredEnvelope:
    payload_id: str
    request_id: str
    received_at: datetime


def is_safe_id(value: str) -> bool:
    return _SAFE_ID.fullmatch(value) is not None


def build_messages(
    collection: PayloadCollection, request_id: str, received_at_ms: int, device_id: str | None = None
) -> list[OutgoingMessage]:
    """One message per payload. Bodies are assembled from the already-serialized payload text.

    ``device_id``: the authenticated device (DEVICE_AUTH=on), written after ``token``; None leaves it out.

    Raises a 413 Problem naming the payload (``/data/N``) whose message SQS would refuse for its size,
    before anything is enqueued: such a message would fail on every retry.
    """
    head = (
        ',"requestId":'
        + json.dumps(request_id)
        + ',"receivedAt":"'
        + format_received_at(received_at_ms)
        + '"'
        + ',"version":'
        + json.dumps(collection.version)
        + ',"token":'
        + json.dumps(collection.token)
        + ("" if device_id is None else ',"deviceId":' + json.dumps(device_id))
        + ',"payload":'
    )
    # SQS counts attribute name + data type + value bytes towards the message size.
    attribute_size = len(REQUEST_ID_ATTRIBUTE) + len("String") + len(request_id.encode())
    messages = []
    for index, payload in enumerate(collection.payloads):
        payload_id = f"{request_id}-{index}"
        body = '{"id":"' + payload_id + '"' + head + payload + "}"
        size = len(body.encode("utf-8")) + attribute_size
        if size > SQS_MAX_MESSAGE_BYTES:
            raise too_large(
                "message-too-large",
                f"data[{index}] does not fit one queue message: with its "
                f"envelope (id, receivedAt, version, token) it is {size} bytes; "
                f"the limit is {SQS_MAX_MESSAGE_BYTES}",
                f"/data/{index}",
            )
        messages.append(OutgoingMessage(payload_id, body, request_id, size))
    return messages


def parse_envelope(body: str) -> StoredEnvelope:
    """Read the fields the consumer needs to place the object; raise EnvelopeError for anything else."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise EnvelopeError(f"message body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise EnvelopeError("message body is not a JSON object")
    payload_id = document.get("id")
    if not isinstance(payload_id, str) or not is_safe_id(payload_id):
        raise EnvelopeError(f"envelope id {payload_id!r} is missing or not a safe object name")
    received_at = document.get("receivedAt")
    try:
        moment = parse_received_at(str(received_at))
    except ValueError as exc:
        raise EnvelopeError(f"envelope receivedAt {received_at!r} is not an ISO-8601 UTC timestamp") from exc
    if "payload" not in document:
        raise EnvelopeError("envelope has no payload")
    return StoredEnvelope(payload_id=payload_id, request_id=str(document.get("requestId", "")), received_at=moment)
