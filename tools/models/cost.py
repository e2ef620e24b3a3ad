"""Monthly cost of the pipeline at a given load, from list prices (tools/models/prices.py).

    python -m tools.models.cost --rpm 1000000 --payloads 10 --payload-bytes 1024

Prices the configuration as the stack resolves it (environment, cdk.json context, PROFILE preset, default:
e.g. ``PROFILE=scale python -m tools.models.cost ...``) in both OBJECT_MODEs (payload: one S3 object per
payload; batch: one gzip NDJSON object per consumer batch). Every billed item is one Line; each service or
stage is one function ``(config, flow, assume) -> list[Line]`` (``COST_STAGES``) and ``monthly_lines`` is their
concatenation, so a new front door or a new lake step is one function plus its tests. Rates and sizes come
from tools.models.flow (what the capacity model judges), durations and log volumes from `make bench`
(tools.models.assumptions, each figure a flag). A month is 30 days. Free tiers are ignored. See
docs/CAPACITY.md for the reasoning behind each line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra.access_logs import access_log_line_bytes
from infra.lake_table import COMPACTED_BUCKETS
from tools.models import alarm_metrics, prices
from tools.models.assumptions import (
    DEFAULT,
    MEASURED,
    Assumptions,
    load_bench,
    log_compression,
)
from tools.models.flow import (
    MIN_PAYLOAD_BYTES,
    REQUEST_ID_ATTRIBUTE_BYTES,
    SECONDS_PER_MONTH,
    SQS_RECEIVE_MAX,
    Flow,
    Load,
    chunks,
    flow_of,
    load_of,
)

if TYPE_CHECKING:
    from infra.config import PipelineConfig

HOURS_PER_MONTH = SECONDS_PER_MONTH / 3600
CLOUDWATCH_EVENT_BYTES = prices.CLOUDWATCH_LOG_EVENT_OVERHEAD_BYTES


@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: float
    unit: str
    usd: float


def priced(service: str, item: str, quantity: float, unit: str, unit_usd: float) -> Line:
    """A line billed at one price per unit."""
    return Line(service, item, quantity, unit, quantity * unit_usd)


def tiered(quantity: float, tiers: Sequence[tuple[float | None, float]]) -> float:
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


def shared_tiers(
    parts: Sequence[tuple[str, str, float, str]], tiers: Sequence[tuple[float | None, float]]
) -> list[Line]:
    """Lines (service, item, quantity, unit) that share one account-wide tier ladder, priced pro rata."""
    total = sum(quantity for _, _, quantity, _ in parts)
    usd = tiered(total, tiers)
    return [
        Line(service, item, quantity, unit, usd * quantity / total if total else 0.0)
        for service, item, quantity, unit in parts
    ]


def lambda_gb_seconds(invocations: float, duration_ms: float, memory_mb: int) -> float:
    billed_ms = math.ceil(duration_ms / prices.LAMBDA_BILLING_GRANULARITY_MS) * prices.LAMBDA_BILLING_GRANULARITY_MS
    return invocations * billed_ms / 1000 * memory_mb / 1024


def stored_months(retention_days: int) -> float:
    """Months of data held at steady state: the retention, or 12 months of growth when nothing expires."""
    return retention_days / 30 if retention_days else 12.0


def _held(retention_days: int) -> str:
    return f"{retention_days}-day expiry" if retention_days else "month 12, never expires"


def _envelope_bytes(flow: Flow) -> float:
    """One payload's envelope: a line of a batch object, or a payload object."""
    return flow.load.message_bytes - REQUEST_ID_ATTRIBUTE_BYTES


# --- the front door, by kind ---------------------------------------------------------------------------------
def rest_api_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    requests = flow.load.requests_per_month
    usd = tiered(requests, prices.API_GATEWAY_REST_TIERS)
    return [Line("API Gateway", "REST API requests (tiered)", requests, "requests", usd)]


