"""Hourly compaction of the raw lake into payloads_compacted, on Athena: an EventBridge Scheduler schedule
starts a Step Functions state machine that runs Athena statements (the `.sync` integration) and tidies S3.
No Lambda holds data: at the seed's load one hour is ~100 GB of gzip NDJSON, Athena reads it.

One run compacts one hour (UTC), identified by the state machine's input: ``{"hour": "2026-11-26T02"}``
(`make compact-aws`, a re-run), or ``{"scheduledTime": "<aws.scheduler.scheduled-time>"}`` from the
schedule, which compacts the hour that closed COMPACTION_GRACE_MINUTES before ("Adding context attributes
in EventBridge Scheduler": the scheduled time, e.g. 2022-03-22T18:59:43Z). A run:

1. waits until it is the oldest running execution (ListExecutions lists the newest first), so runs never
   overlap: an hour's run reads the neighbouring hours' ids, and cleans up its hour's old runs;
2. CTAS: the hour's rows (infra/lake_table.py ``compaction_select``) as Parquet zstd into a fresh
   directory ``compacted/dt=/hour=/run=<run id>/`` (a CTAS location must be empty: "Considerations and
   limitations for CTAS queries"; one statement per hour also keeps within CTAS's 100 partitions:
   "Use CTAS and INSERT INTO to work around the 100 partition limit");
3. ALTER TABLE ADD IF NOT EXISTS PARTITION, then ALTER TABLE ... PARTITION SET LOCATION to the new
   directory ("ALTER TABLE SET LOCATION"): one catalog update, so a query sees the old run or the new;
4. drops the CTAS scratch table, then deletes the hour's other run directories in S3.

Why not Iceberg with MERGE INTO (Athena: "MERGE INTO is transactional and is supported only for Apache
Iceberg tables in Athena engine version 3"): every run would add files to an hour (a compaction of its
own, OPTIMIZE and VACUUM, to undo), concurrent MERGEs into one table fail their commit and must be retried,
the files under the prefix are not the table (deleted and superseded files stay until VACUUM), so a
map-reduce job that lists Parquet directories reads wrong rows, and DuckDB could not write the same layout
offline for `make compact`. A per-hour rewrite with an atomic partition switch gives plain Parquet
directories that list correctly once a run has finished.

A failed CTAS discards its run (scratch table, partial files: Athena may leave them, "Considerations and
limitations for CTAS queries", finding orphaned files) and the whole run is tried again with a new run id,
twice; then the execution fails, and the monitoring construct's compaction-failed alarm fires.
"""

from __future__ import annotations

