"""`python -m local_pipeline` (what `make run` starts): the whole pipeline on this machine.

HTTP on 127.0.0.1:PORT -> real ingest handler -> SQS -> MAX_WORKERS pollers -> real consumer handler
-> S3, with SQS and S3 served by an embedded moto server (or AWS_ENDPOINT_URL). Ctrl-C stops taking
requests, drains the queue, prints a summary and exits 0; a second Ctrl-C exits at once.

Signals: CPython runs a Python signal handler only in the main thread, between bytecodes, but the
kernel hands a process-directed signal to ANY thread that does not block it. A main thread parked in
an untimed wait while the signal lands on an HTTP or poller thread never runs the handler (Ctrl-C
was ignored under load). So SIGINT and SIGTERM are blocked before any thread starts (threads inherit
the mask) and unblocked in the main thread only, which waits in short sleeps
(https://docs.python.org/3/library/signal.html#signals-and-threads, signal.pthread_sigmask).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import resource_tracker
from types import FrameType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.config import ConfigError, PipelineConfig
from local_pipeline.access_log import AccessLog
from local_pipeline.events import ApiShape, api_shape_for
from local_pipeline.http_front import IngestFront
from local_pipeline.lambda_runtime import FaultInjection, FunctionPool, release_semaphores
from local_pipeline.local_settings import LocalSettings, stack_config
from local_pipeline.moto_endpoint import AwsEndpoint, EndpointError, apply_environment
from local_pipeline.resources import LocalResources, create_resources, lambda_environment
from local_pipeline.worker_pool import WorkerPool
from pipeline.contract import CONSUMER_SERVICE, INGEST_SERVICE, PAYLOADS_PATH
from tools.ops.cli import NOTHING_ANSWERS, describe_aws_problem

RESOURCE_NAME = "ingest-pipeline-local"
# Against AWS_ENDPOINT_URL the pollers long-poll like the ESM (short polls would cost requests on a
# real account); 5 s rather than 20 so that Ctrl-C returns promptly.
EXTERNAL_LONG_POLL_SECONDS = 5
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# How often the main thread looks at the stop flag (a signal also cuts the sleep short).
STOP_CHECK_SECONDS = 0.2
# A second SIGINT/SIGTERM this soon after the first of the same kind is the same request (see StopRequest).
SAME_SIGNAL_SECONDS = 1.0


class StopRequest:
    """The SIGINT/SIGTERM handler. The first signal asks for a graceful stop; a second one exits at
    once, after ``report()`` (what was left undrained) and ``kill()`` (the Lambda environments), unless
    it is the same signal again within SAME_SIGNAL_SECONDS: that is one request delivered twice, not a
    user insisting. GNU make forwards SIGTERM to its child (so ``kill -TERM -- -PGID`` on `make run`
    reaches the runner twice), and ``timeout`` or a supervisor signals both the child and the group.

    The handler only sets plain attributes: taking a lock here (``Event.set``) could deadlock with
    the main thread it interrupts."""

    def __init__(self, log: AccessLog) -> None:
        self.requested = False
        self.log = log
        self.report: Callable[[], str] = lambda: "nothing was running yet"
        self.kill: Callable[[], None] = lambda: None
        self._first: tuple[int, float] | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = (signum, now)
            self.requested = True
            return
        name = signal.Signals(signum).name
        if self._first[0] == signum and now - self._first[1] < SAME_SIGNAL_SECONDS:
            self.log.line(f"{name} again within {SAME_SIGNAL_SECONDS:g} s: the same stop request, still draining")
            return
        self.log.line(f"{name} again: exiting now, without draining; left undrained: {self.report()}")
        self.kill()
        os._exit(128 + signum)

    def wait(self) -> None:
        while not self.requested:
            time.sleep(STOP_CHECK_SECONDS)


def function_environment(
    config: PipelineConfig,
    resources: LocalResources,
    settings: LocalSettings,
    endpoint: AwsEndpoint,
    service: str,
    visibility: int,
) -> dict[str, str]:
    """The stack's Lambda environment, plus what differs on a laptop (said per line)."""
    # The consumer's retry delay never outlasts the queue's visibility timeout (as the stack derives it):
    # with LOCAL_VISIBILITY_TIMEOUT_SECONDS it is that short one.
    retry_max = max(1, min(config.retry_max_seconds, visibility))
    local = dataclasses.replace(
        config, RETRY_BASE_SECONDS=min(config.RETRY_BASE_SECONDS, retry_max), RETRY_MAX_SECONDS=retry_max
    )
    return {
        **lambda_environment(local, resources),
        **endpoint.environment(),  # boto3 in the handlers reaches moto through AWS_ENDPOINT_URL
        "POWERTOOLS_SERVICE_NAME": service,
        # The handlers' JSON logs at WARNING by default, so the compact access log stays readable.
        "POWERTOOLS_LOG_LEVEL": settings.POWERTOOLS_LOG_LEVEL,
        "POWERTOOLS_TRACE_DISABLED": "true",  # there is no X-Ray daemon locally
        # The runner reads the consumer's EMF metrics (what it stored) from its output: never off.
        "POWERTOOLS_METRICS_DISABLED": "false",
    }


