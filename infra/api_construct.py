"""REST API (API_KIND=rest): every method on /v1/payloads -> ingest Lambda (POST ingests, the rest 405), API key +
usage plan, stage-wide throttle, problem+json gateway errors. Also the ingest function both front doors share
(``ingest_function``; the HTTP API is infra/http_api_construct.py)."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.access_logs import access_log_format, access_log_group
from infra.config import PipelineConfig
from infra.device_keys_construct import DeviceKeys
from infra.functions import log_retention, pipeline_function
from pipeline import contract

# Every method API Gateway REST knows, each routed to the ingest function with the same key
# requirement: GET, PUT, ... then get the handler's 405 + Allow: POST, as `make run` answers, instead
# of API Gateway's MISSING_AUTHENTICATION_TOKEN for a method the resource lacks.
PAYLOAD_METHODS = ("POST", "GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def ingest_function(
    scope: Construct,
    *,
    config: PipelineConfig,
    queue: sqs.IQueue,
    powertools_layer: lambda_.ILayerVersion | None,
    device_keys: DeviceKeys | None,
) -> lambda_.Function:
    """The ingest Lambda: may send to the queue and, with DEVICE_AUTH=on, read the device keyring. Its construct
    id is "Ingest" under either front door's "Api", so switching API_KIND keeps the function and its log group."""
    function = pipeline_function(
        scope,
        "Ingest",
        config=config,
        handler="ingest_handler.lambda_handler",
        environment=config.ingest_environment(
            queue.queue_url, device_keys.secret.secret_arn if device_keys is not None else ""
        ),
        timeout_seconds=config.INGEST_TIMEOUT_SECONDS,
        memory_mb=config.INGEST_MEMORY_MB,
        powertools_layer=powertools_layer,
        # INGEST_RESERVED_CONCURRENCY: a consumer scaling up (S3 slowdown, backlog) cannot take these
        # executions, so clients keep getting answers (docs/DEPLOY.md: when to set it).
        reserved_concurrency=config.ingest_reservation,
    )
    queue.grant_send_messages(function)
    if device_keys is not None:
        device_keys.grant_read(function)
    return function


class IngestApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        queue: sqs.IQueue,
        powertools_layer: lambda_.ILayerVersion | None,
        device_keys: DeviceKeys | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = ingest_function(
            self, config=config, queue=queue, powertools_layer=powertools_layer, device_keys=device_keys
        )

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
            description=f"Ingest endpoint: POST {contract.PAYLOADS_PATH}",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Every body reaches the Lambda base64-encoded and byte-exact: gzip and invalid UTF-8
            # are then the handler's to judge (400/413), not mangled by the gateway.
            binary_media_types=["*/*"],
            cloud_watch_role=config.API_GATEWAY_CLOUDWATCH_ROLE,
            deploy_options=apigw.StageOptions(
                stage_name=config.STAGE,
                # Never traced, whatever TRACING says: the stage's X-Ray segment records the client's address
                # (http.request.client_ip, "AWS X-Ray traces for Amazon API Gateway APIs",
                # https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-understanding-xray-traces.html)
                # and X-Ray keeps it 30 days with no retention setting (docs/PRIVACY.md). The access log has the
                # stage's status and latency; TRACING still traces both functions.
                tracing_enabled=False,
                access_log_destination=apigw.LogGroupLogDestination(access_log_group(self, "AccessLogs", config)),
                access_log_format=apigw.AccessLogFormat.custom(
                    access_log_format("rest", config.ACCESS_LOG_CLIENT_IP == "on")
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
        # Errors API Gateway answers itself (before the function runs) also speak RFC 9457: the table is
        # the contract's GATEWAY_PROBLEMS, keyed by apigw.ResponseType's names.
        for name, problem in contract.GATEWAY_PROBLEMS.items():
            self.api.add_gateway_response(
                f"Problem{name.title().replace('_', '')}",
                type=getattr(apigw.ResponseType, name),
                status_code=None if problem.status is None else str(problem.status),
                response_headers={"Content-Type": f"'{contract.PROBLEM_CONTENT_TYPE}'"},
                templates={"application/json": _problem_template(problem, config.MAX_BODY_BYTES)},
            )

        # API Gateway REST routes /v1/payloads/ (trailing slash) to this same resource, so it gets the same
        # key check and method; the event's path keeps the slash, and the ingest handler's route (the rule
        # of Powertools' APIGatewayRestResolver: trailing slashes ignored) matches it. AWS's guides do not
        # state the matching rule; it is the behaviour Powertools' maintainers measured on REST APIs
        # (aws-powertools/powertools-lambda-python#1552, #1609).
        payloads = self.api.root.resource_for_path(contract.PAYLOADS_PATH)
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
        self.payloads_url = self.api.url_for_path(contract.PAYLOADS_PATH)
        self.stage: apigw.Stage = self.api.deployment_stage  # what the dashboard and alarms watch
        # payloads_url without PAYLOADS_PATH, no trailing slash: a client that appends the path itself (Locust's
        # --host) takes this. Built as Stage.urlForPath builds its URL (its "/" would end in a slash).
        stack = Stack.of(self)
        self.base_url = (
            f"https://{self.api.rest_api_id}.execute-api.{stack.region}.{stack.url_suffix}/{self.stage.stage_name}"
        )


def _problem_template(problem: contract.GatewayProblem, body_limit: int) -> str:
    """The gateway response's body: the contract's problem document; API Gateway fills in the request id."""
    document = contract.problem_document(
        problem.status,
        problem.slug,
        problem.title,
        problem.detail.format(body_limit=body_limit),
        requestId="$context.requestId",
    )
    return json.dumps(document, separators=(",", ":"))
