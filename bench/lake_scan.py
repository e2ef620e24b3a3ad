"""Q1: what Athena reads for "payloads per token in one hour", raw gzip NDJSON vs payloads_compacted.

One hour of realistic telemetry (device readings with nested fields and per-device drift, 10 payloads per
request, the envelope the ingest writes, deviceId set) is written as OBJECT_MODE=batch objects of 100
envelopes (gzip level 6, as the consumer writes them), then compacted by the same SQL `make compact` runs
(infra/lake_table.py compaction_select) into Parquet zstd.

Bytes read are what Athena bills ("Amazon Athena pricing": bytes scanned, and for columnar formats only
the columns a query reads): a query over gzip NDJSON reads every byte of every object of the hour; over
Parquet it reads the chunks of the columns it names plus each file's footer (from the Parquet metadata).
"""

from __future__ import annotations

import gzip
import json
import random
import struct
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from infra.lake_table import COMPACTED_BUCKETS, COMPACTED_PREFIX, CompactionWindow, compaction_select
from pipeline.contract import GZIP_LEVEL, batch_object_key, format_received_at
from tools.ops.query import open_lake

HOUR = datetime(2026, 11, 26, 2, tzinfo=UTC)
REQUESTS = 3_000
PAYLOADS_PER_REQUEST = 10
BATCH_SIZE = 100  # the consumer's default BATCH_SIZE: envelopes per batch object
DEVICES = 1_000
GOAL = 10.0
Q1_SQL = "SELECT token, count(*) AS payloads FROM {table} WHERE dt = '2026-11-26' AND hour = '02' GROUP BY token"
FIELD_SQL = (
    "SELECT round(CAST(json_extract_scalar(payload, '$.temp') AS double)) AS temp, count(*) AS payloads "
    "FROM {table} WHERE dt = '2026-11-26' AND hour = '02' GROUP BY 1"
)


def _reading(rng: random.Random, device: int, moment: datetime) -> dict[str, Any]:
    base = 18 + device % 10
    return {
        "ts": format_received_at(int(moment.timestamp() * 1000)),
        "temp": round(base + rng.gauss(0, 1.5), 2),
        "humidity": round(40 + device % 30 + rng.gauss(0, 3), 1),
        "pressure": round(1013 + rng.gauss(0, 4), 1),
        "battery": round(3.0 + (device % 12) / 10 - rng.random() * 0.05, 3),
        "rssi": -40 - rng.randrange(50),
        "status": rng.choices(["ok", "ok", "ok", "degraded", "charging"])[0],
        "location": {"lat": round(48.1 + (device % 97) / 1000, 5), "lon": round(11.5 + (device % 89) / 1000, 5)},
        "sensors": [{"kind": kind, "value": round(rng.random() * 100, 2)} for kind in ("co2", "voc", "pm25")],
    }


def envelopes(seed: int = 20) -> list[dict[str, Any]]:
    """REQUESTS requests of PAYLOADS_PER_REQUEST readings each, spread over the hour."""
    rng = random.Random(seed)
    out = []
    for _ in range(REQUESTS):
        device = rng.randrange(DEVICES)
        moment = HOUR + timedelta(milliseconds=rng.randrange(3_600_000))
        request_id = f"{rng.getrandbits(128):032x}"
        request_id = "-".join((request_id[:8], request_id[8:12], request_id[12:16], request_id[16:20], request_id[20:]))
        for index in range(PAYLOADS_PER_REQUEST):
            out.append(
                {
                    "id": f"{request_id}-{index}",
                    "requestId": request_id,
                    "receivedAt": format_received_at(int(moment.timestamp() * 1000)),
                    "version": "1.4.2",
                    "token": f"device-{device:05d}",
                    "deviceId": f"dev-{device:05d}",
                    "payload": _reading(rng, device, moment - timedelta(seconds=10 * (PAYLOADS_PER_REQUEST - index))),
                }
            )
    return out


def _footer_bytes(path: Path) -> int:
    data = path.read_bytes()
    return struct.unpack("<I", data[-8:-4])[0] + 8


