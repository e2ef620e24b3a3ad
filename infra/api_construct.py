"""REST API: POST /v1/payloads -> ingest Lambda, API key + usage plan, problem+json gateway errors."""

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

# Errors API Gateway answers itself (before our Lambda runs) also speak RFC 9457. Every typed
# response is listed with its own status: AWS applies a status code set on DEFAULT_4XX/5XX to every
# type left unconfigured, so the fallbacks must never be what gives a 404 or a 415 its status.
_RT = apigw.ResponseType
_GATEWAY_PROBLEMS: list[tuple[str, apigw.ResponseType, str | None, str, str, str]] = [
    ("MISSING_AUTHENTICATION_TOKEN", _RT.MISSING_AUTHENTICATION_TOKEN, "404", "not-found", "Not Found",
     "no such route; payloads go to POST /v1/payloads"),
    ("RESOURCE_NOT_FOUND", _RT.RESOURCE_NOT_FOUND, "404", "not-found", "Not Found",
     "no such route; payloads go to POST /v1/payloads"),
    ("INVALID_API_KEY", _RT.INVALID_API_KEY, "403", "forbidden", "Forbidden", "missing or invalid x-api-key header"),
    ("ACCESS_DENIED", _RT.ACCESS_DENIED, "403", "forbidden", "Forbidden", "missing or invalid x-api-key header"),
    ("EXPIRED_TOKEN", _RT.EXPIRED_TOKEN, "403", "forbidden", "Forbidden", "expired credentials"),
    ("INVALID_SIGNATURE", _RT.INVALID_SIGNATURE, "403", "forbidden", "Forbidden", "invalid request signature"),
    ("WAF_FILTERED", _RT.WAF_FILTERED, "403", "forbidden", "Forbidden", "blocked by the web application firewall"),
    ("UNAUTHORIZED", _RT.UNAUTHORIZED, "401", "unauthorized", "Unauthorized", "authentication required"),
    ("BAD_REQUEST_BODY", _RT.BAD_REQUEST_BODY, "400", "bad-request", "Bad Request", "the request body was rejected"),
    ("BAD_REQUEST_PARAMETERS", _RT.BAD_REQUEST_PARAMETERS, "400", "bad-request", "Bad Request",
     "the request parameters were rejected"),
    ("UNSUPPORTED_MEDIA_TYPE", _RT.UNSUPPORTED_MEDIA_TYPE, "415", "unsupported-media-type", "Unsupported Media Type",
     "expected Content-Type application/json"),
    ("REQUEST_TOO_LARGE", _RT.REQUEST_TOO_LARGE, "413", "body-too-large", "Content Too Large",
     "the request body is larger than API Gateway accepts"),
    ("THROTTLED", _RT.THROTTLED, "429", "throttled", "Too Many Requests", "rate limit exceeded; retry with backoff"),
    ("QUOTA_EXCEEDED", _RT.QUOTA_EXCEEDED, "429", "quota-exceeded", "Too Many Requests", "usage plan quota exceeded"),
    ("INTEGRATION_TIMEOUT", _RT.INTEGRATION_TIMEOUT, "504", "timeout", "Gateway Timeout",
     "the ingest function timed out; retry with backoff"),
    ("INTEGRATION_FAILURE", _RT.INTEGRATION_FAILURE, "504", "ingest-unavailable", "Gateway Timeout",
     "the ingest function could not be reached; retry with backoff"),
    ("API_CONFIGURATION_ERROR", _RT.API_CONFIGURATION_ERROR, "500", "gateway-error", "Internal Server Error",
     "API Gateway is misconfigured"),
    ("AUTHORIZER_FAILURE", _RT.AUTHORIZER_FAILURE, "500", "gateway-error", "Internal Server Error", "authorizer failed"),
    ("AUTHORIZER_CONFIGURATION_ERROR", _RT.AUTHORIZER_CONFIGURATION_ERROR, "500", "gateway-error",
     "Internal Server Error", "authorizer is misconfigured"),
    # Fallbacks. Every typed 5xx is configured above, so what is left is a failed Lambda
    # invocation, which API Gateway answers 502. No status is set on DEFAULT_4XX (it would override
    # any 4xx type AWS adds later), so its body cannot state one either.
    ("DEFAULT_5_XX", _RT.DEFAULT_5_XX, "502", "ingest-unavailable", "Bad Gateway",
     "the ingest function failed; retry with backoff"),
    ("DEFAULT_4_XX", _RT.DEFAULT_4_XX, None, "gateway-rejected", "Client Error", "the request was rejected by API Gateway"),
]


class IngestApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        queue: sqs.IQueue,
        powertools_layer: lambda_.ILayerVersion,
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

        stage_throttle = {} if config.REQUIRE_API_KEY else {
            # Without keys there is no usage plan to throttle per client: cap the stage instead.
            "throttling_rate_limit": config.THROTTLE_RATE_LIMIT,
            "throttling_burst_limit": config.THROTTLE_BURST_LIMIT,
        }
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
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                **stage_throttle,
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
                templates={"application/json": _problem_template(status, slug, title, detail)},
            )

        payloads = self.api.root.add_resource("v1").add_resource("payloads")
        self.method = payloads.add_method(
            "POST",
            apigw.LambdaIntegration(self.function, proxy=True),
            api_key_required=config.REQUIRE_API_KEY,
        )

        self.usage_plan = self.api.add_usage_plan(
            "UsagePlan",
            name=f"ingest-pipeline-{config.STAGE}",
            throttle=apigw.ThrottleSettings(rate_limit=config.THROTTLE_RATE_LIMIT, burst_limit=config.THROTTLE_BURST_LIMIT),
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
