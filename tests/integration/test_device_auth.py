"""DEVICE_AUTH=on through the real ingest handler, with the keyring in (moto) Secrets Manager: what a client
sees for each credential, what reaches the queue, and how revocation and rotation take effect."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

import ingest_handler
from pipeline.device_auth import new_keyring_document
from tests.conftest import JSON_HEADERS, HttpResult, Pipeline, _clear_caches, collection
from tests.infra.test_security import every_log_line
from tools.ops.devices import KeyringStore, issue, retire, revoke, rotate

SECRET_NAME = "test-device-keys"
TTL_SECONDS = 1


@pytest.fixture
def keyring(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> KeyringStore:
    """DEVICE_AUTH=on, the keyring secret as the stack creates it (one generation), a 1 s revocation TTL."""
    client = boto3.client("secretsmanager")
    client.create_secret(Name=SECRET_NAME, SecretString=json.dumps(new_keyring_document(secrets.token_urlsafe(48))))
    for name, value in {
        "DEVICE_AUTH": "on",
        "DEVICE_KEYS_SECRET": SECRET_NAME,
        "DEVICE_REVOCATION_TTL_SECONDS": str(TTL_SECONDS),
    }.items():
        monkeypatch.setenv(name, value)
    _clear_caches()
    return KeyringStore(client, SECRET_NAME)


def post(pipeline: Pipeline, authorization: str | None, method: str = "POST", **overrides: Any) -> HttpResult:
    headers = dict(JSON_HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization
    return pipeline.post(collection(2, **overrides), headers=headers, method=method)


def test_a_minted_key_gets_202_and_every_envelope_records_its_device_after_the_token(
    pipeline: Pipeline, keyring: KeyringStore
) -> None:
    # Given a key minted for device-7
    key = issue(keyring, "device-7")

    # When the device posts with it
    response = post(pipeline, f"Bearer {key}")

    # Then it is accepted, and each queued envelope names the device right after the token
    assert response.status == 202 and response.body["accepted"] == 2
    bodies = [message["Body"] for message in pipeline.receive()]
    assert len(bodies) == 2
    for body in bodies:
        envelope = json.loads(body)
        assert envelope["deviceId"] == "device-7"
        assert list(envelope) == ["id", "requestId", "receivedAt", "version", "token", "deviceId", "payload"]
        assert key not in body  # the credential is never stored


def test_without_device_auth_the_envelope_has_no_device_id(pipeline: Pipeline) -> None:
    response = post(pipeline, None)
    assert response.status == 202
    assert all("deviceId" not in json.loads(m["Body"]) for m in pipeline.receive())


def hostile_credentials(keyring: KeyringStore) -> dict[str, tuple[str | None, int, str]]:
    """Each hostile Authorization value -> (value, status, problem slug) a client must see."""
    key = issue(keyring, "device-1")
    other = new_keyring_document(secrets.token_urlsafe(48))  # another deployment's keyring
    from pipeline.device_auth import Keyring

    foreign = Keyring.from_document(other).issue("device-1")
    prefix, device, generation, signature = key.split(".")
    return {
        "missing": (None, 401, "unauthorized"),
        "empty": ("", 401, "unauthorized"),
        "scheme only": ("Bearer", 401, "unauthorized"),
        "8 KiB": ("Bearer " + "A" * 8192, 401, "unauthorized"),
        "non-ASCII": (f"Bearer {key[:-1]}é", 401, "unauthorized"),
        "basic scheme": (f"Basic {key}", 401, "unauthorized"),
        "two keys in one header (HTTP API joins repeats)": (f"Bearer {key}, Bearer {key}", 401, "unauthorized"),
        "device id altered": (f"Bearer {prefix}.device-2.{generation}.{signature}", 403, "invalid-key"),
        "generation altered": (f"Bearer {prefix}.{device}.2.{signature}", 403, "invalid-key"),
        "signature altered": (f"Bearer {key[:-2]}{'AB' if key[-2:] != 'AB' else 'CD'}", 403, "invalid-key"),
        "another deployment's key": (f"Bearer {foreign}", 403, "invalid-key"),
    }


def test_every_hostile_credential_gets_its_answer_and_nothing_is_enqueued(
    pipeline: Pipeline, keyring: KeyringStore
) -> None:
    for name, (authorization, status, slug) in hostile_credentials(keyring).items():
        # When a client sends it
        response = post(pipeline, authorization)

        # Then it sees the status and the problem type, a 401 tells it the scheme, and nothing is queued
        assert (response.status, response.body["type"]) == (status, f"urn:ingest-pipeline:problem:{slug}"), name
        assert response.headers["Content-Type"] == "application/problem+json", name
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="ingest-pipeline"'), name
        credential = (authorization or "").partition(" ")[2]
        assert not credential or credential[:16] not in json.dumps(response.body), name  # never echoed
    assert pipeline.queue_depth() == 0


def test_two_authorization_headers_are_refused_even_when_both_are_valid(
    pipeline: Pipeline, keyring: KeyringStore
) -> None:
    # Given a REST event carrying two Authorization headers (multiValueHeaders keeps both; headers the last)
    key = issue(keyring, "device-1")
    from local_pipeline.events import api_gateway_event

    event = api_gateway_event("POST", "/v1/payloads", json.dumps(collection(1)).encode(), {**JSON_HEADERS})
    event["headers"]["Authorization"] = f"Bearer {key}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {key}", f"Bearer {issue(keyring, 'device-2')}"]

    # When it reaches the ingest
    response = ingest_handler.lambda_handler(event, _context())

    # Then it is a 401 (which device would it be?), and nothing is queued
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["detail"] == "send exactly one Authorization header"
    assert pipeline.queue_depth() == 0


def _context() -> Any:
    from local_pipeline.events import LambdaContext

    return LambdaContext(function_name="ingest")


def test_the_key_is_checked_before_the_method_and_before_the_body(pipeline: Pipeline, keyring: KeyringStore) -> None:
    # A GET without a key is a 401 (not the 405 a keyed GET gets), as REST checks x-api-key first
    assert post(pipeline, None, method="GET").status == 401
    assert post(pipeline, f"Bearer {issue(keyring, 'device-1')}", method="GET").status == 405
    # and a malformed body without a key never reaches the validator
    assert pipeline.post(b"{", headers=JSON_HEADERS).status == 401
    # while an unknown path is a 404 whatever the key (it is no resource of ours)
    assert pipeline.post(collection(1), headers=JSON_HEADERS, path="/other").status == 404


def wait_for(check: Callable[[], bool], seconds: float) -> float:
    """Seconds until ``check`` holds; fails after ``seconds``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_revoked_device_is_refused_within_the_ttl_and_no_other_device_notices(
    pipeline: Pipeline, keyring: KeyringStore
) -> None:
    # Given two devices whose keys work (the keyring is now cached in this warm container)
    stolen, other = issue(keyring, "device-stolen"), issue(keyring, "device-ok")
    assert post(pipeline, f"Bearer {stolen}").status == 202
    assert post(pipeline, f"Bearer {other}").status == 202

    # When the stolen one is revoked
    assert revoke(keyring, ["device-stolen"]) == ["device-stolen"]

    # Then within the TTL its key gets a 403 naming the revocation, while the other device keeps getting 202
    wait_for(lambda: post(pipeline, f"Bearer {stolen}").status == 403, TTL_SECONDS + 1.0)
    refused = post(pipeline, f"Bearer {stolen}")
    assert (refused.status, refused.body["type"]) == (403, "urn:ingest-pipeline:problem:revoked-device")
    assert post(pipeline, f"Bearer {other}").status == 202
    # and a revoked device gets no new key
    with pytest.raises(Exception, match="revoked"):
        issue(keyring, "device-stolen")


