"""The compaction state machine's JSONata, evaluated. Step Functions runs these expressions only on AWS, so
a typo, a wrong date picture or an off-by-one hour would first show as a failed hourly run there. Here
each expression the synthesized template holds is evaluated with jsonata-python, a port of the reference
JSONata implementation (Step Functions' JSONata is JSONata 2.0, "Transforming data with JSONata in Step
Functions"), with Step Functions' own additions ($uuid, and the $states variable) supplied by the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jsonata
import pytest
from aws_cdk.assertions import Template

from infra.compaction_construct import LATE_HOURS_PER_RUN, lease_hold
from infra.config import PipelineConfig
from infra.lake_table import (
    COMPACTED_PREFIX,
    CompactionWindow,
    add_partition_sql,
    ctas_sql,
    drop_scratch_table_sql,
    late_marker_hour_prefix,
    switch_partition_sql,
)
from tests.infra import synth
from tests.infra.test_compaction import all_states, state_machine_definition

HOUR_MS = 3_600_000
GRACE_MINUTES = 30
LOOKBACK_HOURS = 24
CATCHUP_HOURS = 12
RUN_STARTED = datetime(2026, 11, 26, 3, 31, 7, tzinfo=UTC)  # what $millis() returns in these runs
UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture(scope="module")
def states() -> dict[str, Any]:
    template: Template = synth(
        COMPACTION_GRACE_MINUTES=GRACE_MINUTES,
        COMPACTION_LOOKBACK_HOURS=LOOKBACK_HOURS,
        COMPACTION_CATCHUP_HOURS=CATCHUP_HOURS,
    )
    return all_states(state_machine_definition(template))


def expressions(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.startswith("{%"):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item)


def evaluate(
    expression: str, states_variable: dict[str, Any] | None = None, *, now: datetime = RUN_STARTED, **variables: Any
) -> Any:
    """One ``{% ... %}`` expression, as Step Functions evaluates it: ``$states`` and the workflow's
    variables bound, $uuid() and $millis() (``now``) fixed so the run's names are known."""
    assert expression.startswith("{% ") and expression.endswith(" %}"), expression
    compiled = jsonata.Jsonata(expression[3:-3])
    compiled.register_lambda("uuid", lambda: UUID)
    compiled.register_lambda("millis", lambda: int(now.timestamp() * 1000))
    compiled.assign("states", states_variable or {})
    for name, value in variables.items():
        compiled.assign(name, value)
    return compiled.evaluate(None)


def hour_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_every_expression_in_the_state_machine_parses(states: dict[str, Any]) -> None:
    found = [expression for state in states.values() for expression in expressions(state)]
    assert len(found) > 10
    for expression in found:
        jsonata.Jsonata(expression[3:-3])  # raises on a syntax error


def test_the_schedule_compacts_the_hour_that_closed_the_grace_period_before(states: dict[str, Any]) -> None:
    expression = states["ResolveHour"]["Assign"]["closedMs"]
    # Given the schedule fires at 03:30 (grace 30 minutes), then the hour 02:00-03:00 is compacted
    scheduled = {"input": {"scheduledTime": "2026-11-26T03:30:00Z"}}
    assert evaluate(expression, scheduled) == hour_ms(datetime(2026, 11, 26, 2, tzinfo=UTC))
    # And a late firing in the same hour still means that hour, never the one still open
    late = {"input": {"scheduledTime": "2026-11-26T04:29:59Z"}}
    assert evaluate(expression, late) == hour_ms(datetime(2026, 11, 26, 2, tzinfo=UTC))
    # And make smoke-aws or a hand-started run names the hour itself, make compact-aws a list of hours
    given = {"input": {"hour": "2026-11-26T02"}}
    assert evaluate(expression, given) == hour_ms(datetime(2026, 11, 26, 2, tzinfo=UTC))
    listed = {"input": {"hours": ["2026-11-26T23", "2026-11-27T00"]}}
    assert evaluate(expression, listed) == hour_ms(datetime(2026, 11, 26, 23, tzinfo=UTC))
    # and those hours are the execution's, in the order given; a single hour is a list of one
    hours = states["TheGivenHours"]["Assign"]["hours"]
    closed = hour_ms(datetime(2026, 11, 26, 2, tzinfo=UTC))
    assert evaluate(hours, given, closedMs=closed) == [closed]
    assert evaluate(hours, listed, closedMs=0) == [
        hour_ms(datetime(2026, 11, 26, 23, tzinfo=UTC)),
        hour_ms(datetime(2026, 11, 27, 0, tzinfo=UTC)),
    ]
    assert evaluate(hours, {"input": {"hours": ["2026-11-26T23"]}}, closedMs=0) == [
        hour_ms(datetime(2026, 11, 26, 23, tzinfo=UTC))
    ]
    # and only the schedule's input goes to the catch-up
    scheduled_or_not = states["GivenOrScheduled"]["Choices"][0]["Condition"]
    assert evaluate(scheduled_or_not, given) is True and evaluate(scheduled_or_not, listed) is True
    assert evaluate(scheduled_or_not, scheduled) is False


