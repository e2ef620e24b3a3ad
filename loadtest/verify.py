"""Reconcile what the load test saw acknowledged with what is in the bucket.

    .venv/bin/python -m loadtest.verify --bucket ingest-pipeline-local-payloads \\
        --endpoint-url http://127.0.0.1:5000 --acks loadtest-results --plot loadtest-results/loadtest.png

Every acknowledged request ``r`` with ``accepted = n`` promises payload ids ``r-0 .. r-(n-1)``. The
verifier polls the bucket (both object modes: ``{id}.json`` and ``batch-*.ndjson.gz``) until every
promised id is stored or ``--wait`` runs out, showing progress, then reports:

- lost: promised ids not found (the pipeline's "no data loss" rule says this must be 0);
- duplicated: ids stored in more than one object (possible in batch mode after a regrouped
  redelivery; readers dedupe by ``id``; impossible in payload mode where the key is the id);
- end-to-end latency percentiles from the envelope's ``receivedAt`` to the object's LastModified.
  S3 (and moto) keep LastModified to the second, so each latency is the midpoint of its second:
  a resolution of +-500 ms;
- throughput over time, plotted with p50/p99 latency (``--plot``).

Exit status: 0 when nothing is lost, 1 when payloads are lost, 2 on usage errors (no load-test results yet)
or when the bucket cannot be read (nothing answers, no credentials, no such bucket; one line naming the problem
and its fix).

Lost and duplicated are judged by loadtest/reconcile.py, the reconciler ``make soak`` and the
reliability tests use too; keys and batch objects are read through the pipeline's contract.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loadtest.plot import plot_report
from loadtest.reconcile import StoredCopy, copy_of, envelopes_in, promised_ids, reconcile
from loadtest.report import Report
from pipeline.contract import parse_object_key, partition_prefix
from tools.ops.cli import AWS_PROBLEMS, Progress, client_options, describe_aws_problem


# --- what the load test recorded ------------------------------------------------------------------
@dataclass(frozen=True)
class Ack:
    request_id: str
    accepted: int
    sent_at_ms: int
    ack_at_ms: int


@dataclass
class Acks:
    acks: list[Ack] = field(default_factory=list)
    not_acknowledged: int = 0

    @property
    def payload_ids(self) -> set[str]:
        return {payload_id for ack in self.acks for payload_id in promised_ids(ack.request_id, ack.accepted)}

    def window(self) -> tuple[datetime, datetime]:
        start = min(ack.sent_at_ms for ack in self.acks) / 1000
        end = max(ack.ack_at_ms for ack in self.acks) / 1000
        return datetime.fromtimestamp(start, tz=UTC), datetime.fromtimestamp(end, tz=UTC)


def load_acks(paths: Iterable[Path]) -> Acks:
    """Read acks-*.jsonl files (or directories holding them)."""
    result = Acks()
    for path in paths:
        files = sorted(path.glob("acks-*.jsonl")) if path.is_dir() else [path]
        for file in files:
            for line in file.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                if record.get("status") == 202 and isinstance(record.get("accepted"), int) and record.get("requestId"):
                    result.acks.append(Ack(record["requestId"], record["accepted"], record["sentAt"], record["ackAt"]))
                else:
                    result.not_acknowledged += 1
    return result


# --- what the bucket holds ------------------------------------------------------------------------
def hour_prefixes(prefix: str, start: datetime, end: datetime) -> list[str]:
    """The ``dt=/hour=`` partitions a run can have written to (receivedAt is the server's clock,
    so a few minutes of skew either side are included)."""
    hour = (start - timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    last = end + timedelta(minutes=10)
    prefixes = []
    while hour <= last:
        prefixes.append(partition_prefix(prefix, hour))
        hour += timedelta(hours=1)
    return prefixes


class BucketScan:
    """Incremental: each ``poll`` lists the run's partitions and reads only objects not seen yet."""

    def __init__(
        self, s3: Any, bucket: str, prefixes: list[str], wanted: set[str], readers: int = 16, latency_sample: int = 0
    ) -> None:
        self.s3, self.bucket, self.prefixes, self.wanted = s3, bucket, prefixes, wanted
        self.readers = readers
        # Payload mode needs one GET per object for its receivedAt. Past ``latency_sample`` payloads,
        # only a hash-chosen (so unbiased over time) share is read; the rest count from their key.
        self.sample_rate = 1.0 if not latency_sample else min(1.0, latency_sample / max(1, len(wanted)))
        self.seen_keys: set[str] = set()
        self.copies: list[StoredCopy] = []  # every copy of an acknowledged payload (objects read lazily)
        self.found: set[str] = set()  # acknowledged ids stored at least once
        self.objects = 0
        self.other_payloads = 0  # stored ids this run did not see acknowledged (earlier runs, timeouts)
        self.device_ids: set[str] = set()  # deviceIds of the acknowledged envelopes read (DEVICE_AUTH=on)
        self.without_device_id = 0

    def _list(self) -> Iterator[dict[str, Any]]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for prefix in self.prefixes:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])

    def _read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def poll(self) -> None:
        new = [item for item in self._list() if item["Key"] not in self.seen_keys]
        to_read = []  # batch objects, and the sampled payload objects of acknowledged ids
        for item in new:
            self.seen_keys.add(item["Key"])
            self.objects += 1
            parsed = parse_object_key(item["Key"])
            if parsed is None:
                continue  # not an object the pipeline writes
            if parsed.payload_id is None or (
                parsed.payload_id in self.wanted and in_sample(parsed.payload_id, self.sample_rate)
            ):
                to_read.append(item)
            elif parsed.payload_id in self.wanted:  # counted from its key, not read
                self._add(StoredCopy(parsed.payload_id, item["Key"], _stored_at(item)))
            else:
                self.other_payloads += 1
        with ThreadPoolExecutor(self.readers) as pool:
            for item, data in zip(to_read, pool.map(self._read, (i["Key"] for i in to_read)), strict=True):
                for envelope in envelopes_in(item["Key"], data):
                    if envelope["id"] in self.wanted:
                        self._add(copy_of(envelope, item["Key"], _stored_at(item), keep_content=False))
                        if envelope.get("deviceId"):
                            self.device_ids.add(envelope["deviceId"])
                        else:
                            self.without_device_id += 1
                    else:
                        self.other_payloads += 1

    def _add(self, copy: StoredCopy) -> None:
        self.copies.append(copy)
        self.found.add(copy.payload_id)


