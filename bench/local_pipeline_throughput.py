"""Sustained end-to-end throughput of `make run`: POST -> accepted (202) -> stored in S3.

    .venv/bin/python -m bench.local_pipeline_throughput [--seconds 30] [--clients 4] [--warmup 10]
                                                        [--payloads 10] [--payload-bytes 1024] [--raw-seconds 15]

Starts the local pipeline (default settings, free ports) as a subprocess (local_pipeline/launch.py),
POSTs collections from a few client threads to 127.0.0.1 for a bounded time, waits until every
accepted payload is in the embedded S3, stops the pipeline with SIGINT, and prints requests/s,
payloads/s and latencies.

In the same run, before and after the pipeline's turn, it times the RAW LOOP: what the pipeline asks
of its embedded moto per request, with no HTTP, no handlers and no Lambda environments in between
(SendMessageBatch of 10 -> ReceiveMessage -> PutObject x 10 -> DeleteMessageBatch), from as many
threads as there are clients, against the same endpoint. Pipeline payloads/s / raw payloads/s is
how close the runner gets to what moto itself can do on this machine at this moment (the machine is
shared: both figures come from the same minute, so the ratio is steadier than either).
A benchmark, not a test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests

from local_pipeline.launch import LaunchError, LocalRun, free_port, start_local_pipeline
from pipeline.contract import (
    API_KEY_HEADER,
    PAYLOAD_CONTENT_TYPE,
    PAYLOAD_OBJECT_SUFFIX,
    PAYLOADS_PATH,
    SQS_MAX_BATCH_ENTRIES,
)

BUCKET = "ingest-pipeline-local-payloads"
QUEUE = "ingest-pipeline-local"


@dataclass
class ClientResults:
    latencies_ms: list[float] = field(default_factory=list)
    accepted_requests: int = 0
    accepted_payloads: int = 0
    refused: dict[int, int] = field(default_factory=dict)


def collection_body(payloads: int, payload_bytes: int) -> bytes:
    """A collection of ``payloads`` JSON objects of exactly ``payload_bytes`` bytes each."""
    items = []
    for seq in range(payloads):
        skeleton = json.dumps({"seq": seq, "fill": ""}, separators=(",", ":"))
        items.append(
            json.dumps({"seq": seq, "fill": "x" * max(0, payload_bytes - len(skeleton))}, separators=(",", ":"))
        )
    return ('{"version":"1.0","token":"bench-device","data":[' + ",".join(items) + "]}").encode()


def _post_until(url: str, body: bytes, key: str, deadline: float, results: ClientResults) -> None:
    headers = {"Content-Type": "application/json", API_KEY_HEADER: key}
    with requests.Session() as session:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = session.post(url, data=body, headers=headers, timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code == 202:
                results.latencies_ms.append(elapsed)
                results.accepted_requests += 1
                results.accepted_payloads += response.json()["accepted"]
            else:
                results.refused[response.status_code] = results.refused.get(response.status_code, 0) + 1


def _post_all(url: str, body: bytes, key: str, deadline: float, results: list[ClientResults]) -> None:
    threads = [threading.Thread(target=_post_until, args=(url, body, key, deadline, r)) for r in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


RAW_QUEUE = "throughput-raw-loop"
RAW_PREFIX = "raw-loop/"
# One full SendMessageBatch: what a request of 10 payloads asks of SQS.
RAW_BATCH = SQS_MAX_BATCH_ENTRIES


def _raw_loop(sqs: Any, s3: Any, payload: str, deadline: float, counts: list[int], slot: int) -> None:
    """One thread of the raw loop: the moto calls of one 10-payload request, end to end, on a queue
    of its own (so no thread waits for messages another one took)."""
    queue_url = sqs.create_queue(QueueName=f"{RAW_QUEUE}-{slot}")["QueueUrl"]
    body = payload.encode()
    while time.monotonic() < deadline:
        sqs.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": payload} for i in range(RAW_BATCH)]
        )
        received: list[dict[str, Any]] = []
        while len(received) < RAW_BATCH:
            received += sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=RAW_BATCH - len(received),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        for message in received:
            s3.put_object(
                Bucket=BUCKET,
                Key=f"{RAW_PREFIX}{message['MessageId']}{PAYLOAD_OBJECT_SUFFIX}",
                Body=body,
                ContentType=PAYLOAD_CONTENT_TYPE,
                IfNoneMatch="*",
            )
        for start in range(0, len(received), SQS_MAX_BATCH_ENTRIES):
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(received[start : start + SQS_MAX_BATCH_ENTRIES])
                ],
            )
        counts[slot] += len(received)


def raw_payloads_per_second(aws: dict[str, Any], threads: int, seconds: float, payload_bytes: int) -> float:
    """Payloads/s of ``threads`` raw loops for ``seconds`` against the endpoint in ``aws``."""
    from botocore.config import Config

    config = Config(max_pool_connections=threads + 2, retries={"mode": "standard"})
    sqs, s3 = boto3.client("sqs", config=config, **aws), boto3.client("s3", config=config, **aws)
    payload = json.loads(collection_body(1, payload_bytes))["data"][0]
    text = json.dumps(payload, separators=(",", ":"))
    counts = [0] * threads
    started = time.monotonic()
    loops = [
        threading.Thread(target=_raw_loop, args=(sqs, s3, text, started + seconds, counts, n)) for n in range(threads)
    ]
    for loop in loops:
        loop.start()
    for loop in loops:
        loop.join()
    return sum(counts) / (time.monotonic() - started)


def _stored_records(console: Path) -> int:
    """Payloads the consumer reported stored (the runner's "batch ... stored=N" lines, from its metrics).
    Read from its console, not by listing the bucket: a listing holds moto (one request at a time)
    for hundreds of ms once thousands of objects are stored, which would slow the pipeline measured."""
    stored = 0
    for line in console.read_text(errors="replace").splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if " batch worker=" in line and "stored" in fields:
            stored += int(fields["stored"])
    return stored


def _count_objects(s3: Any) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="payloads/")
    return sum(page.get("KeyCount", 0) for page in pages)


def _cpu_seconds(pgid: int) -> tuple[float, float]:
    """CPU time (user + system) used so far by the runner process (HTTP front, pollers) and by the
    other live processes of its group (the embedded moto, the Lambda environments)."""
    ticks = os.sysconf("SC_CLK_TCK")
    runner = environments = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ... utime(11) stime(12)
            used = int(fields[11]) + int(fields[12])
            if int(stat.parent.name) == pgid:
                runner += used
            else:
                environments += used
    return runner / ticks, environments / ticks


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="how long to POST (default 30)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--payloads", type=int, default=10, help="payloads per request (default 10)")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="bytes per payload (default 1024)")
    parser.add_argument("--warmup", type=float, default=10, help="seconds of uncounted POSTs first (default 10)")
    parser.add_argument("--drain-timeout", type=float, default=300, help="max seconds to wait for storage")
    parser.add_argument(
        "--raw-seconds",
        type=float,
        default=15,
        help="seconds of the raw moto loop before and after the pipeline's turn (default 15; 0 = skip)",
    )
    args = parser.parse_args()

    console = Path(tempfile.mkstemp(prefix="local-pipeline-throughput-", suffix=".log")[1])
    try:
        run = start_local_pipeline(console, free_port(), free_port())
    except LaunchError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        return _measure(args, run)
    finally:
        try:
            run.stop(signal.SIGINT, timeout=120)  # Ctrl-C: drains the queue and prints the summary
        finally:
            run.kill_leftovers()
        tail = run.output().split("Summary", 1)
        if len(tail) == 2:
            print("runner summary:" + tail[1].rstrip())
        print(f"runner console: {console}")


def _measure(args: argparse.Namespace, run: LocalRun) -> int:
    console, runner_pgid = run.console, run.process.pid
    aws = {
        "endpoint_url": run.aws_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3, sqs = boto3.client("s3", **aws), boto3.client("sqs", **aws)
    body = collection_body(args.payloads, args.payload_bytes)
    url = f"{run.url}{PAYLOADS_PATH}"
    key = os.environ.get("API_KEY") or "local-dev-key"
    print(
        f"POSTing {args.payloads} x {args.payload_bytes} B payloads ({len(body)} B bodies) from {args.clients} "
        f"clients for {args.seconds:.0f} s to {url}"
    )

    if args.warmup > 0:
        # Lambda-like environments start on demand (cold starts); sustained throughput excludes them.
        warmup = [ClientResults() for _ in range(args.clients)]
        _post_all(url, body, key, time.monotonic() + args.warmup, warmup)
        warm_payloads = sum(r.accepted_payloads for r in warmup)
        while _stored_records(console) < warm_payloads:
            time.sleep(0.5)
        print(
            f"warm-up       {warm_payloads} payloads posted and stored in the first {args.warmup:.0f} s+ (not counted)"
        )
    raw_before = (
        raw_payloads_per_second(aws, args.clients, args.raw_seconds, args.payload_bytes)
        if args.raw_seconds > 0
        else 0.0
    )
    baseline = _stored_records(console)
    objects_before = _count_objects(s3)

    results = [ClientResults() for _ in range(args.clients)]
    cpu_before = _cpu_seconds(runner_pgid)
    started = time.monotonic()
    deadline = started + args.seconds
    _post_all(url, body, key, deadline, results)
    posting_done = time.monotonic()
    queue_url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    backlog = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    requests_ok = sum(r.accepted_requests for r in results)
    payloads_ok = sum(r.accepted_payloads for r in results)

    stored = 0
    while time.monotonic() - posting_done < args.drain_timeout:
        stored = _stored_records(console) - baseline
        if stored >= payloads_ok:
            break
        time.sleep(0.2)
    all_stored = time.monotonic()
    cpu_after = _cpu_seconds(runner_pgid)
    cpu_runner, cpu_environments = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]
    cpu_used = cpu_runner + cpu_environments
    objects = _count_objects(s3) - objects_before  # after the clock stopped: the exactly-once check

    latencies = [latency for r in results for latency in r.latencies_ms]
    refused: dict[int, int] = {}
    for r in results:
        for status, count in r.refused.items():
            refused[status] = refused.get(status, 0) + count
    end_to_end = all_stored - started
    print(
        f"accepted      {requests_ok} requests, {payloads_ok} payloads in {posting_done - started:.1f} s"
        f" ({requests_ok / (posting_done - started):.1f} req/s at the HTTP front); refused: {refused or 'none'}"
    )
    print(
        f"backlog       {backlog['Attributes']['ApproximateNumberOfMessages']} messages visible when POSTing stopped;"
        f" all stored {all_stored - posting_done:.1f} s later"
    )
    print(
        f"stored        {objects} objects for {payloads_ok} accepted payloads"
        f" ({'exactly once' if objects == payloads_ok else 'MISMATCH'})"
    )
    print(
        f"end to end    {requests_ok / end_to_end:.1f} requests/s, {payloads_ok / end_to_end:.0f} payloads/s"
        f" (accepted -> stored, over {end_to_end:.1f} s)"
    )
    print(
        f"runner CPU    {cpu_used:.1f} s over {end_to_end:.1f} s ({cpu_used / end_to_end * 100:.0f}% of one core;"
        f" {cpu_used * 1000 / max(1, requests_ok):.0f} ms per request: {cpu_runner * 1000 / max(1, requests_ok):.0f} in"
        f" the runner (HTTP, pollers), {cpu_environments * 1000 / max(1, requests_ok):.0f} in moto and the Lambda"
        f" environments); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if latencies:
        print(
            f"HTTP latency  p50 {statistics.median(latencies):.1f} ms, p99 {_percentile(latencies, 0.99):.1f} ms"
            f" (202 responses)"
        )
    if args.raw_seconds > 0:
        raw_after = raw_payloads_per_second(aws, args.clients, args.raw_seconds, args.payload_bytes)
        raw = (raw_before + raw_after) / 2
        pipeline = payloads_ok / end_to_end
        print(
            f"raw moto loop {raw:.0f} payloads/s ({raw_before:.0f} before, {raw_after:.0f} after; {args.clients}"
            " threads of SendMessageBatch -> ReceiveMessage -> PutObject x10 -> DeleteMessageBatch, no handlers)"
        )
        print(
            f"ratio         {pipeline / raw:.2f} (pipeline {pipeline:.0f} payloads/s / raw loop {raw:.0f} payloads/s)"
        )
    return 0 if objects == payloads_ok else 1


if __name__ == "__main__":
    sys.exit(main())
