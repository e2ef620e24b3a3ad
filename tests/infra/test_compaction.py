"""Template assertions on the hourly compaction (infra/compaction_construct.py): the schedule, the state
machine and the SQL it runs, the workgroups, the compacted table, the alarm, the role's exact rights, and
the retention rules; COMPACTION=off leaves all of it out."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.compaction_construct import lease_hold
from infra.config import ConfigError, PipelineConfig
from infra.lake_table import (
    COMPACTED_BUCKETS,
    CompactionWindow,
    add_partition_sql,
    compaction_select,
    ctas_sql,
    drop_scratch_table_sql,
    switch_partition_sql,
)
from tests.infra import only, synth
from tools.models.assumptions import Assumptions


@pytest.fixture(scope="module")
def template() -> Template:
    return synth()


def state_machine_definition(template: Template) -> dict[str, Any]:
    """The ASL, with every CloudFormation token written as <token>."""
    machine = only(template, "AWS::StepFunctions::StateMachine")
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(part if isinstance(part, str) else "<token>" for part in parts))


def all_states(definition: dict[str, Any]) -> dict[str, Any]:
    """Every state by name, those inside Map item processors too."""
    found: dict[str, Any] = {}
    for name, state in definition["States"].items():
        found[name] = state
        if "ItemProcessor" in state:
            found.update(all_states(state["ItemProcessor"]))
    return found


def template_of(expression: str) -> str:
    """The SQL template behind a QueryString JSONata concatenation: literals kept, ``$run.x`` -> ``{x}``."""
    body = expression.removeprefix("{% ").removesuffix(" %}")
    out = []
    for part in re.findall(r'"(?:[^"\\]|\\.)*"|\$run\.\w+', body):
        out.append(json.loads(part) if part.startswith('"') else "{" + part.removeprefix("$run.") + "}")
    return "".join(out)


def test_the_schedule_starts_the_state_machine_every_hour_after_the_grace_period() -> None:
    for grace, minute in ((30, 30), (0, 0), (90, 30)):
        schedule = only(synth(COMPACTION_GRACE_MINUTES=grace), "AWS::Scheduler::Schedule")["Properties"]
        assert schedule["ScheduleExpression"] == f"cron({minute} * * * ? *)"
        assert schedule["ScheduleExpressionTimezone"] == "Etc/UTC"
        assert json.loads(schedule["Target"]["Input"]) == {"scheduledTime": "<aws.scheduler.scheduled-time>"}
    # and the state machine computes the hour from the scheduled time minus that same grace
    definition = state_machine_definition(synth(COMPACTION_GRACE_MINUTES=90))
    assert "- 5400000) / 3600000) - 1) * 3600000" in definition["States"]["ResolveHour"]["Assign"]["closedMs"]
    # a dropped invocation heals at the next run (the catch-up), so the target has no dead-letter queue
    assert "DeadLetterConfig" not in schedule["Target"]


def test_the_statements_run_on_athena_through_the_sync_integration_with_retries_and_catches(
    template: Template,
) -> None:
    states = all_states(state_machine_definition(template))
    athena = {
        name: state for name, state in states.items() if "athena:startQueryExecution" in state.get("Resource", "")
    }
    assert set(athena) == {
        "WriteTheHour",
        "RegisterTheHour",
        "SwitchTheHour",
        "DropScratchTable",
        "DiscardScratchTable",
    }
    for name, state in athena.items():
        assert state["Resource"].endswith(":states:::athena:startQueryExecution.sync"), name
        assert state["Arguments"]["WorkGroup"] == "ingest-pipeline-prod-compaction"
        assert state["Retry"] and state["Catch"], name
    # a failed CTAS discards its run and tries the hour again; then the hour's lease is released, it is
    # left (marked) and the execution fails once the other hours are done
    assert states["WriteTheHour"]["Catch"][0]["Next"] == "DiscardScratchTable"
    assert states["TryAgain"]["Default"] == "ReleaseTheFailedHour"
    assert states["ReleaseTheFailedHour"]["Next"] == "HourFailed"
    assert states["AnyHourFailed"]["Choices"][0]["Next"] == "CompactionFailed"
    assert states["CompactionFailed"]["Type"] == "Fail"
    # an hour's order: lease, marker, markers listed, CTAS, register, switch, drop, runs listed, release
    chain, name = [], "TheHour"
    while name in states and "Next" in states[name]:
        name = states[name]["Next"]
        chain.append(name)
    assert chain == [
        "TakeTheHour",
        "NameTheMarker",
        "MarkTheHour",
        "ListTheHoursMarkers",
        "NameTheRun",
        "WriteTheHour",
        "RegisterTheHour",
        "SwitchTheHour",
        "DropScratchTable",
        "ListTheHoursRuns",
        "AnyListedMarkers",
    ]
    assert states["AnyListedMarkers"]["Default"] == "ReleaseTheHour" and states["ReleaseTheHour"]["Next"] == "HourDone"
    # the hours one at a time; then the wait for readers before anything superseded is deleted
    assert states["CompactTheHours"]["MaxConcurrency"] == 1
    assert states["AnySuperseded"]["Choices"][0]["Next"] == "WaitForReaders"
    assert states["WaitForReaders"]["Next"] == "DeleteSupersededRuns"
    assert states["DeleteSupersededRuns"]["Next"] == "DropSupersededTables"


def test_the_state_machine_runs_the_sql_that_lake_table_renders(template: Template) -> None:
    # Given the statements' templates as the state machine holds them
    states = all_states(state_machine_definition(template))
    queries = {
        name: template_of(states[name]["Arguments"]["QueryString"])
        for name in states
        if "Arguments" in states[name] and "QueryString" in states[name]["Arguments"]
    }
    # When they are filled in as the run's variables would fill them
    window = CompactionWindow.around(datetime(2026, 11, 26, 2, tzinfo=UTC), 24)
    values = {**window.__dict__, "table": "compaction_x", "location": "s3://b/compacted/dt=2026-11-26/hour=02/run=x/"}
    filled = {name: query.format(**values) for name, query in queries.items()}
    # Then each is exactly what infra/lake_table.py renders, and the CTAS's rows are compaction_select's,
    # the text tests/integration/test_compaction_local.py runs on DuckDB
    assert filled["WriteTheHour"] == ctas_sql(window, "compaction_x", values["location"])
    assert filled["WriteTheHour"].endswith(" AS " + compaction_select(window))
    assert f"bucket_count = {COMPACTED_BUCKETS}" in filled["WriteTheHour"]
    assert filled["RegisterTheHour"] == add_partition_sql(window, values["location"])
    assert filled["SwitchTheHour"] == switch_partition_sql(window, values["location"])
    assert filled["DropScratchTable"] == filled["DiscardScratchTable"] == drop_scratch_table_sql("compaction_x")
    assert window.first == "2026-11-25-02" and window.last == "2026-11-27-02"


def test_the_workgroups_cutoff_comes_from_query_scan_limit_gb() -> None:
    template = synth(QUERY_SCAN_LIMIT_GB=250)
    analysts = only(template, "AWS::Athena::WorkGroup", {"Name": "ingest-pipeline-prod"})
    assert analysts["Properties"]["WorkGroupConfiguration"]["BytesScannedCutoffPerQuery"] == 250 * 10**9
    assert analysts["Properties"]["WorkGroupConfiguration"]["EnforceWorkGroupConfiguration"] is True
    # the compaction's workgroup lets its CTAS's external_location stand (the next test says why)
    compaction = only(template, "AWS::Athena::WorkGroup", {"Name": "ingest-pipeline-prod-compaction"})
    assert compaction["Properties"]["WorkGroupConfiguration"]["EnforceWorkGroupConfiguration"] is False
    assert "BytesScannedCutoffPerQuery" not in compaction["Properties"]["WorkGroupConfiguration"]
    skips = compaction["Metadata"]["checkov"]["skip"]
    assert [skip["id"] for skip in skips] == ["CKV_AWS_82"] and "external_location" in skips[0]["comment"]


def workgroup_configurations(template: Template) -> dict[str, dict[str, Any]]:
    return {
        resource["Properties"]["Name"]: resource["Properties"].get("WorkGroupConfiguration", {})
        for resource in template.find_resources("AWS::Athena::WorkGroup").values()
    }


def refusals_by_workgroup(definition: dict[str, Any], workgroups: dict[str, dict[str, Any]]) -> list[str]:
    """What Athena would refuse or redirect among the statements the state machine issues, judged by the
    workgroup each runs in. A workgroup that overrides client-side settings (EnforceWorkGroupConfiguration)
    puts a CTAS table under its results location, tables/<query id>/, whatever the statement's
    external_location ("Considerations and limitations for CTAS queries"; dbt-athena met it as an
    InvalidRequestException), and uses its own result configuration over the task's ("Override client-side
    settings"). A workgroup the template does not define does not exist."""
    problems = []
    for name, state in all_states(definition).items():
        if "athena:startQueryExecution" not in state.get("Resource", ""):
            continue
        arguments = state["Arguments"]
        workgroup = arguments.get("WorkGroup", "primary")
        if workgroup not in workgroups:
            problems.append(f"{name}: workgroup {workgroup} is not in the template")
            continue
        if not workgroups[workgroup].get("EnforceWorkGroupConfiguration", False):
            continue
        if "external_location" in template_of(arguments["QueryString"]):
            problems.append(f"{name}: CTAS external_location in {workgroup}, which enforces its configuration")
        if arguments.get("ResultConfiguration"):  # CDK renders an empty one
            problems.append(f"{name}: its ResultConfiguration is overridden by {workgroup}")
    return problems


