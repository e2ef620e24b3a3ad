"""`make smoke-aws` (tools/ops/smoke.py) against fakes: moto for CloudFormation, API Gateway's API key, Secrets
Manager and S3; the real ingest and consumer handlers (tests/conftest.py's pipeline) behind an injected sender
that plays API Gateway; botocore's Stubber for Step Functions and Athena, which moto lacks or fakes poorly."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import NoCredentialsError
from botocore.stub import ANY, Stubber

from pipeline.device_auth import new_keyring_document
from tests.conftest import Pipeline, _clear_caches
from tools.ops import smoke

STACK = "IngestPipeline-test"
STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:ingest-compaction-test"
WORKGROUP = "ingest-pipeline-test"
TABLE = "ingest_pipeline_test.payloads_compacted"
API_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/prod/v1/payloads"


def deploy_stack(**extra_outputs: str) -> None:
    """A stack in moto's CloudFormation with the pipeline's outputs (infra/stack.py's names)."""
    outputs = {
        "ApiUrl": API_URL,
        "BucketName": "test-pipeline-payloads",
        "QueryWorkGroup": WORKGROUP,
        "QueryCompactedTable": TABLE,
        "CompactionStateMachineArn": STATE_MACHINE,
        **extra_outputs,
    }
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "smoke-stack"}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items() if value},
    }
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))


def api_gateway(pipeline: Pipeline, api_key: str | None) -> smoke.Sender:
    """POST through the real ingest handler; like REST API Gateway, refuses a request without the stack's key."""

    def send(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        assert url == API_URL
        if api_key is not None and headers.get("x-api-key") != api_key:
            return 403, b'{"message": "Forbidden"}'
        response = pipeline.post(body, headers=dict(headers))
        return response.status, json.dumps(response.body).encode()

    return send


def draining(pipeline: Pipeline) -> Callable[[float], None]:
    """A sleep during which the worker pool drains the queue into the bucket."""

    def sleep(_seconds: float) -> None:
        messages = pipeline.receive()
        if messages:
            pipeline.consume(messages)

    return sleep


class Fakes:
    """Clients: moto's for what moto implements; stubbed Step Functions and Athena."""

    def __init__(self, compaction_status: str = "SUCCEEDED", rows: int = 3) -> None:
        self.sfn = boto3.client("stepfunctions")
        self.athena = boto3.client("athena")
        self.sfn_stub, self.athena_stub = Stubber(self.sfn), Stubber(self.athena)
        started = {"executionArn": f"{STATE_MACHINE}:smoke", "startDate": datetime.now(UTC)}
        self.sfn_stub.add_response(
            "start_execution", started, {"stateMachineArn": STATE_MACHINE, "name": ANY, "input": ANY}
        )
        described = {
            **started,
            "stateMachineArn": STATE_MACHINE,
            "status": compaction_status,
            **({"error": "States.TaskFailed", "cause": "CTAS refused"} if compaction_status != "SUCCEEDED" else {}),
        }
        self.sfn_stub.add_response("describe_execution", described, {"executionArn": started["executionArn"]})
        self.athena_stub.add_response(
            "start_query_execution", {"QueryExecutionId": "q-1"}, {"QueryString": ANY, "WorkGroup": WORKGROUP}
        )
        self.athena_stub.add_response(
            "get_query_execution", {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}}, {"QueryExecutionId": "q-1"}
        )
        header = {"Data": [{"VarCharValue": "_col0"}, {"VarCharValue": "_col1"}]}
        values = {"Data": [{"VarCharValue": str(rows)}, {"VarCharValue": str(rows)}]}
        self.athena_stub.add_response(
            "get_query_results", {"ResultSet": {"Rows": [header, values]}}, {"QueryExecutionId": "q-1"}
        )
        self.sfn_stub.activate()
        self.athena_stub.activate()

    def client(self, service: str) -> Any:
        return {"stepfunctions": self.sfn, "athena": self.athena}.get(service) or boto3.client(service)


@pytest.fixture
def rest_api_key(pipeline: Pipeline) -> Iterator[str]:
    """A REST deployment: the stack's API key in (moto) API Gateway, named by the ApiKeyId output."""
    apigateway = boto3.client("apigateway")
    key = apigateway.create_api_key(name="ingest", enabled=True, value=secrets.token_urlsafe(30))
    deploy_stack(ApiKeyId=key["id"])
    yield key["value"]