def test_rotation_overlaps_until_the_previous_generation_is_retired(pipeline: Pipeline, keyring: KeyringStore) -> None:
    # Given a key of generation 1, then a rotation
    old_key = issue(keyring, "device-1")
    assert rotate(keyring) == 2
    new_key = issue(keyring, "device-1")
    assert new_key.split(".")[2] == "2"
    _clear_caches()  # a fresh container: no wait for the TTL

    # Then both generations work
    assert post(pipeline, f"Bearer {old_key}").status == 202
    assert post(pipeline, f"Bearer {new_key}").status == 202

    # When generation 1 is retired, its key is refused within the TTL, naming why; the new key still works
    retire(keyring, 1)
    wait_for(lambda: post(pipeline, f"Bearer {old_key}").status == 403, TTL_SECONDS + 1.0)
    assert post(pipeline, f"Bearer {old_key}").body["type"] == "urn:ingest-pipeline:problem:retired-key"
    assert post(pipeline, f"Bearer {new_key}").status == 202


def test_an_unreadable_keyring_is_a_503_with_retry_after_and_nothing_is_enqueued(
    pipeline: Pipeline, keyring: KeyringStore
) -> None:
    # Given the secret is gone (deleted, or the role lost its grant)
    key = issue(keyring, "device-1")
    keyring.client.delete_secret(SecretId=SECRET_NAME, ForceDeleteWithoutRecovery=True)

    # Then a client gets a 503 it may retry (a dependency is unavailable, not its fault), and nothing is queued
    response = post(pipeline, f"Bearer {key}")
    assert (response.status, response.body["type"]) == (503, "urn:ingest-pipeline:problem:device-auth-unavailable")
    assert response.headers["Retry-After"] == "1"
    assert pipeline.queue_depth() == 0


