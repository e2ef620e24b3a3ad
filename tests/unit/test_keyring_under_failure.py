"""The device keyring when Secrets Manager fails or throttles (issue 26 item 2): a container keeps serving its last
good keyring for DEVICE_KEYRING_STALE_SECONDS past the TTL, then answers 503; it reads the secret at most once a
second, one read at a time; and a credential that is not a device key is a 401 without any read."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from botocore.stub import Stubber

from pipeline import aws_clients
from pipeline.device_auth import (
    DeviceKeysUnavailable,
    Keyring,
    KeyringUnreadable,
    SecretKeyring,
    authenticate,
    new_keyring_document,
)
from pipeline.problems import Problem

DOCUMENT = new_keyring_document("k" * 64)
VALID = ["Bearer " + Keyring.from_document(DOCUMENT).issue("device-1")]
NOT_A_KEY = ["Bearer not-a-key"]
TTL, STALE = 60, 300


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FlakySecret:
    """GetSecretValue as the keyring sees it: answers the document, or raises what an outage or a throttle gives,
    recording when each call came (by the fake clock)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.failing = False
        self.calls: list[float] = []

    def __call__(self, name: str) -> object:
        self.calls.append(self.clock.now)
        if self.failing:
            raise KeyringUnreadable("GetSecretValue failed: ThrottlingException (Rate exceeded)")
        return DOCUMENT


class Signals:
    def __init__(self) -> None:
        self.failed: list[tuple[float | None, float]] = []
        self.recovered: list[int] = []
        self.stale = 0

    def refresh_failed(self, error: str, keyring_age_seconds: float | None, usable_for_seconds: float) -> None:
        self.failed.append((keyring_age_seconds, usable_for_seconds))

    def refreshed_after_failures(self, failed_attempts: int) -> None:
        self.recovered.append(failed_attempts)

    def stale_served(self) -> None:
        self.stale += 1


def answer(call: Callable[[], str]) -> int:
    """The status a client would get: 202 when the device is authenticated, else the problem's status."""
    try:
        call()
    except Problem as problem:
        return problem.status
    except DeviceKeysUnavailable as error:
        return error.problem.status
    return 202


def calls_per_second(calls: list[float], slack: float = 0.0) -> int:
    """The most calls inside any one second (a sliding window, not whole-second buckets); ``slack``: what a real
    clock read inside the fake GetSecretValue may lag the keyring's own reading of it."""
    return max((sum(1 for other in calls if start <= other < start + 1 - slack) for start in calls), default=0)


def test_an_outage_costs_at_most_one_read_a_second_and_valid_keys_keep_202_inside_the_stale_window() -> None:
    # Given a container that read the keyring at t=0 (TTL 60 s, stale window 300 s)
    clock, signals = Clock(), Signals()
    secret = FlakySecret(clock)
    keyring = SecretKeyring("keyring", TTL, STALE, fetch=secret, signals=signals, clock=clock)
    start = clock.now
    assert answer(lambda: authenticate(VALID, keyring, 1)) == 202

    # When GetSecretValue fails from t=30 on, and 1,000 valid requests and 1,000 `Bearer not-a-key` arrive evenly
    # over t=60..359.7, all past the TTL and inside the window
    secret.failing = True
    outage_calls = len(secret.calls)
    statuses, junk = set(), set()
    for n in range(1_000):
        clock.now = start + TTL + n * 0.3
        statuses.add(answer(lambda: authenticate(VALID, keyring, 1)))
        junk.add(answer(lambda: authenticate(NOT_A_KEY, keyring, 1)))

    # Then every valid key kept its 202, every malformed one got 401, and the secret was asked at most once a
    # second (in fact far less: the reads back off to one every 16 s)
    assert statuses == {202} and junk == {401}
    during = secret.calls[outage_calls:]
    assert 1 <= len(during) <= 300 and calls_per_second(during) <= 1
    assert len(during) <= 30
    # and the on-call sees each failed read and every request served stale
    assert len(signals.failed) == len(during) and all(usable > 0 for _, usable in signals.failed)
    assert signals.stale == 1_000


