"""The local stand-in for API Gateway (REST or HTTP API, Lambda proxy) in front of the real ingest handler.

Per request it does what the deployed gateway does before and after the Lambda: refuse a body above
API Gateway's 10 MB, check ``x-api-key`` (REST only: 403 problem+json, the deployed gateway response's shape),
build the proxy event (REST: payload format 1.0, body base64, as binaryMediaTypes */* makes it; API_KIND=http:
payload format 2.0, body text or base64 by content type, repeated headers joined, cookies apart), invoke the
handler, and send its response back verbatim. Routing (404 for unknown paths, 405 for other methods) is the
handler's; with API_KIND=http the answers the HTTP API makes itself are its bare ``{"message": ...}``.

The key is checked for EVERY request before the handler sees it, whatever its path: the handler's
router decides which paths it serves (``/v1/payloads/``, say), so a front that checked only the
exact path would let those through unauthenticated. Every error the front writes itself, including
http.server's own (bad request line, 414, 431), is the handler's RFC 9457 problem+json with a
``requestId``.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from local_pipeline.access_log import AccessLog
from local_pipeline.events import api_gateway_event, http_api_event, http_api_request_id, response_headers
from local_pipeline.lambda_runtime import FunctionError, FunctionPool
from local_pipeline.local_settings import API_GATEWAY_MAX_BODY_BYTES
from pipeline.contract import (
    API_KEY_HEADER,
    GATEWAY_PROBLEMS,
    PAYLOADS_PATH,
    PROBLEM_CONTENT_TYPE,
    GatewayProblem,
    problem_document,
)

# The errors the front answers as the deployed API Gateway does, with its gateway responses' bodies.
GATEWAY_RESPONSES: Final[Mapping[int, GatewayProblem]] = {
    403: GATEWAY_PROBLEMS["INVALID_API_KEY"],
    413: GATEWAY_PROBLEMS["REQUEST_TOO_LARGE"],
}
# Errors only this front answers (same problem+json shape, its own slugs): status -> (slug, detail).
LOCAL_FRONT_PROBLEMS: Final[Mapping[int, tuple[str, str]]] = {
    # http.server's parse errors and the front's body-framing checks; not one of API Gateway's response types.
    400: ("bad-request", "the request could not be read"),
    # A method http.server has no do_* for (TRACE, BREW...); the handler's router answers the others.
    405: ("method-not-allowed", f"use POST {PAYLOADS_PATH}"),
    414: ("uri-too-long", "the request line is too long"),  # http.server's request-line limit
    431: ("headers-too-large", "the request headers are too large or too many"),  # http.server's header limits
    # Locally a 502 only means the Lambda environment died (no 6 MB invoke limit here), so not DEFAULT_5_XX's
    # text about body size; no promise that a retry helps, as the gateway's texts make none.
    502: ("ingest-unavailable", "the ingest function failed; the cause may be temporary"),
    503: ("shutting-down", "the local pipeline is shutting down"),  # Ctrl-C: a deployed API has no such moment
    505: ("http-version-not-supported", "use HTTP/1.1"),  # http.server's version check
}
# RFC 9110's names where Python's HTTPStatus still has the older RFC 7231 ones ("Request-URI Too Long").
TITLES = {413: "Content Too Large", 414: "URI Too Long", 422: "Unprocessable Content"}
# Requests allowed to wait for a free ingest environment, per environment. Beyond that the front
# answers 503 + Retry-After at once (as a throttled API Gateway answers 429): a client that backs
# off gets through, and the front never stalls accepting connections behind a long local queue.
WAITING_REQUESTS_PER_ENVIRONMENT = 8
RETRY_AFTER_SECONDS = 1
# Pending connections the kernel holds while the front is busy (listen backlog). The stdlib's 5
# reset connections from load tests; Linux caps it at net.core.somaxconn (4096 by default).
LISTEN_BACKLOG = 1024
# Chunked framing (RFC 9112 section 7.1): a chunk-size line is hex digits, optional ";extensions",
# CRLF. 8 hex digits (4 GiB) is more than any body the front accepts; longer is bad framing.
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")
MAX_CHUNK_LINE_BYTES = 4096


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


# API_KIND=http: the HTTP API's own answers cannot be customised (README, The HTTP API front door).
HTTP_API_MESSAGES: Final[Mapping[int, str]] = {413: "Request Entity Too Large", 500: "Internal Server Error"}


def http_api_message(status: int) -> bytes:
    return json.dumps({"message": HTTP_API_MESSAGES[status]}, separators=(",", ":")).encode()


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target: origin-form as sent (``//v1/payloads`` stays a path,
    percent-escapes stay escaped, as API Gateway passes them), or absolute-form (``http://h/p``)."""
    if not target.startswith("/"):
        url = urlsplit(target)
        return url.path or "/", url.query
    path, _, query = target.partition("?")
    return path.partition("#")[0], query.partition("#")[0]


class BodyRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class IngestFront:
    """``POST /v1/payloads`` on http://127.0.0.1:PORT, one thread per connection."""

    def __init__(
        self,
        *,
        port: int,
        api_key: str,
        require_api_key: bool,
        ingest: FunctionPool,
        log: AccessLog,
        stage: str,
        api_kind: str = "rest",
    ) -> None:
        self.api_key = api_key
        self.http_api = api_kind == "http"  # an HTTP API: no API key, payload format 2.0, its own bare errors
        self.require_api_key = require_api_key and not self.http_api
        self.ingest = ingest
        self.log = log
        self.stage = stage
        self.closing = False
        self._waiting = threading.BoundedSemaphore(ingest.concurrency * WAITING_REQUESTS_PER_ENVIRONMENT)
        self._in_flight = 0
        self._idle = threading.Condition()
        self._server = _Server(("127.0.0.1", port), _RequestHandler)
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    front: IngestFront


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway offers
    server_version = "ingest-pipeline-local"
    sys_version = ""
    timeout = 60  # an idle kept-alive connection is closed after this
    # Headers and body leave in two writes; with Nagle's algorithm the body then waits for the
    # client's delayed ACK (40 ms on Linux) on every response.
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - overrides the stdlib's signature
        """Silenced: the access log prints one compact line per request instead."""

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # "GET /": an answer without status line or headers
            self.send_error(400, None, "HTTP/0.9 requests are not supported; use HTTP/1.1")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, unknown method, huge headers) as problem+json."""
        self.close_connection = True
        # A request line http.server could not read leaves HTTP/0.9, which has no status line at all.
        self.request_version = self.protocol_version
        request_id = str(uuid.uuid4())
        headers = {"Content-Type": PROBLEM_CONTENT_TYPE, "Connection": "close", "x-amzn-RequestId": request_id}
        slug = None
        if code == 501:  # a method http.server has no do_* for (TRACE, CONNECT...): 405, like the handler's
            code, explain = 405, f"{self.command} is not allowed on {PAYLOADS_PATH}; use POST"
            headers["Allow"] = "POST"
        elif code == 400:
            slug = "bad-request-line" if not self.command else "bad-request"
        self._write(code, headers, front_problem(code, request_id, explain or message, slug))
        self.server.front.log.request(self.command or "-", split_target(self.path or "")[0] or "-", code, 0, 0.0)

    # --- one request ---------------------------------------------------------------------------
    def _serve(self) -> None:
        front = self.server.front
        started = time.perf_counter()
        request_id = http_api_request_id() if front.http_api else str(uuid.uuid4())
        path, query = split_target(self.path)
        with front.in_flight():
            if front.closing:
                self.close_connection = True
                status, headers, body = (
                    503,
                    {
                        "Content-Type": PROBLEM_CONTENT_TYPE,
                        "Connection": "close",
                        "Retry-After": str(RETRY_AFTER_SECONDS),
                    },
                    front_problem(503, request_id),
                )
            else:
                status, headers, body = self._answer(front, path, query, request_id)
            headers["x-amzn-RequestId"] = request_id
            self._write(status, headers, body)
        front.log.request(self.command, path, status, _accepted(status, body), (time.perf_counter() - started) * 1000)

    def _answer(self, front: IngestFront, path: str, query: str, request_id: str) -> tuple[int, dict[str, str], bytes]:
        problem_headers = {"Content-Type": PROBLEM_CONTENT_TYPE}
        try:
            body = self._read_body()
        except BodyRefused as refused:
            self.close_connection = True  # the unread rest of the body must not be parsed as a request
            if front.http_api and refused.status == 413:
                return 413, {"Content-Type": "application/json"}, http_api_message(413)
            return refused.status, problem_headers, front_problem(refused.status, request_id, refused.detail)
        key = self.headers.get(API_KEY_HEADER)
        # Every method and path: which paths reach the handler is the router's business, not the front's.
        valid_key = key is not None and hmac.compare_digest(key.encode(), front.api_key.encode())
        if front.require_api_key and not valid_key:
            return 403, problem_headers, front_problem(403, request_id)
        headers = list(self.headers.items())  # a repeated header stays repeated, as API Gateway receives it
        event = (
            http_api_event(
                self.command, path, body, headers, request_id=request_id, source_ip=self.client_address[0], query=query
            )
            if front.http_api
            else api_gateway_event(
                self.command,
                path,
                body,
                headers,
                request_id=request_id,
                source_ip=self.client_address[0],
                stage=front.stage,
                api_key=key,
                query=parse_qs(query, keep_blank_values=True) if query else None,
            )
        )
        if not front.try_reserve():
            detail = "the local pipeline's ingest environments are all busy and its queue is full; retry after a second"
            return (
                503,
                {**problem_headers, "Retry-After": str(RETRY_AFTER_SECONDS)},
                front_problem(503, request_id, detail, "local-queue-full"),
            )
        try:
            response = front.ingest.invoke(event)
        except FunctionError as exc:
            front.log.line(f"ingest handler failed: {exc}\n{exc.stack_trace}")
            if front.http_api:
                return 500, {"Content-Type": "application/json"}, http_api_message(500)
            return 502, problem_headers, front_problem(502, request_id)
        finally:
            front.release()
        return _http_response(response)

    def _read_body(self) -> bytes:
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if encodings:
            if lengths:  # RFC 9112 section 6.3: ambiguous framing, a request-smuggling vector
                raise BodyRefused(400, "both Transfer-Encoding and Content-Length are set")
            if ",".join(encodings).strip().lower() != "chunked":
                raise BodyRefused(400, f"Transfer-Encoding {','.join(encodings)!r} is not supported; use chunked")
            return self._read_chunked()
        if not lengths:
            return b""
        if len(set(lengths)) > 1:
            raise BodyRefused(400, "conflicting Content-Length headers")
        raw_length = lengths[0].strip()
        if not raw_length.isascii() or not raw_length.isdigit():  # int() would take "+5", " 5", "1_0"
            raise BodyRefused(400, f"Content-Length {raw_length[:32]!r} is not a number")
        length = int(raw_length)
        if length > API_GATEWAY_MAX_BODY_BYTES:
            raise BodyRefused(
                413, f"the body is {length} bytes; API Gateway accepts at most {API_GATEWAY_MAX_BODY_BYTES}"
            )
        body = self.rfile.read(length)
        if len(body) < length:
            raise BodyRefused(400, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _read_chunked(self) -> bytes:
        """A chunked body, strictly: every byte read (sizes, extensions, CRLFs, trailers, data) counts
        towards API Gateway's limit, so no framing trick reads more than that."""
        limit = API_GATEWAY_MAX_BODY_BYTES
        chunks: list[bytes] = []
        read = 0
        while True:
            line = self._framing_line(limit - read)
            read += len(line)
            size_field = line[:-2].split(b";", 1)[0]
            if b";" in line:
                size_field = size_field.rstrip(b" \t")  # RFC 9112 allows whitespace before an extension
            if not CHUNK_SIZE.fullmatch(size_field):
                raise BodyRefused(400, f"malformed chunked body: chunk size {size_field[:20]!r} is not 1-8 hex digits")
            size = int(size_field, 16)
            if size == 0:
                break
            if read + size + 2 > limit:
                raise BodyRefused(413, f"the body is above {limit} bytes, more than API Gateway accepts")
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise BodyRefused(400, "malformed chunked body: it ended inside a chunk")
            if self.rfile.read(2) != b"\r\n":
                raise BodyRefused(400, "malformed chunked body: a chunk is not followed by CRLF")
            read += size + 2
            chunks.append(chunk)
        while (line := self._framing_line(limit - read)) != b"\r\n":  # trailer fields, up to the empty line
            read += len(line)
        return b"".join(chunks)

    def _framing_line(self, budget: int) -> bytes:
        """One CRLF-terminated line of chunked framing, at most MAX_CHUNK_LINE_BYTES and ``budget``."""
        if budget <= 0:
            raise BodyRefused(
                413, f"the body is above {API_GATEWAY_MAX_BODY_BYTES} bytes, more than API Gateway accepts"
            )
        line = self.rfile.readline(min(MAX_CHUNK_LINE_BYTES, budget) + 1)
        if not line.endswith(b"\r\n"):
            if len(line) > min(MAX_CHUNK_LINE_BYTES, budget):
                raise BodyRefused(
                    413 if budget < MAX_CHUNK_LINE_BYTES else 400, "malformed chunked body: a framing line is too long"
                )
            raise BodyRefused(400, "malformed chunked body: a framing line does not end with CRLF")
        return line

    def _write(self, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response_only(status, title_of(status))
            self.send_header("Date", self.date_time_string())
            for name, value in headers.items():
                if name.lower() not in ("content-length", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to answer


def _http_response(response: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """A Lambda proxy response as API Gateway turns it into HTTP."""
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode("utf-8")
    return int(response["statusCode"]), response_headers(response), body


def _accepted(status: int, body: bytes) -> int:
    if not 200 <= status < 300:
        return 0
    try:
        accepted = json.loads(body).get("accepted", 0)
    except (ValueError, AttributeError):
        return 0
    return accepted if isinstance(accepted, int) else 0
