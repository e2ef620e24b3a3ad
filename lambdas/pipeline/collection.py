"""Turn an HTTP request into a validated PayloadCollection, or raise a Problem (4xx).

Everything a client can get wrong is decided here, before anything is enqueued, so a rejected
request never leaves a payload half-enqueued.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from pipeline.contract import BINARY_JSON_CONTENT_TYPE, MAX_TOKEN_CHARS, MAX_VERSION_CHARS
from pipeline.problems import Problem, bad_request, too_large, unsupported_media_type

_ALLOWED_FIELDS = frozenset({"version", "token", "data"})
# U+FFFE/U+FFFF are legal in JSON strings but refused by SQS; a JSON escape keeps the value identical.
_SQS_UNSAFE = str.maketrans({"\ufffe": "\\ufffe", "\uffff": "\\uffff"})
# Built once: json.dumps with non-default options builds a new encoder on every call. No cycle check: a payload
# json.loads built holds no cycle (36.1 vs 38.4 µs for bench P1's 10 payloads, cuts_us.payload_encoder).
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_payloads: int
    max_payload_bytes: int
    max_nesting_depth: int


@dataclass(frozen=True)
class PayloadCollection:
    """The original PayloadCollection: each payload is kept as compact JSON text, ready to enqueue."""

    version: str
    token: str
    payloads: list[str]


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return document


class _NonFinite(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _reject_constant(name: str) -> object:
    raise _NonFinite(name)


class _Flagged(dict[str, object]):
    """An object that had a duplicate key (only built by _payload_pointer, after a refusal)."""

    duplicates: frozenset[str] = frozenset()


class _Constant(float):
    """NaN or (-)Infinity as written (only built by _payload_pointer, after a refusal)."""


def _flag_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = _Flagged(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        repeated: set[str] = set()
        for key, _ in pairs:
            (repeated if key in seen else seen).add(key)
        document.duplicates = frozenset(repeated)
    return document


def _contains(value: object, key: str | None) -> bool:
    """Whether ``value`` holds a duplicate ``key`` (key given) or a NaN/Infinity literal (key None)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if key is None and isinstance(node, _Constant):
            return True
        if isinstance(node, _Flagged) and key is not None and key in node.duplicates:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _payload_pointer(text: str, key: str | None) -> str | None:
    """``/data/i`` of the first payload holding the refused duplicate ``key`` (or NaN/Infinity when
    key is None). Runs only after a refusal: the body is parsed again, leniently, with markers."""
    try:
        document = json.loads(text, object_pairs_hook=_flag_duplicates, parse_constant=_Constant)
    except (ValueError, RecursionError):
        return None
    data = document.get("data") if isinstance(document, dict) else None
    if isinstance(data, list):
        for index, payload in enumerate(data):
            if _contains(payload, key):
                return f"/data/{index}"
    return None


