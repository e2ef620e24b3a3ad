"""Logger, Tracer and Metrics, created once. Service name and namespace come from the environment
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE) that the stack sets per function.

What each setting below saves is measured side by side, in one run, by bench P1 (`python -m bench P1`,
its ``cuts_us``: the same call with Powertools' defaults and with ours, in the handler's process).
"""

import contextlib
import functools
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.filters import SuppressFilter
from aws_lambda_powertools.logging.formatter import RESERVED_LOG_ATTRS, LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric
from aws_lambda_powertools.metrics.exceptions import SchemaValidationError
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

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


def _message_as_is(message: Any) -> Any:
    return message


_RESERVED = frozenset(RESERVED_LOG_ATTRS)


class LogLineFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, with the line of a plain message (no exception, no %-arguments) built
    in one pass: the same keys, values and order as ``LambdaPowertoolsFormatter.format`` gives it
    (tests/unit/test_log_line.py), without its copy of every record attribute, its scan of them against a
    tuple of reserved names and a second pass to drop empty keys (bench P1 cuts_us.log_line). Any other
    record, and any key templated on a record attribute other than the level and the time, goes to
    Powertools' own format."""

    def format(self, record: logging.LogRecord) -> str:  # noqa: A003 - logging.Formatter's name
        if record.args or record.exc_info or record.stack_info or not isinstance(record.msg, str):
            return super().format(record)
        extra = {key: value for key, value in vars(record).items() if key not in _RESERVED}
        line = self.plain_line(record.levelname, record.msg, lambda: self.formatTime(record), extra)
        return super().format(record) if line is None else line

    def plain_line(
        self, levelname: str, message: str, timestamp: Callable[[], str], extra: Mapping[str, Any]
    ) -> str | None:
        """The line of a plain message with ``extra``'s keys, or None when a key is templated on a record
        attribute other than the level and the time (only Powertools' format knows those)."""
        line: dict[str, Any] = {}
        for key, value in self.log_format.items():
            if key == "message":
                line[key] = message
            elif value is None or key not in _RESERVED:
                line[key] = value
            elif value == "%(levelname)s":
                line[key] = levelname
            elif value == "%(asctime)s":
                line[key] = timestamp()
            else:
                return None
        line["message"] = message
        line.update(self.thread_safe_get_current_keys())  # Logger.thread_safe_append_keys (the consumer's)
        line.update(extra)
        line["xray_trace_id"] = self._get_latest_trace_id()
        return self.serialize(log={key: value for key, value in line.items() if value is not None})


# Powertools' Logger with four of its own settings changed (bench P1 cuts_us.log_line):
# * json_deserializer: Powertools tries json.loads on every string message (a failed parse and an
#   exception per line) to embed JSON-text messages; ours are plain sentences, so the message is kept as is;
# * json_serializer: one encoder built once, with Powertools' options (compact, ensure_ascii=False,
#   default=str), instead of json.dumps building a new encoder for every line;
# * location=None: "function:line" of each call; every message is written at one place, and an error
#   carries its stack trace. (The stdlib still looks the caller up; only the key goes.)
# * timestamp in RFC 3339, UTC: what Lambda's JSON log format reads as the line's own time
#   ("Log-level filtering", https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html:
#   "For Lambda to use the timestamp field, you must specify the time in valid RFC 3339 timestamp format").
# And no xray_trace_id key when tracing is off: there is no trace to find (an environment read per line).
_LOG_LINE = json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=False)
# With no location key, nothing reads the caller the stdlib looks up for every record: the Logging HOWTO's
# own switch for that ("Optimization": "Set logging._srcfile to None. This avoids calling sys._getframe()",
# https://docs.python.org/3/howto/logging.html#optimization). Process-wide: no other logger here formats
# funcName or lineno either.
logging._srcfile = None
logger = Logger(
    logger_formatter=LogLineFormatter(
        json_serializer=_LOG_LINE.encode,
        json_deserializer=_message_as_is,
        use_rfc3339=True,
        utc=True,
        location=None,
    )
)
if not tracing_enabled():
    logger.append_keys(xray_trace_id=None)  # None: Powertools' way to leave a key out
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
_STDLIB_LOGGER = logging.getLogger(logger.name)  # the logger Powertools writes through
_NO_LOCK = contextlib.nullcontext()


def _rfc3339_utc_now() -> str:
    # Powertools' formatTime with use_rfc3339 and utc, from the clock a LogRecord's created reads
    return datetime.fromtimestamp(time.time(), tz=timezone.utc).isoformat(timespec="milliseconds")


