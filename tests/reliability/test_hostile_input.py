"""A catalogue of hostile requests, each driven through the real ingest handler as an API Gateway
event. Every one gets a clear 4xx application/problem+json (type, title, status, detail), enqueues
nothing, and never a 5xx. The boundary pairs show each limit is exact: at the limit is accepted
(everything enqueued), one past it is refused (nothing enqueued)."""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pytest

from infra.config import PipelineConfig
from pipeline.contract import MAX_TOKEN_CHARS, MAX_VERSION_CHARS
from tests.conftest import JSON_HEADERS, Pipeline

LIMITS = PipelineConfig()  # the deployed defaults: the catalogue attacks what ships
PROBLEM_PREFIX = "urn:ingest-pipeline:problem:"
GZIP_HEADERS = {**JSON_HEADERS, "Content-Encoding": "gzip"}


def compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def body(data: Any = None, *, version: Any = "1.0", token: Any = "device-1", **extra: Any) -> bytes:
    document = {"version": version, "token": token, "data": [{"seq": 1}] if data is None else data, **extra}
    return compact(document)


def text(raw: str) -> bytes:
    return raw.encode("utf-8", "surrogatepass")


def sized_body(total: int) -> bytes:
    """A valid collection of exactly ``total`` bytes, every payload within MAX_PAYLOAD_BYTES."""
    chunk = LIMITS.MAX_PAYLOAD_BYTES - 100
    payloads = [{"s": ""}]
    while len(body(payloads)) < total:
        room = total - len(body(payloads))
        if len(payloads[-1]["s"]) >= chunk:
            payloads.append({"s": ""})
            room = total - len(body(payloads))
        payloads[-1]["s"] += "x" * min(room, chunk - len(payloads[-1]["s"]))
    raw = body(payloads)
    assert len(raw) == total, (len(raw), total)
    return raw


def payload_of_size(size: int) -> dict[str, str]:
    """A payload whose compact JSON is exactly ``size`` bytes."""
    payload = {"s": "x" * (size - len(compact({"s": ""})))}
    assert len(compact(payload)) == size
    return payload


