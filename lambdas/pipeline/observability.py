"""Logger, Tracer and Metrics, created once. Service name and namespace come from the environment
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE) that the stack sets per function."""

import functools
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric

from pipeline.contract import KnobError, Metric, parse_int

_Handler = TypeVar("_Handler", bound=Callable[..., Any])
_TRUTHY = frozenset({"1", "y", "yes", "t", "true", "on"})  # what Powertools reads as true


def tracing_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Powertools' own rule (Tracer._is_tracer_disabled): on inside Lambda (LAMBDA_TASK_ROOT, not SAM
    local) unless POWERTOOLS_TRACE_DISABLED is true. The stack sets that variable from TRACING."""
    disabled = env.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in _TRUTHY
    return bool(env.get("LAMBDA_TASK_ROOT")) and not env.get("AWS_SAM_LOCAL") and not disabled


class TracingOff:
    """Stands in for the Tracer when tracing is off. A disabled Powertools Tracer still imports the
    X-Ray SDK (~40 ms of every cold start, P2 in docs/PERFORMANCE.md) and wraps each invocation;
    this does neither. Lambda's active tracing, when on, records the invocation without any SDK."""

    def capture_lambda_handler(self, handler: _Handler) -> _Handler:
        return handler


logger = Logger()
# With the JSON log format, Lambda puts the function's ApplicationLogLevel in AWS_LAMBDA_LOG_LEVEL, and
# Powertools lets that win over POWERTOOLS_LOG_LEVEL ("AWS Lambda Advanced Logging Controls takes precedence",
# Logger._determine_log_level; powertools-lambda-python#7220). The stack pins ApplicationLogLevel at INFO (DEBUG
# with LOG_LEVEL=DEBUG) so that Lambda drops none of our lines (infra/functions.py says why), so the level
# our lines are cut at is set here, from LOG_LEVEL (the stack's POWERTOOLS_LOG_LEVEL), on the stdlib logger
# Powertools writes through.
if os.environ.get("POWERTOOLS_LOG_LEVEL"):
    logging.getLogger(logger.name).setLevel(os.environ["POWERTOOLS_LOG_LEVEL"].strip().upper())

# Only botocore is patched (our AWS calls get subsegments): patching every library X-Ray supports
# imports and wraps modules we never call, at cold-start cost (P2, docs/PERFORMANCE.md).
tracer: Tracer | TracingOff = Tracer(patch_modules=("botocore",)) if tracing_enabled() else TracingOff()
metrics = Metrics()
# A rejected request's only metric is its own single_metric blob (below), so the invocation's
# metric set is empty by design; Powertools would warn about that on every container.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
# Every metric also carries the stage, so two stages sharing an account and namespace never mix
# on one stage's dashboard or alarms. Low cardinality: one value per deployment.
if os.environ.get("STAGE"):
    metrics.set_default_dimensions(stage=os.environ["STAGE"])


# RequestsRejected's `reason` dimension: a handful of classes by HTTP status, never the client's
# data and never the fine-grained slug (that is in the "request rejected" log line).
_REJECTION_CLASSES = {
    400: "invalid",
    404: "route",
    405: "route",
    413: "too-large",
    415: "media-type",
    429: "overloaded",
    503: "overloaded",
}


def rejection_class(status: int) -> str:
    """The low-cardinality reason class of a 4xx the ingest answered."""
    return _REJECTION_CLASSES.get(status, "other")


class MetricsFlushError(KnobError):
    """METRICS_FLUSH_SECONDS in the function's environment is not an integer of 0..300."""


def flush_seconds_from(env: Mapping[str, str]) -> int:
    """METRICS_FLUSH_SECONDS as the stack sets it on the ingest (absent: 0, as on the consumer)."""
    return parse_int("METRICS_FLUSH_SECONDS", env.get("METRICS_FLUSH_SECONDS", "0"), 0, 300, error=MetricsFlushError)


