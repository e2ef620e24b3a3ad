"""`API_KIND=http DEVICE_AUTH=on make run` as a user drives it: keys minted and revoked with the make targets
the banner shows, HTTP on the runner's port, the stored objects read back from its embedded AWS."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import pathlib
import subprocess
import time
from collections.abc import Iterator

import pytest

from local_pipeline.local_settings import REPO_ROOT
from pipeline.contract import BINARY_JSON_CONTENT_TYPE, PAYLOADS_PATH
from tests.local.conftest import LocalRun, start_local_pipeline, wait_for

TTL_SECONDS = 2


@pytest.fixture(scope="module")
def device_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = start_local_pipeline(
        tmp_path_factory.mktemp("device-keys"),
        API_KIND="http",
        DEVICE_AUTH="on",
        DEVICE_REVOCATION_TTL_SECONDS=str(TTL_SECONDS),
        MAX_WORKERS="2",
    )
    yield run
    run.stop()
    run.kill_leftovers()


def make(run: LocalRun, target: str, device: str) -> subprocess.CompletedProcess[str]:
    """``make -s <target> DEVICE=<device> MOTO_PORT=<the runner's>``, as the banner shows it."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MAKE"))}
    return subprocess.run(
        ["make", "-s", target, f"DEVICE={device}", f"MOTO_PORT={run.aws_port}"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def mint(run: LocalRun, device: str) -> str:
    result = make(run, "device-key", device)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def send(
    run: LocalRun,
    headers: list[tuple[str, str]],
    body: bytes | None = None,
    path: str = PAYLOADS_PATH,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    if body is None:
        body = json.dumps({"version": "1.0", "token": "t", "data": [{"seq": 1}]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", run.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def bearer(key: str, content_type: str = "application/json") -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {key}"), ("Content-Type", content_type)]


def test_the_banner_shows_how_to_mint_a_key_and_a_curl_that_uses_it(device_run: LocalRun) -> None:
    banner = device_run.output()
    assert f"KEY=$(make -s device-key DEVICE=device-1 MOTO_PORT={device_run.aws_port})" in banner
    assert '-H "Authorization: Bearer $KEY"' in banner and "x-api-key" not in banner
    assert f"make revoke-device DEVICE=device-1 MOTO_PORT={device_run.aws_port}" in banner


def test_a_minted_key_gets_202_and_the_stored_envelopes_carry_its_device(device_run: LocalRun) -> None:
    key = mint(device_run, "sensor-a")
    status, _, body = send(
        device_run, bearer(key), json.dumps({"version": "1", "token": "t", "data": [{"n": 7}]}).encode()
    )
    assert status == 202, body
    request_id = json.loads(body)["requestId"]
    stored = wait_for(
        lambda: [o for o in device_run.objects().values() if o["requestId"] == request_id], 30, "the stored payload"
    )
    assert stored[0]["deviceId"] == "sensor-a" and stored[0]["payload"] == {"n": 7}
    assert list(stored[0]) == ["id", "requestId", "receivedAt", "version", "token", "deviceId", "payload"]


def test_no_key_is_a_401_and_a_tampered_key_a_403(device_run: LocalRun) -> None:
    key = mint(device_run, "sensor-b")
    status, headers, body = send(device_run, [("Content-Type", "application/json")])
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["type"] == "urn:ingest-pipeline:problem:unauthorized"
    tampered = key.replace("sensor-b", "sensor-c")
    status, _, body = send(device_run, bearer(tampered))
    assert (status, json.loads(body)["type"]) == (403, "urn:ingest-pipeline:problem:invalid-key")


@pytest.mark.parametrize(
    ("name", "authorization", "status"),
    [
        ("empty", [("Authorization", "")], 401),
        ("8 KiB", [("Authorization", "Bearer " + "A" * 8192)], 401),
        ("non-ASCII", [("Authorization", "Bearer dk1.sensor-b.1.é")], 401),
        ("two Authorization headers", None, 401),
        ("another deployment's key", [("Authorization", "Bearer dk1.sensor-b.1." + "Q" * 43)], 403),
    ],
)
def test_hostile_credentials_as_a_client_sends_them(
    device_run: LocalRun, name: str, authorization: list[tuple[str, str]] | None, status: int
) -> None:
    if authorization is None:
        key = mint(device_run, "sensor-b")
        authorization = [("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {key}")]
    answer, headers, body = send(device_run, [*authorization, ("Content-Type", "application/json")])
    assert answer == status, (name, body)
    assert headers["content-type"] == "application/problem+json", name


def test_after_make_revoke_device_its_key_gets_403_within_the_ttl_while_another_device_keeps_202(
    device_run: LocalRun,
) -> None:
    # Given two devices whose keys work
    revoked, other = mint(device_run, "sensor-revoked"), mint(device_run, "sensor-kept")
    assert send(device_run, bearer(revoked))[0] == 202
    assert send(device_run, bearer(other))[0] == 202

    # When the operator revokes one with the make target
    result = make(device_run, "revoke-device", "sensor-revoked")
    assert result.returncode == 0, result.stderr
    revoked_at = time.monotonic()

    # Then within the TTL (plus a second of slack for this shared machine) its key gets a 403 in every ingest
    # environment, while the other device keeps getting 202
    def refused_everywhere() -> bool:
        return all(send(device_run, bearer(revoked))[0] == 403 for _ in range(8))  # spread over the environments

    wait_for(refused_everywhere, TTL_SECONDS + 1.0, "the revocation to reach every ingest environment", 0.1)
    assert time.monotonic() - revoked_at <= TTL_SECONDS + 1.0
    assert all(send(device_run, bearer(other))[0] == 202 for _ in range(4))
    assert json.loads(send(device_run, bearer(revoked))[2])["type"] == "urn:ingest-pipeline:problem:revoked-device"


def test_the_http_api_body_rules_hold_locally(device_run: LocalRun) -> None:
    key = mint(device_run, "sensor-gzip")
    document = {"version": "1", "token": "t", "data": [{"ü": "€"}]}
    compressed = gzip.compress(json.dumps(document).encode())
    # gzip sent as application/json: passed as text, so refused with how to send it
    status, _, body = send(device_run, [*bearer(key), ("Content-Encoding", "gzip")], compressed)
    assert (status, json.loads(body)["type"]) == (415, "urn:ingest-pipeline:problem:gzip-needs-binary-content-type")
    # gzip sent as the binary JSON type: byte-exact, accepted
    headers = [*bearer(key, BINARY_JSON_CONTENT_TYPE), ("Content-Encoding", "gzip")]
    assert send(device_run, headers, compressed)[0] == 202
    # the trailing slash is the same resource; another method is the ingest's 405
    assert send(device_run, bearer(key), path=f"{PAYLOADS_PATH}/")[0] == 202
    status, headers_back, _ = send(device_run, bearer(key), method="PUT")
    assert status == 405 and headers_back["allow"] == "POST"


def test_an_oversized_body_gets_the_http_apis_own_413(device_run: LocalRun) -> None:
    # Over the HTTP API's 10 MB payload quota: answered before the ingest, in the HTTP API's bare format
    connection = http.client.HTTPConnection("127.0.0.1", device_run.port, timeout=30)
    try:
        connection.putrequest("POST", PAYLOADS_PATH)
        connection.putheader("Content-Length", str(11 * 1024 * 1024))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read()) == {"message": "Request Entity Too Large"}
    finally:
        connection.close()


def test_the_sdk_delivers_gzip_batches_through_the_http_api_front_door(
    device_run: LocalRun, tmp_path: pathlib.Path
) -> None:
    # Given the endpoint SDK (client/) with a minted device key, gzip on (its default)
    from ingest_client import Client

    key = mint(device_run, "sdk-device")
    client = Client(
        f"http://127.0.0.1:{device_run.port}{PAYLOADS_PATH}",
        version="1.0",
        token="sdk-gzip",
        device_key=key,
        spool_dir=tmp_path / "spool",
    )
    # When it sends 30 payloads and flushes
    try:
        for seq in range(30):
            client.send({"seq": seq})
        assert client.flush(60), client.stats()
        stats = client.stats()
    finally:
        client.close(5)
    # Then every batch was accepted (an HTTP API hands application/json over as text, which breaks gzip bytes:
    # the SDK must send a type it passes byte-exact), nothing was rejected, and every payload is stored
    assert stats.rejected == 0 and stats.acknowledged == 30
    stored = wait_for(
        lambda: (
            (found := [o for o in device_run.objects().values() if o["token"] == "sdk-gzip"])
            and len(found) >= 30
            and found
        ),
        60,
        "the SDK's payloads",
    )
    assert sorted(o["payload"]["seq"] for o in stored) == list(range(30))
    assert {o["deviceId"] for o in stored} == {"sdk-device"}
