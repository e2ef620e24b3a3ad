"""Every alarm of both profiles (dev and PROFILE=scale), replayed on synthetic minutes of its own metrics.

Each alarm is read from the synthesized template: its metrics, statistics, periods, metric math, threshold,
datapoints to alarm and TreatMissingData. A small evaluator aggregates a synthetic world (one value per metric per
minute, None where CloudWatch would have no datapoint) into the alarm's periods, evaluates the expression and
applies CloudWatch's alarm rules:
- M out of N: the alarm goes to ALARM when at least DatapointsToAlarm of the last EvaluationPeriods datapoints
  breach, else OK ("Using Amazon CloudWatch alarms", Evaluating an alarm:
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html);
- missing data: notBreaching counts a missing datapoint as good, breaching as bad, ignore keeps the current state
  ("Configuring how CloudWatch alarms treat missing data", same guide). The alarms here use ignore only with one
  evaluation period, where that rule is the whole rule (the evaluator refuses anything else);
- the alarm is evaluated every minute, and the newest period may be the current, partial one (AWS does not say it
  waits for a period to close, so the stricter reading is taken: a quiet world must stay quiet either way).

Metric math: the subset the alarms use, exactly: + - * /, comparisons, IF(c, a, b), FILL(m, value|REPEAT) and
DIFF(m) ("Using math expressions with CloudWatch metrics", Metric math syntax and functions:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html). A binary operation or IF
with a missing operand gives no datapoint at that timestamp; FILL(m, REPEAT) carries the most recent value forward
(a series that starts missing stays missing until its first value); DIFF's first value has no predecessor.

Worlds: the seed's load for the profile (dev: make loadtest's 300 requests/min; scale: 1,000,000), a busy but
healthy pool (120 % of it, the pool at its bound, messages taken within seconds), a night at 5 % with one error
of every kind, and per alarm a real backlog and a real outage. Quiet on the first three, fires on the last two.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import PROFILES, PipelineConfig
from tests.infra import build
from tools.models import capacity
from tools.models.flow import flow_of
from tools.ops.preflight import DESIGN_LOADS

MINUTES = 6 * 60  # six clock hours, minute 0 at the top of an hour
T0 = 150  # when a backlog or an outage starts (02:30)
Series = list[float | None]
World = dict[str, Series]
REPEAT = object()


# --- the template's alarms -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployed:
    config: PipelineConfig
    template: Template
    roles: dict[str, str]  # logical id -> role ("ingest", "consumer", "queue", "dlq")


@pytest.fixture(scope="module", params=["dev", "scale"])
def deployed(request: pytest.FixtureRequest) -> Deployed:
    _, stack = build(environ={"PROFILE": request.param})
    template = Template.from_stack(stack)
    roles = {}
    for name, function in template.find_resources("AWS::Lambda::Function").items():
        handler = function["Properties"].get("Handler", "")
        if handler in ("ingest_handler.lambda_handler", "consumer_handler.lambda_handler"):
            roles[name] = handler.split("_")[0]
    for name, queue in template.find_resources("AWS::SQS::Queue").items():
        roles[name] = "queue" if "RedrivePolicy" in queue["Properties"] else "dlq"
    return Deployed(stack.config, template, roles)


def alarms(deployed: Deployed) -> dict[str, dict[str, Any]]:
    return {
        props["AlarmName"].split("-", 3)[-1]: props
        for props in (r["Properties"] for r in deployed.template.find_resources("AWS::CloudWatch::Alarm").values())
    }


def _ref(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("Ref") or value["Fn::GetAtt"][0])
    return str(value)


def metric_key(deployed: Deployed, namespace: str, name: str, dimensions: list[dict[str, Any]]) -> str:
    """The world's name for one CloudWatch metric, e.g. consumer.Errors, dlq.ApproximateNumberOfMessagesVisible."""
    dims = {d["Name"]: d["Value"] for d in dimensions}
    if namespace == "AWS/ApiGateway":
        return {"Count": "api.requests", "5XXError": "api.5xx", "5xx": "api.5xx"}[name]
    if namespace == "AWS/Lambda" and name == "ProvisionedPollers":
        return "pool.pollers"
    if namespace in ("AWS/Lambda", "AWS/SQS"):
        return f"{deployed.roles[_ref(next(iter(dims.values())))]}.{name}"
    if namespace == "AWS/States":
        return f"compaction.{name}"
    if namespace == deployed.config.METRICS_NAMESPACE:
        assert dims["stage"] == deployed.config.STAGE
        reason = f".{dims['reason']}" if "reason" in dims else ""
        return f"{dims['service']}.{name}{reason}"
    raise AssertionError(f"no world metric for {namespace} {name}")