def _stored_at(item: Mapping[str, Any]) -> datetime:
    stored_at: datetime = item["LastModified"]
    return stored_at if stored_at.tzinfo else stored_at.replace(tzinfo=UTC)


def in_sample(payload_id: str, rate: float) -> bool:
    if rate >= 1.0:
        return True
    return int(hashlib.sha256(payload_id.encode()).hexdigest()[:8], 16) < rate * 0x1_0000_0000


# --- the reconciliation ---------------------------------------------------------------------------
def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_ms(copy: StoredCopy) -> float:
    """receivedAt -> LastModified; LastModified is truncated to the second, so take its midpoint."""
    assert copy.received_at is not None and copy.stored_at is not None
    return max(0.0, (copy.stored_at - copy.received_at).total_seconds() * 1000 + 500)


def build_report(
    acks: Acks,
    copies: Sequence[StoredCopy],
    objects_listed: int = 0,
    other_payloads: int = 0,
    bin_seconds: float = 1.0,
) -> Report:
    """Lost and duplicated (loadtest/reconcile.py), latency percentiles and the per-second time series.
    ``copies``: stored copies of acknowledged payloads, each with its LastModified."""
    wanted = acks.payload_ids
    result = reconcile(dict.fromkeys(wanted), copies)
    first_copies: dict[str, StoredCopy] = {}
    for copy in copies:
        first = first_copies.get(copy.payload_id)
        if copy.payload_id in wanted and (first is None or _moment(copy) < _moment(first)):
            first_copies[copy.payload_id] = copy
    latencies = sorted(latency_ms(copy) for copy in first_copies.values() if copy.received_at is not None)
    start_ms = min((ack.sent_at_ms for ack in acks.acks), default=0)
    end_ms = max((ack.ack_at_ms for ack in acks.acks), default=start_ms)
    duration = max(1e-3, (end_ms - start_ms) / 1000)
    payloads = sum(ack.accepted for ack in acks.acks)
    return Report(
        requests_acknowledged=len(acks.acks),
        requests_not_acknowledged=acks.not_acknowledged,
        payloads_acknowledged=payloads,
        payloads_stored=result.found,
        lost=len(result.lost),
        duplicated=len(result.duplicated),
        extra_copies=result.extra_copies,
        objects=len({copy.location for copy in copies if copy.payload_id in wanted}),
        objects_listed=objects_listed,
        other_payloads=other_payloads,
        latency_ms={f"p{q}": percentile(latencies, q) for q in (50, 90, 99)}
        | {"max": latencies[-1] if latencies else None},
        sent_rps=round((len(acks.acks) + acks.not_acknowledged) / duration, 1),
        acknowledged_payloads_per_s=round(payloads / duration, 1),
        series=time_series(acks, first_copies, start_ms, bin_seconds),
        lost_sample=result.lost[:10],
        duplicated_sample=dict(list(result.duplicated.items())[:10]),
    )


