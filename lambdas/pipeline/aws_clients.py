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


@lru_cache(maxsize=1)
def secrets_client() -> Any:
    """Secrets Manager, for the device keyring (DEVICE_AUTH=on). From the SQS client's botocore session, whose
    loader already holds the endpoint and partition data: ~27 ms CPU of a cold start instead of ~70 ms for the
    boto3 session and client Powertools' SecretsProvider makes by default (measured side by side here)."""
    with _creating:
        return _botocore_session().create_client("secretsmanager")


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
