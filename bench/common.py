"""What every benchmark shares: a Lambda-like environment set before any handler import, medians,
interleaved timing, and one JSON line per figure."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from infra.config import PipelineConfig

ROOT = Path(__file__).resolve().parent.parent
LAMBDAS = ROOT / "lambdas"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/bench-queue"
BUCKET = "bench-payloads"


def lambda_environment(config: PipelineConfig | None = None) -> dict[str, str]:
    """The environment the stack gives the functions (``config``, default: the default config), plus
    fake credentials so botocore can sign requests that never leave the process (a Stubber or event
    hook answers)."""
    from infra.config import PipelineConfig

    config = config or PipelineConfig()
    return {
        # Both handlers share one benchmark process; the ingest's POWERTOOLS_SERVICE_NAME wins.
        **config.consumer_environment(BUCKET),
        **config.ingest_environment(QUEUE_URL),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
    }


def prepare_environment(config: PipelineConfig | None = None) -> None:
    """Must run before importing a handler: Powertools reads its settings at import, as in Lambda."""
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(lambda_environment(config))


def median(values: list[float]) -> float:
    return statistics.median(values)


def interleaved(
    contenders: dict[str, Callable[[], None]],
    rounds: int,
    calls_per_round: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Mean seconds per call, one sample per round per contender. The order alternates every round,
    so a burst of machine noise hits all contenders alike instead of one of them. ``clock`` may be
    ``time.process_time`` (CPU of this process), which other processes on a shared core do not inflate."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else reversed(names):
            run = contenders[name]
            start = clock()
            for _ in range(calls_per_round):
                run()
            samples[name].append((clock() - start) / calls_per_round)
    return samples


@contextmanager
def quiet_stdout() -> Iterator[TextIO]:
    """Point file descriptor 1 at /dev/null (handlers log and write EMF metrics to stdout, which costs
    a write as in Lambda) and yield a stream on the real stdout for the JSON figures."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    real = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        real.close()


def figure(name: str, title: str, value: float, unit: str, goal: str, met: bool, **details: Any) -> dict[str, Any]:
    return {"figure": name, "title": title, "value": round(value, 3), "unit": unit, "goal": goal, "met": met, **details}


def emit(result: dict[str, Any], stream: TextIO | None = None) -> None:
    print(json.dumps(result, separators=(", ", ": ")), file=stream or sys.stdout, flush=True)
