"""docs/CAPACITY.md: the seed load against both profiles and both front doors, every figure computed by
tools.models (tests/unit/test_capacity.py keeps the committed file equal to this output).

    python -m tools.models.capacity --format markdown > docs/CAPACITY.md
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from infra.access_logs import ACCESS_LOG_LINE_BYTES
from infra.config import SQS_IN_FLIGHT_DEFAULT_QUOTA, PipelineConfig
from infra.lake_table import COMPACTED_BUCKETS
from tools.models import cost, flood, prices
from tools.models.assumptions import DEFAULT, MEASURED, log_compression
from tools.models.capacity import (
    APIGW_ACCOUNT_BURST,
    APIGW_ACCOUNT_RPS,
    FAIL,
    LAMBDA_UNRESERVED_MINIMUM,
    QUOTA_VIA,
    QUOTAS,
    S3_PUT_PER_PREFIX,
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
from tools.models.flow import (
    ESM_MAX_BATCH_SIZE,
    ESM_MAX_WINDOW_SECONDS,
    POLLER_BYTES_PER_SECOND,
    POLLER_CONCURRENT_INVOKES,
    POLLER_POLLS_PER_SECOND,
    RECEIPT_HANDLE_CHARS,
    SQS_RECEIVE_MAX,
    load_of,
)

SOURCES = [
    (
        "API Gateway quotas (one account throttle for REST and HTTP APIs)",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html",
    ),
    ("API Gateway pricing (REST and HTTP API tiers, 512 KB metering)", "https://aws.amazon.com/api-gateway/pricing/"),
    (
        "Choose between REST APIs and HTTP APIs",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-vs-rest.html",
    ),
    ("Lambda quotas", "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"),
    ("Lambda reserved concurrency", "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"),
    (
        "Lambda scaling behavior (10 requests/s per environment)",
        "https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html",
    ),
    ("Lambda pricing (GB-s tiers, EPU-hours of provisioned pollers)", "https://aws.amazon.com/lambda/pricing/"),
    (
        "SQS message quotas (in flight)",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html",
    ),
    ("SQS pricing (64 KB chunks)", "https://aws.amazon.com/sqs/pricing/"),
    (
        "SQS event source parameters (batch size, window, provisioned pollers)",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html",
    ),
    ("Lambda with SQS, provisioned mode, example event", "https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html"),
    (
        "ProvisionedPollerConfig (API: up to 10,000 pollers for SQS)",
        "https://docs.aws.amazon.com/lambda/latest/api/API_ProvisionedPollerConfig.html",
    ),
    (
        "CDK aws_lambda.ProvisionedPollerConfig (SQS: maximum 2,000)",
        "https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.aws_lambda.ProvisionedPollerConfig.html",
    ),
    (
        "S3 performance (per-prefix rates)",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html",
    ),
    (
        "S3 performance whitepaper: timeouts and retries (small requests: median latency in the tens of ms)",
        "https://docs.aws.amazon.com/whitepapers/latest/s3-optimizing-performance-best-practices/"
        "timeouts-and-retries-for-latency-sensitive-applications.html",
    ),
    ("S3 pricing", "https://aws.amazon.com/s3/pricing/"),
    ("S3 server access logging (pricing)", "https://docs.aws.amazon.com/AmazonS3/latest/userguide/ServerLogs.html"),
    ("CloudWatch pricing (logs by class, storage, metrics, alarms)", "https://aws.amazon.com/cloudwatch/pricing/"),
    ("Secrets Manager pricing", "https://aws.amazon.com/secrets-manager/pricing/"),
    ("Athena pricing ($5 per TB, 10 MB minimum)", "https://aws.amazon.com/athena/pricing/"),
    ("Step Functions pricing (standard transitions)", "https://aws.amazon.com/step-functions/pricing/"),
    ("EC2 data transfer out (API Gateway's answers)", "https://aws.amazon.com/ec2/pricing/on-demand/#Data_Transfer"),
    (
        "X-Ray sampling rules (API Gateway, not Lambda)",
        "https://docs.aws.amazon.com/xray/latest/devguide/xray-console-sampling.html",
    ),
    (
        "SQS dead-letter queues (enqueue time kept)",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html",
    ),
    # The flood section (tools/models/flood.py).
    ("Amazon CloudFront pricing (HTTPS requests, data transfer)", "https://aws.amazon.com/cloudfront/pricing/"),
    ("AWS WAF pricing (web ACL, rule, requests)", "https://aws.amazon.com/waf/pricing/"),
    (
        "AWS WAF rate-based rule settings (evaluation window, lowest limit 10)",
        "https://docs.aws.amazon.com/waf/latest/developerguide/waf-rule-statement-type-rate-based-high-level-settings.html",
    ),
]


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


def _telemetry_section(scale: Assessment) -> list[str]:
    """What each telemetry choice costs at the seed load, against the scale profile's."""
    config = scale.config
    access = _line(scale, "CloudWatch", "access logs ingested")
    line_bytes = cost.access_log_bytes(config, scale.flow)
    rows: list[tuple[str, dict[str, Any]]] = [
        ('`LOG_LEVEL=INFO` (a "request accepted" line per request, a line per object)', {"LOG_LEVEL": "INFO"}),
        ("`SYSTEM_LOG_LEVEL=INFO` (Lambda's START/END/REPORT per invocation)", {"SYSTEM_LOG_LEVEL": "INFO"}),
        ("`METRICS_FLUSH_SECONDS=0` (an EMF blob per request)", {"METRICS_FLUSH_SECONDS": 0}),
        ("`ACCESS_LOG_CLASS=STANDARD`", {"ACCESS_LOG_CLASS": "STANDARD"}),
        ("`TRACING=true` (X-Ray, 5 % of requests and batches)", {"TRACING": True}),
        (
            "all of the above but tracing: the default profile's telemetry",
            {
                "LOG_LEVEL": "INFO",
                "SYSTEM_LOG_LEVEL": "INFO",
                "METRICS_FLUSH_SECONDS": 0,
                "ACCESS_LOG_CLASS": "STANDARD",
            },
        ),
        (
            f"`ACCESS_LOG_CLIENT_IP=on` (the client's address and user agent on each access-log line, kept "
            f"{dataclasses.replace(config, ACCESS_LOG_CLIENT_IP='on').access_log_retention_days} days)",
            {"ACCESS_LOG_CLIENT_IP": "on"},
        ),
    ]
    out = [
        "## Telemetry: what each choice costs at the seed load",
        "",
        f"The scale profile logs no per-request line (`LOG_LEVEL={config.LOG_LEVEL}`: errors and warnings keep their "
        f"correlation id), drops Lambda's START/END/REPORT lines (`SYSTEM_LOG_LEVEL={config.SYSTEM_LOG_LEVEL}`), "
        f"flushes the ingest's EMF counts once per warm container every {config.METRICS_FLUSH_SECONDS} s (the consumer "
        f"flushes per batch), and keeps one access-log line per request in the "
        f"`{config.ACCESS_LOG_CLASS}` class: {_money(access.usd)}/month for {access.quantity:,.0f} GB of "
        f"{line_bytes} B lines (request id, status, latency, no client address: infra/access_logs.py's format, "
        f"{ACCESS_LOG_LINE_BYTES['rest']} B a line on REST; `--access-log-bytes` prices another). Request logs come "
        "back with one knob (`LOG_LEVEL=INFO`, one deploy). Each row below is the monthly cost of changing one knob "
        "back:",
        "",
        "| choice | change per month |",
        "|---|---:|",
    ]
    out += [f"| {label} | {_delta(scale, **knobs)} |" for label, knobs in rows]
    standard = _with(config, ACCESS_LOG_CLASS="STANDARD")
    std_line = _line(standard, "CloudWatch", "access logs ingested")
    out += [
        "",
        f"Access logs: `STANDARD` {_money(std_line.usd)} a month, `INFREQUENT_ACCESS` {_money(access.usd)} "
        f"(${prices.CLOUDWATCH_LOGS_STANDARD_PER_GB:.2f} against "
        f"${prices.CLOUDWATCH_LOGS_INFREQUENT_ACCESS_PER_GB:.2f} "
        "per GB ingested); every 100 B more per line adds "
        f"{_money(access.usd * 100 / (line_bytes + prices.CLOUDWATCH_LOG_EVENT_OVERHEAD_BYTES))} "
        "in the Infrequent Access class. Turning the access log off saves that line but loses the only record of "
        "who was answered what; the Infrequent Access class keeps Logs Insights queries. Stored logs are billed "
        f"compressed: the model divides by {log_compression():.1f}, gzip's ratio on a seeded sample of access-log "
        "lines.",
    ]
    return out


