"""Create-only object writes: a redelivered message can never make a second object or version."""

from __future__ import annotations

from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from pipeline.contract import PAYLOAD_CONTENT_TYPE
from pipeline.time_budget import ensure_time_left


class StoreOutcome(str, Enum):
    STORED = "stored"
    ALREADY_STORED = "already-stored"


def put_create_only(
    s3: Any, bucket: str, key: str, body: bytes, content_type: str = PAYLOAD_CONTENT_TYPE
) -> StoreOutcome:
    """PutObject with If-None-Match: *. A 412 means an earlier delivery already stored this key.

    botocore retries SlowDown and 5xx in-process (pipeline/aws_clients.py) within the invocation's
    time budget (pipeline/time_budget.py); what still fails raises, and SQS redelivers the record."""
    ensure_time_left()  # no upload starts that the function could not finish
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
            return StoreOutcome.ALREADY_STORED
        raise  # 409 ConditionalRequestConflict, 5xx, SlowDown...: the record is retried by SQS
    return StoreOutcome.STORED
