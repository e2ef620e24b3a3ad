"""Does this configuration carry this load? Every stage's need against its limit, the binding stage, the
quota increases to request, and the monthly cost.

    python -m tools.models.capacity --rpm 1000000 --payloads 10 --payload-bytes 1024 [--failure-rate 0.001]
    PROFILE=scale python -m tools.models.capacity --rpm 1000000 --payloads 10 --payload-bytes 1024 --format json
    python -m tools.models.capacity --format markdown > docs/CAPACITY.md     (--markdown is the same)

The config is resolved exactly as the stack resolves it (environment, cdk.json context, PROFILE preset,
default). Exit 0: carried (possibly after the listed quota increases, which AWS grants on request);
1: this configuration cannot carry it; 2: bad arguments or knobs. Rates and sizes come from
tools.models.flow, durations from tools.models.assumptions (`make bench` CPU figures plus assumed AWS
latencies, each a flag: --sqs-send-ms, --slow-sqs-send-ms, --put-ms, --batch-put-ms, --ingest-ms,
--consumer-ms, --bench FILE).

Each stage is one function ``(config, load, flow) -> list[Check]`` (``STAGES``; the front door by
API_KIND in ``FRONT_DOORS``); ``assess`` is their concatenation.

--format json prints one object (schema 1); its fields are described in docs/CAPACITY.md, "For scripts" (the
template tools/models/capacity_doc.md.tmpl), the reference.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.config import SQS_IN_FLIGHT_DEFAULT_QUOTA, PipelineConfig, cdk_json_context
from tools.models import cost, prices
from tools.models.assumptions import DEFAULT, Assumptions
from tools.models.flow import (
    ESM_MAX_BATCH_SIZE,
    ESM_MAX_WINDOW_SECONDS,
    HEADROOM,
    LAMBDA_SYNC_PAYLOAD_BYTES,
    POLLER_CONCURRENT_INVOKES,
    Flow,
    Load,
    flow_of,
    load_of,
)

# --- AWS figures, each from the page cited --------------------------------------------------------
# API Gateway quotas (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html): "Throttle quota
# per account, per Region across HTTP APIs, REST APIs, WebSocket APIs, and WebSocket callback APIs": 10,000 rps
# (adjustable), one quota for both front doors, with a token-bucket burst of 5,000 that "is determined by the API
# Gateway service team based on the overall RPS quota ... It is not a quota that a customer can control or
# request changes to". So the configured bursts are judged against 5,000, and no burst increase is requested.
APIGW_ACCOUNT_RPS = 10_000
APIGW_ACCOUNT_BURST = 5_000
# Lambda quotas (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): 1,000 concurrent
# executions per Region (adjustable in Service Quotas); invocation requests per Region are capped at 10 x the
# concurrency quota; a reservation must leave at least 100 unreserved
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html). An execution environment
# serves about 10 requests/s: "1,000 execution environment instances every 10 seconds (or 10,000 requests per
# second every 10 seconds)" (https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html), so a
# function's reserved concurrency is also read as capping it at 10 x that in requests/s (the conservative
# reading).
LAMBDA_ACCOUNT_CONCURRENCY = 1_000
LAMBDA_INVOCATIONS_PER_CONCURRENCY = 10
LAMBDA_UNRESERVED_MINIMUM = 100
# Provisioned pollers: the Lambda API reference (ProvisionedPollerConfig) accepts 2..10,000 maximum pollers for
# SQS, while CloudFormation and CDK (aws_lambda.ProvisionedPollerConfig: "For Amazon SQS: Minimum value of 2.
# Maximum value of 2000") take 2,000: MAX_POLLERS stops at 2,000, what deploys.
# S3 (https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html): 3,500
# PUT/COPY/POST/DELETE per second per partitioned prefix; a new prefix starts unsplit and S3 splits it
# gradually, answering 503 SlowDown meanwhile. Every hour= starts a new prefix (both object modes).
S3_PUT_PER_PREFIX = 3_500

QUOTAS = {
    "apigw-rate": "API Gateway: Throttle rate (Service Quotas console, Amazon API Gateway; Region)",
    "lambda-concurrency": "Lambda: Concurrent executions (Service Quotas console, AWS Lambda; Region)",
    "sqs-in-flight": "SQS: in-flight messages per standard queue (AWS Support case, Amazon SQS; then set "
    "SQS_IN_FLIGHT_LIMIT)",
}
# How each quota is raised: the Service Quotas console, or only an AWS Support case ("To request a quota increase,
# submit a support request": Amazon SQS quotas).
QUOTA_VIA = {"apigw-rate": "service-quotas", "lambda-concurrency": "service-quotas", "sqs-in-flight": "support-case"}

OK, QUOTA, FAIL, WARN, INFO = "✓", "✗ quota", "✗", "!", "·"


@dataclass(frozen=True)
class Check:
    """One stage's figure: what the load needs against the limit that bounds it.

    kind: "config" (a knob; ✗ means this configuration cannot carry the load), "quota" (an AWS default
    quota AWS raises on request), "hard" (an AWS limit no request lifts), "info" (shown, not judged).
    """

    stage: str
    item: str
    need: float
    limit: float
    unit: str
    source: str
    kind: str
    quota: str = ""  # QUOTAS key, for kind "quota"
    request: float = 0.0  # the quota value to ask for
    note: str = ""
    warn: bool = False
    scales: bool = True  # the need grows with the load (HTTP contract and burst rows do not)

    @property
    def ok(self) -> bool:
        return self.need <= self.limit

    @property
    def ratio(self) -> float:
        return math.inf if self.need <= 0 else self.limit / self.need

    @property
    def status(self) -> str:
        if self.kind == "info":
            return INFO
        if self.warn:
            return WARN
        if self.ok:
            return OK
        return QUOTA if self.kind == "quota" else FAIL


@dataclass
class Assessment:
    config: PipelineConfig
    load: Load
    checks: list[Check]
    flow: Flow
    lines: list[cost.Line] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def quota_increases(self) -> dict[str, float]:
        """QUOTAS key -> the value to request (the largest any check needs)."""
        wanted: dict[str, float] = {}
        for check in self.checks:
            if check.status == QUOTA:
                wanted[check.quota] = max(wanted.get(check.quota, 0.0), check.request)
        return wanted

    @property
    def binding(self) -> Check:
        """The judged stage with the least headroom (limit / need), failing ones first; a quota counts at
        the value to request. Rows whose need does not grow with the load are named only when they fail,
        and an unbounded backlog (infinite need) is the consequence of another stage, so never."""
        judged = [
            c for c in self.checks if c.kind != "info" and not math.isinf(c.need) and (c.scales or c.status == FAIL)
        ]

        def headroom(c: Check) -> float:  # rounded: equal headrooms go to the stage met first
            return round(c.request / c.need if c.status == QUOTA else c.ratio, 3)

        return min(judged, key=lambda c: (c.status != FAIL, headroom(c)))

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    @property
    def total_usd(self) -> float:
        return cost.total(self.lines)

    @property
    def usd_per_million_payloads(self) -> float:
        return self.total_usd / self.load.payloads_per_month * 1e6


def _round_up(value: float, step: int = 1000) -> float:
    return math.ceil(value / step) * step


# --- the stages: each (config, load, flow) -> list[Check] -----------------------------------------------------
def http_contract_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """A request the ingest rejects is never carried. The body: the collection around the payloads."""
    limits = (
        ("payloads per request", load.payloads_per_request, config.MAX_PAYLOADS, "payloads", "MAX_PAYLOADS"),
        ("request body", load.body_bytes, config.MAX_BODY_BYTES, "B", "MAX_BODY_BYTES"),
        ("one payload", load.payload_bytes, config.MAX_PAYLOAD_BYTES, "B", "MAX_PAYLOAD_BYTES"),
    )
    return [Check("HTTP contract", *limit, "config", scales=False) for limit in limits]


def _account_throttle_checks(load: Load, bursts: dict[str, int]) -> list[Check]:
    """The account's throttle, one for REST and HTTP APIs: its rate is a quota, its burst is AWS's to set."""
    knob, burst = max(bursts.items(), key=lambda item: item[1])
    rate = "account throttle (REST and HTTP APIs), steady"
    request = _round_up(load.rps * HEADROOM)
    burst_item = f"account burst >= the configured burst ({knob})"
    burst_source = "AWS sets it; not requestable"
    return [
        Check(
            "API Gateway", rate, load.rps, APIGW_ACCOUNT_RPS, "rps", "AWS default quota", "quota", "apigw-rate", request
        ),
        Check("API Gateway", burst_item, burst, APIGW_ACCOUNT_BURST, "requests", burst_source, "hard", scales=False),
    ]


def rest_api_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """API_KIND=rest: the account throttle, the stage throttle, and the usage plan of the stack's one API key.
    The stage throttle is STAGE_THROTTLE_* above the keys' usage plans, or THROTTLE_* when there are no API keys
    (infra/api_construct.py)."""
    if config.REQUIRE_API_KEY:
        stage_knob, stage_rate, stage_burst = (
            "STAGE_THROTTLE_RATE_LIMIT",
            config.STAGE_THROTTLE_RATE_LIMIT,
            "STAGE_THROTTLE_BURST_LIMIT",
        )
        bursts = {stage_burst: config.STAGE_THROTTLE_BURST_LIMIT, "THROTTLE_BURST_LIMIT": config.THROTTLE_BURST_LIMIT}
    else:
        stage_knob, stage_rate = "THROTTLE_RATE_LIMIT", config.THROTTLE_RATE_LIMIT
        bursts = {"THROTTLE_BURST_LIMIT": config.THROTTLE_BURST_LIMIT}
    checks = [
        *_account_throttle_checks(load, bursts),
        Check("API Gateway", "stage throttle", load.rps, stage_rate, "rps", stage_knob, "config"),
    ]
    if config.REQUIRE_API_KEY:
        item = "per-key throttle (the stack's one API key)"
        note = "usage-plan throttling is best effort"
        rate = config.THROTTLE_RATE_LIMIT
        checks.append(Check("API Gateway", item, load.rps, rate, "rps", "THROTTLE_RATE_LIMIT", "config", note=note))
    return checks


def http_api_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """API_KIND=http: the account throttle (shared with REST APIs), the stage's default route throttle
    (STAGE_THROTTLE_*) and the payloads routes' own throttle (THROTTLE_*); an HTTP API has no usage plans."""
    bursts = {
        "STAGE_THROTTLE_BURST_LIMIT": config.STAGE_THROTTLE_BURST_LIMIT,
        "THROTTLE_BURST_LIMIT": config.THROTTLE_BURST_LIMIT,
    }
    routes = (
        ("HTTP API stage throttle", config.STAGE_THROTTLE_RATE_LIMIT, "STAGE_THROTTLE_RATE_LIMIT"),
        ("HTTP API payloads route throttle", config.THROTTLE_RATE_LIMIT, "THROTTLE_RATE_LIMIT"),
    )
    return [
        *_account_throttle_checks(load, bursts),
        *(Check("API Gateway", item, load.rps, rate, "rps", knob, "config") for item, rate, knob in routes),
    ]


