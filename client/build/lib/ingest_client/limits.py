"""The server's request limits, and turning one payload into the bytes the server will store.

The defaults are the pipeline's (infra/config.py ``MAX_PAYLOADS``, ``MAX_BODY_BYTES``,
``MAX_PAYLOAD_BYTES``; docs/openapi.yaml ``x-limits``): a test in the pipeline's suite fails when they
drift apart. Set lower or higher values when the deployment you send to is configured otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The pipeline's limits on one request, as deployed by default.
MAX_PAYLOADS = 500
MAX_BODY_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 256 * 1024
# Idempotency-Key: 1-255 printable ASCII characters (docs/openapi.yaml).
MAX_IDEMPOTENCY_KEY_CHARS = 255
# version and token (docs/openapi.yaml PayloadCollection).
MAX_VERSION_CHARS = 64
MAX_TOKEN_CHARS = 1024

# The server measures a payload as its compact JSON, UTF-8, with U+FFFE/U+FFFF written as 6-byte
# escapes (SQS refuses the raw characters): this encoder and payload_bytes() measure the same way.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_SQS_ESCAPED_EXTRA_BYTES = 3  # "\ufffe" is 6 bytes as an escape, 3 as UTF-8


@dataclass(frozen=True)
class Limits:
    """What one request may carry; a batch is cut within all three."""

    max_payloads: int = MAX_PAYLOADS
    max_body_bytes: int = MAX_BODY_BYTES
    max_payload_bytes: int = MAX_PAYLOAD_BYTES

    def __post_init__(self) -> None:
        if self.max_payloads < 1:
            raise ValueError("max_payloads must be at least 1")
        if self.max_payload_bytes < 2:
            raise ValueError("max_payload_bytes must be at least 2 (the payload {})")
        if self.max_body_bytes < self.max_payload_bytes:
            raise ValueError("max_body_bytes must be at least max_payload_bytes")


def json_text(value: Any) -> str:
    """Compact JSON text, as the server writes it (no spaces, UTF-8 characters kept, no NaN)."""
    return _COMPACT_JSON.encode(value)


def encode_payload(payload: Any, max_payload_bytes: int) -> bytes:
    """The payload's compact JSON as UTF-8 bytes; ValueError for anything the server would refuse
    that can be told here: not an object, not JSON-serialisable, NaN/Infinity, a lone surrogate,
    over max_payload_bytes. (Nesting deeper than the server's MAX_NESTING_DEPTH is not checked
    here: such a payload is refused by the server and lands in rejected/, alone.)"""
    if not isinstance(payload, dict):
        raise ValueError(f"a payload must be a dict (a JSON object), got {type(payload).__name__}")
    try:
        text = _COMPACT_JSON.encode(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"the payload is not JSON-serialisable: {exc}") from exc
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("the payload contains a lone surrogate, which has no UTF-8 form") from exc
    size = len(data)
    if "\ufffe" in text or "\uffff" in text:
        size += _SQS_ESCAPED_EXTRA_BYTES * (text.count("\ufffe") + text.count("\uffff"))
    if size > max_payload_bytes:
        raise ValueError(f"the payload is {size} bytes as compact JSON; the limit is {max_payload_bytes}")
    return data


def body_prefix(version: str, token: str) -> bytes:
    """The start of every request body of this version and token, up to the first payload."""
    for name, value, max_chars in (("version", version, MAX_VERSION_CHARS), ("token", token, MAX_TOKEN_CHARS)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string")
        if len(value) > max_chars:
            raise ValueError(f"{name} is longer than {max_chars} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{name} contains a lone surrogate") from exc
    return f'{{"version":{json_text(version)},"token":{json_text(token)},"data":['.encode()


BODY_SUFFIX = b"]}"
