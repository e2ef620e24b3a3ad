"""make preflight: read-only checks of your AWS account and region for what would block `make deploy`, and for
what the capacity model needs the account to have at the deployment's design load.

    python -m tools.ops.preflight            # same config as the stack: env > cdk.json context > PROFILE > default
    python -m tools.ops.preflight --rpm 2000000 --payloads 10 --payload-bytes 1024   # another load

The load defaults to the PROFILE's design load (DESIGN_LOADS). One line per check: ✓ or ✗, what was found,
and for ✗ the fix (a knob, or the quota to request and where). Exit 0: nothing blocks the deploy. 1:
something does. 2: AWS could not be asked at all (no region, no or invalid credentials, no network), or bad
arguments. Only read calls are made, with the normal boto3 credentials chain and region (AWS_PROFILE,
AWS_REGION, ...):

- sts:GetCallerIdentity: whether the credentials work at all (exit 2 if not);
- cloudformation:DescribeStacks (CDKToolkit) and DescribeStackResources (this stack's functions, on a redeploy);
- lambda:GetAccountSettings: AccountLimit.ConcurrentExecutions and UnreservedConcurrentExecutions
  (https://docs.aws.amazon.com/lambda/latest/api/API_GetAccountSettings.html), and
  lambda:GetFunctionConcurrency for this stack's current reservations
  (https://docs.aws.amazon.com/lambda/latest/api/API_GetFunctionConcurrency.html);
- apigateway:GetAccount (GET /account): cloudwatchRoleArn and throttleSettings.rateLimit/burstLimit, the
  account's throttle (https://docs.aws.amazon.com/apigateway/latest/api/API_GetAccount.html);
- ssm:GetParameter: the Powertools layer's public parameter.

The capacity model (tools.models.capacity.assess) runs locally on the same config and load; its
quota_increases are what the account is compared with.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.config import ConfigError, PipelineConfig, cdk_json_context
from pipeline.contract import MAX_PAYLOAD_BYTES_CEILING
from tools.models import capacity

OK, BLOCKED = "✓", "✗"
# Lambda refuses a reservation that leaves the account fewer unreserved concurrent executions than
# this (AWS Lambda API Reference, PutFunctionConcurrency: "as long as you leave at least 100
# simultaneous executions unreserved"; Developer Guide, "Configuring reserved concurrency").
MIN_UNRESERVED_CONCURRENCY = 100
QUOTA_WHERE = 'Service Quotas console > AWS services > AWS Lambda > "Concurrent executions"'
APIGW_RATE_WHERE = 'Service Quotas console > AWS services > Amazon API Gateway > "Throttle rate"'
# The load each profile is sized for, as (requests/min, payloads per request, bytes per payload). scale: the Go
# original's 1M requests/min of 10 x 1 KiB (infra/config.py PROFILES, docs/CAPACITY.md). dev: what
# `make loadtest` sends, 5 requests/s of 10 x 1 KiB (docs/LOADTEST.md).
DESIGN_LOADS: dict[str, tuple[float, int, int]] = {"dev": (300, 10, 1024), "scale": capacity.SEED}
# The stack's function resources, by the start of their logical ids (construct paths Workers/Consumer and
# Api/Ingest in infra/stack.py; tests/unit/test_preflight.py synthesizes the stack to keep these true).
CONSUMER_LOGICAL_ID = "WorkersConsumer"
INGEST_LOGICAL_ID = "ApiIngest"
BOOTSTRAP_STACK = "CDKToolkit"
# The synthesized template's CheckBootstrapVersion rule refuses bootstrap versions 1-5.
MIN_BOOTSTRAP_VERSION = 6
_USABLE_STACK_STATES = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE")


class CannotAskAws(RuntimeError):
    """No region, no usable credentials, or no connection: nothing could be checked."""


@dataclass(frozen=True)
class Finding:
    """One check's answer: whether it lets the deploy through, what was found, and the fix if not."""

    ok: bool
    found: str
    fix: str = ""

    def line(self, name: str) -> str:
        text = f"{OK if self.ok else BLOCKED} {name}: {self.found}"
        return f"{text} Fix: {self.fix}" if self.fix else text