FRONT_DOORS: dict[str, Callable[[PipelineConfig, Load, Flow], list[Check]]] = {
    "rest": rest_api_checks,
    "http": http_api_checks,
}


def front_door_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    return FRONT_DOORS[config.API_KIND](config, load, flow)


def ingest_reservation_for(flow: Flow) -> int:
    """The INGEST_RESERVED_CONCURRENCY that absorbs a slowed SendMessageBatch and the load's requests/s at
    10 per execution environment, +20 %, in hundreds."""
    need = max(flow.slow_ingest_concurrency, flow.rps / LAMBDA_INVOCATIONS_PER_CONCURRENCY)
    return int(_round_up(need * HEADROOM, 100))


def ingest_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """The ingest's concurrency (Little's law), and what its reservation must hold: the load while SQS is slow
    (so a consumer scaling up during an S3 slowdown cannot turn client requests into 5xx), and the requests/s
    an environment serves."""
    reserved = config.INGEST_RESERVED_CONCURRENCY
    concurrency = f"concurrency = {load.rps:,.0f} rps x {flow.ingest_ms:.1f} ms"
    if not reserved:
        source = "AWS default quota (account, shared)"
        need, limit, request = flow.ingest_concurrency, LAMBDA_ACCOUNT_CONCURRENCY, _account_request(config, flow)
        quota = "lambda-concurrency"
        return [Check("Ingest Lambda", concurrency, need, limit, "executions", source, "quota", quota, request)]
    slow_ms = flow.assume.slow_sqs_send_ms
    absorbs = (reserved * 1000 / load.rps - flow.ingest_cpu_ms) / flow.send_calls_per_request if load.rps else math.inf
    slow = f"reserved concurrency holds a slow SendMessageBatch ({slow_ms:.0f} ms)"
    note = f"absorbs SendMessageBatch up to {absorbs:,.0f} ms"
    rps = "reserved concurrency x 10 requests/s per environment"
    rps_limit = reserved * LAMBDA_INVOCATIONS_PER_CONCURRENCY
    knob = "INGEST_RESERVED_CONCURRENCY"
    return [
        Check("Ingest Lambda", concurrency, flow.ingest_concurrency, reserved, "executions", knob, "config"),
        Check("Ingest Lambda", slow, flow.slow_ingest_concurrency, reserved, "executions", knob, "config", note=note),
        Check("Ingest Lambda", rps, load.rps, rps_limit, "rps", f"{knob} x 10", "config"),
    ]