def _writes_only_to(handler: logging.Handler) -> bool:
    """Whether an INFO record of ``logger`` would reach ``handler`` alone, unfiltered: no logger filter, no other
    handler, and any handler above it (the Lambda runtime's, on the root logger) refusing it by Powertools' own
    SuppressFilter, which Logger adds there for this service."""
    if _STDLIB_LOGGER.filters or handler.filters or _STDLIB_LOGGER.handlers != [handler]:
        return False
    if not _STDLIB_LOGGER.propagate:
        return True
    parent = _STDLIB_LOGGER.parent
    while parent is not None:
        for other in parent.handlers:
            if not any(isinstance(f, SuppressFilter) and f.logger in _STDLIB_LOGGER.name for f in other.filters):
                return False
        if not parent.propagate:
            break
        parent = parent.parent
    return True


def info_line(message: str, extra: Mapping[str, Any]) -> None:
    """``logger.info(message, extra=extra)`` for the ingest's per-request line: the same line, byte for byte
    (LogLineFormatter.plain_line writes both; tests/unit/test_log_line.py), written to the handler's stream
    directly: a measured exception to using Powertools' path as it is. That path (Powertools' wrapper, a LogRecord,
    the logger's and handler's filters and lock, the walk to the root logger's handlers) cost 51-62 µs of each
    request inside the ingest (the handler with and without the line, interleaved), the largest part of P1's
    overhead the validator does not account for. Alone: 25-27 µs through logger.info, 11-14 this way (bench P1
    cuts_us.info_line); P1 1.31-1.35x before, 1.26-1.29x after, in 5 interleaved pairs of runs (2026-12-02, load
    average 0.7-0.8). Any configuration this does not reproduce (another handler, formatter or filter, a root
    handler without Powertools' SuppressFilter, as under pytest, log buffering, a non-UTC or non-RFC 3339 time)
    goes through ``logger.info``."""
    if not _STDLIB_LOGGER.isEnabledFor(logging.INFO):
        return
    handler = logger.registered_handler
    formatter = handler.formatter
    if (
        type(handler) is logging.StreamHandler
        and isinstance(formatter, LogLineFormatter)
        and formatter.use_rfc3339_iso8601
        and formatter.utc
        and not logger._buffer_config
        and _writes_only_to(handler)
    ):
        line = formatter.plain_line("INFO", message, _rfc3339_utc_now, extra)
        if line is not None:
            try:
                with handler.lock or _NO_LOCK:
                    handler.stream.write(line + handler.terminator)  # StreamHandler.emit, then its flush
                    handler.stream.flush()
                return
            except Exception:  # noqa: BLE001 - a log line never fails a request: logging's own path handles it
                pass
    logger.info(message, extra=extra)


# Powertools' EMF serializer options (compact separators, ASCII), in one encoder built once.
_EMF_LINE = json.JSONEncoder(separators=(",", ":"))


class EmfProvider(EphemeralMetrics):
    """Powertools' EMF provider, writing each blob with one JSON encoder built once and with
    POWERTOOLS_METRICS_DISABLED and POWERTOOLS_DEV read once (a container's environment never changes):
    Powertools' flush builds a new encoder and reads both variables on every call (bench P1
    cuts_us.emf_flush). The blob is Powertools' own serialize_metric_set, byte for byte."""

    def __init__(self) -> None:
        super().__init__()
        self._disabled = is_metrics_disabled()

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        if not self.metric_set or self._disabled:
            super().flush_metrics(raise_on_empty_metrics)  # Powertools' own warning, error and disabled paths
            return
        print(_EMF_LINE.encode(self.serialize_metric_set()))
        self.clear_metrics()


metrics = Metrics(provider=EmfProvider())
# A rejected request's only metric is its own single_metric blob (below), so the invocation's
# metric set is empty by design; Powertools would warn about that on every container.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
# Every metric also carries the stage, so two stages sharing an account and namespace never mix
# on one stage's dashboard or alarms. Low cardinality: one value per deployment.
if os.environ.get("STAGE"):
    metrics.set_default_dimensions(stage=os.environ["STAGE"])


