"""OBJECT_MODE=batch logic without AWS: grouping, deterministic keys, encoding, per-record outcomes."""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pipeline.batch_objects import (
    BatchReport,
    ObjectNotStoredError,
    plan_batch_objects,
    store_objects,
)
from pipeline.contract import LATE_MARKER_PREFIX, decode_batch_object, encode_batch_object
from pipeline.envelope import EnvelopeError
from pipeline.storage import StoreOutcome


def lines_of(records: Any) -> dict[str, bytes]:
    """What the consumer hands the codec: each record's NDJSON line by payload id."""
    return {record.envelope.payload_id: record.line for record in records}


def envelope(payload_id: str, received_at: str = "2026-11-26T02:15:00.000Z", **payload: Any) -> str:
    return json.dumps(
        {
            "id": payload_id,
            "requestId": payload_id.rsplit("-", 1)[0],
            "receivedAt": received_at,
            "version": "1",
            "token": "t",
            "payload": payload or {"seq": payload_id},
        },
        separators=(",", ":"),
    )


def messages(*bodies: str) -> list[tuple[str, str]]:
    return [(f"m{index}", body) for index, body in enumerate(bodies)]


def test_a_batch_within_one_hour_is_one_object_under_the_payload_layout() -> None:
    plan = plan_batch_objects(messages(envelope("r-0"), envelope("r-1"), envelope("r-2")), "payloads/")
    assert len(plan.groups) == 1 and plan.rejected == {}
    key = plan.groups[0].key
    assert key.startswith("payloads/dt=2026-11-26/hour=02/batch-") and key.endswith(".ndjson.gz")
    assert plan.groups[0].payload_ids == ["r-0", "r-1", "r-2"]


def test_the_key_depends_on_the_set_of_payload_ids_not_on_delivery_order() -> None:
    # Given the same three payloads delivered in two orders (different message ids too)
    first = plan_batch_objects(messages(envelope("r-0"), envelope("r-1"), envelope("r-2")), "p/")
    second = plan_batch_objects([("x", envelope("r-2")), ("y", envelope("r-0")), ("z", envelope("r-1"))], "p/")
    # Then they map to the same key, and a different set of payloads maps elsewhere
    assert first.groups[0].key == second.groups[0].key
    other = plan_batch_objects(messages(envelope("r-0"), envelope("r-1")), "p/")
    assert other.groups[0].key != first.groups[0].key


def test_records_are_split_by_the_hour_partition_of_their_received_at() -> None:
    plan = plan_batch_objects(
        messages(
            envelope("a-0", "2026-11-26T02:59:59.999Z"),
            envelope("b-0", "2026-11-26T03:00:00.000Z"),
            envelope("a-1", "2026-11-26T02:00:00.000Z"),
        ),
        "",
    )
    assert [(g.key.split("/batch-")[0], g.payload_ids) for g in plan.groups] == [
        ("dt=2026-11-26/hour=02", ["a-0", "a-1"]),
        ("dt=2026-11-26/hour=03", ["b-0"]),
    ]


def test_poison_records_are_rejected_on_their_own() -> None:
    plan = plan_batch_objects(messages(envelope("r-0"), "not json", '{"id": "r-9"}'), "p/")
    assert set(plan.rejected) == {"m1", "m2"}
    assert all(isinstance(error, EnvelopeError) for error in plan.rejected.values())
    assert [g.payload_ids for g in plan.groups] == [["r-0"]]


def test_the_object_is_gzip_ndjson_sorted_by_id_holding_each_payload_once() -> None:
    # Given a batch where SQS delivered r-1 twice (two message ids, one payload id)
    plan = plan_batch_objects(messages(envelope("r-1"), envelope("r-0"), envelope("r-1")), "p/")
    data = encode_batch_object(lines_of(plan.groups[0].records))
    # Then the object holds r-0 and r-1 once each, one compact JSON document per line
    lines = gzip.decompress(data).split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert [json.loads(line)["id"] for line in lines[:-1]] == ["r-0", "r-1"]
    assert decode_batch_object(data) == [json.loads(envelope("r-0")), json.loads(envelope("r-1"))]
    # And the bytes are the same on every encoding (no gzip timestamp)
    assert encode_batch_object(lines_of(reversed(plan.groups[0].records))) == data


def test_a_body_with_raw_newlines_still_becomes_one_line() -> None:
    pretty = json.dumps(json.loads(envelope("r-0")), indent=2)
    plan = plan_batch_objects(messages(pretty), "p/")
    assert decode_batch_object(encode_batch_object(lines_of(plan.groups[0].records))) == [json.loads(pretty)]


class FakeS3:
    """Answers PutObject from a dict; keys listed in ``failing`` raise. The late markers of these closed hours
    (tests/integration/test_late_markers.py) go to ``markers``."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.markers: dict[str, bytes] = {}
        self.failing = failing or set()

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:  # noqa: N803 - boto3 names
        if Key in self.failing:
            raise ConnectionError("injected")
        (self.markers if Key.startswith(LATE_MARKER_PREFIX) else self.objects)[Key] = Body


def test_report_is_all_or_nothing_per_object_and_poison_fails_alone() -> None:
    # Given a batch over two hours plus a poison record, and a PUT that fails for the 03h object
    plan = plan_batch_objects(
        messages(
            envelope("a-0", "2026-11-26T02:10:00.000Z"),
            envelope("b-0", "2026-11-26T03:10:00.000Z"),
            envelope("b-1", "2026-11-26T03:20:00.000Z"),
            "poison",
        ),
        "p/",
    )
    s3 = FakeS3(failing={plan.groups[1].key})
    with ThreadPoolExecutor(2) as pool:
        report = BatchReport(plan, list(store_objects(plan, "bucket", s3, pool)))
    # Then the 02h object is stored and its record succeeds
    assert list(s3.objects) == [plan.groups[0].key]
    assert report.outcome_for("m0") == StoreOutcome.STORED.value
    # And both records of the failed object fail, with the cause chained
    for message_id in ("m1", "m2"):
        with pytest.raises(ObjectNotStoredError, match="2 payloads") as failure:
            report.outcome_for(message_id)
        assert isinstance(failure.value.__cause__, ConnectionError)
    # And the poison record fails with its own reason
    with pytest.raises(EnvelopeError):
        report.outcome_for("m3")


def test_a_packed_record_spanning_two_hours_fails_if_either_object_fails() -> None:
    # Given a hand-made packed record whose lines fall in two hours, and S3 refusing the 03h object
    packed = "\n".join([envelope("a-0", "2026-11-26T02:59:59.999Z"), envelope("a-1", "2026-11-26T03:00:00.000Z")])
    plan = plan_batch_objects(messages(packed, envelope("b-0", "2026-11-26T02:10:00.000Z")), "p/")
    assert [group.payload_ids for group in plan.groups] == [["a-0", "b-0"], ["a-1"]]
    s3 = FakeS3(failing={plan.groups[1].key})
    with ThreadPoolExecutor(2) as pool:
        report = BatchReport(plan, list(store_objects(plan, "bucket", s3, pool)))
    # Then the packed record fails (one of its objects was not stored); the other record succeeds
    with pytest.raises(ObjectNotStoredError, match="1 payloads"):
        report.outcome_for("m0")
    assert report.outcome_for("m1") == StoreOutcome.STORED.value
