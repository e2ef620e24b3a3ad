"""Template assertions for operability: the dashboard's metrics, each alarm's threshold and action,
the alarm topic, tracing and log retention, for the defaults and for changed knobs."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import ConfigError, PipelineConfig
from tests.infra import synth
from tests.infra.test_alarm_evaluation import evaluate

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "RUNBOOK.md"
CHANGED_KNOBS = {
    "STAGE": "dev",
    "ALARM_EMAIL": "oncall@example.com",
    "OLDEST_MESSAGE_AGE_ALARM_SECONDS": 900,
    "API_5XX_RATE_ALARM_PERCENT": 5,
    "MAX_WORKERS": 25,
    "TRACING": True,
    "LOG_RETENTION_DAYS": 7,
    "METRICS_NAMESPACE": "Telemetry",
    "RUNBOOK_URL": "https://wiki.example.com/ingest-runbook",
    "SQS_IN_FLIGHT_LIMIT": 240_000,
}


@pytest.fixture(scope="module")
def template() -> Template:
    return synth()


@pytest.fixture(scope="module")
def changed() -> Template:
    return synth(**CHANGED_KNOBS)


def logical_id(template: Template, resource_type: str, **props: Any) -> str:
    found = template.find_resources(resource_type, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {resource_type} with {props}, found {len(found)}"
    return next(iter(found))


def function_id(template: Template, handler: str) -> str:
    return logical_id(template, "AWS::Lambda::Function", Handler=handler)


def queue_ids(template: Template) -> tuple[str, str]:
    queues = template.find_resources("AWS::SQS::Queue")
    source = next(name for name, q in queues.items() if "RedrivePolicy" in q["Properties"])
    dlq = next(name for name in queues if name != source)
    return source, dlq


def _flatten(value: Any) -> str:
    """A CloudFormation string expression with each Ref/GetAtt replaced by <LogicalId[.Attr]>."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return "<" + ".".join(value["Fn::GetAtt"]) + ">"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_flatten(part) for part in parts)
    raise AssertionError(f"unexpected expression {value}")


def dashboard(template: Template) -> dict[str, Any]:
    props = template.find_resources("AWS::CloudWatch::Dashboard")
    assert len(props) == 1, "one dashboard per stage"
    resource = next(iter(props.values()))["Properties"]
    body = json.loads(_flatten(resource["DashboardBody"]))
    body["name"] = resource["DashboardName"]
    return body


def graphed(template: Template) -> set[tuple[str, str, str, str]]:
    """Every metric on the dashboard as (namespace, metric name, statistic, first dimension value)."""
    found = set()
    for widget in dashboard(template)["widgets"]:
        for line in widget["properties"].get("metrics", []):
            if isinstance(line[0], dict):
                found.add(("expression", line[0]["expression"], "", ""))
                continue
            options = line[-1] if isinstance(line[-1], dict) else {}
            found.add((line[0], line[1], options.get("stat", "Average"), line[3] if len(line) > 3 else ""))
    return found


def alarms(template: Template) -> dict[str, dict[str, Any]]:
    """Every alarm's properties by its name's last part, e.g. 'dlq-not-empty'."""
    found = {}
    for resource in template.find_resources("AWS::CloudWatch::Alarm").values():
        props = resource["Properties"]
        found[props["AlarmName"].split("-", 3)[-1]] = props
    return found


