"""Does this configuration carry this load? Every stage's need against its limit, the binding stage, the
quota increases to request, and the monthly cost.

    python -m tools.models.capacity --rpm 1000000 --payloads 10 --payload-bytes 1024 [--failure-rate 0.001]
    PROFILE=scale python -m tools.models.capacity --rpm 1000000 --payloads 10 --payload-bytes 1024
    python -m tools.models.capacity --markdown > docs/CAPACITY.md

The config is resolved exactly as the stack resolves it (environment, cdk.json context, PROFILE preset,
default). Exit 0: carried (possibly after the listed quota increases, which AWS grants on request);
1: this configuration cannot carry it; 2: bad arguments or knobs.
Durations come from tools.models.cost's model (`make bench` CPU figures plus assumed AWS latencies).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from infra.config import (
    LAMBDA_SYNC_PAYLOAD_BYTES,  # one ESM invocation's event, batch included
    SQS_IN_FLIGHT_DEFAULT_QUOTA,
    ConfigError,
    PipelineConfig,
    cdk_json_context,
)
from pipeline.contract import SQS_MAX_BATCH_ENTRIES
from tools.models import cost, prices

# --- AWS figures, each from the page cited --------------------------------------------------------
# API Gateway quotas (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html):
# "Throttle quota per account, per Region": 10,000 rps, burst (token bucket) 5,000; adjustable.
APIGW_ACCOUNT_RPS = 10_000
APIGW_ACCOUNT_BURST = 5_000
# Lambda quotas (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): 1,000 concurrent
# executions per Region (adjustable); synchronous invocation requests per Region are capped at
# 10 x the concurrency quota; a reservation must leave at least 100 unreserved
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
LAMBDA_ACCOUNT_CONCURRENCY = 1_000
LAMBDA_INVOCATIONS_PER_CONCURRENCY = 10
LAMBDA_UNRESERVED_MINIMUM = 100
# SQS quotas (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-queues.html):
# ~120,000 in-flight messages per standard queue (past it ReceiveMessage returns nothing; "To request a
# quota increase, submit a support request": SQS_IN_FLIGHT_LIMIT says what was granted); standard
# queues support a nearly unlimited number of API calls per second; a receive returns <= 10 messages
# (contract.SQS_MAX_BATCH_ENTRIES).
SQS_RECEIVE_MAX = SQS_MAX_BATCH_ENTRIES
# Provisioned SQS event pollers (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html,
# ProvisionedPollerConfig: "Each poller can handle up to 1 MB/sec of throughput and 10 concurrent
# invokes"; https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html#sqs-provisioned-mode: up to
# 10 SQS polling API calls per second per poller, each returning <= 10 messages: ~100 messages/s).
POLLER_POLLS_PER_SECOND = 10
POLLER_BYTES_PER_SECOND = 1_000_000
POLLER_CONCURRENT_INVOKES = 10
# S3 (https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html): 3,500
# PUT/COPY/POST/DELETE per second per partitioned prefix; a new prefix starts unsplit and S3 splits it
# gradually, answering 503 SlowDown meanwhile. Every hour= starts a new prefix (both object modes).
S3_PUT_PER_PREFIX = 3_500
HEADROOM = 1.2  # what a quota request adds above the need
COLLECTION_JSON = '{"version":"1.4.2","token":"device-token-123","data":[]}'  # as cost.sqs_message_bytes builds it

QUOTAS = {
    "apigw-rate": "API Gateway: Throttle rate (Service Quotas console, Amazon API Gateway; Region)",
    "apigw-burst": "API Gateway: Throttle burst rate (Service Quotas console, Amazon API Gateway; Region)",
    "lambda-concurrency": "Lambda: Concurrent executions (Service Quotas console, AWS Lambda; Region)",
    "sqs-in-flight": "SQS: in-flight messages per standard queue (AWS Support case, Amazon SQS; then set "
    "SQS_IN_FLIGHT_LIMIT)",
}

OK, QUOTA, FAIL, WARN, INFO = "✓", "✗ quota", "✗", "!", "·"


@dataclass(frozen=True)
class Load:
    requests_per_minute: float
    payloads_per_request: int
    payload_bytes: int
    failure_rate: float = 0.0
    message_bytes: int = 0  # one SQS message: the payload in its envelope (cost.sqs_message_bytes)

    @property
    def rps(self) -> float:
        return self.requests_per_minute / 60

    @property
    def messages_per_second(self) -> float:
        return self.rps * self.payloads_per_request


def load_of(rpm: float, payloads: int, payload_bytes: int, failure_rate: float = 0.0) -> Load:
    return Load(rpm, payloads, payload_bytes, failure_rate, cost.sqs_message_bytes(payload_bytes))


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
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def quota_increases(self) -> dict[str, float]:
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


def _round_up(value: float, step: int = 1000) -> float:
    return math.ceil(value / step) * step


def consumer_model(config: PipelineConfig, load: Load, assume: cost.Assumptions) -> dict[str, float]:
    """How the event source mapping batches this load, and what one batch costs in time.

    Provisioned mode: a poller takes at most min(10 polls/s x 10 messages, 1 MB/s / message) messages/s;
    the mapping runs about as many pollers as that needs (within MIN/MAX_POLLERS), and a poller's batch
    closes at BATCH_SIZE or after the batching window. Standard mode: the poller count is not documented,
    so batches are taken as full. A batch never exceeds Lambda's 6 MB synchronous event.
    """
    rate = load.messages_per_second
    window = config.MAX_BATCHING_WINDOW_SECONDS
    cap = min(config.BATCH_SIZE, LAMBDA_SYNC_PAYLOAD_BYTES // load.message_bytes)
    poller_receive = min(POLLER_POLLS_PER_SECOND * SQS_RECEIVE_MAX, POLLER_BYTES_PER_SECOND / load.message_bytes)
    if config.PROVISIONED_POLLERS:
        active = min(max(math.ceil(rate / poller_receive), config.MIN_POLLERS), config.MAX_POLLERS)
        arrival = rate / active
        batch = min(cap, arrival * window) if window else min(cap, SQS_RECEIVE_MAX)
        fill_s = batch / arrival if arrival else 0.0
    else:
        active = 0
        batch = cap if window else min(cap, SQS_RECEIVE_MAX)
        fill_s = float(window)
    batch = max(1.0, batch)
    mode_ms = assume.consumer_ms_payload_mode if config.OBJECT_MODE == "payload" else assume.consumer_ms_batch_mode
    # tools.models.cost's duration is for a full BATCH_SIZE; a smaller batch (closed by the window) is re-modelled
    duration_ms = (
        mode_ms
        if round(batch) >= config.BATCH_SIZE
        else cost.consumer_batch_ms(
            config.OBJECT_MODE, round(batch), config.UPLOAD_CONCURRENCY, config.CONSUMER_MEMORY_MB
        )
    )
    return {
        "batch": batch,
        "fill_s": fill_s,
        "duration_s": duration_ms / 1000,
        "active_pollers": active,
        "poller_receive": poller_receive,
        "batches_per_s": rate / batch,
    }


def assess(config: PipelineConfig, load: Load, assume: cost.Assumptions | None = None) -> Assessment:
    """Every stage's need and limit for this load under this configuration."""
    assume = assume or cost.assumptions_for(config)
    rate, rps = load.messages_per_second, load.rps
    model = consumer_model(config, load, assume)
    batch, duration_s, batches_s = model["batch"], model["duration_s"], model["batches_per_s"]
    checks: list[Check] = []

    # HTTP contract: a request the ingest rejects is never carried. The body: the collection around the payloads.
    body = len(COLLECTION_JSON) + load.payloads_per_request * (load.payload_bytes + 1) - 1
    checks += [
        Check(
            "HTTP contract",
            "payloads per request",
            load.payloads_per_request,
            config.MAX_PAYLOADS,
            "payloads",
            "MAX_PAYLOADS",
            "config",
            scales=False,
        ),
        Check(
            "HTTP contract", "request body", body, config.MAX_BODY_BYTES, "B", "MAX_BODY_BYTES", "config", scales=False
        ),
        Check(
            "HTTP contract",
            "one payload",
            load.payload_bytes,
            config.MAX_PAYLOAD_BYTES,
            "B",
            "MAX_PAYLOAD_BYTES",
            "config",
            scales=False,
        ),
    ]

    # API Gateway: the account throttle, the stage throttle, and the one API key's usage plan.
    key_burst = config.THROTTLE_BURST_LIMIT if config.REQUIRE_API_KEY else 0
    stage_rate, stage_burst = _stage_throttle(config)
    checks.append(
        Check(
            "API Gateway",
            "account throttle, steady",
            rps,
            APIGW_ACCOUNT_RPS,
            "rps",
            "AWS default quota",
            "quota",
            "apigw-rate",
            _round_up(rps * HEADROOM),
        )
    )
    burst_need = max(key_burst, stage_burst)
    checks.append(
        Check(
            "API Gateway",
            "account burst (>= the configured bursts)",
            burst_need,
            APIGW_ACCOUNT_BURST,
            "requests",
            "AWS default quota",
            "quota",
            "apigw-burst",
            _round_up(burst_need * HEADROOM),
            scales=False,
        )
    )
    checks.append(Check("API Gateway", "stage throttle", rps, stage_rate, "rps", _stage_source(config), "config"))
    if config.REQUIRE_API_KEY:
        checks.append(
            Check(
                "API Gateway",
                "per-key throttle (the stack's one API key)",
                rps,
                config.THROTTLE_RATE_LIMIT,
                "rps",
                "THROTTLE_RATE_LIMIT",
                "config",
                note="usage-plan throttling is best effort",
            )
        )

    # Lambda: the ingest's concurrency (Little's law), then the account's concurrency and invocation rate.
    ingest_concurrency = rps * assume.ingest_ms / 1000
    consumer_concurrency = batches_s * duration_s
    pool_bound = config.consumer_reserved_concurrency  # MAX_WORKERS, or 10 x MAX_POLLERS
    reserved = _consumer_reservation(config)
    consumer_share = reserved if reserved else consumer_concurrency * HEADROOM
    account_need = ingest_concurrency + consumer_share + LAMBDA_UNRESERVED_MINIMUM
    invocations = rps + batches_s
    concurrency_request = _round_up(
        max(
            ingest_concurrency * HEADROOM + consumer_share + LAMBDA_UNRESERVED_MINIMUM,
            invocations * HEADROOM / LAMBDA_INVOCATIONS_PER_CONCURRENCY,
        )
    )
    consumer_item = f"consumer reserved {reserved:,}" if reserved else "consumer (unreserved) +20 %"
    checks += [
        Check(
            "Ingest Lambda",
            f"concurrency = {rps:,.0f} rps x {assume.ingest_ms:.1f} ms",
            ingest_concurrency,
            LAMBDA_ACCOUNT_CONCURRENCY,
            "executions",
            "AWS default quota (account, shared)",
            "quota",
            "lambda-concurrency",
            concurrency_request,
        ),
        Check(
            "Lambda account",
            f"concurrency: ingest + {consumer_item} + 100 unreserved",
            account_need,
            LAMBDA_ACCOUNT_CONCURRENCY,
            "executions",
            "AWS default quota",
            "quota",
            "lambda-concurrency",
            concurrency_request,
        ),
        Check(
            "Lambda account",
            "invocations/s (ingest + consumer batches) <= 10 x concurrency quota",
            invocations,
            LAMBDA_ACCOUNT_CONCURRENCY * LAMBDA_INVOCATIONS_PER_CONCURRENCY,
            "invocations/s",
            "AWS default quota x 10",
            "quota",
            "lambda-concurrency",
            concurrency_request,
        ),
    ]

    # SQS: calls are unlimited on a standard queue; messages in flight are not.
    sends = rps * math.ceil(load.payloads_per_request / SQS_RECEIVE_MAX)
    in_flight_ok = rate * (model["fill_s"] / 2 + duration_s)
    in_flight_failed = rate * load.failure_rate * _failed_hold_seconds(config)
    checks += [
        Check(
            "SQS", "SendMessageBatch calls/s", sends, math.inf, "calls/s", "standard queue: nearly unlimited", "info"
        ),
        Check(
            "SQS",
            "ReceiveMessage + DeleteMessageBatch calls/s",
            2 * rate / SQS_RECEIVE_MAX,
            math.inf,
            "calls/s",
            "standard queue: nearly unlimited",
            "info",
        ),
        Check(
            "SQS",
            f"in flight: batching + processing, + {load.failure_rate:.2%} failed x "
            f"{_failed_hold_seconds(config)} s retry delay",
            in_flight_ok + in_flight_failed,
            config.SQS_IN_FLIGHT_LIMIT,
            "messages",
            "SQS_IN_FLIGHT_LIMIT, the queue's in-flight quota",
            "config",
            note=f"tolerates a failure rate up to {_tolerated_failure_rate(config, rate, in_flight_ok):.2%}; "
            "above it, ask AWS Support for a higher in-flight quota and raise SQS_IN_FLIGHT_LIMIT",
        ),
        # The in-flight-near-cap alarm must not page in normal operation (no failures).
        Check(
            "SQS",
            "in-flight alarm stays quiet: in flight with no failures",
            in_flight_ok,
            config.in_flight_alarm_threshold,
            "messages",
            "80 % of SQS_IN_FLIGHT_LIMIT",
            "config",
        ),
    ]
    if config.SQS_IN_FLIGHT_LIMIT > SQS_IN_FLIGHT_DEFAULT_QUOTA:
        checks.append(
            Check(
                "SQS",
                "in-flight quota that SQS_IN_FLIGHT_LIMIT assumes",
                config.SQS_IN_FLIGHT_LIMIT,
                SQS_IN_FLIGHT_DEFAULT_QUOTA,
                "messages",
                "AWS default quota",
                "quota",
                "sqs-in-flight",
                config.SQS_IN_FLIGHT_LIMIT,
                scales=False,
            )
        )

    # Event source mapping and consumer: messages/s the pool can take, and its concurrency.
    if config.PROVISIONED_POLLERS:
        per_poller = min(model["poller_receive"], POLLER_CONCURRENT_INVOKES * batch / duration_s)
        esm_limit = config.MAX_POLLERS * per_poller
        checks.append(
            Check(
                "Event source mapping",
                f"messages/s: MAX_POLLERS x {per_poller:,.0f}/poller",
                rate,
                esm_limit,
                "messages/s",
                "MAX_POLLERS (provisioned)",
                "config",
                note=f"{math.ceil(rate / per_poller):,} pollers needed",
            )
        )
    else:
        esm_limit = config.MAX_WORKERS * batch / duration_s
        item = f"messages/s: MAX_WORKERS x {batch:,.0f} / {duration_s * 1000:.0f} ms"
        checks.append(
            Check(
                "Event source mapping",
                item,
                rate,
                esm_limit,
                "messages/s",
                "MAX_WORKERS (maximum concurrency)",
                "config",
            )
        )
    bound_by = "reserved concurrency (derived)" if reserved else "the mapping's bound (unreserved)"
    checks.append(
        Check(
            "Consumer Lambda",
            f"concurrency = {batches_s:,.0f} batches/s x {duration_s * 1000:.0f} ms",
            consumer_concurrency,
            pool_bound,
            "executions",
            bound_by,
            "config",
        )
    )
    capacity = min(esm_limit, pool_bound * batch / duration_s)

    # S3: PUT/s into one fresh hour= prefix, in each object mode; the configured one is judged.
    for mode, puts in (("payload", rate), ("batch", batches_s)):
        judged = mode == config.OBJECT_MODE
        note = ""
        if mode == "payload" and puts > S3_PUT_PER_PREFIX:
            note = (
                f"payload mode is for loads below {S3_PUT_PER_PREFIX:,} payloads/s "
                f"({payload_mode_max_rpm(load.payloads_per_request):,.0f} requests/min at "
                f"{load.payloads_per_request} payloads each): use OBJECT_MODE=batch"
            )
        checks.append(
            Check(
                "S3",
                f"PUT/s into a fresh hour= prefix, OBJECT_MODE={mode}",
                puts,
                S3_PUT_PER_PREFIX,
                "PUT/s",
                "AWS per-prefix rate",
                "hard" if judged else "info",
                note=note,
            )
        )

    # Backlog: MAX_QUEUE bounds it; it must drain (at the spare capacity) well within the retention.
    retention_s = config.QUEUE_RETENTION_DAYS * 86400
    spare = capacity - rate
    if config.MAX_QUEUE:
        overshoot = rps * load.payloads_per_request * config.BACKLOG_CHECK_SECONDS  # one check interval late
        drain = (config.MAX_QUEUE + overshoot) / spare if spare > 0 else math.inf
        checks.append(
            Check(
                "Backlog",
                f"drain MAX_QUEUE={config.MAX_QUEUE:,} at {max(spare, 0):,.0f} spare msg/s",
                drain,
                retention_s,
                "s",
                "QUEUE_RETENTION_DAYS",
                "config",
            )
        )
    else:
        drain = math.inf if spare <= 0 else 0.0
        checks.append(
            Check(
                "Backlog",
                "MAX_QUEUE off: unbounded backlog",
                drain,
                retention_s,
                "s",
                "QUEUE_RETENTION_DAYS",
                "config",
                warn=spare > 0,
                note="acknowledged payloads expire silently if a backlog outlives the retention; set MAX_QUEUE",
            )
        )
    figures = {
        **model,
        "capacity": capacity,
        "ingest_concurrency": ingest_concurrency,
        "in_flight": in_flight_ok + in_flight_failed,
    }
    return Assessment(config, load, checks, figures)