def http_api_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """HTTP APIs are metered in 512 KB increments: a request of 513 KB is two."""
    per_request = math.ceil(max(1, flow.load.body_bytes) / prices.API_GATEWAY_HTTP_METERING_BYTES)
    metered = flow.load.requests_per_month * per_request
    usd = tiered(metered, prices.API_GATEWAY_HTTP_TIERS)
    return [Line("API Gateway", "HTTP API requests (tiered, per 512 KB)", metered, "requests", usd)]


FRONT_DOOR_COSTS: dict[str, Callable[[PipelineConfig, Flow], list[Line]]] = {
    "rest": rest_api_lines,
    "http": http_api_lines,
}


def front_door_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    return FRONT_DOOR_COSTS[config.API_KIND](config, flow)


def data_transfer_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    assume = flow.assume
    gb = flow.load.requests_per_month * assume.response_bytes / prices.GB
    item = f"answers out to the clients ({assume.response_bytes} B each)"
    return [Line("Data transfer", item, gb, "GB", tiered(gb, prices.DATA_TRANSFER_OUT_TIERS_PER_GB))]


def device_auth_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """DEVICE_AUTH=on: each warm ingest environment reads the device-key secret once per
    DEVICE_REVOCATION_TTL_SECONDS (pipeline/device_auth.py), and once more on each cold start."""
    assume = flow.assume
    if config.DEVICE_AUTH != "on":
        return []
    environments = flow.ingest_environments
    reads = environments * (
        SECONDS_PER_MONTH / config.DEVICE_REVOCATION_TTL_SECONDS + HOURS_PER_MONTH / assume.environment_hours
    )
    item = f"GetSecretValue, every {config.DEVICE_REVOCATION_TTL_SECONDS} s in {environments:,.0f} warm ingests"
    return [
        priced("Secrets Manager", item, reads, "calls", prices.SECRETS_MANAGER_CALL),
        Line("Secrets Manager", "the device-key signing secret", 1, "secrets", prices.SECRETS_MANAGER_SECRET_MONTH),
    ]


# --- compute ------------------------------------------------------------------------------------------------
def lambda_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """Both functions' GB-seconds share the account's tiers (pro rata); invocations are per request."""
    requests = flow.load.requests_per_month
    batches = flow.batches_per_second * SECONDS_PER_MONTH
    ingest_gbs = lambda_gb_seconds(requests, flow.ingest_ms, config.INGEST_MEMORY_MB)
    consumer_gbs = lambda_gb_seconds(batches, flow.duration_s * 1000, config.CONSUMER_MEMORY_MB)
    ingest_item = f"compute arm64 {config.INGEST_MEMORY_MB} MB, {flow.ingest_ms:.1f} ms"
    consumer_item = f"compute arm64 {config.CONSUMER_MEMORY_MB} MB, {flow.duration_s * 1000:.0f} ms per batch"
    ingest, consumer = shared_tiers(
        [("Lambda ingest", ingest_item, ingest_gbs, "GB-s"), ("Lambda consumer", consumer_item, consumer_gbs, "GB-s")],
        prices.LAMBDA_ARM64_GB_SECOND_TIERS,
    )
    batches_item = f"invocations (batches of {flow.payloads_per_batch:,.0f} payloads)"
    return [
        ingest,
        priced("Lambda ingest", "invocations", requests, "requests", prices.LAMBDA_REQUEST),
        consumer,
        priced("Lambda consumer", batches_item, batches, "requests", prices.LAMBDA_REQUEST),
    ]


def poller_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """Provisioned mode: the active event pollers, billed per EPU-hour whether busy or not."""
    assume = flow.assume
    if not config.PROVISIONED_POLLERS:
        return []
    epu_hours = flow.pollers * assume.epus_per_poller * HOURS_PER_MONTH
    item = f"provisioned mode, {flow.pollers:,} event pollers (EPU-hours)"
    return [priced("Lambda pollers", item, epu_hours, "EPU-hours", prices.LAMBDA_EPU_HOUR)]


