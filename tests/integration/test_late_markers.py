"""Late markers (issue 26, item 8): an object the consumer stores into an hour that has already closed
also gets a zero-byte marker late/dt=YYYY-MM-DD/hour=HH/<32 hex>, after the object, in both object modes,
so that hour's compaction runs again (infra/compaction_construct.py); an object of the current hour gets
none. The consumer against moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.config import ConfigError, PipelineConfig
from pipeline import aws_clients
from pipeline.contract import (
    LATE_MARKER_PREFIX,
    format_received_at,
    late_marker_key,
    needs_late_marker,
    parse_object_key,
)
from tests.conftest import Pipeline
from tests.faults import fail_put_object


def send_envelope(pipeline: Pipeline, payload_id: str, received_at: datetime) -> None:
    """An envelope exactly as the ingest writes it, received at ``received_at``."""
    body = {
        "id": payload_id,
        "requestId": payload_id.rsplit("-", 1)[0],
        "receivedAt": format_received_at(int(received_at.timestamp() * 1000)),
        "version": "1",
        "token": "t",
        "payload": {"n": 1},
    }
    pipeline.sqs.send_message(QueueUrl=pipeline.resources.queue_url, MessageBody=json.dumps(body))


def keys(pipeline: Pipeline, prefix: str) -> list[str]:
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def consume_all(pipeline: Pipeline) -> dict[str, Any]:
    return pipeline.consume(pipeline.receive())


NOW = datetime.now(UTC)
CLOSED = NOW - timedelta(hours=3)


@pytest.fixture(params=["payload", "batch"])
def config(request: pytest.FixtureRequest) -> PipelineConfig:
    return PipelineConfig(OBJECT_MODE=request.param)


def test_an_object_stored_into_a_closed_hour_writes_its_marker(pipeline: Pipeline) -> None:
    # Given one envelope received three hours ago (a redrive, a retry partitioned by its first attempt)
    # and one received now
    send_envelope(pipeline, "old-0", CLOSED)
    send_envelope(pipeline, "new-0", NOW)
    # When the consumer stores them
    assert consume_all(pipeline) == {"batchItemFailures": []}
    # Then the closed hour's object has its marker, zero bytes, named after the object; the current hour none
    [old_object] = [k for k in keys(pipeline, "payloads/") if f"/hour={CLOSED:%H}/" in k]
    parsed = parse_object_key(old_object)
    assert parsed is not None
    marker = late_marker_key(parsed.partition, old_object)
    assert keys(pipeline, LATE_MARKER_PREFIX) == [marker]
    assert marker.startswith(f"{LATE_MARKER_PREFIX}dt={CLOSED:%Y-%m-%d}/hour={CLOSED:%H}/")
    assert pipeline.s3.get_object(Bucket=pipeline.resources.bucket, Key=marker)["ContentLength"] == 0


def test_a_redelivery_writes_the_same_marker_once(pipeline: Pipeline) -> None:
    # Given a versioned bucket and an envelope of a closed hour delivered twice
    pipeline.s3.put_bucket_versioning(Bucket=pipeline.resources.bucket, VersioningConfiguration={"Status": "Enabled"})
    send_envelope(pipeline, "old-0", CLOSED)
    messages = pipeline.receive()
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    assert pipeline.consume(messages) == {"batchItemFailures": []}
    # Then there is one marker with one version
    versions = pipeline.s3.list_object_versions(Bucket=pipeline.resources.bucket, Prefix=LATE_MARKER_PREFIX)
    assert len(versions.get("Versions", [])) == 1


def test_a_marker_that_cannot_be_written_fails_the_record_and_its_redelivery_writes_it(pipeline: Pipeline) -> None:
    # Given S3 refuses every marker for now, and a record of a closed hour beside one of the current hour
    s3 = aws_clients.s3_client(pipeline.config.UPLOAD_CONCURRENCY)
    send_envelope(pipeline, "old-0", CLOSED)
    send_envelope(pipeline, "new-0", NOW)
    messages = pipeline.receive()
    old = [m for m in messages if json.loads(m["Body"])["id"] == "old-0"]
    refusing = [True]
    fail_put_object(s3, lambda key: refusing[0] and key.startswith(LATE_MARKER_PREFIX))
    # When the records are consumed
    response = pipeline.consume(messages)
    # Then the closed hour's record is reported failed though its object is stored: SQS brings it back for
    # the marker
    assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == [old[0]["MessageId"]]
    assert len(keys(pipeline, "payloads/")) == 2 and not keys(pipeline, LATE_MARKER_PREFIX)
    # When S3 accepts markers again and the record comes back
    refusing[0] = False
    assert pipeline.consume(old) == {"batchItemFailures": []}
    # Then the marker is there
    assert len(keys(pipeline, LATE_MARKER_PREFIX)) == 1


def test_an_object_prefix_overlapping_the_late_markers_is_refused() -> None:
    with pytest.raises(ConfigError, match="OBJECT_PREFIX must not start with 'late/'"):
        PipelineConfig(OBJECT_PREFIX="late/raw/")


def test_the_retry_horizon_must_end_before_the_raw_objects_expire() -> None:
    # A copy partitioned by its first attempt lands in an hour up to the horizon old; re-running that hour
    # needs every raw object of it
    with pytest.raises(ConfigError, match="RETRY_HORIZON_HOURS"):
        PipelineConfig(RAW_RETENTION_DAYS=15, RETRY_HORIZON_HOURS=15 * 24)
    assert PipelineConfig(RAW_RETENTION_DAYS=15, RETRY_HORIZON_HOURS=24).RETRY_HORIZON_HOURS == 24


@pytest.mark.parametrize(
    "config", [PipelineConfig(OBJECT_MODE=mode, COMPACTION_GRACE_MINUTES=1440) for mode in ("payload", "batch")]
)
def test_an_object_stored_before_its_hours_scheduled_run_gets_no_marker(pipeline: Pipeline) -> None:
    # Given a consumer whose hours are compacted a day after they close (COMPACTION_GRACE_MINUTES=1440), and an
    # envelope of an hour that closed two to three hours ago: its scheduled run has not started
    send_envelope(pipeline, "old-0", CLOSED)
    # When the consumer stores it
    assert consume_all(pipeline) == {"batchItemFailures": []}
    # Then it is stored and leaves no marker: the hour's scheduled run reads it, so no second run is owed (an
    # hour boundary's ordinary lag marked hundreds of objects of the hour just closed, each run redoing it)
    assert len(keys(pipeline, "payloads/")) == 1
    assert keys(pipeline, LATE_MARKER_PREFIX) == []


def test_a_late_marker_is_owed_from_the_grace_period_less_its_margin() -> None:
    # Given the hour 02:00-03:00 and the default grace of 30 minutes (markers from 25 minutes after it closed)
    hour = datetime(2026, 11, 26, 2, tzinfo=UTC)
    after = PipelineConfig().late_marker_after_seconds
    assert after == 25 * 60
    # Then an object stored before 03:25 needs none, one stored at or after it does; with no grace, every
    # object stored after the hour closed does
    assert not needs_late_marker(hour, datetime(2026, 11, 26, 3, 24, 59, tzinfo=UTC), after)
    assert needs_late_marker(hour, datetime(2026, 11, 26, 3, 25, tzinfo=UTC), after)
    assert not needs_late_marker(hour, datetime(2026, 11, 26, 2, 59, 59, tzinfo=UTC), 0)
    assert needs_late_marker(
        hour,
        datetime(2026, 11, 26, 3, 0, tzinfo=UTC),
        PipelineConfig(COMPACTION_GRACE_MINUTES=0).late_marker_after_seconds,
    )
