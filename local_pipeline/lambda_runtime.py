"""Lambda execution environments on this machine: one process per environment.

Why processes and not threads: a Lambda environment runs ONE invocation at a time, and the handlers
rely on it. Their module globals (the Powertools resolver's ``current_event``, the batch processor's
record lists, the shared Metrics set) would mix concurrent invocations if two ran in one interpreter.
So, as in Lambda, each environment is a process that imports the handler once (the cold start),
then runs invocations one after another; a pool adds environments on demand up to its concurrency.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from local_pipeline.events import LambdaContext
from local_pipeline.local_settings import REPO_ROOT

LAMBDA_SOURCE = REPO_ROOT / "lambdas"


class FunctionError(RuntimeError):
    """The handler raised: what Lambda reports as an unhandled function error."""

    def __init__(
        self, error_type: str, message: str, stack_trace: str, metrics: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.stack_trace = stack_trace
        self.metrics: Mapping[str, float] = metrics or {}


@dataclass(frozen=True)
class Invocation:
    """What one invocation returned, and the EMF metrics it printed (summed per metric name).

    Lambda ships stdout to CloudWatch, which turns EMF documents into metrics; locally the runner
    reads them instead: the consumer's PayloadsStored and DuplicatesSkipped are its own account of
    what it wrote, per payload, however many payloads a message carries."""

    response: Any
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FaultInjection:
    """Test only (LOCAL_FAIL_FIRST_ATTEMPTS / LOCAL_FAIL_MATCH): the consumer's PutObject fails for
    records received at most ``first_attempts`` times whose body contains ``match``."""

    first_attempts: int = 0
    match: str = ""


class FunctionPool:
    """Up to ``concurrency`` environments of one function (``module.function``), all with ``environment``."""

    def __init__(
        self,
        name: str,
        handler: str,
        environment: dict[str, str],
        concurrency: int,
        timeout_seconds: int,
        memory_mb: int,
        fault: FaultInjection | None = None,
    ) -> None:
        self.name = name
        self.concurrency = concurrency
        self._timeout_ms = timeout_seconds * 1000
        self._memory_mb = memory_mb
        self._start_args = (handler, environment, fault or FaultInjection())
        self._replace_lock = threading.Lock()
        self._killed = False  # a second Ctrl-C: no fresh environments after it
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent runs threads (moto, HTTP, pollers), which fork does not copy safely.
        return ProcessPoolExecutor(
            max_workers=self.concurrency,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_environment,
            initargs=self._start_args,
        )

    def warm_up(self) -> None:
        """Start one environment now, so a broken handler import fails at start-up, not on a request."""
        self._executor.submit(_ping).result()

    def invoke(self, event: dict[str, Any]) -> Invocation:
        """Run one invocation, waiting for a free environment. Raises FunctionError if the handler raised
        (its ``metrics``: what the invocation counted before it failed)."""
        context = LambdaContext(
            function_name=self.name,
            memory_limit_in_mb=self._memory_mb,
            invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{self.name}",
            deadline_ms=int(time.time() * 1000) + self._timeout_ms,
        )
        executor = self._executor
        try:
            outcome = executor.submit(_invoke, event, context).result()
        except BrokenProcessPool as exc:
            # An environment died mid-invocation (killed, out of memory): Lambda reports
            # Runtime.ExitError and starts fresh environments; so do we.
            with self._replace_lock:
                if self._executor is executor and not self._killed:
                    self._executor = self._new_executor()
            executor.shutdown(wait=False, cancel_futures=True)
            raise FunctionError("Runtime.ExitError", f"an execution environment exited: {exc}", "") from exc
        if "errorType" in outcome:
            raise FunctionError(
                outcome["errorType"], outcome["errorMessage"], outcome["stackTrace"], outcome["metrics"]
            )
        return Invocation(outcome["response"], outcome["metrics"])

    def shutdown(self) -> None:
        """Let running invocations finish, then stop every environment."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def kill(self) -> None:
        """Stop every environment now (a second Ctrl-C): SIGKILL, as Lambda ends a timed-out one. No fresh
        environments start after it: an invocation the kill interrupts would otherwise replace the pool, whose
        new queues' semaphores, made after release_semaphores ran, were then "leaked" at the exit."""
        with self._replace_lock:
            self._killed = True
        # ProcessPoolExecutor has no public way to reach its processes.
        for process in list((getattr(self._executor, "_processes", None) or {}).values()):  # None once shut down
            process.kill()


def release_semaphores() -> None:
    """Before ``os._exit`` (a second Ctrl-C): unlink the semaphores of the pools' queues now.

    os._exit skips multiprocessing's exit hook, which unlinks them; the resource tracker then cleans
    them up itself but warns "leaked semaphore objects". This runs the hook's first step (every
    finalizer of exit priority >= 0: the semaphores' unlink, the queues' close), as the hook does."""
    multiprocessing.util._run_finalizers(0)  # type: ignore[attr-defined]  # not in typeshed


# --- inside an environment (a child process) -------------------------------------------------
_handler: Any = None
_metric_lines: MetricLines | None = None
_fault = FaultInjection()
_doomed_bodies: frozenset[bytes] = frozenset()


