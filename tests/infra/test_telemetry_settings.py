"""Telemetry knobs in the template: the functions' LoggingConfig, the ingest's METRICS_FLUSH_SECONDS, and the
API access log's format and class."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.access_logs import ACCESS_LOG_FIELDS, ACCESS_LOG_LINE_BYTES, access_log_format, typical_access_log_line
from tests.infra import only, synth

QUIET = {"LOG_LEVEL": "WARNING", "SYSTEM_LOG_LEVEL": "WARN", "METRICS_FLUSH_SECONDS": 60}


@pytest.fixture(scope="module")
def default() -> Template:
    return synth()


@pytest.fixture(scope="module")
def quiet() -> Template:
    return synth(**QUIET, ACCESS_LOG_CLASS="INFREQUENT_ACCESS")


def functions(template: Template) -> list[dict[str, Any]]:
    found = template.find_resources("AWS::Lambda::Function")
    return [
        f["Properties"]
        for f in found.values()
        if f["Properties"].get("Handler", "").endswith("_handler.lambda_handler")
    ]


def test_both_functions_log_json_with_lambda_s_filter_never_above_info(default: Template, quiet: Template) -> None:
    # Default: JSON, Lambda's own lines and ours at INFO
    assert [f["LoggingConfig"]["LogFormat"] for f in functions(default)] == ["JSON", "JSON"]
    assert {
        (f["LoggingConfig"]["SystemLogLevel"], f["LoggingConfig"]["ApplicationLogLevel"]) for f in functions(default)
    } == {("INFO", "INFO")}
    # LOG_LEVEL=WARNING cuts the functions' lines in Powertools; Lambda still passes INFO (EMF lines and the
    # runtime's crash lines have no `level`, so Lambda files them as INFO); SYSTEM_LOG_LEVEL=WARN drops
    # START/END/REPORT
    for function in functions(quiet):
        logging_config = function["LoggingConfig"]
        assert (logging_config["SystemLogLevel"], logging_config["ApplicationLogLevel"]) == ("WARN", "INFO")
        assert function["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"] == "WARNING"


def test_debug_lines_are_let_through_by_lambda_only_when_log_level_is_debug() -> None:
    assert {f["LoggingConfig"]["ApplicationLogLevel"] for f in functions(synth(LOG_LEVEL="DEBUG"))} == {"DEBUG"}


def test_the_ingest_gets_its_metrics_flush_interval(default: Template, quiet: Template) -> None:
    ingest = only(default, "AWS::Lambda::Function", {"Handler": "ingest_handler.lambda_handler"})
    assert ingest["Properties"]["Environment"]["Variables"]["METRICS_FLUSH_SECONDS"] == "0"
    ingest = only(quiet, "AWS::Lambda::Function", {"Handler": "ingest_handler.lambda_handler"})
    assert ingest["Properties"]["Environment"]["Variables"]["METRICS_FLUSH_SECONDS"] == "60"


def access_log_group(template: Template) -> dict[str, Any]:
    [stage] = template.find_resources("AWS::ApiGateway::Stage").values()
    arn = stage["Properties"]["AccessLogSetting"]["DestinationArn"]
    return template.to_json()["Resources"][arn["Fn::GetAtt"][0]]["Properties"]


def test_the_access_log_is_the_shared_format_in_the_class_asked_for(default: Template, quiet: Template) -> None:
    [stage] = default.find_resources("AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["AccessLogSetting"]["Format"] == access_log_format("rest")
    # STANDARD is left out of the template (the default), so an existing group is never replaced for it
    assert "LogGroupClass" not in access_log_group(default)
    assert access_log_group(quiet)["LogGroupClass"] == "INFREQUENT_ACCESS"
    assert access_log_group(quiet)["RetentionInDays"] == 30


@pytest.mark.parametrize("kind", ["rest", "http"])
def test_an_access_log_line_is_json_with_what_the_on_call_reads_and_its_size_is_measured(kind: str) -> None:
    line = typical_access_log_line(kind)
    assert "$context" not in line
    document = json.loads(line)
    assert {"requestId", "status", "latencyMs"} <= set(document) == set(ACCESS_LOG_FIELDS[kind])
    assert not {"ip", "userAgent"} & set(document)  # only with ACCESS_LOG_CLIENT_IP=on (tests/infra/test_privacy.py)
    assert ACCESS_LOG_LINE_BYTES[kind] == len(line.encode())
    # Every value is quoted: a variable API Gateway leaves as "-" still makes valid JSON
    assert re.fullmatch(r'\{("[A-Za-z]+":"\$context\.[A-Za-z.]+",?)+\}', access_log_format(kind))


def test_an_unknown_api_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="rest, http"):
        access_log_format("websocket")


def test_the_docs_give_the_measured_line_sizes() -> None:
    readme = (Path(__file__).resolve().parents[2] / "docs" / "OPERATING.md").read_text()
    stated = re.search(r"A typical line is (\d+) bytes on REST\s+and (\d+) bytes on an HTTP API", readme)
    assert stated is not None
    assert (int(stated[1]), int(stated[2])) == (ACCESS_LOG_LINE_BYTES["rest"], ACCESS_LOG_LINE_BYTES["http"])