# --- the queue ----------------------------------------------------------------------------------------------
def sqs_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """Every request SQS bills, per 64 KB chunk: the ingest's sends, the mapping's receives and deletes, and
    the ingest's backlog check (MAX_QUEUE); the queue's tiers are shared."""
    month = SECONDS_PER_MONTH
    sends = flow.load.requests_per_month * flow.send_billed_per_request
    receive_bytes = flow.messages_per_receive * flow.layout.message_bytes
    receives = flow.receives_per_second * month * chunks(receive_bytes)
    deletes = flow.deletes_per_second * month
    receive_item = f"ReceiveMessage ({flow.messages_per_receive:.1f} messages a call, 64 KB chunks)"
    parts = [
        ("SQS", f"SendMessageBatch ({flow.layout.name}, 64 KB chunks)", sends, "requests"),
        ("SQS", receive_item, receives, "requests"),
        ("SQS", "DeleteMessageBatch (10 a call)", deletes, "requests"),
    ]
    if config.MAX_QUEUE:
        checks = flow.ingest_environments * month / config.BACKLOG_CHECK_SECONDS
        parts.append(
            ("SQS", f"GetQueueAttributes (backlog check every {config.BACKLOG_CHECK_SECONDS} s)", checks, "requests")
        )
    if flow.load.failure_rate:
        retries = flow.failed_messages_per_second / SQS_RECEIVE_MAX * month
        parts.append(("SQS", "ChangeMessageVisibilityBatch (failed records' retry delay)", retries, "requests"))
    return shared_tiers(parts, prices.SQS_STANDARD_TIERS)


# --- storage and the lake -------------------------------------------------------------------------------------
def s3_request_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    puts = flow.puts_per_second * SECONDS_PER_MONTH
    item = f"PUT ({config.OBJECT_MODE} mode, {flow.payloads_per_object:,.0f} payloads an object)"
    return [priced("S3", item, puts, "requests", prices.S3_PUT)]


def _compaction_requests_per_month(config: PipelineConfig, flow: Flow) -> dict[str, float]:
    """S3 requests an hourly compaction makes (docs/LAKE.md, "What one run costs"): a GET per raw object of
    the hour and a LIST per 1,000 of them; the CTAS's COMPACTED_BUCKETS files, each a multipart upload (one PUT
    per part, plus its start and end). It reads no compacted hour (infra/lake_table.py compaction_select)."""
    if config.COMPACTION != "on":
        return {"GET": 0.0, "LIST": 0.0, "PUT": 0.0}
    assume = flow.assume
    raw_objects = flow.puts_per_hour
    files = compacted_objects_per_hour(flow)
    file_bytes = flow.payloads_per_hour * compacted_bytes_per_payload(flow) / files
    puts_per_file = math.ceil(file_bytes / assume.multipart_part_bytes) + 2
    runs = HOURS_PER_MONTH
    return {
        "GET": runs * raw_objects,
        "LIST": runs * math.ceil(raw_objects / 1000),
        "PUT": runs * files * puts_per_file,
    }


def stored_bytes_per_payload(config: PipelineConfig, flow: Flow) -> float:
    """Raw bytes one payload keeps in S3: its gzip NDJSON line (bench S1) in batch mode, its envelope verbatim
    in payload mode."""
    envelope = _envelope_bytes(flow)
    return envelope if config.OBJECT_MODE == "payload" else envelope / flow.assume.measured.stored_compression


def compacted_bytes_per_payload(flow: Flow) -> float:
    return _envelope_bytes(flow) / flow.assume.measured.compacted_compression


def compacted_objects_per_hour(flow: Flow) -> int:
    """The CTAS writes one file per bucket (infra/lake_table.py COMPACTED_BUCKETS), whatever the hour holds."""
    return COMPACTED_BUCKETS


