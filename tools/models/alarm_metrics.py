"""What the stack's monitoring puts on the CloudWatch bill, counted from the config (issue 31).

CloudWatch bills an alarm per metric it reads: a metric-math alarm pays for each metric in its expression, at
$0.10 per alarm metric a month (standard resolution), and custom metrics at $0.30 each a month (first 10,000)
("Amazon CloudWatch pricing", https://aws.amazon.com/cloudwatch/pricing/). S3 request metrics "are billed at the
same rate as CloudWatch custom metrics" ("Monitoring metrics with Amazon CloudWatch",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudwatch-monitoring.html), one set per metrics filter.
tests/unit/test_alarm_metrics.py keeps these counts equal to both profiles' synthesized templates.
"""

from __future__ import annotations

from infra.config import PipelineConfig

# Metrics each alarm reads (infra/monitoring_construct.py). Rates read the failed count(s) and the volume.
ALWAYS = {
    "oldest-message-age": 1,
    "api-5xx-rate": 2,  # 5xx, Count
    "ingest-errors": 3,  # Errors, Throttles, Invocations
    "consumer-errors": 2,  # Errors, Invocations
    "store-failures": 2,  # StoreFailures, PayloadsStored
    "in-flight-near-cap": 1,
    "worker-pool-saturated": 2,  # the pool (concurrency or pollers), the queue's age of oldest message
    "dlq-not-empty": 1,
    "dlq-new-messages": 1,
    "dlq-messages-expiring": 1,
}
COMPACTION_ALARMS = {"compaction-failed": 1}  # ExecutionsSucceeded
FLOW_ALARMS = {"flow-stopped": 1}  # PayloadsStored
DEVICE_AUTH_ALARMS = {"keyring-unavailable": 1, "devices-refused": 5}  # 4 refused reasons and Count
# S3 request metrics one filter publishes ("Metrics and dimensions", Amazon S3 request metrics in CloudWatch):
# AllRequests, GetRequests, PutRequests, DeleteRequests, HeadRequests, PostRequests, SelectRequests,
# SelectBytesScanned, SelectBytesReturned, ListRequests, BytesDownloaded, BytesUploaded, 4xxErrors, 5xxErrors,
# FirstByteLatency, TotalRequestLatency. A metric without requests in a month publishes nothing; 16 is the most.
S3_REQUEST_METRICS = 16
# DEVICE_AUTH=on: RequestsRejected by reason unauthenticated, forbidden-invalid, forbidden-retired,
# forbidden-revoked and keyring-unavailable in place of unauthorized (+4), KeyringRefreshFailed, KeyringStaleServed.
DEVICE_AUTH_CUSTOM_METRICS = 6


def alarms(config: PipelineConfig) -> dict[str, int]:
    """Each alarm the stack creates with this config, and the metrics it reads (what CloudWatch bills)."""
    found = dict(ALWAYS)
    if config.COMPACTION == "on":
        found |= COMPACTION_ALARMS
    if config.FLOW_ALARM_MIN_PAYLOADS:
        found |= FLOW_ALARMS
    if config.DEVICE_AUTH == "on":
        found |= DEVICE_AUTH_ALARMS
    return found


def alarm_metrics(config: PipelineConfig) -> int:
    """Alarm metrics billed a month: the sum over the stack's alarms of the metrics each reads."""
    return sum(alarms(config).values())


def monitoring_custom_metrics(config: PipelineConfig) -> int:
    """Custom-metric-priced metrics the monitoring adds to the functions' own: the S3 request metrics of the
    payload prefix's filter, and device auth's reasons and keyring counts."""
    return S3_REQUEST_METRICS + (DEVICE_AUTH_CUSTOM_METRICS if config.DEVICE_AUTH == "on" else 0)