def _lake_section(scale: Assessment) -> list[str]:
    config, flow = scale.config, scale.flow
    lake = lake_figures(config, flow)
    if lake is None:
        return []
    thirty = lake_figures(dataclasses.replace(config, RAW_RETENTION_DAYS=30), flow)
    assert thirty is not None
    lines = cost.compaction_lines(config, flow)
    raw_objects = flow.puts_per_hour
    compacted = cost.compacted_bytes_per_payload(flow)
    return [
        "## The lake: compaction and query cost",
        "",
        f"Compaction (`COMPACTION=on`): every hour an EventBridge Scheduler run starts a Step Functions standard "
        f"workflow whose Athena CTAS rewrites the closed hour as Parquet (zstd) and switches the partition "
        f"(brief decision 4). At the seed load one run scans {lake.athena_tb_per_run * 1024:,.0f} GB: the raw hour's "
        f"gzip NDJSON ({flow.payloads_per_hour / 1e6:,.0f} M payloads at "
        f"{cost.stored_bytes_per_payload(config, flow):.0f} B) and no other hour: every copy of an id is in "
        f"one hour partition, so it joins no compacted hour's ids (issue 26 item 8; before, the `id` column of "
        f"{config.COMPACTION_LOOKBACK_HOURS} compacted hours, {MEASURED.compacted_column_bytes['id']:.2f} B a "
        f"payload, bench S2). The capacity table's *Compaction run* rows give the rows it ranks and its "
        f"estimated run time against Athena's DML timeout. Monthly:",
        "",
        "| item | quantity | per month |",
        "|---|---:|---:|",
        *[
            f"| {line.service}: {line.item} | {_num(line.quantity)} {line.unit} | {_money(line.usd)} |"
            for line in lines
        ],
        f"| **compaction** | | **{_money(lake.compaction_usd_per_month)}** |",
        "",
        f"* **Objects per hour partition**: {raw_objects:,.0f} raw batch objects of ~{flow.payloads_per_object:,.0f} "
        f"payloads before; {lake.compacted_objects_per_hour:,} Parquet objects after "
        f"({compacted * flow.payloads_per_second * 3600 / 1024**3:,.0f} GB at {compacted:.0f} B a payload, "
        f"bench S2: one file per bucket of the CTAS, `COMPACTED_BUCKETS` in infra/lake_table.py). A run's S3 "
        "requests are the lake's own count (docs/LAKE.md): a GET per raw object, a LIST per 1,000, each file's "
        f"multipart PUTs ({DEFAULT.multipart_part_bytes // 1024**2} MiB parts assumed), and for each lookback hour "
        f"each file's footer and id column ({DEFAULT.row_group_bytes // 1024**2} MiB row groups assumed).",
        '* **A one-hour query** ("payloads per token in one hour", bench Q1), at Athena\'s '
        f"${prices.ATHENA_PER_TB:.0f} per TB and its 10 MB minimum: raw NDJSON.gz of the hour "
        f"${lake.raw_hour_query_usd:,.2f}; through the old `payloads_dedup` view, which scans every raw object kept "
        f"whatever the filter, ${lake.dedup_view_query_usd:,.0f} at `RAW_RETENTION_DAYS={config.RAW_RETENTION_DAYS}` "
        f"(${thirty.dedup_view_query_usd:,.0f} with 30 days kept); the compacted table's `token` column for the hour "
        f"({MEASURED.compacted_column_bytes['token']:.2f} B a payload, "
        f"{flow.payloads_per_hour * MEASURED.compacted_column_bytes['token'] / 1024**3:.1f} GB) "
        f"${lake.parquet_column_query_usd:,.4f}.",
    ]


