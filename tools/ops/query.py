"""SQL over the lake, locally: `make query SQL="select count(*) from payloads"`.

    python -m tools.ops.query --bucket ingest-pipeline-local-payloads --endpoint-url http://127.0.0.1:4566 \\
        "SELECT dt, hour, count(*) FROM payloads GROUP BY dt, hour ORDER BY dt, hour"

The objects are copied with boto3 into a local cache first (only new ones: stored objects never
change, create-only), so DuckDB reads local files and needs no S3 extension: it works offline and
against any S3 endpoint. Then DuckDB sees the same table as Athena (infra/lake_table.py):

- ``payloads_compacted``: one row per payload id, from the Parquet files `make compact` (or the
  deployed compaction) wrote under ``compacted/``: the newest run of each hour.
- ``payloads``: id, requestId, receivedAt, version, token, deviceId, payload (JSON text), dt, hour,
  from both object modes (``.json`` and gzip NDJSON ``.ndjson.gz``); dt and hour come from the key.
- ``payloads_dedup``: one row per id, the same SQL text as the Athena view (it reads everything).
- ``json_extract_scalar`` and ``from_iso8601_timestamp`` exist as in Athena, so one query runs on both.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from infra.config import ConfigError, PipelineConfig, cdk_json_context
from infra.lake_table import (
    COLUMNS,
    COMPACTED_PREFIX,
    COMPACTED_TABLE_NAME,
    DEDUP_VIEW_NAME,
    DEDUP_VIEW_SQL,
    RUN_KEY,
    TABLE_NAME,
)
from pipeline.contract import BATCH_OBJECT_SUFFIX, PAYLOAD_OBJECT_SUFFIX, parse_object_key
from tools.ops.cli import AWS_PROBLEMS, Progress, client_options, describe_aws_problem

# dt and hour of a cached file, for DuckDB's regexp_extract: the partition part of the contract's key
# layout (partition_prefix), which is_lake_object has already checked with parse_object_key.
_PARTITION = r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+$"
# A compacted file: compacted/dt=YYYY-MM-DD/hour=HH/run=<run id>/<file> (infra/lake_table.py run_prefix).
COMPACTED_KEY = re.compile(rf"{COMPACTED_PREFIX}dt=(\d{{4}}-\d{{2}}-\d{{2}})/hour=(\d{{2}})/{RUN_KEY}=([\w-]+)/[^/]+$")
DEFAULT_CACHE = Path(".cache") / "query"
DOWNLOADERS = 16
# Athena (Trino) functions that DuckDB names differently: defined once, so a query runs on both.
ATHENA_COMPATIBLE_MACROS = (
    "CREATE MACRO json_extract_scalar(document, path) AS json_extract_string(document, path)",
    "CREATE MACRO from_iso8601_timestamp(text) AS CAST(text AS TIMESTAMPTZ)",
)


class QueryError(RuntimeError):
    """The SQL failed; the message is DuckDB's."""


@dataclass(frozen=True)
class SyncReport:
    listed: int
    fetched: int
    removed: int


def is_lake_object(key: str, prefix: str) -> bool:
    """An object the table reads: under the prefix, in a dt=/hour= partition, of either object mode."""
    parsed = parse_object_key(key)
    return parsed is not None and parsed.prefix == prefix


def is_compacted_object(key: str) -> bool:
    """A file of payloads_compacted: compacted/dt=YYYY-MM-DD/hour=HH/run=<run id>/<file>."""
    return COMPACTED_KEY.fullmatch(key) is not None and not key.endswith(".part")


