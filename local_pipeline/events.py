"""Build Lambda events of the real shapes AWS sends, from real HTTP requests and SQS messages."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def api_gateway_event(
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    request_id: str | None = None,
    source_ip: str = "127.0.0.1",
    stage: str = "local",
    api_key: str | None = None,
    query: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1) Lambda proxy event, as sent with binaryMediaTypes ["*/*"]:
    the body is always base64-encoded, byte for byte what the client sent. ``query`` is the parsed
    query string (``urllib.parse.parse_qs``), None when there is none, as API Gateway sends it."""
    now = datetime.now(tz=UTC)
    request_id = request_id or str(uuid.uuid4())
    multi_headers = {name: [value] for name, value in headers.items()}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {name: values[-1] for name, values in query.items()} if query else None,
        "multiValueQueryStringParameters": {name: list(values) for name, values in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{stage}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(time.time() * 1000),
            "requestId": request_id,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent") or headers.get("User-Agent"),
                "apiKey": api_key,
                "apiKeyId": "local" if api_key else None,
            },
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": base64.b64encode(body).decode("ascii") if body else None,
        "isBase64Encoded": bool(body),
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """An SQS event source mapping event built from ReceiveMessage output
    (requested with AttributeNames=["All"], MessageAttributeNames=["All"])."""
    records = []
    for message in messages:
        attributes = {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        }
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes") or {}),
                "messageAttributes": attributes,
                "md5OfBody": message.get("MD5OfBody"),
                "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


@dataclass
class LambdaContext:
    """The attributes Powertools reads from the Lambda context object."""

    function_name: str = "local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline_ms: int = field(default_factory=lambda: int(time.time() * 1000) + 30_000)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def response_headers(response: dict[str, Any]) -> dict[str, str]:
    """Headers of a Lambda proxy response, merging ``multiValueHeaders`` (Powertools' REST
    resolver uses them) and ``headers`` the way API Gateway does."""
    merged = {name: ", ".join(values) for name, values in (response.get("multiValueHeaders") or {}).items()}
    merged.update(response.get("headers") or {})
    return merged
