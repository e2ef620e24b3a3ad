"""The reaction to every answer: ack, Retry-After, backoff, split, rejected/ (never dropped)."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from typing import Callable

from conftest import Answer, FakeEndpoint, Received, accept, problem

from ingest_client import Client
from ingest_client.sender import backoff_delay, parse_retry_after, retry_after_delay


def test_503_with_retry_after_is_honoured_with_the_same_key_and_bytes(
    endpoint: FakeEndpoint, make_client: Callable[..., Client]
) -> None:
    # Given an endpoint that answers 503 Retry-After: 1 twice, then accepts
    def overloaded(request: Received, index: int) -> Answer:
        return problem(503, "backlog-full", "busy", **{"Retry-After": "1"}) if index < 2 else accept(request, index)

    endpoint.responder = overloaded
    client = make_client(endpoint.url)
    client.send({"n": 1})
    assert client.flush(20)
    first, second, third = endpoint.received
    # Then each retry waited at least Retry-After, and was the same request, byte for byte
    assert second.at - first.at >= 1.0 and third.at - second.at >= 1.0
    assert first.key == second.key == third.key
    assert first.raw == second.raw == third.raw
    assert endpoint.accepted_payloads() == [{"n": 1}]


def test_5xx_and_429_back_off_and_retry_until_accepted(
    endpoint: FakeEndpoint, make_client: Callable[..., Client]
) -> None:
    statuses = [500, 502, 429, 504]

    def flaky(request: Received, index: int) -> Answer:
        return problem(statuses[index], "x", "later") if index < len(statuses) else accept(request, index)

    endpoint.responder = flaky
    client = make_client(endpoint.url)
    client.send({"n": 1})
    assert client.flush(30)
    assert len({request.key for request in endpoint.received}) == 1
    gaps = [later.at - earlier.at for earlier, later in zip(endpoint.received, endpoint.received[1:])]
    assert all(gap >= 0.25 for gap in gaps), gaps  # never a busy loop: even the first retry waits
    assert endpoint.accepted_payloads() == [{"n": 1}]
    assert client.stats().last_error is not None


def test_an_unreachable_endpoint_keeps_everything_spooled_then_delivers(
    tmp_path: Path, make_client: Callable[..., Client], endpoint: FakeEndpoint
) -> None:
    # Given a port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1/payloads"
    client = make_client(dead_url, spool="shared", max_backoff=0.5)
    for index in range(50):
        client.send({"n": index})
    # Then nothing is acknowledged, everything stays spooled, and the error says why
    assert not client.flush(1.5)
    stats = client.stats()
    assert (stats.spooled, stats.acknowledged) == (50, 0)
    assert "no answer" in (stats.last_error or "")
    client.close(0)
    # When the next start of the program reaches the endpoint, it delivers all of it once
    again = make_client(endpoint.url, spool="shared")
    assert again.flush(20)
    assert sorted(payload["n"] for payload in endpoint.accepted_payloads()) == list(range(50))


def test_a_400_is_isolated_to_the_bad_payload_which_lands_in_rejected_with_its_reason(
    endpoint: FakeEndpoint, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    # Given an endpoint that refuses any request containing the payload {"bad": true}
    def strict(request: Received, index: int) -> Answer:
        for position, payload in enumerate(request.payloads):
            if payload.get("bad"):
                return problem(400, "too-deep", f"data[{position}] nests too deep")
        return accept(request, index)

    endpoint.responder = strict
    client = make_client(endpoint.url)
    for index in range(20):
        client.send({"bad": True} if index == 13 else {"n": index})
    # Then flush says not everything was acknowledged...
    assert not client.flush(20)
    # ...the 19 good payloads were accepted, and only the bad one is in rejected/, with the answer
    assert sorted(payload["n"] for payload in endpoint.accepted_payloads()) == [n for n in range(20) if n != 13]
    (rejected,) = (tmp_path / "spool" / "rejected").glob("*.json")
    document = json.loads(rejected.read_text())
    assert document["status"] == 400
    assert document["problem"]["type"] == "urn:ingest-pipeline:problem:too-deep"
    assert document["request"]["data"] == [{"bad": True}]
    stats = client.stats()
    assert (stats.spooled, stats.acknowledged, stats.rejected) == (0, 19, 1)


def test_a_wrong_credential_is_retried_not_rejected(endpoint: FakeEndpoint, make_client: Callable[..., Client]) -> None:
    # A 403 is about the key, not the batch: it stays spooled (and bounded) until the key works
    def forbidden_then_ok(request: Received, index: int) -> Answer:
        return problem(403, "forbidden", "bad key") if index < 2 else accept(request, index)

    endpoint.responder = forbidden_then_ok
    client = make_client(endpoint.url, max_backoff=0.5)
    client.send({"n": 1})
    assert client.flush(20)
    assert client.stats().rejected == 0
    assert endpoint.accepted_payloads() == [{"n": 1}]


def test_retry_after_parsing() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("99999999") == 3600.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-3") is None


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    first = [backoff_delay(0, 60, rng) for _ in range(200)]
    assert min(first) >= 0.25 and max(first) <= 0.5 and len(set(first)) > 100
    assert all(4.0 <= backoff_delay(4, 60, rng) <= 8.0 for _ in range(100))
    assert all(30.0 <= backoff_delay(40, 60, rng) <= 60.0 for _ in range(100))
    assert all(2.0 <= retry_after_delay(2.0, rng) <= 2.4 for _ in range(100))
