"""The security review, as tests: least privilege stated exactly, TLS-only and encrypted at rest, no
CORS, no secrets or payloads in logs, and every cdk-nag suppression accounted for.
(cdk-nag's zero-unsuppressed-findings and cfn-lint's zero-errors checks live in test_stack.py.)"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

import consumer_handler
import ingest_handler
from pipeline import aws_clients
from tests.conftest import Pipeline, collection
from tests.faults import FailingSendMessageBatch, fail_put_object
from tests.infra import synth

Statement = dict[str, Any]


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return synth().to_json()["Resources"]


def of_type(resources: dict[str, dict[str, Any]], resource_type: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in resources.items() if r["Type"] == resource_type}


def logical_id(resources: dict[str, dict[str, Any]], resource_type: str, prefix: str) -> str:
    [found] = [lid for lid in of_type(resources, resource_type) if lid.startswith(prefix)]
    return found


def role_of(resources: dict[str, dict[str, Any]], handler: str) -> str:
    [function] = [
        r for r in of_type(resources, "AWS::Lambda::Function").values() if r["Properties"]["Handler"] == handler
    ]
    return function["Properties"]["Role"]["Fn::GetAtt"][0]


def statements_of(resources: dict[str, dict[str, Any]], role: str) -> list[Statement]:
    """Every inline-policy statement attached to the role."""
    return [
        statement
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def grants(statements: list[Statement]) -> dict[str, set[str]]:
    """resource (as JSON) -> allowed actions."""
    allowed: dict[str, set[str]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        allowed.setdefault(json.dumps(statement["Resource"], sort_keys=True), set()).update(actions)
    return allowed


def arn(lid: str) -> str:
    return json.dumps({"Fn::GetAtt": [lid, "Arn"]}, sort_keys=True)


def prefix_of(lid: str, prefix: str) -> str:
    return json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [lid, "Arn"]}, f"/{prefix}*"]]}, sort_keys=True)


def prefixes_of(lid: str, *prefixes: str) -> str:
    """One statement's resources: the bucket's ``prefixes``, in order."""
    joins = [{"Fn::Join": ["", [{"Fn::GetAtt": [lid, "Arn"]}, f"/{prefix}*"]]} for prefix in prefixes]
    return json.dumps(joins, sort_keys=True)


# TRACING=false by default: no X-Ray grant. With TRACING=true both roles also get "*" (X-Ray has no resource-level
# permissions) -> xray:PutTelemetryRecords, xray:PutTraceSegments.
# TRACING=false by default: no X-Ray grant. With TRACING=true both roles also get "*" (X-Ray has no resource-level
# permissions) -> xray:PutTelemetryRecords, xray:PutTraceSegments.
XRAY: dict[str, set[str]] = {}


def own_logs(resources: dict[str, dict[str, Any]], handler: str) -> dict[str, set[str]]:
    """Write access to the function's own log group only (its ARN covers its log streams)."""
    [function] = [
        r for r in of_type(resources, "AWS::Lambda::Function").values() if r["Properties"]["Handler"] == handler
    ]
    group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    return {arn(group): {"logs:CreateLogStream", "logs:PutLogEvents"}}


# --- least privilege, stated exactly -----------------------------------------------------------


