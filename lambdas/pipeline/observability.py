"""Logger, Tracer and Metrics, created once. Service name and namespace come from the environment
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE) that the stack sets per function."""

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from pipeline.contract import Metric

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
    401: "unauthorized",  # DEVICE_AUTH=on: no or malformed device key
    403: "unauthorized",  # DEVICE_AUTH=on: a device key this deployment refuses
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


def count_rejected_request(status: int) -> None:
    """Emit RequestsRejected with a `reason` dimension. A separate EMF blob (Powertools'
    single_metric), because the invocation's other metrics must not get that dimension."""
    # Namespace and service from the shared Metrics object, so both blobs always agree.
    with single_metric(
        name=Metric.REQUESTS_REJECTED,
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions={"service": metrics.service, **metrics.default_dimensions},
    ) as metric:
        metric.add_dimension(name="reason", value=rejection_class(status))
