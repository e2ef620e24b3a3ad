"""Every method API Gateway routes to the ingest function gets the handler's answer, on both spellings of
the path: what AWS answers is what `make run` answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.api_construct import PAYLOAD_METHODS
from tests.conftest import Pipeline, collection

PATHS = ["/v1/payloads", "/v1/payloads/"]  # API Gateway routes the trailing slash to the same resource


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", [m for m in PAYLOAD_METHODS if m != "POST"])
def test_every_other_method_the_stack_routes_is_a_405_allowing_post(pipeline: Pipeline, method: str, path: str) -> None:
    # Given a method the stack routes to the function (infra/api_construct.py), with a valid body
    # When it is sent
    response = pipeline.post(collection(1), method=method, path=path)

    # Then the answer is 405 with Allow: POST, a problem document (no body for HEAD), and nothing is queued
    assert (response.status, response.headers["Allow"]) == (405, "POST")
    assert response.headers["Content-Type"] == "application/problem+json"
    if method == "HEAD":
        assert response.body is None
    else:
        assert response.body["type"] == "urn:ingest-pipeline:problem:method-not-allowed"
        assert f"{method} is not allowed" in response.body["detail"]
    assert pipeline.queue_depth() == 0


def test_post_with_a_trailing_slash_is_accepted_like_without(pipeline: Pipeline) -> None:
    # Given the same collection posted to both spellings of the path
    responses = [pipeline.post(collection(2), path=path) for path in PATHS]

    # Then both are accepted, and all four payloads are queued
    assert [(r.status, r.body["accepted"]) for r in responses] == [(202, 2), (202, 2)]
    assert pipeline.queue_depth() == 4


def test_a_path_below_payloads_is_still_a_404(pipeline: Pipeline) -> None:
    response = pipeline.post(collection(1), path="/v1/payloads/extra")
    assert (response.status, response.body["type"]) == (404, "urn:ingest-pipeline:problem:not-found")
    assert pipeline.queue_depth() == 0


def test_the_openapi_document_lists_every_routed_method() -> None:
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
    operations = spec["paths"]["/v1/payloads"]
    assert {verb.upper() for verb in operations} == set(PAYLOAD_METHODS)
    for verb in PAYLOAD_METHODS:
        if verb != "POST":
            assert operations[verb.lower()]["responses"]["405"] == {"$ref": "#/components/responses/MethodNotAllowed"}
    assert spec["components"]["responses"]["MethodNotAllowed"]["headers"]["Allow"]["schema"]["enum"] == ["POST"]
