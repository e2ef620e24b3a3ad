"""Template assertions on the CDK app, synthesized offline as `cdk synth` builds it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from infra.application import build_app
from infra.config import cdk_json_context
from infra.stack import IngestPipelineStack


def build(
    *, environ: Mapping[str, str] | None = None, outdir: str | None = None, **knobs: Any
) -> tuple[App, IngestPipelineStack]:
    """The app `cdk synth -c KNOB=value ...` builds: cdk.json's context plus ``knobs``; no knob comes from
    this process's environment, only from ``environ``."""
    return build_app(context={**cdk_json_context(), **knobs}, environ=environ or {}, outdir=outdir)


def synth(**knobs: Any) -> Template:
    """The template of ``build(**knobs)``."""
    _, stack = build(**knobs)
    return Template.from_stack(stack)


def only(template: Template, resource_type: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one resource of ``resource_type`` (with these properties, if given); fails unless there is exactly one."""
    found = template.find_resources(resource_type, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {resource_type}, found {len(found)}"
    return next(iter(found.values()))


def consumer(template: Template) -> dict[str, Any]:
    """The consumer function's resource."""
    return only(template, "AWS::Lambda::Function", {"Handler": "consumer_handler.lambda_handler"})
