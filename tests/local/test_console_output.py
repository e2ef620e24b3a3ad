"""What the runner prints: the shutdown summary and the one line per consumer batch."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from local_pipeline.__main__ import banner, summary
from local_pipeline.access_log import AccessLog, BatchOutcome
from local_pipeline.lambda_runtime import FunctionError, MetricLines
from local_pipeline.local_settings import REPO_ROOT, LocalSettings, stack_config
from local_pipeline.moto_endpoint import AwsEndpoint
from local_pipeline.resources import LocalResources
from local_pipeline.worker_pool import batch_error
from pipeline.contract import Metric


class _Queues:
    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {"Attributes": {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}}


def test_the_summary_does_not_count_failed_batches_as_storing() -> None:
    # Given 4 consumer batches of one record each that all failed
    log = AccessLog(io.StringIO())
    for worker in range(4):
        log.batch(worker, BatchOutcome(records=1, failures=1), 10.0, "every record failed")
    # When the summary is printed
    text = summary(log, _Queues(), LocalResources("q", "arn:q", "dlq", "arn:dlq", "bucket"))
    # Then it says that none of them stored anything
    assert "payloads stored   0 (new objects in the bucket)" in text, text
    assert "consumer batches  0 of 4 stored in full" in text, text


def test_the_summary_counts_payloads_written_apart_from_duplicates_skipped() -> None:
    # Given 10 accepted payloads, then batches whose consumer stored 8 and found 3 already stored
    # (a retried Idempotency-Key: 2 of them were accepted twice; 1 redelivered copy)
    log = AccessLog(io.StringIO())
    log.request("POST", "/v1/payloads", 202, 10, 1.0)
    log.request("POST", "/v1/payloads", 202, 2, 1.0)
    log.batch(1, BatchOutcome(records=9, failures=0, payloads_stored=8, duplicates_skipped=1), 10.0)
    log.batch(2, BatchOutcome(records=2, failures=0, payloads_stored=0, duplicates_skipped=2), 10.0)
    # When the summary is printed (batch object mode)
    text = summary(log, _Queues(), LocalResources("q", "arn:q", "dlq", "arn:dlq", "bucket"), "batch")
    # Then stored is what was written, not the 11 records taken off the queue, and duplicates are apart
    assert "payloads stored   8 (lines of new batch objects in the bucket)" in text, text
    assert "duplicates        3 (already stored, not written again" in text, text
    # And what a forced exit would call not yet stored: 12 accepted - 8 stored - 3 skipped
    assert log.snapshot().payloads_not_yet_stored == 1


def test_the_consumers_emf_metrics_are_read_and_kept_off_the_console() -> None:
    # Given an environment's stdout, and Powertools metrics as the consumer adds and flushes them
    console = io.StringIO()
    stdout = MetricLines(console)
    metrics = Metrics(namespace="Test", service="consumer")
    for _ in range(3):
        metrics.add_metric(name=Metric.PAYLOADS_STORED, unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=Metric.DUPLICATES_SKIPPED, unit=MetricUnit.Count, value=2)
    # When they are flushed (one EMF document, printed) around an ordinary line
    with contextlib.redirect_stdout(stdout):
        print("a log line")
        metrics.flush_metrics()
    # Then the runner gets the sums, and the console only the ordinary line
    assert stdout.take() == {Metric.PAYLOADS_STORED: 3, Metric.DUPLICATES_SKIPPED: 2}
    assert console.getvalue() == "a log line\n"
    assert stdout.take() == {}


def test_a_batch_where_every_record_failed_shows_the_errors_on_its_line() -> None:
    # Given the consumer's error when every record failed (Powertools' BatchProcessingError message)
    message = (
        "All records failed processing. 2 individual errors logged separately below.\n\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "botocore.exceptions.ClientError: An error occurred (InternalError) when calling PutObject\n\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "botocore.exceptions.ClientError: An error occurred (InternalError) when calling PutObject\n"
    )
    # When the worker pool writes its one line for the batch
    line = batch_error(FunctionError("BatchProcessingError", message, ""))
    # Then the line carries the records' errors instead of pointing "below" at nothing
    assert "below" not in line and "\n" not in line
    assert "ClientError: An error occurred (InternalError) when calling PutObject (x2)" in line, line


def banner_block(document: str) -> list[str]:
    """The banner as a doc shows it: from its first line to Ready."""
    lines = document.splitlines()
    start = lines.index("Ingest pipeline running locally: real handlers, no AWS account, no Docker")
    return lines[start : lines.index("Ready.", start) + 1]


@pytest.mark.parametrize("doc", ["README.md", "docs/LOCAL.md"])
def test_the_docs_show_the_banner_make_run_prints_with_the_defaults(doc: str) -> None:
    # Given the default settings and config, as `make run` resolves them with no knob set
    config = stack_config({})
    endpoint = AwsEndpoint(port=4566, region="us-east-1")
    endpoint.endpoint_url = "http://127.0.0.1:4566"  # what the embedded server reports once started
    queue = "http://127.0.0.1:4566/123456789012/ingest-pipeline-local"
    resources = LocalResources(queue, "arn:q", f"{queue}-dlq", "arn:dlq", "ingest-pipeline-local-payloads")
    # When the runner prints its banner
    printed = banner(
        "http://127.0.0.1:3000", LocalSettings(), config, endpoint, resources, config.visibility_timeout_seconds
    )
    # Then the doc shows exactly that (object mode, profile and the other config knobs included)
    assert banner_block((REPO_ROOT / doc).read_text()) == banner_block(printed)


def test_local_md_shows_the_summary_the_runner_prints() -> None:
    # Given the run LOCAL.md shows: a 202 for 2 payloads, a 403, one batch storing both
    log = AccessLog(io.StringIO())
    log.request("POST", "/v1/payloads", 202, 2, 52.6)
    log.request("POST", "/v1/payloads", 403, 0, 0.2)
    log.batch(4, BatchOutcome(records=2, failures=0, payloads_stored=2), 149.5)
    # When the runner prints its summary
    printed = summary(log, _Queues(), LocalResources("q", "arn:q", "dlq", "arn:dlq", "bucket")).splitlines()
    # Then LOCAL.md shows those lines
    doc = (REPO_ROOT / "docs/LOCAL.md").read_text().splitlines()
    start = doc.index("Summary")
    assert doc[start : start + len(printed) - 1] == printed[1:]