def sync_objects(
    s3: Any,
    bucket: str,
    prefix: str,
    cache: Path,
    progress: Progress | None = None,
    wants: Callable[[str], bool] | None = None,
) -> SyncReport:
    """Mirror the lake objects of ``bucket`` under ``cache`` (same relative keys). Objects are written
    once and never changed, so a cached file of the right size is current; files whose object is gone
    (expired, or a superseded compaction run) are removed. ``wants``: which keys under ``prefix`` to
    mirror (default: the raw lake's objects)."""
    if wants is None:

        def wants(key: str) -> bool:
            return is_lake_object(key, prefix)

    wanted: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if wants(item["Key"]):
                wanted[item["Key"]] = item["Size"]
        if progress:
            progress.show(f"listing s3://{bucket}/{prefix}: {len(wanted):,} objects")
    missing = [
        key for key, size in wanted.items() if not (cache / key).is_file() or (cache / key).stat().st_size != size
    ]

    def fetch(key: str) -> None:
        target = cache / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        s3.download_file(bucket, key, str(partial))
        partial.replace(target)

    with ThreadPoolExecutor(DOWNLOADERS) as pool:
        for done, _ in enumerate(pool.map(fetch, missing), start=1):
            if progress:
                progress.show(f"fetching: {done:,}/{len(missing):,} new objects ({len(wanted):,} in the lake)")
    removed = 0
    for path in [p for p in cache.rglob("*") if p.is_file()]:
        key = path.relative_to(cache).as_posix()
        # Only what this tool wrote: copies of lake objects and interrupted downloads.
        if key not in wanted and key.startswith(prefix) and (wants(key) or key.endswith(".part")):
            path.unlink()
            removed += 1
    if progress:
        progress.show(f"{len(wanted):,} objects in s3://{bucket}/{prefix} ({len(missing):,} fetched)", final=True)
    return SyncReport(len(wanted), len(missing), removed)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def current_compacted_files(compacted_root: Path) -> list[Path]:
    """The files of payloads_compacted under ``compacted_root`` (a copy of the compacted/ prefix): of
    each hour, the newest run only. Run ids sort by start time and a local run writes each hour's one
    file with one PutObject, so the newest run is complete; an older one is superseded (`make compact`
    deletes it after the new one is stored)."""
    newest: dict[tuple[str, str], tuple[str, list[Path]]] = {}
    for path in sorted(compacted_root.rglob("*")):
        match = COMPACTED_KEY.fullmatch(COMPACTED_PREFIX + path.relative_to(compacted_root).as_posix())
        if not path.is_file() or match is None or path.name.endswith(".part"):
            continue
        dt, hour, run_id = match.groups()
        current = newest.get((dt, hour))
        if current is None or run_id > current[0]:
            newest[(dt, hour)] = (run_id, [path])
        elif run_id == current[0]:
            current[1].append(path)
    return [path for _, paths in sorted(newest.values(), key=lambda item: item[1][0]) for path in paths]


