"""Envelope ids, object keys and SendMessageBatch packing (count- and byte-aware)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from pipeline.collection import PayloadCollection
from pipeline.contract import SQS_MAX_BATCH_BYTES, format_received_at, pack_batches, payload_object_key
from pipeline.envelope import (
    EnvelopeError,
    OutgoingMessage,
    build_messages,
    parse_envelope,
)

REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


def message(size: int, index: int = 0) -> OutgoingMessage:
    return OutgoingMessage(f"id-{index}", "x", REQUEST_ID, size)


def pack(messages: Iterable[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    """How the ingest packs its messages into SendMessageBatch calls (pipeline/enqueue.py)."""
    return pack_batches(list(messages), lambda m: m.size)


def test_envelope_ids_are_request_id_plus_index_and_bodies_are_self_describing() -> None:
    collection = PayloadCollection("2.0", "tok", ['{"a":1}', '{"b":"ü"}'])
    messages = build_messages(collection, REQUEST_ID, 1764125289123)
    assert [m.payload_id for m in messages] == [f"{REQUEST_ID}-0", f"{REQUEST_ID}-1"]
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
    assert [m.payload_id for b in batches for m in b] == [f"id-{i}" for i in range(25)]


def test_large_messages_pack_by_bytes_never_over_one_mib() -> None:
    batches = pack(message(300 * 1024, i) for i in range(7))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert all(sum(m.size for m in b) <= SQS_MAX_BATCH_BYTES for b in batches)


def test_a_message_of_exactly_one_mib_goes_alone() -> None:
    batches = pack([message(10), message(SQS_MAX_BATCH_BYTES), message(10)])
    assert [len(b) for b in batches] == [1, 1, 1]


def test_no_messages_no_calls() -> None:
    assert pack([]) == []
