"""`python -m local_pipeline` (what `make run` starts): the whole pipeline on this machine.

HTTP on 127.0.0.1:PORT -> real ingest handler -> SQS -> MAX_WORKERS pollers -> real consumer handler
-> S3, with SQS and S3 served by an embedded moto server (or AWS_ENDPOINT_URL). Ctrl-C stops taking
requests, drains the queue, prints a summary and exits 0.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent.futures.process import BrokenProcessPool
from types import FrameType

from botocore.exceptions import BotoCoreError, ClientError

from infra.config import ConfigError, PipelineConfig
from local_pipeline.access_log import AccessLog
from local_pipeline.http_front import PAYLOADS_PATH, IngestFront
from local_pipeline.lambda_runtime import FaultInjection, FunctionPool
from local_pipeline.local_settings import LocalSettings, stack_config
from local_pipeline.moto_endpoint import AwsEndpoint, EndpointError, apply_environment
from local_pipeline.resources import LocalResources, create_resources, lambda_environment
from local_pipeline.worker_pool import WorkerPool

RESOURCE_NAME = "ingest-pipeline-local"
# Against AWS_ENDPOINT_URL the pollers long-poll like the ESM (short polls would cost requests on a
# real account); 5 s rather than 20 so that Ctrl-C returns promptly.
EXTERNAL_LONG_POLL_SECONDS = 5


def function_environment(config: PipelineConfig, resources: LocalResources, settings: LocalSettings,
                         endpoint: AwsEndpoint, service: str) -> dict[str, str]:
    """The stack's Lambda environment, plus what differs on a laptop (said per line)."""
    return {
        **lambda_environment(config, resources),
        **endpoint.environment(),  # boto3 in the handlers reaches moto through AWS_ENDPOINT_URL
        "POWERTOOLS_SERVICE_NAME": service,
        # The handlers' JSON logs at WARNING by default, so the compact access log stays readable.
        "POWERTOOLS_LOG_LEVEL": settings.POWERTOOLS_LOG_LEVEL,
        "POWERTOOLS_TRACE_DISABLED": "true",  # there is no X-Ray daemon locally
    }


def main() -> int:
    try:
        settings = LocalSettings.from_env(os.environ)
        config = stack_config(os.environ)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    log = AccessLog()
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            log.line("still shutting down: finishing in-flight batches...")
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    endpoint = AwsEndpoint(port=settings.MOTO_PORT, region=settings.AWS_REGION, endpoint_url=settings.AWS_ENDPOINT_URL)
    try:
        endpoint.start()
    except EndpointError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        return _run(settings, config, endpoint, log, stop)
    finally:
        endpoint.stop()


def _run(settings: LocalSettings, config: PipelineConfig, endpoint: AwsEndpoint, log: AccessLog,
         stop: threading.Event) -> int:
    apply_environment(endpoint.environment())  # inherited by the spawned Lambda environments
    sqs = endpoint.client("sqs", max_pool_connections=config.MAX_WORKERS + 4)
    s3 = endpoint.client("s3")
    resources = create_resources(sqs, s3, config, name=RESOURCE_NAME)
    visibility = settings.visibility_timeout_seconds(config)
    if visibility != config.visibility_timeout_seconds:
        sqs.set_queue_attributes(QueueUrl=resources.queue_url, Attributes={"VisibilityTimeout": str(visibility)})

    ingest = FunctionPool("ingest", "ingest_handler.lambda_handler",
                          function_environment(config, resources, settings, endpoint, "ingest"),
                          settings.LOCAL_INGEST_CONCURRENCY, config.INGEST_TIMEOUT_SECONDS, config.INGEST_MEMORY_MB)
    consumer = FunctionPool("consumer", "consumer_handler.lambda_handler",
                            function_environment(config, resources, settings, endpoint, "consumer"),
                            config.MAX_WORKERS, config.CONSUMER_TIMEOUT_SECONDS, config.CONSUMER_MEMORY_MB,
                            FaultInjection(settings.LOCAL_FAIL_FIRST_ATTEMPTS, settings.LOCAL_FAIL_MATCH))
    workers = WorkerPool(sqs=sqs, resources=resources, config=config, consumer=consumer, log=log,
                         region=endpoint.region, long_poll_seconds=0 if endpoint.embedded else EXTERNAL_LONG_POLL_SECONDS)
    front: IngestFront | None = None
    try:
        try:  # bound first: a busy port fails in a second, before any environment starts
            front = IngestFront(port=settings.PORT, api_key=settings.API_KEY, require_api_key=config.REQUIRE_API_KEY,
                                ingest=ingest, log=log, stage=config.STAGE)
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
        log.text(banner(front.url, settings, config, endpoint, resources, visibility))
        stop.wait()
        log.line("shutting down: no new requests; draining the queue...")
    finally:
        if front is not None:
            front.stop()
        workers.drain_and_stop(settings.LOCAL_DRAIN_SECONDS)
        ingest.shutdown()
        consumer.shutdown()
    log.text(summary(log, sqs, resources))
    return 0


