"""What the runner prints: the shutdown summary and the one line per consumer batch."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from local_pipeline.__main__ import summary
from local_pipeline.access_log import AccessLog, BatchOutcome
from local_pipeline.lambda_runtime import FunctionError, MetricLines
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
