"""Packaging: the shipped model specs and protocols travel with the package (bioplastic.resources),
a bare protocol name runs a shipped protocol, and a wheel installed into a fresh environment runs one
from a folder outside the checkout."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bioplastic import resources
from bioplastic.protocol.errors import ProtocolError
from bioplastic.protocol.load import REPO_MODELS, load_protocol

ROOT = Path(__file__).resolve().parents[1]
DATA_PACKAGES = {"bioplastic.models": "models", "bioplastic.protocols": "protocols"}


def _packages(folder: Path, name: str) -> set[str]:
    """``name`` and its subpackages, as setuptools.find_packages sees them (folders with an __init__.py)."""
    if not (folder / "__init__.py").is_file():
        return set()
    return {name}.union(*(_packages(sub, f"{name}.{sub.name}") for sub in folder.iterdir() if sub.is_dir()))


def test_pyproject_ships_every_subpackage_and_the_data_folders():
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = _packages(ROOT / "bioplastic", "bioplastic")
    # the package-dir mapping needs an explicit list: a new subpackage must be added there
    assert set(setuptools_cfg["packages"]) == found | set(DATA_PACKAGES), "update [tool.setuptools] packages in pyproject.toml"
    assert setuptools_cfg["package-dir"] == DATA_PACKAGES
    for package in DATA_PACKAGES:
        assert setuptools_cfg["package-data"][package] == ["*.yaml"]


def test_shipped_resources_in_the_checkout():
    assert resources.protocols_dir() == ROOT / "protocols" and resources.models_dir() == ROOT / "models" == REPO_MODELS
    assert resources.shipped_protocols() == sorted(p.stem for p in (ROOT / "protocols").glob("*.yaml"))
    assert "evidence_accum" in resources.shipped_protocols()
    assert resources.shipped_models() == sorted(p.stem for p in (ROOT / "models").glob("*.yaml"))
    assert resources.model_spec_path("leaky_rate_ordered") == ROOT / "models" / "leaky_rate_ordered.yaml"
    for bad in ("nope", "../models/lstm", ""):
        with pytest.raises(resources.UnknownResourceError, match="shipped: .*leaky_rate_ordered"):
            resources.model_spec_path(bad)


def test_a_bare_name_loads_a_shipped_protocol_from_any_directory(tmp_path, monkeypatch, write_protocol):
    monkeypatch.chdir(tmp_path)
    for name in ("evidence_accum", "evidence_accum.yaml"):
        p = load_protocol(name, ["seeds=1"])
        assert p.name == "evidence_accum" and p.config.seeds == 1
    assert load_protocol("chaos_sweep").sweep is not None
    with pytest.raises(ProtocolError, match="protocol file not found: nope .*shipped: .*evidence_accum"):
        load_protocol("nope")
    with pytest.raises(ProtocolError, match="protocol file not found: .*a bare name runs a shipped protocol: .*evidence_accum"):
        load_protocol(Path("sub") / "nope.yaml")
    # an existing file comes first
    write_protocol(name="evidence_accum.yaml")
    assert load_protocol("evidence_accum.yaml").name == "tiny"
    assert load_protocol("evidence_accum").name == "evidence_accum"


#: the smallest run of the shipped default protocol that still writes every file
TINY_RUN = ["--set", "seeds=1", "--set", "training.iterations=5", "--set", "analysis=null", "--set", "model.n_units=16",
            "--set", "training.eval_trials=16", "--set", "training.eval_every=5", "--set", "training.checkpoint_every=5",
            "--executor", "inprocess", "--quiet"]


def _copy_sources(dest: Path) -> Path:
    """The files a build reads, copied so that the build writes nothing into the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("bioplastic", "models", "protocols"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.mark.integration
@pytest.mark.skipif(not (importlib.util.find_spec("pip") and importlib.util.find_spec("setuptools")),
                    reason="building the wheel offline (--no-build-isolation) needs pip and setuptools here")
def test_the_wheel_runs_a_shipped_protocol_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")}
    env.update(OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")

    def check(*cmd, cwd=tmp_path):
        r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    src = _copy_sources(tmp_path / "src")
    check(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp_path / "dist", src)
    (wheel,) = (tmp_path / "dist").glob("bioplastic-*.whl")
    # a fresh environment that takes torch, numpy, ... from this one; the wheel installed into it with
    # this environment's pip (which installs into the running interpreter's prefix, the venv's)
    venv = tmp_path / "venv"
    check(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    check(python, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-index", "-q", wheel)

    work = tmp_path / "elsewhere"  # neither the checkout nor the source copy
    work.mkdir()
    where = check(python, "-c", "import bioplastic, bioplastic.resources as r; print(bioplastic.__file__); "
                                "print(r.protocols_dir()); print(r.models_dir())", cwd=work).stdout.split()
    site = Path(check(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=work).stdout.strip())
    assert Path(where[0]).is_relative_to(site), f"the venv imports bioplastic from {where[0]}, not from its own {site}"
    assert Path(where[1]) == site / "bioplastic" / "protocols" and Path(where[2]) == site / "bioplastic" / "models"

    assert "evidence_accum" in check(bindir / "bioplastic", "list", cwd=work).stdout
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert check(bindir / "bioplastic", "--version", cwd=work).stdout == f"bioplastic {version}\n"
    licenses = [p for p in site.glob("bioplastic-*.dist-info/**/LICENSE")]
    assert licenses and licenses[0].read_text() == (ROOT / "LICENSE").read_text()  # the license travels with the wheel
    check(python, "-m", "bioplastic", "validate", "evidence_accum", "--set", "seeds=1", cwd=work)
    check(bindir / "bioplastic", "run", "evidence_accum", *TINY_RUN, cwd=work)
    out = work / "runs" / "evidence_accum"
    assert (out / "results.nc").is_file() and (out / "report.html").is_file()


def test_version_license_and_citation_agree_with_pyproject(cli):
    """One version (pyproject.toml) in ``--version``, ``bioplastic.__version__`` and CITATION.cff; the
    license MIT in pyproject.toml, LICENSE and CITATION.cff."""
    import yaml

    import bioplastic

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert bioplastic.__version__ == project["version"] == str(citation["version"])
    assert citation["title"] == "bioplastic" and citation["cff-version"] == "1.2.0" and citation["authors"]
    assert project["license"] == citation["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    code, out, _ = cli("--version")
    assert code == 0 and out == f"bioplastic {project['version']}\n"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {project['version']} " in changelog