def _why_scale(scale: Assessment, rest: Assessment) -> list[str]:
    c, f = scale.config, scale.flow
    drain = next(x for x in scale.checks if x.stage == "Backlog")
    storage = {line.item.split(" (")[0]: line for line in scale.lines if line.service == "S3"}
    raw, compacted = storage["raw payloads, gzip NDJSON"], storage["compacted Parquet"]
    put = next(line for line in scale.lines if line.item.startswith("PUT"))
    pollers = next(line for line in scale.lines if line.service == "Lambda pollers")
    traced = _with(c, TRACING=True)
    xray = sum(line.usd for line in traced.lines if line.service == "X-Ray")
    return [
        "### Why each `scale` setting (infra/config.py `PROFILES`)",
        "",
        f"* `API_KIND=http`, `DEVICE_AUTH=on`: the HTTP API costs {_money(_line(scale, 'API Gateway', 'HTTP').usd)} "
        f"a month against REST's {_money(_line(rest, 'API Gateway', 'REST').usd)}; an HTTP API has no API keys, so "
        f"devices send their own keys. Reading the signing secret every `DEVICE_REVOCATION_TTL_SECONDS="
        f"{c.DEVICE_REVOCATION_TTL_SECONDS}` in each warm ingest costs "
        f"{_money(sum(line.usd for line in scale.lines if line.service == 'Secrets Manager'))}.",
        f"* `THROTTLE_RATE_LIMIT={c.THROTTLE_RATE_LIMIT:,}`, `STAGE_THROTTLE_RATE_LIMIT="
        f"{c.STAGE_THROTTLE_RATE_LIMIT:,}`: the payloads route and the stage carry {scale.load.rps:,.0f} rps +20 %; "
        f"the account throttle, one for REST and HTTP APIs, is raised to match. The bursts stay at "
        f"{c.STAGE_THROTTLE_BURST_LIMIT:,}: AWS sets the account's burst ({APIGW_ACCOUNT_BURST:,} by default) and "
        "takes no request to raise it.",
        f"* `MESSAGE_TARGET_BYTES={c.MESSAGE_TARGET_BYTES:,}`: a request's {scale.load.payloads_per_request} payloads "
        f"travel as {f.layout.messages_per_request} message of {f.layout.message_bytes:,.0f} B, one 64 KiB billing "
        f"chunk; {f.messages_per_second:,.0f} messages/s instead of {f.payloads_per_second:,.0f}.",
        f"* `OBJECT_MODE=batch`, `BATCH_SIZE={c.BATCH_SIZE}`, `MAX_BATCHING_WINDOW_SECONDS="
        f"{c.MAX_BATCHING_WINDOW_SECONDS}`: {f.payloads_per_batch:,.0f} payloads per batch object, "
        f"{f.puts_per_second:,.0f} PUT/s ({_money(put.usd)} a month, the goal being <= $2,500); one invocation's event "
        f"is {c.BATCH_SIZE} records of {f.record_bytes:,.0f} B (the escaped body plus the record's fields, a "
        f"{RECEIPT_HANDLE_CHARS} B receipt handle counted) = {c.BATCH_SIZE * f.record_bytes / 1e6:.1f} MB of Lambda's "
        f"6 MB. A poller's share of the load fills a batch in {f.fill_s:.1f} s, inside the window; the window "
        f"(<= {ESM_MAX_WINDOW_SECONDS} s, and BATCH_SIZE <= {ESM_MAX_BATCH_SIZE:,}) closes smaller batches when the "
        f"load drops. A payload waits at most {f.latency_s:.1f} s for its object.",
        f"* `PROVISIONED_POLLERS=true`, `MAX_POLLERS={c.MAX_POLLERS}`: a poller receives at most "
        f"{f.poller_receive:,.0f} messages/s ({POLLER_BYTES_PER_SECOND // 1_000_000} MB/s of "
        f"{f.layout.message_bytes:,.0f} B messages), so the load needs "
        f"{math.ceil(f.messages_per_second / f.poller_receive)} "
        f"pollers; {pollers_for(f)} is that +20 %, far under the 2,000 CloudFormation accepts (the API reference "
        f"allows 10,000). `MIN_POLLERS={c.MIN_POLLERS}` is the highest floor AWS accepts. The active pollers cost "
        f"{_money(pollers.usd)} a month ({pollers.quantity:,.0f} EPU-hours).",
        f"* `SQS_IN_FLIGHT_LIMIT` at its default {SQS_IN_FLIGHT_DEFAULT_QUOTA:,}: {f.in_flight_ok:,.0f} messages are "
        "in "
        f"flight with no failures ({f.in_flight_ok / SQS_IN_FLIGHT_DEFAULT_QUOTA:.0%} of the quota, under the "
        f"80 % alarm), and the cap tolerates a failure rate up to {tolerated_failure_rate(c, f):.1%}. No AWS Support "
        "case.",
        f"* `RESERVED_CONCURRENCY=on`, `INGEST_RESERVED_CONCURRENCY={c.INGEST_RESERVED_CONCURRENCY:,}`: the consumer "
        f"reserves {consumer_worst_case(c):,} (10 invokes per poller), all an S3 slowdown lets it take; the ingest "
        f"reserves {ingest_reservation_for(f):,} (its {scale.load.rps:,.0f} rps at 10 per environment, and "
        f"{f.slow_ingest_concurrency:,.0f} executions while SendMessageBatch takes {DEFAULT.slow_sqs_send_ms:.0f} ms, "
        '+20 %). See "Safe at scale".',
        f"* `CONSUMER_TIMEOUT_SECONDS={c.CONSUMER_TIMEOUT_SECONDS}`: a batch takes ~{f.duration_s * 1000:.0f} ms; the "
        f"visibility timeout becomes {c.visibility_timeout_seconds} s.",
        f"* `MAX_QUEUE={c.MAX_QUEUE:,}` messages (~{c.MAX_QUEUE / f.messages_per_second / 60:,.0f} minutes of load): "
        "it "
        f"drains in {drain.need / 60:,.0f} minutes at the pollers' spare capacity, and the ingest answers 503 before "
        "payloads could expire.",
        f"* `QUEUE_RETENTION_DAYS={c.QUEUE_RETENTION_DAYS}`, `DLQ_RETENTION_DAYS={c.DLQ_RETENTION_DAYS}`: the longest "
        "the queue can keep messages while the DLQ still outlives it (a moved message keeps its enqueue time).",
        f"* `RAW_RETENTION_DAYS={c.RAW_RETENTION_DAYS}`, `COMPACTED_RETENTION_DAYS={c.COMPACTED_RETENTION_DAYS}`: raw "
        f"objects stored at their gzip size (bench S1: {MEASURED.stored_compression:.2f}x on telemetry-like payloads) "
        f"cost {_money(raw.usd)} a month; {c.RAW_RETENTION_DAYS} days is the least the lake accepts, one more than "
        "`DLQ_RETENTION_DAYS`, so an hour can be re-compacted after the DLQ's last redrive. The compacted Parquet "
        f"costs {_money(compacted.usd)} for {c.COMPACTED_RETENTION_DAYS} days of analysis. No storage-class "
        "transition: objects kept two weeks or a month would pay the IA classes' minimum storage durations.",
        f"* `LOG_LEVEL={c.LOG_LEVEL}`, `SYSTEM_LOG_LEVEL={c.SYSTEM_LOG_LEVEL}`, `METRICS_FLUSH_SECONDS="
        f"{c.METRICS_FLUSH_SECONDS}`, `ACCESS_LOG_CLASS={c.ACCESS_LOG_CLASS}`: see the telemetry section.",
        f"* `TRACING=false`: Lambda's active tracing samples 1 request/s + 5 % and takes no custom sampling rules; at "
        f"this load that is {_money(xray)} a month of traces nobody reads. Metrics, logs and alarms stay.",
    ]


