"""What the pipeline's parts agree on, written once: the HTTP path and error types, metric and
service names, the object key layout and its parser, the batch-object codec, and the SQS limits with
the packing function.

The Lambdas, infra (CDK), the local runner, tools, the load test and the tests import it from here.
Standard library only, so every one of them can. The Lambdas' environment variables are the field
names of pipeline/settings.py (``IngestSettings``/``ConsumerSettings``), which reads them and writes
them (``to_env``) for infra and ``make run``; ``parse_int`` below is the one integer parser for them
and for every knob.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

# --- HTTP ---------------------------------------------------------------------------------------
PAYLOADS_PATH: Final = "/v1/payloads"
PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_PREFIX: Final = "urn:ingest-pipeline:problem:"
# Request headers, as clients spell them (HTTP field names are case-insensitive: servers compare lower-cased).
API_KEY_HEADER: Final = "x-api-key"  # API Gateway's usage-plan key header
DEVICE_KEY_HEADER: Final = "Authorization"  # "Bearer <device key>" with DEVICE_AUTH=on (pipeline/device_auth.py)
# A JSON media type (the ingest takes any application/*+json) that an HTTP API passes base64-encoded, so gzip and
# any byte reach the ingest exactly: the HTTP API hands application/json bodies over as text (docs/FRONT_DOOR.md).
BINARY_JSON_CONTENT_TYPE: Final = "application/vnd.ingest-pipeline+json"
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"  # pipeline/idempotency.py
# When the client first sent the request (RFC 3339, UTC), the same on every retry: a keyed request is
# partitioned by it, within bounds (pipeline/idempotency.py first_attempt_from; docs/openapi.yaml).
FIRST_ATTEMPT_HEADER: Final = "Ingest-First-Attempt"


def problem_type(slug: str) -> str:
    """The RFC 9457 ``type`` of a problem: ``urn:ingest-pipeline:problem:<slug>``."""
    return PROBLEM_TYPE_PREFIX + slug


def problem_document(status: int | None, slug: str, title: str, detail: str, **extra: object) -> dict[str, object]:
    """The one problem+json shape the handler, the API Gateway responses and ``make run`` answer with.
    ``status`` is None only for a gateway response whose status API Gateway decides."""
    document: dict[str, object] = {"type": problem_type(slug), "title": title}
    if status is not None:
        document["status"] = status
    document["detail"] = detail
    document.update(extra)
    return document


@dataclass(frozen=True)
class GatewayProblem:
    """An error API Gateway answers itself, before the ingest function runs (infra/api_construct.py
    renders each as a gateway response; ``make run``'s front answers the ones it can meet)."""

    status: int | None  # None: API Gateway's own status (DEFAULT_4XX: setting one would override every 4xx)
    slug: str
    title: str
    detail: str  # ``{body_limit}`` is MAX_BODY_BYTES, filled in at synth


# A 5xx detail never promises that a retry helps: a body too large for Lambda fails the same way
# every time.
_NOT_RETRYABLE_IF_TOO_LARGE = "a request body over {body_limit} bytes never succeeds; other causes may be temporary"
_NO_ROUTE = f"no such route; payloads go to POST {PAYLOADS_PATH}"
_NO_KEY = "missing or invalid x-api-key header"
# Keyed by API Gateway's response type name. Every typed response has its own status: AWS applies a
# status set on DEFAULT_4XX/5XX to every type left unconfigured, so the fallbacks must never be what
# gives a 404 or a 415 its status.
GATEWAY_PROBLEMS: Final[Mapping[str, GatewayProblem]] = {
    # Only an unknown path (every method on PAYLOADS_PATH reaches the function): 404, no key needed.
    "MISSING_AUTHENTICATION_TOKEN": GatewayProblem(404, "not-found", "Not Found", _NO_ROUTE),
    "RESOURCE_NOT_FOUND": GatewayProblem(404, "not-found", "Not Found", _NO_ROUTE),
    "INVALID_API_KEY": GatewayProblem(403, "forbidden", "Forbidden", _NO_KEY),
    "ACCESS_DENIED": GatewayProblem(403, "forbidden", "Forbidden", _NO_KEY),
    "EXPIRED_TOKEN": GatewayProblem(403, "forbidden", "Forbidden", "expired credentials"),
    "INVALID_SIGNATURE": GatewayProblem(403, "forbidden", "Forbidden", "invalid request signature"),
    "WAF_FILTERED": GatewayProblem(403, "forbidden", "Forbidden", "blocked by the web application firewall"),
    "UNAUTHORIZED": GatewayProblem(401, "unauthorized", "Unauthorized", "authentication required"),
    "BAD_REQUEST_BODY": GatewayProblem(400, "bad-request", "Bad Request", "the request body was rejected"),
    "BAD_REQUEST_PARAMETERS": GatewayProblem(400, "bad-request", "Bad Request", "the request parameters were rejected"),
    "UNSUPPORTED_MEDIA_TYPE": GatewayProblem(
        415, "unsupported-media-type", "Unsupported Media Type", "expected Content-Type application/json"
    ),
    "REQUEST_TOO_LARGE": GatewayProblem(
        413, "body-too-large", "Content Too Large", "the request body is larger than API Gateway accepts"
    ),
    "THROTTLED": GatewayProblem(429, "throttled", "Too Many Requests", "rate limit exceeded; retry with backoff"),
    "QUOTA_EXCEEDED": GatewayProblem(429, "quota-exceeded", "Too Many Requests", "usage plan quota exceeded"),
    "INTEGRATION_TIMEOUT": GatewayProblem(
        504,
        "timeout",
        "Gateway Timeout",
        "the ingest function did not answer in time; payloads of this request may already be queued. "
        "The cause may be temporary: retrying can help, and may store those payloads twice",
    ),
    "INTEGRATION_FAILURE": GatewayProblem(
        504,
        "ingest-unavailable",
        "Gateway Timeout",
        "the ingest function could not be invoked; " + _NOT_RETRYABLE_IF_TOO_LARGE,
    ),
    "API_CONFIGURATION_ERROR": GatewayProblem(
        500,
        "gateway-error",
        "Internal Server Error",
        "API Gateway could not invoke the ingest function; " + _NOT_RETRYABLE_IF_TOO_LARGE,
    ),
    "AUTHORIZER_FAILURE": GatewayProblem(500, "gateway-error", "Internal Server Error", "authorizer failed"),
    "AUTHORIZER_CONFIGURATION_ERROR": GatewayProblem(
        500, "gateway-error", "Internal Server Error", "authorizer is misconfigured"
    ),
    # Fallbacks. Every typed 5xx is configured above, so what is left is a failed Lambda invocation,
    # which API Gateway answers 502. No status is set on DEFAULT_4XX (it would override any 4xx type
    # AWS adds later), so its body cannot state one either.
    "DEFAULT_5_XX": GatewayProblem(
        502,
        "ingest-unavailable",
        "Bad Gateway",
        "the ingest function failed or could not be invoked; " + _NOT_RETRYABLE_IF_TOO_LARGE,
    ),
    "DEFAULT_4_XX": GatewayProblem(None, "gateway-rejected", "Client Error", "the request was rejected by API Gateway"),
}

# --- telemetry ------------------------------------------------------------------------------------
# Powertools service names: the `service` dimension of every custom metric and log line.
INGEST_SERVICE: Final = "ingest"
CONSUMER_SERVICE: Final = "consumer"


class Metric:
    """Custom metric names (EMF, namespace METRICS_NAMESPACE); infra/monitoring_construct.py graphs them."""

    REQUESTS_ACCEPTED: Final = "RequestsAccepted"  # ingest
    REQUESTS_REJECTED: Final = "RequestsRejected"  # ingest, with a `reason` dimension
    PAYLOADS_ACCEPTED: Final = "PayloadsAccepted"  # ingest
    ENQUEUE_RETRIES: Final = "EnqueueRetries"  # ingest: entries SendMessageBatch listed as Failed, retried
    ENQUEUE_FAILURES: Final = "EnqueueFailures"  # ingest: entries still failed after every attempt
    # ingest, DEVICE_AUTH=on (pipeline/device_auth.py): failed reads of the keyring secret, and requests
    # authenticated against a keyring whose refresh failed (served stale, within DEVICE_KEYRING_STALE_SECONDS)
    KEYRING_REFRESH_FAILED: Final = "KeyringRefreshFailed"
    KEYRING_STALE_SERVED: Final = "KeyringStaleServed"
    PAYLOADS_STORED: Final = "PayloadsStored"  # consumer
    OBJECTS_STORED: Final = "ObjectsStored"  # consumer, OBJECT_MODE=batch
    DUPLICATES_SKIPPED: Final = "DuplicatesSkipped"  # consumer: the key was already stored (412)
    STORE_FAILURES: Final = "StoreFailures"  # consumer: records reported failed (SQS redelivers them)
    RETRIES_SCHEDULED: Final = "RetriesScheduled"  # consumer: failed records given a short retry delay
    END_TO_END_LATENCY: Final = "EndToEndLatency"  # consumer: receivedAt -> stored, milliseconds


# --- SQS ------------------------------------------------------------------------------------------
# The message attribute carrying the ingest's request id (the correlation id) to the consumer.
REQUEST_ID_ATTRIBUTE: Final = "requestId"


def payload_id_prefix(request_id: str) -> str:
    """What the payload ids of a 202's ``requestId`` start with: they are ``<payload_id_prefix>-<index>``. The id
    itself (a UUID), except an HTTP API's base64 id ("qL07L4U2Rty1vGc="), which payload ids, being object keys with
    no "/", spell in the URL-safe alphabet: + -> -, / -> _, no = ("qL07L4U2Rty1vGc"). One-to-one for base64 text,
    so a repeated invocation of one request keeps its ids (README, The HTTP API front door)."""
    return request_id.replace("+", "-").replace("/", "_").rstrip("=")


# SQS counts the body's UTF-8 bytes plus every message attribute's name, type and value against one
# limit, 1 MiB (1,048,576 bytes): "All parts of the message attribute, including Name, Type, and
# Value, are part of the message size restriction (1 MiB or 1,048,576 bytes)" (SQS API reference,
# MessageAttributeValue).
SQS_MAX_MESSAGE_BYTES: Final = 1024 * 1024
# SendMessageBatch (and ReceiveMessage, DeleteMessageBatch, ChangeMessageVisibilityBatch): at most 10
# entries; SendMessageBatch's entries together at most 1 MiB ("The maximum allowed individual message
# size and the maximum total payload size (the sum of the individual lengths of all of the batched
# messages) are both 1 MiB", SQS API reference, SendMessageBatch:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html).
SQS_MAX_BATCH_ENTRIES: Final = 10
SQS_MAX_BATCH_BYTES: Final = 1024 * 1024

T = TypeVar("T")


def pack_batches(items: Sequence[T], size: Callable[[T], int]) -> list[list[T]]:
    """Greedy, order-preserving: at most 10 entries and at most 1 MiB (by ``size``) per batch."""
    batches: list[list[T]] = []
    current: list[T] = []
    current_bytes = 0
    for item in items:
        item_bytes = size(item)
        if current and (len(current) == SQS_MAX_BATCH_ENTRIES or current_bytes + item_bytes > SQS_MAX_BATCH_BYTES):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += item_bytes
    if current:
        batches.append(current)
    return batches


# --- the envelope's size at its worst (pipeline/envelope.py build_messages) ---------------------------
# So a payload of MAX_PAYLOAD_BYTES always fits one message. version and token are JSON-escaped to
# ASCII: a character takes at most 12 bytes there (an astral character, e.g. an emoji, is two \uXXXX).
MAX_VERSION_CHARS: Final = 64
MAX_TOKEN_CHARS: Final = 1024
MAX_REQUEST_ID_CHARS: Final = 128  # pipeline/envelope.py is_safe_id
# The authenticated device id (DEVICE_AUTH=on, pipeline/device_auth.py): ASCII letters, digits, "_" and "-",
# so JSON writes it unescaped, one byte per character.
MAX_DEVICE_ID_CHARS: Final = 64
MAX_PAYLOADS_CEILING: Final = 10_000  # so a payload index has at most 4 digits
_MAX_ESCAPED_CHAR_BYTES = 12
_ENVELOPE_LITERALS = (
    '{"id":"","requestId":,"receivedAt":"","firstAttemptAt":"","version":,"token":,"deviceId":"","payload":}'
)
_RECEIVED_AT_CHARS = len("2026-11-26T02:48:09.123Z")
ENVELOPE_OVERHEAD_BYTES: Final = (
    len(_ENVELOPE_LITERALS)
    + (MAX_REQUEST_ID_CHARS + 1 + len(str(MAX_PAYLOADS_CEILING - 1)))  # id: <requestId>-<index>
    + (MAX_REQUEST_ID_CHARS + 2)  # "requestId"
    + _RECEIVED_AT_CHARS
    + _RECEIVED_AT_CHARS  # "firstAttemptAt", present only when a keyed request was partitioned by it
    + (_MAX_ESCAPED_CHAR_BYTES * MAX_VERSION_CHARS + 2)
    + (_MAX_ESCAPED_CHAR_BYTES * MAX_TOKEN_CHARS + 2)
    + MAX_DEVICE_ID_CHARS  # "deviceId", present only when DEVICE_AUTH authenticated the request
    + len(REQUEST_ID_ATTRIBUTE)
    + len("String")
    + MAX_REQUEST_ID_CHARS  # the message attribute
)  # 13,681 bytes
MAX_PAYLOAD_BYTES_CEILING: Final = SQS_MAX_MESSAGE_BYTES - ENVELOPE_OVERHEAD_BYTES  # 1,034,895


# --- the envelope's receivedAt: API Gateway's receive time, UTC, to the millisecond -----------------
def format_received_at(epoch_ms: int) -> str:
    """``2026-11-26T02:48:09.123Z``: what the ingest writes into every envelope."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def parse_received_at(value: str) -> datetime:
    """The moment an envelope's receivedAt names; ValueError for any other text."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def hour_of(moment: datetime) -> datetime:
    """The hour partition ``moment`` (UTC) falls in."""
    return moment.replace(minute=0, second=0, microsecond=0)


# --- object keys ------------------------------------------------------------------------------------
# {prefix}dt=YYYY-MM-DD/hour=HH/{id}.json (OBJECT_MODE=payload) or
# {prefix}dt=YYYY-MM-DD/hour=HH/batch-{digest}.ndjson.gz (OBJECT_MODE=batch), by receivedAt in UTC.
PAYLOAD_OBJECT_SUFFIX: Final = ".json"
BATCH_OBJECT_SUFFIX: Final = ".ndjson.gz"
PAYLOAD_CONTENT_TYPE: Final = "application/json"
BATCH_CONTENT_TYPE: Final = "application/x-ndjson"
# Level 6 is zlib's default trade-off; level 9 costs ~2x CPU for ~1% on JSON telemetry.
GZIP_LEVEL: Final = 6
_KEY = re.compile(
    r"(?P<prefix>.*?)dt=(?P<dt>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/"
    r"(?:batch-(?P<digest>[0-9a-f]{32})\.ndjson\.gz|(?P<payload_id>[^/]+)\.json)"
)


def partition_prefix(prefix: str, received_at: datetime) -> str:
    """The hour partition every object lands in, in both object modes: ``{prefix}dt=YYYY-MM-DD/hour=HH/``."""
    return f"{prefix}dt={received_at:%Y-%m-%d}/hour={received_at:%H}/"


def payload_object_key(prefix: str, payload_id: str, received_at: datetime) -> str:
    """OBJECT_MODE=payload: ``{prefix}dt=YYYY-MM-DD/hour=HH/{id}.json``; deterministic, so every
    redelivery of a payload maps to one key."""
    return f"{partition_prefix(prefix, received_at)}{payload_id}{PAYLOAD_OBJECT_SUFFIX}"


def batch_object_key(prefix: str, partition: datetime, payload_ids: Iterable[str]) -> str:
    """OBJECT_MODE=batch: ``{prefix}dt=YYYY-MM-DD/hour=HH/batch-{digest}.ndjson.gz``; the digest covers
    the sorted, distinct payload ids, so the same set of payloads always maps to the same key."""
    digest = hashlib.sha256("\n".join(sorted(set(payload_ids))).encode("utf-8")).hexdigest()[:32]
    return f"{partition_prefix(prefix, partition)}batch-{digest}{BATCH_OBJECT_SUFFIX}"


# --- late markers ---------------------------------------------------------------------------------
# An object stored into an hour partition that has already closed (older than the consumer's current UTC
# hour: a keyed retry partitioned by its first attempt, a DLQ redrive, a consumer that lagged over the hour's
# end) may miss that hour's compaction run. So the consumer also writes a zero-byte marker
# ``late/dt=YYYY-MM-DD/hour=HH/<32 hex>`` in the payload bucket, after the object is stored: a run of hour H
# lists H's markers before its CTAS and deletes exactly those after its partition switch, and the schedule
# compacts every hour that has markers (infra/compaction_construct.py; infra/lake_table.py uses this prefix).
# The hex is a digest of the stored object's key, so a redelivery writes the same marker. Beside
# ``compacted/`` at the bucket root; infra/config.py refuses an OBJECT_PREFIX that overlaps either.
LATE_MARKER_PREFIX: Final = "late/"
LATE_MARKER_NAME_CHARS: Final = 32  # hex digits of a marker's name (the compaction's own markers too)


def late_marker_key(partition: datetime, object_key: str) -> str:
    """``late/dt=YYYY-MM-DD/hour=HH/<32 hex>``: the marker of ``object_key``, stored into hour ``partition``."""
    digest = hashlib.sha256(object_key.encode("utf-8")).hexdigest()[:LATE_MARKER_NAME_CHARS]
    return f"{partition_prefix(LATE_MARKER_PREFIX, partition)}{digest}"


def needs_late_marker(partition: datetime, stored_at: datetime, after_seconds: int) -> bool:
    """Whether an object of hour ``partition`` stored at ``stored_at`` needs a late marker: stored
    ``after_seconds`` or more after the hour closed (ConsumerSettings.LATE_MARKER_AFTER_SECONDS), so possibly after
    the hour's scheduled compaction read it."""
    return stored_at >= partition + timedelta(hours=1, seconds=after_seconds)


@dataclass(frozen=True)
class ObjectKey:
    """A parsed object key. ``payload_id`` is set for a payload object, None for a batch object."""

    prefix: str
    partition: datetime  # the hour, UTC
    payload_id: str | None

    @property
    def is_batch(self) -> bool:
        return self.payload_id is None


def parse_object_key(key: str) -> ObjectKey | None:
    """The parts of a key the pipeline wrote, or None for any other key (the bucket may hold others)."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    try:
        partition = datetime.strptime(f"{match['dt']} {match['hour']}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError:  # dt=2026-13-40
        return None
    return ObjectKey(match["prefix"], partition, match["payload_id"])


# --- batch objects (OBJECT_MODE=batch) -------------------------------------------------------------
def encode_batch_object(lines: Mapping[str, bytes]) -> bytes:
    """gzip NDJSON of ``payload id -> envelope line`` (each ending in a newline), sorted by id;
    mtime=0, so the same payloads always give the same bytes."""
    return gzip.compress(b"".join(lines[payload_id] for payload_id in sorted(lines)), compresslevel=GZIP_LEVEL, mtime=0)


def decode_batch_object(data: bytes) -> list[dict[str, Any]]:
    """The envelopes stored in one batch object (for readers, the verifier and tests)."""
    return [json.loads(line) for line in gzip.decompress(data).splitlines() if line.strip()]


# --- knob values --------------------------------------------------------------------------------------
class KnobError(ValueError):
    """A knob or environment variable has a value the pipeline cannot run with; the message names it."""


def parse_int(
    name: str,
    raw: object,
    minimum: int | None = None,
    maximum: int | None = None,
    error: type[KnobError] = KnobError,
) -> int:
    """An integer knob from env/context text (or a JSON number) within its bounds; else ``error``
    naming the knob."""
    if isinstance(raw, bool):  # a JSON true is not 1
        raise error(f"{name}={raw!r} is not an integer")
    try:
        value = raw if isinstance(raw, int) else int(str(raw).strip())
    except ValueError as exc:  # also "3.0", "inf"
        raise error(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise error(f"{name}={value} is below its minimum {minimum}")
    if maximum is not None and value > maximum:
        raise error(f"{name}={value} is above its maximum {maximum}")
    return value
