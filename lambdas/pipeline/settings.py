"""Runtime settings, parsed once from the environment the stack sets.

The names are the knob names of infra/config.py (the single source of defaults), so a missing or
malformed variable is a deployment bug: we fail fast at cold start with a message naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache


class SettingsError(RuntimeError):
    """An environment variable the stack should have set is missing or malformed."""


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is required (set by the stack)")
    return value


def _int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    raw = _require(env, name)
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise SettingsError(f"{name}={value} is below its minimum {minimum}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = _require(env, name)
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class IngestSettings:
    queue_url: str
    max_body_bytes: int
    max_payloads: int
    max_payload_bytes: int
    max_nesting_depth: int
    enqueue_max_attempts: int
    retry_after_seconds: int
    max_queue: int = 0  # 0: no backlog bound (see pipeline/backpressure.py)
    backlog_check_seconds: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IngestSettings:
        return cls(
            queue_url=_require(env, "QUEUE_URL"),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1),
            max_payloads=_int(env, "MAX_PAYLOADS", 1),
            max_payload_bytes=_int(env, "MAX_PAYLOAD_BYTES", 1),
            max_nesting_depth=_int(env, "MAX_NESTING_DEPTH", 1),
            enqueue_max_attempts=_int(env, "ENQUEUE_MAX_ATTEMPTS", 1),
            retry_after_seconds=_int(env, "RETRY_AFTER_SECONDS", 1),
            max_queue=_int(env, "MAX_QUEUE", 0),
            backlog_check_seconds=_int(env, "BACKLOG_CHECK_SECONDS", 1),
        )


OBJECT_MODES = ("payload", "batch")


@dataclass(frozen=True)
class ConsumerSettings:
    bucket_name: str
    object_prefix: str
    upload_concurrency: int
    # "payload": one JSON object per payload (the default); "batch": one gzip NDJSON object per
    # hour partition of a consumer batch (pipeline/batch_objects.py). Defaulted here only so code
    # that builds settings by hand keeps working; from_env still requires the variable.
    object_mode: str = "payload"
    # The queue the records come from, and the retry delay of a failed record (pipeline/redelivery.py).
    queue_url: str = ""
    retry_base_seconds: int = 10
    retry_max_seconds: int = 180

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsumerSettings:
        return cls(
            bucket_name=_require(env, "BUCKET_NAME"),
            # An empty prefix is legal (objects at the bucket root), so it is not _require()d.
            object_prefix=env.get("OBJECT_PREFIX", ""),
            upload_concurrency=_int(env, "UPLOAD_CONCURRENCY", 1),
            object_mode=_choice(env, "OBJECT_MODE", OBJECT_MODES),
            queue_url=_require(env, "QUEUE_URL"),
            retry_base_seconds=_int(env, "RETRY_BASE_SECONDS", 1),
            retry_max_seconds=_int(env, "RETRY_MAX_SECONDS", 1),
        )


@lru_cache(maxsize=1)
def ingest_settings() -> IngestSettings:
    """The ingest Lambda's settings, parsed on first use and cached for the container's life."""
    return IngestSettings.from_env(os.environ)


@lru_cache(maxsize=1)
def consumer_settings() -> ConsumerSettings:
    """The consumer Lambda's settings, parsed on first use and cached for the container's life."""
    return ConsumerSettings.from_env(os.environ)