def test_the_ingest_role_may_only_send_to_its_queue(resources: dict[str, dict[str, Any]]) -> None:
    role = role_of(resources, "ingest_handler.lambda_handler")
    queue = logical_id(resources, "AWS::SQS::Queue", "BufferQueue")
    # GetQueueAttributes comes with grant_send_messages; MAX_QUEUE uses it to read the backlog
    assert grants(statements_of(resources, role)) == {
        **XRAY,
        **own_logs(resources, "ingest_handler.lambda_handler"),
        arn(queue): {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
    }
    assert "ManagedPolicyArns" not in resources[role]["Properties"]  # no AWSLambdaBasicExecutionRole (logs on *)


def test_the_consumer_role_may_only_put_under_its_prefix_and_the_late_markers_and_consume_its_queue(
    resources: dict[str, dict[str, Any]],
) -> None:
    role = role_of(resources, "consumer_handler.lambda_handler")
    queue = logical_id(resources, "AWS::SQS::Queue", "BufferQueue")
    bucket = logical_id(resources, "AWS::S3::Bucket", "StoragePayloads")
    assert grants(statements_of(resources, role)) == {
        **XRAY,
        **own_logs(resources, "consumer_handler.lambda_handler"),
        # grant_put's set: writes only, under OBJECT_PREFIX and the late markers' prefix (pipeline/contract.py
        # late_marker_key; CDK merges the two grants into one statement). No GetObject/ListBucket: the consumer
        # cannot read stored payloads, and nothing under compacted/
        prefixes_of(bucket, "late/", "payloads/"): {
            "s3:PutObject",
            "s3:Abort*",
            "s3:PutObjectLegalHold",
            "s3:PutObjectRetention",
            "s3:PutObjectTagging",
            "s3:PutObjectVersionTagging",
        },
        # From the event source mapping's consume grant. ChangeMessageVisibility also authorizes
        # ChangeMessageVisibilityBatch, which sets a failed record's retry delay (pipeline/redelivery.py).
        arn(queue): {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
        },
    }
    assert "ManagedPolicyArns" not in resources[role]["Properties"]


def test_the_consumer_sets_retry_delays_on_its_own_queue_only(resources: dict[str, dict[str, Any]]) -> None:
    queue = logical_id(resources, "AWS::SQS::Queue", "BufferQueue")
    [consumer] = [
        r
        for r in of_type(resources, "AWS::Lambda::Function").values()
        if r["Properties"]["Handler"] == "consumer_handler.lambda_handler"
    ]
    env = consumer["Properties"]["Environment"]["Variables"]
    assert env["QUEUE_URL"] == {"Ref": queue}
    assert (env["RETRY_BASE_SECONDS"], env["RETRY_MAX_SECONDS"]) == ("10", "180")


def test_no_other_role_exists_and_no_policy_uses_wildcards(resources: dict[str, dict[str, Any]]) -> None:
    principals = sorted(
        json.dumps(r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"])
        for r in of_type(resources, "AWS::IAM::Role").values()
    )
    # the two functions, API Gateway's account-level CloudWatch logging role, and the compaction's state
    # machine and the schedule that starts it (tests/infra/test_compaction.py states their rights)
    assert principals == sorted(
        [json.dumps({"Service": "lambda.amazonaws.com"})] * 2
        + [json.dumps({"Service": service}) for service in ("apigateway.amazonaws.com", "states.amazonaws.com")]
        + [json.dumps({"Service": "scheduler.amazonaws.com"})]
    )
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(action == "*" or action.endswith(":*") for action in actions), statement
            if statement["Resource"] == "*":
                # X-Ray's and (for the state machine) log delivery's actions have no resource-level permissions
                assert set(actions) <= {"xray:PutTelemetryRecords", "xray:PutTraceSegments"} | {
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    *LOG_DELIVERY_ACTIONS,
                }, statement


# Step Functions' logging to CloudWatch Logs needs these on "*" (Step Functions Developer Guide,
# "IAM Policies for logging to CloudWatch Logs").
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


# --- TLS only, encrypted at rest ---------------------------------------------------------------

TLS_DENY = {"Bool": {"aws:SecureTransport": "false"}}


def denies_plain_http(policy: dict[str, Any], action: str, resource_ids: set[str]) -> bool:
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        if statement["Effect"] == "Deny" and statement.get("Condition") == TLS_DENY and statement["Action"] == action:
            return resource_ids <= set(json.dumps(statement["Resource"], sort_keys=True).split('"')) and statement[
                "Principal"
            ] in ({"AWS": "*"}, "*")
    return False


def test_every_bucket_and_queue_refuses_requests_without_tls(resources: dict[str, dict[str, Any]]) -> None:
    buckets = of_type(resources, "AWS::S3::Bucket")
    queues = of_type(resources, "AWS::SQS::Queue")
    assert len(buckets) == 3 and len(queues) == 2  # payloads, access logs, Athena results
    bucket_policies = {
        p["Properties"]["Bucket"]["Ref"]: p for p in of_type(resources, "AWS::S3::BucketPolicy").values()
    }
    for bucket in buckets:
        assert denies_plain_http(bucket_policies[bucket], "s3:*", {bucket}), bucket
    queue_policies = {
        q["Ref"]: p for p in of_type(resources, "AWS::SQS::QueuePolicy").values() for q in p["Properties"]["Queues"]
    }
    for queue in queues:
        assert denies_plain_http(queue_policies[queue], "sqs:*", {queue}), queue
    for topic_policy in of_type(resources, "AWS::SNS::TopicPolicy").values():  # the alarm topic
        assert denies_plain_http(topic_policy, "sns:Publish", set())


def test_everything_that_stores_data_is_encrypted_at_rest(resources: dict[str, dict[str, Any]]) -> None:
    for lid, bucket in of_type(resources, "AWS::S3::Bucket").items():
        [rule] = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), lid
        assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
    for lid, queue in of_type(resources, "AWS::SQS::Queue").items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue["Properties"], lid
    for lid, topic in of_type(resources, "AWS::SNS::Topic").items():
        assert "KmsMasterKeyId" in topic["Properties"], lid
    for lid, key in of_type(resources, "AWS::KMS::Key").items():
        assert key["Properties"]["EnableKeyRotation"] is True, lid
    # CloudWatch Logs encrypts every log group at rest by default (see docs/SECURITY.md)


# --- CORS off, nothing sensitive in API Gateway's own logs ----------------------------------------


def test_cors_is_off(resources: dict[str, dict[str, Any]], pipeline: Pipeline) -> None:
    methods = {
        m["Properties"]["HttpMethod"]: m["Properties"] for m in of_type(resources, "AWS::ApiGateway::Method").values()
    }
    # OPTIONS exists only to reach the function (405, key required like every method): no MOCK CORS preflight
    assert methods["OPTIONS"]["Integration"]["Type"] == "AWS_PROXY" and methods["OPTIONS"]["ApiKeyRequired"] is True
    assert {m["Integration"]["Type"] for m in methods.values()} == {"AWS_PROXY"}
    assert "Access-Control" not in json.dumps(resources)
    assert all("CorsConfiguration" not in b["Properties"] for b in of_type(resources, "AWS::S3::Bucket").values())
    # And the function itself never answers with CORS headers, to a preflight or a POST
    browser = {"Origin": "https://evil.example", "Content-Type": "application/json", "x-api-key": "k"}
    preflight = pipeline.post(None, headers={**browser, "Access-Control-Request-Method": "POST"}, method="OPTIONS")
    accepted = pipeline.post(json.dumps(collection(1)).encode(), headers=browser)
    assert (preflight.status, accepted.status) == (405, 202)
    for response in (preflight, accepted):
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]