def consumer_worst_case(config: PipelineConfig) -> int:
    """The most concurrent executions the consumer can take: its reservation, or with none the pool's bound
    (MAX_WORKERS, or 10 invokes per provisioned poller x MAX_POLLERS), which an S3 slowdown fills."""
    return config.consumer_reserved_concurrency


def _account_need(config: PipelineConfig, flow: Flow) -> float:
    """The account concurrency this configuration needs: the ingest (its reservation, or its need +20 %),
    the consumer's worst case (reserved or not: unreserved, an S3 slowdown lets it take that much, starving
    the ingest of the rest), and the 100 Lambda keeps unreserved."""
    ingest = config.INGEST_RESERVED_CONCURRENCY or flow.ingest_concurrency * HEADROOM
    return ingest + consumer_worst_case(config) + LAMBDA_UNRESERVED_MINIMUM


def _account_request(config: PipelineConfig, flow: Flow) -> float:
    invocations = flow.rps + flow.batches_per_second
    return _round_up(max(_account_need(config, flow), invocations * HEADROOM / LAMBDA_INVOCATIONS_PER_CONCURRENCY))


def lambda_account_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """The account's concurrency must hold the ingest beside the consumer's worst case, and its invocation
    rate is capped at 10 x the concurrency quota."""
    reserved = config.INGEST_RESERVED_CONCURRENCY
    ingest = f"ingest reserved {reserved:,}" if reserved else "ingest +20 %"
    worst = consumer_worst_case(config)
    consumer = (
        f"consumer reserved {worst:,}"
        if config.RESERVED_CONCURRENCY == "on"
        else f"consumer's worst case {worst:,} (unreserved)"
    )
    request = _account_request(config, flow)
    concurrency = f"concurrency: {ingest} + {consumer} + 100 unreserved"
    invocations = "invocations/s (ingest + consumer batches) <= 10 x concurrency quota"
    need, limit = _account_need(config, flow), LAMBDA_ACCOUNT_CONCURRENCY
    rate = flow.rps + flow.batches_per_second
    rate_limit = LAMBDA_ACCOUNT_CONCURRENCY * LAMBDA_INVOCATIONS_PER_CONCURRENCY
    quota, source = "lambda-concurrency", "AWS default quota"
    return [
        Check("Lambda account", concurrency, need, limit, "executions", source, "quota", quota, request),
        Check(
            "Lambda account", invocations, rate, rate_limit, "invocations/s", f"{source} x 10", "quota", quota, request
        ),
    ]


