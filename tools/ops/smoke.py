"""`make smoke-aws`: after `make deploy`, one payload collection through the deployed pipeline and back out of
Athena, one line per step.

    python -m tools.ops.smoke --stack IngestPipeline-prod [--payloads 3] [--wait 300]

Steps, in order; the first that fails names what failed and its docs/RUNBOOK.md entry, and the later ones are
skipped:

- ``outputs``: the stack's outputs (ApiUrl, BucketName, QueryWorkGroup, CompactionStateMachineArn, ...).
- ``credentials``: the API key (REST: ApiKeyId) and, where the stack has a keyring (DEVICE_AUTH=on), a device key
  for the device ``smoke-aws``, minted as `make device-key` mints one (signing only: nothing is written).
- ``send``: POST one collection of ``--payloads`` small payloads to ApiUrl; expects 202 and every payload accepted.
- ``stored``: waits (at most ``--wait`` seconds) until every payload of that request is in the bucket's hour
  partition (OBJECT_PREFIX as this checkout's config has it: run with the knobs you deployed with).
- ``compact``: starts the deployed compaction state machine for that hour (``{"hour": "YYYY-MM-DDTHH"}``, as
  `make compact-aws` does) and waits for it.
- ``query``: reads the request's rows back from ``payloads_compacted`` through Athena in the stack's workgroup:
  one row per payload id.

Exit 0 only if every step passed; 1 if one failed (or AWS refused a call); 2 if this machine has no AWS region or
credentials, or AWS's endpoint does not answer (tools/ops/cli.py aws_problem_exit).

Calls made: cloudformation:DescribeStacks, apigateway:GET (the API key's value), secretsmanager:GetSecretValue
(DEVICE_AUTH=on), s3:ListBucket and GetObject, states:StartExecution and DescribeExecution,
athena:StartQueryExecution, GetQueryExecution and GetQueryResults (with the workgroup's S3 and Glue reads).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from infra.config import PipelineConfig, cdk_json_context
from infra.lake_table import COMPACTED_TABLE_NAME
from pipeline.contract import (
    API_KEY_HEADER,
    DEVICE_KEY_HEADER,
    decode_batch_object,
    parse_object_key,
    partition_prefix,
    payload_id_prefix,
)
from tools.ops.cli import AWS_PROBLEMS, aws_problem_exit, client_options, stack_outputs
from tools.ops.compact import HOUR_FORMAT, compact_hours
from tools.ops.devices import STACK_OUTPUT as DEVICE_KEYS_OUTPUT
from tools.ops.devices import DevicesError, KeyringStore, issue

STEPS: Final = ("outputs", "credentials", "send", "stored", "compact", "query")
SMOKE_DEVICE: Final = "smoke-aws"  # the device id the smoke test's key is minted for (DEVICE_AUTH=on)
RUNBOOK: Final = "docs/RUNBOOK.md#smoke-aws-{step}"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # a 202's request id as payload ids spell it (payload_id_prefix)
_ATHENA_DONE = ("SUCCEEDED", "FAILED", "CANCELLED")

# (url, body, headers) -> (status, response body); urllib by default, a fake in tests.
Sender = Callable[[str, bytes, Mapping[str, str]], tuple[int, bytes]]


class StepFailed(Exception):
    """A step did not pass; the message says what was found."""


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float = 30.0) -> tuple[int, bytes]:
    """POST with the standard library; an HTTP error status is an answer, not an exception."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310  # the stack's https URL
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass(frozen=True)
class Deployment:
    """What the smoke test needs from the stack's outputs (infra/stack.py)."""

    api_url: str
    bucket: str
    workgroup: str
    compacted_table: str
    state_machine_arn: str
    api_key_id: str | None  # REST front door
    device_keys_secret: str | None  # DEVICE_AUTH=on


def deployment_of(outputs: Mapping[str, str], stack: str) -> Deployment:
    missing = [key for key in ("ApiUrl", "BucketName", "QueryWorkGroup") if key not in outputs]
    if missing:
        raise StepFailed(f"stack {stack} has no output {', '.join(missing)}: is it the ingest pipeline?")
    if "CompactionStateMachineArn" not in outputs or "QueryCompactedTable" not in outputs:
        raise StepFailed(f"stack {stack} was deployed with COMPACTION=off: there is no {COMPACTED_TABLE_NAME} to read")
    return Deployment(
        api_url=outputs["ApiUrl"],
        bucket=outputs["BucketName"],
        workgroup=outputs["QueryWorkGroup"],
        compacted_table=outputs["QueryCompactedTable"],
        state_machine_arn=outputs["CompactionStateMachineArn"],
        api_key_id=outputs.get("ApiKeyId"),
        device_keys_secret=outputs.get(DEVICE_KEYS_OUTPUT),
    )


