"""The lake as tables: one definition for Athena (infra/query_construct.py, infra/compaction_construct.py)
and DuckDB (tools/ops/query.py, tools/ops/compact.py).

Imports no CDK, so `make query` starts fast. Columns are the envelope's fields (pipeline/envelope.py),
all strings; ``payload`` is the client's object as JSON text (query it with json_extract /
json_extract_scalar); ``deviceId`` is NULL where the envelope has none (DEVICE_AUTH=off, and every
object written before it existed). ``dt`` and ``hour`` come from the object key
(pipeline/contract.py partition_prefix).

- ``payloads``: the raw lake, every stored envelope (gzip NDJSON or one JSON object each).
- ``payloads_compacted``: one row per payload id, Parquet (zstd), one directory per hour and run:
  ``compacted/dt=YYYY-MM-DD/hour=HH/run=<run id>/``. Each run rewrites one hour from the raw lake
  (``compaction_select``) into a fresh run directory; the table's partition then points at it.
- ``payloads_dedup``: one row per id over the raw lake, for small lakes (it scans everything).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# The consumer's late markers (one zero-byte object per object stored into a closed hour, late/dt=../hour=../):
# the key layout is the consumer's (pipeline/contract.py late_marker_key), which cannot import infra/.
from pipeline.contract import LATE_MARKER_NAME_CHARS as LATE_MARKER_NAME_CHARS
from pipeline.contract import LATE_MARKER_PREFIX as LATE_MARKER_PREFIX

TABLE_NAME = "payloads"
DEDUP_VIEW_NAME = "payloads_dedup"
COMPACTED_TABLE_NAME = "payloads_compacted"
# The envelope's fields, in envelope order. Glue stores names in lower case; SQL identifiers are
# case-insensitive in Athena and DuckDB, so `requestId` works in both.
COLUMNS = ("id", "requestId", "receivedAt", "version", "token", "deviceId", "payload")
PARTITION_COLUMNS = ("dt", "hour")
# Partition values as written by pipeline/contract.py partition_prefix: dt=YYYY-MM-DD, hour=HH (UTC);
# tests/infra/test_query.py checks every projected partition against it.
DT_FORMAT_JAVA = "yyyy-MM-dd"  # Athena date projection format (java.time.format.DateTimeFormatter)
HOUR_DIGITS = 2

# The compacted lake sits beside the raw OBJECT_PREFIX in the payload bucket (infra/config.py refuses an
# OBJECT_PREFIX inside it). An hour's files: {COMPACTED_PREFIX}dt=YYYY-MM-DD/hour=HH/run=<run id>/<file>.
COMPACTED_PREFIX = "compacted/"
RUN_KEY = "run"
# A run id sorts by the time the run started: 20261126T033000Z_1a2b3c4d.
RUN_ID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
PARQUET_COMPRESSION = "ZSTD"

# One row per id: the copy received first (a retry in another hour partition, or a batch-mode
# payload regrouped into a second object, leaves two rows with one id). Ties have the same
# content (the same envelope line), so which one is kept does not matter. The same text runs on
# Athena (Trino) and DuckDB. It ranks every row of the table: a filter on dt or hour is not pushed
# below the window, so every query over it scans the whole raw lake (small lakes only).
DEDUP_VIEW_SQL = (
    f"SELECT {', '.join(COLUMNS + PARTITION_COLUMNS)} FROM ("
    f"SELECT *, row_number() OVER (PARTITION BY id ORDER BY receivedAt, dt, hour) AS copy_number "
    f"FROM {TABLE_NAME}) WHERE copy_number = 1"
)

# Runs unchanged on Athena and on `make query` (docs/QUERYING.md): payloads per hour partition, distinct ids.
EXAMPLE_SQL = (
    "SELECT dt, hour, count(*) AS payloads, count(DISTINCT id) AS ids FROM payloads GROUP BY dt, hour ORDER BY dt, hour"
)


def hour_key(moment: datetime) -> str:
    """``2026-11-26-02``: an hour as dt || '-' || hour compares it in SQL (text order is time order)."""
    return f"{moment:%Y-%m-%d-%H}"


@dataclass(frozen=True)
class CompactionWindow:
    """What one compaction run of one hour reads: the raw hour ``dt``/``hour``. ``first``..``last`` (hour keys,
    COMPACTION_LOOKBACK_HOURS either side) and ``first_dt``/``last_dt`` named the compacted hours whose ids a run
    did not add again; since every copy of an id is in one hour (issue 26, item 8) compaction_select reads none
    of them. The state machine still fills them in; they can go with it."""

    dt: str
    hour: str
    first: str
    last: str
    first_dt: str
    last_dt: str

    @classmethod
    def around(cls, hour: datetime, lookback_hours: int) -> CompactionWindow:
        start = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        first, last = start - timedelta(hours=lookback_hours), start + timedelta(hours=lookback_hours)
        return cls(
            dt=f"{start:%Y-%m-%d}",
            hour=f"{start:%H}",
            first=hour_key(first),
            last=hour_key(last),
            first_dt=f"{first:%Y-%m-%d}",
            last_dt=f"{last:%Y-%m-%d}",
        )

    @classmethod
    def placeholders(cls) -> CompactionWindow:
        """Every field as ``{name}``: the SQL template the state machine fills in at run time."""
        return cls(**{name: "{" + name + "}" for name in cls.__dataclass_fields__})


def compaction_select(window: CompactionWindow) -> str:
    """The rows of one compacted hour, in Athena's dialect and DuckDB's alike: one row per id of the raw
    hour (the first received; ties are identical envelopes, ordered on every column so a re-run picks
    the same row). It reads the raw hour's own partition and nothing else: every copy of an id lands in
    one hour partition (a keyed request's id covers its partition hour, and its retries are partitioned
    by their first attempt: pipeline/idempotency.py), so no other hour can hold it, and a run's work is
    bounded by the hour's own data, not by the ids of the hours around it (docs/LAKE.md). The lookback
    fields of ``window`` are not read (the state machine still fills them in)."""
    w = window
    columns = ", ".join(COLUMNS)
    return (
        f"SELECT {columns} FROM ("
        f"SELECT {columns}, row_number() OVER (PARTITION BY id ORDER BY {columns}) AS copy_number "
        f"FROM {TABLE_NAME} WHERE dt = '{w.dt}' AND hour = '{w.hour}'"
        f") WHERE copy_number = 1"
    )


def run_prefix(dt: str, hour: str, run_id: str) -> str:
    """``compacted/dt=YYYY-MM-DD/hour=HH/run=<run id>/``: one run's files for one hour."""
    return f"{hour_prefix(dt, hour)}{RUN_KEY}={run_id}/"


