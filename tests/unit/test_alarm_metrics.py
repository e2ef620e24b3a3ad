"""The capacity model prices the alarms and metrics the stack creates: its counts equal the synthesized templates'."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import PipelineConfig
from tests.infra import build
from tools.models import alarm_metrics, capacity, cost, prices


def metrics_read(props: dict[str, Any]) -> int:
    """What CloudWatch bills for one alarm: its metric, or each metric its expression reads."""
    if "MetricName" in props:
        return 1
    return sum(1 for query in props["Metrics"] if "MetricStat" in query)


@pytest.mark.parametrize(
    "environ",
    [{}, {"PROFILE": "scale"}, {"COMPACTION": "off"}, {"API_KIND": "http", "DEVICE_AUTH": "on"}],
    ids=["dev", "scale", "compaction-off", "http-device-auth"],
)
def test_the_model_counts_the_alarm_metrics_and_s3_request_filters_the_template_has(environ: dict[str, str]) -> None:
    # Given the stack as this config synthesizes it
    _, stack = build(environ=environ)
    template = Template.from_stack(stack)
    found = {
        r["Properties"]["AlarmName"].split("-", 3)[-1]: metrics_read(r["Properties"])
        for r in template.find_resources("AWS::CloudWatch::Alarm").values()
    }
    # Then the model knows each alarm and what it reads
    assert alarm_metrics.alarms(stack.config) == found
    # And one S3 request metrics filter, on the payload prefix
    buckets = template.find_resources("AWS::S3::Bucket")
    filters = [f for b in buckets.values() for f in b["Properties"].get("MetricsConfigurations", [])]
    assert filters == [{"Id": "payloads", "Prefix": stack.config.OBJECT_PREFIX}]


def test_the_cost_lines_price_them() -> None:
    config = PipelineConfig.resolve({}, {"PROFILE": "scale"})
    lines = cost.monitoring_lines(config, capacity.assess(config, capacity.load_of(*capacity.SEED)).flow)
    alarm = next(line for line in lines if line.item == "alarm metrics")
    assert alarm.quantity == alarm_metrics.alarm_metrics(config) == 24
    assert alarm.usd == pytest.approx(24 * prices.CLOUDWATCH_ALARM_MONTH)
    custom = next(line for line in lines if line.item.startswith("custom metrics"))
    assert custom.quantity == 18 + 16 + 6  # the functions' EMF, S3 request metrics, device auth's