def main() -> int:
    try:
        settings = LocalSettings.from_env(os.environ)
        config = stack_config(os.environ)
        api = api_shape_for(config, settings.API_KEY)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    log = AccessLog()
    stop = StopRequest(log)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # multiprocessing's resource tracker, started on first use (the pools' first semaphore), blocks
    # SIGINT/SIGTERM around its spawn and then UNBLOCKS them in the calling thread
    # (resource_tracker.ensure_running, CPython 3.11): started later, it undid the block below, so
    # every later thread, and every Lambda environment they spawned, had them unblocked. Started now.
    resource_tracker.ensure_running()
    # Blocked here, before the first thread starts: every thread inherits the mask, so a signal can
    # only reach the main thread once it unblocks them (see the module docstring).
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    endpoint = AwsEndpoint(port=settings.MOTO_PORT, region=settings.AWS_REGION, endpoint_url=settings.AWS_ENDPOINT_URL)
    try:
        endpoint.start()
    except EndpointError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        return _run(settings, config, api, endpoint, log, stop)
    finally:
        endpoint.stop()


def _run(
    settings: LocalSettings,
    config: PipelineConfig,
    api: ApiShape,
    endpoint: AwsEndpoint,
    log: AccessLog,
    stop: StopRequest,
) -> int:
    apply_environment(endpoint.environment())  # inherited by the spawned Lambda environments
    sqs = endpoint.client("sqs", max_pool_connections=config.MAX_WORKERS + 4)
    s3 = endpoint.client("s3")
    secretsmanager = endpoint.client("secretsmanager") if config.DEVICE_AUTH == "on" else None
    try:
        resources = create_resources(sqs, s3, config, name=RESOURCE_NAME, secretsmanager=secretsmanager)
    except (BotoCoreError, ClientError) as exc:  # the first calls: an AWS_ENDPOINT_URL that does not answer
        print(f"make run: {endpoint_problem(exc, endpoint)}", file=sys.stderr)
        return 2
    visibility = settings.visibility_timeout_seconds(config)
    if visibility != config.visibility_timeout_seconds:
        sqs.set_queue_attributes(QueueUrl=resources.queue_url, Attributes={"VisibilityTimeout": str(visibility)})

    ingest = FunctionPool(
        "ingest",
        "ingest_handler.lambda_handler",
        function_environment(config, resources, settings, endpoint, INGEST_SERVICE, visibility),
        settings.LOCAL_INGEST_CONCURRENCY,
        config.INGEST_TIMEOUT_SECONDS,
        config.INGEST_MEMORY_MB,
    )
    consumer = FunctionPool(
        "consumer",
        "consumer_handler.lambda_handler",
        function_environment(config, resources, settings, endpoint, CONSUMER_SERVICE, visibility),
        config.MAX_WORKERS,
        config.CONSUMER_TIMEOUT_SECONDS,
        config.CONSUMER_MEMORY_MB,
        FaultInjection(settings.LOCAL_FAIL_FIRST_ATTEMPTS, settings.LOCAL_FAIL_MATCH),
    )
    workers = WorkerPool(
        sqs=sqs,
        resources=resources,
        config=config,
        consumer=consumer,
        log=log,
        region=endpoint.region,
        long_poll_seconds=0 if endpoint.embedded else EXTERNAL_LONG_POLL_SECONDS,
    )
    front: IngestFront | None = None
    try:
        try:  # bound first: a busy port fails in a second, before any environment starts
            front = IngestFront(port=settings.PORT, api=api, ingest=ingest, log=log)
        except OSError as exc:
            print(f"cannot listen on 127.0.0.1:{settings.PORT}: {exc} (set PORT to another port)", file=sys.stderr)
            return 2
        try:
            ingest.warm_up()
            consumer.warm_up()
        except BrokenProcessPool:
            print("a Lambda environment failed to start: its handler import raised (traceback above)", file=sys.stderr)
            return 1
        workers.start()
        front.start()
        stop.report = lambda: undrained(log, front, endpoint)

        def kill_all() -> None:
            ingest.kill()
            consumer.kill()
            endpoint.kill()
            release_semaphores()

        stop.kill = kill_all
        log.text(banner(front.url, settings, config, endpoint, resources, visibility))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # only here, in the main thread
        stop.wait()
        log.line("shutting down: no new requests; draining the queue (Ctrl-C again to exit at once)...")
    finally:
        if front is not None:
            front.stop()
        workers.drain_and_stop(settings.LOCAL_DRAIN_SECONDS)
        ingest.shutdown()
        consumer.shutdown()
    log.text(summary(log, sqs, resources, config.OBJECT_MODE))
    return 0