def test_past_the_stale_window_valid_keys_get_503_and_malformed_ones_still_401_without_a_read() -> None:
    # Given a container whose keyring read at t=0 could not be refreshed since
    clock, signals = Clock(), Signals()
    secret = FlakySecret(clock)
    keyring = SecretKeyring("keyring", TTL, STALE, fetch=secret, signals=signals, clock=clock)
    start = clock.now
    authenticate(VALID, keyring, 1)
    secret.failing = True

    # When requests come past TTL + stale window
    statuses = []
    for n in range(1_000):
        clock.now = start + TTL + STALE + n * 0.01
        statuses.append(answer(lambda: authenticate(VALID, keyring, 1)))
    calls_before_junk = len(secret.calls)
    junk = {answer(lambda: authenticate(NOT_A_KEY, keyring, 1)) for _ in range(100)}

    # Then the container fails closed (503, the Retry-After given), still reading at most once a second,
    # and malformed credentials are 401 and cost no read at all
    assert set(statuses) == {503}
    assert calls_per_second(secret.calls) <= 1
    assert junk == {401} and len(secret.calls) == calls_before_junk
    with pytest.raises(DeviceKeysUnavailable) as unavailable:
        authenticate(VALID, keyring, 7)
    assert unavailable.value.problem.headers["Retry-After"] == "7"
    assert unavailable.value.problem.slug == "device-auth-unavailable"
    assert signals.failed[-1][1] == 0.0  # reported as no longer usable


def test_a_stale_window_of_zero_fails_closed_as_soon_as_the_ttl_passes_and_a_read_fails() -> None:
    clock = Clock()
    secret = FlakySecret(clock)
    keyring = SecretKeyring("keyring", TTL, 0, fetch=secret, clock=clock)
    authenticate(VALID, keyring, 1)
    secret.failing = True
    clock.now += TTL - 0.001
    assert answer(lambda: authenticate(VALID, keyring, 1)) == 202  # still fresh: no read
    clock.now += 0.002
    assert answer(lambda: authenticate(VALID, keyring, 1)) == 503


def test_a_cold_container_during_an_outage_answers_503_and_reads_once_a_second_at_most() -> None:
    # Given a new container while GetSecretValue throttles
    clock = Clock()
    secret = FlakySecret(clock)
    secret.failing = True
    keyring = SecretKeyring("keyring", TTL, STALE, fetch=secret, clock=clock)

    # When 1,000 requests come within 10 s
    statuses = set()
    for _ in range(1_000):
        clock.now += 0.01
        statuses.add(answer(lambda: authenticate(VALID, keyring, 1)))

    # Then each gets 503, and the reads back off: 1, 2, 4 s apart (4 in 10 s, not 1,000)
    assert statuses == {503}
    assert len(secret.calls) == 4 and calls_per_second(secret.calls) == 1


def test_when_the_secret_is_readable_again_the_container_recovers_and_a_revocation_takes_effect() -> None:
    # Given a container serving stale after failed reads
    clock, signals = Clock(), Signals()
    secret = FlakySecret(clock)
    keyring = SecretKeyring("keyring", TTL, STALE, fetch=secret, signals=signals, clock=clock)
    authenticate(VALID, keyring, 1)
    secret.failing = True
    clock.now += TTL + 1
    assert answer(lambda: authenticate(VALID, keyring, 1)) == 202

    # When the secret is readable again, now with device-1 revoked
    revoked = {**DOCUMENT, "revoked": {"device-1": 1}}
    secret.failing = False
    keyring._fetch = lambda name: revoked  # type: ignore[method-assign]
    clock.now += 20  # past any backoff

    # Then the next request reads it, the revocation is a 403, and the recovery is reported
    assert answer(lambda: authenticate(VALID, keyring, 1)) == 403
    assert signals.recovered and signals.recovered[0] >= 1


def test_threads_share_one_read_at_a_time_and_serve_the_held_keyring_meanwhile() -> None:
    # Given a real clock, a TTL of 1 s, and a slow, failing GetSecretValue (each read takes 50 ms)
    reads_in_flight, most_in_flight, calls = 0, 0, []
    lock = threading.Lock()
    failing = threading.Event()

    def slow_fetch(name: str) -> object:
        nonlocal reads_in_flight, most_in_flight
        with lock:
            reads_in_flight += 1
            most_in_flight = max(most_in_flight, reads_in_flight)
            calls.append(time.monotonic())
        time.sleep(0.05)
        with lock:
            reads_in_flight -= 1
        if failing.is_set():
            raise KeyringUnreadable("GetSecretValue failed: read timeout")
        return DOCUMENT

    keyring = SecretKeyring("keyring", 1, 60, fetch=slow_fetch)
    authenticate(VALID, keyring, 1)
    failing.set()
    statuses: list[int] = []

    def client() -> None:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            statuses.append(answer(lambda: authenticate(VALID, keyring, 1)))

    # When 8 threads send requests for 2.5 s (past the TTL, inside the stale window)
    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every request got its 202, only one read was ever in flight, and at most one started per second
    assert set(statuses) == {202} and len(statuses) > 100
    assert most_in_flight == 1
    # (slack: a thread can be preempted between the keyring's clock read and the fake's, on a loaded machine)
    assert calls_per_second(calls[1:], slack=0.2) <= 1 and len(calls) - 1 <= 3


