"""The ingest reads the HTTP API's payload format 2.0 (API_KIND=http), starting from AWS's documented example
event (tests/events/): routing, answers in the 2.0 shape, base64 and text bodies, cookies, repeated headers,
the stage prefix, and the correlation id all the way to the consumer's log."""

from __future__ import annotations

import base64
import copy
import gzip
import http.client
import io
import json
import logging
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import consumer_handler
import ingest_handler
from local_pipeline.access_log import AccessLog
from local_pipeline.events import HttpApi, LambdaContext
from local_pipeline.http_front import IngestFront
from pipeline.contract import BINARY_JSON_CONTENT_TYPE, PAYLOADS_PATH
from tests.conftest import Pipeline, collection

EVENTS = Path(__file__).resolve().parents[1] / "events"


@cache
def _documented(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def documented_event(name: str = "http-api-payload-2.0.json", **changes: Any) -> dict[str, Any]:
    """AWS's example event, deep-copied, with ``changes`` applied (``requestContext`` keys merged)."""
    event = copy.deepcopy(_documented(name))
    context = changes.pop("requestContext", {})
    event.update(changes)
    event["requestContext"].update(context)
    return event


def payloads_event(body: bytes, content_type: str = "application/json", **changes: Any) -> dict[str, Any]:
    """The documented 2.0 event as a POST to /v1/payloads, its body passed as the HTTP API passes it for
    ``content_type``: text for application/json, base64 for any other type (docs/FRONT_DOOR.md)."""
    as_text = content_type.split(";")[0] == "application/json"
    headers = {"content-type": content_type, **changes.pop("headers", {})}
    return documented_event(
        **{
            "rawPath": "/v1/payloads",
            "headers": headers,
            "body": body.decode("utf-8") if as_text else base64.b64encode(body).decode("ascii"),
            "isBase64Encoded": not as_text,
            **changes,
        }
    )


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    return dict(ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest")))


def test_the_documented_example_as_it_is_gets_a_404_problem_in_the_2_0_answer_shape(pipeline: Pipeline) -> None:
    # Given AWS's example event (POST /my/path, a text body, cookies, a repeated header), untouched
    response = invoke(documented_event())

    # Then it is routed (404: not our path) and answered in payload format 2.0's shape: single-value headers
    assert response["statusCode"] == 404
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert json.loads(response["body"])["requestId"] == "id"  # the event's requestContext.requestId
    assert pipeline.queue_depth() == 0


def test_the_documented_1_0_example_is_read_as_the_rest_shape(pipeline: Pipeline) -> None:
    response = invoke(documented_event("http-api-payload-1.0.json", path="/v1/payloads"))
    assert response["statusCode"] == 405  # GET on the payloads path
    assert response["multiValueHeaders"]["Allow"] == ["POST"]


def test_a_json_body_passed_as_text_is_accepted_with_the_edge_time_and_request_id(pipeline: Pipeline) -> None:
    # Given the documented event carrying a collection as the HTTP API passes application/json: as text
    body = json.dumps(collection(2, token="tökén")).encode()
    response = invoke(payloads_event(body))

    # Then it is accepted under the event's request id, stamped with requestContext.timeEpoch
    assert response["statusCode"] == 202
    assert json.loads(response["body"]) == {"requestId": "id", "accepted": 2}
    envelopes = [json.loads(m["Body"]) for m in pipeline.receive()]
    assert {e["receivedAt"] for e in envelopes} == {"2020-03-04T19:03:58.390Z"}
    assert {e["token"] for e in envelopes} == {"tökén"}


def test_a_gzip_body_sent_as_a_binary_json_type_reaches_the_ingest_byte_exact(pipeline: Pipeline) -> None:
    # Given a gzip body with the +json type the HTTP API base64-encodes
    document = collection(3, token="ü-token")
    body = gzip.compress(json.dumps(document).encode())
    event = payloads_event(body, BINARY_JSON_CONTENT_TYPE, headers={"content-encoding": "gzip"})
    assert event["isBase64Encoded"] is True

    # Then it is accepted, and every payload is stored as sent
    assert invoke(event)["statusCode"] == 202
    stored = [json.loads(m["Body"])["payload"] for m in pipeline.receive()]
    assert sorted(stored, key=lambda p: p["seq"]) == document["data"]


def test_invalid_utf8_sent_as_a_binary_type_is_a_400_not_a_mangled_payload(pipeline: Pipeline) -> None:
    body = b'{"version":"1","token":"t","data":[{"v":"\xff\xfe"}]}'
    response = invoke(payloads_event(body, BINARY_JSON_CONTENT_TYPE))
    assert (response["statusCode"], json.loads(response["body"])["type"]) == (
        400,
        "urn:ingest-pipeline:problem:invalid-utf8",
    )
    assert pipeline.queue_depth() == 0


def test_gzip_passed_as_text_is_a_415_that_names_the_content_type_to_use(pipeline: Pipeline) -> None:
    # Given what an HTTP API makes of gzip sent as application/json: text, the bytes already altered
    compressed = gzip.compress(json.dumps(collection(1)).encode())
    event = payloads_event(b"x", headers={"content-encoding": "gzip"})
    event["body"] = compressed.decode("utf-8", "replace")

    # Then the client learns how to send it, and nothing is queued
    response = invoke(event)
    problem = json.loads(response["body"])
    assert (response["statusCode"], problem["type"]) == (
        415,
        "urn:ingest-pipeline:problem:gzip-needs-binary-content-type",
    )
    assert BINARY_JSON_CONTENT_TYPE in problem["detail"]
    assert pipeline.queue_depth() == 0


def test_cookies_are_ignored_and_never_stored(pipeline: Pipeline) -> None:
    event = payloads_event(json.dumps(collection(1)).encode(), cookies=["session=COOKIE-CANARY", "b=2"])
    assert invoke(event)["statusCode"] == 202
    assert all("COOKIE-CANARY" not in m["Body"] for m in pipeline.receive())


def test_a_repeated_content_type_header_joined_by_the_http_api_is_a_415(pipeline: Pipeline) -> None:
    # Payload 2.0 joins repeated headers with commas: two Content-Types are no media type we accept
    event = payloads_event(json.dumps(collection(1)).encode())
    event["headers"]["content-type"] = "application/json,text/plain"
    assert invoke(event)["statusCode"] == 415
    assert pipeline.queue_depth() == 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v1/payloads/", 202),  # the $default route brings the trailing slash here: same answers
        ("GET", "/v1/payloads/", 405),
        ("HEAD", "/v1/payloads", 405),
        ("OPTIONS", "/v1/payloads", 405),
        ("POST", "/v1/other", 404),
        ("POST", "/", 404),
    ],
)
def test_every_method_and_path_gets_the_rest_apis_answer(
    pipeline: Pipeline, method: str, path: str, status: int
) -> None:
    event = payloads_event(json.dumps(collection(1)).encode(), rawPath=path)
    event["requestContext"]["http"]["method"] = method
    response = invoke(event)
    assert response["statusCode"] == status
    if status == 405:
        assert response["headers"]["Allow"] == "POST"
        assert (response["body"] == "") == (method == "HEAD")


