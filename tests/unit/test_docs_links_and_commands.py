"""README.md and docs/ as a newcomer uses them (issue 29, item 1): every relative link and anchor leads somewhere,
every `make` target they show exists, and every `python -m` module they show imports, spelled so that it runs from
a fresh clone once `make run` has set up .venv (`.venv/bin/python -m ...`, not a bare `python` without the venv)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Modules a doc runs with the interpreter of the machine it names, not this repository's .venv: the SDK on a device,
# after `pip install ./client` (client/README.md).
DEVICE_SIDE = {"ingest_client"}

FENCE = re.compile(r"^(`{3,}|~{3,})([^\n`]*)\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
MAKE = re.compile(r"(?:^|[\s;|&(]|\$\()make((?:\s+-[a-zA-Z]+)*)\s+([a-z][a-z0-9_-]*)")
PYTHON_M = re.compile(r"(\S*?)python3?\s+-m\s+([A-Za-z_][\w.]*)")
INDENTED_BLOCK = re.compile(r"(?<=\n\n)(?:    [^ \n-*][^\n]*\n)+")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}


def without_code(text: str) -> str:
    """The prose of a markdown file: fenced blocks and inline code spans blanked out (links there are not links)."""
    text = FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)
    return INLINE_CODE.sub("", text)


def github_anchor(heading: str) -> str:
    """GitHub's heading id: markup dropped, lower-case, punctuation dropped, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its text
    text = text.strip().lower()
    text = "".join(char for char in text if char.isalnum() or char in " -_")
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """Every anchor GitHub gives the headings of ``doc`` (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in HEADING.finditer(FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), doc.read_text())):
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def broken_links(doc: Path) -> list[str]:
    broken: list[str] = []
    for match in LINK.finditer(without_code(doc.read_text())):
        target = match.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not this repository's
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.name})")
    return broken


def shell_commands(doc: Path) -> list[str]:
    """The commands ``doc`` shows: each line of its bash/sh/console blocks (console: only `$ ` lines) and of its
    indented code blocks, and each inline code span that runs make or python -m."""
    text = doc.read_text()
    commands: list[str] = []
    for fence in FENCE.finditer(text):
        language = fence.group(2).strip().split(" ")[0].lower()
        if language not in SHELL_LANGUAGES:
            continue
        for line in fence.group(3).splitlines():
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if line.lstrip().startswith("#"):
                continue
            commands.append(line.split(" # ")[0].strip())
    prose = FENCE.sub("", text)
    for block in INDENTED_BLOCK.finditer(prose):  # markdown's other code block: lines indented 4 spaces after a blank
        commands += [line.split(" # ")[0].strip() for line in block.group(0).splitlines() if line.strip()]
    for span in INLINE_CODE.finditer(prose):
        code = span.group(2)
        if MAKE.search(code) or PYTHON_M.search(code):
            commands.append(code)
    return commands


def imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, flags=re.MULTILINE))


def test_the_patterns_see_what_the_docs_hold() -> None:
    # Given a link, an anchor, a fenced block and inline commands as the docs write them
    sample = REPO / "docs" / "CONFIGURATION.md"
    commands = shell_commands(REPO / "README.md")
    # Then the extraction finds them (so an empty result below cannot pass for "nothing broken")
    assert github_anchor("Stale keyring (keyring unavailable)") == "stale-keyring-keyring-unavailable"
    assert github_anchor("Smoke test (`make smoke-aws`)") == "smoke-test-make-smoke-aws"
    assert github_anchor("The HTTP API front door (`API_KIND=http`)") == "the-http-api-front-door-api_kindhttp"
    assert "configuration" in anchors(sample)
    assert any(MAKE.search(command) for command in commands) and any("make smoke-aws" in c for c in commands)
    assert "PROFILE=scale make synth" in shell_commands(sample)  # an indented block
    assert imports("tools.models.cost") and not imports("tools.models.no_such_model")
    assert "devices" not in make_targets() and {"run", "test", "smoke-aws", "query"} <= make_targets()
    assert any(PYTHON_M.search(command) for doc in DOCS for command in shell_commands(doc))
    assert sum(len(LINK.findall(without_code(doc.read_text()))) for doc in DOCS) > 100


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    # Given a doc with a good link, a link to a missing file and a link to a missing heading
    doc = tmp_path / "DOC.md"
    doc.write_text("# Title here\n\n[a](#title-here) [b](MISSING.md) [c](#nowhere) `[d](ignored.md)`\n")
    # Then exactly the two broken ones are reported
    assert broken_links(doc) == ["MISSING.md (no such file)", "#nowhere (no heading #nowhere in DOC.md)"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_relative_link_and_anchor_leads_somewhere(doc: Path) -> None:
    # Given the doc's links to files of this repository and to headings
    # Then each file exists and each anchor is a heading of its file, as GitHub names it
    assert broken_links(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_make_target_the_docs_show_exists(doc: Path) -> None:
    # Given the Makefile's targets
    targets = make_targets()
    # When the doc's commands are read
    shown = {match.group(2) for command in shell_commands(doc) for match in MAKE.finditer(command)}
    # Then each make target they run is one the Makefile has
    assert sorted(shown - targets) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_python_module_the_docs_run_imports_from_the_venv(doc: Path) -> None:
    # Given the doc's `python -m` commands
    runs = [match.groups() for command in shell_commands(doc) for match in PYTHON_M.finditer(command)]
    # Then each module imports in this repository's interpreter (the .venv that make run sets up)
    assert [module for _, module in runs if not imports(module)] == []
    # And each is run with .venv/bin/python, which a fresh clone has after make run (a bare `python` is whatever
    # the shell finds first: ModuleNotFoundError: No module named 'pipeline' without an activated venv)
    bare = [
        f"{prefix}python -m {module}"
        for prefix, module in runs
        if module.split(".")[0] not in DEVICE_SIDE and not prefix.endswith(".venv/bin/")
    ]
    assert bare == []
