"""The Idempotency-Key derivation is a contract with clients: a retry sent after a deploy must map to
the same ids as the attempt before it. A change to the derivation fails here first.

Changed once on purpose (issue 26, item 8): the id now covers the request's hour partition, so no id can
be in two hours; a keyed retry in flight across that deploy is stored under the new ids (docs/GUARANTEES.md, "One row
per id")."""

from __future__ import annotations

import uuid

import pytest

from pipeline.envelope import is_safe_id
from pipeline.idempotency import first_attempt_from, idempotency_key_from, idempotent_request_id
from pipeline.problems import Problem

GOLDEN = "44dc9551-1ba0-8908-8745-b491fb3f53a5"


def test_the_derivation_is_stable_across_releases() -> None:
    # Given fixed inputs, When derived, Then the id is this exact value (never change it: retries in
    # flight during a deploy would be stored twice)
    request_id = idempotent_request_id(
        "abc123", "device-1", "order-42", b'{"version":"1","token":"device-1","data":[{}]}', "2026-11-26T02"
    )
    assert request_id == GOLDEN


def test_the_partition_hour_is_part_of_the_id() -> None:
    # Given one key and body in two hour partitions, Then two ids: an id is never in two hours
    body = b'{"version":"1","token":"t","data":[{}]}'
    assert idempotent_request_id("a", "t", "k", body, "2026-11-26T02") != idempotent_request_id(
        "a", "t", "k", body, "2026-11-26T03"
    )


def test_the_id_is_a_version_8_uuid_and_a_safe_object_name() -> None:
    parsed = uuid.UUID(idempotent_request_id("", "t", "k", b"{}", "2026-11-26T02"))
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
    assert is_safe_id(str(parsed)) and is_safe_id(f"{parsed}-499")


@pytest.mark.parametrize("fields", [("ab", "c"), ("a", "bc")])
def test_fields_cannot_run_into_each_other(fields: tuple[str, str]) -> None:
    # "ab"+"c" and "a"+"bc" are different identities: length prefixes keep them apart
    ids = {
        idempotent_request_id(fields[0], fields[1], "k", b"{}", "h"),
        idempotent_request_id("abc", "", "k", b"{}", "h"),
    }
    assert len(ids) == 2


def test_the_header_is_optional_and_trimmed() -> None:
    assert idempotency_key_from({}) is None
    assert idempotency_key_from({"idempotency-key": "  k 1\t"}) == "k 1"


def test_a_malformed_header_is_a_400() -> None:
    with pytest.raises(Problem) as refused:
        idempotency_key_from({"idempotency-key": "x" * 256})
    assert refused.value.status == 400 and refused.value.slug == "invalid-idempotency-key"


RECEIVED_MS = 1_795_662_000_100  # 2026-11-26T03:00:00.100Z


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        ("2026-11-26T02:59:59.800Z", RECEIVED_MS - 300),
        ("2026-11-26T02:59:59Z", RECEIVED_MS - 1_100),
        ("2026-11-25T03:00:00.100Z", RECEIVED_MS - 24 * 3_600_000),  # the horizon itself
        ("2026-11-25T03:00:00.099Z", None),  # beyond it
        ("2026-11-26T03:05:00.100Z", RECEIVED_MS + 300_000),  # the clock skew allowed
        ("2026-11-26T03:05:00.101Z", None),
    ],
)
def test_a_stated_first_attempt_counts_only_within_its_bounds(stated: str, expected: int | None) -> None:
    assert first_attempt_from({"ingest-first-attempt": stated}, RECEIVED_MS, 24) == expected


def test_no_stated_first_attempt_is_none() -> None:
    assert first_attempt_from({}, RECEIVED_MS, 24) is None


@pytest.mark.parametrize(
    "stated", ["", "2026-11-26", "2026-11-26T02:59:59", "2026-11-26T02:59:59+00:00", "2026-02-30T00:00:00Z"]
)
def test_a_malformed_first_attempt_is_a_400(stated: str) -> None:
    with pytest.raises(Problem) as refused:
        first_attempt_from({"ingest-first-attempt": stated}, RECEIVED_MS, 24)
    assert (refused.value.status, refused.value.slug) == (400, "invalid-first-attempt")
