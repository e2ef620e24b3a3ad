"""P2: cold start. Fresh-process import of the ingest handler vs ``import boto3; boto3.client("sqs")``.

Each sample is a new Python process running one statement, timed inside the process (so the
interpreter's own start-up, identical for both, does not dilute the ratio). The three statements
run interleaved, in a rotating order, many times; the figure is the ratio of medians.

The children get the environment Lambda gives the function: the stack's variables, tracing on
(TRACING=true by default) and LAMBDA_TASK_ROOT, which makes Powertools and the X-Ray SDK take their
in-Lambda paths (X-Ray's local sampler instead of the centralized one that builds an X-Ray client).
Our modules are not byte-compiled, as in the deployed asset (infra/functions.py excludes *.pyc).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from bench.common import LAMBDAS, ROOT, figure, lambda_environment, median

GOAL_RATIO = 1.25
STATEMENTS = {
    "baseline": 'import boto3; boto3.client("sqs")',
    # What the module import costs (the definition of P2)...
    "handler_import": "import ingest_handler",
    # ...and what the first request needs on top: the SQS client, created lazily on first use.
    "handler_ready": "import ingest_handler; from pipeline.aws_clients import sqs_client; sqs_client()",
}
_CHILD = "import time, sys; t = time.perf_counter(); exec(sys.argv[1]); print(time.perf_counter() - t)"


def _child_environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(lambda_environment())
    env.update({
        "PYTHONPATH": f"{LAMBDAS}{os.pathsep}{ROOT}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(LAMBDAS),
        "AWS_LAMBDA_FUNCTION_NAME": "ingest",
        "AWS_REGION": "us-east-1",
    })
    return env


def _sample(statement: str, env: dict[str, str]) -> float:
    result = subprocess.run([sys.executable, "-c", _CHILD, statement], env=env, cwd=LAMBDAS,
                            capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def run(rounds: int = 25) -> dict[str, Any]:
    env = _child_environment()
    names = list(STATEMENTS)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(2):  # warm the OS page cache, as a warm Lambda host would have it
        for name in names:
            _sample(STATEMENTS[name], env)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_sample(STATEMENTS[name], env))
    baseline = median(samples["baseline"])
    imported = median(samples["handler_import"])
    ready = median(samples["handler_ready"])
    ratio = imported / baseline
    return figure(
        "P2", "cold start: fresh-process import of ingest_handler vs import boto3 + boto3.client('sqs')",
        ratio, "x baseline", f"<= {GOAL_RATIO}", ratio <= GOAL_RATIO,
        handler_import_ms=round(imported * 1e3, 1), baseline_ms=round(baseline * 1e3, 1),
        # Import + the SQS client the first request creates: the whole cold path before our code runs.
        handler_ready_ms=round(ready * 1e3, 1), ready_ratio=round(ready / baseline, 3),
        ready_met=ready / baseline <= GOAL_RATIO, runs_each=rounds,
        lambdas_bytecode_cached=any((LAMBDAS / "pipeline").glob("__pycache__/*.pyc")),
    )
