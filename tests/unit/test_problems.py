"""RFC 9457 problem documents."""

from __future__ import annotations

import json

from pipeline.problems import Problem, bad_request, service_unavailable, too_large, unsupported_media_type


def test_problem_document_has_the_rfc_9457_members_and_the_pointer() -> None:
    document = json.loads(bad_request("wrong-type", "data[3] must be a JSON object", "/data/3").to_json())
    assert document == {
        "type": "urn:ingest-pipeline:problem:wrong-type",
        "title": "Bad Request",
        "status": 400,
        "detail": "data[3] must be a JSON object",
        "pointer": "/data/3",
    }


def test_statuses_and_titles_of_each_class() -> None:
    assert (too_large("x", "d").status, too_large("x", "d").title) == (413, "Content Too Large")
    assert (unsupported_media_type("d").status, unsupported_media_type("d").title) == (415, "Unsupported Media Type")
    unavailable = service_unavailable("enqueue-failed", "d", 7)
    assert (unavailable.status, unavailable.headers) == (503, {"Retry-After": "7"})


def test_problem_without_pointer_omits_it_and_is_a_hashable_exception() -> None:
    problem = Problem(400, "malformed-json", "Bad Request", "not JSON")
    assert "pointer" not in problem.body()
    assert isinstance(problem, Exception) and hash(problem) is not None
