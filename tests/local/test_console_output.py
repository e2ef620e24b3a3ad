"""What the runner prints: the shutdown summary and the one line per consumer batch."""

from __future__ import annotations

import io
from typing import Any

from local_pipeline.__main__ import summary
from local_pipeline.access_log import AccessLog
from local_pipeline.lambda_runtime import FunctionError
from local_pipeline.resources import LocalResources
from local_pipeline.worker_pool import batch_error


class _Queues:
    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {"Attributes": {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}}


def test_the_summary_does_not_count_failed_batches_as_storing() -> None:
    # Given 4 consumer batches of one record each that all failed
    log = AccessLog(io.StringIO())
    for worker in range(4):
        log.batch(worker, 1, 1, 10.0, "every record failed")
    # When the summary is printed
    text = summary(log, _Queues(), LocalResources("q", "arn:q", "dlq", "arn:dlq", "bucket"))
    # Then it says that none of them stored anything
    assert "payloads stored   0 (0 of 4 consumer batches stored in full)" in text, text


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
