"""A scriptable HTTP endpoint on a free loopback port: records every request the SDK makes (decoded)
and answers what the test says. The end-to-end tests against the real pipeline live in the
pipeline's suite (tests/client/); these check the SDK's side of each answer."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from ingest_client import Client


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any]

    @property
    def key(self) -> str:
        return self.headers["idempotency-key"]

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return list(self.body["data"])


Answer = tuple[int, dict[str, str], bytes]
Responder = Callable[[Received, int], Answer]  # (request, index of this request) -> answer


def accept(request: Received, _index: int) -> Answer:
    body = json.dumps({"requestId": request.key, "accepted": len(request.payloads)}).encode()
    return 202, {"Content-Type": "application/json"}, body


def problem(status: int, slug: str, detail: str, **headers: str) -> Answer:
    document = {"type": f"urn:ingest-pipeline:problem:{slug}", "title": "t", "status": status, "detail": detail}
    return status, {"Content-Type": "application/problem+json", **headers}, json.dumps(document).encode()


@dataclass
class FakeEndpoint:
    server: ThreadingHTTPServer
    responder: Responder = accept
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/payloads"

    def accepted_payloads(self) -> list[dict[str, Any]]:
        """Payloads of the requests answered 2xx, once per Idempotency-Key (as the pipeline stores them)."""
        seen: dict[str, list[dict[str, Any]]] = {}
        with self.lock:
            for request in self.received:
                if request.headers.get("_status", "").startswith("2"):
                    seen.setdefault(request.key, request.payloads)
        return [payload for payloads in seen.values() for payload in payloads]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)


def _handler(endpoint_ref: list[FakeEndpoint]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:  # noqa: N802
            endpoint = endpoint_ref[0]
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            decoded = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
            headers = {name.lower(): value for name, value in self.headers.items()}
            request = Received(time.monotonic(), headers, raw, json.loads(decoded))
            with endpoint.lock:
                index = len(endpoint.received)
                endpoint.received.append(request)
            status, answer_headers, body = endpoint.responder(request, index)
            headers["_status"] = str(status)
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    holder: list[FakeEndpoint] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(holder))
    server.daemon_threads = True
    holder.append(FakeEndpoint(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder[0]
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., Client]]:
    """Clients on a spool under tmp_path (``spool`` names it), closed after the test."""
    clients: list[Client] = []

    def make(url: str, spool: Optional[str] = "spool", **options: Any) -> Client:
        options.setdefault("linger", 0.05)
        client = Client(url, version="1.0", token="device-1", spool_dir=tmp_path / (spool or "spool"), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=1)
