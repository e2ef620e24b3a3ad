"""`make preflight` as a user meets it: the lines printed and the exit code, for each check's ✓ and ✗
and for "AWS cannot be asked". AWS answers through botocore's Stubber (moto lacks
lambda:GetAccountSettings); a stub answers only the exact read it expects, so an unexpected or
writing call fails the test."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from infra.config import PipelineConfig
from tools.ops import preflight
from tools.ops.preflight import Clients

REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK = "IngestPipeline-prod"
LAYER_PARAMETER = "/aws/service/powertools/python/arm64/python3.14/3.37.0"
LAYER_ARN = f"arn:aws:lambda:{REGION}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:30"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/team-x-apigateway-logs"
OUR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-ApiCloudWatchRoleCCA56614-AbCdEf"
CONSUMER = f"{STACK}-WorkersConsumer5652D1E4-XyZ"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Account:
    """What the fake account holds. Defaults: a healthy account where nothing blocks the deploy."""

    quota: int = 1000
    unreserved: int = 1000
    deployed_reservation: int | None = None  # None: the stack is not deployed yet
    layer_parameters: dict[str, str] = field(default_factory=lambda: {LAYER_PARAMETER: LAYER_ARN})
    bootstrap: tuple[str, str] | None = ("UPDATE_COMPLETE", "28")  # (status, version); None: not bootstrapped
    cloudwatch_role: str = ""
    refuse: dict[str, str] = field(default_factory=dict)  # operation -> error code AWS answers instead


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
    # 1. CDK bootstrap
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
    # 2. Lambda concurrency
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
        if config.RESERVED_CONCURRENCY == "on":
            if account.deployed_reservation is None:
                client_error(cfn, "describe_stack_resources", "ValidationError")
            else:
                cfn.add_response(
                    "describe_stack_resources",
                    {
                        "StackResources": [
                            {
                                "LogicalResourceId": "WorkersConsumer5652D1E4",
                                "PhysicalResourceId": CONSUMER,
                                "ResourceType": "AWS::Lambda::Function",
                                "Timestamp": "2026-01-01T00:00:00Z",
                                "ResourceStatus": "UPDATE_COMPLETE",
                            }
                        ]
                    },
                    {"StackName": STACK},
                )
                reservation = {"ReservedConcurrentExecutions": account.deployed_reservation}
                lam.add_response("get_function_concurrency", reservation, {"FunctionName": CONSUMER})
    # 3. Powertools layer
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
    # 4. API Gateway CloudWatch role
    apigw.add_response("get_account", {"cloudwatchRoleArn": account.cloudwatch_role} if account.cloudwatch_role else {})
    stubs = [sts, lam, ssm, cfn, apigw]
    for stub in stubs:
        stub.activate()
    return clients, stubs


def run_preflight(account: Account, **knobs: str) -> tuple[int, list[str]]:
    """Run `python -m tools.ops.preflight` with these knobs in the environment against the fake account."""
    environ = {name: str(value) for name, value in knobs.items()}
    config = PipelineConfig.resolve({}, environ)
    clients, stubs = stub_account(account, config)
    out = io.StringIO()
    code = preflight.main([], clients=clients, environ=environ, out=out)
    if code != 2:  # AWS was asked: every read the fake expected was made
        for stub in stubs:
            stub.assert_no_pending_responses()
    return code, out.getvalue().splitlines()


def line(lines: list[str], check: str) -> str:
    [found] = [text for text in lines if text[2:].startswith(f"{check}:")]
    return found


# --- a healthy account ----------------------------------------------------------------------------


def test_a_healthy_account_passes_every_check_and_exits_0() -> None:
    # Given a bootstrapped account with the default quota, the layer parameter and no logging role yet
    # When preflight runs
    code, lines = run_preflight(Account())
    # Then every check is ✓, says what it found, and nothing blocks
    assert code == 0
    assert lines[0] == f"Preflight for {STACK} in account {ACCOUNT}, region {REGION} (read-only)"
    assert line(lines, "CDK bootstrap") == "✓ CDK bootstrap: CDKToolkit is UPDATE_COMPLETE, bootstrap version 28."
    assert line(lines, "Lambda concurrency") == (
        "✓ Lambda concurrency: account quota 1000, 1000 unreserved; reserving 10 for the consumer leaves 990 "
        "(AWS keeps at least 100)."
    )
    assert line(lines, "Powertools layer") == f"✓ Powertools layer: {LAYER_PARAMETER} resolves to {LAYER_ARN}."
    assert line(lines, "API Gateway CloudWatch role") == (
        f"✓ API Gateway CloudWatch role: none set in {REGION}; this stack creates one."
    )
    assert lines[-1] == "Nothing blocks the deploy."
    assert len(lines) == 6


# --- Lambda concurrency ---------------------------------------------------------------------------


def test_a_new_account_with_a_quota_of_10_is_blocked_with_the_knob_and_the_quota_to_request() -> None:
    # Given a new account: 10 concurrent executions in total, none reserved
    code, lines = run_preflight(Account(quota=10, unreserved=10))
    # Then reserving 10 would leave 0 of the 100 AWS keeps unreserved: blocked, with both ways out
    assert code == 1
    assert line(lines, "Lambda concurrency") == (
        "✗ Lambda concurrency: account quota 10, 10 unreserved; reserving 10 for the consumer leaves 0, below AWS's "
        "minimum of 100 unreserved. Fix: RESERVED_CONCURRENCY=off make deploy, or request a quota of at least 110 "
        '(Service Quotas console > AWS services > AWS Lambda > "Concurrent executions").'
    )
    assert lines[-1] == "1 check(s) would block the deploy. Fix them, or SKIP_PREFLIGHT=1 make deploy."


def test_leaving_exactly_100_unreserved_passes_and_99_does_not() -> None:
    assert run_preflight(Account(quota=110, unreserved=110))[0] == 0
    code, lines = run_preflight(Account(quota=110, unreserved=110), MAX_WORKERS="11")
    assert code == 1 and "request a quota of at least 111" in line(lines, "Lambda concurrency")


def test_with_reserved_concurrency_off_the_same_account_passes() -> None:
    # Given the quota-10 account and RESERVED_CONCURRENCY=off
    code, lines = run_preflight(Account(quota=10, unreserved=10), RESERVED_CONCURRENCY="off")
    # Then nothing is reserved, so nothing blocks; the line says the pool shares the account's 10
    assert code == 0
    assert line(lines, "Lambda concurrency") == (
        "✓ Lambda concurrency: RESERVED_CONCURRENCY=off reserves nothing; the consumer's 10 workers share the "
        "account's 10 concurrent executions with every other function."
    )


def test_a_redeploy_counts_the_consumers_current_reservation_as_available() -> None:
    # Given the stack is deployed with 10 reserved, which AWS already subtracted: 110 unreserved of 120
    code, lines = run_preflight(Account(quota=120, unreserved=110, deployed_reservation=10))
    # Then keeping 10 reserved still leaves 110: not a blocker
    assert code == 0
    assert "reserving 10 for the consumer (now 10) leaves 110" in line(lines, "Lambda concurrency")


def test_provisioned_pollers_reserve_10_per_poller() -> None:
    code, lines = run_preflight(Account(quota=1000, unreserved=1000), PROVISIONED_POLLERS="true", MAX_POLLERS="95")
    assert code == 1 and "reserving 950 for the consumer leaves 50" in line(lines, "Lambda concurrency")


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
    assert [text[0] for text in lines[1:5]] == ["✗", "✗", "✗", "✓"]
    assert lines[-1].startswith("3 check(s) would block the deploy.")


def test_a_refused_read_is_a_blocker_that_names_the_error() -> None:
    code, lines = run_preflight(Account(refuse={"GetAccountSettings": "AccessDeniedException"}))
    assert code == 1
    assert line(lines, "Lambda concurrency") == (
        "✗ Lambda concurrency: could not check: AccessDeniedException: AccessDeniedException (stubbed) "
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


def test_the_stack_name_is_the_one_the_app_builds() -> None:
    # tools/ops/preflight.py names the stack without importing CDK; infra/application.py builds it
    source = (REPO_ROOT / "infra" / "application.py").read_text()
    assert 'f"IngestPipeline-{config.STAGE}"' in source
    assert preflight.stack_name(PipelineConfig(STAGE="dev")) == "IngestPipeline-dev"
