"""make run's Lambda environments (local_pipeline/lambda_runtime.py FunctionPool) around a second Ctrl-C."""

from __future__ import annotations

import multiprocessing

import pytest

from bench.common import lambda_environment
from local_pipeline.events import api_gateway_event
from local_pipeline.lambda_runtime import FunctionError, FunctionPool


def test_after_a_kill_no_fresh_environment_starts() -> None:
    # Given the ingest's environment, started
    pool = FunctionPool("ingest", "ingest_handler.lambda_handler", lambda_environment(), 1, 30, 128)
    event = api_gateway_event("GET", "/v1/payloads", None, {})
    try:
        pool.warm_up()
        assert pool.invoke(event).response["statusCode"] == 405
        started = {child.pid for child in multiprocessing.active_children()}
        # When a second Ctrl-C kills it
        pool.kill()
        # Then every later invocation fails as Lambda reports a dead environment, and none starts afresh:
        # a fresh pool made after the kill held semaphores the runner's exit then reported as leaked
        for _ in range(3):
            with pytest.raises(FunctionError) as failed:
                pool.invoke(event)
            assert failed.value.error_type == "Runtime.ExitError"
        # (the killed environments may still be exiting; no other process may have started)
        assert {child.pid for child in multiprocessing.active_children()} <= started
    finally:
        pool.shutdown()
