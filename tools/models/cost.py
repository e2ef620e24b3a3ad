"""Monthly cost of the pipeline at a given load, from list prices (tools/models/prices.py).

    python -m tools.models.cost --rpm 1000000 --payloads 10 --payload-bytes 1024

Prints one line per billed item for both OBJECT_MODEs (payload: one S3 object per payload; batch:
one object per consumer batch of BATCH_SIZE). Memory sizes, BATCH_SIZE and alarm counts come from
PipelineConfig, resolved as the stack resolves it (environment, cdk.json context, PROFILE preset,
default: e.g. ``BATCH_SIZE=1000 python -m tools.models.cost ...``); durations and log volumes are
`make bench` figures scaled to Lambda's CPU share, overridable by flags. A month is 30 days.
Free tiers are ignored. See docs/CAPACITY.md for the reasoning behind each line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.contract import SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES
from tools.models import prices

MINUTES_PER_MONTH = 30 * 24 * 60
FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1,769 MB; CPU share scales with memory


@dataclass(frozen=True)
class Workload:
    requests_per_minute: float
    payloads_per_request: int
    message_bytes: int  # one SQS message: the payload in its envelope, plus the requestId attribute

    @property
    def requests(self) -> float:
        return self.requests_per_minute * MINUTES_PER_MONTH

    @property
    def payloads(self) -> float:
        return self.requests * self.payloads_per_request


BENCH_BATCH_RECORDS = 100  # the consumer batch C1 and L1 are measured on


@dataclass(frozen=True)
class BenchFigures:
    """What `make bench` measured. Defaults: its run on 2026-11-26 (docs/PERFORMANCE.md), CPU time
    on one full core of the development machine; ``--bench FILE`` reads a fresh run instead."""

    ingest_cpu_ms: float = 0.5  # P1 real_us: the real handler per request, 10 x 1 KiB
    consumer_cpu_ms_per_record: tuple[float, float] = (0.272, 0.025)  # C1 (payload mode, batch mode)
    ingest_log_bytes: int = 741  # L1: "request accepted" line + EMF blob, per request
    ingest_log_lines: int = 2
    consumer_log_bytes_per_payload: float = 661.0  # L1 payload mode: one line per record + EMF
    consumer_log_bytes_per_batch: int = 973  # L1 batch mode: one line per object + EMF

    def consumer_cpu_ms(self, object_mode: str) -> float:
        return self.consumer_cpu_ms_per_record[0 if object_mode == "payload" else 1]


MEASURED = BenchFigures()


def load_bench(lines: Iterable[str]) -> BenchFigures:
    """Read `make bench` JSON lines (P1, C1, L1); figures it does not contain keep their defaults."""
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
    return replace(MEASURED, consumer_cpu_ms_per_record=(cpu[0], cpu[1]), **values)


# Assumed AWS latencies (not measurable offline).
SQS_SEND_MS = 8.0  # one SendMessageBatch round trip in-Region
PUT_MS = 20.0  # one small PutObject (P3 uses the same figure)
BATCH_PUT_MS = 50.0  # one gzip NDJSON object of a batch


def cpu_scale(memory_mb: int) -> float:
    """How much longer CPU work takes at this memory than on one full core (Lambda gives a full
    vCPU at 1,769 MB; our handlers are single-threaded for CPU, so more memory does not help)."""
    return max(1.0, FULL_VCPU_MB / memory_mb)


def consumer_batch_ms(
    object_mode: str,
    batch_size: int,
    upload_concurrency: int,
    memory_mb: int,
    put_ms: float = PUT_MS,
    batch_put_ms: float = BATCH_PUT_MS,
    measured: BenchFigures = MEASURED,
) -> float:
    """Duration of one consumer invocation: its PUTs (in waves of UPLOAD_CONCURRENCY in payload
    mode, one object in batch mode) plus its CPU, counted without overlap (an upper bound)."""
    cpu = batch_size * measured.consumer_cpu_ms(object_mode) * cpu_scale(memory_mb)
    if object_mode == "payload":
        return math.ceil(batch_size / upload_concurrency) * put_ms + cpu
    return batch_put_ms + cpu


@dataclass(frozen=True)
class Assumptions:
    """Per-invocation figures; assumptions_for() derives them from a PipelineConfig and `make bench`."""

    ingest_ms: float = MEASURED.ingest_cpu_ms * cpu_scale(512) + SQS_SEND_MS
    consumer_ms_payload_mode: float = consumer_batch_ms("payload", 100, 16, 512)
    consumer_ms_batch_mode: float = consumer_batch_ms("batch", 100, 16, 512)
    ingest_log_bytes: int = MEASURED.ingest_log_bytes
    ingest_log_lines: int = MEASURED.ingest_log_lines
    consumer_log_bytes_per_payload: float = MEASURED.consumer_log_bytes_per_payload
    consumer_log_bytes_per_batch: int = MEASURED.consumer_log_bytes_per_batch
    platform_log_bytes: int = 390  # Lambda's START, END and REPORT lines (with X-Ray ids), per invocation
    platform_log_lines: int = 3
    access_log_bytes: int = 260  # API Gateway access log, JSON standard fields, per request
    trace_sampling: float = 0.05  # X-Ray default rule: 1 request/s, then 5 %
    custom_metrics: int = 18  # metric name x dimension sets both functions emit
    tracing: bool = True


@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: float
    unit: str
    usd: float


def tiered(quantity: float, tiers: list[tuple[float | None, float]]) -> float:
    """Cost of ``quantity`` units under volume tiers [(upper bound or None, price per unit)]."""
    cost, lower = 0.0, 0.0
    for upper, price in tiers:
        top = quantity if upper is None else min(quantity, upper)
        if top > lower:
            cost += (top - lower) * price
        if upper is None or quantity <= upper:
            break
        lower = upper
    return cost


def _chunks(size_bytes: float) -> int:
    return max(1, math.ceil(size_bytes / prices.SQS_CHUNK_BYTES))


def send_requests_per_request(payloads: int, message_bytes: int) -> int:
    """Billed SQS requests for one ingest request: SendMessageBatch calls packed as the ingest packs
    them (10 entries, 1 MiB per call), each billed per started 64 KB chunk."""
    per_call = max(1, min(SQS_MAX_BATCH_ENTRIES, SQS_MAX_BATCH_BYTES // message_bytes))
    full_calls, rest = divmod(payloads, per_call)
    billed = full_calls * _chunks(per_call * message_bytes)
    return billed + (_chunks(rest * message_bytes) if rest else 0)


def lambda_gb_seconds(invocations: float, duration_ms: float, memory_mb: int) -> float:
    billed_ms = math.ceil(duration_ms / prices.LAMBDA_BILLING_GRANULARITY_MS) * prices.LAMBDA_BILLING_GRANULARITY_MS
    return invocations * billed_ms / 1000 * memory_mb / 1024


def monthly_lines(
    workload: Workload,
    object_mode: str,
    *,
    ingest_memory_mb: int,
    consumer_memory_mb: int,
    batch_size: int,
    alarms: int,
    dashboards: int,
    assume: Assumptions,
    object_expiration_days: int = 0,
    access_log_expiration_days: int = 90,
) -> list[Line]:
    """Every billed item for one month at this workload, in one OBJECT_MODE. Storage is priced at its
    steady state under the expiry rules (RAW_RETENTION_DAYS, ACCESS_LOG_EXPIRATION_DAYS); objects
    that never expire are priced at month 12 of growth."""
    requests, payloads = workload.requests, workload.payloads
    batches = payloads / batch_size
    consumer_ms = assume.consumer_ms_payload_mode if object_mode == "payload" else assume.consumer_ms_batch_mode
    lines: list[Line] = [
        Line(
            "API Gateway",
            "REST requests (tiered)",
            requests,
            "requests",
            tiered(requests, prices.API_GATEWAY_REST_TIERS),
        )
    ]

    # Lambda: GB-s tiers are account-wide, so both functions share them, pro rata.
    ingest_gbs = lambda_gb_seconds(requests, assume.ingest_ms, ingest_memory_mb)
    consumer_gbs = lambda_gb_seconds(batches, consumer_ms, consumer_memory_mb)
    compute = tiered(ingest_gbs + consumer_gbs, prices.LAMBDA_ARM64_GB_SECOND_TIERS)
    share = ingest_gbs / (ingest_gbs + consumer_gbs) if ingest_gbs + consumer_gbs else 0.0
    lines += [
        Line("Lambda ingest", f"compute arm64 {ingest_memory_mb} MB", ingest_gbs, "GB-s", compute * share),
        Line("Lambda ingest", "invocations", requests, "requests", requests * prices.LAMBDA_REQUEST),
        Line("Lambda consumer", f"compute arm64 {consumer_memory_mb} MB", consumer_gbs, "GB-s", compute * (1 - share)),
        Line(
            "Lambda consumer",
            f"invocations (batches of {batch_size})",
            batches,
            "requests",
            batches * prices.LAMBDA_REQUEST,
        ),
    ]

    # SQS: send (ingest), then receive and delete by the event source mapping, 10 messages a call.
    sends = requests * send_requests_per_request(workload.payloads_per_request, workload.message_bytes)
    receives = payloads / SQS_MAX_BATCH_ENTRIES * _chunks(SQS_MAX_BATCH_ENTRIES * workload.message_bytes)
    deletes = payloads / SQS_MAX_BATCH_ENTRIES
    sqs_requests = sends + receives + deletes
    lines.append(
        Line(
            "SQS",
            "send + receive + delete (64 KB chunks, batched)",
            sqs_requests,
            "requests",
            tiered(sqs_requests, prices.SQS_STANDARD_TIERS),
        )
    )

    puts = payloads if object_mode == "payload" else batches
    lines.append(Line("S3", f"PUT ({object_mode} mode)", puts, "requests", puts * prices.S3_PUT))
    lines += storage_lines(payloads * workload.message_bytes, puts, object_expiration_days, access_log_expiration_days)

    # CloudWatch Logs: every stdout line of both functions plus Lambda's own lines, and access logs.
    per_event = prices.CLOUDWATCH_LOG_EVENT_OVERHEAD_BYTES
    ingest_log = requests * (
        assume.ingest_log_bytes
        + assume.platform_log_bytes
        + per_event * (assume.ingest_log_lines + assume.platform_log_lines)
    )
    if object_mode == "payload":
        consumer_app = payloads * (assume.consumer_log_bytes_per_payload + per_event)
    else:
        consumer_app = batches * (assume.consumer_log_bytes_per_batch + 2 * per_event)
    consumer_log = consumer_app + batches * (assume.platform_log_bytes + per_event * assume.platform_log_lines)
    lambda_log_gb = (ingest_log + consumer_log) / prices.GB
    access_log_gb = requests * (assume.access_log_bytes + per_event) / prices.GB
    lines += [
        Line(
            "CloudWatch",
            "Lambda logs ingested (tiered)",
            lambda_log_gb,
            "GB",
            tiered(lambda_log_gb, prices.CLOUDWATCH_LAMBDA_LOGS_TIERS_PER_GB),
        ),
        Line(
            "CloudWatch",
            "API Gateway access logs ingested",
            access_log_gb,
            "GB",
            access_log_gb * prices.CLOUDWATCH_LOGS_STANDARD_PER_GB,
        ),
        Line(
            "CloudWatch",
            "custom metrics (EMF)",
            assume.custom_metrics,
            "metrics",
            assume.custom_metrics * prices.CLOUDWATCH_CUSTOM_METRIC_MONTH,
        ),
        Line("CloudWatch", "alarms", alarms, "alarms", alarms * prices.CLOUDWATCH_ALARM_MONTH),
        Line("CloudWatch", "dashboards", dashboards, "dashboards", dashboards * prices.CLOUDWATCH_DASHBOARD_MONTH),
    ]
    if assume.tracing:
        traces = (requests + batches) * assume.trace_sampling
        lines.append(
            Line(
                "X-Ray",
                f"traces recorded ({assume.trace_sampling:.0%} sampled)",
                traces,
                "traces",
                traces * prices.XRAY_TRACE_RECORDED,
            )
        )
    return lines


def stored_months(expiration_days: int) -> float:
    """Months of data held at steady state: the expiry, or 12 months of growth when nothing expires."""
    return expiration_days / 30 if expiration_days else 12.0


def storage_lines(
    payload_bytes_per_month: float, puts_per_month: float, object_expiration_days: int, access_log_expiration_days: int
) -> list[Line]:
    """S3 Standard storage of the payloads (uncompressed size: an upper bound for batch mode's gzip
    objects) and of the server access log records (one per PUT) in the access-log bucket. Storage
    tiers count the account's volume, so both buckets share them pro rata."""
    payload_gb = payload_bytes_per_month * stored_months(object_expiration_days) / prices.GB
    log_gb = puts_per_month * prices.S3_ACCESS_LOG_RECORD_BYTES * stored_months(access_log_expiration_days) / prices.GB
    total = tiered(payload_gb + log_gb, prices.S3_STANDARD_STORAGE_TIERS_PER_GB)
    share = payload_gb / (payload_gb + log_gb) if payload_gb + log_gb else 0.0
    held = f"{object_expiration_days}-day expiry" if object_expiration_days else "month 12, never expires"
    return [
        Line("S3", f"payload storage ({held})", payload_gb, "GB-month", total * share),
        Line(
            "S3",
            f"server access logs ({access_log_expiration_days}-day expiry)",
            log_gb,
            "GB-month",
            total * (1 - share),
        ),
    ]