def test_no_statement_the_state_machine_issues_is_refused_or_redirected_by_its_workgroup(template: Template) -> None:
    # Given the synthesized state machine and the workgroups it names
    definition, workgroups = state_machine_definition(template), workgroup_configurations(template)
    # When each Athena statement is judged by the configuration of the workgroup it runs in
    problems = refusals_by_workgroup(definition, workgroups)
    # Then none would be refused or land anywhere but where the statement says
    assert problems == []
    # and the judge sees the CTAS refused were its workgroup to enforce its configuration, as it did before
    enforcing = {**workgroups, "ingest-pipeline-prod-compaction": {"EnforceWorkGroupConfiguration": True}}
    assert refusals_by_workgroup(definition, enforcing) == [
        "WriteTheHour: CTAS external_location in ingest-pipeline-prod-compaction, which enforces its configuration"
    ]


def test_payloads_compacted_is_a_parquet_table_partitioned_by_hour(template: Template) -> None:
    table = only(template, "AWS::Glue::Table", {"TableInput": {"Name": "payloads_compacted"}})["Properties"]
    table_input = table["TableInput"]
    assert [c["Name"] for c in table_input["StorageDescriptor"]["Columns"]] == [
        "id",
        "requestid",
        "receivedat",
        "version",
        "token",
        "deviceid",
        "payload",
    ]
    assert [c["Name"] for c in table_input["PartitionKeys"]] == ["dt", "hour"]
    serde = table_input["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
    assert serde == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert "projection.enabled" not in table_input["Parameters"]  # each run registers its directory
    raw = only(template, "AWS::Glue::Table", {"TableInput": {"Name": "payloads"}})["Properties"]
    assert "deviceid" in [c["Name"] for c in raw["TableInput"]["StorageDescriptor"]["Columns"]]


def test_a_failed_compaction_raises_an_alarm_on_the_dashboard(template: Template) -> None:
    alarm = only(template, "AWS::CloudWatch::Alarm", {"AlarmName": "ingest-pipeline-prod-compaction-failed"})
    props = alarm["Properties"]
    assert props["Threshold"] == 1
    assert "make compact-aws" in props["AlarmDescription"] and "#compaction-failed" in props["AlarmDescription"]
    # no success in two hours (a failed run, or none at all: missing data breaches); tests/infra/test_monitoring.py
    names = {m.get("MetricStat", {}).get("Metric", {}).get("MetricName") for m in props["Metrics"]}
    assert names - {None} == {"ExecutionsSucceeded"} and props["TreatMissingData"] == "breaching"


def _policy_statements(template: Template) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    [policy] = [p for name, p in policies.items() if name.startswith("CompactionRole")]
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def test_the_role_reads_raw_writes_compacted_and_uses_its_own_workgroup_only(template: Template) -> None:
    statements = {s["Sid"]: s for s in _policy_statements(template)}
    actions = {a for s in statements.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    # nothing that could drop the raw table, the database or the compacted table
    assert not {"glue:DeleteDatabase", "glue:CreateDatabase", "glue:UpdateTable", "s3:*", "glue:*"} & actions
    assert "compaction_*" in json.dumps(statements["CreateAndDropScratchTables"]["Resource"])
    assert "payloads/*" in json.dumps(statements["ReadTheRawPayloads"]["Resource"])
    assert statements["ReadTheRawPayloads"]["Action"] == "s3:GetObject"
    assert "compacted/*" in json.dumps(statements["WriteAndTidyTheCompactedPayloads"]["Resource"])
    assert "ingest-pipeline-prod-compaction" in json.dumps(statements["RunStatementsInItsWorkgroup"]["Resource"])
    # the hour leases: take and release on that one table; no eventually consistent ListExecutions guard
    lease = statements["TakeAndReleaseHourLeases"]
    assert sorted(lease["Action"]) == ["dynamodb:DeleteItem", "dynamodb:PutItem"]
    assert "HourLeases" in json.dumps(lease["Resource"]) and "*" not in json.dumps(lease["Resource"])
    assert "states:ListExecutions" not in actions
    # late markers: written, listed and deleted under late/ only
    assert "late/*" in json.dumps(statements["WriteAndDeleteLateMarkers"]["Resource"])
    assert "late/*" in statements["ListTheLake"]["Condition"]["StringLike"]["s3:prefix"]


def test_the_hour_leases_table_is_keyed_by_hour_expires_and_is_recoverable(template: Template) -> None:
    resource = only(template, "AWS::DynamoDB::Table")
    assert [skip["id"] for skip in resource["Metadata"]["checkov"]["skip"]] == ["CKV_AWS_119"]
    table = resource["Properties"]
    assert table["TableName"] == "ingest-pipeline-prod-hour-leases"
    assert table["KeySchema"] == [{"AttributeName": "hour", "KeyType": "HASH"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_superseded_runs_wait_for_the_athena_dml_timeout_and_the_state_machine_outlasts_an_hours_worst_case() -> None:
    for dml_minutes in (30, 240):
        # Given the account's DML timeout
        template = synth(ATHENA_DML_TIMEOUT_MINUTES=dml_minutes)
        machine = state_machine_definition(template)
        states = all_states(machine)
        # Then superseded directories are deleted no sooner than that after the switch
        assert states["WaitForReaders"]["Seconds"] == dml_minutes * 60
        # and the CTAS task gives up a minute after Athena would have cancelled it
        assert states["WriteTheHour"]["TimeoutSeconds"] == (dml_minutes + 1) * 60
        # and a lease outlasts every attempt of an hour's run at its timeouts; a run waits until it expires
        take = states["TakeTheHour"]["Arguments"]["Item"]["expiresAt"]["N"]
        hold_seconds = int(take.split("+ ")[1].split(")")[0])
        assert hold_seconds >= 3 * (dml_minutes + 1) * 60
        tries = int(states["HourLeased"]["Choices"][0]["Condition"].split("< ")[1].split(" ")[0])
        assert tries * states["WaitForTheHour"]["Seconds"] >= hold_seconds
        # and the execution outlasts one hour's worst case (waiting out a lease, holding it) and the wait
        assert machine["TimeoutSeconds"] >= 2 * hold_seconds + dml_minutes * 60
        assert machine["TimeoutSeconds"] >= 24 * 3600


def test_knobs_for_catch_up_and_the_dml_timeout_are_bounded_by_what_athena_allows() -> None:
    with pytest.raises(ConfigError, match="ATHENA_DML_TIMEOUT_MINUTES must be 1..240"):
        PipelineConfig(ATHENA_DML_TIMEOUT_MINUTES=241)
    with pytest.raises(ConfigError, match="COMPACTION_CATCHUP_HOURS must be 0..168"):
        PipelineConfig(COMPACTION_CATCHUP_HOURS=-1)


def test_retention_rules_for_raw_and_compacted() -> None:
    template = synth(RAW_RETENTION_DAYS=30, COMPACTED_RETENTION_DAYS=400)
    buckets = template.find_resources("AWS::S3::Bucket")
    rules = [
        rule
        for bucket in buckets.values()
        for rule in bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
    ]
    assert {"ExpirationInDays": 30, "Id": "expire-payloads", "Prefix": "payloads/dt=", "Status": "Enabled"} in rules
    assert {"ExpirationInDays": 400, "Id": "expire-compacted", "Prefix": "compacted/", "Status": "Enabled"} in rules


def test_raw_retention_shorter_than_a_redrive_needs_is_refused_naming_why() -> None:
    with pytest.raises(ConfigError, match="RAW_RETENTION_DAYS must be 0 .* more than DLQ_RETENTION_DAYS"):
        PipelineConfig(RAW_RETENTION_DAYS=7, DLQ_RETENTION_DAYS=14)
    assert PipelineConfig(RAW_RETENTION_DAYS=15, DLQ_RETENTION_DAYS=14).RAW_RETENTION_DAYS == 15
    assert PipelineConfig(RAW_RETENTION_DAYS=7, COMPACTION="off").RAW_RETENTION_DAYS == 7
    with pytest.raises(ConfigError, match="OBJECT_PREFIX must not start with 'compacted/'"):
        PipelineConfig(OBJECT_PREFIX="compacted/raw/")


def test_compaction_off_leaves_out_the_schedule_state_machine_table_and_alarm() -> None:
    template = synth(COMPACTION="off")
    for kind in ("AWS::Scheduler::Schedule", "AWS::StepFunctions::StateMachine"):
        assert template.find_resources(kind) == {}
    assert (
        template.find_resources("AWS::Glue::Table", {"Properties": {"TableInput": {"Name": "payloads_compacted"}}})
        == {}
    )
    assert "CompactionStateMachineArn" not in template.find_outputs("*")


# A scheduled run with one new hour to compact, no late markers, nothing superseded: every state it enters.
FIRST_RUN_PATH = (
    ["ResolveHour", "GivenOrScheduled", "FindCompactedHours", "FindLateDays", "FindLateHours", "PickTheHours"]
    + ["CompactTheHours", "TheHour", "TakeTheHour", "NameTheMarker", "MarkTheHour", "ListTheHoursMarkers"]
    + ["NameTheRun", "WriteTheHour", "RegisterTheHour", "SwitchTheHour", "DropScratchTable", "ListTheHoursRuns"]
    + ["AnyListedMarkers", "ReleaseTheHour", "HourDone"]
    + ["AnySuperseded", "AnyRunMarkers", "DeleteRunMarkers", "AnyHourFailed", "Compacted"]
)


def successors(state: dict[str, Any]) -> set[str]:
    found = {state["Next"]} if "Next" in state else set()
    found |= {choice["Next"] for choice in state.get("Choices", [])}
    found |= {state["Default"]} if "Default" in state else set()
    if "ItemProcessor" in state:
        found.add(state["ItemProcessor"]["StartAt"])
    return found


def test_the_cost_models_state_transitions_are_a_first_runs_path_through_the_state_machine(template: Template) -> None:
    # Given the synthesized state machine
    definition = state_machine_definition(template)
    states = all_states(definition)
    # Then a scheduled first run of an hour goes through these states, each reachable from the one before
    # (the Map's iteration ends in HourDone and the Map goes on to AnySuperseded)
    assert FIRST_RUN_PATH[0] == definition["StartAt"]
    for before, after in zip(FIRST_RUN_PATH, FIRST_RUN_PATH[1:], strict=False):
        if before == "HourDone":
            assert "Next" not in states["HourDone"] and after in successors(states["CompactTheHours"])
        else:
            assert after in successors(states[before]), f"{before} -> {after}"
    # And the capacity and cost model charges exactly that many transitions per run (docs/LAKE.md, CAPACITY.md)
    assert Assumptions().compaction_transitions == len(FIRST_RUN_PATH)


def test_lake_md_states_the_lease_bound_the_code_computes() -> None:
    lake = (Path(__file__).parents[2] / "docs" / "LAKE.md").read_text()
    minutes = int(lease_hold(PipelineConfig()).to_minutes())
    assert f"task timeouts: {minutes} minutes at the defaults" in " ".join(lake.split())
