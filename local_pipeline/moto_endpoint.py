"""The AWS endpoint the local pipeline talks to: an embedded moto server on 127.0.0.1, or the
endpoint named by AWS_ENDPOINT_URL (LocalStack, or a real account with your credentials).

The embedded moto runs in a process of its own. moto is pure Python and answers one request at a
time; in the runner's process it shared one GIL with the HTTP front and the pollers, and every one of
their bytecodes delayed it: the pipeline then reached half of what moto alone can do
(docs/LOCAL.md, "Throughput").
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tools.ops.cli import is_loopback

# moto answers any credentials; fixed fake ones make sure no real key is ever used or signed with.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class EndpointError(RuntimeError):
    """The embedded AWS endpoint could not start (usually: its port is taken)."""


class AwsEndpoint:
    """Starts moto in server mode unless ``endpoint_url`` is given; ``stop()`` stops what it started.

    ``environment()`` is what every process that talks to this endpoint needs in its environment
    (boto3 honours AWS_ENDPOINT_URL, so the handlers run unmodified).
    """

    def __init__(self, *, port: int, region: str, endpoint_url: str | None = None) -> None:
        self.region = region
        self.embedded = endpoint_url is None
        # The embedded moto, or an AWS_ENDPOINT_URL on this machine (LocalStack): fake credentials, as the ops tools
        # use on a loopback endpoint (tools/ops/cli.py), so no real key is sent to, or signed for, a local endpoint.
        self.fake_credentials = self.embedded or is_loopback(endpoint_url)
        self._port = port
        self._server: Any = None
        self.endpoint_url = endpoint_url or ""

    def start(self) -> AwsEndpoint:
        if not self.embedded:
            return self
        _refuse_busy_port(self._port)
        self._server = subprocess.Popen(
            [sys.executable, "-m", "local_pipeline.moto_endpoint", str(self._port)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,  # closed by stop(), or by the kernel when the runner dies: the server ends
            stdout=subprocess.PIPE,
        )
        assert self._server.stdout is not None
        ready, _, _ = select.select([self._server.stdout], [], [], START_TIMEOUT_SECONDS)
        line = self._server.stdout.readline().decode().split() if ready else []
        if len(line) != 2:
            self.kill()
            raise EndpointError("the embedded AWS endpoint did not start (its error is above)")
        self.endpoint_url = f"http://{line[0]}:{line[1]}"
        return self

    def stop(self) -> None:
        """Stop the embedded server (and so free its port); what it held is gone."""
        if self._server is not None:
            assert self._server.stdin is not None
            self._server.stdin.close()  # the server's signal to stop (it ignores SIGINT and SIGTERM)
            try:
                self._server.wait(10)
            except subprocess.TimeoutExpired:
                pass
            self.kill()

    def kill(self) -> None:
        if self._server is not None:
            if self._server.poll() is None:
                self._server.kill()
                self._server.wait(5)
            self._server = None

    def environment(self) -> dict[str, str]:
        env = {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}
        if self.fake_credentials:
            env.update(FAKE_CREDENTIALS)
            env["AWS_PROFILE"] = ""  # a profile would override the fake keys' source
        return env

    def client(self, service: str, max_pool_connections: int = 10) -> Any:
        """A boto3 client for this endpoint (the runner's own calls: set-up, polling, deletes)."""
        credentials = (
            {
                "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                "aws_session_token": FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            }
            if self.fake_credentials
            else {}
        )
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=Config(max_pool_connections=max_pool_connections, retries={"mode": "standard"}),
            **credentials,
        )


START_TIMEOUT_SECONDS = 60
REPO_ROOT = Path(__file__).resolve().parent.parent


def _serve(port: int) -> None:
    """The embedded server's process: serve until its stdin ends (the runner closed it, or died)."""
    # Ctrl-C and a SIGTERM to the process group (kill -- -PGID, timeout, a supervisor) reach this
    # process too; the runner still drains the queue from it, so only the runner ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # the runner's mask is inherited
    # werkzeug logs every request moto serves; the runner prints its own compact lines instead.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = _serialized_moto_server(port)
    server.start()
    host, bound = server.get_host_and_port()
    print(host, bound, flush=True)  # the runner waits for this line
    sys.stdout.close()
    # Until the runner closes this pipe; a runner killed with SIGKILL closes it too, so its port is freed.
    while sys.stdin.buffer.read(4096):
        pass
    server.stop()


def _serialized_moto_server(port: int) -> Any:
    """moto's ThreadedMotoServer, answering one request at a time.

    moto's backends are not thread-safe, and its server runs each request on its own thread. With
    concurrent SQS calls that loses and duplicates messages: DeleteMessage rebuilds the message list
    while SendMessage appends to it (the appended message is lost), and two ReceiveMessage calls can
    hand out the same message. Serializing requests costs little (moto holds the GIL anyway), but a
    long poll would then block every other caller: the runner's pollers short-poll instead.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class OneRequestAtATime:
        def __init__(self, app: Any) -> None:
            self._app = app
            self._lock = threading.Lock()

        def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
            with self._lock:  # moto computes the whole response inside the call
                return self._app(environ, start_response)

    class SerializedMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:  # ThreadedMotoServer's, with the app wrapped
            app = OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

        def stop(self) -> None:
            super().stop()
            if self._server is not None:
                self._server.server_close()  # free the port now, not when the process exits

    _cheap_retention_check()
    _cheap_sqs_clock()
    return SerializedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)


def _cheap_sqs_clock() -> None:
    """moto's SQS reads the clock per message and per check (is it visible? delayed?), and every
    SendMessage computes all queue attributes, i.e. three scans of the queue with a clock read per
    message. moto's clock, ``unix_time()``, builds datetimes and imports a module on each call: a
    10-message SendMessageBatch with 200 messages in flight costs ~60 ms of CPU. Without an
    argument it is the current POSIX time, which ``time.time()`` returns directly."""

    from moto.core import utils as moto_utils
    from moto.sqs import models as sqs_models

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else moto_utils.unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else moto_utils.unix_time_millis(dt)

    sqs_models.unix_time = unix_time
    sqs_models.unix_time_millis = unix_time_millis


def _cheap_retention_check() -> None:
    """moto's ReceiveMessage checks retention once per returned message through
    get_queue_attributes(), which computes EVERY attribute, including the message counts (a scan of
    the queue): a 10-message receive from a 200-message queue costs ~90 ms of CPU. This reads the
    one attribute it needs, with the same rule (moto 5.2.5, pinned in requirements-dev.txt)."""
    from moto.core.utils import unix_time
    from moto.sqs.models import Message, SQSBackend

    def is_message_valid_based_on_retention_period(self: SQSBackend, queue_name: str, message: Message) -> bool:
        queue = self.get_queue(queue_name)
        retention_period = int(queue.message_retention_period)  # type: ignore[attr-defined]  # set by moto's setattr
        return retention_period + message.sent_timestamp / 1000 > unix_time()  # type: ignore[operator]  # moto: None until sent

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]  # the patch


def apply_environment(env: dict[str, str]) -> None:
    """Put ``env`` into this process's environment; an empty value removes the variable."""
    for name, value in env.items():
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)


def _refuse_busy_port(port: int) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise EndpointError(
                f"cannot start the embedded AWS endpoint: 127.0.0.1:{port} is in use "
                "(set MOTO_PORT to another port, or AWS_ENDPOINT_URL to use a running endpoint)"
            ) from exc


if __name__ == "__main__":  # the embedded server's process, started by AwsEndpoint.start()
    _serve(int(sys.argv[1]))
