#!/usr/bin/env python3
"""CDK entry point (cdk.json runs this): one IngestPipeline-<STAGE> stack, checked by cdk-nag."""

import sys

from infra.application import build_app
from infra.config import ConfigError

if __name__ == "__main__":
    # cdk.json's context is passed in as defaults; values from the CLI (-c KEY=VALUE) take precedence.
    try:
        app, _ = build_app()
    except ConfigError as exc:  # a knob's value: one line naming it, not a traceback
        sys.exit(f"configuration error: {exc}")
    app.synth()
