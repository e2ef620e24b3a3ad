"""AWS list prices used by tools.models.cost: us-east-1, USD, on-demand, free tiers ignored.

One dated table. Re-check against the source pages before relying on a figure, and update
PRICES_CHECKED with the date you did.
Tiers are (units up to which the price applies, price per unit); ``None`` means "and above".
"""

from __future__ import annotations

PRICES_CHECKED = "2026-11-26"
REGION = "us-east-1"
MILLION = 1_000_000
GB = 1024**3
TB_GB = 1024  # CloudWatch Logs tiers are stated in TB of ingested data

SOURCES = {
    "api_gateway": "https://aws.amazon.com/api-gateway/pricing/",
    "lambda": "https://aws.amazon.com/lambda/pricing/",
    "sqs": "https://aws.amazon.com/sqs/pricing/",
    "s3": "https://aws.amazon.com/s3/pricing/",
    "cloudwatch": "https://aws.amazon.com/cloudwatch/pricing/",
    "xray": "https://aws.amazon.com/xray/pricing/",
}

# API Gateway REST API, per request, by monthly requests.
API_GATEWAY_REST_TIERS: list[tuple[float | None, float]] = [
    (333 * MILLION, 3.50 / MILLION),
    (1_000 * MILLION, 2.80 / MILLION),  # next 667 M
    (20_000 * MILLION, 2.38 / MILLION),  # next 19 B
    (None, 1.51 / MILLION),  # over 20 B
]

# Lambda on arm64 (Graviton): per GB-second by monthly GB-s (account-wide), plus per request.
LAMBDA_ARM64_GB_SECOND_TIERS: list[tuple[float | None, float]] = [
    (7.5e9, 0.0000133334),
    (18.75e9, 0.0000120001),  # next 11.25 B GB-s
    (None, 0.0000106667),
]
LAMBDA_REQUEST = 0.20 / MILLION
LAMBDA_BILLING_GRANULARITY_MS = 1

# SQS standard queue, per request; each 64 KB chunk of a request's payload is billed as one request.
SQS_STANDARD_TIERS: list[tuple[float | None, float]] = [
    (100_000 * MILLION, 0.40 / MILLION),
    (200_000 * MILLION, 0.30 / MILLION),  # next 100 B
    (None, 0.24 / MILLION),
]
SQS_CHUNK_BYTES = 64 * 1024

# S3 Standard: PUT, COPY, POST, LIST requests.
S3_PUT = 0.005 / 1000
# S3 Standard storage per GB-month, by the account's stored volume: first 50 TB, next 450 TB, over 500 TB.
S3_STANDARD_STORAGE_TIERS_PER_GB: list[tuple[float | None, float]] = [
    (50 * TB_GB, 0.023),
    (500 * TB_GB, 0.022),
    (None, 0.021),
]
# Server access logging itself is free; the delivered log objects pay ordinary storage
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ServerLogs.html, "Pricing").
S3_ACCESS_LOG_RECORD_BYTES = 600  # assumed: one space-delimited record, ~25 fields incl. ids and key

# CloudWatch Logs ingestion. Lambda's own logs are priced in volume tiers (since May 2025);
# other log groups (API Gateway access logs) pay the flat standard rate.
CLOUDWATCH_LAMBDA_LOGS_TIERS_PER_GB: list[tuple[float | None, float]] = [
    (10 * TB_GB, 0.50),
    (30 * TB_GB, 0.25),  # next 20 TB
    (50 * TB_GB, 0.10),  # next 20 TB
    (None, 0.05),
]
CLOUDWATCH_LOGS_STANDARD_PER_GB = 0.50
CLOUDWATCH_LOG_EVENT_OVERHEAD_BYTES = 26  # counted per log event on top of its message
CLOUDWATCH_CUSTOM_METRIC_MONTH = 0.30  # first 10,000 metrics
CLOUDWATCH_ALARM_MONTH = 0.10  # standard resolution, one metric
CLOUDWATCH_DASHBOARD_MONTH = 3.00

# X-Ray: traces recorded.
XRAY_TRACE_RECORDED = 5.00 / MILLION