def _moment(copy: StoredCopy) -> datetime:
    assert copy.stored_at is not None  # the verifier records every copy's LastModified
    return copy.stored_at


def time_series(
    acks: Acks, first_copies: dict[str, StoredCopy], start_ms: int, bin_seconds: float
) -> list[dict[str, Any]]:
    """Per bin (seconds since the first send): payloads acknowledged and stored per second, and
    p50/p99 latency of the payloads received in that bin."""

    def bin_of(epoch_s: float) -> int:
        return int((epoch_s - start_ms / 1000) // bin_seconds)

    acked: dict[int, int] = {}
    for ack in acks.acks:
        acked[bin_of(ack.ack_at_ms / 1000)] = acked.get(bin_of(ack.ack_at_ms / 1000), 0) + ack.accepted
    stored: dict[int, int] = {}
    latencies: dict[int, list[float]] = {}
    for copy in first_copies.values():
        stored_bin = bin_of(_moment(copy).timestamp() + 0.5)
        stored[stored_bin] = stored.get(stored_bin, 0) + 1
        if copy.received_at is not None:
            latencies.setdefault(bin_of(copy.received_at.timestamp()), []).append(latency_ms(copy))
    bins = sorted(set(acked) | set(stored) | set(latencies))
    series = []
    for index in range(min(bins, default=0), max(bins, default=-1) + 1):
        values = sorted(latencies.get(index, []))
        series.append(
            {
                "t": round(index * bin_seconds, 3),
                "acknowledged_per_s": acked.get(index, 0) / bin_seconds,
                "stored_per_s": stored.get(index, 0) / bin_seconds,
                "p50_ms": percentile(values, 50),
                "p99_ms": percentile(values, 99),
            }
        )
    return series


# --- the command ----------------------------------------------------------------------------------
def format_report(report: Report) -> str:
    lat = report.latency_ms

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f} ms"

    return "\n".join(
        [
            f"requests   {report.requests_acknowledged:,} acknowledged, {report.requests_not_acknowledged:,} not "
            f"(sent {report.sent_rps:,} req/s: the achieved rate; locust prints the asked one)",
            f"payloads   {report.payloads_acknowledged:,} acknowledged ({report.acknowledged_payloads_per_s:,}/s), "
            f"{report.payloads_stored:,} stored in {report.objects:,} objects",
            f"lost       {report.lost:,}" + (f"  e.g. {', '.join(report.lost_sample[:3])}" if report.lost else ""),
            f"duplicated {report.duplicated:,} ids in more than one object ({report.extra_copies:,} extra copies; "
            "readers dedupe by id)"
            + "".join(
                f"\n           e.g. {pid} in {', '.join(keys)}"
                for pid, keys in list(report.duplicated_sample.items())[:2]
            ),
            f"latency    receivedAt -> stored: p50 {ms(lat['p50'])}, p90 {ms(lat['p90'])}, p99 {ms(lat['p99'])}, "
            f"max {ms(lat['max'])} (+-500 ms: LastModified has 1 s resolution)",
        ]
        + (
            [
                f"devices    {report.device_ids:,} distinct deviceIds in the payloads read, "
                f"{report.payloads_without_device_id:,} payloads read without one (DEVICE_AUTH=on)"
            ]
            if report.device_ids
            else []
        )
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument(
        "--acks",
        type=Path,
        nargs="+",
        default=[Path("loadtest-results")],
        help="acks-*.jsonl files or directories holding them",
    )
    parser.add_argument("--prefix", default="payloads/", help="OBJECT_PREFIX of the deployment")
    parser.add_argument("--endpoint-url", help="S3 endpoint, e.g. the local pipeline's moto server")
    parser.add_argument("--region", default=None)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for missing payloads")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between bucket scans")
    parser.add_argument("--bin", type=float, default=1.0, help="time-series bin, seconds")
    parser.add_argument(
        "--latency-sample",
        type=int,
        default=100_000,
        help="payload mode: read receivedAt of about this many objects (0 = all); all are counted",
    )
    parser.add_argument("--dlq-url", help="also print this queue's depth (where undelivered payloads wait)")
    parser.add_argument("--plot", type=Path, help="write a PNG of throughput and p50/p99 latency over time")
    parser.add_argument("--json", type=Path, help="write the full report (with the time series) as JSON")
    return parser.parse_args(argv)


