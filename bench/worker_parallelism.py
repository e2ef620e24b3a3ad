"""P3: the consumer's upload parallelism. 100 records, every PutObject takes 20 ms (an event hook
sleeps in the calling thread, no network), through the real consumer handler.

Compared with the ideal ceil(100 / UPLOAD_CONCURRENCY) x 20 ms and with the same handler run
sequentially (UPLOAD_CONCURRENCY=1).
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench.common import figure, median, prepare_environment
from infra.config import PipelineConfig

RECORDS = 100
PUT_DELAY_S = 0.020
GOAL_VS_IDEAL = 1.3
GOAL_SPEEDUP = 8.0


def _configure(upload_concurrency: int, object_mode: str = "payload", put_delay_s: float = PUT_DELAY_S) -> Any:
    """Fresh settings, thread pool and S3 client for this UPLOAD_CONCURRENCY, with the delayed fake."""
    from bench.fake_aws import FakeAws
    from pipeline import aws_clients, consume, settings

    prepare_environment(PipelineConfig(UPLOAD_CONCURRENCY=upload_concurrency, OBJECT_MODE=object_mode))
    settings.consumer_settings.cache_clear()
    if consume.upload_pool.cache_info().currsize:
        consume.upload_pool().shutdown()
    consume.upload_pool.cache_clear()
    aws_clients.s3_client.cache_clear()
    return FakeAws(aws_clients.s3_client(upload_concurrency), put_delay_s=put_delay_s)


def _timed_run(fake: Any, clock: Any = time.perf_counter) -> float:
    import consumer_handler
    from bench.fake_aws import sqs_event_of
    from local_pipeline.events import LambdaContext

    event = sqs_event_of(RECORDS)
    start = clock()
    response = consumer_handler.lambda_handler(event, LambdaContext(function_name="consumer"))
    elapsed = clock() - start
    if response.get("batchItemFailures"):
        raise RuntimeError(f"consumer reported failures: {response['batchItemFailures'][:3]}")
    return elapsed


def run(rounds: int = 7, sequential_rounds: int = 3) -> dict[str, Any]:
    prepare_environment()
    concurrency = PipelineConfig().UPLOAD_CONCURRENCY
    ideal = math.ceil(RECORDS / concurrency) * PUT_DELAY_S

    parallel_fake = _configure(concurrency)
    _timed_run(parallel_fake)  # warm-up: thread pool start, client models
    parallel = median([_timed_run(parallel_fake) for _ in range(rounds)])
    puts = parallel_fake.calls["PutObject"]

    sequential_fake = _configure(1)
    sequential = median([_timed_run(sequential_fake) for _ in range(sequential_rounds)])
    _configure(concurrency)  # leave the default behind for the figures that follow

    vs_ideal = parallel / ideal
    speedup = sequential / parallel
    return figure(
        "P3",
        f"consumer: {RECORDS} records, PutObject {PUT_DELAY_S * 1e3:.0f} ms each, vs ideal and vs sequential",
        vs_ideal,
        "x ideal",
        f"<= {GOAL_VS_IDEAL} x ideal and >= {GOAL_SPEEDUP:.0f}x faster than sequential",
        vs_ideal <= GOAL_VS_IDEAL and speedup >= GOAL_SPEEDUP,
        parallel_ms=round(parallel * 1e3, 1),
        ideal_ms=round(ideal * 1e3, 1),
        sequential_ms=round(sequential * 1e3, 1),
        speedup_vs_sequential=round(speedup, 2),
        upload_concurrency=concurrency,
        put_calls=puts,
        rounds=rounds,
    )


def run_cpu(rounds: int = 9) -> list[dict[str, Any]]:
    """C1: CPU seconds the consumer spends per batch of 100 (all threads; PutObject answered at
    once), in each OBJECT_MODE. Input to tools.models.cost and docs/CAPACITY.md, not a goal."""
    prepare_environment()
    concurrency = PipelineConfig().UPLOAD_CONCURRENCY
    results = []
    for mode in ("payload", "batch"):
        fake = _configure(concurrency, object_mode=mode, put_delay_s=0.0)
        _timed_run(fake)
        cpu = median([_timed_run(fake, clock=time.process_time) for _ in range(rounds)])
        results.append(
            figure(
                "C1",
                f"consumer: CPU per batch of {RECORDS} records, OBJECT_MODE={mode}",
                cpu * 1e3,
                "ms CPU/batch (one core)",
                "input to tools.models.cost",
                True,
                object_mode=mode,
                cpu_us_per_record=round(cpu / RECORDS * 1e6, 1),
            )
        )
    _configure(concurrency)
    return results
