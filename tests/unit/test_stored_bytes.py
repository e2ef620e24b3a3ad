"""The storage figures the cost model prices with are what bench S1/S2 measure on the consumer's real objects
(a test that fails when the bench and tools/models/assumptions.py drift apart)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from tools.models.assumptions import MEASURED
from tools.models.sample_payloads import telemetry_requests

# In a child process: the bench sets Lambda's environment and imports the consumer, as a Lambda would.
_BENCH = "import json; from bench import stored_bytes; print(json.dumps(stored_bytes.run(requests=1000)))"


def test_the_models_storage_figures_are_the_benchs() -> None:
    # Given half the bench's sample (five batch objects of 2,000 payloads): the ratios settle well before that
    done = subprocess.run([sys.executable, "-c", _BENCH], capture_output=True, text=True, check=True, timeout=300)
    s1, s2 = json.loads(done.stdout.strip().splitlines()[-1])
    # Then the model's figures are the measured ones
    assert MEASURED.stored_compression == pytest.approx(s1["value"], rel=0.03)
    assert MEASURED.compacted_compression == pytest.approx(s2["ratio_to_envelope"], rel=0.03)
    for column in ("id", "token"):
        assert MEASURED.compacted_column_bytes[column] == pytest.approx(s2["column_bytes_per_payload"][column], rel=0.1)
    # and the objects measured are the envelopes the ingest writes, one line per payload
    assert s1["payloads"] == 10_000 and s1["objects"] == 5
    assert s1["envelope_keys"] == ["id", "requestId", "receivedAt", "version", "token", "payload"]


def test_the_sample_payloads_are_telemetry_not_padding() -> None:
    [(token, payloads)] = list(telemetry_requests(1, 10, 1024))
    assert len(token) == 32 and all(900 < len(payload) <= 1024 for payload in payloads)
    text = "\n".join(payloads).encode()
    # readings compress several-fold, not the 50-fold of "x" padding
    assert 3 < len(text) / len(gzip.compress(text)) < 10
    assert len({payload[:80] for payload in payloads}) == 10  # each reading differs