def _safe_at_scale(scale: Assessment) -> list[str]:
    c, f = scale.config, scale.flow
    account = next(x for x in scale.checks if x.stage == "Lambda account")
    off = _with(c, RESERVED_CONCURRENCY="off", INGEST_RESERVED_CONCURRENCY=0)
    off_account = next(x for x in off.checks if x.stage == "Lambda account")
    return [
        "## Safe at scale: the consumer cannot starve the ingest",
        "",
        f"In provisioned mode each poller drives up to {POLLER_CONCURRENT_INVOKES} concurrent invokes, so the consumer "
        f"can take 10 x `MAX_POLLERS` = {consumer_worst_case(c):,} executions when S3 slows down and batches take "
        "longer, whether it reserves them or not. The capacity model counts that worst case in the account's "
        f"concurrency, beside the ingest and the {LAMBDA_UNRESERVED_MINIMUM} Lambda keeps unreserved: "
        f"{account.item.split(': ', 1)[1]} = {account.need:,.0f}, so the quota to request is "
        f"{account.request:,.0f}. Leaving both unreserved would need {off_account.need:,.0f}, the consumer's worst "
        "case counted the same, but the ingest would have no floor of its own: anything else in the account could "
        "still starve it. The ingest's reservation is checked against the load while "
        f"SendMessageBatch is slow (`--slow-sqs-send-ms`, {DEFAULT.slow_sqs_send_ms:.0f} ms by default: "
        f"{f.slow_ingest_concurrency:,.0f} executions) and against 10 requests/s per execution environment "
        f"({scale.load.rps / 10:,.0f}): `INGEST_RESERVED_CONCURRENCY={c.INGEST_RESERVED_CONCURRENCY:,}`. A smaller "
        "`MAX_POLLERS` is the other lever: it bounds the consumer's worst case. `make preflight` (the ops branch) "
        "checks the account's quota against what this model asks for.",
    ]


