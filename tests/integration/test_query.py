"""`make query` (tools/ops/query.py) under moto, both object modes: the table holds what was stored, the
dedup view keeps one row per id, and the output formats are what scripts expect."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.config import PipelineConfig
from infra.lake_table import EXAMPLE_SQL
from loadtest.reconcile import envelopes_in
from tests.conftest import Pipeline, collection
from tests.reliability.drain import drain
from tools.ops import query


def run(pipeline: Pipeline, cache: Path, sql: str, *options: str) -> str:
    out = io.StringIO()
    arguments = ["--bucket", pipeline.resources.bucket, "--cache", str(cache), *options, sql]
    code = query.main(arguments, s3=pipeline.s3, out=out)
    assert code == 0
    return out.getvalue()


def rows(pipeline: Pipeline, cache: Path, sql: str) -> list[dict[str, Any]]:
    return json.loads(run(pipeline, cache, sql, "--format", "json"))


def store(pipeline: Pipeline, requests: int, payloads: int) -> dict[str, dict[str, Any]]:
    """POST and drain; the acknowledged collections by request id."""
    sent = {}
    for n in range(requests):
        body = collection(payloads, token=f"device-{n}")
        response = pipeline.post(body)
        assert response.status == 202
        sent[response.body["requestId"]] = body
    drain(pipeline)
    return sent


def stored_envelopes(pipeline: Pipeline) -> list[dict[str, Any]]:
    envelopes = []
    for item in pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX)[
        "Contents"
    ]:
        body = pipeline.s3.get_object(Bucket=pipeline.resources.bucket, Key=item["Key"])["Body"].read()
        envelopes.extend(envelopes_in(item["Key"], body))
    return envelopes


def plant_duplicate(pipeline: Pipeline) -> str:
    """A second copy of one stored object in the next hour's partition: what a keyed retry in another
    hour, or a batch regrouped by a redelivery, leaves behind. Returns the duplicated id."""
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX)[
        "Contents"
    ]
    [first, *_] = sorted(item["Key"] for item in listing)
    body = pipeline.s3.get_object(Bucket=pipeline.resources.bucket, Key=first)["Body"].read()
    hour = int(first.split("/hour=")[1][:2])
    elsewhere = first.replace(f"/hour={hour:02d}/", f"/hour={(hour + 1) % 24:02d}/")
    pipeline.s3.put_object(Bucket=pipeline.resources.bucket, Key=elsewhere, Body=body)
    return envelopes_in(first, body)[0]["id"]


class TestPayloadMode:
    def test_the_table_holds_every_stored_payload_with_its_partition(self, pipeline: Pipeline, tmp_path: Path) -> None:
        # Given 4 requests of 3 payloads stored one object each
        sent = store(pipeline, 4, 3)
        # When the table is queried
        [count] = rows(pipeline, tmp_path, "SELECT count(*) AS n, count(DISTINCT requestId) AS requests FROM payloads")
        # Then it holds every payload, and each row is the envelope with dt/hour from its key
        assert count == {"n": 12, "requests": 4}
        table = rows(pipeline, tmp_path, "SELECT * FROM payloads ORDER BY id")
        expected = sorted(stored_envelopes(pipeline), key=lambda e: e["id"])
        assert [row["id"] for row in table] == [e["id"] for e in expected]
        for row, envelope in zip(table, expected, strict=True):
            index = int(envelope["id"].rsplit("-", 1)[1])
            assert json.loads(row["payload"]) == envelope["payload"] == sent[envelope["requestId"]]["data"][index]
            assert (row["requestId"], row["receivedAt"], row["version"], row["token"]) == (
                envelope["requestId"],
                envelope["receivedAt"],
                envelope["version"],
                envelope["token"],
            )
            assert (row["dt"], row["hour"]) == (envelope["receivedAt"][:10], envelope["receivedAt"][11:13])

    def test_the_dedup_view_removes_a_planted_duplicate(self, pipeline: Pipeline, tmp_path: Path) -> None:
        # Given 6 stored payloads and a second copy of one of them in another hour partition
        store(pipeline, 2, 3)
        duplicated = plant_duplicate(pipeline)
        # When both are counted, Then the table shows 7 rows, the view 6, one per id
        sql = (
            "SELECT (SELECT count(*) FROM payloads) AS all_rows, (SELECT count(*) FROM payloads_dedup) AS ids, "
            f"(SELECT count(*) FROM payloads_dedup WHERE id = '{duplicated}') AS kept"
        )
        assert rows(pipeline, tmp_path, sql) == [{"all_rows": 7, "ids": 6, "kept": 1}]

    def test_json_functions_of_athena_work_on_payload(self, pipeline: Pipeline, tmp_path: Path) -> None:
        # Given payloads with a numeric field seq 0..2
        store(pipeline, 1, 3)
        # When a query written for Athena reads it, Then it runs unchanged
        sql = (
            "SELECT CAST(json_extract_scalar(payload, '$.seq') AS integer) AS seq, "
            "json_extract(payload, '$.tags') AS tags, "
            "from_iso8601_timestamp(receivedAt) IS NOT NULL AS timed FROM payloads ORDER BY seq"
        )
        assert rows(pipeline, tmp_path, sql) == [{"seq": n, "tags": '["a","ü"]', "timed": True} for n in range(3)]

    def test_a_second_run_fetches_only_new_objects(self, pipeline: Pipeline, tmp_path: Path) -> None:
        # Given a query ran once over 3 objects
        store(pipeline, 1, 3)
        cache = query.cache_dir_for(tmp_path, None, pipeline.resources.bucket)
        assert query.sync_objects(pipeline.s3, pipeline.resources.bucket, "payloads/", cache).fetched == 3
        # When 2 more are stored and it runs again, Then only those are fetched and all 5 are counted
        store(pipeline, 1, 2)
        assert query.sync_objects(pipeline.s3, pipeline.resources.bucket, "payloads/", cache).fetched == 2
        assert rows(pipeline, tmp_path, "SELECT count(*) AS n FROM payloads") == [{"n": 5}]


class TestBatchMode:
    @pytest.fixture
    def config(self) -> PipelineConfig:
        return PipelineConfig(OBJECT_MODE="batch")

    def test_the_table_reads_gzip_ndjson_objects(self, pipeline: Pipeline, tmp_path: Path) -> None:
        # Given 3 requests of 4 payloads stored as gzip NDJSON batch objects
        store(pipeline, 3, 4)
        keys = [
            item["Key"]
            for item in pipeline.s3.list_objects_v2(
                Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX
            )["Contents"]
        ]
        assert keys and all(key.endswith(".ndjson.gz") for key in keys)
        # When counted, Then every line of every object is a row
        [result] = rows(pipeline, tmp_path, "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM payloads")
        assert result == {"n": 12, "ids": 12}
        assert sorted(r["id"] for r in rows(pipeline, tmp_path, "SELECT id FROM payloads")) == sorted(
            e["id"] for e in stored_envelopes(pipeline)
        )

    def test_the_dedup_view_removes_a_payload_regrouped_into_a_second_object(
        self, pipeline: Pipeline, tmp_path: Path
    ) -> None:
        # Given 8 stored payloads and a batch object that holds one of them again
        store(pipeline, 2, 4)
        duplicated = plant_duplicate(pipeline)
        # When counted, Then the table has the extra rows and the view has one row per id
        [result] = rows(
            pipeline,
            tmp_path,
            "SELECT (SELECT count(*) FROM payloads) AS all_rows, "
            "(SELECT count(DISTINCT id) FROM payloads) AS ids, "
            "(SELECT count(*) FROM payloads_dedup) AS dedup",
        )
        assert result["all_rows"] > result["ids"] == result["dedup"] == 8
        sql = f"SELECT count(*) AS n FROM payloads_dedup WHERE id = '{duplicated}'"
        assert rows(pipeline, tmp_path, sql) == [{"n": 1}]


def test_the_example_query_counts_per_hour(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given 5 stored payloads, When docs/QUERYING.md's example runs, Then it counts them in their hour
    store(pipeline, 1, 5)
    [row] = rows(pipeline, tmp_path, EXAMPLE_SQL)
    assert (row["payloads"], row["ids"]) == (5, 5)


def test_an_empty_lake_is_an_empty_table(pipeline: Pipeline, tmp_path: Path) -> None:
    assert rows(pipeline, tmp_path, "SELECT count(*) AS n FROM payloads_dedup") == [{"n": 0}]


def test_output_formats(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given 2 stored payloads
    store(pipeline, 1, 2)
    sql = "SELECT id, CAST(json_extract_scalar(payload, '$.seq') AS integer) AS seq FROM payloads ORDER BY seq"
    # Then the table is aligned with a row count, csv has a header, json is an array of objects
    table = run(pipeline, tmp_path, sql).splitlines()
    assert table[0].split() == ["id", "seq"] and set(table[1]) <= {"-", " "} and table[-1] == "(2 rows)"
    parsed = list(csv.DictReader(io.StringIO(run(pipeline, tmp_path, sql, "--format", "csv"))))
    assert [row["seq"] for row in parsed] == ["0", "1"]
    assert [row["seq"] for row in rows(pipeline, tmp_path, sql)] == [0, 1]


def test_bad_sql_fails_with_duckdbs_message(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = query.main(
        ["--bucket", pipeline.resources.bucket, "--cache", str(tmp_path), "SELECT nope FROM payloads"],
        s3=pipeline.s3,
        out=io.StringIO(),
    )
    assert code == 1
    assert "query failed" in capsys.readouterr().err


def test_the_readme_query_for_athena_and_duckdb_runs_here(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given docs/QUERYING.md's one SQL block (documented to run unchanged on Athena and DuckDB)
    readme = (Path(__file__).resolve().parents[2] / "docs" / "QUERYING.md").read_text()
    [sql] = re.findall(r"```sql\n(.*?)```", readme, flags=re.DOTALL)
    # And payloads with temp 20.5, 21.5, 22.5, one of them stored twice in its hour (a regrouped batch)
    from tests.integration.test_compaction_local import compact_lake, copy_under_hour

    store(pipeline, 1, 3)
    [first, *_] = sorted(pipeline.objects())
    copy_under_hour(pipeline, first, 0, name="copy-of-a-payload.json")
    # When the lake is compacted (make compact) and it runs, over payloads_compacted and payloads_dedup alike

    compact_lake(pipeline, tmp_path)
    assert "FROM payloads_compacted" in sql
    assert rows(pipeline, tmp_path, sql) == rows(
        pipeline, tmp_path, sql.replace("payloads_compacted", "payloads_dedup")
    )
    # Then it counts each payload once by its rounded temperature
    assert rows(pipeline, tmp_path, sql) == [
        {"temp": 21.0, "payloads": 1},
        {"temp": 22.0, "payloads": 1},
        {"temp": 23.0, "payloads": 1},
    ]


def test_the_cache_forgets_expired_objects_and_nothing_else(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given a synced cache of 2 objects, and a file of the user's in the same directory
    store(pipeline, 1, 2)
    cache = query.cache_dir_for(tmp_path, None, pipeline.resources.bucket)
    query.sync_objects(pipeline.s3, pipeline.resources.bucket, "payloads/", cache)
    notes = cache / "payloads" / "notes.txt"
    notes.write_text("mine")
    # When one object expires from the bucket and the cache syncs again
    [expired, _] = sorted(
        item["Key"]
        for item in pipeline.s3.list_objects_v2(Bucket=pipeline.resources.bucket, Prefix=pipeline.config.OBJECT_PREFIX)[
            "Contents"
        ]
    )
    pipeline.s3.delete_object(Bucket=pipeline.resources.bucket, Key=expired)
    report = query.sync_objects(pipeline.s3, pipeline.resources.bucket, "payloads/", cache)
    # Then its copy is gone, the user's file is not, and the table counts what the bucket holds
    assert (report.listed, report.removed) == (1, 1)
    assert not (cache / expired).exists() and notes.read_text() == "mine"
    assert rows(pipeline, tmp_path, "SELECT count(*) AS n FROM payloads") == [{"n": 1}]
