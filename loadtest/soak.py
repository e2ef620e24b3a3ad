"""`make soak`: a bounded, steady HTTP load on the local pipeline (`python -m local_pipeline`), then a
reconciliation of every 202-acknowledged payload against every object version in its S3.

It starts the runner on free loopback ports, checks the API key at the front door (403 problem+json),
sends --rate requests/s from --clients HTTP clients for --seconds, waits for the worker pool to
store everything, reconciles (loadtest/reconcile.py, the reconciler of make verify and the reliability
tests), stops the runner with Ctrl-C (SIGINT) and prints the figures.
Exit status 1 if any 5xx, transport error, lost, duplicated or altered payload, or dead letter.
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from botocore.config import Config

from loadtest.reconcile import bucket_copies, expected_payloads, reconcile
from local_pipeline.launch import free_port, start_local_pipeline
from pipeline.contract import API_KEY_HEADER, PAYLOADS_PATH, PROBLEM_CONTENT_TYPE, problem_type

API_KEY = "soak-api-key"
RUNNER_ENV = {
    "API_KEY": API_KEY,
    # No fault is injected, but a record that fails anyway comes back in 30 s, not 3 min
    "LOCAL_VISIBILITY_TIMEOUT_SECONDS": "30",
    "LOCAL_DRAIN_SECONDS": "30",
}
ACCESS_LINE = re.compile(rf"POST {re.escape(PAYLOADS_PATH)} 202 payloads=\d+ ([\d.]+)ms")


@dataclass
class Outcome:
    status: int | None
    latency_ms: float
    request_id: str | None = None
    sent: dict[str, Any] | None = None


def collection_for(index: int, rng: random.Random, max_payloads: int) -> dict[str, Any]:
    return {
        "version": "soak-1",
        "token": f"soak-device-{index % 50}",
        "data": [
            {
                "request": index,
                "seq": seq,
                "temp": round(rng.uniform(-20, 40), 2),
                "pad": rng.randbytes(rng.randint(0, 64)).hex(),
            }
            for seq in range(rng.randint(1, max_payloads))
        ],
    }


def send_load(url: str, seconds: float, rate: float, clients: int, max_payloads: int) -> list[Outcome]:
    """Request i is due at start + i/rate (an open model: a slow answer does not slow the schedule
    down unless every client is busy)."""
    total = int(seconds * rate)
    next_index = iter(range(total))
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    outcomes: list[Outcome] = []

    def client(number: int) -> list[Outcome]:
        session = requests.Session()
        rng = random.Random(number)
        mine: list[Outcome] = []
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return mine
            time.sleep(max(0.0, start + index / rate - time.monotonic()))
            sent = collection_for(index, rng, max_payloads)
            began = time.perf_counter()
            try:
                response = session.post(
                    url,
                    data=json.dumps(sent),
                    timeout=30,
                    headers={"content-type": "application/json", API_KEY_HEADER: API_KEY},
                )
            except requests.RequestException:
                mine.append(Outcome(None, (time.perf_counter() - began) * 1000))
                continue
            latency = (time.perf_counter() - began) * 1000
            accepted = response.status_code == 202
            mine.append(
                Outcome(
                    response.status_code,
                    latency,
                    response.json()["requestId"] if accepted else None,
                    sent if accepted else None,
                )
            )

    with ThreadPoolExecutor(max_workers=clients) as pool:
        for result in pool.map(client, range(clients)):
            outcomes.extend(result)
    return outcomes


def front_door_checks(url: str) -> list[str]:
    """The API key is enforced before the ingest runs, and bad input is a 4xx problem."""
    failures = []
    body = json.dumps({"version": "1", "token": "t", "data": [{"a": 1}]})
    missing = requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=10)
    if missing.status_code != 403 or missing.headers.get("content-type") != PROBLEM_CONTENT_TYPE:
        failures.append(f"missing API key answered {missing.status_code} {missing.headers.get('content-type')}")
    malformed = requests.post(
        url, data=body[:-3], headers={"content-type": "application/json", API_KEY_HEADER: API_KEY}, timeout=10
    )
    if malformed.status_code != 400 or malformed.json().get("type") != problem_type("malformed-json"):
        failures.append(f"truncated JSON answered {malformed.status_code}")
    return failures


def banner_value(console: str, name: str) -> str:
    """A value of the runner's start banner, e.g. ``  bucket   ingest-pipeline-local-...``."""
    match = re.search(rf"^\s+{name}\s+(\S+)", console, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"the runner's banner has no {name} line:\n{console}")
    return match.group(1)