@dataclass(frozen=True)
class Query:
    key: str
    statistic: str
    period: int


def queries(deployed: Deployed, props: dict[str, Any]) -> tuple[str, dict[str, Query], int]:
    """(expression, its metrics by id, period) of an alarm; a single-metric alarm is the expression `m`."""
    if "MetricName" in props:
        key = metric_key(deployed, props["Namespace"], props["MetricName"], props.get("Dimensions", []))
        return "m", {"m": Query(key, props["Statistic"], props["Period"])}, props["Period"]
    found, expression, period = {}, "", 0
    for query in props["Metrics"]:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            metric = stat["Metric"]
            key = metric_key(deployed, metric["Namespace"], metric["MetricName"], metric.get("Dimensions", []))
            found[query["Id"]] = Query(key, stat["Stat"], stat["Period"])
        else:
            assert query.get("ReturnData", True), query
            expression = query["Expression"]
    if not expression:  # one metric with a label: CDK writes it as a query list of one
        [expression] = found
    periods = {q.period for q in found.values()}
    assert len(periods) == 1, f"one period per alarm: {periods}"
    [period] = periods
    return expression, found, period


# --- the evaluator -------------------------------------------------------------------------------------


def aggregate(values: Series, statistic: str, minutes_per_period: int, upto: int) -> Series:
    """The world's minutes [0, upto) in periods of ``minutes_per_period`` (the last one may be partial)."""
    out: Series = []
    for start in range(0, upto, minutes_per_period):
        present = [v for v in values[start : min(start + minutes_per_period, upto)] if v is not None]
        if not present:
            out.append(None)
        elif statistic == "Sum":
            out.append(float(sum(present)))
        elif statistic == "Maximum":
            out.append(float(max(present)))
        else:
            raise AssertionError(f"statistic {statistic} not modelled")
    return out


def _elementwise(op: Callable[..., float], *args: Any) -> Any:
    series = [a for a in args if isinstance(a, list)]
    if not series:
        return op(*args)
    length = len(series[0])
    result: Series = []
    for i in range(length):
        values = [a[i] if isinstance(a, list) else a for a in args]
        result.append(None if any(v is None for v in values) else op(*values))
    return result


BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b if b else math.nan,
}
COMPARE: dict[type, Callable[[float, float], bool]] = {
    ast.GtE: lambda a, b: a >= b,
    ast.Gt: lambda a, b: a > b,
    ast.LtE: lambda a, b: a <= b,
    ast.Lt: lambda a, b: a < b,
}


def evaluate(node: ast.AST, env: dict[str, Series]) -> Any:
    if isinstance(node, ast.Expression):
        return evaluate(node.body, env)
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return REPEAT if node.id == "REPEAT" else list(env[node.id])
    if isinstance(node, ast.BinOp):
        op = BINARY[type(node.op)]
        return _elementwise(op, evaluate(node.left, env), evaluate(node.right, env))
    if isinstance(node, ast.Compare):
        [operator], [right] = node.ops, node.comparators
        compare = COMPARE[type(operator)]
        return _elementwise(lambda a, b: float(compare(a, b)), evaluate(node.left, env), evaluate(right, env))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [evaluate(arg, env) for arg in node.args]
        if node.func.id == "IF":
            condition, yes, no = args
            return _elementwise(lambda c, a, b: a if c else b, condition, yes, no)
        if node.func.id == "FILL":
            values, filler = args
            filled: Series = []
            for value in values:
                if value is None and filler is REPEAT:
                    value = filled[-1] if filled else None
                elif value is None:
                    value = filler
                filled.append(value)
            return filled
        if node.func.id == "DIFF":
            [values] = args
            return [None] + [
                None if a is None or b is None else b - a for a, b in zip(values, values[1:], strict=False)
            ]
    raise AssertionError(f"metric math not modelled: {ast.dump(node)}")