def test_api_gateway_never_logs_bodies_headers_or_keys(resources: dict[str, dict[str, Any]]) -> None:
    [stage] = of_type(resources, "AWS::ApiGateway::Stage").values()
    assert all(setting["DataTraceEnabled"] is False for setting in stage["Properties"]["MethodSettings"])
    access_log_format = stage["Properties"]["AccessLogSetting"]["Format"]
    for sensitive in ("$input", "apiKey", "header", "$context.identity.caller", "$context.identity.user"):
        assert sensitive not in access_log_format


def test_every_method_requires_an_api_key_and_a_missing_key_is_a_403_problem(
    resources: dict[str, dict[str, Any]],
) -> None:
    methods = of_type(resources, "AWS::ApiGateway::Method").values()
    assert len(methods) == 7 and all(method["Properties"]["ApiKeyRequired"] is True for method in methods)
    for response_type in ("INVALID_API_KEY", "ACCESS_DENIED"):
        [gateway] = [
            r["Properties"]
            for r in of_type(resources, "AWS::ApiGateway::GatewayResponse").values()
            if r["Properties"]["ResponseType"] == response_type
        ]
        assert gateway["StatusCode"] == "403"
        assert gateway["ResponseParameters"]["gatewayresponse.header.Content-Type"] == "'application/problem+json'"
        problem = json.loads(gateway["ResponseTemplates"]["application/json"])
        assert {k: problem[k] for k in ("type", "title", "status")} == {
            "type": "urn:ingest-pipeline:problem:forbidden",
            "title": "Forbidden",
            "status": 403,
        }
        assert "x-api-key" in problem["detail"]


# --- every cdk-nag suppression is one we reviewed ---------------------------------------------------

