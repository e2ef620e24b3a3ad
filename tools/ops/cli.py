"""What the ops command-line tools (redrive, query) and the load-test verifier share: how they reach
AWS or `make run`'s moto, the messages for a missing region or credentials, and a progress line."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)

# What `make run`'s banner gives the AWS CLI for its embedded moto: any region, fixed fake keys
# (moto accepts any; fixed ones mean a real key is never sent to, or signed for, a local endpoint).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
MISSING_REGION = "no AWS region: pass --region or set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)"
MISSING_CREDENTIALS = (
    "no AWS credentials: set AWS_PROFILE (after `aws configure` or `aws sso login`) or "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


# Problems reaching AWS: the tools print describe_aws_problem's one line instead of a traceback.
AWS_PROBLEMS = (BotoCoreError, ClientError)
NOTHING_ANSWERS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
SETUP_PROBLEMS = (NoRegionError, NoCredentialsError, PartialCredentialsError, *NOTHING_ANSWERS)


def is_loopback(endpoint_url: str | None) -> bool:
    """An endpoint on this machine: `make run`'s embedded moto (or LocalStack)."""
    return bool(endpoint_url) and urlsplit(endpoint_url).hostname in LOCAL_HOSTS


def describe_aws_problem(
    exc: Exception, endpoint_url: str | None, *, endpoint_option: str = "--endpoint-url", bucket: str | None = None
) -> str:
    """One line naming what went wrong reaching AWS (or `make run`) and what to do about it.

    ``endpoint_option`` is how the user names the endpoint (``--endpoint-url``, or a make variable);
    ``bucket`` the bucket asked for, if any."""
    if isinstance(exc, NoRegionError):
        return MISSING_REGION
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return MISSING_CREDENTIALS
    if isinstance(exc, NOTHING_ANSWERS):
        if endpoint_url and is_loopback(endpoint_url):
            return nothing_answers_locally(endpoint_url, endpoint_option)
        return f"could not connect to {endpoint_url or 'AWS'} ({exc}): check the network, or set {endpoint_option}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        if code == "NoSuchBucket" and bucket is not None:
            where = endpoint_url or "this AWS account and region"
            return (
                f"no bucket {bucket!r} at {where}: name the stack's BucketName output "
                "(make run's is ingest-pipeline-local-payloads)"
            )
        return f"AWS refused {exc.operation_name}: {code}: {message}"
    return f"could not ask AWS: {exc}"


def nothing_answers_locally(endpoint_url: str, endpoint_option: str = "--endpoint-url") -> str:
    """The line for a loopback endpoint where nothing listens: the port this tool tried, and how to point the tool at
    the one `make run` printed (make run may be running on other ports, or not at all)."""
    port = urlsplit(endpoint_url).port
    return (
        f"nothing answers at {endpoint_url} (port {port}, tried): start `make run`, or, if it is running, point this "
        "tool at the AWS endpoint its banner prints (http://127.0.0.1:<port>): through make, MOTO_PORT=<port>; "
        f"otherwise {endpoint_option}"
    )


# One exit status for one condition, whichever tool meets it (query, verify, compact, devices, redrive):
# the set-up is missing or points nowhere (no region, no credentials, nothing answers at the endpoint).
SETUP_EXIT = 2


def aws_problem_exit(
    tool: str,
    exc: BotoCoreError | ClientError,
    err: TextIO,
    endpoint_url: str | None,
    *,
    endpoint_option: str = "--endpoint-url",
    bucket: str | None = None,
) -> int:
    """Write ``tool``'s one line for ``exc`` (describe_aws_problem) and return the exit status: SETUP_EXIT (2) when
    this machine's set-up is missing or points nowhere (no region, no credentials, nothing answers), 1 when AWS (or
    make run) answered and refused."""
    err.write(f"{tool}: {describe_aws_problem(exc, endpoint_url, endpoint_option=endpoint_option, bucket=bucket)}\n")
    return SETUP_EXIT if isinstance(exc, SETUP_PROBLEMS) else 1


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    """A CloudFormation stack's outputs, ``OutputKey -> OutputValue`` (the one reader of them: compact, devices,
    redrive and smoke name the outputs they need). AWS's errors propagate: each tool says which stack."""
    stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def session_options(endpoint_url: str | None, region: str | None) -> dict[str, Any]:
    """boto3 Session arguments for ``endpoint_url``: on a loopback endpoint (`make run`), region and
    fake credentials default as in the banner's AWS CLI line; elsewhere, the usual chain (flags,
    environment, profile)."""
    if is_loopback(endpoint_url):
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or LOCAL_REGION
        return {"region_name": region, **LOCAL_CREDENTIALS}
    # boto3 reads AWS_DEFAULT_REGION only; Lambda and the AWS CLI v2 docs also use AWS_REGION.
    return {"region_name": region or os.environ.get("AWS_REGION") or None}


def client_options(endpoint_url: str | None, region: str | None) -> dict[str, Any]:
    """boto3 client arguments: ``session_options`` plus the endpoint."""
    return {"endpoint_url": endpoint_url, **session_options(endpoint_url, region)}


class Progress:
    """One status line, rewritten in place on a terminal, or printed every few seconds otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, every_s: float = 5.0) -> None:
        self.stream, self.every_s = stream, every_s
        self.tty = stream.isatty()
        self.last = 0.0

    def show(self, text: str, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
            self.stream.flush()
        elif final or now - self.last >= self.every_s:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last = now
