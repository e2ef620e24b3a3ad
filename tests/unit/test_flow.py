"""tools.models.flow: how a load is packed into messages, batched by the event source mapping and stored,
checked by hand on small cases (the AWS figures are the module's cited ones)."""

from __future__ import annotations

import json

import pytest

from infra.config import PipelineConfig
from tools.models import flow
from tools.models.assumptions import MEASURED, Assumptions

ATTRIBUTE = flow.REQUEST_ID_ATTRIBUTE_BYTES  # "requestId" + "String" + a 36-character request id = 51
ASSUME = Assumptions(ingest_ms=10.0, consumer_ms=200.0)
# A 1,000 B payload in the ingest's own envelope, alone in its message: 1,245 B as SQS counts it
M = flow.one_message_bytes(1_000)


def load(rpm: float = 60_000, payloads: int = 10, payload_bytes: int = 1_000) -> flow.Load:
    return flow.Load(rpm, payloads, payload_bytes)


def test_a_message_is_sized_by_the_ingests_own_envelope_code() -> None:
    from pipeline.envelope import request_message_sizes

    assert ATTRIBUTE == 51 and M == 1_245
    assert [m.size for m in request_message_sizes([1_000], 0)] == [M] == [flow.Load(60, 1, 1_000).message_bytes]


def test_one_payload_per_message_is_todays_layout() -> None:
    layout = flow.message_layout(PipelineConfig(), load())
    assert (layout.messages_per_request, layout.message_bytes, layout.payloads_per_message) == (10, M, 1.0)


def test_packing_joins_a_requests_envelopes_up_to_the_target() -> None:
    # Given envelopes of M - 51 = 1,194 B, joined by newlines, one requestId attribute per message
    line = M - ATTRIBUTE
    packed = flow.message_layout(PipelineConfig(MESSAGE_TARGET_BYTES=65_536), load())
    # Then 10 fit one message: 10 envelopes + 9 newlines + 51
    assert (packed.messages_per_request, packed.message_bytes) == (1, 10 * line + 9 + ATTRIBUTE)
    # A 2,500 B target holds two envelopes (2 x 1,194 + 1 + 51 = 2,440): five messages of 2,440 B
    small = flow.message_layout(PipelineConfig(MESSAGE_TARGET_BYTES=2_500), load())
    assert (small.messages_per_request, small.message_bytes, small.payloads_per_message) == (5, 2_440, 2.0)
    # Eleven payloads: five full messages and one alone, whose id ("<requestId>-10") is a byte longer
    odd = flow.message_layout(PipelineConfig(MESSAGE_TARGET_BYTES=2_500), load(payloads=11))
    assert (odd.messages_per_request, odd.message_bytes) == (6, (5 * 2_440 + M + 1) / 6)


def test_packing_sizes_every_message_of_a_large_request() -> None:
    # 500 small payloads: the model sizes two messages' worth and extrapolates; the ingest builds them all
    from pipeline.envelope import request_message_sizes

    layout = flow.message_layout(PipelineConfig(MESSAGE_TARGET_BYTES=65_536), load(payloads=500, payload_bytes=100))
    sizes = request_message_sizes([100] * 500, 65_536)
    assert (layout.messages_per_request, layout.message_bytes) == (len(sizes), sum(m.size for m in sizes) / len(sizes))


def test_an_envelope_larger_than_the_target_travels_alone() -> None:
    layout = flow.message_layout(PipelineConfig(MESSAGE_TARGET_BYTES=2_000), load(payload_bytes=5_000))
    assert (layout.messages_per_request, layout.message_bytes) == (10, flow.one_message_bytes(5_000))


@pytest.mark.parametrize(
    ("messages", "message_bytes", "calls", "billed"),
    [
        (10, 1_269, 1, 1),  # 12.7 KB in one call: one 64 KB chunk
        (11, 1_269, 2, 2),  # 10 + 1
        (1, 100_000, 1, 2),  # one 100 KB message is two chunks
        (1, 65_536, 1, 1),  # exactly 64 KiB: one chunk...
        (1, 65_537, 1, 2),  # ...one byte more: two
        # 300 KiB messages: 3 per call (1 MiB), so calls of 3+3+3+1; each full call is 900 KiB = 15 chunks
        (10, 300 * 1024, 4, 3 * 15 + 5),
    ],
)
def test_sends_are_packed_ten_and_1_mib_a_call_then_billed_per_64k_chunk(
    messages: int, message_bytes: int, calls: int, billed: int
) -> None:
    assert flow.send_calls(messages, message_bytes) == (calls, billed)