def breaches(value: float, threshold: float, comparison: str) -> bool:
    return {
        "GreaterThanThreshold": value > threshold,
        "GreaterThanOrEqualToThreshold": value >= threshold,
        "LessThanThreshold": value < threshold,
        "LessThanOrEqualToThreshold": value <= threshold,
    }[comparison]


@dataclass
class Replay:
    states: list[str] = field(default_factory=list)  # the state after each minute's evaluation

    @property
    def fired(self) -> bool:
        return "ALARM" in self.states

    @property
    def pages(self) -> int:
        """Transitions into ALARM: each one notifies."""
        return sum(1 for a, b in zip(["OK", *self.states], self.states, strict=False) if b == "ALARM" != a)


def replay(deployed: Deployed, props: dict[str, Any], world: World) -> Replay:
    """The alarm's state after each minute of ``world``, as CloudWatch would evaluate it."""
    expression, metrics, period = queries(deployed, props)
    tree = ast.parse(expression, mode="eval")
    step = period // 60
    n, m = props["EvaluationPeriods"], props["DatapointsToAlarm"]
    missing = props["TreatMissingData"]
    assert missing in ("notBreaching", "breaching", "ignore"), missing
    assert missing != "ignore" or n == 1, "ignore is modelled for one evaluation period only"
    state, result = "OK", Replay()
    for minute in range(step, MINUTES + 1):
        env = {
            mid: aggregate(world.get(q.key, [None] * MINUTES), q.statistic, step, minute) for mid, q in metrics.items()
        }
        values = evaluate(tree, env)
        window = values[-n:] if isinstance(values, list) else [values] * n
        if missing == "ignore" and window[-1] is None:
            result.states.append(state)
            continue
        bad = 0
        for value in window:
            if value is None:
                bad += missing == "breaching"
            elif not math.isnan(value):
                bad += breaches(value, props["Threshold"], props["ComparisonOperator"])
        state = "ALARM" if bad >= m else "OK"
        result.states.append(state)
    return result


# --- the worlds -----------------------------------------------------------------------------------------


def constant(value: float | None) -> Series:
    return [value] * MINUTES


