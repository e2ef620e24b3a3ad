"""The P1 and P2 baseline: the least code that does the ingest job, written by hand, no framework.

Parse the body, check the types, wrap each payload in the same envelope as the real handler,
one SendMessageBatch per 10 payloads, return 202. It skips everything the real handler adds on top
(content-type/encoding checks, size and depth limits, duplicate keys, lone surrogates, byte-aware
packing, retries of Failed entries, problem+json errors, logging, metrics, tracing), so the ratio
between the two is the price of those guarantees.

As a Lambda function (``lambda_handler``, P2's cold start) it is what a minimal handler looks like:
``import boto3`` at the top, one ``boto3.client("sqs")`` per container, 202 after SendMessageBatch.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import boto3

# The names the pipeline's parts share, as the real handler takes them. Importing the contract costs the
# baseline's cold start what it costs the real handler's (~7 ms compiling it in P2's no-bytecode asset).
from pipeline.contract import REQUEST_ID_ATTRIBUTE, SQS_MAX_BATCH_ENTRIES

_sqs: Any = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _sqs
    if _sqs is None:
        _sqs = boto3.client("sqs")
    return handle(event, _sqs, os.environ["QUEUE_URL"])


def handle(event: dict[str, Any], sqs: Any, queue_url: str) -> dict[str, Any]:
    raw = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"].encode()
    document = json.loads(raw)
    if not isinstance(document, dict):
        return {"statusCode": 400, "body": "body must be an object"}
    version, token, data = document.get("version"), document.get("token"), document.get("data")
    if not (
        isinstance(version, str)
        and isinstance(token, str)
        and isinstance(data, list)
        and all(isinstance(payload, dict) for payload in data)
    ):
        return {"statusCode": 400, "body": "bad collection"}
    request_id = event["requestContext"]["requestId"]
    received_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    entries = [
        {
            "Id": str(index),
            "MessageBody": json.dumps(
                {
                    "id": f"{request_id}-{index}",
                    "requestId": request_id,
                    "receivedAt": received_at,
                    "version": version,
                    "token": token,
                    "payload": payload,
                }
            ),
            "MessageAttributes": {REQUEST_ID_ATTRIBUTE: {"DataType": "String", "StringValue": request_id}},
        }
        for index, payload in enumerate(data)
    ]
    for start in range(0, len(entries), SQS_MAX_BATCH_ENTRIES):
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries[start : start + SQS_MAX_BATCH_ENTRIES])
        if response.get("Failed"):
            return {"statusCode": 503, "body": "not enqueued"}
    return {
        "statusCode": 202,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"requestId": request_id, "accepted": len(entries)}),
    }
