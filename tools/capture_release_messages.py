"""Capture what a release of the pipeline queues and stores, as an upgrade test fixture.

    python -m tools.capture_release_messages b5bce11                   # writes tests/fixtures/previous_release/
    python -m tools.capture_release_messages b5bce11 --out some/dir/

A release's consumer must store whatever the release before it left on the queue and in the DLQ
(README, "Keep old data readable"). This checks out ``lambdas/``, ``infra/``, ``local_pipeline/`` and
``cdk.json`` of the given git revision into a temporary directory and runs *that* revision's real
ingest handler (default profile, in-process moto SQS) on a fixed set of representative requests:
plain, with an Idempotency-Key, non-ASCII and emoji version and token, nested payloads, several
payloads (two SendMessageBatch calls), and an hour boundary. It writes:

* ``messages-<rev>.json``: the requests, and the messages the revision queued, as the event source
  mapping hands them to the consumer (the record shape of "Using Lambda with Amazon SQS", Example
  standard queue message event: https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html);
* ``objects-<rev>.json``: what that revision's consumer stored from those records, delivered as one
  batch, in each object mode (key, Content-Type, and the bytes: text for a payload object, the
  gzip stream's decompressed NDJSON and the gzip bytes for a batch object).

Request ids and receive times are fixed, so the bodies and keys are reproducible; SQS's message ids,
receipt handles and timestamps are moto's. The revision's code runs in a child process whose import
path starts with the checked-out tree; the child checks that it imported the revision's modules.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPOSITORY / "tests" / "fixtures" / "previous_release"
TREE = ("lambdas", "infra", "local_pipeline", "cdk.json")
API_KEY_ID = "fixture-api-key"  # API Gateway's apiKeyId: the client identity of Idempotency-Key ids

# 2026-11-26T23:59:59.000Z: the first three requests land in hour 23, the last two in the next day.
_LATE = 1_795_737_599_000
_NEXT_DAY = _LATE + 1_000

# What a client sends: (name, request id, receive time in ms, extra headers, body). Bodies are JSON
# text exactly as posted (non-ASCII written raw, as UTF-8).
REQUESTS: list[tuple[str, str, int, dict[str, str], str]] = [
    (
        "plain",
        "0f6bd0a2-5c1e-4d3b-9a57-1e2d3c4b5a60",
        _LATE + 123,
        {},
        json.dumps(
            {"version": "1.4.2", "token": "device-token-123", "data": [{"seq": i, "temp": 20.5 + i} for i in range(3)]}
        ),
    ),
    (
        "idempotency-key",
        "1a7ce1b3-6d2f-4e4c-8b68-2f3e4d5c6b71",
        _LATE + 456,
        {"Idempotency-Key": "order-7f3a-retry-safe"},
        json.dumps({"version": "1.4.2", "token": "device-token-456", "data": [{"seq": 0}, {"seq": 1, "ok": True}]}),
    ),
    (
        "non-ascii",
        "2b8df2c4-7e30-4f5d-9c79-3f4e5d6c7d82",
        _LATE + 999,
        {},
        json.dumps(
            {
                "version": "2.0-β🚀",
                "token": "tøken-✓-🔑",
                "data": [
                    {"city": "Zürich", "note": "naïve café ☕", "emoji": "👩‍💻🇨🇭"},
                    # JSON-escaped newline and tab, a raw line separator (U+2028) and NEL (U+0085):
                    # none may split an NDJSON line.
                    {"text": "line one\nline two\tend", "ls": "a\u2028b", "nel": "c\u0085d", "ctrl": "\u0001"},
                    {"escaped": "\\u00fc stays as sent", "quote": 'say "hi"', "slash": "a/b\\c"},
                ],
            },
            ensure_ascii=False,
        ),
    ),
    (
        "nested",
        "3c9e03d5-8f41-4a6e-8d8a-4a5f6e7d8e93",
        _NEXT_DAY + 1,
        {},
        json.dumps(
            {
                "version": "3",
                "token": "t",
                "data": [
                    {
                        "a": {"b": {"c": {"d": {"e": [1, [2, [3, {"f": None}]]]}}}},
                        "n": -0.0,
                        "big": 12345678901234567890,
                    },
                    {"list": [{"k": i, "v": [i, i * 1.5, str(i)]} for i in range(5)], "empty": {}, "none": []},
                ],
            }
        ),
    ),
    (
        "several",
        "4daf14e6-9052-4b7f-9e9b-5b6a7f8e9fa4",
        _NEXT_DAY + 2,
        {},
        json.dumps(
            {"version": "1.4.2", "token": "device-token-789", "data": [{"seq": i, "pad": "x" * i} for i in range(12)]}
        ),
    ),
]


def _record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A ReceiveMessage message as the event source mapping delivers it (Lambda's SQS record shape)."""
    attributes = {
        name: {
            "stringValue": value["StringValue"],
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": message["MD5OfBody"],
        "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def capture_in_this_process(tree: Path, out: Path, revision: str) -> None:
    """Run inside the child: the revision's ingest and consumer on moto; write both fixture files."""
    region = "us-east-1"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "POWERTOOLS_SERVICE_NAME": "capture",
            "POWERTOOLS_METRICS_NAMESPACE": "Capture",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws

    with mock_aws():
        import consumer_handler
        import ingest_handler
        from infra.config import PipelineConfig
        from local_pipeline.events import LambdaContext, api_gateway_event
        from local_pipeline.resources import create_resources, lambda_environment
        from pipeline import aws_clients, settings
        from pipeline.contract import PAYLOADS_PATH  # the revision's own path (b5bce11 has it)

        for module in (ingest_handler, consumer_handler, settings):
            if not str(module.__file__).startswith(str(tree)):
                raise SystemExit(f"imported {module.__file__}, not the revision's tree {tree}")
        sqs, s3 = boto3.client("sqs", region_name=region), boto3.client("s3", region_name=region)
        config = PipelineConfig()
        resources = create_resources(sqs, s3, config, name="capture")
        os.environ.update(lambda_environment(config, resources))

        requests = []
        for name, request_id, received_at_ms, extra_headers, body in REQUESTS:
            headers = {"Content-Type": "application/json", "x-api-key": "fixture", **extra_headers}
            event = api_gateway_event(
                "POST", PAYLOADS_PATH, body.encode("utf-8"), headers, request_id=request_id, api_key="fixture"
            )
            event["requestContext"]["requestTimeEpoch"] = received_at_ms
            event["requestContext"]["identity"]["apiKeyId"] = API_KEY_ID
            response = ingest_handler.lambda_handler(event, LambdaContext(function_name="ingest"))
            if response["statusCode"] != 202:
                raise SystemExit(f"request {name}: {response['statusCode']} {response['body']}")
            requests.append(
                {
                    "name": name,
                    "requestId": request_id,
                    "requestTimeEpoch": received_at_ms,
                    "apiKeyId": API_KEY_ID,
                    "headers": headers,
                    "body": body,
                    "response": json.loads(response["body"]),
                }
            )

        messages: list[dict[str, Any]] = []
        while batch := sqs.receive_message(
            QueueUrl=resources.queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", []):
            messages.extend(batch)
        records = [_record(message, resources.queue_arn, region) for message in messages]

        objects: dict[str, dict[str, Any]] = {}
        for mode in ("payload", "batch"):
            bucket = f"capture-{mode}"
            s3.create_bucket(Bucket=bucket)
            mode_config = PipelineConfig(OBJECT_MODE=mode)
            os.environ.update(mode_config.consumer_environment(bucket, resources.queue_url))
            for cached in (settings.consumer_settings, aws_clients.s3_client):
                cached.cache_clear()
            response = consumer_handler.lambda_handler({"Records": records}, LambdaContext(function_name="consumer"))
            if response.get("batchItemFailures"):
                raise SystemExit(f"{mode} mode: the consumer failed {response['batchItemFailures']}")
            objects[mode] = {}
            # OBJECT_PREFIX only: the fixture's hours are closed, so this release also writes late markers beside it
            for item in s3.list_objects_v2(Bucket=bucket, Prefix=mode_config.OBJECT_PREFIX).get("Contents", []):
                stored = s3.get_object(Bucket=bucket, Key=item["Key"])
                data = stored["Body"].read()
                entry: dict[str, Any] = {"contentType": stored["ContentType"]}
                if mode == "batch":
                    entry["ndjson"] = gzip.decompress(data).decode("utf-8")
                    entry["gzipBase64"] = base64.b64encode(data).decode("ascii")
                else:
                    entry["body"] = data.decode("utf-8")
                objects[mode][item["Key"]] = entry

    how = f"python -m tools.capture_release_messages {revision}"
    _write(
        out / f"messages-{revision}.json",
        {
            "release": revision,
            "capturedWith": how,
            "profile": "default (PipelineConfig())",
            "requests": requests,
            "records": records,
        },
    )
    _write(
        out / f"objects-{revision}.json",
        {"release": revision, "capturedWith": how, "storedFrom": f"messages-{revision}.json, as one batch", **objects},
    )


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def capture(revision: str, out: Path) -> None:
    """Check out ``revision``'s tree and run the capture against it in a child process."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"release-{revision}-") as scratch:
        tree = Path(scratch)
        archive = subprocess.run(
            ["git", "-C", str(REPOSITORY), "archive", "--format=tar", revision, *TREE],
            check=True,
            capture_output=True,
        ).stdout
        archive_path = tree / "release.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(tree, filter="data")
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "lambdas"), str(tree)])}
        subprocess.run(
            [sys.executable, __file__, "--child", str(tree), str(out.resolve()), revision],
            check=True,
            cwd=tree,
            env=environment,
            stdout=subprocess.DEVNULL,  # the handlers' log lines and EMF metrics
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.capture_release_messages", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("revision", help="a git revision of this repository (a release tag or commit)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"directory for the files (default {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    capture(args.revision, args.out)
    print(f"wrote {args.out / f'messages-{args.revision}.json'} and objects-{args.revision}.json")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        capture_in_this_process(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
        sys.exit(0)
    sys.exit(main())
