"""The local stand-in for API Gateway (REST, Lambda proxy) in front of the real ingest handler.

Per request it does what the deployed gateway does before and after the Lambda: refuse a body above
API Gateway's 10 MB, check ``x-api-key`` (403 problem+json, the deployed gateway response's shape),
build a REST proxy event (body base64, as binaryMediaTypes */* makes it), invoke the handler, and send
its response back verbatim. Routing (404 for unknown paths, 405 for other methods) is the handler's.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local_pipeline.access_log import AccessLog
from local_pipeline.events import api_gateway_event, response_headers
from local_pipeline.lambda_runtime import FunctionError, FunctionPool
from local_pipeline.local_settings import API_GATEWAY_MAX_BODY_BYTES

PAYLOADS_PATH = "/v1/payloads"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# The few errors API Gateway answers itself, with the bodies infra/api_construct.py's gateway
# responses render (RFC 9457): status -> (slug, title, detail).
GATEWAY_PROBLEMS: dict[int, tuple[str, str, str]] = {
    400: ("bad-request", "Bad Request", "the request was rejected by API Gateway"),
    403: ("forbidden", "Forbidden", "missing or invalid x-api-key header"),
    413: ("body-too-large", "Content Too Large", "the request body is larger than API Gateway accepts"),
    502: ("ingest-unavailable", "Bad Gateway", "the ingest function failed; retry with backoff"),
    503: ("shutting-down", "Service Unavailable", "the local pipeline is shutting down"),
}


def gateway_problem(status: int, request_id: str, detail: str | None = None) -> bytes:
    slug, title, default_detail = GATEWAY_PROBLEMS.get(status, GATEWAY_PROBLEMS[400])
    body = {"type": f"urn:ingest-pipeline:problem:{slug}", "title": title, "status": status,
            "detail": detail or default_detail, "requestId": request_id}
    return json.dumps(body, separators=(",", ":")).encode()


class BodyRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class IngestFront:
    """``POST /v1/payloads`` on http://127.0.0.1:PORT, one thread per connection."""

    def __init__(self, *, port: int, api_key: str, require_api_key: bool, ingest: FunctionPool, log: AccessLog,
                 stage: str) -> None:
        self.api_key = api_key
        self.require_api_key = require_api_key
        self.ingest = ingest
        self.log = log
        self.stage = stage
        self.closing = False
        self._in_flight = 0
        self._idle = threading.Condition()
        self._server = _Server(("127.0.0.1", port), _RequestHandler)
        self._server.front = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-front", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

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

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silenced: the access log prints one compact line per request instead."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, unknown method, huge headers) as problem+json."""
        self.close_connection = True
        headers = {"Content-Type": PROBLEM_CONTENT_TYPE, "Connection": "close"}
        if code == 501:  # a method http.server has no do_* for (TRACE, CONNECT...): 405, like the handler's
            code, message, explain = 405, "Method Not Allowed", f"{self.command} is not allowed; use POST {PAYLOADS_PATH}"
            headers["Allow"] = "POST"
        slug = {405: "method-not-allowed", 414: "uri-too-long", 431: "headers-too-large"}.get(code, "bad-request")
        body = json.dumps({"type": f"urn:ingest-pipeline:problem:{slug}", "title": message or "Bad Request",
                           "status": code, "detail": explain or message or "the request could not be read"},
                          separators=(",", ":")).encode()
        self._write(code, headers, body)
        if self.command:
            self.server.front.log.request(self.command, urlsplit(self.path).path, code, 0, 0.0)

    # --- one request ---------------------------------------------------------------------------
    def _serve(self) -> None:
        front = self.server.front
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        url = urlsplit(self.path)
        with front.in_flight():
            if front.closing:
                self.close_connection = True
                status, headers, body = 503, {"Content-Type": PROBLEM_CONTENT_TYPE, "Connection": "close"}, \
                    gateway_problem(503, request_id)
            else:
                status, headers, body = self._answer(front, url.path, url.query, request_id)
            headers["x-amzn-RequestId"] = request_id
            self._write(status, headers, body)
        front.log.request(self.command, url.path, status, _accepted(status, body), (time.perf_counter() - started) * 1000)

    def _answer(self, front: IngestFront, path: str, query: str, request_id: str) -> tuple[int, dict[str, str], bytes]:
        problem_headers = {"Content-Type": PROBLEM_CONTENT_TYPE}
        try:
            body = self._read_body()
        except BodyRefused as refused:
            self.close_connection = True  # the unread rest of the body must not be parsed as a request
            return refused.status, problem_headers, gateway_problem(refused.status, request_id, refused.detail)
        key = self.headers.get("x-api-key")
        if front.require_api_key and self.command == "POST" and path == PAYLOADS_PATH and not (
            key is not None and hmac.compare_digest(key.encode(), front.api_key.encode())
        ):
            return 403, problem_headers, gateway_problem(403, request_id)
        event = api_gateway_event(
            self.command, path, body, {name: value for name, value in self.headers.items()},
            request_id=request_id, source_ip=self.client_address[0], stage=front.stage, api_key=key,
            query=parse_qs(query, keep_blank_values=True) if query else None,
        )
        try:
            response = front.ingest.invoke(event)
        except FunctionError as exc:
            front.log.line(f"ingest handler failed: {exc}\n{exc.stack_trace}")
            return 502, problem_headers, gateway_problem(502, request_id)
        return _http_response(response)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
        except ValueError as exc:
            raise BodyRefused(400, f"Content-Length {raw_length!r} is not a number") from exc
        if length < 0:
            raise BodyRefused(400, "Content-Length is negative")
        if length > API_GATEWAY_MAX_BODY_BYTES:
            raise BodyRefused(413, f"the body is {length} bytes; API Gateway accepts at most {API_GATEWAY_MAX_BODY_BYTES}")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError as exc:
                raise BodyRefused(400, "malformed chunked body") from exc
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                    pass
                return b"".join(chunks)
            total += size
            if total > API_GATEWAY_MAX_BODY_BYTES:
                raise BodyRefused(413, f"the body is above {API_GATEWAY_MAX_BODY_BYTES} bytes, more than API Gateway accepts")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)  # the CRLF after each chunk

    def _write(self, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response_only(status)
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
