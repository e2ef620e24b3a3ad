"""AWS list prices used by tools.models.cost: us-east-1, USD, on-demand, free tiers ignored.

One dated table. Re-check against the source pages before relying on a figure, and update
PRICES_CHECKED with the date you did.
Tiers are (units up to which the price applies, price per unit); ``None`` means "and above".
"""

from __future__ import annotations

PRICES_CHECKED = "2026-12-01"
REGION = "us-east-1"
MILLION = 1_000_000
GB = 1024**3
TB_GB = 1024  # CloudWatch Logs tiers are stated in TB of ingested data

# API Gateway REST API, per request, by monthly requests.
API_GATEWAY_REST_TIERS: list[tuple[float | None, float]] = [
    (333 * MILLION, 3.50 / MILLION),
    (1_000 * MILLION, 2.80 / MILLION),  # next 667 M
    (20_000 * MILLION, 2.38 / MILLION),  # next 19 B
    (None, 1.51 / MILLION),  # over 20 B
]

# API Gateway HTTP API, per request, by monthly requests; "HTTP APIs are metered in 512 KB increments" (a
# 513 KB request is two), pricing page and "Choose between REST APIs and HTTP APIs"
# (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-vs-rest.html).
API_GATEWAY_HTTP_TIERS: list[tuple[float | None, float]] = [
    (300 * MILLION, 1.00 / MILLION),
    (None, 0.90 / MILLION),  # over 300 M
]
API_GATEWAY_HTTP_METERING_BYTES = 512 * 1024
# Data transfer out to the internet (API Gateway answers: "you pay only for the API calls you receive and the amount
# of data transferred out"), per GB by monthly volume: first 10 TB, next 40 TB, next 100 TB, over 150 TB.
DATA_TRANSFER_OUT_TIERS_PER_GB: list[tuple[float | None, float]] = [
    (10 * TB_GB, 0.09),
    (50 * TB_GB, 0.085),
    (150 * TB_GB, 0.07),
    (None, 0.05),
]

# Lambda on arm64 (Graviton): per GB-second by monthly GB-s (account-wide), plus per request.
LAMBDA_ARM64_GB_SECOND_TIERS: list[tuple[float | None, float]] = [
    (7.5e9, 0.0000133334),
    (18.75e9, 0.0000120001),  # next 11.25 B GB-s
    (None, 0.0000106667),
]
LAMBDA_REQUEST = 0.20 / MILLION
LAMBDA_BILLING_GRANULARITY_MS = 1
# Provisioned mode for event source mappings is billed in event poller units (EPU) per hour. The pricing page's
# SQS example: "The EPU price is $0.00925 per EPU-hour" (us-east-1). The model counts one EPU per active SQS
# poller (Assumptions.epus_per_poller), the unit the provisioned-mode limits are stated in.
LAMBDA_EPU_HOUR = 0.00925

# SQS standard queue, per request; each 64 KB chunk of a request's payload is billed as one request.
SQS_STANDARD_TIERS: list[tuple[float | None, float]] = [
    (100_000 * MILLION, 0.40 / MILLION),
    (200_000 * MILLION, 0.30 / MILLION),  # next 100 B
    (None, 0.24 / MILLION),
]
SQS_CHUNK_BYTES = 64 * 1024

# S3 Standard: PUT, COPY, POST, LIST requests; GET, SELECT and all other requests.
S3_PUT = 0.005 / 1000
S3_LIST = 0.005 / 1000
S3_GET = 0.0004 / 1000
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
CLOUDWATCH_LOGS_INFREQUENT_ACCESS_PER_GB = 0.25  # the Infrequent Access log class: half the standard ingestion
CLOUDWATCH_LOGS_STORAGE_PER_GB_MONTH = 0.03  # archived log data (CloudWatch bills it compressed)
CLOUDWATCH_LOG_EVENT_OVERHEAD_BYTES = 26  # counted per log event on top of its message
CLOUDWATCH_CUSTOM_METRIC_MONTH = 0.30  # first 10,000 metrics
CLOUDWATCH_ALARM_MONTH = 0.10  # standard resolution, one metric
CLOUDWATCH_DASHBOARD_MONTH = 3.00

# X-Ray: traces recorded.
XRAY_TRACE_RECORDED = 5.00 / MILLION

# Secrets Manager: per secret per month, and per 10,000 API calls (GetSecretValue).
SECRETS_MANAGER_SECRET_MONTH = 0.40
SECRETS_MANAGER_CALL = 0.05 / 10_000

# Athena (SQL queries): "$5.00 per TB of data scanned", rounded up to the nearest megabyte, "with a 10 MB minimum
# per query".
ATHENA_PER_TB = 5.00
ATHENA_MINIMUM_BYTES = 10 * 1024**2
# Step Functions Standard workflows: per state transition.
STEP_FUNCTIONS_STANDARD_TRANSITION = 0.025 / 1000
# EventBridge Scheduler: per invocation (the first 14 M a month are free; free tiers are ignored here).
EVENTBRIDGE_SCHEDULER_INVOCATION = 1.00 / MILLION
# KMS: a customer managed key per month (the alarm topic's key).
KMS_KEY_MONTH = 1.00

# --- an operator's flood mitigation in front of the API (tools/models/flood.py): priced, not deployed ---------------
# CloudFront, United States/Mexico/Canada edge locations (Amazon CloudFront pricing,
# https://aws.amazon.com/cloudfront/pricing/): HTTPS requests per 10,000, data transfer out to the internet (first
# 10 TB, per GB), and out to the origin (a POST's body to API Gateway, per GB). The always-free tier (10 M requests,
# 1 TB a month) is ignored, as every free tier here.
CLOUDFRONT_HTTPS_REQUEST = 0.0100 / 10_000
CLOUDFRONT_DATA_TRANSFER_OUT_PER_GB = 0.085
CLOUDFRONT_DATA_TRANSFER_TO_ORIGIN_PER_GB = 0.020
# AWS WAF (AWS WAF pricing, https://aws.amazon.com/waf/pricing/; the same in every Region): per web ACL and per rule
# a month (prorated hourly), and per million requests the web ACL inspects, blocked ones included.
WAF_WEB_ACL_MONTH = 5.00
WAF_RULE_MONTH = 1.00
WAF_REQUEST = 0.60 / MILLION