def storage_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """S3 Standard storage at steady state under the expiry rules: raw objects at their stored size
    (RAW_RETENTION_DAYS), compacted Parquet (COMPACTED_RETENTION_DAYS), and the server access log records
    (one per request to the payload bucket, ACCESS_LOG_EXPIRATION_DAYS). The tiers count the account's
    volume, so all three share them."""
    payloads = flow.load.payloads_per_month
    raw_gb = payloads * stored_bytes_per_payload(config, flow) * stored_months(config.RAW_RETENTION_DAYS)
    compaction = _compaction_requests_per_month(config, flow)
    records = flow.puts_per_second * SECONDS_PER_MONTH + sum(compaction.values())
    log_gb = records * prices.S3_ACCESS_LOG_RECORD_BYTES * stored_months(config.ACCESS_LOG_EXPIRATION_DAYS)
    raw_kind = "gzip NDJSON" if config.OBJECT_MODE == "batch" else "JSON"
    parts = [("S3", f"raw payloads, {raw_kind} ({_held(config.RAW_RETENTION_DAYS)})", raw_gb / prices.GB, "GB-month")]
    if config.COMPACTION == "on":
        compacted_gb = payloads * compacted_bytes_per_payload(flow) * stored_months(config.COMPACTED_RETENTION_DAYS)
        compacted_item = f"compacted Parquet ({_held(config.COMPACTED_RETENTION_DAYS)})"
        parts.append(("S3", compacted_item, compacted_gb / prices.GB, "GB-month"))
    parts.append(
        ("S3", f"server access logs ({_held(config.ACCESS_LOG_EXPIRATION_DAYS)})", log_gb / prices.GB, "GB-month")
    )
    return shared_tiers(parts, prices.S3_STANDARD_STORAGE_TIERS_PER_GB)


def athena_bytes_per_compaction(config: PipelineConfig, flow: Flow) -> float:
    """One hourly run's CTAS scans the raw hour's gzip NDJSON and nothing else: every copy of an id is in one
    hour partition, so it joins no compacted hour's ids (infra/lake_table.py compaction_select; issue 26 item 8)."""
    raw = flow.payloads_per_hour * stored_bytes_per_payload(config, flow)
    return max(float(prices.ATHENA_MINIMUM_BYTES), raw)


def compaction_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """COMPACTION=on: an EventBridge Scheduler run per hour starts a Step Functions standard workflow whose
    Athena CTAS writes the hour as Parquet (infra/compaction_construct.py). Of its four statements only the
    CTAS is billed; Athena does not bill DDL (ADD PARTITION, SET LOCATION, DROP TABLE)."""
    assume = flow.assume
    if config.COMPACTION != "on":
        return []
    runs = HOURS_PER_MONTH
    scanned_tb = runs * athena_bytes_per_compaction(config, flow) / (prices.GB * prices.TB_GB)
    requests = _compaction_requests_per_month(config, flow)
    transitions = runs * assume.compaction_transitions
    list_put_usd = requests["LIST"] * prices.S3_LIST + requests["PUT"] * prices.S3_PUT
    transitions_item = f"standard transitions ({assume.compaction_transitions} a run, hourly)"
    return [
        priced("Athena", "compaction scans (the raw hour)", scanned_tb, "TB", prices.ATHENA_PER_TB),
        priced("S3", "compaction GET (raw objects)", requests["GET"], "requests", prices.S3_GET),
        Line("S3", "compaction LIST and PUT", requests["LIST"] + requests["PUT"], "requests", list_put_usd),
        priced(
            "Step Functions", transitions_item, transitions, "transitions", prices.STEP_FUNCTIONS_STANDARD_TRANSITION
        ),
        priced(
            "EventBridge",
            "Scheduler invocations (hourly)",
            runs,
            "invocations",
            prices.EVENTBRIDGE_SCHEDULER_INVOCATION,
        ),
    ]


# --- telemetry ----------------------------------------------------------------------------------------------
def _logs_request_lines(config: PipelineConfig) -> bool:
    """Whether the functions write their per-request/per-object INFO lines (Powertools LOG_LEVEL)."""
    return config.LOG_LEVEL in ("DEBUG", "INFO")


