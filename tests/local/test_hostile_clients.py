"""`make run` against clients that are not polite: odd paths, raw sockets, broken framing, a crowd.

Every request here goes over a real socket to the runner on 127.0.0.1, as the issue's clients did.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest

from tests.conftest import collection
from tests.local.conftest import LocalRun

KEY = "local-dev-key"
PROBLEM = "application/problem+json"


def exchange(run: LocalRun, raw: bytes, timeout: float = 15) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` as is, keep the write side open, and read ONE answer (status, headers, body).
    A server that waits for more bytes instead of answering makes this time out."""
    with socket.create_connection(("127.0.0.1", run.port), timeout=timeout) as connection:
        connection.sendall(raw)
        return read_answer(connection)


def read_answer(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = connection.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a full answer: {answer!r}")
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), status_line
    headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split(" ", 2)[1]), headers, body[:length]


def post(path: str, body: bytes, key: str | None, extra: str = "") -> bytes:
    key_header = f"x-api-key: {key}\r\n" if key is not None else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{key_header}{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def chunked_post(framing: bytes) -> bytes:
    return (
        b"POST /v1/payloads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"x-api-key: " + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + framing
    )


def assert_problem(
    status: int, headers: dict[str, str], body: bytes, expected_status: int, title: str
) -> dict[str, Any]:
    """The handler's RFC 9457 shape: type, title, status, detail, and a requestId that is the header's."""
    assert status == expected_status, body
    assert headers["content-type"] == PROBLEM, headers
    problem = json.loads(body)
    assert problem["status"] == expected_status and problem["title"] == title, problem
    assert problem["type"].startswith("urn:ingest-pipeline:problem:") and problem["detail"], problem
    assert problem["requestId"] and problem["requestId"] == headers["x-amzn-requestid"], (problem, headers)
    return problem


# --- the API key ---------------------------------------------------------------------------------

PATH_VARIANTS = [
    "/v1/payloads/",
    "//v1/payloads",
    "/v1//payloads",
    "/v1/payloads//",
    "/V1/PAYLOADS",
    "/v1/Payloads",
    "/v1/payload%73",
    "/v1%2Fpayloads",
    "/v1/payloads?x=1",
    "/v1/payloads/?x=1",
    "/v1/payloads/.",
    "/v1/./payloads",
    "/v1/payloads#frag",
    "http://127.0.0.1/v1/payloads",
    "http://127.0.0.1/v1/payloads/",
]


@pytest.mark.parametrize("key", [None, "wrong-key", ""], ids=["no key", "wrong key", "empty key"])
def test_every_path_variant_is_refused_without_the_api_key(local_run: LocalRun, key: str | None) -> None:
    body = json.dumps({**collection(1), "token": "must-not-be-stored"}).encode()
    for path in PATH_VARIANTS:
        # Given a POST to a variant of the payload path, without a valid key
        # When it reaches the front
        status, headers, answer = exchange(local_run, post(path, body, key))
        # Then it is a 403 problem, whatever the handler would have made of the path
        problem = assert_problem(status, headers, answer, 403, "Forbidden")
        assert problem["type"] == "urn:ingest-pipeline:problem:forbidden", (path, problem)
    # And nothing of those requests was stored
    assert not [r for r in local_run.objects().values() if r.get("token") == "must-not-be-stored"]


@pytest.mark.parametrize("path", ["//v1/payloads", "/v1//payloads", "///v1/payloads"])
def test_doubled_slashes_get_404_as_on_the_deployed_api(local_run: LocalRun, path: str) -> None:
    # Given a POST with a valid key to the payload path with a slash doubled
    body = json.dumps({**collection(1), "token": "doubled-slash"}).encode()
    # When it reaches the front, Then the path reaches the router as sent: 404, as the deployed API answers
    problem = assert_problem(*exchange(local_run, post(path, body, KEY)), 404, "Not Found")
    assert problem["type"] == "urn:ingest-pipeline:problem:not-found", problem
    # And nothing of it is stored
    assert not [r for r in local_run.objects().values() if r.get("token") == "doubled-slash"]


def test_expect_100_continue_gets_a_100_or_the_refusal_at_once(local_run: LocalRun) -> None:
    body = json.dumps(collection(2)).encode()
    head = (
        b"POST /v1/payloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n" % len(body)
    )
    # Given a client that waits for 100 Continue before sending its body, without the key
    # When it sends its head, Then it gets the 403 at once (its body is not wanted)
    assert_problem(*exchange(local_run, head + b"x-api-key: nope\r\n\r\n"), 403, "Forbidden")
    # And with the key it gets 100 Continue, then the answer to the body it sends next
    with socket.create_connection(("127.0.0.1", local_run.port), timeout=15) as connection:
        connection.sendall(head + f"x-api-key: {KEY}\r\n\r\n".encode())
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += connection.recv(1)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        connection.sendall(body)
        status, _, answer = read_answer(connection)
    assert status == 202 and json.loads(answer)["accepted"] == 2, answer


# --- framing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        (b"-1\r\n", 400),  # was: read until EOF, past every limit
        (b"-0\r\n\r\n", 400),
        (b"+5\r\nhello\r\n0\r\n\r\n", 400),
        (b"0x5\r\nhello\r\n0\r\n\r\n", 400),
        (b"zz\r\n", 400),
        (b"\r\n", 400),  # no size at all
        (b"0000000000000000000005\r\nhello\r\n", 400),  # more than 20 hex digits (h11's bound)
        (b"5\r\nhelloXX", 400),  # data not followed by CRLF
        (b"5\nhello\r\n", 400),  # size line ended by a bare LF
        (b"5" + b" " * 70_000, 400),  # an endless size line
        (b"5;" + b"x" * 70_000, 400),  # an endless chunk extension
    ],
    ids=lambda value: repr(value)[:40],
)
def test_bad_chunked_framing_is_refused_at_once(local_run: LocalRun, framing: bytes, status: int) -> None:
    # Given a chunked POST whose framing is broken (and a client that keeps its side open)
    # When the front reads it, Then it answers at once (no waiting for more bytes) with a problem
    problem = assert_problem(
        *exchange(local_run, chunked_post(framing), timeout=10),
        status,
        "Bad Request" if status == 400 else "Content Too Large",
    )
    assert problem["detail"], problem


