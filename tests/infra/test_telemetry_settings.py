"""Telemetry knobs in the template: the functions' LoggingConfig."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.infra import synth

QUIET = {"LOG_LEVEL": "WARNING", "SYSTEM_LOG_LEVEL": "WARN"}


@pytest.fixture(scope="module")
def default() -> Template:
    return synth()


@pytest.fixture(scope="module")
def quiet() -> Template:
    return synth(**QUIET)


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
