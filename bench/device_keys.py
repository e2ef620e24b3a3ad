"""D1: CPU the ingest spends checking one device key (DEVICE_AUTH=on), the keyring already cached.

pipeline.device_auth.authenticate on a valid `Authorization: Bearer <key>`: the header's parse, the HMAC
and its constant-time comparison, the revocation lookup. The keyring is served from the cache (what all but
one request per DEVICE_REVOCATION_TTL_SECONDS see); the GetSecretValue itself is priced per TTL by the cost
model. Input to tools.models (it adds to P1's per-request CPU), not a goal.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import figure, median

CALLS = 20_000


def run(rounds: int = 5) -> list[dict[str, Any]]:
    from pipeline.device_auth import Keyring, SecretKeyring, authenticate, new_keyring_document

    document = new_keyring_document("k" * 44)
    header = ["Bearer " + Keyring.from_document(document).issue("device-000123")]
    keyring = SecretKeyring("bench-keyring", 60, fetch=lambda name: document)
    authenticate(header, keyring, 1)  # the first call reads the keyring; the rest use the cache
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(CALLS):
            authenticate(header, keyring, 1)
        samples.append((time.process_time() - start) / CALLS)
    cpu_us = median(samples) * 1e6
    return [
        figure(
            "D1",
            "ingest: CPU to check one device key (cached keyring), DEVICE_AUTH=on",
            cpu_us,
            "µs CPU/request (one core)",
            "input to tools.models.cost",
            True,
        )
    ]