def _assumptions_section(scale: Assessment) -> list[str]:
    m, a, f = MEASURED, DEFAULT, scale.flow
    rows = [
        (
            "ingest CPU per request",
            f"{m.ingest_cpu_ms} ms (one core), + {m.device_auth_cpu_ms * 1000:.1f} µs with device keys",
            "bench P1 and D1 (`python -m bench P1 D1`), x 1,769 / memory MB",
        ),
        (
            "consumer CPU per payload",
            f"{m.consumer_cpu_ms_per_record[0]} ms payload mode, {m.consumer_cpu_ms_per_record[1]} ms batch mode",
            "bench C1 (`python -m bench C1`)",
        ),
        (
            "log bytes",
            f"ingest {m.ingest_log_bytes} B a request (EMF {m.ingest_emf_bytes} B), {m.ingest_window_emf_bytes} B a "
            "flush window at the scale profile's levels, consumer "
            f"{m.consumer_log_bytes_per_batch} B a batch (EMF {m.consumer_emf_bytes} B)",
            "bench L1 and L1s (`python -m bench L1`); the EMF blobs from one invocation's stdout",
        ),
        (
            "raw storage",
            f"{m.stored_compression:.2f}x gzip: {cost.stored_bytes_per_payload(scale.config, f):.0f} B a payload",
            "bench S1 (`python -m bench S1`): the consumer's real batch objects of 2,000 seeded telemetry-like "
            "payloads (tools/models/sample_payloads.py: sensor readings and accelerometer samples, not padding)",
        ),
        (
            "compacted storage and columns",
            f"{m.compacted_compression:.2f}x (Parquet zstd); id {m.compacted_column_bytes['id']} B, token "
            f"{m.compacted_column_bytes['token']} B a payload",
            "bench S2 (printed by `python -m bench S1`): DuckDB's Parquet writer in Athena's file order (hashed by "
            "id); the lake's bench Q1 finds the id column at 5.6 B a payload in that order too",
        ),
        (
            "SendMessageBatch",
            f"{a.sqs_send_ms:.0f} ms (`--sqs-send-ms`)",
            "assumed: AWS publishes no SQS latency; a REPORT line's duration minus P1 measures it",
        ),
        (
            "SendMessageBatch, slowed",
            f"{a.slow_sqs_send_ms:.0f} ms (`--slow-sqs-send-ms`)",
            "assumed brownout the ingest's reservation absorbs",
        ),
        (
            "PutObject",
            f"{a.put_ms:.0f} ms a payload, {a.batch_put_ms:.0f} ms a batch object (`--put-ms`, `--batch-put-ms`)",
            'S3 whitepaper: small requests\' median latency is "in the tens of milliseconds"',
        ),
        (
            "ingest, consumer durations",
            f"{f.ingest_ms:.1f} ms, {f.duration_s * 1000:.0f} ms a batch (`--ingest-ms`, `--consumer-ms` replace them)",
            "CPU x memory scale + the latencies above",
        ),
        (
            "messages a receive",
            f"{f.messages_per_receive:.1f}",
            "a poller's share of the messages over its 10 receives/s (1..10)",
        ),
        (
            "a record in the consumer's event",
            f"{f.record_bytes:,.0f} B",
            f"AWS's example record with a {RECEIPT_HANDLE_CHARS} B receipt handle, the body JSON-escaped as measured "
            "on telemetry-like envelopes",
        ),
        (
            "access-log line",
            f"{cost.access_log_bytes(scale.config, f)} B (`--access-log-bytes`)",
            "the format's typical line and its newline (infra/access_logs.py access_log_line_bytes, by API_KIND "
            "and ACCESS_LOG_CLIENT_IP)",
        ),
        ("answer to a client", f"{a.response_bytes} B", "the 202's body + ~220 B of headers, transferred out"),
        (
            "EPU per active poller",
            f"{a.epus_per_poller:g}",
            'Lambda pricing, provisioned mode (its SQS example: "The EPU price is $0.00925 per EPU-hour"); one EPU per '
            "active poller is assumed: the mapping of pollers to EPUs for SQS was not found spelled out",
        ),
        (
            "warm ingest environments",
            f"{f.ingest_environments:,.0f}",
            "the ingest's concurrency +20 %; each reads the device secret every TTL and flushes EMF",
        ),
        (
            "environment lifetime",
            f"{a.environment_hours:g} h",
            "assumed (not documented): cold starts re-read the secret",
        ),
        (
            "compaction run",
            f"{a.compaction_transitions} transitions, {COMPACTED_BUCKETS} files, 1 billed statement of 4",
            'docs/LAKE.md "What one run costs" and infra/lake_table.py (a first run of an hour)',
        ),
        (
            "Athena's Parquet files",
            f"{a.multipart_part_bytes // 1024**2} MiB multipart parts, {a.row_group_bytes // 1024**2} MiB row groups",
            "assumed (not documented): they count S3 requests only",
        ),
        (
            "dashboards, the functions' custom metrics",
            f"{a.dashboards}, {a.custom_metrics}",
            "infra/monitoring_construct.py; alarm metrics and S3 request metrics are counted from the config "
            "(tools/models/alarm_metrics.py: a metric-math alarm bills each of its metrics)",
        ),
    ]
    return [
        "## Assumptions and where each figure comes from",
        "",
        "Everything not on a price list or a quota page, with its source. The latencies, durations and the "
        "access-log line are flags of both tools (`--bench FILE` reads a fresh `make bench` run for the measured "
        "figures), so a figure measured in AWS replaces the assumption; the others are named fields of "
        "`Assumptions` in tools/models/assumptions.py.",
        "",
        "| figure | value | source |",
        "|---|---|---|",
        *[f"| {name} | {value} | {source} |" for name, value, source in rows],
    ]


