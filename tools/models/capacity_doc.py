"""docs/CAPACITY.md: the seed load against both profiles and both front doors. The prose is the template
tools/models/capacity_doc.md.tmpl (str.format fields: attributes of the assessments and figures named here);
this module computes the figures and the tables (tests/unit/test_capacity.py keeps the committed file equal
to this output).

    python -m tools.models.capacity --format markdown > docs/CAPACITY.md
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from infra.access_logs import ACCESS_LOG_LINE_BYTES
from infra.config import SQS_IN_FLIGHT_DEFAULT_QUOTA, PipelineConfig
from infra.lake_table import COMPACTED_BUCKETS
from tools.models import capacity, cost, flood, flow, prices
from tools.models.assumptions import DEFAULT, MEASURED, log_compression
from tools.models.capacity import (
    QUOTA_VIA,
    QUOTAS,
    SEED,
    Assessment,
    Check,
    _num,
    assess,
    consumer_worst_case,
    ingest_reservation_for,
    lake_figures,
    max_carried_rpm,
    payload_mode_max_rpm,
    pollers_for,
    resolve_config,
    tolerated_failure_rate,
    verdict_lines,
)
from tools.models.flow import POLLER_BYTES_PER_SECOND, POLLER_POLLS_PER_SECOND, SQS_RECEIVE_MAX, load_of


def _money(usd: float) -> str:
    return f"${usd:,.0f}" if abs(usd) >= 10 else f"${usd:,.2f}"


def _headroom(check: Check) -> str:
    if check.kind == "info" and math.isinf(check.limit):
        return ""
    if math.isinf(check.ratio):
        return "∞"
    return f"{check.ratio - 1:+.0%}"


def _md_table(assessment: Assessment) -> list[str]:
    out = ["| | stage | check | needs | limit | headroom | note |", "|---|---|---|---:|---|---:|---|"]
    for c in assessment.checks:
        out.append(
            f"| {c.status} | {c.stage} | {c.item} | {_num(c.need)} {c.unit} | {_num(c.limit)} ({c.source}) | "
            f"{_headroom(c)} | {c.note} |"
        )
    return out


def _md_cost(assessment: Assessment) -> list[str]:
    total = assessment.total_usd
    out = ["| service | item | quantity | per month | share |", "|---|---|---:|---:|---:|"]
    out += [
        f"| {line.service} | {line.item} | {_num(line.quantity)} {line.unit} | {_money(line.usd)} | "
        f"{line.usd / total:.1%} |"
        for line in assessment.lines
    ]
    out.append(
        f"| **total** | | | **{_money(total)}** | |\n| **per million payloads** | | "
        f"{assessment.load.payloads_per_month:,.0f} payloads | **${assessment.usd_per_million_payloads:.3f}** | |"
    )
    return out


def _ceiling(assessment: Assessment) -> str:
    load = assessment.load
    ceiling = max_carried_rpm(assessment.config, load.payloads_per_request, load.payload_bytes)
    step = 10 ** (int(math.log10(ceiling)) - 2)  # three significant digits, rounded down
    above = assess(assessment.config, load_of(ceiling * 1.02, load.payloads_per_request, load.payload_bytes))
    return (
        f"With {load.payloads_per_request} payloads of {load.payload_bytes:,} B per request, "
        f"`PROFILE={assessment.config.PROFILE}` carries up to ~{math.floor(ceiling / step) * step:,.0f} "
        f"requests/min (quota increases allowed); above that, {above.binding.stage} fails first: "
        f"{above.binding.item}."
    )


def _with(config: PipelineConfig, **knobs: Any) -> Assessment:
    return assess(dataclasses.replace(config, **knobs), load_of(*SEED))


def _delta(base: Assessment, **knobs: Any) -> str:
    other = _with(base.config, **knobs)
    return (
        f"{_money(other.total_usd - base.total_usd)}"
        if other.total_usd >= base.total_usd
        else (f"-{_money(base.total_usd - other.total_usd)}")
    )


def _line(assessment: Assessment, service: str, starts: str) -> cost.Line:
    return next(line for line in assessment.lines if line.service == service and line.item.startswith(starts))


TEMPLATE = Path(__file__).with_name("capacity_doc.md.tmpl")

# The telemetry table: each knob set back to what the default profile does, and its monthly cost.
TELEMETRY_CHOICES: list[tuple[str, dict[str, Any]]] = [
    ('`LOG_LEVEL=INFO` (a "request accepted" line per request, a line per object)', {"LOG_LEVEL": "INFO"}),
    ("`SYSTEM_LOG_LEVEL=INFO` (Lambda's START/END/REPORT per invocation)", {"SYSTEM_LOG_LEVEL": "INFO"}),
    ("`METRICS_FLUSH_SECONDS=0` (an EMF blob per request)", {"METRICS_FLUSH_SECONDS": 0}),
    ("`ACCESS_LOG_CLASS=STANDARD`", {"ACCESS_LOG_CLASS": "STANDARD"}),
    ("`TRACING=true` (X-Ray, 5 % of requests and batches)", {"TRACING": True}),
    (
        "all of the above but tracing: the default profile's telemetry",
        {"LOG_LEVEL": "INFO", "SYSTEM_LOG_LEVEL": "INFO", "METRICS_FLUSH_SECONDS": 0, "ACCESS_LOG_CLASS": "STANDARD"},
    ),
]


def _telemetry_rows(scale: Assessment) -> list[str]:
    client_ip = dataclasses.replace(scale.config, ACCESS_LOG_CLIENT_IP="on").access_log_retention_days
    rows = [
        *TELEMETRY_CHOICES,
        (
            "`ACCESS_LOG_CLIENT_IP=on` (the client's address and user agent on each access-log line, kept "
            f"{client_ip} days)",
            {"ACCESS_LOG_CLIENT_IP": "on"},
        ),
    ]
    return [f"| {label} | {_delta(scale, **knobs)} |" for label, knobs in rows]


def _scale_figures(scale: Assessment, rest: Assessment) -> dict[str, Any]:
    """The scale profile's figures the template names that are not an attribute of an assessment."""
    c, f = scale.config, scale.flow
    lake, thirty = lake_figures(c, f), lake_figures(dataclasses.replace(c, RAW_RETENTION_DAYS=30), f)
    assert lake is not None and thirty is not None  # the scale profile compacts
    storage = {line.item.split(" (")[0]: line for line in scale.lines if line.service == "S3"}
    pollers = next(line for line in scale.lines if line.service == "Lambda pollers")
    access = _line(scale, "CloudWatch", "access logs ingested")
    line_bytes = cost.access_log_bytes(c, f)
    account = next(x for x in scale.checks if x.stage == "Lambda account")
    off = _with(c, RESERVED_CONCURRENCY="off", INGEST_RESERVED_CONCURRENCY=0)
    compacted = cost.compacted_bytes_per_payload(f)
    return {
        "c": c,
        "f": f,
        "lake": lake,
        "thirty": thirty,
        "pollers": pollers,
        "access": access,
        "account": account,
        "line_bytes": line_bytes,
        "http_api_usd": _money(_line(scale, "API Gateway", "HTTP").usd),
        "rest_api_usd": _money(_line(rest, "API Gateway", "REST").usd),
        "secrets_usd": _money(sum(line.usd for line in scale.lines if line.service == "Secrets Manager")),
        "put_usd": _money(next(line for line in scale.lines if line.item.startswith("PUT")).usd),
        "event_mb": c.BATCH_SIZE * f.record_bytes / 1e6,
        "pollers_needed": math.ceil(f.messages_per_second / f.poller_receive),
        "pollers_sized": pollers_for(f),
        "pollers_usd": _money(pollers.usd),
        "in_flight_share": f.in_flight_ok / SQS_IN_FLIGHT_DEFAULT_QUOTA,
        "tolerated": tolerated_failure_rate(c, f),
        "consumer_worst": consumer_worst_case(c),
        "ingest_reservation": ingest_reservation_for(f),
        "batch_ms": f.duration_s * 1000,
        "queue_minutes": c.MAX_QUEUE / f.messages_per_second / 60,
        "drain_minutes": next(x for x in scale.checks if x.stage == "Backlog").need / 60,
        "raw_usd": _money(storage["raw payloads, gzip NDJSON"].usd),
        "compacted_usd": _money(storage["compacted Parquet"].usd),
        "xray_usd": _money(sum(line.usd for line in _with(c, TRACING=True).lines if line.service == "X-Ray")),
        "account_sum": account.item.split(": ", 1)[1],
        "off_account": next(x for x in off.checks if x.stage == "Lambda account"),
        "environments_per_rps": scale.load.rps / 10,
        "access_usd": _money(access.usd),
        "rest_line_bytes": ACCESS_LOG_LINE_BYTES["rest"],
        "telemetry_rows": "\n".join(_telemetry_rows(scale)),
        "standard_usd": _money(_line(_with(c, ACCESS_LOG_CLASS="STANDARD"), "CloudWatch", "access logs ingested").usd),
        "per_100_bytes_usd": _money(access.usd * 100 / (line_bytes + prices.CLOUDWATCH_LOG_EVENT_OVERHEAD_BYTES)),
        "log_compression": log_compression(),
        "lake_gb": lake.athena_tb_per_run * 1024,
        "payloads_per_hour_m": f.payloads_per_hour / 1e6,
        "stored_bytes": cost.stored_bytes_per_payload(c, f),
        "lake_rows": "\n".join(
            f"| {line.service}: {line.item} | {_num(line.quantity)} {line.unit} | {_money(line.usd)} |"
            for line in cost.compaction_lines(c, f)
        ),
        "compaction_usd": _money(lake.compaction_usd_per_month),
        "compacted_gb": compacted * f.payloads_per_second * 3600 / 1024**3,
        "compacted_bytes": compacted,
        "token_gb": f.payloads_per_hour * MEASURED.compacted_column_bytes["token"] / 1024**3,
    }