def endpoint_problem(exc: BotoCoreError | ClientError, endpoint: AwsEndpoint) -> str:
    """One line for the first calls to the AWS endpoint failing (in practice: an AWS_ENDPOINT_URL)."""
    if isinstance(exc, NOTHING_ANSWERS):
        if endpoint.embedded:
            return f"nothing answers at {endpoint.endpoint_url}, the embedded AWS endpoint: it stopped (error above?)"
        return (
            f"nothing answers at AWS_ENDPOINT_URL={endpoint.endpoint_url}: start that endpoint (e.g. LocalStack), "
            "or unset AWS_ENDPOINT_URL to use make run's embedded moto"
        )
    return describe_aws_problem(exc, endpoint.endpoint_url, endpoint_option="AWS_ENDPOINT_URL")


def undrained(log: AccessLog, front: IngestFront, endpoint: AwsEndpoint) -> str:
    """What a forced exit leaves behind, from the runner's own counters (no call to a busy endpoint)."""
    totals = log.snapshot()
    where = "lost with the embedded queue" if endpoint.embedded else f"still in the queue at {endpoint.endpoint_url}"
    return (
        f"{totals.payloads_not_yet_stored} accepted payloads not yet stored ({where}), "
        f"{front.in_flight_count()} HTTP requests in flight"
    )


def _depth(sqs: Any, queue_url: str) -> int | str:
    try:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
    except (BotoCoreError, ClientError) as exc:
        return f"unknown ({exc})"
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def summary(log: AccessLog, sqs: object, resources: LocalResources, object_mode: str = "payload") -> str:
    """The shutdown summary. Payloads stored and duplicates come from the consumer's own metrics, so
    they match the bucket: objects (payload mode) or lines of batch objects written."""
    totals = log.snapshot()
    written = "new objects" if object_mode == "payload" else "lines of new batch objects"
    lines = [
        "",
        "Summary",
        f"  requests          {totals.requests} ({totals.rejected_requests} answered with an error)",
        f"  payloads accepted {totals.payloads_accepted}",
        f"  payloads stored   {totals.payloads_stored} ({written} in the bucket)",
        f"  duplicates        {totals.duplicates_skipped} (already stored, not written again: a retried "
        "Idempotency-Key, a redelivered or redriven copy)",
        f"  consumer batches  {totals.batches - totals.failed_batches} of {totals.batches} stored in full",
        f"  failed attempts   {totals.record_failures} (retried after their retry delay)",
        f"  in DLQ            {_depth(sqs, resources.dlq_url)}",
    ]
    left = _depth(sqs, resources.queue_url)
    if left:
        lines.append(f"  still queued      {left} messages (not yet stored; the embedded queue ends with this process)")
    return "\n".join(lines)


# Knobs the banner shows on its `config` line, name=value as resolved (env > context > PROFILE > default):
# the ones that change what a user sees locally. A knob that does, add here (its value is the config's).
BANNER_KNOBS: tuple[str, ...] = ("PROFILE", "OBJECT_MODE", "MESSAGE_TARGET_BYTES", "API_KIND", "DEVICE_AUTH")


def config_line(config: PipelineConfig) -> str:
    """``PROFILE=dev OBJECT_MODE=payload ...``: the BANNER_KNOBS as the stack would get them."""
    return " ".join(f"{name}={getattr(config, name)}" for name in BANNER_KNOBS)