def seed_world(config: PipelineConfig, share: float = 1.0) -> World:
    """``share`` of the profile's design load, healthy: what a pipeline that keeps up publishes each minute."""
    rpm, payloads, payload_bytes = DESIGN_LOADS[config.PROFILE]
    requests = rpm * share
    # the capacity model's flow at this load: batches per minute and messages in flight with no failures
    flow = flow_of(config, capacity.load_of(requests, payloads, payload_bytes))
    batches = max(6.0, requests * payloads / flow.payloads_per_batch)
    bound = config.MAX_POLLERS if config.PROVISIONED_POLLERS else config.MAX_WORKERS
    compaction: Series = [
        1.0 if minute % 60 == config.COMPACTION_GRACE_MINUTES % 60 else None for minute in range(MINUTES)
    ]
    return {
        "api.requests": constant(requests),
        "api.5xx": constant(0),
        "ingest.Invocations": constant(requests),
        "ingest.Errors": constant(0),
        "ingest.Throttles": constant(None),  # Lambda publishes no throttle datapoint without a throttle
        "consumer.Invocations": constant(batches),
        "consumer.Errors": constant(0),
        "consumer.ConcurrentExecutions": constant(max(2, bound // 2) if not config.PROVISIONED_POLLERS else 60),
        "pool.pollers": constant(config.MIN_POLLERS),
        "queue.ApproximateAgeOfOldestMessage": constant(config.MAX_BATCHING_WINDOW_SECONDS + 1),
        "queue.ApproximateNumberOfMessagesNotVisible": constant(flow.in_flight_ok),
        "consumer.PayloadsStored": constant(requests * payloads),
        "consumer.StoreFailures": constant(None),
        "ingest.PayloadsAccepted": constant(requests * payloads),
        "compaction.ExecutionsSucceeded": compaction,
        # the DLQ is idle: SQS publishes nothing for it, and nothing is refused
    }


def busy_world(config: PipelineConfig) -> World:
    """120 % of the seed, the pool at its bound but keeping up: each message is taken within its window."""
    world = seed_world(config, 1.2)
    if config.PROVISIONED_POLLERS:
        world["pool.pollers"] = constant(config.MAX_POLLERS)
    else:
        world["consumer.ConcurrentExecutions"] = constant(config.MAX_WORKERS)
    world["queue.ApproximateAgeOfOldestMessage"] = constant(config.MAX_BATCHING_WINDOW_SECONDS + 2)
    return world


def night_world(config: PipelineConfig) -> World:
    """5 % of the seed, and at 03:20 one error of every kind; a compaction run that fails and succeeds on retry."""
    world = seed_world(config, 0.05)
    one = 200
    for key in ("api.5xx", "ingest.Errors", "ingest.Throttles", "consumer.Errors", "consumer.StoreFailures"):
        world[key] = list(world[key])
        world[key][one] = (world[key][one] or 0) + 1
    for reason in ("unauthenticated", "forbidden-invalid", "forbidden-revoked", "keyring-unavailable"):
        world[f"ingest.RequestsRejected.{reason}"] = [1.0 if minute == one else None for minute in range(MINUTES)]
    retry = 60 * 2 + config.COMPACTION_GRACE_MINUTES % 60
    world["compaction.ExecutionsFailed"] = [1.0 if minute == retry else None for minute in range(MINUTES)]
    world["compaction.ExecutionsSucceeded"] = list(world["compaction.ExecutionsSucceeded"])
    world["compaction.ExecutionsSucceeded"][retry] = None
    world["compaction.ExecutionsSucceeded"][retry + 5] = 1.0
    return world


def from_t0(world: World, key: str, value: Callable[[int], float | None], until: int = MINUTES) -> World:
    """``world`` with ``key`` replaced from T0 to ``until`` by value(minutes since T0)."""
    series = list(world.get(key, constant(None)))
    for minute in range(T0, until):
        series[minute] = value(minute - T0)
    return {**world, key: series}


def stop_flow(world: World, keys: tuple[str, ...]) -> World:
    for key in keys:
        world = from_t0(world, key, lambda _: None)
    return world


Scenario = Callable[[PipelineConfig, World], World]


def _pool_at_bound(config: PipelineConfig, world: World, gaps: bool) -> World:
    key = "pool.pollers" if config.PROVISIONED_POLLERS else "consumer.ConcurrentExecutions"
    bound = config.MAX_POLLERS if config.PROVISIONED_POLLERS else config.MAX_WORKERS
    world = from_t0(world, key, lambda t: None if gaps and t % 4 == 3 else bound)
    return from_t0(world, "queue.ApproximateAgeOfOldestMessage", lambda t: 5.0 + 30 * t)


def _rate(key: str, share: float, volume: str) -> Scenario:
    def scenario(config: PipelineConfig, world: World) -> World:
        base = world[volume][T0] or 0
        return from_t0(world, key, lambda _: share * base, T0 + 40)

    return scenario


FLOW_KEYS = (
    "api.requests",
    "api.5xx",
    "ingest.Invocations",
    "ingest.Errors",
    "consumer.Invocations",
    "consumer.Errors",
    "consumer.PayloadsStored",
    "ingest.PayloadsAccepted",
)

FIRING: dict[str, dict[str, Scenario]] = {
    "oldest-message-age": {
        "backlog": lambda c, w: from_t0(w, "queue.ApproximateAgeOfOldestMessage", lambda t: 5.0 + 60 * t),
        "outage": lambda c, w: from_t0(
            stop_flow(w, ("consumer.Invocations", "consumer.PayloadsStored")),
            "queue.ApproximateAgeOfOldestMessage",
            lambda t: 60.0 * t,
        ),
    },
    "api-5xx-rate": {
        "backlog": _rate("api.5xx", 0.1, "api.requests"),  # MAX_QUEUE backpressure: 503 backlog-full
        "outage": _rate("api.5xx", 1.0, "api.requests"),
    },
    "ingest-errors": {
        "backlog": _rate("ingest.Throttles", 0.05, "ingest.Invocations"),
        "outage": _rate("ingest.Errors", 1.0, "ingest.Invocations"),
    },
    "consumer-errors": {
        "backlog": _rate("consumer.Errors", 0.1, "consumer.Invocations"),
        "outage": _rate("consumer.Errors", 1.0, "consumer.Invocations"),
    },
    "store-failures": {
        "backlog": _rate("consumer.StoreFailures", 0.1, "consumer.PayloadsStored"),  # S3 SlowDown
        "outage": lambda c, w: from_t0(  # S3 refuses every PUT: nothing stored, every payload failed
            _rate("consumer.StoreFailures", 1.0, "consumer.PayloadsStored")(c, w),
            "consumer.PayloadsStored",
            lambda _: 0.0,
            T0 + 40,
        ),
    },
    "in-flight-near-cap": {
        "backlog": lambda c, w: from_t0(
            w, "queue.ApproximateNumberOfMessagesNotVisible", lambda _: c.in_flight_alarm_threshold + 1000.0
        ),
        "outage": lambda c, w: from_t0(
            w, "queue.ApproximateNumberOfMessagesNotVisible", lambda _: float(c.SQS_IN_FLIGHT_LIMIT)
        ),
    },
    "worker-pool-saturated": {
        "backlog": lambda c, w: _pool_at_bound(c, w, gaps=False),
        "outage": lambda c, w: _pool_at_bound(c, w, gaps=True),  # and the pool's metric misses a minute in four
    },
    "compaction-failed": {
        "backlog": lambda c, w: {
            **w,
            "compaction.ExecutionsSucceeded": [
                v if minute < T0 else None for minute, v in enumerate(w["compaction.ExecutionsSucceeded"])
            ],
            "compaction.ExecutionsFailed": [
                1.0 if minute >= T0 and v is not None else None
                for minute, v in enumerate(w["compaction.ExecutionsSucceeded"])
            ],
        },
        "outage": lambda c, w: from_t0(w, "compaction.ExecutionsSucceeded", lambda _: None),  # the schedule stops
    },
    "dlq-not-empty": {
        # a wave, then the idle DLQ's metrics stop: the alarm must not send OK with the messages still there
        "backlog": lambda c, w: from_t0(
            w, "dlq.ApproximateNumberOfMessagesVisible", lambda t: 50.0 if t < 30 else None
        ),
        "outage": lambda c, w: from_t0(w, "dlq.ApproximateNumberOfMessagesVisible", lambda t: 100.0 * (t + 1)),
    },
    "dlq-new-messages": {
        "backlog": lambda c, w: from_t0(
            w, "dlq.ApproximateNumberOfMessagesVisible", lambda t: 50.0 if t < 60 else 120.0
        ),
        "outage": lambda c, w: from_t0(w, "dlq.ApproximateNumberOfMessagesVisible", lambda t: 100.0 * (t + 1)),
    },
    "dlq-messages-expiring": {
        "backlog": lambda c, w: from_t0(
            w, "dlq.ApproximateAgeOfOldestMessage", lambda t: c.DLQ_AGE_ALARM_DAYS * 86400 + 600.0 if t < 30 else None
        ),
        "outage": lambda c, w: from_t0(
            w, "dlq.ApproximateAgeOfOldestMessage", lambda t: c.DLQ_AGE_ALARM_DAYS * 86400 - 1800.0 + 60 * t
        ),
    },
    "flow-stopped": {
        # every device refused: requests arrive, nothing is stored
        "backlog": lambda c, w: from_t0(w, "consumer.PayloadsStored", lambda _: None),
        "outage": lambda c, w: stop_flow(w, FLOW_KEYS),  # DNS or certificate: nothing at all
    },
    "keyring-unavailable": {
        "backlog": _rate("ingest.RequestsRejected.keyring-unavailable", 0.02, "api.requests"),
        "outage": _rate("ingest.RequestsRejected.keyring-unavailable", 1.0, "api.requests"),
    },
    "devices-refused": {
        "backlog": _rate("ingest.RequestsRejected.forbidden-revoked", 0.3, "api.requests"),  # a mass revocation
        "outage": _rate("ingest.RequestsRejected.forbidden-invalid", 0.9, "api.requests"),  # a bad key rotation
    },
}
QUIET: dict[str, Callable[[PipelineConfig], World]] = {
    "seed": seed_world,
    "busy-healthy-pool": busy_world,
    "night-one-error": night_world,
}


def test_each_profile_has_the_alarms_its_knobs_ask_for(deployed: Deployed) -> None:
    expected = set(FIRING) - {"flow-stopped", "keyring-unavailable", "devices-refused"}
    if deployed.config.FLOW_ALARM_MIN_PAYLOADS:
        expected.add("flow-stopped")
    if deployed.config.DEVICE_AUTH == "on":
        expected |= {"keyring-unavailable", "devices-refused"}
    assert set(alarms(deployed)) == expected
    # dev: no flow floor, no device auth; scale: both
    assert ("flow-stopped" in expected) is (deployed.config.PROFILE == "scale")


@pytest.mark.parametrize("world", list(QUIET))
def test_no_alarm_fires_on_normal_operation(deployed: Deployed, world: str) -> None:
    built = QUIET[world](deployed.config)
    fired = [name for name, props in alarms(deployed).items() if replay(deployed, props, built).fired]
    assert fired == []


@pytest.mark.parametrize("scenario", ["backlog", "outage"])
def test_every_alarm_fires_on_its_real_backlog_and_outage(deployed: Deployed, scenario: str) -> None:
    silent = []
    for name, props in alarms(deployed).items():
        world = FIRING[name][scenario](deployed.config, seed_world(deployed.config))
        if not replay(deployed, props, world).fired:
            silent.append(name)
    assert silent == []


def test_the_dlq_pages_again_on_a_second_wave_and_stays_in_alarm_through_a_metric_gap(deployed: Deployed) -> None:
    found, config = alarms(deployed), deployed.config
    # Given a wave of 50, then a second of 70 an hour later while the first still waits
    two_waves = FIRING["dlq-new-messages"]["backlog"](config, seed_world(config))
    # Then each wave pages
    assert replay(deployed, found["dlq-new-messages"], two_waves).pages == 2
    # And when the idle DLQ stops publishing with 50 messages in it, dlq-not-empty stays in ALARM (no OK sent)
    gap = FIRING["dlq-not-empty"]["backlog"](config, seed_world(config))
    assert replay(deployed, found["dlq-not-empty"], gap).states[-1] == "ALARM"
    # And a DLQ message near expiry keeps dlq-messages-expiring in ALARM through the gap as well
    expiring = FIRING["dlq-messages-expiring"]["backlog"](config, seed_world(config))
    assert replay(deployed, found["dlq-messages-expiring"], expiring).states[-1] == "ALARM"


def test_compaction_failed_holds_until_a_run_succeeds(deployed: Deployed) -> None:
    config = deployed.config
    props = alarms(deployed)["compaction-failed"]
    # Given runs that fail from 02:30 on, then succeed again from 04:30 (the run compacts the hours left behind)
    failing = FIRING["compaction-failed"]["backlog"](config, seed_world(config))
    healed = dict(failing)
    healed["compaction.ExecutionsSucceeded"] = [
        1.0 if minute >= 4 * 60 and minute % 60 == config.COMPACTION_GRACE_MINUTES % 60 else v
        for minute, v in enumerate(failing["compaction.ExecutionsSucceeded"])
    ]
    states = replay(deployed, props, healed).states
    # Then it is in ALARM from the hour after the first failure until the first success, and OK after it
    assert states[3 * 60 + 5 - 60] == "ALARM"  # 03:05 (the states list starts at minute 60, the first period)
    assert states[4 * 60 + 15 - 60] == "ALARM"  # 04:15: still nothing compacted since 02:00
    assert states[-1] == "OK"


def test_the_old_single_error_alarms_would_have_paged_at_night() -> None:
    """Guard for the evaluator itself: an alarm of the old shape (one error in 5 minutes) fires on the night world,
    so the quiet results above come from the alarms' rates and volumes, not from an evaluator that never fires."""
    _, stack = build(environ={})
    template = Template.from_stack(stack)
    config = stack.config
    roles = {
        name: "consumer"
        for name, f in template.find_resources("AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == "consumer_handler.lambda_handler"
    }
    deployed = Deployed(config, template, roles)
    [consumer] = roles
    old = {
        "Namespace": "AWS/Lambda",
        "MetricName": "Errors",
        "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": consumer}}],
        "Statistic": "Sum",
        "Period": 300,
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "TreatMissingData": "notBreaching",
    }
    assert replay(deployed, old, night_world(config)).fired


def test_the_scale_profiles_flow_floor_is_one_percent_of_the_seed() -> None:
    # 1 % of the seed's payloads in one 5-minute period: below it, for 15 minutes, silence pages
    rpm, payloads, _ = capacity.SEED
    assert PROFILES["scale"]["FLOW_ALARM_MIN_PAYLOADS"] == rpm * payloads * 5 // 100 == 500_000
    assert PipelineConfig.FLOW_ALARM_MIN_PAYLOADS == 0  # dev: off, a dev stack sleeps