def run_variables(states: dict[str, Any], hour: datetime) -> dict[str, Any]:
    run = evaluate(states["NameTheRun"]["Assign"]["run"], hourMs=hour_ms(hour))
    assert isinstance(run, dict)
    return run


def test_a_run_gets_the_hours_names_and_a_fresh_directory(states: dict[str, Any]) -> None:
    run = run_variables(states, datetime(2026, 11, 26, 2, tzinfo=UTC))
    run_id = "20261126T033107Z_0f1e2d3c"
    assert run == {
        "id": run_id,
        "dt": "2026-11-26",
        "hour": "02",
        "first": "2026-11-25-02",
        "last": "2026-11-27-02",
        "first_dt": "2026-11-25",
        "last_dt": "2026-11-27",
        "table": "compaction_" + run_id.lower(),
        "prefix": f"{COMPACTED_PREFIX}dt=2026-11-26/hour=02/",
        "location": f"s3://<token>/{COMPACTED_PREFIX}dt=2026-11-26/hour=02/run={run_id}/",
    }


def test_the_statements_evaluate_to_the_sql_lake_table_renders(states: dict[str, Any]) -> None:
    # Given the run's variables for the hour 2026-11-26T02 (a year boundary would show in first/last too)
    hour = datetime(2026, 11, 26, 2, tzinfo=UTC)
    run = run_variables(states, hour)
    window = CompactionWindow.around(hour, LOOKBACK_HOURS)

    def sql(state: str) -> str:
        return str(evaluate(states[state]["Arguments"]["QueryString"], run=run))

    # Then each statement, evaluated, is exactly the text infra/lake_table.py renders (and DuckDB runs)
    assert sql("WriteTheHour") == ctas_sql(window, run["table"], run["location"])
    assert sql("RegisterTheHour") == add_partition_sql(window, run["location"])
    assert sql("SwitchTheHour") == switch_partition_sql(window, run["location"])
    assert sql("DropScratchTable") == sql("DiscardScratchTable") == drop_scratch_table_sql(run["table"])