def _column_bytes(connection: Any, path: Path, column: str) -> int:
    [(size,)] = connection.execute(
        "SELECT sum(total_compressed_size) FROM parquet_metadata(?) WHERE path_in_schema = ?", [str(path), column]
    ).fetchall()
    return int(size)


def run() -> list[dict[str, Any]]:
    lines = envelopes()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        raw_bytes, raw_objects = 0, 0
        for start in range(0, len(lines), BATCH_SIZE):
            batch = lines[start : start + BATCH_SIZE]
            key = batch_object_key("payloads/", HOUR, [e["id"] for e in batch])
            body = gzip.compress(b"\n".join(json.dumps(e, separators=(",", ":")).encode() for e in batch), GZIP_LEVEL)
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(body)
            raw_bytes += len(body)
            raw_objects += 1
        connection = open_lake(root / "payloads", root / COMPACTED_PREFIX)
        select = compaction_select(CompactionWindow.around(HOUR, 24))
        sorted_file, unsorted_file = root / "sorted.parquet", root / "unsorted.parquet"
        # `make compact` sorts by id; Athena's CTAS ignores ORDER BY, so its files come in any order.
        connection.execute(f"COPY ({select} ORDER BY id) TO '{sorted_file}' (FORMAT parquet, COMPRESSION zstd)")
        connection.execute(f"COPY ({select} ORDER BY hash(id)) TO '{unsorted_file}' (FORMAT parquet, COMPRESSION zstd)")
        rows = len(lines)
        parquet_bytes = sorted_file.stat().st_size
        footer = _footer_bytes(sorted_file)
        q1_parquet = _column_bytes(connection, sorted_file, "token") + footer
        field_parquet = _column_bytes(connection, sorted_file, "payload") + footer
        id_sorted = _column_bytes(connection, sorted_file, "id")
        id_unsorted = _column_bytes(connection, unsorted_file, "id")
        # The same answers from both tables: the compacted file stands in for the hour's partition.
        connection.execute(
            "CREATE VIEW compacted_hour AS SELECT *, '2026-11-26' AS dt, '02' AS hour "
            f"FROM read_parquet('{sorted_file}')"
        )
        for sql in (Q1_SQL, FIELD_SQL):
            raw_answer = sorted(connection.execute(sql.format(table="payloads")).fetchall(), key=str)
            compacted_answer = sorted(connection.execute(sql.format(table="compacted_hour")).fetchall(), key=str)
            assert raw_answer == compacted_answer, sql
    ratio = raw_bytes / q1_parquet
    return [
        {
            "figure": "Q1",
            "what": "payloads per token in one hour: bytes read, raw gzip NDJSON / Parquet (zstd)",
            "payloads": rows,
            "raw_bytes_read": raw_bytes,
            "parquet_bytes_read": q1_parquet,
            "ratio": round(ratio, 1),
            "goal": f">= {GOAL:.0f}x",
            "met": ratio >= GOAL,
        },
        {
            "figure": "Q1-payload-field",
            "what": "a query on a payload field (json_extract_scalar(payload, '$.temp')): bytes read, raw / Parquet",
            "raw_bytes_read": raw_bytes,
            "parquet_bytes_read": field_parquet,
            "ratio": round(raw_bytes / field_parquet, 2),
        },
        {
            "figure": "Q1-objects",
            "what": "objects per hour partition: raw (batch mode, 100 per object; payload mode: one each) vs compacted",
            "raw_objects_batch_mode": raw_objects,
            "raw_objects_payload_mode": rows,
            "compacted_objects_local": 1,
            "compacted_objects_athena": COMPACTED_BUCKETS,
        },
        {
            "figure": "Q1-compression",
            "what": "stored bytes per payload: gzip NDJSON batch objects vs the whole Parquet (zstd) file",
            "raw_bytes_per_payload": round(raw_bytes / rows, 1),
            "parquet_bytes_per_payload": round(parquet_bytes / rows, 1),
            "ratio": round(raw_bytes / parquet_bytes, 2),
            "id_column_bytes_per_payload_sorted": round(id_sorted / rows, 2),
            "id_column_bytes_per_payload_unsorted": round(id_unsorted / rows, 2),
        },
    ]