def test_an_idempotency_key_is_scoped_to_the_authenticated_device(pipeline: Pipeline, keyring: KeyringStore) -> None:
    # Given two devices sending the same body with the same Idempotency-Key
    one, two = issue(keyring, "device-1"), issue(keyring, "device-2")

    def keyed(key: str) -> HttpResult:
        headers = {**JSON_HEADERS, "Authorization": f"Bearer {key}", "Idempotency-Key": "retry-123"}
        return pipeline.post(collection(1), headers=headers)

    # Then a retry from one device maps to its first request, and the other device's request is its own
    first, retry, other = keyed(one), keyed(one), keyed(two)
    assert first.body["requestId"] == retry.body["requestId"] != other.body["requestId"]


def test_no_device_key_or_signing_key_reaches_the_logs(
    pipeline: Pipeline, keyring: KeyringStore, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger=ingest_handler.logger.name)
    key = issue(keyring, "device-1")
    signing_key = keyring.read().keys[1].decode()
    foreign = f"{key[:-4]}AAAA"

    assert post(pipeline, f"Bearer {key}").status == 202
    assert post(pipeline, f"Bearer {foreign}").status == 403
    assert post(pipeline, f"Bearer {key}x").status == 401

    logged = every_log_line(caplog) + "\n".join(capfd.readouterr())
    assert "request accepted" in logged and "request rejected" in logged
    assert '"deviceId": "device-1"' in logged or "'deviceId': 'device-1'" in logged  # the proven id is logged
    for secret in (key, foreign, signing_key, key.rsplit(".", 1)[1]):
        assert secret not in logged


