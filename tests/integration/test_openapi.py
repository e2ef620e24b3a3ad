"""docs/openapi.yaml is the contract client teams code against: it must be a valid OpenAPI
document, and what the real handler answers must match it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from pipeline.contract import MAX_TOKEN_CHARS, MAX_VERSION_CHARS
from tests.conftest import JSON_HEADERS, Pipeline, collection

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    # OpenAPI 3.0 schemas are JSON Schema with a few extras; these use none of them.
    return {**spec["components"]["schemas"][name], "components": spec["components"]}


def test_the_spec_is_a_valid_openapi_document(spec: dict[str, Any]) -> None:
    validate(spec)


def test_the_spec_example_is_accepted_by_the_handler(spec: dict[str, Any], pipeline: Pipeline) -> None:
    example = spec["paths"]["/v1/payloads"]["post"]["requestBody"]["content"]["application/json"]["example"]
    jsonschema.validate(example, schema(spec, "PayloadCollection"))
    response = pipeline.post(example)
    assert response.status == 202
    jsonschema.validate(response.body, schema(spec, "Accepted"))


@pytest.mark.parametrize(
    ("raw", "headers", "status"),
    [
        (b"{", JSON_HEADERS, 400),
        (json.dumps(collection(501)).encode(), JSON_HEADERS, 413),
        (b"{}", {"Content-Type": "text/plain"}, 415),
    ],
)
def test_every_problem_the_handler_answers_matches_the_spec(
    spec: dict[str, Any], pipeline: Pipeline, raw: bytes, headers: dict[str, str], status: int
) -> None:
    response = pipeline.post(raw, headers=headers)
    assert response.status == status
    assert str(status) in spec["paths"]["/v1/payloads"]["post"]["responses"]
    jsonschema.validate(response.body, schema(spec, "Problem"))


def test_the_spec_limits_are_the_config_defaults(spec: dict[str, Any], pipeline: Pipeline) -> None:
    properties = spec["components"]["schemas"]["PayloadCollection"]["properties"]
    assert properties["data"]["maxItems"] == pipeline.config.MAX_PAYLOADS
    assert (properties["version"]["maxLength"], properties["token"]["maxLength"]) == (
        MAX_VERSION_CHARS,
        MAX_TOKEN_CHARS,
    )


def test_device_key_answers_match_the_spec(spec: dict[str, Any], pipeline: Pipeline, monkeypatch: Any) -> None:
    # Given DEVICE_AUTH=on with a keyring
    import secrets

    import boto3

    from pipeline.device_auth import new_keyring_document
    from tests.conftest import _clear_caches

    boto3.client("secretsmanager").create_secret(
        Name="spec-keys", SecretString=json.dumps(new_keyring_document(secrets.token_urlsafe(48)))
    )
    monkeypatch.setenv("DEVICE_AUTH", "on")
    monkeypatch.setenv("DEVICE_KEYS_SECRET", "spec-keys")
    _clear_caches()
    responses = spec["paths"]["/v1/payloads"]["post"]["responses"]
    # Then a missing key and a refused key answer as the spec says, with the headers it names
    for authorization, status in ((None, 401), ("Bearer dk1.device-1.1." + "A" * 43, 403)):
        headers = dict(JSON_HEADERS) if authorization is None else {**JSON_HEADERS, "Authorization": authorization}
        response = pipeline.post(collection(1), headers=headers)
        assert response.status == status
        jsonschema.validate(response.body, schema(spec, "Problem"))
        declared = spec["components"]["responses"][responses[str(status)]["$ref"].rsplit("/", 1)[1]]
        assert set(declared.get("headers", {})) <= set(response.headers)
