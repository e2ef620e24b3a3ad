"""Hourly compaction of the raw lake into payloads_compacted, on Athena: an EventBridge Scheduler schedule
starts a Step Functions state machine that runs Athena statements (the `.sync` integration) and tidies S3.
No Lambda holds data: at the seed's load one hour is ~100 GB of gzip NDJSON, Athena reads it.

An execution compacts a list of hours (UTC), one at a time (a Map with MaxConcurrency 1), chosen by its input:
``{"hour": "2026-11-26T02"}`` (`make smoke-aws`, a re-run) is that hour alone, ``{"hours": ["2026-11-26T02",
...]}`` (`make compact-aws`) those hours in that order;
``{"scheduledTime": "<aws.scheduler.scheduled-time>"}`` from the schedule ("Adding context attributes in
EventBridge Scheduler": the scheduled time, e.g. 2022-03-22T18:59:43Z) is, oldest first:

- the hour that closed COMPACTION_GRACE_MINUTES before;
- every closed hour of the COMPACTION_CATCHUP_HOURS before it without a compacted partition yet (Glue
  GetPartitions on payloads_compacted);
- every hour with late markers (infra/lake_table.py ``LATE_MARKER_PREFIX``; the oldest LATE_HOURS_PER_RUN).

Why this design, not a dead-letter queue on the schedule (issue 26, item 3): it heals itself. An hour that a
dropped invocation (EventBridge Scheduler drops an invocation after its retries unless the target has a
DeadLetterConfig, "Configuring a schedule's dead-letter queue"), a failed run or an aborted execution left
uncompacted is compacted by the next scheduled run, with no operator and no message to redrive; the alarms
(compaction-failed; the Scheduler's InvocationDroppedCount) still say it happened. A DLQ would hold the
dropped event until someone acts on it, and adds a queue and its alarm for what the next run does anyway.

One hour's run:

1. takes the hour's lease (infra/hour_lease_construct.py: a conditional PutItem, strongly consistent), or
   waits LEASE_POLL and tries again while another run holds it, for as long as a lease can be held;
2. writes its own late marker (so an aborted or failed run leaves its hour marked for the next run) and
   lists the hour's markers;
3. CTAS: the hour's rows (infra/lake_table.py ``compaction_select``) as Parquet zstd into a fresh
   directory ``compacted/dt=/hour=/run=<run id>/`` (a CTAS location must be empty: "Considerations and
   limitations for CTAS queries"; one statement per hour also keeps within CTAS's 100 partitions:
   "Use CTAS and INSERT INTO to work around the 100 partition limit");
4. ALTER TABLE ADD IF NOT EXISTS PARTITION, then ALTER TABLE ... PARTITION SET LOCATION to the new
   directory ("ALTER TABLE SET LOCATION"): one catalog update, so a query sees the old run or the new;
5. drops the CTAS scratch table, lists the hour's other run directories (superseded, or left by an aborted
   run: under the lease no other run of the hour writes), deletes the markers it listed (not its own), and
   releases the lease.

After the last hour the execution waits ATHENA_DML_TIMEOUT_MINUTES (Athena's DML query timeout, "Service
Quotas": 30 minutes by default, at most 240; no workgroup setting bounds a query's run time) and only then
deletes exactly the directories it listed, their scratch tables, and its own markers: a query that planned
on a superseded directory before the switch can finish reading it. Never "everything but mine": a newer
run may have switched the hour in the meantime. If the execution dies before (aborted, timed out), its own
markers stay and the next scheduled run compacts those hours again and deletes the same directories. So a
superseded directory is deleted no sooner than ATHENA_DML_TIMEOUT_MINUTES after its switch and, while
scheduled runs succeed, no later than the state machine's timeout (``state_machine_timeout``) after the run
that superseded it started, or, if that execution dies, one hour and one more timeout later
(docs/LAKE.md states the bound).

Why not Iceberg with MERGE INTO (Athena: "MERGE INTO is transactional and is supported only for Apache
Iceberg tables in Athena engine version 3"): every run would add files to an hour (a compaction of its
own, OPTIMIZE and VACUUM, to undo), concurrent MERGEs into one table fail their commit and must be retried,
the files under the prefix are not the table (deleted and superseded files stay until VACUUM), so a
map-reduce job that lists Parquet directories reads wrong rows, and DuckDB could not write the same layout
offline for `make compact`. A per-hour rewrite with an atomic partition switch gives plain Parquet
directories that list correctly once a run has finished.

A failed CTAS discards its run (scratch table, partial files: Athena may leave them, "Considerations and
limitations for CTAS queries", finding orphaned files) and the hour is tried again with a new run id,
twice; then the hour is left (its lease released, its marker kept, so the next scheduled run tries it
again), the other hours go on, and the execution fails at its end: the compaction-failed alarm fires.
"""