def test_only_the_hours_other_runs_are_listed_to_be_deleted(states: dict[str, Any]) -> None:
    run = run_variables(states, datetime(2026, 11, 26, 2, tzinfo=UTC))
    listing = {
        "result": {
            "CommonPrefixes": [
                {"Prefix": run["prefix"] + "run=20261126T010000Z_aaaaaaaa/"},
                {"Prefix": run["prefix"] + f"run={run['id']}/"},
                {"Prefix": run["prefix"] + "run=20261126T020000Z_bbbbbbbb/"},
            ]
        }
    }
    listed = states["ListTheHoursRuns"]["Assign"]["supersededRuns"]
    assert evaluate(listed, listing, run=run) == [
        run["prefix"] + "run=20261126T010000Z_aaaaaaaa/",
        run["prefix"] + "run=20261126T020000Z_bbbbbbbb/",
    ]
    # A single other run is still a list of one (JSONata would otherwise unwrap a one-item sequence)
    one = {"result": {"CommonPrefixes": [{"Prefix": run["prefix"] + "run=x/"}]}}
    assert evaluate(listed, one, run=run) == [run["prefix"] + "run=x/"]
    # No other run (S3 leaves CommonPrefixes out when there is none): nothing to delete
    assert evaluate(listed, {"result": {}}, run=run) == []
    # A failed CTAS discards exactly its own directory
    assert evaluate(states["DiscardRunFiles"]["Items"], run=run) == [run["prefix"] + f"run={run['id']}/"]
    # After the wait, exactly what the hours' runs listed is deleted, with those runs' scratch tables
    assert evaluate(states["DeleteSupersededRuns"]["Items"], superseded=["a/", "b/"]) == ["a/", "b/"]
    table = states["DropSupersededTablesDelete"]["Arguments"]["Name"]
    superseded = {"input": run["prefix"] + "run=20261126T010000Z_AAAAAAAA/"}
    assert evaluate(table, superseded) == "compaction_20261126t010000z_aaaaaaaa"


def test_the_deletion_loop_lists_keys_and_stops_when_none_are_left(states: dict[str, Any]) -> None:
    listing = next(state for name, state in states.items() if name.startswith("DeleteSupersededRunsList"))
    objects = listing["Output"]["objects"]
    page = {"result": {"Contents": [{"Key": "compacted/a", "Size": 1}, {"Key": "compacted/b", "Size": 2}]}}
    assert evaluate(objects, page) == [{"Key": "compacted/a"}, {"Key": "compacted/b"}]
    assert evaluate(objects, {"result": {"Contents": [{"Key": "compacted/a"}]}}) == [{"Key": "compacted/a"}]
    empty = evaluate(objects, {"result": {"KeyCount": 0}})  # S3 leaves Contents out of an empty listing
    any_left = next(state for name, state in states.items() if name.startswith("DeleteSupersededRunsAnyLeft"))
    condition = any_left["Choices"][0]["Condition"]
    assert evaluate(condition, {"input": {"objects": empty}}) is False
    assert evaluate(condition, {"input": {"objects": [{"Key": "compacted/a"}]}}) is True


def test_a_failed_hour_is_tried_three_times_in_all(states: dict[str, Any]) -> None:
    condition = states["TryAgain"]["Choices"][0]["Condition"]
    count = states["CountTheAttempt"]["Assign"]["attempt"]
    attempts = [1]
    while evaluate(condition, attempt=attempts[-1]):
        attempts.append(evaluate(count, attempt=attempts[-1]))
    assert attempts == [1, 2, 3]


def late(moment: datetime) -> str:
    return late_marker_hour_prefix(f"{moment:%Y-%m-%d}", f"{moment:%H}")


