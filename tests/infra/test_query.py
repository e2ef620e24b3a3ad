"""The query construct: Glue table with partition projection that matches the key layout, the dedup
view, the Athena workgroup, the read-only policy, and the outputs."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.lake_table import DEDUP_VIEW_SQL
from pipeline.contract import partition_prefix, payload_object_key
from tests.infra import synth

BUCKET = "example-bucket"


@pytest.fixture(scope="module")
def template() -> Template:
    return synth()


def only(template: Template, resource_type: str) -> tuple[str, dict[str, Any]]:
    found = template.find_resources(resource_type)
    if resource_type == "AWS::Athena::WorkGroup":  # the analysts' one; compaction has its own (test_compaction.py)
        found = {k: v for k, v in found.items() if not v["Properties"]["Name"].endswith("-compaction")}
    assert len(found) == 1, f"expected one {resource_type}, found {len(found)}"
    return next(iter(found.items()))


def tables(template: Template) -> dict[str, dict[str, Any]]:
    return {
        t["Properties"]["TableInput"]["Name"]: t["Properties"]
        for t in template.find_resources("AWS::Glue::Table").values()
    }


def render(value: Any, template: Template) -> str:
    """A location string with the payload bucket's name in place of its Ref (Fn::Join of strings and Refs)."""
    bucket_id = next(k for k in template.find_resources("AWS::S3::Bucket") if k.startswith("StoragePayloads"))
    if isinstance(value, str):
        return value
    separator, parts = value["Fn::Join"]
    return separator.join(BUCKET if part == {"Ref": bucket_id} else part for part in parts)


def projected_prefix(parameters: dict[str, str], template: Template, dt: str, hour: str) -> str:
    """What Athena reads for one projected partition: the template with ${dt} and ${hour} filled in."""
    location = render(parameters["storage.location.template"], template)
    return location.replace("${dt}", dt).replace("${hour}", hour)


def java_to_python_date_format(java: str) -> str:
    return java.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d")


@pytest.mark.parametrize("prefix", ["payloads/", ""])
def test_every_projected_partition_is_exactly_where_the_consumer_writes(prefix: str) -> None:
    # Given the template for an OBJECT_PREFIX
    template = synth(OBJECT_PREFIX=prefix)
    parameters = tables(template)["payloads"]["TableInput"]["Parameters"]
    assert parameters["projection.enabled"] == "true"
    # When Athena projects the partitions of two days (date type, day interval; integer hours, 2 digits)
    assert (
        parameters["projection.dt.type"],
        parameters["projection.dt.interval"],
        parameters["projection.dt.interval.unit"],
    ) == ("date", "1", "DAYS")
    assert parameters["projection.dt.range"].endswith(",NOW")
    assert (parameters["projection.hour.type"], parameters["projection.hour.range"]) == ("integer", "0,23")
    digits = int(parameters["projection.hour.digits"])
    date_format = java_to_python_date_format(parameters["projection.dt.format"])
    start = datetime(2026, 12, 31, tzinfo=UTC)
    for moment in (start + timedelta(hours=n) for n in range(48)):
        projected = projected_prefix(parameters, template, moment.strftime(date_format), str(moment.hour).zfill(digits))
        # Then each projected partition is the prefix the consumer writes that hour's objects under
        assert projected == f"s3://{BUCKET}/{partition_prefix(prefix, moment)}"
        assert f"s3://{BUCKET}/{payload_object_key(prefix, 'r-0', moment)}".startswith(projected)
    # And the table's location is the prefix itself
    location = render(tables(template)["payloads"]["TableInput"]["StorageDescriptor"]["Location"], template)
    assert location == f"s3://{BUCKET}/{prefix}"


