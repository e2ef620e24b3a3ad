"""API_KIND=http and DEVICE_AUTH=on in the template: the HTTP API front door, its throttles and access logs, the
device keyring and who may read it, cdk-nag and cfn-lint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from infra.config import ConfigError
from infra.stack import IngestPipelineStack
from pipeline.contract import PAYLOADS_PATH
from tests.infra import build, only, synth
from tests.infra.test_security import REVIEWED_SUPPRESSIONS


@pytest.fixture(scope="module")
def http_stack() -> tuple[IngestPipelineStack, Template]:
    _, stack = build(API_KIND="http", DEVICE_AUTH="on")
    return stack, Template.from_stack(stack)


@pytest.fixture(scope="module")
def template(http_stack: tuple[IngestPipelineStack, Template]) -> Template:
    return http_stack[1]


def ingest_id(template: Template) -> str:
    return next(lid for lid in template.find_resources("AWS::Lambda::Function") if lid.startswith("ApiIngest"))


def test_an_http_api_replaces_the_rest_api(template: Template) -> None:
    only(template, "AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP"})
    for rest_type in ("RestApi", "Method", "UsagePlan", "ApiKey", "GatewayResponse", "Stage"):
        template.resource_count_is(f"AWS::ApiGateway::{rest_type}", 0)
    assert "ApiKeyId" not in template.find_outputs("*")
    assert {"ApiUrl", "DeviceKeysSecretArn"} <= set(template.find_outputs("*"))


def test_the_payloads_route_and_the_default_route_send_every_method_to_the_ingest_in_format_2_0(
    template: Template,
) -> None:
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in template.find_resources("AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {f"ANY {PAYLOADS_PATH}", "$default"}
    integration_id, integration = next(iter(template.find_resources("AWS::ApiGatewayV2::Integration").items()))
    assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    assert integration["Properties"]["IntegrationUri"] == {"Fn::GetAtt": [ingest_id(template), "Arn"]}
    for route in routes.values():
        assert route["Target"] == {"Fn::Join": ["", ["integrations/", {"Ref": integration_id}]]}
        assert route.get("AuthorizationType", "NONE") == "NONE"  # devices authenticate in the ingest


def test_the_stage_throttles_the_whole_api_and_the_payloads_routes_on_their_own(template: Template) -> None:
    stage = only(template, "AWS::ApiGatewayV2::Stage")["Properties"]
    assert (stage["StageName"], stage["AutoDeploy"]) == ("$default", True)
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 5000, "ThrottlingRateLimit": 5000}
    assert stage["RouteSettings"] == {
        f"ANY {PAYLOADS_PATH}": {"ThrottlingBurstLimit": 2000, "ThrottlingRateLimit": 1000},
        "$default": {"ThrottlingBurstLimit": 2000, "ThrottlingRateLimit": 1000},
    }


def test_the_throttles_are_the_same_knobs_as_on_rest() -> None:
    stage = only(
        synth(
            API_KIND="http",
            DEVICE_AUTH="on",
            THROTTLE_RATE_LIMIT=300,
            THROTTLE_BURST_LIMIT=600,
            STAGE_THROTTLE_RATE_LIMIT=900,
            STAGE_THROTTLE_BURST_LIMIT=800,
        ),
        "AWS::ApiGatewayV2::Stage",
    )["Properties"]
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 800, "ThrottlingRateLimit": 900}
    assert set(json.dumps(v, sort_keys=True) for v in stage["RouteSettings"].values()) == {
        json.dumps({"ThrottlingBurstLimit": 600, "ThrottlingRateLimit": 300}, sort_keys=True)
    }


def test_access_logs_carry_request_id_status_and_latency_and_never_a_header(template: Template) -> None:
    settings = only(template, "AWS::ApiGatewayV2::Stage")["Properties"]["AccessLogSettings"]
    log_format = json.loads(settings["Format"])
    assert {"requestId", "status", "latencyMs"} <= set(log_format)
    assert log_format["latencyMs"] == "$context.responseLatency"
    assert log_format["requestId"] == "$context.requestId"
    assert not any("header" in value.lower() or "authorizer" in value.lower() for value in log_format.values())
    group = settings["DestinationArn"]["Fn::GetAtt"][0]
    assert template.to_json()["Resources"][group]["Properties"]["RetentionInDays"] == 30


def test_the_ingest_gets_device_auth_and_is_the_only_role_that_may_read_the_keyring(template: Template) -> None:
    secret_id = next(iter(template.find_resources("AWS::SecretsManager::Secret")))
    env = template.to_json()["Resources"][ingest_id(template)]["Properties"]["Environment"]["Variables"]
    assert env["DEVICE_AUTH"] == "on" and env["DEVICE_REVOCATION_TTL_SECONDS"] == "60"
    assert env["DEVICE_KEYS_SECRET"] == {"Ref": secret_id}
    readers = {}
    for name, policy in template.find_resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Resource") == {"Ref": secret_id}:
                readers[name] = statement["Action"]
    assert list(readers) == [next(n for n in readers if n.startswith("ApiIngestRole"))]
    assert sorted(readers.popitem()[1]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]


def test_the_keyring_is_generated_at_deploy_time_and_outlives_the_stack(template: Template) -> None:
    secret = only(template, "AWS::SecretsManager::Secret")
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "k1" and generated["PasswordLength"] == 64
    assert json.loads(generated["SecretStringTemplate"]) == {"format": 1, "current": 1, "retired": [], "revoked": {}}
    assert "SecretString" not in secret["Properties"]  # no key in the template, ever
    assert secret["DeletionPolicy"] == "RetainExceptOnCreate" and secret["UpdateReplacePolicy"] == "Retain"


def test_switching_the_front_door_keeps_the_ingest_function_and_its_log_group() -> None:
    rest, http = synth(), synth(API_KIND="http", DEVICE_AUTH="on")
    for resource_type in ("AWS::Lambda::Function", "AWS::Logs::LogGroup"):
        rest_ids = {i for i in rest.find_resources(resource_type) if i.startswith("ApiIngest")}
        assert rest_ids and rest_ids == {i for i in http.find_resources(resource_type) if i.startswith("ApiIngest")}


def test_device_auth_on_rest_keeps_the_api_key_beside_the_device_key() -> None:
    _, stack = build(DEVICE_AUTH="on")
    template = Template.from_stack(stack)
    findings = Annotations.from_stack(stack)
    assert [f.entry.data for f in findings.find_error("*", Match.any_value())] == []
    assert [f.entry.data for f in findings.find_warning("*", Match.any_value())] == []
    template.resource_count_is("AWS::ApiGateway::UsagePlan", 1)
    assert {m["Properties"]["ApiKeyRequired"] for m in template.find_resources("AWS::ApiGateway::Method").values()} == {
        True
    }
    only(template, "AWS::SecretsManager::Secret")
    assert "DeviceKeysSecretArn" in template.find_outputs("*")


def test_no_keyring_without_device_auth() -> None:
    template = synth()
    template.resource_count_is("AWS::SecretsManager::Secret", 0)
    env = only(template, "AWS::Lambda::Function", {"Handler": "ingest_handler.lambda_handler"})["Properties"]
    assert env["Environment"]["Variables"]["DEVICE_AUTH"] == "off"


def test_http_without_device_auth_fails_naming_the_knob() -> None:
    with pytest.raises(ConfigError, match="DEVICE_AUTH"):
        synth(API_KIND="http", DEVICE_AUTH="off")


def test_the_cdk_app_says_so_in_one_line_without_a_traceback() -> None:
    # What `API_KIND=http DEVICE_AUTH=off make synth` runs (cdk.json's app command)
    result = subprocess.run(
        [sys.executable, "app.py"],
        env={
            **os.environ,
            "API_KIND": "http",
            "DEVICE_AUTH": "off",
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        },
        capture_output=True,
        text=True,
        check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and "!!" not in line]
    assert lines == [
        "configuration error: API_KIND=http needs DEVICE_AUTH=on: an HTTP API has no API keys, so devices "
        "authenticate with their own keys"
    ]


@pytest.mark.parametrize("pack", ["AwsSolutions", "Serverless"])
def test_cdk_nag_reports_no_unsuppressed_findings(http_stack: tuple[IngestPipelineStack, Template], pack: str) -> None:
    findings = Annotations.from_stack(http_stack[0])
    for found in (findings.find_error, findings.find_warning):
        assert [f.entry.data for f in found("*", Match.string_like_regexp(f"{pack}-.*"))] == []


def test_cfn_lint_finds_nothing(template: Template) -> None:
    from cfnlint.api import lint

    matches = lint(json.dumps(template.to_json()), regions=["us-east-1"])
    assert set(match.rule.id for match in matches) <= {"W3005"}, [str(m) for m in matches]


def test_every_suppression_is_reviewed_and_has_a_reason(template: Template) -> None:
    resources: dict[str, Any] = template.to_json()["Resources"]
    suppressed = [
        rule
        for r in resources.values()
        for rule in r.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert {"AwsSolutions-APIG4", "AwsSolutions-SMG4"} <= {rule["id"] for rule in suppressed} <= REVIEWED_SUPPRESSIONS
    assert all(len(rule["reason"]) >= 40 for rule in suppressed)
