"""The local stand-in for API Gateway in front of the real ingest handler: HTTP/1.1 on 127.0.0.1:PORT.

HTTP framing is h11's (https://h11.readthedocs.io, python-hyper: a pure-Python, sans-I/O HTTP/1.1
implementation, the parser under httpcore and uvicorn): request line, headers, Content-Length and
chunked bodies, keep-alive. It replaces a hand-written layer on http.server, which collapsed a
leading ``//`` in the path (CPython's open-redirect guard in ``parse_request``) before the project's
code saw it, so ``//v1/payloads`` reached the handler as ``/v1/payloads``. werkzeug's server (here
through moto) was not an option: it is built on the same http.server request handler (so the same
collapse), and its docs call it a development server; its chunked decoder accepts ``0x5`` and ``+5``
as sizes (``int(line, 16)``). This module keeps what is API Gateway's, not HTTP's: the limits
(10 MB body), the answers it makes itself, and the local queue. What the deployed API does with a
request (the key check, the Lambda event, the response) is the ``ApiShape`` of local_pipeline/events.py.

Per request: refuse a method API Gateway has no route for, let the API shape refuse the request on
its head (403 without the key, for EVERY path: the handler's router decides which paths it serves,
so a front that checked only the exact path would let ``/v1/payloads/`` through unauthenticated;
the body of a refused request is never read, and a client waiting on ``Expect: 100-continue`` gets
the refusal instead of a 100), refuse what API Gateway would not take (a body above 10 MB, both
Content-Length and Transfer-Encoding), read the body, build the shape's event, invoke the handler,
and send the response back verbatim. Every error the front writes itself (one path: ``IngestFront.error``) is the
handler's RFC 9457 problem+json with a ``requestId``, except those the API kind answers in its own shape
(``ApiShape.own_answer``: an HTTP API's bare ``{"message": ...}`` for a body above its limit or a failed
function).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

import h11

from local_pipeline.access_log import AccessLog
from local_pipeline.events import ApiShape, HttpRequest, HttpResponse, http_response
from local_pipeline.lambda_runtime import FunctionError, FunctionPool
from local_pipeline.local_settings import API_GATEWAY_MAX_BODY_BYTES
from pipeline.contract import GATEWAY_PROBLEMS, PAYLOADS_PATH, PROBLEM_CONTENT_TYPE, GatewayProblem, problem_document

# The errors the front answers as the deployed API Gateway does, with its gateway responses' bodies.
GATEWAY_RESPONSES: Final[Mapping[int, GatewayProblem]] = {
    403: GATEWAY_PROBLEMS["INVALID_API_KEY"],
    413: GATEWAY_PROBLEMS["REQUEST_TOO_LARGE"],
}
# Errors only this front answers (same problem+json shape, its own slugs): status -> (slug, detail).
LOCAL_FRONT_PROBLEMS: Final[Mapping[int, tuple[str, str]]] = {
    400: ("bad-request", "the request could not be read"),  # h11's framing errors and the front's checks
    405: ("method-not-allowed", f"use POST {PAYLOADS_PATH}"),  # a method API Gateway has no route for
    414: ("uri-too-long", "the request line is too long"),
    431: ("headers-too-large", "the request headers are too large or too many"),
    # Locally a 502 only means the Lambda environment died (no 6 MB invoke limit here), so not DEFAULT_5_XX's
    # text about body size; no promise that a retry helps, as the gateway's texts make none.
    502: ("ingest-unavailable", "the ingest function failed; the cause may be temporary"),
    503: ("shutting-down", "the local pipeline is shutting down"),  # Ctrl-C: a deployed API has no such moment
    505: ("http-version-not-supported", "use HTTP/1.1"),
}
# RFC 9110's names where Python's HTTPStatus still has the older RFC 7231 ones ("Request-URI Too Long").
TITLES = {413: "Content Too Large", 414: "URI Too Long", 422: "Unprocessable Content"}
# The methods a REST API can route (ANY stands for these); another method gets 405 before anything else.
API_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})
# Requests allowed to wait for a free ingest environment, per environment. Beyond that the front
# answers 503 + Retry-After at once (as a throttled API Gateway answers 429): a client that backs
# off gets through, and the front never stalls accepting connections behind a long local queue.
WAITING_REQUESTS_PER_ENVIRONMENT = 8
RETRY_AFTER_SECONDS = 1
# Pending connections the kernel holds while the front is busy (listen backlog). The stdlib's 5
# reset connections from load tests; Linux caps it at net.core.somaxconn (4096 by default).
LISTEN_BACKLOG = 1024
# Request line and headers together, at most (h11 holds an incomplete head up to this much), and
# header lines: the limits the front had on http.server (64 KiB a line, 100 headers).
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
IDLE_SECONDS = 60  # a connection that sends nothing for this long is closed
RECEIVE_BYTES = 64 * 1024
HEAD_SLICE_BYTES = 4 * 1024  # see _Connection._receive_head


def title_of(status: int) -> str:
    if status in TITLES:
        return TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def front_problem(status: int, request_id: str, detail: str | None = None, slug: str | None = None) -> bytes:
    """A problem+json body (contract.problem_document) plus ``requestId``: the deployed gateway
    response's for the statuses in GATEWAY_RESPONSES, the front's own for the others."""
    gateway = GATEWAY_RESPONSES.get(status)
    if gateway is not None:
        default_slug, title, default_detail = gateway.slug, gateway.title, gateway.detail
    else:
        default_slug, default_detail = LOCAL_FRONT_PROBLEMS.get(status, ("bad-request", "the request was rejected"))
        title = title_of(status)
    body = problem_document(status, slug or default_slug, title, detail or default_detail, requestId=request_id)
    return json.dumps(body, separators=(",", ":")).encode()


def problem_response(
    status: int, request_id: str, detail: str | None = None, slug: str | None = None, **headers: str
) -> HttpResponse:
    return HttpResponse(
        status,
        {"Content-Type": PROBLEM_CONTENT_TYPE, **headers},
        front_problem(status, request_id, detail, slug),
    )


def gateway_response(problem: GatewayProblem, request_id: str) -> HttpResponse:
    """A gateway response the API answers itself (an ApiShape's refusal), as problem+json."""
    status = problem.status or 400
    document = problem_document(status, problem.slug, problem.title, problem.detail, requestId=request_id)
    return HttpResponse(
        status, {"Content-Type": PROBLEM_CONTENT_TYPE}, json.dumps(document, separators=(",", ":")).encode()
    )


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target: origin-form as sent (``//v1/payloads`` stays a path,
    percent-escapes stay escaped, as API Gateway passes them), or absolute-form (``http://h/p``)."""
    if not target.startswith("/"):
        url = urlsplit(target)
        return url.path or "/", url.query
    path, _, query = target.partition("?")
    return path.partition("#")[0], query.partition("#")[0]


class Refused(Exception):
    """The request gets ``response`` and its connection closes (what is left of it is not read)."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


class IngestFront:
    """The deployed API's stand-in on http://127.0.0.1:PORT, one thread per connection.

    ``api`` is what the deployed API does with a request (events.ApiShape, chosen by API_KIND)."""

    def __init__(self, *, port: int, api: ApiShape, ingest: FunctionPool, log: AccessLog) -> None:
        self.api = api
        self.ingest = ingest
        self.log = log
        self.closing = False
        self._waiting = threading.BoundedSemaphore(ingest.concurrency * WAITING_REQUESTS_PER_ENVIRONMENT)
        self._in_flight = 0
        self._idle = threading.Condition()
        self._server = _Server(("127.0.0.1", port), _Connection)
        self._server.front = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-front", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def try_reserve(self) -> bool:
        """A place among the requests waiting for an ingest environment; False when they are all taken."""
        return self._waiting.acquire(blocking=False)

    def release(self) -> None:
        self._waiting.release()

    def in_flight_count(self) -> int:
        with self._idle:
            return self._in_flight

    def stop(self, timeout_seconds: float = 30) -> None:
        """Stop accepting connections, answer 503 on kept-alive ones, wait for in-flight requests."""
        self.closing = True
        if self._thread.ident is not None:  # serve_forever runs; shutdown() would wait forever otherwise
            self._server.shutdown()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_seconds)
        self._server.server_close()

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def error(
        self, status: int, request_id: str, detail: str | None = None, slug: str | None = None, **headers: str
    ) -> HttpResponse:
        """Every error the front answers itself, by one path: the API kind's own answer where it makes one
        (ApiShape.own_answer: an HTTP API's bare ``{"message"}`` for 413 and a failed function), else the
        problem+json with ``requestId``; ``headers`` (Retry-After, Allow, ...) go on either."""
        own = self.api.own_answer(status)
        if own is None:
            return problem_response(status, request_id, detail, slug, **headers)
        own.headers.update(headers)
        return own

    def answer(self, request: HttpRequest) -> HttpResponse:
        """The ingest's response to a request the API let through (body read); 503 when the local
        queue is full, 502 when the function failed."""
        event = self.api.event(request)
        if not self.try_reserve():
            detail = "the local pipeline's ingest environments are all busy and its queue is full; retry after a second"
            return self.error(
                503, request.request_id, detail, "local-queue-full", **{"Retry-After": str(RETRY_AFTER_SECONDS)}
            )
        try:
            result = self.ingest.invoke(event).response
        except FunctionError as exc:
            self.log.line(f"ingest handler failed: {exc}\n{exc.stack_trace}")
            return self.error(502, request.request_id)
        finally:
            self.release()
        return http_response(result)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    front: IngestFront


class _Connection(socketserver.BaseRequestHandler):
    """One client connection: h11 frames its requests, one after another (keep-alive)."""

    request: socket.socket
    server: _Server

    def handle(self) -> None:
        self.request.settimeout(IDLE_SECONDS)
        # Headers and body leave in one write here, but a client's next request would otherwise wait
        # for its delayed ACK (40 ms on Linux) behind Nagle's algorithm.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            while self._exchange(connection):
                connection.start_next_cycle()
        except (OSError, h11.LocalProtocolError):
            pass  # the client went away, timed out, or the connection cannot carry another answer

    def _receive_head(self, connection: h11.Connection) -> Any:
        """The next request head (or ConnectionClosed), reading from the socket as needed.

        h11 refuses a head still incomplete beyond MAX_HEAD_BYTES, but checks only while it waits for
        more: bytes are handed over in slices of HEAD_SLICE_BYTES, so a head that would complete in
        the same read as it passes the limit is refused too."""
        pending = b""
        while True:
            event = connection.next_event()
            if event is not h11.NEED_DATA:
                if pending:
                    connection.receive_data(pending)  # the rest of what was read: the body, or the next request
                return event
            if not pending:
                pending = self.request.recv(RECEIVE_BYTES)
                if not pending:
                    connection.receive_data(b"")  # the client closed its side
                    continue
            connection.receive_data(pending[:HEAD_SLICE_BYTES])
            pending = pending[HEAD_SLICE_BYTES:]

    def _exchange(self, connection: h11.Connection) -> bool:
        """Read one request and answer it; False when the connection is done."""
        front = self.server.front
        request_id = front.api.new_request_id()
        try:
            head = self._receive_head(connection)
        except h11.RemoteProtocolError as exc:
            # The head could not be read (bad request line or header, or too long): nothing to route.
            status = exc.error_status_hint
            if status == 431 and b"\n" not in connection.trailing_data[0]:
                status = 414  # the request line alone is longer than the limit
            status = status if status in (414, 431) else 400
            self._send(
                connection,
                front.error(
                    status, request_id, str(exc), Connection="close", **{front.api.request_id_header: request_id}
                ),
            )
            front.log.request("-", "-", status, 0, 0.0)
            return False
        if not isinstance(head, h11.Request):
            return False  # ConnectionClosed: the client closed between requests
        started = time.perf_counter()
        method = head.method.decode("ascii", "replace")
        path, query = split_target(head.target.decode("latin-1"))
        with front.in_flight():
            try:
                response = self._answer(connection, head, method, path, query, request_id)
            except Refused as refused:
                response = refused.response
                response.headers["Connection"] = "close"
            response.headers[front.api.request_id_header] = request_id
            self._send(connection, response, head=method == "HEAD")
        front.log.request(method, path, response.status, _accepted(response), (time.perf_counter() - started) * 1000)
        return connection.our_state is h11.DONE and connection.their_state is h11.DONE

    def _answer(
        self, connection: h11.Connection, head: h11.Request, method: str, path: str, query: str, request_id: str
    ) -> HttpResponse:
        front = self.server.front
        if front.closing:
            raise Refused(front.error(503, request_id, **{"Retry-After": str(RETRY_AFTER_SECONDS)}))
        if head.http_version not in (b"1.0", b"1.1"):
            raise Refused(front.error(505, request_id))
        if method not in API_METHODS:
            raise Refused(
                front.error(405, request_id, f"{method} is not allowed on {PAYLOADS_PATH}; use POST", Allow="POST")
            )
        headers = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers.raw_items())
        if len(headers) > MAX_HEADERS:
            raise Refused(front.error(431, request_id, f"more than {MAX_HEADERS} header lines"))
        request = HttpRequest(method, path, query, headers, b"", request_id, self.client_address[0])
        refusal = front.api.refusal(request)
        if refusal is not None:  # decided on the head: the body of a refused request is never read
            raise Refused(gateway_response(refusal, request_id))
        body = self._read_body(connection, head, request_id)
        return front.answer(dataclasses.replace(request, body=body))

    def _read_body(self, connection: h11.Connection, head: h11.Request, request_id: str) -> bytes:
        """The whole body, at most API Gateway's 10 MB; Refused (400, 413) as soon as it cannot be."""
        error = self.server.front.error
        names = {name for name, _ in head.headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            # RFC 9112 section 6.3: ambiguous framing, a request-smuggling vector; h11 would let chunked win.
            raise Refused(error(400, request_id, "both Transfer-Encoding and Content-Length are set"))
        limit = API_GATEWAY_MAX_BODY_BYTES
        too_large = f"the body is above {limit} bytes, more than API Gateway accepts"
        length = next((int(value) for name, value in head.headers if name == b"content-length"), None)
        if length is not None and length > limit:  # refused before a byte of it is read
            raise Refused(error(413, request_id, f"the body is {length} bytes; API Gateway accepts at most {limit}"))
        if connection.they_are_waiting_for_100_continue:
            self.request.sendall(connection.send(h11.InformationalResponse(status_code=100, headers=[])))
        chunks: list[bytes] = []
        # Every byte the client sends for the body counts, framing included (chunk sizes, extensions,
        # trailers): no framing trick makes the front read more than the limit.
        received = len(connection.trailing_data[0])  # what came in the same reads as the head
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                raise Refused(error(400, request_id, f"the body could not be read: {exc}")) from exc
            if event is h11.NEED_DATA:
                data = self.request.recv(RECEIVE_BYTES)
                received += len(data)
                if received > limit:  # refused before h11 parses past the limit
                    raise Refused(error(413, request_id, too_large))
                connection.receive_data(data)
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:  # nothing else comes in a body (h11 raises for a connection closed mid-body)
                raise Refused(error(400, request_id, "the body ended early"))

    def _send(self, connection: h11.Connection, response: HttpResponse, head: bool = False) -> None:
        headers = [(name, value) for name, value in response.headers.items() if name.lower() not in _FRAMING]
        headers += [("Date", formatdate(usegmt=True)), ("Content-Length", str(len(response.body)))]
        try:
            wire = connection.send(
                h11.Response(status_code=response.status, headers=headers, reason=title_of(response.status))
            )
            if not head and response.body:
                wire += connection.send(h11.Data(data=response.body))
            wire += connection.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return  # h11 cannot answer this connection (it already answered, or the request line was unreadable)
        self.request.sendall(wire)


# Framing is the front's (h11's) business: a Lambda response's own framing headers are not passed on.
_FRAMING = frozenset({"content-length", "transfer-encoding"})


def _accepted(response: HttpResponse) -> int:
    if not 200 <= response.status < 300:
        return 0
    try:
        accepted = json.loads(response.body).get("accepted", 0)
    except (ValueError, AttributeError):
        return 0
    return accepted if isinstance(accepted, int) else 0