def _consumer_reservation(config: PipelineConfig) -> int:
    """The consumer's reserved concurrency as the stack sets it (0 with RESERVED_CONCURRENCY=off)."""
    return 0 if config.RESERVED_CONCURRENCY == "off" else config.consumer_reserved_concurrency


def _stage_throttle(config: PipelineConfig) -> tuple[float, float]:
    """The stage-wide throttle exactly as infra/api_construct.py sets it: STAGE_THROTTLE_* above the keys'
    usage plans, or THROTTLE_* when there are no API keys (and so no plan)."""
    if config.REQUIRE_API_KEY:
        return config.STAGE_THROTTLE_RATE_LIMIT, config.STAGE_THROTTLE_BURST_LIMIT
    return config.THROTTLE_RATE_LIMIT, config.THROTTLE_BURST_LIMIT


def _stage_source(config: PipelineConfig) -> str:
    return "STAGE_THROTTLE_RATE_LIMIT" if config.REQUIRE_API_KEY else "THROTTLE_RATE_LIMIT"


def _failed_hold_seconds(config: PipelineConfig) -> int:
    """How long a record that failed once stays in flight: its first retry delay, at most RETRY_BASE_SECONDS
    (lambdas/pipeline/redelivery.py sets it with ChangeMessageVisibilityBatch), not the visibility timeout.
    (Should that call fail, the record waits the whole visibility timeout: the alarm on messages in
    flight covers that case.)"""
    return min(config.RETRY_BASE_SECONDS, config.visibility_timeout_seconds)