def hour_prefix(dt: str, hour: str) -> str:
    """``compacted/dt=YYYY-MM-DD/hour=HH/``: every run of one hour."""
    return f"{COMPACTED_PREFIX}dt={dt}/hour={hour}/"


# --- the statements one Athena compaction run executes (infra/compaction_construct.py) -----------------
# CTAS writes one file per bucket: bucketing by id is what fixes the number of files an hour gets (Athena
# User Guide, "What is bucketing?": "In practice, the buckets are files"), where an unbucketed CTAS writes
# as many as Athena's writers happen to be. 32 files of ~3 GB per hour at the seed's 100 GB of gzip per
# hour; Athena and Spark split a Parquet file by row group, so large files cost nothing in parallelism.
# At most 100: a statement may hold 100 open writers ("Exceeded limit of 100 open writers for
# partitions/buckets", "Use CTAS and INSERT INTO to work around the 100 partition limit").
COMPACTED_BUCKETS = 32


def ctas_sql(window: CompactionWindow, table: str, location: str, buckets: int = COMPACTED_BUCKETS) -> str:
    """CREATE TABLE AS the hour's rows, Parquet zstd, into ``location``: a fresh run directory (a CTAS
    location must be empty: Athena, "Considerations and limitations for CTAS queries"). ``table`` is a
    scratch table the run drops once the partition points at ``location``."""
    return (
        f"CREATE TABLE {table} WITH (format = 'PARQUET', write_compression = '{PARQUET_COMPRESSION}', "
        f"external_location = '{location}', bucketed_by = ARRAY['id'], bucket_count = {buckets}) AS "
        + compaction_select(window)
    )


def add_partition_sql(window: CompactionWindow, location: str) -> str:
    """Register the hour if it is new (a re-run finds it there and leaves it alone)."""
    return (
        f"ALTER TABLE {COMPACTED_TABLE_NAME} ADD IF NOT EXISTS PARTITION (dt = '{window.dt}', hour = '{window.hour}') "
        f"LOCATION '{location}'"
    )


def switch_partition_sql(window: CompactionWindow, location: str) -> str:
    """Point the hour at ``location``: one catalog update, so a query reads the old run or the new one,
    never both ("ALTER TABLE SET LOCATION", Athena User Guide)."""
    return (
        f"ALTER TABLE {COMPACTED_TABLE_NAME} PARTITION (dt = '{window.dt}', hour = '{window.hour}') "
        f"SET LOCATION '{location}'"
    )


def drop_scratch_table_sql(table: str) -> str:
    """Drop the CTAS scratch table: its metadata only, the files stay (an external table)."""
    return f"DROP TABLE IF EXISTS {table}"


# --- late markers: hours whose compacted partition may lag their raw objects ---------------------------
# A zero-byte object per marked event, in the payload bucket: late/dt=YYYY-MM-DD/hour=HH/<32 hex chars>.
# The consumer writes one after it stores an object into an hour whose scheduled run may have read that hour
# already (stored COMPACTION_GRACE_MINUTES, less a margin, after the hour closed: infra/config.py
# late_marker_after_seconds); after the object, so a run that lists the marker before its CTAS reads the object.
# A compaction run of an hour writes one for itself before its CTAS and deletes it when the run's clean-up is
# done, so an hour whose run failed or was aborted is marked too. Each scheduled run compacts every marked hour;
# a run of hour H lists H's markers before its CTAS and, after its partition switch, deletes exactly those (a
# marker written during the run survives, and the next run compacts H again). infra/compaction_construct.py
# reads them.


def late_marker_hour_prefix(dt: str, hour: str) -> str:
    """``late/dt=YYYY-MM-DD/hour=HH/``: the late markers of one hour."""
    return f"{LATE_MARKER_PREFIX}dt={dt}/hour={hour}/"
