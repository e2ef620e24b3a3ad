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

from infra.lake_table import (
    COMPACTED_PREFIX,
    CompactionWindow,
    add_partition_sql,
    ctas_sql,
    drop_scratch_table_sql,
    switch_partition_sql,
)
from tests.infra import synth
from tests.infra.test_compaction import state_machine_definition

HOUR_MS = 3_600_000
GRACE_MINUTES = 30
LOOKBACK_HOURS = 24
RUN_STARTED = datetime(2026, 11, 26, 3, 31, 7, tzinfo=UTC)  # what $millis() returns in these runs
UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture(scope="module")
def states() -> dict[str, Any]:
    template: Template = synth(COMPACTION_GRACE_MINUTES=GRACE_MINUTES, COMPACTION_LOOKBACK_HOURS=LOOKBACK_HOURS)
    return all_states(state_machine_definition(template))


def all_states(definition: dict[str, Any]) -> dict[str, Any]:
    """Every state by name, those inside Map item processors too."""
    found: dict[str, Any] = {}
    for name, state in definition["States"].items():
        found[name] = state
        if "ItemProcessor" in state:
            found.update(all_states(state["ItemProcessor"]))
    return found


def expressions(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.startswith("{%"):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item)


def evaluate(expression: str, states_variable: dict[str, Any] | None = None, **variables: Any) -> Any:
    """One ``{% ... %}`` expression, as Step Functions evaluates it: ``$states`` and the workflow's
    variables bound, $uuid() and $millis() fixed so the run's names are known."""
    assert expression.startswith("{% ") and expression.endswith(" %}"), expression
    compiled = jsonata.Jsonata(expression[3:-3])
    compiled.register_lambda("uuid", lambda: UUID)
    compiled.register_lambda("millis", lambda: int(RUN_STARTED.timestamp() * 1000))
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
    expression = states["ResolveHour"]["Assign"]["hourMs"]
    # Given the schedule fires at 03:30 (grace 30 minutes), then the hour 02:00-03:00 is compacted
    scheduled = {"input": {"scheduledTime": "2026-11-26T03:30:00Z"}}
    assert evaluate(expression, scheduled) == hour_ms(datetime(2026, 11, 26, 2, tzinfo=UTC))
    # And a late firing in the same hour still means that hour, never the one still open
    late = {"input": {"scheduledTime": "2026-11-26T04:29:59Z"}}
    assert evaluate(expression, late) == hour_ms(datetime(2026, 11, 26, 2, tzinfo=UTC))
    # And make compact-aws names the hour itself
    given = {"input": {"hour": "2026-11-26T02"}}
    assert evaluate(expression, given) == hour_ms(datetime(2026, 11, 26, 2, tzinfo=UTC))


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


def test_only_the_hours_other_runs_are_deleted(states: dict[str, Any]) -> None:
    run = run_variables(states, datetime(2026, 11, 26, 2, tzinfo=UTC))
    listing = {
        "input": {
            "CommonPrefixes": [
                {"Prefix": run["prefix"] + "run=20261126T010000Z_aaaaaaaa/"},
                {"Prefix": run["prefix"] + f"run={run['id']}/"},
                {"Prefix": run["prefix"] + "run=20261126T020000Z_bbbbbbbb/"},
            ]
        }
    }
    items = states["DeleteSupersededRuns"]["Items"]
    assert evaluate(items, listing, run=run) == [
        run["prefix"] + "run=20261126T010000Z_aaaaaaaa/",
        run["prefix"] + "run=20261126T020000Z_bbbbbbbb/",
    ]
    # A single other run is still a list of one (JSONata would otherwise unwrap a one-item sequence)
    one = {"input": {"CommonPrefixes": [{"Prefix": run["prefix"] + "run=x/"}]}}
    assert evaluate(items, one, run=run) == [run["prefix"] + "run=x/"]
    # No other run (S3 leaves CommonPrefixes out when there is none): nothing to delete
    assert evaluate(items, {"input": {}}, run=run) == []
    # A failed CTAS discards exactly its own directory
    assert evaluate(states["DiscardRunFiles"]["Items"], run=run) == [run["prefix"] + f"run={run['id']}/"]


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


def test_a_run_waits_until_it_is_the_oldest_running_execution(states: dict[str, Any]) -> None:
    # ListExecutions lists the most recent execution first
    oldest = states["ListRunningRuns"]["Assign"]["oldest"]
    result = {"result": {"Executions": [{"ExecutionArn": "arn:new"}, {"ExecutionArn": "arn:old"}]}}
    assert evaluate(oldest, result) == "arn:old"
    assert evaluate(oldest, {"result": {"Executions": [{"ExecutionArn": "arn:only"}]}}) == "arn:only"
    condition = states["OldestRunning"]["Choices"][0]["Condition"]
    assert evaluate(condition, {"context": {"Execution": {"Id": "arn:old"}}}, oldest="arn:old") is True
    assert evaluate(condition, {"context": {"Execution": {"Id": "arn:new"}}}, oldest="arn:old") is False


def test_a_failed_hour_is_tried_three_times_in_all(states: dict[str, Any]) -> None:
    condition = states["TryAgain"]["Choices"][0]["Condition"]
    count = states["CountTheAttempt"]["Assign"]["attempt"]
    attempts = [1]
    while evaluate(condition, attempt=attempts[-1]):
        attempts.append(evaluate(count, attempt=attempts[-1]))
    assert attempts == [1, 2, 3]
