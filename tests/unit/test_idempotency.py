"""The Idempotency-Key derivation is a contract with clients: a retry sent after a deploy must map to
the same ids as the attempt before it. A change to the derivation fails here first."""

from __future__ import annotations

import uuid

import pytest

from pipeline.envelope import is_safe_id
from pipeline.idempotency import idempotency_key_from, idempotent_request_id
from pipeline.problems import Problem

GOLDEN = "306f2c86-6502-8f7d-9647-bb614224b3e8"


def test_the_derivation_is_stable_across_releases() -> None:
    # Given fixed inputs, When derived, Then the id is this exact value (never change it: retries in
    # flight during a deploy would be stored twice)
    request_id = idempotent_request_id(
        "abc123", "device-1", "order-42", b'{"version":"1","token":"device-1","data":[{}]}'
    )
    assert request_id == GOLDEN


def test_the_id_is_a_version_8_uuid_and_a_safe_object_name() -> None:
    parsed = uuid.UUID(idempotent_request_id("", "t", "k", b"{}"))
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
    assert is_safe_id(str(parsed)) and is_safe_id(f"{parsed}-499")


@pytest.mark.parametrize("fields", [("ab", "c"), ("a", "bc")])
def test_fields_cannot_run_into_each_other(fields: tuple[str, str]) -> None:
    # "ab"+"c" and "a"+"bc" are different identities: length prefixes keep them apart
    ids = {idempotent_request_id(fields[0], fields[1], "k", b"{}"), idempotent_request_id("abc", "", "k", b"{}")}
    assert len(ids) == 2


def test_the_header_is_optional_and_trimmed() -> None:
    assert idempotency_key_from({}) is None
    assert idempotency_key_from({"idempotency-key": "  k 1\t"}) == "k 1"


def test_a_malformed_header_is_a_400() -> None:
    with pytest.raises(Problem) as refused:
        idempotency_key_from({"idempotency-key": "x" * 256})
    assert refused.value.status == 400 and refused.value.slug == "invalid-idempotency-key"
