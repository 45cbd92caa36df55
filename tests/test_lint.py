"""The code stays clean under the project's ruff configuration (pyproject.toml)."""
import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    r = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_function_level_imports_of_the_package():
    """Layering (docs/api.md): modules import each other at the top; only optional heavy third-party
    imports (brian2, Cython, dask) may sit inside functions."""
    offenders = []
    for path in (ROOT / "bioplastic").rglob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("bioplastic")):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                    elif isinstance(node, ast.Import) and any(a.name.startswith("bioplastic") for a in node.names):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, "function-level imports of the package: " + ", ".join(offenders)
