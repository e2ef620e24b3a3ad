"""How a load moves through one configuration: the rates and sizes every capacity check and cost line reads.

``flow_of(config, load)`` is computed once per configuration and load. The capacity stages
(tools.models.capacity) judge it and the cost lines (tools.models.cost) price it, so the two cannot disagree
on how many messages, batches, objects or pollers a load makes. A new message layout is one function here
(``LAYOUTS``) plus its tests.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from infra.config import LAMBDA_SYNC_PAYLOAD_BYTES  # Lambda's 6 MB invoke payload, as 6,000,000 bytes
from pipeline.contract import (
    REQUEST_ID_ATTRIBUTE,
    SQS_MAX_BATCH_BYTES,
    SQS_MAX_BATCH_ENTRIES,
)
from tools.models.assumptions import DEFAULT, Assumptions, consumer_batch_ms, cpu_scale
from tools.models.prices import SQS_CHUNK_BYTES  # SQS bills every 64 KB chunk of a request as one request

if TYPE_CHECKING:
    from collections.abc import Callable

    from infra.config import PipelineConfig

SECONDS_PER_MONTH = 30 * 24 * 3600  # the models' month: 30 days
HEADROOM = 1.2  # what a sized knob or a quota request adds above the need

# --- AWS figures the flow rests on (the capacity stages cite them again where they judge) ---------------
# Provisioned SQS event pollers (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html,
# ProvisionedPollerConfig: "Each poller can handle up to 1 MB/sec of throughput and 10 concurrent invokes";
# https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html#sqs-provisioned-mode: up to 10 SQS polling API
# calls per second per poller, each returning <= 10 messages).
POLLER_POLLS_PER_SECOND = 10
POLLER_BYTES_PER_SECOND = 1_000_000
POLLER_CONCURRENT_INVOKES = 10
SQS_RECEIVE_MAX = SQS_MAX_BATCH_ENTRIES  # ReceiveMessage and DeleteMessageBatch: <= 10 messages a call
# The event source mapping's batch (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html,
# BatchSize and MaximumBatchingWindowInSeconds; "Lambda reads messages in batches and invokes your function
# once for each batch" until the batch size, the window or the 6 MB invoke payload is reached): up to 10,000
# records (above 10 only with a window), a window of up to 300 s.
ESM_MAX_BATCH_SIZE = 10_000
ESM_MAX_WINDOW_SECONDS = 300
# A receipt handle is counted at 1 KiB in each record: real ones are a few hundred characters.
RECEIPT_HANDLE_CHARS = 1024
REQUEST_ID_CHARS = 36  # API Gateway's request id, a UUID: the requestId attribute's value
REQUEST_ID_ATTRIBUTE_BYTES = len(REQUEST_ID_ATTRIBUTE) + len("String") + REQUEST_ID_CHARS
COLLECTION_JSON = '{"version":"1.4.2","token":"device-token-123","data":[]}'  # pipeline.envelope's typical request


@dataclass(frozen=True)
class Load:
    """The offered load: requests per minute of ``payloads_per_request`` payloads of ``payload_bytes`` each
    (compact JSON, as the ingest re-serializes them)."""

    requests_per_minute: float
    payloads_per_request: int
    payload_bytes: int
    failure_rate: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests_per_minute / 60

    @property
    def payloads_per_second(self) -> float:
        return self.rps * self.payloads_per_request

    @property
    def requests_per_month(self) -> float:
        return self.rps * SECONDS_PER_MONTH

    @property
    def payloads_per_month(self) -> float:
        return self.payloads_per_second * SECONDS_PER_MONTH

    @property
    def message_bytes(self) -> int:
        """One payload alone in its message (today's layout), as SQS counts it: body + requestId attribute."""
        return one_message_bytes(self.payload_bytes)

    @property
    def body_bytes(self) -> int:
        """The POST body: the collection (COLLECTION_JSON) around the payloads, comma-separated."""
        return len(COLLECTION_JSON) + self.payloads_per_request * (self.payload_bytes + 1) - 1


def load_of(rpm: float, payloads: int, payload_bytes: int, failure_rate: float = 0.0) -> Load:
    return Load(rpm, payloads, payload_bytes, failure_rate)


MIN_PAYLOAD_BYTES = 2  # the smallest JSON object, {}
# Requests up to this size are packed exactly as the ingest packs them (MAX_BODY_BYTES stops at 4.3 MB); larger
# ones, which the HTTP contract refuses anyway, are extrapolated from their first messages.
EXACT_REQUEST_BYTES = 16 * 1024**2


@lru_cache(maxsize=256)
def _request_messages(payload_bytes: int, payloads: int, target_bytes: int) -> tuple[tuple[int, int], ...]:
    """(size as SQS counts it, payloads) of each message the ingest sends for ``payloads`` payloads of
    ``payload_bytes``: its own envelope and packing code (pipeline.envelope.request_message_sizes)."""
    from pipeline.envelope import request_message_sizes

    return tuple((m.size, m.payloads) for m in request_message_sizes([payload_bytes] * payloads, target_bytes))


def one_message_bytes(payload_bytes: int) -> int:
    [(size, _)] = _request_messages(payload_bytes, 1, 0)
    return size


# --- message layouts ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MessageLayout:
    """How one request's payloads travel on the queue: messages per request and their mean size as SQS
    counts it (body + attribute)."""

    name: str
    messages_per_request: int
    message_bytes: float
    payloads_per_message: float


def one_payload_per_message(config: PipelineConfig, load: Load) -> MessageLayout:
    """MESSAGE_TARGET_BYTES=0: today's layout, one payload per message (the Go original's one job each)."""
    return MessageLayout("one payload per message", load.payloads_per_request, load.message_bytes, 1.0)


def packed_messages(config: PipelineConfig, load: Load) -> MessageLayout:
    """MESSAGE_TARGET_BYTES=N (brief decision 2): a request's envelopes joined by newlines into as few
    messages as fit N bytes as SQS counts them (body + requestId attribute); an envelope larger than N
    travels alone. Only payloads of one request share a message. Sized by the ingest's own packing code; a
    request larger than any the ingest accepts (over EXACT_REQUEST_BYTES) from two messages' worth of it."""
    target, payloads, size = config.MESSAGE_TARGET_BYTES, load.payloads_per_request, load.payload_bytes
    if payloads * size <= EXACT_REQUEST_BYTES:
        messages = _request_messages(size, payloads, target)
        total, count = sum(m[0] for m in messages), len(messages)
    else:
        full_bytes, per_message = _request_messages(size, min(payloads, 2 * (target // size + 1)), target)[0]
        full, rest = divmod(payloads, per_message)
        total = full * full_bytes + (sum(m[0] for m in _request_messages(size, rest, target)) if rest else 0)
        count = full + (1 if rest else 0)
    return MessageLayout(f"packed to {target:,} B", count, total / count, payloads / count)


LAYOUTS: dict[bool, Callable[[PipelineConfig, Load], MessageLayout]] = {
    False: one_payload_per_message,
    True: packed_messages,
}


def message_layout(config: PipelineConfig, load: Load) -> MessageLayout:
    return LAYOUTS[config.MESSAGE_TARGET_BYTES > 0](config, load)


def send_calls(messages: int, message_bytes: float) -> tuple[int, int]:
    """SendMessageBatch calls for one request's messages, packed as the ingest packs them (10 entries,
    1 MiB per call), and the requests SQS bills for them (one per started 64 KB chunk of each call)."""
    per_call = max(1, min(SQS_MAX_BATCH_ENTRIES, int(SQS_MAX_BATCH_BYTES // message_bytes)))
    full_calls, rest = divmod(messages, per_call)
    billed = full_calls * chunks(per_call * message_bytes) + (chunks(rest * message_bytes) if rest else 0)
    return full_calls + (1 if rest else 0), billed


def chunks(size_bytes: float) -> int:
    """Requests SQS bills for a request of this payload size: one per started 64 KB chunk."""
    return max(1, math.ceil(size_bytes / SQS_CHUNK_BYTES))


# --- the consumer's event: one record per message ----------------------------------------------------------
def _example_record(body: str) -> dict[str, object]:
    """One record of the consumer's event, shaped as AWS's "Example standard queue message event" (Using
    Lambda with Amazon SQS) with the requestId attribute the ingest sets."""
    return {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "A" * RECEIPT_HANDLE_CHARS,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {
            REQUEST_ID_ATTRIBUTE: {
                "stringValue": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "md5OfMessageAttributes": "00484c68e4d5b0b4b9c7b32c8bce6b0f",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest-pipeline-prod-payloads",
        "awsRegion": "us-east-1",
    }


@lru_cache(maxsize=1)
def record_overhead() -> tuple[int, float]:
    """(bytes of one record around its body, JSON-escaping growth of a body): the body travels as a JSON
    string, so every quote and newline of the envelopes takes one more byte. Measured on the ingest's own
    envelopes of telemetry-like payloads, ten to a message."""
    from pipeline.collection import PayloadCollection
    from pipeline.envelope import build_messages
    from tools.models.sample_payloads import VERSION, telemetry_requests

    [(token, payloads)] = list(telemetry_requests(1, 10, 1024))
    envelopes = build_messages(PayloadCollection(VERSION, token, payloads), "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", 0)
    body = "\n".join(message.body for message in envelopes)  # one packed message of ten
    empty = len(json.dumps(_example_record(""))) + 1  # + the comma between records
    return empty, (len(json.dumps(body)) - 2) / len(body.encode())


def esm_record_bytes(message_bytes: float) -> float:
    """Bytes one message takes in the consumer's event: the record's fields plus its escaped body."""
    overhead, escaping = record_overhead()
    return overhead + (message_bytes - REQUEST_ID_ATTRIBUTE_BYTES) * escaping


# --- the flow ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flow:
    """Per-second rates and sizes of one load under one configuration."""

    load: Load
    layout: MessageLayout
    object_mode: str
    ingest_ms: float
    ingest_cpu_ms: float
    send_calls_per_request: int
    send_billed_per_request: int
    record_bytes: float
    batch_cap: int  # BATCH_SIZE, or fewer if BATCH_SIZE records would pass the 6 MB invoke payload
    pollers: int  # active provisioned pollers (0 in standard mode)
    poller_receive: float  # messages/s one poller can receive
    messages_per_receive: float
    batch: float  # messages per consumer invocation, as the mapping forms them
    fill_s: float  # how long a batch takes to form
    duration_s: float  # one consumer invocation
    hold_failed_s: float  # how long a failed record stays in flight (its first retry delay)
    assume: Assumptions = DEFAULT  # the figures the flow was computed with

    @property
    def rps(self) -> float:
        return self.load.rps

    @property
    def payloads_per_second(self) -> float:
        return self.load.payloads_per_second

    @property
    def payloads_per_hour(self) -> float:
        return self.payloads_per_second * 3600

    @property
    def messages_per_second(self) -> float:
        return self.load.rps * self.layout.messages_per_request

    @property
    def sends_per_second(self) -> float:
        """SendMessageBatch calls."""
        return self.rps * self.send_calls_per_request

    @property
    def deletes_per_second(self) -> float:
        """DeleteMessageBatch calls: the mapping deletes up to SQS_RECEIVE_MAX records a call."""
        return self.messages_per_second / SQS_RECEIVE_MAX

    @property
    def failed_messages_per_second(self) -> float:
        """Records that fail once and wait out their first retry delay."""
        return self.messages_per_second * self.load.failure_rate

    @property
    def payloads_per_batch(self) -> float:
        return self.batch * self.layout.payloads_per_message

    @property
    def batches_per_second(self) -> float:
        return self.messages_per_second / self.batch

    @property
    def objects_per_batch(self) -> float:
        """Batch mode: one object per hour partition of a batch (a batch straddles an hour boundary with the
        chance fill time / 1 h); payload mode: one per payload."""
        if self.object_mode == "payload":
            return self.payloads_per_batch
        return 1 + min(1.0, self.fill_s / 3600)

    @property
    def puts_per_second(self) -> float:
        return self.batches_per_second * self.objects_per_batch

    @property
    def puts_per_hour(self) -> float:
        """Raw objects an hour partition gets."""
        return self.puts_per_second * 3600

    @property
    def payloads_per_object(self) -> float:
        return self.payloads_per_batch / self.objects_per_batch

    @property
    def receives_per_second(self) -> float:
        return self.messages_per_second / self.messages_per_receive

    @property
    def in_flight_ok(self) -> float:
        """Messages received and not yet deleted with no failures: half a batch's fill plus its duration."""
        return self.messages_per_second * (self.fill_s / 2 + self.duration_s)

    @property
    def in_flight(self) -> float:
        return self.in_flight_ok + self.failed_messages_per_second * self.hold_failed_s

    @property
    def latency_s(self) -> float:
        """The most a payload waits between the ingest's 202 and its object: a full batch fill and the
        batch's processing."""
        return self.fill_s + self.duration_s

    @property
    def ingest_concurrency(self) -> float:
        return self.rps * self.ingest_ms / 1000

    @property
    def ingest_environments(self) -> float:
        """Warm ingest environments: the concurrency Little's law gives, +20 % Lambda keeps warm besides."""
        return max(1.0, self.ingest_concurrency * HEADROOM)

    @property
    def consumer_concurrency(self) -> float:
        return self.batches_per_second * self.duration_s

    @property
    def slow_ingest_concurrency(self) -> float:
        """The ingest's concurrency while SendMessageBatch takes ``assume.slow_sqs_send_ms``."""
        return self.rps * (self.ingest_cpu_ms + self.assume.slow_sqs_send_ms * self.send_calls_per_request) / 1000


def ingest_cpu_ms(config: PipelineConfig, assume: Assumptions) -> float:
    """CPU per request at the ingest's memory: bench P1, plus the device-key check (bench D1) when DEVICE_AUTH is on."""
    auth = assume.measured.device_auth_cpu_ms if config.DEVICE_AUTH == "on" else 0.0
    return (assume.measured.ingest_cpu_ms + auth) * cpu_scale(config.INGEST_MEMORY_MB)


def failed_hold_seconds(config: PipelineConfig) -> int:
    """How long a record that failed once stays in flight: its first retry delay, at most RETRY_BASE_SECONDS
    (lambdas/pipeline/redelivery.py sets it with ChangeMessageVisibilityBatch), not the visibility timeout.
    (Should that call fail, the record waits the whole visibility timeout: the alarm on messages in
    flight covers that case.)"""
    return min(config.RETRY_BASE_SECONDS, config.visibility_timeout_seconds)


def flow_of(config: PipelineConfig, load: Load, assume: Assumptions = DEFAULT) -> Flow:
    """How the ingest packs this load, how the event source mapping batches it, and what each step takes.

    Provisioned mode: a poller takes at most min(10 polls/s x 10 messages, 1 MB/s / message) messages/s; the
    mapping runs about as many pollers as that needs (within MIN/MAX_POLLERS), each receive returns the
    poller's share of a second's messages over its 10 polls (1 to 10), and a poller's batch closes at
    BATCH_SIZE or after the batching window. Standard mode: the poller count is not documented, so batches
    are taken as full and receives as 10 messages. A batch never exceeds Lambda's 6 MB invoke payload.
    """
    layout = message_layout(config, load)
    calls, billed = send_calls(layout.messages_per_request, layout.message_bytes)
    cpu_ms = ingest_cpu_ms(config, assume)
    ingest_ms = assume.ingest_ms if assume.ingest_ms is not None else cpu_ms + assume.sqs_send_ms * calls
    record = esm_record_bytes(layout.message_bytes)
    cap = max(1, min(config.BATCH_SIZE, int(LAMBDA_SYNC_PAYLOAD_BYTES // record)))
    rate = load.rps * layout.messages_per_request
    poller_receive = min(POLLER_POLLS_PER_SECOND * SQS_RECEIVE_MAX, POLLER_BYTES_PER_SECOND / layout.message_bytes)
    window = config.MAX_BATCHING_WINDOW_SECONDS
    if config.PROVISIONED_POLLERS:
        pollers = min(max(math.ceil(rate / poller_receive), config.MIN_POLLERS), config.MAX_POLLERS)
        arrival = rate / pollers
        batch = min(cap, arrival * window) if window else min(cap, SQS_RECEIVE_MAX)
        batch = max(1.0, batch)
        fill_s = batch / arrival if arrival else 0.0
        per_receive = min(float(SQS_RECEIVE_MAX), max(1.0, arrival / POLLER_POLLS_PER_SECOND))
    else:
        pollers = 0
        batch = float(cap if window else min(cap, SQS_RECEIVE_MAX))
        fill_s = float(window)
        per_receive = float(SQS_RECEIVE_MAX)
    payloads = batch * layout.payloads_per_message
    duration_ms = assume.consumer_ms
    if duration_ms is None:
        memory, concurrency = config.CONSUMER_MEMORY_MB, config.UPLOAD_CONCURRENCY
        duration_ms = consumer_batch_ms(
            config.OBJECT_MODE, payloads, concurrency, memory, assume.put_ms, assume.batch_put_ms, assume.measured
        )
    return Flow(
        load=load,
        layout=layout,
        object_mode=config.OBJECT_MODE,
        ingest_ms=ingest_ms,
        ingest_cpu_ms=cpu_ms,
        send_calls_per_request=calls,
        send_billed_per_request=billed,
        record_bytes=record,
        batch_cap=cap,
        pollers=pollers,
        poller_receive=poller_receive,
        messages_per_receive=per_receive,
        batch=batch,
        fill_s=fill_s,
        duration_s=duration_ms / 1000,
        hold_failed_s=failed_hold_seconds(config),
        assume=assume,
    )