def _tolerated_failure_rate(config: PipelineConfig, rate: float, in_flight_ok: float) -> float:
    return max(0.0, (config.SQS_IN_FLIGHT_LIMIT - in_flight_ok) / (rate * _failed_hold_seconds(config)))


def max_carried_rpm(config: PipelineConfig, payloads: int, payload_bytes: int, ceiling: float = 1e9) -> float:
    """The highest requests/min this configuration carries (exit 0, quota increases allowed), to 1 %."""
    low, high = 0.0, ceiling
    while high - low > max(1.0, low * 0.01):
        middle = (low + high) / 2
        low, high = (
            (middle, high) if assess(config, load_of(middle, payloads, payload_bytes)).exit_code == 0 else (low, middle)
        )
    return low


def payload_mode_max_rpm(payloads_per_request: int) -> float:
    """The highest request rate payload mode carries: one PUT per payload into a fresh prefix."""
    return S3_PUT_PER_PREFIX / payloads_per_request * 60


def monthly_cost(assessment: Assessment, assume: cost.Assumptions | None = None) -> list[cost.Line]:
    config, load = assessment.config, assessment.load
    assume = assume or cost.assumptions_for(config)
    # price the batches the mapping actually forms (consumer_model), not a full BATCH_SIZE
    batch_ms = assessment.figures["duration_s"] * 1000
    assume = replace(assume, consumer_ms_payload_mode=batch_ms, consumer_ms_batch_mode=batch_ms)
    workload = cost.Workload(load.requests_per_minute, load.payloads_per_request, load.message_bytes)
    return cost.monthly_lines(
        workload,
        config.OBJECT_MODE,
        ingest_memory_mb=config.INGEST_MEMORY_MB,
        consumer_memory_mb=config.CONSUMER_MEMORY_MB,
        batch_size=round(assessment.figures["batch"]),
        alarms=6,
        dashboards=1,
        assume=assume,
        object_expiration_days=config.RAW_RETENTION_DAYS,
        access_log_expiration_days=config.ACCESS_LOG_EXPIRATION_DAYS,
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


def verdict_lines(assessment: Assessment) -> list[str]:
    binding = assessment.binding
    # A quota row's request is in the quota's own unit (the invocation rate follows the concurrency quota).
    limit = (
        (
            f"{_num(binding.limit)} ({binding.source}) until {QUOTAS[binding.quota].split(' (')[0]} is raised "
            f"to {_num(binding.request)}"
        )
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
        out += [f"  - {QUOTAS[key]}: at least {_num(value)}" for key, value in assessment.quota_increases.items()]
    out += [f"  ! {c.stage}: {c.note}" for c in assessment.checks if c.status == WARN]
    return out


def render_text(assessment: Assessment, lines: list[cost.Line]) -> str:
    config, load = assessment.config, assessment.load
    out = [
        f"PROFILE={config.PROFILE} OBJECT_MODE={config.OBJECT_MODE}: {load.requests_per_minute:,.0f} requests/min "
        f"= {load.rps:,.0f} rps x {load.payloads_per_request} payloads of {load.payload_bytes:,} B = "
        f"{load.messages_per_second:,.0f} messages/s ({load.message_bytes:,} B each), "
        f"failure rate {load.failure_rate:.2%}",
        "",
    ]
    out.append(f"{'':8}{'stage':<21}{'check':<62}{'needs':>14}  {'limit':<48}{'headroom':>9}")
    for c in assessment.checks:
        out.append(
            f"{c.status:<8}{c.stage:<21}{c.item[:61]:<62}{_num(c.need):>14}  {_limit(c)[:47]:<48}"
            f"{_headroom(c):>9}" + (f"  {c.note}" if c.note and c.status not in (OK,) else "")
        )
    out += ["", *verdict_lines(assessment), "", _cost_text(lines, config)]
    return "\n".join(out)


def _cost_text(lines: list[cost.Line], config: PipelineConfig) -> str:
    out = [
        f"monthly cost ({prices.REGION} list prices checked {prices.PRICES_CHECKED}, 30-day month, "
        f"OBJECT_MODE={config.OBJECT_MODE}):"
    ]
    out += [f"  {line.service:<16} {line.item:<56} {_money(line.usd):>14}" for line in lines]
    out.append(f"  {'total':<73} {_money(sum(line.usd for line in lines)):>14}")
    if config.PROVISIONED_POLLERS:
        out.append("  (provisioned event pollers are billed per hour on top; not priced here)")
    return "\n".join(out)


def _money(usd: float) -> str:
    return f"${usd:,.0f}"


SEED = (1_000_000, 10, 1024)  # the Go original's load: rpm, payloads per request, bytes per payload
SOURCES = [
    ("API Gateway quotas", "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"),
    ("Lambda quotas", "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"),
    ("Lambda reserved concurrency", "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"),
    (
        "SQS message quotas (in flight)",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html",
    ),
    (
        "SQS event source parameters (provisioned pollers)",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html",
    ),
    ("Lambda with SQS, provisioned mode", "https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html"),
    (
        "S3 performance (per-prefix rates)",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html",
    ),
    ("S3 server access logging (pricing)", "https://docs.aws.amazon.com/AmazonS3/latest/userguide/ServerLogs.html"),
    (
        "S3 lifecycle transitions (128 KB minimum)",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html",
    ),
    (
        "X-Ray sampling rules (API Gateway, not Lambda)",
        "https://docs.aws.amazon.com/xray/latest/devguide/xray-console-sampling.html",
    ),
    (
        "SQS dead-letter queues (enqueue time kept)",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html",
    ),
]


def _md_table(assessment: Assessment) -> list[str]:
    out = ["| | stage | check | needs | limit | headroom | note |", "|---|---|---|---:|---|---:|---|"]
    for c in assessment.checks:
        out.append(
            f"| {c.status} | {c.stage} | {c.item} | {_num(c.need)} {c.unit} | {_limit(c)} | {_headroom(c)} | {c.note} |"
        )
    return out


def _md_cost(lines: list[cost.Line]) -> list[str]:
    out = ["| service | item | quantity | per month |", "|---|---|---:|---:|"]
    out += [
        f"| {line.service} | {line.item} | {_num(line.quantity)} {line.unit} | {_money(line.usd)} |" for line in lines
    ]
    out.append(f"| **total** | | | **{_money(sum(line.usd for line in lines))}** |")
    return out


def _md_ceiling(assessment: Assessment) -> str:
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


def render_markdown() -> str:
    """docs/CAPACITY.md: the seed load against both profiles, every figure from this module."""
    load = load_of(*SEED)
    dev = assess(resolve_config({"PROFILE": "dev"}), load)
    scale = assess(resolve_config({"PROFILE": "scale"}), load)
    scale_cost = monthly_cost(scale)
    traced = resolve_config({"PROFILE": "scale", "TRACING": "true"})
    xray = sum(line.usd for line in monthly_cost(assess(traced, load)) if line.service == "X-Ray")
    by_item = {f"{line.service}: {line.item.split(' (')[0]}": line for line in scale_cost}
    total = sum(line.usd for line in scale_cost)
    telemetry = sum(line.usd for line in scale_cost if line.service in ("CloudWatch", "X-Ray"))
    biggest = max(scale_cost, key=lambda line: line.usd)
    f, c = scale.figures, scale.config
    dev_assume = cost.assumptions_for(dev.config)
    dev_payload_ms, dev_batch_ms = dev_assume.consumer_ms_payload_mode, dev_assume.consumer_ms_batch_mode
    in_flight = next(x for x in scale.checks if x.item.startswith("in flight"))
    drain = next(x for x in scale.checks if x.stage == "Backlog")
    return "\n".join(
        [
            "# Capacity: does a configuration carry a load?",
            "",
            "<!-- Generated by `python -m tools.models.capacity --markdown > docs/CAPACITY.md`; "
            "tests/unit/test_capacity.py keeps this file equal to the tool's output. "
            "Edit tools/models/capacity.py. -->",
            "",
            f"The seed load is the Go original's: **{SEED[0]:,} requests/min = {load.rps:,.0f} requests/s**, "
            f"{SEED[1]} payloads of {SEED[2]:,} B each, so **{load.messages_per_second:,.0f} SQS messages/s** of "
            f"{load.message_bytes:,} B (the payload in the ingest's own envelope). Check your own load and "
            "configuration "
            "(resolved as the stack resolves it: environment, cdk.json context, `PROFILE` preset, default):",
            "",
            "    python -m tools.models.capacity --rpm N --payloads N --payload-bytes N [--failure-rate F]",
            "    make capacity RPM=1000000 PAYLOADS=10 PAYLOAD_BYTES=1024   # PROFILE=scale make capacity ...",
            "",
            "Exit 0: carried, possibly after the listed quota increases (AWS grants those on request); 1: this "
            "configuration cannot carry it; 2: bad arguments or knobs. Legend: ✓ within the limit; ✗ quota: above an "
            "AWS default quota to raise; ✗ above a configured or hard limit; ! works, with a risk named; · shown, "
            "not judged. Durations come from `tools.models.cost` (`make bench` CPU figures scaled to Lambda's CPU "
            "share, plus assumed AWS latencies: SendMessageBatch 8 ms, PutObject 20 ms, a batch object 50 ms).",
            "",
            "## How each stage is judged",
            "",
            "* **API Gateway**: requests/s against the account throttle (10,000 rps, burst 5,000, per Region), the "
            "stage throttle (if set) and the usage plan of the stack's one API key (`THROTTLE_RATE_LIMIT`; AWS "
            "applies usage-plan throttles best effort). The account burst must cover the configured bursts.",
            "* **Lambda**: ingest concurrency = requests/s x ingest duration (Little's law). The account quota "
            "(1,000 by default) must hold the ingest, the consumer's reserved concurrency and the 100 executions "
            "Lambda keeps unreserved; synchronous invocations/s are capped at 10 x the concurrency quota.",
            "* **SQS**: a standard queue takes a nearly unlimited number of calls/s; messages in flight (received, not "
            f"deleted) are capped at ~{SQS_IN_FLIGHT_DEFAULT_QUOTA:,} per standard queue unless AWS Support raised it "
            "(`SQS_IN_FLIGHT_LIMIT`). In flight = messages/s x (half the batch fill time + the batch's duration) + "
            "messages/s x failure rate x the first retry delay (`RETRY_BASE_SECONDS`: the consumer sets it on each "
            "failed record). The in-flight alarm fires at 80 % of `SQS_IN_FLIGHT_LIMIT`, so the failure-free figure "
            "must stay below that.",
            "* **Event source mapping**: standard mode carries `MAX_WORKERS` x batch / duration messages/s. A "
            f"provisioned poller takes at most {POLLER_POLLS_PER_SECOND} ReceiveMessage calls/s of {SQS_RECEIVE_MAX} "
            f"messages, {POLLER_BYTES_PER_SECOND // 1_000_000} MB/s and {POLLER_CONCURRENT_INVOKES} concurrent "
            "invokes, "
            "so `MAX_POLLERS` x min(100, 1 MB/s / message, 10 x batch / duration) messages/s.",
            "* **Consumer Lambda**: batches/s x batch duration against its reserved concurrency (`MAX_WORKERS`, or "
            "10 x `MAX_POLLERS` in provisioned mode).",
            f"* **S3**: PUT/s into one prefix. Every hour starts a fresh, unsplit `hour=` prefix that takes "
            f"{S3_PUT_PER_PREFIX:,} PUT/s until S3 splits it (503 SlowDown meanwhile). Payload mode PUTs once per "
            "payload, batch mode once per batch; both modes are shown, the configured one is judged.",
            "* **Backlog**: with `MAX_QUEUE` the ingest answers 503 before the backlog passes it; a full backlog must "
            "drain, at the consumer's spare capacity, well within `QUEUE_RETENTION_DAYS`. Without `MAX_QUEUE`, "
            "acknowledged payloads expire silently once a backlog outlives the retention.",
            "",
            "## `PROFILE=dev` (the default): not carried",
            "",
            _md_ceiling(dev),
            "",
            *_md_table(dev),
            "",
            "```",
            *verdict_lines(dev),
            "```",
            "",
            "## `PROFILE=scale`: carried after quota increases",
            "",
            _md_ceiling(scale),
            "",
            *_md_table(scale),
            "",
            "```",
            *verdict_lines(scale),
            "```",
            "",
            "Ask for the increases in the Service Quotas console (or AWS Support) of the deployment's Region before a "
            "test at this load: API Gateway's throttle rate and burst, and Lambda's concurrent executions (the "
            "invocation rate follows it at 10x). Any reserved concurrency must leave 100 unreserved, so the stack "
            "fails to deploy until the concurrency increase is granted.",
            "",
            "### Why each `scale` setting (infra/config.py `PROFILES`)",
            "",
            f"* `OBJECT_MODE=batch`: {f['batches_per_s']:,.0f} PUT/s into a fresh prefix instead of "
            f"{load.messages_per_second:,.0f} (see the payload-mode section).",
            f"* `PROVISIONED_POLLERS=true`, `MAX_POLLERS={c.MAX_POLLERS:,}`: a poller receives at most "
            f"{f['poller_receive']:,.0f} messages/s, so the load needs "
            f"{math.ceil(load.messages_per_second / f['poller_receive']):,} pollers; {c.MAX_POLLERS:,} adds 20 % "
            f"(standard mode's `MAX_WORKERS` stops at 1,000). `MIN_POLLERS={c.MIN_POLLERS}` is the highest floor AWS "
            "accepts, for a faster ramp.",
            f"* `RESERVED_CONCURRENCY={c.RESERVED_CONCURRENCY}`: reserving 10 x `MAX_POLLERS` "
            f"({c.consumer_reserved_concurrency:,}) would make the account need a concurrency quota above that; the "
            f"consumer itself runs ~{f['batches_per_s'] * f['duration_s']:,.0f} executions at this load, which the "
            "quota that the ingest's invocation rate needs anyway covers.",
            f"* `BATCH_SIZE={c.BATCH_SIZE}`, `MAX_BATCHING_WINDOW_SECONDS={c.MAX_BATCHING_WINDOW_SECONDS}` "
            "(defaults): a "
            f"poller fills a batch of ~{f['batch']:,.0f} in {f['fill_s']:.1f} s, so {in_flight.need:,.0f} messages are "
            f"in flight. A smaller batch would exceed the per-prefix PUT rate, a longer "
            "window the in-flight cap.",
            f"* `SQS_IN_FLIGHT_LIMIT={c.SQS_IN_FLIGHT_LIMIT:,}`: with no failures {in_flight.need:,.0f} "
            "messages are in "
            f"flight, {in_flight.need / SQS_IN_FLIGHT_DEFAULT_QUOTA:.0%} of the default "
            f"~{SQS_IN_FLIGHT_DEFAULT_QUOTA:,} "
            "quota, where the in-flight alarm (80 %) would page in normal operation and a small failure rate would "
            "stall the consumer. So the profile assumes a doubled quota: an AWS Support request, listed above.",
            f"* `CONSUMER_TIMEOUT_SECONDS={c.CONSUMER_TIMEOUT_SECONDS}`: a batch takes "
            f"~{f['duration_s'] * 1000:.0f} ms. "
            f"The visibility timeout becomes {c.visibility_timeout_seconds} s; a failed record comes back after "
            "its retry "
            f"delay (at most `RETRY_BASE_SECONDS={c.RETRY_BASE_SECONDS}` on its first failure), and the in-flight cap "
            "then tolerates a "
            f"failure rate up to {_tolerated_failure_rate(c, load.messages_per_second, in_flight.need):.2%} "
            "(check yours with `--failure-rate`).",
            f"* `MAX_QUEUE={c.MAX_QUEUE:,}` (~{c.MAX_QUEUE / load.messages_per_second / 60:,.0f} minutes of load): it "
            f"drains in {drain.need / 60:,.0f} minutes at the {f['capacity'] - load.messages_per_second:,.0f} "
            "messages/s "
            "of spare consumer capacity, far within the retention, and the ingest answers 503 before payloads could "
            "expire.",
            f"* `QUEUE_RETENTION_DAYS={c.QUEUE_RETENTION_DAYS}`, `DLQ_RETENTION_DAYS={c.DLQ_RETENTION_DAYS}`: "
            "the longest "
            "the queue can keep messages while the DLQ still outlives it. A standard queue keeps a message's original "
            "enqueue time when it moves to the DLQ, so a DLQ with the queue's retention would drop old messages on "
            "arrival.",
            f"* `RAW_RETENTION_DAYS={c.RAW_RETENTION_DAYS}`: bounds storage at "
            f"{by_item['S3: payload storage'].quantity / 1024:,.0f} TB (uncompressed; gzip makes batch objects "
            "smaller), "
            f"{_money(by_item['S3: payload storage'].usd)}/month; without expiry it grows by that every month. No "
            "storage-class transition: batch objects of ~100 payloads are below 128 KB, which lifecycle rules do not "
            "transition by default and which IA classes bill as 128 KB.",
            f"* `THROTTLE_RATE_LIMIT={c.THROTTLE_RATE_LIMIT:,}`, "
            f"`THROTTLE_BURST_LIMIT={c.THROTTLE_BURST_LIMIT:,}`: the "
            "stack's one API key carries the whole load, +20 %; `STAGE_THROTTLE_RATE_LIMIT` and "
            "`STAGE_THROTTLE_BURST_LIMIT`, the stage-wide ceiling above every key, are set to the same.",
            f"* `TRACING=false`: Lambda's active tracing samples 1 request/s + 5 % and takes no custom sampling rules "
            "(X-Ray sampling rules apply to API Gateway, AppSync, Step Functions and SDK/ADOT-instrumented "
            "code); at this "
            f"load that is {_money(xray)}/month of traces nobody reads. Metrics, logs and alarms stay.",
            "* Server access logs stay on: in batch mode they are one record per PUT, "
            f"{_money(by_item['S3: server access logs'].usd)}/month at `ACCESS_LOG_EXPIRATION_DAYS="
            f"{c.ACCESS_LOG_EXPIRATION_DAYS}` (delivery is free; the log objects pay storage). API Gateway's access "
            f"log stays on too ({_money(by_item['CloudWatch: API Gateway access logs ingested'].usd)}/month): one line "
            "per request is the only record of who was answered what. Lambda logs are one line per batch in batch "
            "mode, not per payload. CloudWatch Logs storage (`LOG_RETENTION_DAYS`, billed compressed) is not priced.",
            "",
            f"## Payload mode is for loads below {S3_PUT_PER_PREFIX:,} payloads/s",
            "",
            f"Payload mode PUTs one object per payload under `dt=/hour=/`, and every hour starts an unsplit prefix "
            f"that takes {S3_PUT_PER_PREFIX:,} PUT/s. Above that every hour begins with 503 SlowDown storms (retried, "
            "then redelivered; create-only writes keep them duplicate-free) until S3 splits the prefix. So "
            "payload mode "
            f"is for loads below {S3_PUT_PER_PREFIX:,} payloads/s: "
            f"{payload_mode_max_rpm(SEED[1]):,.0f} requests/min at {SEED[1]} payloads each "
            f"({payload_mode_max_rpm(1):,.0f} at one). `tools.models.capacity` marks S3 ✗ in payload mode above it "
            "and says to use `OBJECT_MODE=batch`. The key layout stays as it is.",
            "",
            "## Sizing the worker pool for another load",
            "",
            f"* **Standard mode** (`MAX_WORKERS`, 2–1,000) carries `MAX_WORKERS` x batch / duration messages/s. A "
            f"payload-mode batch of {dev.config.BATCH_SIZE} takes ~{dev_payload_ms:.0f} ms at "
            f"{dev.config.CONSUMER_MEMORY_MB} MB (ceil(`BATCH_SIZE` / `UPLOAD_CONCURRENCY`) waves of 20 ms PUTs plus "
            f"CPU), so one worker carries ~{dev.config.BATCH_SIZE / dev_payload_ms * 1000:,.0f} payloads/s; a "
            "batch-mode "
            f"batch ~{dev_batch_ms:.0f} ms, ~{dev.config.BATCH_SIZE / dev_batch_ms * 1000:,.0f} payloads/s. When a "
            "worker is CPU-bound, raise `CONSUMER_MEMORY_MB` (CPU share grows with memory up to 1,769 MB) before "
            "`UPLOAD_CONCURRENCY`. Standard mode adds pollers as the backlog grows, so a step from idle takes about a "
            "minute to absorb.",
            f"* **Provisioned pollers** (`PROVISIONED_POLLERS=true`): when the load needs more than 1,000 workers, or "
            "arrives in steps that a one-minute ramp would turn into backlog. A poller takes at most "
            f"~{POLLER_POLLS_PER_SECOND * SQS_RECEIVE_MAX} messages/s, so `MAX_POLLERS` >= messages/s / 100 (+20 %); "
            "`MIN_POLLERS` stay warm and are billed per hour whether used or not. Provisioned mode cannot be combined "
            "with maximum concurrency, so the stack reserves 10 x `MAX_POLLERS` for the consumer.",
            "",
            f"## Monthly cost, `PROFILE=scale` ({prices.REGION} list prices checked {prices.PRICES_CHECKED})",
            "",
            *_md_cost(scale_cost),
            "",
            f"The largest line is {biggest.service} ({biggest.item}, {_money(biggest.usd)}); telemetry (CloudWatch "
            f"Logs, metrics, alarms, dashboard) is {_money(telemetry)} of {_money(total)}. Provisioned event pollers "
            "are billed per hour on top and are not priced here. `python -m tools.models.cost` prices both object "
            "modes for any load.",
            "",
            "## Sources",
            "",
            *[f"* {title}: {url}" for title, url in SOURCES],
            "",
        ]
    )


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.models.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpm", type=float, help="HTTP requests per minute")
    parser.add_argument("--payloads", type=int, default=10, help="payloads per request")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="bytes of one payload (compact JSON)")
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.0,
        help="share of records that fail once and wait out their first retry delay (0..1)",
    )
    parser.add_argument("--markdown", action="store_true", help="print docs/CAPACITY.md (the seed load, both profiles)")
    args = parser.parse_args(argv)
    if args.markdown:
        print(render_markdown(), end="")
        return 0
    if (
        args.rpm is None
        or args.rpm <= 0
        or args.payloads < 1
        or args.payload_bytes < 1
        or not 0 <= args.failure_rate < 1
    ):
        parser.print_usage(sys.stderr)
        print(
            "capacity: --rpm > 0, --payloads >= 1, --payload-bytes >= 1 and 0 <= --failure-rate < 1 are needed",
            file=sys.stderr,
        )
        return 2
    try:
        config = resolve_config(environ)
    except ConfigError as exc:
        print(f"capacity: {exc}", file=sys.stderr)
        return 2
    assessment = assess(config, load_of(args.rpm, args.payloads, args.payload_bytes, args.failure_rate))
    print(render_text(assessment, monthly_cost(assessment)))
    return assessment.exit_code


def resolve_config(environ: Mapping[str, str] | None = None, **context: Any) -> PipelineConfig:
    """The config the stack would deploy: environment, cdk.json context (plus ``context``), PROFILE, default."""
    return PipelineConfig.resolve({**cdk_json_context(), **context}, environ)


if __name__ == "__main__":
    sys.exit(main())
