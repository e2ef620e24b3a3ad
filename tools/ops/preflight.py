"""make preflight: read-only checks of your AWS account and region for what would block `make deploy`.

    python -m tools.ops.preflight            # same config as the stack: env > cdk.json context > default

One line per check: ✓ or ✗, what was found, and for ✗ the fix (a knob, or the quota to request
and where). Exit 0: nothing blocks the deploy. 1: something does. 2: AWS could not be asked at all
(no region, no or invalid credentials, no network). Only read calls are made, with the normal boto3
credentials chain and region (AWS_PROFILE, AWS_REGION, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.config import ConfigError, PipelineConfig, cdk_json_context

OK, BLOCKED = "✓", "✗"
# Lambda refuses a reservation that leaves the account fewer unreserved concurrent executions than
# this (AWS Lambda API Reference, PutFunctionConcurrency: "as long as you leave at least 100
# simultaneous executions unreserved"; Developer Guide, "Configuring reserved concurrency").
MIN_UNRESERVED_CONCURRENCY = 100
QUOTA_WHERE = 'Service Quotas console > AWS services > AWS Lambda > "Concurrent executions"'
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


# --- the checks: each reads, never writes, and says what it found ------------------------------------


def check_lambda_concurrency(clients: Clients, config: PipelineConfig) -> Finding:
    limit = clients.lambda_.get_account_settings()["AccountLimit"]
    total, unreserved = limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]
    if config.RESERVED_CONCURRENCY == "off":
        return Finding(
            True,
            f"RESERVED_CONCURRENCY=off reserves nothing; the consumer's "
            f"{config.consumer_reserved_concurrency} workers share the account's {total} concurrent "
            "executions with every other function.",
        )
    wanted = config.consumer_reserved_concurrency
    # On a redeploy the consumer's current reservation is already counted out of `unreserved`.
    current = _current_consumer_reservation(clients, config)
    left = unreserved + current - wanted
    found = (
        f"account quota {total}, {unreserved} unreserved; reserving {wanted} for the consumer"
        f"{f' (now {current})' if current else ''} leaves {left}"
    )
    if left >= MIN_UNRESERVED_CONCURRENCY:
        return Finding(True, f"{found} (AWS keeps at least {MIN_UNRESERVED_CONCURRENCY}).")
    return Finding(
        False,
        f"{found}, below AWS's minimum of {MIN_UNRESERVED_CONCURRENCY} unreserved.",
        f"RESERVED_CONCURRENCY=off make deploy, or request a quota of at least "
        f"{total + MIN_UNRESERVED_CONCURRENCY - left} ({QUOTA_WHERE}).",
    )


def _current_consumer_reservation(clients: Clients, config: PipelineConfig) -> int:
    try:
        resources = clients.cloudformation.describe_stack_resources(StackName=stack_name(config))["StackResources"]
    except ClientError as exc:
        if _code(exc) == "ValidationError":  # the stack does not exist yet
            return 0
        raise
    # The consumer's logical id starts with its construct path, Workers/Consumer (infra/stack.py).
    consumers = [
        r["PhysicalResourceId"]
        for r in resources
        if r["ResourceType"] == "AWS::Lambda::Function"
        and r.get("PhysicalResourceId")
        and r["LogicalResourceId"].startswith("WorkersConsumer")
    ]
    if not consumers:
        return 0
    answer = clients.lambda_.get_function_concurrency(FunctionName=consumers[0])
    return int(answer.get("ReservedConcurrentExecutions", 0))


def check_powertools_layer(clients: Clients, config: PipelineConfig) -> Finding:
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


def check_cdk_bootstrap(clients: Clients, config: PipelineConfig) -> Finding:
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


def check_api_gateway_role(clients: Clients, config: PipelineConfig) -> Finding:
    # The stage logs (execution and access logs), and API Gateway writes them only through the
    # account's CloudWatch role, one per region (API Gateway Developer Guide, "Set up CloudWatch
    # logging for REST APIs": "you must grant API Gateway permission to read and write logs").
    role_arn = clients.apigateway.get_account().get("cloudwatchRoleArn", "")
    # CDK names the role it creates <stack name>-<construct id>..., so a redeploy recognises its own.
    ours = role_arn.rsplit("/", 1)[-1].startswith(f"{stack_name(config)}-")
    region = clients.region
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


CHECKS: tuple[tuple[str, Callable[[Clients, PipelineConfig], Finding]], ...] = (
    ("CDK bootstrap", check_cdk_bootstrap),
    ("Lambda concurrency", check_lambda_concurrency),
    ("Powertools layer", check_powertools_layer),
    ("API Gateway CloudWatch role", check_api_gateway_role),
)


def run_checks(clients: Clients, config: PipelineConfig) -> list[tuple[str, Finding]]:
    """Every check's finding. A check whose read was refused (say, AccessDenied) is a ✗ naming the error.
    (Credentials that do not work at all were already refused by STS in main: exit 2.)"""
    findings = []
    for name, check in CHECKS:
        try:
            finding = check(clients, config)
        except ClientError as exc:
            finding = Finding(
                False,
                f"could not check: {_code(exc)}: {_message(exc)}",
                "allow this read-only call to the identity you deploy with.",
            )
        findings.append((name, finding))
    return findings


def main(
    argv: list[str] | None = None,
    *,
    clients: Clients | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    """Print one line per check; 0 nothing blocks, 1 something blocks, 2 AWS could not be asked."""
    argparse.ArgumentParser(
        prog="python -m tools.ops.preflight", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args(argv)
    out = out or sys.stdout
    environ = os.environ if environ is None else environ
    try:
        config = PipelineConfig.resolve(cdk_json_context(), environ)
    except ConfigError as exc:
        print(f"{BLOCKED} config: {exc}", file=out)
        return 1
    try:
        # AWS_REGION first, as the CDK CLI (AWS SDK for JavaScript) reads it; boto3 alone reads only
        # AWS_DEFAULT_REGION and the profile's region, which it then falls back to.
        clients = clients or Clients.from_session(boto3.Session(region_name=environ.get("AWS_REGION") or None))
        account = clients.sts.get_caller_identity()["Account"]
        print(f"Preflight for {stack_name(config)} in account {account}, region {clients.region} (read-only)", file=out)
        findings = run_checks(clients, config)
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