@dataclass(frozen=True)
class Clients:
    """The read-only AWS clients the checks use (botocore Stubbers in the tests)."""

    region: str
    sts: Any
    lambda_: Any
    ssm: Any
    cloudformation: Any
    apigateway: Any

    @classmethod
    def from_session(cls, session: boto3.Session) -> Clients:
        if not session.region_name:
            raise CannotAskAws("no AWS region: set AWS_REGION (or AWS_PROFILE with a region, see `aws configure`)")
        if session.get_credentials() is None:
            raise CannotAskAws("no AWS credentials: set AWS_PROFILE or run `aws configure` (or `aws sso login`)")
        config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})

        def client(name: str) -> Any:
            return session.client(name, config=config)

        return cls(
            region=session.region_name,
            sts=client("sts"),
            lambda_=client("lambda"),
            ssm=client("ssm"),
            cloudformation=client("cloudformation"),
            apigateway=client("apigateway"),
        )


def stack_name(config: PipelineConfig) -> str:
    """The stack's name, as infra/application.py gives it."""
    return f"IngestPipeline-{config.STAGE}"


@dataclass
class Inputs:
    """What the checks read: the clients, the config, the design load and the capacity model's assessment of it.
    Each AWS read is made once however many checks use it; a refused read stays refused for each of them."""

    clients: Clients
    config: PipelineConfig
    load: capacity.Load
    assessment: capacity.Assessment
    _answers: dict[str, Any] = field(default_factory=dict)

    def _read(self, name: str, call: Callable[[], Any]) -> Any:
        if name not in self._answers:
            try:
                self._answers[name] = call()
            except ClientError as exc:
                self._answers[name] = exc
        answer = self._answers[name]
        if isinstance(answer, ClientError):
            raise answer
        return answer

    def lambda_limits(self) -> dict[str, int]:
        """lambda:GetAccountSettings' AccountLimit: ConcurrentExecutions (the quota) and
        UnreservedConcurrentExecutions (the quota minus every function's reservation)."""
        return dict(self._read("GetAccountSettings", self.clients.lambda_.get_account_settings)["AccountLimit"])

    def apigateway_account(self) -> dict[str, Any]:
        """apigateway:GetAccount: the region's CloudWatch role and the account's throttleSettings."""
        return dict(self._read("GetAccount", self.clients.apigateway.get_account))

    @property
    def load_text(self) -> str:
        load = self.load
        return (
            f"{load.requests_per_minute:,.0f} requests/min x {load.payloads_per_request} payloads of "
            f"{load.payload_bytes:,} B"
        )


def design_load(config: PipelineConfig) -> tuple[float, int, int] | None:
    """The PROFILE's design load (requests/min, payloads, bytes), or None for a profile without one."""
    return DESIGN_LOADS.get(config.PROFILE)


# --- the checks: each reads, never writes, and says what it found ------------------------------------


def check_capacity_model(inputs: Inputs) -> Finding:
    """Whether tools.models.capacity says this configuration carries the load (its exit code); no AWS read."""
    load = inputs.load
    make_capacity = (
        f"make capacity RPM={load.requests_per_minute:.0f} PAYLOADS={load.payloads_per_request} "
        f"PAYLOAD_BYTES={load.payload_bytes}"
    )
    if inputs.assessment.exit_code == 0:
        return Finding(True, f"this configuration carries {inputs.load_text} (quota increases checked below).")
    return Finding(
        False,
        f"this configuration does not carry {inputs.load_text}.",
        f"`{make_capacity}` names the stage and the knob to change (or pass a smaller --rpm if that is not your peak).",
    )


def check_lambda_concurrency(inputs: Inputs) -> Finding:
    """The account's concurrency quota against what the capacity model needs at the load, reserved or not:
    the increase it lists, or AWS's default quota, on which it judges the load when it lists none."""
    total = inputs.lambda_limits()["ConcurrentExecutions"]
    listed = inputs.assessment.quota_increases.get("lambda-concurrency")
    needed = max(capacity.LAMBDA_ACCOUNT_CONCURRENCY, int(listed or 0))
    basis = "the increase it lists" if listed else "AWS's default quota, which it assumes"
    found = f"account quota {total:,}; the capacity model needs {needed:,} at {inputs.load_text} ({basis})"
    if total >= needed:
        return Finding(True, f"{found}.")
    return Finding(False, f"{found}.", f"request a quota of at least {needed:,} ({QUOTA_WHERE}).")