def test_a_record_in_the_consumers_event_is_its_escaped_body_plus_the_records_fields() -> None:
    overhead, escaping = flow.record_overhead()
    # the fields around the body include a 1 KiB receipt handle, the attributes and the ARN
    assert flow.RECEIPT_HANDLE_CHARS < overhead < flow.RECEIPT_HANDLE_CHARS + 1_000
    # quotes and newlines of JSON envelopes are escaped once more inside the event's JSON
    assert 1.0 < escaping < 1.2
    assert flow.esm_record_bytes(1_000 + ATTRIBUTE) == pytest.approx(overhead + 1_000 * escaping)
    assert json.loads(json.dumps(flow._example_record("x")))["body"] == "x"


def test_batches_close_below_batch_size_when_6_mb_is_reached() -> None:
    # 100 KB messages take ~108 KB each in the event: 6,000,000 B hold 55 of them, not 10,000
    config = PipelineConfig(BATCH_SIZE=10_000, MAX_BATCHING_WINDOW_SECONDS=5, MAX_PAYLOAD_BYTES=200_000)
    shaped = flow.flow_of(config, load(payload_bytes=100_000), ASSUME)
    assert shaped.batch_cap == int(flow.LAMBDA_SYNC_PAYLOAD_BYTES // shaped.record_bytes) == 55


def test_standard_mode_takes_full_batches_for_the_whole_window() -> None:
    shaped = flow.flow_of(PipelineConfig(), load(), ASSUME)  # BATCH_SIZE 100, window 1 s
    assert (shaped.batch, shaped.fill_s, shaped.messages_per_receive) == (100, 1.0, 10.0)
    assert shaped.batches_per_second == pytest.approx(10_000 / 100)


def test_provisioned_pollers_share_the_load_and_batches_close_at_the_window() -> None:
    # 3,000 messages/s over (at least) 200 pollers: 15 messages/s each, so a 1 s window closes batches of 15,
    # and each of a poller's 10 receives a second returns 1.5 messages
    config = PipelineConfig(OBJECT_MODE="batch", PROVISIONED_POLLERS=True, MIN_POLLERS=200, MAX_POLLERS=300)
    shaped = flow.flow_of(config, load(rpm=18_000), ASSUME)
    assert (shaped.pollers, shaped.batch, shaped.fill_s) == (200, pytest.approx(15), pytest.approx(1.0))
    assert shaped.messages_per_receive == pytest.approx(1.5)
    assert shaped.batches_per_second == pytest.approx(200)


def test_a_pollers_receive_rate_is_bounded_by_1_mb_per_second() -> None:
    # 12,000 B messages (10 x 1,000 B payloads packed): 1 MB/s allows 83/s, under 10 receives x 10 messages
    config = PipelineConfig(
        OBJECT_MODE="batch", PROVISIONED_POLLERS=True, MAX_POLLERS=2_000, MESSAGE_TARGET_BYTES=65_536
    )
    shaped = flow.flow_of(config, load(rpm=600_000), ASSUME)
    assert shaped.layout.message_bytes == 12_000
    assert shaped.poller_receive == pytest.approx(1_000_000 / 12_000)
    assert shaped.pollers == 120  # 10,000 messages/s / 83.3


def test_in_flight_is_half_a_fill_plus_the_batch_plus_failures_times_their_retry_delay() -> None:
    # 6,000 messages/s, a 1 s window, 200 ms batches, 1 % failing once and held 10 s (RETRY_BASE_SECONDS)
    shaped = flow.flow_of(PipelineConfig(), flow.Load(36_000, 10, 1_000, 0.01), ASSUME)
    assert shaped.in_flight_ok == pytest.approx(6_000 * (0.5 + 0.2))
    assert shaped.in_flight == pytest.approx(6_000 * 0.7 + 6_000 * 0.01 * 10)


def test_packing_divides_messages_in_flight_by_the_payloads_per_message() -> None:
    one = flow.flow_of(PipelineConfig(OBJECT_MODE="batch"), load(), ASSUME)
    packed = flow.flow_of(PipelineConfig(OBJECT_MODE="batch", MESSAGE_TARGET_BYTES=65_536), load(), ASSUME)
    assert packed.messages_per_second == one.messages_per_second / 10
    assert packed.in_flight_ok == pytest.approx(one.in_flight_ok / 10)
    assert packed.payloads_per_batch == 10 * one.payloads_per_batch  # BATCH_SIZE counts messages


def test_a_batch_object_holds_a_batch_and_straddles_an_hour_with_the_fill_time() -> None:
    config = PipelineConfig(OBJECT_MODE="batch", BATCH_SIZE=200, MAX_BATCHING_WINDOW_SECONDS=36)
    # Standard mode takes full batches filling over the whole window: 36 s, so 1 % of batches span two hours
    shaped = flow.flow_of(config, load(rpm=600), ASSUME)
    assert shaped.objects_per_batch == pytest.approx(1.01)
    assert shaped.payloads_per_object == pytest.approx(200 / 1.01)
    payload_mode = flow.flow_of(PipelineConfig(), load(), ASSUME)
    assert payload_mode.objects_per_batch == 100  # one object per payload


def test_the_ingest_while_sqs_is_slow() -> None:
    # 1,000 rps; CPU (bench P1) x 1769/512 at 512 MB; one SendMessageBatch of 100 ms
    shaped = flow.flow_of(PipelineConfig(), load(), Assumptions(slow_sqs_send_ms=100))
    cpu = MEASURED.ingest_cpu_ms * 1769 / 512
    assert shaped.slow_ingest_concurrency == pytest.approx(1_000 * (cpu + 100) / 1000)
    assert shaped.ingest_ms == pytest.approx(cpu + 8)  # the assumed 8 ms otherwise


def test_device_auth_adds_its_cpu_to_the_ingest() -> None:
    off = flow.flow_of(PipelineConfig(), load())
    on = flow.flow_of(PipelineConfig(DEVICE_AUTH="on"), load())
    assert on.ingest_cpu_ms - off.ingest_cpu_ms == pytest.approx(0.0048 * 1769 / 512)  # bench D1, at 512 MB


def test_the_request_body_is_the_size_of_a_collection_the_ingest_parses() -> None:
    # Given a real collection of 3 compact-JSON payloads of 40 B each, as a client posts it
    from pipeline.collection import Limits, parse_collection

    payload = {"seq": 1, "note": "x" * 21}
    assert len(json.dumps(payload, separators=(",", ":"))) == 40
    body = json.loads(flow.COLLECTION_JSON) | {"data": [payload] * 3}
    text = json.dumps(body, separators=(",", ":"))
    # When the model sizes that load's body
    # Then it is the body's length, and the ingest reads that body as three payloads of 40 B
    assert flow.Load(60, 3, 40).body_bytes == len(text.encode())
    collection = parse_collection(text.encode(), Limits(10_000, 10, 1_000, 10))
    assert [len(p) for p in collection.payloads] == [40, 40, 40]


def test_the_flow_derives_every_per_second_and_per_hour_rate_once() -> None:
    # Given 60,000 requests/min of 10 payloads, one payload a message, 2 % failing once
    f = flow.flow_of(PipelineConfig(), flow.Load(60_000, 10, 1_000, failure_rate=0.02), ASSUME)
    # Then the calls each AWS API gets follow from the messages: 10,000 messages/s, deleted 10 a call
    assert f.messages_per_second == 10_000
    assert f.deletes_per_second == 1_000
    assert f.failed_messages_per_second == pytest.approx(200)
    assert f.sends_per_second == 1_000 * f.send_calls_per_request
    assert f.payloads_per_hour == 36_000_000 and f.puts_per_hour == f.puts_per_second * 3600
