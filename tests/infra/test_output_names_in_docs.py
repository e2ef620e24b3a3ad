"""The stack outputs README.md and docs/ tell a reader to take are outputs the stack has, and each tool is told
the one whose value it needs (Locust's --host is the API's base URL; it appends /v1/payloads itself)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from infra.stack import IngestPipelineStack
from pipeline.contract import PAYLOADS_PATH
from tests.infra import build

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# How the docs name an output: <BucketName>, <BucketName output>, stack output `BucketName`, `BucketName` output.
OUTPUT_REFERENCE = re.compile(
    r"<(?P<a>[A-Z][a-z]+[A-Z][A-Za-z]*)(?: output)?>|outputs? `(?P<b>[A-Z][A-Za-z]+)`|`(?P<c>[A-Z][A-Za-z]+)` output"
)


@pytest.fixture(scope="module")
def stacks() -> list[IngestPipelineStack]:
    """Every output some configuration has: the REST default, and the HTTP API with device keys and compaction."""
    return [build()[1], build(API_KIND="http", DEVICE_AUTH="on", COMPACTION="on")[1]]


def outputs(stack: IngestPipelineStack) -> dict[str, dict[str, object]]:
    return Template.from_stack(stack).find_outputs("*")


def referenced_outputs() -> dict[str, set[str]]:
    """Output name -> the docs naming it."""
    found: dict[str, set[str]] = {}
    for doc in DOCS:
        for match in OUTPUT_REFERENCE.finditer(doc.read_text(encoding="utf-8")):
            name = next(group for group in match.groups() if group)
            found.setdefault(name, set()).add(doc.name)
    return found


def test_every_output_the_docs_name_is_an_output_of_the_stack(stacks: list[IngestPipelineStack]) -> None:
    # Given the outputs the synthesized templates have
    names = {name for stack in stacks for name in outputs(stack)}
    # When the docs' references to outputs are collected
    referenced = referenced_outputs()
    # Then each one names an output the stack has (the load-test page once said <PayloadBucketName output>)
    assert referenced, "no output references found: the pattern no longer matches the docs"
    unknown = {name: docs for name, docs in referenced.items() if name not in names}
    assert not unknown, f"docs name outputs the stack does not have: {unknown}; it has {sorted(names)}"


def test_the_load_test_is_told_the_output_whose_value_locust_needs(stacks: list[IngestPipelineStack]) -> None:
    # Given the load-test docs
    loadtest = (REPO / "docs" / "LOADTEST.md").read_text(encoding="utf-8")
    # Then LOADTEST_HOST is given the ApiBaseUrl output and VERIFY_BUCKET the BucketName output
    assert "LOADTEST_HOST=<ApiBaseUrl output>" in loadtest and "VERIFY_BUCKET=<BucketName output>" in loadtest
    # And for every front door, ApiBaseUrl followed by the path Locust appends is exactly ApiUrl (kept as it was)
    for stack in stacks:
        found = outputs(stack)
        base, url = found["ApiBaseUrl"]["Value"], found["ApiUrl"]["Value"]
        assert Template.from_stack(stack).to_json()["Outputs"]["ApiUrl"]["Description"] == "POST collections here"
        assert _joined(base, PAYLOADS_PATH) == _joined(url, ""), (base, url)


def _joined(value: object, path: str) -> list[object]:
    """An Fn::Join's parts as one flat list of literal strings and tokens, with ``path`` appended: two values
    that differ only in how CDK split their literal text compare equal."""
    parts: list[object] = value["Fn::Join"][1] if isinstance(value, dict) and "Fn::Join" in value else [value]
    flat: list[object] = []
    for part in [*parts, path]:
        if isinstance(part, str) and flat and isinstance(flat[-1], str):
            flat[-1] = flat[-1] + part
        elif part != "":
            flat.append(part)
    return flat
