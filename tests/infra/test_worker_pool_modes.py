"""Template assertions for the worker pool's two scaling modes and the OBJECT_MODE knob."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import MAX_POLLERS_DEPLOYABLE, ConfigError, PipelineConfig
from tests.infra import consumer, only, synth


@pytest.fixture(scope="module")
def default_mode() -> Template:
    return synth(MAX_WORKERS=7)


@pytest.fixture(scope="module")
def provisioned_mode() -> Template:
    return synth(PROVISIONED_POLLERS="true", MIN_POLLERS=3, MAX_POLLERS=25, MAX_WORKERS=7, OBJECT_MODE="batch")


def test_default_mode_bounds_the_pool_with_maximum_concurrency(default_mode: Template) -> None:
    # Given the default (on-demand) mode with MAX_WORKERS=7
    mapping = only(default_mode, "AWS::Lambda::EventSourceMapping")["Properties"]
    # Then the mapping's maximum concurrency and the function's reserved concurrency are both 7
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 7}
    assert "ProvisionedPollerConfig" not in mapping
    assert consumer(default_mode)["Properties"]["ReservedConcurrentExecutions"] == 7
    # And the consumer stores one object per payload
    assert consumer(default_mode)["Properties"]["Environment"]["Variables"]["OBJECT_MODE"] == "payload"


def test_provisioned_mode_replaces_maximum_concurrency_with_pollers(provisioned_mode: Template) -> None:
    # Given PROVISIONED_POLLERS=true with 3..25 pollers
    mapping = only(provisioned_mode, "AWS::Lambda::EventSourceMapping")["Properties"]
    # Then the mapping has provisioned pollers and no maximum concurrency (AWS rejects both)
    assert mapping["ProvisionedPollerConfig"] == {"MinimumPollers": 3, "MaximumPollers": 25}
    assert "MaximumConcurrency" not in mapping.get("ScalingConfig", {})
    # And reserved concurrency covers what 25 pollers can drive (10 invokes each), not MAX_WORKERS
    assert consumer(provisioned_mode)["Properties"]["ReservedConcurrentExecutions"] == 250
    # And partial batch responses stay on in both modes
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_provisioned_template_passes_cfn_lint(provisioned_mode: Template) -> None:
    from cfnlint.api import lint

    rule_ids = [match.rule.id for match in lint(json.dumps(provisioned_mode.to_json()), regions=["us-east-1"])]
    assert set(rule_ids) <= {"W3005"}, rule_ids  # W3005: a known CDK artifact (see test_stack.py)


def test_object_mode_reaches_the_consumer_environment(provisioned_mode: Template) -> None:
    assert consumer(provisioned_mode)["Properties"]["Environment"]["Variables"]["OBJECT_MODE"] == "batch"


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"OBJECT_MODE": "parquet"}, "OBJECT_MODE must be payload or batch"),
        ({"MIN_POLLERS": 1}, "MIN_POLLERS must be 2..200"),
        ({"MIN_POLLERS": 20, "MAX_POLLERS": 10}, "MAX_POLLERS must be MIN_POLLERS..2000"),
        ({"MAX_POLLERS": 2001}, "MAX_POLLERS must be MIN_POLLERS..2000"),
    ],
)
def test_invalid_mode_knobs_are_refused_with_the_knob_named(knobs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.resolve(knobs, environ={})


@pytest.mark.parametrize("maximum_pollers", [MAX_POLLERS_DEPLOYABLE, MAX_POLLERS_DEPLOYABLE + 1])
def test_the_max_pollers_bound_is_what_cdk_synthesizes(maximum_pollers: int) -> None:
    # The Lambda API allows 10,000 SQS pollers, CDK and the CloudFormation page 2,000 (infra/config.py): the config's
    # bound is CDK's. When a CDK release accepts more, this fails and the bound can follow it.
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_lambda_event_sources as event_sources
    from aws_cdk import aws_sqs as sqs

    stack = Stack(App(), "PollerProbe")
    function = lambda_.Function(
        stack,
        "Probe",
        runtime=lambda_.Runtime.PYTHON_3_13,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context): pass"),
    )
    queue = sqs.Queue(stack, "Queue")
    pollers = lambda_.ProvisionedPollerConfig(minimum_pollers=2, maximum_pollers=maximum_pollers)
    if maximum_pollers <= MAX_POLLERS_DEPLOYABLE:
        function.add_event_source(event_sources.SqsEventSource(queue, provisioned_poller_config=pollers))
        mapping = only(Template.from_stack(stack), "AWS::Lambda::EventSourceMapping")["Properties"]
        assert mapping["ProvisionedPollerConfig"]["MaximumPollers"] == maximum_pollers
    else:
        with pytest.raises(Exception, match="Maximum provisioned pollers for SQS must be between 2 and 2000 inclusive"):
            function.add_event_source(event_sources.SqsEventSource(queue, provisioned_poller_config=pollers))
