"""No client address kept by default (docs/PRIVACY.md; issue 28 section 1), in the synthesized templates: the access
log formats of both front doors name no address, user agent or forwarded header unless ACCESS_LOG_CLIENT_IP=on, and
then only in an access log group whose retention is ACCESS_LOG_CLIENT_IP_RETENTION_DAYS; the REST stage is never
traced (its X-Ray segments record the client's address), whatever TRACING says."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import ConfigError, PipelineConfig
from tests.infra import only, synth

HTTP = {"API_KIND": "http", "DEVICE_AUTH": "on"}
# What would put a client's address or identifying header into a line: API Gateway's variables for both.
ADDRESS_VARIABLES = ("$context.identity.sourceIp", "$context.identity.userAgent", "forwarded", "x-forwarded")


@pytest.fixture(scope="module")
def rest_default() -> Template:
    return synth()


@pytest.fixture(scope="module")
def http_default() -> Template:
    return synth(**HTTP)


@pytest.fixture(scope="module")
def rest_with_addresses() -> Template:
    return synth(ACCESS_LOG_CLIENT_IP="on", TRACING=True)


@pytest.fixture(scope="module")
def http_with_addresses() -> Template:
    return synth(**HTTP, ACCESS_LOG_CLIENT_IP="on", ACCESS_LOG_CLIENT_IP_RETENTION_DAYS=14, LOG_RETENTION_DAYS=3)


def access_log(template: Template) -> tuple[str, dict[str, Any]]:
    """The stage's access-log format and its log group's properties, for either front door."""
    rest = template.find_resources("AWS::ApiGateway::Stage")
    if rest:
        [stage] = rest.values()
        settings = stage["Properties"]["AccessLogSetting"]
        log_format, arn = settings["Format"], settings["DestinationArn"]
    else:
        settings = only(template, "AWS::ApiGatewayV2::Stage")["Properties"]["AccessLogSettings"]
        log_format, arn = settings["Format"], settings["DestinationArn"]
    return log_format, template.to_json()["Resources"][arn["Fn::GetAtt"][0]]["Properties"]


@pytest.mark.parametrize("front_door", ["rest_default", "http_default"])
def test_by_default_no_access_log_line_can_hold_a_client_address(front_door: str, request: Any) -> None:
    # Given the default configuration of either front door
    template: Template = request.getfixturevalue(front_door)
    # When API Gateway writes a line of the synthesized access-log format
    log_format, group = access_log(template)
    # Then the format names no address, user agent or forwarded header, and the group keeps LOG_RETENTION_DAYS
    assert not [variable for variable in ADDRESS_VARIABLES if variable.lower() in log_format.lower()]
    assert set(json.loads(log_format)) <= {"requestId", "extendedRequestId", "status", "latencyMs"}
    assert group["RetentionInDays"] == PipelineConfig().LOG_RETENTION_DAYS


def test_with_addresses_on_the_rest_access_log_holds_them_for_seven_days(rest_with_addresses: Template) -> None:
    # Given ACCESS_LOG_CLIENT_IP=on (and the default ACCESS_LOG_CLIENT_IP_RETENTION_DAYS, 7)
    log_format, group = access_log(rest_with_addresses)
    # Then the line holds the address and user agent, and its group keeps lines 7 days instead of 30
    assert json.loads(log_format)["ip"] == "$context.identity.sourceIp"
    assert json.loads(log_format)["userAgent"] == "$context.identity.userAgent"
    assert group["RetentionInDays"] == 7
    # And no other log group is shortened: only the one that holds addresses
    groups = rest_with_addresses.find_resources("AWS::Logs::LogGroup").values()
    retentions = {g["Properties"]["RetentionInDays"] for g in groups}
    assert retentions == {7, 30}


def test_with_addresses_on_the_http_api_group_never_outlives_log_retention_days(http_with_addresses: Template) -> None:
    # Given ACCESS_LOG_CLIENT_IP=on with 14 days asked for, and LOG_RETENTION_DAYS=3
    log_format, group = access_log(http_with_addresses)
    # Then the HTTP API's line holds the address too, kept the shorter of the two (3 days)
    assert json.loads(log_format)["ip"] == "$context.identity.sourceIp"
    assert group["RetentionInDays"] == 3


@pytest.mark.parametrize("front_door", ["rest_default", "rest_with_addresses"])
def test_the_rest_stage_is_never_traced_and_the_functions_only_with_tracing(front_door: str, request: Any) -> None:
    # Given the default (TRACING=false) and TRACING=true
    template: Template = request.getfixturevalue(front_door)
    traced = front_door == "rest_with_addresses"
    # Then the stage, whose X-Ray segment would record http.request.client_ip, is never traced
    [stage] = template.find_resources("AWS::ApiGateway::Stage").values()
    assert stage["Properties"].get("TracingEnabled", False) is False
    # And both functions are traced exactly when TRACING=true
    for handler in ("ingest_handler.lambda_handler", "consumer_handler.lambda_handler"):
        function = only(template, "AWS::Lambda::Function", {"Handler": handler})["Properties"]
        assert (function.get("TracingConfig", {}).get("Mode") == "Active") is traced


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ({"ACCESS_LOG_CLIENT_IP": "yes"}, "ACCESS_LOG_CLIENT_IP must be on or off"),
        ({"ACCESS_LOG_CLIENT_IP_RETENTION_DAYS": 10}, "ACCESS_LOG_CLIENT_IP_RETENTION_DAYS must be one of"),
    ],
)
def test_address_knobs_that_cannot_deploy_are_refused_by_name(knobs: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        PipelineConfig.resolve(knobs, environ={})
