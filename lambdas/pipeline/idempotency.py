"""Idempotency-Key: a client retry gets the same request id, hence the same payload ids and keys.

The header follows the IETF httpapi Idempotency-Key draft and Stripe's convention: the client picks
a unique key per logical request and sends it again, unchanged, on every retry. The pipeline keeps
no state at the ingest; instead the request id is *derived* from what identifies the request:

    client identity (the authenticated device with DEVICE_AUTH=on, else API Gateway's API key id; plus the
    collection's token), the key, and the
    SHA-256 of the decoded body (after base64 and gzip decoding)

A retry of the same request therefore gets the same request id (and ``<requestId>-<index>`` ids);
a reused key with a different body gets different ids, so nothing is silently dropped. The draft's
422 for a reused key needs a store of past keys and bodies at the ingest; there is none, and a
different body stored under its own ids loses nothing. See docs/RELIABILITY.md.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping

from pipeline.contract import IDEMPOTENCY_KEY_HEADER
from pipeline.problems import bad_request

MAX_KEY_CHARS = 255
_PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))
# Version 8 (custom) UUIDs with SHA-256 as the name hash, as RFC 9562 section 5.8 / appendix B.2 shows.
_VERSION_8 = 8


def idempotency_key_from(headers: Mapping[str, str]) -> str | None:
    """The request's Idempotency-Key, None when absent; a Problem (400) when malformed.

    The value is opaque: compared as sent (surrounding spaces and tabs are not part of an HTTP field
    value), 1-255 printable ASCII characters (0x20-0x7E).
    """
    raw = headers.get(IDEMPOTENCY_KEY_HEADER.lower())  # the handler lower-cases names
    if raw is None:
        return None
    key = raw.strip(" \t")
    if not key or len(key) > MAX_KEY_CHARS or not _PRINTABLE_ASCII.issuperset(key):
        raise bad_request(
            "invalid-idempotency-key",
            f"the Idempotency-Key header must be 1 to {MAX_KEY_CHARS} printable ASCII characters "
            f"(got {len(key)} characters{'' if _PRINTABLE_ASCII.issuperset(key) else ', some not printable ASCII'})",
        )
    return key


def idempotent_request_id(client_identity: str, token: str, key: str, body: bytes) -> str:
    """The request id of a keyed request: a UUID (version 8) derived from all four inputs.

    UUID-shaped like API Gateway's own request ids, so ids stay safe object names
    (``envelope.is_safe_id``) and keep the ``<requestId>-<index>`` shape.
    """
    digest = hashlib.sha256()
    # Length-prefixed fields: no two different tuples hash the same bytes.
    for field in (
        client_identity.encode(),
        token.encode("utf-8", "surrogatepass"),
        key.encode("ascii"),
        hashlib.sha256(body).digest(),
    ):
        digest.update(len(field).to_bytes(4, "big"))
        digest.update(field)
    value = int.from_bytes(digest.digest()[:16], "big")
    # Set the version (bits 48-51) and the RFC 9562 variant (bits 64-65, "10").
    value = (value & ~(0xF << 76)) | (_VERSION_8 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))