def test_a_named_stage_prefix_in_raw_path_is_not_part_of_the_route(pipeline: Pipeline) -> None:
    # rawPath carries the stage unless it is $default (Powertools strips it the same way)
    event = payloads_event(
        json.dumps(collection(1)).encode(), rawPath="/prod/v1/payloads", requestContext={"stage": "prod"}
    )
    assert invoke(event)["statusCode"] == 202


def test_an_http_api_request_id_is_kept_and_its_url_safe_spelling_names_the_payloads(pipeline: Pipeline) -> None:
    # Given an HTTP API request id: base64 text; '/' or '+' in an object key would be wrong, '=' is not a safe id
    event = payloads_event(json.dumps(collection(2)).encode(), requestContext={"requestId": "Ju2f+gps/YcEMlw="})
    # When it is accepted
    response = invoke(event)
    # Then the 202 says the gateway's id as it is (the apigw-requestid header's), the payload ids its URL-safe
    # spelling, and every envelope and queue attribute the gateway's id again
    assert json.loads(response["body"])["requestId"] == "Ju2f+gps/YcEMlw="
    messages = pipeline.receive()
    envelopes = [json.loads(m["Body"]) for m in messages]
    assert sorted(e["id"] for e in envelopes) == ["Ju2f-gps_YcEMlw-0", "Ju2f-gps_YcEMlw-1"]
    assert {e["requestId"] for e in envelopes} == {"Ju2f+gps/YcEMlw="}
    assert {m["MessageAttributes"]["requestId"]["StringValue"] for m in messages} == {"Ju2f+gps/YcEMlw="}


def _log_lines(written: io.StringIO, message: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in written.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == message]


def test_an_unkeyed_request_has_one_id_in_its_answers_and_every_log(pipeline: Pipeline, log_lines: io.StringIO) -> None:
    # Given an HTTP API request id as AWS spells it (base64 with its padding), on a good and on a bad request
    gateway_id = "qL07L4U2Rty1vGc="
    good = payloads_event(json.dumps(collection(1)).encode(), requestContext={"requestId": gateway_id})
    bad = payloads_event(b'{"version": ', requestContext={"requestId": "Oh4799XvRViZh6U="})

    # When both reach the ingest and the consumer stores what was accepted
    accepted = json.loads(invoke(good)["body"])
    problem = json.loads(invoke(bad)["body"])
    ingest_lines = _log_lines(log_lines, "request accepted")
    pipeline.consume(pipeline.receive())
    stored = _log_lines(log_lines, "payload stored")

    # Then the 202, the problem+json, the ingest's line and the consumer's line all carry the gateway's id as it is
    assert accepted["requestId"] == gateway_id
    assert problem["requestId"] == "Oh4799XvRViZh6U="
    assert [line["correlation_id"] for line in ingest_lines] == [gateway_id]
    assert "gatewayRequestId" not in ingest_lines[0]
    assert stored and {line["correlation_id"] for line in stored} == {gateway_id}