def request_headers(deployment: Deployment, clients: Callable[[str], Any]) -> dict[str, str]:
    """Content-Type, and the credentials this front door asks for: the API key, a device key, or both."""
    headers = {"Content-Type": "application/json"}
    if deployment.api_key_id:
        key = clients("apigateway").get_api_key(apiKey=deployment.api_key_id, includeValue=True)
        headers[API_KEY_HEADER] = str(key["value"])
    if deployment.device_keys_secret:
        store = KeyringStore(clients("secretsmanager"), deployment.device_keys_secret)
        try:
            headers[DEVICE_KEY_HEADER] = f"Bearer {issue(store, SMOKE_DEVICE)}"
        except DevicesError as exc:
            raise StepFailed(f"no device key for {SMOKE_DEVICE}: {exc}") from exc
    return headers


def smoke_collection(run_id: str, payloads: int) -> dict[str, Any]:
    return {"version": "smoke-aws", "token": run_id, "data": [{"smoke": run_id, "seq": n} for n in range(payloads)]}


@dataclass(frozen=True)
class Sent:
    request_id: str
    hours: tuple[datetime, ...]  # the hour partitions the request can be in: receivedAt is API Gateway's clock


def send_collection(
    send: Sender, deployment: Deployment, headers: Mapping[str, str], payloads: int, now: Callable[[], datetime]
) -> Sent:
    run_id = now().strftime("smoke-%Y%m%dT%H%M%SZ")
    before = now()
    try:
        status, raw = send(deployment.api_url, json.dumps(smoke_collection(run_id, payloads)).encode(), headers)
    except OSError as exc:  # urllib's URLError, a timeout, a refused connection: no answer at all
        raise StepFailed(f"POST {deployment.api_url} got no answer: {exc}") from exc
    after = now()
    try:
        answer = json.loads(raw or b"null")
    except ValueError:
        answer = None
    if status != 202 or not isinstance(answer, dict):
        detail = answer.get("detail") or answer.get("message") if isinstance(answer, dict) else raw[:200]
        raise StepFailed(f"POST {deployment.api_url} answered {status}: {detail!r}")
    request_id = str(answer.get("requestId", ""))
    if answer.get("accepted") != payloads or not _SAFE_ID.fullmatch(payload_id_prefix(request_id)):
        raise StepFailed(f"202, but the answer was {answer!r}, not {payloads} accepted payloads with a request id")
    hours = tuple(dict.fromkeys(moment.replace(minute=0, second=0, microsecond=0) for moment in (before, after)))
    return Sent(request_id, hours)


def stored_payloads(s3: Any, bucket: str, prefix: str, hour: datetime, request_id: str, seen: dict[str, int]) -> int:
    """How many of the request's payloads are in ``hour``'s partition, in either object mode. ``seen`` keeps each
    batch object's count between polls (a stored object never changes)."""
    found = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=partition_prefix(prefix, hour)):
        for item in page.get("Contents", []):
            key = item["Key"]
            parsed = parse_object_key(key)
            if parsed is None:
                continue
            if not parsed.is_batch:
                found += str(parsed.payload_id).startswith(f"{payload_id_prefix(request_id)}-")
                continue
            if key not in seen:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                seen[key] = sum(e.get("requestId") == request_id for e in decode_batch_object(body))
            found += seen[key]
    return found


def wait_until_stored(
    s3: Any,
    deployment: Deployment,
    prefix: str,
    sent: Sent,
    payloads: int,
    wait_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    poll_s: float = 5.0,
) -> datetime:
    """The hour partition holding all of the request's payloads; StepFailed after ``wait_s``."""
    deadline = clock() + wait_s
    seen: dict[str, int] = {}
    while True:
        counts = {h: stored_payloads(s3, deployment.bucket, prefix, h, sent.request_id, seen) for h in sent.hours}
        for hour, count in counts.items():
            if count >= payloads:
                return hour
        if clock() >= deadline:
            where = ", ".join(f"s3://{deployment.bucket}/{partition_prefix(prefix, h)}" for h in sent.hours)
            raise StepFailed(f"{sum(counts.values())} of {payloads} payloads in {where} after {wait_s:.0f} s")
        sleep(poll_s)


def compact_hour(sfn: Any, deployment: Deployment, hour: datetime, sleep: Callable[[float], None]) -> str:
    """Run the deployed compaction for ``hour`` (as make compact-aws does) and wait for it; its execution ARN."""
    [result] = compact_hours(sfn, deployment.state_machine_arn, [hour], io.StringIO(), sleep=sleep)
    if result.status != "SUCCEEDED":
        raise StepFailed(f"execution {result.arn} {result.status}{': ' + result.detail if result.detail else ''}")
    return result.arn