def tolerated_failure_rate(config: PipelineConfig, flow: Flow) -> float:
    return max(0.0, (config.SQS_IN_FLIGHT_LIMIT - flow.in_flight_ok) / (flow.messages_per_second * flow.hold_failed_s))


def sqs_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """Calls are unlimited on a standard queue; messages in flight are not (~120,000 per standard queue: past it
    ReceiveMessage returns nothing; https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/
    quotas-messages.html). In flight counts messages, so packing divides it by the payloads per message."""
    calls = (
        (f"SendMessageBatch calls/s ({flow.layout.name})", flow.sends_per_second),
        ("ReceiveMessage + DeleteMessageBatch calls/s", flow.receives_per_second + flow.deletes_per_second),
    )
    limit = config.SQS_IN_FLIGHT_LIMIT
    in_flight = (
        f"in flight: batching + processing, + {load.failure_rate:.2%} failed x {flow.hold_failed_s} s retry delay"
    )
    in_flight_source = "SQS_IN_FLIGHT_LIMIT, the queue's in-flight quota"
    tolerates = f"tolerates a failure rate up to {tolerated_failure_rate(config, flow):.2%}"
    quiet = "in-flight alarm stays quiet: in flight with no failures"
    quiet_source = "80 % of SQS_IN_FLIGHT_LIMIT"
    checks = [
        *(Check("SQS", item, n, math.inf, "calls/s", "standard queue: nearly unlimited", "info") for item, n in calls),
        Check("SQS", in_flight, flow.in_flight, limit, "messages", in_flight_source, "config", note=tolerates),
        # The in-flight-near-cap alarm must not page in normal operation (no failures).
        Check("SQS", quiet, flow.in_flight_ok, config.in_flight_alarm_threshold, "messages", quiet_source, "config"),
    ]
    if limit > SQS_IN_FLIGHT_DEFAULT_QUOTA:
        item, quota = "in-flight quota that SQS_IN_FLIGHT_LIMIT assumes", SQS_IN_FLIGHT_DEFAULT_QUOTA
        source = "AWS default quota"
        checks.append(
            Check("SQS", item, limit, quota, "messages", source, "quota", "sqs-in-flight", limit, scales=False)
        )
    return checks


def mapping_capacity(config: PipelineConfig, flow: Flow) -> tuple[float, float]:
    """(messages/s the event source mapping can take, messages/s one poller or worker takes)."""
    if config.PROVISIONED_POLLERS:
        per_poller = min(flow.poller_receive, POLLER_CONCURRENT_INVOKES * flow.batch / flow.duration_s)
        return config.MAX_POLLERS * per_poller, per_poller
    per_worker = flow.batch / flow.duration_s
    return config.MAX_WORKERS * per_worker, per_worker


def pollers_for(flow: Flow) -> int:
    """MAX_POLLERS for this flow: the pollers its messages/s need, +20 %."""
    return math.ceil(flow.messages_per_second / flow.poller_receive * HEADROOM)