def check_lambda_reservations(inputs: Inputs) -> Finding:
    """The consumer's and the ingest's reservations must leave AWS's minimum unreserved, or the deploy fails."""
    config = inputs.config
    consumer, ingest = config.consumer_reservation or 0, config.ingest_reservation or 0
    if not consumer and not ingest:
        return Finding(
            True,
            "nothing reserved (RESERVED_CONCURRENCY=off, INGEST_RESERVED_CONCURRENCY=0): the consumer and the "
            "ingest share the account's unreserved executions with every other function.",
        )
    limits = inputs.lambda_limits()
    total, unreserved = limits["ConcurrentExecutions"], limits["UnreservedConcurrentExecutions"]
    # On a redeploy this stack's current reservations are already counted out of `unreserved`.
    current = _current_reservations(inputs)
    held = sum(current.values())
    left = unreserved + held - consumer - ingest
    wanted = " and ".join(
        f"{amount} for the {function}" for function, amount in (("consumer", consumer), ("ingest", ingest)) if amount
    )
    now = ", ".join(f"{function} {amount}" for function, amount in current.items() if amount)
    found = f"account quota {total:,}, {unreserved:,} unreserved; reserving {wanted}{f' (now {now})' if now else ''}"
    found += f" leaves {left:,}"
    if left >= MIN_UNRESERVED_CONCURRENCY:
        return Finding(True, f"{found} (AWS keeps at least {MIN_UNRESERVED_CONCURRENCY}).")
    knobs = []
    if consumer:
        knobs.append("RESERVED_CONCURRENCY=off make deploy")
    if ingest:
        knobs.append(f"INGEST_RESERVED_CONCURRENCY of at most {max(0, ingest - (MIN_UNRESERVED_CONCURRENCY - left))}")
    return Finding(
        False,
        f"{found}, below AWS's minimum of {MIN_UNRESERVED_CONCURRENCY} unreserved.",
        f"{', or '.join(knobs)}, or request a quota of at least "
        f"{total + MIN_UNRESERVED_CONCURRENCY - left:,} ({QUOTA_WHERE}).",
    )


def _current_reservations(inputs: Inputs) -> dict[str, int]:
    """This stack's functions' reservations now, by role ("consumer", "ingest"); none before the first deploy."""
    clients, config = inputs.clients, inputs.config
    try:
        resources = clients.cloudformation.describe_stack_resources(StackName=stack_name(config))["StackResources"]
    except ClientError as exc:
        if _code(exc) == "ValidationError":  # the stack does not exist yet
            return {}
        raise
    functions = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in resources
        if r["ResourceType"] == "AWS::Lambda::Function" and r.get("PhysicalResourceId")
    }
    current = {}
    for role, prefix in (("consumer", CONSUMER_LOGICAL_ID), ("ingest", INGEST_LOGICAL_ID)):
        names = [name for logical_id, name in functions.items() if logical_id.startswith(prefix)]
        if names:
            answer = clients.lambda_.get_function_concurrency(FunctionName=names[0])
            current[role] = int(answer.get("ReservedConcurrentExecutions", 0))
    return current


