"""Every knob of the pipeline, in one typed place.

Resolution order for each knob (first wins):
  1. an environment variable with the knob's name, e.g. ``MAX_WORKERS=20 make deploy``;
  2. CDK context, e.g. ``cdk deploy -c MAX_WORKERS=20`` or the ``context`` block of cdk.json;
  3. the default below.

The Lambdas receive their knobs as environment variables with the same names (see
``ingest_environment`` / ``consumer_environment``), so infra, runtime and ``make run`` cannot drift.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# The SQS message limit (1 MiB since Aug 2025) minus room for the envelope around a payload.
SQS_MAX_MESSAGE_BYTES = 1024 * 1024
ENVELOPE_OVERHEAD_BYTES = 4 * 1024
KIB = 1024
CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context block: the knob defaults the CDK CLI passes to the app (and make run uses)."""
    return dict(json.loads(CDK_JSON.read_text())["context"])
# Powertools service names: the `service` dimension of every custom metric and log line.
INGEST_SERVICE = "ingest"
CONSUMER_SERVICE = "consumer"


class ConfigError(ValueError):
    """A knob has a value the pipeline cannot run with; the message names the knob."""


@dataclass(frozen=True)
class PipelineConfig:
    # --- deployment -------------------------------------------------------------------------
    STAGE: str = "prod"
    # --- the worker pool (the Go original's MAX_WORKERS uploaders) ----------------------------
    MAX_WORKERS: int = 10
    UPLOAD_CONCURRENCY: int = 16
    BATCH_SIZE: int = 100
    MAX_BATCHING_WINDOW_SECONDS: int = 1
    CONSUMER_TIMEOUT_SECONDS: int = 30
    CONSUMER_MEMORY_MB: int = 512
    # Provisioned pollers for the event source mapping (docs/OBJECT_MODES.md#provisioned-pollers).
    # When true, MIN_POLLERS/MAX_POLLERS replace MAX_WORKERS as the mapping's bound (AWS does not
    # allow both), and reserved concurrency becomes 10 x MAX_POLLERS (a poller drives <= 10 invokes).
    PROVISIONED_POLLERS: bool = False
    MIN_POLLERS: int = 2
    MAX_POLLERS: int = 10
    # --- the queue (the Go original's MAX_QUEUE buffer) ---------------------------------------
    MAX_RECEIVE_COUNT: int = 5
    QUEUE_RETENTION_DAYS: int = 4
    DLQ_RETENTION_DAYS: int = 14
    MAX_QUEUE: int = 0  # 0 = off; else the ingest answers 503 while the backlog is above it
    # A failed record comes back after RETRY_BASE_SECONDS x 2^(receives-1), jittered, at most
    # RETRY_MAX_SECONDS (and never later than the visibility timeout), not after the full
    # visibility timeout (lambdas/pipeline/redelivery.py, docs/RELIABILITY.md).
    RETRY_BASE_SECONDS: int = 10
    RETRY_MAX_SECONDS: int = 180
    BACKLOG_CHECK_SECONDS: int = 5  # each ingest container reads the backlog at most this often
    # --- the HTTP contract --------------------------------------------------------------------
    MAX_BODY_BYTES: int = 1024 * KIB
    MAX_PAYLOADS: int = 500
    MAX_PAYLOAD_BYTES: int = 256 * KIB
    MAX_NESTING_DEPTH: int = 32
    ENQUEUE_MAX_ATTEMPTS: int = 4
    RETRY_AFTER_SECONDS: int = 1
    INGEST_TIMEOUT_SECONDS: int = 10
    INGEST_MEMORY_MB: int = 512
    REQUIRE_API_KEY: bool = True
    THROTTLE_RATE_LIMIT: int = 1000
    THROTTLE_BURST_LIMIT: int = 2000
    # --- storage ------------------------------------------------------------------------------
    OBJECT_PREFIX: str = "payloads/"
    OBJECT_MODE: str = "payload"  # "payload": one object per payload; "batch": one gzip NDJSON object per batch
    OBJECT_EXPIRATION_DAYS: int = 0  # 0 keeps objects forever
    ACCESS_LOG_EXPIRATION_DAYS: int = 90
    DESTROY_ON_REMOVE: bool = False  # dev only: `cdk destroy` deletes the bucket and its objects
    # --- runtime and telemetry ----------------------------------------------------------------
    PYTHON_VERSION: str = "3.14"
    POWERTOOLS_VERSION: str = "3.37.0"  # same as requirements-dev.txt; resolves the public layer
    LOG_LEVEL: str = "INFO"
    LOG_RETENTION_DAYS: int = 30
    METRICS_NAMESPACE: str = "IngestPipeline"
    TRACING: bool = True
    # --- alarms (infra/monitoring_construct.py, docs/RUNBOOK.md) ---------------------------------
    ALARM_EMAIL: str = ""  # empty: alarms go to the SNS topic only (subscribe whatever you like)
    OLDEST_MESSAGE_AGE_ALARM_SECONDS: int = 300
    API_5XX_RATE_ALARM_PERCENT: int = 1
    RUNBOOK_URL: str = ""  # linked from the dashboard header and alarm texts; empty: docs/RUNBOOK.md

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.STAGE.isidentifier() or self.STAGE.replace("-", "").isalnum(), "STAGE must be alphanumeric (dashes allowed)"),
            (2 <= self.MAX_WORKERS <= 1000, "MAX_WORKERS must be 2..1000 (the SQS event source maximum concurrency range)"),
            (1 <= self.UPLOAD_CONCURRENCY <= 256, "UPLOAD_CONCURRENCY must be 1..256"),
            (1 <= self.BATCH_SIZE <= 10000, "BATCH_SIZE must be 1..10000"),
            (0 <= self.MAX_BATCHING_WINDOW_SECONDS <= 300, "MAX_BATCHING_WINDOW_SECONDS must be 0..300"),
            (self.BATCH_SIZE <= 10 or self.MAX_BATCHING_WINDOW_SECONDS >= 1,
             "BATCH_SIZE above 10 needs MAX_BATCHING_WINDOW_SECONDS >= 1 (an SQS event source rule)"),
            (1 <= self.CONSUMER_TIMEOUT_SECONDS <= 900, "CONSUMER_TIMEOUT_SECONDS must be 1..900"),
            (1 <= self.MAX_RECEIVE_COUNT <= 1000, "MAX_RECEIVE_COUNT must be 1..1000"),
            (1 <= self.QUEUE_RETENTION_DAYS <= 14, "QUEUE_RETENTION_DAYS must be 1..14"),
            (self.QUEUE_RETENTION_DAYS < self.DLQ_RETENTION_DAYS <= 14,
             "DLQ_RETENTION_DAYS must be above QUEUE_RETENTION_DAYS and at most 14 (a moved message keeps its enqueue time)"),
            (1 <= self.MAX_PAYLOAD_BYTES <= SQS_MAX_MESSAGE_BYTES - ENVELOPE_OVERHEAD_BYTES,
             f"MAX_PAYLOAD_BYTES must be 1..{SQS_MAX_MESSAGE_BYTES - ENVELOPE_OVERHEAD_BYTES} (one payload per SQS message)"),
            (self.MAX_PAYLOAD_BYTES <= self.MAX_BODY_BYTES <= 6 * 1024 * KIB - 1,
             "MAX_BODY_BYTES must be at least MAX_PAYLOAD_BYTES and below 6 MiB (the Lambda proxy limit)"),
            (1 <= self.MAX_PAYLOADS <= 10000, "MAX_PAYLOADS must be 1..10000"),
            (1 <= self.MAX_NESTING_DEPTH <= 500, "MAX_NESTING_DEPTH must be 1..500"),
            (self.MAX_QUEUE >= 0, "MAX_QUEUE must be >= 0 (0 = no backlog bound)"),
            (1 <= self.RETRY_BASE_SECONDS <= self.RETRY_MAX_SECONDS,
             "RETRY_BASE_SECONDS must be 1 or more and at most RETRY_MAX_SECONDS"),
            # ChangeMessageVisibility accepts 0..43200 s (12 h).
            (self.RETRY_MAX_SECONDS <= 43200, "RETRY_MAX_SECONDS must be at most 43200 (12 hours, the SQS maximum)"),
            (1 <= self.BACKLOG_CHECK_SECONDS <= 300, "BACKLOG_CHECK_SECONDS must be 1..300"),
            (1 <= self.ENQUEUE_MAX_ATTEMPTS <= 10, "ENQUEUE_MAX_ATTEMPTS must be 1..10"),
            (1 <= self.RETRY_AFTER_SECONDS <= 3600, "RETRY_AFTER_SECONDS must be 1..3600"),
            (1 <= self.INGEST_TIMEOUT_SECONDS <= 29, "INGEST_TIMEOUT_SECONDS must be 1..29 (API Gateway waits 29 s)"),
            (self.THROTTLE_RATE_LIMIT >= 1 and self.THROTTLE_BURST_LIMIT >= 1, "throttle limits must be positive"),
            (self.OBJECT_PREFIX == "" or self.OBJECT_PREFIX.endswith("/"), "OBJECT_PREFIX must be empty or end with '/'"),
            (self.OBJECT_MODE in ("payload", "batch"), "OBJECT_MODE must be payload or batch"),
            (2 <= self.MIN_POLLERS <= 200, "MIN_POLLERS must be 2..200 (the SQS provisioned mode range)"),
            (self.MIN_POLLERS <= self.MAX_POLLERS <= 2000, "MAX_POLLERS must be MIN_POLLERS..2000"),
            (self.OBJECT_EXPIRATION_DAYS >= 0, "OBJECT_EXPIRATION_DAYS must be >= 0 (0 = keep forever)"),
            (self.PYTHON_VERSION in ("3.13", "3.14"), "PYTHON_VERSION must be 3.13 or 3.14"),
            (self.LOG_LEVEL in ("DEBUG", "INFO", "WARNING", "ERROR"), "LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
            (self.ALARM_EMAIL == "" or "@" in self.ALARM_EMAIL.strip("@"), "ALARM_EMAIL must be empty or an email address"),
            (60 <= self.OLDEST_MESSAGE_AGE_ALARM_SECONDS < self.QUEUE_RETENTION_DAYS * 86400,
             "OLDEST_MESSAGE_AGE_ALARM_SECONDS must be 60 or more and below the queue retention (messages expire then)"),
            (1 <= self.API_5XX_RATE_ALARM_PERCENT <= 100, "API_5XX_RATE_ALARM_PERCENT must be 1..100"),
        ]
        failures = [message for ok, message in checks if not ok]
        if failures:
            raise ConfigError("; ".join(failures))

    # --- derived values: computed, never configured, so they cannot disagree -------------------
    @property
    def visibility_timeout_seconds(self) -> int:
        """AWS guidance: at least 6 x the function timeout + the batching window."""
        return 6 * self.CONSUMER_TIMEOUT_SECONDS + self.MAX_BATCHING_WINDOW_SECONDS

    @property
    def retry_max_seconds(self) -> int:
        """The longest retry delay the consumer sets: RETRY_MAX_SECONDS, but never beyond the
        visibility timeout (a longer delay would bring a failed record back later than without one)."""
        return min(self.RETRY_MAX_SECONDS, self.visibility_timeout_seconds)

    @property
    def consumer_reserved_concurrency(self) -> int:
        """Never below what the event source mapping can drive, or it over-pulls, is throttled, and
        good messages drift into the DLQ: MAX_WORKERS (its maximum concurrency), or in provisioned
        mode 10 x MAX_POLLERS (AWS: each SQS event poller drives up to 10 concurrent invokes)."""
        return 10 * self.MAX_POLLERS if self.PROVISIONED_POLLERS else self.MAX_WORKERS

    @property
    def powertools_layer_parameter(self) -> str:
        """Public SSM parameter holding the layer ARN of this exact Powertools release."""
        return f"/aws/service/powertools/python/arm64/python{self.PYTHON_VERSION}/{self.POWERTOOLS_VERSION}"

    def ingest_environment(self, queue_url: str) -> dict[str, str]:
        return {
            "QUEUE_URL": queue_url,
            "MAX_BODY_BYTES": str(self.MAX_BODY_BYTES),
            "MAX_PAYLOADS": str(self.MAX_PAYLOADS),
            "MAX_PAYLOAD_BYTES": str(self.MAX_PAYLOAD_BYTES),
            "MAX_NESTING_DEPTH": str(self.MAX_NESTING_DEPTH),
            "ENQUEUE_MAX_ATTEMPTS": str(self.ENQUEUE_MAX_ATTEMPTS),
            "RETRY_AFTER_SECONDS": str(self.RETRY_AFTER_SECONDS),
            "MAX_QUEUE": str(self.MAX_QUEUE),
            "BACKLOG_CHECK_SECONDS": str(self.BACKLOG_CHECK_SECONDS),
            **self._powertools_environment(INGEST_SERVICE),
        }

    def consumer_environment(self, bucket_name: str, queue_url: str | None = None) -> dict[str, str]:
        """``queue_url``: the consumer sets its failed records' retry delay on that queue. Callers
        that merge this with ``ingest_environment`` (make run, tests) already have QUEUE_URL."""
        return {
            "BUCKET_NAME": bucket_name,
            "OBJECT_PREFIX": self.OBJECT_PREFIX,
            "UPLOAD_CONCURRENCY": str(self.UPLOAD_CONCURRENCY),
            "OBJECT_MODE": self.OBJECT_MODE,
            **({"QUEUE_URL": queue_url} if queue_url else {}),
            "RETRY_BASE_SECONDS": str(self.RETRY_BASE_SECONDS),
            "RETRY_MAX_SECONDS": str(self.retry_max_seconds),
            **self._powertools_environment(CONSUMER_SERVICE),
        }

    def _powertools_environment(self, service: str) -> dict[str, str]:
        return {
            "POWERTOOLS_SERVICE_NAME": service,
            "POWERTOOLS_METRICS_NAMESPACE": self.METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": self.LOG_LEVEL,
            "POWERTOOLS_TRACE_DISABLED": "false" if self.TRACING else "true",
            # A `stage` metric dimension (pipeline/observability.py), so each stage's dashboard and
            # alarms see only that stage when several share an account and namespace.
            "STAGE": self.STAGE,
        }

    @classmethod
    def resolve(cls, context: Callable[[str], Any] | Mapping[str, Any], environ: Mapping[str, str] | None = None) -> PipelineConfig:
        """Build the config from environment variables, then CDK context, then defaults."""
        environ = os.environ if environ is None else environ
        lookup = context.get if isinstance(context, Mapping) else context
        values: dict[str, Any] = {}
        for knob in fields(cls):
            raw = environ.get(knob.name)
            if raw is None:
                raw = lookup(knob.name)
            if raw is not None:
                values[knob.name] = _coerce(knob.name, knob.type, raw)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, type_name: Any, raw: Any) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")
    if kind == "int":
        if isinstance(raw, bool) or (isinstance(raw, float) and not math.isfinite(raw)):
            raise ConfigError(f"{name}={raw!r} is not an integer")
        try:
            return int(str(raw).strip())
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not an integer") from exc
    return str(raw)
