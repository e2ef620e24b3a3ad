"""`make loadtest` then `make verify` against `API_KIND=http DEVICE_AUTH=on make run`: Locust's users are devices
with keys it minted from make run's keyring, and every acknowledged payload is stored once, with its device's id.

Locust is an optional dependency (requirements-loadtest.txt, installed by the first `make loadtest`): without it
this module is skipped."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.verify import main as verify
from local_pipeline.local_settings import REPO_ROOT
from tests.local.conftest import BUCKET, LocalRun, start_local_pipeline

# Not importorskip: importing locust monkey-patches the whole test process with gevent; only look for it.
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed (make loadtest installs it)", allow_module_level=True)

USERS = 3


@pytest.fixture(scope="module")
def device_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = start_local_pipeline(
        tmp_path_factory.mktemp("loadtest-devices"), API_KIND="http", DEVICE_AUTH="on", MAX_WORKERS="2"
    )
    yield run
    run.stop()
    run.kill_leftovers()


def locust(run: LocalRun, results: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The locust command make loadtest runs, short: USERS users at 3 req/s for 6 s."""
    command = [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless", "--host", run.url]
    command += ["-u", str(USERS), "-r", str(USERS), "--run-time", "6s", "--stop-timeout", "10", "--rps", "3"]
    command += ["--payloads", "2", "--payload-bytes", "100", "--ack-dir", str(results), *extra]
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LOADTEST_")}
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120)


def test_the_load_test_authenticates_as_devices_and_verify_finds_them_all(
    device_run: LocalRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given API_KIND=http DEVICE_AUTH=on make run, where a request without a device key is answered 401
    results = tmp_path / "results"
    # When the load test runs against it, minting one key per user from make run's keyring
    run = locust(device_run, results, "--devices", str(USERS), "--aws-endpoint-url", device_run.aws_url)
    # Then every request was acknowledged (none 401)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"loadtest: {USERS} device keys, one per user" in run.stderr, run.stderr[-3000:]
    acks = [json.loads(line) for file in results.glob("acks-*.jsonl") for line in file.read_text().splitlines()]
    assert acks and {ack["status"] for ack in acks} == {202}, acks[:3]
    # And verify finds every acknowledged payload stored once, carrying one of the USERS devices' ids
    status = verify(
        ["--bucket", BUCKET, "--endpoint-url", device_run.aws_url, "--acks", str(results), "--wait", "60"]
        + ["--json", str(tmp_path / "verify.json")]
    )
    report = json.loads((tmp_path / "verify.json").read_text())
    assert status == 0, capsys.readouterr()
    assert (report["lost"], report["duplicated"], report["requests_not_acknowledged"]) == (0, 0, 0)
    assert (report["device_ids"], report["payloads_without_device_id"]) == (USERS, 0)
    assert report["payloads_stored"] == sum(ack["accepted"] for ack in acks)


def test_a_keys_file_wins_over_minting(device_run: LocalRun, tmp_path: Path) -> None:
    # Given a file holding one device's key, minted as make device-key does
    key = subprocess.run(
        [sys.executable, "-m", "tools.ops.devices", "--endpoint-url", device_run.aws_url, "issue", "from-a-file"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(key + "\n")
    results = tmp_path / "results"
    # When the load test runs with it (and make run's keyring to mint from as well)
    run = locust(device_run, results, "--device-keys", str(keys_file), "--aws-endpoint-url", device_run.aws_url)
    # Then every user sent the file's key: all acknowledged, and the stored payloads carry that one device's id
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "loadtest: 1 device keys" in run.stderr, run.stderr[-3000:]
    status = verify(
        ["--bucket", BUCKET, "--endpoint-url", device_run.aws_url, "--acks", str(results), "--wait", "60"]
        + ["--json", str(tmp_path / "verify.json")]
    )
    report = json.loads((tmp_path / "verify.json").read_text())
    assert status == 0 and (report["lost"], report["device_ids"]) == (0, 1), report
