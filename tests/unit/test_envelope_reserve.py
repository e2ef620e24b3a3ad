"""pipeline/contract.py's envelope reserve is the real worst case of build_messages, to the byte."""

from __future__ import annotations

import pytest

from infra import config
from pipeline import contract
from pipeline.collection import PayloadCollection
from pipeline.envelope import build_messages, is_safe_id
from pipeline.problems import Problem

WORST_REQUEST_ID = "r" * contract.MAX_REQUEST_ID_CHARS
WORST_DEVICE_ID = "d" * contract.MAX_DEVICE_ID_CHARS  # the longest id a device key can name
LAST_INDEX = contract.MAX_PAYLOADS_CEILING - 1


def worst_collection(last_payload_bytes: int) -> PayloadCollection:
    """The longest version and token, each character the costliest to escape, and the last payload at the
    highest index with the longest request id."""
    emoji = "\U0001f600"  # 12 bytes as a JSON ASCII escape: \ud83d\ude00
    last = '{"v":"' + "x" * (last_payload_bytes - 8) + '"}'
    return PayloadCollection(
        emoji * contract.MAX_VERSION_CHARS, emoji * contract.MAX_TOKEN_CHARS, ["{}"] * LAST_INDEX + [last]
    )


def test_the_reserve_assumes_the_longest_id_and_index_the_pipeline_can_produce() -> None:
    assert is_safe_id(WORST_REQUEST_ID) and not is_safe_id(WORST_REQUEST_ID + "r")
    config.PipelineConfig(MAX_PAYLOADS=LAST_INDEX + 1)
    with pytest.raises(config.ConfigError, match="MAX_PAYLOADS"):
        config.PipelineConfig(MAX_PAYLOADS=LAST_INDEX + 2)


def test_the_largest_payload_the_config_accepts_fills_the_worst_envelope_to_exactly_1_mib() -> None:
    # Given the largest MAX_PAYLOAD_BYTES the config accepts, and one past it
    largest = contract.MAX_PAYLOAD_BYTES_CEILING
    config.PipelineConfig(MAX_PAYLOAD_BYTES=largest)
    with pytest.raises(config.ConfigError, match="MAX_PAYLOAD_BYTES"):
        config.PipelineConfig(MAX_PAYLOAD_BYTES=largest + 1)

    # When the worst envelope is built around a payload of that size
    messages = build_messages(
        worst_collection(largest),
        WORST_REQUEST_ID,
        1_764_125_289_123,
        device_id=WORST_DEVICE_ID,
        first_attempt_ms=1_764_125_280_000,
    )

    # Then it is exactly the SQS limit, counted as SQS counts it (body plus the attribute)
    assert messages[-1].size == contract.SQS_MAX_MESSAGE_BYTES == 1_048_576
    # and one byte more is refused before anything is sent, naming the payload
    with pytest.raises(Problem) as refused:
        build_messages(
            worst_collection(largest + 1),
            WORST_REQUEST_ID,
            1_764_125_289_123,
            device_id=WORST_DEVICE_ID,
            first_attempt_ms=1_764_125_280_000,
        )
    assert (refused.value.status, refused.value.slug, refused.value.pointer) == (
        413,
        "message-too-large",
        f"/data/{LAST_INDEX}",
    )


def test_the_body_ceiling_leaves_room_for_base64_and_the_event_under_lambdas_6_mb() -> None:
    # base64 of the largest body, plus the documented event allowance, fits Lambda's synchronous limit
    base64_chars = 4 * -(-config.MAX_BODY_BYTES_CEILING // 3)
    assert base64_chars + config.PROXY_EVENT_ALLOWANCE_BYTES <= config.LAMBDA_SYNC_PAYLOAD_BYTES
    assert (
        4 * -(-(config.MAX_BODY_BYTES_CEILING + 3) // 3) + config.PROXY_EVENT_ALLOWANCE_BYTES
        > config.LAMBDA_SYNC_PAYLOAD_BYTES
    )  # and it is the largest such body (to base64's 3-byte step)
    config.PipelineConfig(MAX_BODY_BYTES=config.MAX_BODY_BYTES_CEILING)
    with pytest.raises(config.ConfigError, match="MAX_BODY_BYTES"):
        config.PipelineConfig(MAX_BODY_BYTES=config.MAX_BODY_BYTES_CEILING + 1)
