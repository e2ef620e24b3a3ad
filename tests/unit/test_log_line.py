"""LogLineFormatter writes exactly the line Powertools' own formatter writes, key for key, in the same order."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from aws_lambda_powertools.logging.filters import SuppressFilter
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from pipeline import observability
from pipeline.observability import LogLineFormatter

RFC3339_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
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


@pytest.fixture
def ingest_stream() -> Iterator[io.StringIO]:
    """The observability logger's stream, as Lambda would ship it."""
    handler = observability.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    observability.logger.append_keys(correlation_id="c0ffee00", function_request_id="f-1")
    try:
        yield buffer
    finally:
        handler.setStream(previous)
        observability.logger.remove_keys(["correlation_id", "function_request_id"])


class Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def as_in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The root logger without pytest's handlers (which pytest adds as each test's call begins, so not in a
    fixture): in Lambda its only handler is the runtime's, which Powertools' SuppressFilter keeps our lines from."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


def test_info_line_writes_logger_infos_line(ingest_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    as_in_lambda(monkeypatch)
    stdlib = logging.getLogger(observability.logger.name)
    records: list[logging.LogRecord] = []
    handle = stdlib.handle

    def counted(record: logging.LogRecord) -> None:
        records.append(record)
        handle(record)

    monkeypatch.setattr(stdlib, "handle", counted)
    extra = {"payloads": 10, "retriedEntries": 0, "deviceId": "dev-ü"}
    observability.logger.info("request accepted", extra=extra)
    observability.info_line("request accepted", extra)
    assert len(records) == 1  # logger.info's went through logging; info_line wrote its own
    theirs, ours = (json.loads(line) for line in ingest_stream.getvalue().splitlines())
    # The same keys in the same order, the same values; the time is the moment each was written, in one format
    assert list(ours) == list(theirs) and {**ours, "timestamp": None} == {**theirs, "timestamp": None}
    assert RFC3339_MS_UTC.fullmatch(ours["timestamp"]) and RFC3339_MS_UTC.fullmatch(theirs["timestamp"])
    apart = datetime.fromisoformat(ours["timestamp"]) - datetime.fromisoformat(theirs["timestamp"])
    assert abs(apart.total_seconds()) < 1


def test_info_line_is_cut_by_the_log_level(ingest_stream: io.StringIO) -> None:
    stdlib = logging.getLogger(observability.logger.name)
    level = stdlib.level
    stdlib.setLevel(logging.WARNING)  # LOG_LEVEL=WARNING, the scale profile's
    try:
        observability.info_line("request accepted", {"payloads": 1})
    finally:
        stdlib.setLevel(level)
    assert ingest_stream.getvalue() == ""


def test_a_filter_or_another_handler_sees_info_lines_as_logging_gives_them(
    ingest_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_in_lambda(monkeypatch)
    stdlib = logging.getLogger(observability.logger.name)
    # A filter on the logger still decides (here: it drops every line)
    refuse_all = logging.Filter("no-such-logger")
    stdlib.addFilter(refuse_all)
    try:
        observability.info_line("request accepted", {"payloads": 1})
    finally:
        stdlib.removeFilter(refuse_all)
    assert ingest_stream.getvalue() == ""
    # A handler on the root logger without Powertools' SuppressFilter gets the record, as it would from logger.info
    collector = Collector()
    seen = collector.records
    logging.getLogger().addHandler(collector)
    try:
        observability.info_line("request accepted", {"payloads": 2})
    finally:
        logging.getLogger().removeHandler(collector)
    assert [(record.getMessage(), record.__dict__["payloads"]) for record in seen] == [("request accepted", 2)]
    assert json.loads(ingest_stream.getvalue())["payloads"] == 2


def test_with_the_lambda_runtimes_root_handler_the_line_is_written_once(
    ingest_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_in_lambda(monkeypatch)
    # The Lambda runtime's handler on the root logger, with the SuppressFilter Powertools' Logger adds to it
    runtime = Collector()
    seen = runtime.records
    runtime.addFilter(SuppressFilter(observability.logger.service))
    logging.getLogger().addHandler(runtime)
    try:
        observability.info_line("request accepted", {"payloads": 3})
        observability.logger.info("request accepted", extra={"payloads": 3})
    finally:
        logging.getLogger().removeHandler(runtime)
    assert seen == []
    assert [json.loads(line)["payloads"] for line in ingest_stream.getvalue().splitlines()] == [3, 3]
