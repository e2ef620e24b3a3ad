"""boto3 clients, created on first use (never at import) so tests can start moto first."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def sqs_client() -> Any:
    import boto3

    return boto3.client("sqs")


@lru_cache(maxsize=4)
def s3_client(max_pool_connections: int) -> Any:
    """An S3 client whose connection pool matches the upload thread pool (else urllib3 discards)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(max_pool_connections=max_pool_connections, retries={"mode": "standard"}))
