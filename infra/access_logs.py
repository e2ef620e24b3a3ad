"""API Gateway access logs: one format for every front door (REST or HTTP API), its size, its log group.

One JSON line per request, with what the on-call engineer reads from it and nothing else:

* ``requestId``: the ingest logs it as ``correlation_id`` (REST and HTTP API events carry it as
  ``requestContext.requestId``), so one id finds the access line, the ingest's lines and the stored payloads;
* ``extendedRequestId`` (REST only): the id API Gateway generates and no client can set. A REST client can
  override ``$context.requestId`` with a UUID of its own in ``x-amzn-RequestId``, and AWS advises logging
  both ("Access logging for REST APIs",
  https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-access-logging.html). In an HTTP API
  ``$context.extendedRequestId`` is the same value as ``$context.requestId``
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-logging-variables.html);
* ``ip`` and ``userAgent``: only with ``ACCESS_LOG_CLIENT_IP=on`` (default off). By default no line holds the
  client's address or user agent (docs/PRIVACY.md): the operator who needs to block an abusive client by its
  address turns them on, and the group then keeps its lines ``ACCESS_LOG_CLIENT_IP_RETENTION_DAYS`` (default 7)
  instead of ``LOG_RETENTION_DAYS``. API Gateway writes only the ``$context`` variables a format names
  ("Variables for access logging for REST APIs",
  https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-variables-for-access-logging.html),
  so an address left out of the format is never written;
* ``status`` and ``latencyMs`` (``$context.responseLatency``): what was answered, and how fast. Errors API
  Gateway answers itself (throttling, a missing key, a body over its limit) never reach the function: this
  line is their only record.

Left out, from the standard fields this stage logged before: the request time (every log event has its
own timestamp), method, resource path and protocol (one route, always HTTPS), response length (our answers
are a few hundred bytes). Never logged: bodies, headers, API keys or their ids (tests/infra/test_security.py).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Final

from infra.api_kinds import API_KINDS
from infra.config import PipelineConfig

if TYPE_CHECKING:  # the format and its size import no CDK: tools.models reads them without starting jsii
    from aws_cdk import aws_logs as logs
    from constructs import Construct


# Field -> API Gateway $context variable, per API kind (config.API_KIND): what every line holds.
ACCESS_LOG_FIELDS: Final[dict[str, dict[str, str]]] = {
    "rest": {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "status": "$context.status",
        "latencyMs": "$context.responseLatency",
    },
    "http": {
        "requestId": "$context.requestId",
        "status": "$context.status",
        "latencyMs": "$context.responseLatency",
    },
}
# What ACCESS_LOG_CLIENT_IP=on adds to either kind's line: the client's address and user agent. Both kinds
# name them the same ("Variables for access logging for HTTP APIs",
# https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-logging-variables.html).
CLIENT_FIELDS: Final[dict[str, str]] = {
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
}

# What the variables hold on a typical line, to size one (ACCESS_LOG_LINE_BYTES). Every value is quoted in
# the format, so a variable API Gateway leaves as "-" still makes valid JSON.
# The request ids are sized as UUIDs: what a REST id is, and more than an HTTP API id or an
# extendedRequestId is (about 16 characters), so the HTTP API figure is an upper bound. The address is a
# 14-character IPv4 one; an IPv6 client adds up to 25 bytes. The user agent is the SDK's own
# (client/src/ingest_client/client.py: "ingest-client/<version> python/<version>"). The latency has 3 digits
# (100-999 ms).
_TYPICAL_VALUES: Final = {
    "$context.requestId": "c0ffee00-1234-4321-abcd-0123456789ab",
    "$context.extendedRequestId": "c0ffee00-1234-4321-abcd-0123456789ab",
    "$context.identity.sourceIp": "198.51.100.123",
    "$context.identity.userAgent": "ingest-client/0.9.0 python/3.13.1",
    "$context.status": "202",
    "$context.responseLatency": "123",
}
_VARIABLE = re.compile(r"\$context\.[A-Za-z.]+")


def access_log_format(api_kind: str, client_ip: bool = False) -> str:
    """The access log format of a stage of this API kind ("rest" or "http"): a one-line JSON template of
    $context variables, for ``apigateway.AccessLogFormat.custom`` or an HTTP API stage's
    ``AccessLogSettings.Format``. ``client_ip`` (ACCESS_LOG_CLIENT_IP=on) adds the address and user agent."""
    if api_kind not in ACCESS_LOG_FIELDS:
        raise ValueError(f"API kind must be one of {', '.join(API_KINDS)}, got {api_kind!r}")
    fields = ACCESS_LOG_FIELDS[api_kind]
    if client_ip:  # after the request id(s), where the address was before it became a knob
        ids = {name: variable for name, variable in fields.items() if name.endswith("equestId")}
        fields = {**ids, **CLIENT_FIELDS, **{name: v for name, v in fields.items() if name not in ids}}
    return json.dumps(fields, separators=(",", ":"))


def typical_access_log_line(api_kind: str, client_ip: bool = False) -> str:
    """A line of ``access_log_format(api_kind, client_ip)`` as API Gateway writes it, with typical values."""
    return _VARIABLE.sub(lambda variable: _TYPICAL_VALUES[variable.group()], access_log_format(api_kind, client_ip))


def access_log_line_bytes(api_kind: str, client_ip: bool = False) -> int:
    """Bytes of one access log line: the message CloudWatch Logs ingests, before its own per-event overhead
    (tools/models/prices.py CLOUDWATCH_LOG_EVENT_OVERHEAD_BYTES). For the cost model."""
    return len(typical_access_log_line(api_kind, client_ip).encode())


# The line by API kind, as the stack writes it by default (ACCESS_LOG_CLIENT_IP=off).
ACCESS_LOG_LINE_BYTES: Final[dict[str, int]] = {kind: access_log_line_bytes(kind) for kind in API_KINDS}


def access_log_group(scope: Construct, construct_id: str, config: PipelineConfig) -> logs.LogGroup:
    """The access logs' group, in the class ACCESS_LOG_CLASS names, kept LOG_RETENTION_DAYS, or
    ACCESS_LOG_CLIENT_IP_RETENTION_DAYS while its lines hold client addresses (ACCESS_LOG_CLIENT_IP=on).

    INFREQUENT_ACCESS halves the ingestion price and keeps what this group is used for, CloudWatch Logs
    Insights queries (all but a few commands); it has no Live Tail, metric or subscription filters, no
    GetLogEvents/FilterLogEvents (the console's plain log view), and no EMF ("Log classes",
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/CloudWatch_Logs_Log_Classes.html). No alarm or
    dashboard widget here reads this group. A log group's class cannot change after it is created, so
    changing ACCESS_LOG_CLASS replaces the group, and the lines in the old one go with it. STANDARD is
    left unset in the template (it is the default), so a stack deployed before this knob keeps its group.
    """
    from aws_cdk import aws_logs as logs

    from infra.functions import log_group

    infrequent = config.ACCESS_LOG_CLASS == "INFREQUENT_ACCESS"
    return log_group(
        scope,
        construct_id,
        config,
        logs.LogGroupClass.INFREQUENT_ACCESS if infrequent else None,
        retention_days=config.access_log_retention_days,
    )