def test_a_scheduled_run_picks_the_closed_hour_the_uncompacted_hours_and_the_late_hours_in_order(
    states: dict[str, Any],
) -> None:
    pick = states["PickTheHours"]["Assign"]["hours"]
    closed = datetime(2026, 11, 26, 2, tzinfo=UTC)
    hours = [datetime.fromtimestamp((hour_ms(closed) - n * HOUR_MS) / 1000, UTC) for n in range(0, 30)]
    # Given every hour of the catch-up window (12 hours) compacted but two (a dropped run at 20:00, a failed one
    # at 00:00)
    missing = {datetime(2026, 11, 25, 20, tzinfo=UTC), datetime(2026, 11, 26, 0, tzinfo=UTC)}
    compacted = [f"{hour:%Y-%m-%d-%H}" for hour in hours[1:] if hour not in missing]
    # and late markers in an hour long ago, in a missing hour, and in the hour still open (not yet closed)
    long_ago, still_open = datetime(2026, 11, 20, 5, tzinfo=UTC), datetime(2026, 11, 26, 3, tzinfo=UTC)
    late_hours = [late(long_ago), late(datetime(2026, 11, 26, 0, tzinfo=UTC)), late(still_open)]
    # When the run picks its hours
    picked = evaluate(pick, closedMs=hour_ms(closed), compacted=compacted, lateHours=late_hours)
    # Then it compacts, oldest first and each once: the late hour, the two missing ones and the closed one
    assert picked == [hour_ms(h) for h in sorted([long_ago, *missing, closed])]
    # And an hour that closed before the catch-up window is left to its late markers or a hand re-run
    assert hour_ms(hours[CATCHUP_HOURS + 1]) not in evaluate(pick, closedMs=hour_ms(closed), compacted=[], lateHours=[])
    assert len(evaluate(pick, closedMs=hour_ms(closed), compacted=[], lateHours=[])) == CATCHUP_HOURS + 1
    # And with everything compacted and nothing late, it is a list of the one closed hour
    assert evaluate(
        pick, closedMs=hour_ms(closed), compacted=compacted + [f"{h:%Y-%m-%d-%H}" for h in missing], lateHours=[]
    ) == [hour_ms(closed)]


def test_a_run_takes_the_oldest_late_hours_and_leaves_the_rest_marked_for_the_next(states: dict[str, Any]) -> None:
    pick = states["PickTheHours"]["Assign"]["hours"]
    closed = datetime(2026, 11, 26, 2, tzinfo=UTC)
    compacted = [
        f"{datetime.fromtimestamp((hour_ms(closed) - n * HOUR_MS) / 1000, UTC):%Y-%m-%d-%H}" for n in range(1, 30)
    ]
    # Given 40 late-marked hours (a redrive across two days)
    start = datetime(2026, 11, 10, 0, tzinfo=UTC)
    marked = [datetime.fromtimestamp((hour_ms(start) + n * HOUR_MS) / 1000, UTC) for n in range(40)]
    picked = evaluate(pick, closedMs=hour_ms(closed), compacted=compacted, lateHours=[late(h) for h in marked])
    # Then the 24 oldest, and the closed hour
    assert picked == [hour_ms(h) for h in marked[:LATE_HOURS_PER_RUN]] + [hour_ms(closed)]


def test_the_catalog_and_the_late_markers_are_read_into_hours(states: dict[str, Any]) -> None:
    compacted = states["FindCompactedHours"]["Assign"]["compacted"]
    partitions = {"result": {"Partitions": [{"Values": ["2026-11-26", "01"]}, {"Values": ["2026-11-25", "23"]}]}}
    assert evaluate(compacted, partitions) == ["2026-11-26-01", "2026-11-25-23"]
    assert evaluate(compacted, {"result": {"Partitions": [{"Values": ["2026-11-26", "01"]}]}}) == ["2026-11-26-01"]
    assert evaluate(compacted, {"result": {"Partitions": []}}) == []
    # asked for the catch-up window's days, without the column lists (Step Functions' 256 KiB result)
    arguments = states["FindCompactedHours"]["Arguments"]
    closed = hour_ms(datetime(2026, 11, 26, 2, tzinfo=UTC))
    assert evaluate(arguments["Expression"], closedMs=closed) == "dt >= '2026-11-25'"  # 12 hours before
    assert arguments["ExcludeColumnSchema"] is True
    assert states["ListTheHoursMarkers"]["Arguments"]["MaxKeys"] == 500
    # the days with markers, then each day's hours, flattened
    days = states["FindLateDays"]["Output"]
    assert evaluate(days, {"result": {"CommonPrefixes": [{"Prefix": "late/dt=2026-11-26/"}]}}) == [
        "late/dt=2026-11-26/"
    ]
    assert evaluate(days, {"result": {"KeyCount": 0}}) == []
    per_day = states["ListLateHoursOfTheDay"]["Output"]
    one_day = {"result": {"CommonPrefixes": [{"Prefix": late(datetime(2026, 11, 26, 1, tzinfo=UTC))}]}}
    assert evaluate(per_day, one_day) == ["late/dt=2026-11-26/hour=01/"]
    flatten = states["FindLateHours"]["Assign"]["lateHours"]
    assert evaluate(flatten, {"result": [["a", "b"], ["c"], []]}) == ["a", "b", "c"]
    assert evaluate(flatten, {"result": []}) == []