def check_api_gateway_throttle(inputs: Inputs) -> Finding:
    """The account's API Gateway throttle against the stage throttle and what the capacity model needs.

    The account throttle caps every API in the region together: "Throttle quota per account, per Region across
    HTTP APIs, REST APIs, WebSocket APIs, and WebSocket callback APIs" (Amazon API Gateway quotas,
    https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html), so a stage throttle above it
    promises clients a rate the account refuses with 429s. The burst is not requested on its own: "The burst
    quota is determined by the API Gateway service team based on the overall RPS quota" (same page).
    apigateway:GetAccount returns both as throttleSettings (rateLimit, burstLimit; API Gateway REST API
    reference, GetAccount)."""
    config = inputs.config
    throttle = inputs.apigateway_account().get("throttleSettings")
    if not throttle:
        return Finding(False, "GetAccount returned no throttleSettings.", "ask AWS Support for the account throttle.")
    rate, burst = float(throttle["rateLimit"]), int(throttle["burstLimit"])
    rate_knobs, burst_knobs = _throttle_knobs(config)
    stage_rate, stage_burst = getattr(config, rate_knobs[0]), getattr(config, burst_knobs[0])
    increases = inputs.assessment.quota_increases
    load_rate = increases.get("apigw-rate", 0.0)
    found = (
        f"account throttle {rate:,.0f} requests/s, burst {burst:,}; the stage asks {stage_rate:,}/s, burst "
        f"{stage_burst:,} ({rate_knobs[0]}, {burst_knobs[0]})"
    )
    if load_rate:
        found += f", the capacity model {load_rate:,.0f}/s at {inputs.load_text}"
    fixes = []
    if load_rate > rate:
        fixes.append(f"request a throttle rate of at least {load_rate:,.0f} requests/s ({APIGW_RATE_WHERE})")
    elif stage_rate > rate:
        over = [knob for knob in rate_knobs if getattr(config, knob) > rate]
        fixes.append(
            f"set {' and '.join(over)} to at most {rate:,.0f}, or request a throttle rate of at least "
            f"{stage_rate:,} requests/s ({APIGW_RATE_WHERE})"
        )
    if stage_burst > burst:
        over = [knob for knob in burst_knobs if getattr(config, knob) > burst]
        fixes.append(
            f"set {' and '.join(over)} to at most {burst:,}, or request a higher throttle rate: AWS sets the "
            "account burst from it (the burst is not requested on its own)"
        )
    if not fixes:
        return Finding(True, f"{found}.")
    return Finding(False, f"{found}: more than the account allows.", "; ".join(fixes) + ".")


def _throttle_knobs(config: PipelineConfig) -> tuple[list[str], list[str]]:
    """The throttle knobs the deployed API applies, the stage's first (rate knobs, burst knobs). REST with API keys:
    the stage's STAGE_THROTTLE_*, and THROTTLE_* in the key's usage plan; REST without keys: THROTTLE_* on the stage
    (infra/api_construct.py); HTTP API: STAGE_THROTTLE_* on the stage, THROTTLE_* on the payloads routes."""
    if config.API_KIND == "rest" and not config.REQUIRE_API_KEY:
        return ["THROTTLE_RATE_LIMIT"], ["THROTTLE_BURST_LIMIT"]
    return (
        ["STAGE_THROTTLE_RATE_LIMIT", "THROTTLE_RATE_LIMIT"],
        ["STAGE_THROTTLE_BURST_LIMIT", "THROTTLE_BURST_LIMIT"],
    )


def check_powertools_layer(inputs: Inputs) -> Finding:
    clients, config = inputs.clients, inputs.config
    if config.POWERTOOLS_SOURCE == "bundle":
        return Finding(
            True,
            f"POWERTOOLS_SOURCE=bundle: Powertools {config.POWERTOOLS_VERSION} is in the "
            "function asset; no layer is used.",
        )
    parameter = config.powertools_layer_parameter
    try:
        layer_arn = clients.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as exc:
        if _code(exc) != "ParameterNotFound":
            raise
        return Finding(
            False,
            f"{parameter} does not exist in {clients.region}.",
            "POWERTOOLS_SOURCE=bundle make deploy (puts Powertools into the function asset), "
            "or a POWERTOOLS_VERSION/PYTHON_VERSION published in this region.",
        )
    return Finding(True, f"{parameter} resolves to {layer_arn}.")


