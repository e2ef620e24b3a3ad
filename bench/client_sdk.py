"""The endpoint SDK (client/, ingest_client): what send() costs, and what it delivers end to end.

    .venv/bin/python -m bench.client_sdk [--sends 20000] [--payloads 5000]      (make bench-client)

S1  send() latency with the endpoint unreachable (spooling only: the sender backs off), p50/p99,
    against a bare os.write of the same framed bytes to an O_APPEND file, interleaved in rounds in
    the same run. Goal: p99 <= 50 us on a quiet machine.
S2  memory while the spool grows: the process's resident set after 20,000 and after 300,000 spooled
    payloads (about 40 MB). Goal: flat (the spool is on disk; the SDK holds one batch at most).
S3  throughput against `make run` (started on free ports, as the tests do): payloads/s from the
    first send() to flush() == True (every payload acknowledged with a 202), against the same
    batches POSTed by a bare http.client loop (no spool, no retries) in the same run.

A benchmark, not a test: it prints one JSON line per figure and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ingest_client import Client
from ingest_client.limits import body_prefix
from ingest_client.spool import frame

from bench.common import emit, figure
from local_pipeline.launch import free_port, start_local_pipeline
from pipeline.contract import PAYLOADS_PATH

PAYLOAD = {"temp": 21.5, "humidity": 48, "device": "sensor-0042", "ok": True, "tags": ["a", "b"]}
ROUNDS = 10


def _percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000  # ns -> us


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def send_latency(sends: int, workdir: Path) -> list[dict[str, Any]]:
    """S1 and S2."""
    unreachable = f"http://127.0.0.1:{free_port()}{PAYLOADS_PATH}"
    client = Client(unreachable, version="1.0", token="bench", spool_dir=workdir / "spool", max_backoff=60)
    record = frame(json.dumps(PAYLOAD, separators=(",", ":")).encode())
    raw_fd = os.open(workdir / "bare.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sdk_ns: list[int] = []
    bare_ns: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(1000):  # warm-up
        client.send(PAYLOAD)
        os.write(raw_fd, record)
    per_round = sends // ROUNDS
    for _ in range(ROUNDS):  # interleaved, so both see the same machine
        for _ in range(per_round):
            started = clock()
            client.send(PAYLOAD)
            sdk_ns.append(clock() - started)
        for _ in range(per_round):
            started = clock()
            os.write(raw_fd, record)
            bare_ns.append(clock() - started)
    os.close(raw_fd)
    for _ in range(20_000 - client.stats().spooled):
        client.send(PAYLOAD)
    rss_small = _rss_mb()
    for _ in range(280_000):
        client.send(PAYLOAD)
    stats = client.stats()
    rss_large = _rss_mb()
    client.close(0)
    sdk_p50, sdk_p99 = _percentile(sdk_ns, 0.5), _percentile(sdk_ns, 0.99)
    bare_p50, bare_p99 = _percentile(bare_ns, 0.5), _percentile(bare_ns, 0.99)
    load = os.getloadavg()[0]
    return [
        figure(
            "S1",
            "SDK send() p99, endpoint unreachable (spooling only)",
            round(sdk_p99, 1),
            "us",
            "p99 <= 50 us on a quiet machine",
            sdk_p99 <= 50,
            p50_us=round(sdk_p50, 1),
            p999_us=round(_percentile(sdk_ns, 0.999), 1),
            bare_os_write_p50_us=round(bare_p50, 1),
            bare_os_write_p99_us=round(bare_p99, 1),
            ratio_p50=round(sdk_p50 / bare_p50, 2),
            ratio_p99=round(sdk_p99 / bare_p99, 2),
            sends=len(sdk_ns),
            record_bytes=len(record),
            load_average=round(load, 1),
        ),
        figure(
            "S2",
            "SDK resident memory as the spool grows (endpoint unreachable)",
            round(rss_large - rss_small, 1),
            "MB",
            "flat (the spool is on disk)",
            rss_large - rss_small < 5,
            rss_at_20k_payloads_mb=round(rss_small, 1),
            rss_at_300k_payloads_mb=round(rss_large, 1),
            spooled_payloads=stats.spooled,
            spooled_mb=round(stats.spooled_bytes / 1e6, 1),
        ),
    ]


def _bare_posts(url: str, payloads: int, batch: int) -> float:
    """The same payloads, batched the same way, POSTed one request after another; payloads/s."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    prefix = body_prefix("1.0", "bench-bare")
    item = json.dumps(PAYLOAD, separators=(",", ":")).encode()
    headers = {"x-api-key": "local-dev-key", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    started = time.monotonic()
    sent = 0
    while sent < payloads:
        count = min(batch, payloads - sent)
        body = prefix + b",".join([item] * count) + b"]}"
        connection.request("POST", PAYLOADS_PATH, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status == 202:
            sent += count
        else:
            time.sleep(float(response.getheader("Retry-After") or 1))
    connection.close()
    return payloads / (time.monotonic() - started)


def throughput(payloads: int, workdir: Path) -> dict[str, Any]:
    """S3."""
    run = start_local_pipeline(workdir / "console.log", free_port(), free_port())
    try:
        url = f"{run.url}{PAYLOADS_PATH}"
        bare_before = _bare_posts(url, payloads // 2, 500)
        client = Client(url, version="1.0", token="bench", api_key="local-dev-key", spool_dir=workdir / "e2e")
        started = time.monotonic()
        for _ in range(payloads):
            client.send(PAYLOAD)
        delivered = client.flush(600)
        sdk_rate = payloads / (time.monotonic() - started)
        client.close(5)
        bare_after = _bare_posts(url, payloads // 2, 500)
    finally:
        run.stop(signal.SIGINT, timeout=120)
        run.kill_leftovers()
    bare = statistics.mean([bare_before, bare_after])
    return figure(
        "S3",
        "SDK throughput against make run: payloads acknowledged (202) per second, send() to flush()",
        round(sdk_rate, 1),
        "payloads/s",
        "close to a bare POST loop of the same batches",
        delivered,
        bare_post_loop_payloads_per_s=round(bare, 1),
        ratio=round(sdk_rate / bare, 2),
        payloads=payloads,
        load_average=round(os.getloadavg()[0], 1),
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_sdk")
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--payloads", type=int, default=5_000)
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-client-") as directory:
        for result in send_latency(arguments.sends, Path(directory)):
            emit(result)
        emit(throughput(arguments.payloads, Path(directory)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
