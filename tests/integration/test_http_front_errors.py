"""`make run`'s HTTP front answers every error it makes itself by one path: in the HTTP API's own bare shape
where a deployed HTTP API makes that answer (a body over its limit, however it is framed; a failed function),
problem+json with a requestId everywhere else, on both front doors. In process: a real socket, no make run."""

from __future__ import annotations

import http.client
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from local_pipeline.access_log import AccessLog
from local_pipeline.events import ApiShape, HttpApi, RestProxyApi
from local_pipeline.http_front import IngestFront
from local_pipeline.lambda_runtime import FunctionError
from local_pipeline.local_settings import API_GATEWAY_MAX_BODY_BYTES
from pipeline.contract import PAYLOADS_PATH, PROBLEM_CONTENT_TYPE


class FailingIngest:
    """An ingest whose every invocation fails, as a crashed Lambda environment does."""

    concurrency = 1

    def invoke(self, event: dict[str, Any]) -> Any:
        raise FunctionError("RuntimeError", "boom", "Traceback: boom")


@pytest.fixture(params=["rest", "http"])
def front(request: pytest.FixtureRequest) -> Iterator[tuple[str, IngestFront]]:
    api: ApiShape = HttpApi() if request.param == "http" else RestProxyApi("v1", None)
    served = IngestFront(port=0, api=api, ingest=FailingIngest(), log=AccessLog(io.StringIO()))  # type: ignore[arg-type]
    served.start()
    yield request.param, served
    served.stop(timeout_seconds=5)


def post(front: IngestFront, body: bytes, chunked: bool = False) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(front.url.removeprefix("http://"), timeout=30)
    try:
        if chunked:
            connection.putrequest("POST", PAYLOADS_PATH)
            connection.putheader("Transfer-Encoding", "chunked")
            connection.putheader("Content-Type", "application/json")
            connection.endheaders()
            try:
                connection.send(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
            except OSError:
                pass  # the front answered and closed before reading it all
        else:
            connection.request("POST", PAYLOADS_PATH, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, (response.getheader("Content-Type"), json.loads(response.read()))
    finally:
        connection.close()


def test_a_failed_function_is_the_apis_own_answer(front: tuple[str, IngestFront]) -> None:
    # Given an ingest that fails on every invocation
    kind, served = front
    # When a well-formed request reaches it
    status, (content_type, body) = post(served, b'{"version":"1","token":"t","data":[{}]}')
    # Then the REST API's gateway response is problem+json (502); an HTTP API answers its own bare 500
    if kind == "http":
        assert (status, body) == (500, {"message": "Internal Server Error"})
    else:
        assert (status, content_type, body["status"], body["requestId"] != "") == (502, PROBLEM_CONTENT_TYPE, 502, True)


def test_a_chunked_body_over_the_limit_is_the_apis_own_413(front: tuple[str, IngestFront]) -> None:
    # Given a chunked body (no Content-Length to refuse up front) just over API Gateway's 10 MB
    kind, served = front
    # When the front has read the limit
    status, (content_type, body) = post(served, b"x" * (API_GATEWAY_MAX_BODY_BYTES + 1), chunked=True)
    # Then it answers 413 in the API's own shape, as it does for a Content-Length over the limit
    assert status == 413
    if kind == "http":
        assert body == {"message": "Request Entity Too Large"}
    else:
        assert (content_type, body["status"]) == (PROBLEM_CONTENT_TYPE, 413)


def test_the_fronts_own_refusals_are_problem_json_with_their_headers_on_both_front_doors(
    front: tuple[str, IngestFront],
) -> None:
    # Given both front doors
    _, served = front
    connection = http.client.HTTPConnection(served.url.removeprefix("http://"), timeout=30)
    try:
        # When a request uses a method API Gateway has no route for
        connection.request("BREW", PAYLOADS_PATH)
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    # Then the front's own 405 is problem+json with a requestId and its Allow header, whatever the API kind
    assert (response.status, response.getheader("Content-Type"), body["status"]) == (405, PROBLEM_CONTENT_TYPE, 405)
    assert response.getheader("Allow") == "POST" and body["requestId"]
