"""INGEST_RESERVED_CONCURRENCY as a template: the ingest function reserves its executions so a consumer scaling
up cannot take them (docs/DEPLOY.md), and the template stays valid with it."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from infra.config import ConfigError, PipelineConfig
from infra.stack import IngestPipelineStack
from tests.infra import build, consumer, only, synth


def ingest(template: Template) -> dict[str, object]:
    return only(template, "AWS::Lambda::Function", {"Handler": "ingest_handler.lambda_handler"})["Properties"]


def test_by_default_the_ingest_reserves_nothing() -> None:
    # Given the default INGEST_RESERVED_CONCURRENCY=0
    template = synth()
    # Then the ingest draws on the account's unreserved pool, as before the knob existed
    assert "ReservedConcurrentExecutions" not in ingest(template)


@pytest.fixture(scope="module")
def scale_reserved() -> tuple[IngestPipelineStack, Template]:
    # The case the knob is for: an unreserved consumer in provisioned mode (up to 10 x MAX_POLLERS invokes)
    _, stack = build(environ={"PROFILE": "scale", "RESERVED_CONCURRENCY": "off", "INGEST_RESERVED_CONCURRENCY": "400"})
    return stack, Template.from_stack(stack)


def test_a_reservation_reaches_the_ingest_function_only(scale_reserved: tuple[IngestPipelineStack, Template]) -> None:
    _, template = scale_reserved
    assert ingest(template)["ReservedConcurrentExecutions"] == 400
    assert "ReservedConcurrentExecutions" not in consumer(template)["Properties"]  # RESERVED_CONCURRENCY=off


def test_both_reservations_together() -> None:
    template = synth(INGEST_RESERVED_CONCURRENCY=30, MAX_WORKERS=20)
    assert ingest(template)["ReservedConcurrentExecutions"] == 30
    assert consumer(template)["Properties"]["ReservedConcurrentExecutions"] == 20


def test_the_reserved_template_is_clean_under_cdk_nag_and_cfn_lint(
    scale_reserved: tuple[IngestPipelineStack, Template],
) -> None:
    from cfnlint.api import lint

    stack, template = scale_reserved
    findings = Annotations.from_stack(stack)
    pattern = Match.string_like_regexp("(AwsSolutions|Serverless)-.*")
    assert [e.entry.data for e in findings.find_error("*", pattern)] == []
    assert [w.entry.data for w in findings.find_warning("*", pattern)] == []
    rule_ids = {m.rule.id for m in lint(json.dumps(template.to_json()), regions=["us-east-1"])}
    assert rule_ids <= {"W3005"}, rule_ids  # W3005: a known CDK artifact (see test_stack.py)


def test_a_negative_reservation_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="INGEST_RESERVED_CONCURRENCY must be >= 0"):
        PipelineConfig.resolve({}, {"INGEST_RESERVED_CONCURRENCY": "-1"})
