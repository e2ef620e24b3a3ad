"""The SDK's exceptions. An invalid payload is a plain ValueError (the caller's mistake, as with json)."""

from __future__ import annotations


class IngestClientError(Exception):
    """Base class of the errors this SDK raises, besides ValueError for invalid payloads."""


class SpoolLockedError(IngestClientError):
    """Another process (or another Client in this one) already owns this spool_dir."""


class SpoolFullError(IngestClientError):
    """The spool holds max_spool_bytes of unsent data and did not drain within full_timeout.

    Nothing was spooled for the send() that raised it: the payload is still the caller's."""


class ClientClosedError(IngestClientError):
    """send() after close()."""
