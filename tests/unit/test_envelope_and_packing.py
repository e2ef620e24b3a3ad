"""Envelope ids, object keys, packing envelopes into messages (MESSAGE_TARGET_BYTES) and reading them
back, and SendMessageBatch packing (count- and byte-aware)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.collection import PayloadCollection
from pipeline.contract import (
    SQS_MAX_BATCH_BYTES,
    SQS_MAX_MESSAGE_BYTES,
    format_received_at,
    pack_batches,
    payload_object_key,
)
from pipeline.envelope import (
    TYPICAL_REQUEST_ID,
    EnvelopeError,
    MessageSize,
    OutgoingMessage,
    build_messages,
    parse_envelope,
    parse_envelopes,
    request_message_sizes,
)
from pipeline.problems import Problem

REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


def message(size: int, index: int = 0) -> OutgoingMessage:
    return OutgoingMessage(f"id-{index}", REQUEST_ID, size)


def pack(messages: Iterable[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    """How the ingest packs its messages into SendMessageBatch calls (pipeline/enqueue.py)."""
    return pack_batches(list(messages), lambda m: m.size)


def test_envelope_ids_are_request_id_plus_index_and_bodies_are_self_describing() -> None:
    collection = PayloadCollection("2.0", "tok", ['{"a":1}', '{"b":"ü"}'])
    messages = build_messages(collection, REQUEST_ID, 1764125289123)
    assert [json.loads(m.body)["id"] for m in messages] == [f"{REQUEST_ID}-0", f"{REQUEST_ID}-1"]
    assert [m.payloads for m in messages] == [1, 1]
    body = json.loads(messages[1].body)
    assert body == {
        "id": f"{REQUEST_ID}-1",
        "requestId": REQUEST_ID,
        "receivedAt": "2025-11-26T02:48:09.123Z",
        "version": "2.0",
        "token": "tok",
        "payload": {"b": "ü"},
    }
    # the size SQS counts: UTF-8 body bytes plus the requestId attribute (name + type + value)
    assert messages[1].size == len(messages[1].body.encode()) + len("requestId") + len("String") + len(REQUEST_ID)


def test_building_twice_gives_identical_messages() -> None:
    collection = PayloadCollection("1", "t", ['{"a":1}'])
    assert build_messages(collection, REQUEST_ID, 5) == build_messages(collection, REQUEST_ID, 5)


@pytest.mark.parametrize(
    ("epoch_ms", "key"),
    [
        (1764201599999, "p/dt=2025-11-26/hour=23/abc-0.json"),  # last ms of the day
        (1764201600000, "p/dt=2025-11-27/hour=00/abc-0.json"),  # first ms of the next
    ],
)
def test_object_key_partition_comes_from_received_at_in_utc(epoch_ms: int, key: str) -> None:
    envelope = parse_envelope(json.dumps({"id": "abc-0", "receivedAt": format_received_at(epoch_ms), "payload": {}}))
    assert payload_object_key("p/", envelope.payload_id, envelope.received_at) == key


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"id": "../../etc/passwd", "receivedAt": "2026-01-01T00:00:00.000Z", "payload": {}}),
        json.dumps({"id": "a/b", "receivedAt": "2026-01-01T00:00:00.000Z", "payload": {}}),
        json.dumps({"receivedAt": "2026-01-01T00:00:00.000Z", "payload": {}}),
        json.dumps({"id": "ok-1", "receivedAt": "yesterday", "payload": {}}),
        json.dumps({"id": "ok-1", "receivedAt": "2026-01-01T00:00:00.000Z"}),
    ],
)
def test_messages_that_are_not_our_envelope_are_refused(body: str) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(body)


def test_received_at_round_trips_with_milliseconds() -> None:
    assert parse_envelope(
        json.dumps({"id": "x", "receivedAt": "2026-11-26T02:48:09.007Z", "payload": 1})
    ).received_at == datetime(2026, 11, 26, 2, 48, 9, 7000, tzinfo=UTC)


def test_small_messages_pack_ten_per_call_in_order() -> None:
    batches = pack(message(1024, i) for i in range(25))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [m.body for b in batches for m in b] == [f"id-{i}" for i in range(25)]


def test_large_messages_pack_by_bytes_never_over_one_mib() -> None:
    batches = pack(message(300 * 1024, i) for i in range(7))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert all(sum(m.size for m in b) <= SQS_MAX_BATCH_BYTES for b in batches)


def test_a_message_of_exactly_one_mib_goes_alone() -> None:
    batches = pack([message(10), message(SQS_MAX_BATCH_BYTES), message(10)])
    assert [len(b) for b in batches] == [1, 1, 1]


def test_no_messages_no_calls() -> None:
    assert pack([]) == []


# --- packing a request's envelopes into messages (MESSAGE_TARGET_BYTES) ------------------------------

ATTRIBUTE_BYTES = len("requestId") + len("String") + len(REQUEST_ID)


def kib_collection(n: int, payload_bytes: int = 1024) -> PayloadCollection:
    """n payloads of exactly ``payload_bytes`` bytes of compact JSON each."""
    payloads = [json.dumps({"seq": i, "pad": ""}, separators=(",", ":")) for i in range(n)]
    return PayloadCollection(
        "1.4.2", "device-token-123", [p[:-2] + "x" * (payload_bytes - len(p)) + '"}' for p in payloads]
    )


def sqs_size(message: OutgoingMessage) -> int:
    """What SQS counts: body UTF-8 bytes plus the requestId attribute's name, type and value."""
    return len(message.body.encode("utf-8")) + ATTRIBUTE_BYTES


