"""`make compact-aws` (tools/ops/compact.py aws) against a fake Step Functions client (moto's does not
run state machines): one execution per HOURS_PER_EXECUTION hours, in order, each after the previous one
ended, stopping at the first failure; bad hours are exit 2."""

from __future__ import annotations

import io
import json
from typing import Any

from tools.ops import compact

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:ingest-pipeline-prod-compaction"


class FakeStepFunctions:
    """Executions run one poll each; ``outcomes`` gives an execution's final status by its first hour
    (default SUCCEEDED)."""

    def __init__(self, outcomes: dict[str, str] | None = None) -> None:
        self.outcomes = outcomes or {}
        self.started: list[dict[str, Any]] = []
        self.polls: dict[str, int] = {}

    def start_execution(self, stateMachineArn: str, name: str, input: str) -> dict[str, str]:  # noqa: A002, N803
        assert all(self.polls[e["arn"]] >= 2 for e in self.started), "started before the previous one ended"
        arn = f"{ARN.replace(':stateMachine:', ':execution:')}:{name}"
        self.started.append({"machine": stateMachineArn, "name": name, "input": json.loads(input), "arn": arn})
        self.polls[arn] = 0
        return {"executionArn": arn}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        self.polls[executionArn] += 1
        if self.polls[executionArn] < 2:
            return {"status": "RUNNING"}
        hour = next(e["input"]["hours"][0] for e in self.started if e["arn"] == executionArn)
        status = self.outcomes.get(hour, "SUCCEEDED")
        extra = {"error": "CompactionFailed", "cause": "the hour's run failed"} if status == "FAILED" else {}
        return {"status": status, **extra}


class FakeCloudFormation:
    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803
        return {"Stacks": [{"Outputs": [{"OutputKey": "CompactionStateMachineArn", "OutputValue": ARN}]}]}


def run(args: list[str], sfn: FakeStepFunctions) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    clients = {"stepfunctions": sfn, "cloudformation": FakeCloudFormation()}
    original = compact.time.sleep
    compact.time.sleep = lambda _: None  # type: ignore[assignment]
    try:
        code = compact.main(["aws", *args], clients=clients.__getitem__, out=out, err=err)
    finally:
        compact.time.sleep = original  # type: ignore[assignment]
    return code, out.getvalue(), err.getvalue()


def test_a_range_is_compacted_in_executions_of_a_day_in_order_each_after_the_last() -> None:
    # Given a deployed stack
    sfn = FakeStepFunctions()
    # When a range across midnight is compacted
    code, out, _ = run(["--stack", "IngestPipeline-prod", "--from", "2026-11-26T22", "--to", "2026-11-27T01"], sfn)
    # Then one execution takes the hours, in order, as its input, and the output says so
    assert code == 0
    assert [e["input"] for e in sfn.started] == [
        {"hours": ["2026-11-26T22", "2026-11-26T23", "2026-11-27T00", "2026-11-27T01"]}
    ]
    assert {e["machine"] for e in sfn.started} == {ARN}
    assert "2026-11-26T22..2026-11-27T01  SUCCEEDED" in out and "4 hour(s) compacted" in out
    # And a longer range is split into executions of 24 hours (one wait for readers each), in order
    sfn = FakeStepFunctions()
    code, out, _ = run(["--state-machine-arn", ARN, "--from", "2026-11-20T00", "--to", "2026-11-22T05"], sfn)
    assert code == 0
    assert [len(e["input"]["hours"]) for e in sfn.started] == [24, 24, 6]
    assert [e["input"]["hours"][0] for e in sfn.started] == ["2026-11-20T00", "2026-11-21T00", "2026-11-22T00"]
    assert "54 hour(s) compacted" in out


def test_a_failed_execution_stops_the_range_and_names_its_hours() -> None:
    sfn = FakeStepFunctions({"2026-11-21T00": "FAILED"})
    code, out, err = run(["--state-machine-arn", ARN, "--from", "2026-11-20T00", "--to", "2026-11-22T05"], sfn)
    assert code == 1
    assert len(sfn.started) == 2
    assert "2026-11-21T00..2026-11-21T23  FAILED  CompactionFailed" in out
    assert "2026-11-21T00..2026-11-21T23 FAILED; 6 later hour(s) not started" in err
    assert "RUNBOOK.md#compaction-failed" in err


def test_bad_hours_are_refused_before_anything_starts() -> None:
    for first, last in (("2026-11-26 02", "2026-11-26T03"), ("2026-11-26T05", "2026-11-26T03"), ("yesterday", "")):
        sfn = FakeStepFunctions()
        code, _, err = run(["--state-machine-arn", ARN, "--from", first, *(["--to", last] if last else [])], sfn)
        assert code == 2 and sfn.started == [] and "compact:" in err
