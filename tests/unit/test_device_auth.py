"""pipeline/device_auth.py on its own: the key format, the keyring document, the Authorization header rules."""

from __future__ import annotations

import pytest

from pipeline.contract import MAX_DEVICE_ID_CHARS
from pipeline.device_auth import Keyring, KeyringError, bearer_key, keyring_json, new_keyring_document
from pipeline.problems import Problem

KEYRING = Keyring.from_document(new_keyring_document("k" * 64))


def refused(call: object) -> tuple[int, str]:
    with pytest.raises(Problem) as problem:
        call()  # type: ignore[operator]
    return problem.value.status, problem.value.slug


def test_a_key_names_its_device_and_generation_and_verifies_to_that_device() -> None:
    key = KEYRING.issue("sensor-42_a")
    prefix, device, generation, signature = key.split(".")
    assert (prefix, device, generation, len(signature)) == ("dk1", "sensor-42_a", "1", 43)
    assert KEYRING.verify(key) == "sensor-42_a"


def test_the_longest_device_id_is_the_envelope_reserve_and_one_more_character_is_refused() -> None:
    longest = "d" * MAX_DEVICE_ID_CHARS
    assert KEYRING.verify(KEYRING.issue(longest)) == longest
    with pytest.raises(ValueError, match="device id"):
        KEYRING.issue(longest + "d")
    # a key naming a longer id is not a device key at all: 401, whatever its signature
    assert refused(lambda: KEYRING.verify(f"dk1.{longest}d.1.{'A' * 43}")) == (401, "unauthorized")


@pytest.mark.parametrize("device_id", ["", "a.b", "a b", "ü", "a/b", "a,b"])
def test_device_ids_outside_the_alphabet_get_no_key(device_id: str) -> None:
    with pytest.raises(ValueError, match="device id"):
        KEYRING.issue(device_id)


@pytest.mark.parametrize(
    "values",
    [
        [],
        [""],
        ["   "],
        ["Bearer"],
        ["Bearer  "],
        ["Basic abc"],
        ["bearer-abc"],
        ["Bearer a", "Bearer b"],
        ["Bearer a,b"],
    ],
)
def test_anything_but_one_bearer_credential_is_a_401_with_the_bearer_challenge(values: list[str]) -> None:
    with pytest.raises(Problem) as problem:
        bearer_key(values)
    assert problem.value.status == 401
    assert problem.value.headers["WWW-Authenticate"].startswith('Bearer realm="ingest-pipeline"')


def test_the_scheme_is_case_insensitive_and_spaces_around_the_key_are_not_part_of_it() -> None:
    assert bearer_key(["bEaReR   dk1.x.1.sig  "]) == "dk1.x.1.sig"


def test_a_header_longer_than_any_key_is_refused_before_parsing() -> None:
    assert refused(lambda: bearer_key(["Bearer " + "A" * 8192])) == (401, "unauthorized")


def test_a_generation_the_keyring_never_had_is_a_403_like_a_bad_signature() -> None:
    key = KEYRING.issue("d")
    assert refused(lambda: KEYRING.verify(key.replace(".1.", ".7.", 1))) == (403, "invalid-key")
    assert refused(lambda: KEYRING.verify(key.replace(".1.", ".1234567890.", 1))) == (401, "unauthorized")


def test_the_keyring_document_round_trips_and_a_malformed_one_is_refused_naming_the_field() -> None:
    document = Keyring(2, {1: b"a" * 40, 2: b"b" * 40}, frozenset({0}), {"d": 2}).to_document()
    assert Keyring.from_document(document).to_document() == document
    assert '"k1":"' in keyring_json(Keyring.from_document(document))
    for broken, field in (
        ({**document, "format": 2}, "format"),
        ({**document, "current": 3}, "current"),
        ({**document, "k1": "short"}, "k1"),
        ({**document, "retired": "0"}, "retired"),
        ({**document, "revoked": {"d": "2"}}, "revoked"),
    ):
        with pytest.raises(KeyringError, match=field):
            Keyring.from_document(broken)
