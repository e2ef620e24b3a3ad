"""The lake as a table in AWS: a Glue database and table with partition projection, a dedup view,
and an Athena workgroup with an encrypted, expiring results bucket. No crawler, no MSCK REPAIR.

- Partition projection: Athena computes the dt=/hour= partitions from table properties, so new
  hours are queryable at once ("Partition projection with Amazon Athena", "Supported types for
  partition projection" in the Athena User Guide: date type with format and range, integer type
  with range and digits, storage.location.template with ${column} placeholders).
- SerDe: the OpenX JSON SerDe reads one JSON document per line ("OpenX JSON SerDe"); a payload
  object is one compact line and a batch object is gzip NDJSON, which Athena decompresses by the
  .gz extension ("Compression support in Athena": GZIP for text/JSON files). Keys match columns
  case-insensitively (requestId -> requestid). A `string` column over a nested object holds that
  object rendered back to compact JSON: ``payload`` (Trino's OpenX JSON reader, which Athena engine
  3 builds on: lib/trino-hive-formats/.../line/openxjson/README.md, "VARCHAR and CHAR").
- Date range: from the first day this pipeline could have written to NOW; projected dates are UTC
  ("How to use the date type": start at the data's creation date, end at NOW).
- The dedup view is a Glue table of type VIRTUAL_VIEW carrying a base64 "Presto View" document,
  the form Athena itself writes for CREATE VIEW; CloudFormation has no Athena view resource.
"""

from __future__ import annotations

import base64
import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import PipelineConfig
from infra.lake_table import (
    COLUMNS,
    COMPACTED_PREFIX,
    COMPACTED_TABLE_NAME,
    DEDUP_VIEW_NAME,
    DEDUP_VIEW_SQL,
    DT_FORMAT_JAVA,
    HOUR_DIGITS,
    PARTITION_COLUMNS,
    TABLE_NAME,
)
from infra.storage_construct import bucket_removal_policy

# Query results are re-runnable and can hold payload data: keep them a week.
RESULTS_EXPIRATION_DAYS = 7
# QUERY_SCAN_LIMIT_GB in bytes: the console and the pricing page count GB and TB in powers of ten.
BYTES_PER_GB = 10**9


def athena_workgroup(
    scope: Construct,
    name: str,
    description: str,
    output_location: str,
    scan_cutoff_bytes: int | None,
    *,
    enforce: bool = True,
) -> athena.CfnWorkGroup:
    """An Athena engine 3 workgroup: results to ``output_location``, SSE-S3 encrypted, CloudWatch metrics on,
    and each query cancelled past ``scan_cutoff_bytes`` (None: no cutoff). With ``enforce`` (the analysts'
    workgroup) clients cannot override these settings. Without it (the compaction's), a statement's own
    location stands: Athena puts a CTAS table of an enforcing workgroup under the workgroup's results
    location, ``tables/<query id>/``, and only a workgroup that does not override client-side settings lets
    a CTAS name its ``external_location`` (Athena User Guide, "Considerations and limitations for CTAS
    queries"; "Override client-side settings": a query that sets no client-side settings of its own still
    gets the workgroup's results location and encryption)."""
    return athena.CfnWorkGroup(
        scope,
        "WorkGroup",
        name=name,
        description=description,
        recursive_delete_option=True,
        work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
            enforce_work_group_configuration=enforce,
            publish_cloud_watch_metrics_enabled=True,
            bytes_scanned_cutoff_per_query=scan_cutoff_bytes,
            engine_version=athena.CfnWorkGroup.EngineVersionProperty(selected_engine_version="Athena engine version 3"),
            result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                output_location=output_location,
                encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                    encryption_option="SSE_S3"
                ),
            ),
        ),
    )


# Nothing is stored before this pipeline existed; later dates are generated up to today (UTC).
# Filter on dt to prune: a query without it lists every hour since this date.
DT_RANGE_START = "2026-01-01"


