"""`make compact` (tools/ops/compact.py local) under moto, both object modes: payloads_compacted holds
one row per payload id whatever copies the raw lake holds, as Parquet under compacted/; a second run
changes nothing; later payloads are added by the next run; and the same SQL gives the same answers over
payloads_compacted and payloads_dedup."""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ingest_handler
from infra.config import PipelineConfig
from infra.lake_table import (
    COMPACTED_PREFIX,
    COMPACTED_TABLE_NAME,
    LATE_MARKER_PREFIX,
    TABLE_NAME,
    CompactionWindow,
    compaction_select,
    late_marker_hour_prefix,
)
from loadtest.reconcile import envelopes_in
from local_pipeline.events import LambdaContext, api_gateway_event
from pipeline.contract import PAYLOADS_PATH, parse_object_key
from tests.conftest import JSON_HEADERS, Pipeline, collection
from tests.integration.test_query import rows, store
from tests.reliability.drain import drain
from tools.ops import compact


def compact_lake(pipeline: Pipeline, cache: Path) -> str:
    out, err = io.StringIO(), io.StringIO()
    arguments = ["local", "--bucket", pipeline.resources.bucket, "--endpoint-url", "http://127.0.0.1:9"]
    code = compact.main([*arguments, "--cache", str(cache)], clients=lambda _: pipeline.s3, out=out, err=err)
    assert code == 0, err.getvalue()
    return out.getvalue()


def compacted_objects(pipeline: Pipeline) -> dict[str, bytes]:
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix=COMPACTED_PREFIX)
    return {
        item["Key"]: pipeline.s3.get_object(Bucket=pipeline.resources.bucket, Key=item["Key"])["Body"].read()
        for item in listing.get("Contents", [])
    }


def raw_keys(pipeline: Pipeline) -> list[str]:
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix="payloads/")["Contents"]
    return sorted(item["Key"] for item in listing)


def copy_under_hour(pipeline: Pipeline, key: str, shift_hours: int, name: str | None = None) -> str:
    """A copy of a stored object in another hour partition (what a late keyed retry leaves), or in the
    same hour under another name (``shift_hours=0``: a batch regrouped by a redelivery)."""
    parsed = parse_object_key(key)
    assert parsed is not None
    moment = parsed.partition + timedelta(hours=shift_hours)
    file_name = name or key.rsplit("/", 1)[1]
    copy = f"{parsed.prefix}dt={moment:%Y-%m-%d}/hour={moment:%H}/{file_name}"
    body = pipeline.s3.get_object(Bucket=pipeline.resources.bucket, Key=key)["Body"].read()
    pipeline.s3.put_object(Bucket=pipeline.resources.bucket, Key=copy, Body=body)
    return copy


def accepted_ids(sent: dict[str, dict[str, Any]]) -> set[str]:
    return {f"{request_id}-{n}" for request_id, body in sent.items() for n in range(len(body["data"]))}


COUNTS = (
    "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM payloads_compacted",
    "SELECT id FROM payloads_compacted ORDER BY id",
)


def check_exactly_once(pipeline: Pipeline, cache: Path, expected_ids: set[str]) -> None:
    [count] = rows(pipeline, cache, COUNTS[0])
    assert count == {"n": len(expected_ids), "ids": len(expected_ids)}
    assert {row["id"] for row in rows(pipeline, cache, COUNTS[1])} == expected_ids


class TestDoneWhenPayloadMode:
    """Issue 20's acceptance, automated: duplicates injected, compact, query, compact again, send more."""

    def test_one_row_per_accepted_payload_then_nothing_then_only_the_new_ones(
        self, pipeline: Pipeline, tmp_path: Path
    ) -> None:
        accept(pipeline, tmp_path)


class TestDoneWhenBatchMode:
    @pytest.fixture
    def config(self) -> PipelineConfig:
        return PipelineConfig(OBJECT_MODE="batch")

    def test_one_row_per_accepted_payload_then_nothing_then_only_the_new_ones(
        self, pipeline: Pipeline, tmp_path: Path
    ) -> None:
        accept(pipeline, tmp_path)


