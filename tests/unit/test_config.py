"""The one typed config: precedence, validation and what the Lambdas receive."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, PipelineConfig
from pipeline.settings import ConsumerSettings, IngestSettings, SettingsError


def test_env_var_beats_context_which_beats_default() -> None:
    config = PipelineConfig.resolve({"MAX_WORKERS": 12, "BATCH_SIZE": "50"}, environ={"MAX_WORKERS": "20"})
    assert (config.MAX_WORKERS, config.BATCH_SIZE, config.UPLOAD_CONCURRENCY) == (20, 50, 16)


@pytest.mark.parametrize("raw", ["false", "0", "no", False])
def test_booleans_accept_cli_strings(raw: object) -> None:
    assert PipelineConfig.resolve({"REQUIRE_API_KEY": raw}, environ={}).REQUIRE_API_KEY is False


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ({"MAX_WORKERS": 1}, "MAX_WORKERS"),
        ({"MAX_WORKERS": "ten"}, "MAX_WORKERS"),
        ({"BATCH_SIZE": 100, "MAX_BATCHING_WINDOW_SECONDS": 0}, "MAX_BATCHING_WINDOW_SECONDS"),
        ({"DLQ_RETENTION_DAYS": 4}, "DLQ_RETENTION_DAYS"),
        ({"MAX_PAYLOAD_BYTES": 2 * 1024 * 1024}, "MAX_PAYLOAD_BYTES"),
        ({"OBJECT_PREFIX": "no-slash"}, "OBJECT_PREFIX"),
        ({"REQUIRE_API_KEY": "maybe"}, "REQUIRE_API_KEY"),
        ({"RETRY_BASE_SECONDS": 0}, "RETRY_BASE_SECONDS"),
        ({"RETRY_BASE_SECONDS": 200, "RETRY_MAX_SECONDS": 100}, "RETRY_BASE_SECONDS"),
        ({"RETRY_MAX_SECONDS": 43201}, "RETRY_MAX_SECONDS"),
        ({"MESSAGE_TARGET_BYTES": 1023}, "MESSAGE_TARGET_BYTES"),
        ({"MESSAGE_TARGET_BYTES": 1024 * 1024 + 1}, "MESSAGE_TARGET_BYTES"),
    ],
)
def test_invalid_knobs_fail_fast_naming_the_knob(knobs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        PipelineConfig.resolve(knobs, environ={})


def test_visibility_timeout_is_derived_from_timeout_and_window() -> None:
    config = PipelineConfig(CONSUMER_TIMEOUT_SECONDS=40, MAX_BATCHING_WINDOW_SECONDS=5)
    assert config.visibility_timeout_seconds == 6 * 40 + 5


def test_lambdas_parse_exactly_what_the_stack_renders() -> None:
    config = PipelineConfig(MAX_PAYLOADS=42, UPLOAD_CONCURRENCY=7, OBJECT_PREFIX="raw/")
    ingest = IngestSettings.from_env(config.ingest_environment("https://queue"))
    consumer = ConsumerSettings.from_env(config.consumer_environment("bucket", "https://queue"))
    assert (ingest.QUEUE_URL, ingest.MAX_PAYLOADS, ingest.MAX_BODY_BYTES) == (
        "https://queue",
        42,
        config.MAX_BODY_BYTES,
    )
    assert (consumer.BUCKET_NAME, consumer.UPLOAD_CONCURRENCY, consumer.OBJECT_PREFIX) == ("bucket", 7, "raw/")
    assert (consumer.QUEUE_URL, consumer.RETRY_BASE_SECONDS, consumer.RETRY_MAX_SECONDS) == ("https://queue", 10, 180)


def test_the_retry_delay_never_exceeds_the_visibility_timeout() -> None:
    # Given a visibility timeout (6 x 10 + 1 = 61 s) shorter than RETRY_MAX_SECONDS
    config = PipelineConfig(CONSUMER_TIMEOUT_SECONDS=10, RETRY_MAX_SECONDS=300)
    # Then the consumer is told 61 s: a longer delay would bring a record back later than without one
    assert config.consumer_environment("bucket", "https://queue")["RETRY_MAX_SECONDS"] == "61"
    assert PipelineConfig().consumer_environment("bucket", "https://queue")["RETRY_MAX_SECONDS"] == "180"


def test_the_ingest_gets_message_target_bytes_and_refuses_one_sqs_would_refuse() -> None:
    assert IngestSettings.from_env(PipelineConfig().ingest_environment("q")).MESSAGE_TARGET_BYTES == 0
    environment = PipelineConfig(MESSAGE_TARGET_BYTES=65536).ingest_environment("q")
    assert IngestSettings.from_env(environment).MESSAGE_TARGET_BYTES == 65536
    # Set by hand past SQS's 1 MiB message, it fails at cold start, naming the variable
    with pytest.raises(SettingsError, match="MESSAGE_TARGET_BYTES=1048577 is above its maximum"):
        IngestSettings.from_env({**environment, "MESSAGE_TARGET_BYTES": str(1024 * 1024 + 1)})


def test_a_missing_lambda_variable_fails_at_cold_start_naming_it() -> None:
    env = PipelineConfig().ingest_environment("https://queue")
    del env["MAX_PAYLOADS"]
    with pytest.raises(SettingsError, match="MAX_PAYLOADS"):
        IngestSettings.from_env(env)


# --- PROFILE: named presets of knob defaults ---------------------------------------------------------


def test_profile_preset_sits_between_context_and_default() -> None:
    from infra.config import PROFILES

    scale = PROFILES["scale"]
    # Given PROFILE=scale: its preset replaces the defaults
    config = PipelineConfig.resolve({}, environ={"PROFILE": "scale"})
    assert (config.PROFILE, config.OBJECT_MODE, config.MAX_POLLERS) == (
        "scale",
        scale["OBJECT_MODE"],
        scale["MAX_POLLERS"],
    )
    # a context knob beats the preset, and an env knob beats both
    config = PipelineConfig.resolve(
        {"PROFILE": "scale", "OBJECT_MODE": "payload", "MAX_POLLERS": 500}, environ={"MAX_POLLERS": "600"}
    )
    assert (config.OBJECT_MODE, config.MAX_POLLERS, config.QUEUE_RETENTION_DAYS) == ("payload", 600, 13)
    # PROFILE itself: env beats context; the default is dev, which is the dataclass defaults
    assert PipelineConfig.resolve({"PROFILE": "scale"}, environ={"PROFILE": "dev"}) == PipelineConfig()


def test_an_unknown_profile_fails_naming_the_knob() -> None:
    with pytest.raises(ConfigError, match="PROFILE"):
        PipelineConfig.resolve({"PROFILE": "huge"}, environ={})
    with pytest.raises(ConfigError, match="PROFILE"):
        PipelineConfig(PROFILE="huge")


def test_every_preset_names_real_knobs_and_validates() -> None:
    from dataclasses import fields

    from infra.config import PROFILES

    knobs = {knob.name for knob in fields(PipelineConfig)}
    for name, preset in PROFILES.items():
        assert set(preset) <= knobs, name
        PipelineConfig.resolve({}, environ={"PROFILE": name})  # raises ConfigError if a value is invalid


def test_cdk_json_pins_no_knob() -> None:
    # infra/config.py holds every default; a knob pinned in cdk.json's context would beat a PROFILE preset
    # (PROFILE=scale would silently keep it) and could drift from the typed default.
    # Given cdk.json's context
    from dataclasses import fields

    from infra.config import cdk_json_context

    knobs = {knob.name for knob in fields(PipelineConfig)}
    # When its keys are compared with the knobs
    pinned = sorted(knobs & set(cdk_json_context()))
    # Then none is a knob (only CDK feature flags belong there)
    assert pinned == [], f"cdk.json's context pins knobs {pinned}: set them by env var or -c instead"


def test_a_renamed_knob_fails_naming_its_new_name() -> None:
    # Given a deployment that still sets the old name of the raw-object expiry
    with pytest.raises(ConfigError, match="RAW_RETENTION_DAYS"):
        PipelineConfig.resolve({}, {"OBJECT_EXPIRATION_DAYS": "30"})


def test_an_http_api_needs_device_auth() -> None:
    with pytest.raises(ConfigError, match="DEVICE_AUTH"):
        PipelineConfig(API_KIND="http", DEVICE_AUTH="off")
    assert PipelineConfig(API_KIND="http", DEVICE_AUTH="on").API_KIND == "http"