def test_an_hour_marks_itself_and_deletes_only_the_markers_it_listed(states: dict[str, Any]) -> None:
    hour = datetime(2026, 11, 26, 2, tzinfo=UTC)
    assigned = {
        name: evaluate(expr, {"input": hour_ms(hour)})
        for name, expr in states["TheHour"]["Assign"].items()
        if isinstance(expr, str)
    }
    assert assigned["leaseHour"] == "2026-11-26T02"  # the form make compact-aws gives
    assert assigned["markerPrefix"] == late_marker_hour_prefix("2026-11-26", "02") == "late/dt=2026-11-26/hour=02/"
    own = evaluate(states["NameTheMarker"]["Assign"]["ownMarker"], markerPrefix=assigned["markerPrefix"])
    assert own == assigned["markerPrefix"] + UUID.replace("-", "")
    assert len(own.rsplit("/", 1)[1]) == 32
    listing = {"result": {"Contents": [{"Key": assigned["markerPrefix"] + "a" * 32}, {"Key": own}]}}
    markers = states["ListTheHoursMarkers"]["Assign"]["markers"]
    assert evaluate(markers, listing, ownMarker=own) == [{"Key": assigned["markerPrefix"] + "a" * 32}]
    assert evaluate(markers, {"result": {"Contents": [{"Key": own}]}}, ownMarker=own) == []
    assert evaluate(markers, {"result": {"KeyCount": 0}}, ownMarker=own) == []


def test_the_hours_outcomes_become_what_is_deleted_after_the_wait_and_what_failed(states: dict[str, Any]) -> None:
    assign = states["CompactTheHours"]["Assign"]
    done = evaluate(states["HourDone"]["Output"]["superseded"], supersededRuns=["compacted/x/run=1/"])
    assert done == ["compacted/x/run=1/"]
    results = {
        "result": [
            {"superseded": ["compacted/a/run=1/"], "ownMarker": "late/a/m1"},
            {"failed": "2026-11-26T03"},
            {"superseded": [], "ownMarker": "late/b/m2"},
        ]
    }
    assert evaluate(assign["superseded"], results) == ["compacted/a/run=1/"]
    assert evaluate(assign["ownMarkers"], results) == [{"Key": "late/a/m1"}, {"Key": "late/b/m2"}]
    assert evaluate(assign["failedHours"], results) == ["2026-11-26T03"]
    one = {"result": [{"superseded": [], "ownMarker": "late/a/m1"}]}
    assert evaluate(assign["superseded"], one) == [] and evaluate(assign["failedHours"], one) == []
    assert evaluate(assign["ownMarkers"], one) == [{"Key": "late/a/m1"}]
    cause = evaluate(states["CompactionFailed"]["Cause"], failedHours=["2026-11-26T03"])
    assert "2026-11-26T03" in cause and "RUNBOOK.md#compaction-failed" in cause


def test_a_leased_hour_is_tried_again_until_any_lease_has_expired(states: dict[str, Any]) -> None:
    condition = states["HourLeased"]["Choices"][0]["Condition"]
    count = states["CountTheTry"]["Assign"]["leaseTries"]
    tries = [1]
    while evaluate(condition, leaseTries=tries[-1]):
        tries.append(evaluate(count, leaseTries=tries[-1]))
    hold = lease_hold(PipelineConfig(COMPACTION_GRACE_MINUTES=GRACE_MINUTES)).to_seconds()
    assert (len(tries) - 1) * states["WaitForTheHour"]["Seconds"] >= hold
    assert states["HourLeased"]["Default"] == "HourFailed"
