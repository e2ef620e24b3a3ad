"""`MESSAGE_TARGET_BYTES=65536 make run`: a request's payloads travel as one SQS message, each is
stored exactly once (also after a failed first delivery), and the shutdown summary counts payloads,
not messages."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import requests

from tests.local.conftest import start_local_pipeline, wait_for

KEY = {"x-api-key": "local-dev-key"}


def kib_payloads(n: int) -> dict[str, Any]:
    """n payloads of exactly 1 KiB of compact JSON each (the seed's request)."""
    data = []
    for index in range(n):
        payload: dict[str, Any] = {"seq": index, "pad": ""}
        payload["pad"] = "x" * (1024 - len(json.dumps(payload, separators=(",", ":"))))
        data.append(payload)
    return {"version": "1.4.2", "token": "device-token-123", "data": data}


def test_ten_1_kib_payloads_are_one_message_and_each_is_stored_once(tmp_path: Path) -> None:
    # Given `MESSAGE_TARGET_BYTES=65536 make run`, whose consumer fails the first delivery of any
    # payload containing "flaky-record" (a test-only hook; it comes back after 3 s)
    run = start_local_pipeline(
        tmp_path,
        MESSAGE_TARGET_BYTES="65536",
        MAX_WORKERS="2",
        LOCAL_VISIBILITY_TIMEOUT_SECONDS="3",
        LOCAL_FAIL_FIRST_ATTEMPTS="1",
        LOCAL_FAIL_MATCH="flaky-record",
    )
    try:
        # When a client posts 10 payloads of 1 KiB, and another request where payload 2 of 5 is flaky
        sent = kib_payloads(10)
        flaky = kib_payloads(5)
        flaky["data"][2]["seq"] = "flaky-record"
        expected: dict[str, Any] = {}
        for request in (sent, flaky):
            response = requests.post(f"{run.url}/v1/payloads", json=request, headers=KEY, timeout=30)
            assert response.status_code == 202, response.text
            request_id = response.json()["requestId"]
            expected.update({f"{request_id}-{i}": payload for i, payload in enumerate(request["data"])})
        # Then every payload is stored exactly once, unchanged, at its own key
        stored = wait_for(
            lambda: (objects := run.objects()) and {o["id"] for o in objects.values()} >= expected.keys() and objects,
            30,
            "the 15 payloads in S3",
        )
        assert sorted(o["id"] for o in stored.values()) == sorted(expected)
        for key, envelope in stored.items():
            assert key.endswith(f"/{envelope['id']}.json") and envelope["payload"] == expected[envelope["id"]]
        # And each request travelled as one SQS message: the worker pool's console shows two records
        # stored, and one failed delivery (the flaky request's message, redelivered whole)
        exit_code = run.stop(signal.SIGTERM)
        output = run.output()
        assert exit_code == 0, output
        batches = [(int(r), int(f)) for r, f in re.findall(r" batch worker=\d+ records=(\d+) failures=(\d+)", output)]
        assert sum(records - failures for records, failures in batches) == 2, output
        assert sum(failures for _, failures in batches) == 1, output
        # And the summary counts payloads, not messages
        assert "payloads accepted 15" in output and "payloads stored   15" in output, output
        assert "still queued" not in output, output
    finally:
        run.kill_leftovers()
