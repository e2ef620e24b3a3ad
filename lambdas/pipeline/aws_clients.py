"""boto3 clients, created on first use (never at import) so tests can start moto first."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

# botocore's modules are imported with the handler (Lambda's INIT), not by the first request's client: the same
# modules and Python calls either way (cProfile counts them equal), but a cold start imported this way touches
# ~4,500 fewer memory pages (minor page faults, the same in every run: ~9,100 against ~13,600 for import + first
# request) and used less CPU in bench P2's harness (docs/PERFORMANCE.md, 2026-12-08; why the pages differ was not
# established). No client is created here: moto still starts first in the tests.
import botocore.session

# boto3's default session is not thread-safe while it creates clients, and the first S3 client
# may be requested by several upload threads at once.
_creating = threading.Lock()


@lru_cache(maxsize=1)
def _botocore_session() -> Any:
    return botocore.session.get_session()


@lru_cache(maxsize=1)
def sqs_client() -> Any:
    # Straight from botocore: boto3.client() only delegates to this, and importing boto3 (resources,
    # S3 transfer helpers the ingest never uses) adds ~15 ms to its cold start (P2, docs/PERFORMANCE.md).
    with _creating:
        return _botocore_session().create_client("sqs")


# The keyring client's bounds (DEVICE_AUTH=on). botocore's defaults are a 60 s connect and a 60 s read timeout
# (botocore "Config Reference", https://botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html):
# a slow Secrets Manager endpoint would hold an ingest invocation until the function's timeout and drain its
# concurrency. Standard retry mode with 2 attempts in all retries one throttle or transient error with jittered
# backoff (at most 1 s before the first retry) and gives up at once when its client-side retry quota is spent (boto3
# guide "Retries", https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html). The key is
# ``total_max_attempts``: botocore's ``max_attempts`` counts retries after the first request, not attempts (the
# Config Reference above: "setting this value to 2 will result in the request being retried at most two times
# after the initial request"). So one keyring read
# holds its request at most 2 x (1 + 2) + 1 = 7 s, under INGEST_TIMEOUT_SECONDS' default 10; pipeline/device_auth.py
# spaces the reads themselves (at most one a second per container, backing off while they fail).
SECRETS_CONNECT_TIMEOUT_SECONDS = 1
SECRETS_READ_TIMEOUT_SECONDS = 2
SECRETS_MAX_ATTEMPTS = 2
SECRETS_WORST_CASE_SECONDS = SECRETS_MAX_ATTEMPTS * (SECRETS_CONNECT_TIMEOUT_SECONDS + SECRETS_READ_TIMEOUT_SECONDS) + 1


@lru_cache(maxsize=1)
def secrets_client() -> Any:
    """Secrets Manager, for the device keyring (DEVICE_AUTH=on), with short timeouts and bounded retries (above).
    From the SQS client's botocore session, whose loader already holds the endpoint and partition data: ~27 ms CPU
    of a cold start instead of ~70 ms for a new boto3 session and client (measured side by side here)."""
    from botocore.config import Config

    config = Config(
        connect_timeout=SECRETS_CONNECT_TIMEOUT_SECONDS,
        read_timeout=SECRETS_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "total_max_attempts": SECRETS_MAX_ATTEMPTS},
    )
    with _creating:
        return _botocore_session().create_client("secretsmanager", config=config)


# Attempts per PutObject (the first one included). botocore's standard mode retries 503 SlowDown and
# other 5xx with full-jitter exponential backoff (boto3 guide "Retries"); at a 30 % SlowDown rate, 5
# attempts leave 0.3^5 = 0.24 % of records to the queue's retry. The function's time budget stops
# retries earlier when needed (pipeline/time_budget.py). Standard mode's retry quota (a token bucket
# per client) also stops retrying during a sustained outage: those records go back to the queue.
S3_MAX_ATTEMPTS = 5


@lru_cache(maxsize=4)
def s3_client(max_pool_connections: int) -> Any:
    """An S3 client whose connection pool matches the upload thread pool (else urllib3 discards),
    retrying in-process within the invocation's time budget."""
    import boto3
    from botocore.config import Config

    from pipeline.time_budget import stop_retries_near_deadline

    with _creating:
        client = boto3.client(
            "s3",
            config=Config(
                max_pool_connections=max_pool_connections, retries={"mode": "standard", "max_attempts": S3_MAX_ATTEMPTS}
            ),
        )
    stop_retries_near_deadline(client)
    return client
