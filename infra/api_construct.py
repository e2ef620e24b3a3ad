"""REST API: every method on /v1/payloads -> ingest Lambda (POST ingests, the rest 405), API key + usage plan,
stage-wide throttle, problem+json gateway errors."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import PipelineConfig
from infra.functions import log_group, log_retention, pipeline_function

# Every method API Gateway REST knows, each routed to the ingest function with the same key
# requirement: GET, PUT, ... then get the handler's 405 + Allow: POST, as `make run` answers, instead
# of API Gateway's MISSING_AUTHENTICATION_TOKEN for a method the resource lacks.
PAYLOAD_METHODS = ("POST", "GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

# Errors API Gateway answers itself (before our Lambda runs) also speak RFC 9457. Every typed
# response is listed with its own status: AWS applies a status code set on DEFAULT_4XX/5XX to every
# type left unconfigured, so the fallbacks must never be what gives a 404 or a 415 its status.
# A 5xx detail never promises that a retry helps: a body too large for Lambda fails the same way
# every time ({body_limit} is MAX_BODY_BYTES, filled in at synth).
_RT = apigw.ResponseType
_NOT_RETRYABLE_IF_TOO_LARGE = "a request body over {body_limit} bytes never succeeds; other causes may be temporary"
_GATEWAY_PROBLEMS: list[tuple[str, apigw.ResponseType, str | None, str, str, str]] = [
    # Only an unknown path now (every method on /v1/payloads reaches the function): 404, no key needed.
    (
        "MISSING_AUTHENTICATION_TOKEN",
        _RT.MISSING_AUTHENTICATION_TOKEN,
        "404",
        "not-found",
        "Not Found",
        "no such route; payloads go to POST /v1/payloads",
    ),
    (
        "RESOURCE_NOT_FOUND",
        _RT.RESOURCE_NOT_FOUND,
        "404",
        "not-found",
        "Not Found",
        "no such route; payloads go to POST /v1/payloads",
    ),
    ("INVALID_API_KEY", _RT.INVALID_API_KEY, "403", "forbidden", "Forbidden", "missing or invalid x-api-key header"),
    ("ACCESS_DENIED", _RT.ACCESS_DENIED, "403", "forbidden", "Forbidden", "missing or invalid x-api-key header"),
    ("EXPIRED_TOKEN", _RT.EXPIRED_TOKEN, "403", "forbidden", "Forbidden", "expired credentials"),
    ("INVALID_SIGNATURE", _RT.INVALID_SIGNATURE, "403", "forbidden", "Forbidden", "invalid request signature"),
    ("WAF_FILTERED", _RT.WAF_FILTERED, "403", "forbidden", "Forbidden", "blocked by the web application firewall"),
    ("UNAUTHORIZED", _RT.UNAUTHORIZED, "401", "unauthorized", "Unauthorized", "authentication required"),
    ("BAD_REQUEST_BODY", _RT.BAD_REQUEST_BODY, "400", "bad-request", "Bad Request", "the request body was rejected"),
    (
        "BAD_REQUEST_PARAMETERS",
        _RT.BAD_REQUEST_PARAMETERS,
        "400",
        "bad-request",
        "Bad Request",
        "the request parameters were rejected",
    ),
    (
        "UNSUPPORTED_MEDIA_TYPE",
        _RT.UNSUPPORTED_MEDIA_TYPE,
        "415",
        "unsupported-media-type",
        "Unsupported Media Type",
        "expected Content-Type application/json",
    ),
    (
        "REQUEST_TOO_LARGE",
        _RT.REQUEST_TOO_LARGE,
        "413",
        "body-too-large",
        "Content Too Large",
        "the request body is larger than API Gateway accepts",
    ),
    ("THROTTLED", _RT.THROTTLED, "429", "throttled", "Too Many Requests", "rate limit exceeded; retry with backoff"),
    ("QUOTA_EXCEEDED", _RT.QUOTA_EXCEEDED, "429", "quota-exceeded", "Too Many Requests", "usage plan quota exceeded"),
    (
        "INTEGRATION_TIMEOUT",
        _RT.INTEGRATION_TIMEOUT,
        "504",
        "timeout",
        "Gateway Timeout",
        "the ingest function did not answer in time; payloads of this request may already be queued. "
        "The cause may be temporary: retrying can help, and may store those payloads twice",
    ),
    (
        "INTEGRATION_FAILURE",
        _RT.INTEGRATION_FAILURE,
        "504",
        "ingest-unavailable",
        "Gateway Timeout",
        "the ingest function could not be invoked; " + _NOT_RETRYABLE_IF_TOO_LARGE,
    ),
    (
        "API_CONFIGURATION_ERROR",
        _RT.API_CONFIGURATION_ERROR,
        "500",
        "gateway-error",
        "Internal Server Error",
        "API Gateway could not invoke the ingest function; " + _NOT_RETRYABLE_IF_TOO_LARGE,
    ),
    (
        "AUTHORIZER_FAILURE",
        _RT.AUTHORIZER_FAILURE,
        "500",
        "gateway-error",
        "Internal Server Error",
        "authorizer failed",
    ),
    (
        "AUTHORIZER_CONFIGURATION_ERROR",
        _RT.AUTHORIZER_CONFIGURATION_ERROR,
        "500",
        "gateway-error",
        "Internal Server Error",
        "authorizer is misconfigured",
    ),
    # Fallbacks. Every typed 5xx is configured above, so what is left is a failed Lambda
    # invocation, which API Gateway answers 502. No status is set on DEFAULT_4XX (it would override
    # any 4xx type AWS adds later), so its body cannot state one either.
    (
        "DEFAULT_5_XX",
        _RT.DEFAULT_5_XX,
        "502",
        "ingest-unavailable",
        "Bad Gateway",
        "the ingest function failed or could not be invoked; " + _NOT_RETRYABLE_IF_TOO_LARGE,
    ),
    (
        "DEFAULT_4_XX",
        _RT.DEFAULT_4_XX,
        None,
        "gateway-rejected",
        "Client Error",
        "the request was rejected by API Gateway",
    ),
]


class IngestApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        queue: sqs.IQueue,
        powertools_layer: lambda_.ILayerVersion | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = pipeline_function(
            self,
            "Ingest",
            config=config,
            handler="ingest_handler.lambda_handler",
            environment=config.ingest_environment(queue.queue_url),
            timeout_seconds=config.INGEST_TIMEOUT_SECONDS,
            memory_mb=config.INGEST_MEMORY_MB,
            powertools_layer=powertools_layer,
        )
        queue.grant_send_messages(self.function)

        # The stage's default method throttling: a ceiling above every key's usage plan, so the stage is
        # bounded even if a plan is misconfigured. Without keys there is no per-client plan, so the
        # per-client limits become the stage's.
        keyed = config.REQUIRE_API_KEY
        throttling_rate_limit = config.STAGE_THROTTLE_RATE_LIMIT if keyed else config.THROTTLE_RATE_LIMIT
        throttling_burst_limit = config.STAGE_THROTTLE_BURST_LIMIT if keyed else config.THROTTLE_BURST_LIMIT
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"ingest-pipeline-{config.STAGE}",
            description="Ingest endpoint: POST /v1/payloads",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Every body reaches the Lambda base64-encoded and byte-exact: gzip and invalid UTF-8
            # are then the handler's to judge (400/413), not mangled by the gateway.
            binary_media_types=["*/*"],
            cloud_watch_role=config.API_GATEWAY_CLOUDWATCH_ROLE,
            deploy_options=apigw.StageOptions(
                stage_name=config.STAGE,
                tracing_enabled=config.TRACING,
                access_log_destination=apigw.LogGroupLogDestination(log_group(self, "AccessLogs", config)),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                throttling_rate_limit=throttling_rate_limit,
                throttling_burst_limit=throttling_burst_limit,
            ),
        )
        # Execution logging (ERROR) makes API Gateway create this group itself, without retention.
        # Owning it gives it LOG_RETENTION_DAYS; the stage waits for it so the gateway never wins the race.
        execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{config.STAGE}",
            retention=log_retention(config.LOG_RETENTION_DAYS),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api.deployment_stage.node.add_dependency(execution_logs)
        for name, response_type, status, slug, title, detail in _GATEWAY_PROBLEMS:
            self.api.add_gateway_response(
                f"Problem{name.title().replace('_', '')}",
                type=response_type,
                status_code=status,
                response_headers={"Content-Type": "'application/problem+json'"},
                templates={
                    "application/json": _problem_template(
                        status, slug, title, detail.format(body_limit=config.MAX_BODY_BYTES)
                    )
                },
            )

        # API Gateway REST routes /v1/payloads/ (trailing slash) to this same resource, so it gets the same
        # key check and method; the event's path keeps the slash, and the ingest handler's route (the rule
        # of Powertools' APIGatewayRestResolver: trailing slashes ignored) matches it. AWS's guides do not
        # state the matching rule; it is the behaviour Powertools' maintainers measured on REST APIs
        # (aws-powertools/powertools-lambda-python#1552, #1609).
        payloads = self.api.root.add_resource("v1").add_resource("payloads")
        self.methods = {
            verb: payloads.add_method(
                verb,
                # The console's test-invoke permission only for POST: one Lambda permission per method is enough.
                apigw.LambdaIntegration(self.function, proxy=True, allow_test_invoke=verb == "POST"),
                api_key_required=config.REQUIRE_API_KEY,
            )
            for verb in PAYLOAD_METHODS
        }
        self.method = self.methods["POST"]

        self.usage_plan = self.api.add_usage_plan(
            "UsagePlan",
            name=f"ingest-pipeline-{config.STAGE}",
            throttle=apigw.ThrottleSettings(
                rate_limit=config.THROTTLE_RATE_LIMIT, burst_limit=config.THROTTLE_BURST_LIMIT
            ),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )
        self.api_key = self.api.add_api_key("ApiKey", api_key_name=f"ingest-pipeline-{config.STAGE}")
        self.usage_plan.add_api_key(self.api_key)
        self.payloads_url = self.api.url_for_path("/v1/payloads")


def _problem_template(status: str | None, slug: str, title: str, detail: str) -> str:
    body: dict[str, object] = {"type": f"urn:ingest-pipeline:problem:{slug}", "title": title}
    if status is not None:
        body["status"] = int(status)
    body.update(detail=detail, requestId="$context.requestId")
    return json.dumps(body, separators=(",", ":"))