def alarm_metrics(props: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(namespace, metric name, statistic, first dimension value) of an alarm, single or math."""
    if "MetricName" in props:
        dimension = _flatten(props["Dimensions"][0]["Value"]) if props.get("Dimensions") else ""
        return [
            (props["Namespace"], props["MetricName"], props.get("ExtendedStatistic") or props["Statistic"], dimension)
        ]
    found = []
    for query in props["Metrics"]:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            dimension = _flatten(stat["Metric"]["Dimensions"][0]["Value"]) if stat["Metric"].get("Dimensions") else ""
            found.append((stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], stat["Stat"], dimension))
    return found


# --- dashboard ------------------------------------------------------------------------------------


def test_the_dashboard_graphs_every_metric_the_issue_names(template: Template) -> None:
    ingest, consumer = (
        function_id(template, "ingest_handler.lambda_handler"),
        function_id(template, "consumer_handler.lambda_handler"),
    )
    queue, dlq = queue_ids(template)
    metrics = graphed(template)
    expected = {
        # API: requests, 4xx, 5xx, p50/p99 latency
        ("AWS/ApiGateway", "Count", "Sum", "ingest-pipeline-prod"),
        ("AWS/ApiGateway", "4XXError", "Sum", "ingest-pipeline-prod"),
        ("AWS/ApiGateway", "5XXError", "Sum", "ingest-pipeline-prod"),
        ("AWS/ApiGateway", "Latency", "p50", "ingest-pipeline-prod"),
        ("AWS/ApiGateway", "Latency", "p99", "ingest-pipeline-prod"),
        # Ingest function: invocations, errors, throttles, p99 duration
        ("AWS/Lambda", "Invocations", "Sum", f"<{ingest}>"),
        ("AWS/Lambda", "Errors", "Sum", f"<{ingest}>"),
        ("AWS/Lambda", "Throttles", "Sum", f"<{ingest}>"),
        ("AWS/Lambda", "Duration", "p99", f"<{ingest}>"),
        # Queue: sent, visible, age of oldest; DLQ: visible
        ("AWS/SQS", "NumberOfMessagesSent", "Sum", f"<{queue}.QueueName>"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", f"<{queue}.QueueName>"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", f"<{queue}.QueueName>"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", f"<{dlq}.QueueName>"),
        ("AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "Maximum", f"<{queue}.QueueName>"),
        # Consumer: concurrency, errors, throttles, p99 duration
        ("AWS/Lambda", "ConcurrentExecutions", "Maximum", f"<{consumer}>"),
        ("AWS/Lambda", "Errors", "Sum", f"<{consumer}>"),
        ("AWS/Lambda", "Throttles", "Sum", f"<{consumer}>"),
        ("AWS/Lambda", "Duration", "p99", f"<{consumer}>"),
        # Custom: payloads accepted vs stored, end-to-end latency p50/p99 (first dimension: service)
        ("IngestPipeline", "PayloadsAccepted", "Sum", "ingest"),
        ("IngestPipeline", "PayloadsStored", "Sum", "consumer"),
        ("IngestPipeline", "EndToEndLatency", "p50", "consumer"),
        ("IngestPipeline", "EndToEndLatency", "p99", "consumer"),
        ("IngestPipeline", "StoreFailures", "Sum", "consumer"),
        ("IngestPipeline", "RetriesScheduled", "Sum", "consumer"),
        ("IngestPipeline", "EnqueueFailures", "Sum", "ingest"),
    }
    assert expected <= metrics, sorted(expected - metrics)
    searches = [m[1] for m in metrics if m[0] == "expression" and m[1].startswith("SEARCH")]
    assert searches == [
        'SEARCH(\'{"IngestPipeline",reason,service,stage} MetricName="RequestsRejected" stage="prod"\', \'Sum\', 300)'
    ]


def test_custom_metrics_are_read_with_the_stage_dimension_the_functions_write(template: Template) -> None:
    for widget in dashboard(template)["widgets"]:
        for line in widget["properties"].get("metrics", []):
            if line[0] == "IngestPipeline":
                assert line[2:6] == ["service", line[3], "stage", "prod"], line
    env = template.find_resources("AWS::Lambda::Function")
    stages = {
        f["Properties"]["Environment"]["Variables"].get("STAGE")
        for f in env.values()
        if "Environment" in f["Properties"] and "POWERTOOLS_SERVICE_NAME" in f["Properties"]["Environment"]["Variables"]
    }
    assert stages == {"prod"}


def test_the_latest_errors_of_both_functions_are_on_the_dashboard(template: Template) -> None:
    groups = {name: g for name, g in template.find_resources("AWS::Logs::LogGroup").items()}
    ingest_group = next(name for name in groups if name.startswith("ApiIngestLogs"))
    consumer_group = next(name for name in groups if name.startswith("WorkersConsumerLogs"))
    widget = next(w for w in dashboard(template)["widgets"] if w["type"] == "log")
    query = widget["properties"]["query"]
    assert query.startswith(f"SOURCE '<{ingest_group}>' | SOURCE '<{consumer_group}>' |")
    assert 'filter level = "ERROR"' in query and "correlation_id" in query
    # the runtime's crash lines and JSON-format timeouts too: what the error alarms page on
    assert 'log_level = "ERROR"' in query and 'record.status = "timeout"' in query and "/Task timed out/" in query


def test_concurrency_is_drawn_against_a_line_at_max_workers(template: Template, changed: Template) -> None:
    for tmpl, bound in ((template, 10), (changed, 25)):
        widget = next(
            w for w in dashboard(tmpl)["widgets"] if w["properties"].get("title") == "Consumer concurrency vs bound"
        )
        assert widget["properties"]["annotations"]["horizontal"] == [
            {"value": bound, "label": f"MAX_WORKERS = {bound}", "yAxis": "left"}
        ]


def test_queue_age_is_drawn_against_the_alarm_threshold(template: Template, changed: Template) -> None:
    for tmpl, seconds in ((template, 300), (changed, 900)):
        widget = next(
            w for w in dashboard(tmpl)["widgets"] if w["properties"].get("title") == "Queue: age of oldest message (s)"
        )
        assert widget["properties"]["annotations"]["horizontal"] == [
            {"value": seconds, "label": "alarm", "yAxis": "left"}
        ]


def test_the_header_links_queue_dlq_bucket_and_runbook(template: Template, changed: Template) -> None:
    queue, dlq = queue_ids(template)
    # the payload bucket is the one that writes server access logs
    bucket = next(
        name
        for name, b in template.find_resources("AWS::S3::Bucket").items()
        if "LoggingConfiguration" in b["Properties"]
    )
    header = dashboard(template)["widgets"][0]["properties"]["markdown"]
    assert f"%2F<{queue}.QueueName>)" in header and f"%2F<{dlq}.QueueName>)" in header
    assert f"/s3/buckets/<{bucket}>?" in header
    assert "docs/RUNBOOK.md" in header
    assert (
        "[runbook](https://wiki.example.com/ingest-runbook)"
        in dashboard(changed)["widgets"][0]["properties"]["markdown"]
    )


def test_one_dashboard_per_stage_and_its_url_is_an_output(template: Template, changed: Template) -> None:
    assert dashboard(template)["name"] == "ingest-pipeline-prod"
    assert dashboard(changed)["name"] == "ingest-pipeline-dev"
    url = _flatten(template.find_outputs("DashboardUrl")["DashboardUrl"]["Value"])
    assert (
        url
        == "https://<AWS::Region>.console.aws.amazon.com/cloudwatch/home?region=<AWS::Region>#dashboards:name=ingest-pipeline-prod"
    )


# --- alarms ---------------------------------------------------------------------------------------
def state_machine_id(template: Template) -> str:
    [logical_id] = template.find_resources("AWS::StepFunctions::StateMachine")
    return logical_id


def test_each_alarm_watches_the_right_metric_with_its_threshold(template: Template) -> None:
    """The shape of each alarm; tests/infra/test_alarm_evaluation.py replays them on synthetic series."""
    ingest, consumer = (
        function_id(template, "ingest_handler.lambda_handler"),
        function_id(template, "consumer_handler.lambda_handler"),
    )
    queue, dlq = queue_ids(template)
    api = "ingest-pipeline-prod"
    found = alarms(template)
    expected = {
        # name: (threshold, comparison, (datapoints, of periods), missing data, metrics)
        "dlq-not-empty": (
            0,
            "GreaterThanThreshold",
            (1, 1),
            "ignore",  # an idle DLQ's metric gap keeps ALARM
            [("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", f"<{dlq}.QueueName>")],
        ),
        "dlq-new-messages": (
            0,
            "GreaterThanThreshold",
            (1, 3),
            "notBreaching",
            [("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", f"<{dlq}.QueueName>")],
        ),
        "dlq-messages-expiring": (
            3 * 86400,
            "GreaterThanThreshold",
            (1, 1),
            "ignore",
            [("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", f"<{dlq}.QueueName>")],
        ),
        "oldest-message-age": (
            300,
            "GreaterThanThreshold",
            (2, 2),
            "notBreaching",
            [("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", f"<{queue}.QueueName>")],
        ),
        "api-5xx-rate": (
            1,
            "GreaterThanThreshold",
            (2, 3),
            "notBreaching",
            [("AWS/ApiGateway", "5XXError", "Sum", api), ("AWS/ApiGateway", "Count", "Sum", api)],
        ),
        "ingest-errors": (
            1,
            "GreaterThanThreshold",
            (2, 3),
            "notBreaching",
            [("AWS/Lambda", name, "Sum", f"<{ingest}>") for name in ("Errors", "Throttles", "Invocations")],
        ),
        "consumer-errors": (
            1,
            "GreaterThanThreshold",
            (2, 3),
            "notBreaching",
            [("AWS/Lambda", name, "Sum", f"<{consumer}>") for name in ("Errors", "Invocations")],
        ),
        "store-failures": (
            5,
            "GreaterThanThreshold",
            (2, 3),
            "notBreaching",
            [("IngestPipeline", name, "Sum", "consumer") for name in ("StoreFailures", "PayloadsStored")],
        ),
        # 80 % of SQS_IN_FLIGHT_LIMIT, the ~120,000 in-flight messages a standard queue holds (SQS quotas)
        "in-flight-near-cap": (
            96_000,
            "GreaterThanOrEqualToThreshold",
            (2, 2),
            "notBreaching",
            [("AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "Maximum", f"<{queue}.QueueName>")],
        ),
        "worker-pool-saturated": (
            60,
            "GreaterThanOrEqualToThreshold",
            (15, 15),
            "notBreaching",
            [
                ("AWS/Lambda", "ConcurrentExecutions", "Maximum", f"<{consumer}>"),
                ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", f"<{queue}.QueueName>"),
            ],
        ),
        # lake: no compaction succeeded in two clock hours; no execution at all breaches too
        "compaction-failed": (
            1,
            "GreaterThanOrEqualToThreshold",
            (2, 2),
            "breaching",
            [("AWS/States", "ExecutionsSucceeded", "Sum", f"<{state_machine_id(template)}>")],
        ),
    }
    assert set(found) == set(expected)
    for name, (threshold, comparison, (datapoints, periods), missing, metrics) in expected.items():
        props = found[name]
        assert (
            props["Threshold"],
            props["ComparisonOperator"],
            props["DatapointsToAlarm"],
            props["EvaluationPeriods"],
            props["TreatMissingData"],
        ) == (threshold, comparison, datapoints, periods, missing), name
        assert sorted(alarm_metrics(props)) == sorted(metrics), name
    assert found["in-flight-near-cap"]["Period"] == 60  # two one-minute datapoints: paged within ~2 minutes
    # 15 one-minute datapoints = 15 minutes at the bound with messages waiting
    saturated = found["worker-pool-saturated"]["Metrics"]
    assert {q["MetricStat"]["Period"] for q in saturated if "MetricStat" in q} == {60}
    ingest_math = next(q for q in found["ingest-errors"]["Metrics"] if "Expression" in q)
    assert ingest_math["Expression"] == (
        "IF((FILL(invocations, 0) + FILL(throttles, 0)) >= 100, "
        "100 * (FILL(errors, 0) + FILL(throttles, 0)) / (FILL(invocations, 0) + FILL(throttles, 0)), 0)"
    )
    # the HTTP API has no usage plans: only the REST front door's text names them
    assert "usage-plan" in found["ingest-errors"]["AlarmDescription"]


def test_the_http_apis_alarms_read_5xx_as_a_count_and_never_mention_usage_plans() -> None:
    found = alarms(synth(API_KIND="http", DEVICE_AUTH="on"))
    # Given an HTTP API: 5xx is a count ("The number of server-side errors captured in a given period")
    assert {(m[0], m[1], m[2]) for m in alarm_metrics(found["api-5xx-rate"])} == {
        ("AWS/ApiGateway", "5xx", "Sum"),
        ("AWS/ApiGateway", "Count", "Sum"),
    }
    assert {m[2] for m in alarm_metrics(found["api-5xx-rate"])} == {"Sum"}  # never the Average of a count
    assert "usage" not in found["ingest-errors"]["AlarmDescription"]
    assert "429" not in found["ingest-errors"]["AlarmDescription"]


def test_thresholds_follow_the_knobs(changed: Template) -> None:
    found = alarms(changed)
    assert found["oldest-message-age"]["Threshold"] == 900
    assert found["api-5xx-rate"]["Threshold"] == 5
    saturated = next(q["Expression"] for q in found["worker-pool-saturated"]["Metrics"] if "Expression" in q)
    assert saturated == "IF(FILL(pool, REPEAT) >= 25, FILL(age, REPEAT), 0)"
    assert found["in-flight-near-cap"]["Threshold"] == 192_000  # 80 % of the granted in-flight quota
    assert all(props["AlarmName"].startswith("ingest-pipeline-dev-") for props in found.values())


# --- worker-pool-saturated: each mode alarms on what saturates, at a threshold the mode can reach ---------


def mapping(template: Template) -> dict[str, Any]:
    [found] = template.find_resources("AWS::Lambda::EventSourceMapping").values()
    return dict(found["Properties"])


def saturation_value(expression: str, *, pool: float, age: float) -> float:
    """The worker-pool-saturated expression evaluated for one minute's datapoints (test_alarm_evaluation's
    evaluator, CloudWatch's metric math subset)."""
    [value] = evaluate(ast.parse(expression, mode="eval"), {"pool": [pool], "age": [age]})
    return float(value)


@pytest.mark.parametrize(
    "knobs",
    [{}, {"MAX_WORKERS": 25}, {"MAX_WORKERS": 40, "RESERVED_CONCURRENCY": "off"}],
    ids=["default", "max-workers-25", "unreserved"],
)
def test_standard_mode_alarms_when_the_consumer_runs_at_max_workers_and_messages_wait(knobs: dict[str, Any]) -> None:
    # Given the standard worker pool: the mapping's maximum concurrency bounds it
    template = synth(**knobs)
    bound = mapping(template)["ScalingConfig"]["MaximumConcurrency"]
    saturated = alarms(template)["worker-pool-saturated"]
    consumer = function_id(template, "consumer_handler.lambda_handler")
    queue, _ = queue_ids(template)
    # Then the alarm watches the consumer's concurrency and the queue's oldest message, per minute
    assert sorted(alarm_metrics(saturated)) == [
        ("AWS/Lambda", "ConcurrentExecutions", "Maximum", f"<{consumer}>"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", f"<{queue}.QueueName>"),
    ]
    [expression] = [q["Expression"] for q in saturated["Metrics"] if "Expression" in q]
    threshold = saturated["Threshold"]
    # It fires at MAX_WORKERS, the most the mapping ever runs, with messages waiting a minute, 15 minutes in a row
    assert saturation_value(expression, pool=bound, age=threshold) >= threshold
    assert (saturated["EvaluationPeriods"], saturated["DatapointsToAlarm"]) == (15, 15)
    # It stays quiet at the bound while each message is taken within seconds (busy, keeping up) ...
    assert saturation_value(expression, pool=bound, age=2) < threshold
    # ... and below the bound however old the message (the pool can still grow)
    assert saturation_value(expression, pool=bound - 1, age=86400) < threshold
    assert "Raise MAX_WORKERS" in saturated["AlarmDescription"]


@pytest.fixture(scope="module")
def provisioned() -> Template:
    return synth(PROVISIONED_POLLERS=True, MIN_POLLERS=4, MAX_POLLERS=6)


def test_provisioned_mode_alarms_on_the_pollers_at_max_pollers_while_messages_wait(provisioned: Template) -> None:
    saturated = alarms(provisioned)["worker-pool-saturated"]
    queue, _ = queue_ids(provisioned)
    [esm] = provisioned.find_resources("AWS::Lambda::EventSourceMapping")
    # Then it watches the mapping's pollers (by its UUID) and the queue's oldest message, per minute
    queries = {q["Id"]: q for q in saturated["Metrics"]}
    pollers = queries["pool"]["MetricStat"]
    assert pollers["Metric"]["Dimensions"] == [{"Name": "EventSourceMappingUUID", "Value": {"Ref": esm}}]
    assert sorted(alarm_metrics(saturated)) == [
        ("AWS/Lambda", "ProvisionedPollers", "Maximum", f"<{esm}>"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", f"<{queue}.QueueName>"),
    ]
    assert {pollers["Period"], queries["age"]["MetricStat"]["Period"]} == {60}
    assert (saturated["Threshold"], saturated["ComparisonOperator"]) == (60, "GreaterThanOrEqualToThreshold")
    assert (saturated["EvaluationPeriods"], saturated["DatapointsToAlarm"]) == (15, 15)
    assert "Raise MAX_POLLERS" in saturated["AlarmDescription"]


@pytest.mark.parametrize(
    "knobs",
    [
        {"PROVISIONED_POLLERS": True, "MIN_POLLERS": 4, "MAX_POLLERS": 6},
        {"PROVISIONED_POLLERS": True, "MIN_POLLERS": 10, "MAX_POLLERS": 10},  # a fixed pool: always at its bound
        {"PROFILE": "scale"},
    ],
    ids=["4-6-pollers", "fixed-pool", "scale"],
)
def test_provisioned_mode_can_fire_at_the_pollers_the_mapping_reaches_and_only_there(knobs: dict[str, Any]) -> None:
    template = synth(**knobs)
    bound = mapping(template)["ProvisionedPollerConfig"]["MaximumPollers"]
    saturated = alarms(template)["worker-pool-saturated"]
    [expression] = [q["Expression"] for q in saturated["Metrics"] if "Expression" in q]
    threshold = saturated["Threshold"]
    # It fires with every poller the mapping may run busy and the oldest message at the threshold
    assert saturation_value(expression, pool=bound, age=threshold) >= threshold
    # It stays quiet one poller below the bound, however old the message (the pool can still grow) ...
    assert saturation_value(expression, pool=bound - 1, age=86400) < threshold
    # ... and at the bound while messages are picked up within the batching window (a fixed pool is no page)
    assert saturation_value(expression, pool=bound, age=2) < threshold
    # And it no longer waits for 10 x MAX_POLLERS concurrent executions (20,000 at PROFILE=scale, ~100 needed)
    assert "ConcurrentExecutions" not in {metric for _, metric, _, _ in alarm_metrics(saturated)}


def test_the_pool_widget_draws_the_bound_that_saturates(provisioned: Template) -> None:
    widget = next(
        w
        for w in dashboard(provisioned)["widgets"]
        if w["properties"].get("title") == "Event pollers vs bound; consumer concurrency"
    )
    assert widget["properties"]["annotations"]["horizontal"][0]["label"] == "MAX_POLLERS = 6"
    metrics = {line[1] for line in widget["properties"]["metrics"]}
    assert metrics == {"ProvisionedPollers", "ConcurrentExecutions"}


def test_every_alarm_notifies_the_topic_on_alarm_and_on_ok(template: Template) -> None:
    topic = logical_id(template, "AWS::SNS::Topic")
    for name, props in alarms(template).items():
        assert props["AlarmActions"] == [{"Ref": topic}], name
        # dlq-new-messages pages on each wave and returns to OK silently, so the next wave pages again
        assert props.get("OKActions") == (None if name == "dlq-new-messages" else [{"Ref": topic}]), name


def test_an_existing_topic_gets_every_alarm_too() -> None:
    pager = "arn:aws:sns:eu-west-1:123456789012:pager"
    tmpl = synth(ALARM_TOPIC_ARN=pager)
    topic = logical_id(tmpl, "AWS::SNS::Topic")
    for name, props in alarms(tmpl).items():
        assert props["AlarmActions"] == [{"Ref": topic}, pager], name


def test_every_alarm_says_what_to_do_and_has_a_runbook_section(template: Template, changed: Template) -> None:
    runbook = RUNBOOK.read_text()
    headings = set(re.findall(r"^### (\S+)$", runbook, flags=re.MULTILINE))
    for name, props in alarms(template).items():
        description = props["AlarmDescription"]
        assert description.endswith(f"Runbook: docs/RUNBOOK.md#{name}"), name
        assert len(description) > 80, name  # more than a restated name: what it means and what to do
        assert name in headings, f"docs/RUNBOOK.md has no '### {name}' section"
    for name, props in alarms(changed).items():
        assert props["AlarmDescription"].endswith(f"Runbook: https://wiki.example.com/ingest-runbook#{name}")
    for name, props in alarms(synth(PROFILE="scale")).items():  # flow-stopped and device auth's alarms too
        assert props["AlarmDescription"].endswith(f"Runbook: docs/RUNBOOK.md#{name}"), name
        assert name in headings, f"docs/RUNBOOK.md has no '### {name}' section"


def test_the_email_subscription_is_optional(template: Template, changed: Template) -> None:
    assert template.find_resources("AWS::SNS::Subscription") == {}
    subscription = next(iter(changed.find_resources("AWS::SNS::Subscription").values()))["Properties"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "oncall@example.com")


def test_the_alarm_topic_is_encrypted_tls_only_and_cloudwatch_may_publish(template: Template) -> None:
    key = logical_id(template, "AWS::KMS::Key", Description="Encrypts the ingest-pipeline-prod alarm topic")
    topic = template.find_resources("AWS::SNS::Topic")
    assert next(iter(topic.values()))["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
    key_props = template.find_resources("AWS::KMS::Key")[key]["Properties"]
    assert key_props["EnableKeyRotation"] is True
    assert any(
        s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        and set(s["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
        for s in key_props["KeyPolicy"]["Statement"]
    )
    policy = next(iter(template.find_resources("AWS::SNS::TopicPolicy").values()))["Properties"]["PolicyDocument"]
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Statement"]
    )
    assert any(
        s["Effect"] == "Allow"
        and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        and s["Action"] == "sns:Publish"
        for s in policy["Statement"]
    )


# --- tracing and log retention --------------------------------------------------------------------


def test_tracing_is_off_by_default_and_turns_on_for_both_functions_never_for_the_api_stage(
    template: Template, changed: Template
) -> None:
    for tmpl, on in ((template, False), (changed, True)):
        stage = next(iter(tmpl.find_resources("AWS::ApiGateway::Stage").values()))["Properties"]
        assert stage.get("TracingEnabled", False) is False  # its segments hold client addresses (docs/PRIVACY.md)
        functions = {
            name: f
            for name, f in tmpl.find_resources("AWS::Lambda::Function").items()
            if str(f["Properties"].get("Handler", "")).endswith("_handler.lambda_handler")
        }
        assert len(functions) == 2
        for function in functions.values():
            props = function["Properties"]
            assert (props.get("TracingConfig", {}).get("Mode") == "Active") is on
            assert props["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == ("false" if on else "true")


def test_every_log_group_keeps_logs_for_log_retention_days(template: Template, changed: Template) -> None:
    for tmpl, days in ((template, 30), (changed, 7)):
        groups = tmpl.find_resources("AWS::Logs::LogGroup")
        assert len(groups) >= 3  # ingest, consumer, API access logs
        assert {g["Properties"].get("RetentionInDays") for g in groups.values()} == {days}


# --- the knobs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ({"ALARM_EMAIL": "not-an-address"}, "ALARM_EMAIL"),
        ({"OLDEST_MESSAGE_AGE_ALARM_SECONDS": 30}, "OLDEST_MESSAGE_AGE_ALARM_SECONDS"),
        ({"OLDEST_MESSAGE_AGE_ALARM_SECONDS": 4 * 86400}, "OLDEST_MESSAGE_AGE_ALARM_SECONDS"),  # = queue retention
        ({"API_5XX_RATE_ALARM_PERCENT": 0}, "API_5XX_RATE_ALARM_PERCENT"),
        ({"ALARM_TOPIC_ARN": "pager@example.com"}, "ALARM_TOPIC_ARN"),
        ({"ALARMS_TO": "nobody"}, "ALARMS_TO"),
        ({"ALARM_MIN_VOLUME": 0}, "ALARM_MIN_VOLUME"),
        ({"ERROR_RATE_ALARM_PERCENT": 0}, "ERROR_RATE_ALARM_PERCENT"),
        ({"STORE_FAILURE_ALARM_PERCENT": 101}, "STORE_FAILURE_ALARM_PERCENT"),
        ({"REFUSED_SHARE_ALARM_PERCENT": 0}, "REFUSED_SHARE_ALARM_PERCENT"),
        ({"DLQ_AGE_ALARM_DAYS": 14}, "DLQ_AGE_ALARM_DAYS"),  # = DLQ retention: the messages are gone by then
        ({"FLOW_ALARM_MIN_PAYLOADS": -1}, "FLOW_ALARM_MIN_PAYLOADS"),
    ],
)
def test_alarm_knobs_that_cannot_work_are_refused_by_name(knobs: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        PipelineConfig.resolve(knobs, environ={})


def test_alarm_knobs_resolve_from_the_environment_first() -> None:
    config = PipelineConfig.resolve(
        {"ALARM_EMAIL": "ctx@example.com"},
        environ={"ALARM_EMAIL": "env@example.com", "OLDEST_MESSAGE_AGE_ALARM_SECONDS": "600"},
    )
    assert (config.ALARM_EMAIL, config.OLDEST_MESSAGE_AGE_ALARM_SECONDS) == ("env@example.com", 600)


def test_compaction_freshness_and_the_schedule_are_on_the_dashboard(template: Template) -> None:
    widgets = {w["properties"].get("title"): w["properties"] for w in dashboard(template)["widgets"]}
    freshness = widgets["Hours without a successful compaction (compaction-failed)"]
    [alarm] = freshness["annotations"]["alarms"]
    assert alarm.startswith("<MonitoringCompactionFailed") and alarm.endswith(".Arn>")
    schedule = widgets["Compaction schedule: target errors, dropped invocations"]
    assert {(m[0], m[1], m[3]) for m in schedule["metrics"]} == {
        ("AWS/Scheduler", "TargetErrorCount", "default"),
        ("AWS/Scheduler", "InvocationDroppedCount", "default"),
    }