def lambda_log_bytes(config: PipelineConfig, flow: Flow) -> tuple[float, float]:
    """Bytes per month (ingest, consumer) the functions write to CloudWatch Logs, with each event's 26 B.

    Ingest: the "request accepted" line (LOG_LEVEL INFO or DEBUG); its EMF blob per request
    (METRICS_FLUSH_SECONDS=0) or one per warm environment every N seconds; Lambda's START/END/REPORT
    unless SYSTEM_LOG_LEVEL=WARN. Consumer: a line per object or payload (INFO) and an EMF blob per batch.
    """
    assume = flow.assume
    measured, month = assume.measured, SECONDS_PER_MONTH
    requests, batches = flow.load.requests_per_month, flow.batches_per_second * month
    platform = assume.platform_log_bytes + CLOUDWATCH_EVENT_BYTES * assume.platform_log_lines
    ingest = 0.0
    if _logs_request_lines(config):
        ingest += requests * (measured.ingest_log_bytes - measured.ingest_emf_bytes + CLOUDWATCH_EVENT_BYTES)
    if config.METRICS_FLUSH_SECONDS:
        windows = flow.ingest_environments * month / config.METRICS_FLUSH_SECONDS
        ingest += windows * (measured.ingest_window_emf_bytes + CLOUDWATCH_EVENT_BYTES)
    else:
        ingest += requests * (measured.ingest_emf_bytes + CLOUDWATCH_EVENT_BYTES)
    consumer = batches * (measured.consumer_emf_bytes + CLOUDWATCH_EVENT_BYTES)
    if _logs_request_lines(config) and config.OBJECT_MODE == "payload":
        consumer = (
            batches * flow.payloads_per_batch * (measured.consumer_log_bytes_per_payload + CLOUDWATCH_EVENT_BYTES)
        )
    elif _logs_request_lines(config):
        lines = measured.consumer_log_bytes_per_batch - measured.consumer_emf_bytes + CLOUDWATCH_EVENT_BYTES
        consumer += batches * flow.objects_per_batch * lines
    if config.SYSTEM_LOG_LEVEL != "WARN":
        ingest += requests * platform
        consumer += batches * platform
    return ingest, consumer


def lambda_log_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """Lambda's logs: ingestion in Lambda's volume tiers, storage for LOG_RETENTION_DAYS, compressed
    (assumptions.log_compression)."""
    ingest, consumer = lambda_log_bytes(config, flow)
    gb = (ingest + consumer) / prices.GB
    kept = gb * config.LOG_RETENTION_DAYS / 30 / log_compression()
    levels = f"LOG_LEVEL={config.LOG_LEVEL}, SYSTEM_LOG_LEVEL={config.SYSTEM_LOG_LEVEL}"
    stored_item = f"Lambda logs stored ({config.LOG_RETENTION_DAYS} days)"
    return [
        Line(
            "CloudWatch",
            f"Lambda logs ingested ({levels})",
            gb,
            "GB",
            tiered(gb, prices.CLOUDWATCH_LAMBDA_LOGS_TIERS_PER_GB),
        ),
        priced("CloudWatch", stored_item, kept, "GB-month", prices.CLOUDWATCH_LOGS_STORAGE_PER_GB_MONTH),
    ]


ACCESS_LOG_PRICES = {
    "STANDARD": prices.CLOUDWATCH_LOGS_STANDARD_PER_GB,
    "INFREQUENT_ACCESS": prices.CLOUDWATCH_LOGS_INFREQUENT_ACCESS_PER_GB,
}


def access_log_bytes(config: PipelineConfig, flow: Flow) -> int:
    """One access-log line: the format's typical line for the API kind and ACCESS_LOG_CLIENT_IP
    (infra/access_logs.py) and its newline, or ``--access-log-bytes``."""
    if flow.assume.access_log_bytes is not None:
        return flow.assume.access_log_bytes
    return access_log_line_bytes(config.API_KIND, config.ACCESS_LOG_CLIENT_IP == "on") + 1


def access_log_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """API Gateway's access log: one line per request, priced by ACCESS_LOG_CLASS, kept LOG_RETENTION_DAYS, or
    ACCESS_LOG_CLIENT_IP_RETENTION_DAYS with addresses (compressed, as for the functions' logs)."""
    line = access_log_bytes(config, flow)
    gb = flow.load.requests_per_month * (line + CLOUDWATCH_EVENT_BYTES) / prices.GB
    days = config.access_log_retention_days
    kept = gb * days / 30 / log_compression()
    ingested_item = f"access logs ingested ({config.ACCESS_LOG_CLASS}, {line} B a line)"
    return [
        priced("CloudWatch", ingested_item, gb, "GB", ACCESS_LOG_PRICES[config.ACCESS_LOG_CLASS]),
        priced(
            "CloudWatch",
            f"access logs stored ({days} days)",
            kept,
            "GB-month",
            prices.CLOUDWATCH_LOGS_STORAGE_PER_GB_MONTH,
        ),
    ]