def assumptions_for(
    config: Any,
    measured: BenchFigures = MEASURED,
    *,
    sqs_send_ms: float = SQS_SEND_MS,
    put_ms: float = PUT_MS,
    batch_put_ms: float = BATCH_PUT_MS,
    trace_sampling: float = Assumptions.trace_sampling,
) -> Assumptions:
    """The per-invocation figures for a PipelineConfig: memory sizes, BATCH_SIZE, UPLOAD_CONCURRENCY
    and TRACING from the config, CPU and log volumes from `make bench`."""
    batch = (config.BATCH_SIZE, config.UPLOAD_CONCURRENCY, config.CONSUMER_MEMORY_MB)

    def consumer_ms(object_mode: str) -> float:
        return consumer_batch_ms(object_mode, *batch, put_ms=put_ms, batch_put_ms=batch_put_ms, measured=measured)

    return Assumptions(
        ingest_ms=measured.ingest_cpu_ms * cpu_scale(config.INGEST_MEMORY_MB) + sqs_send_ms,
        consumer_ms_payload_mode=consumer_ms("payload"),
        consumer_ms_batch_mode=consumer_ms("batch"),
        ingest_log_bytes=measured.ingest_log_bytes,
        ingest_log_lines=measured.ingest_log_lines,
        consumer_log_bytes_per_payload=measured.consumer_log_bytes_per_payload,
        consumer_log_bytes_per_batch=measured.consumer_log_bytes_per_batch,
        trace_sampling=trace_sampling,
        tracing=config.TRACING,
    )