def nested(depth: int) -> dict[str, Any]:
    """A payload of exactly ``depth`` nested containers (the payload object is depth 1)."""
    node: dict[str, Any] = {}
    for _ in range(depth - 1):
        node = {"n": node}
    return node


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """256 MiB of zeros in about 250 KiB: what matters is that we never inflate it all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"0" * (1024 * 1024)
    return b"".join([*(compressor.compress(block) for _ in range(256)), compressor.flush()])


@dataclass(frozen=True)
class Hostile:
    raw: bytes | None
    status: int
    slug: str
    headers: dict[str, str] | None = None
    method: str = "POST"
    path: str = "/v1/payloads"


def _catalogue() -> dict[str, Hostile]:
    over_body = LIMITS.MAX_BODY_BYTES + 1
    return {
        # malformed or truncated JSON
        "truncated-json": Hostile(body()[:-7], 400, "malformed-json"),
        "unquoted-keys": Hostile(b"{version: 1, token: t, data: []}", 400, "malformed-json"),
        "trailing-garbage": Hostile(body() + b"}{", 400, "malformed-json"),
        "single-quotes": Hostile(b"{'version':'1','token':'t','data':[{}]}", 400, "malformed-json"),
        "trailing-comma": Hostile(b'{"version":"1","token":"t","data":[{"a":1},]}', 400, "malformed-json"),
        "utf8-bom": Hostile(b"\xef\xbb\xbf" + body(), 400, "malformed-json"),
        "nul-byte": Hostile(body()[:10] + b"\x00" + body()[10:], 400, "malformed-json"),
        "whitespace-only": Hostile(b"   \n\t  ", 400, "malformed-json"),
        "empty-body": Hostile(None, 400, "empty-body"),
        # wrong types everywhere, nulls
        "body-is-array": Hostile(b'[{"version":"1","token":"t","data":[{}]}]', 400, "wrong-type"),
        "body-is-string": Hostile(b'"hello"', 400, "wrong-type"),
        "body-is-null": Hostile(b"null", 400, "wrong-type"),
        "version-is-number": Hostile(body(version=1.0), 400, "wrong-type"),
        "token-is-object": Hostile(body(token={"t": 1}), 400, "wrong-type"),
        "token-is-bool": Hostile(body(token=True), 400, "wrong-type"),
        "data-is-object": Hostile(compact({"version": "1", "token": "t", "data": {"0": {}}}), 400, "wrong-type"),
        "data-is-string": Hostile(compact({"version": "1", "token": "t", "data": "[{}]"}), 400, "wrong-type"),
        "payload-is-number": Hostile(body([{"ok": 1}, 42]), 400, "wrong-type"),
        "payload-is-array": Hostile(body([[1, 2]]), 400, "wrong-type"),
        "version-null": Hostile(body(version=None), 400, "wrong-type"),
        "token-null": Hostile(body(token=None), 400, "wrong-type"),
        "data-null": Hostile(compact({"version": "1", "token": "t", "data": None}), 400, "wrong-type"),
        "payload-null": Hostile(body([{"ok": 1}, None]), 400, "wrong-type"),
        "missing-version": Hostile(compact({"token": "t", "data": [{}]}), 400, "missing-field"),
        "missing-data": Hostile(compact({"version": "1", "token": "t"}), 400, "missing-field"),
        "unknown-field": Hostile(body(extra="x"), 400, "unknown-field"),
        # empty and huge strings
        "empty-version": Hostile(body(version=""), 400, "empty-field"),
        "blank-token": Hostile(body(token="   "), 400, "empty-field"),
        "empty-data": Hostile(body([]), 400, "empty-field"),
        "huge-version": Hostile(body(version="v" * 100_000), 400, "field-too-long"),
        "huge-token": Hostile(body(token="t" * 500_000), 400, "field-too-long"),
        "huge-string-in-payload": Hostile(body([{"s": "x" * 600_000}]), 413, "payload-too-large"),
        # sizes and counts
        "10000-tiny-payloads": Hostile(body([{}] * 10_000), 413, "too-many-payloads"),
        "one-2MiB-payload": Hostile(body([{"s": "x" * (2 * 1024 * 1024)}]), 413, "body-too-large"),
        "body-just-over-limit": Hostile(sized_body(over_body), 413, "body-too-large"),
        "payload-just-over-limit": Hostile(
            body([payload_of_size(LIMITS.MAX_PAYLOAD_BYTES + 1)]), 413, "payload-too-large"
        ),
        "payloads-just-over-limit": Hostile(body([{}] * (LIMITS.MAX_PAYLOADS + 1)), 413, "too-many-payloads"),
        "version-just-over-limit": Hostile(body(version="v" * (MAX_VERSION_CHARS + 1)), 400, "field-too-long"),
        "token-just-over-limit": Hostile(body(token="t" * (MAX_TOKEN_CHARS + 1)), 400, "field-too-long"),
        "depth-just-over-limit": Hostile(body([nested(LIMITS.MAX_NESTING_DEPTH + 1)]), 400, "too-deep"),
        # gzip
        "gzip-bomb": Hostile(gzip_bomb(), 413, "body-too-large", GZIP_HEADERS),
        "gzip-just-over-limit": Hostile(gzip.compress(sized_body(over_body)), 413, "body-too-large", GZIP_HEADERS),
        "truncated-gzip": Hostile(gzip.compress(body())[:-12], 400, "invalid-gzip", GZIP_HEADERS),
        "gzip-declared-not-sent": Hostile(body(), 400, "invalid-gzip", GZIP_HEADERS),
        "gzip-then-garbage": Hostile(gzip.compress(body()) + b"junk", 400, "invalid-gzip", GZIP_HEADERS),
        "unsupported-encoding": Hostile(
            body(), 415, "unsupported-content-encoding", {**JSON_HEADERS, "Content-Encoding": "br"}
        ),
        # invalid UTF-8 and lone surrogates
        "invalid-utf8-byte": Hostile(body([{"s": "ab"}]).replace(b"ab", b"a\xff"), 400, "invalid-utf8"),
        "overlong-utf8": Hostile(body([{"s": "ab"}]).replace(b"ab", b"\xc0\xaf"), 400, "invalid-utf8"),
        "raw-surrogate-bytes": Hostile(body([{"s": "ab"}]).replace(b"ab", b"\xed\xa0\x80"), 400, "invalid-utf8"),
        "escaped-lone-surrogate-in-payload": Hostile(
            text('{"version":"1","token":"t","data":[{"s":"\\ud800"}]}'), 400, "invalid-unicode"
        ),
        "escaped-lone-surrogate-in-token": Hostile(
            text('{"version":"1","token":"\\udfff","data":[{}]}'), 400, "invalid-unicode"
        ),
        # nesting 100,000 deep
        "arrays-100000-deep": Hostile(
            text('{"version":"1","token":"t","data":[{"a":' + "[" * 100_000 + "]" * 100_000 + "}]}"), 400, "too-deep"
        ),
        "objects-100000-deep": Hostile(
            text('{"version":"1","token":"t","data":[' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "]}"),
            400,
            "too-deep",
        ),
        # duplicate keys
        "duplicate-top-level-key": Hostile(
            b'{"version":"1","version":"2","token":"t","data":[{}]}', 400, "duplicate-key"
        ),
        "duplicate-key-in-payload": Hostile(
            b'{"version":"1","token":"t","data":[{"a":1,"a":2}]}', 400, "duplicate-key"
        ),
        # NaN / Infinity
        "nan-literal": Hostile(b'{"version":"1","token":"t","data":[{"v":NaN}]}', 400, "non-finite-number"),
        "infinity-literal": Hostile(b'{"version":"1","token":"t","data":[{"v":Infinity}]}', 400, "non-finite-number"),
        "minus-infinity-literal": Hostile(
            b'{"version":"1","token":"t","data":[{"v":-Infinity}]}', 400, "non-finite-number"
        ),
        "number-overflowing-to-inf": Hostile(
            b'{"version":"1","token":"t","data":[{"v":1e999}]}', 400, "non-finite-number"
        ),
        "integer-with-5000-digits": Hostile(
            text('{"version":"1","token":"t","data":[{"v":' + "9" * 5000 + "}]}"), 400, "malformed-json"
        ),
        # content type
        "text-plain": Hostile(body(), 415, "unsupported-media-type", {"Content-Type": "text/plain", "x-api-key": "k"}),
        "no-content-type": Hostile(body(), 415, "unsupported-media-type", {"x-api-key": "k"}),
        "form-urlencoded": Hostile(
            b"version=1&token=t",
            415,
            "unsupported-media-type",
            {"Content-Type": "application/x-www-form-urlencoded", "x-api-key": "k"},
        ),
        "json-in-latin1": Hostile(
            body(),
            415,
            "unsupported-media-type",
            {"Content-Type": "application/json; charset=iso-8859-1", "x-api-key": "k"},
        ),
        # wrong method and path
        "get-instead-of-post": Hostile(None, 405, "method-not-allowed", method="GET"),
        "unknown-path": Hostile(body(), 404, "not-found", path="/v1/payloads/../admin"),
    }


CATALOGUE = _catalogue()


def test_the_catalogue_is_large_enough() -> None:
    assert len(CATALOGUE) >= 30


@pytest.mark.parametrize("case", CATALOGUE.values(), ids=CATALOGUE.keys())
def test_hostile_request_gets_a_clear_4xx_problem_and_enqueues_nothing(pipeline: Pipeline, case: Hostile) -> None:
    # When the hostile request reaches the ingest
    response = pipeline.post(
        case.raw, headers=JSON_HEADERS if case.headers is None else case.headers, method=case.method, path=case.path
    )
    # Then it is a 4xx problem document naming the reason ...
    assert 400 <= response.status < 500
    assert (response.status, response.body.get("type")) == (case.status, PROBLEM_PREFIX + case.slug)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.body["status"] == response.status
    assert isinstance(response.body["title"], str) and response.body["title"]
    assert isinstance(response.body["detail"], str) and 10 < len(response.body["detail"]) < 300  # clear, never an echo
    # ... and nothing reached the queue
    assert pipeline.queue_depth() == 0


BOUNDARIES = {
    "body-at-limit": (sized_body(LIMITS.MAX_BODY_BYTES), JSON_HEADERS),
    "gzip-inflating-to-limit": (gzip.compress(sized_body(LIMITS.MAX_BODY_BYTES)), GZIP_HEADERS),
    "payload-at-limit": (body([payload_of_size(LIMITS.MAX_PAYLOAD_BYTES)]), JSON_HEADERS),
    "payloads-at-limit": (body([{"i": i} for i in range(LIMITS.MAX_PAYLOADS)]), JSON_HEADERS),
    "version-at-limit": (body(version="v" * MAX_VERSION_CHARS), JSON_HEADERS),
    "token-at-limit": (body(token="t" * MAX_TOKEN_CHARS), JSON_HEADERS),
    "depth-at-limit": (body([nested(LIMITS.MAX_NESTING_DEPTH)]), JSON_HEADERS),
}


@pytest.mark.parametrize(("raw", "headers"), BOUNDARIES.values(), ids=BOUNDARIES.keys())
def test_a_request_exactly_at_a_limit_is_accepted_whole(
    pipeline: Pipeline, raw: bytes, headers: dict[str, str]
) -> None:
    # Given a request exactly at one limit (its "just over" twin is in the catalogue)
    sent = json.loads(gzip.decompress(raw) if "Content-Encoding" in headers else raw)
    # When it is posted, Then every payload is accepted and enqueued
    response = pipeline.post(raw, headers=headers)
    assert response.status == 202, response.body
    assert response.body["accepted"] == len(sent["data"]) == pipeline.queue_depth()