def event_source_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """The event source mapping's messages/s, one invocation's event against Lambda's 6 MB, and how long a batch
    takes to form (BATCH_SIZE up to 10,000 and a window up to 300 s: services-sqs-parameters)."""
    capacity, per_unit = mapping_capacity(config, flow)
    stage, rate = "Event source mapping", flow.messages_per_second
    if config.PROVISIONED_POLLERS:
        item, source = f"messages/s: MAX_POLLERS x {per_unit:,.0f}/poller", "MAX_POLLERS (provisioned)"
        note = f"{math.ceil(flow.messages_per_second / per_unit):,} pollers needed"
        throughput = Check(stage, item, rate, capacity, "messages/s", source, "config", note=note)
    else:
        item = f"messages/s: MAX_WORKERS x {flow.batch:,.0f} / {flow.duration_s * 1000:.0f} ms"
        throughput = Check(stage, item, rate, capacity, "messages/s", "MAX_WORKERS (maximum concurrency)", "config")
    full_event = config.BATCH_SIZE * flow.record_bytes
    too_big = full_event > LAMBDA_SYNC_PAYLOAD_BYTES
    event = f"one invocation's event: BATCH_SIZE x {flow.record_bytes:,.0f} B a record"
    closes = f"batches close at {flow.batch_cap:,} records, below BATCH_SIZE" if too_big else ""
    forms = f"a batch of {flow.batch:,.0f} messages ({flow.payloads_per_batch:,.0f} payloads) forms in"
    window = f"MAX_BATCHING_WINDOW_SECONDS (<= {ESM_MAX_WINDOW_SECONDS}; BATCH_SIZE <= {ESM_MAX_BATCH_SIZE:,})"
    waits = f"a payload waits up to {flow.latency_s:.1f} s for its object"
    limit, limit_source = LAMBDA_SYNC_PAYLOAD_BYTES, "Lambda's 6 MB invoke payload"
    window_s = config.MAX_BATCHING_WINDOW_SECONDS or math.inf
    return [
        throughput,
        Check(stage, event, full_event, limit, "B", limit_source, "config", warn=too_big, note=closes, scales=False),
        Check(stage, forms, flow.fill_s, window_s, "s", window, "info", note=waits),
    ]


def consumer_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """The consumer's concurrency against the pool's bound: its reservation, or the mapping's."""
    bound_by = (
        "reserved concurrency (derived)" if config.RESERVED_CONCURRENCY == "on" else "the mapping's bound (unreserved)"
    )
    item = f"concurrency = {flow.batches_per_second:,.0f} batches/s x {flow.duration_s * 1000:.0f} ms"
    limit = config.consumer_reserved_concurrency
    return [Check("Consumer Lambda", item, flow.consumer_concurrency, limit, "executions", bound_by, "config")]


def payload_mode_max_rpm(payloads_per_request: int) -> float:
    """The highest request rate payload mode carries: one PUT per payload into a fresh prefix."""
    return S3_PUT_PER_PREFIX / payloads_per_request * 60


def s3_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """PUT/s into one fresh hour= prefix, in each object mode; the configured one is judged."""
    checks = []
    batch_puts = flow.puts_per_second if config.OBJECT_MODE == "batch" else flow.batches_per_second
    for mode, puts in (("payload", load.payloads_per_second), ("batch", batch_puts)):
        note = ""
        if mode == "payload" and puts > S3_PUT_PER_PREFIX:
            note = (
                f"payload mode is for loads below {S3_PUT_PER_PREFIX:,} payloads/s "
                f"({payload_mode_max_rpm(load.payloads_per_request):,.0f} requests/min at "
                f"{load.payloads_per_request} payloads each): use OBJECT_MODE=batch"
            )
        item = f"PUT/s into a fresh hour= prefix, OBJECT_MODE={mode}"
        kind = "hard" if mode == config.OBJECT_MODE else "info"
        checks.append(Check("S3", item, puts, S3_PUT_PER_PREFIX, "PUT/s", "AWS per-prefix rate", kind, note=note))
    return checks


def backlog_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """MAX_QUEUE (in messages: SQS's ApproximateNumberOfMessages) bounds the backlog; it must drain, at the
    consumer's spare capacity, well within the retention."""
    retention_s = config.QUEUE_RETENTION_DAYS * 86400
    capacity, _ = mapping_capacity(config, flow)
    capacity = min(capacity, config.consumer_reserved_concurrency * flow.batch / flow.duration_s)
    spare = capacity - flow.messages_per_second
    if config.MAX_QUEUE:
        overshoot = flow.messages_per_second * config.BACKLOG_CHECK_SECONDS  # one check interval late
        drain = (config.MAX_QUEUE + overshoot) / spare if spare > 0 else math.inf
        item = f"drain MAX_QUEUE={config.MAX_QUEUE:,} messages at {max(spare, 0):,.0f} spare msg/s"
        return [Check("Backlog", item, drain, retention_s, "s", "QUEUE_RETENTION_DAYS", "config")]
    need = math.inf if spare <= 0 else 0.0
    note = "acknowledged payloads expire silently if a backlog outlives the retention; set MAX_QUEUE"
    item = "MAX_QUEUE off: unbounded backlog"
    return [Check("Backlog", item, need, retention_s, "s", "QUEUE_RETENTION_DAYS", "config", warn=spare > 0, note=note)]


