"""Template assertions for the worker pool's two scaling modes and the OBJECT_MODE knob."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import ConfigError, PipelineConfig
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