def query_rows(
    athena: Any,
    deployment: Deployment,
    hour: datetime,
    request_id: str,
    wait_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    poll_s: float = 2.0,
) -> tuple[int, int]:
    """(rows, distinct ids) of the request in ``payloads_compacted``'s partition of ``hour``, through Athena."""
    sql = (
        f"SELECT count(*), count(DISTINCT id) FROM {deployment.compacted_table} "
        f"WHERE dt = '{hour:%Y-%m-%d}' AND hour = '{hour:%H}' AND requestid = '{request_id}'"
    )
    query_id = athena.start_query_execution(QueryString=sql, WorkGroup=deployment.workgroup)["QueryExecutionId"]
    deadline = clock() + wait_s
    while True:
        status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
        if status["State"] in _ATHENA_DONE:
            break
        if clock() >= deadline:
            raise StepFailed(f"query {query_id} still {status['State']} after {wait_s:.0f} s")
        sleep(poll_s)
    if status["State"] != "SUCCEEDED":
        raise StepFailed(f"query {query_id} {status['State']}: {status.get('StateChangeReason', '')}")
    rows = athena.get_query_results(QueryExecutionId=query_id)["ResultSet"]["Rows"]
    values = [int(cell.get("VarCharValue", "0")) for cell in rows[1]["Data"]]  # row 0 is the header
    return values[0], values[1]


# --- the run -------------------------------------------------------------------------------------------
@dataclass
class Report:
    out: TextIO
    failed: bool = False

    def line(self, step: str, ok: bool, detail: str) -> None:
        where = "" if ok else f"  (read {RUNBOOK.format(step=step)})"
        self.out.write(f"{'ok' if ok else 'FAILED':<8}{step:<12}{detail}{where}\n")
        self.out.flush()
        self.failed = self.failed or not ok

    def skip(self, steps: Sequence[str]) -> None:
        for step in steps:
            self.out.write(f"{'skipped':<8}{step:<12}an earlier step failed\n")


def run(
    stack: str,
    clients: Callable[[str], Any],
    send: Sender,
    out: TextIO,
    err: TextIO,
    *,
    payloads: int,
    wait_s: float,
    prefix: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Every step in order; the exit status (module docstring)."""
    report = Report(out)
    state: dict[str, Any] = {}

    def outputs() -> str:
        state["deployment"] = deployment = deployment_of(stack_outputs(clients("cloudformation"), stack), stack)
        return f"{stack}: ApiUrl {deployment.api_url}, bucket {deployment.bucket}, workgroup {deployment.workgroup}"

    def credentials() -> str:
        state["headers"] = headers = request_headers(state["deployment"], clients)
        kinds = {"API key": API_KEY_HEADER, "device key": DEVICE_KEY_HEADER}
        used = " and ".join(name for name, header in kinds.items() if header in headers) or "none needed"
        return used + (f" (device {SMOKE_DEVICE})" if DEVICE_KEY_HEADER in headers else "")

    def send_step() -> str:
        state["sent"] = sent = send_collection(send, state["deployment"], state["headers"], payloads, now)
        return f"202, {payloads} payloads accepted, requestId {sent.request_id}"

    def stored() -> str:
        state["hour"] = hour = wait_until_stored(
            clients("s3"), state["deployment"], prefix, state["sent"], payloads, wait_s, sleep, clock
        )
        return f"{payloads} payloads in s3://{state['deployment'].bucket}/{partition_prefix(prefix, hour)}"

    def compact() -> str:
        arn = compact_hour(clients("stepfunctions"), state["deployment"], state["hour"], sleep)
        return f"hour {state['hour']:{HOUR_FORMAT}} compacted ({arn})"

    def query() -> str:
        rows, ids = query_rows(
            clients("athena"), state["deployment"], state["hour"], state["sent"].request_id, wait_s, sleep, clock
        )
        table = state["deployment"].compacted_table
        if (rows, ids) != (payloads, payloads):
            raise StepFailed(f"{rows} rows with {ids} distinct ids in {table}, not {payloads}")
        return f"{rows} rows, one per payload id, in {table}"

    steps: dict[str, Callable[[], str]] = {
        "outputs": outputs,
        "credentials": credentials,
        "send": send_step,
        "stored": stored,
        "compact": compact,
        "query": query,
    }
    for index, (step, action) in enumerate(steps.items()):
        try:
            report.line(step, True, action())
        except StepFailed as exc:
            report.line(step, False, str(exc))
        except AWS_PROBLEMS as exc:  # no credentials or region, AWS refused: one line, no traceback
            report.line(step, False, "AWS could not be asked (the line on stderr says why)")
            report.skip(list(steps)[index + 1 :])
            return aws_problem_exit("smoke-aws", exc, err, None)
        if report.failed:
            report.skip(list(steps)[index + 1 :])
            return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ops.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="the deployed stack, e.g. IngestPipeline-prod")
    parser.add_argument("--region", help="AWS region (default: your profile's)")
    parser.add_argument("--payloads", type=int, default=3, choices=range(1, 11), metavar="1-10")
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for the bucket and for Athena")
    return parser


def main(
    argv: Sequence[str] | None = None,
    clients: Callable[[str], Any] | None = None,
    send: Sender = post,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    args = _parser().parse_args(argv)
    config = PipelineConfig.resolve(cdk_json_context())
    if clients is None:
        import boto3

        def clients(service: str) -> Any:
            return boto3.client(service, **client_options(None, args.region))

    return run(
        args.stack,
        clients,
        send,
        out,
        err,
        payloads=args.payloads,
        wait_s=args.wait,
        prefix=config.OBJECT_PREFIX,
        sleep=sleep,
    )


if __name__ == "__main__":
    sys.exit(main())