def check_cdk_bootstrap(inputs: Inputs) -> Finding:
    clients = inputs.clients
    try:
        [stack] = clients.cloudformation.describe_stacks(StackName=BOOTSTRAP_STACK)["Stacks"]
    except ClientError as exc:
        if _code(exc) != "ValidationError":
            raise
        return Finding(
            False, f"no {BOOTSTRAP_STACK} stack in {clients.region}.", "make bootstrap (once per account and region)."
        )
    status = stack["StackStatus"]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    version = outputs.get("BootstrapVersion", "")
    found = f"{BOOTSTRAP_STACK} is {status}, bootstrap version {version or 'unknown'}"
    if status not in _USABLE_STACK_STATES:
        return Finding(False, f"{found}.", f"repair or delete the {BOOTSTRAP_STACK} stack, then make bootstrap.")
    if version.isdigit() and int(version) < MIN_BOOTSTRAP_VERSION:
        return Finding(
            False,
            f"{found}; this CDK needs {MIN_BOOTSTRAP_VERSION} or later.",
            "make bootstrap (upgrades it in place).",
        )
    return Finding(True, f"{found}.")


def check_api_gateway_role(inputs: Inputs) -> Finding:
    config = inputs.config
    # The stage logs (execution and access logs), and API Gateway writes them only through the
    # account's CloudWatch role, one per region (API Gateway Developer Guide, "Set up CloudWatch
    # logging for REST APIs": "you must grant API Gateway permission to read and write logs").
    role_arn = inputs.apigateway_account().get("cloudwatchRoleArn", "")
    # CDK names the role it creates <stack name>-<construct id>..., so a redeploy recognises its own.
    ours = role_arn.rsplit("/", 1)[-1].startswith(f"{stack_name(config)}-")
    region = inputs.clients.region
    if config.API_GATEWAY_CLOUDWATCH_ROLE:
        if not role_arn:
            return Finding(True, f"none set in {region}; this stack creates one.")
        if ours:
            return Finding(True, f"{role_arn} is this stack's own.")
        return Finding(
            True,
            f"{role_arn} is set; this stack would replace it with its own role. It is one "
            f"setting per region, used by every REST API in {region}. To keep it instead: "
            "API_GATEWAY_CLOUDWATCH_ROLE=false.",
        )
    if role_arn:
        return Finding(True, f"API_GATEWAY_CLOUDWATCH_ROLE=false: the account's {role_arn} is used.")
    return Finding(
        False,
        f"API_GATEWAY_CLOUDWATCH_ROLE=false, but {region} has no API Gateway CloudWatch role, "
        "and the stage's logging cannot be turned on without one.",
        "API_GATEWAY_CLOUDWATCH_ROLE=true make deploy, or set the role (API Gateway console > Settings, "
        "or aws apigateway update-account).",
    )


def check_alarm_recipients(inputs: Inputs) -> Finding:
    """Whether the alarms reach anyone: the stack's topic has a subscriber only with ALARM_EMAIL, and CloudWatch
    publishes to ALARM_TOPIC_ARN as well when it is set. No AWS read: a stack that pages no one is refused unless
    ALARMS_TO=none says so on purpose (issue 31)."""
    config = inputs.config
    runbook = (
        f"alarm texts link {config.RUNBOOK_URL}"
        if config.RUNBOOK_URL
        else "alarm texts name docs/RUNBOOK.md (RUNBOOK_URL=<your runbook's address> makes them a link)"
    )
    recipients = [
        text
        for text, on in (
            (f"email {config.ALARM_EMAIL} (ALARM_EMAIL)", bool(config.ALARM_EMAIL)),
            (f"topic {config.ALARM_TOPIC_ARN} (ALARM_TOPIC_ARN)", bool(config.ALARM_TOPIC_ARN)),
        )
        if on
    ]
    if recipients:
        return Finding(True, f"alarms go to {' and '.join(recipients)}; {runbook}.")
    if config.ALARMS_TO == "none":
        return Finding(True, f"ALARMS_TO=none: the alarms reach no one, on purpose; {runbook}.")
    return Finding(
        False,
        "the alarms would reach no one (ALARM_EMAIL and ALARM_TOPIC_ARN are empty).",
        "set ALARM_EMAIL=<address>, or ALARM_TOPIC_ARN=<an existing SNS topic>, or ALARMS_TO=none to deploy "
        "without paging anyone.",
    )


CHECKS: tuple[tuple[str, Callable[[Inputs], Finding]], ...] = (
    ("CDK bootstrap", check_cdk_bootstrap),
    ("Capacity model", check_capacity_model),
    ("Lambda concurrency", check_lambda_concurrency),
    ("Lambda reservations", check_lambda_reservations),
    ("API Gateway throttle", check_api_gateway_throttle),
    ("Powertools layer", check_powertools_layer),
    ("API Gateway CloudWatch role", check_api_gateway_role),
    ("Alarm recipients", check_alarm_recipients),
)