def accept(pipeline: Pipeline, cache: Path) -> None:
    # Given stored payloads, and the raw lake holding copies of two of them in their hour under another name
    # (a regrouped batch; every copy of an id is in one hour partition: pipeline/idempotency.py)
    sent = store(pipeline, 4, 3)
    keys = raw_keys(pipeline)
    gz = keys[-1].endswith(".gz")
    copy_under_hour(pipeline, keys[-1], 0, name="batch-" + "f" * 32 + ".ndjson.gz" if gz else "copy-of-a-payload.json")
    copy_under_hour(pipeline, keys[0], 0, name="batch-" + "e" * 32 + ".ndjson.gz" if gz else "copy-of-another.json")
    # When make compact runs, then make query
    first = compact_lake(pipeline, cache)
    # Then there is one row per accepted payload, and the compacted objects are Parquet
    check_exactly_once(pipeline, cache, accepted_ids(sent))
    stored = compacted_objects(pipeline)
    assert stored and all(body[:4] == b"PAR1" and body[-4:] == b"PAR1" for body in stored.values())
    assert all(key.endswith(".parquet") and "/run=" in key for key in stored)
    assert "hour(s) rewritten" in first
    # When it runs again with nothing new
    second = compact_lake(pipeline, cache)
    # Then nothing changed, and it says so
    assert "nothing new" in second
    assert compacted_objects(pipeline) == stored
    # When more payloads arrive and it runs again
    more = store(pipeline, 2, 5)
    third = compact_lake(pipeline, cache)
    # Then exactly the new ids are added, and each hour keeps one run
    assert "+10 new" in third
    check_exactly_once(pipeline, cache, accepted_ids(sent) | accepted_ids(more))
    runs_per_hour: dict[str, set[str]] = {}
    for key in compacted_objects(pipeline):
        hour, run = key.rsplit("/run=", 1)
        runs_per_hour.setdefault(hour, set()).add(run.split("/")[0])
    assert all(len(runs) == 1 for runs in runs_per_hour.values())


