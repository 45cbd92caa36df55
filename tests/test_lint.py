"""The code stays clean under the project's ruff configuration (pyproject.toml)."""
import shutil
import subprocess
import sys
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
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith((" ", "\t")) and line.lstrip().startswith(("from .", "import bioplastic", "from bioplastic")):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    assert sys.version_info >= (3, 11)
