"""A loopback HTTP proxy between the SDK and `make run`: it forwards every POST unchanged and records
what went over the wire (time, Idempotency-Key, body hash, the pipeline's status and Retry-After).
It can also hold the pipeline's answer to a request, to kill the client while the pipeline has
accepted a batch that the client has not heard about."""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Exchange:
    arrived_at: float  # when the request reached the proxy (monotonic)
    answered_at: float  # when the pipeline's answer reached the proxy
    key: str
    body_sha256: str
    status: int
    retry_after: str | None


@dataclass
class RecordingProxy:
    upstream: str
    server: ThreadingHTTPServer = field(init=False)
    exchanges: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hold_next: bool = False
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    held: Exchange | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/payloads"

    def statuses(self) -> list[int]:
        with self.lock:
            return [exchange.status for exchange in self.exchanges]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _handler(proxy: RecordingProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            arrived_at = time.monotonic()
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hop_by_hop = ("host", "connection")
            headers = {name: value for name, value in self.headers.items() if name.lower() not in hop_by_hop}
            connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=120)
            try:
                connection.request("POST", self.path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                answer_headers = response.getheaders()
                status = response.status
            finally:
                connection.close()
            exchange = Exchange(
                arrived_at,
                time.monotonic(),
                self.headers.get("Idempotency-Key", ""),
                hashlib.sha256(body).hexdigest(),
                status,
                response.getheader("Retry-After"),
            )
            with proxy.lock:
                proxy.exchanges.append(exchange)
                hold, proxy.hold_next = proxy.hold_next, False
            if hold:
                proxy.held = exchange
                proxy.holding.set()
                proxy.release.wait(120)
            try:
                self.send_response(status)
                for name, value in answer_headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:
                self.close_connection = True  # the client was killed meanwhile

    return Handler


def start_proxy(upstream: str) -> RecordingProxy:
    """A proxy on a free loopback port forwarding to ``upstream`` (http://127.0.0.1:PORT)."""
    proxy = RecordingProxy(upstream)
    proxy.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.server.daemon_threads = True
    threading.Thread(target=proxy.server.serve_forever, daemon=True).start()
    return proxy
