"""Compaction of the raw lake into `payloads_compacted` (one row per payload id, Parquet zstd, one
directory per hour and run: infra/lake_table.py).

    python -m tools.ops.compact local --bucket ingest-pipeline-local-payloads --endpoint-url http://127.0.0.1:4566
    python -m tools.ops.compact aws --stack IngestPipeline-prod --from 2026-11-26T00 --to 2026-11-26T05

``local`` (`make compact`) compacts `make run`'s bucket with DuckDB, every hour present including the
current one, with the same SQL the deployed state machine runs on Athena (``compaction_select``). An
hour whose rows would not change is left alone; one that would gets a new run directory, and the runs it
supersedes are deleted after the new one is stored.

``local`` has no readers in flight: nothing queries `make run`'s bucket while `make compact` rewrites it, so
a superseded run is deleted at once. The deployed compaction waits ATHENA_DML_TIMEOUT_MINUTES first
(infra/compaction_construct.py).

``aws`` (`make compact-aws`) starts the deployed compaction state machine for FROM..TO: one execution per
HOURS_PER_EXECUTION hours (input ``{"hours": [...]}``), in order, each after the previous one finished, and
reports each. An execution compacts its hours one at a time, each under the hour's lease (a run already
rewriting an hour is waited for), and waits for readers once, after its last hour, before it deletes what its
hours superseded: a re-run of a day takes one such wait, not 24.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from infra.config import PipelineConfig, cdk_json_context
from infra.lake_table import (
    COMPACTED_PREFIX,
    COMPACTED_TABLE_NAME,
    LATE_MARKER_PREFIX,
    PARQUET_COMPRESSION,
    RUN_ID_TIME_FORMAT,
    TABLE_NAME,
    CompactionWindow,
    compaction_select,
    hour_prefix,
    run_prefix,
)
from tools.ops.cli import (
    AWS_PROBLEMS,
    Progress,
    aws_problem_exit,
    client_options,
    describe_aws_problem,
    stack_outputs,
)
from tools.ops.query import (
    COMPACTED_KEY,
    DEFAULT_CACHE,
    cache_dir_for,
    define_compacted_table,
    is_compacted_object,
    open_lake,
    sync_objects,
)

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
LOCAL_FILE_NAME = "part-00000.parquet"  # DuckDB writes one file per hour and run
HOUR_FORMAT = "%Y-%m-%dT%H"  # FROM/TO and the state machine's {"hour": ...} input
STATE_MACHINE_OUTPUT = "CompactionStateMachineArn"
# Hours per execution: one wait for readers each; an execution's history stays far below Step Functions'
# 25,000 events (about 40 per hour).
HOURS_PER_EXECUTION = 24


class CompactionError(RuntimeError):
    """Compaction could not run or an execution failed; the message says which and why."""


class BadHours(CompactionError):
    """FROM/TO are not hours, or TO is before FROM."""


# --- local: DuckDB over make run's bucket ----------------------------------------------------------
@dataclass
class HourResult:
    dt: str
    hour: str
    rows: int
    added: int
    removed: int
    key: str | None  # the new run's object, None when the hour was left as it was


@dataclass
class LocalReport:
    hours: list[HourResult] = field(default_factory=list)
    superseded_deleted: int = 0

    @property
    def changed(self) -> list[HourResult]:
        return [hour for hour in self.hours if hour.key is not None]


def new_run_id(now: datetime) -> str:
    """``20261126T033000Z_12345600``: sorts by start time, to the microsecond (as the newest run wins)."""
    return f"{now:{RUN_ID_TIME_FORMAT}}_{now.microsecond:06d}00"


def _runs_by_hour(s3: Any, bucket: str, prefix: str = COMPACTED_PREFIX) -> dict[tuple[str, str], dict[str, list[str]]]:
    """The compacted runs under ``prefix`` (every hour's, or one hour's ``hour_prefix``): run id -> keys, by hour."""
    runs: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            match = COMPACTED_KEY.fullmatch(item["Key"])
            if match:
                dt, hour, run_id = match.groups()
                runs[(dt, hour)][run_id].append(item["Key"])
    return runs


def _delete_keys(s3: Any, bucket: str, keys: Sequence[str]) -> None:
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        chunk = keys[start : start + 1000]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in chunk]})
        if response.get("Errors"):
            raise CompactionError(
                f"could not delete superseded compacted objects or served markers: {response['Errors'][:3]}"
            )


def delete_superseded_runs(s3: Any, bucket: str) -> int:
    """Delete every run of an hour but the newest (left by an interrupted `make compact`); the count."""
    stale = [key for runs in _runs_by_hour(s3, bucket).values() for run_id in sorted(runs)[:-1] for key in runs[run_id]]
    _delete_keys(s3, bucket, stale)
    return len(stale)


def compact_local(
    s3: Any,
    bucket: str,
    raw_prefix: str,
    cache: Path,
    lookback_hours: int,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: Progress | None = None,
) -> LocalReport:
    """Compact every raw hour of ``bucket`` into payloads_compacted, oldest first, each with the
    lookback window of the deployed compaction. Idempotent: an hour whose compacted ids would not change
    is not written again."""
    report = LocalReport(superseded_deleted=delete_superseded_runs(s3, bucket))
    # Every hour is compacted here, so every late marker listed now is served once the run is done; a marker
    # written after this listing stays for the next run (infra/lake_table.py LATE_MARKER_PREFIX).
    markers = _keys_under(s3, bucket, LATE_MARKER_PREFIX)
    sync_objects(s3, bucket, raw_prefix, cache, progress)
    sync_objects(s3, bucket, COMPACTED_PREFIX, cache, progress, wants=is_compacted_object)
    compacted_root = cache / COMPACTED_PREFIX
    connection = open_lake(cache / raw_prefix, compacted_root)
    hours = connection.execute(f"SELECT DISTINCT dt, hour FROM {TABLE_NAME} ORDER BY dt, hour").fetchall()
    for dt, hour in hours:
        window = CompactionWindow.around(datetime.strptime(f"{dt}T{hour}", HOUR_FORMAT), lookback_hours)
        select = compaction_select(window)
        wanted = {row[0] for row in connection.execute(f"SELECT id FROM ({select})").fetchall()}
        current = {
            row[0]
            for row in connection.execute(
                f"SELECT id FROM {COMPACTED_TABLE_NAME} WHERE dt = ? AND hour = ?", [dt, hour]
            ).fetchall()
        }
        if wanted == current:
            report.hours.append(HourResult(dt, hour, len(wanted), 0, 0, None))
            continue
        key = run_prefix(dt, hour, new_run_id(now())) + LOCAL_FILE_NAME
        target = cache / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        # Sorted by id: ids of one request sit together and compress well; Athena's CTAS ignores ORDER BY.
        connection.execute(
            f"COPY ({select} ORDER BY id) TO '{partial.as_posix()}' "
            f"(FORMAT parquet, COMPRESSION {PARQUET_COMPRESSION.lower()})"
        )
        s3.upload_file(str(partial), bucket, key, ExtraArgs={"ContentType": PARQUET_CONTENT_TYPE})
        partial.replace(target)
        # The new run is stored: the runs it supersedes go, in S3 and in the cache.
        superseded = [
            stale
            for run_keys in _runs_by_hour(s3, bucket, hour_prefix(dt, hour)).get((dt, hour), {}).values()
            for stale in run_keys
        ]
        superseded = [stale for stale in superseded if stale != key]
        _delete_keys(s3, bucket, superseded)
        for stale in superseded:
            (cache / stale).unlink(missing_ok=True)
        define_compacted_table(connection, compacted_root)
        report.hours.append(HourResult(dt, hour, len(wanted), len(wanted - current), len(current - wanted), key))
    _delete_keys(s3, bucket, markers)
    return report


def _keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]


def print_local_report(report: LocalReport, bucket: str, out: TextIO) -> None:
    out.write(f"payloads_compacted in s3://{bucket}/{COMPACTED_PREFIX} ({len(report.hours)} hours in the raw lake)\n")
    for hour in report.hours:
        if hour.key is None:
            out.write(f"  {hour.dt} {hour.hour}h  {hour.rows:>9,} payloads  unchanged\n")
        else:
            removed = f", {hour.removed:,} removed" if hour.removed else ""
            out.write(
                f"  {hour.dt} {hour.hour}h  {hour.rows:>9,} payloads  +{hour.added:,} new{removed}  -> {hour.key}\n"
            )
    if report.superseded_deleted:
        out.write(f"deleted {report.superseded_deleted} file(s) of superseded runs left by an interrupted run\n")
    if not report.changed:
        out.write("nothing new: every hour was already compacted; nothing changed\n")
    else:
        added = sum(hour.added for hour in report.changed)
        out.write(f"{len(report.changed)} hour(s) rewritten, {added:,} payload(s) added\n")


# --- aws: the deployed state machine, one execution per hour -----------------------------------------
def parse_hour(text: str) -> datetime:
    """``2026-11-26T02`` (UTC) -> that hour; CompactionError for anything else."""
    try:
        return datetime.strptime(text, HOUR_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise BadHours(f"{text!r} is not an hour: write YYYY-MM-DDTHH (UTC), e.g. 2026-11-26T02") from exc


def hours_between(first: datetime, last: datetime) -> list[datetime]:
    if last < first:
        raise BadHours(f"TO ({last:{HOUR_FORMAT}}) is before FROM ({first:{HOUR_FORMAT}})")
    count = int((last - first) / timedelta(hours=1)) + 1
    return [first + timedelta(hours=n) for n in range(count)]


def state_machine_of(cloudformation: Any, stack: str) -> str:
    """The compaction state machine's ARN from the stack's outputs."""
    try:
        outputs = stack_outputs(cloudformation, stack)
    except AWS_PROBLEMS as exc:  # say which stack
        raise CompactionError(f"cannot read stack {stack}: {describe_aws_problem(exc, None)}") from exc
    if STATE_MACHINE_OUTPUT not in outputs:
        raise CompactionError(
            f"stack {stack} has no output {STATE_MACHINE_OUTPUT}: was it deployed with COMPACTION=on?"
        )
    return outputs[STATE_MACHINE_OUTPUT]


@dataclass(frozen=True)
class ExecutionResult:
    hours: list[datetime]
    arn: str
    status: str
    detail: str

    @property
    def label(self) -> str:
        first, last = f"{self.hours[0]:{HOUR_FORMAT}}", f"{self.hours[-1]:{HOUR_FORMAT}}"
        return first if first == last else f"{first}..{last}"


def compact_hours(
    sfn: Any,
    state_machine_arn: str,
    hours: Sequence[datetime],
    out: TextIO,
    poll_seconds: float = 10.0,
    sleep: Callable[[float], None] | None = None,
) -> list[ExecutionResult]:
    """Start one execution per HOURS_PER_EXECUTION hours, in order, each after the previous one succeeded;
    stop at the first that does not."""
    results = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for start in range(0, len(hours), HOURS_PER_EXECUTION):
        chunk = list(hours[start : start + HOURS_PER_EXECUTION])
        labels = [f"{hour:{HOUR_FORMAT}}" for hour in chunk]
        started = sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=f"compact-{labels[0]}-{len(chunk)}h-{stamp}",  # names allow letters, digits, - and _
            input=json.dumps({"hours": labels}),
        )
        arn = started["executionArn"]
        result = ExecutionResult(chunk, arn, "RUNNING", "")
        out.write(f"{result.label}  started {arn}\n")
        out.flush()
        while True:
            execution = sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING":
                break
            (sleep or time.sleep)(poll_seconds)
        status = execution["status"]
        detail = " ".join(part for part in (execution.get("error"), execution.get("cause")) if part)
        result = ExecutionResult(chunk, arn, status, detail)
        results.append(result)
        out.write(f"{result.label}  {status}{'  ' + detail if detail else ''}\n")
        if status != "SUCCEEDED":
            break
    return results


# --- command line ------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ops.compact", description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    local = modes.add_parser("local", help="make compact: DuckDB over make run's bucket (or any S3 endpoint)")
    local.add_argument("--bucket", required=True)
    local.add_argument("--endpoint-url", required=True, help="make run's moto, e.g. http://127.0.0.1:4566")
    local.add_argument("--region")
    local.add_argument("--prefix", help="OBJECT_PREFIX (default: the pipeline's knob)")
    local.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"local copy (default: {DEFAULT_CACHE})")
    aws = modes.add_parser("aws", help="make compact-aws: run the deployed state machine for FROM..TO")
    where = aws.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="read CompactionStateMachineArn from this stack's outputs")
    where.add_argument("--state-machine-arn")
    aws.add_argument("--from", dest="first", required=True, help="first hour, YYYY-MM-DDTHH (UTC)")
    aws.add_argument("--to", dest="last", help="last hour, YYYY-MM-DDTHH (default: FROM)")
    aws.add_argument("--region")
    aws.add_argument("--endpoint-url", help=argparse.SUPPRESS)
    return parser


def main(
    argv: Sequence[str] | None = None,
    clients: Callable[[str], Any] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Exit 0: done; 1: an execution failed, the lake could not be compacted or AWS refused; 2: bad arguments, or
    the set-up points nowhere (nothing answers at the endpoint, no region or credentials: cli.SETUP_EXIT)."""
    args = _parser().parse_args(argv)
    config = PipelineConfig.resolve(cdk_json_context())
    if clients is None:
        import boto3

        def clients(service: str) -> Any:
            return boto3.client(service, **client_options(args.endpoint_url, args.region))

    try:
        if args.mode == "local":
            prefix = args.prefix if args.prefix is not None else config.OBJECT_PREFIX
            cache = cache_dir_for(args.cache, args.endpoint_url, args.bucket)
            report = compact_local(
                clients("s3"), args.bucket, prefix, cache, config.COMPACTION_LOOKBACK_HOURS, progress=Progress()
            )
            print_local_report(report, args.bucket, out)
            return 0
        hours = hours_between(parse_hour(args.first), parse_hour(args.last or args.first))
        arn = args.state_machine_arn or state_machine_of(clients("cloudformation"), args.stack)
        results = compact_hours(clients("stepfunctions"), arn, hours, out)
    except CompactionError as exc:
        print(f"compact: {exc}", file=err)
        return 2 if isinstance(exc, BadHours) else 1
    except AWS_PROBLEMS as exc:  # make run stopped, no credentials, AWS refused: one line, no traceback
        option = "--endpoint-url (make compact: COMPACT_ENDPOINT)"
        bucket = getattr(args, "bucket", None)  # local mode
        return aws_problem_exit("compact", exc, err, args.endpoint_url, endpoint_option=option, bucket=bucket)
    failed = [result for result in results if result.status != "SUCCEEDED"]
    if failed:
        left = len(hours) - sum(len(result.hours) for result in results)
        print(
            f"compact: {failed[0].label} {failed[0].status}; {left} later hour(s) not started. "
            "Fix the cause (docs/RUNBOOK.md#compaction-failed), then run the same range again.",
            file=err,
        )
        return 1
    out.write(f"{sum(len(result.hours) for result in results)} hour(s) compacted\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
