"""The hour lease decides, against DynamoDB (moto), which of two runs of one hour proceeds: the PutItem and
DeleteItem arguments exactly as the synthesized state machine renders them, their JSONata evaluated with
jsonata-python for each run's execution id and clock (infra/hour_lease_construct.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.infra import synth
from tests.infra.test_compaction import all_states, state_machine_definition
from tests.infra.test_compaction_jsonata import evaluate

TABLE = "ingest-pipeline-prod-hour-leases"
HOUR = "2026-11-26T02"
FIRST = "arn:aws:states:us-east-1:123456789012:execution:ingest-pipeline-prod-compaction:scheduled"
SECOND = "arn:aws:states:us-east-1:123456789012:execution:ingest-pipeline-prod-compaction:by-hand"
STARTED = datetime(2026, 11, 26, 3, 30, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def lease_states() -> dict[str, Any]:
    states = all_states(state_machine_definition(synth()))
    return {name: states[name] for name in ("TakeTheHour", "ReleaseTheHour")}


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "hour", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "hour", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def rendered(arguments: Any, execution: str, at: datetime) -> Any:
    """The task's Arguments as Step Functions sends them: every ``{% %}`` evaluated for this execution at
    ``at``, the table name (a CloudFormation token in the template) filled in."""
    if isinstance(arguments, dict):
        return {key: rendered(value, execution, at) for key, value in arguments.items()}
    if isinstance(arguments, str) and arguments.startswith("{%"):
        context = {"context": {"Execution": {"Id": execution}}}
        return evaluate(arguments, context, leaseHour=HOUR, now=at)
    return TABLE if arguments == "<token>" else arguments


def call(client: Any, action: str, state: dict[str, Any], execution: str, at: datetime) -> str:
    """Run the state's DynamoDB call; "taken"/"released", or the error code Step Functions would see."""
    try:
        getattr(client, action)(**rendered(state["Arguments"], execution, at))
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "done"


def owner(client: Any) -> str | None:
    item = client.get_item(TableName=TABLE, Key={"hour": {"S": HOUR}}, ConsistentRead=True).get("Item")
    return item["owner"]["S"] if item else None


def test_of_two_runs_of_one_hour_started_in_the_same_second_one_takes_it(
    lease_states: dict[str, Any], dynamodb: Any
) -> None:
    take = lease_states["TakeTheHour"]
    assert take["Resource"].endswith(":states:::dynamodb:putItem")
    # Given a scheduled run and a hand-started run of the same hour, in the same second
    # When both take the hour's lease
    first = call(dynamodb, "put_item", take, FIRST, STARTED)
    second = call(dynamodb, "put_item", take, SECOND, STARTED)
    # Then the first holds it and the second is refused, with the error its Catch waits on
    assert (first, second) == ("done", "ConditionalCheckFailedException")
    # (the optimized integration's "DynamoDB." prefix, and the SDK integration's "DynamoDb." spelling beside it)
    assert {"DynamoDB.ConditionalCheckFailedException", "DynamoDb.ConditionalCheckFailedException"} <= set(
        take["Catch"][0]["ErrorEquals"]
    )
    assert owner(dynamodb) == FIRST
    # And the holder's own retried PutItem (its first attempt succeeded unseen) is not refused
    assert call(dynamodb, "put_item", take, FIRST, STARTED) == "done"


def test_a_released_lease_can_be_taken_and_only_its_owner_releases_it(
    lease_states: dict[str, Any], dynamodb: Any
) -> None:
    take, release = lease_states["TakeTheHour"], lease_states["ReleaseTheHour"]
    assert call(dynamodb, "put_item", take, FIRST, STARTED) == "done"
    # the other run cannot release what it does not hold
    assert call(dynamodb, "delete_item", release, SECOND, STARTED) == "ConditionalCheckFailedException"
    assert owner(dynamodb) == FIRST
    # the holder releases it; the other run then takes the hour at its next try
    assert call(dynamodb, "delete_item", release, FIRST, STARTED) == "done"
    assert owner(dynamodb) is None
    assert call(dynamodb, "put_item", take, SECOND, STARTED.replace(minute=32)) == "done"
    assert owner(dynamodb) == SECOND


def test_a_lease_left_by_a_dead_run_is_taken_over_once_it_expires(lease_states: dict[str, Any], dynamodb: Any) -> None:
    take = lease_states["TakeTheHour"]
    # Given a run that took the hour and was aborted before it released it
    assert call(dynamodb, "put_item", take, FIRST, STARTED) == "done"
    expires = int(dynamodb.get_item(TableName=TABLE, Key={"hour": {"S": HOUR}})["Item"]["expiresAt"]["N"])
    # Then another run is refused until the lease expires, and takes it over after
    just_before = datetime.fromtimestamp(expires, UTC)
    assert call(dynamodb, "put_item", take, SECOND, just_before) == "ConditionalCheckFailedException"
    after = datetime.fromtimestamp(expires + 1, UTC)
    assert call(dynamodb, "put_item", take, SECOND, after) == "done"
    assert owner(dynamodb) == SECOND
