"""`make run`'s own knobs: unset or empty means the default; a bad value names its knob."""

from __future__ import annotations

import re

import pytest

from infra.config import ConfigError
from local_pipeline.local_settings import LocalSettings


def test_unset_or_empty_knobs_take_their_defaults() -> None:
    # Given an environment where PORT is empty and the other knobs are unset
    # When the runner's settings are read
    settings = LocalSettings.from_env({"PORT": "  "})
    # Then every integer knob has its default, and no visibility override is set
    assert (settings.PORT, settings.MOTO_PORT, settings.LOCAL_INGEST_CONCURRENCY) == (3000, 4566, 4)
    assert settings.LOCAL_VISIBILITY_TIMEOUT_SECONDS is None


def test_set_knobs_are_read_as_integers() -> None:
    # Given integer knobs set with surrounding spaces
    # When the runner's settings are read
    settings = LocalSettings.from_env({"PORT": " 3317 ", "LOCAL_VISIBILITY_TIMEOUT_SECONDS": "0"})
    # Then they hold the values given
    assert (settings.PORT, settings.LOCAL_VISIBILITY_TIMEOUT_SECONDS) == (3317, 0)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PORT": "30a0"}, "PORT='30a0' is not an integer"),
        ({"MOTO_PORT": "65536"}, "MOTO_PORT=65536 is above its maximum 65535"),
        ({"LOCAL_INGEST_CONCURRENCY": "0"}, "LOCAL_INGEST_CONCURRENCY=0 is below its minimum 1"),
        ({"LOCAL_VISIBILITY_TIMEOUT_SECONDS": "-1"}, "LOCAL_VISIBILITY_TIMEOUT_SECONDS=-1 is below its minimum 0"),
    ],
)
def test_a_bad_value_is_refused_naming_its_knob(environ: dict[str, str], message: str) -> None:
    # Given a knob set to a value the runner cannot use
    # When the runner's settings are read
    # Then it refuses with a message naming the knob and the value
    with pytest.raises(ConfigError, match=re.escape(message)):
        LocalSettings.from_env(environ)


def test_port_and_moto_port_the_same_is_refused_saying_they_are_the_same() -> None:
    # Given a user who gave make run's HTTP port and its embedded AWS port the same number
    # When the runner's settings are read
    # Then it refuses before starting either, saying PORT and MOTO_PORT are the same (not "address in use")
    with pytest.raises(ConfigError, match=re.escape("PORT and MOTO_PORT are the same (18312)")):
        LocalSettings.from_env({"PORT": "18312", "MOTO_PORT": "18312"})
    # And against an outside AWS_ENDPOINT_URL, where no moto starts, the same number is no clash
    settings = LocalSettings.from_env({"PORT": "18312", "MOTO_PORT": "18312", "AWS_ENDPOINT_URL": "http://x:1"})
    assert settings.PORT == 18312
