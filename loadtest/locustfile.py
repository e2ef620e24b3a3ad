"""Locust load test: POST payload collections to any deployment, record every acknowledgement.

    .venv/bin/locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:3000 \\
        -u 10 -r 10 --run-time 60s --rps 5 --payloads 10 --payload-bytes 1024

Each 202 is appended to ``{--ack-dir}/acks-{pid}.jsonl`` as
``{"requestId", "accepted", "sentAt", "ackAt", "status"}`` (epoch ms, client clock); other answers
are recorded with their status and no ``accepted``. ``python -m loadtest.verify`` then reconciles
these acknowledgements with the bucket. One file per process, so distributed workers on one host
never interleave.

Pacing is open-model where Locust allows it: with ``--rps R`` every user sends on a fixed schedule
(R / users requests/s each) that does not wait for the previous answer beyond its slot. When a slot
is missed because answers are slower than the schedule, the user sends at once and the miss is
counted (``missed slots`` at the end): the offered load was then lower than asked. The end of the
run prints both rates: asked (``--rps``) and sent (achieved). ``--rps 0`` sends back-to-back
(closed model: maximum throughput for the given users).

The default, 5 req/s (50 payloads/s), is what `make run` sustains on a shared 2-core machine
(docs/LOCAL.md, "Throughput"); pass a higher ``--rps`` for a deployment.

Device keys (DEVICE_AUTH=on, e.g. ``API_KIND=http DEVICE_AUTH=on make run``): each user is one device and sends
``Authorization: Bearer <its key>`` besides the API key; the keys come from ``--device-keys FILE``, or against
`make run` are minted from its keyring (``--devices N``, default 10): loadtest/device_keys.py.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

from locust import FastHttpUser, events, task
from locust.env import Environment

from loadtest.device_keys import DEFAULT_DEVICES, DeviceKeysError, device_keys_for, key_of_user
from pipeline.contract import (
    API_KEY_HEADER,
    DEVICE_KEY_HEADER,
    FIRST_ATTEMPT_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    PAYLOADS_PATH,
    format_received_at,
)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--rps", type=float, default=5.0, help="asked requests/s over all users (0 = unpaced)")
    parser.add_argument("--payloads", type=int, default=10, help="payloads per collection (request)")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="approximate JSON size of each payload")
    parser.add_argument("--api-key", default=os.environ.get("API_KEY", "local-dev-key"), help="x-api-key header")
    parser.add_argument("--ack-dir", default="loadtest-results", help="where acks-<pid>.jsonl is written")
    parser.add_argument(
        "--device-keys",
        default=os.environ.get("LOADTEST_DEVICE_KEYS") or None,
        help="file of device keys, one a line: each user sends one as Authorization: Bearer (DEVICE_AUTH=on)",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=int(os.environ.get("LOADTEST_DEVICES") or DEFAULT_DEVICES),
        help="against make run without --device-keys: device keys to mint from its keyring (if DEVICE_AUTH=on)",
    )
    parser.add_argument(
        "--aws-endpoint-url",
        default=f"http://127.0.0.1:{os.environ.get('MOTO_PORT') or 4566}",
        help="make run's embedded AWS, where its keyring is (default: MOTO_PORT's)",
    )


DEVICE_KEYS: list[str] = []  # one per device; users take them in turn (loadtest/device_keys.py)
USER_NUMBERS = itertools.count()


@events.init.add_listener
def _device_keys(environment: Environment, **_: Any) -> None:
    global DEVICE_KEYS
    options = environment.parsed_options
    if options is None:  # not started from the command line (a library user sets DEVICE_KEYS itself)
        return
    try:
        DEVICE_KEYS = device_keys_for(
            environment.host or options.host or "",
            Path(options.device_keys) if options.device_keys else None,
            options.devices,
            options.aws_endpoint_url,
        )
    except DeviceKeysError as exc:  # one line and exit 2 before any request, not 401s for the whole run
        print(f"loadtest: {exc}", file=sys.stderr)
        sys.exit(2)
    if DEVICE_KEYS:
        print(f"loadtest: {len(DEVICE_KEYS)} device keys, one per user (Authorization: Bearer)", file=sys.stderr)


def collection_body(payloads: int, payload_bytes: int) -> str:
    """One collection; each payload is padded so its compact JSON is about ``payload_bytes``. A str
    (ASCII JSON): locust's FastHttpSession takes ``str | dict`` data, and sends a str as UTF-8."""
    base = len(json.dumps({"seq": payloads, "device": "loadtest", "pad": ""}, separators=(",", ":")))
    pad = "x" * max(0, payload_bytes - base)
    data = [{"seq": index, "device": "loadtest", "pad": pad} for index in range(payloads)]
    return json.dumps({"version": "1.0", "token": "loadtest", "data": data}, separators=(",", ":"))


