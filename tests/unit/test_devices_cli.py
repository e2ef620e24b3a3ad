"""`python -m tools.ops.devices` against a (moto) Secrets Manager holding a keyring, as an operator runs it:
what it prints where, what it changes, and what it refuses."""

from __future__ import annotations

import io
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from local_pipeline.local_settings import REPO_ROOT
from pipeline.device_auth import Keyring, new_keyring_document
from tests.local.test_tools_against_make_run import bare_environment
from tools.ops import devices
from tools.ops.cli import MISSING_CREDENTIALS, MISSING_REGION, aws_problem_exit

SECRET = "cli-device-keys"


@pytest.fixture
def keyring(aws: None) -> str:
    boto3.client("secretsmanager").create_secret(
        Name=SECRET, SecretString=json.dumps(new_keyring_document(secrets.token_urlsafe(48)))
    )
    return SECRET


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = devices.main(["--secret-id", SECRET, *args], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def stored() -> Keyring:
    text = boto3.client("secretsmanager").get_secret_value(SecretId=SECRET)["SecretString"]
    return Keyring.from_document(json.loads(text))


def test_issue_prints_the_key_alone_on_stdout_and_says_what_it_did_on_stderr(keyring: str) -> None:
    code, out, err = run("issue", "device-1")
    assert code == 0
    assert re.fullmatch(r"dk1\.device-1\.1\.[A-Za-z0-9_-]{43}\n", out)  # `KEY=$(... issue d)` just works
    assert "device-1" in err and out.strip() not in err
    assert stored().verify(out.strip()) == "device-1"


def test_revoke_list_rotate_and_retire_as_an_operator_would(keyring: str) -> None:
    _, old_key, _ = run("issue", "device-1")

    # revoke: one write for many devices; repeating is harmless
    assert run("revoke", "device-1", "device-2")[0] == 0
    code, _, err = run("revoke", "device-2")
    assert code == 0 and "already revoked: device-2" in err
    assert stored().revoked == {"device-1": 1, "device-2": 1}

    # a revoked device gets no new key
    code, out, err = run("issue", "device-1")
    assert (code, out) == (1, "") and "revoked" in err

    # list: generations and revoked devices, never a key
    code, out, _ = run("list")
    assert code == 0 and "signing generation  1" in out and "device-1  (keys of generation <= 1)" in out
    assert stored().keys[1].decode() not in out and old_key.strip() not in out

    # rotate: generation 2 signs, 1 still verifies; a third generation waits for a retirement
    assert run("rotate")[0] == 0
    assert sorted(stored().keys) == [1, 2] and stored().current == 2
    code, _, err = run("rotate")
    assert code == 1 and "retire 1" in err

    # retire: the current generation cannot be; the old one can, and its revoked devices are forgotten with it
    code, _, err = run("retire", "2")
    assert code == 1 and "signs new keys" in err
    code, _, err = run("retire", "1")
    assert code == 0 and "forgot 2 revoked device(s)" in err
    keyring_now = stored()
    assert (sorted(keyring_now.keys), sorted(keyring_now.retired), keyring_now.revoked) == ([2], [1], {})


def test_a_bad_device_id_is_refused_in_one_line(keyring: str) -> None:
    code, out, err = run("issue", "a.b")
    assert (code, out) == (1, "") and err.count("\n") == 1 and "device id" in err


def test_a_keyring_that_would_outgrow_one_secret_is_refused_before_writing(keyring: str) -> None:
    # Given enough revocations to fill the 65,536-byte secret with 64-character ids
    ids = [f"{n:064d}" for n in range(900)]
    assert run("revoke", *ids)[0] == 0
    size = len(json.dumps(stored().to_document(), separators=(",", ":")))
    assert size < devices.SECRET_MAX_BYTES

    # When more would not fit, nothing is written and the operator learns how to make room
    more = [f"{n:064d}" for n in range(900, 1000)]
    code, _, err = run("revoke", *more)
    assert code == 1 and "rotate" in err and "retire" in err
    assert len(stored().revoked) == 900


def test_no_keyring_named_is_one_line(aws: None) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert devices.main(["list"], out=out, err=err) == 1
    assert err.getvalue().count("\n") == 1 and "--stack" in err.getvalue()


def test_aws_refusing_or_the_set_up_missing_or_unreachable_is_one_line_and_its_exit_status() -> None:
    # The one place devices and redrive turn a botocore error into their line and exit status
    refused = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetSecretValue")
    for error, status, line in [
        (refused, 1, "devices: AWS refused GetSecretValue: AccessDeniedException: no\n"),
        (NoRegionError(), 2, f"devices: {MISSING_REGION}\n"),
        (NoCredentialsError(), 2, f"devices: {MISSING_CREDENTIALS}\n"),
        (EndpointConnectionError(endpoint_url="https://secretsmanager.eu-west-1.amazonaws.com/"), 2, None),
    ]:
        err = io.StringIO()
        assert aws_problem_exit("devices", error, err, None) == status
        assert line is None or err.getvalue() == line


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["--secret-id", SECRET, "list"], "no AWS region"),
        (["--secret-id", SECRET, "--region", "eu-west-1", "list"], "no AWS credentials"),
    ],
)
def test_missing_region_or_credentials_is_one_line_as_the_other_tools_say_it(
    tmp_path: Path, args: list[str], missing: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.ops.devices", *args],
        cwd=REPO_ROOT,
        env=bare_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"devices: {missing}"), result.stderr


def test_the_readmes_revocation_capacity_is_what_fits_one_secret() -> None:
    readme = (REPO_ROOT / "docs" / "DEVICE_KEYS.md").read_text()
    assert f"{devices.revocations_that_fit(64):,} revoked devices of 64-character ids" in readme
    assert f"{devices.revocations_that_fit(36):,} of\n  36-character UUIDs" in readme


def test_revocations_batch_into_one_write_and_a_second_write_within_10_minutes_is_warned(
    keyring: str, tmp_path: Path
) -> None:
    # Given a file of device ids (one a line, a comment and a blank line among them)
    ids = tmp_path / "ids.txt"
    ids.write_text("# stolen batch 7\nsensor-1\n\nsensor-2\nsensor-3\n")
    client = boto3.client("secretsmanager")
    versions_before = len(client.list_secret_version_ids(SecretId=SECRET)["Versions"])

    # When they and one more are revoked in one command
    code, _, err = run("revoke", "sensor-0", "--from-file", str(ids))

    # Then all four are revoked by ONE new secret version, and (the keyring was created just now) the write is warned
    assert code == 0 and set(stored().revoked) == {"sensor-0", "sensor-1", "sensor-2", "sensor-3"}
    assert len(client.list_secret_version_ids(SecretId=SECRET)["Versions"]) == versions_before + 1
    assert "once every 10 minutes" in err and "batch revocations" in err

    # And nothing to revoke is no write and no warning; no ids at all is a one-line refusal
    code, _, err = run("revoke", "sensor-1")
    assert code == 0 and "warning" not in err
    code, _, err = run("revoke")
    assert code == 1 and "name the devices" in err


def test_the_help_tells_operators_to_batch_revocations() -> None:
    for command in (["--help"], ["revoke", "--help"]):
        help_text = subprocess.run(
            [sys.executable, "-m", "tools.ops.devices", *command], capture_output=True, text=True, check=True
        ).stdout
        words = " ".join(help_text.split())  # argparse wraps lines
        assert "ONE write" in words and "once every 10 minutes" in words, command
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert 'make revoke-device DEVICE="device-1 device-2"' in makefile
