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
    # The case: MAX_PAYLOAD_BYTES = 1 MiB - 4 KiB, a 1,024-emoji token and a full payload built
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
