"""One guard for everything that rewrites an hour of the lake: a lease per hour in a DynamoDB table.

A run that rewrites hour H (the compaction now; the replay and erasure runs later issues add) first takes
H's lease: a conditional PutItem that succeeds only when no lease for H exists, the lease there has
expired, or the run already holds it (a retried PutItem whose first attempt succeeded). It releases the
lease with a DeleteItem conditional on still owning it, at its end and on failure. A lease that was never
released (an execution aborted or timed out) expires after ``hold``, so an hour stays re-runnable.

Why DynamoDB: a conditional write is decided on the item as it is, not on a read that may be stale
(DynamoDB Developer Guide, "Condition expressions": the operation succeeds only if the condition evaluates
to true; "Best practices for handling concurrent updates in DynamoDB": individual writes are atomic and
always operate on the most recent version of the item, and a lock is taken with a conditional write), so
of two runs that start in the same second exactly one takes the hour. Step Functions' ListExecutions, the guard
before, is eventually consistent ("results are best effort", ListExecutions API reference). Step Functions
calls DynamoDB directly ("Call DynamoDB with Step Functions": ``arn:aws:states:::dynamodb:putItem``, a
failed condition is the error ``DynamoDB.ConditionalCheckFailedException``).

The table holds only leases (one small item per hour being rewritten): on demand, point-in-time recovery
on (cdk-nag DDB3; its cost is per GB of a table this small), destroyed with the stack, and DynamoDB's TTL
deletes leases left behind (DynamoDB Developer Guide, "Time to Live": items are deleted within a few days
of expiring, so the condition, not TTL, decides whether a lease has expired).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

# The item: {"hour": "2026-11-26T02", "owner": <execution id>, "expiresAt": <epoch seconds>}.
# HOUR and OWNER are DynamoDB reserved words ("Reserved words in DynamoDB"): the expressions name them by
# placeholder.
HOUR_ATTRIBUTE = "hour"
OWNER_ATTRIBUTE = "owner"
EXPIRES_ATTRIBUTE = "expiresAt"
NAMES = {"#hour": HOUR_ATTRIBUTE, "#owner": OWNER_ATTRIBUTE, "#expires": EXPIRES_ATTRIBUTE}
TAKE_CONDITION = "attribute_not_exists(#hour) OR #expires < :now OR #owner = :owner"
RELEASE_CONDITION = "#owner = :owner"
# A failed condition's error name: "DynamoDB." for the optimized integration used here, as public state machines
# catch it; the AWS SDK integration (aws-sdk:dynamodb) spells the prefix "DynamoDb.". Both are listed, so a
# contested hour waits for its lease under either spelling (were the name wrong, it would fail the hour, never
# write it twice).
CONDITION_FAILED = ["DynamoDB.ConditionalCheckFailedException", "DynamoDb.ConditionalCheckFailedException"]
NOW_SECONDS = "$floor($millis() / 1000)"  # JSONata: the state's evaluation time


class HourLeases(Construct):
    """The ``hour-leases`` table and the Step Functions tasks that take and release one hour's lease."""

    def __init__(self, scope: Construct, construct_id: str, *, table_name: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name=HOUR_ATTRIBUTE, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=EXPIRES_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,  # leases only: nothing to keep
        )
        skip = {
            "id": "CKV_AWS_119",
            "comment": "Leases hold an hour, an execution id and an expiry, no payload data; DynamoDB encrypts "
            "every table at rest by default (docs/SECURITY.md, checkov)",
        }
        self.table.node.default_child.add_metadata("checkov", {"skip": [skip]})  # type: ignore[union-attr]

    def grant_take_and_release(self, role: iam.IRole) -> None:
        """Exactly what taking and releasing needs, on this table only."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TakeAndReleaseHourLeases",
                actions=["dynamodb:PutItem", "dynamodb:DeleteItem"],
                resources=[self.table.table_arn],
            )
        )

    def take(
        self, scope: Construct, construct_id: str, *, hour: str, owner: str, hold: Duration
    ) -> tasks.DynamoPutItem:
        """Take the lease of ``hour`` (a JSONata expression, ``YYYY-MM-DDTHH``) for ``owner`` (JSONata, e.g. the
        execution id) for ``hold``; fails with ``CONDITION_FAILED`` while another owner holds it."""
        owner_value = tasks.DynamoAttributeValue.from_string(owner)
        return tasks.DynamoPutItem.jsonata(
            scope,
            construct_id,
            table=self.table,
            item={
                HOUR_ATTRIBUTE: tasks.DynamoAttributeValue.from_string(hour),
                OWNER_ATTRIBUTE: owner_value,
                EXPIRES_ATTRIBUTE: tasks.DynamoAttributeValue.number_from_string(
                    f"{{% $string({NOW_SECONDS} + {int(hold.to_seconds())}) %}}"
                ),
            },
            condition_expression=TAKE_CONDITION,
            expression_attribute_names=NAMES,
            expression_attribute_values={
                ":now": tasks.DynamoAttributeValue.number_from_string(f"{{% $string({NOW_SECONDS}) %}}"),
                ":owner": owner_value,
            },
        )

    def release(self, scope: Construct, construct_id: str, *, hour: str, owner: str) -> tasks.DynamoDeleteItem:
        """Release the lease of ``hour`` if ``owner`` still holds it (``CONDITION_FAILED`` otherwise: it
        expired and another run took it over, or it was released already)."""
        return tasks.DynamoDeleteItem.jsonata(
            scope,
            construct_id,
            table=self.table,
            key={HOUR_ATTRIBUTE: tasks.DynamoAttributeValue.from_string(hour)},
            condition_expression=RELEASE_CONDITION,
            expression_attribute_names={"#owner": OWNER_ATTRIBUTE},
            expression_attribute_values={":owner": tasks.DynamoAttributeValue.from_string(owner)},
        )


def retry_all_but_the_condition(task: sfn.TaskStateBase) -> None:
    """A lease write that fails for anything but its condition (throttling, a service error) is retried in
    place: it changes nothing until it succeeds. A failed condition is the answer, never retried (the first
    retrier that matches an error applies: Step Functions Developer Guide, "Handling errors")."""
    task.add_retry(errors=CONDITION_FAILED, max_attempts=0)
    task.add_retry(errors=["States.ALL"], max_attempts=4, interval=Duration.seconds(2), backoff_rate=2)
