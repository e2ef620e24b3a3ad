"""`make preflight` as a user meets it: the lines printed and the exit code, for each check's ✓ and ✗
and for "AWS cannot be asked". AWS answers through botocore's Stubber (moto lacks
lambda:GetAccountSettings, lambda:GetFunctionConcurrency and apigateway:GetAccount's throttleSettings); a
stub answers only the exact read it expects, so an unexpected or writing call fails the test. The capacity
model (tools.models.capacity) runs for real: where a figure is the model's, the test asks the model for it."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra.config import PROFILES, PipelineConfig
from pipeline.contract import MAX_PAYLOAD_BYTES_CEILING
from tools.models import capacity
from tools.ops import preflight
from tools.ops.preflight import Clients

REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK = "IngestPipeline-prod"
LAYER_PARAMETER = "/aws/service/powertools/python/arm64/python3.14/3.37.0"
LAYER_ARN = f"arn:aws:lambda:{REGION}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:30"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/team-x-apigateway-logs"
OUR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-ApiCloudWatchRoleCCA56614-AbCdEf"
FUNCTIONS = {  # logical id -> physical name, as CloudFormation lists the deployed stack's functions
    "consumer": ("WorkersConsumer5652D1E4", f"{STACK}-WorkersConsumer5652D1E4-XyZ"),
    "ingest": ("ApiIngest1A2B3C4D", f"{STACK}-ApiIngest1A2B3C4D-AbC"),
}
DEV_LOAD = "300 requests/min x 10 payloads of 1,024 B"
SEED_LOAD = "1,000,000 requests/min x 10 payloads of 1,024 B"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Account:
    """What the fake account holds. Defaults: a healthy account where nothing blocks the default deploy."""

    quota: int = 1000
    unreserved: int = 1000
    deployed: dict[str, int] | None = None  # the stack's functions' reservations now; None: not deployed yet
    apigw_rate: float = 10_000.0  # AWS's default account throttle in most regions (API Gateway quotas)
    apigw_burst: int = 5_000
    layer_parameters: dict[str, str] = field(default_factory=lambda: {LAYER_PARAMETER: LAYER_ARN})
    bootstrap: tuple[str, str] | None = ("UPDATE_COMPLETE", "28")  # (status, version); None: not bootstrapped
    cloudwatch_role: str = ""
    refuse: dict[str, str] = field(default_factory=dict)  # operation -> error code AWS answers instead


# The same account after the quota increases PROFILE=scale needs at the seed load were granted
RAISED: dict[str, Any] = {"quota": 5000, "unreserved": 5000, "apigw_rate": 25_000.0, "apigw_burst": 12_500}


def client_error(stub: Stubber, method: str, code: str, status: int = 400) -> None:
    stub.add_client_error(method, service_error_code=code, service_message=f"{code} (stubbed)", http_status_code=status)


def stub_account(account: Account, config: PipelineConfig) -> tuple[Clients, list[Stubber]]:
    """Clients whose Stubbers answer, in call order, the reads preflight makes for this config."""
    session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    clients = Clients(
        region=REGION,
        sts=session.client("sts"),
        lambda_=session.client("lambda"),
        ssm=session.client("ssm"),
        cloudformation=session.client("cloudformation"),
        apigateway=session.client("apigateway"),
    )
    sts, lam, ssm, cfn, apigw = (
        Stubber(c) for c in (clients.sts, clients.lambda_, clients.ssm, clients.cloudformation, clients.apigateway)
    )
    if "GetCallerIdentity" in account.refuse:
        client_error(sts, "get_caller_identity", account.refuse["GetCallerIdentity"], 403)
    else:
        sts.add_response(
            "get_caller_identity",
            {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/dev", "UserId": "AIDAEXAMPLE"},
        )
    # CDK bootstrap
    if account.bootstrap is None:
        client_error(cfn, "describe_stacks", "ValidationError")
    else:
        status, version = account.bootstrap
        cfn.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "CDKToolkit",
                        "StackStatus": status,
                        "CreationTime": "2026-01-01T00:00:00Z",
                        "Outputs": [{"OutputKey": "BootstrapVersion", "OutputValue": version}],
                    }
                ]
            },
            {"StackName": "CDKToolkit"},
        )
    # Lambda concurrency, then reservations: one GetAccountSettings for both
    if "GetAccountSettings" in account.refuse:
        client_error(lam, "get_account_settings", account.refuse["GetAccountSettings"], 403)
    else:
        lam.add_response(
            "get_account_settings",
            {
                "AccountLimit": {
                    "ConcurrentExecutions": account.quota,
                    "UnreservedConcurrentExecutions": account.unreserved,
                }
            },
        )
        if config.consumer_reservation or config.ingest_reservation:
            if account.deployed is None:
                client_error(cfn, "describe_stack_resources", "ValidationError")
            else:
                resources = [
                    {
                        "LogicalResourceId": FUNCTIONS[role][0],
                        "PhysicalResourceId": FUNCTIONS[role][1],
                        "ResourceType": "AWS::Lambda::Function",
                        "Timestamp": "2026-01-01T00:00:00Z",
                        "ResourceStatus": "UPDATE_COMPLETE",
                    }
                    for role in account.deployed
                ]
                cfn.add_response("describe_stack_resources", {"StackResources": resources}, {"StackName": STACK})
                for role in ("consumer", "ingest"):
                    if role in account.deployed:
                        # AWS leaves ReservedConcurrentExecutions out when nothing is reserved
                        answer = (
                            {"ReservedConcurrentExecutions": account.deployed[role]} if account.deployed[role] else {}
                        )
                        lam.add_response("get_function_concurrency", answer, {"FunctionName": FUNCTIONS[role][1]})
    # API Gateway throttle and CloudWatch role: one GetAccount for both
    gateway: dict[str, Any] = {"throttleSettings": {"rateLimit": account.apigw_rate, "burstLimit": account.apigw_burst}}
    if account.cloudwatch_role:
        gateway["cloudwatchRoleArn"] = account.cloudwatch_role
    apigw.add_response("get_account", gateway)
    # Powertools layer
    if config.POWERTOOLS_SOURCE == "layer":
        name = config.powertools_layer_parameter
        if name in account.layer_parameters:
            ssm.add_response(
                "get_parameter",
                {"Parameter": {"Name": name, "Value": account.layer_parameters[name], "Type": "String"}},
                {"Name": name},
            )
        else:
            client_error(ssm, "get_parameter", "ParameterNotFound")
    stubs = [sts, lam, ssm, cfn, apigw]
    for stub in stubs:
        stub.activate()
    return clients, stubs


def run_preflight(account: Account, *argv: str, **knobs: Any) -> tuple[int, list[str]]:
    """Run `python -m tools.ops.preflight ARGV` with these knobs in the environment against the fake account."""
    environ = {name: str(value) for name, value in knobs.items()}
    if not {"ALARM_EMAIL", "ALARM_TOPIC_ARN", "ALARMS_TO"} & set(knobs):
        environ["ALARM_EMAIL"] = "oncall@example.com"  # the other checks' tests: a stack whose alarms reach someone
    config = PipelineConfig.resolve({}, environ)
    clients, stubs = stub_account(account, config)
    out = io.StringIO()
    code = preflight.main(list(argv), clients=clients, environ=environ, out=out)
    if code != 2:  # AWS was asked: every read the fake expected was made
        for stub in stubs:
            stub.assert_no_pending_responses()
    return code, out.getvalue().splitlines()


def line(lines: list[str], check: str) -> str:
    [found] = [text for text in lines if text[2:].startswith(f"{check}:")]
    return found


def model(rpm: float, payloads: int = 10, payload_bytes: int = 1024, **knobs: Any) -> capacity.Assessment:
    """What tools.models.capacity says of this load under these knobs (the figures preflight compares)."""
    config = PipelineConfig.resolve({}, {name: str(value) for name, value in knobs.items()})
    return capacity.assess(config, capacity.load_of(rpm, payloads, payload_bytes))


# --- a healthy account ----------------------------------------------------------------------------


def test_a_healthy_account_passes_every_check_and_exits_0() -> None:
    # Given a bootstrapped account with the default quotas, the layer parameter and no logging role yet
    # When preflight runs with the default profile (its design load: make loadtest's 5 requests/s)
    code, lines = run_preflight(Account())
    # Then every check is ✓, says what it found, and nothing blocks
    assert code == 0
    assert lines[0] == f"Preflight for {STACK} in account {ACCOUNT}, region {REGION} (read-only)"
    assert line(lines, "CDK bootstrap") == "✓ CDK bootstrap: CDKToolkit is UPDATE_COMPLETE, bootstrap version 28."
    assert line(lines, "Capacity model") == (
        f"✓ Capacity model: this configuration carries {DEV_LOAD} (quota increases checked below)."
    )
    assert line(lines, "Lambda concurrency") == (
        f"✓ Lambda concurrency: account quota 1,000; the capacity model needs 1,000 at {DEV_LOAD} (AWS's default "
        "quota, which it assumes)."
    )
    assert line(lines, "Lambda reservations") == (
        "✓ Lambda reservations: account quota 1,000, 1,000 unreserved; reserving 10 for the consumer leaves 990 "
        "(AWS keeps at least 100)."
    )
    assert line(lines, "API Gateway throttle") == (
        "✓ API Gateway throttle: account throttle 10,000 requests/s, burst 5,000; the stage asks 5,000/s, burst "
        "5,000 (STAGE_THROTTLE_RATE_LIMIT, STAGE_THROTTLE_BURST_LIMIT)."
    )
    assert line(lines, "Powertools layer") == f"✓ Powertools layer: {LAYER_PARAMETER} resolves to {LAYER_ARN}."
    assert line(lines, "API Gateway CloudWatch role") == (
        f"✓ API Gateway CloudWatch role: none set in {REGION}; this stack creates one."
    )
    assert line(lines, "Alarm recipients") == (
        "✓ Alarm recipients: alarms go to email oncall@example.com (ALARM_EMAIL); alarm texts name docs/RUNBOOK.md "
        "(RUNBOOK_URL=<your runbook's address> makes them a link)."
    )
    assert lines[-1] == "Nothing blocks the deploy."
    assert len(lines) == 10


# --- Lambda concurrency: what the capacity model needs at the load, reserved or not ----------------


def test_the_scale_profile_in_a_default_account_names_the_quotas_the_model_asks_for() -> None:
    # Given PROFILE=scale (both functions reserved) in an account with AWS's default quotas
    code, lines = run_preflight(Account(), PROFILE="scale")
    # Then the capacity model carries the seed load only after increases, and preflight names each one
    wanted = model(1_000_000, PROFILE="scale").quota_increases
    assert code == 1
    assert line(lines, "Capacity model") == (
        f"✓ Capacity model: this configuration carries {SEED_LOAD} (quota increases checked below)."
    )
    lambda_quota = int(wanted["lambda-concurrency"])
    assert line(lines, "Lambda concurrency") == (
        f"✗ Lambda concurrency: account quota 1,000; the capacity model needs {lambda_quota:,} at {SEED_LOAD} (the "
        f"increase it lists). Fix: request a quota of at least {lambda_quota:,} "
        '(Service Quotas console > AWS services > AWS Lambda > "Concurrent executions").'
    )
    # The consumer's 10 x MAX_POLLERS and the ingest's reservation do not fit the default quota either
    assert line(lines, "Lambda reservations").startswith(
        "✗ Lambda reservations: account quota 1,000, 1,000 unreserved; reserving 2450 for the consumer and 2100 for "
        "the ingest"
    )
    throttle = line(lines, "API Gateway throttle")
    assert throttle.startswith(
        "✗ API Gateway throttle: account throttle 10,000 requests/s, burst 5,000; the stage asks 20,000/s, burst "
        f"5,000 (STAGE_THROTTLE_RATE_LIMIT, STAGE_THROTTLE_BURST_LIMIT), the capacity model "
        f"{wanted['apigw-rate']:,.0f}/s at {SEED_LOAD}: more than the account allows. Fix: request a throttle rate "
        f"of at least {wanted['apigw-rate']:,.0f} requests/s"
    )
    assert "BURST_LIMIT" not in throttle.split("Fix:")[1]  # the profile's bursts stay within the account's 5,000


def test_the_scale_profile_passes_once_the_quotas_are_raised() -> None:
    code, lines = run_preflight(Account(**RAISED), PROFILE="scale")
    assert code == 0, lines
    assert line(lines, "Lambda concurrency").startswith("✓ Lambda concurrency: account quota 5,000;")


def test_a_new_account_with_a_quota_of_10_is_short_of_what_the_model_assumes_even_unreserved() -> None:
    # Given a new account (10 concurrent executions in all) and RESERVED_CONCURRENCY=off
    code, lines = run_preflight(Account(quota=10, unreserved=10), RESERVED_CONCURRENCY="off")
    # Then nothing reserved cannot fail the deploy ...
    assert line(lines, "Lambda reservations") == (
        "✓ Lambda reservations: nothing reserved (RESERVED_CONCURRENCY=off, INGEST_RESERVED_CONCURRENCY=0): the "
        "consumer and the ingest share the account's unreserved executions with every other function."
    )
    # ... but the load's need is still judged: the model carries it on AWS's default quota, which this account lacks
    assert code == 1
    assert line(lines, "Lambda concurrency") == (
        f"✗ Lambda concurrency: account quota 10; the capacity model needs 1,000 at {DEV_LOAD} (AWS's default "
        "quota, which it assumes). Fix: request a quota of at least 1,000 "
        '(Service Quotas console > AWS services > AWS Lambda > "Concurrent executions").'
    )


def test_the_flags_replace_the_design_load() -> None:
    # Given PROFILE=scale sized down for a tenth of the seed load (pollers for it, nothing reserved) in an account
    # with AWS's default Lambda quota, asked about that tenth
    smaller = {"PROFILE": "scale", "MIN_POLLERS": "20", "MAX_POLLERS": "30", "RESERVED_CONCURRENCY": "off"}
    smaller |= {"INGEST_RESERVED_CONCURRENCY": "0"}
    code, lines = run_preflight(Account(**RAISED | {"quota": 1000, "unreserved": 1000}), "--rpm", "100000", **smaller)
    # Then the model carries it on the default quota: the Lambda line passes where the seed load's does not
    assert "lambda-concurrency" not in model(100_000, **smaller).quota_increases
    assert code == 0, lines
    assert line(lines, "Lambda concurrency") == (
        "✓ Lambda concurrency: account quota 1,000; the capacity model needs 1,000 at 100,000 requests/min x 10 "
        "payloads of 1,024 B (AWS's default quota, which it assumes)."
    )


def test_a_load_this_configuration_cannot_carry_names_make_capacity() -> None:
    # Given the default profile (one payload per object, MAX_WORKERS=10) asked about the seed load
    assert model(1_000_000).exit_code == 1
    code, lines = run_preflight(Account(**RAISED), "--rpm", "1000000")
    assert code == 1
    assert line(lines, "Capacity model") == (
        f"✗ Capacity model: this configuration does not carry {SEED_LOAD}. Fix: `make capacity RPM=1000000 "
        "PAYLOADS=10 PAYLOAD_BYTES=1024` names the stage and the knob to change (or pass a smaller --rpm if that "
        "is not your peak)."
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--rpm", "0"], "--rpm must be a number above 0"),
        (["--rpm", "nan"], "--rpm must be a number above 0"),
        (["--rpm", "inf"], "--rpm must be a number above 0"),
        (["--rpm", "many"], "argument --rpm: invalid float value: 'many'"),
        (["--payloads", "-1"], "--payloads must be a number above 0"),
        (["--payload-bytes", "0"], "--payload-bytes must be a number above 0"),
        (
            ["--payload-bytes", str(MAX_PAYLOAD_BYTES_CEILING + 1)],
            f"--payload-bytes must be at most {MAX_PAYLOAD_BYTES_CEILING} (one SQS message with its envelope)",
        ),
    ],
)
def test_a_load_the_model_cannot_judge_is_refused_in_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        preflight.main(argv, environ={})
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.splitlines()[-1].endswith(says) and "Traceback" not in error


def test_the_readme_states_the_design_loads_and_the_default_quota_preflight_uses() -> None:
    readme = (REPO_ROOT / "docs" / "DEPLOY.md").read_text()
    preflight_section = readme[readme.index("**Preflight.**") : readme.index("**When to set `INGEST_RESERVED")]
    for profile, (rpm, payloads, payload_bytes) in preflight.DESIGN_LOADS.items():
        assert (payloads, payload_bytes) == (10, 1024)  # docs/DEPLOY.md says "10 × 1 KiB" for both
        assert f"`PROFILE={profile}`" in preflight_section and f"{rpm:,.0f} requests/min of 10 × 1 KiB" in (
            preflight_section
        )
    assert f"AWS's default of {capacity.LAMBDA_ACCOUNT_CONCURRENCY:,}" in preflight_section
    assert f"AWS's default quota of {capacity.LAMBDA_ACCOUNT_CONCURRENCY:,}" in preflight_section


def test_every_profile_has_a_design_load() -> None:
    # A profile added without one would make preflight ask for --rpm on every deploy
    assert set(preflight.DESIGN_LOADS) == set(PROFILES)


# --- Lambda reservations: the consumer's and the ingest's must leave 100 unreserved --------------------


def test_a_new_account_with_a_quota_of_10_cannot_reserve_and_the_knob_is_named() -> None:
    code, lines = run_preflight(Account(quota=10, unreserved=10))
    assert code == 1
    assert line(lines, "Lambda reservations") == (
        "✗ Lambda reservations: account quota 10, 10 unreserved; reserving 10 for the consumer leaves 0, below AWS's "
        "minimum of 100 unreserved. Fix: RESERVED_CONCURRENCY=off make deploy, or request a quota of at least 110 "
        '(Service Quotas console > AWS services > AWS Lambda > "Concurrent executions").'
    )
    assert lines[-1].endswith("would block the deploy. Fix them, or SKIP_PREFLIGHT=1 make deploy.")


def test_leaving_exactly_100_unreserved_passes_and_99_does_not() -> None:
    assert "leaves 100 (AWS keeps" in line(run_preflight(Account(quota=110, unreserved=110))[1], "Lambda reservations")
    code, lines = run_preflight(Account(quota=110, unreserved=110), MAX_WORKERS="11")
    assert code == 1 and "request a quota of at least 111" in line(lines, "Lambda reservations")


def test_the_ingest_reservation_counts_with_the_consumers() -> None:
    # Given an account of 150 with nothing reserved, and both functions reserving: 10 + 50
    code, lines = run_preflight(Account(quota=150, unreserved=150), INGEST_RESERVED_CONCURRENCY="50")
    # Then 90 would be left: blocked, with both knobs and the quota as ways out
    assert code == 1
    assert line(lines, "Lambda reservations") == (
        "✗ Lambda reservations: account quota 150, 150 unreserved; reserving 10 for the consumer and 50 for the "
        "ingest leaves 90, below AWS's minimum of 100 unreserved. Fix: RESERVED_CONCURRENCY=off make deploy, or "
        "INGEST_RESERVED_CONCURRENCY of at most 40, or request a quota of at least 160 "
        '(Service Quotas console > AWS services > AWS Lambda > "Concurrent executions").'
    )


def test_an_ingest_reservation_alone_is_checked_when_the_consumer_is_unreserved() -> None:
    # Given PROFILE=scale with the consumer unreserved and the ingest reserving 950 of a quota of 1,000
    code, lines = run_preflight(
        Account(**RAISED | {"quota": 1000, "unreserved": 1000}),
        PROFILE="scale",
        RESERVED_CONCURRENCY="off",
        INGEST_RESERVED_CONCURRENCY="950",
    )
    found = line(lines, "Lambda reservations")
    assert found.startswith(
        "✗ Lambda reservations: account quota 1,000, 1,000 unreserved; reserving 950 for the ingest leaves 50"
    )
    assert "Fix: INGEST_RESERVED_CONCURRENCY of at most 900, or request a quota of at least 1,050" in found
    assert "RESERVED_CONCURRENCY=off" not in found.split("Fix:")[1]  # already off: not a way out


def test_a_redeploy_counts_the_stacks_current_reservations_as_available() -> None:
    # Given the stack deployed with 10 (consumer) + 20 (ingest) reserved, which AWS already subtracted
    account = Account(quota=140, unreserved=110, deployed={"consumer": 10, "ingest": 20})
    code, lines = run_preflight(account, INGEST_RESERVED_CONCURRENCY="20")
    # Then keeping both leaves 110: not a blocker (the quota of 140 is short for the load: another line's ✗)
    assert line(lines, "Lambda reservations") == (
        "✓ Lambda reservations: account quota 140, 110 unreserved; reserving 10 for the consumer and 20 for the "
        "ingest (now consumer 10, ingest 20) leaves 110 (AWS keeps at least 100)."
    )


def test_a_redeploy_with_an_unreserved_ingest_reads_no_reservation_for_it() -> None:
    account = Account(quota=120, unreserved=110, deployed={"consumer": 10, "ingest": 0})
    _, lines = run_preflight(account)
    assert line(lines, "Lambda reservations").startswith("✓ Lambda reservations:")
    assert "reserving 10 for the consumer (now consumer 10) leaves 110" in line(lines, "Lambda reservations")


def test_provisioned_pollers_reserve_10_per_poller() -> None:
    code, lines = run_preflight(Account(quota=1000, unreserved=1000), PROVISIONED_POLLERS="true", MAX_POLLERS="95")
    assert code == 1 and "reserving 950 for the consumer leaves 50" in line(lines, "Lambda reservations")


def test_preflight_finds_the_functions_the_stack_synthesizes() -> None:
    # preflight finds the deployed functions by the start of their logical ids; the stack must keep them
    from tests.infra import synth

    functions = synth().find_resources("AWS::Lambda::Function")
    handlers = {
        prefix: [f["Properties"].get("Handler") for name, f in functions.items() if name.startswith(prefix)]
        for prefix in (preflight.CONSUMER_LOGICAL_ID, preflight.INGEST_LOGICAL_ID)
    }
    assert handlers == {
        preflight.CONSUMER_LOGICAL_ID: ["consumer_handler.lambda_handler"],
        preflight.INGEST_LOGICAL_ID: ["ingest_handler.lambda_handler"],
    }


# --- API Gateway throttle: the account's against the stage's ---------------------------------------


def test_a_region_with_a_lower_default_throttle_names_the_knobs_to_lower() -> None:
    # Given a region whose default account throttle is 2,500 requests/s, burst 1,250 (API Gateway quotas)
    code, lines = run_preflight(Account(apigw_rate=2500.0, apigw_burst=1250))
    # Then the stage's 5,000/5,000 and the key's 2,000 burst are above it; the fix names each knob over it
    assert code == 1
    assert line(lines, "API Gateway throttle") == (
        "✗ API Gateway throttle: account throttle 2,500 requests/s, burst 1,250; the stage asks 5,000/s, burst 5,000 "
        "(STAGE_THROTTLE_RATE_LIMIT, STAGE_THROTTLE_BURST_LIMIT): more than the account allows. Fix: set "
        "STAGE_THROTTLE_RATE_LIMIT to at most 2,500, or request a throttle rate of at least 5,000 requests/s "
        '(Service Quotas console > AWS services > Amazon API Gateway > "Throttle rate"); set '
        "STAGE_THROTTLE_BURST_LIMIT and THROTTLE_BURST_LIMIT to at most 1,250, or request a higher throttle rate: "
        "AWS sets the account burst from it (the burst is not requested on its own)."
    )


def test_without_api_keys_the_stage_throttle_is_throttle_star() -> None:
    # REST without keys puts THROTTLE_* on the stage (infra/api_construct.py)
    code, lines = run_preflight(Account(apigw_rate=2500.0), REQUIRE_API_KEY="false", THROTTLE_RATE_LIMIT="3000")
    assert code == 1
    found = line(lines, "API Gateway throttle")
    assert "the stage asks 3,000/s, burst 2,000 (THROTTLE_RATE_LIMIT, THROTTLE_BURST_LIMIT)" in found
    assert "Fix: set THROTTLE_RATE_LIMIT to at most 2,500" in found


def test_the_http_api_is_judged_by_its_stage_and_route_throttles() -> None:
    # API_KIND=http: STAGE_THROTTLE_* on the stage, THROTTLE_* on the payloads routes; one account throttle for both
    knobs = {
        "API_KIND": "http",
        "DEVICE_AUTH": "on",
        "STAGE_THROTTLE_RATE_LIMIT": "12000",
        "THROTTLE_RATE_LIMIT": "11000",
    }
    code, lines = run_preflight(Account(), **knobs)
    assert code == 1
    found = line(lines, "API Gateway throttle")
    assert "the stage asks 12,000/s" in found
    assert "Fix: set STAGE_THROTTLE_RATE_LIMIT and THROTTLE_RATE_LIMIT to at most 10,000" in found


def test_a_throttle_at_the_accounts_exactly_passes() -> None:
    code, lines = run_preflight(Account(apigw_rate=5000.0, apigw_burst=5000))
    assert code == 0 and line(lines, "API Gateway throttle").startswith("✓ API Gateway throttle:")


# --- Powertools layer -----------------------------------------------------------------------------


def test_a_region_without_the_layer_parameter_is_blocked_and_bundle_is_the_fix() -> None:
    code, lines = run_preflight(Account(layer_parameters={}))
    assert code == 1
    assert line(lines, "Powertools layer") == (
        f"✗ Powertools layer: {LAYER_PARAMETER} does not exist in {REGION}. "
        "Fix: POWERTOOLS_SOURCE=bundle make deploy (puts Powertools into the function asset), "
        "or a POWERTOOLS_VERSION/PYTHON_VERSION published in this region."
    )


def test_the_parameter_asked_for_follows_python_and_powertools_versions() -> None:
    parameter = "/aws/service/powertools/python/arm64/python3.13/3.36.0"
    code, lines = run_preflight(
        Account(layer_parameters={parameter: LAYER_ARN}), PYTHON_VERSION="3.13", POWERTOOLS_VERSION="3.36.0"
    )
    assert code == 0 and line(lines, "Powertools layer").startswith(f"✓ Powertools layer: {parameter} resolves")


def test_with_powertools_bundled_no_layer_is_needed() -> None:
    # Given a region without the parameter, and POWERTOOLS_SOURCE=bundle (the stub fails any SSM read)
    code, lines = run_preflight(Account(layer_parameters={}), POWERTOOLS_SOURCE="bundle")
    assert code == 0
    assert line(lines, "Powertools layer") == (
        "✓ Powertools layer: POWERTOOLS_SOURCE=bundle: Powertools 3.37.0 is in the function asset; no layer is used."
    )


# --- CDK bootstrap --------------------------------------------------------------------------------


def test_an_account_never_bootstrapped_is_blocked_with_make_bootstrap() -> None:
    code, lines = run_preflight(Account(bootstrap=None))
    assert code == 1
    assert line(lines, "CDK bootstrap") == (
        f"✗ CDK bootstrap: no CDKToolkit stack in {REGION}. Fix: make bootstrap (once per account and region)."
    )


@pytest.mark.parametrize(
    ("bootstrap", "says"),
    [
        (("UPDATE_COMPLETE", "4"), "bootstrap version 4; this CDK needs 6 or later. Fix: make bootstrap"),
        (("ROLLBACK_COMPLETE", "28"), "CDKToolkit is ROLLBACK_COMPLETE, bootstrap version 28. Fix: repair or delete"),
    ],
)
def test_an_old_or_broken_bootstrap_is_blocked(bootstrap: tuple[str, str], says: str) -> None:
    code, lines = run_preflight(Account(bootstrap=bootstrap))
    assert code == 1 and says in line(lines, "CDK bootstrap")


# --- API Gateway CloudWatch role ------------------------------------------------------------------


def test_an_existing_role_of_someone_else_is_named_as_replaced_but_does_not_block() -> None:
    code, lines = run_preflight(Account(cloudwatch_role=OTHER_ROLE))
    assert code == 0
    assert line(lines, "API Gateway CloudWatch role") == (
        f"✓ API Gateway CloudWatch role: {OTHER_ROLE} is set; this stack would replace it with its own role. It is "
        f"one setting per region, used by every REST API in {REGION}. To keep it instead: "
        "API_GATEWAY_CLOUDWATCH_ROLE=false."
    )


def test_the_stacks_own_role_is_recognised_on_a_redeploy() -> None:
    code, lines = run_preflight(Account(cloudwatch_role=OUR_ROLE))
    assert code == 0 and line(lines, "API Gateway CloudWatch role").endswith(f"{OUR_ROLE} is this stack's own.")


def test_with_the_role_knob_off_the_accounts_role_is_used() -> None:
    code, lines = run_preflight(Account(cloudwatch_role=OTHER_ROLE), API_GATEWAY_CLOUDWATCH_ROLE="false")
    assert code == 0
    assert line(lines, "API Gateway CloudWatch role") == (
        f"✓ API Gateway CloudWatch role: API_GATEWAY_CLOUDWATCH_ROLE=false: the account's {OTHER_ROLE} is used."
    )


def test_with_the_role_knob_off_and_no_role_in_the_region_the_deploy_is_blocked() -> None:
    code, lines = run_preflight(Account(), API_GATEWAY_CLOUDWATCH_ROLE="false")
    assert code == 1
    assert line(lines, "API Gateway CloudWatch role").startswith(
        f"✗ API Gateway CloudWatch role: API_GATEWAY_CLOUDWATCH_ROLE=false, but {REGION} has no API Gateway "
        "CloudWatch role"
    )
    fix = "Fix: API_GATEWAY_CLOUDWATCH_ROLE=true make deploy, or set the role"
    assert fix in line(lines, "API Gateway CloudWatch role")


# --- several blockers, refused reads, bad config --------------------------------------------------


def test_every_blocker_is_reported_not_only_the_first() -> None:
    code, lines = run_preflight(Account(quota=10, unreserved=10, bootstrap=None, layer_parameters={}))
    assert code == 1
    assert [text[0] for text in lines[1:8]] == ["✗", "✓", "✗", "✗", "✓", "✗", "✓"]
    assert lines[-1].startswith("4 check(s) would block the deploy.")


def test_a_refused_read_is_a_blocker_that_names_the_error_for_every_check_that_needs_it() -> None:
    # Given the identity may not call lambda:GetAccountSettings (refused once: preflight asks once)
    code, lines = run_preflight(Account(refuse={"GetAccountSettings": "AccessDeniedException"}))
    assert code == 1
    for check in ("Lambda concurrency", "Lambda reservations"):
        assert line(lines, check) == (
            f"✗ {check}: could not check: AccessDeniedException: AccessDeniedException (stubbed) "
            "Fix: allow this read-only call to the identity you deploy with."
        )


def test_an_invalid_knob_is_named_and_exits_1() -> None:
    out = io.StringIO()
    assert preflight.main([], environ={"RESERVED_CONCURRENCY": "sometimes"}, out=out) == 1
    assert out.getvalue() == "✗ config: RESERVED_CONCURRENCY must be on or off\n"


# --- AWS cannot be asked: exit 2, one line, no traceback -------------------------------------------


@pytest.fixture
def no_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No profile, no credentials file, no instance metadata: boto3's chain finds nothing."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


def test_without_a_region_aws_cannot_be_asked(no_aws_config: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert preflight.main([], environ={}) == 2
    output = capsys.readouterr()
    assert output.out == (
        "✗ cannot ask AWS: no AWS region: set AWS_REGION (or AWS_PROFILE with a region, see `aws configure`)\n"
    )
    assert output.err == ""


def test_without_credentials_aws_cannot_be_asked(no_aws_config: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert preflight.main([], environ={"AWS_REGION": REGION}) == 2
    output = capsys.readouterr()
    assert output.out.startswith("✗ cannot ask AWS: no AWS credentials") and output.out.count("\n") == 1
    assert output.err == ""


def test_credentials_aws_refuses_mean_aws_cannot_be_asked() -> None:
    code, lines = run_preflight(Account(refuse={"GetCallerIdentity": "InvalidClientTokenId"}))
    assert code == 2
    assert lines == ["✗ cannot ask AWS: InvalidClientTokenId: InvalidClientTokenId (stubbed)"]


def test_the_command_line_prints_one_line_and_no_traceback(no_aws_config: None) -> None:
    # As `make preflight` runs it: a real process, with the environment boto3 reads
    result = subprocess.run(
        [".venv/bin/python", "-m", "tools.ops.preflight"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (2, "")
    assert result.stdout.startswith("✗ cannot ask AWS: no AWS region") and result.stdout.count("\n") == 1


# --- make ------------------------------------------------------------------------------------------


def make_dry_run(*args: str) -> str:
    return subprocess.run(
        ["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout


def test_make_deploy_runs_preflight_first_unless_skipped() -> None:
    deploy = make_dry_run("deploy")
    assert deploy.index("-m tools.ops.preflight") < deploy.index("cdk deploy")
    assert "tools.ops.preflight" not in make_dry_run("deploy", "SKIP_PREFLIGHT=1")
    assert "-m tools.ops.preflight" in make_dry_run("preflight")
    assert "-m tools.ops.preflight --rpm 2000000" in make_dry_run("preflight", "ARGS=--rpm 2000000")


def test_the_stack_name_is_the_one_the_app_builds() -> None:
    # tools/ops/preflight.py names the stack without importing CDK; infra/application.py builds it
    source = (REPO_ROOT / "infra" / "application.py").read_text()
    assert 'f"IngestPipeline-{config.STAGE}"' in source
    assert preflight.stack_name(PipelineConfig(STAGE="dev")) == "IngestPipeline-dev"


# --- alarm recipients: a stack whose alarms reach no one is refused (issue 31) ----------------------


def test_a_stack_whose_alarms_reach_no_one_is_refused_in_one_line_naming_the_knobs() -> None:
    # Given a healthy account and the default knobs: no ALARM_EMAIL, no ALARM_TOPIC_ARN
    code, lines = run_preflight(Account(), ALARM_EMAIL="")
    # Then preflight (and so make deploy) refuses, in one line that names the three ways out
    assert code == 1
    assert line(lines, "Alarm recipients") == (
        "✗ Alarm recipients: the alarms would reach no one (ALARM_EMAIL and ALARM_TOPIC_ARN are empty). Fix: set "
        "ALARM_EMAIL=<address>, or ALARM_TOPIC_ARN=<an existing SNS topic>, or ALARMS_TO=none to deploy without "
        "paging anyone."
    )
    assert sum(not text.startswith("✓") for text in lines[1:-1]) == 1  # nothing else blocks


@pytest.mark.parametrize(
    ("knobs", "says"),
    [
        (
            {"ALARM_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:pager", "RUNBOOK_URL": "https://wiki.example.com/rb"},
            f"✓ Alarm recipients: alarms go to topic arn:aws:sns:{REGION}:{ACCOUNT}:pager (ALARM_TOPIC_ARN); alarm "
            "texts link https://wiki.example.com/rb.",
        ),
        (
            {"ALARMS_TO": "none"},
            "✓ Alarm recipients: ALARMS_TO=none: the alarms reach no one, on purpose; alarm texts name "
            "docs/RUNBOOK.md (RUNBOOK_URL=<your runbook's address> makes them a link).",
        ),
    ],
    ids=["existing-topic", "none-on-purpose"],
)
def test_an_existing_topic_or_an_explicit_none_lets_the_deploy_through(knobs: dict[str, str], says: str) -> None:
    code, lines = run_preflight(Account(), **knobs)
    assert code == 0, lines
    assert line(lines, "Alarm recipients") == says