def run_checks(inputs: Inputs) -> list[tuple[str, Finding]]:
    """Every check's finding. A check whose read was refused (say, AccessDenied) is a ✗ naming the error.
    (Credentials that do not work at all were already refused by STS in main: exit 2.)"""
    findings = []
    for name, check in CHECKS:
        try:
            finding = check(inputs)
        except ClientError as exc:
            finding = Finding(
                False,
                f"could not check: {_code(exc)}: {_message(exc)}",
                "allow this read-only call to the identity you deploy with.",
            )
        findings.append((name, finding))
    return findings


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.ops.preflight", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rpm", type=float, help="requests per minute (default: the PROFILE's design load)")
    parser.add_argument("--payloads", type=int, help="payloads per request (default: the PROFILE's design load)")
    parser.add_argument("--payload-bytes", type=int, help="bytes of one payload (default: the PROFILE's design load)")
    arguments = parser.parse_args(argv)
    for name in ("rpm", "payloads", "payload_bytes"):
        value = getattr(arguments, name)
        if value is not None and not 0 < value < math.inf:
            parser.error(f"--{name.replace('_', '-')} must be a number above 0")
    # The capacity model prices one payload per SQS message: a larger one has no message to travel in.
    if arguments.payload_bytes is not None and arguments.payload_bytes > MAX_PAYLOAD_BYTES_CEILING:
        parser.error(f"--payload-bytes must be at most {MAX_PAYLOAD_BYTES_CEILING} (one SQS message with its envelope)")
    return arguments


def main(
    argv: list[str] | None = None,
    *,
    clients: Clients | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    """Print one line per check; 0 nothing blocks, 1 something blocks, 2 AWS could not be asked (or bad arguments)."""
    arguments = _arguments(argv)
    out = out or sys.stdout
    environ = os.environ if environ is None else environ
    try:
        config = PipelineConfig.resolve(cdk_json_context(), environ)
    except ConfigError as exc:
        print(f"{BLOCKED} config: {exc}", file=out)
        return 1
    rpm, payloads, payload_bytes = design_load(config) or (None, None, None)
    rpm, payloads, payload_bytes = (
        arguments.rpm or rpm,
        arguments.payloads or payloads,
        arguments.payload_bytes or payload_bytes,
    )
    if rpm is None or payloads is None or payload_bytes is None:
        print(
            f"{BLOCKED} PROFILE={config.PROFILE} has no design load: pass --rpm, --payloads, --payload-bytes", file=out
        )
        return 2
    load = capacity.load_of(rpm, payloads, payload_bytes)
    assessment = capacity.assess(config, load)
    try:
        # AWS_REGION first, as the CDK CLI (AWS SDK for JavaScript) reads it; boto3 alone reads only
        # AWS_DEFAULT_REGION and the profile's region, which it then falls back to.
        clients = clients or Clients.from_session(boto3.Session(region_name=environ.get("AWS_REGION") or None))
        account = clients.sts.get_caller_identity()["Account"]
        print(f"Preflight for {stack_name(config)} in account {account}, region {clients.region} (read-only)", file=out)
        findings = run_checks(Inputs(clients, config, load, assessment))
    except ClientError as exc:
        print(f"{BLOCKED} cannot ask AWS: {_code(exc)}: {_message(exc)}", file=out)
        return 2
    except (CannotAskAws, BotoCoreError) as exc:
        print(f"{BLOCKED} cannot ask AWS: {exc}", file=out)
        return 2
    for name, finding in findings:
        print(finding.line(name), file=out)
    blocking = sum(not finding.ok for _, finding in findings)
    if blocking:
        print(f"{blocking} check(s) would block the deploy. Fix them, or SKIP_PREFLIGHT=1 make deploy.", file=out)
        return 1
    print("Nothing blocks the deploy.", file=out)
    return 0


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")).strip()


if __name__ == "__main__":
    sys.exit(main())
