"""docs/RUNBOOK.md quotes the alarms as both profiles' templates have them, and the knobs as the config has them.

The runbook's "at a glance" table gives each alarm's threshold per profile, its datapoints (M of N x period) and
how it treats missing data; every figure there is compared with the synthesized templates (dev and PROFILE=scale).
Every "`KNOB` (N)" or "`KNOB` (default N)" in the runbook is compared with the knob's default, and the in-flight
section's figures with the template's threshold and the quota's default."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import PipelineConfig
from tests.infra import build

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "RUNBOOK.md"
PERIODS = {60: "1 min", 300: "5 min", 3600: "1 h"}
MISSING = {"notBreaching": "not breaching", "breaching": "breaching", "ignore": "keeps the state"}


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, dict[str, Any]]]:
    """Each profile's alarms by their name's last part."""
    found = {}
    for profile in ("dev", "scale"):
        _, stack = build(environ={"PROFILE": profile})
        resources = Template.from_stack(stack).find_resources("AWS::CloudWatch::Alarm").values()
        found[profile] = {r["Properties"]["AlarmName"].split("-", 3)[-1]: r["Properties"] for r in resources}
    return found


def glance_table() -> dict[str, list[str]]:
    """The runbook's alarm table: name -> [fires when, dev, scale, datapoints, missing]."""
    text = RUNBOOK.read_text()
    start = text.index("| alarm | fires when the value is |")
    rows = {}
    for row in text[start:].splitlines()[2:]:
        if not row.startswith("|"):
            break
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,}"


def _period(props: dict[str, Any]) -> int:
    if "Period" in props:
        return int(props["Period"])
    return int(next(q["MetricStat"]["Period"] for q in props["Metrics"] if "MetricStat" in q))


def test_the_runbook_table_has_every_alarm_of_both_profiles_with_the_templates_figures(
    templates: dict[str, dict[str, dict[str, Any]]],
) -> None:
    table = glance_table()
    assert set(table) == set(templates["dev"]) | set(templates["scale"])
    for name, (_, dev, scale, datapoints, missing) in table.items():
        for profile, quoted in (("dev", dev), ("scale", scale)):
            props = templates[profile].get(name)
            if props is None:
                assert quoted == "—", f"{name}: {profile} has no such alarm"
                continue
            assert quoted == _figure(props["Threshold"]), f"{name} {profile}"
            expected = f"{props['DatapointsToAlarm']} of {props['EvaluationPeriods']} × {PERIODS[_period(props)]}"
            assert datapoints == expected, f"{name} {profile}"
            assert missing == MISSING[props["TreatMissingData"]], f"{name} {profile}"


def test_every_knob_default_the_runbook_quotes_is_the_configs() -> None:
    defaults = {knob.name: knob.default for knob in fields(PipelineConfig)}
    quoted = re.findall(r"`([A-Z][A-Z_0-9]+)` \((?:default )?([\d,]+)(?:%| s| days)?\)", RUNBOOK.read_text())
    assert len(quoted) >= 10
    wrong = [(knob, figure) for knob, figure in quoted if str(defaults[knob]) != figure.replace(",", "")]
    assert wrong == []


def test_the_in_flight_section_quotes_the_templates_threshold_for_both_profiles(
    templates: dict[str, dict[str, dict[str, Any]]],
) -> None:
    text = RUNBOOK.read_text()
    section = text[text.index("### in-flight-near-cap") : text.index("### worker-pool-saturated")]
    figures = set(re.findall(r"\b\d{2,3},\d{3}\b", section))
    thresholds = {_figure(templates[profile]["in-flight-near-cap"]["Threshold"]) for profile in templates}
    assert thresholds == {"96,000"}  # PROFILE=scale keeps AWS's default quota
    assert figures == thresholds | {_figure(PipelineConfig.SQS_IN_FLIGHT_LIMIT)}


def _section(name: str) -> str:
    text = RUNBOOK.read_text()
    start = text.index(f"### {name}\n")
    return text[start : text.index("\n### ", start + 1)]


def _window_minutes(props: dict[str, Any]) -> int:
    return int(props["EvaluationPeriods"] * _period(props) // 60)


def test_the_windows_and_the_visibility_timeout_the_sections_quote_are_the_templates(
    templates: dict[str, dict[str, dict[str, Any]]],
) -> None:
    for profile in templates:
        found = templates[profile]
        # "15 minutes in a row": 15 one-minute datapoints
        assert _window_minutes(found["worker-pool-saturated"]) == 15
        assert "15 minutes in a row" in _section("worker-pool-saturated")
        # "15 minutes after the DLQ last grew": 3 five-minute datapoints, 1 of them enough
        assert _window_minutes(found["dlq-new-messages"]) == 15
        assert "15 minutes after the DLQ last grew" in _section("dlq-new-messages")
        # "for two minutes in a row": 2 of 2 one-minute datapoints
        for name in ("oldest-message-age", "in-flight-near-cap"):
            assert (found[name]["DatapointsToAlarm"], _window_minutes(found[name])) == (2, 2), name
            assert "for two minutes in a row" in _section(name)
        # "in the last two clock hours"
        assert _window_minutes(found["compaction-failed"]) == 120
        assert "last two\nclock hours" in _section("compaction-failed")
    # the visibility timeout a failed record waits out when its retry delay could not be set (dev: the default)
    _, stack = build(environ={})
    queues = Template.from_stack(stack).find_resources("AWS::SQS::Queue")
    [timeout] = [q["Properties"]["VisibilityTimeout"] for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert f"timeout ({timeout} s)" in _section("in-flight-near-cap")
