"""The one reconciler: what the ingest acknowledged (202) against what the bucket holds.

``make verify`` (loadtest/verify.py), ``make soak`` (loadtest/soak.py) and the reliability tests
(tests/reliability) all judge lost, duplicated and altered payloads with ``reconcile``. Stored objects
are read through the pipeline's contract (``parse_object_key``, ``decode_batch_object``), in both
object modes: the verifier keeps no key parser of its own.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.contract import (
    LATE_MARKER_PREFIX,
    decode_batch_object,
    parse_object_key,
    parse_received_at,
    payload_id_prefix,
)

Sent = tuple[str, Any]  # (token, payload): what the client sent for one payload


def promised_ids(request_id: str, accepted: int) -> list[str]:
    """The payload ids a 202 with ``accepted = n`` promises: ``{prefix}-0 .. {prefix}-(n-1)``, the prefix the
    requestId itself, or an HTTP API's base64 id in its URL-safe spelling (contract.payload_id_prefix)."""
    prefix = payload_id_prefix(request_id)
    return [f"{prefix}-{index}" for index in range(accepted)]


def expected_payloads(acknowledged: Mapping[str, Mapping[str, Any]]) -> dict[str, Sent]:
    """``acknowledged``: request id -> the collection sent in that 202-acknowledged request.
    Returns payload id -> (token, payload), what each promised payload must be stored as."""
    return {
        payload_id: (sent["token"], payload)
        for request_id, sent in acknowledged.items()
        for payload_id, payload in zip(promised_ids(request_id, len(sent["data"])), sent["data"], strict=True)
    }


@dataclass(frozen=True)
class StoredCopy:
    """One stored copy of a payload."""

    payload_id: str
    location: str  # the object key, plus its version id where versions are read: one location per copy
    stored_at: datetime | None = None  # the object's LastModified (S3 keeps it to the second)
    received_at: datetime | None = None  # the envelope's receivedAt; None when the object was not read
    content: Sent | None = None  # (token, payload); None when not kept (the verifier keeps ids only)


def envelopes_in(key: str, body: bytes) -> list[dict[str, Any]]:
    """The envelopes one object holds: a gzip NDJSON batch (OBJECT_MODE=batch) or one envelope (payload)."""
    parsed = parse_object_key(key)
    if parsed is None:
        raise ValueError(f"{key} is not an object key the pipeline writes")
    return decode_batch_object(body) if parsed.is_batch else [json.loads(body)]


def copy_of(
    envelope: Mapping[str, Any], location: str, stored_at: datetime | None = None, keep_content: bool = True
) -> StoredCopy:
    return StoredCopy(
        envelope["id"],
        location,
        stored_at,
        parse_received_at(envelope["receivedAt"]),
        (envelope["token"], envelope["payload"]) if keep_content else None,
    )


def bucket_copies(s3: Any, bucket: str, readers: int = 8) -> list[StoredCopy]:
    """Every payload in every version of every object of ``bucket`` (the late markers beside them hold none).
    Version the bucket first: an overwrite then shows up as a second copy."""
    versions = [
        (version["Key"], version["VersionId"], version["LastModified"])
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for version in page.get("Versions", [])
        if not version["Key"].startswith(LATE_MARKER_PREFIX)  # zero-byte marks of late hours, no payloads
    ]

    def read(item: tuple[str, str, datetime]) -> list[StoredCopy]:
        key, version_id, stored_at = item
        body = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()
        return [copy_of(envelope, f"{key}?versionId={version_id}", stored_at) for envelope in envelopes_in(key, body)]

    if readers == 1:  # in order, on this thread (what fault-injecting tests need)
        return [copy for item in versions for copy in read(item)]
    with ThreadPoolExecutor(readers) as pool:
        return [copy for copies in pool.map(read, versions) for copy in copies]


@dataclass
class Reconciliation:
    acknowledged: int  # payload ids promised
    stored: int  # copies found, one per object (version) holding a payload
    found: int = 0  # promised ids stored at least once
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, list[str]] = field(default_factory=dict)  # id -> its locations, when more than one
    altered: list[str] = field(default_factory=list)  # a stored copy differs from what was sent
    unacknowledged: list[str] = field(default_factory=list)  # stored ids no 202 promised
    content_duplicates: int = 0  # extra copies of one (token, payload) under different ids (a client retry)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.altered)

    @property
    def extra_copies(self) -> int:
        return sum(len(locations) - 1 for locations in self.duplicated.values())


def reconcile(expected: Mapping[str, Sent | None], copies: Iterable[StoredCopy]) -> Reconciliation:
    """``expected``: promised payload id -> what was sent, or None where only the id is known (the load
    test records counts, not bodies). ``copies``: every stored copy read. Lost: promised, never stored.
    Duplicated: stored in more than one location. Altered: a copy whose content differs from what was sent."""
    copies = list(copies)
    locations: dict[str, set[str]] = {}
    for copy in copies:
        locations.setdefault(copy.payload_id, set()).add(copy.location)
    by_content = Counter(json.dumps(copy.content, sort_keys=True) for copy in copies if copy.content is not None)
    return Reconciliation(
        acknowledged=len(expected),
        stored=len(copies),
        found=len(expected.keys() & locations.keys()),
        lost=sorted(expected.keys() - locations.keys()),
        duplicated={pid: sorted(found) for pid, found in sorted(locations.items()) if len(found) > 1},
        altered=sorted(
            {
                copy.payload_id
                for copy in copies
                if copy.content is not None
                and expected.get(copy.payload_id) is not None
                and copy.content != expected[copy.payload_id]
            }
        ),
        unacknowledged=sorted(locations.keys() - expected.keys()),
        content_duplicates=sum(n - 1 for n in by_content.values()),
    )