from __future__ import annotations

import json
import math
import re

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import PipelineConfig
from infra.functions import log_group as log_group_for
from infra.hour_lease_construct import CONDITION_FAILED, HourLeases, retry_all_but_the_condition
from infra.lake_table import (
    COMPACTED_PREFIX,
    COMPACTED_TABLE_NAME,
    LATE_MARKER_NAME_CHARS,
    LATE_MARKER_PREFIX,
    RUN_KEY,
    TABLE_NAME,
    CompactionWindow,
    add_partition_sql,
    ctas_sql,
    drop_scratch_table_sql,
    switch_partition_sql,
)
from infra.query_construct import athena_workgroup

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
RUN_ATTEMPTS = 3  # a failed CTAS: the run is discarded and tried again with a new run id, twice
BACK_OFF = Duration.minutes(2)  # before an hour's next attempt
DDL_TASK_TIMEOUT = Duration.minutes(5)  # ADD PARTITION, SET LOCATION, DROP TABLE: catalog updates, seconds
DDL_ATTEMPTS = 3
S3_TIDY_MARGIN = Duration.minutes(15)  # listing and deleting one hour's files and markers
LEASE_POLL = Duration.minutes(2)  # a run that finds its hour leased tries again this often
LATE_HOURS_PER_RUN = 24  # late-marked hours one scheduled run takes, oldest first; the next run takes the rest
# Markers one run of an hour lists (and deletes): a ListObjectsV2 page of 500 keys is ~100 KB of task result,
# inside Step Functions' 256 KiB ("Step Functions service quotas"); an hour with more is compacted again by the
# next run, which takes the next 500.
MARKERS_PER_RUN = 500
SCRATCH_TABLE_PREFIX = "compaction_"
# The run's names, computed once per attempt. `$run.<field>` in every statement.
RUN_FIELDS = ("id", "dt", "hour", "first", "last", "first_dt", "last_dt", "table", "prefix", "location")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def jsonata_template(template: str) -> str:
    """``... '{dt}' ...`` -> the JSONata expression ``{% "... '" & $run.dt & "' ..." %}``: SQL text rendered
    by infra/lake_table.py with ``{field}`` placeholders, filled from the run's variables at run time.
    Literal parts are JSON strings, which JSONata reads as string literals."""
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) not in RUN_FIELDS:
            raise ValueError(f"unknown placeholder {match.group(0)} in {template!r}")
        parts += [json.dumps(template[position : match.start()]), f"$run.{match.group(1)}"]
        position = match.end()
    parts.append(json.dumps(template[position:]))
    return "{% " + " & ".join(part for part in parts if part != '""') + " %}"


def _placeholder(name: str) -> str:
    return "{" + name + "}"


def ctas_task_timeout(config: PipelineConfig) -> Duration:
    """The CTAS task's own timeout, a backstop: Athena itself cancels the statement at its DML timeout
    ("Service Quotas"), and the .sync integration sees it fail within the minute more."""
    return Duration.minutes(config.ATHENA_DML_TIMEOUT_MINUTES + 1)


def lease_hold(config: PipelineConfig) -> Duration:
    """The longest a run can hold an hour's lease: every attempt's CTAS and clean-up at their timeouts, the
    back-offs, the DDL statements with their retries, and the S3 tidying. Only an execution that dies holding
    the lease (aborted, timed out) keeps it this long; every other run releases it when its hour is done."""
    ddl = DDL_TASK_TIMEOUT.to_minutes() * DDL_ATTEMPTS
    per_attempt = ctas_task_timeout(config).to_minutes() + ddl + BACK_OFF.to_minutes()
    minutes = RUN_ATTEMPTS * per_attempt + 3 * ddl + S3_TIDY_MARGIN.to_minutes()
    return Duration.minutes(minutes)


def lease_tries(config: PipelineConfig) -> int:
    """How often a run tries to take a leased hour: until any lease taken before its first try has expired."""
    return math.ceil(lease_hold(config).to_minutes() / LEASE_POLL.to_minutes()) + 1


def state_machine_timeout(config: PipelineConfig) -> Duration:
    """A day, or one hour's worst case (waiting out a lease, then holding it) plus the wait for readers, if
    longer. Not every hour of a long catch-up at its worst case: an execution that times out leaves its
    hours marked, and the next scheduled run compacts them (and the compaction-failed alarm fires)."""
    worst_hour = lease_hold(config).to_minutes() * 2 + LEASE_POLL.to_minutes()
    minutes = max(24 * 60, worst_hour + config.ATHENA_DML_TIMEOUT_MINUTES + S3_TIDY_MARGIN.to_minutes())
    return Duration.minutes(minutes)