def banner(
    url: str,
    settings: LocalSettings,
    config: PipelineConfig,
    endpoint: AwsEndpoint,
    resources: LocalResources,
    visibility: int,
) -> str:
    endpoint_kind = "embedded moto server" if endpoint.embedded else "AWS_ENDPOINT_URL"
    cli_env = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing " if endpoint.fake_credentials else ""
    visibility_note = "" if visibility == config.visibility_timeout_seconds else " (LOCAL_VISIBILITY_TIMEOUT_SECONDS)"
    if visibility < config.MAX_BATCHING_WINDOW_SECONDS + 2:
        visibility_note += "; WARNING: below window + 2 s, a record may be delivered again while it is being stored"
    http_api = config.API_KIND == "http"
    key_header = f" -H 'x-api-key: {settings.API_KEY}'" if config.REQUIRE_API_KEY and not http_api else ""
    access = (
        "  front door HTTP API (API_KIND=http: payload format 2.0, no API key)"
        if http_api
        else f"  API key    {settings.API_KEY if config.REQUIRE_API_KEY else '(not required: REQUIRE_API_KEY=false)'}"
    )
    device_lines: list[str] = []
    if config.DEVICE_AUTH == "on":
        # The make targets reach make run's embedded AWS on MOTO_PORT; an AWS_ENDPOINT_URL needs the tool itself.
        if endpoint.embedded:
            mint = f"make -s device-key DEVICE=device-1 MOTO_PORT={settings.MOTO_PORT}"
            revoke = f"make revoke-device DEVICE=device-1 MOTO_PORT={settings.MOTO_PORT}"
        else:
            tool = (
                f"python -m tools.ops.devices --endpoint-url {endpoint.endpoint_url} "
                f"--secret-id {resources.device_keys_secret}"
            )
            mint, revoke = f"{tool} issue device-1", f"{tool} revoke device-1"
        key_header += ' -H "Authorization: Bearer $KEY"'
        device_lines = [
            f"Device keys (DEVICE_AUTH=on, keyring {resources.device_keys_secret}): mint one, then send with it:",
            f"  KEY=$({mint})",
            "",
        ]
        device_lines_after = [
            f"Revoke it (refused within DEVICE_REVOCATION_TTL_SECONDS={config.DEVICE_REVOCATION_TTL_SECONDS}):",
            f"  {revoke}",
            "",
        ]
    else:
        device_lines_after = []
    # make query and make compact read make run's embedded AWS on MOTO_PORT (tools/ops/query.py, compact.py).
    lake_lines = (
        [
            "Query them with SQL (DuckDB, offline), and compact them into Parquet (payloads_compacted):",
            f"""  make query SQL="select token, count(*) from payloads group by 1" MOTO_PORT={settings.MOTO_PORT}""",
            f"  make compact MOTO_PORT={settings.MOTO_PORT}",
            "",
        ]
        if endpoint.embedded
        else []
    )
    return "\n".join(
        [
            "",
            "Ingest pipeline running locally: real handlers, no AWS account, no Docker",
            f"  endpoint   POST {url}{PAYLOADS_PATH}",
            access,
            f"  AWS        {endpoint.endpoint_url} ({endpoint_kind}, region {endpoint.region})",
            f"  bucket     {resources.bucket}",
            f"  queue      {resources.queue_url.rsplit('/', 1)[-1]} (visibility {visibility} s{visibility_note}, "
            f"DLQ after {config.MAX_RECEIVE_COUNT} receives)",
            f"  workers    {config.MAX_WORKERS} pollers, batches of up to {config.BATCH_SIZE} within "
            f"{config.MAX_BATCHING_WINDOW_SECONDS} s",
            f"  config     {config_line(config)}",
            "",
            *device_lines,
            "Send payloads:",
            f"  curl -i {url}{PAYLOADS_PATH}{key_header} -H 'content-type: application/json' \\",
            """    -d '{"version":"1.0","token":"device-1","data":[{"temp":21.5},{"temp":22.1}]}'""",
            "",
            *device_lines_after,
            "List the stored objects:",
            f"  {cli_env}aws --endpoint-url {endpoint.endpoint_url} --region {endpoint.region} "
            f"s3 ls s3://{resources.bucket}/ --recursive",
            "",
            *lake_lines,
            "Ctrl-C stops: no new requests, the queue is drained, a summary is printed.",
            "Ready.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