def render_markdown() -> str:
    """docs/CAPACITY.md: the seed load against both profiles, every figure from tools.models."""
    load = load_of(*SEED)
    dev = assess(resolve_config({"PROFILE": "dev"}), load)
    scale = assess(resolve_config({"PROFILE": "scale"}), load)
    rest = assess(resolve_config({"PROFILE": "scale", "API_KIND": "rest", "DEVICE_AUTH": "off"}), load)
    rest_keys = assess(resolve_config({"PROFILE": "scale", "API_KIND": "rest", "DEVICE_AUTH": "on"}), load)
    biggest = max(scale.lines, key=lambda line: line.usd)
    return TEMPLATE.read_text().format_map(
        {
            "capacity": capacity,  # the modules whose constants the template names ({flow.SQS_RECEIVE_MAX})
            "flow": flow,
            "prices": prices,
            "flood": flood,
            "SQS_IN_FLIGHT_DEFAULT_QUOTA": SQS_IN_FLIGHT_DEFAULT_QUOTA,
            "COMPACTED_BUCKETS": COMPACTED_BUCKETS,
            "seed": SEED,
            "load": load,
            "scale": scale,
            "rest": rest,
            "rest_keys": rest_keys,
            "dev": dev,
            "m": MEASURED,
            "a": DEFAULT,
            "payloads_billions": load.payloads_per_month / 1e9,
            "scale_usd": _money(scale.total_usd),
            "rest_usd": _money(rest.total_usd),
            "quota_text": "; ".join(
                f"{QUOTAS[key].split(' (')[0]} to {value:,.0f} ({QUOTA_VIA[key]})"
                for key, value in scale.quota_increases.items()
            ),
            "quota_keys": ", ".join(f"`{k}`" for k in QUOTAS),
            "poller_mb": POLLER_BYTES_PER_SECOND // 1_000_000,
            "poller_messages": POLLER_POLLS_PER_SECOND * SQS_RECEIVE_MAX,
            "scale_ceiling": _ceiling(scale),
            "scale_table": "\n".join(_md_table(scale)),
            "scale_verdict": "\n".join(verdict_lines(scale)),
            "scale_cost": "\n".join(_md_cost(scale)),
            "biggest": biggest,
            "biggest_usd": _money(biggest.usd),
            "telemetry_usd": _money(sum(line.usd for line in scale.lines if line.service in ("CloudWatch", "X-Ray"))),
            **_scale_figures(scale, rest),
            "dev_ceiling": _ceiling(dev),
            "dev_table": "\n".join(_md_table(dev)),
            "dev_verdict": "\n".join(verdict_lines(dev)),
            "payload_mode_rpm": payload_mode_max_rpm(SEED[1]),
            "payload_mode_rpm_one": payload_mode_max_rpm(1),
            "dev_batch_ms": dev.flow.duration_s * 1000,
            "dev_worker_payloads": dev.flow.batch / dev.flow.duration_s,
            "device_auth_us": MEASURED.device_auth_cpu_ms * 1000,
            "part_mib": DEFAULT.multipart_part_bytes // 1024**2,
            "row_group_mib": DEFAULT.row_group_bytes // 1024**2,
            "flood_table": "\n".join(flood.flood_table(scale.config)),
            "flood_headroom": flood.device_headroom_rps(scale.config, load.rps),
        }
    )