@pytest.mark.parametrize(
    "size_line", [b"FFFFFFFF\r\n", b"1ffffffff\r\n", b"a00001\r\n"], ids=["4 GiB", "8 GiB", "10 MiB + 1"]
)
def test_a_chunk_above_api_gateways_limit_is_refused_once_the_limit_is_read(
    local_run: LocalRun, size_line: bytes
) -> None:
    # Given a chunk announced above API Gateway's 10 MB, and a client that goes on sending its bytes
    with socket.create_connection(("127.0.0.1", local_run.port), timeout=30) as connection:
        connection.sendall(chunked_post(size_line))
        block = b"x" * 65536
        try:
            for _ in range(10 * 1024 * 1024 // len(block) + 2):  # 10 MiB and a bit
                connection.sendall(block)
        except OSError:
            pass  # the front answered and closed before the client was done: what we wait for
        # When the front has read 10 MiB of it, Then it answers 413 without reading the rest
        status, headers, body = read_answer(connection)
    problem = assert_problem(status, headers, body, 413, "Content Too Large")
    assert problem["type"] == "urn:ingest-pipeline:problem:body-too-large", problem


def test_a_well_formed_chunked_body_is_accepted(local_run: LocalRun) -> None:
    # Given a valid collection sent in three chunks, with a chunk extension and a trailer
    body = json.dumps(collection(3)).encode()
    parts = [body[:10], body[10:20], body[20:]]
    framing = b"".join(b"%x;note=1\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\nX-Trailer: 1\r\n\r\n"
    # When it is POSTed, Then it is accepted like a Content-Length body
    status, _, answer = exchange(local_run, chunked_post(framing))
    assert status == 202 and json.loads(answer)["accepted"] == 3, answer


@pytest.mark.parametrize(
    "headers",
    [
        "Content-Length: +5\r\n",
        "Content-Length: 1_0\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ],
)
def test_ambiguous_body_framing_is_refused(local_run: LocalRun, headers: str) -> None:
    raw = f"POST /v1/payloads HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\n{headers}\r\nhello".encode()
    assert_problem(*exchange(local_run, raw, timeout=10), 400, "Bad Request")


# --- errors of the HTTP parser (h11) and the front's own limits ----------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "title"),
    [
        (b"GARBAGE\r\n\r\n", 400, "Bad Request"),
        (b"GET /\r\n\r\n", 400, "Bad Request"),  # HTTP/0.9 form: had no status line
        (b"POST /v1/payloads HTTP/1.1 extra\r\n\r\n", 400, "Bad Request"),
        (b"POST /v1/payloads HTTP/9.9\r\n\r\n", 505, "HTTP Version Not Supported"),
        (b"BREW /v1/payloads HTTP/1.1\r\nHost: x\r\n\r\n", 405, "Method Not Allowed"),
        (b"POST /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "URI Too Long"),
        (
            b"POST /v1/payloads HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n",
            431,
            "Request Header Fields Too Large",
        ),
        (
            b"POST /v1/payloads HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            "Request Header Fields Too Large",
        ),
    ],
    ids=["garbage", "http/0.9", "three words", "version", "unknown method", "414", "101 headers", "huge header"],
)
def test_errors_of_the_http_parser_are_problem_json_with_a_request_id(
    local_run: LocalRun, raw: bytes, status: int, title: str
) -> None:
    assert_problem(*exchange(local_run, raw), status, title)


@pytest.mark.parametrize(
    ("data", "pointer", "slug"),
    [
        ('[{"a":1},{"a":2},{"a":3},{"a":4,"a":5}]', "/data/3", "duplicate-key"),
        ('[{"a":1},{"b":{"c":[1,{"x":1,"x":2}]}}]', "/data/1", "duplicate-key"),
        ('[{"a":1},{"a":2},{"v":NaN}]', "/data/2", "non-finite-number"),
        ('[{"a":1},{"v":[-Infinity]}]', "/data/1", "non-finite-number"),
    ],
)
def test_duplicate_keys_and_nan_name_their_payload(local_run: LocalRun, data: str, pointer: str, slug: str) -> None:
    # Given a collection where one payload has a duplicate key or a NaN/Infinity literal
    body = ('{"version":"1.0","token":"t","data":' + data + "}").encode()
    # When it is POSTed, Then the 400 problem points at that payload
    problem = assert_problem(*exchange(local_run, post("/v1/payloads", body, KEY)), 400, "Bad Request")
    assert (problem["type"], problem["pointer"]) == (f"urn:ingest-pipeline:problem:{slug}", pointer), problem


# --- a crowd ------------------------------------------------------------------------------------


def test_200_simultaneous_connections_all_get_an_http_answer(local_run: LocalRun) -> None:
    # Given 200 clients that connect at the same moment and each POST one collection
    clients = 200
    start = threading.Barrier(clients)
    answers: list[tuple[int, dict[str, str], bytes] | str] = [""] * clients
    request = post("/v1/payloads", json.dumps(collection(1)).encode(), KEY, "Connection: close\r\n")

    def client(number: int) -> None:
        start.wait()
        try:
            with socket.create_connection(("127.0.0.1", local_run.port), timeout=120) as connection:
                connection.sendall(request)
                answers[number] = read_answer(connection)
        except (OSError, AssertionError) as exc:
            answers[number] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    # Then every one gets an HTTP answer: accepted, or 503 + Retry-After when the local queue is full
    failures = [a for a in answers if isinstance(a, str)]
    assert not failures, f"{len(failures)} of {clients} got no answer, e.g. {failures[:3]}"
    statuses = [a[0] for a in answers if not isinstance(a, str)]
    assert set(statuses) <= {202, 503}, statuses
    for _status, headers, body in (a for a in answers if not isinstance(a, str) and a[0] == 503):
        assert headers["retry-after"].isdigit(), headers
        assert json.loads(body)["type"] == "urn:ingest-pipeline:problem:local-queue-full", body
    assert 202 in statuses


def test_a_slow_client_does_not_hold_up_others(local_run: LocalRun) -> None:
    # Given a client that sent half a request and went quiet
    with socket.create_connection(("127.0.0.1", local_run.port), timeout=10) as idle:
        idle.sendall(b"POST /v1/payloads HTTP/1.1\r\nContent-Length: 100\r\n")
        # When another client posts, Then it is answered at once
        started = time.monotonic()
        status, _, _ = exchange(local_run, post("/v1/payloads", json.dumps(collection(1)).encode(), KEY))
        assert status == 202 and time.monotonic() - started < 10
