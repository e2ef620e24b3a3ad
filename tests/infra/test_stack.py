"""Template assertions on every property the foundation promises, cdk-nag and cfn-lint."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import Aspects
from aws_cdk.assertions import Annotations, Match, Template

from infra.config import MAX_BODY_BYTES_CEILING, ConfigError, PipelineConfig
from infra.stack import IngestPipelineStack
from tests.infra import build, consumer, only, synth


@pytest.fixture(scope="module")
def default() -> tuple[IngestPipelineStack, Template]:
    _, stack = build()
    return stack, Template.from_stack(stack)


@pytest.fixture(scope="module")
def template(default: tuple[IngestPipelineStack, Template]) -> Template:
    return default[1]


def test_functions_are_python_arm64_with_the_pinned_powertools_layer_and_no_tracing(template: Template) -> None:
    functions = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": Match.string_like_regexp("_handler.lambda_handler$")}}
    )
    assert len(functions) == 2
    parameter = next(
        name
        for name, p in template.to_json()["Parameters"].items()
        if p.get("Default", "").startswith("/aws/service/powertools/")
    )
    assert (
        template.to_json()["Parameters"][parameter]["Default"]
        == "/aws/service/powertools/python/arm64/python3.14/3.37.0"
    )
    for function in functions.values():
        props = function["Properties"]
        assert props["Runtime"] == "python3.14" and props["Architectures"] == ["arm64"]
        assert props["Layers"] == [{"Ref": parameter}]
        assert props.get("TracingConfig", {}).get("Mode") != "Active"  # TRACING=false by default
        assert "LoggingConfig" in props and "LogGroup" in props["LoggingConfig"]


def test_every_log_group_has_explicit_retention(template: Template) -> None:
    groups = template.find_resources("AWS::Logs::LogGroup")
    assert len(groups) >= 4  # ingest, consumer, API access logs, API execution logs
    execution = [
        g
        for g in groups.values()
        if "API-Gateway-Execution-Logs_" in json.dumps(g["Properties"].get("LogGroupName", ""))
    ]
    assert len(execution) == 1
    assert {g["Properties"].get("RetentionInDays") for g in groups.values()} == {30}


def test_outputs_have_stable_names(template: Template) -> None:
    assert {"ApiUrl", "ApiKeyId", "BucketName", "QueueUrl", "DlqUrl"} <= set(template.find_outputs("*"))


def test_queue_is_encrypted_tls_only_with_a_longer_lived_dlq(template: Template) -> None:
    queues = template.find_resources("AWS::SQS::Queue")
    source = next(q for q in queues.values() if "RedrivePolicy" in q["Properties"])
    dlq = next(q for q in queues.values() if "RedrivePolicy" not in q["Properties"])
    assert source["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5
    assert source["Properties"]["MessageRetentionPeriod"] == 4 * 86400
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in queues.values())
    # at least 6 x consumer timeout + batching window
    timeout = consumer(template)["Properties"]["Timeout"]
    assert source["Properties"]["VisibilityTimeout"] >= 6 * timeout + 1
    policies = template.find_resources("AWS::SQS::QueuePolicy")
    assert len(policies) == 2
    for policy in policies.values():
        assert _denies_insecure_transport(policy["Properties"]["PolicyDocument"])


def test_bucket_is_private_encrypted_tls_only_logged_and_retained(template: Template) -> None:
    bucket = only(
        template, "AWS::S3::Bucket", {"LoggingConfiguration": Match.object_like({"LogFilePrefix": "payloads/"})}
    )
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert (
        props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "AES256"
    )
    assert props["LifecycleConfiguration"]["Rules"][0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert bucket["DeletionPolicy"] == "RetainExceptOnCreate" and bucket["UpdateReplacePolicy"] == "Retain"
    bucket_policies = template.find_resources("AWS::S3::BucketPolicy")
    assert all(_denies_insecure_transport(p["Properties"]["PolicyDocument"]) for p in bucket_policies.values())


def test_dev_opt_out_destroys_the_bucket_and_expires_objects() -> None:
    template = synth(DESTROY_ON_REMOVE=True, RAW_RETENTION_DAYS=30, MAX_WORKERS=25)
    bucket = only(
        template, "AWS::S3::Bucket", {"LoggingConfiguration": Match.object_like({"LogFilePrefix": "payloads/"})}
    )
    assert bucket["DeletionPolicy"] == "Delete"
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"ExpirationInDays": 30, "Id": "expire-payloads", "Prefix": "payloads/dt=", "Status": "Enabled"} in rules
    # and MAX_WORKERS flows to both the mapping's maximum concurrency and the reserved concurrency
    assert consumer(template)["Properties"]["ReservedConcurrentExecutions"] == 25
    mapping = only(template, "AWS::Lambda::EventSourceMapping")
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 25}


def test_worker_pool_is_bounded_by_max_workers_and_reports_item_failures(template: Template) -> None:
    mapping = only(template, "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["BatchSize"] == 100
    assert mapping["MaximumBatchingWindowInSeconds"] == 1
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 10}
    reserved = consumer(template)["Properties"]["ReservedConcurrentExecutions"]
    assert reserved >= mapping["ScalingConfig"]["MaximumConcurrency"]
    env = consumer(template)["Properties"]["Environment"]["Variables"]
    assert env["UPLOAD_CONCURRENCY"] == "16" and env["OBJECT_PREFIX"] == "payloads/"


def methods_by_verb(template: Template) -> dict[str, dict[str, Any]]:
    methods = template.find_resources("AWS::ApiGateway::Method").values()
    return {m["Properties"]["HttpMethod"]: m["Properties"] for m in methods}


def test_every_verb_reaches_the_ingest_function_with_an_api_key_and_a_usage_plan_throttles_it(
    template: Template,
) -> None:
    # Every method API Gateway knows is on /v1/payloads, key-protected, proxied to the ingest function:
    # the handler answers POST, and 405 + Allow: POST to the rest, as make run does
    methods = methods_by_verb(template)
    assert set(methods) == {"POST", "GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
    ingest = next(lid for lid in template.find_resources("AWS::Lambda::Function") if lid.startswith("ApiIngest"))
    for verb, method in methods.items():
        assert method["ApiKeyRequired"] is True, verb
        assert method["Integration"]["Type"] == "AWS_PROXY", verb
        assert {"Fn::GetAtt": [ingest, "Arn"]} in method["Integration"]["Uri"]["Fn::Join"][1], verb
    assert len({json.dumps(m["ResourceId"]) for m in methods.values()}) == 1  # all on the one payloads resource
    plan = only(template, "AWS::ApiGateway::UsagePlan")["Properties"]
    assert plan["Throttle"] == {"BurstLimit": 2000, "RateLimit": 1000}
    assert only(template, "AWS::ApiGateway::RestApi")["Properties"]["BinaryMediaTypes"] == ["*/*"]
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)


def test_the_stage_has_a_throttle_ceiling_above_the_per_key_plan(template: Template) -> None:
    [settings] = only(template, "AWS::ApiGateway::Stage")["Properties"]["MethodSettings"]
    assert (settings["HttpMethod"], settings["ResourcePath"]) == ("*", "/*")  # the stage's default method settings
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (5000, 5000)
    plan = only(template, "AWS::ApiGateway::UsagePlan")["Properties"]["Throttle"]
    assert settings["ThrottlingRateLimit"] >= plan["RateLimit"]
    assert settings["ThrottlingBurstLimit"] >= plan["BurstLimit"]


def test_the_stage_ceiling_is_a_knob_and_may_not_sit_below_the_per_key_limits() -> None:
    template = synth(STAGE_THROTTLE_RATE_LIMIT=20000, STAGE_THROTTLE_BURST_LIMIT=8000)
    [settings] = only(template, "AWS::ApiGateway::Stage")["Properties"]["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (20000, 8000)
    for knobs, named in (
        ({"STAGE_THROTTLE_RATE_LIMIT": 999}, "STAGE_THROTTLE_RATE_LIMIT"),
        ({"STAGE_THROTTLE_BURST_LIMIT": 1999}, "STAGE_THROTTLE_BURST_LIMIT"),
    ):
        with pytest.raises(ConfigError, match=named):
            PipelineConfig.resolve(knobs, environ={})


def test_max_body_bytes_above_what_reaches_lambda_fails_synth_naming_it() -> None:
    with pytest.raises(ConfigError, match="MAX_BODY_BYTES"):
        synth(MAX_BODY_BYTES=MAX_BODY_BYTES_CEILING + 1)


def test_api_key_can_be_turned_off_and_the_stage_is_throttled_instead() -> None:
    template = synth(REQUIRE_API_KEY=False)
    assert {m["ApiKeyRequired"] for m in methods_by_verb(template).values()} == {False}
    stage = only(template, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 1000


def test_gateway_errors_are_problem_json_with_their_own_status(template: Template) -> None:
    responses = template.find_resources("AWS::ApiGateway::GatewayResponse")
    by_type = {r["Properties"]["ResponseType"]: r["Properties"] for r in responses.values()}
    assert {
        "INVALID_API_KEY",
        "MISSING_AUTHENTICATION_TOKEN",
        "THROTTLED",
        "UNSUPPORTED_MEDIA_TYPE",
        "RESOURCE_NOT_FOUND",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    } <= set(by_type)
    for response_type, props in by_type.items():
        assert props["ResponseParameters"]["gatewayresponse.header.Content-Type"] == "'application/problem+json'"
        body = json.loads(props["ResponseTemplates"]["application/json"])
        assert {"type", "title", "detail", "requestId"} <= set(body), response_type
        if response_type == "DEFAULT_4XX":
            # a status set here would override every unconfigured 4xx type (AWS behaviour)
            assert "StatusCode" not in props and "status" not in body
        else:
            assert body["status"] == int(props["StatusCode"]), response_type
    assert (by_type["INVALID_API_KEY"]["StatusCode"], by_type["UNSUPPORTED_MEDIA_TYPE"]["StatusCode"]) == ("403", "415")


def test_ingest_may_only_send_to_its_queue_and_no_policy_has_wildcard_actions(template: Template) -> None:
    for policy in template.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(a == "*" or a.endswith(":*") for a in actions), actions
    ingest_policy = next(
        p for name, p in template.find_resources("AWS::IAM::Policy").items() if name.startswith("ApiIngest")
    )
    sqs_statements = [
        s
        for s in ingest_policy["Properties"]["PolicyDocument"]["Statement"]
        if any(str(a).startswith("sqs:") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
    ]
    assert len(sqs_statements) == 1
    queue_id = next(k for k in template.find_resources("AWS::SQS::Queue") if k.startswith("BufferQueue"))
    assert sqs_statements[0]["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert "sqs:SendMessage" in sqs_statements[0]["Action"]


@pytest.mark.parametrize("pack", ["AwsSolutions", "Serverless"])
def test_cdk_nag_reports_no_unsuppressed_errors_or_warnings(
    default: tuple[IngestPipelineStack, Template], pack: str
) -> None:
    stack, _ = default
    findings = Annotations.from_stack(stack)
    errors = findings.find_error("*", Match.string_like_regexp(f"{pack}-.*"))
    warnings = findings.find_warning("*", Match.string_like_regexp(f"{pack}-.*"))
    assert [e.entry.data for e in errors] == []
    assert [w.entry.data for w in warnings] == []
    # and the pack really ran at synth (app.py builds the app with build_app)
    assert f"{pack}Checks" in {type(aspect).__name__ for aspect in Aspects.of(stack.node.root).all}


def test_cfn_lint_finds_no_errors(template: Template) -> None:
    # In-process API rather than a subprocess: a missing or broken cfn-lint must fail here, not pass.
    from cfnlint.api import lint

    matches = lint(json.dumps(template.to_json()), regions=["us-east-1"])
    rule_ids = [match.rule.id for match in matches]
    assert [m for m in matches if m.rule.id.startswith("E")] == [], rule_ids
    # W3005 (redundant DependsOn) is a known CDK artifact; anything else gets looked at.
    assert set(rule_ids) <= {"W3005"}, rule_ids


def _denies_insecure_transport(document: dict[str, Any]) -> bool:
    return any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for s in document["Statement"]
    )


def test_gateway_5xx_texts_never_promise_that_a_retry_helps(template: Template) -> None:
    # A body too large for Lambda fails the same way on every retry: the texts say so, with the limit
    responses = template.find_resources("AWS::ApiGateway::GatewayResponse").values()
    templates = {
        r["Properties"]["ResponseType"]: r["Properties"]["ResponseTemplates"]["application/json"]
        for r in responses
        if r["Properties"].get("StatusCode", "").startswith("5")
    }
    details = {name: json.loads(body)["detail"] for name, body in templates.items()}
    assert {"DEFAULT_5XX", "INTEGRATION_FAILURE", "INTEGRATION_TIMEOUT", "API_CONFIGURATION_ERROR"} <= set(details)
    for response_type, detail in details.items():
        assert "retry with backoff" not in detail, response_type
    for response_type in ("DEFAULT_5XX", "INTEGRATION_FAILURE", "API_CONFIGURATION_ERROR"):
        assert f"a request body over {PipelineConfig().MAX_BODY_BYTES} bytes never succeeds" in details[response_type]