def s3_client(endpoint_url: str | None, region: str | None, readers: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        **client_options(endpoint_url, region),
        config=Config(max_pool_connections=readers, retries={"mode": "standard"}),
    )


def dlq_depth(queue_url: str, endpoint_url: str | None, region: str | None) -> int:
    import boto3

    sqs = boto3.client("sqs", **client_options(endpoint_url, region))
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def main(argv: list[str] | None = None, s3: Any = None) -> int:
    args = parse_args(argv)
    try:
        return _verify(args, s3)
    except AWS_PROBLEMS as exc:
        # No region or credentials, nothing answering, no such bucket: one line with the fix.
        option = "--endpoint-url (make verify: VERIFY_ENDPOINT; empty for AWS)"
        print(
            f"verify: {describe_aws_problem(exc, args.endpoint_url, endpoint_option=option, bucket=args.bucket)}",
            file=sys.stderr,
        )
    return 2


def _verify(args: argparse.Namespace, s3: Any) -> int:
    missing = [str(path) for path in args.acks if not path.exists()]
    if missing:  # before any load test ran: a usage error in one line, not FileNotFoundError
        print(
            f"verify: no load-test results at {', '.join(missing)}: run `make loadtest` first "
            "(or name the results: --acks, make verify LOADTEST_RESULTS=<dir>)",
            file=sys.stderr,
        )
        return 2
    acks = load_acks(args.acks)
    if not acks.acks:
        print(f"no acknowledged requests found in {', '.join(map(str, args.acks))}", file=sys.stderr)
        return 2
    start, end = acks.window()
    wanted = acks.payload_ids
    scan = BucketScan(
        s3 or s3_client(args.endpoint_url, args.region, 16),
        args.bucket,
        hour_prefixes(args.prefix, start, end),
        wanted,
        latency_sample=args.latency_sample,
    )
    progress = Progress()
    deadline = time.monotonic() + args.wait
    began = time.monotonic()
    while True:
        scan.poll()
        found = len(scan.found)
        done = found == len(wanted)
        progress.show(
            f"verify: {found:,}/{len(wanted):,} acknowledged payloads stored "
            f"({100 * found / len(wanted):.1f}%), {scan.objects:,} objects listed, {time.monotonic() - began:.0f} s",
            final=done or time.monotonic() >= deadline,
        )
        if done or time.monotonic() >= deadline:
            break
        time.sleep(args.interval)
    report = build_report(acks, scan.copies, scan.objects, scan.other_payloads, args.bin)
    report.device_ids, report.payloads_without_device_id = len(scan.device_ids), scan.without_device_id
    print(format_report(report))
    if args.dlq_url:
        print(
            f"DLQ        {dlq_depth(args.dlq_url, args.endpoint_url, args.region):,} messages "
            "(a dead-lettered payload is not lost: make redrive)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.as_dict(), indent=1, default=str))
    if args.plot:
        plot_report(report, args.plot)
        print(f"plot       {args.plot}")
    return 1 if report.lost else 0


if __name__ == "__main__":
    sys.exit(main())
