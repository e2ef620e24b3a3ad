"""The device keys the load test sends (DEVICE_AUTH=on): each Locust user is one device with its own key.

Where the keys come from, first match wins:

1. ``--device-keys PATH`` (make: ``LOADTEST_DEVICE_KEYS``): one key per line, as ``make device-key`` prints them
   (``dk1.<deviceId>.<generation>.<signature>``). The only way against a deployment: mint them there with
   ``python -m tools.ops.devices --stack ... issue <device id>``.
2. Against `make run` only (a loopback ``--host``): ``--devices N`` keys (make: ``LOADTEST_DEVICES``, default 10),
   minted by the load test itself from make run's keyring on its embedded AWS (``--aws-endpoint-url``, make:
   MOTO_PORT), as ``make device-key`` does (tools/ops/devices.py's issue). When make run has no keyring
   (DEVICE_AUTH=off), or with ``--devices 0``, no keys: the load test sends the API key alone, as before.

No key is ever printed or written to the results: a key is a credential.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from tools.ops import devices
from tools.ops.cli import NOTHING_ANSWERS, is_loopback, nothing_answers_locally, session_options

# Device ids the load test mints: recognisable in the lake (deviceId column) and within DEVICE_ID's 64 characters.
DEVICE_ID_FORMAT: Final = "loadtest-{:04d}"
DEFAULT_DEVICES: Final = 10


class DeviceKeysError(RuntimeError):
    """The load test cannot get the keys it needs; the message says why and what to do (one line)."""


def read_device_keys(path: Path) -> list[str]:
    """The keys of ``path``, one a line (blank lines and surrounding spaces ignored), in file order."""
    try:
        keys = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise DeviceKeysError(f"cannot read the device keys file {path}: {exc.strerror or exc}") from exc
    if not keys:
        raise DeviceKeysError(f"the device keys file {path} holds no key (one key per line)")
    not_keys = [number for number, key in enumerate(keys, 1) if not key.startswith("dk1.") or " " in key]
    if not_keys:
        raise DeviceKeysError(
            f"line {not_keys[0]} of {path} is not a device key (dk1.<deviceId>.<generation>.<signature>, "
            "as make device-key prints it)"
        )
    return keys


def mint_device_keys(count: int, aws_endpoint_url: str, secretsmanager: Any = None) -> list[str]:
    """``count`` keys for devices loadtest-0001.., from make run's keyring at ``aws_endpoint_url``; [] when make
    run has no keyring (DEVICE_AUTH=off)."""
    if count < 0:
        raise DeviceKeysError(f"--devices (LOADTEST_DEVICES) must be 0 (mint none) or more, got {count}")
    if count == 0:  # a local target that is not make run, or the API key alone on purpose
        return []
    if secretsmanager is None:
        import boto3

        secretsmanager = boto3.Session(**session_options(aws_endpoint_url, None)).client(
            "secretsmanager", endpoint_url=aws_endpoint_url
        )
    store = devices.KeyringStore(secretsmanager, devices.LOCAL_SECRET_NAME)
    try:
        return [devices.issue(store, DEVICE_ID_FORMAT.format(number)) for number in range(1, count + 1)]
    except devices.DevicesError as exc:
        cause = exc.__cause__
        if (
            isinstance(cause, ClientError)
            and cause.response.get("Error", {}).get("Code") == "ResourceNotFoundException"
        ):
            return []  # make run without DEVICE_AUTH=on has no keyring: the API key alone, as before
        raise DeviceKeysError(f"cannot mint device keys from make run's keyring: {exc}") from exc
    except NOTHING_ANSWERS as exc:
        raise DeviceKeysError(
            f"cannot mint device keys: {nothing_answers_locally(aws_endpoint_url, '--aws-endpoint-url')}"
        ) from exc
    except (BotoCoreError, ClientError) as exc:
        raise DeviceKeysError(f"cannot mint device keys from make run's keyring at {aws_endpoint_url}: {exc}") from exc


def device_keys_for(host: str, keys_file: Path | None, count: int, aws_endpoint_url: str) -> list[str]:
    """The keys the load test's users take, one each in turn (see the module docstring); [] for none."""
    if keys_file is not None:
        return read_device_keys(keys_file)
    if not is_loopback(host):
        return []  # a deployment: keys only from a file (the load test never writes to a deployment's keyring)
    return mint_device_keys(count, aws_endpoint_url)


def key_of_user(keys: Sequence[str], user_number: int) -> str | None:
    """User ``user_number`` (0, 1, ...) is device ``user_number`` of the keys; more users than keys share them
    in turn (each key is still one device). None without keys."""
    return keys[user_number % len(keys)] if keys else None