def test_a_throttled_get_secret_value_is_a_failed_read_and_a_malformed_secret_too(aws: None) -> None:
    # Given the real Secrets Manager client, stubbed at the botocore layer: a throttle, then a non-JSON secret
    client = aws_clients.secrets_client()
    clock, signals = Clock(), Signals()
    keyring = SecretKeyring("keyring", TTL, STALE, signals=signals, clock=clock)
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", "ThrottlingException", "Rate exceeded", 400)
        stub.add_response("get_secret_value", {"SecretString": "not json", "Name": "keyring"})

        # Then each is a 503 with nothing held, and each is reported as a failed read
        assert answer(lambda: authenticate(VALID, keyring, 1)) == 503
        clock.now += 1
        assert answer(lambda: authenticate(VALID, keyring, 1)) == 503
    assert len(signals.failed) == 2


def test_the_secrets_client_gives_up_within_seconds_not_botocore_s_60(aws: None) -> None:
    # A slow endpoint must not hold an invocation until the function's timeout (issue 26 item 2)
    config = aws_clients.secrets_client().meta.config
    assert config.connect_timeout <= 2 and config.read_timeout <= 2
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}  # the first request and one retry
    assert aws_clients.SECRETS_WORST_CASE_SECONDS < 10  # INGEST_TIMEOUT_SECONDS' default


def test_a_slow_read_does_not_stretch_the_ttl_a_revocation_is_served_within() -> None:
    # Given a GetSecretValue that takes 5 s (the clock moves while it answers)
    clock = Clock()
    calls: list[float] = []

    def slow(name: str) -> object:
        calls.append(clock.now)
        clock.now += 5
        return DOCUMENT

    keyring = SecretKeyring("keyring", TTL, STALE, fetch=slow, clock=clock)
    started = clock.now
    authenticate(VALID, keyring, 1)

    # When the TTL has passed since the read STARTED (it ended 5 s later)
    clock.now = started + TTL

    # Then the next request reads again: the version it read may predate a revocation written during the read
    authenticate(VALID, keyring, 1)
    assert calls == [started, started + TTL]


def test_the_docs_quote_the_keyring_s_bounds_as_the_code_sets_them() -> None:
    # docs/DEVICE_KEYS.md and the runbook tell operators how long a read may hold a request, how far reads back off
    # and how long a stale keyring is served: those figures are the code's and the stack's defaults
    from pathlib import Path

    from infra.config import PipelineConfig
    from pipeline.device_auth import MAX_REFRESH_BACKOFF_SECONDS

    root = Path(__file__).resolve().parents[2]
    readme, runbook = (root / "docs" / "DEVICE_KEYS.md").read_text(), (root / "docs" / "RUNBOOK.md").read_text()
    knobs = (root / "docs" / "CONFIGURATION.md").read_text()
    config = PipelineConfig()
    window = f"{config.DEVICE_REVOCATION_TTL_SECONDS} + {config.DEVICE_KEYRING_STALE_SECONDS} s"
    backoff = f"one read every {MAX_REFRESH_BACKOFF_SECONDS:.0f} s"
    timeouts = (
        f"{aws_clients.SECRETS_CONNECT_TIMEOUT_SECONDS} s connect and {aws_clients.SECRETS_READ_TIMEOUT_SECONDS} s read"
    )
    assert window in readme and window in runbook
    assert backoff in readme and backoff in runbook
    assert f"gives up within {aws_clients.SECRETS_WORST_CASE_SECONDS} s ({timeouts} timeouts" in readme
    assert f"| `DEVICE_KEYRING_STALE_SECONDS` | {config.DEVICE_KEYRING_STALE_SECONDS} |" in knobs