def test_no_target_keeps_one_envelope_per_message() -> None:
    collection = kib_collection(10)
    assert build_messages(collection, REQUEST_ID, 5, 0) == build_messages(collection, REQUEST_ID, 5)
    assert [m.payloads for m in build_messages(collection, REQUEST_ID, 5, 0)] == [1] * 10


def test_ten_1_kib_payloads_at_64_kib_are_one_message_of_their_envelopes_joined_by_newlines() -> None:
    # Given the scale profile's request: 10 payloads of 1 KiB
    collection = kib_collection(10)
    one_each = build_messages(collection, REQUEST_ID, 1764125289123)
    # When they are packed at 64 KiB
    [packed] = build_messages(collection, REQUEST_ID, 1764125289123, 65536)
    # Then the one message's body is today's ten bodies, in payload order, joined by "\n" (no trailing newline)
    assert packed.body == "\n".join(m.body for m in one_each)
    assert packed.body.split("\n") == [m.body for m in one_each]
    assert (packed.payloads, packed.request_id) == (10, REQUEST_ID)
    # And its size is what SQS counts: one attribute however many lines
    assert packed.size == sqs_size(packed) == sum(m.size - ATTRIBUTE_BYTES for m in one_each) + 9 + ATTRIBUTE_BYTES


def test_packing_is_greedy_and_a_target_of_exactly_three_envelopes_holds_three() -> None:
    collection = kib_collection(7)
    one_each = build_messages(collection, REQUEST_ID, 5)
    three = len("\n".join(m.body for m in one_each[:3]).encode()) + ATTRIBUTE_BYTES
    assert [m.payloads for m in build_messages(collection, REQUEST_ID, 5, three)] == [3, 3, 1]
    assert [m.payloads for m in build_messages(collection, REQUEST_ID, 5, three - 1)] == [2, 2, 2, 1]


def test_an_envelope_larger_than_the_target_travels_alone_and_order_is_kept() -> None:
    # Given small, big, small, small payloads and a target between their envelope sizes
    collection = PayloadCollection("1", "t", ['{"a":1}', '{"big":"' + "x" * 5000 + '"}', '{"b":2}', '{"c":3}'])
    # When packed at 2 KiB
    messages = build_messages(collection, REQUEST_ID, 5, 2048)
    # Then the big envelope is a message of its own (today's layout), and the payload order is kept
    assert [m.payloads for m in messages] == [1, 1, 2]
    assert messages[1].size > 2048 and "\n" not in messages[1].body
    ids = [json.loads(line)["id"] for m in messages for line in m.body.split("\n")]
    assert ids == [f"{REQUEST_ID}-{i}" for i in range(4)]


def test_a_payload_too_large_for_any_message_is_still_the_413_naming_it_when_packing() -> None:
    collection = PayloadCollection("1", "t", ['{"a":1}', '{"big":"' + "x" * (SQS_MAX_MESSAGE_BYTES) + '"}'])
    for target in (0, 65536, SQS_MAX_MESSAGE_BYTES):
        with pytest.raises(Problem) as refused:
            build_messages(collection, REQUEST_ID, 5, target)
        assert (refused.value.status, refused.value.slug, refused.value.pointer) == (
            413,
            "message-too-large",
            "/data/1",
        )