def test_superseded_runs_left_by_an_interrupted_run_are_deleted(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given a compacted lake and an older run of the same hour left behind (a run interrupted after its
    # upload, before its cleanup)
    sent = store(pipeline, 2, 2)
    compact_lake(pipeline, tmp_path)
    [key] = compacted_objects(pipeline)
    hour_dir, _ = key.split("/run=")
    stale = f"{hour_dir}/run=19700101T000000Z_00000000/part-00000.parquet"
    pipeline.s3.copy_object(
        Bucket=pipeline.resources.bucket, Key=stale, CopySource={"Bucket": pipeline.resources.bucket, "Key": key}
    )
    # Then the query already reads the newest run only, and the next make compact deletes the stale one
    check_exactly_once(pipeline, tmp_path, accepted_ids(sent))
    output = compact_lake(pipeline, tmp_path)
    assert "superseded" in output
    assert list(compacted_objects(pipeline)) == [key]


QUERIES = (
    "SELECT token, count(*) AS payloads FROM {table} GROUP BY token ORDER BY token",
    "SELECT dt, hour, count(*) AS payloads, count(DISTINCT id) AS ids FROM {table} GROUP BY dt, hour ORDER BY dt, hour",
    "SELECT round(CAST(json_extract_scalar(payload, '$.n') AS double)) AS n, count(*) AS payloads FROM {table} "
    "WHERE json_extract_scalar(payload, '$.n') IS NOT NULL GROUP BY 1 ORDER BY 1",
    "SELECT deviceId, count(*) AS payloads FROM {table} GROUP BY deviceId ORDER BY deviceId",
    "SELECT count(DISTINCT requestId) AS requests, min(receivedAt) AS first, max(receivedAt) AS last FROM {table}",
    "SELECT id, requestId, receivedAt, version, token, deviceId, payload, dt, hour FROM {table} ORDER BY id",
)


def test_the_same_sql_gives_the_same_answers_over_compacted_and_dedup(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given a raw lake with copies in their hours, one envelope with a deviceId (DEVICE_AUTH=on), compacted
    store(pipeline, 3, 4)
    keys = raw_keys(pipeline)
    copy_under_hour(pipeline, keys[1], 0, name="copy-of-a-payload.json")
    copy_under_hour(pipeline, keys[2], 0, name="copy-of-another.json")
    envelope = envelopes_in(
        keys[0], pipeline.s3.get_object(Bucket=pipeline.resources.bucket, Key=keys[0])["Body"].read()
    )[0]
    with_device = {**envelope, "id": envelope["requestId"] + "-99", "deviceId": "dev-7"}
    device_key = keys[0].rsplit("/", 1)[0] + f"/{with_device['id']}.json"
    pipeline.s3.put_object(Bucket=pipeline.resources.bucket, Key=device_key, Body=json.dumps(with_device).encode())
    compact_lake(pipeline, tmp_path)
    for sql in QUERIES:
        # When one query text runs over both tables
        compacted = rows(pipeline, tmp_path, sql.format(table="payloads_compacted"))
        dedup = rows(pipeline, tmp_path, sql.format(table="payloads_dedup"))
        # Then the answers are the same
        assert compacted == dedup, sql
    devices = rows(pipeline, tmp_path, QUERIES[3].format(table="payloads_compacted"))
    assert {"deviceId": "dev-7", "payloads": 1} in devices and {"deviceId": None, "payloads": 12} in devices


def test_an_old_object_without_device_id_and_a_gzip_batch_read_as_null(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given a batch object written before deviceId existed
    line = {
        "id": "r-0",
        "requestId": "r",
        "receivedAt": "2026-11-26T02:48:09.123Z",
        "version": "1",
        "token": "t",
        "payload": {"temp": 1},
    }
    key = "payloads/dt=2026-11-26/hour=02/batch-" + "a" * 32 + ".ndjson.gz"
    pipeline.s3.put_object(Bucket=pipeline.resources.bucket, Key=key, Body=gzip.compress(json.dumps(line).encode()))
    compact_lake(pipeline, tmp_path)
    # Then both tables read it, with a NULL deviceId
    for table in ("payloads", "payloads_compacted"):
        assert rows(pipeline, tmp_path, f"SELECT id, deviceId, dt, hour FROM {table}") == [
            {"id": "r-0", "deviceId": None, "dt": "2026-11-26", "hour": "02"}
        ]


def test_make_compact_serves_the_late_markers_it_found(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given stored payloads and a late marker for their hour (what the consumer leaves for a late object)
    store(pipeline, 2, 2)
    parsed = parse_object_key(raw_keys(pipeline)[0])
    assert parsed is not None
    marker = late_marker_hour_prefix(f"{parsed.partition:%Y-%m-%d}", f"{parsed.partition:%H}") + "0" * 32
    pipeline.s3.put_object(Bucket=pipeline.resources.bucket, Key=marker, Body=b"")
    # When make compact runs (every hour, the marked one included)
    compact_lake(pipeline, tmp_path / "cache")
    # Then the hour is compacted and its marker is gone
    assert compacted_objects(pipeline)
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix=LATE_MARKER_PREFIX)
    assert listing.get("KeyCount", 0) == 0


def test_the_compaction_reads_only_the_hours_own_raw_partition() -> None:
    # Given the statement one run of 2026-11-26T02 executes (Athena and make compact alike)
    select = compaction_select(CompactionWindow.around(datetime(2026, 11, 26, 2, tzinfo=UTC), 24))
    # Then it reads one table, the raw lake, in that hour's partition alone: no compacted hour's ids are joined
    assert COMPACTED_TABLE_NAME not in select
    assert re.findall(r"FROM (\w+)", select) == [TABLE_NAME]
    assert re.findall(r"WHERE (.*?)\)", select) == ["dt = '2026-11-26' AND hour = '02'"]


def test_two_copies_of_a_keyed_request_received_in_two_hours_compact_to_one_row(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # Given a keyed request whose first attempt was received at 10:59:59.900 and whose retry came at 11:00:00.100
    # (the 202 was lost), both stating the first attempt as the SDK does
    body = collection(3)
    headers = {**JSON_HEADERS, "Idempotency-Key": "k-1", "Ingest-First-Attempt": "2026-11-26T10:59:59.800Z"}
    answers = [
        post_at(pipeline, body, headers, datetime(2026, 11, 26, 10, 59, 59, 900000, UTC)),
        post_at(pipeline, body, headers, datetime(2026, 11, 26, 11, 0, 0, 100000, UTC)),
    ]
    drain(pipeline)
    # When the lake is compacted
    compact_lake(pipeline, tmp_path)
    # Then both copies landed in the first attempt's hour and the compacted lake holds one row per payload
    assert {answer["requestId"] for answer in answers} == {answers[0]["requestId"]}
    assert {key.split("/hour=")[1][:2] for key in raw_keys(pipeline)} == {"10"}
    check_exactly_once(pipeline, tmp_path, accepted_ids({answers[0]["requestId"]: body}))


def post_at(pipeline: Pipeline, body: dict[str, Any], headers: dict[str, str], received_at: datetime) -> dict[str, Any]:
    """A POST as API Gateway hands it over, received at ``received_at``; the 202's body."""
    event = api_gateway_event("POST", PAYLOADS_PATH, json.dumps(body).encode(), headers, api_key="key-a")
    event["requestContext"]["identity"]["apiKeyId"] = "key-a"
    event["requestContext"]["requestTimeEpoch"] = int(received_at.timestamp() * 1000)
    response = ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest"))
    assert response["statusCode"] == 202, response["body"]
    answer: dict[str, Any] = json.loads(response["body"])
    return answer
