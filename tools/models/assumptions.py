"""The figures the models cannot read from a price list or a quota page: what `make bench` measured, and
what is assumed about AWS latencies, sizes and counts. Each has its source beside it, and each is a flag of
`python -m tools.models.capacity` and `python -m tools.models.cost` (`--bench FILE` for the measured ones), so
a figure measured in AWS (a REPORT line's duration, an access-log line's size) replaces the assumption.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from types import MappingProxyType
from typing import Any

FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1,769 MB; CPU share scales with memory
BENCH_BATCH_RECORDS = 100  # the consumer batch C1 and L1 are measured on


@dataclass(frozen=True)
class BenchFigures:
    """What `make bench` measured. Defaults: its runs of 2026-11-26 (C1), 2026-12-01 (P1) and 2026-12-02 (L1,
    L1s, S1, S2, D1; docs/PERFORMANCE.md), CPU time on one full core of the development machine;
    ``--bench FILE`` reads a fresh run instead."""

    ingest_cpu_ms: float = 0.585  # P1 real_us: the real handler per request, 10 x 1 KiB (2026-12-01)
    # D1 (2026-12-02): checking a device key with the keyring cached (DEVICE_AUTH=on adds it to P1)
    device_auth_cpu_ms: float = 0.0048
    consumer_cpu_ms_per_record: tuple[float, float] = (0.272, 0.025)  # C1 (payload mode, batch mode)
    ingest_log_bytes: int = 567  # L1: "request accepted" line + EMF blob, per request (2026-12-02)
    ingest_log_lines: int = 2
    # Of L1's ingest bytes, the EMF blob (two counters, stage and service dimensions): 308 B of one invocation's
    # stdout, the rest is the "request accepted" line. L1s: the one blob of summed counts an ingest container
    # writes per METRICS_FLUSH_SECONDS window at LOG_LEVEL=WARNING. The consumer's blob (three metrics) is 348 B.
    ingest_emf_bytes: int = 308
    ingest_window_emf_bytes: int = 312
    consumer_emf_bytes: int = 348
    consumer_log_bytes_per_payload: float = 627.95  # L1 payload mode: one line per record + EMF
    consumer_log_bytes_per_batch: int = 918  # L1 batch mode: one line per object + EMF
    # S1: the consumer's gzip NDJSON batch objects of 2,000 telemetry-like payloads of 1 KiB
    # (bench/stored_bytes.py): envelope bytes / stored bytes.
    stored_compression: float = 5.834
    # S2: the same envelopes as Parquet (zstd) in Athena's file order (hashed by id): envelope bytes / Parquet
    # bytes, and the compressed bytes per payload of the columns a typical query reads (they do not grow with
    # the payload). Bench Q1 (the lake's) finds the id column at 5.6 B a payload in that order too.
    compacted_compression: float = 5.08
    compacted_column_bytes: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"id": 5.53, "token": 3.18, "receivedAt": 1.75, "requestId": 3.42})
    )

    def consumer_cpu_ms(self, object_mode: str) -> float:
        return self.consumer_cpu_ms_per_record[0 if object_mode == "payload" else 1]


MEASURED = BenchFigures()


def load_bench(lines: Iterable[str]) -> BenchFigures:
    """Read `make bench` JSON lines (P1, C1, L1, L1s, S1, S2, D1); figures it does not contain keep their
    defaults."""
    values: dict[str, Any] = {}
    cpu = list(MEASURED.consumer_cpu_ms_per_record)
    for line in lines:
        if not line.strip().startswith("{"):
            continue
        result = json.loads(line)
        name, mode = result.get("figure"), result.get("object_mode")
        if name == "P1":
            values["ingest_cpu_ms"] = result["real_us"] / 1000
        elif name == "C1":
            cpu[0 if mode == "payload" else 1] = result["cpu_us_per_record"] / 1000
        elif name == "L1" and mode is None:
            values.update(ingest_log_bytes=result["value"], ingest_log_lines=result["lines"])
        elif name == "L1" and mode == "payload":
            values["consumer_log_bytes_per_payload"] = result["value"] / BENCH_BATCH_RECORDS
        elif name == "L1" and mode == "batch":
            values["consumer_log_bytes_per_batch"] = result["value"]
        elif name == "L1s":
            values["ingest_window_emf_bytes"] = result["value"]
        elif name == "D1":
            values["device_auth_cpu_ms"] = result["value"] / 1000
        elif name == "S1":
            values["stored_compression"] = result["value"]
        elif name == "S2":
            values["compacted_compression"] = result["ratio_to_envelope"]
            values["compacted_column_bytes"] = MappingProxyType(dict(result["column_bytes_per_payload"]))
    return replace(MEASURED, consumer_cpu_ms_per_record=(cpu[0], cpu[1]), **values)


# The 202 the client gets: {"requestId": "<uuid>", "accepted": 10} and the gateway's headers (Date,
# Content-Type, Content-Length, Connection, a request id header), as data transferred out.
RESPONSE_BODY = json.dumps({"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "accepted": 10})
RESPONSE_HEADER_BYTES = 220


@lru_cache(maxsize=1)
def log_compression() -> float:
    """CloudWatch Logs bills archived (stored) log data compressed. The model takes gzip's ratio on a seeded
    sample of access-log lines of the default format (random request ids, statuses and latencies) as that
    compression."""
    from infra.access_logs import typical_access_log_line

    rng = random.Random(11)
    typical = json.loads(typical_access_log_line("rest"))
    lines = []
    for _ in range(2000):
        line = dict(typical)
        request_id = str(uuid.UUID(int=rng.getrandbits(128)))
        line.update(
            requestId=request_id,
            extendedRequestId=f"{rng.getrandbits(80):020x}",
            status=rng.choice(("202",) * 50 + ("400", "401", "413", "429")),
            latencyMs=str(max(4, int(rng.gauss(14, 4)))),
        )
        lines.append(json.dumps(line, separators=(",", ":")))
    text = "\n".join(lines).encode()
    return len(text) / len(gzip.compress(text))


@dataclass(frozen=True)
class Assumptions:
    """Per-invocation and per-request figures the models take as given. Each default's source is its row of the
    assumptions table in docs/CAPACITY.md (the template tools/models/capacity_doc.md.tmpl); a comment here
    says only what that row does not."""

    measured: BenchFigures = MEASURED
    sqs_send_ms: float = 8.0
    slow_sqs_send_ms: float = 100.0
    # "Timeouts and Retries for Latency-Sensitive Applications" (S3 performance whitepaper): below 512 KB,
    # "median latencies are often in the tens of milliseconds".
    put_ms: float = 20.0
    batch_put_ms: float = 50.0
    ingest_ms: float | None = None
    consumer_ms: float | None = None
    platform_log_bytes: int = 390  # Lambda's START, END and REPORT lines per invocation
    platform_log_lines: int = 3
    access_log_bytes: int | None = None
    response_bytes: int = len(RESPONSE_BODY) + RESPONSE_HEADER_BYTES
    trace_sampling: float = 0.05  # X-Ray's default rule: 1 request/s, then 5 %
    custom_metrics: int = 18  # metric name x dimension sets both functions emit
    # Alarm metrics are counted from the config (tools/models/alarm_metrics.py), not assumed.
    dashboards: int = 1
    kms_keys: int = 1  # the alarm topic's key
    epus_per_poller: float = 1.0
    environment_hours: float = 2.0
    # A scheduled first run of an hour; tests/infra/test_compaction.py walks that path through the synthesized
    # state machine (a re-run adds 3 + 8 per superseded directory, waiting for a lease 4 a try).
    compaction_transitions: int = 26
    multipart_part_bytes: int = 64 * 1024**2
    row_group_bytes: int = 128 * 1024**2
    # AWS publishes no rate for an Athena CTAS: `make compact`'s DuckDB running the same compaction_select over
    # bench Q1's hour (30,000 payloads, 1.4 MB of gzip NDJSON) on a 2-core machine (2026-12-08, best of 5,
    # load average 5). Athena spreads a scan over many workers, so the run time it gives is a warning.
    compaction_rows_per_second: float = 93_500.0


DEFAULT = Assumptions()


def cpu_scale(memory_mb: int) -> float:
    """How much longer CPU work takes at this memory than on one full core (Lambda gives a full
    vCPU at 1,769 MB; our handlers are single-threaded for CPU, so more memory does not help)."""
    return max(1.0, FULL_VCPU_MB / memory_mb)


def consumer_batch_ms(
    object_mode: str,
    payloads: float,
    upload_concurrency: int,
    memory_mb: int,
    put_ms: float = DEFAULT.put_ms,
    batch_put_ms: float = DEFAULT.batch_put_ms,
    measured: BenchFigures = MEASURED,
) -> float:
    """Duration of one consumer invocation holding ``payloads`` payloads: its PUTs (in waves of
    UPLOAD_CONCURRENCY in payload mode, one object in batch mode) plus its CPU, counted without overlap
    (an upper bound)."""
    cpu = payloads * measured.consumer_cpu_ms(object_mode) * cpu_scale(memory_mb)
    if object_mode == "payload":
        return math.ceil(payloads / upload_concurrency) * put_ms + cpu
    return batch_put_ms + cpu
