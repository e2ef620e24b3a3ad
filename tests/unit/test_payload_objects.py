"""OBJECT_MODE=payload as the batch flow with one record per object, without AWS: keys, the
envelope stored verbatim, twin deliveries, and each record failing with its own object's error."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline.batch_objects import BatchReport, ObjectNotStoredError, plan_payload_objects, store_objects
from pipeline.contract import LATE_MARKER_PREFIX
from pipeline.envelope import EnvelopeError
from pipeline.storage import StoreOutcome


def envelope(payload_id: str, received_at: str = "2026-11-26T02:15:00.000Z") -> str:
    return json.dumps(
        {"id": payload_id, "requestId": "r", "receivedAt": received_at, "version": "1", "token": "t", "payload": {}},
        separators=(",", ":"),
    )


class FakeS3:
    """Create-only PutObject from a dict (a second write of a key answers 412); ``failing`` keys answer 500.
    The late markers of these closed hours (tests/integration/test_late_markers.py) go to ``markers``."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.markers: dict[str, tuple[bytes, str]] = {}
        self.failing = failing or set()

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str, **_: Any) -> None:  # noqa: N803 - boto3 names
        stored = self.markers if Key.startswith(LATE_MARKER_PREFIX) else self.objects
        if Key in self.failing or Key in stored:
            code, status = ("InternalError", 500) if Key in self.failing else ("PreconditionFailed", 412)
            raise ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
        stored[Key] = (Body, ContentType)


def store(messages: list[tuple[str, str]], s3: FakeS3) -> BatchReport:
    plan = plan_payload_objects(messages, "p/")
    with ThreadPoolExecutor(4) as pool:
        return BatchReport(plan, list(store_objects(plan, "bucket", s3, pool)))


def test_each_record_is_one_object_holding_its_envelope_verbatim_at_its_payload_key() -> None:
    # Given two envelopes, one sent with whitespace the consumer must not rewrite
    spaced = json.dumps(json.loads(envelope("r-1")), indent=1)
    s3 = FakeS3()
    # When they are stored
    report = store([("m0", envelope("r-0")), ("m1", spaced)], s3)
    # Then each is its own JSON object at {prefix}dt=/hour=/{id}.json, byte for byte what SQS carried
    assert s3.objects == {
        "p/dt=2026-11-26/hour=02/r-0.json": (envelope("r-0").encode(), "application/json"),
        "p/dt=2026-11-26/hour=02/r-1.json": (spaced.encode(), "application/json"),
    }
    assert report.outcome_for("m0") == report.outcome_for("m1") == StoreOutcome.STORED.value


def test_two_deliveries_of_one_payload_are_stored_once_and_both_succeed() -> None:
    s3 = FakeS3()
    report = store([("m0", envelope("r-0")), ("twin", envelope("r-0"))], s3)
    assert list(s3.objects) == ["p/dt=2026-11-26/hour=02/r-0.json"]
    assert sorted([report.outcome_for("m0"), report.outcome_for("twin")]) == ["already-stored", "stored"]


def test_a_failed_upload_fails_its_own_record_with_its_own_error_and_poison_fails_alone() -> None:
    # Given S3 refuses r-1's object, and one record is not an envelope
    s3 = FakeS3(failing={"p/dt=2026-11-26/hour=02/r-1.json"})
    report = store([("m0", envelope("r-0")), ("m1", envelope("r-1")), ("m2", "not json")], s3)
    # Then r-0 is stored, r-1's record fails with S3's error itself, the poison record with its own
    assert report.outcome_for("m0") == StoreOutcome.STORED.value
    with pytest.raises(ClientError, match="InternalError"):
        report.outcome_for("m1")
    with pytest.raises(EnvelopeError):
        report.outcome_for("m2")
    assert list(s3.objects) == ["p/dt=2026-11-26/hour=02/r-0.json"]


def test_a_packed_record_is_one_object_per_line_and_fails_if_any_line_is_not_stored() -> None:
    # Given a packed record of three envelopes (one per line), a one-envelope record, and S3 refusing r-1
    packed = "\n".join(envelope(f"r-{i}") for i in range(3))
    s3 = FakeS3(failing={"p/dt=2026-11-26/hour=02/r-1.json"})
    report = store([("packed", packed), ("single", envelope("s-0"))], s3)
    # Then each line is its own object, verbatim, and the packed record fails, naming the object
    assert s3.objects == {
        "p/dt=2026-11-26/hour=02/r-0.json": (envelope("r-0").encode(), "application/json"),
        "p/dt=2026-11-26/hour=02/r-2.json": (envelope("r-2").encode(), "application/json"),
        "p/dt=2026-11-26/hour=02/s-0.json": (envelope("s-0").encode(), "application/json"),
    }
    with pytest.raises(ObjectNotStoredError, match="r-1.json") as failure:
        report.outcome_for("packed")
    assert isinstance(failure.value.__cause__, ClientError)
    assert report.outcome_for("single") == StoreOutcome.STORED.value
    # When it comes back with S3 healed, Then the missing line is stored and the others are skipped
    s3.failing.clear()
    again = store([("packed", packed)], s3)
    assert again.outcome_for("packed") == StoreOutcome.STORED.value
    assert len(s3.objects) == 4
    # And a third delivery finds every line stored
    assert store([("packed", packed)], s3).outcome_for("packed") == StoreOutcome.ALREADY_STORED.value
