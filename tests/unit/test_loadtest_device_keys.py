"""The load test's device keys (DEVICE_AUTH=on): each Locust user one device with its own key, from a file or,
against make run, minted from its keyring (loadtest/device_keys.py; the locustfile only hands them out)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import boto3
import pytest

from loadtest.device_keys import DeviceKeysError, device_keys_for, key_of_user, mint_device_keys, read_device_keys
from local_pipeline.launch import free_port
from pipeline.device_auth import Keyring, new_keyring_document
from tests.conftest import aws  # noqa: F401 - the moto fixture
from tools.ops.devices import LOCAL_SECRET_NAME

MAKE_RUN_HOST = "http://127.0.0.1:3000"


@pytest.fixture
def secretsmanager(aws: None) -> Any:  # noqa: F811 - pytest fixture injection
    return boto3.client("secretsmanager")


def make_run_keyring(secretsmanager: Any) -> Keyring:
    """make run's keyring, as DEVICE_AUTH=on creates it (local_pipeline/resources.py)."""
    document = new_keyring_document(secrets.token_urlsafe(48))
    secretsmanager.create_secret(Name=LOCAL_SECRET_NAME, SecretString=json.dumps(document))
    return Keyring.from_document(document)


def test_minted_keys_are_distinct_devices_the_ingest_accepts(secretsmanager: Any) -> None:
    # Given make run's keyring (DEVICE_AUTH=on)
    keyring = make_run_keyring(secretsmanager)
    # When the load test mints LOADTEST_DEVICES=10 keys
    keys = mint_device_keys(10, "http://127.0.0.1:4566", secretsmanager=secretsmanager)
    # Then there are 10 keys of 10 distinct devices, each one the keyring verifies (as the ingest does)
    assert [keyring.verify(key) for key in keys] == [f"loadtest-{n:04d}" for n in range(1, 11)]


def test_each_user_is_one_device_and_more_users_share_them_in_turn() -> None:
    # Given 3 keys
    keys = ["dk1.a.1.x", "dk1.b.1.x", "dk1.c.1.x"]
    # When 5 users start
    # Then the first 3 are one device each, and the next ones take the keys again in turn
    assert [key_of_user(keys, n) for n in range(5)] == [*keys, keys[0], keys[1]]
    # And without keys a user sends none
    assert key_of_user([], 0) is None


def test_make_run_without_a_keyring_means_the_api_key_alone(secretsmanager: Any) -> None:
    # Given make run with DEVICE_AUTH=off (no keyring secret)
    # When the load test looks for keys to mint
    keys = mint_device_keys(10, "http://127.0.0.1:4566", secretsmanager=secretsmanager)
    # Then it has none, and sends the API key alone as before
    assert keys == []


def test_a_keys_file_wins_and_is_read_one_key_a_line(tmp_path: Path, secretsmanager: Any) -> None:
    # Given make run's keyring, and a file of two keys minted elsewhere (with a blank line and spaces)
    make_run_keyring(secretsmanager)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(" dk1.sensor-1.1.aaa \n\ndk1.sensor-2.1.bbb\n")
    # When the load test gets its keys for make run with LOADTEST_DEVICE_KEYS set
    keys = device_keys_for(MAKE_RUN_HOST, keys_file, 10, "http://127.0.0.1:4566")
    # Then the file's keys are used, in order, and none is minted
    assert keys == ["dk1.sensor-1.1.aaa", "dk1.sensor-2.1.bbb"]


def test_a_deployment_gets_keys_only_from_a_file() -> None:
    # Given a deployed API (not loopback) and no keys file
    # When the load test gets its keys
    # Then it mints none (it never writes to a deployment's keyring)
    assert device_keys_for("https://abc.execute-api.eu-west-1.amazonaws.com", None, 10, "http://127.0.0.1:9") == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "holds no key"),
        ("dk1.sensor-1.1.aaa\nnot a key\n", "line 2 of"),
    ],
)
def test_a_bad_keys_file_is_one_line(tmp_path: Path, content: str, expected: str) -> None:
    # Given an empty keys file, or one with a line that is not a key
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(content)
    # When the load test reads it
    # Then it refuses with one line naming the file and what is wrong
    with pytest.raises(DeviceKeysError, match=expected) as refused:
        device_keys_for(MAKE_RUN_HOST, keys_file, 10, "http://127.0.0.1:4566")
    assert str(keys_file) in str(refused.value) and "\n" not in str(refused.value)


def test_a_missing_keys_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DeviceKeysError, match="cannot read the device keys file"):
        read_device_keys(tmp_path / "absent.txt")


def test_make_run_not_answering_names_the_port_tried() -> None:
    # Given nothing listening where the load test looks for make run's keyring
    endpoint = f"http://127.0.0.1:{free_port()}"
    # When it tries to mint keys
    with pytest.raises(DeviceKeysError) as refused:
        device_keys_for(MAKE_RUN_HOST, None, 10, endpoint)
    # Then it says so in one line naming the endpoint and how to point it at make run's
    assert f"nothing answers at {endpoint}" in str(refused.value) and "MOTO_PORT" in str(refused.value)


def test_no_devices_asked_mints_none_and_asks_nothing() -> None:
    # Given LOADTEST_DEVICES=0 against a local target where nothing answers on the AWS port
    # When the load test gets its keys
    # Then it has none (the API key alone) and did not need make run's keyring
    assert device_keys_for(MAKE_RUN_HOST, None, 0, f"http://127.0.0.1:{free_port()}") == []
