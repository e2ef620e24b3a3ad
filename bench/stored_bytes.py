"""S1/S2: what a payload costs to keep, measured on real objects of telemetry-like payloads.

S1: the real consumer (OBJECT_MODE=batch) writes gzip NDJSON batch objects of BATCH payloads; the
PutObject bodies are captured in-process and compared with the envelopes they hold: stored bytes per
payload and the compression ratio. S2: the same envelopes written as Parquet (zstd) in the compacted
table's columns and in the order Athena's CTAS leaves them (bucketed by id, so hashed: bench Q1 says why),
with the compressed bytes of each column per payload: what Athena scans when a query reads one column.

The payloads are tools.models.sample_payloads' seeded sensor readings, not the other benches' "x"
padding (which gzip shrinks more than 50-fold). Inputs to tools.models.cost, not goals:
`python -m bench S1` prints both.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.common import figure, prepare_environment
from infra.config import PipelineConfig
from pipeline.contract import LATE_MARKER_PREFIX

REQUESTS = 2000  # x 10 payloads: ten batch objects of 2,000 payloads
PAYLOADS = 10
PAYLOAD_BYTES = 1024
BATCH = 2000  # payloads per batch object (PROFILE=scale: 200 messages of 10 payloads)
# The compacted table's columns (brief decision 3/4): the envelope's fields, payload as JSON text.
PARQUET_COLUMNS = {
    "id": "VARCHAR",
    "requestId": "VARCHAR",
    "receivedAt": "TIMESTAMP",
    "version": "VARCHAR",
    "token": "VARCHAR",
    "deviceId": "VARCHAR",
    "payload": "JSON",
}


def _messages(requests: int) -> list[dict[str, Any]]:
    """ReceiveMessage-shaped messages carrying the ingest's own envelopes of telemetry-like payloads."""
    from pipeline.collection import PayloadCollection
    from pipeline.contract import REQUEST_ID_ATTRIBUTE
    from pipeline.envelope import build_messages
    from tools.models.sample_payloads import VERSION, telemetry_requests

    messages: list[dict[str, Any]] = []
    received_at_ms = 1_764_115_200_000
    # a fleet far larger than the sample: nearly every request comes from another device, as at scale
    for token, payloads in telemetry_requests(requests, PAYLOADS, PAYLOAD_BYTES, devices=100 * requests):
        request_id = str(uuid.uuid4())
        received_at_ms += 3
        for message in build_messages(PayloadCollection(VERSION, token, payloads), request_id, received_at_ms):
            messages.append(
                {
                    "MessageId": str(uuid.uuid4()),
                    "ReceiptHandle": f"rh-{len(messages)}",
                    "Body": message.body,
                    "Attributes": {"ApproximateReceiveCount": "1"},
                    "MessageAttributes": {REQUEST_ID_ATTRIBUTE: {"DataType": "String", "StringValue": request_id}},
                }
            )
    return messages


def stored_batch_objects(requests: int = REQUESTS) -> list[bytes]:
    """The objects the real consumer PUTs for ``requests`` x PAYLOADS payloads, BATCH per invocation."""
    from bench.fake_aws import FakeAws
    from local_pipeline.events import LambdaContext, sqs_event
    from pipeline import aws_clients, settings

    prepare_environment(PipelineConfig(OBJECT_MODE="batch"))
    settings.consumer_settings.cache_clear()
    aws_clients.s3_client.cache_clear()
    import consumer_handler

    client = aws_clients.s3_client(settings.consumer_settings().UPLOAD_CONCURRENCY)
    FakeAws(client)
    bodies: list[bytes] = []

    def keep_object(params: dict[str, Any], **_: Any) -> None:
        if not params["Key"].startswith(LATE_MARKER_PREFIX):  # the sample's hour is closed: its markers are no data
            bodies.append(bytes(params["Body"]))

    client.meta.events.register("before-parameter-build.s3.PutObject", keep_object)
    messages = _messages(requests)
    for start in range(0, len(messages), BATCH):
        event = sqs_event(messages[start : start + BATCH], "arn:aws:sqs:us-east-1:123456789012:bench-queue")
        response = consumer_handler.lambda_handler(event, LambdaContext(function_name="consumer"))
        if response.get("batchItemFailures"):
            raise RuntimeError("the consumer reported failures")
    prepare_environment()
    settings.consumer_settings.cache_clear()
    aws_clients.s3_client.cache_clear()
    return bodies


def parquet_column_bytes(ndjson: bytes) -> tuple[int, dict[str, int]]:
    """Rows and the zstd-compressed bytes of each column when these envelopes are written as Parquet."""
    import duckdb

    with tempfile.TemporaryDirectory() as directory:
        source, target = Path(directory) / "envelopes.ndjson", Path(directory) / "compacted.parquet"
        source.write_bytes(ndjson)
        connection = duckdb.connect()
        columns = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in PARQUET_COLUMNS.items()) + "}"
        # In Athena's file order: its CTAS buckets by id and ignores ORDER BY (infra/lake_table.py, bench Q1),
        # so ids come hashed, not grouped by request as they arrive.
        connection.execute(
            f"COPY (SELECT * REPLACE (CAST(payload AS VARCHAR) AS payload) FROM read_json('{source}', "
            f"format='newline_delimited', columns={columns}) ORDER BY hash(id)) TO '{target}' "
            "(FORMAT PARQUET, COMPRESSION ZSTD)"
        )
        rows = connection.execute(f"SELECT count(*) FROM '{target}'").fetchone()
        sizes = connection.execute(
            f"SELECT path_in_schema, sum(total_compressed_size) FROM parquet_metadata('{target}') GROUP BY 1"
        ).fetchall()
        connection.close()
    return int(rows[0]) if rows else 0, {str(name): int(size) for name, size in sizes}


def run(requests: int = REQUESTS) -> list[dict[str, Any]]:
    objects = stored_batch_objects(requests)
    ndjson = b"\n".join(gzip.decompress(body) for body in objects)
    payloads = sum(1 for line in ndjson.splitlines() if line.strip())
    raw, stored = sum(len(gzip.decompress(body)) for body in objects), sum(len(body) for body in objects)
    rows, columns = parquet_column_bytes(ndjson)
    if rows != payloads:
        raise RuntimeError(f"Parquet holds {rows} rows for {payloads} payloads")
    parquet = sum(columns.values())
    envelope = json.loads(ndjson.splitlines()[0])
    return [
        figure(
            "S1",
            f"stored: gzip NDJSON batch objects of {BATCH:,} telemetry-like payloads ({PAYLOAD_BYTES} B each)",
            raw / stored,
            "x compression (envelope bytes / stored bytes)",
            "input to tools.models.cost",
            True,
            payloads=payloads,
            objects=len(objects),
            envelope_bytes_per_payload=round(raw / payloads, 1),
            stored_bytes_per_payload=round(stored / payloads, 1),
            envelope_keys=list(envelope),
        ),
        figure(
            "S2",
            "compacted: Parquet (zstd) bytes per payload, the same envelopes, by column",
            parquet / payloads,
            "B/payload",
            "input to tools.models.cost",
            True,
            payloads=payloads,
            ratio_to_envelope=round(raw / parquet, 2),
            column_bytes_per_payload={name: round(size / payloads, 2) for name, size in sorted(columns.items())},
        ),
    ]