# --- one compaction run (issue 26, item 8) ---------------------------------------------------------------------
# Athena's DML query timeout: 30 minutes by default, 240 at most after an increase ("Service Quotas" for Athena,
# "DML query timeout"); a CTAS is a DML query. Every run of an hour is one CTAS.
ATHENA_DML_TIMEOUT_MINUTES = 30
ATHENA_DML_TIMEOUT_MAX_MINUTES = 240


def compaction_run_checks(config: PipelineConfig, load: Load, flow: Flow) -> list[Check]:
    """What one hourly run's CTAS does at this load: the raw hour it scans, the rows it ranks by id, and the ids
    it joins from other hours (none: it reads its own hour only, infra/lake_table.py compaction_select; before
    issue 26 item 8, COMPACTION_LOOKBACK_HOURS compacted hours of ids). Its run time is an estimate at an assumed
    rate (Assumptions.compaction_rows_per_second: no AWS source gives one), so it warns rather than judges."""
    if config.COMPACTION != "on":
        return []
    rows = flow.payloads_per_second * 3600
    scanned = rows * cost.stored_bytes_per_payload(config, flow)
    minutes = rows / flow.assume.compaction_rows_per_second / 60
    timeout = ATHENA_DML_TIMEOUT_MINUTES
    slow = minutes > timeout / 2
    joins = "ids joined from other hours (own hour only)"
    joined = f"the lookback join it replaced: {rows * 2 * config.COMPACTION_LOOKBACK_HOURS:,.0f} ids"
    run_time = f"run time at {flow.assume.compaction_rows_per_second:,.0f} rows/s (estimate)"
    source = f"Athena DML timeout ({timeout} min; {ATHENA_DML_TIMEOUT_MAX_MINUTES} on request)"
    watch = (
        "estimated at make compact's DuckDB rate on 2 cores (no AWS source gives Athena's); "
        "watch the compaction's run time in the Step Functions console"
    )
    return [
        Check("Compaction run", "raw hour scanned by one run (GB)", scanned / prices.GB, math.inf, "GB", "-", "info"),
        Check("Compaction run", "rows ranked by id in one run", rows, math.inf, "rows", "-", "info"),
        Check("Compaction run", joins, 0.0, math.inf, "ids", "-", "info", note=joined),
        # The run time is an estimate at an assumed rate: it warns, and is never named the binding stage.
        Check(
            "Compaction run", run_time, minutes, timeout, "min", source, "quota", warn=slow, scales=False, note=watch
        ),
    ]


STAGES: tuple[Callable[[PipelineConfig, Load, Flow], list[Check]], ...] = (
    http_contract_checks,
    front_door_checks,
    ingest_checks,
    lambda_account_checks,
    sqs_checks,
    event_source_checks,
    consumer_checks,
    s3_checks,
    backlog_checks,
    compaction_run_checks,
)


def assess(config: PipelineConfig, load: Load, assume: Assumptions | None = None) -> Assessment:
    """Every stage's need and limit for this load under this configuration, and the monthly cost."""
    assessment = _checks_only(config, load, assume)
    assessment.lines = cost.monthly_lines(config, load, assessment.flow.assume, assessment.flow)
    return assessment


def max_carried_rpm(
    config: PipelineConfig, payloads: int, payload_bytes: int, ceiling: float = 1e9, assume: Assumptions | None = None
) -> float:
    """The highest requests/min this configuration carries (exit 0, quota increases allowed), to 1 %."""
    low, high = 0.0, ceiling
    while high - low > max(1.0, low * 0.01):
        middle = (low + high) / 2
        carried = _checks_only(config, load_of(middle, payloads, payload_bytes), assume).exit_code == 0
        low, high = (middle, high) if carried else (low, middle)
    return low


def _checks_only(config: PipelineConfig, load: Load, assume: Assumptions | None = None) -> Assessment:
    flow = flow_of(config, load, assume or DEFAULT)
    return Assessment(config, load, [c for stage in STAGES for c in stage(config, load, flow)], flow)


# --- the lake: what compaction costs and what a query scans ------------------------------------------------------
@dataclass(frozen=True)
class LakeFigures:
    compaction_usd_per_month: float
    compacted_objects_per_hour: int
    athena_tb_per_run: float
    raw_hour_query_usd: float  # a one-hour query over the raw NDJSON.gz
    dedup_view_query_usd: float  # the old dedup view: every raw object kept, whatever the filter
    parquet_column_query_usd: float  # a one-hour query reading one column of the compacted table


def athena_usd(scanned_bytes: float) -> float:
    return max(scanned_bytes, prices.ATHENA_MINIMUM_BYTES) / (prices.GB * prices.TB_GB) * prices.ATHENA_PER_TB