def presto_view_text(sql: str, database: str, columns: list[str]) -> str:
    """The ViewOriginalText Athena writes for CREATE VIEW: a base64 JSON document in a comment."""
    document = {
        "originalSql": sql,
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": [{"name": name, "type": "varchar"} for name in columns],
    }
    return "/* Presto View: " + base64.b64encode(json.dumps(document).encode()).decode() + " */"


class PayloadQuery(Construct):
    """Glue database + `payloads` table + `payloads_dedup` view + Athena workgroup, and a managed
    policy that grants exactly what querying needs: read the data and catalog, run queries in this
    workgroup, write and read its results."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        bucket: s3.IBucket,
        access_log_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        stage = config.STAGE.lower()
        self.database_name = f"ingest_pipeline_{stage.replace('-', '_')}"
        self.table_name = TABLE_NAME
        self.view_name = DEDUP_VIEW_NAME
        self.workgroup_name = f"ingest-pipeline-{stage}"
        location = f"s3://{bucket.bucket_name}/{config.OBJECT_PREFIX}"
        # Athena's form of pipeline/contract.py partition_prefix (tests/infra/test_query.py holds them equal).
        self.location_template = location + "dt=${dt}/hour=${hour}/"

        database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name, description="The ingest pipeline's payloads (docs/QUERYING.md)"
            ),
        )
        string = [glue.CfnTable.ColumnProperty(name=name.lower(), type="string") for name in COLUMNS]
        partitions = [glue.CfnTable.ColumnProperty(name=name, type="string") for name in PARTITION_COLUMNS]
        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=stack.account,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=TABLE_NAME,
                description="One row per stored envelope, both object modes (.json and gzip NDJSON)",
                table_type="EXTERNAL_TABLE",
                partition_keys=partitions,
                parameters={
                    "EXTERNAL": "TRUE",
                    "classification": "json",
                    "projection.enabled": "true",
                    "projection.dt.type": "date",
                    "projection.dt.format": DT_FORMAT_JAVA,
                    "projection.dt.range": f"{DT_RANGE_START},NOW",
                    "projection.dt.interval": "1",
                    "projection.dt.interval.unit": "DAYS",
                    "projection.hour.type": "integer",
                    "projection.hour.range": "0,23",
                    "projection.hour.digits": str(HOUR_DIGITS),
                    "storage.location.template": self.location_template,
                },
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=string,
                    location=location,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe",
                        # A malformed line fails the query rather than vanishing from the counts.
                        parameters={"ignore.malformed.json": "false"},
                    ),
                ),
            ),
        )
        self.table.node.add_dependency(database)
        view_columns = [name.lower() for name in COLUMNS + PARTITION_COLUMNS]
        self.view = glue.CfnTable(
            self,
            "DedupView",
            catalog_id=stack.account,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=DEDUP_VIEW_NAME,
                description="payloads with one row per id (read-side exactly-once)",
                table_type="VIRTUAL_VIEW",
                parameters={"presto_view": "true", "comment": "Presto View"},
                view_original_text=presto_view_text(DEDUP_VIEW_SQL, self.database_name, view_columns),
                view_expanded_text="/* Presto View */",
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[glue.CfnTable.ColumnProperty(name=name, type="string") for name in view_columns],
                    serde_info=glue.CfnTable.SerdeInfoProperty(),
                ),
            ),
        )
        self.view.node.add_dependency(self.table)
        self.compacted_table: glue.CfnTable | None = None
        if config.COMPACTION == "on":
            self.compacted_table = self._compacted_table(stack, bucket, partitions)
            self.compacted_table.node.add_dependency(database)

        destroy = config.DESTROY_ON_REMOVE
        self.results_bucket = s3.Bucket(
            self,
            "Results",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            server_access_logs_bucket=access_log_bucket,
            server_access_logs_prefix="athena-results/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(RESULTS_EXPIRATION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=bucket_removal_policy(config),
            auto_delete_objects=destroy,
        )
        # A query that would scan more than QUERY_SCAN_LIMIT_GB is cancelled (billed for what it scanned until then).
        self.workgroup = athena_workgroup(
            self,
            self.workgroup_name,
            "Queries over the ingest pipeline's payloads",
            f"s3://{self.results_bucket.bucket_name}/",
            config.QUERY_SCAN_LIMIT_GB * BYTES_PER_GB,
        )
        self.reader_policy = self._reader_policy(stack, bucket, config.OBJECT_PREFIX)

    def _compacted_table(
        self, stack: Stack, bucket: s3.IBucket, partitions: list[glue.CfnTable.ColumnProperty]
    ) -> glue.CfnTable:
        """payloads_compacted: Parquet, partitions registered by each compaction run (ALTER TABLE ... ADD
        PARTITION / SET LOCATION), not projected: a projected location is a fixed template, and each run
        writes a fresh directory (infra/compaction_construct.py)."""
        return glue.CfnTable(
            self,
            "CompactedTable",
            catalog_id=stack.account,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=COMPACTED_TABLE_NAME,
                description="One row per payload id, Parquet (zstd), compacted hourly from the raw lake",
                table_type="EXTERNAL_TABLE",
                partition_keys=partitions,
                parameters={"EXTERNAL": "TRUE", "classification": "parquet", "parquet.compression": "ZSTD"},
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[glue.CfnTable.ColumnProperty(name=name.lower(), type="string") for name in COLUMNS],
                    location=f"s3://{bucket.bucket_name}/{COMPACTED_PREFIX}",
                    input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                    ),
                ),
            ),
        )

    def _reader_policy(self, stack: Stack, bucket: s3.IBucket, prefix: str) -> iam.ManagedPolicy:
        catalog = stack.format_arn(service="glue", resource="catalog")
        database = stack.format_arn(service="glue", resource="database", resource_name=self.database_name)
        tables = [
            stack.format_arn(service="glue", resource="table", resource_name=f"{self.database_name}/{name}")
            for name in (TABLE_NAME, DEDUP_VIEW_NAME) + ((COMPACTED_TABLE_NAME,) if self.compacted_table else ())
        ]
        prefixes = [prefix] + ([COMPACTED_PREFIX] if self.compacted_table else [])
        workgroup = stack.format_arn(service="athena", resource="workgroup", resource_name=self.workgroup_name)
        description = "Query the payloads with Athena: read only"
        return iam.ManagedPolicy(
            self,
            "ReaderPolicy",
            description=description,
            statements=[
                iam.PolicyStatement(
                    sid="RunQueriesInTheWorkgroup",
                    resources=[workgroup],
                    actions=[
                        "athena:StartQueryExecution",
                        "athena:StopQueryExecution",
                        "athena:GetQueryExecution",
                        "athena:GetQueryResults",
                        "athena:GetWorkGroup",
                        "athena:BatchGetQueryExecution",
                        "athena:ListQueryExecutions",
                    ],
                ),
                iam.PolicyStatement(
                    sid="ReadTheCatalog",
                    resources=[catalog, database, *tables],
                    actions=[
                        "glue:GetDatabase",
                        "glue:GetTable",
                        "glue:GetTables",
                        "glue:GetPartition",
                        "glue:GetPartitions",
                    ],
                ),
                iam.PolicyStatement(
                    sid="ReadThePayloads",
                    resources=[bucket.arn_for_objects(f"{p}*") for p in dict.fromkeys(prefixes)],
                    actions=["s3:GetObject"],
                ),
                iam.PolicyStatement(
                    sid="ListThePayloads",
                    resources=[bucket.bucket_arn],
                    actions=["s3:ListBucket"],
                    conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}} if prefix else None,
                ),
                iam.PolicyStatement(
                    sid="LocateThePayloads", resources=[bucket.bucket_arn], actions=["s3:GetBucketLocation"]
                ),
                # Athena writes results with the caller's credentials.
                iam.PolicyStatement(
                    sid="WriteAndReadResults",
                    resources=[self.results_bucket.arn_for_objects("*")],
                    actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                ),
                iam.PolicyStatement(
                    sid="ListResults",
                    resources=[self.results_bucket.bucket_arn],
                    actions=["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                ),
            ],
        )
