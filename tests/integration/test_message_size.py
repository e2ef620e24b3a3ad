"""No valid request ever builds an SQS message over 1 MiB, whatever its characters cost once escaped.

version and token are JSON-escaped into every envelope (an emoji takes 12 bytes there, a control
character or U+2028 takes 6, a quote 2), so these tests fill every limit with such characters and
look at what reaches the queue (moto refuses a message over 1 MiB, as SQS does).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import MAX_BODY_BYTES_CEILING, PipelineConfig
from pipeline import settings
from pipeline.contract import MAX_PAYLOAD_BYTES_CEILING, MAX_TOKEN_CHARS, MAX_VERSION_CHARS, SQS_MAX_MESSAGE_BYTES
from tests.conftest import JSON_HEADERS, Pipeline

LARGEST_PAYLOAD = MAX_PAYLOAD_BYTES_CEILING  # the largest MAX_PAYLOAD_BYTES the config accepts
# character -> bytes it takes inside a JSON string, as the envelope writes version/token (ASCII escapes)
ESCAPING_HEAVY = {"\U0001f600": 12, "\x01": 6, '"': 2, "\u2028": 6}


@pytest.fixture
def config() -> PipelineConfig:
    return PipelineConfig(MAX_PAYLOAD_BYTES=LARGEST_PAYLOAD, MAX_BODY_BYTES=MAX_BODY_BYTES_CEILING)


def payload_filling(limit: int, char: str) -> dict[str, Any]:
    """A payload whose compact JSON (as stored: UTF-8, control characters escaped) is exactly ``limit`` bytes."""
    filler = {"v": ""}
    unit = len(json.dumps(char, ensure_ascii=False).encode()) - 2
    free = limit - len(json.dumps(filler, separators=(",", ":")).encode())
    filler["v"] = char * (free // unit) + "x" * (free % unit)
    assert len(json.dumps(filler, ensure_ascii=False, separators=(",", ":")).encode()) == limit
    return filler


def body_of(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("char", list(ESCAPING_HEAVY), ids=["emoji", "control", "quote", "u2028"])
def test_a_request_at_every_limit_with_escaping_heavy_characters_is_one_message_within_1_mib(
    pipeline: Pipeline, char: str
) -> None:
    # Given version and token at their longest, made only of a character that escaping inflates, and
    # a payload of exactly MAX_PAYLOAD_BYTES (the largest the config allows) of the same character
    # (U+2028 is whitespace, and an all-whitespace field is refused as empty: one "v" keeps it valid)
    version, token = (
        (char * (n - 1) + "v") if char.isspace() else char * n for n in (MAX_VERSION_CHARS, MAX_TOKEN_CHARS)
    )
    payload = payload_filling(LARGEST_PAYLOAD, char)

    # When it is posted
    response = pipeline.post(body_of({"version": version, "token": token, "data": [payload]}))

    # Then it is accepted, and the queue holds its one message, within 1 MiB, carrying everything unchanged
    assert (response.status, response.body["accepted"]) == (202, 1), response.body
    [message] = pipeline.receive()
    size = len(message["Body"].encode()) + len("requestId") + len("String") + len(response.body["requestId"])
    assert size <= SQS_MAX_MESSAGE_BYTES
    envelope = json.loads(message["Body"])
    assert (envelope["version"], envelope["token"], envelope["payload"]) == (version, token, payload)


def test_the_reproduced_case_is_refused_by_its_knob_not_by_sqs_forever() -> None:
    # The issue's case: MAX_PAYLOAD_BYTES = 1 MiB - 4 KiB, a 1,024-emoji token and a full payload built
    # a 1,057,756-byte message. The config no longer accepts that limit; it names the knob.
    with pytest.raises(ValueError, match="MAX_PAYLOAD_BYTES"):
        PipelineConfig(MAX_PAYLOAD_BYTES=1024 * 1024 - 4 * 1024)


def test_a_payload_whose_envelope_would_not_fit_is_a_413_naming_it_and_nothing_is_enqueued(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a handler whose payload limit leaves no room for the envelope (set by hand, past what the
    # config allows), and a request whose first payload fits a message but whose second does not
    monkeypatch.setenv("MAX_PAYLOAD_BYTES", str(SQS_MAX_MESSAGE_BYTES))
    settings.ingest_settings.cache_clear()
    token = "\U0001f600" * MAX_TOKEN_CHARS
    big = payload_filling(SQS_MAX_MESSAGE_BYTES - 4096, "a")
    document = {"version": "1", "token": token, "data": [{"small": 1}, big]}

    # When it is posted
    response = pipeline.post(body_of(document))

    # Then it is a 413 naming the second payload, never a 503 that no retry could cure, and the queue is empty
    assert (response.status, response.body["type"], response.body["pointer"]) == (
        413,
        "urn:ingest-pipeline:problem:message-too-large",
        "/data/1",
    )
    assert "data[1]" in response.body["detail"] and str(SQS_MAX_MESSAGE_BYTES) in response.body["detail"]
    assert pipeline.queue_depth() == 0


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        ({"version": "1", "token": "ok\ud800", "data": [{"a": 1}]}, "/token"),
        ({"version": "\udfff", "token": "t", "data": [{"a": 1}]}, "/version"),
        ({"version": "1", "token": "t", "data": [{"a": 1}, {"b": "\ud83d"}]}, "/data/1"),
    ],
    ids=["token", "version", "payload"],
)
def test_a_lone_surrogate_stays_a_400_and_nothing_is_enqueued(
    pipeline: Pipeline, document: dict[str, Any], pointer: str
) -> None:
    # Given a lone surrogate, sent as a \\uXXXX escape (the only way valid UTF-8 JSON can carry one)
    raw = json.dumps(document).encode()

    # When it is posted
    response = pipeline.post(raw)

    # Then it is a 400 naming the field, and nothing from the request is queued
    assert (response.status, response.body["type"], response.body["pointer"]) == (
        400,
        "urn:ingest-pipeline:problem:invalid-unicode",
        pointer,
    )
    assert pipeline.queue_depth() == 0


def test_a_payload_is_measured_as_enqueued_so_u_ffff_escapes_count_6_bytes(pipeline: Pipeline) -> None:
    # Given a payload of U+FFFF characters: 3 bytes each in UTF-8, but SQS refuses the character, so the
    # pipeline writes each as the 6-byte escape \\uffff; as written, this payload is over the limit
    count = LARGEST_PAYLOAD // 6 + 1
    document = {"version": "1", "token": "t", "data": [{"v": "\uffff" * count}]}
    assert len(body_of(document)) < LARGEST_PAYLOAD  # as sent, it is well under the limit

    # When it is posted
    response = pipeline.post(body_of(document), headers=JSON_HEADERS)

    # Then it is refused as too large (it would not fit its message), and nothing is queued
    assert (response.status, response.body["pointer"]) == (413, "/data/0"), response.body
    assert response.body["type"] == "urn:ingest-pipeline:problem:payload-too-large"
    assert pipeline.queue_depth() == 0


# --- the queues' MaximumMessageSize (issue 26.6) ------------------------------------------------------------
# What a queue whose template leaves MaximumMessageSize unset may get: some providers still document the
# attribute's default as 262,144 bytes (256 KiB), and moto's default (1 MiB) would hide the gap. So a queue is
# created here with exactly the attributes its template sets, and this value where the template sets none.
UNSET_MAXIMUM_MESSAGE_SIZE = 262_144
# The template's queue properties that are SQS queue attributes of the same name and meaning.
_PLAIN_ATTRIBUTES = ("MaximumMessageSize", "MessageRetentionPeriod", "VisibilityTimeout")


def queue_templates(config: PipelineConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(queue, DLQ) properties as infra/queue_construct.py synthesizes them for ``config``."""
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from infra.queue_construct import PayloadQueue

    stack = Stack(App(), "QueueOnly")
    PayloadQueue(stack, "Buffer", config=config)
    queues = Template.from_stack(stack).find_resources("AWS::SQS::Queue")
    [(dlq_id, dlq)] = [(name, q) for name, q in queues.items() if "RedrivePolicy" not in q["Properties"]]
    [queue] = [q for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    return queue["Properties"], dlq["Properties"]


def create_queue_as_templated(sqs: Any, name: str, properties: dict[str, Any], dlq_arn: str | None = None) -> str:
    attributes = {key: str(properties[key]) for key in _PLAIN_ATTRIBUTES if key in properties}
    attributes.setdefault("MaximumMessageSize", str(UNSET_MAXIMUM_MESSAGE_SIZE))
    if dlq_arn is not None:
        redrive = {**properties["RedrivePolicy"], "deadLetterTargetArn": dlq_arn}
        attributes["RedrivePolicy"] = json.dumps(redrive)
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


PROFILE_CONFIGS = {name: PipelineConfig.resolve({}, environ={"PROFILE": name}) for name in ("dev", "scale")}


@pytest.mark.parametrize("profile", list(PROFILE_CONFIGS))
def test_both_queues_set_maximum_message_size_to_what_the_code_packs(profile: str) -> None:
    # Given the profile's queue and DLQ as synthesized
    queue, dlq = queue_templates(PROFILE_CONFIGS[profile])

    # Then each sets MaximumMessageSize, to the 1 MiB the ingest packs messages up to
    assert queue.get("MaximumMessageSize") == SQS_MAX_MESSAGE_BYTES == 1_048_576
    assert dlq.get("MaximumMessageSize") == SQS_MAX_MESSAGE_BYTES


@pytest.mark.parametrize("profile", list(PROFILE_CONFIGS))
def test_the_profiles_largest_payload_travels_end_to_end_through_queues_created_as_templated(
    aws: None, monkeypatch: pytest.MonkeyPatch, profile: str
) -> None:
    # Given moto queues created with exactly the attributes the profile's template sets, the profile's knobs in
    # the handlers' environment (with DEVICE_AUTH=on, its keyring and a key), and a request at every limit: a
    # payload of MAX_PAYLOAD_BYTES and version and token at their longest, all escaped (emoji: 12 bytes each)
    import boto3

    from local_pipeline.resources import LocalResources, lambda_environment
    from pipeline.contract import decode_batch_object
    from pipeline.device_auth import new_keyring_document
    from tests.conftest import _clear_caches
    from tools.ops.devices import KeyringStore, issue

    config = PROFILE_CONFIGS[profile]
    sqs, s3, secrets_client = boto3.client("sqs"), boto3.client("s3"), boto3.client("secretsmanager")
    queue_properties, dlq_properties = queue_templates(config)
    dlq_url = create_queue_as_templated(sqs, f"size-{profile}-dlq", dlq_properties)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = create_queue_as_templated(sqs, f"size-{profile}", queue_properties, dlq_arn)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=f"size-{profile}-payloads")
    secret = ""
    headers = dict(JSON_HEADERS)
    if config.DEVICE_AUTH == "on":
        secret = f"size-{profile}-keys"
        secrets_client.create_secret(Name=secret, SecretString=json.dumps(new_keyring_document("k" * 64)))
        headers["Authorization"] = f"Bearer {issue(KeyringStore(secrets_client, secret), 'device-1')}"
    resources = LocalResources(queue_url, queue_arn, dlq_url, dlq_arn, f"size-{profile}-payloads", secret)
    for name, value in lambda_environment(config, resources).items():
        monkeypatch.setenv(name, value)
    _clear_caches()
    pipeline = Pipeline(sqs, s3, resources, config)
    payload = payload_filling(config.MAX_PAYLOAD_BYTES, "a")
    emoji = "\U0001f600"
    document = {"version": emoji * MAX_VERSION_CHARS, "token": emoji * MAX_TOKEN_CHARS, "data": [payload]}

    # When it is posted, the consumer stores what the queue holds, and the message is moved to the DLQ as SQS
    # moves a message that failed (same body, same attributes)
    response = pipeline.post(body_of(document), headers=headers)
    [message] = pipeline.receive()
    pipeline.consume([message])
    sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=message["Body"],
        MessageAttributes={
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue")}
            for name, value in message["MessageAttributes"].items()
        },
    )

    # Then it is accepted, the message is larger than the 256 KiB default (so the attribute is what lets it
    # in), the stored envelope carries the payload unchanged, and the DLQ holds the same message
    assert (response.status, response.body["accepted"]) == (202, 1), response.body
    assert len(message["Body"].encode()) > UNSET_MAXIMUM_MESSAGE_SIZE
    [item] = s3.list_objects_v2(Bucket=resources.bucket)["Contents"]
    stored = s3.get_object(Bucket=resources.bucket, Key=item["Key"])["Body"].read()
    envelopes = decode_batch_object(stored) if item["Key"].endswith(".ndjson.gz") else [json.loads(stored)]
    assert [envelope["payload"] for envelope in envelopes] == [payload]
    [moved] = pipeline.receive(queue_url=dlq_url)
    assert moved["Body"] == message["Body"]