def lake_figures(config: PipelineConfig, flow: Flow, column: str = "token") -> LakeFigures | None:
    """COMPACTION=on: its monthly cost, the compacted objects per hour partition, and the scan cost of a
    typical one-hour query ("payloads per token in one hour", bench Q1) before and after."""
    if config.COMPACTION != "on":
        return None
    compaction = [line for line in cost.compaction_lines(config, flow)]
    hour = flow.payloads_per_hour
    raw_hour = hour * cost.stored_bytes_per_payload(config, flow)
    kept_hours = (config.RAW_RETENTION_DAYS * 24) if config.RAW_RETENTION_DAYS else 12 * 30 * 24
    return LakeFigures(
        compaction_usd_per_month=cost.total(compaction),
        compacted_objects_per_hour=cost.compacted_objects_per_hour(flow),
        athena_tb_per_run=cost.athena_bytes_per_compaction(config, flow) / (prices.GB * prices.TB_GB),
        raw_hour_query_usd=athena_usd(raw_hour),
        dedup_view_query_usd=athena_usd(raw_hour * kept_hours),
        parquet_column_query_usd=athena_usd(hour * flow.assume.measured.compacted_column_bytes[column]),
    )


# --- rendering ---------------------------------------------------------------------------------------
def _num(value: float) -> str:
    if math.isinf(value):
        return "∞"
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.2f}"


def _headroom(check: Check) -> str:
    if check.kind == "info" and math.isinf(check.limit):
        return ""
    if math.isinf(check.ratio):
        return "∞"
    headroom = check.ratio - 1
    text = f"{headroom:+.0%}"
    # 501 needed against 500 is -0.2 %, not "-0%": below 1 %, one decimal keeps the sign honest.
    return f"{headroom:+.1%}" if text in ("+0%", "-0%") and headroom else text


def _limit(check: Check) -> str:
    return f"{_num(check.limit)} ({check.source})"


def _money(usd: float) -> str:
    return f"${usd:,.0f}"


def _per_million(assessment: Assessment) -> str:
    return f"${assessment.usd_per_million_payloads:,.3f}"


def verdict_lines(assessment: Assessment) -> list[str]:
    binding = assessment.binding
    # A quota row's request is in the quota's own unit (the invocation rate follows the concurrency quota).
    limit = (
        f"{_num(binding.limit)} ({binding.source}) until {QUOTAS[binding.quota].split(' (')[0]} is raised "
        f"to {_num(binding.request)}"
        if binding.status == QUOTA
        else f"{_num(binding.limit)} ({binding.source})"
    )
    out = [f"binding stage: {binding.stage}, {binding.item}: needs {_num(binding.need)} {binding.unit}, limit {limit}"]
    if assessment.failures:
        out.append("NOT carried by this configuration (exit 1):")
        out += [
            f"  ✗ {c.stage}: {c.item}: {_num(c.need)} > {_num(c.limit)} {c.unit} ({c.source})"
            + (f"; {c.note}" if c.note else "")
            for c in assessment.failures
        ]
    else:
        out.append("carried (exit 0)" + (" after the quota increases below" if assessment.quota_increases else ""))
    if assessment.quota_increases:
        out.append("quota increases to request (AWS grants them on request; allow days):")
        out += [
            f"  - {QUOTAS[key]}: at least {_num(value)} (via {QUOTA_VIA[key]})"
            for key, value in assessment.quota_increases.items()
        ]
    out += [f"  ! {c.stage}: {c.note}" for c in assessment.checks if c.status == WARN]
    return out


