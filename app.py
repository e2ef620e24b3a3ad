#!/usr/bin/env python3
"""CDK entry point (cdk.json runs this): one IngestPipeline-<STAGE> stack, checked by cdk-nag.

`python app.py --check-config` only resolves the knobs (make synth, diff, bootstrap, deploy and
destroy run it before the CDK CLI, without importing the CDK): a bad one is one line naming it.
"""

import sys

from infra.config import ConfigError, PipelineConfig, cdk_json_context


def check_config() -> int:
    """Resolve the knobs as synth does; exit 2 with one line naming a bad one."""
    try:
        PipelineConfig.resolve(cdk_json_context())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


def main() -> int:
    """Synthesize; a knob the pipeline cannot run with is one line naming it (exit 2), not a traceback."""
    from infra.application import build_app

    try:
        # cdk.json's context is passed in as defaults; values from the CLI (-c KEY=VALUE) take precedence.
        app, _ = build_app()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(check_config() if sys.argv[1:] == ["--check-config"] else main())
