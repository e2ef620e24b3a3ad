"""LogLineFormatter writes exactly the line Powertools' own formatter writes, key for key, in the same order."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from pipeline.observability import LogLineFormatter

OPTIONS: dict[str, Any] = {
    "json_serializer": json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=False).encode,
    "json_deserializer": lambda message: message,
    "use_rfc3339": True,
    "utc": True,
    "location": None,
}


def record(msg: object, *args: object, extra: dict[str, Any] | None = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.getLogger("line-test").makeRecord("line-test", logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, value in (extra or {}).items():
        setattr(made, key, value)
    return made


@pytest.fixture
def formatters() -> Iterator[tuple[LogLineFormatter, LambdaPowertoolsFormatter]]:
    ours, theirs = LogLineFormatter(**OPTIONS), LambdaPowertoolsFormatter(**OPTIONS)
    for formatter in (ours, theirs):
        formatter.append_keys(service="ingest", correlation_id="c0ffee00", function_request_id="f-1")
    yield ours, theirs
    theirs.thread_safe_clear_keys()


CASES = {
    "plain": record("request accepted", extra={"payloads": 10, "retriedEntries": 0}),
    "extras of every kind": record(
        "stored", extra={"none": None, "nested": {"a": [1, None]}, "text": "ü ✓", "odd": {1, 2}, "flag": False}
    ),
    "%-arguments": record("took %d ms", 12),
    "exception": record("payload not stored", exc=True),
    "dict message": record({"event": "x"}),
    "JSON text message": record('{"a": 1}'),
}


@pytest.mark.parametrize("case", CASES)
def test_the_line_is_powertools_line(formatters: tuple[LogLineFormatter, LambdaPowertoolsFormatter], case: str) -> None:
    ours, theirs = formatters
    assert list(json.loads(ours.format(CASES[case])).items()) == list(json.loads(theirs.format(CASES[case])).items())


def test_appended_thread_safe_and_left_out_keys_and_the_trace_id_are_powertools_too(
    formatters: tuple[LogLineFormatter, LambdaPowertoolsFormatter], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = formatters
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-6745f2b0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1")
    theirs.thread_safe_append_keys(messageId="m-1", requestId="r-1")  # one context: both formatters read it
    line = record("payload stored", extra={"key": "payloads/k.json"})
    expected = list(json.loads(theirs.format(line)).items())
    assert list(json.loads(ours.format(line)).items()) == expected
    assert ("xray_trace_id", "1-6745f2b0-0123456789abcdef01234567") in expected and ("messageId", "m-1") in expected
    # A key set to None is left out by both (how the observability logger drops xray_trace_id when tracing is off)
    for formatter in formatters:
        formatter.append_keys(xray_trace_id=None, correlation_id=None)
    assert list(json.loads(ours.format(line)).items()) == list(json.loads(theirs.format(line)).items())
    assert "xray_trace_id" not in json.loads(ours.format(line))


def test_a_key_templated_on_another_record_attribute_is_left_to_powertools(
    formatters: tuple[LogLineFormatter, LambdaPowertoolsFormatter],
) -> None:
    ours, theirs = formatters
    for formatter in formatters:
        formatter.append_keys(process="%(process)d", location="%(funcName)s:%(lineno)d")
    line = record("request accepted")
    assert list(json.loads(ours.format(line)).items()) == list(json.loads(theirs.format(line)).items())
    assert isinstance(json.loads(ours.format(line))["process"], str)
