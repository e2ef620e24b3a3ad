#!/usr/bin/env python3
"""CDK entry point (cdk.json runs this): one IngestPipeline-<STAGE> stack, checked by cdk-nag."""

from infra.application import build_app

if __name__ == "__main__":
    # cdk.json's context is passed in as defaults; values from the CLI (-c KEY=VALUE) take precedence.
    app, _ = build_app()
    app.synth()