def _is_json_media_type(content_type: str) -> bool:
    media_type, _, params = content_type.partition(";")
    media_type = media_type.strip().lower()
    if not (
        media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))
    ):
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _raw_body(body: str | None, is_base64_encoded: bool, limit: int) -> bytes:
    if not body:
        raise bad_request("empty-body", "the request body is empty; expected a JSON object")
    if not is_base64_encoded:
        # surrogatepass keeps a lone surrogate as bytes, so it fails as invalid UTF-8 below (400).
        return body.encode("utf-8", "surrogatepass")
    if len(body) > (limit // 3 + 1) * 4 + 4 and limit > 0:
        # Cheap early exit: the base64 text alone proves the decoded body is over the limit...
        # ...unless it is gzip, whose compressed size says nothing; the caller passes limit=0 then.
        raise too_large("body-too-large", f"the request body is larger than {limit} bytes")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request("invalid-base64", "the request body is marked base64-encoded but is not") from exc


def _gunzip(compressed: bytes, limit: int) -> bytes:
    """Decompress at most limit+1 bytes: a gzip bomb costs us limit bytes of memory, not gigabytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(compressed, limit + 1)
    except zlib.error as exc:
        raise bad_request("invalid-gzip", f"Content-Encoding is gzip but the body is not valid gzip ({exc})") from exc
    if len(data) > limit:
        raise too_large("body-too-large", f"the decompressed request body is larger than {limit} bytes")
    if not inflater.eof:
        raise bad_request("invalid-gzip", "Content-Encoding is gzip but the gzip stream is truncated")
    if inflater.unused_data:
        raise bad_request("invalid-gzip", "unexpected bytes after the end of the gzip stream")
    return data


def decode_body(body: str | None, is_base64_encoded: bool, headers: Mapping[str, str], limits: Limits) -> bytes:
    """Check content type and encoding; return the decoded body bytes (never over max_body_bytes)."""
    content_type = headers.get("content-type") or ""
    if not _is_json_media_type(content_type):
        shown = content_type or "no Content-Type header"
        raise unsupported_media_type(f"expected Content-Type application/json (UTF-8), got {shown}")
    encoding = (headers.get("content-encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise Problem(
            415,
            "unsupported-content-encoding",
            "Unsupported Media Type",
            f"Content-Encoding {encoding!r} is not supported; use gzip or none",
        )
    gzipped = encoding != "identity"
    if gzipped and body and not is_base64_encoded:
        # gzip is bytes, not text: a gateway that passed it as text (an HTTP API does for application/json) has
        # already altered it. Say how to send it instead of "invalid gzip".
        raise unsupported_media_type(
            "this API passes an application/json body as text, which cannot carry gzip bytes; send gzip bodies "
            f"with Content-Type {BINARY_JSON_CONTENT_TYPE}",
            slug="gzip-needs-binary-content-type",
        )
    raw = _raw_body(body, is_base64_encoded, 0 if gzipped else limits.max_body_bytes)
    if gzipped:
        raw = _gunzip(raw, limits.max_body_bytes)
    if len(raw) > limits.max_body_bytes:
        raise too_large("body-too-large", f"the request body is larger than {limits.max_body_bytes} bytes")
    return raw


# Built once, as _COMPACT_JSON: json.loads with hooks builds a new decoder and its scanner on every call
# (19.6 vs 22.9 µs for bench P1's body, cuts_us.json_decoder).
_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_object_without_duplicate_keys, parse_constant=_reject_constant)


def _parse_json(raw: bytes) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("invalid-utf8", f"the body is not valid UTF-8 (byte offset {exc.start})") from exc
    try:
        if text.startswith("\ufeff"):  # json.loads' own check, which the decoder leaves to it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _STRICT_JSON.decode(text)
    except _DuplicateKey as exc:
        pointer = _payload_pointer(text, exc.key)
        where = f" in data[{pointer.rsplit('/', 1)[1]}]" if pointer else ""
        raise bad_request(
            "duplicate-key", f"the JSON object key {exc.key!r} appears more than once{where}", pointer
        ) from exc
    except _NonFinite as exc:
        pointer = _payload_pointer(text, None)
        where = f"data[{pointer.rsplit('/', 1)[1]}] contains {exc.name}, which" if pointer else f"{exc.name}"
        raise bad_request("non-finite-number", f"{where} is not valid JSON; numbers must be finite", pointer) from exc
    except json.JSONDecodeError as exc:
        raise bad_request(
            "malformed-json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise bad_request("too-deep", "the JSON document is nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer literal with more digits than Python converts
        raise bad_request("malformed-json", f"the body is not valid JSON: {exc}") from exc


def _depth_exceeds(value: object, limit: int) -> bool:
    """True when containers nest deeper than limit (the payload object itself is depth 1)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        # Only the payload itself and the dicts and lists below it are ever pushed.
        children = node.values() if isinstance(node, dict) else cast("list[object]", node)
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _string_field(document: dict[str, object], name: str, max_chars: int) -> str:
    if name not in document:
        raise bad_request("missing-field", f"the field {name!r} is required", f"/{name}")
    value = document[name]
    if not isinstance(value, str):
        raise bad_request("wrong-type", f"the field {name!r} must be a string, got {_json_type(value)}", f"/{name}")
    if not value.strip():
        raise bad_request("empty-field", f"the field {name!r} must not be empty", f"/{name}")
    if len(value) > max_chars:
        raise bad_request("field-too-long", f"the field {name!r} is longer than {max_chars} characters", f"/{name}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad_request("invalid-unicode", f"the field {name!r} contains a lone surrogate", f"/{name}") from exc
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _serialize_payload(payload: object, index: int, limits: Limits) -> str:
    pointer = f"/data/{index}"
    if not isinstance(payload, dict):
        raise bad_request("wrong-type", f"data[{index}] must be a JSON object, got {_json_type(payload)}", pointer)
    if _depth_exceeds(payload, limits.max_nesting_depth):
        raise bad_request("too-deep", f"data[{index}] nests deeper than {limits.max_nesting_depth} levels", pointer)
    try:
        text = _COMPACT_JSON.encode(payload)
    except ValueError as exc:  # 1e999 parses to inf, which has no JSON form
        raise bad_request("non-finite-number", f"data[{index}] contains a number out of range", pointer) from exc
    if "\ufffe" in text or "\uffff" in text:
        text = text.translate(_SQS_UNSAFE)  # before measuring: the escapes (6 bytes, not 3) are what is enqueued
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # "\ud800" escapes parse to a lone surrogate: not storable as UTF-8
        raise bad_request("invalid-unicode", f"data[{index}] contains a lone surrogate", pointer) from exc
    if size > limits.max_payload_bytes:
        raise too_large(
            "payload-too-large", f"data[{index}] is {size} bytes; the limit is {limits.max_payload_bytes}", pointer
        )
    return text


def parse_collection(raw: bytes, limits: Limits) -> PayloadCollection:
    """Validate a decoded body against the PayloadCollection contract."""
    document = _parse_json(raw)
    if not isinstance(document, dict):
        raise bad_request("wrong-type", f"the body must be a JSON object, got {_json_type(document)}", "")
    unknown = sorted(set(document) - _ALLOWED_FIELDS)
    if unknown:
        raise bad_request(
            "unknown-field", f"unknown top-level field {unknown[0]!r}; allowed: data, token, version", f"/{unknown[0]}"
        )
    version = _string_field(document, "version", MAX_VERSION_CHARS)
    token = _string_field(document, "token", MAX_TOKEN_CHARS)
    if "data" not in document:
        raise bad_request("missing-field", "the field 'data' is required", "/data")
    data = document["data"]
    if not isinstance(data, list):
        raise bad_request(
            "wrong-type", f"the field 'data' must be an array of objects, got {_json_type(data)}", "/data"
        )
    if not data:
        raise bad_request("empty-field", "the field 'data' must hold at least one payload", "/data")
    if len(data) > limits.max_payloads:
        raise too_large(
            "too-many-payloads", f"data holds {len(data)} payloads; the limit is {limits.max_payloads}", "/data"
        )
    payloads = [_serialize_payload(payload, index, limits) for index, payload in enumerate(data)]
    return PayloadCollection(version=version, token=token, payloads=payloads)
