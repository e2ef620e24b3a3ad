"""The load-test verifier against a moto bucket: lost, duplicated, latency, both object modes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from loadtest.verify import main
from pipeline.contract import batch_object_key, encode_batch_object, partition_prefix
from tests.conftest import aws  # noqa: F401 - the moto fixture

BUCKET = "verify-test-payloads"


def received_at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def envelope(payload_id: str, moment: datetime) -> dict[str, Any]:
    return {
        "id": payload_id,
        "requestId": payload_id.rsplit("-", 1)[0],
        "receivedAt": received_at(moment),
        "version": "1",
        "token": "t",
        "payload": {"n": payload_id},
    }


def partition(moment: datetime) -> str:
    return partition_prefix("payloads/", moment)


def write_acks(directory: Path, acks: list[tuple[str, int]], rejected: int = 0) -> None:
    now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)
    lines = [
        {"requestId": rid, "accepted": n, "sentAt": now_ms - 900, "ackAt": now_ms - 800, "status": 202}
        for rid, n in acks
    ]
    lines += [{"requestId": f"bad{i}", "sentAt": now_ms, "ackAt": now_ms, "status": 503} for i in range(rejected)]
    (directory / "acks-1.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture
def s3(aws: None) -> Any:  # noqa: F811 - pytest fixture injection
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def run(tmp_path: Path, s3: Any, *extra: str) -> tuple[int, dict[str, Any]]:
    report_path = tmp_path / "report.json"
    status = main(
        ["--bucket", BUCKET, "--acks", str(tmp_path), "--wait", "0", "--json", str(report_path), *extra], s3=s3
    )
    return status, json.loads(report_path.read_text())


def test_payload_mode_everything_stored_means_nothing_lost(tmp_path: Path, s3: Any) -> None:
    # Given 2 acknowledged requests (3 + 2 payloads), all stored one object per payload
    moment = datetime.now(tz=UTC) - timedelta(milliseconds=300)
    write_acks(tmp_path, [("r1", 3), ("r2", 2)], rejected=1)
    for pid in ("r1-0", "r1-1", "r1-2", "r2-0", "r2-1"):
        s3.put_object(Bucket=BUCKET, Key=f"{partition(moment)}{pid}.json", Body=json.dumps(envelope(pid, moment)))
    # When the verifier runs
    status, report = run(tmp_path, s3)
    # Then it exits 0 and reports 5 stored, none lost or duplicated, with a latency
    assert status == 0
    assert (report["payloads_acknowledged"], report["payloads_stored"], report["lost"], report["duplicated"]) == (
        5,
        5,
        0,
        0,
    )
    assert (report["requests_acknowledged"], report["requests_not_acknowledged"]) == (2, 1)
    assert 0 <= report["latency_ms"]["p50"] <= 2500


def test_a_missing_payload_is_reported_lost_and_fails_the_run(tmp_path: Path, s3: Any) -> None:
    moment = datetime.now(tz=UTC)
    write_acks(tmp_path, [("r1", 3)])
    for pid in ("r1-0", "r1-2"):
        s3.put_object(Bucket=BUCKET, Key=f"{partition(moment)}{pid}.json", Body=json.dumps(envelope(pid, moment)))
    status, report = run(tmp_path, s3)
    assert status == 1
    assert (report["lost"], report["lost_sample"]) == (1, ["r1-1"])


def test_batch_objects_are_read_and_a_payload_in_two_objects_counts_as_duplicated(tmp_path: Path, s3: Any) -> None:
    # Given batch mode: r1-0..2 in one object, r1-2..3 in another (a regrouped redelivery),
    # plus payloads from an earlier run that this run did not acknowledge
    moment = datetime.now(tz=UTC)
    write_acks(tmp_path, [("r1", 4)])

    def batch(ids: list[str]) -> str:
        key = batch_object_key("payloads/", moment, ids)
        lines = {pid: json.dumps(envelope(pid, moment)).encode() + b"\n" for pid in ids}
        s3.put_object(Bucket=BUCKET, Key=key, Body=encode_batch_object(lines))
        return key

    first = batch(["r1-0", "r1-1", "r1-2"])
    second = batch(["r1-2", "r1-3", "old-0"])
    batch(["old-1"])
    # When the verifier runs
    status, report = run(tmp_path, s3)
    # Then all 4 are stored, one id is duplicated once, and the strangers are not counted as ours
    assert status == 0
    assert (report["payloads_stored"], report["lost"], report["duplicated"], report["extra_copies"]) == (4, 0, 1, 1)
    assert (report["objects"], report["objects_listed"], report["other_payloads"]) == (2, 3, 2)
    assert report["duplicated_sample"] == {"r1-2": sorted([first, second])}


def test_the_plot_is_a_png(tmp_path: Path, s3: Any) -> None:
    moment = datetime.now(tz=UTC)
    write_acks(tmp_path, [("r1", 1)])
    s3.put_object(Bucket=BUCKET, Key=f"{partition(moment)}r1-0.json", Body=json.dumps(envelope("r1-0", moment)))
    status, _ = run(tmp_path, s3, "--plot", str(tmp_path / "plot.png"))
    assert status == 0
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_latency_sample_still_counts_every_payload(tmp_path: Path, s3: Any) -> None:
    # Given 40 stored payloads and a latency sample of about 10
    moment = datetime.now(tz=UTC)
    write_acks(tmp_path, [("r1", 40)])
    for index in range(40):
        pid = f"r1-{index}"
        s3.put_object(Bucket=BUCKET, Key=f"{partition(moment)}{pid}.json", Body=json.dumps(envelope(pid, moment)))
    reads: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: reads.append(params["url_path"]))
    # When the verifier runs with --latency-sample 10
    status, report = run(tmp_path, s3, "--latency-sample", "10")
    # Then every payload is counted, none lost, yet only a share of the objects was read
    assert status == 0 and (report["payloads_stored"], report["lost"]) == (40, 0)
    assert 1 <= len(reads) < 40
    assert report["latency_ms"]["p50"] is not None


def test_the_dlq_depth_is_printed_when_asked(tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Given one payload lost from the bucket that sits in the DLQ
    dlq_url = boto3.client("sqs").create_queue(QueueName="verify-test-dlq")["QueueUrl"]
    boto3.client("sqs").send_message(QueueUrl=dlq_url, MessageBody="{}")
    write_acks(tmp_path, [("r1", 1)])
    # When the verifier runs with --dlq-url
    status, report = run(tmp_path, s3, "--dlq-url", dlq_url)
    # Then the payload is reported lost, and the DLQ's one message is shown
    assert status == 1 and report["lost"] == 1
    assert "DLQ        1 messages" in capsys.readouterr().out


def test_the_report_counts_the_devices_the_stored_payloads_carry(
    tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 3 acknowledged payloads stored with the deviceIds DEVICE_AUTH=on writes (2 devices)
    moment = datetime.now(tz=UTC) - timedelta(milliseconds=300)
    write_acks(tmp_path, [("r1", 2), ("r2", 1)])
    for pid, device in (("r1-0", "loadtest-0001"), ("r1-1", "loadtest-0001"), ("r2-0", "loadtest-0002")):
        body = {**envelope(pid, moment), "deviceId": device}
        s3.put_object(Bucket=BUCKET, Key=f"{partition(moment)}{pid}.json", Body=json.dumps(body))
    # When the verifier runs
    status, report = run(tmp_path, s3)
    # Then nothing is lost, and it says the payloads carry 2 devices' ids, none without one
    assert status == 0
    assert (report["device_ids"], report["payloads_without_device_id"]) == (2, 0)
    assert "devices    2 distinct deviceIds" in capsys.readouterr().out