class AckLog:
    """Appends one JSON line per answer. Locust users are gevent greenlets in one thread and a
    write without I/O wait does not yield, so lines never interleave."""

    def __init__(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / f"acks-{os.getpid()}.jsonl"
        self._file: IO[str] = self.path.open("a", encoding="utf-8", buffering=1024 * 1024)
        self.acknowledged = 0
        self.payloads = 0
        self.rejected = 0
        self.missed_slots = 0
        self.started = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


ACKS: AckLog | None = None
BODY = ""


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    global ACKS, BODY
    options = environment.parsed_options
    assert options is not None  # parsed before any test starts (typed Optional by locust)
    BODY = collection_body(options.payloads, options.payload_bytes)
    ACKS = AckLog(options.ack_dir)


@events.quitting.add_listener
def _quit(environment: Environment, **_: Any) -> None:
    if ACKS is None:
        return
    ACKS.close()
    elapsed = max(1e-3, time.monotonic() - ACKS.started)
    sent = ACKS.acknowledged + ACKS.rejected
    assert environment.parsed_options is not None
    asked = environment.parsed_options.rps
    print(
        f"\nacknowledged {ACKS.acknowledged} requests / {ACKS.payloads} payloads, "
        f"{ACKS.rejected} not acknowledged -> {ACKS.path}"
    )
    print(
        f"rate: asked {f'{asked:g} req/s' if asked > 0 else 'unpaced (--rps 0)'}, sent {sent / elapsed:.1f} req/s "
        f"(achieved, over {elapsed:.0f} s)"
        + (
            f"; {ACKS.missed_slots} missed pacing slots: the target answered "
            "slower than the schedule, so less than asked was offered"
            if ACKS.missed_slots
            else ""
        )
    )


class PayloadClient(FastHttpUser):
    """One device sending collections on a fixed schedule."""

    def on_start(self) -> None:
        options = self.environment.parsed_options
        users = max(1, getattr(options, "num_users", None) or 1)
        self.interval = users / options.rps if options.rps > 0 else 0.0
        # A random phase so users do not fire in lockstep.
        self.next_send = time.monotonic() + random.uniform(0, self.interval)
        self.headers = {"content-type": "application/json", API_KEY_HEADER: options.api_key}
        device_key = key_of_user(DEVICE_KEYS, next(USER_NUMBERS))
        if device_key is not None:
            self.headers[DEVICE_KEY_HEADER] = f"Bearer {device_key}"

    def wait_time(self) -> float:
        if not self.interval:
            return 0.0
        now = time.monotonic()
        if self.next_send < now - self.interval:  # more than one slot late: the target is not met
            assert ACKS is not None
            ACKS.missed_slots += 1
            self.next_send = now
        wait = max(0.0, self.next_send - now)
        self.next_send += self.interval
        return wait

    @task
    def post_collection(self) -> None:
        assert ACKS is not None
        sent_at = time.time()
        # Every request is a new logical request: a fresh Idempotency-Key (the body is the same each time), and its
        # first attempt stated as the SDK states it, so the ingest reads and checks it as it does for the SDK's.
        headers = {
            **self.headers,
            IDEMPOTENCY_KEY_HEADER: str(uuid.uuid4()),
            FIRST_ATTEMPT_HEADER: format_received_at(round(sent_at * 1000)),
        }
        with self.client.post(
            PAYLOADS_PATH, data=BODY, headers=headers, name="POST " + PAYLOADS_PATH, catch_response=True
        ) as response:
            record: dict[str, Any] = {
                "sentAt": round(sent_at * 1000),
                "ackAt": round(time.time() * 1000),
                "status": response.status_code,
            }
            try:
                answer = json.loads(response.content or b"null")
            except ValueError:
                answer = None
            if isinstance(answer, dict):
                record["requestId"] = answer.get("requestId")
            if response.status_code == 202 and isinstance(answer, dict) and isinstance(answer.get("accepted"), int):
                record["accepted"] = answer["accepted"]
                ACKS.acknowledged += 1
                ACKS.payloads += answer["accepted"]
                response.success()
            else:
                ACKS.rejected += 1
                response.failure(f"HTTP {response.status_code}")
            ACKS.write(record)
