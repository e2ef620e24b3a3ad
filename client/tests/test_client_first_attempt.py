"""Ingest-First-Attempt (issue 26, item 8): every attempt of a batch states the same first attempt, so the
pipeline stores every copy in one hour partition under one set of ids; a batch older than the SDK's retry
horizon (23 h, inside the pipeline's RETRY_HORIZON_HOURS of 24) gets a new first attempt, as does a batch
file an earlier SDK version wrote without one."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable

from conftest import Answer, FakeEndpoint, Received, accept, problem

from ingest_client import Client
from ingest_client.sender import format_first_attempt

RFC_3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def first_attempts(endpoint: FakeEndpoint) -> list[str]:
    return [request.headers["ingest-first-attempt"] for request in endpoint.received]


def test_every_attempt_states_the_same_first_attempt(
    endpoint: FakeEndpoint, make_client: Callable[..., Client]
) -> None:
    # Given an endpoint that fails twice, then accepts
    def flaky(request: Received, index: int) -> Answer:
        return problem(503, "x", "later", **{"Retry-After": "1"}) if index < 2 else accept(request, index)

    endpoint.responder = flaky
    before = time.time()
    client = make_client(endpoint.url)
    client.send({"n": 1})
    assert client.flush(20)
    # Then the three attempts state one moment, RFC 3339 UTC, when the batch was cut
    stated = first_attempts(endpoint)
    assert len(stated) == 3 and len(set(stated)) == 1 and RFC_3339_UTC.fullmatch(stated[0])
    assert format_first_attempt(int(before * 1000)) <= stated[0] <= format_first_attempt(int(time.time() * 1000))


def test_the_first_attempt_survives_a_restart(
    endpoint: FakeEndpoint, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    # Given a batch sent once (refused with 503) by a client that then closes
    endpoint.responder = lambda request, index: problem(503, "x", "later", **{"Retry-After": "30"})
    client = make_client(endpoint.url)
    client.send({"n": 1})
    endpoint.wait_for(lambda: len(endpoint.received) == 1)
    client.close(timeout=0.1)
    # When a new client on the same spool sends it again
    endpoint.responder = accept
    again = make_client(endpoint.url)
    assert again.flush(20)
    # Then the retry states the first attempt's moment, with the same key
    assert len(set(first_attempts(endpoint))) == 1
    assert len({request.key for request in endpoint.received}) == 1


def spooled_batch(tmp_path: Path) -> Path:
    [path] = sorted((tmp_path / "spool" / "batches").glob("*.batch"))
    return path


def rewrite_header(path: Path, change: Callable[[dict[str, object]], None]) -> None:
    header_line, _, body = path.read_bytes().partition(b"\n")
    header = json.loads(header_line)
    change(header)
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)


def test_a_batch_older_than_the_horizon_and_one_without_a_first_attempt_are_stamped_anew(
    endpoint: FakeEndpoint, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    for change in (
        lambda header: header.update(firstAttemptMs=int((time.time() - 23 * 3600 - 60) * 1000)),  # past the horizon
        lambda header: header.pop("firstAttemptMs"),  # an earlier SDK version's batch file
    ):
        # Given a spooled batch (refused once) whose file then says it is older than the horizon, or says nothing
        endpoint.received.clear()
        endpoint.responder = lambda request, index: problem(503, "x", "later", **{"Retry-After": "30"})
        client = make_client(endpoint.url)
        client.send({"n": 1})
        endpoint.wait_for(lambda: len(endpoint.received) == 1)
        client.close(timeout=0.1)
        rewrite_header(spooled_batch(tmp_path), change)
        # When it is sent again
        endpoint.responder = accept
        before = format_first_attempt(int(time.time() * 1000))
        again = make_client(endpoint.url)
        assert again.flush(20)
        again.close(timeout=1)
        # Then it states a first attempt from now, with the same key and bytes: the pipeline keeps it in one
        # hour again (the README's guarantee says what an earlier stored copy then becomes)
        first, second = endpoint.received
        assert second.headers["ingest-first-attempt"] >= before
        assert (first.key, first.raw) == (second.key, second.raw)
        assert not list((tmp_path / "spool" / "batches").glob("*.batch"))