def test_a_target_above_what_sqs_accepts_still_builds_messages_sqs_accepts() -> None:
    # (the config refuses such a target; settings parsed by hand could carry one)
    messages = build_messages(kib_collection(2000, 1000), REQUEST_ID, 5, 4 * SQS_MAX_MESSAGE_BYTES)
    assert all(m.size <= SQS_MAX_MESSAGE_BYTES for m in messages) and sum(m.payloads for m in messages) == 2000


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=2, max_value=3000), min_size=1, max_size=40),
    target=st.integers(min_value=1024, max_value=20_000),
)
def test_packing_keeps_every_envelope_in_order_and_fits_the_target_greedily(sizes: list[int], target: int) -> None:
    collection = PayloadCollection("v", "t", ["{" + " " * (size - 2) + "}" for size in sizes])
    one_each = build_messages(collection, REQUEST_ID, 5)
    packed = build_messages(collection, REQUEST_ID, 5, target)
    # every envelope, byte-identical and in order
    assert [line for m in packed for line in m.body.split("\n")] == [m.body for m in one_each]
    assert sum(m.payloads for m in packed) == len(sizes)
    for message, following in zip(packed, [*packed[1:], None], strict=True):
        assert message.size == sqs_size(message)
        assert message.payloads == message.body.count("\n") + 1
        assert message.size <= target or message.payloads == 1  # only a lone envelope exceeds the target
        if following is not None:  # greedy: the next envelope would not have fit
            first_line = following.body.split("\n")[0]
            assert message.size + 1 + len(first_line.encode()) > target


def test_the_models_sizes_are_the_ingests_own_messages() -> None:
    # Given the capacity model's question: 10 x 1 KiB at 64 KiB, and without packing
    packed = request_message_sizes([1024] * 10, 65536)
    single = request_message_sizes([1024] * 10, 0)
    # Then it answers with what build_messages builds for such a request
    expected = build_messages(kib_collection(10), TYPICAL_REQUEST_ID, 0, 65536)
    assert packed == [MessageSize(expected[0].size, 10)]
    assert len(single) == 10 and all(m.payloads == 1 for m in single)
    assert sum(m.size for m in single) == packed[0].size + 9 * (ATTRIBUTE_BYTES - 1)
    with pytest.raises(ValueError):
        request_message_sizes([1], 0)


# --- reading them back (the consumer: parse_envelopes) -----------------------------------------------


def test_a_packed_body_reads_back_as_its_envelopes_each_byte_identical() -> None:
    collection = PayloadCollection("1", "t", ['{"ls":"a\u2028b","nel":"c\u0085d"}', '{"text":"x\\ny"}', "{}"])
    one_each = build_messages(collection, REQUEST_ID, 5)
    [packed] = build_messages(collection, REQUEST_ID, 5, 65536)
    envelopes = parse_envelopes(packed.body)
    # U+2028 and U+0085 inside a payload split nothing: three envelopes, each today's body
    assert [text for _, text in envelopes] == [m.body for m in one_each]
    assert [envelope.payload_id for envelope, _ in envelopes] == [f"{REQUEST_ID}-{i}" for i in range(3)]


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"id": "r-0", "receivedAt": "2026-01-01T00:00:00.000Z", "payload": {}}),
        json.dumps({"id": "r-0", "receivedAt": "2026-01-01T00:00:00.000Z", "payload": {"a": [1, 2]}}, indent=2),
        json.dumps({"id": "r-0", "receivedAt": "2026-01-01T00:00:00.000Z", "payload": {}}) + "\n",
        "\n  " + json.dumps({"id": "r-0", "receivedAt": "2026-01-01T00:00:00.000Z", "payload": {}}) + "\r\n",
    ],
    ids=["compact", "pretty-printed", "trailing-newline", "surrounding-whitespace"],
)
def test_a_body_that_is_one_json_object_is_one_envelope_kept_verbatim(body: str) -> None:
    [(envelope, text)] = parse_envelopes(body)
    assert (envelope.payload_id, text) == ("r-0", body)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "\n\n",
        '{"id":"r-0","receivedAt":"2026-01-01T00:00:00.000Z","payload":{}}\nnot json',
        '{"id":"r-0","receivedAt":"2026-01-01T00:00:00.000Z","payload":{}}\n{"id":"r-1"}',
        '{"id":"r-0","receivedAt":"2026-01-01T00:00:00.000Z","payload":{}}\n[]',
        '{"id":"../x","receivedAt":"2026-01-01T00:00:00.000Z","payload":{}}\n{"id":"r-1"}',
    ],
)
def test_a_body_with_any_line_that_is_not_an_envelope_is_refused_whole(body: str) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelopes(body)
