"""The SDK runs on Python 3.9+ (endpoints run old Pythons), but this repository's tools are 3.11:
every SDK source must parse as 3.9 grammar and defer its annotations, so that no newer syntax (match,
except*, an X | Y annotation evaluated at import) reaches a 3.9 interpreter. mypy checks the SDK
against the 3.10 standard library (its oldest target)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SDK_SOURCES = sorted((Path(__file__).resolve().parents[2] / "client" / "src" / "ingest_client").glob("*.py"))


@pytest.mark.parametrize("source", SDK_SOURCES, ids=lambda path: path.name)
def test_every_sdk_module_is_python_3_9(source: Path) -> None:
    tree = ast.parse(source.read_text(), filename=str(source), feature_version=(3, 9))
    if any(isinstance(node, (ast.AnnAssign, ast.FunctionDef)) for node in ast.walk(tree)):
        futures = [
            alias.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module == "__future__"
            for alias in node.names
        ]
        assert "annotations" in futures, f"{source.name} has annotations but no `from __future__ import annotations`"


def test_there_are_sdk_sources() -> None:
    assert len(SDK_SOURCES) >= 6
