"""MAX_QUEUE: while the queue's backlog is above the bound, the ingest answers 503 + Retry-After and
enqueues nothing; the backlog is read at most once per BACKLOG_CHECK_SECONDS per container."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from infra.config import ConfigError, PipelineConfig
from pipeline import aws_clients, backpressure
from pipeline.backpressure import BacklogGauge
from tests.conftest import Pipeline, collection
from tests.faults import CallCounter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def config() -> PipelineConfig:
    return PipelineConfig(MAX_QUEUE=5, BACKLOG_CHECK_SECONDS=5)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """The container's gauge, on a clock the test moves."""
    fake = FakeClock()
    gauges: dict[tuple[str, int], BacklogGauge] = {}
    monkeypatch.setattr(
        backpressure,
        "backlog_gauge",
        lambda url, seconds: gauges.setdefault((url, seconds), BacklogGauge(url, seconds, clock=fake)),
    )
    yield fake


@pytest.fixture(autouse=True)
def fresh_gauges() -> Iterator[None]:
    backpressure.backlog_gauge.cache_clear()
    yield
    backpressure.backlog_gauge.cache_clear()


def attribute_reads() -> CallCounter:
    return CallCounter(aws_clients.sqs_client(), "sqs", "GetQueueAttributes")


def test_a_backlog_above_max_queue_gets_503_with_retry_after_and_enqueues_nothing(
    pipeline: Pipeline, clock: FakeClock
) -> None:
    # Given 6 payloads waiting on the queue (MAX_QUEUE=5), the first read when it was still empty
    assert pipeline.post(collection(6)).status == 202
    # When the container's reading is refreshed and another valid request arrives
    clock.advance(5)
    response = pipeline.post(collection(2))
    # Then the client is told to come back later, with the reason, and nothing was added
    assert response.status == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "5"  # the reading cannot change sooner
    assert response.body["type"] == "urn:ingest-pipeline:problem:backlog-full"
    assert (response.body["title"], response.body["status"]) == ("Service Unavailable", 503)
    assert "MAX_QUEUE is 5" in response.body["detail"]
    assert pipeline.queue_depth() == 6


def test_a_backlog_at_max_queue_is_still_accepted(pipeline: Pipeline, clock: FakeClock) -> None:
    # Given exactly MAX_QUEUE payloads waiting
    assert pipeline.post(collection(5)).status == 202
    clock.advance(5)
    # When another request arrives, Then it is accepted (only a backlog *above* the bound refuses)
    assert pipeline.post(collection(1)).status == 202
    assert pipeline.queue_depth() == 6


def test_the_backlog_is_read_at_most_once_per_check_interval(pipeline: Pipeline, clock: FakeClock) -> None:
    reads = attribute_reads()
    # When 20 requests arrive within one interval
    for _ in range(20):
        assert pipeline.post(collection(1)).status in (202, 503)
        clock.advance(0.2)
    # Then the queue was asked once, and once more only after the interval passed
    assert reads.calls == 1
    clock.advance(1)
    pipeline.post(collection(1))
    assert reads.calls == 2


def test_in_flight_messages_are_with_workers_and_do_not_count(pipeline: Pipeline, clock: FakeClock) -> None:
    # Given 8 payloads that workers have received but not finished
    assert pipeline.post(collection(8)).status == 202
    in_flight = pipeline.receive()
    assert len(in_flight) == 8
    clock.advance(5)
    # When a request arrives, Then it is accepted: nothing is waiting for a worker
    assert pipeline.post(collection(1)).status == 202


def test_the_ingest_accepts_again_once_workers_drain_the_backlog(pipeline: Pipeline, clock: FakeClock) -> None:
    assert pipeline.post(collection(6)).status == 202
    clock.advance(5)
    assert pipeline.post(collection(1)).status == 503
    # When the worker pool catches up and the reading is refreshed
    pipeline.consume(pipeline.receive())
    clock.advance(5)
    # Then requests are accepted again
    response = pipeline.post(collection(1))
    assert response.status == 202
    assert len(pipeline.objects()) == 6


def test_an_unreadable_backlog_does_not_refuse_requests(pipeline: Pipeline, clock: FakeClock) -> None:
    # Given GetQueueAttributes fails (a metadata hiccup) while the queue is over the bound
    assert pipeline.post(collection(6)).status == 202

    def deny(**_: object) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "GetQueueAttributes")

    aws_clients.sqs_client().meta.events.register("before-call.sqs.GetQueueAttributes", deny)
    clock.advance(5)
    # When a request arrives, Then the gate fails open: the payload is accepted (SQS itself is fine)
    assert pipeline.post(collection(1)).status == 202
    assert pipeline.queue_depth() == 7


class TestOffByDefault:
    @pytest.fixture
    def config(self) -> PipelineConfig:
        return PipelineConfig()

    def test_max_queue_is_off_by_default_and_costs_no_call(self, pipeline: Pipeline) -> None:
        # Given the default configuration and a long backlog
        assert pipeline.config.MAX_QUEUE == 0
        reads = attribute_reads()
        assert pipeline.post(collection(30)).status == 202
        # When more work arrives, Then it is accepted without ever reading the backlog
        assert pipeline.post(collection(3)).status == 202
        assert reads.calls == 0
        assert pipeline.queue_depth() == 33


def test_max_queue_is_rendered_for_the_ingest_and_validated() -> None:
    environment = PipelineConfig(MAX_QUEUE=1000, BACKLOG_CHECK_SECONDS=10).ingest_environment("https://queue")
    assert (environment["MAX_QUEUE"], environment["BACKLOG_CHECK_SECONDS"]) == ("1000", "10")
    assert PipelineConfig().ingest_environment("https://queue")["MAX_QUEUE"] == "0"
    with pytest.raises(ConfigError, match="MAX_QUEUE"):
        PipelineConfig(MAX_QUEUE=-1)
    with pytest.raises(ConfigError, match="BACKLOG_CHECK_SECONDS"):
        PipelineConfig(BACKLOG_CHECK_SECONDS=0)
