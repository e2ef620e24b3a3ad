"""The rooms of docs/ARCHITECTURE.md and the direction of their imports: every import statement of the
project's modules, read with `ast` (so an import inside a function or under TYPE_CHECKING counts like one at
the top), against the table the doc states; and no import circle among the modules, tests aside."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Import roots (pyproject.toml: pythonpath = ["lambdas", "."]; the SDK is installed from client/src) and the
# folders under them that hold the project's modules.
SOURCES: tuple[tuple[Path, Path], ...] = (
    (ROOT / "lambdas", ROOT / "lambdas"),
    (ROOT / "client" / "src", ROOT / "client" / "src" / "ingest_client"),
    *((ROOT, ROOT / folder) for folder in ("infra", "tools", "local_pipeline", "bench", "loadtest", "app.py")),
)

# Room -> the rooms its modules may import (besides their own). docs/ARCHITECTURE.md states the same table;
# a new arrow is a decision: change both.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "lambdas": frozenset(),
    "ingest_client": frozenset(),
    "infra": frozenset({"lambdas"}),
    "tools.models": frozenset({"lambdas", "infra"}),
    "tools.ops": frozenset({"lambdas", "infra", "tools.models"}),
    "local_pipeline": frozenset({"lambdas", "infra", "tools.ops"}),
    "tools": frozenset({"lambdas", "infra", "tools.models", "tools.ops", "local_pipeline"}),
    "loadtest": frozenset({"lambdas", "local_pipeline", "tools.ops"}),
    "bench": frozenset({"lambdas", "ingest_client", "infra", "tools.models", "tools.ops", "local_pipeline"}),
    "app": frozenset({"infra"}),
}


def project_modules() -> dict[str, Path]:
    """Module name -> file, for every module outside tests/."""
    modules: dict[str, Path] = {}
    for import_root, source in SOURCES:
        for path in sorted(source.rglob("*.py")) if source.is_dir() else [source]:
            parts = list(path.relative_to(import_root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def room_of(module: str) -> str:
    if module.startswith("pipeline.") or module in ("pipeline", "ingest_handler", "consumer_handler"):
        return "lambdas"
    parts = module.split(".")
    if parts[0] == "tools" and len(parts) > 1 and parts[1] in ("models", "ops"):
        return ".".join(parts[:2])
    return parts[0]


def imported_names(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in the file, at any depth; `from a import b` yields `a.b` (a module
    or a name in a)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def resolve(name: str, known: set[str]) -> str | None:
    """The longest project module `name` is or lies in (None for the standard library and third parties)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(name, known) for _, name in imported_names(path, module)}
        graph[module] = {target for target in targets if target is not None and target != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_every_module_imports_only_the_rooms_below_its_own() -> None:
    # Given every import of every project module, function-local and TYPE_CHECKING ones included
    modules = project_modules()
    known = set(modules)
    # When each imported project module is placed in its room
    against = []
    for module, path in modules.items():
        allowed = MAY_IMPORT[room_of(module)] | {room_of(module)}
        for line, name in imported_names(path, module):
            target = resolve(name, known)
            if name.split(".")[0] == "tests":
                against.append(f"{path.relative_to(ROOT)}:{line} imports {name} (nothing imports tests/)")
            elif target is not None and room_of(target) not in allowed:
                against.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({room_of(target)})")
    # Then none goes against the direction docs/ARCHITECTURE.md states
    assert not against, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(against)


def test_the_rooms_form_no_circle_and_every_room_is_in_the_table() -> None:
    # Given the table of what each room may import
    rooms = {room_of(module) for module in project_modules()}
    # Then every room is in it, and it is layered: no room reaches itself through others
    assert rooms == set(MAY_IMPORT)
    assert circles({room: set(allowed) for room, allowed in MAY_IMPORT.items()}) == []


def test_no_import_circle_among_the_project_modules() -> None:
    # Given the import graph of every module outside tests/, hidden imports (in a function, under
    # TYPE_CHECKING) included: a hidden import still makes the two modules know each other
    graph = import_graph()
    # When its strongly connected components are found
    found = circles(graph)
    # Then there are none: each module can be read and changed from the modules below it alone
    assert found == [], "import circles: " + "; ".join(" <-> ".join(circle) for circle in found)


def test_the_circle_finder_finds_a_hidden_circle() -> None:
    # Given a graph like the one tools.models had (capacity imported capacity_doc inside main)
    graph = {"capacity": {"capacity_doc", "flow"}, "capacity_doc": {"capacity"}, "flow": set()}
    # Then the finder names the pair, and nothing else
    assert circles(graph) == [["capacity", "capacity_doc"]]


def test_an_import_inside_a_function_is_read(tmp_path: Path) -> None:
    # Given a module that imports only inside a function and under TYPE_CHECKING, one of them relative
    source = tmp_path / "pkg" / "mod.py"
    source.parent.mkdir()
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from infra.config import PipelineConfig\n"
        "def f():\n    from .sibling import thing\n    import tools.ops.cli\n"
    )
    # Then every one of them is listed, the relative one under its package
    names = {name for _, name in imported_names(source, "pkg.mod")}
    assert {"infra.config.PipelineConfig", "pkg.sibling.thing", "tools.ops.cli"} <= names


def test_the_payloads_path_is_written_only_in_the_contract() -> None:
    # Given every string constant of the project's modules but the device SDK (a package of its own, which
    # takes the whole endpoint URL from its user) and the contract, PAYLOADS_PATH's home
    home = ROOT / "lambdas" / "pipeline" / "contract.py"
    spelled = []
    for module, path in project_modules().items():
        if path == home or room_of(module) == "ingest_client":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            # Then none is the path, or a URL or f-string piece ending in it: they import PAYLOADS_PATH instead
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith("/v1/payloads"):
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not spelled, "/v1/payloads written outside pipeline/contract.py: " + ", ".join(spelled)