def _json_section() -> list[str]:
    return [
        "## For scripts: `--format json`",
        "",
        "`PROFILE=scale python -m tools.models.capacity --rpm 1000000 --payloads 10 --payload-bytes 1024 --format "
        "json` "
        "prints one object, schema 1 (the module docstring of tools/models/capacity/__init__.py is the reference; "
        "a test fails if a field goes missing):",
        "",
        "| field | meaning |",
        "|---|---|",
        "| `carried` | `true` when the exit code is 0: carried, possibly after the listed quota increases |",
        "| `exit_code` | 0 carried, 1 not (2, bad arguments or knobs, prints no JSON) |",
        "| `binding` | the binding stage, e.g. `Lambda account`; `binding_check` is its check |",
        "| `checks` | every check: `stage`, `item`, `status`, `kind` (config, quota, hard, info), `need`, `limit` "
        "(null: unbounded), `unit`, `source`, `quota`, `note` |",
        "| `quota_increases` | `quota` (a key: "
        + ", ".join(f"`{k}`" for k in QUOTAS)
        + "), `name`, `figure` (the value "
        "to ask for), `via`: `service-quotas` or `support-case` |",
        "| `cost.lines` | `service`, `item`, `quantity`, `unit`, `usd_per_month` |",
        "| `cost.total_usd_per_month` | the sum of the lines |",
        "| `payloads_per_month` | the load's payloads in a 30-day month |",
        "| `usd_per_million_payloads` | the total per million payloads |",
        "| `flow` | messages per request and their bytes, pollers, batch messages and payloads, fill time, consumer "
        "ms, "
        "in flight, latency, payloads per object |",
        "| `lake` | compaction's monthly cost, compacted objects per hour, Athena TB per run, the one-hour query's "
        "cost "
        "on raw NDJSON.gz, through the old dedup view and on one Parquet column (null with `COMPACTION=off`) |",
        "| `profile`, `api_kind`, `object_mode`, `load`, `schema` | what was judged |",
    ]


