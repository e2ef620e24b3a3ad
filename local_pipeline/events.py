"""Build Lambda events of the real shapes AWS sends, from real HTTP requests and SQS messages."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Headers = Mapping[str, str] | Sequence[tuple[str, str]]  # a repeated header: one pair per occurrence
# The content types an HTTP API passes as text; it base64-encodes every other body. AWS documents only that the
# choice follows the content type; this split is what an emulator's maintainers measured against AWS
# (ministackorg/ministack#766; README, The HTTP API front door).
HTTP_API_TEXT_TYPES = ("application/json", "application/xml", "application/javascript")


def _pairs(headers: Headers) -> list[tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def api_gateway_event(
    method: str,
    path: str,
    body: bytes | None,
    headers: Headers,
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
    pairs = _pairs(headers)
    multi_headers: dict[str, list[str]] = {}
    for name, value in pairs:
        multi_headers.setdefault(name, []).append(value)
    single = {name: value for name, value in pairs}  # a repeated header: its last value, multiValueHeaders has all
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": single,
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
                "userAgent": single.get("user-agent") or single.get("User-Agent"),
                "apiKey": api_key,
                "apiKeyId": "local" if api_key else None,
            },
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": base64.b64encode(body).decode("ascii") if body else None,
        "isBase64Encoded": bool(body),
    }


def http_api_request_id() -> str:
    """An id shaped like an HTTP API's: 16 characters of base64 text, e.g. "JKJaXmPLvHcESHA=" (may hold + and /)."""
    return base64.b64encode(uuid.uuid4().bytes[:11]).decode("ascii")


def http_api_event(
    method: str,
    path: str,
    body: bytes | None,
    headers: Headers,
    *,
    request_id: str | None = None,
    source_ip: str = "127.0.0.1",
    query: str = "",
) -> dict[str, Any]:
    """An HTTP API Lambda proxy event, payload format 2.0, ``$default`` stage ("Create AWS Lambda proxy
    integrations for HTTP APIs"): header names lower-cased, a repeated header's values joined with commas,
    Cookie headers moved to ``cookies``, the body text for a text content type and base64 for any other."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in _pairs(headers):
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    media_type = joined.get("content-type", "").split(";")[0].strip().lower()
    as_text = media_type.startswith("text/") or media_type in HTTP_API_TEXT_TYPES
    now = datetime.now(tz=UTC)
    request_id = request_id or http_api_request_id()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,  # as sent: the front keeps percent-escapes as they came
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": bool(body) and not as_text,
    }
    if cookies:
        event["cookies"] = cookies
    if body:
        # What the HTTP API does with bytes that are not UTF-8 under a text type is undocumented: replaced here.
        event["body"] = body.decode("utf-8", "replace") if as_text else base64.b64encode(body).decode("ascii")
    return event


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
