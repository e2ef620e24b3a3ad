"""RFC 9457 problem details: every error the ingest API returns is one of these."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pipeline.contract import problem_document


@dataclass(eq=False)  # exceptions must stay hashable (traceback machinery, logging)
class Problem(Exception):
    """A request we refuse. ``slug`` is the stable, low-cardinality reason (also a metric dimension).

    ``pointer`` is a JSON Pointer (RFC 6901) to the offending field or payload, e.g. ``/data/3``.
    """

    status: int
    slug: str
    title: str
    detail: str
    pointer: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.slug}: {self.detail}"

    def body(self, instance: str | None = None) -> dict[str, object]:
        extra: dict[str, object] = {}
        if self.pointer is not None:
            extra["pointer"] = self.pointer
        if instance:
            extra["instance"] = instance
        return problem_document(self.status, self.slug, self.title, self.detail, **extra)

    def to_json(self, instance: str | None = None) -> str:
        return json.dumps(self.body(instance), separators=(",", ":"))


def bad_request(slug: str, detail: str, pointer: str | None = None) -> Problem:
    return Problem(400, slug, "Bad Request", detail, pointer)


def too_large(slug: str, detail: str, pointer: str | None = None) -> Problem:
    return Problem(413, slug, "Content Too Large", detail, pointer)


def unsupported_media_type(detail: str, slug: str = "unsupported-media-type") -> Problem:
    return Problem(415, slug, "Unsupported Media Type", detail)


def service_unavailable(slug: str, detail: str, retry_after_seconds: int) -> Problem:
    return Problem(503, slug, "Service Unavailable", detail, headers={"Retry-After": str(retry_after_seconds)})
