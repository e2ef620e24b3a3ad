"""The retry delay of a failed record: bounded, growing with its receive count, jittered."""

from __future__ import annotations

import pytest

from pipeline.redelivery import FailedRecord, retry_delay_seconds


@pytest.mark.parametrize(
    ("receive_count", "low", "high"),
    [(1, 5, 10), (2, 10, 20), (3, 20, 40), (4, 40, 80), (5, 80, 160), (6, 90, 180), (40, 90, 180)],
)
def test_the_delay_doubles_with_each_receive_up_to_the_cap(receive_count: int, low: int, high: int) -> None:
    # Given RETRY_BASE_SECONDS=10 and RETRY_MAX_SECONDS=180, When a record fails on its n-th receive
    delays = {retry_delay_seconds(receive_count, 10, 180) for _ in range(300)}
    # Then its delay lies between half and all of min(180, 10 x 2^(n-1)), and is jittered
    assert low <= min(delays) and max(delays) <= high
    assert len(delays) > 1


def test_the_delay_is_never_zero_and_never_above_the_cap() -> None:
    assert {retry_delay_seconds(1, 1, 1) for _ in range(50)} == {1}
    assert max(retry_delay_seconds(n, 7, 30) for n in range(1, 60) for _ in range(20)) <= 30


def test_a_record_without_a_readable_receive_count_is_treated_as_its_first_receive() -> None:
    record = {"messageId": "m", "receiptHandle": "r", "attributes": {"ApproximateReceiveCount": "x"}}
    assert FailedRecord.from_event_record(record) == FailedRecord("m", "r", 1)
    record["attributes"]["ApproximateReceiveCount"] = "4"
    assert FailedRecord.from_event_record(record).receive_count == 4
