"""Runtime settings, parsed once from the environment the stack sets.

Each field is an environment variable of the same name, and a knob of infra/config.py (the single
source of defaults), which writes them with ``to_env``. So a missing or malformed variable is a
deployment bug: we fail fast at cold start with a message naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, TypeVar

from pipeline.contract import SQS_MAX_MESSAGE_BYTES, KnobError, parse_int

OBJECT_MODES = ("payload", "batch")
SWITCH = ("on", "off")


class SettingsError(KnobError):
    """An environment variable the stack should have set is missing or malformed."""


@dataclass(frozen=True)
class IngestSettings:
    QUEUE_URL: str
    MAX_BODY_BYTES: int = field(metadata={"minimum": 1})
    MAX_PAYLOADS: int = field(metadata={"minimum": 1})
    MAX_PAYLOAD_BYTES: int = field(metadata={"minimum": 1})
    MAX_NESTING_DEPTH: int = field(metadata={"minimum": 1})
    ENQUEUE_MAX_ATTEMPTS: int = field(metadata={"minimum": 1})
    RETRY_AFTER_SECONDS: int = field(metadata={"minimum": 1})
    MAX_QUEUE: int = field(metadata={"minimum": 0})  # 0: no backlog bound (see pipeline/backpressure.py)
    BACKLOG_CHECK_SECONDS: int = field(metadata={"minimum": 1})
    # 0: one payload per message; N: a request's payloads packed into messages of at most N bytes
    # (pipeline/envelope.py build_messages). Never above what SQS accepts in one message.
    MESSAGE_TARGET_BYTES: int = field(metadata={"minimum": 0, "maximum": SQS_MAX_MESSAGE_BYTES})
    # "on": every request on the payloads path needs a device key (pipeline/device_auth.py), verified against
    # the keyring secret DEVICE_KEYS_SECRET (name or ARN; empty when off), re-read every
    # DEVICE_REVOCATION_TTL_SECONDS.
    DEVICE_AUTH: str = field(metadata={"choices": SWITCH})
    DEVICE_REVOCATION_TTL_SECONDS: int = field(metadata={"minimum": 1})
    DEVICE_KEYS_SECRET: str = field(metadata={"may_be_empty": True})
    # How much longer than the TTL a container serves its last good keyring while the secret cannot be read,
    # before it answers 503 (pipeline/device_auth.py); 0: fail closed as soon as a read after the TTL fails.
    DEVICE_KEYRING_STALE_SECONDS: int = field(metadata={"minimum": 0})
    # A keyed request is partitioned by the first attempt it states when that lies at most this many hours
    # before its receipt (pipeline/idempotency.py first_attempt_from).
    RETRY_HORIZON_HOURS: int = field(metadata={"minimum": 1})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IngestSettings:
        settings = _from_env(cls, env)
        if settings.DEVICE_AUTH == "on" and not settings.DEVICE_KEYS_SECRET:
            raise SettingsError("environment variable DEVICE_KEYS_SECRET is required with DEVICE_AUTH=on")
        return settings

    def to_env(self) -> dict[str, str]:
        return _to_env(self)


@dataclass(frozen=True)
class ConsumerSettings:
    BUCKET_NAME: str
    # An empty prefix is legal (objects at the bucket root).
    OBJECT_PREFIX: str = field(metadata={"may_be_empty": True})
    UPLOAD_CONCURRENCY: int = field(metadata={"minimum": 1})
    # "payload": one JSON object per payload; "batch": one gzip NDJSON object per hour partition of a
    # consumer batch (pipeline/batch_objects.py).
    OBJECT_MODE: str = field(metadata={"choices": OBJECT_MODES})
    # The queue the records come from, and the retry delay of a failed record (pipeline/redelivery.py).
    QUEUE_URL: str = field()
    RETRY_BASE_SECONDS: int = field(metadata={"minimum": 1})
    RETRY_MAX_SECONDS: int = field(metadata={"minimum": 1})
    # An object stored into an hour this many seconds or more after the hour closed gets a late marker
    # (pipeline/contract.py needs_late_marker): until then the hour's scheduled compaction has not started.
    LATE_MARKER_AFTER_SECONDS: int = field(metadata={"minimum": 0})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsumerSettings:
        return _from_env(cls, env)

    def to_env(self) -> dict[str, str]:
        return _to_env(self)


S = TypeVar("S", IngestSettings, ConsumerSettings)


def _from_env(cls: type[S], env: Mapping[str, str]) -> S:
    values: dict[str, Any] = {}
    for knob in fields(cls):
        if knob.metadata.get("may_be_empty"):
            values[knob.name] = env.get(knob.name, "")
            continue
        raw = env.get(knob.name, "").strip()
        if not raw:
            raise SettingsError(f"environment variable {knob.name} is required (set by the stack)")
        if knob.type == "int":
            values[knob.name] = parse_int(
                knob.name, raw, knob.metadata["minimum"], knob.metadata.get("maximum"), error=SettingsError
            )
        elif "choices" in knob.metadata and raw not in knob.metadata["choices"]:
            raise SettingsError(f"{knob.name}={raw!r} is not one of {', '.join(knob.metadata['choices'])}")
        else:
            values[knob.name] = raw
    return cls(**values)


def _to_env(settings: IngestSettings | ConsumerSettings) -> dict[str, str]:
    return {knob.name: str(getattr(settings, knob.name)) for knob in fields(settings)}


@lru_cache(maxsize=1)
def ingest_settings() -> IngestSettings:
    """The ingest Lambda's settings, parsed on first use and cached for the container's life."""
    return IngestSettings.from_env(os.environ)


@lru_cache(maxsize=1)
def consumer_settings() -> ConsumerSettings:
    """The consumer Lambda's settings, parsed on first use and cached for the container's life."""
    return ConsumerSettings.from_env(os.environ)
