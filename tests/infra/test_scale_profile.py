"""PROFILE=scale synthesizes into what tools.models.capacity judged, and is clean under cdk-nag and cfn-lint
(as test_stack.py checks the default)."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from infra.stack import IngestPipelineStack
from tests.infra import build, only


@pytest.fixture(scope="module")
def scale() -> tuple[IngestPipelineStack, Template]:
    # the env var, as `PROFILE=scale make synth` passes it, over cdk.json's context
    _, stack = build(environ={"PROFILE": "scale"})
    return stack, Template.from_stack(stack)


def test_scale_template_carries_the_profiles_settings(scale: tuple[IngestPipelineStack, Template]) -> None:
    _, template = scale
    mapping = only(template, "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["ProvisionedPollerConfig"] == {"MinimumPollers": 200, "MaximumPollers": 245}
    assert "ScalingConfig" not in mapping
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (200, 5)
    consumer = only(template, "AWS::Lambda::Function", {"Handler": "consumer_handler.lambda_handler"})["Properties"]
    assert consumer["Environment"]["Variables"]["OBJECT_MODE"] == "batch"
    # RESERVED_CONCURRENCY=on: the consumer reserves what its pollers can drive (10 x 245), no more
    assert consumer["ReservedConcurrentExecutions"] == 2_450 and consumer["Timeout"] == 10
    assert consumer.get("TracingConfig", {}).get("Mode") != "Active"  # TRACING=false
    queues = template.find_resources("AWS::SQS::Queue")
    source = next(q for q in queues.values() if "RedrivePolicy" in q["Properties"])["Properties"]
    dlq = next(q for q in queues.values() if "RedrivePolicy" not in q["Properties"])["Properties"]
    assert (source["MessageRetentionPeriod"], dlq["MessageRetentionPeriod"]) == (13 * 86400, 14 * 86400)
    assert source["VisibilityTimeout"] == 65  # 6 x 10 s + the 5 s window
    ingest = only(template, "AWS::Lambda::Function", {"Handler": "ingest_handler.lambda_handler"})["Properties"]
    assert ingest["Environment"]["Variables"]["MAX_QUEUE"] == "10000000"
    # The front door: an HTTP API (no REST API, no usage plan), its stage and routes at 20,000 rps, bursts at the
    # account's 5,000
    assert not template.find_resources("AWS::ApiGateway::RestApi")
    stage = only(template, "AWS::ApiGatewayV2::Stage")["Properties"]
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 5000, "ThrottlingRateLimit": 20000}
    assert {json.dumps(route, sort_keys=True) for route in stage["RouteSettings"].values()} == {
        json.dumps({"ThrottlingBurstLimit": 5000, "ThrottlingRateLimit": 20000}, sort_keys=True)
    }
    in_flight = only(
        template, "AWS::CloudWatch::Alarm", {"AlarmName": Match.string_like_regexp(".*in-flight-near-cap")}
    )
    assert in_flight["Properties"]["Threshold"] == 96_000  # 80 % of the default quota: no AWS Support case
    bucket = only(
        template, "AWS::S3::Bucket", {"LoggingConfiguration": Match.object_like({"LogFilePrefix": "payloads/"})}
    )["Properties"]
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert {"ExpirationInDays": 15, "Id": "expire-payloads", "Prefix": "payloads/dt=", "Status": "Enabled"} in rules
    assert {"ExpirationInDays": 30, "Id": "expire-compacted", "Prefix": "compacted/", "Status": "Enabled"} in rules
    # The ingest reserves what the capacity model sized (a slowed SendMessageBatch, 10 requests/s per environment)
    assert ingest["ReservedConcurrentExecutions"] == 2_100


def test_cdk_nag_reports_no_unsuppressed_findings_on_scale(scale: tuple[IngestPipelineStack, Template]) -> None:
    stack, _ = scale
    findings = Annotations.from_stack(stack)
    errors = findings.find_error("*", Match.string_like_regexp("(AwsSolutions|Serverless)-.*"))
    warnings = findings.find_warning("*", Match.string_like_regexp("(AwsSolutions|Serverless)-.*"))
    assert [e.entry.data for e in errors] == []
    assert [w.entry.data for w in warnings] == []


def test_cfn_lint_finds_nothing_new_on_scale(scale: tuple[IngestPipelineStack, Template]) -> None:
    from cfnlint.api import lint

    _, template = scale
    matches = lint(json.dumps(template.to_json()), regions=["us-east-1"])
    rule_ids = [match.rule.id for match in matches]
    assert [m for m in matches if m.rule.id.startswith("E")] == [], rule_ids
    assert set(rule_ids) <= {"W3005"}, rule_ids  # W3005: a known CDK artifact, as for the default