import json
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
from infra.lake_table import (
    COMPACTED_PREFIX,
    COMPACTED_TABLE_NAME,
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
STATE_MACHINE_TIMEOUT = Duration.hours(3)
WAIT_FOR_EARLIER_RUN = Duration.minutes(1)
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
        self._grant(stack, bucket, results_bucket, results_prefix, database_name, config.OBJECT_PREFIX, config.TRACING)
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
            timeout=STATE_MACHINE_TIMEOUT,
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
                sid="ListTheLake",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{raw_prefix}*", f"{COMPACTED_PREFIX}*"]}}
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
            iam.PolicyStatement(
                sid="SeeEarlierRuns",
                actions=["states:ListExecutions"],
                resources=[self.state_machine_arn],
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
        lookback_ms = config.COMPACTION_LOOKBACK_HOURS * HOUR_MS
        grace_ms = config.COMPACTION_GRACE_MINUTES * MINUTE_MS
        location_root = f"s3://{self.bucket.bucket_name}/"
        # The hour: given ("2026-11-26T02", parsed and written back, so only digits reach the SQL), or the
        # one that closed the grace period before the scheduled time.
        resolve = sfn.Pass.jsonata(
            self,
            "ResolveHour",
            assign={
                "hourMs": "{% $exists($states.input.hour) ? $toMillis($states.input.hour & ':00:00Z') : "
                f"($floor(($toMillis($states.input.scheduledTime) - {grace_ms}) / {HOUR_MS}) - 1) * {HOUR_MS} %}}",
                "attempt": 1,
            },
        )
        list_running = tasks.CallAwsService.jsonata(
            self,
            "ListRunningRuns",
            service="sfn",
            action="listExecutions",
            parameters={"StateMachineArn": self.state_machine_arn, "StatusFilter": "RUNNING", "MaxResults": 1000},
            iam_resources=[self.state_machine_arn],
            assign={"oldest": "{% $states.result.Executions[-1].ExecutionArn %}"},
        )
        list_running.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)
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
        ctas = self._athena("WriteTheHour", ctas_sql(window, table, location))
        add = self._athena("RegisterTheHour", add_partition_sql(window, location))
        switch = self._athena("SwitchTheHour", switch_partition_sql(window, location))
        drop = self._athena("DropScratchTable", drop_scratch_table_sql(table))
        list_runs = tasks.CallAwsService.jsonata(
            self,
            "ListTheHoursRuns",
            service="s3",
            action="listObjectsV2",
            parameters={"Bucket": self.bucket.bucket_name, "Prefix": "{% $run.prefix %}", "Delimiter": "/"},
            iam_resources=[self.bucket.bucket_arn],
        )
        superseded = self._delete_prefixes(
            "DeleteSupersededRuns",
            "{% [$states.input.CommonPrefixes.Prefix[$ != $run.prefix & 'run=' & $run.id & '/']] %}",
        )
        # Statements that write nothing until they succeed (StartQueryExecution throttled or failing) are
        # retried in place; a failed CTAS may have written part of its directory, so its run is discarded
        # and the run tried again from a new directory.
        throttled = ["Athena.TooManyRequestsException", "Athena.InternalServerException"]
        ctas.add_retry(errors=throttled, max_attempts=4, interval=Duration.seconds(30), backoff_rate=2)
        for ddl in (add, switch, drop):
            # Idempotent statements (ADD IF NOT EXISTS, SET LOCATION, DROP IF EXISTS): retried as they are.
            ddl.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(20), backoff_rate=2)
        list_runs.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)

        failed = sfn.Fail.jsonata(
            self,
            "CompactionFailed",
            error="CompactionFailed",
            cause="The hour's run failed after its retries; re-run it: docs/RUNBOOK.md#compaction-failed",
        )
        discard_table = self._athena("DiscardScratchTable", drop_scratch_table_sql(table))
        discard_files = self._delete_prefixes("DiscardRunFiles", "{% [$run.prefix & 'run=' & $run.id & '/'] %}")
        discard_table.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(20), backoff_rate=2)
        discard_table.add_catch(failed, errors=["States.ALL"])
        discard_files.add_catch(failed, errors=["States.ALL"])
        try_again = (
            sfn.Choice.jsonata(self, "TryAgain")
            .when(
                sfn.Condition.jsonata(f"{{% $attempt < {RUN_ATTEMPTS} %}}"),
                sfn.Wait.jsonata(self, "BackOff", time=sfn.WaitTime.duration(Duration.minutes(2))).next(
                    sfn.Pass.jsonata(self, "CountTheAttempt", assign={"attempt": "{% $attempt + 1 %}"}).next(name_run)
                ),
            )
            .otherwise(failed)
        )
        ctas.add_catch(discard_table.next(discard_files).next(try_again), errors=["States.ALL"])
        after_ctas: list[tasks.AthenaStartQueryExecution | tasks.CallAwsService | sfn.Map] = [
            add,
            switch,
            drop,
            list_runs,
            superseded,
        ]
        for step in after_ctas:
            # After the CTAS, the run's files are whole: a failure leaves them (the next run of the hour
            # deletes them) and the execution fails, so the alarm says to re-run the hour.
            step.add_catch(failed, errors=["States.ALL"])
        list_running.add_catch(failed, errors=["States.ALL"])

        wait = sfn.Wait.jsonata(self, "WaitForEarlierRun", time=sfn.WaitTime.duration(WAIT_FOR_EARLIER_RUN))
        guard = sfn.Choice.jsonata(self, "OldestRunning")
        guard.when(sfn.Condition.jsonata("{% $oldest = $states.context.Execution.Id %}"), name_run)
        guard.otherwise(wait.next(list_running))
        name_run.next(ctas).next(add).next(switch).next(drop).next(list_runs).next(superseded).next(
            sfn.Succeed(self, "Compacted")
        )
        return resolve.next(list_running).next(guard)
