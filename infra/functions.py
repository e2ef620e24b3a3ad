"""The settings every pipeline Lambda shares: runtime, arch, code asset, layer, logs, tracing."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import PipelineConfig
from infra.lambda_asset import lambda_code

_RUNTIMES = {"3.13": lambda_.Runtime.PYTHON_3_13, "3.14": lambda_.Runtime.PYTHON_3_14}
_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def log_retention(days: int) -> logs.RetentionDays:
    if days not in _RETENTION:
        raise ValueError(f"LOG_RETENTION_DAYS must be one of {sorted(_RETENTION)}, got {days}")
    return _RETENTION[days]


def application_log_level(config: PipelineConfig) -> lambda_.ApplicationLogLevel:
    """Lambda's own filter on the functions' lines (LoggingConfig ApplicationLogLevel): never above INFO.

    With the JSON log format, Lambda gives every line without a ``level`` key the level INFO ("If the
    "level" value field is invalid or missing, Lambda will assign the log output the level INFO", "Log-level
    filtering", https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html). Our
    EMF metric lines have no level key, and the runtime's own lines for an uncaught error carry ``log_level``,
    not ``level`` (aws/aws-lambda-python-runtime-interface-client#202), so a WARN here would drop every metric
    and every crash report. The functions' own lines are cut in Powertools instead, at LOG_LEVEL
    (pipeline/observability.py). DEBUG only when LOG_LEVEL is DEBUG, so that Lambda keeps those lines too.
    """
    return lambda_.ApplicationLogLevel.DEBUG if config.LOG_LEVEL == "DEBUG" else lambda_.ApplicationLogLevel.INFO


def log_group(
    scope: Construct,
    construct_id: str,
    config: PipelineConfig,
    log_group_class: logs.LogGroupClass | None = None,
    retention_days: int | None = None,
) -> logs.LogGroup:
    """A log group kept LOG_RETENTION_DAYS (or ``retention_days``), deleted with the stack; ``log_group_class``
    None: STANDARD, left unset."""
    return logs.LogGroup(
        scope,
        construct_id,
        retention=log_retention(config.LOG_RETENTION_DAYS if retention_days is None else retention_days),
        log_group_class=log_group_class,
        removal_policy=RemovalPolicy.DESTROY,
    )


def pipeline_function(
    scope: Construct,
    construct_id: str,
    *,
    config: PipelineConfig,
    handler: str,
    environment: dict[str, str],
    timeout_seconds: int,
    memory_mb: int,
    powertools_layer: lambda_.ILayerVersion | None,
    reserved_concurrency: int | None = None,
) -> lambda_.Function:
    """A Python arm64 Function whose code is the lambdas/ folder (infra/lambda_asset.py, no Docker).

    ``powertools_layer`` is None when Powertools is bundled into the asset (POWERTOOLS_SOURCE=bundle).
    Its role may write only to the function's own log group: the default role's
    AWSLambdaBasicExecutionRole grants log writes on every log group (``*``). Tracing adds X-Ray's grant.

    Logs are JSON: Lambda's own lines (platform.start, platform.report, ...) become JSON objects that
    SYSTEM_LOG_LEVEL can filter (WARN drops START/END/REPORT), and ours, already JSON, pass unchanged
    ("Lambda doesn't double-encode any logs that are already JSON encoded", "Configuring JSON and plain text
    log formats", https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-logformat.html),
    EMF lines included, so CloudWatch still extracts their metrics. See application_log_level for the rest.
    """
    function_logs = log_group(scope, f"{construct_id}Logs", config)
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"{construct_id} function: its own log group, plus the grants its construct adds",
    )
    function_logs.grant_write(role)
    return lambda_.Function(
        scope,
        construct_id,
        runtime=_RUNTIMES[config.PYTHON_VERSION],
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=lambda_code(config),
        layers=[powertools_layer] if powertools_layer is not None else None,
        environment=environment,
        timeout=Duration.seconds(timeout_seconds),
        memory_size=memory_mb,
        reserved_concurrent_executions=reserved_concurrency,
        tracing=lambda_.Tracing.ACTIVE if config.TRACING else lambda_.Tracing.DISABLED,
        log_group=function_logs,
        logging_format=lambda_.LoggingFormat.JSON,
        system_log_level_v2=lambda_.SystemLogLevel(config.SYSTEM_LOG_LEVEL),  # DEBUG, INFO, WARN
        application_log_level_v2=application_log_level(config),
        role=role,
    )