def monitoring_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """Custom metrics (the functions' EMF, plus S3 request metrics and device auth's: tools/models/alarm_metrics.py)
    and alarm metrics counted from the config, each alarm billed per metric it reads."""
    assume = flow.assume
    custom = assume.custom_metrics + alarm_metrics.monitoring_custom_metrics(config)
    alarm = alarm_metrics.alarm_metrics(config)
    return [
        priced(
            "CloudWatch",
            "custom metrics (EMF, S3 request metrics)",
            custom,
            "metrics",
            prices.CLOUDWATCH_CUSTOM_METRIC_MONTH,
        ),
        priced("CloudWatch", "alarm metrics", alarm, "metrics", prices.CLOUDWATCH_ALARM_MONTH),
        priced("CloudWatch", "dashboards", assume.dashboards, "dashboards", prices.CLOUDWATCH_DASHBOARD_MONTH),
        priced("KMS", "customer managed keys (the alarm topic's)", assume.kms_keys, "keys", prices.KMS_KEY_MONTH),
    ]


def xray_lines(config: PipelineConfig, flow: Flow) -> list[Line]:
    """TRACING=true: Lambda's active tracing records 5 % of requests and batches (X-Ray's default rule)."""
    assume = flow.assume
    if not config.TRACING:
        return []
    traces = (flow.load.requests_per_month + flow.batches_per_second * SECONDS_PER_MONTH) * assume.trace_sampling
    item = f"traces recorded ({assume.trace_sampling:.0%} sampled)"
    return [priced("X-Ray", item, traces, "traces", prices.XRAY_TRACE_RECORDED)]


COST_STAGES: tuple[Callable[[PipelineConfig, Flow], list[Line]], ...] = (
    front_door_lines,
    data_transfer_lines,
    device_auth_lines,
    lambda_lines,
    poller_lines,
    sqs_lines,
    s3_request_lines,
    storage_lines,
    compaction_lines,
    lambda_log_lines,
    access_log_lines,
    monitoring_lines,
    xray_lines,
)


def monthly_lines(
    config: PipelineConfig, load: Load, assume: Assumptions = DEFAULT, flow: Flow | None = None
) -> list[Line]:
    """Every billed item for one month of this load under this configuration."""
    flow = flow or flow_of(config, load, assume)
    return [line for stage in COST_STAGES for line in stage(config, flow)]


def total(lines: Sequence[Line]) -> float:
    return sum(line.usd for line in lines)


def _money(usd: float) -> str:
    return f"${usd:,.2f}"


def render(load: Load, by_mode: dict[str, list[Line]], flows: dict[str, Flow], config: PipelineConfig) -> str:
    modes = list(by_mode)
    flow = flows[modes[0]]
    out = [
        f"Monthly cost, {prices.REGION}, list prices checked {prices.PRICES_CHECKED} (tools/models/prices.py), "
        f"30-day month, PROFILE={config.PROFILE} API_KIND={config.API_KIND}",
        f"load: {load.requests_per_minute:,.0f} requests/min = {load.rps:,.0f} rps, {load.payloads_per_request} "
        f"payloads/request, {flow.layout.messages_per_request} SQS message(s) of {flow.layout.message_bytes:,.0f} B "
        "per request",
        f"      {load.requests_per_month:,.0f} requests and {load.payloads_per_month:,.0f} payloads per month",
        "durations: ingest {:.1f} ms/request; consumer {} per batch".format(
            flow.ingest_ms,
            " / ".join(f"{flows[m].duration_s * 1000:.1f} ms ({m} mode)" for m in modes),
        ),
        "",
        f"{'service':<16} {'item':<64} " + " ".join(f"{'OBJECT_MODE=' + m:>20}" for m in modes),
    ]

    def kind(line: Line) -> tuple[str, str]:  # the line without its mode's details ("raw payloads, JSON (...)")
        return line.service, re.split(r" \(|, ", line.item)[0]

    keys = list(dict.fromkeys(kind(line) for mode in modes for line in by_mode[mode]))
    for service, item in keys:
        cells = [f"{_money(sum(li.usd for li in by_mode[m] if kind(li) == (service, item))):>20}" for m in modes]
        out.append(f"{service:<16} {item[:64]:<64} " + " ".join(cells))
    totals = {m: total(by_mode[m]) for m in modes}
    out += [
        "",
        f"{'total per month':<81} " + " ".join(f"{_money(totals[m]):>20}" for m in modes),
        f"{'per million payloads':<81} "
        + " ".join(f"{_money(totals[m] / load.payloads_per_month * 1e6):>20}" for m in modes),
    ]
    return "\n".join(out)


