"""The two Lambda proxy event shapes the ingest gets, read into one request, and the answer in each one's shape.

* API Gateway REST (API_KIND=rest): payload format 1.0. ``headers`` holds one value per name (the last of a
  repeated header), ``multiValueHeaders`` every value; the body is always base64 (binary media type ``*/*``).
* HTTP API (API_KIND=http): payload format 2.0 ("version": "2.0"). No ``multiValueHeaders``: "Duplicate
  headers are combined with commas and included in the headers field"; cookies arrive apart, in ``cookies``;
  ``rawPath`` carries the stage prefix unless the stage is ``$default``; the request time is
  ``requestContext.timeEpoch``. The answer is ``statusCode``, ``headers`` (one value each), ``body``,
  ``isBase64Encoded`` ("Create AWS Lambda proxy integrations for HTTP APIs in API Gateway",
  https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html).
  The body is base64 only when API Gateway judges the content type binary (see docs/FRONT_DOOR.md).

Read as the plain dict Lambda passes: Powertools' event classes would load ~30 event types (P2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.shared.headers_serializer import MultiValueHeadersSerializer

Event = dict[str, Any]
Response = dict[str, Any]
HTTP_API_VERSION = "2.0"
_REST_HEADERS = MultiValueHeadersSerializer()  # a REST proxy answer carries multiValueHeaders


@dataclass(frozen=True)
class HttpRequest:
    method: str  # upper-cased
    path: str  # as the client sent it, without the stage
    headers: Mapping[str, str]  # by lower-case name
    authorization: tuple[str, ...]  # every Authorization value, as received (two headers: two values)
    body: str | None
    is_base64_encoded: bool
    request_id: str  # API Gateway's, "" in a hand-made event
    received_at_ms: int | None  # API Gateway's receive time
    api_key_id: str  # REST with an API key: its id; else ""
    http_api: bool  # payload format 2.0: answer in its shape


def read_event(event: Event) -> HttpRequest:
    """The request in either payload format."""
    context = event.get("requestContext") or {}
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    if event.get("version") == HTTP_API_VERSION:
        path = str(event.get("rawPath") or "/")
        stage = context.get("stage") or "$default"
        if stage != "$default" and path.startswith(f"/{stage}/"):  # Powertools' APIGatewayProxyEventV2.path rule
            path = path[len(stage) + 1 :]
        authorization = headers.get("authorization")
        return HttpRequest(
            method=str((context.get("http") or {}).get("method") or "").upper(),
            path=path,
            headers=headers,
            authorization=() if authorization is None else (authorization,),
            body=event.get("body"),
            is_base64_encoded=bool(event.get("isBase64Encoded")),
            request_id=str(context.get("requestId") or ""),
            received_at_ms=_epoch_ms(context.get("timeEpoch")),
            api_key_id="",
            http_api=True,
        )
    multi_value = {name.lower(): values for name, values in (event.get("multiValueHeaders") or {}).items()}
    authorization_values = multi_value.get("authorization")
    if authorization_values is None:  # a hand-made event without multiValueHeaders
        authorization_values = [headers["authorization"]] if "authorization" in headers else []
    return HttpRequest(
        method=str(event.get("httpMethod") or "").upper(),
        path=str(event.get("path") or "/"),
        headers=headers,
        authorization=tuple(authorization_values),
        body=event.get("body"),
        is_base64_encoded=bool(event.get("isBase64Encoded")),
        request_id=str(context.get("requestId") or ""),
        received_at_ms=_epoch_ms(context.get("requestTimeEpoch")),
        api_key_id=str((context.get("identity") or {}).get("apiKeyId") or ""),
        http_api=False,
    )


def _epoch_ms(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def proxy_response(
    request: HttpRequest, status: int, content_type: str, body: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The Lambda proxy answer in the shape the request's payload format expects."""
    all_headers: dict[str, str | list[str]] = {**(headers or {}), "Content-Type": content_type}
    if request.http_api:
        return {"statusCode": status, "headers": all_headers, "body": body, "isBase64Encoded": False}
    # REST: as Powertools' APIGatewayRestResolver shaped it.
    return {"statusCode": status, "body": body, "isBase64Encoded": False, **_REST_HEADERS.serialize(all_headers, [])}