def define_compacted_table(connection: Any, compacted_root: Path | None) -> None:
    """(Re)define `payloads_compacted` over the newest run of each hour under ``compacted_root``."""
    files = current_compacted_files(compacted_root) if compacted_root and compacted_root.is_dir() else []
    if not files:  # nothing compacted yet: an empty table with the same columns, not an error
        empty = ", ".join(f"CAST(NULL AS VARCHAR) AS {name}" for name in (*COLUMNS, "dt", "hour"))
        connection.execute(f"CREATE OR REPLACE VIEW {COMPACTED_TABLE_NAME} AS SELECT {empty} WHERE false")
        return
    pattern = _sql_string(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")
    connection.execute(
        f"CREATE OR REPLACE VIEW {COMPACTED_TABLE_NAME} AS SELECT {', '.join(COLUMNS)}, "
        f"regexp_extract(filename, {pattern}, 1) AS dt, regexp_extract(filename, {pattern}, 2) AS hour "
        f"FROM read_parquet([{', '.join(_sql_string(path.as_posix()) for path in files)}], filename = true, "
        "hive_partitioning = false)"
    )


def open_lake(root: Path, compacted_root: Path | None = None) -> Any:
    """An in-memory DuckDB with the `payloads` table and `payloads_dedup` view over the cached objects
    under ``root`` (the cache directory plus OBJECT_PREFIX), and `payloads_compacted` over the cached
    Parquet files under ``compacted_root`` (the cache directory plus compacted/). No extension is ever
    downloaded."""
    import duckdb

    connection = duckdb.connect(config={"autoinstall_known_extensions": False})
    for macro in ATHENA_COMPATIBLE_MACROS:
        connection.execute(macro)
    partitions = f"{root.as_posix().rstrip('/')}/dt=*/hour=*/"
    globs = [
        partitions + "*" + suffix
        for suffix in (PAYLOAD_OBJECT_SUFFIX, BATCH_OBJECT_SUFFIX)
        if any(root.glob(f"dt=*/hour=*/*{suffix}"))
    ]
    columns = ", ".join(f"{name} VARCHAR" for name in COLUMNS)
    if not globs:  # an empty lake is an empty table, not an error
        connection.execute(f"CREATE TABLE {TABLE_NAME} ({columns}, dt VARCHAR, hour VARCHAR)")
    else:
        types = ", ".join(f"{_sql_string(name)}: {'JSON' if name == 'payload' else 'VARCHAR'}" for name in COLUMNS)
        fields = ", ".join("CAST(payload AS VARCHAR) AS payload" if name == "payload" else name for name in COLUMNS)
        pattern = _sql_string("/" + _PARTITION)
        # gzip is detected from the .gz extension, as Athena does; one envelope per line in both modes.
        connection.execute(
            f"CREATE VIEW {TABLE_NAME} AS SELECT {fields}, "
            f"regexp_extract(filename, {pattern}, 1) AS dt, regexp_extract(filename, {pattern}, 2) AS hour "
            f"FROM read_json([{', '.join(map(_sql_string, globs))}], format = 'newline_delimited', "
            f"columns = {{{types}}}, filename = true)"
        )
    connection.execute(f"CREATE VIEW {DEDUP_VIEW_NAME} AS {DEDUP_VIEW_SQL}")
    define_compacted_table(connection, compacted_root)
    return connection


def run_query(connection: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of ``sql``; QueryError when DuckDB refuses it."""
    import duckdb

    try:
        cursor = connection.execute(sql)
        names = [column[0] for column in cursor.description or []]
        return names, cursor.fetchall() if names else []
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc


def _text(value: Any) -> str:
    return "NULL" if value is None else str(value)


def write_result(
    names: Sequence[str], rows: Sequence[Sequence[Any]], output_format: str, out: TextIO, max_width: int = 60
) -> None:
    """``table``: aligned columns for people (long cells shortened); ``csv`` and ``json`` (an array of
    objects) are complete, for scripts."""
    if output_format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        return
    if output_format == "json":
        json.dump([dict(zip(names, row, strict=True)) for row in rows], out, default=str, ensure_ascii=False)
        out.write("\n")
        return

    def cell(value: Any) -> str:
        text = _text(value)
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(names)]
    out.write("  ".join(name.ljust(w) for name, w in zip(names, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(rows)} row{'' if len(rows) == 1 else 's'})\n")


def cache_dir_for(base: Path, endpoint_url: str | None, bucket: str) -> Path:
    """One cache per endpoint and bucket, so the local lake and a deployed one never mix."""
    host = urlsplit(endpoint_url).netloc.replace(":", "_") if endpoint_url else "aws"
    return base / host / bucket


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.ops.query", description=__doc__.split("\n\n")[0])
    parser.add_argument("sql", help="the SQL; tables: payloads_compacted, payloads, payloads_dedup")
    parser.add_argument("--bucket", required=True, help="the payload bucket (make run: ingest-pipeline-local-payloads)")
    parser.add_argument("--endpoint-url", help="an S3 endpoint such as http://127.0.0.1:4566 (default: AWS)")
    parser.add_argument("--region", help="AWS region (a loopback endpoint defaults to us-east-1)")
    parser.add_argument(
        "--prefix",
        help="OBJECT_PREFIX (default: the pipeline's knob as synth resolves it: env > context > PROFILE > payloads/)",
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help=f"local copy of the objects (default: {DEFAULT_CACHE})"
    )
    parser.add_argument("--offline", action="store_true", help="query the cache as it is, without listing the bucket")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", dest="output_format")
    return parser.parse_args(argv)


# How a user names the endpoint: the flag, or make query's variable.
ENDPOINT_OPTION = "--endpoint-url (make query: QUERY_ENDPOINT; empty for AWS)"


def _s3_client(endpoint_url: str | None, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        **client_options(endpoint_url, region),
        config=Config(max_pool_connections=DOWNLOADERS, retries={"mode": "standard"}),
    )


def main(argv: list[str] | None = None, s3: Any = None, out: TextIO = sys.stdout) -> int:
    """0: the result is printed; 1: the SQL failed; 2: bad arguments or configuration, or the bucket
    could not be read (one line on stderr naming the problem and its fix)."""
    args = parse_args(argv)
    try:
        prefix = args.prefix if args.prefix is not None else PipelineConfig.resolve(cdk_json_context()).OBJECT_PREFIX
    except ConfigError as exc:
        print(f"query: configuration error: {exc}", file=sys.stderr)
        return 2
    cache = cache_dir_for(args.cache, args.endpoint_url, args.bucket)
    if not args.offline:
        try:
            client = s3 or _s3_client(args.endpoint_url, args.region)
            sync_objects(client, args.bucket, prefix, cache, Progress())
            sync_objects(client, args.bucket, COMPACTED_PREFIX, cache, Progress(), wants=is_compacted_object)
        except AWS_PROBLEMS as exc:
            problem = describe_aws_problem(exc, args.endpoint_url, endpoint_option=ENDPOINT_OPTION, bucket=args.bucket)
            print(f"query: {problem}", file=sys.stderr)
            return 2
    try:
        names, rows = run_query(open_lake(cache / prefix, cache / COMPACTED_PREFIX), args.sql)
    except QueryError as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 1
    write_result(names, rows, args.output_format, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
