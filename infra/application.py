"""Builds the CDK app exactly as `cdk synth` does, for app.py and for the tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Aspects, Environment
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from infra.config import PipelineConfig, cdk_json_context
from infra.stack import IngestPipelineStack


def build_app(
    context: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, outdir: str | None = None
) -> tuple[App, IngestPipelineStack]:
    """The app with its one stack and cdk-nag's AwsSolutions and Serverless checks.

    ``context`` defaults to what the CDK CLI would pass: cdk.json's context block.
    """
    app = App(context=dict(cdk_json_context() if context is None else context), outdir=outdir)
    config = PipelineConfig.resolve(app.node.try_get_context, environ)
    stack = IngestPipelineStack(
        app,
        f"IngestPipeline-{config.STAGE}",
        config=config,
        # Account and region come from the CLI profile at deploy time; synth needs neither.
        env=Environment(account=app.node.try_get_context("account"), region=app.node.try_get_context("region")),
        description="Serverless ingest pipeline: API Gateway -> Lambda -> SQS -> Lambda worker pool -> S3",
    )
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    Aspects.of(app).add(ServerlessChecks(verbose=True))
    return app, stack
