"""Build Lambda events of the real shapes AWS sends, from real HTTP requests and SQS messages.

The local front's seam (local_pipeline/http_front.py does the HTTP; this module what the deployed
API does with a request): the front reads an ``HttpRequest``, and the ``ApiShape`` of the
configured ``API_KIND`` (``API_SHAPES``) names the request (``new_request_id``), decides whether the
API itself refuses it (``refusal``: the REST API's key check), builds the Lambda event (``event``),
turns the function's result into HTTP (``response``) and shapes the few errors the gateway makes
itself (``own_answer``). A new kind of API is one class with those methods and one entry in
``API_SHAPES``; the front does not change.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qs

from infra.config import ConfigError, PipelineConfig
from pipeline.contract import API_KEY_HEADER, GATEWAY_PROBLEMS, GatewayProblem


@dataclass(frozen=True)
class HttpRequest:
    """One request as the local front read it, framing done: what API Gateway has before it builds the event."""

    method: str
    path: str  # as sent: no slash collapsing, percent-escapes kept (as API Gateway passes them)
    query: str  # the raw query string, "" when there is none
    headers: tuple[tuple[str, str], ...]  # every header line in order, names as sent (case kept)
    body: bytes
    request_id: str
    source_ip: str = "127.0.0.1"
    received_at: datetime = field(default_factory=lambda: datetime.now(tz=UTC))

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (any case), None when absent: what API Gateway's
        single-value ``headers`` map holds."""
        values = self.header_values(name)
        return values[-1] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in order."""
        wanted = name.lower()
        return [value for header, value in self.headers if header.lower() == wanted]


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class ApiShape(Protocol):
    """What one kind of deployed API (API_KIND) does around the ingest Lambda, locally."""

    @property
    def request_id_header(self) -> str:
        """The response header that carries the request's id: a REST API's x-amzn-RequestId, an HTTP API's
        apigw-requestid (README, The HTTP API front door)."""
        ...

    def new_request_id(self) -> str:
        """The id the API gives a request (its requestContext.requestId and ``request_id_header``)."""
        ...

    def refusal(self, request: HttpRequest) -> GatewayProblem | None:
        """The gateway response the API answers itself (before any Lambda runs), or None. Decided on
        the head, before the body is read (``request.body`` is empty here): a refused body is never
        read, and a client waiting on ``Expect: 100-continue`` gets the refusal instead of a 100."""
        ...

    def event(self, request: HttpRequest) -> dict[str, Any]:
        """The Lambda event the API hands the ingest for ``request``."""
        ...

    def own_answer(self, status: int) -> HttpResponse | None:
        """The API's own answer to an error it makes itself (413: the body is above its limit; 502: the
        function failed) when that is not the front's problem+json (an HTTP API's bare ``{"message"}``);
        None: the front's problem+json, as the REST API's gateway responses give it."""
        ...


@dataclass(frozen=True)
class RestProxyApi:
    """API_KIND=rest: a REST API, Lambda proxy integration, binaryMediaTypes */*, and (REQUIRE_API_KEY)
    an API key checked for every request, whatever its method and path, before the Lambda runs."""

    stage: str
    api_key: str | None  # None: REQUIRE_API_KEY=false
    request_id_header: ClassVar[str] = "x-amzn-RequestId"

    def new_request_id(self) -> str:
        return str(uuid.uuid4())  # a REST API's request ids are UUIDs

    def own_answer(self, status: int) -> HttpResponse | None:
        return None  # the stack's gateway responses are problem+json (infra/api_construct.py)

    def refusal(self, request: HttpRequest) -> GatewayProblem | None:
        if self.api_key is None:
            return None
        sent = request.header(API_KEY_HEADER)
        if sent is not None and hmac.compare_digest(sent.encode(), self.api_key.encode()):
            return None
        return GATEWAY_PROBLEMS["INVALID_API_KEY"]

    def event(self, request: HttpRequest) -> dict[str, Any]:
        multi_value_headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            multi_value_headers.setdefault(name, []).append(value)
        return api_gateway_event(
            request.method,
            request.path,
            request.body,
            {name: values[-1] for name, values in multi_value_headers.items()},
            multi_value_headers=multi_value_headers,
            request_id=request.request_id,
            source_ip=request.source_ip,
            stage=self.stage,
            api_key=request.header(API_KEY_HEADER),
            query=parse_qs(request.query, keep_blank_values=True) if request.query else None,
            received_at=request.received_at,
        )


# The content types an HTTP API passes as text; it base64-encodes every other body. AWS documents only that the
# choice follows the content type; this split is what an emulator's maintainers measured against AWS
# (ministackorg/ministack#766; docs/FRONT_DOOR.md).
HTTP_API_TEXT_TYPES = ("application/json", "application/xml", "application/javascript")
# The answers an HTTP API makes itself cannot be customised: {"message": ...} (docs/FRONT_DOOR.md).
HTTP_API_MESSAGES: dict[int, str] = {413: "Request Entity Too Large", 500: "Internal Server Error"}


@dataclass(frozen=True)
class HttpApi:
    """API_KIND=http: an HTTP API, Lambda proxy integration with payload format 2.0, every route to the ingest.
    No API key (devices authenticate in the ingest: DEVICE_AUTH=on), its own bare answers."""

    request_id_header: ClassVar[str] = "apigw-requestid"

    def new_request_id(self) -> str:
        return http_api_request_id()

    def refusal(self, request: HttpRequest) -> GatewayProblem | None:
        return None  # an HTTP API has no API keys: every request reaches the ingest

    def event(self, request: HttpRequest) -> dict[str, Any]:
        return http_api_event(
            request.method,
            request.path,
            request.body,
            request.headers,
            request_id=request.request_id,
            source_ip=request.source_ip,
            query=request.query,
            received_at=request.received_at,
        )

    def own_answer(self, status: int) -> HttpResponse | None:
        status = 500 if status == 502 else status  # an HTTP API answers a failed function 500
        message = HTTP_API_MESSAGES.get(status)
        if message is None:
            return None
        body = json.dumps({"message": message}, separators=(",", ":")).encode()
        return HttpResponse(status, {"Content-Type": "application/json"}, body)


# API_KIND -> its shape, from the config and make run's API key.
API_SHAPES: dict[str, Callable[[PipelineConfig, str], ApiShape]] = {
    "rest": lambda config, api_key: RestProxyApi(config.STAGE, api_key if config.REQUIRE_API_KEY else None),
    "http": lambda config, api_key: HttpApi(),
}


def api_shape_for(config: PipelineConfig, api_key: str) -> ApiShape:
    """The shape of ``config.API_KIND``; ConfigError naming the knob when make run has none for it."""
    try:
        return API_SHAPES[config.API_KIND](config, api_key)
    except KeyError:
        raise ConfigError(
            f"API_KIND={config.API_KIND} is not served by make run yet (it serves: {', '.join(API_SHAPES)})"
        ) from None


def api_gateway_event(
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    multi_value_headers: dict[str, list[str]] | None = None,
    request_id: str | None = None,
    source_ip: str = "127.0.0.1",
    stage: str = "local",
    api_key: str | None = None,
    query: dict[str, list[str]] | None = None,
    received_at: datetime | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1) Lambda proxy event, as sent with binaryMediaTypes ["*/*"]:
    the body is always base64-encoded, byte for byte what the client sent. ``query`` is the parsed
    query string (``urllib.parse.parse_qs``), None when there is none, as API Gateway sends it.
    ``multi_value_headers`` defaults to one value per name of ``headers``."""
    now = received_at or datetime.now(tz=UTC)
    request_id = request_id or str(uuid.uuid4())
    multi_headers = multi_value_headers or {name: [value] for name, value in headers.items()}
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
            "requestTimeEpoch": int(now.timestamp() * 1000),
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


Headers = Mapping[str, str] | Sequence[tuple[str, str]]  # a repeated header: one pair per occurrence


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
    received_at: datetime | None = None,
) -> dict[str, Any]:
    """An HTTP API Lambda proxy event, payload format 2.0, ``$default`` stage ("Create AWS Lambda proxy
    integrations for HTTP APIs"): header names lower-cased, a repeated header's values joined with commas,
    Cookie headers moved to ``cookies``, the body text for a text content type and base64 for any other."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers.items() if isinstance(headers, Mapping) else headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    media_type = joined.get("content-type", "").split(";")[0].strip().lower()
    as_text = media_type.startswith("text/") or media_type in HTTP_API_TEXT_TYPES
    now = received_at or datetime.now(tz=UTC)
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
            "timeEpoch": int(now.timestamp() * 1000),
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


def http_response(result: Mapping[str, Any]) -> HttpResponse:
    """What API Gateway (either kind) sends the client for a Lambda proxy answer."""
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode("utf-8")
    return HttpResponse(int(result["statusCode"]), response_headers(result), body)


def response_headers(response: Mapping[str, Any]) -> dict[str, str]:
    """Headers of a Lambda proxy response, merging ``multiValueHeaders`` (Powertools' REST
    resolver uses them) and ``headers`` the way API Gateway does."""
    merged = {name: ", ".join(values) for name, values in (response.get("multiValueHeaders") or {}).items()}
    merged.update(response.get("headers") or {})
    return merged
