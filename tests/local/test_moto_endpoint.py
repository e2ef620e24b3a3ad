"""The embedded endpoint's two changes to moto (a cheaper retention check and clock) keep moto's rules."""

from __future__ import annotations

import time

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import Message, SQSBackend, sqs_backends

from local_pipeline.moto_endpoint import _cheap_retention_check
from tests.conftest import Pipeline


def test_the_cheap_retention_check_agrees_with_motos(pipeline: Pipeline) -> None:
    # Given a queue keeping messages 60 s, a message sent just now and one sent 61 s ago
    boto3.client("sqs").create_queue(QueueName="retention-60", Attributes={"MessageRetentionPeriod": "60"})
    fresh, expired = Message("fresh", "body"), Message("expired", "body")
    now_ms = int(time.time() * 1000)
    fresh.sent_timestamp, expired.sent_timestamp = now_ms, now_ms - 61_000
    backend = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    original = SQSBackend.is_message_valid_based_on_retention_period
    try:
        # When moto's check and the cheap one judge both
        expected = [original(backend, "retention-60", m) for m in (fresh, expired)]
        _cheap_retention_check()
        actual = [backend.is_message_valid_based_on_retention_period("retention-60", m) for m in (fresh, expired)]
    finally:
        SQSBackend.is_message_valid_based_on_retention_period = original  # type: ignore[method-assign]
    # Then they agree: keep the fresh one, drop the expired one
    assert expected == actual == [True, False]


def test_the_cheap_sqs_clock_reads_the_same_time() -> None:
    from moto.core import utils as moto_utils
    from moto.sqs import models as sqs_models

    from local_pipeline.moto_endpoint import _cheap_sqs_clock

    saved = sqs_models.unix_time, sqs_models.unix_time_millis
    try:
        _cheap_sqs_clock()
        # moto's own clock and the cheap one agree on "now" (to the scheduling jitter of two reads)
        assert abs(sqs_models.unix_time() - moto_utils.unix_time()) < 0.5
        assert abs(sqs_models.unix_time_millis() - moto_utils.unix_time_millis()) < 500
        # and a given datetime still goes through moto's conversion
        moment = moto_utils.utcfromtimestamp(1_700_000_000)
        assert sqs_models.unix_time(moment) == moto_utils.unix_time(moment) == 1_700_000_000
    finally:
        sqs_models.unix_time, sqs_models.unix_time_millis = saved