def log_request_context(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Powertools' ``inject_lambda_context``, cut to the two keys the ingest's lines are searched by:
    ``correlation_id``, the request id API Gateway assigned (``requestContext.requestId`` in REST and
    HTTP API events alike), and ``function_request_id``, Lambda's id for the invocation (the one on its
    platform lines). inject_lambda_context also writes the function's name, ARN and memory size and a
    cold_start flag on every line (about 150 bytes that the log group and the platform.report line already
    say) and reads the correlation id through JMESPath (bench P1 cuts_us.request_context). Not kept either:
    its POWERTOOLS_LOGGER_LOG_EVENT (the whole event, body included, in the log: never wanted here) and the
    per-invocation redraw of POWERTOOLS_LOGGER_SAMPLE_RATE, neither of which the stack sets."""

    @functools.wraps(handler)
    def with_request_context(event: dict[str, Any], context: Any) -> Any:
        request_context = event.get("requestContext") or {}
        logger.append_keys(correlation_id=request_context.get("requestId"), function_request_id=context.aws_request_id)
        return handler(event, context)

    return with_request_context


# RequestsRejected's `reason` dimension: a handful of classes by HTTP status, never the client's
# data and never the fine-grained slug (that is in the "request rejected" log line).
_REJECTION_CLASSES = {
    400: "invalid",
    401: "unauthenticated",  # DEVICE_AUTH=on: no credential, or one that is not a device key at all
    403: "forbidden-invalid",  # DEVICE_AUTH=on: a device key this deployment refuses (also _REJECTION_BY_SLUG)
    404: "route",
    405: "route",
    413: "too-large",
    415: "media-type",
    429: "overloaded",
    503: "overloaded",  # MAX_QUEUE backpressure
}
# Where one status has causes the on-call must tell apart (issue 31): the 403s by why the key was refused, and a
# keyring that cannot be read (pipeline/device_auth.py) apart from MAX_QUEUE's backpressure.
_REJECTION_BY_SLUG = {
    "invalid-key": "forbidden-invalid",  # wrong signature, another deployment's key, a generation never issued
    "retired-key": "forbidden-retired",
    "revoked-device": "forbidden-revoked",
    "device-auth-unavailable": "keyring-unavailable",
}


def rejection_class(status: int, slug: str = "") -> str:
    """The low-cardinality reason class of a 4xx (or 503) the ingest answered, from its status and problem slug."""
    return _REJECTION_BY_SLUG.get(slug) or _REJECTION_CLASSES.get(status, "other")


class MetricsFlushError(KnobError):
    """METRICS_FLUSH_SECONDS in the function's environment is not an integer of 0..300."""


def flush_seconds_from(env: Mapping[str, str]) -> int:
    """METRICS_FLUSH_SECONDS as the stack sets it on the ingest (absent: 0, as on the consumer)."""
    return parse_int("METRICS_FLUSH_SECONDS", env.get("METRICS_FLUSH_SECONDS", "0"), 0, 300, error=MetricsFlushError)


class MetricCounts:
    """The ingest's Count metrics (RequestsAccepted, PayloadsAccepted, RequestsRejected by reason, ...),
    written as the EMF blobs Powertools Metrics writes (``count_blob``), with the namespace, service and
    default dimensions of ``metrics``.

    ``flush_seconds`` 0 (METRICS_FLUSH_SECONDS' default): each count goes into the invocation's EMF blob,
    written when the invocation ends (as Powertools' log_metrics flushed it); a rejection is its own blob,
    with its ``reason`` dimension (single_metric). One value per request, exactly as before this knob existed.

    ``flush_seconds`` N > 0: counts are summed in the container, by metric and reason, and written when
    the container's window of sums is N seconds old, at the end of an invocation (or, after an idle
    spell, before the next request is counted): one blob for the plain counts and one per rejection
    reason, carrying the same dimensions (service, stage; reason), stamped with the time of the window's
    last count. CloudWatch's Sum per period is what it was (the dashboard and alarms read Sum); only
    SampleCount changes, to one per flush.

    Either way a blob holds at most the ingest's six plain counts (one per rejection reason), one value each
    per request or per window: Powertools' own limit, at which it splits a blob (100 metrics, or 100 values of
    one metric), is never near.

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
        self._invocation: dict[str, list[float]] = {}  # flush_seconds 0: this invocation's values, by metric
        self._disabled = is_metrics_disabled()  # Powertools' switch, read once: a container's environment is fixed

    def add(self, name: str, value: float = 1, reason: str | None = None) -> None:
        """Count ``value`` of metric ``name`` (with a ``reason`` dimension when given)."""
        if not self.flush_seconds:
            if reason is None:
                self._invocation.setdefault(name, []).append(float(value))  # written when the invocation ends
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
        plain = {name: [float(value)] for (name, reason), value in sums.items() if reason is None}
        if plain:
            self._write(plain, self._last_count_ms)
        for (name, reason), value in sums.items():
            if reason is not None:
                self._write({name: [float(value)]}, self._last_count_ms, reason)

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
        """The handler decorator: write the invocation's counts when it ends (``flush_seconds`` 0), else the
        sums when their window is due; either way also when the handler raises."""

        @functools.wraps(handler)
        def with_metrics(event: dict[str, Any], context: Any) -> Any:
            try:
                return handler(event, context)
            finally:
                if self.flush_seconds:
                    self.flush_if_due()
                elif self._invocation:
                    values, self._invocation = self._invocation, {}
                    self._write(values, int(self._wall_clock() * 1000))

        return with_metrics

    def _write(self, values: dict[str, list[float]], timestamp_ms: int, reason: str | None = None) -> None:
        """One blob of ``values``, with the namespace, default dimensions and service of ``metrics`` (and ``reason``),
        in the order Powertools' serialize_metric_set gives them."""
        if self._disabled:
            return
        dimensions = {name: str(value) for name, value in self.metrics.default_dimensions.items()}
        if reason is not None:
            dimensions["reason"] = reason
        if self.metrics.service:
            dimensions.setdefault("service", self.metrics.service)
        print(count_blob(self.metrics.namespace, dimensions, values, timestamp_ms))


