"""Validation rules of the HTTP contract: every refusal is a Problem with the right status."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from pipeline.collection import Limits, decode_body, parse_collection
from pipeline.problems import Problem

LIMITS = Limits(max_body_bytes=1024 * 1024, max_payloads=500, max_payload_bytes=256 * 1024, max_nesting_depth=32)
JSON = {"content-type": "application/json"}


def body_of(document: object) -> bytes:
    return json.dumps(document).encode()


def valid(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {"version": "1.0", "token": "t-1", "data": [{"a": 1}, {"b": [1, 2, {"c": None}]}]}
    document.update(overrides)
    return document


def refusal(
    raw: bytes, headers: dict[str, str] | None = None, base64_encoded: bool = False, limits: Limits = LIMITS
) -> Problem:
    body = base64.b64encode(raw).decode() if base64_encoded else raw.decode("utf-8", "surrogateescape")
    with pytest.raises(Problem) as caught:
        parse_collection(decode_body(body, base64_encoded, JSON if headers is None else headers, limits), limits)
    return caught.value


def test_valid_collection_keeps_each_payload_as_equal_json() -> None:
    # Given a collection with unicode, nesting and numbers
    document = valid(data=[{"name": "Zoë ✓", "n": 12345678901234567890, "f": 0.1, "nested": {"x": [True, None]}}])
    # When it is parsed
    collection = parse_collection(body_of(document), LIMITS)
    # Then version/token are kept and the payload text decodes to the identical object
    assert (collection.version, collection.token) == ("1.0", "t-1")
    assert [json.loads(p) for p in collection.payloads] == document["data"]


@pytest.mark.parametrize(
    ("raw", "status", "slug", "pointer"),
    [
        (b'{"version": "1", "token": "t", "data": [{"a": 1}', 400, "malformed-json", None),
        (b"[1, 2]", 400, "wrong-type", ""),
        (b'"just a string"', 400, "wrong-type", ""),
        (body_of({"token": "t", "data": [{}]}), 400, "missing-field", "/version"),
        (body_of({"version": "1", "data": [{}]}), 400, "missing-field", "/token"),
        (body_of({"version": "1", "token": "t"}), 400, "missing-field", "/data"),
        (body_of(valid(version=1)), 400, "wrong-type", "/version"),
        (body_of(valid(token=None)), 400, "wrong-type", "/token"),
        (body_of(valid(version="  ")), 400, "empty-field", "/version"),
        (body_of(valid(token="x" * 5000)), 400, "field-too-long", "/token"),
        (body_of(valid(data={"a": 1})), 400, "wrong-type", "/data"),
        (body_of(valid(data=[])), 400, "empty-field", "/data"),
        (body_of(valid(data=[{"a": 1}, 7])), 400, "wrong-type", "/data/1"),
        (body_of(valid(data=[{"a": 1}, None])), 400, "wrong-type", "/data/1"),
        (body_of(valid(extra=1)), 400, "unknown-field", "/extra"),
        (b'{"version": "1", "token": "t", "data": [{}, {"a": 1, "a": 2}]}', 400, "duplicate-key", "/data/1"),
        (b'{"version": "1", "version": "2", "token": "t", "data": [{}]}', 400, "duplicate-key", None),
        (b'{"version": "1", "token": "t", "data": [{}, {}, {"a": [NaN]}]}', 400, "non-finite-number", "/data/2"),
        (b'{"version": "1", "token": "t", "data": [{"a": -Infinity}]}', 400, "non-finite-number", "/data/0"),
        (b'{"version": "1", "token": "t", "data": [{"a": 1e999}]}', 400, "non-finite-number", "/data/0"),
        (b'{"version": "1", "token": "t", "data": [{"a": "\\ud800"}]}', 400, "invalid-unicode", "/data/0"),
        (b'{"version": "1", "token": "t", "data": [{"a": "\xff"}]}', 400, "invalid-utf8", None),
        (
            b'{"version": "1", "token": "t", "data": [' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"]}",
            400,
            "too-deep",
            "/data/0",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 400, "too-deep", None),
        (body_of(valid(data=[{"i": i} for i in range(501)])), 413, "too-many-payloads", "/data"),
        (body_of(valid(data=[{"blob": "x" * (256 * 1024)}])), 413, "payload-too-large", "/data/0"),
    ],
)
def test_bad_collections_are_refused_with_a_named_reason(
    raw: bytes, status: int, slug: str, pointer: str | None
) -> None:
    problem = refusal(raw)
    assert (problem.status, problem.slug) == (status, slug)
    assert problem.pointer == pointer


def test_nesting_exactly_at_the_limit_is_accepted() -> None:
    # depth 32: the payload object plus 31 nested objects
    payload: dict[str, object] = {"leaf": 1}
    for _ in range(31):
        payload = {"n": payload}
    assert len(parse_collection(body_of(valid(data=[payload])), LIMITS).payloads) == 1


def test_payload_exactly_at_the_byte_limit_is_accepted_and_one_over_is_not() -> None:
    overhead = len(json.dumps({"blob": ""}, separators=(",", ":")))
    at_limit = {"blob": "x" * (LIMITS.max_payload_bytes - overhead)}
    assert len(parse_collection(body_of(valid(data=[at_limit])), LIMITS).payloads) == 1
    over = {"blob": "x" * (LIMITS.max_payload_bytes - overhead + 1)}
    assert refusal(body_of(valid(data=[over]))).status == 413


def test_body_over_the_limit_is_413_and_at_the_limit_is_not() -> None:
    limits = Limits(max_body_bytes=2000, max_payloads=500, max_payload_bytes=2000, max_nesting_depth=32)
    base = body_of(valid(data=[{"pad": ""}]))
    at_limit = body_of(valid(data=[{"pad": "x" * (2000 - len(base))}]))
    assert len(at_limit) == 2000
    assert parse_collection(decode_body(at_limit.decode(), False, JSON, limits), limits).payloads
    over = body_of(valid(data=[{"pad": "x" * (2001 - len(base))}]))
    assert refusal(over, limits=limits).slug == "body-too-large"
    assert refusal(over, base64_encoded=True, limits=limits).slug == "body-too-large"


@pytest.mark.parametrize(
    ("headers", "status", "slug"),
    [
        ({"content-type": "text/plain"}, 415, "unsupported-media-type"),
        ({}, 415, "unsupported-media-type"),
        ({"content-type": "application/x-www-form-urlencoded"}, 415, "unsupported-media-type"),
        ({"content-type": "application/json; charset=latin-1"}, 415, "unsupported-media-type"),
        ({"content-type": "application/json", "content-encoding": "br"}, 415, "unsupported-content-encoding"),
    ],
)
def test_non_json_content_is_415(headers: dict[str, str], status: int, slug: str) -> None:
    problem = refusal(body_of(valid()), headers=headers)
    assert (problem.status, problem.slug) == (status, slug)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/vnd.acme+json"]
)
def test_json_content_types_are_accepted(content_type: str) -> None:
    raw = decode_body(body_of(valid()).decode(), False, {"content-type": content_type}, LIMITS)
    assert parse_collection(raw, LIMITS).version == "1.0"


def test_gzip_body_is_accepted() -> None:
    compressed = gzip.compress(body_of(valid()))
    raw = decode_body(base64.b64encode(compressed).decode(), True, {**JSON, "content-encoding": "gzip"}, LIMITS)
    assert len(parse_collection(raw, LIMITS).payloads) == 2


def test_gzip_bomb_is_413_without_inflating_it() -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces, ~64 KiB compressed
    problem = refusal(bomb, headers={**JSON, "content-encoding": "gzip"}, base64_encoded=True)
    assert (problem.status, problem.slug) == (413, "body-too-large")


@pytest.mark.parametrize(
    "raw",
    [gzip.compress(b'{"version":"1","token":"t","data":[{}]}')[:-12], b'{"version":"1","token":"t","data":[{}]}'],
    ids=["truncated", "declared-but-not-gzip"],
)
def test_broken_gzip_is_400(raw: bytes) -> None:
    problem = refusal(raw, headers={**JSON, "content-encoding": "gzip"}, base64_encoded=True)
    assert (problem.status, problem.slug) == (400, "invalid-gzip")


def test_body_marked_base64_that_is_not_is_400() -> None:
    with pytest.raises(Problem) as caught:
        decode_body("not base64!!", True, JSON, LIMITS)
    assert (caught.value.status, caught.value.slug) == (400, "invalid-base64")


def test_empty_body_is_400() -> None:
    with pytest.raises(Problem) as caught:
        decode_body(None, False, JSON, LIMITS)
    assert (caught.value.status, caught.value.slug) == (400, "empty-body")


def test_sqs_forbidden_characters_are_escaped_not_lost() -> None:
    collection = parse_collection(body_of(valid(data=[{"s": "a\uffffb\ufffe"}])), LIMITS)
    assert "\uffff" not in collection.payloads[0] and "\ufffe" not in collection.payloads[0]
    assert json.loads(collection.payloads[0]) == {"s": "a\uffffb\ufffe"}


@pytest.mark.parametrize("base64_encoded", [False, True])
def test_a_byte_order_mark_is_refused_saying_so(base64_encoded: bool) -> None:
    # Given a valid collection sent with a UTF-8 byte order mark in front
    raw = b"\xef\xbb\xbf" + body_of(valid())
    # When it is validated
    problem = refusal(raw, base64_encoded=base64_encoded)
    # Then it is a 400 that names the mark, not a bare "Expecting value"
    assert (problem.status, problem.slug) == (400, "malformed-json")
    assert "BOM" in problem.detail and "line 1 column 1" in problem.detail


def test_brackets_inside_strings_do_not_make_a_payload_too_deep() -> None:
    # 40 "{" and "[" in a string: more brackets than MAX_NESTING_DEPTH (32), but the payload nests 2 levels
    payload = {"text": "{[" * 20, "inner": {"list": [1, 2]}}
    assert parse_collection(body_of(valid(data=[payload])), LIMITS).payloads == [
        json.dumps(payload, separators=(",", ":"))
    ]


def test_a_too_deep_payload_with_an_out_of_range_number_is_refused_as_too_deep() -> None:
    raw = b'{"version": "1", "token": "t", "data": [{}, ' + b'{"a":' * 40 + b"1e999" + b"}" * 40 + b"]}"
    problem = refusal(raw)
    assert (problem.status, problem.slug, problem.pointer) == (400, "too-deep", "/data/1")