# The flags that replace an assumption (tools.models.assumptions), shared by capacity and cost: (flag, type, help);
# each flag's destination is the Assumptions field of its name, and its default that field's.
ASSUMPTION_FLAGS: tuple[tuple[str, type, str | None], ...] = (
    ("--sqs-send-ms", float, "SendMessageBatch latency"),
    ("--slow-sqs-send-ms", float, "the SendMessageBatch latency the ingest's reserved concurrency must absorb"),
    ("--put-ms", float, "PutObject latency, payload mode"),
    ("--batch-put-ms", float, "PutObject latency, batch mode"),
    ("--ingest-ms", float, "ingest duration per request (instead of the model)"),
    ("--consumer-ms", float, "consumer duration per batch (instead of the model)"),
    ("--trace-sampling", float, None),
    ("--access-log-bytes", int, "one access-log line (default: the format's typical line for API_KIND)"),
)


def _field(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def add_assumption_flags(parser: argparse.ArgumentParser) -> None:
    for flag, kind, text in ASSUMPTION_FLAGS:
        parser.add_argument(flag, type=kind, default=getattr(DEFAULT, _field(flag)), help=text)
    parser.add_argument("--bench", type=Path, help="`make bench` output (JSON lines) to take P1/C1/L1/S1/S2 from")


def assumptions_from(args: argparse.Namespace) -> Assumptions:
    measured = load_bench(args.bench.read_text().splitlines()) if args.bench else MEASURED
    flags = {_field(flag): getattr(args, _field(flag)) for flag, _, _ in ASSUMPTION_FLAGS}
    return dataclasses.replace(DEFAULT, measured=measured, **flags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.models.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpm", type=float, required=True, help="HTTP requests per minute")
    parser.add_argument("--payloads", type=int, default=10, help="payloads per request")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="bytes of one payload (compact JSON)")
    add_assumption_flags(parser)
    args = parser.parse_args(argv)
    if not 0 < args.rpm < math.inf or args.payloads < 1 or args.payload_bytes < MIN_PAYLOAD_BYTES:
        parser.error(
            "--rpm must be a positive number, --payloads at least 1, --payload-bytes at least 2 (a JSON object)"
        )

    from infra.config import ConfigError, PipelineConfig, cdk_json_context
    from pipeline.problems import Problem

    # A knob the stack refuses, or a payload the ingest refuses, is one line and exit 2, as in capacity's command.
    try:
        config = PipelineConfig.resolve(cdk_json_context())  # as the stack resolves it, PROFILE included
    except ConfigError as exc:
        print(f"cost: {exc}", file=sys.stderr)
        return 2
    assume = assumptions_from(args)
    load = load_of(args.rpm, args.payloads, args.payload_bytes)
    configs = {mode: dataclasses.replace(config, OBJECT_MODE=mode) for mode in ("payload", "batch")}
    try:
        flows = {mode: flow_of(c, load, assume) for mode, c in configs.items()}
    except Problem as exc:  # the ingest's own refusal of such a payload: a bad argument, not a load to price
        print(f"cost: --payload-bytes {args.payload_bytes}: {exc.detail} (the ingest answers 413)", file=sys.stderr)
        return 2
    by_mode = {mode: monthly_lines(configs[mode], load, assume, flows[mode]) for mode in configs}
    print(render(load, by_mode, flows, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
