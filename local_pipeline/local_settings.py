"""Settings of the local runner itself (ports, API key, local-only overrides), and the stack's config.

The pipeline's own knobs (MAX_WORKERS, BATCH_SIZE, MAX_RECEIVE_COUNT...) are NOT defined here: they
come from infra/config.py exactly as `cdk synth` resolves them (env var > CDK context, cdk.json's >
PROFILE preset > default), so `make run` and the deployed stack cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.config import ConfigError, PipelineConfig, cdk_json_context
from pipeline.contract import parse_int

REPO_ROOT = Path(__file__).resolve().parent.parent
# API Gateway REST refuses bodies above 10 MB before any Lambda runs.
API_GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024


def stack_config(environ: Mapping[str, str]) -> PipelineConfig:
    """The PipelineConfig the stack would be synthesized with, in this environment."""
    return PipelineConfig.resolve(cdk_json_context(), environ)


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    """``environ[name]`` within its bounds, ``default`` when unset or empty; else ConfigError naming it."""
    raw = environ.get(name, "").strip()
    return parse_int(name, raw, minimum, maximum, error=ConfigError) if raw else default


@dataclass(frozen=True)
class LocalSettings:
    """Knobs that exist only for `make run`; each is an environment variable of the same name."""

    PORT: int = 3000
    MOTO_PORT: int = 4566  # LocalStack's edge port, so tools set up for LocalStack work unchanged
    API_KEY: str = "local-dev-key"
    AWS_ENDPOINT_URL: str | None = None  # set: use that endpoint (LocalStack, an account) instead of moto
    AWS_REGION: str = "us-east-1"
    # Local only. The stack's visibility timeout (6 x consumer timeout + window = 181 s) makes a failed
    # record reappear after 3 minutes; set this lower to watch retries and the DLQ locally.
    LOCAL_VISIBILITY_TIMEOUT_SECONDS: int | None = None
    # How many ingest "Lambda instances" (processes) may run at once; API Gateway + Lambda would scale.
    LOCAL_INGEST_CONCURRENCY: int = 4
    # How long Ctrl-C waits for the worker pool to drain the queue before exiting.
    LOCAL_DRAIN_SECONDS: int = 10
    # Test only: the consumer's S3 writes fail for the first N receives of every record whose body
    # contains LOCAL_FAIL_MATCH (empty = every record). 0 = off.
    LOCAL_FAIL_FIRST_ATTEMPTS: int = 0
    LOCAL_FAIL_MATCH: str = ""
    # Level of the handlers' own Powertools JSON logs (LOG_LEVEL if set, else WARNING locally, so the
    # compact access log stays readable).
    POWERTOOLS_LOG_LEVEL: str = "WARNING"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LocalSettings:
        visibility = environ.get("LOCAL_VISIBILITY_TIMEOUT_SECONDS", "").strip()
        log_level = (environ.get("LOG_LEVEL") or "WARNING").strip().upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        port = _int(environ, "PORT", cls.PORT, 0, 65535)
        moto_port = _int(environ, "MOTO_PORT", cls.MOTO_PORT, 0, 65535)
        endpoint_url = environ.get("AWS_ENDPOINT_URL") or None
        if port == moto_port != 0 and endpoint_url is None:
            # make run listens on both: a clear line before either starts, not "Address already in use" after one did.
            raise ConfigError(
                f"PORT and MOTO_PORT are the same ({port}): make run listens on both, HTTP on PORT and its embedded "
                "AWS on MOTO_PORT; give each its own port"
            )
        return cls(
            PORT=port,
            MOTO_PORT=moto_port,
            API_KEY=environ.get("API_KEY") or cls.API_KEY,
            AWS_ENDPOINT_URL=endpoint_url,
            AWS_REGION=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or cls.AWS_REGION,
            LOCAL_VISIBILITY_TIMEOUT_SECONDS=(
                _int(environ, "LOCAL_VISIBILITY_TIMEOUT_SECONDS", 0, 0, 43200) if visibility else None
            ),
            LOCAL_INGEST_CONCURRENCY=_int(environ, "LOCAL_INGEST_CONCURRENCY", cls.LOCAL_INGEST_CONCURRENCY, 1, 64),
            LOCAL_DRAIN_SECONDS=_int(environ, "LOCAL_DRAIN_SECONDS", cls.LOCAL_DRAIN_SECONDS, 0, 3600),
            LOCAL_FAIL_FIRST_ATTEMPTS=_int(environ, "LOCAL_FAIL_FIRST_ATTEMPTS", 0, 0, 1000),
            LOCAL_FAIL_MATCH=environ.get("LOCAL_FAIL_MATCH", ""),
            POWERTOOLS_LOG_LEVEL=log_level,
        )

    def visibility_timeout_seconds(self, config: PipelineConfig) -> int:
        """The stack's value unless LOCAL_VISIBILITY_TIMEOUT_SECONDS overrides it."""
        if self.LOCAL_VISIBILITY_TIMEOUT_SECONDS is None:
            return config.visibility_timeout_seconds
        return self.LOCAL_VISIBILITY_TIMEOUT_SECONDS