def smoke_aws(fakes: Fakes, send: smoke.Sender, sleep: Callable[[float], None], *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = smoke.main(["--stack", STACK, *args], clients=fakes.client, send=send, out=out, err=err, sleep=sleep)
    return status, out.getvalue(), err.getvalue()


def test_a_healthy_rest_deployment_passes_every_step_with_one_line_each(pipeline: Pipeline, rest_api_key: str) -> None:
    # Given a REST deployment whose pipeline stores what it is sent, and whose compaction and Athena succeed
    fakes = Fakes(rows=3)

    # When the smoke test runs
    status, out, err = smoke_aws(fakes, api_gateway(pipeline, rest_api_key), draining(pipeline))

    # Then every step is one "ok" line, in order, it exits 0, and the 3 payloads are in the bucket
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", step] for step in smoke.STEPS], out
    assert status == 0 and err == ""
    assert "API key" in lines[1] and "3 payloads accepted" in lines[2]
    assert len(pipeline.objects()) == 3


def test_with_device_keys_it_mints_a_key_the_ingest_accepts(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an HTTP API deployment (no API key) with DEVICE_AUTH=on: the ingest verifies every device key
    secretsmanager = boto3.client("secretsmanager")
    arn = secretsmanager.create_secret(
        Name="smoke-keys", SecretString=json.dumps(new_keyring_document(secrets.token_urlsafe(48)))
    )["ARN"]
    monkeypatch.setenv("DEVICE_AUTH", "on")
    monkeypatch.setenv("DEVICE_KEYS_SECRET", arn)
    _clear_caches()
    deploy_stack(DeviceKeysSecretArn=arn)

    # When the smoke test runs
    status, out, _ = smoke_aws(Fakes(rows=3), api_gateway(pipeline, None), draining(pipeline))

    # Then the ingest accepted its key (a 202) and every step passed
    assert status == 0, out
    assert f"device key (device {smoke.SMOKE_DEVICE})" in out.splitlines()[1]


def test_payloads_that_never_reach_the_bucket_fail_the_stored_step_naming_the_runbook(
    pipeline: Pipeline, rest_api_key: str
) -> None:
    # Given a deployment whose worker pool stores nothing (the sleep does not drain the queue)
    fakes = Fakes()

    # When the smoke test runs with a short wait
    status, out, _ = smoke_aws(fakes, api_gateway(pipeline, rest_api_key), lambda _s: None, "--wait", "0")

    # Then the stored step fails, saying how many arrived and where to read, the later steps are skipped, exit 1
    lines = out.splitlines()
    assert lines[3].startswith("FAILED") and "0 of 3 payloads" in lines[3], out
    assert "docs/RUNBOOK.md#smoke-aws-stored" in lines[3]
    assert [line.split()[:2] for line in lines[4:]] == [["skipped", "compact"], ["skipped", "query"]]
    assert status == 1


def test_a_failed_compaction_fails_its_step_with_the_executions_error(pipeline: Pipeline, rest_api_key: str) -> None:
    # Given a compaction execution that fails
    fakes = Fakes(compaction_status="FAILED")

    # When the smoke test runs
    status, out, _ = smoke_aws(fakes, api_gateway(pipeline, rest_api_key), draining(pipeline))

    # Then the compact step says FAILED with the execution's error, and the runbook entry
    compact = out.splitlines()[4]
    assert compact.startswith("FAILED") and "States.TaskFailed" in compact and "#smoke-aws-compact" in compact
    assert status == 1


def test_rows_missing_from_the_compacted_table_fail_the_query_step(pipeline: Pipeline, rest_api_key: str) -> None:
    # Given Athena finds 2 of the 3 payloads in payloads_compacted
    fakes = Fakes(rows=2)

    # When the smoke test runs
    status, out, _ = smoke_aws(fakes, api_gateway(pipeline, rest_api_key), draining(pipeline))

    # Then the query step fails, naming what it found
    query = out.splitlines()[5]
    assert query.startswith("FAILED") and "2 rows" in query and "#smoke-aws-query" in query
    assert status == 1


def test_an_unreachable_api_fails_the_send_step_without_a_traceback(pipeline: Pipeline, rest_api_key: str) -> None:
    # Given an ApiUrl nothing answers at (the real urllib sender, a closed port on this machine)
    def unreachable(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        return smoke.post("http://127.0.0.1:9/v1/payloads", body, headers, timeout_s=2)

    # When the smoke test runs
    status, out, err = smoke_aws(Fakes(), unreachable, lambda _s: None)

    # Then the send step fails saying there was no answer, and nothing else is printed
    send = out.splitlines()[2]
    assert send.startswith("FAILED") and "got no answer" in send and "#smoke-aws-send" in send
    assert status == 1 and err == ""


def test_a_stack_without_compaction_fails_the_outputs_step(aws: None) -> None:
    # Given a stack deployed with COMPACTION=off (no state machine, no compacted table)
    deploy_stack(CompactionStateMachineArn="", QueryCompactedTable="")

    # When the smoke test runs
    status, out, _ = smoke_aws(Fakes(), lambda *a: (500, b""), lambda _s: None)

    # Then the first step fails saying so, and nothing is sent
    assert out.splitlines()[0].startswith("FAILED") and "COMPACTION=off" in out
    assert status == 1


def test_no_credentials_is_one_line_and_exit_2_without_a_traceback(aws: None) -> None:
    # Given a machine without AWS credentials
    def clients(service: str) -> Any:
        raise NoCredentialsError()

    # When the smoke test runs
    out, err = io.StringIO(), io.StringIO()
    status = smoke.main(["--stack", STACK], clients=clients, out=out, err=err)

    # Then stderr has one line saying what to set, and it exits 2
    assert status == 2
    assert err.getvalue().count("\n") == 1 and "no AWS credentials" in err.getvalue()
    assert "Traceback" not in out.getvalue() + err.getvalue()


def test_every_step_names_a_runbook_entry_that_exists() -> None:
    # Given the runbook, Then each step's FAILED line points at a heading it has
    from local_pipeline.local_settings import REPO_ROOT

    headings = {
        line[4:].strip() for line in (REPO_ROOT / "docs/RUNBOOK.md").read_text().splitlines() if line.startswith("### ")
    }
    for step in smoke.STEPS:
        assert smoke.RUNBOOK.format(step=step).split("#")[1] in headings, step
