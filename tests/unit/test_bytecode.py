"""infra/bytecode.py: the asset's bytecode is for the runtime's Python, deterministic, and used."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.bytecode import MAGIC_NUMBERS, NODE_MODULES, PYODIDE_PACKAGES, BytecodeError, compile_bytecode

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
RUNNING = "%d.%d" % sys.version_info[:2]


def staged_asset(target: Path) -> Path:
    shutil.copytree(LAMBDAS, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def files_under(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.pyc"))}


def test_the_running_interpreter_imports_the_shipped_bytecode_without_rereading_the_source(tmp_path: Path) -> None:
    # Given a module compiled for this interpreter
    (tmp_path / "greeting.py").write_text('WORD = "compiled"\n')
    written = compile_bytecode(tmp_path, RUNNING)
    assert [path.name for path in written] == [f"greeting.{sys.implementation.cache_tag}.pyc"]
    # When the source changes afterwards (it cannot in /var/task; here it proves what is loaded)
    (tmp_path / "greeting.py").write_text('WORD = "source"\n')
    result = subprocess.run([sys.executable, "-c", "import greeting; print(greeting.WORD)"], cwd=tmp_path,
                            capture_output=True, text=True, check=True, env={"PYTHONDONTWRITEBYTECODE": "1"})
    # Then the import used the bytecode: unchecked-hash .pyc files are not re-validated against the source
    assert result.stdout.strip() == "compiled"


def test_a_module_that_does_not_compile_fails_the_build(tmp_path: Path) -> None:
    # Given a syntax error in the asset
    (tmp_path / "broken.py").write_text("def broken(:\n")
    # When it is compiled, then the build stops instead of shipping an asset that fails at INIT
    with pytest.raises(BytecodeError, match="does not compile"):
        compile_bytecode(tmp_path, RUNNING)


def test_an_unsupported_python_version_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(BytecodeError, match="'3.9'"):
        compile_bytecode(tmp_path, "3.9")


@pytest.mark.parametrize("python_version", sorted(PYODIDE_PACKAGES))
def test_the_lambda_asset_compiles_for_the_runtime_deterministically(tmp_path: Path, python_version: str) -> None:
    if not (NODE_MODULES / PYODIDE_PACKAGES[python_version] / "pyodide.mjs").is_file():
        pytest.skip(f"{PYODIDE_PACKAGES[python_version]} not installed (make install)")
    # Given the Lambda asset staged twice, at two different paths
    first, second = staged_asset(tmp_path / "first"), staged_asset(tmp_path / "second")
    # When each is compiled for the runtime's Python
    written = compile_bytecode(first, python_version)
    compile_bytecode(second, python_version)
    # Then every module has a .pyc with that version's tag and magic number, hash-based (PEP 552 flags=1)
    tag = f"cpython-{python_version.replace('.', '')}"
    assert {path.name for path in written} >= {f"ingest_handler.{tag}.pyc", f"collection.{tag}.pyc"}
    assert len(written) == len(list(first.rglob("*.py")))
    for path in written:
        header = path.read_bytes()[:8]
        assert int.from_bytes(header[:2], "little") == MAGIC_NUMBERS[python_version]
        assert int.from_bytes(header[4:8], "little") == 1
    # And the bytes do not depend on where or when it was built (a stable CDK asset hash)
    assert files_under(first) == files_under(second)
    # And this interpreter's bytecode is not mistaken for it
    assert python_version == RUNNING or importlib.util.MAGIC_NUMBER[:2] != written[0].read_bytes()[:2]
