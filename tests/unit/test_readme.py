"""The knob reference (docs/CONFIGURATION.md, linked from the README) must name every knob the config has."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from infra.config import PipelineConfig

README = Path(__file__).resolve().parents[2] / "README.md"
CONFIGURATION = README.parent / "docs" / "CONFIGURATION.md"


def test_every_config_knob_is_documented_in_the_readme() -> None:
    # Given the knob reference the README links to
    assert "(docs/CONFIGURATION.md)" in README.read_text()
    text = CONFIGURATION.read_text()
    # Then it names every knob of the config
    assert [knob.name for knob in fields(PipelineConfig) if f"`{knob.name}`" not in text] == []


def test_the_readme_test_command_is_what_ci_runs() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in README.read_text() and "make test" in ci


def test_the_readme_is_a_front_door_with_every_docs_page_in_its_contents() -> None:
    # Given the README (issue 29: a front door, not a manual) and the pages under docs/
    text = README.read_text()
    pages = sorted(page.name for page in (README.parent / "docs").glob("*.md"))
    # Then it stays at most 300 lines, and each page is linked from it, so a new page is found from the first screen
    assert len(text.splitlines()) <= 300
    assert [page for page in pages if f"(docs/{page})" not in text] == []
    # And the contents are by role
    for role in ("**Endpoint teams**", "**Operators**", "**Analysts**"):
        assert role in text[text.index("## Documentation by role") :]
