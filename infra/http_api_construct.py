"""HTTP API (API_KIND=http): every request -> the ingest Lambda (payload format 2.0), stage and route throttles,
JSON access logs. Devices authenticate with their own keys in the ingest (DEVICE_AUTH=on, required here).

Why this shape, with the AWS pages that decide it:

* Routes. ``ANY /v1/payloads`` and the ``$default`` route both integrate the ingest. An HTTP API route does not
  match its path with a trailing slash (Powertools' end-to-end test of an HTTP API answers 404 to ``/todos/`` for
  a ``/todos`` route: aws-powertools/powertools-lambda-python, tests/e2e/event_handler/test_paths_ending_with_slash.py,
  and #1609 limits trailing-slash matching to REST for that reason), and a route key may not end in ``/``. The
  ``$default`` route "catches requests that don't explicitly match other routes in your API" ("Create routes for
  HTTP APIs", https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html), so
  ``/v1/payloads/`` reaches the ingest and gets REST's answers, every method gets the ingest's 405, and an unknown
  path the ingest's problem+json 404, not the HTTP API's bare ``{"message":"Not Found"}``.
* Payload format 2.0: AWS's current format (the console's default), one ``headers`` map with repeated headers
  joined by commas (so two Authorization headers are visible as such), ``cookies`` apart, and a smaller event
  than 1.0's, which carries every header twice ("Create AWS Lambda proxy integrations for HTTP APIs",
  https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html).
* Throttling: the stage's default route settings are the stage-wide ceiling (STAGE_THROTTLE_*), and the two
  routes of the payloads path get THROTTLE_* of their own; an HTTP API has no per-client throttle or usage plan
  ("Throttle requests to your HTTP APIs", https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html).
* The ``$default`` stage: no stage name in the URL or in ``rawPath``.
"""

from __future__ import annotations

from typing import Final

import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.access_logs import access_log_format, access_log_group
from infra.api_construct import ingest_function
from infra.config import PipelineConfig
from infra.device_keys_construct import DeviceKeys
from pipeline import contract

DEFAULT_ROUTE: Final = "$default"
PAYLOADS_ROUTE: Final = f"ANY {contract.PAYLOADS_PATH}"


class IngestHttpApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        queue: sqs.IQueue,
        powertools_layer: lambda_.ILayerVersion | None,
        device_keys: DeviceKeys | None,  # PipelineConfig refuses API_KIND=http without DEVICE_AUTH=on
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = ingest_function(
            self, config=config, queue=queue, powertools_layer=powertools_layer, device_keys=device_keys
        )
        integration = integrations.HttpLambdaIntegration(
            "IngestIntegration", self.function, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0
        )
        self.api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"ingest-pipeline-{config.STAGE}",
            description=f"Ingest endpoint: POST {contract.PAYLOADS_PATH}",
            create_default_stage=False,
            default_integration=integration,  # the $default route
        )
        self.routes = self.api.add_routes(
            path=contract.PAYLOADS_PATH, methods=[apigwv2.HttpMethod.ANY], integration=integration
        )
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name=DEFAULT_ROUTE,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.STAGE_THROTTLE_RATE_LIMIT, burst_limit=config.STAGE_THROTTLE_BURST_LIMIT
            ),
            access_log_settings=_AccessLogs(
                # The one access-log format of both front doors (infra/access_logs.py), in ACCESS_LOG_CLASS.
                destination=apigwv2.LogGroupLogDestination(access_log_group(self, "AccessLogs", config)),
                format=apigw.AccessLogFormat.custom(access_log_format("http", config.ACCESS_LOG_CLIENT_IP == "on")),
            ),
        )
        # Route throttling has no L2 property. RouteSettings is a JSON map in CloudFormation (route key -> settings),
        # so CDK passes it through as written: CloudFormation's property names, not CDK's.
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigwv2.CfnStage)
        route_limit = {
            "ThrottlingRateLimit": config.THROTTLE_RATE_LIMIT,
            "ThrottlingBurstLimit": config.THROTTLE_BURST_LIMIT,
        }
        cfn_stage.route_settings = {PAYLOADS_ROUTE: route_limit, DEFAULT_ROUTE: route_limit}
        for route in self.routes:  # the stage's settings name the routes: they must exist first
            cfn_stage.node.add_dependency(route)
        self.base_url = self.api.api_endpoint  # the $default stage: no stage in the path
        self.payloads_url = f"{self.base_url}{contract.PAYLOADS_PATH}"


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogs:
    """An IAccessLogSettings value (CDK ships the interface, no class implementing it)."""

    def __init__(self, *, destination: apigwv2.IAccessLogDestination, format: apigw.AccessLogFormat) -> None:  # noqa: A002
        self._destination, self._format = destination, format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format
