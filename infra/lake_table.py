"""The lake as a table: one definition for Athena (infra/query_construct.py) and DuckDB (tools/ops/query.py).

Imports no CDK, so `make query` starts fast. Columns are the envelope's fields (pipeline/envelope.py),
all strings; ``payload`` is the client's object as JSON text (query it with json_extract /
json_extract_scalar). ``dt`` and ``hour`` come from the object key (pipeline/contract.py partition_prefix).
"""

from __future__ import annotations

TABLE_NAME = "payloads"
DEDUP_VIEW_NAME = "payloads_dedup"
# The envelope's fields, in envelope order. Glue stores names in lower case; SQL identifiers are
# case-insensitive in Athena and DuckDB, so `requestId` works in both.
COLUMNS = ("id", "requestId", "receivedAt", "version", "token", "payload")
PARTITION_COLUMNS = ("dt", "hour")
# Partition values as written by pipeline/contract.py partition_prefix: dt=YYYY-MM-DD, hour=HH (UTC);
# tests/infra/test_query.py checks every projected partition against it.
DT_FORMAT_JAVA = "yyyy-MM-dd"  # Athena date projection format (java.time.format.DateTimeFormatter)
HOUR_DIGITS = 2

# One row per id: the copy received first (a retry in another hour partition, or a batch-mode
# payload regrouped into a second object, leaves two rows with one id). Ties have the same
# content (the same envelope line), so which one is kept does not matter. The same text runs on
# Athena (Trino) and DuckDB.
DEDUP_VIEW_SQL = (
    f"SELECT {', '.join(COLUMNS + PARTITION_COLUMNS)} FROM ("
    f"SELECT *, row_number() OVER (PARTITION BY id ORDER BY receivedAt, dt, hour) AS copy_number "
    f"FROM {TABLE_NAME}) WHERE copy_number = 1"
)

# Runs unchanged on Athena and on `make query` (README): payloads per hour partition, distinct ids.
EXAMPLE_SQL = (
    "SELECT dt, hour, count(*) AS payloads, count(DISTINCT id) AS ids FROM payloads GROUP BY dt, hour ORDER BY dt, hour"
)
