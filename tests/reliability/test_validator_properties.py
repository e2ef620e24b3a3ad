"""Property tests: for ANY request, the answer is 202 with every payload enqueued unchanged, or a
4xx problem with nothing enqueued. Never another exception, never a 5xx.

The validator (decode_body -> parse_collection -> build_messages) is exercised directly with many
examples; a smaller property drives the real handler against moto and counts the queue."""

from __future__ import annotations

import base64
import gzip
import json
import math
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from pipeline.collection import Limits, decode_body, parse_collection
from pipeline.contract import SQS_MAX_MESSAGE_BYTES
from pipeline.envelope import build_messages
from pipeline.problems import Problem
from tests.conftest import Pipeline

REQUEST_ID = "6f1c8a5e-0000-4000-8000-000000000000"
# Repeats weight the draw towards requests that get past the first checks.
CONTENT_TYPES = ["application/json"] * 4 + [
    "application/json; charset=utf-8",
    "application/vnd.api+json",
    "APPLICATION/JSON",
    "text/plain",
    "",
    "application/json; charset=latin-1",
]
ENCODINGS = ["identity"] * 5 + ["gzip"] * 2 + ["gzip-truncated", "gzip-declared-only"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
collections = st.fixed_dictionaries(
    {},
    optional={
        "version": st.text(max_size=70) | json_values,
        "token": st.text(max_size=70) | json_values,
        "data": st.lists(payloads | json_values, max_size=8) | json_values,
        "extra": json_values,
    },
)


def encode(document: Any) -> bytes:
    # allow_nan=True: NaN/Infinity literals are part of the hostile input space
    return json.dumps(document, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def request_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["collection", "valid", "valid", "valid", "any-json", "bytes", "truncated", "mutated"]))
    if kind == "collection":
        return encode(draw(collections))
    valid = {
        "version": draw(st.text(min_size=1, max_size=10).filter(str.strip)),
        "token": draw(st.text(min_size=1, max_size=10).filter(str.strip)),
        "data": draw(st.lists(payloads, min_size=1, max_size=8)),
    }
    if kind == "valid":
        return encode(valid)
    if kind == "any-json":
        return encode(draw(json_values))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    raw = encode(valid)
    cut = draw(st.integers(0, max(0, len(raw) - 1)))
    if kind == "truncated":
        return raw[:cut]
    return raw[:cut] + bytes([draw(st.integers(0, 255))]) + raw[cut + 1 :]


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    raw = draw(request_bodies())
    headers = {"content-type": draw(st.sampled_from(CONTENT_TYPES))}
    encoding = draw(st.sampled_from(ENCODINGS))
    if encoding != "identity":
        headers["content-encoding"] = "gzip"
    if encoding == "gzip":
        raw = gzip.compress(raw)
    elif encoding == "gzip-truncated":
        raw = gzip.compress(raw)[: draw(st.integers(0, 30))]
    return raw, headers


limits_strategy = st.builds(
    lambda payload, body_extra, count, depth: Limits(payload + body_extra, count, payload, depth),
    st.integers(1, 400),
    st.integers(0, 4000),
    st.integers(1, 10),
    st.integers(1, 6),
) | st.just(Limits(1024 * 1024, 500, 256 * 1024, 32))


def sqs_allowed(c: str) -> bool:
    return c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000"


def reference_data(raw: bytes, headers: dict[str, str]) -> list[Any]:
    """The payloads as an independent reader sees them (for accepted requests only)."""
    if headers.get("content-encoding") == "gzip":
        raw = gzip.decompress(raw)
    return json.loads(raw.decode("utf-8"))["data"]


@settings(max_examples=300, deadline=None)
@given(request=requests(), limits=limits_strategy)
def test_the_validator_accepts_everything_unchanged_or_refuses_with_a_4xx(
    request: tuple[bytes, dict[str, str]], limits: Limits
) -> None:
    check_all_or_nothing(request, limits)


well_formed = st.tuples(
    st.builds(
        lambda version, token, data: encode({"version": version, "token": token, "data": data}),
        st.text(min_size=1, max_size=64),
        st.text(min_size=1, max_size=64),
        st.lists(payloads, min_size=1, max_size=20),
    ),
    st.sampled_from([{"content-type": "application/json"}, {"content-type": "application/json; charset=UTF-8"}]),
)


@settings(max_examples=150, deadline=None)
@given(request=well_formed)
def test_well_formed_collections_are_accepted_unchanged_unless_a_value_is_not_storable(
    request: tuple[bytes, dict[str, str]],
) -> None:
    # Mostly accepted; the refusals left are blank strings, NaN/Infinity and lone surrogates
    check_all_or_nothing(request, Limits(1024 * 1024, 500, 256 * 1024, 32))


def check_all_or_nothing(request: tuple[bytes, dict[str, str]], limits: Limits) -> None:
    raw, headers = request
    try:
        # As API Gateway delivers it with binaryMediaTypes */*: base64 of the exact bytes
        decoded = decode_body(base64.b64encode(raw).decode("ascii"), True, headers, limits)
        collection = parse_collection(decoded, limits)
        messages = build_messages(collection, REQUEST_ID, 1_764_000_000_000)
    except Problem as problem:
        # Refused: a 4xx with a reason and a readable detail (nothing was built to enqueue)
        event(f"refused: {problem.slug}")
        assert 400 <= problem.status < 500
        assert problem.slug and problem.detail
        document = json.loads(problem.to_json())
        assert document["status"] == problem.status and document["type"].endswith(problem.slug)
        return
    # Accepted: one message per payload, in order, each carrying the payload unchanged
    event("accepted")
    data = reference_data(raw, headers)
    assert len(messages) == len(data) >= 1
    assert len(data) <= limits.max_payloads
    for index, (message, payload) in enumerate(zip(messages, data, strict=True)):
        envelope = json.loads(message.body)
        assert envelope["id"] == f"{REQUEST_ID}-{index}"
        assert envelope["payload"] == payload
        assert not _has_non_finite(payload)
        assert message.size <= SQS_MAX_MESSAGE_BYTES
        assert all(sqs_allowed(c) for c in message.body)  # SQS would refuse anything else


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def _drain(pipeline: Pipeline) -> int:
    """Delete every message on the queue; return how many there were."""
    messages = pipeline.receive()
    for message in messages:
        pipeline.sqs.delete_message(QueueUrl=pipeline.resources.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_the_handler_answers_202_with_everything_enqueued_or_4xx_with_nothing(
    pipeline: Pipeline, request: tuple[bytes, dict[str, str]]
) -> None:
    raw, headers = request
    assume(raw)  # an empty body is in the catalogue; here we want bodies that reach the parser
    # When the request reaches the real ingest handler (one moto queue for all examples, drained each time)
    response = pipeline.post(raw, headers={**headers, "x-api-key": "k"})
    enqueued = _drain(pipeline)
    # Then it is all or nothing
    assert response.status == 202 or 400 <= response.status < 500, response.body
    if response.status == 202:
        assert response.body["accepted"] == enqueued == len(reference_data(raw, headers))
    else:
        assert enqueued == 0
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.body["status"] == response.status