REVIEWED_SUPPRESSIONS = {  # rule -> why it is acceptable: docs/SECURITY.md
    "AwsSolutions-S1",
    "AwsSolutions-IAM4",
    "AwsSolutions-IAM5",
    "AwsSolutions-APIG2",
    "AwsSolutions-APIG3",
    "AwsSolutions-APIG4",
    "AwsSolutions-COG4",
    "AwsSolutions-SQS3",
    "AwsSolutions-SMG4",  # DEVICE_AUTH=on: the keyring is rotated by operators, not on a schedule
    "Serverless-LambdaDLQ",
    "Serverless-LambdaEventSourceMappingDestination",
    "Serverless-SQSRedrivePolicy",
    # TRACING=false by default (cold start: the X-Ray SDK), and the REST stage is never traced: its segments hold
    # client addresses (docs/PRIVACY.md)
    "Serverless-APIGWXrayEnabled",
    "Serverless-LambdaTracing",
    "Serverless-StepFunctionStateMachineXray",
    "AwsSolutions-SF2",
}


def test_every_cdk_nag_suppression_is_reviewed_and_explained(resources: dict[str, dict[str, Any]]) -> None:
    suppressed = [
        rule
        for r in resources.values()
        for rule in r.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert {rule["id"] for rule in suppressed} <= REVIEWED_SUPPRESSIONS
    assert all(len(rule["reason"]) >= 40 for rule in suppressed)


# --- no secrets or payloads in logs --------------------------------------------------------------

API_KEY = "sk-live-API-KEY-4f9c2b7d"
TOKEN = "device-token-SECRET-7e1a"
PAYLOAD_MARKER = "PAYLOAD-BODY-CANARY-93ab"


def every_log_line(caplog: pytest.LogCaptureFixture) -> str:
    """Each captured record as the Powertools JSON line it becomes, plus its raw fields."""
    lines = []
    for record in caplog.records:
        formatter = (
            ingest_handler.logger if record.name == ingest_handler.logger.name else consumer_handler.logger
        ).registered_formatter
        lines.append(formatter.format(record))
        lines.append(repr(record.__dict__))
    return "\n".join(lines)


def test_no_secret_token_or_payload_reaches_the_logs(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # Our loggers at DEBUG (stricter than the shipped INFO); libraries at their shipped level, as in
    # Lambda (botocore's own DEBUG output would print whole requests, but nothing turns it on).
    for name in {ingest_handler.logger.name, consumer_handler.logger.name}:
        caplog.set_level(logging.DEBUG, logger=name)
    headers = {"Content-Type": "application/json", "x-api-key": API_KEY, "Authorization": f"Bearer {API_KEY}"}

    def secret_collection(n: int) -> bytes:
        return json.dumps(
            collection(n, token=TOKEN, data=[{"secret": PAYLOAD_MARKER, "i": i} for i in range(n)])
        ).encode()

    # Given a full run through every path that logs: accepted, consumed, rejected (with a detail
    # quoting the client's key name), an enqueue failure (503), an upload failure and a poison message
    assert pipeline.post(secret_collection(3), headers=headers).status == 202
    duplicate = (
        b'{"version":"1","token":"'
        + TOKEN.encode()
        + b'","data":[{"'
        + PAYLOAD_MARKER.encode()
        + b'":1,"'
        + PAYLOAD_MARKER.encode()
        + b'":2}]}'
    )
    rejected = pipeline.post(duplicate, headers=headers)
    assert rejected.status == 400 and PAYLOAD_MARKER in rejected.body["detail"]  # the client sees it; logs must not
    refusing = FailingSendMessageBatch(aws_clients.sqs_client(), lambda *_: True)
    assert pipeline.post(secret_collection(2), headers=headers).status == 503
    refusing.should_fail = lambda *_: False
    fail_put_object(aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY), lambda key: key.endswith("-0.json"))
    pipeline.sqs.send_message(
        QueueUrl=pipeline.resources.queue_url, MessageBody=f"not an envelope {PAYLOAD_MARKER} {TOKEN}"
    )
    pipeline.consume(pipeline.receive())
    assert len(pipeline.objects()) == 2  # the run really happened

    # Then neither the key, the token nor any payload content appears in any log line
    logged = every_log_line(caplog) + "\n".join(capfd.readouterr())
    assert "payload stored" in logged and "request rejected" in logged and "enqueue failed" in logged
    for secret in (API_KEY, TOKEN, PAYLOAD_MARKER, base64.b64encode(API_KEY.encode()).decode()):
        assert secret not in logged, secret
