"""A durable Python client for the ingest pipeline: payloads spooled to disk, delivered exactly once.

    from ingest_client import Client
    client = Client("https://.../v1/payloads", version="1.4.2", token="device-123",
                    api_key="...", spool_dir="/var/lib/myapp/ingest")
    client.send({"temp": 21.5})

See README.md for the guarantees and their limits.
"""

import logging

from ingest_client.client import Client, Stats, __version__
from ingest_client.errors import ClientClosedError, IngestClientError, SpoolFullError, SpoolLockedError
from ingest_client.limits import Limits

# A library logs; the application decides where it goes (nothing is printed).
logging.getLogger("ingest_client").addHandler(logging.NullHandler())

__all__ = [
    "Client",
    "ClientClosedError",
    "IngestClientError",
    "Limits",
    "SpoolFullError",
    "SpoolLockedError",
    "Stats",
    "__version__",
]
