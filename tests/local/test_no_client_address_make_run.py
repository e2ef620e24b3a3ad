"""No client address kept by make run (docs/PRIVACY.md): the local front plays API Gateway and puts each
connection's source address into the ingest's event, as API Gateway does; nothing after it may keep it. Requests
from distinct loopback addresses, with distinct X-Forwarded-For values and user agents, leave none of them in the
runner's console (its own lines and the Lambda environments' log lines) or in any stored object."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from tests.conftest import collection
from tests.local.conftest import BUCKET, start_local_pipeline, wait_for

# (source address on the loopback network, X-Forwarded-For, User-Agent): each value once, none the runner's own
CLIENTS = [
    ("127.0.0.23", "203.0.113.45, 198.51.100.7", "canary-agent/1.0 (device 7f3a)"),
    ("127.0.0.47", "2001:db8:feed::17", "canary-agent/2.0 (device 91c2)"),
    ("127.0.0.61", "192.0.2.99", "canary-agent/3.0 (device 0b5e)"),
]
CANARIES = [value for source, forwarded, agent in CLIENTS for value in (source, *forwarded.split(", "), agent)]


def post_from(port: int, client: tuple[str, str, str], path: str, body: bytes) -> int:
    """POST from ``client``'s own source address, as a device behind that address would."""
    source, forwarded, agent = client
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        headers = {
            "Content-Type": "application/json",
            "x-api-key": "local-dev-key",
            "X-Forwarded-For": forwarded,
            "User-Agent": agent,
        }
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_make_run_keeps_no_address_forwarded_chain_or_user_agent(tmp_path: Path) -> None:
    # Given make run with the handlers' own log lines on (LOG_LEVEL=DEBUG; make run shows WARNING and up by default)
    run = start_local_pipeline(tmp_path, LOG_LEVEL="DEBUG")
    try:
        # When each client posts an accepted request and a refused one from its own address
        statuses = [
            post_from(run.port, client, path, body)
            for client in CLIENTS
            for path, body in (("/v1/payloads", json.dumps(collection(3)).encode()), ("/v1/payloads", b"{"))
        ]
        assert statuses == [202, 400] * len(CLIENTS)
        s3 = run.client("s3")

        def stored() -> list[str]:
            listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
            return [s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read().decode() for item in listed]

        objects = wait_for(lambda: (found := stored()) and len(found) == 3 * len(CLIENTS) and found, 30, "9 payloads")
        assert run.stop() == 0
    finally:
        run.kill_leftovers()
    console = run.output()
    # Then every request reached the console's own line and the ingest's log lines, and every payload S3
    assert console.count("POST /v1/payloads 202") == 3
    assert console.count('"request accepted"') == 3 and console.count('"payload stored"') == 9
    # And no address, forwarded value or user agent is in the console or in any stored object
    assert [canary for canary in CANARIES if canary in console] == []
    assert [canary for canary in CANARIES if canary in "\n".join(objects)] == []