def _words(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken between words (a word longer than the column
    stays whole); at least one line."""
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def render_text(assessment: Assessment) -> str:
    config, load, flow = assessment.config, assessment.load, assessment.flow
    out = [
        f"PROFILE={config.PROFILE} API_KIND={config.API_KIND} OBJECT_MODE={config.OBJECT_MODE}: "
        f"{load.requests_per_minute:,.0f} requests/min = {load.rps:,.0f} rps x {load.payloads_per_request} payloads "
        f"of {load.payload_bytes:,} B = {load.payloads_per_second:,.0f} payloads/s in "
        f"{flow.messages_per_second:,.0f} messages/s ({flow.layout.name}, {flow.layout.message_bytes:,.0f} B each), "
        f"failure rate {load.failure_rate:.2%}",
        "",
        f"{'':8}{'stage':<21}{'check':<62}{'needs':>14}  {'limit':<48}{'headroom':>9}",
    ]
    for c in assessment.checks:
        items, limits = _words(c.item, 61), _words(_limit(c), 47)
        out.append(
            f"{c.status:<8}{c.stage:<21}{items[0]:<62}{_num(c.need):>14}  {limits[0]:<48}"
            f"{_headroom(c):>9}" + (f"  {c.note}" if c.note and c.status != OK else "")
        )
        # A label longer than its column goes on below, whole words only (a cut one read "+ 100 unrese").
        out += [
            f"{'':29}{item:<62}{'':14}  {limit}".rstrip()
            for item, limit in itertools.zip_longest(items[1:], limits[1:], fillvalue="")
        ]
    out += ["", *verdict_lines(assessment), ""]
    out.append(
        f"monthly cost ({prices.REGION} list prices checked {prices.PRICES_CHECKED}, 30-day month, "
        f"API_KIND={config.API_KIND}, OBJECT_MODE={config.OBJECT_MODE}):"
    )
    for line in assessment.lines:
        items = _words(line.item, 70)
        out.append(f"  {line.service:<16} {items[0]:<70} {_money(line.usd):>12}")
        out += [f"  {'':<16} {item}" for item in items[1:]]
    out.append(f"  {'total':<87} {_money(assessment.total_usd):>12}")
    out.append(
        f"  {'per million payloads':<87} {_per_million(assessment):>12}"
        f"  ({load.payloads_per_month:,.0f} payloads a month)"
    )
    lake = lake_figures(config, flow)
    if lake:
        out.append(
            f"lake: compaction ${lake.compaction_usd_per_month:,.0f}/month ({lake.athena_tb_per_run:.3f} TB scanned an "
            f"hour), {lake.compacted_objects_per_hour:,} compacted objects per hour partition; a one-hour query scans "
            f"${lake.raw_hour_query_usd:,.2f} of raw NDJSON.gz, ${lake.dedup_view_query_usd:,.0f} through the old "
            f"dedup view, ${lake.parquet_column_query_usd:,.4f} of one Parquet column"
        )
    return "\n".join(out)


def _finite(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else value


def _check_json(check: Check) -> dict[str, Any]:
    return {
        "stage": check.stage,
        "item": check.item,
        "status": check.status,
        "kind": check.kind,
        "need": _finite(check.need),
        "limit": _finite(check.limit),
        "unit": check.unit,
        "source": check.source,
        "quota": check.quota or None,
        "note": check.note,
    }


def render_json(assessment: Assessment) -> dict[str, Any]:
    """The --format json document (its fields: docs/CAPACITY.md, "For scripts")."""
    config, load, flow = assessment.config, assessment.load, assessment.flow
    lake = lake_figures(config, flow)
    return {
        "schema": 1,
        "profile": config.PROFILE,
        "api_kind": config.API_KIND,
        "object_mode": config.OBJECT_MODE,
        "load": {
            "requests_per_minute": load.requests_per_minute,
            "payloads_per_request": load.payloads_per_request,
            "payload_bytes": load.payload_bytes,
            "failure_rate": load.failure_rate,
        },
        "carried": assessment.exit_code == 0,
        "exit_code": assessment.exit_code,
        "binding": assessment.binding.stage,
        "binding_check": _check_json(assessment.binding),
        "checks": [_check_json(check) for check in assessment.checks],
        "quota_increases": [
            {"quota": key, "name": QUOTAS[key], "figure": value, "via": QUOTA_VIA[key]}
            for key, value in assessment.quota_increases.items()
        ],
        "cost": {
            "lines": [
                {
                    "service": line.service,
                    "item": line.item,
                    "quantity": line.quantity,
                    "unit": line.unit,
                    "usd_per_month": line.usd,
                }
                for line in assessment.lines
            ],
            "total_usd_per_month": assessment.total_usd,
        },
        "payloads_per_month": round(load.payloads_per_month),  # a count: 432e9 at the seed, not 432e9 + float noise
        "usd_per_million_payloads": assessment.usd_per_million_payloads,
        "flow": {
            "messages_per_request": flow.layout.messages_per_request,
            "message_bytes": flow.layout.message_bytes,
            "pollers": flow.pollers,
            "batch_messages": flow.batch,
            "batch_payloads": flow.payloads_per_batch,
            "batch_fill_s": flow.fill_s,
            "consumer_ms": flow.duration_s * 1000,
            "in_flight": flow.in_flight,
            "latency_s": flow.latency_s,
            "payloads_per_object": flow.payloads_per_object,
        },
        "lake": None
        if lake is None
        else {
            "compaction_usd_per_month": lake.compaction_usd_per_month,
            "compacted_objects_per_hour": lake.compacted_objects_per_hour,
            "athena_tb_per_run": lake.athena_tb_per_run,
            "query_usd": {
                "raw_hour": lake.raw_hour_query_usd,
                "dedup_view": lake.dedup_view_query_usd,
                "parquet_column": lake.parquet_column_query_usd,
            },
        },
    }


def resolve_config(environ: Mapping[str, str] | None = None, **context: Any) -> PipelineConfig:
    """The config the stack would deploy: environment, cdk.json context (plus ``context``), PROFILE, default."""
    return PipelineConfig.resolve({**cdk_json_context(), **context}, environ)


SEED = (1_000_000, 10, 1024)  # the Go original's load: rpm, payloads per request, bytes per payload