def _start_environment(handler: str, environment: dict[str, str], fault: FaultInjection) -> None:
    global _handler, _fault, _metric_lines
    # Ctrl-C and a SIGTERM to the process group (kill -- -PGID, timeout, a supervisor) reach every
    # environment too; the runner decides when environments stop, after its drain, so an in-flight
    # batch is never cut in half and the backlog is stored first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _obey_sigterm_from(os.getppid())
    for name, value in environment.items():
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    # Lambda ships stdout to CloudWatch, which turns EMF lines into metrics. Locally there is no
    # CloudWatch, and one EMF document per invocation would bury the access log: drop them.
    _metric_lines = MetricLines(sys.stdout)
    sys.stdout = _metric_lines
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    _fault = fault
    if fault.first_attempts:
        _install_put_object_fault()
    # As in Lambda: the environment is set before the handler module (and Powertools) is imported.
    # lambdas/ is on this process's path because spawn hands it the parent's import path (the venv's
    # import-root .pth, or pytest's pythonpath). As in Lambda, the handler must come from the asset.
    module_name, function_name = handler.rsplit(".", 1)
    module = import_module(module_name)
    if not Path(str(module.__file__)).resolve().is_relative_to(LAMBDA_SOURCE.resolve()):
        raise ImportError(f"{module_name} was imported from {module.__file__}, not from {LAMBDA_SOURCE}")
    _handler = getattr(module, function_name)


def _obey_sigterm_from(runner: int) -> None:
    """End this environment on SIGTERM from the runner only.

    ProcessPoolExecutor.terminate()s the environments of a broken pool (one died holding a queue
    lock), so SIGTERM cannot simply be ignored; but a SIGTERM sent to the whole process group must
    not end an environment before the runner's drain. SIGTERM stays blocked (the spawned process
    inherits the runner's mask; every thread of this process inherits it in turn) and one thread
    takes it with sigwaitinfo(), which says who sent it (siginfo's si_pid)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait_for_the_runners() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == runner:
                os._exit(128 + signal.SIGTERM)

    threading.Thread(target=wait_for_the_runners, name="sigterm-from-runner", daemon=True).start()


class MetricLines(io.TextIOBase):
    """A stdout that takes Powertools' EMF documents (printed as one line starting with {"_aws") out
    of the console and sums their metric values per name until ``take()``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._dropped_line = False
        self._metrics: dict[str, float] = {}

    def take(self) -> dict[str, float]:
        """The metric values printed since the last take()."""
        taken, self._metrics = self._metrics, {}
        return taken

    def _add(self, document: str) -> bool:
        try:
            emf = json.loads(document)
            for directive in emf["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    values = emf.get(metric["Name"], [])
                    total = sum(values) if isinstance(values, list) else values
                    self._metrics[metric["Name"]] = self._metrics.get(metric["Name"], 0) + total
        except (ValueError, KeyError, TypeError):
            return False  # not an EMF document after all: shown as printed
        return True

    def write(self, text: str) -> int:
        if text.startswith('{"_aws"') and self._add(text):
            self._dropped_line = True
            return len(text)
        if self._dropped_line and text == "\n":  # print()'s separate newline after the dropped line
            self._dropped_line = False
            return len(text)
        self._dropped_line = False
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


def _ping() -> bool:
    return _handler is not None


def _invoke(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _doomed_bodies
    if _fault.first_attempts:
        # A payload object holds the record's body, or one line of it when the ingest packed it.
        _doomed_bodies = frozenset(
            text.encode("utf-8")
            for record in event.get("Records", [])
            if int(record["attributes"].get("ApproximateReceiveCount", "1")) <= _fault.first_attempts
            and _fault.match in record["body"]
            for text in (record["body"], *record["body"].split("\n"))
            if _fault.match in text
        )
    assert _metric_lines is not None  # set by _start_environment
    _metric_lines.take()  # nothing of an earlier invocation
    try:
        response = _handler(event, context)
    except Exception as exc:  # noqa: BLE001 - reported to the caller like Lambda's errorType/errorMessage
        return {
            "errorType": type(exc).__name__,
            "errorMessage": str(exc),
            "stackTrace": traceback.format_exc(),
            "metrics": _metric_lines.take(),
        }
    return {"response": response, "metrics": _metric_lines.take()}


def _install_put_object_fault() -> None:
    """Clients made later from boto3's default session (the handlers' lazy clients) inherit this hook."""
    import boto3
    from botocore.exceptions import ClientError

    def fail_doomed(params: dict[str, Any], **_: Any) -> None:
        body = params.get("Body")
        if isinstance(body, bytes | bytearray) and bytes(body) in _doomed_bodies:
            raise ClientError(
                {
                    "Error": {"Code": "InternalError", "Message": "injected by LOCAL_FAIL_FIRST_ATTEMPTS"},
                    "ResponseMetadata": {"HTTPStatusCode": 500},
                },
                "PutObject",
            )

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.s3.PutObject", fail_doomed)