class PayloadCompaction(Construct):
    """The compaction workgroup, state machine, hourly schedule and the role they run with."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        bucket: s3.IBucket,
        results_bucket: s3.IBucket,
        database_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        stage = config.STAGE.lower()
        # The workgroup and the state machine share one name
        self.workgroup_name = self.state_machine_name = f"ingest-pipeline-{stage}-compaction"
        results_prefix = "compaction/"
        # Its own workgroup: no per-query scan cutoff (QUERY_SCAN_LIMIT_GB guards analysts' queries; a
        # compaction scans one raw hour and the lookback's ids, ~100+ GB at the seed's load, by design).
        self.workgroup = athena_workgroup(
            self,
            self.workgroup_name,
            "Hourly compaction of the payloads into payloads_compacted (Step Functions)",
            f"s3://{results_bucket.bucket_name}/{results_prefix}",
            None,
            enforce=False,  # its CTAS names its external_location (athena_workgroup says why)
        )
        self.workgroup.add_metadata(
            "checkov",
            {
                "skip": [
                    {
                        "id": "CKV_AWS_82",
                        "comment": "The compaction's CTAS names its external_location, which a workgroup that "
                        "enforces its configuration refuses or redirects (docs/SECURITY.md, checkov)",
                    }
                ]
            },
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Compaction state machine: read the raw payloads, write compacted/, its own workgroup",
        )
        self.bucket = bucket
        self.database_name = database_name
        # By name: the role's policy cannot refer to the state machine it belongs to (a dependency cycle).
        self.state_machine_arn = stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.state_machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        # One guard for every run that rewrites an hour (this one; replay and erasure take the same leases)
        self.leases = HourLeases(self, "HourLeases", table_name=f"ingest-pipeline-{stage}-hour-leases")
        self._grant(stack, bucket, results_bucket, results_prefix, database_name, config.OBJECT_PREFIX, config.TRACING)
        self.leases.grant_take_and_release(self.role)
        log_group = log_group_for(self, "Logs", config)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            query_language=sfn.QueryLanguage.JSONATA,
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(config)),
            # The grants above are the role's whole policy: the tasks' own derived grants are broader
            # (CDK's Athena task allows every Glue table and database action in the database).
            role=self.role.without_policy_updates(),
            timeout=state_machine_timeout(config),
            tracing_enabled=config.TRACING,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        # Step Functions checks at creation that the role may deliver to the log group: policy first.
        policy = self.role.node.find_child("DefaultPolicy")
        self.state_machine.node.add_dependency(policy)
        minute = config.COMPACTION_GRACE_MINUTES % 60
        self.schedule = scheduler.Schedule(
            self,
            "Hourly",
            description=f"Compact each closed hour {config.COMPACTION_GRACE_MINUTES} minutes after it closes",
            schedule=scheduler.ScheduleExpression.cron(minute=str(minute), hour="*"),
            target=targets.StepFunctionsStartExecution(
                self.state_machine,
                input=scheduler.ScheduleTargetInput.from_object(
                    {"scheduledTime": scheduler.ContextAttribute.scheduled_time}
                ),
                retry_attempts=3,
                max_event_age=Duration.hours(1),
            ),
        )

    # --- IAM: exactly what the statements and the S3 clean-up need -------------------------------------
    def _grant(
        self,
        stack: Stack,
        bucket: s3.IBucket,
        results_bucket: s3.IBucket,
        results_prefix: str,
        database_name: str,
        raw_prefix: str,
        tracing: bool,
    ) -> None:
        def table(name: str) -> str:
            return stack.format_arn(service="glue", resource="table", resource_name=f"{database_name}/{name}")

        statements = [
            iam.PolicyStatement(
                sid="RunStatementsInItsWorkgroup",
                actions=["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:StopQueryExecution"],
                resources=[stack.format_arn(service="athena", resource="workgroup", resource_name=self.workgroup_name)],
            ),
            iam.PolicyStatement(
                sid="ReadTheCatalog",
                actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartition", "glue:GetPartitions"],
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    stack.format_arn(service="glue", resource="database", resource_name=database_name),
                    table(TABLE_NAME),
                    table(COMPACTED_TABLE_NAME),
                    table(f"{SCRATCH_TABLE_PREFIX}*"),
                ],
            ),
            iam.PolicyStatement(
                sid="RegisterCompactedHours",
                actions=["glue:BatchCreatePartition", "glue:CreatePartition", "glue:UpdatePartition"],
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    stack.format_arn(service="glue", resource="database", resource_name=database_name),
                    table(COMPACTED_TABLE_NAME),
                ],
            ),
            iam.PolicyStatement(
                sid="CreateAndDropScratchTables",
                actions=["glue:CreateTable", "glue:DeleteTable"],
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    stack.format_arn(service="glue", resource="database", resource_name=database_name),
                    table(f"{SCRATCH_TABLE_PREFIX}*"),
                ],
            ),
            iam.PolicyStatement(
                sid="ReadTheRawPayloads",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{raw_prefix}*")],
            ),
            iam.PolicyStatement(
                sid="WriteAndTidyTheCompactedPayloads",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{COMPACTED_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="WriteAndDeleteLateMarkers",
                actions=["s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects(f"{LATE_MARKER_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="ListTheLake",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={
                    "StringLike": {"s3:prefix": [f"{raw_prefix}*", f"{COMPACTED_PREFIX}*", f"{LATE_MARKER_PREFIX}*"]}
                }
                if raw_prefix
                else None,
            ),
            iam.PolicyStatement(
                sid="LocateTheLake",
                actions=["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                resources=[bucket.bucket_arn],
            ),
            iam.PolicyStatement(
                sid="WriteAndReadResults",
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                resources=[results_bucket.arn_for_objects(f"{results_prefix}*")],
            ),
            iam.PolicyStatement(
                sid="ListResults",
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[results_bucket.bucket_arn],
            ),
        ]
        for statement in statements:
            self.role.add_to_policy(statement)
        # Log delivery (and X-Ray, with TRACING): CDK adds these to the role of a state machine with logs
        # and tracing, but this role takes no updates, so they are stated here. They have no resource-level
        # permissions (Step Functions Developer Guide, "IAM Policies for logging to CloudWatch Logs").
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="DeliverLogs",
                actions=[
                    "logs:CreateLogDelivery",
                    "logs:GetLogDelivery",
                    "logs:UpdateLogDelivery",
                    "logs:DeleteLogDelivery",
                    "logs:ListLogDeliveries",
                    "logs:PutResourcePolicy",
                    "logs:DescribeResourcePolicies",
                    "logs:DescribeLogGroups",
                ],
                resources=["*"],
            )
        )
        if tracing:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="SendTraces",
                    actions=[
                        "xray:PutTraceSegments",
                        "xray:PutTelemetryRecords",
                        "xray:GetSamplingRules",
                        "xray:GetSamplingTargets",
                    ],
                    resources=["*"],
                )
            )

    # --- the state machine ---------------------------------------------------------------------------
    def _athena(self, construct_id: str, template: str, **kwargs: object) -> tasks.AthenaStartQueryExecution:
        return tasks.AthenaStartQueryExecution.jsonata(
            self,
            construct_id,
            query_string=jsonata_template(template),
            work_group=self.workgroup_name,
            query_execution_context=tasks.QueryExecutionContext(database_name=self.database_name),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            **kwargs,  # type: ignore[arg-type]
        )

    def _delete_prefixes(self, construct_id: str, items: str) -> sfn.Map:
        """Delete every object under each prefix of ``items`` (a JSONata array): list up to 1,000 keys,
        delete them, until none are left."""
        bucket = self.bucket.bucket_name
        listing = tasks.CallAwsService.jsonata(
            self,
            f"{construct_id}List",
            service="s3",
            action="listObjectsV2",
            parameters={"Bucket": bucket, "Prefix": "{% $states.input %}"},
            iam_resources=[self.bucket.bucket_arn],
            outputs={"prefix": "{% $states.input %}", "objects": "{% [$states.result.Contents.{'Key': Key}] %}"},
        )
        delete = tasks.CallAwsService.jsonata(
            self,
            f"{construct_id}Delete",
            service="s3",
            action="deleteObjects",
            parameters={"Bucket": bucket, "Delete": {"Objects": "{% $states.input.objects %}", "Quiet": True}},
            iam_resources=[self.bucket.arn_for_objects(f"{COMPACTED_PREFIX}*")],
            iam_action="s3:DeleteObject",
            outputs="{% $states.input.prefix %}",
        )
        for task in (listing, delete):
            task.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)
        delete.next(listing)
        loop = (
            sfn.Choice.jsonata(self, f"{construct_id}AnyLeft")
            .when(sfn.Condition.jsonata("{% $count($states.input.objects) > 0 %}"), delete)
            .otherwise(sfn.Succeed(self, f"{construct_id}Done"))
        )
        map_state = sfn.Map.jsonata(self, construct_id, items=sfn.ProvideItems.jsonata(items), max_concurrency=1)
        map_state.item_processor(listing.next(loop))
        return map_state

    def _definition(self, config: PipelineConfig) -> sfn.IChainable:
        grace_ms = config.COMPACTION_GRACE_MINUTES * MINUTE_MS
        catchup = config.COMPACTION_CATCHUP_HOURS
        bucket = self.bucket.bucket_name
        # The hour that closed the grace period before the scheduled time, or the hour given
        # ("2026-11-26T02", parsed and written back, so only digits reach the SQL).
        resolve = sfn.Pass.jsonata(
            self,
            "ResolveHour",
            assign={
                "closedMs": "{% $exists($states.input.scheduledTime) ? "
                f"($floor(($toMillis($states.input.scheduledTime) - {grace_ms}) / {HOUR_MS}) - 1) * {HOUR_MS} : "
                "$toMillis(($exists($states.input.hours) ? $states.input.hours[0] : $states.input.hour) "
                "& ':00:00Z') %}",
            },
        )
        # {"hour": ...}, or {"hours": [...]} (make compact-aws: a range in few executions, each waiting for
        # readers once, not once per hour)
        given = sfn.Pass.jsonata(
            self,
            "TheGivenHours",
            assign={
                "hours": "{% $exists($states.input.hours) ? "
                "[$states.input.hours.$toMillis($ & ':00:00Z')] : [$closedMs] %}"
            },
        )
        # Scheduled: which closed hours of the catch-up window have a compacted partition (a page of up to
        # 1,000 partitions: the window holds at most 169 hours)
        find_compacted = tasks.CallAwsService.jsonata(
            self,
            "FindCompactedHours",
            service="glue",
            action="getPartitions",
            parameters={
                "DatabaseName": self.database_name,
                "TableName": COMPACTED_TABLE_NAME,
                "Expression": '{% "dt >= \'" & '
                f"$fromMillis($closedMs - {catchup * HOUR_MS}, '[Y0001]-[M01]-[D01]') & \"'\" %}}",
                "MaxResults": 1000,
                # Without each partition's column list the answer stays well under Step Functions' 256 KiB
                # task result ("Step Functions service quotas"): about 0.4 KB a partition, 169 hours at most.
                "ExcludeColumnSchema": True,
            },
            iam_resources=["*"],
            assign={"compacted": "{% [$states.result.Partitions.$join(Values, '-')] %}"},
        )
        # ... and which hours have late markers: the days, then each day's hours (24 at most)
        find_late_days = tasks.CallAwsService.jsonata(
            self,
            "FindLateDays",
            service="s3",
            action="listObjectsV2",
            parameters={"Bucket": bucket, "Prefix": LATE_MARKER_PREFIX, "Delimiter": "/"},
            iam_resources=[self.bucket.bucket_arn],
            outputs="{% [$states.result.CommonPrefixes.Prefix] %}",
        )
        list_late_hours = tasks.CallAwsService.jsonata(
            self,
            "ListLateHoursOfTheDay",
            service="s3",
            action="listObjectsV2",
            parameters={"Bucket": bucket, "Prefix": "{% $states.input %}", "Delimiter": "/"},
            iam_resources=[self.bucket.bucket_arn],
            outputs="{% [$states.result.CommonPrefixes.Prefix] %}",
        )
        find_late_hours = sfn.Map.jsonata(
            self,
            "FindLateHours",
            items=sfn.ProvideItems.jsonata("{% $states.input %}"),
            max_concurrency=10,
            assign={"lateHours": "{% $reduce($states.result, $append, []) %}"},
        )
        find_late_hours.item_processor(list_late_hours)
        for task in (find_compacted, find_late_days, list_late_hours):
            task.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)
        # late/dt=YYYY-MM-DD/hour=HH/ -> that hour in ms
        dt_at, hour_at = len(LATE_MARKER_PREFIX) + len("dt="), len(LATE_MARKER_PREFIX) + len("dt=YYYY-MM-DD/hour=")
        late_ms = f"$toMillis($substring($, {dt_at}, 10) & 'T' & $substring($, {hour_at}, 2) & ':00:00Z')"
        missing = (
            f"[[1..{catchup}].($closedMs - $ * {HOUR_MS})]"
            "[$not($fromMillis($, '[Y0001]-[M01]-[D01]-[H01]') in $compacted)]"
            if catchup
            else "[]"
        )
        pick = sfn.Pass.jsonata(
            self,
            "PickTheHours",
            assign={
                "hours": "{% ( "
                f"$missing := {missing}; "
                f"$late := [$sort($distinct([$lateHours.{late_ms}][$ <= $closedMs]))][[0..{LATE_HOURS_PER_RUN - 1}]]; "
                "[$sort($distinct($append($append([$closedMs], $missing), $late)))] ) %}"
            },
        )
        # A catalog or listing that fails after its retries does not stop the hour that just closed
        fall_back = sfn.Pass.jsonata(self, "OnlyTheClosedHour", assign={"hours": "{% [$closedMs] %}"})
        for step in (find_compacted, find_late_days, find_late_hours):
            step.add_catch(fall_back, errors=["States.ALL"])

        hours = sfn.Map.jsonata(
            self,
            "CompactTheHours",
            items=sfn.ProvideItems.jsonata("{% $hours %}"),
            max_concurrency=1,
            assign={
                "superseded": "{% [$states.result.superseded] %}",
                "ownMarkers": "{% [$states.result.ownMarker.{'Key': $}] %}",
                "failedHours": "{% [$states.result.failed] %}",
            },
        )
        hours.item_processor(self._one_hour(config))

        # After every hour: wait out the readers, then delete exactly what the runs listed
        wait = sfn.Wait.jsonata(
            self, "WaitForReaders", time=sfn.WaitTime.duration(Duration.minutes(config.ATHENA_DML_TIMEOUT_MINUTES))
        )
        superseded = self._delete_prefixes("DeleteSupersededRuns", "{% $superseded %}")
        drop_tables = self._drop_scratch_tables_of("DropSupersededTables", "{% $superseded %}")
        delete_markers = tasks.CallAwsService.jsonata(
            self,
            "DeleteRunMarkers",
            service="s3",
            action="deleteObjects",
            parameters={"Bucket": bucket, "Delete": {"Objects": "{% $ownMarkers %}", "Quiet": True}},
            iam_resources=[self.bucket.arn_for_objects(f"{LATE_MARKER_PREFIX}*")],
            iam_action="s3:DeleteObject",
        )
        delete_markers.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)
        failed = sfn.Fail.jsonata(
            self,
            "CompactionFailed",
            error="CompactionFailed",
            cause="{% 'Hours not compacted (their markers stay, so the next scheduled run tries them again): ' & "
            "$join($failedHours, ', ') & '. docs/RUNBOOK.md#compaction-failed' %}",
        )
        outcome = (
            sfn.Choice.jsonata(self, "AnyHourFailed")
            .when(sfn.Condition.jsonata("{% $count($failedHours) > 0 %}"), failed)
            .otherwise(sfn.Succeed(self, "Compacted"))
        )
        markers = (
            sfn.Choice.jsonata(self, "AnyRunMarkers")
            .when(sfn.Condition.jsonata("{% $count($ownMarkers) > 0 %}"), delete_markers.next(outcome))
            .otherwise(outcome)
        )
        for step in (superseded, drop_tables, delete_markers):
            # what is left is the next run's: the hours' markers stay, so it compacts them again and lists
            # the same directories
            step.add_catch(failed, errors=["States.ALL"])
        tidy = (
            sfn.Choice.jsonata(self, "AnySuperseded")
            .when(
                sfn.Condition.jsonata("{% $count($superseded) > 0 %}"),
                wait.next(superseded).next(drop_tables).next(markers),
            )
            .otherwise(markers)
        )
        scheduled = (
            sfn.Choice.jsonata(self, "GivenOrScheduled")
            .when(sfn.Condition.jsonata("{% $not($exists($states.input.scheduledTime)) %}"), given)
            .otherwise(find_compacted)
        )
        find_compacted.next(find_late_days).next(find_late_hours).next(pick).next(hours)
        given.next(hours)
        fall_back.next(hours)
        hours.next(tidy)
        return resolve.next(scheduled)

    def _drop_scratch_tables_of(self, construct_id: str, run_prefixes: str) -> sfn.Map:
        """Delete the CTAS scratch table of each run directory in ``run_prefixes`` (JSONata): a run that
        finished dropped its own, an aborted one could not (``compaction_<run id>``, from the directory's name)."""
        delete = tasks.CallAwsService.jsonata(
            self,
            f"{construct_id}Delete",
            service="glue",
            action="deleteTable",
            parameters={
                "DatabaseName": self.database_name,
                "Name": f"{{% '{SCRATCH_TABLE_PREFIX}' & "
                f"$lowercase($substringBefore($substringAfter($states.input, '/{RUN_KEY}='), '/')) %}}",
            },
            iam_resources=["*"],
        )
        delete.add_retry(errors=["Glue.EntityNotFoundException"], max_attempts=0)
        delete.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)
        delete.add_catch(sfn.Succeed(self, f"{construct_id}Gone"), errors=["Glue.EntityNotFoundException"])
        map_state = sfn.Map.jsonata(self, construct_id, items=sfn.ProvideItems.jsonata(run_prefixes), max_concurrency=1)
        map_state.item_processor(delete)
        return map_state

    def _one_hour(self, config: PipelineConfig) -> sfn.IChainable:
        """One hour of the execution's list (the Map's item, in ms): lease, mark, CTAS, switch, list, release.
        Its output: the run directories it superseded, its own marker, or the hour that failed."""
        lookback_ms = config.COMPACTION_LOOKBACK_HOURS * HOUR_MS
        location_root = f"s3://{self.bucket.bucket_name}/"
        bucket = self.bucket.bucket_name
        the_hour = sfn.Pass.jsonata(
            self,
            "TheHour",
            assign={
                "hourMs": "{% $states.input %}",
                "leaseHour": "{% $fromMillis($states.input, '[Y0001]-[M01]-[D01]T[H01]') %}",
                "markerPrefix": f"{{% '{LATE_MARKER_PREFIX}dt=' & $fromMillis($states.input, '[Y0001]-[M01]-[D01]') & "
                "'/hour=' & $fromMillis($states.input, '[H01]') & '/' %}",
                "leaseTries": 1,
                "attempt": 1,
            },
        )
        owner = "{% $states.context.Execution.Id %}"
        take = self.leases.take(self, "TakeTheHour", hour="{% $leaseHour %}", owner=owner, hold=lease_hold(config))
        release = self.leases.release(self, "ReleaseTheHour", hour="{% $leaseHour %}", owner=owner)
        release_after_failure = self.leases.release(self, "ReleaseTheFailedHour", hour="{% $leaseHour %}", owner=owner)
        for task in (take, release, release_after_failure):
            retry_all_but_the_condition(task)
        hour_failed = sfn.Pass.jsonata(self, "HourFailed", outputs={"failed": "{% $leaseHour %}"})
        # Not taken: wait and try again until any lease taken before the first try has expired
        leased = (
            sfn.Choice.jsonata(self, "HourLeased")
            .when(
                sfn.Condition.jsonata(f"{{% $leaseTries < {lease_tries(config)} %}}"),
                sfn.Wait.jsonata(self, "WaitForTheHour", time=sfn.WaitTime.duration(LEASE_POLL)).next(
                    sfn.Pass.jsonata(self, "CountTheTry", assign={"leaseTries": "{% $leaseTries + 1 %}"}).next(take)
                ),
            )
            .otherwise(hour_failed)
        )
        take.add_catch(leased, errors=CONDITION_FAILED)
        take.add_catch(hour_failed, errors=["States.ALL"])

        marker_name = f"$substring($replace($uuid(), '-', ''), 0, {LATE_MARKER_NAME_CHARS})"
        mark = tasks.CallAwsService.jsonata(
            self,
            "MarkTheHour",
            service="s3",
            action="putObject",
            parameters={"Bucket": bucket, "Key": "{% $ownMarker %}", "Body": ""},
            iam_resources=[self.bucket.arn_for_objects(f"{LATE_MARKER_PREFIX}*")],
        )
        name_marker = sfn.Pass.jsonata(
            self, "NameTheMarker", assign={"ownMarker": f"{{% $markerPrefix & {marker_name} %}}"}
        )
        list_markers = tasks.CallAwsService.jsonata(
            self,
            "ListTheHoursMarkers",
            service="s3",
            action="listObjectsV2",
            parameters={"Bucket": bucket, "Prefix": "{% $markerPrefix %}", "MaxKeys": MARKERS_PER_RUN},
            iam_resources=[self.bucket.bucket_arn],
            assign={"markers": "{% [$states.result.Contents[Key != $ownMarker].{'Key': Key}] %}"},
        )
        name_run = sfn.Pass.jsonata(
            self,
            "NameTheRun",
            assign={
                "run": "{% ( "
                "$id := $fromMillis($millis(), '[Y0001][M01][D01]T[H01][m01][s01]Z') & '_' & "
                "$substring($replace($uuid(), '-', ''), 0, 8); "
                "$dt := $fromMillis($hourMs, '[Y0001]-[M01]-[D01]'); $hour := $fromMillis($hourMs, '[H01]'); "
                f"$prefix := '{COMPACTED_PREFIX}dt=' & $dt & '/hour=' & $hour & '/'; "
                "{ 'id': $id, 'dt': $dt, 'hour': $hour, "
                f"'first': $fromMillis($hourMs - {lookback_ms}, '[Y0001]-[M01]-[D01]-[H01]'), "
                f"'last': $fromMillis($hourMs + {lookback_ms}, '[Y0001]-[M01]-[D01]-[H01]'), "
                f"'first_dt': $fromMillis($hourMs - {lookback_ms}, '[Y0001]-[M01]-[D01]'), "
                f"'last_dt': $fromMillis($hourMs + {lookback_ms}, '[Y0001]-[M01]-[D01]'), "
                f"'table': '{SCRATCH_TABLE_PREFIX}' & $lowercase($id), 'prefix': $prefix, "
                f"'location': '{location_root}' & $prefix & '{RUN_KEY}=' & $id & '/' }} ) %}}",
            },
        )
        window = CompactionWindow.placeholders()
        location, table = _placeholder("location"), _placeholder("table")
        ctas = self._athena(
            "WriteTheHour",
            ctas_sql(window, table, location),
            task_timeout=sfn.Timeout.duration(ctas_task_timeout(config)),
        )
        ddl_timeout = sfn.Timeout.duration(DDL_TASK_TIMEOUT)
        add = self._athena("RegisterTheHour", add_partition_sql(window, location), task_timeout=ddl_timeout)
        switch = self._athena("SwitchTheHour", switch_partition_sql(window, location), task_timeout=ddl_timeout)
        drop = self._athena("DropScratchTable", drop_scratch_table_sql(table), task_timeout=ddl_timeout)
        list_runs = tasks.CallAwsService.jsonata(
            self,
            "ListTheHoursRuns",
            service="s3",
            action="listObjectsV2",
            parameters={"Bucket": bucket, "Prefix": "{% $run.prefix %}", "Delimiter": "/"},
            iam_resources=[self.bucket.bucket_arn],
            # Under the lease no other run of the hour writes: every other directory is superseded or
            # was left by an aborted run
            assign={
                "supersededRuns": "{% [$states.result.CommonPrefixes.Prefix[$ != $run.prefix & "
                f"'{RUN_KEY}=' & $run.id & '/']] %}}"
            },
        )
        delete_listed = tasks.CallAwsService.jsonata(
            self,
            "DeleteTheHoursMarkers",
            service="s3",
            action="deleteObjects",
            parameters={"Bucket": bucket, "Delete": {"Objects": "{% $markers %}", "Quiet": True}},
            iam_resources=[self.bucket.arn_for_objects(f"{LATE_MARKER_PREFIX}*")],
            iam_action="s3:DeleteObject",
        )
        done = sfn.Pass.jsonata(
            self, "HourDone", outputs={"superseded": "{% $supersededRuns %}", "ownMarker": "{% $ownMarker %}"}
        )
        release.add_catch(done, errors=["States.ALL"])  # expired and taken over, or gone: not ours to release
        release_after_failure.add_catch(hour_failed, errors=["States.ALL"])
        any_listed = (
            sfn.Choice.jsonata(self, "AnyListedMarkers")
            .when(sfn.Condition.jsonata("{% $count($markers) > 0 %}"), delete_listed.next(release))
            .otherwise(release)
        )
        # Statements that write nothing until they succeed (StartQueryExecution throttled or failing) are
        # retried in place; a failed CTAS may have written part of its directory, so its run is discarded
        # and the run tried again from a new directory.
        throttled = ["Athena.TooManyRequestsException", "Athena.InternalServerException"]
        ctas.add_retry(errors=throttled, max_attempts=4, interval=Duration.seconds(30), backoff_rate=2)
        for ddl in (add, switch, drop):
            # Idempotent statements (ADD IF NOT EXISTS, SET LOCATION, DROP IF EXISTS): retried as they are.
            ddl.add_retry(
                errors=["States.ALL"], max_attempts=DDL_ATTEMPTS - 1, interval=Duration.seconds(20), backoff_rate=2
            )
        for s3_call in (mark, list_markers, list_runs, delete_listed):
            s3_call.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)

        discard_table = self._athena("DiscardScratchTable", drop_scratch_table_sql(table), task_timeout=ddl_timeout)
        discard_files = self._delete_prefixes("DiscardRunFiles", "{% [$run.prefix & 'run=' & $run.id & '/'] %}")
        discard_table.add_retry(
            errors=["States.ALL"], max_attempts=DDL_ATTEMPTS - 1, interval=Duration.seconds(20), backoff_rate=2
        )
        discard_table.add_catch(release_after_failure, errors=["States.ALL"])
        discard_files.add_catch(release_after_failure, errors=["States.ALL"])
        try_again = (
            sfn.Choice.jsonata(self, "TryAgain")
            .when(
                sfn.Condition.jsonata(f"{{% $attempt < {RUN_ATTEMPTS} %}}"),
                sfn.Wait.jsonata(self, "BackOff", time=sfn.WaitTime.duration(BACK_OFF)).next(
                    sfn.Pass.jsonata(self, "CountTheAttempt", assign={"attempt": "{% $attempt + 1 %}"}).next(name_run)
                ),
            )
            .otherwise(release_after_failure)
        )
        ctas.add_catch(discard_table.next(discard_files).next(try_again), errors=["States.ALL"])
        for step in (mark, list_markers, add, switch, drop, list_runs, delete_listed):
            # The hour keeps its marker (and, after the CTAS, its run's files: the next run of the hour
            # deletes them); its lease is released and the other hours go on.
            step.add_catch(release_after_failure, errors=["States.ALL"])
        release.next(done)
        release_after_failure.next(hour_failed)
        the_hour.next(take).next(name_marker).next(mark).next(list_markers).next(name_run)
        name_run.next(ctas).next(add).next(switch).next(drop).next(list_runs).next(any_listed)
        return the_hour