@pytest.mark.parametrize("flush_seconds", [0, 60], ids=["metrics per invocation", "metrics per 60 s window"])
def test_a_keyring_outage_serves_stale_then_503_and_a_malformed_key_is_401_throughout(
    pipeline: Pipeline,
    keyring: KeyringStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    flush_seconds: int,
) -> None:
    # Given a warm ingest holding the keyring (TTL 1 s, stale window 1 s), counting its GetSecretValue calls
    from pipeline import aws_clients, observability
    from tests.integration.test_telemetry import emf_metrics

    monkeypatch.setenv("DEVICE_KEYRING_STALE_SECONDS", "1")
    monkeypatch.setattr(observability.counts, "flush_seconds", flush_seconds)
    _clear_caches()
    reads: list[float] = []
    aws_clients.secrets_client().meta.events.register(
        "before-call.secrets-manager.GetSecretValue", lambda **_: reads.append(time.monotonic())
    )
    key = issue(keyring, "device-1")
    assert post(pipeline, f"Bearer {key}").status == 202
    read_at = reads[-1]

    # When the secret becomes unreadable (deleted: every GetSecretValue fails) and the TTL passes
    keyring.client.delete_secret(SecretId=SECRET_NAME, ForceDeleteWithoutRecovery=True)
    time.sleep(max(0.0, read_at + TTL_SECONDS + 0.05 - time.monotonic()))
    capsys.readouterr()
    stale_answers, junk_answers = [], []
    while time.monotonic() < read_at + TTL_SECONDS + 0.8:
        stale_answers.append(post(pipeline, f"Bearer {key}").status)
        junk_answers.append(post(pipeline, "Bearer not-a-key").status)

    # Then inside the stale window the valid key keeps its 202 and `Bearer not-a-key` gets 401, with one read
    assert set(stale_answers) == {202} and set(junk_answers) == {401}
    assert len([t for t in reads if t > read_at]) == 1

    # And past TTL + stale window the valid key gets 503 + Retry-After (keyring-unavailable), still 401 for junk
    # (and past the 1 s backoff after the failed read, so this request reads again and fails again)
    time.sleep(max(0.0, read_at + TTL_SECONDS + 1 + 0.05 - time.monotonic(), reads[-1] + 1.05 - time.monotonic()))
    refused = post(pipeline, f"Bearer {key}")
    assert (refused.status, refused.body["type"]) == (503, "urn:ingest-pipeline:problem:device-auth-unavailable")
    assert refused.headers["Retry-After"] == "1"
    assert post(pipeline, "Bearer not-a-key").status == 401
    assert pipeline.queue_depth() == (1 + len(stale_answers)) * 2  # 2 payloads per accepted request, nothing else

    # And the on-call sees it: a WARNING per failed read (no key in it), the stale requests, the failed reads,
    # and the rejections by reason
    if flush_seconds:
        observability.counts.flush()
    out = capsys.readouterr().out
    metrics = emf_metrics(out)
    assert sum(metrics[("KeyringStaleServed", ())]) == len(stale_answers)
    assert sum(metrics[("KeyringRefreshFailed", ())]) == len([t for t in reads if t > read_at])
    assert sum(metrics[("RequestsRejected", (("reason", "unauthenticated"),))]) == len(junk_answers) + 1
    assert sum(metrics[("RequestsRejected", (("reason", "keyring-unavailable"),))]) == 1
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("serving the last good keyring" in message for message in warnings)
    assert any("past its stale window" in message for message in warnings)
    logged = every_log_line(caplog) + out
    assert key not in logged and key.rsplit(".", 1)[1] not in logged


def test_each_refusal_is_counted_under_its_own_reason(
    pipeline: Pipeline, keyring: KeyringStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a key of generation 1, then a rotation: a valid key and a to-be-revoked device's key of generation 2
    from tests.integration.test_telemetry import emf_metrics

    old_key = issue(keyring, "device-1")
    rotate(keyring)
    valid, revoked_key = issue(keyring, "device-1"), issue(keyring, "device-gone")
    # When generation 1 is retired and device-gone revoked, in a fresh container
    retire(keyring, 1)
    revoke(keyring, ["device-gone"])
    _clear_caches()
    capsys.readouterr()
    answers = {
        "revoked": post(pipeline, f"Bearer {revoked_key}").status,
        "retired": post(pipeline, f"Bearer {old_key}").status,
        "forged": post(pipeline, f"Bearer {valid[:-2]}{'AB' if valid[-2:] != 'AB' else 'CD'}").status,
        "missing": post(pipeline, None).status,
    }

    # Then each status is counted under its own reason
    metrics = emf_metrics(capsys.readouterr().out)
    assert answers == {"revoked": 403, "retired": 403, "forged": 403, "missing": 401}
    reasons = {dimensions[0][1]: sum(values) for (name, dimensions), values in metrics.items() if dimensions}
    assert reasons == {"forbidden-revoked": 1, "forbidden-retired": 1, "forbidden-invalid": 1, "unauthenticated": 1}