def sqs_message_bytes(payload_bytes: int, token: str = "device-token-123", version: str = "1.4.2") -> int:
    """Size SQS counts for one message, built by the ingest's own envelope code."""
    from pipeline.collection import PayloadCollection
    from pipeline.envelope import build_messages

    payload = '{"pad":"' + "x" * max(0, payload_bytes - 10) + '"}'
    request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    message = build_messages(PayloadCollection(version, token, [payload]), request_id, 1_764_115_200_000)[0]
    return message.size


def _money(usd: float) -> str:
    return f"${usd:,.2f}"


def render(workload: Workload, by_mode: dict[str, list[Line]], assume: Assumptions) -> str:
    modes = list(by_mode)
    out = [
        f"Monthly cost, {prices.REGION}, list prices checked {prices.PRICES_CHECKED} (tools/models/prices.py), "
        "30-day month",
        f"load: {workload.requests_per_minute:,.0f} requests/min = {workload.requests_per_minute / 60:,.0f} rps, "
        f"{workload.payloads_per_request} payloads/request, {workload.message_bytes:,} B per SQS message",
        f"      {workload.requests:,.0f} requests and {workload.payloads:,.0f} payloads per month",
        f"durations: ingest {assume.ingest_ms:.1f} ms/request; consumer {assume.consumer_ms_payload_mode:.1f} ms "
        f"(payload mode) / {assume.consumer_ms_batch_mode:.1f} ms (batch mode) per batch",
        "",
        f"{'service':<16} {'item':<52} " + " ".join(f"{'OBJECT_MODE=' + m:>20}" for m in modes),
    ]
    for index, line in enumerate(by_mode[modes[0]]):
        row = [by_mode[m][index] for m in modes]
        item = line.item if all(r.item == line.item for r in row) else line.item.replace(f"({modes[0]} mode)", "")
        out.append(f"{line.service:<16} {item:<52} " + " ".join(f"{_money(r.usd):>20}" for r in row))
    totals = {m: sum(line.usd for line in by_mode[m]) for m in modes}
    out += [
        "",
        f"{'total per month':<69} " + " ".join(f"{_money(totals[m]):>20}" for m in modes),
        f"{'per million payloads':<69} "
        + " ".join(f"{_money(totals[m] / workload.payloads * 1e6):>20}" for m in modes),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.models.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpm", type=float, required=True, help="HTTP requests per minute")
    parser.add_argument("--payloads", type=int, default=10, help="payloads per request")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="bytes of one payload (compact JSON)")
    defaults = Assumptions()
    parser.add_argument("--sqs-send-ms", type=float, default=SQS_SEND_MS, help="SendMessageBatch latency")
    parser.add_argument("--put-ms", type=float, default=PUT_MS, help="PutObject latency, payload mode")
    parser.add_argument("--batch-put-ms", type=float, default=BATCH_PUT_MS, help="PutObject latency, batch mode")
    parser.add_argument("--ingest-ms", type=float, help="ingest duration per request (instead of the model)")
    parser.add_argument("--consumer-ms-payload", type=float, help="consumer duration per batch, payload mode")
    parser.add_argument("--consumer-ms-batch", type=float, help="consumer duration per batch, batch mode")
    parser.add_argument("--trace-sampling", type=float, default=defaults.trace_sampling)
    # The stack's monitoring (infra/monitoring_construct.py) creates six alarms and one dashboard.
    parser.add_argument("--alarms", type=int, default=6)
    parser.add_argument("--bench", type=Path, help="`make bench` output (JSON lines) to take P1/C1/L1 from")
    parser.add_argument("--dashboards", type=int, default=1)
    args = parser.parse_args(argv)

    from infra.config import PipelineConfig, cdk_json_context

    config = PipelineConfig.resolve(cdk_json_context())  # as the stack resolves it, PROFILE included
    measured = load_bench(args.bench.read_text().splitlines()) if args.bench else MEASURED
    modelled = assumptions_for(
        config,
        measured,
        sqs_send_ms=args.sqs_send_ms,
        put_ms=args.put_ms,
        batch_put_ms=args.batch_put_ms,
        trace_sampling=args.trace_sampling,
    )
    assume = replace(
        modelled,
        ingest_ms=args.ingest_ms or modelled.ingest_ms,
        consumer_ms_payload_mode=args.consumer_ms_payload or modelled.consumer_ms_payload_mode,
        consumer_ms_batch_mode=args.consumer_ms_batch or modelled.consumer_ms_batch_mode,
    )
    workload = Workload(args.rpm, args.payloads, sqs_message_bytes(args.payload_bytes))
    by_mode = {
        mode: monthly_lines(
            workload,
            mode,
            ingest_memory_mb=config.INGEST_MEMORY_MB,
            consumer_memory_mb=config.CONSUMER_MEMORY_MB,
            batch_size=config.BATCH_SIZE,
            alarms=args.alarms,
            dashboards=args.dashboards,
            assume=assume,
            object_expiration_days=config.RAW_RETENTION_DAYS,
            access_log_expiration_days=config.ACCESS_LOG_EXPIRATION_DAYS,
        )
        for mode in ("payload", "batch")
    }
    print(render(workload, by_mode, assume))
    return 0


if __name__ == "__main__":
    sys.exit(main())