class MetricCounts:
    """The ingest's Count metrics (RequestsAccepted, PayloadsAccepted, RequestsRejected by reason, ...),
    written as EMF by Powertools Metrics.

    ``flush_seconds`` 0 (METRICS_FLUSH_SECONDS' default): each count goes into the invocation's EMF blob,
    which Powertools' log_metrics flushes when the invocation ends; a rejection is its own blob, with its
    ``reason`` dimension (single_metric). One value per request, exactly as before this knob existed.

    ``flush_seconds`` N > 0: counts are summed in the container, by metric and reason, and written when
    the container's window of sums is N seconds old, at the end of an invocation (or, after an idle
    spell, before the next request is counted): one blob for the plain counts and one per rejection
    reason, carrying the same dimensions (service, stage; reason), stamped with the time of the window's
    last count. CloudWatch's Sum per period is what it was (the dashboard and alarms read Sum); only
    SampleCount changes, to one per flush. Summed counts stay one value per metric per blob, so
    Powertools' own limit (a blob is flushed at 100 metrics or 100 values of one metric) never splits
    one; should it, Powertools flushes by itself and nothing is counted twice.

    What N > 0 can lose: Lambda gives a function no notice when it retires an execution environment
    (a runtime gets SIGTERM at shutdown only when an extension is registered: "Lambda Extensions API",
    Shutdown phase, https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html), so the
    open window of a retired container is never written: at most N seconds of that one container's
    requests, missing from the metrics (never from the queue: the 202s were answered). A timeout or a
    crash that restarts the runtime loses the same.
    """

    def __init__(
        self,
        metrics: Metrics | EphemeralMetrics,
        flush_seconds: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._sums: dict[tuple[str, str | None], float] = {}
        self._window_opened = 0.0
        self._last_count_ms = 0

    def add(self, name: str, value: float = 1, reason: str | None = None) -> None:
        """Count ``value`` of metric ``name`` (with a ``reason`` dimension when given)."""
        if not self.flush_seconds:
            if reason is None:
                self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
            else:
                self._single_blob(name, value, reason)
            return
        self.flush_if_due()  # after an idle spell, the old window goes out under its own time
        if not self._sums:
            self._window_opened = self._clock()
        key = (name, reason)
        self._sums[key] = self._sums.get(key, 0) + value
        self._last_count_ms = int(self._wall_clock() * 1000)

    def flush_if_due(self) -> None:
        """Write the summed counts if their window is ``flush_seconds`` old (N > 0 only)."""
        if self._sums and self._clock() - self._window_opened >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write every summed count now, and start a new window (nothing is written twice)."""
        sums, self._sums = self._sums, {}
        plain = {name: value for (name, reason), value in sums.items() if reason is None}
        if plain:
            blob = self._blob()
            for name, value in plain.items():
                blob.add_metric(name=name, unit=MetricUnit.Count, value=value)
            blob.flush_metrics()
        for (name, reason), value in sums.items():
            if reason is not None:
                blob = self._blob()
                blob.add_dimension(name="reason", value=reason)
                blob.add_metric(name=name, unit=MetricUnit.Count, value=value)
                blob.flush_metrics()

    def _blob(self) -> EphemeralMetrics:
        # A blob of its own (Powertools' EphemeralMetrics shares no state with `metrics`), carrying the same
        # namespace, service and default dimensions, stamped with the window's last count.
        blob = EphemeralMetrics(namespace=self.metrics.namespace, service=self.metrics.service)
        blob.set_default_dimensions(**self.metrics.default_dimensions)
        blob.set_timestamp(self._last_count_ms)
        return blob

    def _single_blob(self, name: str, value: float, reason: str) -> None:
        # Its own EMF blob (Powertools' single_metric): the invocation's other metrics must not get the
        # reason dimension. Namespace and service from the shared Metrics object, so both blobs agree.
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=value,
            namespace=self.metrics.namespace,
            default_dimensions={"service": self.metrics.service, **self.metrics.default_dimensions},
        ) as metric:
            metric.add_dimension(name="reason", value=reason)

    def log_metrics(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """The handler decorator: Powertools' log_metrics (flush every invocation) when
        ``flush_seconds`` is 0, else write the sums when their window is due."""
        flushed_every_invocation = self.metrics.log_metrics(handler)

        @functools.wraps(handler)
        def with_metrics(event: dict[str, Any], context: Any) -> Any:
            if not self.flush_seconds:
                return flushed_every_invocation(event, context)
            try:
                return handler(event, context)
            finally:
                self.flush_if_due()

        return with_metrics


# The ingest's counts; METRICS_FLUSH_SECONDS is read at cold start, as Powertools reads its settings.
counts = MetricCounts(metrics, flush_seconds_from(os.environ))


def count_rejected_request(status: int) -> None:
    """Count one RequestsRejected, with its low-cardinality ``reason`` dimension."""
    counts.add(Metric.REQUESTS_REJECTED, 1, reason=rejection_class(status))