@functools.lru_cache(maxsize=64)
def _json_text(value: str | tuple[str, ...]) -> str:
    # A namespace, metric name or dimension, as JSON: a handful of constants per container, encoded once.
    return _EMF_LINE.encode(list(value) if isinstance(value, tuple) else value)


def count_blob(
    namespace: str | None, dimensions: Mapping[str, str], values: Mapping[str, list[float]], timestamp_ms: int
) -> str:
    """The EMF blob Powertools writes for Count metrics ``values`` (its serialize_metric_set, as compact JSON), byte
    for byte (tests/unit/test_metric_counts.py). Written here because the ingest writes one per request: its two
    counts and their blob take 8.5 µs this way, 30 through Powertools' add_metric, log_metrics and EmfProvider's
    flush (bench P1 cuts_us.count_blob, 2026-12-02). The names, namespace and dimensions are a handful of constants
    per container, so their JSON text is encoded once: 3.7 µs per blob, where building the blob as a dict and
    encoding it took 7.6 (side by side, the same day). Counts are finite floats, which JSON writes as repr does."""
    if namespace is None:
        raise SchemaValidationError("Must contain a metric namespace.")  # Powertools' own refusal
    definitions = ",".join('{"Name":' + _json_text(name) + ',"Unit":"Count"}' for name in values)
    members = [_json_text(name) + ":" + _json_text(value) for name, value in dimensions.items()]
    members += [_json_text(name) + ":[" + ",".join(map(repr, value)) + "]" for name, value in values.items()]
    return (
        f'{{"_aws":{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":[{{"Namespace":{_json_text(namespace)},'
        f'"Dimensions":[{_json_text(tuple(dimensions))}],"Metrics":[{definitions}]}}]}},{",".join(members)}}}'
    )


# The ingest's counts; METRICS_FLUSH_SECONDS is read at cold start, as Powertools reads its settings.
counts = MetricCounts(metrics, flush_seconds_from(os.environ))


def count_rejected_request(status: int, slug: str = "") -> None:
    """Count one RequestsRejected, with its low-cardinality ``reason`` dimension."""
    counts.add(Metric.REQUESTS_REJECTED, 1, reason=rejection_class(status, slug))


class KeyringTelemetry:
    """pipeline/device_auth.py's KeyringSignals as the on-call sees them: KeyringRefreshFailed per failed read of
    the keyring secret and KeyringStaleServed per request authenticated against a stale keyring (plain counts, no
    dimension beyond the service's), and a WARNING per failed read (at most one a second per container: the scale
    profile logs at WARNING). Never a key's value, never a device id or a client's address."""

    def refresh_failed(self, error: str, keyring_age_seconds: float | None, usable_for_seconds: float) -> None:
        counts.add(Metric.KEYRING_REFRESH_FAILED, 1)
        if keyring_age_seconds is None:
            message = "device keyring unreadable and none held: device-keyed requests get 503 keyring-unavailable"
        elif usable_for_seconds > 0:
            message = "device keyring unreadable: serving the last good keyring (stale)"
        else:
            message = "device keyring unreadable and the held one is past its stale window: 503 keyring-unavailable"
        extra: dict[str, Any] = {"error": error, "staleUsableForSeconds": round(usable_for_seconds, 1)}
        if keyring_age_seconds is not None:
            extra["keyringAgeSeconds"] = round(keyring_age_seconds, 1)
        logger.warning(message, extra=extra)

    def refreshed_after_failures(self, failed_attempts: int) -> None:
        logger.warning("device keyring read again", extra={"failedAttempts": failed_attempts})

    def stale_served(self) -> None:
        counts.add(Metric.KEYRING_STALE_SERVED, 1)
