"""The SDK (client/) and the pipeline agree on the request limits: docs/openapi.yaml states them,
infra/config.py defaults to them, ingest_client cuts its batches within them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ingest_client.limits as sdk
import pytest
import yaml

from infra.config import PipelineConfig
from pipeline.contract import MAX_TOKEN_CHARS, MAX_VERSION_CHARS
from pipeline.idempotency import MAX_KEY_CHARS

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def test_the_spec_the_config_and_the_sdk_state_the_same_limits(spec: dict[str, Any]) -> None:
    config = PipelineConfig()
    stated = spec["info"]["x-limits"]
    assert stated == {
        "MAX_PAYLOADS": config.MAX_PAYLOADS,
        "MAX_BODY_BYTES": config.MAX_BODY_BYTES,
        "MAX_PAYLOAD_BYTES": config.MAX_PAYLOAD_BYTES,
    }
    assert (sdk.Limits().max_payloads, sdk.Limits().max_body_bytes, sdk.Limits().max_payload_bytes) == (
        stated["MAX_PAYLOADS"],
        stated["MAX_BODY_BYTES"],
        stated["MAX_PAYLOAD_BYTES"],
    )
    assert spec["components"]["schemas"]["PayloadCollection"]["properties"]["data"]["maxItems"] == sdk.MAX_PAYLOADS


def test_the_sdk_checks_the_fields_and_keys_as_the_spec_bounds_them(spec: dict[str, Any]) -> None:
    properties = spec["components"]["schemas"]["PayloadCollection"]["properties"]
    assert (properties["version"]["maxLength"], properties["token"]["maxLength"]) == (
        sdk.MAX_VERSION_CHARS,
        sdk.MAX_TOKEN_CHARS,
    )
    assert (sdk.MAX_VERSION_CHARS, sdk.MAX_TOKEN_CHARS) == (MAX_VERSION_CHARS, MAX_TOKEN_CHARS)
    (key,) = [p for p in spec["paths"]["/v1/payloads"]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["schema"]["maxLength"] == sdk.MAX_IDEMPOTENCY_KEY_CHARS == MAX_KEY_CHARS