def test_the_table_reads_json_lines_with_the_envelope_columns_and_string_partitions(template: Template) -> None:
    table = tables(template)["payloads"]["TableInput"]
    assert table["TableType"] == "EXTERNAL_TABLE"
    descriptor = table["StorageDescriptor"]
    assert [(c["Name"], c["Type"]) for c in descriptor["Columns"]] == [
        (name, "string") for name in ("id", "requestid", "receivedat", "version", "token", "deviceid", "payload")
    ]
    assert [(c["Name"], c["Type"]) for c in table["PartitionKeys"]] == [("dt", "string"), ("hour", "string")]
    # Text input: Athena picks gzip by the .gz extension, so .json and .ndjson.gz objects both read
    assert descriptor["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert descriptor["SerdeInfo"]["Parameters"] == {"ignore.malformed.json": "false"}
    assert template.find_resources("AWS::Glue::Crawler") == {}


def test_the_dedup_view_is_an_athena_view_over_the_table(template: Template) -> None:
    database = only(template, "AWS::Glue::Database")[1]["Properties"]["DatabaseInput"]["Name"]
    view = tables(template)["payloads_dedup"]
    assert view["DatabaseName"] == database == "ingest_pipeline_prod"
    table_input = view["TableInput"]
    assert table_input["TableType"] == "VIRTUAL_VIEW"
    assert table_input["Parameters"]["presto_view"] == "true"
    encoded = re.fullmatch(r"/\* Presto View: ([A-Za-z0-9+/=]+) \*/", table_input["ViewOriginalText"])
    assert encoded is not None
    document = json.loads(base64.b64decode(encoded.group(1)))
    assert document["originalSql"] == DEDUP_VIEW_SQL
    assert (document["catalog"], document["schema"]) == ("awsdatacatalog", database)
    names = ["id", "requestid", "receivedat", "version", "token", "deviceid", "payload", "dt", "hour"]
    assert document["columns"] == [{"name": name, "type": "varchar"} for name in names]
    assert [c["Name"] for c in table_input["StorageDescriptor"]["Columns"]] == names


def test_the_workgroup_enforces_encrypted_results_in_an_expiring_bucket(template: Template) -> None:
    _, workgroup = only(template, "AWS::Athena::WorkGroup")
    configuration = workgroup["Properties"]["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    results = configuration["ResultConfiguration"]
    assert results["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}
    bucket_id = next(k for k in template.find_resources("AWS::S3::Bucket") if k.startswith("QueryResults"))
    assert results["OutputLocation"] == {"Fn::Join": ["", ["s3://", {"Ref": bucket_id}, "/"]]}
    bucket = template.find_resources("AWS::S3::Bucket")[bucket_id]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert [rule["ExpirationInDays"] for rule in bucket["LifecycleConfiguration"]["Rules"]] == [7]
    assert bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True


def test_the_reader_policy_only_reads_payloads(template: Template) -> None:
    _, policy = only(template, "AWS::IAM::ManagedPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    payload_bucket = next(k for k in template.find_resources("AWS::S3::Bucket") if k.startswith("StoragePayloads"))
    on_payloads = [s for s in statements if payload_bucket in json.dumps(s["Resource"])]
    actions = {a for s in on_payloads for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert actions == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}
    every_action = {a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert not any(a.endswith("*") or a.startswith(("glue:Create", "glue:Update", "glue:Delete")) for a in every_action)


def test_table_workgroup_and_policy_are_outputs(template: Template) -> None:
    outputs = template.find_outputs("*")
    assert outputs["QueryTable"]["Value"] == "ingest_pipeline_prod.payloads"
    _, workgroup = only(template, "AWS::Athena::WorkGroup")
    assert outputs["QueryWorkGroup"]["Value"] == workgroup["Properties"]["Name"] == "ingest-pipeline-prod"
    assert "QueryReaderPolicyArn" in outputs


def test_names_follow_the_stage() -> None:
    template = synth(STAGE="dev-eu")
    assert only(template, "AWS::Glue::Database")[1]["Properties"]["DatabaseInput"]["Name"] == "ingest_pipeline_dev_eu"
    assert only(template, "AWS::Athena::WorkGroup")[1]["Properties"]["Name"] == "ingest-pipeline-dev-eu"