def count_objects(s3: Any, bucket: str) -> int:
    return sum(page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--rate", type=float, default=10, help="requests per second, all clients together")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-payloads", type=int, default=10, help="each request holds 1..N payloads")
    parser.add_argument("--drain-timeout", type=float, default=180)
    args = parser.parse_args()
    if not (0 < args.seconds <= 1800 and 0 < args.rate <= 200 and 1 <= args.clients <= 32):
        parser.error("bounded load only: --seconds 1..1800, --rate up to 200, --clients 1..32")

    console = Path(tempfile.mkdtemp(prefix="soak-")) / "console.log"
    port, aws_port = free_port(), free_port()
    failures: list[str] = []
    print(f"starting the local pipeline on 127.0.0.1:{port} (moto on {aws_port})...", flush=True)
    run = start_local_pipeline(console, port, aws_port, env=RUNNER_ENV, timeout=180)
    try:
        url = run.url + PAYLOADS_PATH
        s3, sqs = run.client("s3", config=Config(max_pool_connections=16)), run.client("sqs")
        bucket = banner_value(run.output(), "bucket")
        # A versioned bucket keeps every write: an overwrite would show up as a second version.
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        failures += front_door_checks(url)

        print(f"load: {args.rate:g} requests/s from {args.clients} clients for {args.seconds:g} s...", flush=True)
        began = time.monotonic()
        outcomes = send_load(url, args.seconds, args.rate, args.clients, args.max_payloads)
        load_seconds = time.monotonic() - began
        acknowledged = {o.request_id: o.sent for o in outcomes if o.request_id and o.sent}
        expected = expected_payloads(acknowledged)

        print(f"waiting for the worker pool to store {len(expected)} payloads...", flush=True)
        drain_began = time.monotonic()
        result = reconcile(expected, bucket_copies(s3, bucket))
        while result.lost and time.monotonic() - drain_began < args.drain_timeout:
            time.sleep(2)
            result = reconcile(expected, bucket_copies(s3, bucket))
        drain_seconds = time.monotonic() - drain_began
        stored_objects = count_objects(s3, bucket)
        dlq_url = sqs.get_queue_url(QueueName="ingest-pipeline-local-dlq")["QueueUrl"]
        dead = int(
            sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
                "ApproximateNumberOfMessages"
            ]
        )
    finally:
        try:
            exit_code: int | None = run.stop(timeout=90)  # Ctrl-C: drains the queue and prints its summary
        except subprocess.TimeoutExpired:
            exit_code = None
        run.kill_leftovers()
    output = run.output()
    server_ms = [float(ms) for ms in ACCESS_LINE.findall(output)]

    statuses = Counter(o.status for o in outcomes)
    server_errors = sum(n for status, n in statuses.items() if status and status >= 500)
    transport_errors = statuses.get(None, 0)
    latencies = [o.latency_ms for o in outcomes if o.status is not None]
    figures = {
        "requests": len(outcomes),
        "status": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))},
        "achieved_rps": round(len(outcomes) / load_seconds, 1),
        "payloads_acknowledged": len(expected),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies, default=0), 1),
            "mean": round(statistics.fmean(latencies), 1) if latencies else 0,
        },
        "server_latency_ms": {
            "p50": round(percentile(server_ms, 0.50), 1),
            "p99": round(percentile(server_ms, 0.99), 1),
        },
        "stored_objects": stored_objects,
        "stored_versions": result.stored,
        "lost": len(result.lost),
        "duplicated": len(result.duplicated),
        "altered": len(result.altered),
        "unacknowledged_stored": len(result.unacknowledged),
        "dead_lettered": dead,
        "drain_seconds": round(drain_seconds, 1),
        "runner_exit_code": exit_code,
    }
    print("\n".join(output.splitlines()[-40:]))
    print("\nsoak figures:\n" + json.dumps(figures, indent=2))
    failures += [
        f"{name}: {figures[name]}" for name in ("lost", "duplicated", "altered", "dead_lettered") if figures[name]
    ]
    if server_errors or transport_errors:
        failures.append(f"{server_errors} 5xx and {transport_errors} transport errors")
    if statuses.get(202, 0) != len(outcomes):
        failures.append(f"only {statuses.get(202, 0)} of {len(outcomes)} requests got 202")
    print(
        "\nSOAK " + ("FAILED: " + "; ".join(failures) if failures else "PASSED: zero 5xx, nothing lost or duplicated")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