def test_a_keyed_request_answers_its_derived_id_and_logs_the_gateways_beside_it(
    pipeline: Pipeline, log_lines: io.StringIO
) -> None:
    # Given a request with an Idempotency-Key, sent twice (two gateway ids, one logical request)
    body = json.dumps(collection(1)).encode()
    answers = []
    for gateway_id in ("qL07L4U2Rty1vGc=", "Oh4799XvRViZh6U="):
        event = payloads_event(body, headers={"idempotency-key": "k-29"}, requestContext={"requestId": gateway_id})
        answers.append(json.loads(invoke(event)["body"])["requestId"])

    # Then both 202s carry the one derived id, and each accepted line names it and the gateway's id of that attempt
    assert answers[0] == answers[1] and answers[0] not in ("qL07L4U2Rty1vGc=", "Oh4799XvRViZh6U=")
    lines = _log_lines(log_lines, "request accepted")
    assert [(line["correlation_id"], line["gatewayRequestId"]) for line in lines] == [
        (answers[0], "qL07L4U2Rty1vGc="),
        (answers[0], "Oh4799XvRViZh6U="),
    ]


def test_the_request_id_is_the_correlation_id_in_the_consumers_log(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an HTTP API request, accepted
    caplog.set_level(logging.INFO, logger=consumer_handler.logger.name)
    response = invoke(
        payloads_event(json.dumps(collection(1)).encode(), requestContext={"requestId": "JKJaXmPLvHcESHA="})
    )
    request_id = json.loads(response["body"])["requestId"]

    # When the consumer stores its payload
    messages = pipeline.receive()
    assert messages[0]["MessageAttributes"]["requestId"]["StringValue"] == request_id
    pipeline.consume(messages)

    # Then the consumer's log line for it carries the same correlation id
    formatter = consumer_handler.logger.registered_formatter
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == consumer_handler.logger.name]
    stored = [line for line in lines if line["message"] == "payload stored"]
    assert stored and {line["correlation_id"] for line in stored} == {request_id}


@pytest.mark.parametrize("http_api", [False, True])
def test_a_request_id_the_client_chose_never_makes_two_requests_share_payload_ids(
    pipeline: Pipeline, http_api: bool
) -> None:
    # Given two clients whose requests carry the same X-Amzn-RequestId, which API Gateway then reports as the
    # request id of both ("Clients can override this request ID")
    chosen = "c0ffee00-0000-4000-8000-000000000001"
    ids = []
    for payloads in (2, 3):
        body = json.dumps(collection(payloads)).encode()
        if http_api:
            event = payloads_event(body, requestContext={"requestId": chosen})
            event["headers"]["x-amzn-requestid"] = chosen
            response = invoke(event)
            assert response["statusCode"] == 202
            ids.append(json.loads(response["body"])["requestId"])
        else:
            headers = {"Content-Type": "application/json", "X-Amzn-RequestId": chosen}
            result = pipeline.post(collection(payloads), headers=headers, request_id=chosen)
            assert result.status == 202
            ids.append(result.body["requestId"])
    # When the consumer stores what both enqueued
    messages = pipeline.receive()
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    # Then each request got ids of its own, and all five payloads are stored
    assert len(set(ids)) == 2 and chosen not in ids
    stored = [key for key in pipeline.objects() if any(request_id in key for request_id in ids)]
    assert len(stored) == 5


class InProcessIngest:
    """The real ingest handler behind `make run`'s front, in this process (moto's pipeline fixture)."""

    concurrency = 1

    def invoke(self, event: dict[str, Any]) -> Any:
        return SimpleNamespace(response=ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest")))


def test_make_runs_http_api_front_names_one_id_in_the_header_and_the_body(pipeline: Pipeline) -> None:
    # Given `make run`'s front playing an HTTP API (API_KIND=http) before the real ingest
    front = IngestFront(port=0, api=HttpApi(), ingest=InProcessIngest(), log=AccessLog(io.StringIO()))  # type: ignore[arg-type]
    front.start()
    try:
        connection = http.client.HTTPConnection(front.url.removeprefix("http://"), timeout=30)
        answers = []
        # When it answers a good request and a bad one
        for body in (json.dumps(collection(1)).encode(), b'{"version": '):
            connection.request("POST", PAYLOADS_PATH, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answers.append((response.status, response.getheader("apigw-requestid"), json.loads(response.read())))
        connection.close()
    finally:
        front.stop(timeout_seconds=5)
    # Then each answer's body says the id its apigw-requestid header says (an HTTP API's header), spelled alike
    (accepted, accepted_header, accepted_body), (refused, refused_header, refused_body) = answers
    assert (accepted, refused) == (202, 400)
    assert accepted_header and accepted_body["requestId"] == accepted_header
    assert refused_header and refused_body["requestId"] == refused_header
    # And the stored envelope carries that id too
    assert json.loads(pipeline.receive()[0]["Body"])["requestId"] == accepted_header
