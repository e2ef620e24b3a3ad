"""send(): what it refuses, what it writes, how batches are cut, and what a request carries."""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import FakeEndpoint

from ingest_client import Client, Limits
from ingest_client.limits import MAX_BODY_BYTES


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1, 2], "must be a dict"),
        ({"when": object()}, "not JSON-serialisable"),
        ({"temp": math.nan}, "not JSON-serialisable"),
        ({"text": "\ud800"}, "lone surrogate"),
        ({"blob": "x" * 300_000}, "the limit is 262144"),
    ],
)
def test_an_invalid_payload_raises_valueerror_and_nothing_is_spooled(
    endpoint: FakeEndpoint, make_client: Callable[..., Client], payload: Any, reason: str
) -> None:
    # Given a client
    client = make_client(endpoint.url)
    # When a payload the server would refuse is sent
    with pytest.raises(ValueError, match=reason):
        client.send(payload)
    # Then nothing was spooled, and a good payload after it is delivered alone
    assert client.stats().spooled == 0
    client.send({"ok": 1})
    assert client.flush(10)
    assert endpoint.accepted_payloads() == [{"ok": 1}]


def test_a_payload_of_exactly_max_payload_bytes_is_accepted(
    endpoint: FakeEndpoint, make_client: Callable[..., Client]
) -> None:
    client = make_client(endpoint.url, limits=Limits(max_payload_bytes=1000))
    at_limit = {"b": "x" * (1000 - len('{"b":""}'))}
    client.send(at_limit)
    with pytest.raises(ValueError):
        client.send({"b": "x" * (1001 - len('{"b":""}'))})
    assert client.flush(10)
    assert endpoint.accepted_payloads() == [at_limit]


def test_batches_are_cut_within_every_limit(endpoint: FakeEndpoint, make_client: Callable[..., Client]) -> None:
    # Given limits of 7 payloads and 2,000 bytes per body
    limits = Limits(max_payloads=7, max_body_bytes=2000, max_payload_bytes=600)
    client = make_client(endpoint.url, limits=limits)
    # When 60 payloads of mixed sizes are sent
    sent = [{"n": index, "pad": "y" * (index * 37 % 500)} for index in range(60)]
    for payload in sent:
        client.send(payload)
    assert client.flush(20)
    # Then every body is within the limits, and everything arrived once, in order
    for request in endpoint.received:
        decoded = json.dumps(request.body, separators=(",", ":"), ensure_ascii=False).encode()
        assert len(request.payloads) <= 7
        assert len(decoded) <= 2000
    assert endpoint.accepted_payloads() == sent
    assert len(endpoint.received) < 60  # batched, not one request per payload


def test_full_batches_with_the_default_limits(endpoint: FakeEndpoint, make_client: Callable[..., Client]) -> None:
    client = make_client(endpoint.url)
    for index in range(1200):
        client.send({"n": index})
    big = [{"n": index, "blob": "z" * 200_000} for index in range(12)]
    for payload in big:
        client.send(payload)
    assert client.flush(20)
    sizes = [len(request.payloads) for request in endpoint.received]
    assert sizes[:2] == [500, 500]
    bodies = [len(json.dumps(request.body, separators=(",", ":")).encode()) for request in endpoint.received]
    assert max(bodies) <= MAX_BODY_BYTES
    assert len(endpoint.accepted_payloads()) == 1212


def test_a_request_carries_gzip_the_key_and_the_credential(
    endpoint: FakeEndpoint, make_client: Callable[..., Client]
) -> None:
    client = make_client(endpoint.url, api_key="key-1", device_key="dev.abc")
    client.send({"temp": 21.5})
    assert client.flush(10)
    request = endpoint.received[0]
    assert request.headers["content-encoding"] == "gzip"
    # A +json type every front door passes byte-exact (an HTTP API would hand application/json over as text)
    assert request.headers["content-type"] == "application/vnd.ingest-pipeline+json"
    assert request.headers["x-api-key"] == "key-1"
    assert request.headers["authorization"] == "Bearer dev.abc"
    assert 1 <= len(request.key) <= 255 and request.key.isprintable() and request.key.isascii()
    assert request.body == {"version": "1.0", "token": "device-1", "data": [{"temp": 21.5}]}


def test_gzip_can_be_turned_off(endpoint: FakeEndpoint, make_client: Callable[..., Client]) -> None:
    client = make_client(endpoint.url, gzip=False)
    client.send({"temp": 21.5})
    assert client.flush(10)
    assert "content-encoding" not in endpoint.received[0].headers
    assert endpoint.received[0].raw == b'{"version":"1.0","token":"device-1","data":[{"temp":21.5}]}'


def test_send_from_many_threads_delivers_each_payload_once(
    endpoint: FakeEndpoint, make_client: Callable[..., Client]
) -> None:
    client = make_client(endpoint.url)

    def produce(thread: int) -> None:
        for index in range(400):
            client.send({"thread": thread, "n": index})

    threads = [threading.Thread(target=produce, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(30)
    delivered = endpoint.accepted_payloads()
    assert len(delivered) == 3200
    assert {(payload["thread"], payload["n"]) for payload in delivered} == {
        (thread, index) for thread in range(8) for index in range(400)
    }
    assert client.stats().acknowledged == 3200


def test_stats_and_logging_never_print(
    endpoint: FakeEndpoint,
    make_client: Callable[..., Client],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ingest_client")
    client = make_client(endpoint.url)
    for index in range(3):
        client.send({"n": index})
    assert client.flush(10)
    stats = client.stats()
    assert (stats.spooled, stats.in_flight, stats.acknowledged, stats.rejected, stats.last_error) == (0, 0, 3, 0, None)
    assert any("acknowledged" in record.getMessage() for record in caplog.records)
    assert capsys.readouterr() == ("", "")


def test_version_and_token_are_checked_when_the_client_is_made(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="version"):
        Client("http://127.0.0.1:9/v1/payloads", version="", token="t", spool_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="token is longer"):
        Client("http://127.0.0.1:9/v1/payloads", version="1", token="t" * 1025, spool_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="http"):
        Client("ftp://example/v1/payloads", version="1", token="t", spool_dir=tmp_path / "c")


def test_send_after_close_raises(endpoint: FakeEndpoint, make_client: Callable[..., Client]) -> None:
    from ingest_client import ClientClosedError

    client = make_client(endpoint.url)
    client.send({"n": 1})
    assert client.close(10)
    with pytest.raises(ClientClosedError):
        client.send({"n": 2})
    assert endpoint.accepted_payloads() == [{"n": 1}]