def _depth(sqs: object, queue_url: str) -> int | str:
    try:
        attributes = sqs.get_queue_attributes(  # type: ignore[attr-defined]
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
    except (BotoCoreError, ClientError) as exc:
        return f"unknown ({exc})"
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def summary(log: AccessLog, sqs: object, resources: LocalResources) -> str:
    totals = log.snapshot()
    lines = [
        "",
        "Summary",
        f"  requests          {totals.requests} ({totals.rejected_requests} answered with an error)",
        f"  payloads accepted {totals.payloads_accepted}",
        f"  payloads stored   {totals.records_stored} (in {totals.batches} batches)",
        f"  failed attempts   {totals.record_failures} (retried after the visibility timeout)",
        f"  in DLQ            {_depth(sqs, resources.dlq_url)}",
    ]
    left = _depth(sqs, resources.queue_url)
    if left:
        lines.append(f"  still queued      {left} (not yet stored; the embedded queue ends with this process)")
    return "\n".join(lines)


def banner(url: str, settings: LocalSettings, config: PipelineConfig, endpoint: AwsEndpoint,
           resources: LocalResources, visibility: int) -> str:
    endpoint_kind = "embedded moto server" if endpoint.embedded else "AWS_ENDPOINT_URL"
    cli_env = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing " if endpoint.embedded else ""
    visibility_note = "" if visibility == config.visibility_timeout_seconds else " (LOCAL_VISIBILITY_TIMEOUT_SECONDS)"
    if visibility < config.MAX_BATCHING_WINDOW_SECONDS + 2:
        visibility_note += "; WARNING: below window + 2 s, a record may be delivered again while it is being stored"
    key_header = f" -H 'x-api-key: {settings.API_KEY}'" if config.REQUIRE_API_KEY else ""
    return "\n".join([
        "",
        "Ingest pipeline running locally: real handlers, no AWS account, no Docker",
        f"  endpoint   POST {url}{PAYLOADS_PATH}",
        f"  API key    {settings.API_KEY if config.REQUIRE_API_KEY else '(not required: REQUIRE_API_KEY=false)'}",
        f"  AWS        {endpoint.endpoint_url} ({endpoint_kind}, region {endpoint.region})",
        f"  bucket     {resources.bucket}",
        f"  queue      {resources.queue_url.rsplit('/', 1)[-1]} (visibility {visibility} s{visibility_note}, "
        f"DLQ after {config.MAX_RECEIVE_COUNT} receives)",
        f"  workers    {config.MAX_WORKERS} pollers, batches of up to {config.BATCH_SIZE} within "
        f"{config.MAX_BATCHING_WINDOW_SECONDS} s",
        "",
        "Send payloads:",
        f"  curl -i {url}{PAYLOADS_PATH}{key_header} -H 'content-type: application/json' \\",
        """    -d '{"version":"1.0","token":"device-1","data":[{"temp":21.5},{"temp":22.1}]}'""",
        "",
        "List the stored objects:",
        f"  {cli_env}aws --endpoint-url {endpoint.endpoint_url} --region {endpoint.region} "
        f"s3 ls s3://{resources.bucket}/ --recursive",
        "",
        "Ctrl-C stops: no new requests, the queue is drained, a summary is printed.",
        "Ready.",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
