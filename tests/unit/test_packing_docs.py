"""The packing figures the docs quote come from the ingest's own code (pipeline.envelope)."""

from __future__ import annotations

from pathlib import Path

from infra.config import LAMBDA_SYNC_PAYLOAD_BYTES
from pipeline.envelope import request_message_sizes

ROOT = Path(__file__).resolve().parents[2]


def text_of(relative: str) -> str:
    """A doc's text with every run of whitespace (line breaks, list indents) as one space."""
    return " ".join((ROOT / relative).read_text().split())


SEED_REQUEST = [1024] * 10  # the seed's request: 10 payloads of 1 KiB
TARGET = 65536


def test_the_seed_request_figures_in_readme_and_object_modes_are_the_ingests() -> None:
    [packed] = request_message_sizes(SEED_REQUEST, TARGET)
    single = request_message_sizes(SEED_REQUEST, 0)
    assert packed.payloads == 10 and len(single) == 10
    assert len({message.size for message in single}) == 1
    seed_figures = f"one message of {packed.size:,} bytes instead of ten of {single[0].size:,}"
    assert seed_figures in text_of("docs/HOW_IT_WORKS.md")
    assert f"(10 × 1 KiB, {packed.size:,} bytes packed)" in text_of("docs/OBJECT_MODES.md")


def test_the_messages_of_64_kib_that_fit_one_invocation_event() -> None:
    assert f"at most {LAMBDA_SYNC_PAYLOAD_BYTES // TARGET} messages fit 6 MB" in text_of("docs/OBJECT_MODES.md")