def render_markdown() -> str:
    """docs/CAPACITY.md: the seed load against both profiles, every figure from tools.models."""
    load = load_of(*SEED)
    dev = assess(resolve_config({"PROFILE": "dev"}), load)
    scale = assess(resolve_config({"PROFILE": "scale"}), load)
    rest = assess(resolve_config({"PROFILE": "scale", "API_KIND": "rest", "DEVICE_AUTH": "off"}), load)
    rest_keys = assess(resolve_config({"PROFILE": "scale", "API_KIND": "rest", "DEVICE_AUTH": "on"}), load)
    biggest = max(scale.lines, key=lambda line: line.usd)
    telemetry = sum(line.usd for line in scale.lines if line.service in ("CloudWatch", "X-Ray"))
    dev_f = dev.flow
    quota_text = "; ".join(
        f"{QUOTAS[key].split(' (')[0]} to {value:,.0f} ({QUOTA_VIA[key]})"
        for key, value in scale.quota_increases.items()
    )
    return "\n".join(
        [
            "# Capacity and cost: does a configuration carry a load, and what does it cost?",
            "",
            "<!-- Generated by `python -m tools.models.capacity --format markdown > docs/CAPACITY.md`; "
            "tests/unit/test_capacity.py keeps this file equal to the tool's output. "
            "Edit tools/models/capacity_doc.py. -->",
            "",
            f"The seed load is the Go original's: **{SEED[0]:,} requests/min = {load.rps:,.0f} requests/s**, "
            f"{SEED[1]} payloads of {SEED[2]:,} B each: **{load.payloads_per_second:,.0f} payloads/s, "
            f"{load.payloads_per_month / 1e9:,.0f} billion a month**. Check your own load and configuration "
            "(resolved as the stack resolves it: environment, cdk.json context, `PROFILE` preset, default):",
            "",
            "    python -m tools.models.capacity --rpm N --payloads N --payload-bytes N [--failure-rate F] [--format "
            "text|json|markdown]",
            "    make capacity RPM=1000000 PAYLOADS=10 PAYLOAD_BYTES=1024   # PROFILE=scale make capacity ...",
            "    python -m tools.models.cost --rpm N --payloads N --payload-bytes N   # both object modes, line by "
            "line",
            "",
            "Exit 0: carried, possibly after the listed quota increases (AWS grants those on request); 1: this "
            "configuration cannot carry it; 2: bad arguments or knobs. Legend: ✓ within the limit; ✗ quota: above an "
            "AWS default quota to raise; ✗ above a configured or hard limit; ! works, with a risk named; · shown, "
            "not judged.",
            "",
            f"**At the seed load, `PROFILE=scale` is carried for ${scale.usd_per_million_payloads:.3f} per million "
            f"payloads ({_money(scale.total_usd)} a month) with the HTTP API front door, and for "
            f"${rest.usd_per_million_payloads:.3f} ({_money(rest.total_usd)}) with `API_KIND=rest DEVICE_AUTH=off` "
            f"(${rest_keys.usd_per_million_payloads:.3f} with device keys on REST)**, after Service Quotas increases "
            f"only: {quota_text}.",
            "",
            *_json_section(),
            "",
            "## How each stage is judged",
            "",
            "One function per stage (`STAGES` in tools/models/capacity/__init__.py, the front door by `API_KIND` in "
            "`FRONT_DOORS`), each `(config, load, flow) -> list[Check]`; the flow (tools/models/flow.py) is how the "
            "load moves through the configuration, and the cost lines (tools/models/cost.py) price the same flow.",
            "",
            f"* **API Gateway**: requests/s against the account throttle ({APIGW_ACCOUNT_RPS:,} rps per Region, one "
            "quota for REST and HTTP APIs), whose burst "
            f"({APIGW_ACCOUNT_BURST:,}) AWS sets and takes no request for, so the configured bursts must stay within "
            "it. "
            "REST: the stage throttle and the usage plan of the stack's one API key (`THROTTLE_RATE_LIMIT`, best "
            "effort). HTTP API: the stage throttle (`STAGE_THROTTLE_*`) and the payloads routes' own "
            "(`THROTTLE_*`).",
            "* **Ingest Lambda**: concurrency = requests/s x duration (Little's law). With "
            "`INGEST_RESERVED_CONCURRENCY`, the reservation must hold the load while SendMessageBatch is slow, and the "
            "requests/s at 10 per execution environment.",
            "* **Lambda account**: the concurrency quota (1,000 by default) must hold the ingest, the consumer's "
            "worst "
            f"case (its reservation, or the pool's bound, which an S3 slowdown fills) and the "
            f"{LAMBDA_UNRESERVED_MINIMUM} executions Lambda keeps unreserved; invocations/s are capped at 10 x the "
            "quota.",
            "* **SQS**: a standard queue takes a nearly unlimited number of calls/s; messages in flight (received, not "
            f"deleted) are capped at ~{SQS_IN_FLIGHT_DEFAULT_QUOTA:,} per standard queue unless AWS Support raised it "
            "(`SQS_IN_FLIGHT_LIMIT`). In flight = messages/s x (half the batch fill time + the batch's duration) + "
            "messages/s x failure rate x the first retry delay. With `MESSAGE_TARGET_BYTES`, a message holds a "
            "request's payloads, so the count falls with the payloads per message. The in-flight alarm fires at 80 % "
            "of `SQS_IN_FLIGHT_LIMIT`, so the failure-free figure must stay below that.",
            f"* **Event source mapping**: standard mode carries `MAX_WORKERS` x batch / duration messages/s. A "
            f"provisioned poller takes at most {POLLER_POLLS_PER_SECOND} ReceiveMessage calls/s of {SQS_RECEIVE_MAX} "
            f"messages, {POLLER_BYTES_PER_SECOND // 1_000_000} MB/s and {POLLER_CONCURRENT_INVOKES} concurrent "
            "invokes. "
            "A batch closes at `BATCH_SIZE`, the window or Lambda's 6 MB invoke payload, counted per record with its "
            "fields and escaped body; the fill time is the latency a payload adds.",
            "* **Consumer Lambda**: batches/s x batch duration against its bound (its reservation, or the mapping's).",
            f"* **S3**: PUT/s into one prefix. Every hour starts a fresh, unsplit `hour=` prefix that takes "
            f"{S3_PUT_PER_PREFIX:,} PUT/s until S3 splits it (503 SlowDown meanwhile). Payload mode PUTs once per "
            "payload, batch mode once per batch object; both modes are shown, the configured one is judged.",
            "* **Backlog**: with `MAX_QUEUE` (messages) the ingest answers 503 before the backlog passes it; a full "
            "backlog must drain, at the consumer's spare capacity, well within `QUEUE_RETENTION_DAYS`.",
            "",
            f"## `PROFILE=scale`: carried after Service Quotas increases, ${scale.usd_per_million_payloads:.3f} per "
            "million payloads",
            "",
            _ceiling(scale),
            "",
            *_md_table(scale),
            "",
            "```",
            *verdict_lines(scale),
            "```",
            "",
            "Ask for the increases in the Service Quotas console of the deployment's Region before a test at this "
            "load. Any reserved concurrency must leave 100 unreserved, so the stack fails to deploy until the "
            "concurrency increase is granted (`make preflight` checks it).",
            "",
            f"### Monthly cost, line by line (`PROFILE=scale`, {prices.REGION} list prices checked "
            f"{prices.PRICES_CHECKED})",
            "",
            *_md_cost(scale),
            "",
            f"The largest line is {biggest.service} ({biggest.item}, {_money(biggest.usd)}); telemetry (CloudWatch "
            f"Logs, metrics, alarms, dashboard) is {_money(telemetry)} of {_money(scale.total_usd)}.",
            "",
            f"With the REST front door (`API_KIND=rest DEVICE_AUTH=off`), the API Gateway line is "
            f"{_money(_line(rest, 'API Gateway', 'REST').usd)} and the Secrets Manager lines go: "
            f"{_money(rest.total_usd)} a month, **${rest.usd_per_million_payloads:.3f} per million payloads** "
            f"(${rest_keys.usd_per_million_payloads:.3f} with `DEVICE_AUTH=on`). "
            f"`python -m tools.models.cost` prints both object modes for any load.",
            "",
            *_why_scale(scale, rest),
            "",
            *_safe_at_scale(scale),
            "",
            *_telemetry_section(scale),
            "",
            *_lake_section(scale),
            "",
            "## `PROFILE=dev` (the default): not carried",
            "",
            "The default profile stays the Go original's shape (one payload per message and per object, REST, "
            "request logs on); it is for loads far below the seed's.",
            "",
            _ceiling(dev),
            "",
            *_md_table(dev),
            "",
            "```",
            *verdict_lines(dev),
            "```",
            "",
            f"## Payload mode is for loads below {S3_PUT_PER_PREFIX:,} payloads/s",
            "",
            f"Payload mode PUTs one object per payload under `dt=/hour=/`, and every hour starts an unsplit prefix "
            f"that takes {S3_PUT_PER_PREFIX:,} PUT/s. Above that every hour begins with 503 SlowDown storms (retried, "
            "then redelivered; create-only writes keep them duplicate-free) until S3 splits the prefix. So payload "
            f"mode is for loads below {S3_PUT_PER_PREFIX:,} payloads/s: "
            f"{payload_mode_max_rpm(SEED[1]):,.0f} requests/min at {SEED[1]} payloads each "
            f"({payload_mode_max_rpm(1):,.0f} at one). `tools.models.capacity` marks S3 {FAIL} in payload mode above "
            "it and says to use `OBJECT_MODE=batch`.",
            "",
            "## Sizing the worker pool for another load",
            "",
            f"* **Standard mode** (`MAX_WORKERS`, 2–1,000) carries `MAX_WORKERS` x batch / duration messages/s. At the "
            f"default profile a payload-mode batch of {dev.config.BATCH_SIZE} takes ~{dev_f.duration_s * 1000:.0f} ms "
            f"at {dev.config.CONSUMER_MEMORY_MB} MB (ceil(`BATCH_SIZE` / `UPLOAD_CONCURRENCY`) waves of "
            f"{DEFAULT.put_ms:.0f} ms PUTs plus CPU), so one worker carries "
            f"~{dev_f.batch / dev_f.duration_s:,.0f} payloads/s. When a worker is CPU-bound, raise "
            "`CONSUMER_MEMORY_MB` (CPU share grows with memory up to 1,769 MB) before `UPLOAD_CONCURRENCY`.",
            f"* **Provisioned pollers** (`PROVISIONED_POLLERS=true`): a poller takes at most "
            f"{POLLER_POLLS_PER_SECOND * SQS_RECEIVE_MAX} messages/s and 1 MB/s, so `MAX_POLLERS` >= messages/s / "
            "min(100, 1 MB/s / message) (+20 %). `MIN_POLLERS` stay warm and are billed per EPU-hour whether used or "
            "not. The consumer can drive 10 x `MAX_POLLERS` executions: count them in the account's concurrency.",
            "",
            *_assumptions_section(scale),
            "",
            *flood.capacity_section(scale.config, load.rps),
            "",
            "## Sources",
            "",
            *[f"* {title}: {url}" for title, url in SOURCES],
            "",
        ]
    )
